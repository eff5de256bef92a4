//! Deployment: `causeway run --check` as a deployment tool calls it before
//! a restart, the readiness and liveness probes, and the appliance run
//! without root with only the capabilities its service unit grants.

use std::{path::PathBuf, process::Command};

use causeway_tests::causeway_bin;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cw-deploy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn run_check_accepts_a_good_configuration_and_names_every_mistake_of_a_bad_one() {
    let d = scratch("check");
    let state = d.join("state");
    let good = d.join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "ports: [{{name: lo, interface: lo}}]\nworkers: {{cores: [0]}}\nstate: {{dir: {}}}\napi: {{socket: {}}}\n",
            state.display(),
            d.join("api.sock").display()
        ),
    )
    .expect("write");
    let out = Command::new(causeway_bin())
        .args(["run", "--check", "--config"])
        .arg(&good)
        .output()
        .expect("run causeway");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "good config refused: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok:"), "{stdout}");
    assert!(!state.exists(), "--check wrote the state dir");
    assert!(!d.join("api.sock").exists(), "--check bound the API socket");

    let bad = d.join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "ports:\n  - {{name: a, interface: lo, queues: 0}}\n  - {{name: b, interface: nosuchif9}}\nroutes: [{{prefix: 10.0.0.0/8, port: z}}]\nworkers: {{cores: [0, 0]}}\nstate: {{dir: {}}}\n",
            state.display()
        ),
    )
    .expect("write");
    let out = Command::new(causeway_bin())
        .args(["run", "--check", "--config"])
        .arg(&bad)
        .output()
        .expect("run causeway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for field in ["ports[0].queues", "routes[0].port", "workers.cores[1]"] {
        assert!(
            stderr.contains(&format!("{}: {field}", bad.display())),
            "{field} not named with its file in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("port b: interface nosuchif9 does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("4 mistake(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The capabilities the service unit grants
/// (`ansible/roles/appliance/templates/causeway.service.j2`), as setpriv
/// spells them.
const UNIT_CAPS: &str =
    "-all,+net_raw,+net_admin,+net_bind_service,+bpf,+perfmon,+ipc_lock,+sys_admin";
/// A uid and gid that no one else uses.
const APPLIANCE_UID: u32 = 64_123;

/// The appliance started as `causeway.service` starts it: not root, with
/// exactly the unit's capabilities (ambient, bounding set the same),
/// `NOTIFY_SOCKET` set. It must say READY=1, and once it has, island A
/// reaches island B through it, `/ready` and `/live` answer 200 on its
/// metrics listener, and a client with the lab's certificate gets an
/// answer from the terminator, which had to enter its namespace.
#[test]
fn the_appliance_runs_without_root_with_only_the_units_capabilities() {
    use causeway_tests::{Lab, Reaped, ok, require, wait_for};
    use std::{os::unix::net::UnixDatagram, time::Duration};
    require("setpriv", "util-linux");
    require("curl", "curl");
    let lab = Lab::up("tn");
    let dir = PathBuf::from(format!("/run/causeway/lab/{}", lab.name));
    let own = dir.join("nonroot");
    // Its own copy of what it reads and writes, owned by its user: the
    // configuration, the PKI (keys are 0600), the state and the sockets.
    ok(&format!(
        "mkdir -p {o} && cp -a {d}/pki {o}/pki",
        o = own.display(),
        d = dir.display()
    ));
    let config = std::fs::read_to_string(dir.join("config.yaml"))
        .expect("the lab's config")
        .replace(
            &format!("{}/", dir.display()),
            &format!("{}/", own.display()),
        );
    std::fs::write(own.join("config.yaml"), config).expect("write config");
    let notify_path = own.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    ok(&format!(
        "chown -R {APPLIANCE_UID}:{APPLIANCE_UID} {o} && chmod 0700 {o}",
        o = own.display()
    ));
    let log = std::fs::File::create(own.join("appliance.log")).expect("log");
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw"), "setpriv"])
        .arg(format!("--reuid={APPLIANCE_UID}"))
        .arg(format!("--regid={APPLIANCE_UID}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={UNIT_CAPS}"))
        .arg(format!("--ambient-caps={UNIT_CAPS}"))
        .arg(format!("--bounding-set={UNIT_CAPS}"))
        .arg("--no-new-privs")
        .arg(causeway_bin())
        .args(["run", "--config"])
        .arg(own.join("config.yaml"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the appliance");
    // `ip netns exec` and setpriv exec: this is the appliance's pid.
    let pid = child.id();
    let _appliance = Reaped(child);
    let appliance_log = || std::fs::read_to_string(own.join("appliance.log")).unwrap_or_default();
    // READY=1, and nothing before it that claims readiness.
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while !got.iter().any(|m: &String| m.contains("READY=1")) {
        let n = notify.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no READY=1 within 60 s ({e}); got {got:?}; log:\n{}",
                appliance_log()
            )
        });
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // Ready means forwarding: the first ping after READY=1 is answered.
    let ping = lab.try_exec("a", "ping -c1 -W2 10.2.0.2");
    assert!(
        ping.status.success(),
        "READY=1 came before forwarding; log:\n{}",
        appliance_log()
    );
    let status = ok(&format!(
        "grep -E '^(Uid|CapEff|CapBnd)' /proc/{pid}/status"
    ));
    assert!(status.contains(&format!("{APPLIANCE_UID}")), "{status}");
    // CapEff and CapBnd: net_bind_service(10) net_admin(12) net_raw(13)
    // ipc_lock(14) sys_admin(21) perfmon(38) bpf(39).
    assert_eq!(
        status.matches("000000c000207400").count(),
        2,
        "not exactly the unit's capabilities:\n{status}"
    );
    for probe in ["live", "ready"] {
        let code = lab.exec(
            "gw",
            &format!("curl -s -o /dev/null -w %{{http_code}} http://127.0.0.1:9464/{probe}"),
        );
        assert_eq!(code, "200", "/{probe}");
    }
    // The terminator: mTLS from island A, answered by a backend.
    let pki = own.join("pki");
    let out = lab.try_exec(
        "a",
        &format!(
            "curl -s -m 5 -o /dev/null -w %{{http_code}} --cacert {p}/ca.pem --cert {p}/client.pem --key {p}/client-key.pem --resolve demo.causeway.lab:443:10.100.0.10 https://demo.causeway.lab/",
            p = pki.display()
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "TLS through the non-root terminator; log:\n{}",
        appliance_log()
    );
    // And it stops cleanly on SIGTERM, saying STOPPING=1.
    notify
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    ok(&format!("kill -TERM {pid}"));
    let stopping = wait_for(Duration::from_secs(10), || {
        let n = notify.recv(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n])
            .contains("STOPPING=1")
            .then_some(())
    });
    assert!(
        stopping.is_some(),
        "no STOPPING=1; log:\n{}",
        appliance_log()
    );
}

/// `causeway ctl ARGS` for the lab `lab`, run in namespace `role`.
fn ctl_in(lab: &causeway_tests::Lab, role: &str, args: &str) -> std::process::Output {
    lab.try_exec(
        role,
        &format!("{} ctl --lab {} {args}", causeway_bin().display(), lab.name),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ctl health` asks grpc.health.v1 Health/Check, on the Unix socket and
/// on the mTLS TCP API, and exits 0 only for SERVING; against a socket
/// nothing listens on it fails saying so, and the wrong identity is told
/// it may not be admitted.
#[test]
fn ctl_health_says_serving_over_both_listeners_and_names_a_dead_socket() {
    use causeway_tests::Lab;
    let lab = Lab::start("hh");
    let out = ctl_in(&lab, "gw", "health");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SERVING\n");

    let pki = format!("/run/causeway/lab/{}/pki", lab.name);
    let over_tcp = |who: &str| {
        lab.try_exec(
            "gw",
            &format!(
                "{} ctl --server https://127.0.0.1:7443 --tls-ca {pki}/ca.pem \
                 --tls-cert {pki}/{who}.pem --tls-key {pki}/{who}-key.pem \
                 --tls-server-name demo.causeway.lab health",
                causeway_bin().display()
            ),
        )
    };
    let admin = over_tcp("client");
    assert!(admin.status.success(), "{}", text(&admin.stderr));
    assert_eq!(text(&admin.stdout), "SERVING\n");
    let stranger = over_tcp("upstream");
    assert!(!stranger.status.success(), "a stranger was answered");
    assert!(
        text(&stranger.stderr).contains("api.tcp.admin_identities"),
        "{}",
        text(&stranger.stderr)
    );

    // A socket file that nothing listens on (an appliance that died).
    let d = scratch("dead");
    let dead = d.join("control.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let out = Command::new(causeway_bin())
        .args(["ctl", "--socket"])
        .arg(&dead)
        .arg("health")
        .output()
        .expect("run causeway");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to the appliance control socket {}: is the appliance running",
            dead.display()
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A client of the terminator that opens its connection and sends the
/// first line of a request, then waits for a line on stdin before it
/// sends the rest and prints the status line of the answer.
const HELD_CLIENT: &str = r#"
import socket, ssl, sys
pki = sys.argv[1]
ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
ctx.load_cert_chain(pki + "/client.pem", pki + "/client-key.pem")
s = ctx.wrap_socket(socket.create_connection(("10.100.0.10", 443), timeout=60),
                    server_hostname="demo.causeway.lab")
s.sendall(b"GET / HTTP/1.1\r\n")
print("open", flush=True)
sys.stdin.readline()
s.sendall(b"Host: demo.causeway.lab\r\nConnection: close\r\n\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.split(b"\r\n")[0].decode(), flush=True)
"#;

/// `ctl drain`: health and /ready turn NOT_SERVING at once; the
/// terminator accepts no new connection, while one opened before the drain
/// finishes its request; the drain answers only after that connection
/// ended; the dataplane still forwards.
#[test]
fn a_drain_turns_health_off_and_lets_an_open_tls_connection_finish() {
    use causeway_tests::{Lab, Reaped, ok, require, wait_for};
    use std::{
        io::{BufRead, BufReader, Write},
        process::Stdio,
        time::Duration,
    };
    require("curl", "curl");
    require("python3", "python3");
    let lab = Lab::up("hd");
    let dir = PathBuf::from(format!("/run/causeway/lab/{}", lab.name));
    // A drain window longer than this test takes, so that it is the held
    // connection's end that ends the drain.
    ok(&format!(
        "sed -i 's/^terminator:$/terminator:\\n  drain_timeout: 120s/' {}",
        dir.join("config.yaml").display()
    ));
    ok(&format!(
        "{} lab start --name {}",
        causeway_bin().display(),
        lab.name
    ));
    let pki = dir.join("pki");
    let curl = || {
        lab.try_exec(
            "a",
            &format!(
                "curl -s -m 3 -o /dev/null -w %{{http_code}} --cacert {p}/ca.pem --cert {p}/client.pem --key {p}/client-key.pem --resolve demo.causeway.lab:443:10.100.0.10 https://demo.causeway.lab/",
                p = pki.display()
            ),
        )
    };
    assert_eq!(
        text(&curl().stdout),
        "200",
        "the terminator answers before the drain"
    );
    let ready = || {
        lab.exec(
            "gw",
            "curl -s -o /dev/null -w %{http_code} http://127.0.0.1:9464/ready",
        )
    };
    assert_eq!(ready(), "200");

    let script = dir.join("held.py");
    std::fs::write(&script, HELD_CLIENT).expect("write the client");
    let mut held = Command::new("ip")
        .args(["netns", "exec", &lab.ns("a"), "python3"])
        .arg(&script)
        .arg(&pki)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the held client");
    let mut said = BufReader::new(held.stdout.take().expect("stdout"));
    let mut line = String::new();
    said.read_line(&mut line).expect("read");
    assert_eq!(line, "open\n", "the held connection did not open");

    let drain = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw")])
        .arg(causeway_bin())
        .args(["ctl", "--lab", &lab.name, "drain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ctl drain");
    let mut drain = Reaped(drain);
    let not_serving = wait_for(Duration::from_secs(10), || {
        let out = ctl_in(&lab, "gw", "health");
        (!out.status.success()).then(|| text(&out.stderr))
    })
    .expect("health still says SERVING after a drain");
    assert!(not_serving.contains("NOT_SERVING"), "{not_serving}");
    assert_eq!(ready(), "503", "/ready after a drain");
    // No new connection is accepted while the drain waits.
    let refused = wait_for(Duration::from_secs(10), || {
        (text(&curl().stdout) != "200").then_some(())
    });
    assert!(
        refused.is_some(),
        "the terminator still accepts while draining"
    );
    assert!(
        drain.0.try_wait().expect("wait").is_none(),
        "the drain ended while a connection was open"
    );

    // The connection opened before the drain finishes its request.
    held.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    line.clear();
    said.read_line(&mut line).expect("read");
    assert!(
        line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200"),
        "the held connection got {line:?}"
    );
    let _ = held.wait();
    // And then the drain answers, and the dataplane still forwards.
    let done = wait_for(Duration::from_secs(30), || {
        drain.0.try_wait().ok().flatten()
    })
    .expect("the drain did not end after its last connection");
    assert!(done.success(), "ctl drain failed");
    let mut answer = String::new();
    std::io::Read::read_to_string(drain.0.stdout.as_mut().expect("stdout"), &mut answer)
        .expect("read");
    assert!(answer.starts_with("drained in "), "{answer}");
    assert!(
        lab.try_exec("a", "ping -c1 -W2 10.2.0.2").status.success(),
        "a drained appliance stopped forwarding"
    );
}
