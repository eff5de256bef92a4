//! Finding the appliance's control socket and opening a channel on it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

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
