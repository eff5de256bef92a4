//! Gates on a lab: Calico policy enforced per packet by the dataplane, with
//! real clients (curl, python sockets, ping), live reloads on SIGHUP, and
//! the XDP prefilter.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use causeway_tests::{Lab, ok, require, wait_for};

/// The example manifests, copied so a test can change them.
fn manifests(tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab-policy");
    let dir = std::env::temp_dir().join(format!("causeway-policy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["endpoints.yaml", "policy.yaml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

/// A TCP server in island B on `port` that echoes lines back.
fn echo_server(lab: &Lab, port: u16) -> std::process::Child {
    let script = format!(
        "import socket, threading\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('10.2.0.2', {port})); s.listen(16); print('ready', flush=True)\n\
         def serve(c):\n    f = c.makefile('rwb')\n    for line in f:\n        f.write(line); f.flush()\n\
         while True:\n    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("b"), "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in island B");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

/// Stops a helper process and reaps it.
fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn connects(lab: &Lab, port: u16) -> bool {
    lab.try_exec(
        "a",
        &format!("timeout 4 python3 -c \"import socket; socket.create_connection(('10.2.0.2', {port}), timeout=2)\""),
    )
    .status
    .success()
}

fn rule(stats: &serde_json::Value, name: &str) -> u64 {
    stats["rules"][name][0].as_u64().unwrap_or(0)
}

const ALLOW_HTTP: &str = "security/GlobalNetworkPolicy/security.server-ingress/ingress/0";
const TIER_DEFAULT: &str = "security/default-deny/ingress";

#[test]
fn port_80_connects_port_22_does_not_and_the_deciding_rule_counts() {
    require("curl", "curl");
    let dir = manifests("basic");
    let lab = Lab::start_with_manifests("g", &dir);
    let web = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("b"),
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            "10.2.0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = wait_for(Duration::from_secs(10), || {
        lab.try_exec(
            "b",
            "python3 -c \"import socket; socket.create_connection(('10.2.0.2', 80), timeout=1)\"",
        )
        .status
        .success()
        .then_some(())
    });
    assert!(listening.is_some(), "the web server did not start");
    let ssh = echo_server(&lab, 22);
    let before = lab.stats();
    assert!(connects(&lab, 80), "port 80 is allowed:\n{}", lab.log());
    // A real client over the allowed port: the reply (return traffic) gets back.
    let out = lab.exec(
        "a",
        "curl -s -m 5 -o /dev/null -w '%{http_code}' http://10.2.0.2:80/",
    );
    assert_eq!(out, "200", "curl through the allowed port");
    assert!(!connects(&lab, 22), "port 22 is denied");
    let after = lab.stats();
    assert!(
        rule(&after, ALLOW_HTTP) > rule(&before, ALLOW_HTTP),
        "{after}"
    );
    assert!(
        rule(&after, TIER_DEFAULT) > rule(&before, TIER_DEFAULT),
        "the tier default counted the SSH SYNs: {after}"
    );
    assert!(Lab::port_drops(&after, "a", "policy") > 0, "{after}");
    assert!(after["flows"].as_u64().unwrap() > 0, "{after}");
    // The verdicts are what `causeway policy explain` says.
    let explain = |port: u16| -> serde_json::Value {
        serde_json::from_str(&ok(&format!(
            "{} policy explain -f {} --src 10.1.0.2 --dst 10.2.0.2 --proto tcp --dport {port} -o json",
            causeway_tests::causeway_bin().display(),
            dir.display()
        )))
        .unwrap()
    };
    assert_eq!(explain(80)["verdict"], "allow");
    assert_eq!(explain(22)["verdict"], "deny");
    assert_eq!(explain(22)["tier"], "security");
    stop(web);
    stop(ssh);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_policy_change_cuts_an_established_flow_and_a_bad_one_is_refused() {
    let dir = manifests("reload");
    let lab = Lab::start_with_manifests("r", &dir);
    let server = echo_server(&lab, 80);
    // An established connection, exchanging a line every 100 ms.
    let mut client = Command::new("ip")
        .args(["netns", "exec", &lab.ns("a"), "python3", "-u", "-c"])
        .arg(
            "import socket, sys, time\n\
             s = socket.create_connection(('10.2.0.2', 80), timeout=1); f = s.makefile('rwb')\n\
             for i in range(600):\n    \
                 try:\n        f.write(b'%d\\n' % i); f.flush(); f.readline(); print('ok', i, flush=True)\n    \
                 except Exception as e:\n        print('cut', i, e, flush=True); break\n    \
                 time.sleep(0.1)\n",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The client's lines, read as they come.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(3))
            .unwrap_or_else(|_| "nothing".into())
    };
    let drain = || rx.try_iter().collect::<Vec<_>>();
    for _ in 0..5 {
        let l = next();
        assert!(l.starts_with("ok"), "{l}");
    }
    // A broken manifest: refused whole, the old policy stays.
    std::fs::write(dir.join("broken.yaml"), "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  selector: \"role == \"\n").unwrap();
    let g = lab.reload(Duration::from_secs(3));
    assert_eq!(g, 1, "a bad set must not be published");
    assert!(lab.log().contains("policy reload refused"), "{}", lab.log());
    assert!(
        drain().iter().all(|l| l.starts_with("ok")),
        "the flow survives a refused reload"
    );
    assert!(next().starts_with("ok"), "and goes on");
    assert!(!connects(&lab, 22), "the old policy still denies 22");
    // Now a good change: web traffic is no longer allowed.
    std::fs::remove_file(dir.join("broken.yaml")).unwrap();
    let policy = std::fs::read_to_string(dir.join("policy.yaml"))
        .unwrap()
        .replace("ports: [http]", "ports: [8080]");
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    assert_eq!(
        lab.reload(Duration::from_secs(10)),
        2,
        "the new policy is enforced:\n{}",
        lab.log()
    );
    let mut seen = drain();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !seen.iter().any(|l| l.starts_with("cut")) && std::time::Instant::now() < deadline {
        seen.push(next());
    }
    assert!(
        seen.iter().any(|l| l.starts_with("cut")),
        "the established flow was not cut: {seen:?}"
    );
    assert!(!connects(&lab, 80), "new connections to 80 are denied");
    stop(client);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_do_not_track_deny_drops_in_xdp_before_userspace_sees_it() {
    let dir = manifests("dnt");
    std::fs::write(
        dir.join("prefilter.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: block-client\nspec:\n  \
         order: 1\n  doNotTrack: true\n  applyOnForward: true\n  selector: all()\n  types: [Ingress]\n  \
         ingress:\n    - action: Deny\n      source:\n        nets: [10.1.0.2/32]\n",
    )
    .unwrap();
    // Start with the policy allowing, then add the prefilter by reload, so
    // `lab up --start` sees forwarding first.
    let pre = std::fs::read_to_string(dir.join("prefilter.yaml")).unwrap();
    std::fs::remove_file(dir.join("prefilter.yaml")).unwrap();
    let lab = Lab::start_with_manifests("d", &dir);
    std::fs::write(dir.join("prefilter.yaml"), pre).unwrap();
    assert_eq!(lab.reload(Duration::from_secs(10)), 2, "{}", lab.log());
    let before = lab.stats();
    let out = lab.try_exec("a", "ping -c3 -i0.2 -W1 10.2.0.2");
    assert!(!out.status.success(), "island A's host is blocked");
    let after = lab.stats();
    let xdp = |s: &serde_json::Value| s["xdp"]["drop_prefilter"].as_u64().unwrap();
    assert!(
        xdp(&after) >= xdp(&before) + 3,
        "the XDP prefilter dropped them: {after}"
    );
    let rule = "default/GlobalNetworkPolicy/block-client/ingress/0";
    assert!(
        after["prefilter"][rule][0].as_u64().unwrap_or(0) >= 3,
        "counted per rule: {after}"
    );
    assert_eq!(
        Lab::port_counter(&after, "a", "rx_packets"),
        Lab::port_counter(&before, "a", "rx_packets"),
        "userspace never saw them"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::io::stdout().flush();
}

/// `tests/python/raw_frames.py`: spoofed and forged frames, and a sniffer.
fn raw_frames() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/raw_frames.py")
        .display()
        .to_string()
}

/// The MAC of interface `iface` in the namespace of `role`.
fn mac(lab: &Lab, role: &str, iface: &str) -> String {
    lab.exec(role, &format!("cat /sys/class/net/{iface}/address"))
        .trim()
        .to_owned()
}

/// Sends one hand-made frame per spec (see `raw_frames.py`) from island
/// `role`'s eth0 to the appliance's port `port`.
fn send_raw(lab: &Lab, role: &str, port: &str, specs: &[&str]) {
    lab.exec(
        role,
        &format!(
            "python3 {} send eth0 {} {}",
            raw_frames(),
            mac(lab, "gw", port),
            specs.join(" ")
        ),
    );
}

/// A sniffer on island `role`'s eth0 for `seconds`: which of `tags` arrived.
struct Sniffer(causeway_tests::Reaped);

impl Sniffer {
    fn start(lab: &Lab, role: &str, seconds: u32, tags: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(role), "python3", &raw_frames()])
            .args(["sniff", "eth0", &seconds.to_string()])
            .args(tags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 in the island");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Self(causeway_tests::Reaped(child))
    }

    fn seen(mut self) -> Vec<String> {
        let mut line = String::new();
        BufReader::new(self.0.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

/// Island A's genuine and spoofed datagrams to island B, and what reached B.
fn spoof_from_a(lab: &Lab) -> Vec<String> {
    // Neighbours resolved first, so nothing waits on ARP or NDP.
    lab.exec("a", "ping -c1 -W2 10.2.0.2");
    lab.exec("a", "ping -6 -c1 -W2 fd00:b::2");
    let sniffer = Sniffer::start(lab, "b", 3, &["legit4", "legit6", "spoof4", "spoof6"]);
    send_raw(
        lab,
        "a",
        "a0",
        &[
            "udp,10.1.0.2,10.2.0.2,legit4",
            "udp,fd00:a::2,fd00:b::2,legit6",
            // Island B's addresses, claimed from island A.
            "udp,10.2.0.7,10.2.0.2,spoof4",
            "udp,fd00:b::7,fd00:b::2,spoof6",
        ],
    );
    sniffer.seen()
}

#[test]
fn island_b_sources_sent_from_island_a_never_reach_b_and_are_counted() {
    require("python3", "python3");
    let lab = Lab::start("sp");
    let before = lab.stats();
    let seen = spoof_from_a(&lab);
    assert_eq!(seen, ["legit4", "legit6"], "{}", lab.log());
    let after = lab.stats();
    let spoofed = |s: &serde_json::Value| Lab::port_drops(s, "a", "spoofed");
    assert!(spoofed(&after) >= spoofed(&before) + 2, "{after}");
    assert_eq!(Lab::port_drops(&after, "b", "spoofed"), 0, "{after}");
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_tests::causeway_bin().display(),
        lab.name
    ));
    let line = metrics
        .lines()
        .find(|l| l.starts_with("causeway_port_drops_total{port=\"a\",reason=\"spoofed\"}"))
        .unwrap_or_else(|| panic!("no spoofed counter:\n{metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2, "{line}");
}

#[test]
fn a_port_with_rp_filter_off_lets_spoofed_sources_through() {
    require("python3", "python3");
    let lab = Lab::up("so");
    let config = format!("/run/causeway/lab/{}/config.yaml", lab.name);
    let text = std::fs::read_to_string(&config).unwrap();
    let off = text.replacen(
        "interface: a0\n    queues: 1\n",
        "interface: a0\n    queues: 1\n    rp_filter: off\n",
        1,
    );
    assert_ne!(off, text, "port a's entry not found in {config}");
    std::fs::write(&config, off).unwrap();
    ok(&format!(
        "{} lab start --name {}",
        causeway_tests::causeway_bin().display(),
        lab.name
    ));
    let seen = spoof_from_a(&lab);
    assert_eq!(
        seen,
        ["legit4", "legit6", "spoof4", "spoof6"],
        "{}",
        lab.log()
    );
    assert_eq!(Lab::port_drops(&lab.stats(), "a", "spoofed"), 0);
}

#[test]
fn a_forged_icmp_error_to_a_denied_host_is_dropped_a_genuine_one_passes() {
    require("python3", "python3");
    let dir = manifests("icmp");
    // A second host in island A that nothing may reach.
    std::fs::write(
        dir.join("vault.yaml"),
        "apiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: vault\n  \
         namespace: island-a\n  labels:\n    role: vault\nspec:\n  ips: [10.1.0.3]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: security.vault-ingress\nspec:\n  tier: security\n  order: 20\n  \
         selector: role == 'vault'\n  types: [Ingress]\n",
    )
    .unwrap();
    let lab = Lab::start_with_manifests("ic", &dir);
    lab.exec("a", "ip addr add 10.1.0.3/24 dev eth0");
    lab.exec("gw", "ping -c1 -W2 10.1.0.3");
    lab.exec("b", "ping -c1 -W2 10.1.0.2");
    // An allowed flow, tracked: 10.1.0.2:40123 -> 10.2.0.2:80.
    let server = causeway_tests::tcp_listeners(&lab, &[80]);
    lab.exec(
        "a",
        "python3 -c \"import socket; s = socket.socket(); s.bind(('10.1.0.2', 40123)); \
         s.settimeout(2); s.connect(('10.2.0.2', 80)); s.close()\"",
    );
    let before = lab.stats();
    let sniffer = Sniffer::start(&lab, "a", 3, &["genuine", "forged", "denied"]);
    send_raw(
        &lab,
        "b",
        "b0",
        &[
            // The error about the flow, back to its source: related.
            "icmp,10.2.0.2,10.1.0.2,10.1.0.2,10.2.0.2,40123,80,genuine",
            // The same error sent to the vault instead.
            "icmp,10.2.0.2,10.1.0.3,10.1.0.2,10.2.0.2,40123,80,forged",
            // What policy says of the server reaching the vault.
            "udp,10.2.0.2,10.1.0.3,denied",
        ],
    );
    let seen = sniffer.seen();
    drop(server);
    assert_eq!(seen, ["genuine"], "{}", lab.log());
    let after = lab.stats();
    let drops = |s: &serde_json::Value, r: &str| Lab::port_drops(s, "b", r);
    assert_eq!(
        drops(&after, "icmp_misdirected"),
        drops(&before, "icmp_misdirected") + 1,
        "{after}"
    );
    assert!(
        drops(&after, "policy") > drops(&before, "policy"),
        "the vault is denied to the server: {after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether policy (the manifests in `dir`) allows a new TCP connection.
fn policy_allows(dir: &Path, src: &str, dst: &str, dport: u16) -> bool {
    let v: serde_json::Value = serde_json::from_str(&ok(&format!(
        "{} policy explain -f {} --src {src} --dst {dst} --proto tcp --dport {dport} -o json",
        causeway_tests::causeway_bin().display(),
        dir.display()
    )))
    .unwrap();
    v["verdict"] == "allow"
}

#[test]
fn invalid_tcp_and_segments_of_no_flow_never_cross_and_are_counted() {
    require("python3", "python3");
    let dir = manifests("tcpinv");
    // The server's half of a connection the appliance does not track would
    // be a new connection from the server, and policy allows that way too
    // (the server's egress is open, the client has no policy): only
    // conntrack can refuse it.
    assert!(policy_allows(&dir, "10.2.0.2", "10.1.0.2", 40106));
    let lab = Lab::start_with_manifests("ti", &dir);
    lab.exec("a", "ping -c1 -W2 10.2.0.2");
    lab.exec("b", "ping -c1 -W2 10.1.0.2");
    let before = lab.stats();
    let tags = ["syn", "synfin", "synrst", "null", "fin", "ack"];
    let at_b = Sniffer::start(&lab, "b", 3, &tags);
    let at_a = Sniffer::start(&lab, "a", 3, &["reply"]);
    send_raw(
        &lab,
        "a",
        "a0",
        &[
            // A SYN to the allowed port crosses: the sniffer works.
            "tcp,10.1.0.2,40100,10.2.0.2,80,S,syn",
            // Flag combinations no connection sends.
            "tcp,10.1.0.2,40101,10.2.0.2,80,SF,synfin",
            "tcp,10.1.0.2,40102,10.2.0.2,80,SR,synrst",
            "tcp,10.1.0.2,40103,10.2.0.2,80,none,null",
            "tcp,10.1.0.2,40104,10.2.0.2,80,F,fin",
            // Data of a connection never opened: once picked up mid-stream.
            "tcp,10.1.0.2,40105,10.2.0.2,80,PA,ack",
        ],
    );
    // The server's data on a flow the appliance does not hold (evicted,
    // expired, or never seen): once admitted as a new flow from B.
    send_raw(
        &lab,
        "b",
        "b0",
        &["tcp,10.2.0.2,80,10.1.0.2,40106,PA,reply"],
    );
    let (seen_b, seen_a) = (at_b.seen(), at_a.seen());
    assert_eq!(seen_b, ["syn"], "{}", lab.log());
    assert!(seen_a.is_empty(), "the server's half crossed: {seen_a:?}");
    let after = lab.stats();
    let more = |port: &str, reason: &str| {
        Lab::port_drops(&after, port, reason) - Lab::port_drops(&before, port, reason)
    };
    assert_eq!(more("a", "tcp_invalid"), 4, "{after}");
    assert_eq!(more("a", "tcp_no_flow"), 1, "{after}");
    assert_eq!(more("b", "tcp_no_flow"), 1, "{after}");
    assert_eq!(more("a", "policy") + more("b", "policy"), 0, "{after}");
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_tests::causeway_bin().display(),
        lab.name
    ));
    assert!(
        metrics.contains("causeway_port_drops_total{port=\"a\",reason=\"tcp_invalid\"} 4"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines of a long-lived client in island A: it connects to 10.2.0.2:80
/// (the echo server), then `rounds` times sends 64 KiB in lines, reads them
/// back and rests 300 ms (moments when its flow is the least recently seen
/// of the table); "ok N" per round, "cut N ERROR" if the connection fails,
/// "done BYTES" at the end.
fn long_transfer(
    lab: &Lab,
    rounds: u32,
) -> (causeway_tests::Reaped, std::sync::mpsc::Receiver<String>) {
    let mut client = Command::new("ip")
        .args(["netns", "exec", &lab.ns("a"), "python3", "-u", "-c"])
        .arg(format!(
            "import socket, time\n\
             s = socket.create_connection(('10.2.0.2', 80), timeout=3); f = s.makefile('rwb')\n\
             line = b'x' * 1023 + b'\\n'; total = 0\n\
             for i in range({rounds}):\n    \
                 try:\n        \
                     f.write(line * 64); f.flush()\n        \
                     for _ in range(64):\n            \
                         assert f.readline() == line\n        \
                     total += 2 * 64 * 1024; print('ok', i, flush=True)\n    \
                 except Exception as e:\n        print('cut', i, e, flush=True); break\n    \
                 time.sleep(0.3)\n\
             else:\n    print('done', total, flush=True)\n"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in island A");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (causeway_tests::Reaped(client), rx)
}

#[test]
fn a_syn_flood_on_a_small_table_evicts_half_open_flows_and_a_long_transfer_survives() {
    require("python3", "python3");
    let dir = manifests("flood");
    // Island A's whole subnet may open port 81 of the server: the flood's
    // random sources are allowed, so every SYN makes a flow.
    std::fs::write(
        dir.join("range.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: security.island-a-range\nspec:\n  tier: security\n  order: 5\n  \
         selector: role == 'server'\n  types: [Ingress]\n  ingress:\n    - action: Allow\n      \
         protocol: TCP\n      source:\n        nets: [10.1.0.0/24]\n      destination:\n        \
         ports: [81]\n",
    )
    .unwrap();
    let lab = Lab::up_with_manifests("fl", &dir);
    // A table of 1024 flows (the smallest allowed), for the one worker.
    let config = format!("/run/causeway/lab/{}/config.yaml", lab.name);
    let text = std::fs::read_to_string(&config).unwrap();
    let small = text.replacen("\npolicy:\n", "\npolicy:\n  conntrack_capacity: 1024\n", 1);
    assert_ne!(small, text, "no policy section in {config}");
    std::fs::write(&config, small).unwrap();
    ok(&format!(
        "{} lab start --name {}",
        causeway_tests::causeway_bin().display(),
        lab.name
    ));
    // The server never answers the flood (its replies would go to hosts
    // that do not exist): the flood's flows stay half-open, as a real
    // flood's do.
    lab.exec("b", "ip route add blackhole 10.1.0.128/25");
    lab.exec("a", "ping -c1 -W2 10.2.0.2");
    let server = echo_server(&lab, 80);
    let (client, lines) = long_transfer(&lab, 30);
    let first = lines
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    assert!(
        first.starts_with("ok"),
        "the transfer did not start: {first}"
    );
    // 40 000 SYNs (40 times the table) from 10.1.0.128/25, at most 15 s.
    let sent: u64 = lab
        .exec(
            "a",
            &format!(
                "python3 {} synflood eth0 {} 10.1.0.128/25 10.2.0.2 81 40000 15",
                raw_frames(),
                mac(&lab, "gw", "a0")
            ),
        )
        .trim()
        .parse()
        .unwrap();
    assert!(sent > 4096, "the flood sent only {sent} SYNs");
    let mut seen = vec![first];
    while seen.last().is_none_or(|l| l.starts_with("ok")) {
        seen.push(
            lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| "nothing".into()),
        );
    }
    drop(client);
    stop(server);
    let stats = lab.stats();
    let ct = &stats["conntrack"];
    let n = |field: &str| {
        ct[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no conntrack.{field}: {stats}"))
    };
    assert!(
        seen.last().unwrap().starts_with("done"),
        "the transfer was cut: {seen:?}\n{ct}"
    );
    assert_eq!(n("capacity"), 1024, "{ct}");
    assert!(n("table_full") > 0, "the table never filled: {ct}");
    assert!(n("evicted_half_open") > 1000, "{ct}");
    assert_eq!(n("evicted_established"), 0, "{ct}");
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_tests::causeway_bin().display(),
        lab.name
    ));
    assert!(
        metrics.contains("causeway_conntrack_evicted_total{kind=\"established\"} 0"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
