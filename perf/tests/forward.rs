//! End to end: `causeway-perf forward --quick` and `policy-scale --quick`
//! build real labs, send real traffic through causeway and through Linux,
//! and write their reports. Checked: every figure is there, finite and
//! positive, with its ratio consistent with its two values; every run of
//! `forward` says what was offered, what was forwarded and whether the
//! generator bound it; that the XDP sink (the default) counted what the
//! forwarder says it forwarded; never how large any of them is (timings
//! are not pass/fail). Every lab (namespaces, and the XDP programs in
//! them) is gone afterwards, whether the scenario passed or failed.
//!
//! Needs root, the `causeway` binary in the same target directory
//! (`cargo build --release --bin causeway`), nft and ping.

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

/// Runs a quick scenario (with `extra` arguments) and returns its report.
fn scenario(name: &str, tag: &str, extra: &[&str]) -> Value {
    let json =
        std::env::temp_dir().join(format!("causeway-perf-{name}-{}.json", std::process::id()));
    // Lab names the suite's leftover check recognises: t, letters, digits, x, digits.
    let prefix = format!("t{tag}{}", std::process::id() % 100_000);
    let out = Command::new(BIN)
        .args([name, "--quick", "--seconds", "0.5", "--json"])
        .arg(&json)
        .args(["--lab-prefix", &prefix, "--causeway"])
        .arg(causeway())
        .args(extra)
        .output()
        .expect("run causeway-perf");
    // Cleaned up whether it passed or failed: checked first.
    common::assert_no_lab_left(&prefix);
    assert!(
        out.status.success(),
        "causeway-perf {name} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the report was written");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("the report is JSON")
}

/// Checks the figures `names` of `report`, all in `unit`, better when
/// higher or lower as `higher_is_better` says.
fn check_figures_in(report: &Value, names: &[String], unit: &str, higher_is_better: bool) {
    let figures = report["figures"].as_array().expect("figures");
    for name in names {
        let f = figures
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no figure {name} in {report:#}"));
        let value = |k: &str| {
            let v = f[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {k} is not a number"));
            assert!(v.is_finite() && v > 0.0, "{name}: {k} = {v}");
            v
        };
        let (ours, theirs, ratio) = (value("causeway"), value("peer_value"), value("ratio"));
        assert_eq!(f["higher_is_better"], higher_is_better, "{name}");
        let expected = if higher_is_better {
            ours / theirs
        } else {
            theirs / ours
        };
        assert!(
            (ratio - expected).abs() <= 1e-9 * ratio.max(1.0),
            "{name}: ratio {ratio} is not {expected}"
        );
        assert!(f["peer"].is_string() && f["unit"] == unit, "{name}");
    }
}

fn check_figures(report: &Value, scenario: &str, names: &[String]) {
    assert_eq!(report["scenario"], scenario);
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["kernel"].is_string());
    assert!(report["machine"]["cpu_model"].is_string());
    for party in ["generator", "sink", "causeway"] {
        assert!(
            report["placement"][party].is_string(),
            "placement of {party}"
        );
    }
    check_figures_in(report, names, "pps", true);
}

#[test]
fn forward_quick_reports_causeway_and_linux_at_each_rule_count() {
    let report = scenario("forward", "pf", &[]);
    let mut names: Vec<String> = [0, 1000]
        .iter()
        .flat_map(|r| ["linear", "set"].map(|f| format!("pps rules={r} nft={f}")))
        .collect();
    // In-kernel XDP forwarding at 0 rules: it must have forwarded (pps > 0).
    names.push("pps rules=0 xdp".to_owned());
    check_figures(&report, "forward", &names);
    // CPU per packet at the fixed rate, beside every peer: lower is better.
    let costs: Vec<String> = names.iter().map(|n| n.replacen("pps", "cpu", 1)).collect();
    check_figures_in(&report, &costs, "ns/pkt", false);
    // Every run says what was offered, what arrived, and whether the
    // generator bound it or was held back; the cost runs are at the
    // default 250 000 pps.
    let measures = report["measures"].as_array().expect("measures");
    let has = |name: &str| measures.iter().any(|m| m["name"] == name);
    for who in ["causeway", "linux-nft-linear", "linux-nft-set"] {
        for rules in [0, 1000] {
            for rate in ["max", "250000pps"] {
                for what in [
                    "offered",
                    "forwarded",
                    "generator-bound",
                    "generator held back",
                ] {
                    let name = format!("{who} rules={rules} rate={rate} {what}");
                    assert!(has(&name), "no measure {name} in {measures:#?}");
                }
            }
        }
    }
    assert!(has("causeway rules=0 rate=250000pps worker busy"));
    assert!(has(
        "linux-xdp-fwd rules=0 rate=250000pps forwarder CPU kernel"
    ));
    assert!(report["placement"]["cost"].is_string());
    assert!(report["placement"]["load"].is_string());
    assert!(report["placement"]["linux"].is_string());
    assert!(report["placement"]["linux-xdp-fwd"].is_string());
    // By default island B's receive is not steered: every forwarder pays
    // for it on its own CPU, and the XDP sink counts and drops there.
    let sink = report["placement"]["sink"].as_str().unwrap();
    assert!(
        sink.contains("island B's receive runs on the forwarder's CPU"),
        "{sink}"
    );
    assert!(sink.contains("XDP on island B's eth0"), "{sink}");
    // The sink's map counted what the forwarder says it forwarded, in
    // every run where the forwarder counts (causeway's transmits on port
    // b, Linux's ForwDatagrams). Tolerance: 0.1% or 16 frames, for a
    // frame in flight at a read.
    let value = |name: &str| {
        measures
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("no measure {name} in {measures:#?}"))
    };
    for who in ["causeway", "linux-nft-linear", "linux-nft-set"] {
        for rules in [0, 1000] {
            for rate in ["max", "250000pps"] {
                let at = format!("{who} rules={rules} rate={rate}");
                let sink = value(&format!("{at} sink counted"));
                let forwarder = value(&format!("{at} forwarder counted"));
                assert!(forwarder > 0.0, "{at}: nothing forwarded");
                assert!(
                    (sink - forwarder).abs() <= (forwarder * 0.001).max(16.0),
                    "{at}: the XDP sink counted {sink}, the forwarder {forwarder}"
                );
            }
        }
    }
    // The XDP peer's redirects are counted by nobody but the sink.
    assert!(value("linux-xdp-fwd rules=0 rate=250000pps sink counted") > 0.0);
    let xdp = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "pps rules=0 xdp")
        .unwrap();
    assert_eq!(xdp["peer"], "linux-xdp-fwd");
}

#[test]
fn policy_scale_quick_reports_causeway_against_itself_at_zero_rules() {
    // The old placement, island B's receive steered to CPU 0 by RPS, and
    // the UDP sink are still there to compare with.
    let report = scenario(
        "policy-scale",
        "ps",
        &["--island-b-rx-cpu", "0", "--sink", "udp"],
    );
    let sink = report["placement"]["sink"].as_str().unwrap();
    assert!(
        sink.contains("island B's receive softirq steered to CPU 0 by RPS"),
        "{sink}"
    );
    assert!(sink.contains("UDP socket in island B"), "{sink}");
    let names: Vec<String> = [0, 1000].iter().map(|r| format!("pps rules={r}")).collect();
    check_figures(&report, "policy-scale", &names);
    let zero = &report["figures"][0];
    assert_eq!(zero["peer"], "causeway-0-rules");
    assert!((zero["ratio"].as_f64().unwrap() - 1.0).abs() < 1e-12);
}
