//! Connection buffers: chunks of two sizes lent by a per-worker pool.
//!
//! A connection holds a chunk only while it has bytes in it, so an idle
//! connection costs no buffer memory, and after warm-up no read or write
//! allocates: chunks come back to the worker's free lists and are lent
//! again. A large chunk ([`CHUNK`]) holds [`RECORDS_PER_CHUNK`] whole TLS
//! records (16 KiB of plaintext each plus the record overhead), so that
//! bulk transfers move several full-size records per receive and per
//! send: on loopback the kernel's cost is per call and per segment far
//! more than per byte. A buffer whose first bytes fit one record
//! ([`RECORD`]) takes a small chunk instead, so that request/response
//! traffic and the pool's idle chunks cost a quarter of that.

/// Bytes in one maximal TLS 1.2/1.3 record: 2^14 plaintext + 256
/// expansion + 5 header, rounded up.
pub const RECORD: usize = 16 * 1024 + 512;

/// The plaintext of one full-size record (RFC 8446 §5.1: 2^14).
pub const RECORD_PLAINTEXT: usize = 16 * 1024;

/// What a record adds to its plaintext, at most, with the cipher suites
/// rustls offers: 5 header + 1 content type + 16 tag (TLS 1.3 AEAD), 5 +
/// 8 explicit nonce + 16 tag (TLS 1.2 AES-GCM); rounded up.
pub const RECORD_OVERHEAD: usize = 64;

/// Full-size records one chunk holds.
pub const RECORDS_PER_CHUNK: usize = 4;

/// Bytes in one chunk.
pub const CHUNK: usize = RECORDS_PER_CHUNK * RECORD;

/// Plaintext that can be encrypted into `room` bytes whatever the record
/// sizes: each record started costs at most [`RECORD_OVERHEAD`].
#[must_use]
pub fn plaintext_room(room: usize) -> usize {
    let records = room.div_ceil(RECORD_PLAINTEXT + RECORD_OVERHEAD);
    room.saturating_sub(records * RECORD_OVERHEAD)
}

/// The free lists of one worker, one per chunk size. Chunks are never
/// returned to the allocator; each list keeps at most `keep` of them.
#[derive(Debug)]
pub struct BufPool {
    /// Small ([`RECORD`]) and large ([`CHUNK`]) chunks.
    free: [Vec<Box<[u8]>>; 2],
    keep: usize,
    /// Chunks lent out right now.
    lent: usize,
}

impl BufPool {
    /// A pool that keeps up to `keep` idle chunks of each size for reuse.
    #[must_use]
    pub fn new(keep: usize) -> Self {
        Self {
            free: Default::default(),
            keep,
            lent: 0,
        }
    }

    /// A chunk for `want` bytes: small if they fit one record.
    fn take(&mut self, want: usize) -> Box<[u8]> {
        self.lent += 1;
        let (i, size) = if want <= RECORD {
            (0, RECORD)
        } else {
            (1, CHUNK)
        };
        self.free[i]
            .pop()
            .unwrap_or_else(|| vec![0; size].into_boxed_slice())
    }

    fn give(&mut self, chunk: Box<[u8]>) {
        self.lent -= 1;
        let list = &mut self.free[usize::from(chunk.len() > RECORD)];
        if list.len() < self.keep {
            list.push(chunk);
        }
    }

    /// Chunks lent to connections now.
    #[must_use]
    pub fn lent(&self) -> usize {
        self.lent
    }
}

/// A byte queue backed by at most one chunk: `head..tail` holds the bytes.
///
/// While the driver sends from `readable()`, new bytes may only be
/// appended after `tail` and nothing before `tail` moves; [`Buf::settle`]
/// rewinds or gives the chunk back once nothing is in flight.
#[derive(Debug, Default)]
pub struct Buf {
    chunk: Option<Box<[u8]>>,
    head: usize,
    tail: usize,
}

impl Buf {
    /// Bytes queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Bytes that can still be appended: to the chunk held, or [`CHUNK`]
    /// when none is (the first append or [`Buf::reserve`] takes one big
    /// enough).
    #[must_use]
    pub fn room(&self) -> usize {
        self.chunk.as_ref().map_or(CHUNK, |c| c.len() - self.tail)
    }

    /// Takes a chunk for `want` bytes if none is held (a large one when
    /// they do not fit a small one); with a chunk held, nothing changes.
    pub fn reserve(&mut self, pool: &mut BufPool, want: usize) {
        if self.chunk.is_none() {
            self.chunk = Some(pool.take(want));
        }
    }

    /// The queued bytes.
    #[must_use]
    pub fn readable(&self) -> &[u8] {
        match &self.chunk {
            Some(c) => &c[self.head..self.tail],
            None => &[],
        }
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
    }

    /// Appends as much of `data` as fits; returns how much did.
    pub fn append(&mut self, pool: &mut BufPool, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        if n == 0 {
            return 0;
        }
        let chunk = self.chunk.get_or_insert_with(|| pool.take(data.len()));
        let n = n.min(chunk.len() - self.tail);
        chunk[self.tail..self.tail + n].copy_from_slice(&data[..n]);
        self.tail += n;
        n
    }

    /// The free space after `tail`, taking a large chunk if needed; pair
    /// with [`Buf::commit`].
    pub fn spare(&mut self, pool: &mut BufPool) -> &mut [u8] {
        let tail = self.tail;
        let chunk = self.chunk.get_or_insert_with(|| pool.take(CHUNK));
        &mut chunk[tail..]
    }

    /// Marks `n` bytes written into [`Buf::spare`] as queued.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(
            self.chunk
                .as_ref()
                .is_some_and(|c| self.tail + n <= c.len())
        );
        self.tail += n;
    }

    /// Call when no send from this buffer is in flight: an empty buffer
    /// gives its chunk back; a buffer whose head has moved past half the
    /// chunk moves its bytes to the front so the room comes back.
    pub fn settle(&mut self, pool: &mut BufPool) {
        if self.is_empty() {
            self.head = 0;
            self.tail = 0;
            if let Some(c) = self.chunk.take() {
                pool.give(c);
            }
        } else if let Some(c) = &mut self.chunk
            && self.head > c.len() / 2
        {
            c.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Gives the chunk back whatever it holds (the connection is gone).
    pub fn release(&mut self, pool: &mut BufPool) {
        self.head = 0;
        self.tail = 0;
        if let Some(c) = self.chunk.take() {
            pool.give(c);
        }
    }
}

/// Writes into a [`Buf`] up to its room: how rustls's `write_tls` fills an
/// outbox without growing it.
pub struct BufWriter<'a> {
    /// The buffer written to.
    pub buf: &'a mut Buf,
    /// Where its chunk comes from.
    pub pool: &'a mut BufPool,
}

impl std::io::Write for BufWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        match self.buf.append(self.pool, data) {
            0 => Err(std::io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_lent_only_while_bytes_are_held() {
        let mut pool = BufPool::new(4);
        let mut b = Buf::default();
        assert_eq!(b.room(), CHUNK);
        assert_eq!(b.append(&mut pool, b"hello"), 5);
        assert_eq!(pool.lent(), 1);
        assert_eq!(b.readable(), b"hello");
        b.consume(5);
        b.settle(&mut pool);
        assert_eq!(pool.lent(), 0);
        // The chunk is reused, not reallocated.
        b.append(&mut pool, b"x");
        assert_eq!(pool.free[0].len(), 0);
        b.release(&mut pool);
        assert_eq!(pool.free[0].len(), 1);
    }

    #[test]
    fn small_first_bytes_take_a_small_chunk_and_bulk_a_large_one() {
        let mut pool = BufPool::new(4);
        let mut b = Buf::default();
        assert_eq!(b.room(), CHUNK, "before a chunk: the most one holds");
        b.append(&mut pool, &[1; 100]);
        assert_eq!(b.room(), RECORD - 100, "a small chunk");
        // More than it holds is refused, not lost.
        assert_eq!(b.append(&mut pool, &vec![2; RECORD]), RECORD - 100);
        b.release(&mut pool);
        b.reserve(&mut pool, RECORD + 1);
        assert_eq!(b.room(), CHUNK, "a large chunk");
        b.release(&mut pool);
        assert_eq!((pool.free[0].len(), pool.free[1].len()), (1, 1));
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn a_full_buffer_refuses_and_settling_compacts() {
        let mut pool = BufPool::new(4);
        let mut b = Buf::default();
        let big = vec![7u8; CHUNK + 10];
        assert_eq!(b.append(&mut pool, &big), CHUNK);
        assert_eq!(b.append(&mut pool, b"more"), 0);
        b.consume(CHUNK / 2 + 1);
        assert_eq!(b.room(), 0, "room comes back only when settled");
        b.settle(&mut pool);
        assert_eq!(b.room(), CHUNK / 2 + 1);
        assert_eq!(b.len(), CHUNK / 2 - 1);
    }
}
