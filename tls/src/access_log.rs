//! The access log: one JSON line per connection, written off the worker
//! threads.
//!
//! Each worker holds an [`AccessLogSender`]: when a connection closes,
//! the engine builds its [`AccessRecord`] and offers it to a bounded
//! channel with `try_send`, which never blocks. A record that does not
//! fit (the writer is behind: a slow disk, a stdout nobody reads) is
//! dropped and counted ([`AccessLog::dropped`],
//! `causeway_terminator_access_log_dropped_total`); the worker goes on.
//! One writer thread owns the file (or stdout), writes each record as a
//! line of JSON and flushes whenever the channel runs dry.
//!
//! Why not the flow tap ([`crate::flows`]): the tap is one queue drained
//! by one consumer, the control API's flow stream, and is on only while
//! someone streams. The access log is on for the terminator's whole life
//! and must not take records from, or be slowed by, a flow stream; a
//! channel of its own costs one more `try_send` per closed connection
//! and keeps the two independent (a fan-out inside the tap would put the
//! slowest consumer's backpressure on both).

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// Why a connection ended: a small `Copy` enum, written as its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Both directions finished (FIN or close_notify each way).
    Done,
    /// Refused before it was served: a per-client cap, a PROXY header,
    /// an unknown server name, a PostgreSQL client without TLS.
    Refused,
    /// The client's TLS handshake failed (certificate, identity, version,
    /// ALPN).
    HandshakeFailed,
    /// The client did not finish its handshake (or its first bytes) in
    /// time.
    HandshakeTimeout,
    /// No upstream endpoint could be chosen.
    NoEndpoint,
    /// Connects failed and the retry budget had no retry left.
    RetryBudget,
    /// No descriptor for the upstream socket (local pressure).
    NoDescriptor,
    /// The upstream's TLS failed after it was established.
    UpstreamTls,
    /// The client said nothing in time after it could.
    FirstByteTimeout,
    /// No byte either way for the idle timeout.
    IdleTimeout,
    /// A socket error on either leg.
    SocketError,
    /// The terminator shut down.
    Shutdown,
    /// The terminator could not go on with it (a TLS session that could
    /// not start).
    Internal,
}

/// One connection, as the access log writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When it closed, on the engine's clock.
    pub closed: Instant,
    /// Its service (`None`: refused before a shared listener chose one).
    pub service: Option<Arc<str>>,
    /// The client: the socket's peer, or a trusted PROXY header's source.
    pub client: SocketAddr,
    /// The client's verified SPIFFE ID.
    pub identity: Option<String>,
    /// The application protocol negotiated with ALPN.
    pub alpn: Option<String>,
    /// The upstream endpoint it was proxied to.
    pub upstream: Option<SocketAddr>,
    /// Plaintext bytes from the client (to the upstream).
    pub bytes_from_client: u64,
    /// Plaintext bytes to the client (from the upstream).
    pub bytes_to_client: u64,
    /// From its accept to its close.
    pub duration: Duration,
    /// Why it ended.
    pub close: CloseReason,
}

/// A record as JSON (what the line holds).
#[derive(Serialize)]
struct Line<'a> {
    /// Seconds since the Unix epoch, with milliseconds.
    ts: f64,
    service: Option<&'a str>,
    client: String,
    identity: Option<&'a str>,
    alpn: Option<&'a str>,
    upstream: Option<String>,
    bytes_from_client: u64,
    bytes_to_client: u64,
    duration_ms: f64,
    close: CloseReason,
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// The process's standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

/// A worker's end: offers records, never blocks.
#[derive(Debug, Clone)]
pub struct AccessLogSender {
    tx: SyncSender<AccessRecord>,
    dropped: Arc<AtomicU64>,
}

impl AccessLogSender {
    /// Offers `record` to the writer; counts it dropped if the channel is
    /// full (or the writer is gone). Whether it was taken.
    pub fn offer(&self, record: AccessRecord) -> bool {
        match self.tx.try_send(record) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }
}

/// The access log: its writer thread and its counters.
#[derive(Debug)]
pub struct AccessLog {
    sender: AccessLogSender,
    written: Arc<AtomicU64>,
    writer: Option<thread::JoinHandle<()>>,
}

impl AccessLog {
    /// Opens `sink` and starts the writer; at most `capacity` records
    /// wait for it.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending (naming it).
    pub fn open(sink: &Sink, capacity: usize) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                    })?,
            ),
        };
        Ok(Self::with_writer(out, capacity))
    }

    /// As [`AccessLog::open`], writing into `out`.
    pub fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let written = Arc::new(AtomicU64::new(0));
        // The clocks' anchor: an engine's Instant becomes wall time here,
        // off the workers.
        let anchor = (Instant::now(), SystemTime::now());
        let writer = {
            let written = written.clone();
            thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_all(&rx, out, anchor, &written))
                .expect("spawn the access log writer")
        };
        Self {
            sender: AccessLogSender {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            written,
            writer: Some(writer),
        }
    }

    /// A sender for a worker.
    #[must_use]
    pub fn sender(&self) -> AccessLogSender {
        self.sender.clone()
    }

    /// Records dropped because the channel was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.sender.dropped.load(Relaxed)
    }

    /// Records written.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Writes what is queued and stops the writer. Every sender (each
    /// worker's) must be dropped first, or this waits for them.
    pub fn close(mut self) {
        let (tx, _) = mpsc::sync_channel(1);
        // Our own sender goes; the writer ends when the workers' have.
        self.sender.tx = tx;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_all(
    rx: &Receiver<AccessRecord>,
    out: Box<dyn Write + Send>,
    (at, wall): (Instant, SystemTime),
    written: &AtomicU64,
) {
    let mut out = BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(r) = next {
            let when = match r.closed.checked_duration_since(at) {
                Some(d) => wall + d,
                None => wall - at.duration_since(r.closed),
            };
            let line = Line {
                ts: when
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0),
                service: r.service.as_deref(),
                client: r.client.to_string(),
                identity: r.identity.as_deref(),
                alpn: r.alpn.as_deref(),
                upstream: r.upstream.map(|u| u.to_string()),
                bytes_from_client: r.bytes_from_client,
                bytes_to_client: r.bytes_to_client,
                duration_ms: r.duration.as_secs_f64() * 1000.0,
                close: r.close,
            };
            if serde_json::to_writer(&mut out, &line).is_ok() && out.write_all(b"\n").is_ok() {
                written.fetch_add(1, Relaxed);
            }
            next = rx.try_recv().ok();
        }
        // The channel ran dry: put the lines out.
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests;
