//! `ctl health` and `ctl drain`: the standard gRPC health check
//! (grpc.health.v1 `Health/Check`, what a balancer or a deployment tool
//! asks) and the drain that turns it off before a restart.

use std::time::Duration;

use anyhow::{Result, bail};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{duration, out, rpc_error::RpcError};
use causeway_control::proto::{DrainRequest, status_service_client::StatusServiceClient};

/// Arguments of `causeway ctl health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The service to ask about, e.g. causeway.v1.ConfigService (default:
    /// the whole appliance).
    #[arg(long, default_value = "")]
    pub service: String,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "5s")]
    pub timeout: Duration,
}

/// Runs `causeway ctl health`: prints `SERVING` and succeeds, or fails
/// saying what the appliance reports instead.
pub(super) async fn health(channel: Channel, args: &HealthArgs) -> Result<()> {
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: args.service.clone(),
    };
    let Ok(answer) = tokio::time::timeout(args.timeout, client.check(request)).await else {
        bail!(
            "no health answer within {:?}: the appliance is overloaded or stuck",
            args.timeout
        );
    };
    let status = answer.map_err(RpcError)?.into_inner().status();
    verdict(status, &args.service)?;
    out::print("SERVING\n")?;
    Ok(())
}

/// Ok for SERVING; otherwise what an operator reads.
fn verdict(status: ServingStatus, service: &str) -> Result<()> {
    let what = if service.is_empty() {
        "the appliance".to_owned()
    } else {
        format!("service {service}")
    };
    match status {
        ServingStatus::Serving => Ok(()),
        ServingStatus::NotServing => bail!(
            "{what} reports NOT_SERVING: it was drained (causeway ctl drain) and waits for a \
             restart, or it is stopping"
        ),
        other => bail!("{what} reports {}: not serving yet", other.as_str_name()),
    }
}

/// Arguments of `causeway ctl drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// How long TLS services keep accepting after health turns
    /// NOT_SERVING, for balancers to notice (their check interval).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "0s")]
    pub grace: Duration,
}

/// Runs `causeway ctl drain`: answers once the terminator has drained.
pub(super) async fn drain(channel: Channel, args: &DrainArgs) -> Result<()> {
    let answer = StatusServiceClient::new(channel)
        .drain(DrainRequest {
            grace: Some(duration::to_proto(args.grace)?),
        })
        .await
        .map_err(RpcError)?
        .into_inner();
    let took = answer
        .took
        .as_ref()
        .map_or_else(|| "-".to_owned(), duration::show);
    out::print(&if answer.drained_now {
        format!("drained in {took}: NOT_SERVING; the dataplane still forwards until the restart\n")
    } else {
        "already drained: NOT_SERVING; waiting for a restart\n".to_owned()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_serving_is_healthy_and_the_rest_is_named() {
        assert!(verdict(ServingStatus::Serving, "").is_ok());
        let e = verdict(ServingStatus::NotServing, "")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the appliance reports NOT_SERVING: it was drained"),
            "{e}"
        );
        let e = verdict(ServingStatus::ServiceUnknown, "causeway.v1.X")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "service causeway.v1.X reports SERVICE_UNKNOWN: not serving yet"
        );
    }
}
