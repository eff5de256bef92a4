//! End to end: the real `causeway-perf classify` binary generates
//! ClassBench-like sets (seeds and profiles no other test uses), classifies
//! their traces, and every answer is checked against a first-match scan
//! written here from the file formats alone: its own parser, its own IPv4
//! arithmetic, none of the dataplane's code.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const BIN: &str = env!("CARGO_BIN_EXE_causeway-perf");

/// One filter as the file says it, in IPv4 integers.
struct Filter {
    src: (u32, u32),
    dst: (u32, u32),
    sport: (u16, u16),
    dport: (u16, u16),
    /// `None`: any.
    proto: Option<u8>,
}

/// (address, mask) of `a.b.c.d/len`.
fn net(text: &str) -> (u32, u32) {
    let (addr, len) = text.split_once('/').expect("prefix has a /");
    let addr = u32::from(addr.parse::<Ipv4Addr>().expect("IPv4 address"));
    let len: u32 = len.parse().expect("prefix length");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (addr & mask, mask)
}

fn range(lo: &str, hi: &str) -> (u16, u16) {
    (lo.parse().expect("port"), hi.parse().expect("port"))
}

fn hex(text: &str) -> u8 {
    u8::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex byte")
}

/// `@src/len <tab> dst/len <tab> lo : hi <tab> lo : hi <tab> 0xPP/0xMM ...`
fn parse_filters(text: &str) -> Vec<Filter> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.trim_start_matches('@').split('\t').collect();
            let ports = |s: &str| {
                let (lo, hi) = s.split_once(':').expect("LO : HI");
                range(lo.trim(), hi.trim())
            };
            let (value, mask) = f[4].split_once('/').expect("proto/mask");
            Filter {
                src: net(f[0]),
                dst: net(f[1]),
                sport: ports(f[2]),
                dport: ports(f[3]),
                proto: (hex(mask) == 0xff).then(|| hex(value)),
            }
        })
        .collect()
}

/// `src dst sport dport proto` with decimal addresses.
fn parse_packets(text: &str) -> Vec<(u32, u32, u16, u16, u8)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let c: Vec<&str> = line.split_whitespace().collect();
            (
                c[0].parse().expect("src"),
                c[1].parse().expect("dst"),
                c[2].parse().expect("sport"),
                c[3].parse().expect("dport"),
                c[4].parse().expect("proto"),
            )
        })
        .collect()
}

fn first_match(
    filters: &[Filter],
    (src, dst, sport, dport, proto): (u32, u32, u16, u16, u8),
) -> i64 {
    filters
        .iter()
        .position(|f| {
            src & f.src.1 == f.src.0
                && dst & f.dst.1 == f.dst.0
                && (f.sport.0..=f.sport.1).contains(&sport)
                && (f.dport.0..=f.dport.1).contains(&dport)
                && f.proto.is_none_or(|p| p == proto)
        })
        .map_or(-1, |i| i as i64)
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run causeway-perf");
    assert!(
        out.status.success(),
        "causeway-perf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("causeway-perf-{name}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn check(profile: &str, rules: usize, seed: u64, packets: usize) {
    let name = format!("{profile}-{rules}-{seed}");
    let (rules_file, trace_file, out_file) = (
        scratch(&format!("{name}.rules")),
        scratch(&format!("{name}.trace")),
        scratch(&format!("{name}.out")),
    );
    run(&[
        "classify",
        "--generate",
        &rules.to_string(),
        "--seed",
        &seed.to_string(),
        "--profile",
        profile,
        "--rules-out",
        s(&rules_file),
        "--trace-out",
        s(&trace_file),
        "--packets",
        &packets.to_string(),
    ]);
    let out = run(&[
        "classify",
        "--rules",
        s(&rules_file),
        "--trace",
        s(&trace_file),
        "--out",
        s(&out_file),
        "--min-time",
        "0.05",
        "--no-peer",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lookups/s"), "{stderr}");
    assert!(stderr.contains("built in"), "{stderr}");

    let filters = parse_filters(&std::fs::read_to_string(&rules_file).unwrap());
    let trace = parse_packets(&std::fs::read_to_string(&trace_file).unwrap());
    let answers = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(filters.len(), rules);
    assert_eq!(trace.len(), packets);
    let answers: Vec<i64> = answers
        .lines()
        .map(|l| l.parse().expect("an index or -1"))
        .collect();
    assert_eq!(answers.len(), packets, "one line per packet");
    let mut hits = 0;
    for (n, (&packet, &answer)) in trace.iter().zip(&answers).enumerate() {
        let want = first_match(&filters, packet);
        assert_eq!(answer, want, "{name}: packet {n} {packet:?}");
        hits += usize::from(want >= 0);
    }
    // The trace aims at rules: most packets must hit, or this tests little.
    assert!(
        hits * 10 > packets * 7,
        "{name}: only {hits} of {packets} packets match"
    );
}

#[test]
fn acl_set_matches_brute_force() {
    check("acl", 6000, 9_101, 12_000);
}

#[test]
fn fw_set_matches_brute_force() {
    check("fw", 4000, 9_202, 12_000);
}

#[test]
fn ipc_set_matches_brute_force() {
    check("ipc", 5000, 9_303, 12_000);
}

#[test]
fn stdout_and_the_linear_peer_agree() {
    let (rules_file, trace_file) = (scratch("peer.rules"), scratch("peer.trace"));
    run(&[
        "classify",
        "--generate",
        "500",
        "--seed",
        "9404",
        "--profile",
        "fw",
        "--rules-out",
        s(&rules_file),
        "--trace-out",
        s(&trace_file),
        "--packets",
        "300",
    ]);
    let out = run(&[
        "classify",
        "--rules",
        s(&rules_file),
        "--trace",
        s(&trace_file),
        "--min-time",
        "0.01",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("all agree"), "{stderr}");
    let filters = parse_filters(&std::fs::read_to_string(&rules_file).unwrap());
    let trace = parse_packets(&std::fs::read_to_string(&trace_file).unwrap());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<i64> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    let want: Vec<i64> = trace.iter().map(|&p| first_match(&filters, p)).collect();
    assert_eq!(answers, want);
}

/// The public ClassBench sets in `../shared/classbench/` (made by
/// db_generator from the acl1, fw1 and ipc1 seeds): read as they come,
/// without a trace (one is made from the rules), and every packet's
/// answer agrees with the linear first-match scan.
#[test]
fn the_public_classbench_sets_classify_as_the_linear_scan_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/classbench");
    assert!(
        dir.join("README.md").exists(),
        "the public ClassBench sets are not at {} (the repository's ../shared)",
        dir.display()
    );
    for set in ["acl1_1k", "fw1_1k", "ipc1_1k"] {
        let out = run(&[
            "classify",
            "--rules",
            s(&dir.join(set)),
            "--packets",
            "3000",
            "--min-time",
            "0.01",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("all agree"), "{set}: {stderr}");
        assert!(stderr.contains("made from the rules"), "{set}: {stderr}");
        let answers = String::from_utf8(out.stdout).unwrap();
        let hits = answers.lines().filter(|l| *l != "-1").count();
        assert_eq!(answers.lines().count(), 3000, "{set}: one line per packet");
        assert!(
            hits > 2000,
            "{set}: only {hits} of 3000 packets match a rule"
        );
    }
}

#[test]
fn bad_lines_are_reported_with_file_and_line() {
    let (rules_file, trace_file) = (scratch("bad.rules"), scratch("bad.trace"));
    std::fs::write(
        &rules_file,
        "@10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n\
         @10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0x0F\t0x0000/0x0000\n",
    )
    .unwrap();
    std::fs::write(&trace_file, "167772161\t1\t1000\t80\t6\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "classify",
            "--rules",
            s(&rules_file),
            "--trace",
            s(&trace_file),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.rules"), "{stderr}");
    assert!(stderr.contains("line 2: protocol mask `0x0F`"), "{stderr}");
}

#[test]
fn the_figures_go_to_json_and_the_report_draws_them() {
    let dir = scratch("report");
    std::fs::create_dir_all(&dir).unwrap();
    let (rules, trace) = (dir.join("rules"), dir.join("trace"));
    let out = run(&[
        "classify",
        "--generate",
        "300",
        "--seed",
        "77",
        "--rules-out",
        s(&rules),
        "--trace-out",
        s(&trace),
        "--packets",
        "2000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = dir.join("classify.json");
    let out = run(&[
        "classify",
        "--rules",
        s(&rules),
        "--trace",
        s(&trace),
        "--min-time",
        "0.05",
        "--out",
        s(&dir.join("answers")),
        "--json",
        s(&json),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let f = &doc["figures"][0];
    let (ours, peer, ratio) = (
        f["causeway"].as_f64().unwrap(),
        f["peer_value"].as_f64().unwrap(),
        f["ratio"].as_f64().unwrap(),
    );
    assert!(
        ours > 0.0 && peer > 0.0 && ours.is_finite() && peer.is_finite(),
        "{doc}"
    );
    assert!((ratio - ours / peer).abs() < 1e-6 * ratio, "{doc}");
    assert_eq!(f["name"], "lookups/s, 300 rules");

    let md = dir.join("benchmarks.md");
    let plots = dir.join("plots");
    let out = run(&["report", s(&json), "--out", s(&md), "--plots", s(&plots)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("## `classify`"), "{text}");
    assert!(text.contains("| lookups/s, 300 rules |"), "{text}");
    assert!(text.contains("(plots/classify.svg)"), "{text}");
    assert!(
        std::fs::read_to_string(plots.join("classify.svg"))
            .unwrap()
            .starts_with("<svg")
    );
}
