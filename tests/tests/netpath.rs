//! The packet path under abuse (issue 19, items 5 and 7) on labs: a scan of
//! a connected subnet, martians and directed broadcasts, traffic no
//! endpoint claims, and an appliance with no policy at all.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use causeway_tests::{Lab, Reaped, causeway_bin, ok, require, sh, wait_for};

/// `tests/python/raw_frames.py`: hand-made frames, and a sniffer.
fn raw_frames() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/raw_frames.py")
        .display()
        .to_string()
}

/// The lab's configuration file.
fn config(lab: &Lab) -> PathBuf {
    PathBuf::from(format!("/run/causeway/lab/{}/config.yaml", lab.name))
}

/// Rewrites the lab's configuration: `from` (which must be there) → `to`.
fn edit_config(lab: &Lab, from: &str, to: &str) {
    let path = config(lab);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(from),
        "{from:?} not in {}:\n{text}",
        path.display()
    );
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Starts the appliance by hand (`causeway run`, as an operator would),
/// without `lab start`'s wait for a ping to cross: an appliance that
/// denies the lab's traffic never passes that wait. Killed when dropped;
/// returns once its API answers.
fn run_by_hand(lab: &Lab) -> Reaped {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/run/causeway/lab/{}/appliance.log", lab.name))
        .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw")])
        .arg(causeway_bin())
        .args(["run", "--config"])
        .arg(config(lab))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = Reaped(child);
    let up = wait_for(Duration::from_secs(20), || {
        sh(&format!(
            "{} stats --lab {} -o json",
            causeway_bin().display(),
            lab.name
        ))
        .status
        .success()
        .then_some(())
    });
    assert!(up.is_some(), "the appliance's API did not answer");
    // The workers run once the API answers; give the XDP sockets a moment.
    std::thread::sleep(Duration::from_millis(500));
    child
}

/// Stops an appliance started by [`run_by_hand`] and waits until it is gone.
fn stop(mut appliance: Reaped) {
    let _ = sh(&format!("kill -TERM {}", appliance.0.id()));
    let _ = appliance.0.wait();
}

/// Whether island A's pings reach island B (IPv4).
fn pings(lab: &Lab) -> bool {
    lab.try_exec("a", "ping -c2 -i0.3 -W1 10.2.0.2")
        .status
        .success()
}

fn mac(lab: &Lab, role: &str, iface: &str) -> String {
    lab.exec(role, &format!("cat /sys/class/net/{iface}/address"))
        .trim()
        .to_owned()
}

#[test]
fn a_scan_of_a_connected_subnet_leaves_a_bounded_neighbour_table_and_counts_the_rest() {
    require("python3", "python3");
    let lab = Lab::up("ns");
    // A larger connected subnet behind port b (connected routes are read at
    // start): 10.3.0.0/20, 4094 hosts, none of which exists.
    lab.exec("gw", "ip addr add 10.3.0.1/20 dev b0");
    lab.exec("a", "ip route add 10.3.0.0/20 via 10.1.0.1");
    ok(&format!(
        "{} lab start --name {}",
        causeway_bin().display(),
        lab.name
    ));
    // 2000 addresses, one datagram each, as fast as python sends them.
    lab.exec(
        "a",
        "python3 -c \"import socket, ipaddress\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         base = int(ipaddress.IPv4Address('10.3.1.0'))\n\
         for i in range(2000):\n    s.sendto(b'scan', (str(ipaddress.IPv4Address(base + i)), 9))\n\"",
    );
    // Let the neighbour manager take every request.
    std::thread::sleep(Duration::from_secs(1));
    let entries = |lab: &Lab| {
        lab.exec("gw", "ip neigh show dev b0")
            .lines()
            .filter(|l| l.starts_with("10.3."))
            .count()
    };
    let during = entries(&lab);
    let stats = lab.stats();
    let n = &stats["neighbour_requests"];
    let asked = n["asked"].as_u64().unwrap_or(0);
    let dropped =
        n["dropped_pending"].as_u64().unwrap_or(0) + n["dropped_rate"].as_u64().unwrap_or(0);
    assert!(
        during <= 256,
        "{during} neighbour entries in the kernel after a scan of 2000 addresses (at most neighbours.max_pending = 256): {stats}"
    );
    assert!(asked > 0, "{stats}");
    assert!(
        dropped >= 2000 - 256,
        "the requests over the bounds are counted: {stats}"
    );
    // Entries that never resolve are deleted after 3 s: the table drains.
    let drained = wait_for(Duration::from_secs(10), || {
        (entries(&lab) == 0).then_some(())
    });
    let after = lab.stats();
    assert!(
        drained.is_some(),
        "{} unresolved entries left: {after}",
        entries(&lab)
    );
    assert!(
        after["neighbour_requests"]["unresolved_deleted"]
            .as_u64()
            .unwrap_or(0)
            // The lab's own next hops (the host port's, island B's host) resolve.
            + 3
            >= asked,
        "{after}"
    );
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_bin().display(),
        lab.name
    ));
    assert!(
        metrics.contains("causeway_neighbour_requests_dropped_total{reason=\"rate\"}"),
        "{metrics}"
    );
    // The islands still reach each other.
    assert!(pings(&lab), "{}", lab.log());
}

#[test]
fn a_directed_broadcast_and_martian_sources_are_dropped_and_counted() {
    require("python3", "python3");
    let lab = Lab::up("nm");
    // Without the source check, so that only the martian check stands
    // between a loopback or multicast source and island B.
    edit_config(
        &lab,
        "interface: a0\n    queues: 1\n",
        "interface: a0\n    queues: 1\n    rp_filter: off\n",
    );
    ok(&format!(
        "{} lab start --name {}",
        causeway_bin().display(),
        lab.name
    ));
    lab.exec("a", "ping -c1 -W2 10.2.0.2");
    lab.exec("a", "ping -6 -c1 -W2 fd00:b::2");
    let tags = [
        "legit4", "bcast", "loop4", "mcast4", "zero4", "legit6", "loop6", "mcast6",
    ];
    let mut sniffer = Command::new("ip")
        .args(["netns", "exec", &lab.ns("b"), "python3", &raw_frames()])
        .args(["sniff", "eth0", "3"])
        .args(tags)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in island B");
    let mut line = String::new();
    BufReader::new(sniffer.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let sniffer = Reaped(sniffer);
    let before = lab.stats();
    lab.exec(
        "a",
        &format!(
            "python3 {} send eth0 {} {}",
            raw_frames(),
            mac(&lab, "gw", "a0"),
            [
                "udp,10.1.0.2,10.2.0.2,legit4",
                // The broadcast address of port b's connected 10.2.0.0/24.
                "udp,10.1.0.2,10.2.0.255,bcast",
                "udp,127.0.0.1,10.2.0.2,loop4",
                "udp,224.0.0.5,10.2.0.2,mcast4",
                "udp,0.0.0.0,10.2.0.2,zero4",
                "udp,fd00:a::2,fd00:b::2,legit6",
                "udp,::1,fd00:b::2,loop6",
                "udp,ff02::1,fd00:b::2,mcast6",
            ]
            .join(" ")
        ),
    );
    let mut sniffer = sniffer;
    let mut line = String::new();
    BufReader::new(sniffer.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let seen: Vec<String> = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(seen, ["legit4", "legit6"], "{}", lab.log());
    let after = lab.stats();
    let more =
        |reason: &str| Lab::port_drops(&after, "a", reason) - Lab::port_drops(&before, "a", reason);
    assert_eq!(more("martian"), 5, "{after}");
    assert_eq!(more("directed_broadcast"), 1, "{after}");
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_bin().display(),
        lab.name
    ));
    for reason in ["martian", "directed_broadcast"] {
        assert!(
            metrics.contains(&format!(
                "causeway_port_drops_total{{port=\"a\",reason=\"{reason}\"}}"
            )),
            "{metrics}"
        );
    }
}

/// Manifests with a policy and an endpoint, neither of which is about the
/// islands' hosts 10.1.0.2 and 10.2.0.2: their traffic is unclaimed.
fn unrelated_policy(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("causeway-unclaimed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: other\n  \
         namespace: island-b\n  labels:\n    role: other\nspec:\n  ips: [10.2.0.99]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: other-ingress\n\
         spec:\n  selector: role == 'other'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n",
    )
    .unwrap();
    dir
}

#[test]
fn traffic_between_unclaimed_addresses_is_dropped_by_default_and_passes_when_allowed() {
    let dir = unrelated_policy("u");
    let lab = Lab::up_with_manifests("nu", &dir);
    let appliance = run_by_hand(&lab);
    assert!(!pings(&lab), "unclaimed traffic crossed by default");
    let stats = lab.stats();
    assert!(
        Lab::port_drops(&stats, "a", "unclaimed") >= 2,
        "counted as unclaimed: {stats}"
    );
    assert_eq!(Lab::port_drops(&stats, "a", "policy"), 0, "{stats}");
    stop(appliance);
    // The knob: `policy.unclaimed: allow`.
    edit_config(&lab, "policy:\n", "policy:\n  unclaimed: allow\n");
    let appliance = run_by_hand(&lab);
    let crossed = wait_for(Duration::from_secs(10), || pings(&lab).then_some(()));
    assert!(
        crossed.is_some(),
        "unclaimed: allow forwards: {}",
        lab.log()
    );
    assert_eq!(Lab::port_drops(&lab.stats(), "a", "unclaimed"), 0);
    stop(appliance);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_appliance_started_with_no_policy_forwards_nothing() {
    require("python3", "python3");
    let lab = Lab::up("np");
    // The lab without --manifests says `unclaimed: allow` (a bridge);
    // without it, the appliance's default stands.
    let path = config(&lab);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("policy:\n  unclaimed: allow\n", "", 1)).unwrap();
    assert!(
        !std::fs::read_to_string(config(&lab))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.starts_with("policy:") || l.contains("unclaimed:")),
        "no policy section is left"
    );
    let appliance = run_by_hand(&lab);
    let stats = lab.stats();
    assert!(
        stats["rules"].as_object().is_none_or(|r| r.is_empty()),
        "{stats}"
    );
    assert!(!pings(&lab), "an appliance with no policy forwarded");
    let tcp = lab.try_exec(
        "a",
        "timeout 4 python3 -c \"import socket; socket.create_connection(('10.2.0.2', 8081), timeout=1.5)\"",
    );
    assert!(!tcp.status.success(), "a TCP connection crossed");
    let after = lab.stats();
    assert!(
        Lab::port_drops(&after, "a", "unclaimed") >= 3,
        "counted as unclaimed: {after}"
    );
    assert_eq!(Lab::port_counter(&after, "b", "tx_packets"), 0, "{after}");
    stop(appliance);
}
