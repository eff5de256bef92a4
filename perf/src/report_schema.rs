//! The JSON every whole-system scenario writes (`--json FILE`): the machine,
//! where each party ran, and one figure per measured point, causeway beside
//! its peer with their ratio. Shared by the `forward`, `policy-scale` and
//! `tls` scenarios, so results from all of them read the same way. A
//! scenario may add values without a peer and the goals it checks (`sync`).
#![forbid(unsafe_code)]

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    /// The scenario's name (`forward`, `policy-scale`, `tls`).
    pub(crate) scenario: String,
    /// The machine it ran on.
    pub(crate) machine: Machine,
    /// Who ran where: party (`generator`, `dataplane`, ...) → CPUs and notes.
    pub(crate) placement: BTreeMap<String, String>,
    /// The measured points, in the order they were measured.
    pub(crate) figures: Vec<Figure>,
    /// Values with no peer to set them beside (counts, rates, where the
    /// time went), for the reader of the figures; absent in older results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) measures: Vec<Measure>,
    /// The goals the scenario checks its figures against, met or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) goals: Vec<Goal>,
}

/// A value with no peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Measure {
    /// What was measured, e.g. `pushes during the churn`.
    pub(crate) name: String,
    /// Its unit, e.g. `us`, `count`.
    pub(crate) unit: String,
    pub(crate) value: f64,
}

/// A goal: a figure against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Goal {
    /// The goal as its issue states it, e.g. `p99 write → enforced < 100 ms`.
    pub(crate) name: String,
    /// The unit of `value` and `limit`.
    pub(crate) unit: String,
    /// The measured value the goal is about.
    pub(crate) value: f64,
    /// The limit it must stay below.
    pub(crate) limit: f64,
    pub(crate) met: bool,
    /// How the value was made, or why the goal could not be judged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) note: String,
}

impl Measure {
    pub(crate) fn new(name: impl Into<String>, unit: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
            value,
        }
    }
}

impl Goal {
    /// Met when `value` is below `limit`.
    pub(crate) fn below(
        name: impl Into<String>,
        unit: impl Into<String>,
        value: f64,
        limit: f64,
        note: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
            value,
            limit,
            met: value < limit,
            note: note.into(),
        }
    }
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// Online CPUs.
    pub(crate) cpus: u32,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// The first `model name` of /proc/cpuinfo.
    pub(crate) cpu_model: String,
}

/// One measured point: causeway's value beside its peer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    /// What was measured, e.g. `pps rules=1000 nft=linear`.
    pub(crate) name: String,
    /// Its unit, e.g. `pps`, `us`.
    pub(crate) unit: String,
    /// causeway's value.
    pub(crate) causeway: f64,
    /// Who the peer is, e.g. `linux-nft-linear`.
    pub(crate) peer: String,
    /// The peer's value.
    pub(crate) peer_value: f64,
    /// causeway / peer when higher is better, peer / causeway otherwise:
    /// above 1 means causeway did better.
    pub(crate) ratio: f64,
    /// Whether a larger value is better (pps) or worse (latency).
    pub(crate) higher_is_better: bool,
}

impl Figure {
    /// A figure with its ratio computed (see [`Figure::ratio`]).
    pub(crate) fn new(
        name: impl Into<String>,
        unit: impl Into<String>,
        causeway: f64,
        peer: impl Into<String>,
        peer_value: f64,
        higher_is_better: bool,
    ) -> Self {
        let ratio = if higher_is_better {
            causeway / peer_value
        } else {
            peer_value / causeway
        };
        Self {
            name: name.into(),
            unit: unit.into(),
            causeway,
            peer: peer.into(),
            peer_value,
            ratio,
            higher_is_better,
        }
    }
}

impl Machine {
    /// This machine, from `/proc` and `uname`.
    pub(crate) fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
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

impl Report {
    /// Writes the report as pretty JSON to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_causeway_over_peer_when_higher_is_better() {
        let f = Figure::new("pps", "pps", 200.0, "linux", 100.0, true);
        assert_eq!(f.ratio, 2.0);
        let f = Figure::new("p99", "us", 50.0, "linux", 100.0, false);
        assert_eq!(f.ratio, 2.0);
    }

    #[test]
    fn round_trips_through_the_shared_json_shape() {
        let r = Report {
            scenario: "forward".into(),
            machine: Machine::detect(),
            placement: BTreeMap::from([("generator".into(), "cpu 0".into())]),
            figures: vec![Figure::new("pps", "pps", 1.0, "linux", 2.0, true)],
            measures: Vec::new(),
            goals: Vec::new(),
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in ["scenario", "machine", "placement", "figures"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        for key in ["cpus", "kernel", "cpu_model"] {
            assert!(v["machine"].get(key).is_some(), "{key}");
        }
        let f = &v["figures"][0];
        for key in [
            "name",
            "unit",
            "causeway",
            "peer",
            "peer_value",
            "ratio",
            "higher_is_better",
        ] {
            assert!(f.get(key).is_some(), "{key}");
        }
        assert!(v.get("measures").is_none() && v.get("goals").is_none());
        assert_eq!(serde_json::from_value::<Report>(v).unwrap(), r);
        let with = Report {
            measures: vec![Measure::new("pushes", "count", 3.0)],
            goals: vec![Goal::below("p99 < 100 ms", "us", 50.0, 100.0, "")],
            ..r
        };
        let v = serde_json::to_value(&with).unwrap();
        assert_eq!(v["goals"][0]["met"], true);
        assert_eq!(serde_json::from_value::<Report>(v).unwrap(), with);
    }
}
