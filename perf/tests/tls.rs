//! End to end: the real `causeway-perf tls --quick` against the real
//! causeway binary and nginx, in its own network namespace. Checks the
//! shape of the results only — every figure present, finite and positive,
//! its ratio oriented as the schema says — never how large a figure is:
//! timings do not go into pass/fail tests.
//!
//! Needs root (network namespaces), nginx with its stream module, and
//! `target/release/causeway` (cargo build --release --bin causeway). A
//! missing one fails the test with what to do; nothing is skipped.

use std::{path::PathBuf, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_causeway-perf");

/// Every figure the scenario must report against each peer.
const FIGURES: &[(&str, bool)] = &[
    ("tls_idle_memory_per_conn", false),
    ("tls_new_conns_per_sec", true),
    ("tls_new_conns_p50_latency", false),
    ("tls_new_conns_p99_latency", false),
    ("tls_new_conns_server_cpu_per_req", false),
    ("tls_keepalive_per_sec", true),
    ("tls_keepalive_p50_latency", false),
    ("tls_keepalive_p99_latency", false),
    ("tls_keepalive_server_cpu_per_req", false),
    ("tls_bulk_gbit_per_sec", true),
    ("tls_bulk_server_cpu_per_mib", false),
    ("tcp_new_conns_per_sec", true),
    ("tcp_new_conns_p50_latency", false),
    ("tcp_new_conns_p99_latency", false),
    ("tcp_new_conns_server_cpu_per_req", false),
    ("tcp_keepalive_per_sec", true),
    ("tcp_keepalive_p50_latency", false),
    ("tcp_keepalive_p99_latency", false),
    ("tcp_keepalive_server_cpu_per_req", false),
    ("tcp_bulk_gbit_per_sec", true),
    ("tcp_bulk_server_cpu_per_mib", false),
];

/// `target/<profile>/causeway`, beside this test's causeway-perf.
fn causeway_binary() -> PathBuf {
    let path = PathBuf::from(BIN).with_file_name("causeway");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release --bin causeway` \
         (and run this test with --release so both binaries sit in target/release)",
        path.display()
    );
    path
}

fn require_nginx() {
    let found = Command::new("sh")
        .args(["-c", "command -v nginx || test -x /usr/sbin/nginx"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found && std::path::Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").is_file(),
        "the tls scenario's peer is nginx with its stream module: \
         apt-get install nginx libnginx-mod-stream (scripts/deps.sh installs both)"
    );
}

#[test]
fn the_quick_tls_scenario_reports_every_figure_against_nginx() {
    require_nginx();
    let causeway = causeway_binary();
    let dir = std::env::temp_dir().join(format!("cwperf-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("tls.json");
    let out = Command::new(BIN)
        .args(["tls", "--quick", "--json"])
        .arg(&json)
        .arg("--causeway")
        .arg(&causeway)
        .output()
        .expect("running causeway-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "causeway-perf tls --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json).expect("the JSON results");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["scenario"], "tls");
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 2);
    assert!(v["machine"]["kernel"].is_string());
    assert!(v["machine"]["cpu_model"].is_string());
    let placement = v["placement"].as_object().expect("placement map");
    for role in ["generator", "backends", "causeway", "nginx"] {
        assert!(
            placement[role].is_string(),
            "placement lacks {role}: {text}"
        );
    }
    let figures = v["figures"].as_array().expect("figures");
    for &(name, higher) in FIGURES {
        let f = figures
            .iter()
            .find(|f| f["name"] == name && f["peer"] == "nginx")
            .unwrap_or_else(|| panic!("no figure {name} against nginx in {text}"));
        let num = |k: &str| f[k].as_f64().unwrap_or_else(|| panic!("{name}.{k}"));
        let (ours, theirs, ratio) = (num("causeway"), num("peer_value"), num("ratio"));
        for (k, x) in [("causeway", ours), ("peer_value", theirs), ("ratio", ratio)] {
            assert!(x.is_finite() && x > 0.0, "{name}.{k} = {x}");
        }
        assert_eq!(f["higher_is_better"], higher, "{name}");
        assert!(f["unit"].is_string(), "{name}");
        let expected = if higher { ours / theirs } else { theirs / ours };
        assert!(
            (ratio - expected).abs() <= 1e-9 * expected,
            "{name}: ratio {ratio}, expected {expected}"
        );
    }
    assert_eq!(
        figures.len(),
        FIGURES.len(),
        "unexpected extra figures: {text}"
    );
    // The table went out as it went.
    assert!(stdout.contains("tls_new_conns_per_sec"), "{stdout}");
    // The namespace is gone.
    let name = netns_name(&stdout);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !listed.split_whitespace().any(|n| n == name),
        "namespace {name} left behind: {listed}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The scenario's namespace, as its placement line names it
/// (`network: netns cwperf-tls-PID (loopback only)`).
fn netns_name(stdout: &str) -> String {
    stdout
        .split("netns ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .filter(|n| n.starts_with("cwperf-tls-"))
        .unwrap_or_else(|| panic!("no namespace named in {stdout}"))
        .to_owned()
}
