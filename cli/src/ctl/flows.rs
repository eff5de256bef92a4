//! `ctl flows`: flow records as the dataplane judges flows and the
//! terminator closes connections.

use std::{net::IpAddr, time::Duration};

use anyhow::Result;
use serde_json::json;
use tokio::time::Instant;
use tonic::{Streaming, transport::Channel};

use super::{duration, out, protocol, rpc_error::RpcError, time};
use causeway_control::proto::{FlowFilter, FlowRecord, flow_service_client::FlowServiceClient};

/// Records read without --follow when --limit is not given.
const DEFAULT_LIMIT: u64 = 100;
/// How long to read without --follow when --for is not given.
const DEFAULT_FOR: Duration = Duration::from_secs(2);

/// A verdict to keep.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FlowVerdict {
    /// Allowed flows.
    Allow,
    /// Denied flows.
    Deny,
}

/// Who judged a flow.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FlowSource {
    /// The first packet of a flow, or a denied packet.
    Dataplane,
    /// A connection the terminator closed.
    Terminator,
}

/// Arguments of `causeway ctl flows`.
#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    /// Keep reading until --limit records (default: until interrupted).
    #[arg(short, long)]
    pub follow: bool,
    /// Only flows from or to this address.
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// Only flows to this destination port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only this protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(long, value_parser = protocol::parse)]
    pub protocol: Option<String>,
    /// Only this verdict.
    #[arg(long, value_enum)]
    pub verdict: Option<FlowVerdict>,
    /// Only records of this source.
    #[arg(long, value_enum)]
    pub source: Option<FlowSource>,
    /// Stop after this many records (default 100 without --follow, no
    /// limit with it).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Without --follow, stop after this long (default 2s).
    #[arg(long = "for", value_name = "DURATION", value_parser = duration::parse, conflicts_with = "follow")]
    pub for_: Option<Duration>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: FlowsFormat,
}

/// How `flows` prints.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum FlowsFormat {
    /// One line per record.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs `causeway ctl flows`.
pub(super) async fn flows(channel: Channel, args: &FlowsArgs) -> Result<()> {
    let limit = args
        .limit
        .unwrap_or(if args.follow { 0 } else { DEFAULT_LIMIT });
    let deadline = (!args.follow).then(|| Instant::now() + args.for_.unwrap_or(DEFAULT_FOR));
    let mut records = FlowServiceClient::new(channel)
        .stream_flows(filter(args, limit))
        .await
        .map_err(RpcError)?
        .into_inner();
    let mut seen = 0;
    while limit == 0 || seen < limit {
        let Some(record) = next(&mut records, deadline).await? else {
            break;
        };
        seen += 1;
        if record.dropped > 0 && matches!(args.output, FlowsFormat::Text) {
            eprintln!(
                "causeway: {} flow records lost before the next (read slower than flows came)",
                record.dropped
            );
        }
        out::print(&match args.output {
            FlowsFormat::Text => text_line(&record),
            FlowsFormat::Json => json_line(&record),
        })?;
    }
    Ok(())
}

/// The next record, or `None` at the end of the stream or the deadline.
async fn next(
    records: &mut Streaming<FlowRecord>,
    deadline: Option<Instant>,
) -> Result<Option<FlowRecord>> {
    let message = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, records.message()).await {
            Ok(message) => message,
            Err(_elapsed) => return Ok(None),
        },
        None => records.message().await,
    };
    Ok(message.map_err(RpcError)?)
}

fn filter(args: &FlowsArgs, limit: u64) -> FlowFilter {
    FlowFilter {
        address: args.address.map(|a| a.to_string()).unwrap_or_default(),
        port: args.port.map_or(0, u32::from),
        protocol: args.protocol.clone().unwrap_or_default(),
        verdict: match args.verdict {
            Some(FlowVerdict::Allow) => "allow",
            Some(FlowVerdict::Deny) => "deny",
            None => "",
        }
        .to_owned(),
        source: match args.source {
            Some(FlowSource::Dataplane) => "dataplane",
            Some(FlowSource::Terminator) => "terminator",
            None => "",
        }
        .to_owned(),
        limit,
    }
}

/// `TIME SOURCE PROTO SRC:SPORT -> DST:DPORT VERDICT RULE BYTES [id=SPIFFE]
/// [service=NAME]`.
fn text_line(r: &FlowRecord) -> String {
    let mut line = format!(
        "{} {} {} {} -> {} {} {} {}",
        r.at.as_ref()
            .map_or_else(|| "-".to_owned(), time::rfc3339_millis),
        r.source,
        protocol::name(r.protocol),
        endpoint(&r.src, r.sport),
        endpoint(&r.dst, r.dport),
        r.verdict,
        if r.rule.is_empty() { "-" } else { &r.rule },
        r.bytes
    );
    if !r.tls_identity.is_empty() {
        line += &format!(" id={}", r.tls_identity);
    }
    if !r.service.is_empty() {
        line += &format!(" service={}", r.service);
    }
    line + "\n"
}

/// `10.0.0.1:443`, `[2001:db8::1]:443`.
fn endpoint(address: &str, port: u32) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Every field of the record, on one line.
fn json_line(r: &FlowRecord) -> String {
    json!({
        "at": r.at.as_ref().map(time::rfc3339_millis),
        "source": r.source,
        "src": r.src,
        "sport": r.sport,
        "dst": r.dst,
        "dport": r.dport,
        "protocol": r.protocol,
        "verdict": r.verdict,
        "rule": r.rule,
        "bytes": r.bytes,
        "tls_identity": r.tls_identity,
        "service": r.service,
        "dropped": r.dropped,
        "generation": r.generation,
    })
    .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        FlowRecord {
            at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 42_000_000,
            }),
            source: "dataplane".into(),
            src: "10.0.0.1".into(),
            sport: 40000,
            dst: "10.0.1.2".into(),
            dport: 443,
            protocol: 6,
            verdict: "allow".into(),
            rule: "default/allow-web/ingress/0".into(),
            bytes: 60,
            generation: 3,
            ..FlowRecord::default()
        }
    }

    #[test]
    fn a_dataplane_record_is_one_line() {
        assert_eq!(
            text_line(&record()),
            "2023-11-14T22:13:20.042Z dataplane tcp 10.0.0.1:40000 -> 10.0.1.2:443 allow default/allow-web/ingress/0 60\n"
        );
    }

    #[test]
    fn a_terminator_record_names_the_client_and_the_service() {
        let r = FlowRecord {
            source: "terminator".into(),
            src: "2001:db8::1".into(),
            dst: "2001:db8::2".into(),
            rule: String::new(),
            bytes: 4096,
            tls_identity: "spiffe://lab/client".into(),
            service: "web".into(),
            ..record()
        };
        assert_eq!(
            text_line(&r),
            "2023-11-14T22:13:20.042Z terminator tcp [2001:db8::1]:40000 -> [2001:db8::2]:443 allow - 4096 id=spiffe://lab/client service=web\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = json_line(&record());
        assert_eq!(line.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["dport"], 443);
        assert_eq!(v["at"], "2023-11-14T22:13:20.042Z");
    }
}
