//! The generator's loops: connect (TCP, then TLS unless plain), exchange
//! requests, tally.

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use super::{Args, Mode, Shared, Tally, tls};
use crate::http;

/// A connection, TLS or not.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How connections are made.
pub(super) struct Connector {
    target: std::net::SocketAddr,
    tls: Option<TlsConnector>,
}

impl Connector {
    pub(super) fn new(args: &Args) -> anyhow::Result<Self> {
        let tls = if args.plain {
            None
        } else {
            Some(TlsConnector::from(Arc::new(tls::client_config(args)?)))
        };
        Ok(Self {
            target: args.target,
            tls,
        })
    }

    /// A new connection; the first TLS one records what was negotiated.
    async fn connect(&self, shared: &Shared) -> anyhow::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(self.target)
            .await
            .with_context(|| format!("connecting to {}", self.target))?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let stream = tls
            .connect(tls::server_name(), tcp)
            .await
            .context("TLS handshake")?;
        let mut negotiated = shared.negotiated.lock().expect("not poisoned");
        if negotiated.is_none() {
            let (_, c) = stream.get_ref();
            if let (Some(suite), Some(group)) = (
                c.negotiated_cipher_suite(),
                c.negotiated_key_exchange_group(),
            ) {
                *negotiated = Some(format!("{:?}/{:?}", suite.suite(), group.name()));
            }
        }
        Ok(Box::new(stream))
    }
}

/// The request a mode sends.
fn request(args: &Args) -> Vec<u8> {
    match args.mode {
        Mode::NewConns => http::request("/", true),
        Mode::Bulk => http::request(&format!("/bytes/{}", args.body), false),
        Mode::Keepalive | Mode::Idle => http::request("/", false),
    }
}

/// One request and its response; returns the body's length. With
/// `to_eof`, also reads on to the server's close.
async fn exchange(
    io: &mut dyn Io,
    buf: &mut Vec<u8>,
    req: &[u8],
    to_eof: bool,
) -> anyhow::Result<u64> {
    io.write_all(req).await.context("sending the request")?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head = loop {
        if let Some(h) = http::parse_response(buf)? {
            break h;
        }
        let n = io.read(&mut chunk).await.context("reading the response")?;
        if n == 0 {
            bail!("closed before the response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head.status != 200 {
        bail!("status {}", head.status);
    }
    let mut have = (buf.len() - head.len) as u64;
    while have < head.content_length {
        let n = io.read(&mut chunk).await.context("reading the body")?;
        if n == 0 {
            bail!(
                "closed in the body ({have} of {} bytes)",
                head.content_length
            );
        }
        have += n as u64;
    }
    if have > head.content_length {
        bail!("bytes beyond the response");
    }
    if to_eof {
        // Nothing may follow a `Connection: close` response but the close.
        match io.read(&mut chunk).await {
            // A close without close_notify: the response was whole anyway.
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Ok(_) => bail!("bytes after a Connection: close response"),
            Err(e) => return Err(anyhow!(e).context("reading to EOF")),
        }
    }
    Ok(head.content_length)
}

/// One loop of `new-conns`, `keepalive` or `bulk`, until the deadline or
/// the request budget.
pub(super) async fn run_loop(shared: Arc<Shared>) -> Tally {
    let args = &shared.args;
    let req = request(args);
    let timeout = shared.io_timeout();
    let mut tally = Tally::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut held: Option<Box<dyn Io>> = None;
    while shared.may_start() {
        let start = Instant::now();
        let attempt = async {
            if args.mode == Mode::NewConns {
                let mut io = shared.connector.connect(&shared).await?;
                exchange(&mut *io, &mut buf, &req, true).await
            } else {
                if held.is_none() {
                    held = Some(shared.connector.connect(&shared).await?);
                }
                let io = held.as_mut().expect("just connected");
                exchange(&mut **io, &mut buf, &req, false).await
            }
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no answer within {timeout:?}")),
        };
        match result {
            Ok(bytes) => tally.done(start, shared.warm_end, bytes),
            Err(e) => {
                tally.failed(&e);
                held = None;
                // Do not spin on a server that refuses.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

/// `idle`: `--concurrency` connections with one request each, opened 32 at
/// a time; returns those that worked and the number that failed.
pub(super) async fn open_idle(shared: Arc<Shared>) -> (Vec<Box<dyn Io>>, u64) {
    const PARALLEL: usize = 32;
    let want = shared.args.concurrency;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..PARALLEL.min(want) {
        let shared = Arc::clone(&shared);
        let n = want / PARALLEL + usize::from(i < want % PARALLEL);
        set.spawn(async move {
            let req = http::request("/", false);
            let mut buf = Vec::new();
            let mut held = Vec::with_capacity(n);
            let mut errors = 0;
            for _ in 0..n {
                let one = async {
                    let mut io = shared.connector.connect(&shared).await?;
                    exchange(&mut *io, &mut buf, &req, false).await?;
                    Ok::<_, anyhow::Error>(io)
                };
                match tokio::time::timeout(shared.io_timeout(), one).await {
                    Ok(Ok(io)) => held.push(io),
                    _ => errors += 1,
                }
            }
            (held, errors)
        });
    }
    let (mut held, mut errors) = (Vec::with_capacity(want), 0);
    while let Some(r) = set.join_next().await {
        let (h, e) = r.expect("an idle opener panicked");
        held.extend(h);
        errors += e;
    }
    (held, errors)
}
