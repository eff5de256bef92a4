//! `ctl status`: the generation, what each worker enforces, the ports.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{duration, out, rpc_error::RpcError, table::Table, time};
use causeway_control::proto::{
    GetStatusRequest, Port, Status, WaitEnforcedRequest, Worker,
    status_service_client::StatusServiceClient,
};

/// How `status` prints.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// The generations, then tables of workers and ports.
    #[default]
    Table,
    /// One JSON object.
    Json,
}

/// Arguments of `causeway ctl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: StatusFormat,
    /// Answer once every worker enforces this generation (or a later one).
    #[arg(long, value_name = "GENERATION")]
    pub wait: Option<u64>,
    /// How long to wait with --wait (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// Runs `causeway ctl status`.
pub(super) async fn status(channel: Channel, args: &StatusArgs) -> Result<()> {
    let mut client = StatusServiceClient::new(channel);
    let answer = match args.wait {
        Some(generation) => {
            let request = WaitEnforcedRequest {
                generation,
                timeout: args.timeout.map(duration::to_proto).transpose()?,
            };
            client.wait_enforced(request).await
        }
        None => client.get_status(GetStatusRequest {}).await,
    };
    let status = answer.map_err(RpcError)?.into_inner();
    out::print(&match args.output {
        StatusFormat::Table => text(&status),
        StatusFormat::Json => serde_json::to_string_pretty(&json(&status))? + "\n",
    })?;
    Ok(())
}

/// The generations, workers, ports, then what waits and what failed.
fn text(s: &Status) -> String {
    let mut text = summary(s);
    text += "\n";
    text += &worker_table(&s.workers).render();
    text += "\n";
    text += &port_table(&s.ports).render();
    text += &listed("pending restart", &s.pending_restart);
    text += &listed("errors", &s.errors);
    text
}

fn summary(s: &Status) -> String {
    let lines = [
        ("generation", s.generation.to_string()),
        ("enforced generation", s.enforced_generation.to_string()),
        (
            "last enforced after",
            s.last_enforced_after
                .as_ref()
                .map_or_else(|| "-".to_owned(), duration::show),
        ),
        (
            "started",
            s.started
                .as_ref()
                .map_or_else(|| "-".to_owned(), time::rfc3339_millis),
        ),
        ("version", s.version.clone()),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{:<20} {value}\n", format!("{key}:")))
        .collect()
}

fn worker_table(workers: &[Worker]) -> Table {
    let mut table = Table::new(&["WORKER", "INDEX", "CORE", "GENERATION"])
        .right_align(1)
        .right_align(2)
        .right_align(3);
    for w in workers {
        table.row(vec![
            w.role.clone(),
            w.index.to_string(),
            w.core.to_string(),
            w.generation.to_string(),
        ]);
    }
    table
}

fn port_table(ports: &[Port]) -> Table {
    let mut table = Table::new(&[
        "PORT",
        "INTERFACE",
        "IFINDEX",
        "MAC",
        "ADDRESSES",
        "XDP",
        "RX PACKETS",
        "TX PACKETS",
        "DROPPED",
    ]);
    for index in [2, 6, 7, 8] {
        table = table.right_align(index);
    }
    for p in ports {
        table.row(vec![
            p.name.clone(),
            p.interface.clone(),
            p.ifindex.to_string(),
            p.mac.clone(),
            p.addresses.join(","),
            if p.native_xdp { "native" } else { "generic" }.to_owned(),
            p.rx_packets.to_string(),
            p.tx_packets.to_string(),
            p.dropped.to_string(),
        ]);
    }
    table
}

/// `\ntitle:\n  item\n...`, or nothing for no items.
fn listed(title: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut text = format!("\n{title}:\n");
    for item in items {
        text += &format!("  {item}\n");
    }
    text
}

fn json(s: &Status) -> Value {
    json!({
        "generation": s.generation,
        "enforced_generation": s.enforced_generation,
        "workers": s.workers.iter().map(|w| json!({
            "role": w.role,
            "index": w.index,
            "core": w.core,
            "generation": w.generation,
        })).collect::<Vec<_>>(),
        "ports": s.ports.iter().map(|p| json!({
            "name": p.name,
            "interface": p.interface,
            "ifindex": p.ifindex,
            "mac": p.mac,
            "addresses": p.addresses,
            "native_xdp": p.native_xdp,
            "rx_packets": p.rx_packets,
            "tx_packets": p.tx_packets,
            "dropped": p.dropped,
        })).collect::<Vec<_>>(),
        "pending_restart": s.pending_restart,
        "errors": s.errors,
        "started": s.started.as_ref().map(time::rfc3339_millis),
        "last_enforced_after": s.last_enforced_after.as_ref().map(duration::show),
        "version": s.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            generation: 8,
            enforced_generation: 7,
            workers: vec![
                Worker {
                    role: "dataplane".into(),
                    index: 0,
                    core: 2,
                    generation: 8,
                },
                Worker {
                    role: "terminator".into(),
                    index: 0,
                    core: 3,
                    generation: 7,
                },
            ],
            ports: vec![Port {
                name: "wan".into(),
                interface: "eth1".into(),
                ifindex: 4,
                mac: "02:00:00:00:00:01".into(),
                addresses: vec!["192.0.2.1/24".into()],
                native_xdp: false,
                rx_packets: 1000,
                tx_packets: 900,
                dropped: 3,
            }],
            pending_restart: vec!["Port/lan: a new port".into()],
            errors: vec![],
            started: None,
            last_enforced_after: Some(prost_types::Duration {
                seconds: 0,
                nanos: 800_000,
            }),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_table_shows_generations_workers_ports_and_what_waits() {
        assert_eq!(
            text(&status()),
            "generation:          8\n\
             enforced generation: 7\n\
             last enforced after: 800.0µs\n\
             started:             -\n\
             version:             0.1.0\n\
             \n\
             WORKER      INDEX  CORE  GENERATION\n\
             dataplane       0     2           8\n\
             terminator      0     3           7\n\
             \n\
             PORT  INTERFACE  IFINDEX  MAC                ADDRESSES     XDP      RX PACKETS  TX PACKETS  DROPPED\n\
             wan   eth1             4  02:00:00:00:00:01  192.0.2.1/24  generic        1000         900        3\n\
             \n\
             pending restart:\n\
             \x20 Port/lan: a new port\n"
        );
    }

    #[test]
    fn json_has_every_field() {
        let v = json(&status());
        assert_eq!(v["workers"][1]["role"], "terminator");
        assert_eq!(v["ports"][0]["native_xdp"], false);
        assert_eq!(v["errors"], json!([]));
        assert_eq!(v["last_enforced_after"], "800.0µs");
    }
}
