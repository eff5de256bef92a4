//! The appliance's own addresses on a lab: what reaches them is judged by
//! the host endpoint's policy (a Calico HostEndpoint), failsafe ports
//! excepted, and the appliance's own connections still work. Real packets
//! through the XDP program and the workers, real sockets in the appliance's
//! namespace.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use causeway_tests::{Lab, Reaped, causeway_bin, ok, require, tcp_listeners, wait_for};

/// The port the host endpoint's policy opens to island A's client.
const P: u16 = 8800;

/// The lab's example policy (it lets pings cross, which `lab start` waits
/// for), and a policy for the host endpoint: TCP `P` from island A's
/// client (`role == 'client'`, 10.1.0.2) only.
fn manifests(tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab-policy");
    let dir = std::env::temp_dir().join(format!("causeway-hostep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["endpoints.yaml", "policy.yaml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("host.yaml"),
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
             name: appliance-ingress\nspec:\n  selector: role == 'appliance'\n  types: [Ingress]\n  \
             ingress:\n    - action: Allow\n      protocol: TCP\n      source:\n        \
             selector: role == 'client'\n      destination:\n        ports: [{P}]\n"
        ),
    )
    .unwrap();
    dir
}

/// A lab whose appliance is the host endpoint `role: appliance`, started.
fn lab_with_host_endpoint(tag: &str, dir: &Path) -> Lab {
    let lab = Lab::up_with_manifests(tag, dir);
    let path = format!("/run/causeway/lab/{}/config.yaml", lab.name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("\nhost_endpoint:"), "{text}");
    std::fs::write(
        &path,
        format!("{text}\nhost_endpoint:\n  labels:\n    role: appliance\n"),
    )
    .unwrap();
    ok(&format!(
        "{} lab start --name {}",
        causeway_bin().display(),
        lab.name
    ));
    lab
}

/// TCP listeners on every address of the appliance's namespace (IPv4 and
/// IPv6), one per port, that greet and close; ready when this returns.
fn appliance_listeners(lab: &Lab, ports: &[u16]) -> Reaped {
    let script = format!(
        "import socket, threading, time\n\
         def serve(p):\n    s = socket.socket(socket.AF_INET6)\n    \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n    \
         s.bind(('::', p)); s.listen(64)\n    while True:\n        \
         c, _ = s.accept(); c.sendall(b'hello'); c.close()\n\
         for p in {ports:?}:\n    threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         time.sleep(0.2)\nprint('ready', flush=True)\ntime.sleep(3600)\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw"), "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the appliance's namespace");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the listeners' ready line");
    assert_eq!(line.trim(), "ready");
    Reaped(child)
}

/// Whether a TCP connection from `role` to `addr`:`port` is made and
/// greeted (within 1.5 s).
fn greeted(lab: &Lab, role: &str, addr: &str, port: u16) -> bool {
    let out = lab.try_exec(
        role,
        &format!(
            "timeout 4 python3 -c \"import socket; s = socket.create_connection(('{addr}', {port}), timeout=1.5); print(s.recv(16).decode())\""
        ),
    );
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "hello"
}

fn pings(lab: &Lab, role: &str, addr: &str) -> bool {
    lab.try_exec(role, &format!("ping -c2 -i0.3 -W1 {addr}"))
        .status
        .success()
}

fn xdp(stats: &serde_json::Value, counter: &str) -> u64 {
    stats["xdp"][counter]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP counter {counter} in {stats}"))
}

#[test]
fn the_host_endpoints_policy_judges_traffic_to_the_appliance_failsafe_ports_excepted() {
    require("python3", "python3");
    require("ping", "iputils-ping");
    let dir = manifests("he");
    let lab = lab_with_host_endpoint("he", &dir);
    let _listeners = appliance_listeners(&lab, &[P, 22]);
    let before = lab.stats();

    // Allowed: island A's client to P, over IPv4 and IPv6; the kernel's
    // replies leave by its routes, the rest of the connection is passed by
    // the XDP program's socket lookup.
    assert!(
        greeted(&lab, "a", "10.1.0.1", P),
        "A -> 10.1.0.1:{P} is allowed by the host endpoint's policy:\n{}",
        lab.log()
    );
    assert!(
        greeted(&lab, "a", "fd00:a::1", P),
        "A -> [fd00:a::1]:{P} (IPv6)"
    );
    // Denied: island B, to either of the appliance's addresses.
    assert!(
        !greeted(&lab, "b", "10.2.0.1", P),
        "B -> 10.2.0.1:{P} is not allowed"
    );
    assert!(
        !greeted(&lab, "b", "10.1.0.1", P),
        "B -> 10.1.0.1:{P} is not allowed"
    );
    // ICMP echo is judged like the rest: the policy does not allow it.
    assert!(!pings(&lab, "b", "10.2.0.1"), "B's ping to the appliance");
    let after = lab.stats();
    assert!(
        Lab::port_drops(&after, "b", "host_denied")
            >= Lab::port_drops(&before, "b", "host_denied") + 4,
        "B's SYNs and echo requests are counted as host_denied: {after}"
    );
    assert!(
        Lab::port_counter(&after, "a", "host_delivered") >= 2,
        "A's SYNs were delivered: {after}"
    );
    assert!(xdp(&after, "host_judge") > xdp(&before, "host_judge"));
    assert!(
        xdp(&after, "pass_socket") > xdp(&before, "pass_socket"),
        "the later packets of A's connections went straight to the kernel: {after}"
    );

    // A failsafe port (Calico's default tcp 22) is open to everyone.
    assert!(
        greeted(&lab, "b", "10.2.0.1", 22),
        "B -> 10.2.0.1:22, failsafe"
    );
    assert!(xdp(&lab.stats(), "pass_failsafe") > 0);

    // The appliance's own connection out to island B: its replies pass by
    // the socket lookup (nothing to the appliance is allowed from B).
    let _servers = tcp_listeners(&lab, &[9900]);
    let out = lab.try_exec(
        "gw",
        "timeout 4 python3 -c \"import socket; socket.create_connection(('10.2.0.2', 9900), timeout=2)\"",
    );
    assert!(
        out.status.success(),
        "the appliance connects out to B: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The appliance's own ping out: the echo replies are passed as such.
    let replies = xdp(&lab.stats(), "pass_icmp_reply");
    lab.exec("gw", "ping -c1 -W2 10.2.0.2");
    assert!(xdp(&lab.stats(), "pass_icmp_reply") > replies);

    // No policy for the host endpoint: nothing but failsafe reaches it.
    std::fs::remove_file(dir.join("host.yaml")).unwrap();
    let generation = lab.stats()["enforced_generation"].as_u64().unwrap();
    assert!(
        lab.reload(Duration::from_secs(10)) > generation,
        "the reload took"
    );
    assert!(
        wait_for(Duration::from_secs(5), || (!greeted(
            &lab, "a", "10.1.0.1", P
        ))
        .then_some(()))
        .is_some(),
        "A -> 10.1.0.1:{P} with no host endpoint policy"
    );
    assert!(!greeted(&lab, "b", "10.2.0.1", P));
    assert!(greeted(&lab, "b", "10.2.0.1", 22), "failsafe still");
    // Island traffic is unchanged.
    assert!(pings(&lab, "a", "10.2.0.2"), "A pings B's server");
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_appliance_with_no_host_endpoint_answers_only_failsafe_ports() {
    require("python3", "python3");
    require("ping", "iputils-ping");
    let dir = manifests("hn");
    // The host policy selects nothing: no host_endpoint in the configuration.
    let lab = Lab::start_with_manifests("hn", &dir);
    let _listeners = appliance_listeners(&lab, &[P, 22]);
    assert!(!greeted(&lab, "a", "10.1.0.1", P), "A -> 10.1.0.1:{P}");
    assert!(!greeted(&lab, "b", "10.2.0.1", P), "B -> 10.2.0.1:{P}");
    assert!(!pings(&lab, "a", "10.1.0.1"), "A's ping to the appliance");
    assert!(greeted(&lab, "a", "10.1.0.1", 22), "failsafe");
    let stats = lab.stats();
    assert!(
        Lab::port_drops(&stats, "a", "host_denied") >= 3,
        "counted as host_denied: {stats}"
    );
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}
