//! The scenario's client of the control API: `ConfigService.Apply` over
//! the appliance's Unix socket, timed from the client's side, with the
//! server's own `enforced_after`.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use causeway_control::proto::{
    ApplyRequest, ManifestFile, config_service_client::ConfigServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// One apply, both ways round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    /// The generation the apply made.
    pub(crate) generation: u64,
    /// `ApplyResponse.enforced_after`: the server's time from the request's
    /// arrival until every worker enforced it (zero for a dry run).
    pub(crate) server: Duration,
    /// The client's round trip: request sent to answer read.
    pub(crate) round_trip: Duration,
}

/// A channel to the control API's gRPC socket at `path` (any service).
///
/// # Errors
/// Nothing listens there.
pub(crate) async fn channel(path: &Path) -> anyhow::Result<Channel> {
    let socket: PathBuf = path.to_owned();
    // The URI is a placeholder: the connector below dials the socket,
    // and tonic sends its authority (`[::]:50051`) as :authority.
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .with_context(|| format!("connecting to the control API at {}", path.display()))
}

/// A connection to one appliance's control API.
pub(crate) struct Client {
    config: ConfigServiceClient<Channel>,
}

impl Client {
    /// Connects to the gRPC control socket at `path`.
    ///
    /// # Errors
    /// Nothing listens there.
    pub(crate) async fn connect(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            config: ConfigServiceClient::new(channel(path).await?)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        })
    }

    /// Applies `text` (YAML) and waits until every worker enforces it, or
    /// only validates it when `dry_run`; the server waits for the workers
    /// up to `timeout`, the client a second longer.
    ///
    /// # Errors
    /// The server refused the change, did not enforce it in time, or did
    /// not answer within `timeout`; or the apply changed nothing (the
    /// scenario only sends real changes).
    pub(crate) async fn apply(
        &mut self,
        name: &str,
        text: String,
        dry_run: bool,
        timeout: Duration,
    ) -> anyhow::Result<Applied> {
        let mut request = tonic::Request::new(ApplyRequest {
            files: vec![ManifestFile {
                name: name.to_owned(),
                text,
            }],
            expected_generation: None,
            replace: false,
            dry_run,
            wait_enforced: !dry_run,
            wait_timeout: Some(prost_types::Duration::try_from(timeout)?),
            ..ApplyRequest::default()
        });
        request.set_timeout(timeout + Duration::from_secs(1));
        let start = Instant::now();
        let response = self.config.apply(request).await;
        let round_trip = start.elapsed();
        let r = response
            .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))
            .with_context(|| format!("applying {name}"))?
            .into_inner();
        if !dry_run && !r.changed {
            bail!("applying {name} changed nothing: the scenario's changes must be real ones");
        }
        let server = match r.enforced_after {
            Some(d) => Duration::try_from(d).context("enforced_after is negative")?,
            None if dry_run => Duration::ZERO,
            None => bail!("applying {name}: the answer has no enforced_after"),
        };
        Ok(Applied {
            generation: r.generation,
            server,
            round_trip,
        })
    }
}
