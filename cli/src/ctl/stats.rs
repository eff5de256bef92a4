//! `ctl stats`: every counter, once or every interval.

use std::{collections::BTreeMap, io::IsTerminal, time::Duration};

use anyhow::Result;
use serde_json::json;
use tonic::transport::Channel;

use super::{duration, out, rpc_error::RpcError, table::Table, time};
use causeway_control::proto::{
    GetStatsRequest, Sample, Stats, WatchStatsRequest, stats_service_client::StatsServiceClient,
};

/// How `stats` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// NAME LABELS VALUE, sorted.
    #[default]
    Table,
    /// An array of {name, labels, value} objects (one line per snapshot
    /// with --watch).
    Json,
    /// Prometheus text, without HELP and TYPE lines.
    Prometheus,
}

/// Arguments of `causeway ctl stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: StatsFormat,
    /// Print a snapshot every --interval until interrupted (Ctrl-C).
    #[arg(short, long)]
    pub watch: bool,
    /// The time between snapshots with --watch (default 1s, at least
    /// 100ms).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, requires = "watch")]
    pub interval: Option<Duration>,
}

/// Runs `causeway ctl stats`.
pub(super) async fn stats(channel: Channel, args: &StatsArgs) -> Result<()> {
    let mut client = StatsServiceClient::new(channel);
    if !args.watch {
        let stats = client
            .get_stats(GetStatsRequest {})
            .await
            .map_err(RpcError)?
            .into_inner();
        out::print(&render(&stats, args.output, false)?)?;
        return Ok(());
    }
    let request = WatchStatsRequest {
        interval: args.interval.map(duration::to_proto).transpose()?,
    };
    let mut snapshots = client
        .watch_stats(request)
        .await
        .map_err(RpcError)?
        .into_inner();
    let clear = args.output == StatsFormat::Table && std::io::stdout().is_terminal();
    while let Some(stats) = snapshots.message().await.map_err(RpcError)? {
        let text = render(&stats, args.output, true)?;
        // On a terminal the table replaces the last one; elsewhere a blank
        // line separates them.
        out::print(&if clear {
            format!("\x1b[H\x1b[2J{text}")
        } else if args.output == StatsFormat::Table {
            format!("{text}\n")
        } else {
            text
        })?;
    }
    Ok(())
}

/// One snapshot in `format`; JSON on one line when `watching`.
fn render(stats: &Stats, format: StatsFormat, watching: bool) -> Result<String> {
    let samples = sorted(&stats.samples);
    Ok(match format {
        StatsFormat::Table => format!(
            "{}  generation {}\n{}",
            stats
                .at
                .as_ref()
                .map_or_else(|| "-".to_owned(), time::rfc3339_millis),
            stats.generation,
            sample_table(&samples)
        ),
        StatsFormat::Prometheus => samples.iter().map(|s| prometheus_line(s)).collect(),
        StatsFormat::Json => {
            let v = json_samples(&samples);
            let text = if watching {
                serde_json::to_string(&v)?
            } else {
                serde_json::to_string_pretty(&v)?
            };
            text + "\n"
        }
    })
}

/// A sample with its labels sorted by name.
struct Sorted<'a> {
    name: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    value: f64,
}

/// The samples by name, then labels.
fn sorted(samples: &[Sample]) -> Vec<Sorted<'_>> {
    let mut sorted: Vec<Sorted<'_>> = samples
        .iter()
        .map(|s| Sorted {
            name: &s.name,
            labels: s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            value: s.value,
        })
        .collect();
    sorted.sort_by(|a, b| (a.name, &a.labels).cmp(&(b.name, &b.labels)));
    sorted
}

fn sample_table(samples: &[Sorted<'_>]) -> String {
    let mut table = Table::new(&["NAME", "LABELS", "VALUE"]).right_align(2);
    for s in samples {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.row(vec![s.name.to_owned(), labels.join(","), number(s.value)]);
    }
    table.render()
}

/// `name{label="value",...} value`, as the Prometheus endpoint writes it.
fn prometheus_line(s: &Sorted<'_>) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    let value = match s.value {
        v if v.is_nan() => "NaN".to_owned(),
        v if v == f64::INFINITY => "+Inf".to_owned(),
        v if v == f64::NEG_INFINITY => "-Inf".to_owned(),
        v => number(v),
    };
    if labels.is_empty() {
        format!("{} {value}\n", s.name)
    } else {
        format!("{}{{{}}} {value}\n", s.name, labels.join(","))
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A counter's value: whole numbers without a fraction.
fn number(v: f64) -> String {
    format!("{v}")
}

fn json_samples(samples: &[Sorted<'_>]) -> serde_json::Value {
    samples
        .iter()
        .map(|s| json!({"name": s.name, "labels": s.labels, "value": s.value}))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            value,
        }
    }

    fn snapshot() -> Stats {
        Stats {
            at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            generation: 7,
            samples: vec![
                sample(
                    "causeway_port_rx_packets_total",
                    &[("port", "wan"), ("interface", "eth1")],
                    1200.0,
                ),
                sample("causeway_flows", &[], 3.0),
                sample(
                    "causeway_port_rx_packets_total",
                    &[("port", "lan"), ("interface", "eth0")],
                    5.0,
                ),
                sample("causeway_rule_note", &[("rule", "a\"b\\c")], 0.5),
            ],
        }
    }

    #[test]
    fn the_table_is_sorted_by_name_then_labels() {
        assert_eq!(
            render(&snapshot(), StatsFormat::Table, false).unwrap(),
            "2023-11-14T22:13:20.123Z  generation 7\n\
             NAME                            LABELS                   VALUE\n\
             causeway_flows                  -                            3\n\
             causeway_port_rx_packets_total  interface=eth0,port=lan      5\n\
             causeway_port_rx_packets_total  interface=eth1,port=wan   1200\n\
             causeway_rule_note              rule=a\"b\\c                 0.5\n"
        );
    }

    #[test]
    fn prometheus_text_escapes_label_values() {
        assert_eq!(
            render(&snapshot(), StatsFormat::Prometheus, false).unwrap(),
            "causeway_flows 3\n\
             causeway_port_rx_packets_total{interface=\"eth0\",port=\"lan\"} 5\n\
             causeway_port_rx_packets_total{interface=\"eth1\",port=\"wan\"} 1200\n\
             causeway_rule_note{rule=\"a\\\"b\\\\c\"} 0.5\n"
        );
    }

    #[test]
    fn json_is_one_object_per_sample() {
        let text = render(&snapshot(), StatsFormat::Json, true).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v[1],
            json!({"name": "causeway_port_rx_packets_total", "labels": {"interface": "eth0", "port": "lan"}, "value": 5.0})
        );
    }
}
