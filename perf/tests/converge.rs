//! End to end: `causeway-perf converge --quick` builds a real lab, applies
//! real changes through the control API with `wait_enforced`, replaces the
//! same rules in nftables, and writes its report. Checked: every figure is
//! there, finite and positive, oriented lower-is-better with its ratio
//! consistent with its two values, and no lab is left; never how large a
//! figure is (timings are not pass/fail).
//!
//! Needs root, the `causeway` binary in the same target directory
//! (`cargo build --release --bin causeway`) and nft.

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
fn converge_quick_reports_causeway_against_nft_f() {
    let json = std::env::temp_dir().join(format!(
        "causeway-perf-converge-{}.json",
        std::process::id()
    ));
    // Lab names the suite's leftover check recognises: t, letters, digits, x, digits.
    let prefix = format!("tcv{}", std::process::id() % 100_000);
    let out = Command::new(BIN)
        .args(["converge", "--quick", "--json"])
        .arg(&json)
        .args(["--lab-prefix", &prefix, "--causeway"])
        .arg(causeway())
        .output()
        .expect("run causeway-perf");
    assert!(
        out.status.success(),
        "causeway-perf converge failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("goal: apply_to_enforced_p99"), "{stdout}");
    let text = std::fs::read_to_string(&json).expect("the report was written");
    let _ = std::fs::remove_file(&json);
    common::assert_no_lab_left(&prefix);
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");

    assert_eq!(report["scenario"], "converge");
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["kernel"].is_string());
    for party in ["causeway", "client", "linux", "workload"] {
        assert!(
            report["placement"][party].is_string(),
            "placement of {party}"
        );
    }
    let figures = report["figures"].as_array().expect("figures");
    for name in [
        "apply_to_enforced_p50 rules=1000",
        "apply_to_enforced_p99 rules=1000",
        "apply_round_trip_p50 rules=1000",
        "apply_round_trip_p99 rules=1000",
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
        assert_eq!(f["peer"], "linux-nft-f", "{name}");
        assert_eq!(f["unit"], "us", "{name}");
    }
}
