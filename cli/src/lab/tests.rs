//! Lab tests against the real kernel. They need root, `ip`, `ethtool`,
//! `sysctl`, `ping` and `openssl`, and fail (not skip) without them. Each
//! builds labs named `lt<pid><tag>`, so parallel tests and parallel runs do
//! not meet, and a guard removes its lab even when an assertion fails.
//!
//! `up` starts the lab's backends as `EXE lab backend …`, and this test
//! binary is no `causeway`: the tests hand `up` a script ([`test_exe`]) that
//! runs [`helper_backend`] of this binary for `lab backend`, so the real
//! backend code serves.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser as _;

use super::cmd::{self, ETHTOOL, IP, OPENSSL, PING, SYSCTL};
use super::state::{LabDir, LabRecord};
use super::*;

fn require_root_and_tools() {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an effective uid in /proc/self/status");
    assert_eq!(
        euid, "0",
        "the lab tests create network namespaces and need root: run them as root \
         (e.g. `sudo -E cargo test -p causeway-cli lab`)"
    );
    for tool in [IP, ETHTOOL, SYSCTL, PING, OPENSSL] {
        if let Err(e) = tool.require() {
            panic!("the lab tests need `{}`: {e}", tool.program);
        }
    }
}

/// Set for [`helper_backend`] by the script of [`test_exe`]: `ADDR NAME`.
const BACKEND_ENV: &str = "CAUSEWAY_LAB_TEST_BACKEND";

/// Bash that runs [`helper_backend`] of this binary for
/// `lab backend --listen ADDR --name NAME`, and falls through otherwise.
fn backend_preamble() -> String {
    let exe = std::env::current_exe().unwrap();
    // This module's path without the crate name, as the test filter wants it.
    let module = module_path!().split_once("::").unwrap().1;
    format!(
        "if [ \"$1 $2 $3 $5\" = 'lab backend --listen --name' ]; then\n\
         \x20 export {BACKEND_ENV}=\"$4 $6\"\n\
         \x20 exec {} --exact {module}::helper_backend --ignored --nocapture --quiet \
         --test-threads=1\n\
         fi",
        exe.display()
    )
}

/// The `causeway` binary for `up` in tests that do not start an appliance:
/// serves `lab backend`, fails for anything else. It lives beside this test
/// binary (one per build, shared by its processes).
fn test_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_string_lossy().into_owned();
        let path = me.with_file_name(format!("{name}-lab-exe"));
        write_script(&path, "echo 'not an appliance' >&2\nexit 1");
        path
    })
    .clone()
}

/// `UpOptions::default()`, with [`test_exe`] as the binary.
fn opts() -> UpOptions {
    UpOptions {
        appliance_exe: Some(test_exe()),
        ..UpOptions::default()
    }
}

/// Not a test: the lab's backends in these tests (see [`test_exe`]).
#[test]
#[ignore = "a helper process for the lab's backends"]
fn helper_backend() {
    let Ok(args) = std::env::var(BACKEND_ENV) else {
        return;
    };
    let (listen, name) = args.split_once(' ').expect("ADDR NAME");
    backend::run(listen.parse().expect("an address"), name).expect("the backend serves");
}

/// `bash`, for its /dev/tcp in namespaces without curl.
const BASH: cmd::Tool = cmd::Tool {
    program: "bash",
    package: "bash",
};

/// An HTTP/1.1 GET to `addr` from inside `netns`: the whole response.
fn http_get(netns: &str, addr: SocketAddr) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/{}/{} && printf 'GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 5 cat <&3",
        addr.ip(),
        addr.port()
    );
    cmd::run_in(netns, BASH, &["-c", &script])
        .unwrap_or_else(|e| panic!("GET {addr} in {netns}: {e}"))
}

fn unique(tag: &str) -> String {
    let name = format!("lt{}{tag}", std::process::id());
    name::validate(&name).expect("test lab names are valid");
    name
}

/// Removes its lab when dropped, so a failed assertion leaves nothing.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        match down(&self.0) {
            Ok(()) | Err(LabError::NoSuchLab { .. }) => {}
            Err(e) => eprintln!("cleaning up lab {}: {e}", self.0),
        }
    }
}

fn up_guarded(tag: &str, opts: &UpOptions) -> (Guard, LabStatus) {
    let name = unique(tag);
    let guard = Guard(name.clone());
    let status = up(&name, opts).unwrap_or_else(|e| panic!("up {name}: {e}"));
    (guard, status)
}

fn namespaces() -> Vec<String> {
    cmd::run(IP, &["netns", "list"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn lab_namespaces_left(lab: &str) -> Vec<String> {
    let ours: Vec<String> = Role::ALL.iter().map(|r| r.netns(lab)).collect();
    namespaces()
        .into_iter()
        .filter(|ns| ours.contains(ns))
        .collect()
}

fn ping(netns: &str, target: &str) -> bool {
    cmd::succeeds_in(netns, PING, &["-c1", "-W1", target]).unwrap()
}

fn sysctl(netns: &str, key: &str) -> String {
    cmd::run_in(netns, SYSCTL, &["-n", key])
        .unwrap()
        .trim()
        .to_owned()
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks one lab as built: namespaces, interfaces, addresses, MACs,
/// sysctls, offloads and what the kernel answers.
fn check_lab(lab: &str, status: &LabStatus) {
    assert_eq!(status.name, lab);
    let roles: Vec<_> = status.namespaces.iter().map(|ns| ns.role).collect();
    assert_eq!(
        roles,
        [
            Some(Role::A),
            Some(Role::Gw),
            Some(Role::Svc),
            Some(Role::B)
        ]
    );
    for ns in &status.namespaces {
        assert!(ns.exists, "{} should exist", ns.name);
        assert!(
            namespaces().contains(&ns.name),
            "{} not in ip netns list",
            ns.name
        );
    }
    let names = |role| -> Vec<&str> {
        status
            .namespace(role)
            .unwrap()
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect()
    };
    assert_eq!(names(Role::A), ["lo", "eth0"]);
    assert_eq!(names(Role::B), ["lo", "eth0"]);
    let mut gw = names(Role::Gw);
    gw.sort_unstable();
    assert_eq!(gw, ["a0", "b0", "hp0", "lo"]);
    assert_eq!(names(Role::Svc), ["lo", "hp1"]);

    // Addresses, global scope only (link-local ones come and go).
    let global = |role, ifname: &str| -> Vec<String> {
        let ifc = status
            .interface(role, ifname)
            .unwrap_or_else(|| panic!("{ifname} in {role:?}"));
        ifc.addresses
            .iter()
            .filter(|a| a.scope.as_deref() == Some("global"))
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect()
    };
    assert_eq!(global(Role::A, "eth0"), ["10.1.0.2/24", "fd00:a::2/64"]);
    assert_eq!(global(Role::Gw, "a0"), ["10.1.0.1/24", "fd00:a::1/64"]);
    assert_eq!(global(Role::Gw, "b0"), ["10.2.0.1/24", "fd00:b::1/64"]);
    assert_eq!(global(Role::B, "eth0"), ["10.2.0.2/24", "fd00:b::2/64"]);
    assert_eq!(global(Role::Gw, "hp0"), ["10.0.255.1/30"]);
    assert_eq!(global(Role::Svc, "hp1"), ["10.0.255.2/30"]);
    assert!(
        status
            .interface(Role::A, "lo")
            .unwrap()
            .cidrs()
            .contains(&"127.0.0.1/8".to_owned())
    );
    let svc_lo = status.interface(Role::Svc, "lo").unwrap().cidrs();
    for want in [
        "127.0.0.1/8",
        "10.100.0.10/32",
        "10.100.0.20/32",
        "10.100.0.21/32",
    ] {
        assert!(
            svc_lo.contains(&want.to_owned()),
            "{want} on lo: {svc_lo:?}"
        );
    }

    // Every interface is up, and every veth's MAC is what the kernel says.
    let mut macs = Vec::new();
    for ns in &status.namespaces {
        for ifc in &ns.interfaces {
            assert!(ifc.up, "{} in {} should be up", ifc.name, ns.name);
            if ifc.name == "lo" {
                continue;
            }
            let mac = ifc.mac.clone().expect("a veth has a MAC");
            assert!(is_mac(&mac), "{mac}");
            let sys = cmd::run_in(
                &ns.name,
                CAT,
                &[&format!("/sys/class/net/{}/address", ifc.name)],
            )
            .unwrap();
            assert_eq!(sys.trim(), mac, "{} in {}", ifc.name, ns.name);
            assert_eq!(
                ifc.operstate.as_deref(),
                Some("UP"),
                "{} in {}",
                ifc.name,
                ns.name
            );
            macs.push(mac);
        }
    }
    let n = macs.len();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), n, "MACs are distinct");

    // The appliance's kernel does not forward.
    let gw_ns = Role::Gw.netns(lab);
    assert_eq!(sysctl(&gw_ns, "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl(&gw_ns, "net.ipv6.conf.all.forwarding"), "0");
    assert_eq!(sysctl(&gw_ns, "net.ipv6.conf.default.forwarding"), "0");

    // Offloads are off on both ends of every veth.
    for (role, dev) in [
        (Role::A, "eth0"),
        (Role::B, "eth0"),
        (Role::Gw, "a0"),
        (Role::Gw, "b0"),
        (Role::Gw, "hp0"),
        (Role::Svc, "hp1"),
    ] {
        let features = cmd::run_in(&role.netns(lab), ETHTOOL, &["-k", dev]).unwrap();
        for feature in [
            "tx-checksumming: off",
            "tcp-segmentation-offload: off",
            "generic-segmentation-offload: off",
            "generic-receive-offload: off",
        ] {
            assert!(
                features.lines().any(|l| l.trim() == feature),
                "{dev} in {role:?}: want {feature:?} in\n{features}"
            );
        }
    }

    // The state directory.
    let dir = LabDir::new(lab).unwrap();
    assert_eq!(status.state_dir, dir.dir);
    let record = dir.read_record().unwrap().expect("lab.json");
    assert_eq!(
        record.namespaces,
        Role::ALL.map(|r| r.netns(lab)).to_vec(),
        "lab.json records the namespaces"
    );
    let config = fs::read_to_string(&status.appliance.config).unwrap();
    let socket = dir.socket();
    assert!(
        config.contains(&format!("socket: {}", socket.display())),
        "{config}"
    );
    assert_eq!(status.appliance.api_socket, socket);
    assert_eq!(status.appliance.pid, None);
    assert!(!status.appliance.running);

    // The PKI, and what status tells a client.
    let t = &status.terminator;
    assert_eq!(t.service, "10.100.0.10:443".parse().unwrap());
    assert_eq!(t.ca, dir.pki().join("ca.pem"));
    assert_eq!(t.client_cert, dir.pki().join("client.pem"));
    assert_eq!(t.client_key, dir.pki().join("client-key.pem"));
    assert_eq!(t.server_name, "demo.causeway.lab");
    assert_eq!(t.svc_netns, format!("{lab}-svc"));
    let verify = cmd::run(
        OPENSSL,
        &[
            "verify".as_ref(),
            "-CAfile".as_ref(),
            t.ca.as_os_str(),
            t.client_cert.as_os_str(),
            dir.pki().join("server.pem").as_os_str(),
        ],
    )
    .unwrap();
    assert!(
        verify.contains("client.pem: OK") && verify.contains("server.pem: OK"),
        "{verify}"
    );
    if TERMINATOR_IN_CONFIG {
        assert!(
            config.contains(&format!("netns: /run/netns/{lab}-svc")),
            "{config}"
        );
    }

    // The backends answer in island B, each with its name.
    assert_eq!(t.backends.len(), 3);
    for (i, &backend) in t.backends.iter().enumerate() {
        let response = http_get(&b_ns(lab), backend);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let name = format!("backend-{}", i + 1);
        assert!(
            response.contains(&format!("X-Backend: {name}\r\n")),
            "{response}"
        );
        assert!(
            response.ends_with(&format!("\r\n\r\nhello from {name}\n")),
            "{response}"
        );
        let pid: u32 = fs::read_to_string(dir.backend_pid(&name))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(appliance::is_causeway(pid), "{name} runs as pid {pid}");
        let b_pids = cmd::run(IP, &["netns", "pids", &b_ns(lab)]).unwrap();
        assert!(
            b_pids.split_whitespace().any(|p| p == pid.to_string()),
            "{name} in island B"
        );
    }

    // The kernel in the appliance answers its own addresses…
    let a = Role::A.netns(lab);
    let b = Role::B.netns(lab);
    assert!(ping(&a, "10.1.0.1"), "{a} -> 10.1.0.1");
    assert!(ping(&a, "fd00:a::1"), "{a} -> fd00:a::1");
    assert!(ping(&b, "10.2.0.1"), "{b} -> 10.2.0.1");
    assert!(ping(&b, "fd00:b::1"), "{b} -> fd00:b::1");
    // …and the host port's other end, which answers it.
    let svc = Role::Svc.netns(lab);
    assert!(ping(&gw_ns, "10.0.255.2"), "{gw_ns} -> 10.0.255.2");
    assert!(ping(&svc, "10.0.255.1"), "{svc} -> 10.0.255.1");
    // …but does not carry packets between the islands: that is the
    // dataplane's job.
    assert!(
        !ping(&a, "10.2.0.2"),
        "{a} -> 10.2.0.2 must not pass without the dataplane"
    );
    assert!(
        !ping(&a, "10.100.0.10"),
        "{a} -> 10.100.0.10 must not pass without the dataplane"
    );
    assert!(
        !ping(&svc, "10.2.0.2"),
        "{svc} -> 10.2.0.2 must not pass without the dataplane"
    );
}

fn b_ns(lab: &str) -> String {
    Role::B.netns(lab)
}

/// `cat`, to read /sys inside a namespace.
const CAT: cmd::Tool = cmd::Tool {
    program: "cat",
    package: "coreutils",
};

#[test]
fn up_status_down_with_two_labs_at_once() {
    require_root_and_tools();
    let (p_guard, p) = up_guarded("p", &opts());
    let (q_guard, q) = up_guarded("q", &opts());
    let (p_name, q_name) = (p_guard.0.clone(), q_guard.0.clone());

    check_lab(&p_name, &p);
    check_lab(&q_name, &q);
    // status reads back what up returned (modulo link-local addresses that
    // may have appeared since).
    let again = status(&p_name).unwrap();
    assert_eq!(again.namespaces.len(), 4);
    check_lab(&p_name, &again);
    let labs = list().unwrap();
    assert!(labs.contains(&p_name) && labs.contains(&q_name), "{labs:?}");

    // The JSON of `status -o json` is LabStatus.
    let json = serde_json::to_value(&again).unwrap();
    assert_eq!(json["namespaces"][0]["name"], format!("{p_name}-a"));
    assert_eq!(json["namespaces"][1]["role"], "gw");
    assert_eq!(json["namespaces"][2]["role"], "svc");
    assert!(json["appliance"]["pid"].is_null());
    assert_eq!(json["terminator"]["service"], "10.100.0.10:443");
    assert_eq!(json["terminator"]["svc_netns"], format!("{p_name}-svc"));
    assert_eq!(
        json["terminator"]["backends"],
        serde_json::json!(["10.2.0.2:8081", "10.2.0.2:8082", "10.2.0.2:8083"])
    );
    let text = again.to_string();
    assert!(text.contains("server name: demo.causeway.lab\n"), "{text}");
    let backend_pids: Vec<u32> = (1..=3)
        .map(|i| {
            let path = LabDir::new(&p_name)
                .unwrap()
                .backend_pid(&format!("backend-{i}"));
            fs::read_to_string(path).unwrap().trim().parse().unwrap()
        })
        .collect();

    // A second `up` of the same name names the lab and the way out.
    let err = up(&p_name, &opts()).unwrap_err();
    assert!(matches!(err, LabError::AlreadyExists { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("causeway lab down --name {p_name}")),
        "{err}"
    );

    // Removing one lab leaves the other working.
    down(&p_name).unwrap();
    assert_eq!(lab_namespaces_left(&p_name), Vec::<String>::new());
    assert!(
        !LabDir::new(&p_name).unwrap().dir.exists(),
        "state dir removed"
    );
    assert!(!list().unwrap().contains(&p_name));
    for pid in backend_pids {
        assert!(!appliance::is_alive(pid), "down stops backend pid {pid}");
    }
    assert!(ping(&Role::A.netns(&q_name), "10.1.0.1"));
    assert!(http_get(&b_ns(&q_name), "10.2.0.2:8083".parse().unwrap()).contains("backend-3"));
    assert_eq!(status(&q_name).unwrap().namespaces.len(), 4);

    // Gone is gone: down and status say so.
    let err = down(&p_name).unwrap_err();
    assert!(matches!(err, LabError::NoSuchLab { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("no lab named {p_name}")),
        "{err}"
    );
    assert!(matches!(status(&p_name), Err(LabError::NoSuchLab { .. })));

    down(&q_name).unwrap();
    assert_eq!(lab_namespaces_left(&q_name), Vec::<String>::new());
    assert!(!LabDir::new(&q_name).unwrap().dir.exists());
}

#[test]
fn down_after_a_crash_removes_what_is_left_and_nothing_else() {
    require_root_and_tools();
    let (guard, _) = up_guarded("c", &opts());
    let lab = guard.0.clone();
    let dir = LabDir::new(&lab).unwrap();

    // A server left running in island B, as a test that died would leave it.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &Role::B.netns(&lab), "sleep", "600"])
        .spawn()
        .unwrap();
    // A stale pid file pointing at a process that is not the appliance.
    let mut stranger = Command::new("sleep").arg("600").spawn().unwrap();
    fs::write(dir.pid(), format!("{}\n", stranger.id())).unwrap();
    // The crash lost everything but lab.json, and one namespace is gone.
    fs::remove_file(dir.config()).unwrap();
    cmd::run(IP, &["netns", "del", &Role::A.netns(&lab)]).unwrap();
    // Wait until the server is really in the namespace.
    let b = Role::B.netns(&lab);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cmd::run(IP, &["netns", "pids", &b])
        .unwrap()
        .split_whitespace()
        .any(|p| p == server.id().to_string())
    {
        assert!(Instant::now() < deadline, "the server never entered {b}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // status shows the half-torn lab.
    let s = status(&lab).unwrap();
    assert!(!s.namespace(Role::A).unwrap().exists);
    assert!(s.namespace(Role::B).unwrap().exists);
    assert_eq!(s.appliance.pid, Some(stranger.id()));
    assert!(
        !s.appliance.running,
        "a non-causeway pid is not the appliance"
    );
    assert!(s.to_string().contains("(missing)"));

    down(&lab).unwrap();
    assert_eq!(lab_namespaces_left(&lab), Vec::<String>::new());
    assert!(!dir.dir.exists());
    // The server was killed with the namespace…
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if server.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the server in {b} survived down");
        std::thread::sleep(Duration::from_millis(20));
    }
    // …and the stranger was left alone.
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "down killed a process it did not start"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn down_after_up_died_midway() {
    require_root_and_tools();
    let lab = unique("m");
    let _guard = Guard(lab.clone());
    let dir = LabDir::new(&lab).unwrap();
    // As `up` leaves it when killed right after creating the first
    // namespace and recording the second.
    dir.create(&lab).unwrap();
    let record = LabRecord {
        name: lab.clone(),
        namespaces: vec![Role::A.netns(&lab), Role::Gw.netns(&lab)],
        manifests: None,
    };
    dir.write_record(&record).unwrap();
    cmd::run(IP, &["netns", "add", &Role::A.netns(&lab)]).unwrap();

    down(&lab).unwrap();
    assert_eq!(lab_namespaces_left(&lab), Vec::<String>::new());
    assert!(!dir.dir.exists());

    // Killed before even the record was written: only the directory.
    dir.create(&lab).unwrap();
    down(&lab).unwrap();
    assert!(!dir.dir.exists());
}

/// Set for [`helper_up_then_wait`] when [`down_after_up_is_killed`] runs it.
const CRASH_ENV: &str = "CAUSEWAY_LAB_TEST_KILLED_UP";

/// Not a test: `down_after_up_is_killed` runs this binary again with only
/// this function, to have an `up` to kill.
#[test]
#[ignore = "a helper process for down_after_up_is_killed"]
fn helper_up_then_wait() {
    let Ok(name) = std::env::var(CRASH_ENV) else {
        return;
    };
    let _ = up(&name, &opts());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn down_after_up_is_killed() {
    use std::os::unix::process::CommandExt as _;
    require_root_and_tools();
    let lab = unique("k");
    let _guard = Guard(lab.clone());
    let exe = std::env::current_exe().unwrap();
    // This module's path without the crate name, as the test filter wants it.
    let module = module_path!().split_once("::").unwrap().1;
    let helper = format!("{module}::helper_up_then_wait");
    // SIGKILL at different points of `up` (the later ones after it finished).
    for delay_ms in [35, 45, 55, 80, 150, 300, 600, 1500] {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                &helper,
                "--ignored",
                "--test-threads=1",
                "--quiet",
            ])
            .env(CRASH_ENV, &lab)
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // The whole group, as Ctrl-C would: `up` and the command it runs.
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        child.wait().unwrap();

        let made = lab_namespaces_left(&lab);
        match down(&lab) {
            Ok(()) => {}
            // Killed before it made its state directory.
            Err(LabError::NoSuchLab { stray, .. }) if stray.is_empty() => {}
            Err(e) => panic!("down after killing up at {delay_ms} ms ({made:?} made): {e}"),
        }
        assert_eq!(
            lab_namespaces_left(&lab),
            Vec::<String>::new(),
            "after killing up at {delay_ms} ms ({made:?} made)"
        );
        assert!(!LabDir::new(&lab).unwrap().dir.exists());
    }
}

#[test]
fn namespaces_the_lab_did_not_make_are_never_touched() {
    require_root_and_tools();
    let lab = unique("s");
    let _guard = Guard(lab.clone());
    let stray = Role::Gw.netns(&lab);
    cmd::run(IP, &["netns", "add", &stray]).unwrap();
    let cleanup = NetnsGuard(stray.clone());

    // up refuses to adopt it, and leaves no state behind.
    let err = up(&lab, &opts()).unwrap_err();
    assert!(matches!(err, LabError::NamespaceTaken { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("ip netns del {stray}")),
        "{err}"
    );
    assert!(!LabDir::new(&lab).unwrap().dir.exists());
    // down does not remove it.
    let err = down(&lab).unwrap_err();
    assert!(matches!(err, LabError::NoSuchLab { .. }), "{err}");
    assert!(err.to_string().contains(&stray), "{err}");
    assert!(namespaces().contains(&stray));
    drop(cleanup);
    assert!(!namespaces().contains(&stray));
}

/// Deletes a namespace the test made itself, when dropped.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = cmd::run(IP, &["netns", "del", &self.0]);
    }
}

/// Writes an executable fake appliance; `body` is bash.
fn fake_appliance(tag: &str, body: &str) -> (PathBuf, TempDir) {
    let dir = TempDir(
        std::env::temp_dir().join(format!("causeway-lab-test-{}-{tag}", std::process::id())),
    );
    fs::create_dir_all(&dir.0).unwrap();
    let exe = dir.0.join("causeway-fake-appliance");
    write_script(&exe, body);
    (exe, dir)
}

/// Writes an executable bash script, `body` after [`backend_preamble`], in
/// place of whatever `path` was (unless it is that already).
fn write_script(path: &Path, body: &str) {
    let text = format!("#!/bin/bash\n{}\n{body}\n", backend_preamble());
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    fs::write(&tmp, text).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, path).unwrap();
    // Another test thread forking while the file was open for writing would
    // make exec fail with ETXTBSY; its child execs within microseconds.
    std::thread::sleep(Duration::from_millis(100));
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn processes_named(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && appliance::is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn start_runs_the_appliance_and_down_stops_it() {
    require_root_and_tools();
    // Stands in for `causeway run`: the kernel forwards instead of the
    // dataplane, which is all the readiness check can tell.
    let (exe, _tmp) = fake_appliance(
        "ok",
        "echo \"fake appliance: $* RUST_LOG=$RUST_LOG\"\n\
         sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n\
         exec -a causeway-fake-appliance-ok sleep 600",
    );
    let manifests = exe.parent().unwrap().to_path_buf();
    let opts = UpOptions {
        start: true,
        manifests: Some(manifests.clone()),
        appliance_exe: Some(exe),
        ..UpOptions::default()
    };
    let (guard, s) = up_guarded("r", &opts);
    let lab = guard.0.clone();

    let pid = s.appliance.pid.expect("a pid");
    assert!(s.appliance.running);
    assert!(appliance::is_causeway(pid));
    assert_eq!(s.manifests.as_deref(), Some(manifests.as_path()));
    assert_eq!(
        fs::read_to_string(LabDir::new(&lab).unwrap().pid())
            .unwrap()
            .trim(),
        pid.to_string()
    );
    let log = fs::read_to_string(&s.appliance.log).unwrap();
    let want = format!(
        "fake appliance: run --config {}",
        s.appliance.config.display()
    );
    assert!(log.contains(&want), "{log}");
    assert!(log.contains("RUST_LOG="), "{log}");
    // It runs inside the appliance namespace.
    let gw_pids = cmd::run(IP, &["netns", "pids", &Role::Gw.netns(&lab)]).unwrap();
    assert!(gw_pids.split_whitespace().any(|p| p == pid.to_string()));
    assert!(s.to_string().contains(&format!("running, pid {pid}")));

    down(&lab).unwrap();
    assert!(!appliance::is_alive(pid), "down stops the appliance");
    assert_eq!(lab_namespaces_left(&lab), Vec::<String>::new());
}

#[test]
fn start_failures_tear_the_lab_down_and_quote_the_log() {
    require_root_and_tools();
    // An appliance that exits at once.
    let (exe, _tmp) = fake_appliance(
        "exit",
        "echo 'boom: interface a0 has no XDP support' >&2\nexit 1",
    );
    let lab = unique("x");
    let _guard = Guard(lab.clone());
    let opts = UpOptions {
        start: true,
        appliance_exe: Some(exe),
        ..UpOptions::default()
    };
    let err = up(&lab, &opts).unwrap_err();
    assert!(matches!(err, LabError::UpFailed { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("exited"), "{text}");
    assert!(
        text.contains("boom: interface a0 has no XDP support"),
        "{text}"
    );
    assert_eq!(lab_namespaces_left(&lab), Vec::<String>::new());
    assert!(!LabDir::new(&lab).unwrap().dir.exists());

    // An appliance that never forwards is stopped at the deadline.
    let (exe, _tmp2) = fake_appliance(
        "hang",
        "echo 'waiting for nothing'\nexec -a causeway-fake-appliance-hang sleep 600",
    );
    let lab = unique("h");
    let _guard = Guard(lab.clone());
    let opts = UpOptions {
        start: true,
        appliance_exe: Some(exe),
        ready_timeout: Duration::from_secs(2),
        ..UpOptions::default()
    };
    let err = up(&lab, &opts).unwrap_err().to_string();
    assert!(err.contains("within 2 s"), "{err}");
    assert!(err.contains("waiting for nothing"), "{err}");
    assert_eq!(
        processes_named("causeway-fake-appliance-hang"),
        Vec::<u32>::new()
    );
    assert_eq!(lab_namespaces_left(&lab), Vec::<String>::new());
}

#[test]
fn up_checks_its_arguments_before_making_anything() {
    // No root needed: these fail before the first command.
    let err = up("Bad_Name", &opts()).unwrap_err();
    assert!(matches!(err, LabError::InvalidName { .. }), "{err}");
    let err = up(
        &unique("n"),
        &UpOptions {
            manifests: Some(PathBuf::from("/nonexistent/causeway-manifests")),
            ..UpOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/causeway-manifests"),
        "{err}"
    );
    assert!(!LabDir::new(&unique("n")).unwrap().dir.exists());
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

#[test]
fn the_command_line_parses() {
    let cli = Cli::try_parse_from([
        "lab",
        "up",
        "--name",
        "demo",
        "--start",
        "--manifests",
        "/m",
    ])
    .unwrap();
    match cli.lab.cmd {
        LabCommand::Up {
            name,
            start,
            manifests,
        } => {
            assert_eq!(name, "demo");
            assert!(start);
            assert_eq!(manifests.as_deref(), Some(Path::new("/m")));
        }
        other => panic!("{other:?}"),
    }
    let cli = Cli::try_parse_from(["lab", "status", "--name", "demo", "-o", "json"]).unwrap();
    assert!(matches!(
        cli.lab.cmd,
        LabCommand::Status {
            output: OutputFormat::Json,
            ..
        }
    ));
    let cli = Cli::try_parse_from(["lab", "status", "--name", "demo"]).unwrap();
    assert!(matches!(
        cli.lab.cmd,
        LabCommand::Status {
            output: OutputFormat::Text,
            ..
        }
    ));
    let cli = Cli::try_parse_from(["lab", "down", "--name", "demo"]).unwrap();
    assert!(matches!(cli.lab.cmd, LabCommand::Down { .. }));
    let cli = Cli::try_parse_from([
        "lab",
        "backend",
        "--listen",
        "10.2.0.2:8081",
        "--name",
        "backend-1",
    ])
    .unwrap();
    match cli.lab.cmd {
        LabCommand::Backend { listen, name } => {
            assert_eq!(listen, "10.2.0.2:8081".parse().unwrap());
            assert_eq!(name, "backend-1");
        }
        other => panic!("{other:?}"),
    }
    // Hidden: `causeway lab --help` does not offer it.
    let help = <Cli as clap::CommandFactory>::command()
        .render_help()
        .to_string();
    assert!(
        help.contains("status") && !help.lines().any(|l| l.trim_start().starts_with("backend")),
        "{help}"
    );
    assert!(
        Cli::try_parse_from(["lab", "up"]).is_err(),
        "--name is required"
    );
}

/// The lab's configuration files, as `causeway run` reads them.
mod config_file {
    use std::path::{Path, PathBuf};

    use causeway_control::config::Config;

    use super::super::{ConfigPaths, config, render_config};

    #[test]
    fn the_lab_default_parses() {
        let c = Config::parse(
            &config::DEFAULT_TEMPLATE
                .replace("{{socket}}", "/tmp/x.sock")
                .replace("{{pki}}", "/tmp/pki"),
        )
        .unwrap();
        assert_eq!(c.ports.len(), 3);
        assert_eq!(c.ports[0].interface, "a0");
        assert_eq!(c.api.socket, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn the_rendered_lab_config_parses_with_its_terminator() {
        let yaml = render_config(&ConfigPaths {
            socket: Path::new("/run/causeway/lab/x/causeway.sock"),
            svc_netns: Path::new("/run/netns/x-svc"),
            pki: Path::new("/run/causeway/lab/x/pki"),
        })
        .unwrap();
        let c = Config::parse(&yaml).unwrap();
        let t = c.terminator.expect("the lab runs the terminator");
        let names: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["demo", "postgres", "redis"]);
        assert_eq!(t.netns.as_deref(), Some(Path::new("/run/netns/x-svc")));
        assert_eq!(
            t.services[0].tls.as_ref().unwrap().cert,
            Path::new("/run/causeway/lab/x/pki/server.pem")
        );
    }
}
