//! `causeway-perf backend --listen ADDR [--name NAME]`: the origin behind
//! every proxy the perf harness measures.
//!
//! A keep-alive HTTP/1.1 server on one thread (tokio, current-thread):
//! `GET /bytes/N` answers N zero bytes, anything else `hello from NAME`.
//! It honours `Connection: close` by closing after the response.
//!
//! Why our own and not `causeway lab backend`: the same small binary sits
//! behind causeway and behind its peers, its cost is the same for both,
//! and the bulk test needs large bodies the lab backend does not serve.

use std::{net::SocketAddr, rc::Rc};

use anyhow::Context;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::http;

/// The largest body `/bytes/N` serves.
const MAX_BODY: u64 = 1 << 32;

/// Bytes written per call for a large body.
const CHUNK: usize = 64 * 1024;

/// Arguments of `causeway-perf backend`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Said in `hello from NAME`.
    #[arg(long, default_value = "backend")]
    name: String,
}

/// Serves until killed.
///
/// # Errors
/// The address cannot be bound.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&rt, accept_loop(args))
}

async fn accept_loop(args: &Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let hello: Rc<[u8]> = format!("hello from {}\n", args.name).into_bytes().into();
    let zeros: Rc<[u8]> = vec![0u8; CHUNK].into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: the client sees a reset or
            // a timeout, and counts it.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let (hello, zeros) = (Rc::clone(&hello), Rc::clone(&zeros));
        tokio::task::spawn_local(async move {
            let _ = serve(stream, &hello, &zeros).await;
        });
    }
}

/// One connection: requests in turn until the client closes or asks to.
async fn serve(mut stream: TcpStream, hello: &[u8], zeros: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (len, close, body) = loop {
            match http::parse_request(&buf) {
                Ok(Some(r)) => {
                    let body = r
                        .target
                        .strip_prefix("/bytes/")
                        .and_then(|n| n.parse::<u64>().ok())
                        .map(|n| n.min(MAX_BODY));
                    break (r.len, r.close, body);
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..len);
        match body {
            Some(mut n) => {
                stream.write_all(&http::ok_head(n, close)).await?;
                while n > 0 {
                    let k = n.min(zeros.len() as u64) as usize;
                    stream.write_all(&zeros[..k]).await?;
                    n -= k as u64;
                }
            }
            None => {
                let mut out = http::ok_head(hello.len() as u64, close);
                out.extend_from_slice(hello);
                stream.write_all(&out).await?;
            }
        }
        if close {
            return stream.shutdown().await;
        }
    }
}
