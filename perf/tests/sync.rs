//! End to end: `causeway-perf sync --quick` starts a real etcd and a lab,
//! writes an inventory as calicoctl does, runs `causeway sync` against
//! them, makes single changes and a churn, and writes its report.
//! Checked: the figures are there, finite and positive, each beside the
//! etcd floor with its ratio consistent, the goals are judged, and neither
//! a lab nor an etcd is left; never how large a figure is (timings are
//! not pass/fail).
//!
//! Needs root, etcd (Debian: etcd-server) and the `causeway` binary in the
//! same target directory (`cargo build --release --bin causeway`).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_causeway-perf");

/// `causeway` beside `causeway-perf`, or a clear failure.
fn causeway() -> PathBuf {
    let bin = Path::new(BIN).with_file_name("causeway");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release --bin causeway`",
        bin.display()
    );
    bin
}

#[test]
fn sync_quick_reports_write_to_enforced_beside_the_etcd_floor() {
    let json = std::env::temp_dir().join(format!("causeway-perf-sync-{}.json", std::process::id()));
    // Lab names the suite's leftover check recognises: t, letters, digits, x, digits.
    let prefix = format!("tsy{}", std::process::id() % 100_000);
    let out = Command::new(BIN)
        .args(["sync", "--quick", "--churn-seconds", "2", "--json"])
        .arg(&json)
        .args(["--lab-prefix", &prefix, "--causeway"])
        .arg(causeway())
        .output()
        .expect("run causeway-perf");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "causeway-perf sync failed ({}):\n{stderr}",
        out.status
    );
    assert!(stderr.contains("goal: p99 etcd write"), "{stderr}");
    let text = std::fs::read_to_string(&json).expect("the report was written");
    let _ = std::fs::remove_file(&json);
    common::assert_no_lab_left(&prefix);
    let etcd = Command::new("pgrep")
        .args(["-f", "--", "--name causeway-perf"])
        .output()
        .unwrap();
    let etcd = String::from_utf8_lossy(&etcd.stdout);
    assert!(etcd.trim().is_empty(), "etcd left running: {etcd}");

    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(report["scenario"], "sync");
    for party in ["appliance", "sync", "etcd", "writer", "workload"] {
        assert!(
            report["placement"][party].is_string(),
            "placement of {party}"
        );
    }
    assert!(
        report["placement"]["workload"]
            .as_str()
            .unwrap()
            .contains("our own generator"),
        "the data's origin is said"
    );
    let figures = report["figures"].as_array().expect("figures");
    for name in [
        "write_to_enforced_p50 resources=1112",
        "write_to_enforced_p99 resources=1112",
        "churn_lag_max rate=500",
    ] {
        let f = figures
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no figure {name} in {report:#}"));
        let value = |k: &str| {
            let v = f[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {k} is not a number"));
            assert!(v.is_finite() && v > 0.0, "{name}: {k} = {v}");
            v
        };
        let (ours, theirs, ratio) = (value("causeway"), value("peer_value"), value("ratio"));
        assert_eq!(f["higher_is_better"], false, "{name}");
        assert!(
            (ratio - theirs / ours).abs() <= 1e-9 * ratio.max(1.0),
            "{name}: ratio {ratio} is not {theirs} / {ours}"
        );
        assert_eq!(f["peer"], "etcd-watch-floor", "{name}");
    }
    // The initial sync, or (when it fails) the inventory through the watch.
    assert!(
        figures.iter().any(|f| {
            let n = f["name"].as_str().unwrap_or("");
            n.starts_with("initial_sync ") || n.starts_with("inventory_through_watch ")
        }),
        "{report:#}"
    );
    let goals = report["goals"].as_array().expect("goals");
    assert!(goals.len() >= 2, "{report:#}");
    for g in goals {
        assert!(g["met"].is_boolean() && g["value"].is_f64(), "{g}");
    }
    let held = report["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("resources the appliance holds"))
        })
        .expect("the count of held resources");
    assert_eq!(held["value"], 1112.0);
}
