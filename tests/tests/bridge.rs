//! The Bridge on a lab: the dataplane alone carries packets between the
//! islands (the appliance's kernel does not forward), with real ping, real
//! TCP and UDP sockets, and the appliance's counters accounting for them.

use std::{process::Stdio, time::Duration};

use causeway_tests::{Lab, causeway_bin, ok, require, sh, wait_for};

/// A TCP sink in python: accepts one connection, prints bytes and sha256.
const TCP_SINK: &str = r#"
import hashlib, socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"#;

/// A TCP source: sends N pseudo-random bytes (seeded) and prints their sha256.
const TCP_SOURCE: &str = r#"
import hashlib, random, socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
rng = random.Random(7); h = hashlib.sha256(); total = int(sys.argv[3])
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
chunk = rng.randbytes(1 << 20); sent = 0
while sent < total:
    b = chunk[: min(len(chunk), total - sent)]
    s.sendall(b); h.update(b); sent += len(b)
    chunk = bytes(reversed(chunk[:4096])) + chunk[4096:]
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(sent, h.hexdigest(), flush=True)
"#;

/// A UDP receiver that reports the datagrams it got and the TTL / hop limit
/// each arrived with.
const UDP_SINK: &str = r#"
import socket, sys
v6 = ':' in sys.argv[1]
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
else: s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTTL", 12), 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(3)
print("ready", flush=True)
got = set(); ttls = set(); bad = 0
try:
    while len(got) < int(sys.argv[3]):
        data, anc, _, _ = s.recvmsg(2048, 64)
        seq = int.from_bytes(data[:4], "big")
        if data != seq.to_bytes(4, "big") * 64: bad += 1
        got.add(seq)
        for lvl, ty, val in anc: ttls.add(int.from_bytes(val[:4], sys.byteorder))
except socket.timeout:
    pass
print(len(got), bad, sorted(ttls), flush=True)
"#;

const UDP_SOURCE: &str = r#"
import socket, sys, time
v6 = ':' in sys.argv[1]
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 64)
else: s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
for seq in range(int(sys.argv[3])):
    s.sendto(seq.to_bytes(4, "big") * 64, (sys.argv[1], int(sys.argv[2])))
    if seq % 50 == 49: time.sleep(0.005)
"#;

fn write_script(name: &str, body: &str) -> String {
    let path = std::env::temp_dir().join(format!("causeway-{}-{name}.py", std::process::id()));
    std::fs::write(&path, body).expect("write script");
    path.display().to_string()
}

/// Starts `script` in namespace `ns` and waits for it to print "ready".
fn serve(lab: &Lab, role: &str, script: &str, args: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(role), "python3", script])
        .args(args.split_whitespace())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3 in the namespace");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "ready", "server did not start");
    child
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn ping_crosses_only_through_the_dataplane() {
    require("ping", "iputils-ping");
    let lab = Lab::start("p");
    // The appliance's kernel does not forward: only the dataplane can.
    assert_eq!(lab.exec("gw", "sysctl -n net.ipv4.ip_forward").trim(), "0");
    assert_eq!(
        lab.exec("gw", "sysctl -n net.ipv6.conf.all.forwarding")
            .trim(),
        "0"
    );
    let links = ok(&format!("ip -n {} link show", lab.ns("gw")));
    for port in ["a0", "b0", "hp0"] {
        let line = links
            .lines()
            .skip_while(|l| !l.contains(&format!(" {port}@")))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            line.contains("prog/xdp"),
            "no XDP program on {port}:\n{links}"
        );
    }
    let before = lab.stats();
    let v4 = lab.exec("a", "ping -c3 -i0.2 -W2 10.2.0.2");
    assert!(v4.contains("3 received"), "{v4}\n{}", lab.log());
    let v6 = lab.exec("a", "ping -6 -c3 -i0.2 -W2 fd00:b::2");
    assert!(v6.contains("3 received"), "{v6}\n{}", lab.log());
    // B → A too.
    let back = lab.exec("b", "ping -c2 -i0.2 -W2 10.1.0.2");
    assert!(back.contains("2 received"), "{back}");

    // A next hop the kernel forgot: the first packet waits for resolution
    // instead of being lost.
    for (addr, ping) in [("10.2.0.2", "ping"), ("fd00:b::2", "ping -6")] {
        ok(&format!("ip -n {} neigh del {addr} dev b0", lab.ns("gw")));
        let first = lab.exec("a", &format!("{ping} -c1 -W2 {addr}"));
        assert!(
            first.contains("1 received"),
            "first packet to a re-resolved {addr} lost:\n{first}"
        );
    }

    let after = lab.stats();
    let delta = |port: &str, c: &str| {
        Lab::port_counter(&after, port, c) - Lab::port_counter(&before, port, c)
    };
    // 3 + 3 + 2 echo requests in on a, 2 replies to B's pings; the same out on b.
    assert!(delta("a", "rx_packets") >= 10, "port a rx: {after}");
    assert!(delta("b", "tx_packets") >= 10, "port b tx: {after}");
    assert_eq!(Lab::port_drops(&after, "a", "no_neighbour"), 0, "{after}");
    assert!(delta("b", "rx_packets") >= 8, "port b rx: {after}");
    assert!(delta("a", "tx_packets") >= 8, "port a tx: {after}");
    assert!(after["xdp"]["redirect"].as_u64().unwrap() >= 16, "{after}");
    assert!(
        after["xdp"]["pass_arp"].as_u64().unwrap() + after["xdp"]["pass_ndp"].as_u64().unwrap() > 0,
        "{after}"
    );
    // The kernel's counters of every port's AF_XDP sockets are read
    // (XDP_STATISTICS): a handful of pings loses nothing on the way to
    // the worker, and no descriptor the worker gave was invalid.
    let ports = after["ports"].as_array().expect("ports");
    let sockets = after["sockets"].as_array().expect("sockets");
    assert_eq!(sockets.len(), ports.len(), "{after}");
    for (port, s) in ports.iter().zip(sockets) {
        for field in [
            "rx_dropped",
            "rx_invalid_descs",
            "tx_invalid_descs",
            "rx_ring_full",
            "rx_fill_ring_empty_descs",
            "tx_ring_empty_descs",
        ] {
            assert!(s[field].is_u64(), "{field} of {}: {after}", port[0]["name"]);
        }
        for field in [
            "rx_dropped",
            "rx_invalid_descs",
            "tx_invalid_descs",
            "rx_ring_full",
        ] {
            assert_eq!(s[field], 0, "{field} of {}: {after}", port[0]["name"]);
        }
    }
    let metrics = ok(&format!(
        "{} stats --lab {} -o prometheus",
        causeway_bin().display(),
        lab.name
    ));
    assert!(
        metrics.contains("causeway_port_xsk_events_total{port=\"a\",event=\"rx_ring_full\"} 0"),
        "{metrics}"
    );
}

#[test]
fn a_100_mb_tcp_transfer_arrives_intact() {
    require("python3", "python3");
    let lab = Lab::start("t");
    let (sink, source) = (
        write_script("tcp-sink", TCP_SINK),
        write_script("tcp-source", TCP_SOURCE),
    );
    let total = 100 * 1024 * 1024;
    for (dst, port) in [("10.2.0.2", 5001), ("fd00:b::2", 5002)] {
        let server = serve(&lab, "b", &sink, &format!("{dst} {port}"));
        let sent = lab.exec(
            "a",
            &format!("timeout 120 python3 {source} {dst} {port} {total}"),
        );
        let got = finish(server);
        assert_eq!(
            got,
            sent.trim(),
            "bytes and sha256 at B equal what A sent ({dst})"
        );
        assert!(got.starts_with(&total.to_string()), "{got}");
    }
    let st = lab.stats();
    assert!(
        Lab::port_counter(&st, "b", "tx_bytes") > total as u64,
        "the dataplane carried the bytes: {st}"
    );
    assert_eq!(Lab::port_drops(&st, "a", "malformed"), 0, "{st}");
    assert_eq!(Lab::port_drops(&st, "b", "malformed"), 0, "{st}");
}

#[test]
fn udp_arrives_with_ttl_decremented_by_exactly_one() {
    require("python3", "python3");
    let lab = Lab::start("u");
    let (sink, source) = (
        write_script("udp-sink", UDP_SINK),
        write_script("udp-source", UDP_SOURCE),
    );
    let before = lab.stats();
    for dst in ["10.2.0.2", "fd00:b::2"] {
        let server = serve(&lab, "b", &sink, &format!("{dst} 6000 500"));
        lab.exec("a", &format!("python3 {source} {dst} 6000 500"));
        let got = finish(server);
        let mut f = got.split_whitespace();
        let received: u32 = f.next().unwrap().parse().unwrap();
        let corrupt: u32 = f.next().unwrap().parse().unwrap();
        let ttls = f.collect::<Vec<_>>().join(" ");
        assert!(received >= 495, "{dst}: {received}/500 datagrams arrived");
        assert_eq!(corrupt, 0, "{dst}: corrupted datagrams");
        assert_eq!(ttls, "[63]", "{dst}: sent with 64, one router hop");
    }
    let after = lab.stats();
    let rx = Lab::port_counter(&after, "a", "rx_packets")
        - Lab::port_counter(&before, "a", "rx_packets");
    assert!(rx >= 1000, "port a counted {rx} of 1000 datagrams");
}

#[test]
fn expired_ttl_is_answered_with_time_exceeded() {
    require("ping", "iputils-ping");
    let lab = Lab::start("x");
    let out = lab.try_exec("a", "ping -c1 -t1 -W2 10.2.0.2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 10.1.0.1") && text.contains("exceeded"),
        "{text}"
    );
    let out = lab.try_exec("a", "ping -6 -c1 -t1 -W2 fd00:b::2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From fd00:a::1") && text.to_lowercase().contains("exceeded"),
        "{text}"
    );
    let st = lab.stats();
    assert_eq!(Lab::port_counter(&st, "a", "icmp_errors_sent"), 2, "{st}");
}

#[test]
fn the_appliance_restarts_after_a_crash_and_fails_closed_while_down() {
    require("ping", "iputils-ping");
    let lab = Lab::start("c");
    let st = lab.status();
    let pid = st["appliance"]["pid"].as_u64().expect("pid");
    ok(&format!("kill -9 {pid}"));
    assert!(
        wait_for(Duration::from_secs(5), || (!sh(&format!("kill -0 {pid}"))
            .status
            .success())
        .then_some(()))
        .is_some()
    );
    // Down: nothing crosses (the kernel does not forward, no program runs).
    let out = lab.try_exec("a", "ping -c2 -i0.2 -W1 10.2.0.2");
    assert!(!out.status.success(), "forwarded with the appliance dead");
    // Start it again by hand, as an operator would.
    let config = st["appliance"]["config"].as_str().unwrap().to_owned();
    let log = st["appliance"]["log"].as_str().unwrap().to_owned();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw")])
        .arg(causeway_bin())
        .args(["run", "--config", &config])
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let pid2 = child.id();
    let forwarded = wait_for(Duration::from_secs(20), || {
        lab.try_exec("a", "ping -c1 -W1 10.2.0.2")
            .status
            .success()
            .then_some(())
    });
    let _ = sh(&format!("kill -TERM {pid2}"));
    assert!(
        forwarded.is_some(),
        "did not forward after restart:\n{}",
        lab.log()
    );
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    // A clean stop detaches the program from every port.
    let links = ok(&format!("ip -n {} link show", lab.ns("gw")));
    assert!(
        !links.contains("prog/xdp"),
        "XDP left attached after SIGTERM:\n{links}"
    );
}

#[test]
fn labs_coexist_and_down_leaves_nothing_behind() {
    let one = Lab::up("m");
    let two = Lab::up("n");
    for lab in [&one, &two] {
        assert!(
            lab.exec("a", "ping -c1 -W2 10.1.0.1")
                .contains("1 received"),
            "island A reaches its gateway"
        );
    }
    let names = [one.name.clone(), two.name.clone()];
    drop(one);
    drop(two);
    let left = ok("ip netns list");
    for n in names {
        assert!(!left.contains(&n), "{n} left namespaces behind:\n{left}");
        assert!(
            !std::path::Path::new(&format!("/run/causeway/lab/{n}")).exists(),
            "{n} left its state dir"
        );
    }
}

#[test]
fn a_stale_xdp_program_is_replaced_at_start() {
    require("clang", "clang");
    let lab = Lab::up("s");
    // A program some other tool left attached through netlink.
    let dir = std::env::temp_dir().join(format!("causeway-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("stale.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int stale(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char _license[] SEC(\"license\") = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.join("stale.o");
    ok(&format!(
        "clang -O2 -target bpf -I/usr/include/$(uname -m)-linux-gnu -c {} -o {}",
        src.display(),
        obj.display()
    ));
    ok(&format!(
        "ip -n {} link set dev a0 xdpdrv obj {} sec xdp",
        lab.ns("gw"),
        obj.display()
    ));
    assert!(ok(&format!("ip -n {} link show a0", lab.ns("gw"))).contains("name stale"));

    let st = lab.status();
    let config = st["appliance"]["config"].as_str().unwrap().to_owned();
    let log = dir.join("appliance.log");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw")])
        .arg(causeway_bin())
        .args(["run", "--config", &config])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let forwarded = wait_for(Duration::from_secs(20), || {
        lab.try_exec("a", "ping -c1 -W1 10.2.0.2")
            .status
            .success()
            .then_some(())
    });
    let link = ok(&format!("ip -n {} link show a0", lab.ns("gw")));
    let _ = sh(&format!("kill -TERM {}", child.id()));
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(forwarded.is_some(), "did not forward:\n{text}");
    assert!(
        link.contains("causeway_xdp") && !link.contains("name stale"),
        "{link}"
    );
    assert!(text.contains("replaced a stale XDP program"), "{text}");
}
