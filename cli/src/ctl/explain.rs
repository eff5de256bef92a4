//! `ctl explain`: the verdict a packet would get from the live policy, and
//! why.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use tonic::transport::Channel;

use super::{out, protocol, rpc_error::RpcError};
use causeway_control::proto::{
    ExplainRequest, ExplainResponse, policy_service_client::PolicyServiceClient,
};

/// How `explain` prints.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ExplainFormat {
    /// The verdict, the deciding rule, the endpoints and the trace.
    #[default]
    Text,
    /// The JSON of `causeway policy explain -o json`.
    Json,
}

/// Arguments of `causeway ctl explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Source address.
    #[arg(long)]
    pub src: IpAddr,
    /// Destination address.
    #[arg(long)]
    pub dst: IpAddr,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[arg(long, value_name = "PROTOCOL", default_value = "tcp", value_parser = protocol::parse)]
    pub proto: String,
    /// Source port.
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ExplainFormat,
}

/// Runs `causeway ctl explain`.
pub(super) async fn explain(channel: Channel, args: &ExplainArgs) -> Result<()> {
    if args.src.is_ipv4() != args.dst.is_ipv4() {
        bail!(
            "--src {} and --dst {} are of different IP versions",
            args.src,
            args.dst
        );
    }
    let request = ExplainRequest {
        src: args.src.to_string(),
        dst: args.dst.to_string(),
        protocol: args.proto.clone(),
        sport: args.sport.map_or(0, u32::from),
        dport: args.dport.map_or(0, u32::from),
    };
    let response = PolicyServiceClient::new(channel)
        .explain(request)
        .await
        .map_err(RpcError)?
        .into_inner();
    out::print(&match args.output {
        ExplainFormat::Text => text(&response),
        ExplainFormat::Json => pretty_json(&response.json)?,
    })?;
    Ok(())
}

/// The explanation's JSON, indented.
fn pretty_json(json: &str) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("the appliance's explanation is not JSON")?;
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// The explanation in words, then the trace.
fn text(r: &ExplainResponse) -> String {
    let or = |s: &str, none: &str| {
        if s.is_empty() {
            none.to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut text = format!("verdict:     {}\n", r.verdict.to_uppercase());
    text += &format!(
        "policy:      {}\n",
        or(&r.policy, "none (a default decided)")
    );
    text += &format!("rule:        {}\n", or(&r.rule, "none (a default decided)"));
    text += &format!("reason:      {}\n", r.reason);
    text += &format!("source:      {}\n", or(&r.src_endpoint, "not an endpoint"));
    text += &format!("destination: {}\n", or(&r.dst_endpoint, "not an endpoint"));
    text += &format!("generation:  {}\n", r.generation);
    if r.trace.is_empty() {
        return text + "trace:       no policy applies\n";
    }
    text += "trace:\n";
    for step in &r.trace {
        text += &format!(
            "  {:<8} tier {:<12} {:<40} {}\n",
            step.direction, step.tier, step.policy, step.outcome
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_control::proto::TraceStep;

    #[test]
    fn the_text_names_the_deciding_rule_and_the_trace() {
        let response = ExplainResponse {
            verdict: "allow".into(),
            policy: "default/allow-web".into(),
            rule: "default/allow-web/ingress/0".into(),
            reason: "rule".into(),
            src_endpoint: String::new(),
            dst_endpoint: "StaticEndpoint/web".into(),
            trace: vec![TraceStep {
                direction: "ingress".into(),
                tier: "default".into(),
                policy: "allow-web".into(),
                outcome: "allow at rule 0".into(),
            }],
            generation: 4,
            json: "{}".into(),
        };
        let text = text(&response);
        assert!(
            text.starts_with("verdict:     ALLOW\npolicy:      default/allow-web\n"),
            "{text}"
        );
        assert!(text.contains("source:      not an endpoint\n"), "{text}");
        assert!(text.contains("destination: StaticEndpoint/web\n"), "{text}");
        assert!(text.ends_with(&format!(
            "trace:\n  ingress  tier default      {:<40} allow at rule 0\n",
            "allow-web"
        )));
    }
}
