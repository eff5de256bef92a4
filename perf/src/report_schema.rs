//! The JSON every whole-system scenario writes (`--json FILE`), shared by
//! all of them so one reader compares runs and scenarios.
//!
//! ```json
//! {"scenario": "tls",
//!  "machine": {"cpus": 2, "kernel": "6.1.0", "cpu_model": "..."},
//!  "placement": {"generator": "cpu 0", "causeway": "cpu 1"},
//!  "figures": [{"name": "tls_new_conns_per_sec", "unit": "1/s",
//!               "causeway": 5100.0, "peer": "nginx", "peer_value": 4800.0,
//!               "ratio": 1.06, "higher_is_better": true}]}
//! ```
//!
//! A figure is always causeway beside one peer measured in the same run;
//! `ratio` is oriented so that above 1 means causeway did better:
//! `causeway / peer_value` when higher is better, `peer_value / causeway`
//! when lower is better. Keep this schema exactly: other scenarios and
//! the readers of `perf/results/*.json` rely on it.

use std::{collections::BTreeMap, fs};

use serde::{Deserialize, Serialize};

/// One scenario's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Results {
    /// The scenario's name (`tls`, `forward`, ...).
    pub(crate) scenario: String,
    /// The machine it ran on.
    pub(crate) machine: Machine,
    /// Where each party ran (role -> CPUs and threads), free text.
    pub(crate) placement: BTreeMap<String, String>,
    /// The figures, causeway beside a peer each.
    pub(crate) figures: Vec<Figure>,
}

/// The machine a scenario ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// CPUs this process may use.
    pub(crate) cpus: u32,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// The first `model name` of /proc/cpuinfo.
    pub(crate) cpu_model: String,
}

/// One measured quantity, causeway's value beside a peer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    /// What was measured, snake_case (`tls_new_conns_per_sec`).
    pub(crate) name: String,
    /// Its unit (`1/s`, `us`, `Gbit/s`, `KiB`).
    pub(crate) unit: String,
    /// causeway's value.
    pub(crate) causeway: f64,
    /// The peer's name (`nginx`, `haproxy`, ...).
    pub(crate) peer: String,
    /// The peer's value.
    pub(crate) peer_value: f64,
    /// Above 1: causeway did better (see the module docs).
    pub(crate) ratio: f64,
    /// Whether a higher value is better.
    pub(crate) higher_is_better: bool,
}

impl Figure {
    /// A figure with its ratio oriented by `higher_is_better`.
    pub(crate) fn new(
        name: &str,
        unit: &str,
        higher_is_better: bool,
        causeway: f64,
        peer: &str,
        peer_value: f64,
    ) -> Self {
        let ratio = if higher_is_better {
            causeway / peer_value
        } else {
            peer_value / causeway
        };
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            causeway,
            peer: peer.to_owned(),
            peer_value,
            ratio,
            higher_is_better,
        }
    }
}

impl Machine {
    /// This machine, from the standard library and /proc.
    pub(crate) fn probe() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus,
            kernel,
            cpu_model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_says_causeway_did_better_above_one() {
        let up = Figure::new("r", "1/s", true, 200.0, "nginx", 100.0);
        assert_eq!(up.ratio, 2.0);
        let down = Figure::new("p99", "us", false, 50.0, "nginx", 100.0);
        assert_eq!(down.ratio, 2.0);
    }

    #[test]
    fn the_json_has_exactly_the_shared_fields() {
        let r = Results {
            scenario: "tls".to_owned(),
            machine: Machine {
                cpus: 2,
                kernel: "k".to_owned(),
                cpu_model: "m".to_owned(),
            },
            placement: BTreeMap::from([("generator".to_owned(), "cpu 0".to_owned())]),
            figures: vec![Figure::new("x", "1/s", true, 1.0, "nginx", 2.0)],
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&v), ["figures", "machine", "placement", "scenario"]);
        assert_eq!(keys(&v["machine"]), ["cpu_model", "cpus", "kernel"]);
        assert_eq!(
            keys(&v["figures"][0]),
            [
                "causeway",
                "higher_is_better",
                "name",
                "peer",
                "peer_value",
                "ratio",
                "unit"
            ]
        );
        let back: Results = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
