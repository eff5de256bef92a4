//! Finding the appliance's control API and opening a channel to it: its
//! Unix socket (`--socket`, `--lab`, the default configuration's, or
//! `--server unix:PATH`) or its TCP listener with mTLS (`--server
//! https://HOST:PORT` with `--tls-ca`, `--tls-cert` and `--tls-key`, as
//! `causeway sync` reaches appliances).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::CtlArgs;
use crate::sync::config::{ApplianceAddr, ApplianceTls, appliance_addr};

/// Where `args` says the appliance's control API is.
///
/// # Errors
/// `--server` is not `unix:PATH` or `https://HOST:PORT`, https lacks its
/// TLS files, or the lab's state cannot be read.
pub(super) fn address(args: &CtlArgs) -> Result<ApplianceAddr> {
    let Some(server) = &args.server else {
        return Ok(ApplianceAddr::Unix(socket_path(
            args.socket.as_deref(),
            args.lab.as_deref(),
        )?));
    };
    let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(ApplianceTls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            server_name: args.tls_server_name.clone(),
        }),
        (None, None, None) => None,
        _ => bail!("--tls-ca, --tls-cert and --tls-key go together: give all three"),
    };
    appliance_addr(server, tls.as_ref(), "--tls-ca, --tls-cert and --tls-key")
        .map_err(|e| anyhow::anyhow!("--server {e}"))
}

/// `e`, with a hint when the mTLS API ended the call unanswered: TLS 1.3
/// lets the client finish its handshake before the server checks the
/// client's certificate, so a refused identity shows as a call cancelled,
/// unavailable or failed with a transport error (UNKNOWN), not as a failed
/// connect.
pub(super) fn explain(addr: &ApplianceAddr, e: anyhow::Error) -> anyhow::Error {
    let unanswered = e.downcast_ref::<super::RpcError>().is_some_and(|r| {
        matches!(
            r.0.code(),
            tonic::Code::Cancelled | tonic::Code::Unavailable | tonic::Code::Unknown
        )
    });
    if matches!(addr, ApplianceAddr::Https(..)) && unanswered {
        e.context(format!(
            "{addr} ended the call unanswered: does it admit this certificate's identity \
             (api.tcp.admin_identities), and does the certificate chain to its api.tcp.client_ca?"
        ))
    } else {
        e
    }
}

/// A channel to the control API at `addr`.
///
/// # Errors
/// Nothing listens there, or the TLS files cannot be read or are refused.
pub(super) async fn open(addr: &ApplianceAddr, lab: Option<&str>) -> Result<Channel> {
    match addr {
        ApplianceAddr::Unix(path) => channel(path, lab).await,
        ApplianceAddr::Https(..) => crate::sync::push::connect(addr).await.with_context(|| {
            "is the appliance running with api.tcp, and does it admit this identity \
             (api.tcp.admin_identities)?"
        }),
    }
}

/// The socket `--socket`, `--lab` or the default configuration names.
///
/// # Errors
/// The lab's state cannot be read (it is not up, or has another name).
pub(super) fn socket_path(socket: Option<&Path>, lab: Option<&str>) -> Result<PathBuf> {
    Ok(match (socket, lab) {
        (Some(socket), _) => socket.to_owned(),
        (None, Some(lab)) => crate::lab::status(lab)?.appliance.control_socket,
        (None, None) => causeway_control::config::ApiConfig::default().control_socket(),
    })
}

/// A channel to the control API on the Unix socket at `path`.
///
/// # Errors
/// There is no socket at `path`, or nothing accepts connections on it.
pub(super) async fn channel(path: &Path, lab: Option<&str>) -> Result<Channel> {
    if !path.exists() {
        bail!("{}", missing_socket(path, lab));
    }
    let socket = path.to_owned();
    // The URI is required by tonic but unused: every connection is made by
    // the connector, to the socket.
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .with_context(|| {
            format!(
                "cannot connect to the appliance control socket {}: is the appliance running, \
                 and may this user open the socket (mode 0600)?",
                path.display()
            )
        })
}

/// What to say when the socket does not exist.
fn missing_socket(path: &Path, lab: Option<&str>) -> String {
    let hint = match lab {
        Some(lab) => format!("causeway lab status {lab}"),
        None => "start it with causeway run, or name its socket with --socket or --lab".to_owned(),
    };
    format!(
        "no appliance control socket at {}: is the appliance running? ({hint})",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_named_with_the_lab_to_check() {
        assert_eq!(
            missing_socket(
                Path::new("/run/causeway/lab/demo/control.sock"),
                Some("demo")
            ),
            "no appliance control socket at /run/causeway/lab/demo/control.sock: \
             is the appliance running? (causeway lab status demo)"
        );
    }

    #[test]
    fn an_explicit_socket_wins() {
        let path = socket_path(Some(Path::new("/tmp/c.sock")), None).unwrap();
        assert_eq!(path, Path::new("/tmp/c.sock"));
    }
}
