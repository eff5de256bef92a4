//! `causeway stats`: the appliance's counters as a table or JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use causeway_dataplane::pipeline::DropReason;
use serde_json::Value;

/// Arguments of `causeway stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The appliance's API socket.
    #[arg(long, conflicts_with = "lab")]
    pub socket: Option<PathBuf>,
    /// The appliance of the lab with this name.
    #[arg(long)]
    pub lab: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// How to print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
    /// Prometheus text.
    Prometheus,
}

/// Runs `causeway stats`.
///
/// # Errors
/// The appliance cannot be reached.
pub fn run(args: &StatsArgs) -> Result<()> {
    let socket = match (&args.socket, &args.lab) {
        (Some(s), _) => s.clone(),
        (None, Some(lab)) => crate::lab::status(lab)?.appliance.api_socket,
        (None, None) => causeway_control::config::ApiConfig::default().socket,
    };
    match args.output {
        Format::Prometheus => print!("{}", causeway_control::api::get(&socket, "/metrics")?),
        Format::Json => println!("{}", causeway_control::api::get(&socket, "/stats")?),
        Format::Table => {
            let v: Value = serde_json::from_str(&causeway_control::api::get(&socket, "/stats")?)
                .context("parsing /stats")?;
            print!("{}", table(&v));
        }
    }
    Ok(())
}

/// Renders `/stats` JSON as a table.
pub fn table(v: &Value) -> String {
    let mut out = format!(
        "{:<6} {:<8} {:>12} {:>14} {:>12} {:>14} {:>10}  drops by reason\n",
        "PORT", "IFACE", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES", "DROPS"
    );
    for port in v["ports"].as_array().into_iter().flatten() {
        let (p, c) = (&port[0], &port[1]);
        let drops: Vec<u64> = c["drops"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let reasons: Vec<String> = DropReason::ALL
            .iter()
            .zip(&drops)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        out += &format!(
            "{:<6} {:<8} {:>12} {:>14} {:>12} {:>14} {:>10}  {}\n",
            p["name"].as_str().unwrap_or("?"),
            p["interface"].as_str().unwrap_or("?"),
            c["rx_packets"].as_u64().unwrap_or(0),
            c["rx_bytes"].as_u64().unwrap_or(0),
            c["tx_packets"].as_u64().unwrap_or(0),
            c["tx_bytes"].as_u64().unwrap_or(0),
            drops.iter().sum::<u64>(),
            reasons.join(" ")
        );
    }
    let sockets = v["sockets"].as_array().into_iter().flatten();
    for (port, x) in v["ports"].as_array().into_iter().flatten().zip(sockets) {
        out += &format!(
            "AF_XDP {}: rx_ring_full={} rx_fill_ring_empty_descs={} rx_dropped={} rx_invalid_descs={} tx_invalid_descs={} tx_ring_empty_descs={}\n",
            port[0]["name"].as_str().unwrap_or("?"),
            x["rx_ring_full"],
            x["rx_fill_ring_empty_descs"],
            x["rx_dropped"],
            x["rx_invalid_descs"],
            x["tx_invalid_descs"],
            x["tx_ring_empty_descs"],
        );
    }
    let x = &v["xdp"];
    out += &format!(
        "XDP: redirect={} host_judge={} pass(arp={} ndp={} failsafe={} socket={} icmp_reply={} multicast={} other={}) drop(malformed={} no_socket={} prefilter={})\n",
        x["redirect"],
        x["host_judge"],
        x["pass_arp"],
        x["pass_ndp"],
        x["pass_failsafe"],
        x["pass_socket"],
        x["pass_icmp_reply"],
        x["pass_multicast"],
        x["pass_other"],
        x["drop_malformed"],
        x["drop_no_socket"],
        x["drop_prefilter"]
    );
    out += &format!(
        "neighbours: {}   flows: {}   policy generation: {} (enforced {})\n",
        v["neighbours"], v["flows"], v["policy_generation"], v["enforced_generation"]
    );
    let c = &v["conntrack"];
    out += &format!(
        "conntrack: {} of {} flows, {} half-open   evicted(half_open={} established={}) table_full={} expired={} invalid={}\n",
        c["entries"],
        c["capacity"],
        c["half_open"],
        c["evicted_half_open"],
        c["evicted_established"],
        c["table_full"],
        c["expired"],
        c["invalid"]
    );
    if let Some(rules) = v["rules"].as_object().filter(|r| !r.is_empty()) {
        out += &format!("{:<72} {:>12} {:>14}\n", "RULE", "PACKETS", "BYTES");
        for (name, c) in rules {
            out += &format!(
                "{:<72} {:>12} {:>14}\n",
                name,
                c[0].as_u64().unwrap_or(0),
                c[1].as_u64().unwrap_or(0)
            );
        }
    }
    if let Some(rules) = v["prefilter"].as_object().filter(|r| !r.is_empty()) {
        out += &format!("{:<72} {:>12}\n", "PREFILTER RULE (XDP)", "DROPS");
        for (name, c) in rules {
            out += &format!("{:<72} {:>12}\n", name, c[0].as_u64().unwrap_or(0));
        }
    }
    out
}
