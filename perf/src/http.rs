//! Just enough HTTP/1.1 for the load generator and the perf backend: the
//! head of a request or a response, found in a buffer, no IO.
//!
//! Both ends are ours, so this reads only what they write: a request line
//! or a status line, `Content-Length` and `Connection: close`. Anything
//! else in a head is skipped; a head longer than [`MAX_HEAD`] is an error.

/// The longest head either side accepts.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// A malformed or oversized head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadHead(pub(crate) &'static str);

impl std::fmt::Display for BadHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad HTTP head: {}", self.0)
    }
}

impl std::error::Error for BadHead {}

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    /// Bytes of the head, blank line included.
    pub(crate) len: usize,
    /// `GET`, ...
    pub(crate) method: &'a str,
    /// The request target, `/bytes/1024`.
    pub(crate) target: &'a str,
    /// `Connection: close` was asked for.
    pub(crate) close: bool,
}

/// A response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// Bytes of the head, blank line included.
    pub(crate) len: usize,
    /// The status code.
    pub(crate) status: u16,
    /// The body's length (our backend always sends one).
    pub(crate) content_length: u64,
    /// The server will close after this response.
    pub(crate) close: bool,
}

/// The head's lines if `buf` holds a whole head: (head length, lines).
fn head(buf: &[u8]) -> Result<Option<(usize, &str)>, BadHead> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(BadHead("too long"))
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| BadHead("not UTF-8"))?;
    Ok(Some((end + 4, text)))
}

/// Header fields we read: (content length, connection close).
fn fields<'a>(lines: impl Iterator<Item = &'a str>) -> Result<(Option<u64>, bool), BadHead> {
    let (mut length, mut close) = (None, false);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(BadHead("header without :"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| BadHead("Content-Length"))?);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok((length, close))
}

/// Parses a request head at the start of `buf`; `Ok(None)`: not all there.
///
/// # Errors
/// [`BadHead`] for a head that is malformed or longer than [`MAX_HEAD`].
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<Request<'_>>, BadHead> {
    let Some((len, text)) = head(buf)? else {
        return Ok(None);
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(BadHead("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadHead("version"));
    }
    let (_, close) = fields(lines)?;
    Ok(Some(Request {
        len,
        method,
        target,
        close: close || version == "HTTP/1.0",
    }))
}

/// Parses a response head at the start of `buf`; `Ok(None)`: not all there.
///
/// # Errors
/// [`BadHead`] for a malformed head, one without `Content-Length`, or one
/// longer than [`MAX_HEAD`].
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<Response>, BadHead> {
    let Some((len, text)) = head(buf)? else {
        return Ok(None);
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(BadHead("status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadHead("version"));
    }
    let status = status.parse().map_err(|_| BadHead("status code"))?;
    let (length, close) = fields(lines)?;
    Ok(Some(Response {
        len,
        status,
        content_length: length.ok_or(BadHead("no Content-Length"))?,
        close,
    }))
}

/// `GET {target}` with `Connection: close` or keep-alive.
pub(crate) fn request(target: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {target} HTTP/1.1\r\nHost: perf\r\nConnection: {connection}\r\n\r\n").into_bytes()
}

/// A `200 OK` head for a body of `len` bytes.
pub(crate) fn ok_head(len: u64, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{connection}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_we_write_parses_back() {
        let mut buf = request("/bytes/42", true);
        let n = buf.len();
        buf.extend_from_slice(b"GET /next");
        let r = parse_request(&buf).unwrap().unwrap();
        assert_eq!(
            r,
            Request {
                len: n,
                method: "GET",
                target: "/bytes/42",
                close: true
            }
        );
        assert!(!parse_request(&request("/", false)).unwrap().unwrap().close);
    }

    #[test]
    fn a_response_we_write_parses_back() {
        let mut buf = ok_head(17, false);
        let n = buf.len();
        buf.extend_from_slice(b"hello from b1....");
        let r = parse_response(&buf).unwrap().unwrap();
        assert_eq!(
            r,
            Response {
                len: n,
                status: 200,
                content_length: 17,
                close: false
            }
        );
        assert!(parse_response(&ok_head(0, true)).unwrap().unwrap().close);
    }

    #[test]
    fn a_partial_head_waits_and_a_huge_one_fails() {
        let buf = ok_head(3, false);
        for cut in 0..buf.len() {
            assert_eq!(parse_response(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        let junk = vec![b'a'; MAX_HEAD + 1];
        assert!(parse_request(&junk).is_err());
    }

    #[test]
    fn heads_without_what_we_need_fail() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0 x\r\n\r\n").is_err());
        assert!(parse_request(b"GET\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nbroken\r\n\r\n").is_err());
    }
}
