//! The lab's HTTP backends: `causeway lab backend --listen ADDR --name NAME`,
//! a small HTTP/1.1 server that answers every request with
//! `hello from NAME`, so that a client (or the terminator's balancer) can
//! tell which backend answered. `up` starts three in island B (see
//! `backends.rs`); they are the demo service's upstreams.
//!
//! Requests are parsed by [`parse_head`], which touches no socket; the
//! connection loop ([`serve_connection`]) only moves bytes. Keep-alive is
//! honoured (HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
//! `Connection: keep-alive`); a request body announced with `Content-Length`
//! is read and discarded; a chunked request body cannot be skipped without
//! decoding it, so such a request is answered and the connection closed.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// The line a backend prints on stdout once it listens; `up` waits for it.
pub(crate) const LISTENING: &str = "listening on";

/// The parts of a request head the backend acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The method, e.g. `GET`.
    pub(crate) method: String,
    /// Body bytes to skip after the head.
    pub(crate) content_length: u64,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
}

/// Why a request head is refused; each maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or a malformed line or header: 400.
    Malformed,
    /// Longer than [`MAX_HEAD`] without its blank line: 431.
    TooLarge,
}

impl HeadError {
    fn status(self) -> &'static str {
        match self {
            Self::Malformed => "400 Bad Request",
            Self::TooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Parses the request head at the start of `buf`: `Ok(None)` until the
/// blank line that ends it (RFC 9112 §2.1) has arrived, then the head and
/// its length in bytes.
///
/// # Errors
///
/// [`HeadError`] for a head that cannot be served.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let len = end + 4;
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    // RFC 9112 §3: method SP request-target SP HTTP-version.
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(HeadError::Malformed);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed),
    };
    let mut keep_alive = http11;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        // RFC 9112 §5: field-name ":" OWS field-value OWS; no obs-fold.
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if name.is_empty() || name.ends_with([' ', '\t']) || line.starts_with([' ', '\t']) {
            return Err(HeadError::Malformed);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| HeadError::Malformed)?;
            // RFC 9112 §6.3: differing lengths make the framing unknowable.
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        }
    }
    if chunked {
        // The body's end is not known without decoding it: answer, then
        // close (RFC 9112 §6.3 allows a server to close instead).
        keep_alive = false;
        content_length = Some(0);
    }
    Ok(Some((
        Head {
            method: method.to_owned(),
            content_length: content_length.unwrap_or(0),
            keep_alive,
        },
        len,
    )))
}

/// The response to `head` from backend `name`.
pub(crate) fn response(name: &str, head: &Head) -> Vec<u8> {
    let body = format!("hello from {name}\n");
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\n",
        body.len()
    );
    if !head.keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if head.method != "HEAD" {
        out.push_str(&body);
    }
    out.into_bytes()
}

fn error_response(error: HeadError) -> Vec<u8> {
    format!(
        "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        error.status()
    )
    .into_bytes()
}

/// A listening backend.
#[derive(Debug)]
pub(crate) struct Backend {
    listener: TcpListener,
    name: String,
}

impl Backend {
    /// Listens on `addr`.
    ///
    /// # Errors
    ///
    /// The error of `bind(2)` or `listen(2)`.
    pub(crate) fn bind(addr: SocketAddr, name: &str) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr)?,
            name: name.to_owned(),
        })
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, a thread each.
    ///
    /// # Errors
    ///
    /// Only if a thread cannot be started; a failed `accept` is logged and
    /// the loop goes on.
    pub(crate) fn run(self) -> io::Result<()> {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "backend: accept failed");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let name = self.name.clone();
            std::thread::Builder::new()
                .name(format!("conn-{peer}"))
                .spawn(move || {
                    if let Err(e) = serve_connection(stream, &name) {
                        tracing::debug!(%peer, error = %e, "backend: connection ended");
                    }
                })?;
        }
    }
}

/// Serves requests on `stream` until the client closes it, a request asks
/// to close, or a request cannot be parsed.
pub(crate) fn serve_connection(stream: TcpStream, name: &str) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(MAX_HEAD, stream);
    let mut head_buf = Vec::new();
    loop {
        // Read until a whole head is buffered.
        let parsed = loop {
            match parse_head(&head_buf) {
                Ok(Some(parsed)) => break Ok(parsed),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                // The client closed: between requests, that is the end.
                return Ok(());
            }
            // Take at most up to the end of the head, so that what follows
            // (a body, the next request) stays in the reader.
            let take = head_end_within(&head_buf, chunk).unwrap_or(chunk.len());
            head_buf.extend_from_slice(&chunk[..take]);
            reader.consume(take);
        };
        let (head, _) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                writer.write_all(&error_response(e))?;
                return Ok(());
            }
        };
        head_buf.clear();
        // Skip the body.
        let skipped = io::copy(
            &mut (&mut reader).take(head.content_length),
            &mut io::sink(),
        )?;
        if skipped < head.content_length {
            return Ok(());
        }
        writer.write_all(&response(name, &head))?;
        if !head.keep_alive {
            return Ok(());
        }
    }
}

/// How many bytes of `chunk`, appended to `buf`, complete the head's
/// `\r\n\r\n`; `None` if they do not.
fn head_end_within(buf: &[u8], chunk: &[u8]) -> Option<usize> {
    // The terminator may straddle the boundary: look from 3 bytes back.
    let back = buf.len().min(3);
    let mut joined = buf[buf.len() - back..].to_vec();
    joined.extend_from_slice(chunk);
    joined
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4 - back)
}

/// `causeway lab backend`: listens on `listen`, says so on stdout, and
/// serves until killed.
///
/// # Errors
///
/// If it cannot listen.
pub(crate) fn run(listen: SocketAddr, name: &str) -> anyhow::Result<()> {
    let backend = Backend::bind(listen, name)
        .map_err(|e| anyhow::anyhow!("backend {name}: cannot listen on {listen}: {e}"))?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{name}: {LISTENING} {}", backend.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    backend.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_head_is_parsed_once_complete() {
        assert_eq!(head("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(head(""), Ok(None));
        let text = "GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let (h, len) = head(text).unwrap().unwrap();
        assert_eq!(len, text.len() - 4);
        assert_eq!(
            h,
            Head {
                method: "GET".to_owned(),
                content_length: 0,
                keep_alive: true
            }
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let keep = |t: &str| head(t).unwrap().unwrap().0.keep_alive;
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        // A chunked body cannot be skipped: answer and close.
        assert!(!keep(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn content_length_is_read_case_insensitively() {
        let len = |t: &str| head(t).map(|h| h.unwrap().0.content_length);
        assert_eq!(
            len("POST / HTTP/1.1\r\ncontent-LENGTH:  12 \r\n\r\n"),
            Ok(12)
        );
        assert_eq!(
            len("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            Ok(3)
        );
        assert_eq!(
            len("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            len("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "G3T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert_eq!(head(bad), Err(HeadError::Malformed), "{bad:?}");
        }
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(head(&huge), Err(HeadError::TooLarge));
        assert_eq!(head(&format!("{huge}\r\n")), Err(HeadError::TooLarge));
    }

    #[test]
    fn the_response_names_the_backend() {
        let h = head("GET / HTTP/1.1\r\n\r\n").unwrap().unwrap().0;
        assert_eq!(
            String::from_utf8(response("backend-2", &h)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\
             X-Backend: backend-2\r\n\r\nhello from backend-2\n"
        );
        let h = head("HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap().0;
        let text = String::from_utf8(response("b", &h)).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        assert!(text.contains("Content-Length: 13\r\n"), "{text}");
    }

    #[test]
    fn the_head_end_is_found_across_reads() {
        assert_eq!(head_end_within(b"", b"GET / HTTP/1.1\r\n\r\nX"), Some(18));
        assert_eq!(head_end_within(b"GET / HTTP/1.1\r\n", b"\r\nX"), Some(2));
        assert_eq!(head_end_within(b"GET / HTTP/1.1\r", b"\n\r\n"), Some(3));
        assert_eq!(head_end_within(b"GET / HTTP/1.1", b"\r\n"), None);
    }

    /// A backend on loopback, serving from a thread of this test.
    fn backend(name: &str) -> SocketAddr {
        let backend = Backend::bind("127.0.0.1:0".parse().unwrap(), name).unwrap();
        let addr = backend.local_addr().unwrap();
        std::thread::spawn(move || backend.run());
        addr
    }

    /// Reads one response from `reader`: its head and body.
    fn read_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "EOF in a head");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a Content-Length")
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    fn closed(reader: &mut BufReader<TcpStream>) -> bool {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        rest.is_empty()
    }

    #[test]
    fn keep_alive_serves_pipelined_requests_and_skips_bodies() {
        let addr = backend("backend-1");
        let stream = TcpStream::connect(addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        // Two requests in one write, the first with a body that looks like a
        // request itself; then a third, dribbled a byte at a time.
        writer
            .write_all(
                b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n\
                  GET /x HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .unwrap();
        for _ in 0..2 {
            let (head, body) = read_response(&mut reader);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains("Content-Type: text/plain\r\n"), "{head}");
            assert!(head.contains("X-Backend: backend-1\r\n"), "{head}");
            assert!(!head.contains("Connection: close"), "{head}");
            assert_eq!(body, "hello from backend-1\n");
        }
        for &b in b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n" {
            writer.write_all(&[b]).unwrap();
        }
        let (head, body) = read_response(&mut reader);
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert_eq!(body, "hello from backend-1\n");
        assert!(closed(&mut reader), "closed after Connection: close");
    }

    #[test]
    fn http10_and_bad_requests_close() {
        let addr = backend("b");
        let stream = TcpStream::connect(addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let (_, body) = read_response(&mut reader);
        assert_eq!(body, "hello from b\n");
        assert!(closed(&mut reader));

        let stream = TcpStream::connect(addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"NOT HTTP\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(body.is_empty());
        assert!(closed(&mut reader));

        // A client that leaves mid-request is no trouble for the next one.
        let mut gone = TcpStream::connect(addr).unwrap();
        gone.write_all(b"GET / HTTP/1.1\r\nContent-Length: 100\r\n\r\nab")
            .unwrap();
        drop(gone);
        let stream = TcpStream::connect(addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut reader).1, "hello from b\n");
    }
}
