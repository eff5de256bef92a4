//! The armoured car on a lab: the terminator behind the dataplane's host
//! port, with real clients (curl, openssl s_client, psql, redis-cli, python's
//! ssl), real servers (the lab's HTTP backends, PostgreSQL, Redis) and a
//! second, terminator-only causeway on island B as the far gateway.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime},
};

use causeway_tests::{Lab, causeway_bin, ok, require, sh, wait_for};
use causeway_tls::identity::ca::{Ca, KeyKind, Leaf};

/// Paths and addresses the lab publishes for its terminator.
struct Tls {
    service: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    pki: PathBuf,
    server_name: String,
}

fn tls_of(lab: &Lab) -> Tls {
    let st = lab.status();
    let t = &st["terminator"];
    let path = |k: &str| {
        PathBuf::from(
            t[k].as_str()
                .unwrap_or_else(|| panic!("status terminator.{k}: {st}")),
        )
    };
    let ca = path("ca");
    Tls {
        service: t["service"].as_str().expect("service").to_owned(),
        pki: ca.parent().expect("pki dir").to_owned(),
        ca,
        cert: path("client_cert"),
        key: path("client_key"),
        server_name: t["server_name"].as_str().expect("server_name").to_owned(),
    }
}

/// The appliance's Prometheus text.
fn metrics(lab: &Lab) -> String {
    let socket = lab.status()["appliance"]["api_socket"]
        .as_str()
        .expect("api socket")
        .to_owned();
    ok(&format!("curl -s --unix-socket {socket} http://x/metrics"))
}

/// The value of the sample whose line starts with `prefix` (a metric name
/// with its labels), 0 if absent.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn failures(lab: &Lab, reason: &str) -> f64 {
    sample(
        &metrics(lab),
        &format!(
            "causeway_terminator_tls_handshake_failures_total{{service=\"demo\",peer=\"src\",reason=\"{reason}\"}}"
        ),
    )
}

/// One HTTPS request from island A with curl; (status, X-Backend).
fn curl(lab: &Lab, t: &Tls, cert: Option<(&Path, &Path)>) -> (String, String) {
    let (host, port) = t.service.rsplit_once(':').expect("host:port");
    curl_https(lab, "a", &t.server_name, port, host, &t.ca, cert)
}

/// curl from `island` to `https://name:port/`, `name` resolved to `addr`,
/// verifying the server against `ca`; (status, X-Backend), status `none`
/// when no HTTP answer came.
fn curl_https(
    lab: &Lab,
    island: &str,
    name: &str,
    port: impl std::fmt::Display,
    addr: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
) -> (String, String) {
    let auth = cert.map_or(String::new(), |(c, k)| {
        format!("--cert {} --key {}", c.display(), k.display())
    });
    let out = lab.try_exec(
        island,
        &format!(
            "curl -s -m 5 -D - -o /dev/null --cacert {} {auth} --resolve {name}:{port}:{addr} https://{name}:{port}/",
            ca.display()
        ),
    );
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("none")
        .to_owned();
    let backend = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-backend:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, backend)
}

#[test]
fn curl_with_the_lab_client_certificate_reaches_all_three_backends() {
    require("curl", "curl");
    let lab = Lab::start("tc");
    let t = tls_of(&lab);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..12 {
        let (status, backend) = curl(&lab, &t, Some((&t.cert, &t.key)));
        assert_eq!(status, "200", "log:\n{}", lab.log());
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["backend-1", "backend-2", "backend-3"],
        "round-robin spreads the requests: {seen:?}"
    );
    let m = metrics(&lab);
    assert!(
        sample(
            &m,
            "causeway_terminator_tls_handshakes_total{service=\"demo\"}"
        ) >= 12.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "causeway_terminator_tcp_open_total{service=\"demo\",peer=\"dst\"}"
        ) >= 12.0
    );
    // Each client leg says which path its records took: user space, for
    // the reason this kernel gives (here, usually, no tls ULP).
    let reason = match causeway_tls::ktls::probe() {
        causeway_tls::ktls::KtlsSupport::NoTlsUlp => "no_tls_ulp",
        causeway_tls::ktls::KtlsSupport::Available => "kernel_path_not_built",
        _ => "kernel_refused",
    };
    assert!(
        sample(
            &m,
            &format!(
                "causeway_terminator_tls_record_path_total{{service=\"demo\",peer=\"src\",path=\"userspace\",reason=\"{reason}\"}}"
            )
        ) >= 12.0,
        "{m}"
    );
    // Every byte went through the dataplane's host port.
    let stats = lab.stats();
    assert!(Lab::port_counter(&stats, "host", "rx_packets") > 0);
}

/// Issues a client certificate into `dir` from `ca`.
fn issue(ca: &Ca, dir: &Path, stem: &str, id: &str, not_after: SystemTime) -> (PathBuf, PathBuf) {
    let mut leaf = Leaf::svid(id);
    leaf.client = true;
    leaf.server = false;
    leaf.key = KeyKind::EcdsaP256;
    leaf.not_before = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    leaf.not_after = not_after;
    ca.issue(&leaf)
        .expect("issue")
        .write(dir, stem)
        .expect("write")
}

/// `openssl s_client` from island A, sending one request; whether the
/// server answered it.
fn s_client(lab: &Lab, t: &Tls, cert: Option<(&Path, &Path)>) -> bool {
    let auth = cert.map_or(String::new(), |(c, k)| {
        format!("-cert {} -key {}", c.display(), k.display())
    });
    let out = lab.try_exec(
        "a",
        &format!(
            "sh -c 'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | timeout 5 openssl s_client -quiet -connect {} -servername {} -CAfile {} {auth} 2>&1'",
            t.service,
            t.server_name,
            t.ca.display()
        ),
    );
    String::from_utf8_lossy(&out.stdout).contains("200 OK")
}

#[test]
fn openssl_without_a_good_certificate_is_refused_and_counted_by_reason() {
    require("openssl", "openssl");
    let lab = Lab::start("tr");
    let t = tls_of(&lab);
    let dir = tempdir("refusals");
    let lab_ca = Ca::load(&t.pki.join("ca.pem"), &t.pki.join("ca-key.pem")).expect("lab CA");
    let other_ca = Ca::new("not the lab CA").expect("another CA");
    let year = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    let client_id = "spiffe://causeway.lab/ns/lab/sa/client";
    let other = issue(&other_ca, &dir, "other", client_id, year);
    let expired = issue(
        &lab_ca,
        &dir,
        "expired",
        client_id,
        SystemTime::now() - Duration::from_secs(24 * 3600),
    );
    let intruder = issue(
        &lab_ca,
        &dir,
        "intruder",
        "spiffe://causeway.lab/ns/lab/sa/intruder",
        year,
    );

    assert!(
        s_client(&lab, &t, Some((&t.cert, &t.key))),
        "the lab client is served"
    );
    let cases: [(&str, Option<(&Path, &Path)>); 4] = [
        ("no_client_cert", None),
        ("unknown_ca", Some((&other.0, &other.1))),
        ("expired", Some((&expired.0, &expired.1))),
        ("identity_not_admitted", Some((&intruder.0, &intruder.1))),
    ];
    for (reason, cert) in cases {
        let before = failures(&lab, reason);
        assert!(
            !s_client(&lab, &t, cert),
            "{reason}: the request must be refused"
        );
        let counted = wait_for(Duration::from_secs(3), || {
            (failures(&lab, reason) > before).then_some(())
        });
        assert!(counted.is_some(), "{reason} is counted:\n{}", metrics(&lab));
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(lab: &Lab, role: &str, cmd: &str, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(role),
                "sh",
                "-c",
                &format!("exec {cmd}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd}: {e}")),
    )
}

fn listening(lab: &Lab, role: &str, port: u16) -> bool {
    let out = lab.try_exec(role, &format!("ss -Hltn sport = :{port}"));
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// The PostgreSQL server binaries (Debian puts them off PATH).
fn pg_bin(tool: &str) -> String {
    let from_path = sh(&format!("command -v {tool}"));
    if from_path.status.success() {
        return String::from_utf8_lossy(&from_path.stdout).trim().to_owned();
    }
    let found = sh(&format!(
        "ls -d /usr/lib/postgresql/*/bin/{tool} | sort -V | tail -1"
    ));
    let p = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(
        !p.is_empty(),
        "`{tool}` is needed by this test: apt-get install postgresql"
    );
    p
}

/// Island B's gateway: a terminator-only causeway terminating mTLS from
/// the appliance (identity `upstream`) in front of PostgreSQL and Redis on
/// B's loopback.
fn far_gateway_config(t: &Tls, dir: &Path) -> PathBuf {
    let pki = t.pki.display();
    let yaml = format!(
        "ports: []\napi: {{socket: {dir}/far.sock}}\nstate: {{dir: {dir}/far-state}}\nterminator:\n  cores: [0]\n  services:\n\
         \x20   - name: postgres-in\n      listen: 10.2.0.2:15432\n      mode: terminate\n\
         \x20     tls: {{cert: {pki}/upstream.pem, key: {pki}/upstream-key.pem, client_ca: {pki}/ca.pem,\n\
         \x20           allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/gateway']}}\n\
         \x20     upstreams: [127.0.0.1:5432]\n\
         \x20   - name: redis-in\n      listen: 10.2.0.2:16379\n      mode: terminate\n\
         \x20     tls: {{cert: {pki}/upstream.pem, key: {pki}/upstream-key.pem, client_ca: {pki}/ca.pem,\n\
         \x20           allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/gateway']}}\n\
         \x20     upstreams: [127.0.0.1:6379]\n",
        dir = dir.display()
    );
    let path = dir.join("far.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn psql_and_redis_cli_cross_two_gateways_over_mtls() {
    require("psql", "postgresql-client");
    require("redis-server", "redis-server");
    require("redis-cli", "redis-tools");
    let lab = Lab::start("tg");
    let t = tls_of(&lab);
    let dir = tempdir("g2g");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // PostgreSQL on island B's loopback, run as the postgres user.
    let data = dir.join("pg");
    ok(&format!(
        "runuser -u postgres -- {} -D {} -A trust -U postgres >/dev/null",
        pg_bin("initdb"),
        data.display()
    ));
    let _pg = spawn_in(
        &lab,
        "b",
        &format!(
            "runuser -u postgres -- {} -D {} -h 127.0.0.1 -p 5432 -k {}",
            pg_bin("postgres"),
            data.display(),
            dir.display()
        ),
        &dir.join("pg.log"),
    );
    let _redis = spawn_in(
        &lab,
        "b",
        "redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
        &dir.join("redis.log"),
    );
    let far = far_gateway_config(&t, &dir);
    let _far = spawn_in(
        &lab,
        "b",
        &format!(
            "{} run --config {}",
            causeway_bin().display(),
            far.display()
        ),
        &dir.join("far.log"),
    );
    let ready = wait_for(Duration::from_secs(20), || {
        (listening(&lab, "b", 5432) && listening(&lab, "b", 6379) && listening(&lab, "b", 15432))
            .then_some(())
    });
    assert!(
        ready.is_some(),
        "island B's servers did not start:\n{}\n{}",
        std::fs::read_to_string(dir.join("pg.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("far.log")).unwrap_or_default()
    );

    // psql (plain) → appliance `postgres` (originate) → mTLS → far
    // gateway (terminate) → PostgreSQL.
    let rows = lab.exec(
        "a",
        "psql -h 10.100.0.20 -p 5432 -U postgres -At -c \"select 6 * 7; select string_agg(g::text, ',') from generate_series(1, 5) g\"",
    );
    assert_eq!(rows.trim(), "42\n1,2,3,4,5", "{}", lab.log());
    // redis-cli the same way.
    lab.exec("a", "redis-cli -h 10.100.0.21 -p 6379 SET causeway bridge");
    let got = lab.exec("a", "redis-cli -h 10.100.0.21 -p 6379 GET causeway");
    assert_eq!(got.trim(), "bridge");
    // The far gateway saw the appliance's identity, and only mTLS crossed.
    let far_metrics = ok(&format!(
        "curl -s --unix-socket {}/far.sock http://x/metrics",
        dir.display()
    ));
    assert!(
        sample(
            &far_metrics,
            "causeway_terminator_tls_handshakes_total{service=\"postgres-in\"}"
        ) >= 1.0,
        "{far_metrics}"
    );
    assert!(
        sample(
            &far_metrics,
            "causeway_terminator_tls_handshakes_total{service=\"redis-in\"}"
        ) >= 2.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A python load generator in island A: `n` HTTPS requests, each on a new
/// TLS connection, from `threads` threads; prints one JSON line of counts
/// per backend and failures.
fn load_script(t: &Tls, n: usize, threads: usize) -> String {
    let (host, port) = t.service.rsplit_once(':').unwrap();
    format!(
        r#"
import json, socket, ssl, threading, collections, time
ctx = ssl.create_default_context(cafile="{ca}")
ctx.load_cert_chain("{cert}", "{key}")
counts = collections.Counter(); lock = threading.Lock(); failed_at = []
def worker(k):
    for _ in range(k):
        start = time.time()
        try:
            with socket.create_connection(("{host}", {port}), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="{name}") as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = c.recv(4096)
                        if not chunk: break
                        data += chunk
            head = data.split(b"\r\n\r\n")[0].decode()
            backend = [l.split(":",1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("x-backend:")]
            ok = head.startswith("HTTP/1.1 200") and backend
            key = backend[0] if ok else "failed"
        except Exception as e:
            key = "failed"
        with lock:
            counts[key] += 1
            if key == "failed": failed_at.append(start)
ts = [threading.Thread(target=worker, args=({per},)) for _ in range({threads})]
[t.start() for t in ts]; [t.join() for t in ts]
counts["failed_started_at"] = failed_at
print(json.dumps(counts), flush=True)
"#,
        ca = t.ca.display(),
        cert = t.cert.display(),
        key = t.key.display(),
        name = t.server_name,
        per = n / threads,
    )
}

fn run_load(lab: &Lab, t: &Tls, n: usize) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("a"),
            "python3",
            "-c",
            &load_script(t, n, 4),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in island A")
}

fn load_result(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).expect("load result JSON")
}

fn backend_pid(lab: &Lab, port: u16) -> u32 {
    let out = ok(&format!("ip netns pids {}", lab.ns("b")));
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&format!("10.2.0.2:{port}")))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no backend on port {port}"))
}

#[test]
fn a_backend_killed_under_load_is_ejected_invisibly_and_probed_back() {
    require("python3", "python3");
    let lab = Lab::start("te");
    let t = tls_of(&lab);
    let load = run_load(&lab, &t, 1200);
    std::thread::sleep(Duration::from_millis(300));
    let pid = backend_pid(&lab, 8082);
    ok(&format!("kill -9 {pid}"));
    // Its sockets are gone once the process is.
    wait_for(Duration::from_secs(5), || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .expect("backend-2 exits");
    let killed_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let counts = load_result(load);
    // A connection already handed to backend-2 when it died is lost with it:
    // its request bytes were sent, and an L4 proxy cannot replay them (nor
    // does Linkerd's). Every connection opened after the kill must succeed.
    let failed_at: Vec<f64> = counts["failed_started_at"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    assert!(
        failed_at.iter().all(|&t| t < killed_at),
        "a connection opened after the kill failed: {counts}"
    );
    assert!(
        failed_at.len() <= 4,
        "at most the in-flight ones (4 threads) fail: {counts}"
    );
    assert!(counts["backend-1"].as_u64().unwrap_or(0) > 100, "{counts}");
    let m = metrics(&lab);
    assert!(
        sample(
            &m,
            "causeway_terminator_endpoint_ejections_total{service=\"demo\",endpoint=\"10.2.0.2:8082\"}"
        ) >= 1.0,
        "the dead backend is ejected:\n{m}"
    );
    assert!(sample(&m, "causeway_terminator_retries_total{service=\"demo\"}") >= 1.0);
    // It comes back; traffic probes it and it serves again.
    let dir = tempdir("revive");
    let _b2 = spawn_in(
        &lab,
        "b",
        &format!(
            "{} lab backend --listen 10.2.0.2:8082 --name backend-2",
            causeway_bin().display()
        ),
        &dir.join("b2.log"),
    );
    let back = wait_for(Duration::from_secs(60), || {
        let counts = load_result(run_load(&lab, &t, 12));
        (counts["backend-2"].as_u64().unwrap_or(0) > 0).then_some(counts)
    });
    assert!(
        back.is_some(),
        "backend-2 was never probed back:\n{}",
        metrics(&lab)
    );
    let m = metrics(&lab);
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_endpoint_state{service=\"demo\",endpoint=\"10.2.0.2:8082\",state=\"ready\"}"
        ),
        1.0,
        "{m}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The SHA-256 fingerprint of the certificate the service presents now.
fn presented(lab: &Lab, t: &Tls) -> String {
    lab.exec(
        "a",
        &format!(
            "sh -c 'timeout 5 openssl s_client -connect {} -servername {} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256'",
            t.service,
            t.server_name,
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        ),
    )
    .trim()
    .to_owned()
}

#[test]
fn a_rotated_certificate_serves_new_handshakes_and_spares_open_connections() {
    require("openssl", "openssl");
    let lab = Lab::start("tk");
    let t = tls_of(&lab);
    let before = presented(&lab, &t);
    assert!(before.contains("Fingerprint"), "{before}");
    // A keep-alive connection opened before the rotation.
    let (host, port) = t.service.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile="{ca}")
ctx.load_cert_chain("{cert}", "{key}")
c = ctx.wrap_socket(socket.create_connection(("{host}", {port}), timeout=10), server_hostname="{name}")
def get():
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
        data += c.recv(4096)
    return data.split(b"\r\n")[0].decode()
print(get(), flush=True)
sys.stdin.readline()
print(get(), flush=True)
"#,
        ca = t.ca.display(),
        cert = t.cert.display(),
        key = t.key.display(),
        name = t.server_name,
    );
    let mut old = Command::new("ip")
        .args(["netns", "exec", &lab.ns("a"), "python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(old.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "HTTP/1.1 200 OK");

    // Rotate: a new key and certificate from the lab CA, same names.
    let ca = Ca::load(&t.pki.join("ca.pem"), &t.pki.join("ca-key.pem")).unwrap();
    let mut leaf = Leaf::svid("spiffe://causeway.lab/ns/lab/sa/gateway");
    leaf.dns_names = vec![t.server_name.clone()];
    leaf.ip_addrs = vec![IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10))];
    leaf.server = true;
    leaf.client = true;
    let issued = ca.issue(&leaf).unwrap();
    let staging = tempdir("rotate");
    let (cert, key) = issued.write(&staging, "server").unwrap();
    std::fs::rename(&key, t.pki.join("server-key.pem")).unwrap();
    std::fs::rename(&cert, t.pki.join("server.pem")).unwrap();

    let after = wait_for(Duration::from_secs(10), || {
        let now = presented(&lab, &t);
        (now != before && now.contains("Fingerprint")).then_some(now)
    });
    assert!(
        after.is_some(),
        "new handshakes never saw the new certificate:\n{}",
        lab.log()
    );
    // The connection from before still works.
    writeln!(old.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "HTTP/1.1 200 OK");
    let _ = old.wait();
    let _ = std::fs::remove_dir_all(staging);
}

// ---- Resource limits and hostile clients (issue 19, items 9 and 10) ----
//
// These run a terminator-only causeway of their own in island B, in front
// of the lab's HTTP backends, so each test sets the limits it exercises
// (descriptors with prlimit, short timeouts, a small per-client cap).

/// A terminator-only causeway in island B: its process, its files, and
/// where its API socket is.
struct Gateway {
    proc: Proc,
    dir: PathBuf,
}

impl Gateway {
    /// Starts `causeway run` in island B with `services` (YAML list items,
    /// indented for `terminator.services`), under `prefix` (e.g. a
    /// `prlimit` command), and waits until it listens on `port`.
    fn start(lab: &Lab, tag: &str, prefix: &str, services: &str, port: u16) -> Self {
        let dir = tempdir(tag);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let yaml = format!(
            "ports: []\napi: {{socket: {d}/gw.sock}}\nstate: {{dir: {d}/state}}\n\
             terminator:\n  cores: [0]\n  driver: io_uring\n  services:\n{services}",
            d = dir.display()
        );
        std::fs::write(dir.join("gw.yaml"), yaml).unwrap();
        let proc = spawn_in(
            lab,
            "b",
            &format!(
                "env RUST_LOG=info {prefix} {} run --config {}/gw.yaml",
                causeway_bin().display(),
                dir.display()
            ),
            &dir.join("gw.log"),
        );
        let me = Self { proc, dir };
        let up = wait_for(Duration::from_secs(20), || {
            listening(lab, "b", port).then_some(())
        });
        assert!(up.is_some(), "the gateway did not listen:\n{}", me.log());
        me
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gw.log")).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        ok(&format!(
            "curl -s -m 5 --unix-socket {}/gw.sock http://x/metrics",
            self.dir.display()
        ))
    }

    /// CPU seconds (user + system) the process has used.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces): utime is
        // the 14th field of the line, stime the 15th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        let hz: f64 = ok("getconf CLK_TCK").trim().parse().unwrap();
        ticks / hz
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(Iterator::count)
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a python script in island `role`; its stdout. The script is
/// bounded by `timeout` seconds (killed after).
fn python(lab: &Lab, role: &str, script: &str, timeout: u32) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(role),
            "timeout",
            &timeout.to_string(),
            "python3",
            "-c",
            script,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One plain HTTP request through the gateway on `port`; whether the
/// backend answered 200.
fn http_ok(lab: &Lab, port: u16) -> bool {
    let out = lab.try_exec(
        "b",
        &format!("curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://10.2.0.2:{port}/"),
    );
    String::from_utf8_lossy(&out.stdout).trim() == "200"
}

#[test]
fn out_of_descriptors_the_terminator_backs_off_counts_it_and_serves_again() {
    require("prlimit", "util-linux");
    require("python3", "python3");
    let lab = Lab::up("tf");
    let port = 17080;
    let services = format!(
        "    - {{name: web, listen: 10.2.0.2:{port}, mode: plain, upstreams: [10.2.0.2:8081]}}\n"
    );
    let limit = 64;
    let gw = Gateway::start(
        &lab,
        "fds",
        &format!("prlimit --nofile={limit}:{limit}"),
        &services,
        port,
    );
    assert!(http_ok(&lab, port), "served before the pressure");
    let base = gw.open_fds();
    assert!(
        base + 10 < limit,
        "{base} descriptors at rest leave no room under {limit}"
    );
    // Idle clients: each proxied one costs two descriptors, so this is
    // several times what fits. They connect (the kernel completes the TCP
    // handshake and queues them) and hold on until told to go.
    let idle = limit;
    let script = format!(
        r#"
import socket, sys, time
socks, errors = [], set()
for _ in range({idle}):
    try:
        socks.append(socket.create_connection(("10.2.0.2", {port}), timeout=5))
    except OSError as e:
        errors.add(str(e))
print(len(socks), sorted(errors), flush=True)
sys.stdin.readline()
for s in socks: s.close()
"#
    );
    let mut clients = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("b"),
            "timeout",
            "60",
            "python3",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(clients.stdout.take().unwrap()).lines();
    // Some may be refused once the terminator resets the ones it cannot
    // serve; enough must hold on to be more than fit.
    let opened = lines.next().unwrap().unwrap();
    let n: usize = opened.split(' ').next().unwrap().parse().unwrap();
    assert!(
        2 * n > limit - base,
        "only {n} idle clients connected ({opened}); {} descriptors are free",
        limit - base
    );
    // Let it meet the limit, then watch it for two seconds: a worker that
    // re-arms a failing accept burns a whole core; one that backs off
    // sleeps.
    std::thread::sleep(Duration::from_secs(1));
    let full = gw.open_fds();
    let cpu_before = gw.cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = gw.cpu_seconds() - cpu_before;
    // The idle ones leave; new clients are served again.
    writeln!(clients.stdin.as_mut().unwrap()).unwrap();
    let _ = clients.wait();
    let served = wait_for(Duration::from_secs(10), || {
        http_ok(&lab, port).then_some(())
    });
    let m = gw.metrics();
    assert!(
        cpu < 0.5,
        "the terminator used {cpu:.2} s of CPU in 2 s out of descriptors \
         ({full} of {limit} open): it spins\n{}",
        gw.log()
    );
    let exhausted = sample(
        &m,
        "causeway_terminator_fd_exhausted_total{service=\"web\",stage=\"accept\"}",
    ) + sample(
        &m,
        "causeway_terminator_fd_exhausted_total{service=\"web\",stage=\"connect\"}",
    );
    assert!(
        exhausted >= 1.0,
        "EMFILE is counted ({full} of {limit} open, {base} at rest):\n{m}"
    );
    for family in [
        "endpoint_connect_failures_total",
        "endpoint_ejections_total",
    ] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    "causeway_terminator_{family}{{service=\"web\",endpoint=\"10.2.0.2:8081\"}}"
                )
            ),
            0.0,
            "local pressure is never the upstream's fault ({family}):\n{m}"
        );
    }
    assert!(
        served.is_some(),
        "not served once the idle clients left:\n{}",
        gw.log()
    );
    assert!(
        gw.log().contains("RLIMIT_NOFILE"),
        "the descriptor limits are logged:\n{}",
        gw.log()
    );
}

/// The gateway's services for the slow-client tests: `tls` terminates
/// with short timeouts, `capped` is plain with a cap of 3 per client.
fn slow_client_services(pki: &causeway_tls::identity::ca::LabPki) -> String {
    format!(
        "    - name: tls\n      listen: 10.2.0.2:17443\n      mode: terminate\n\
         \x20     tls: {{cert: {}, key: {}}}\n      upstreams: [10.2.0.2:8081]\n\
         \x20     timeouts: {{handshake: 1s, first_byte: 1s, idle: 3s}}\n\
         \x20   - name: capped\n      listen: 10.2.0.2:17081\n      mode: plain\n\
         \x20     upstreams: [10.2.0.2:8081]\n      max_connections_per_client: 3\n",
        pki.server.cert.display(),
        pki.server.key.display()
    )
}

#[test]
fn slow_silent_and_idle_clients_are_let_go_at_their_own_timeouts() {
    require("python3", "python3");
    let lab = Lab::up("ts");
    let pki_dir = tempdir("slow-pki");
    let pki = causeway_tls::identity::ca::lab_pki(
        &pki_dir,
        "causeway.lab",
        &[IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2))],
    )
    .expect("a PKI");
    let gw = Gateway::start(&lab, "slow", "", &slow_client_services(&pki), 17443);
    // Three clients at once, each timing how long until the gateway lets
    // it go: one sends nothing at all (handshake timeout, 1 s), one
    // completes TLS and sends nothing (first-byte timeout, 1 s), one is
    // served once and then idles (idle timeout, 3 s).
    let script = format!(
        r#"
import json, socket, ssl, threading, time
ctx = ssl.create_default_context(cafile="{ca}")
out = {{}}
def until_closed(s, key, start):
    s.settimeout(20)
    try:
        while s.recv(4096): pass
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    out[key] = round(time.time() - start, 2)
def silent():
    start = time.time()
    until_closed(socket.create_connection(("10.2.0.2", 17443)), "handshake", start)
def no_first_byte():
    s = ctx.wrap_socket(socket.create_connection(("10.2.0.2", 17443)), server_hostname="10.2.0.2")
    until_closed(s, "first_byte", time.time())
def idle():
    s = ctx.wrap_socket(socket.create_connection(("10.2.0.2", 17443)), server_hostname="10.2.0.2")
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"hello from" not in data:
        data += s.recv(4096)
    out["served"] = data.split(b"\r\n")[0].decode()
    until_closed(s, "idle", time.time())
ts = [threading.Thread(target=f) for f in (silent, no_first_byte, idle)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"#,
        ca = pki.ca_cert.display()
    );
    let out: serde_json::Value =
        serde_json::from_str(python(&lab, "b", &script, 40).trim()).expect("JSON");
    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&pki_dir);
    assert_eq!(out["served"], "HTTP/1.1 200 OK", "{out}");
    // Let go at its own timeout: not before it, and long before the
    // defaults (10 s, 10 s, 1 h) would have.
    for (key, at_least) in [("handshake", 0.8), ("first_byte", 0.8), ("idle", 2.8)] {
        let t = out[key].as_f64().unwrap_or(f64::NAN);
        assert!(
            (at_least..at_least + 4.0).contains(&t),
            "{key}: closed after {t} s: {out}\n{}",
            gw.log()
        );
    }
    for (name, want) in [
        (
            "causeway_terminator_tls_handshake_failures_total{service=\"tls\",peer=\"src\",reason=\"timeout\"}",
            1.0,
        ),
        (
            "causeway_terminator_first_byte_timeouts_total{service=\"tls\"}",
            1.0,
        ),
        (
            "causeway_terminator_idle_timeouts_total{service=\"tls\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, name), want, "{name}:\n{m}");
    }
}

#[test]
fn the_per_client_cap_refuses_the_next_connection_and_counts_it() {
    require("python3", "python3");
    let lab = Lab::up("tp");
    let pki_dir = tempdir("cap-pki");
    let pki = causeway_tls::identity::ca::lab_pki(
        &pki_dir,
        "causeway.lab",
        &[IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2))],
    )
    .expect("a PKI");
    let gw = Gateway::start(&lab, "cap", "", &slow_client_services(&pki), 17081);
    // Four connections from one address to a service capped at three: the
    // first three are served, the fourth is reset before any byte. The
    // reset can come before connect() has returned (the handshake is the
    // kernel's; the terminator resets at accept): connect() then fails
    // with ECONNRESET, which is the same refusal.
    let script = r#"
import json, socket
def connect():
    try:
        return socket.create_connection(("10.2.0.2", 17081), timeout=5)
    except ConnectionResetError:
        return None
socks = [connect() for _ in range(4)]
res = []
for s in socks:
    if s is None:
        res.append("reset")
        continue
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(4096)
        res.append(data.split(b"\r\n")[0].decode() if data else "closed")
    except OSError as e:
        res.append("reset")
print(json.dumps(res))
"#;
    let res: serde_json::Value =
        serde_json::from_str(python(&lab, "b", script, 20).trim()).expect("JSON");
    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&pki_dir);
    let res: Vec<&str> = res
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&res[..3], ["HTTP/1.1 200 OK"; 3], "{res:?}");
    assert!(res[3] == "reset" || res[3] == "closed", "{res:?}");
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_refused_total{service=\"capped\",reason=\"client_limit\"}"
        ),
        1.0,
        "{m}"
    );
}

// ---- Several services on one address, chosen by SNI (Armoured car II) ----

/// A CA of its own with server certificates for `alpha.test` and
/// `beta.test` and one client certificate, under `dir`.
struct SniPki {
    ca: PathBuf,
    client: (PathBuf, PathBuf),
}

const SNI_CLIENT: &str = "spiffe://sni.test/ns/lab/sa/client";

fn sni_pki(dir: &Path) -> SniPki {
    let ca = Ca::new("causeway SNI test CA").expect("a CA");
    let (ca_path, _) = ca.write(dir, "ca").expect("write the CA");
    for name in ["alpha.test", "beta.test"] {
        let mut leaf = Leaf::svid(&format!("spiffe://sni.test/ns/lab/sa/{name}"));
        leaf.dns_names = vec![name.to_owned()];
        leaf.client = false;
        ca.issue(&leaf)
            .expect("issue")
            .write(dir, name)
            .expect("write");
    }
    let year = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    SniPki {
        ca: ca_path,
        client: issue(&ca, dir, "client", SNI_CLIENT, year),
    }
}

/// `alpha.test` (mTLS, admitting [`SNI_CLIENT`]) in front of backend
/// 8081 and `beta.test` (TLS) in front of 8082, both on
/// 10.2.0.2:`port`.
fn sni_services(dir: &Path, ca: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "    - name: alpha\n      listen: 10.2.0.2:{port}\n      server_names: [alpha.test]\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/alpha.test.pem, key: {d}/alpha.test-key.pem, client_ca: {ca},\n\
         \x20           allowed_identities: ['{SNI_CLIENT}']}}\n\
         \x20     upstreams: [10.2.0.2:8081]\n\
         \x20   - name: beta\n      listen: 10.2.0.2:{port}\n      server_names: [beta.test]\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/beta.test.pem, key: {d}/beta.test-key.pem}}\n\
         \x20     upstreams: [10.2.0.2:8082]\n",
        ca = ca.display()
    )
}

/// The X-Backend header of a backend asked directly.
fn backend_name(lab: &Lab, port: u16) -> String {
    let head = lab.exec(
        "b",
        &format!("curl -s -m 3 -D - -o /dev/null http://10.2.0.2:{port}/"),
    );
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-backend:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no X-Backend from {port}: {head}"))
}

/// curl from island B to `https://name:port/` (resolved to 10.2.0.2),
/// verifying the server against `ca`; (status, X-Backend), status `none`
/// when no HTTP answer came.
fn curl_sni(
    lab: &Lab,
    name: &str,
    port: u16,
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
) -> (String, String) {
    let cert = cert.map(|(c, k)| (c.as_path(), k.as_path()));
    curl_https(lab, "b", name, port, "10.2.0.2", ca, cert)
}

/// `openssl s_client` from island B to 10.2.0.2:`port` with `sni` (`None`:
/// `-noservername`), one request; its whole output.
fn s_client_sni(lab: &Lab, port: u16, sni: Option<&str>, ca: &Path) -> String {
    let name = sni.map_or("-noservername".to_owned(), |n| {
        format!("-servername {n} -verify_hostname {n}")
    });
    let out = lab.try_exec(
        "b",
        &format!(
            "sh -c 'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | timeout 5 openssl s_client -connect 10.2.0.2:{port} {name} -CAfile {} -verify_return_error -ign_eof 2>&1'",
            ca.display()
        ),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_services_on_one_port_are_chosen_by_sni_and_unknown_names_refused() {
    require("curl", "curl");
    require("openssl", "openssl");
    let lab = Lab::up("tn");
    let pki_dir = tempdir("sni-pki");
    std::fs::set_permissions(
        &pki_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pki = sni_pki(&pki_dir);
    let port = 17443;
    let gw = Gateway::start(
        &lab,
        "sni",
        "",
        &sni_services(&pki_dir, &pki.ca, port),
        port,
    );
    let (b1, b2) = (backend_name(&lab, 8081), backend_name(&lab, 8082));
    assert_ne!(b1, b2, "the two backends tell themselves apart");

    // curl: each name reaches its own backend, through its own
    // certificate (curl checks the name) and its own client policy.
    for _ in 0..3 {
        assert_eq!(
            curl_sni(&lab, "alpha.test", port, &pki.ca, Some(&pki.client)),
            ("200".to_owned(), b1.clone()),
            "{}",
            gw.log()
        );
        assert_eq!(
            curl_sni(&lab, "beta.test", port, &pki.ca, None),
            ("200".to_owned(), b2.clone()),
            "{}",
            gw.log()
        );
    }
    // alpha requires the client certificate; beta does not ask for one.
    assert_eq!(curl_sni(&lab, "alpha.test", port, &pki.ca, None).0, "none");

    // openssl s_client: the name chooses the certificate, verified.
    let beta = s_client_sni(&lab, port, Some("beta.test"), &pki.ca);
    assert!(beta.contains("Verification: OK"), "{beta}");
    assert!(beta.contains(&format!("X-Backend: {b2}")), "{beta}");
    // An unknown name and no name at all are refused with an alert.
    let gamma = s_client_sni(&lab, port, Some("gamma.test"), &pki.ca);
    assert!(gamma.contains("unrecognized name"), "{gamma}");
    assert!(!gamma.contains("X-Backend"), "{gamma}");
    let none = s_client_sni(&lab, port, None, &pki.ca);
    assert!(none.contains("unrecognized name"), "{none}");
    let unknown_by_curl = curl_sni(&lab, "gamma.test", port, &pki.ca, None);
    assert_eq!(unknown_by_curl.0, "none");

    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&pki_dir);
    let refused = |reason: &str| {
        sample(
            &m,
            &format!(
                "causeway_terminator_listener_refused_total{{listen=\"10.2.0.2:{port}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(refused("unknown_sni"), 2.0, "{m}");
    assert_eq!(refused("no_sni"), 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_tls_handshakes_total{service=\"alpha\"}"
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_tls_handshakes_total{service=\"beta\"}"
        ),
        4.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_tls_handshake_failures_total{service=\"alpha\",peer=\"src\",reason=\"no_client_cert\"}"
        ),
        1.0,
        "{m}"
    );
}

#[test]
fn a_config_with_two_unnamed_services_on_one_address_is_refused_at_start() {
    let dir = tempdir("sni-bad");
    let yaml = format!(
        "ports: []\napi: {{socket: {d}/gw.sock}}\nstate: {{dir: {d}/state}}\nterminator:\n  cores: [0]\n  services:\n\
         \x20   - {{name: one, listen: 10.2.0.2:17444, mode: terminate, tls: {{cert: /x.pem, key: /x-key.pem}}, upstreams: [10.2.0.2:8081]}}\n\
         \x20   - {{name: two, listen: 10.2.0.2:17444, mode: terminate, tls: {{cert: /x.pem, key: /x-key.pem}}, upstreams: [10.2.0.2:8082]}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("gw.yaml"), yaml).unwrap();
    let out = Command::new(causeway_bin())
        .args(["run", "--config"])
        .arg(dir.join("gw.yaml"))
        .output()
        .expect("causeway");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("terminator.services[1].server_names: service `one` is already the default (no server_names) on 10.2.0.2:17444"),
        "{err}"
    );
}

// ---- PostgreSQL's own TLS negotiation (Armoured car II) ----

/// psql from island B with `conninfo` and `sql`; (stdout, stderr, success).
fn psql(lab: &Lab, conninfo: &str, sql: &str) -> (String, String, bool) {
    let out = lab.try_exec(
        "b",
        &format!("env PGCONNECT_TIMEOUT=5 psql '{conninfo}' -At -c '{sql}'"),
    );
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn psql_verify_full_with_a_client_certificate_through_a_postgres_service() {
    require("psql", "postgresql-client");
    require("openssl", "openssl");
    let lab = Lab::up("tq");
    let dir = tempdir("pg-tls");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A CA with the server certificate for pg.test, the admitted client
    // and an intruder it also signs.
    let ca = Ca::new("causeway PostgreSQL test CA").expect("a CA");
    let (ca_pem, _) = ca.write(&dir, "ca").expect("write the CA");
    let mut leaf = Leaf::svid("spiffe://sni.test/ns/lab/sa/pg");
    leaf.dns_names = vec!["pg.test".to_owned()];
    leaf.client = false;
    ca.issue(&leaf)
        .expect("issue")
        .write(&dir, "pg")
        .expect("write");
    let year = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    let client = issue(&ca, &dir, "client", SNI_CLIENT, year);
    let intruder = issue(
        &ca,
        &dir,
        "intruder",
        "spiffe://sni.test/ns/lab/sa/intruder",
        year,
    );

    // PostgreSQL on island B's loopback, run as the postgres user.
    let data = dir.join("pgdata");
    ok(&format!(
        "runuser -u postgres -- {} -D {} -A trust -U postgres >/dev/null",
        pg_bin("initdb"),
        data.display()
    ));
    let _pg = spawn_in(
        &lab,
        "b",
        &format!(
            "runuser -u postgres -- {} -D {} -h 127.0.0.1 -p 5432 -k {}",
            pg_bin("postgres"),
            data.display(),
            dir.display()
        ),
        &dir.join("pg.log"),
    );
    let port = 15433;
    let services = format!(
        "    - name: pg\n      listen: 10.2.0.2:{port}\n      mode: terminate\n      protocol: postgres\n\
         \x20     tls: {{cert: {d}/pg.pem, key: {d}/pg-key.pem, client_ca: {ca},\n\
         \x20           allowed_identities: ['{SNI_CLIENT}']}}\n\
         \x20     upstreams: [127.0.0.1:5432]\n",
        d = dir.display(),
        ca = ca_pem.display()
    );
    let gw = Gateway::start(&lab, "pgtls", "", &services, port);
    let ready = wait_for(Duration::from_secs(20), || {
        listening(&lab, "b", 5432).then_some(())
    });
    assert!(
        ready.is_some(),
        "PostgreSQL did not start:\n{}",
        std::fs::read_to_string(dir.join("pg.log")).unwrap_or_default()
    );
    let conninfo = |host: &str, mode: &str, cert: Option<&(PathBuf, PathBuf)>| {
        let auth = cert.map_or(String::new(), |(c, k)| {
            format!(" sslcert={} sslkey={}", c.display(), k.display())
        });
        format!(
            "host={host} hostaddr=10.2.0.2 port={port} user=postgres dbname=postgres sslmode={mode} sslrootcert={}{auth}",
            ca_pem.display()
        )
    };

    // verify-full with the admitted client certificate: served, and the
    // server sees a plaintext connection from the terminator.
    let (out, err, ok_) = psql(
        &lab,
        &conninfo("pg.test", "verify-full", Some(&client)),
        "select 6 * 7; select ssl from pg_stat_ssl where pid = pg_backend_pid(); select client_addr from pg_stat_activity where pid = pg_backend_pid()",
    );
    assert!(ok_, "{err}\n{}", gw.log());
    assert_eq!(out, "42\nf\n127.0.0.1", "{err}");

    // The terminator verifies the client: none, or one not admitted, is
    // refused in the handshake.
    let (_, err, ok_) = psql(&lab, &conninfo("pg.test", "verify-full", None), "select 1");
    assert!(!ok_, "no client certificate must be refused");
    assert!(err.contains("certificate"), "{err}");
    let (_, err, ok_) = psql(
        &lab,
        &conninfo("pg.test", "verify-full", Some(&intruder)),
        "select 1",
    );
    assert!(!ok_, "an identity not admitted must be refused: {err}");
    // verify-full checks the name the terminator's certificate carries.
    let (_, err, ok_) = psql(
        &lab,
        &conninfo("other.test", "verify-full", Some(&client)),
        "select 1",
    );
    assert!(!ok_ && err.contains("does not match host name"), "{err}");
    // A client without TLS gets PostgreSQL's own FATAL.
    let (_, err, ok_) = psql(
        &lab,
        &conninfo("pg.test", "disable", Some(&client)),
        "select 1",
    );
    assert!(
        !ok_ && err.contains("accepts PostgreSQL over TLS only"),
        "{err}"
    );

    // PostgreSQL 17's direct TLS: a ClientHello first, with ALPN.
    let s_client = |alpn: &str| {
        let out = lab.try_exec(
            "b",
            &format!(
                "sh -c 'timeout 5 openssl s_client -connect 10.2.0.2:{port} -servername pg.test -verify_hostname pg.test -CAfile {} -cert {} -key {} {alpn} -verify_return_error </dev/null 2>&1'",
                ca_pem.display(),
                client.0.display(),
                client.1.display()
            ),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let direct = s_client("-alpn postgresql");
    assert!(direct.contains("ALPN protocol: postgresql"), "{direct}");
    assert!(direct.contains("Verification: OK"), "{direct}");
    let no_alpn = s_client("");
    assert!(no_alpn.contains("no application protocol"), "{no_alpn}");

    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&dir);
    let failures = |reason: &str| {
        sample(
            &m,
            &format!(
                "causeway_terminator_tls_handshake_failures_total{{service=\"pg\",peer=\"src\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(failures("no_client_cert"), 1.0, "{m}");
    assert_eq!(failures("identity_not_admitted"), 1.0, "{m}");
    let refused = |reason: &str| {
        sample(
            &m,
            &format!(
                "causeway_terminator_listener_refused_total{{listen=\"10.2.0.2:{port}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(refused("postgres_not_tls"), 1.0, "{m}");
    assert_eq!(refused("postgres_no_alpn"), 1.0, "{m}");
}

// ---- ALPN: h2 and gRPC through the terminator (Armoured car II) ----

/// The venv scripts/deps.sh makes with grpcio (see control.rs).
fn grpc_python() -> PathBuf {
    let venv = std::env::var_os("CAUSEWAY_PYENV")
        .map_or_else(|| PathBuf::from("/opt/causeway/pyenv"), PathBuf::from);
    let py = venv.join("bin/python");
    assert!(
        Command::new(&py)
            .args(["-c", "import grpc, grpc_health"])
            .status()
            .is_ok_and(|s| s.success()),
        "{} lacks grpcio or grpcio-health-checking: run scripts/deps.sh",
        py.display()
    );
    py
}

/// A gRPC server (Python's grpcio: the health service, `causeway.Echo`
/// SERVING) over plaintext HTTP/2 on `addr`.
const GRPC_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
h = health.HealthServicer()
h.set("causeway.Echo", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(h, server)
server.add_insecure_port(sys.argv[1])
server.start()
server.wait_for_termination()
"#;

/// A gRPC client over mTLS: ca, cert, key, address, TLS name; prints the
/// health status of `causeway.Echo`, or `ERROR` and the gRPC error.
const GRPC_CLIENT: &str = r#"
import sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
ca, cert, key = (open(p, "rb").read() for p in sys.argv[1:4])
creds = grpc.ssl_channel_credentials(ca, key, cert)
ch = grpc.secure_channel(sys.argv[4], creds, options=[("grpc.ssl_target_name_override", sys.argv[5])])
try:
    r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="causeway.Echo"), timeout=5)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
except grpc.RpcError as e:
    print("ERROR", e.code(), e.details())
"#;

#[test]
fn curl_http2_and_a_grpc_client_negotiate_h2_through_the_terminator() {
    require("curl", "curl");
    require("nginx", "nginx");
    let py = grpc_python();
    let lab = Lab::up("ta");
    let dir = tempdir("alpn");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pki = sni_pki(&dir);
    // An HTTP/2 backend without TLS (h2c, prior knowledge): nginx, saying
    // which protocol it was spoken to in.
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
             \x20 fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
             \x20 server {{\n    listen 127.0.0.1:18080 http2;\n\
             \x20   location / {{ add_header X-Proto $server_protocol always; return 200 \"h2 backend\\n\"; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let _nginx = spawn_in(
        &lab,
        "b",
        &format!("nginx -e {d}/nginx-error.log -p {d} -c {d}/nginx.conf"),
        &dir.join("nginx.log"),
    );
    std::fs::write(dir.join("grpc_server.py"), GRPC_SERVER).unwrap();
    std::fs::write(dir.join("grpc_client.py"), GRPC_CLIENT).unwrap();
    let _grpc = spawn_in(
        &lab,
        "b",
        &format!("{} {d}/grpc_server.py 127.0.0.1:50051", py.display()),
        &dir.join("grpc.log"),
    );
    // `h2` (alpha.test, TLS) announces h2 only; `grpc` (beta.test, mTLS)
    // announces h2; `grpc-no-alpn` is the same without ALPN.
    let ca = pki.ca.display();
    let services = format!(
        "    - name: h2\n      listen: 10.2.0.2:17445\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/alpha.test.pem, key: {d}/alpha.test-key.pem, alpn: [h2]}}\n\
         \x20     upstreams: [127.0.0.1:18080]\n\
         \x20   - name: grpc\n      listen: 10.2.0.2:17446\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/beta.test.pem, key: {d}/beta.test-key.pem, client_ca: {ca},\n\
         \x20           allowed_identities: ['{SNI_CLIENT}'], alpn: [h2, http/1.1]}}\n\
         \x20     upstreams: [127.0.0.1:50051]\n\
         \x20   - name: grpc-no-alpn\n      listen: 10.2.0.2:17447\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/beta.test.pem, key: {d}/beta.test-key.pem, client_ca: {ca}}}\n\
         \x20     upstreams: [127.0.0.1:50051]\n"
    );
    let gw = Gateway::start(&lab, "alpn-gw", "", &services, 17447);
    let up = wait_for(Duration::from_secs(20), || {
        (listening(&lab, "b", 18080) && listening(&lab, "b", 50051)).then_some(())
    });
    assert!(
        up.is_some(),
        "the backends did not start:\n{}\n{}",
        std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("grpc.log")).unwrap_or_default()
    );

    // curl --http2: h2 is negotiated with the terminator, and the h2c
    // backend behind it was spoken to in HTTP/2.
    let curl = |flag: &str| {
        let out = lab.try_exec(
            "b",
            &format!(
                "curl -v -s -m 5 {flag} -D - -o /dev/null --cacert {ca} --resolve alpha.test:17445:10.2.0.2 https://alpha.test:17445/"
            ),
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (head, verbose) = curl("--http2");
    assert!(
        verbose.contains("ALPN: server accepted h2"),
        "{verbose}\n{}",
        gw.log()
    );
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-proto: http/2.0"),
        "{head}"
    );
    // A client offering only http/1.1 gets no_application_protocol.
    let (head, verbose) = curl("--http1.1");
    assert!(head.is_empty(), "{head}");
    assert!(verbose.contains("no application protocol"), "{verbose}");

    // gRPC (Python's grpcio, whose TLS insists on ALPN h2) over mTLS.
    let grpc = |port: u16| {
        let out = lab.try_exec(
            "b",
            &format!(
                "timeout 20 {} {d}/grpc_client.py {ca} {} {} 10.2.0.2:{port} beta.test",
                py.display(),
                pki.client.0.display(),
                pki.client.1.display()
            ),
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let served = grpc(17446);
    assert_eq!(served.trim(), "SERVING", "{served}\n{}", gw.log());
    // Without ALPN on the service, the same client refuses to go on.
    let refused = grpc(17447);
    assert!(refused.starts_with("ERROR"), "{refused}");

    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_tls_handshake_failures_total{service=\"h2\",peer=\"src\",reason=\"no_application_protocol\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_tls_handshakes_total{service=\"grpc\"}"
        ),
        1.0,
        "{m}"
    );
}

// ---- PROXY protocol v2 (Armoured car II) ----

/// A backend that reads a PROXY v2 header, then an HTTP request, and
/// answers with what the header said as JSON: source, destination, and
/// the TLVs (the SSL one opened into its fields).
const PROXY_PRINTER: &str = r#"
import json, socket, struct, sys, threading
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def recv_exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError(len(b))
        b += d
    return b
def tlvs(b):
    out = {}
    while b:
        t, l = b[0], struct.unpack("!H", b[1:3])[0]
        out["%#04x" % t] = b[3:3 + l]
        b = b[3 + l:]
    return out
def serve(c):
    try:
        h = recv_exact(c, 16)
        assert h[:12] == SIG, h
        body = recv_exact(c, struct.unpack("!H", h[14:16])[0])
        fam = h[13] >> 4
        info = {"version": h[12] >> 4, "command": h[12] & 15}
        if fam == 1:
            info["source"] = "%s:%d" % (socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack("!H", body[8:10])[0])
            info["destination"] = "%s:%d" % (socket.inet_ntop(socket.AF_INET, body[4:8]), struct.unpack("!H", body[10:12])[0])
            rest = body[12:]
        else:
            rest = body[36:] if fam == 2 else body
        t = tlvs(rest)
        info["tlvs"] = {k: v.decode("latin-1") for k, v in t.items() if k != "0x20"}
        if "0x20" in t:
            ssl = t["0x20"]
            info["ssl"] = {"client": ssl[0], "verify": struct.unpack("!I", ssl[1:5])[0],
                           "subs": {k: v.decode() for k, v in tlvs(ssl[5:]).items()}}
        info["peer"] = "%s:%d" % c.getpeername()[:2]
        req = b""
        while b"\r\n\r\n" not in req:
            d = c.recv(4096)
            if not d:
                break
            req += d
        out = json.dumps(info).encode()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
    except Exception as e:
        print("refused:", repr(e), flush=True)
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A load balancer's client: sends a PROXY v2 header naming
/// 198.51.100.7:4242 to `port`, then a request; prints the answer's body,
/// or `CLOSED` if the connection ended without one.
const PROXY_LB_CLIENT: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
c = socket.create_connection(("10.2.0.2", port), timeout=5)
addrs = socket.inet_aton("198.51.100.7") + socket.inet_aton("10.2.0.2") + struct.pack("!HH", 4242, port)
c.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs + b"GET / HTTP/1.0\r\n\r\n")
data = b""
try:
    while True:
        d = c.recv(4096)
        if not d:
            break
        data += d
except OSError:
    pass
print(data.split(b"\r\n\r\n", 1)[1].decode() if b"\r\n\r\n" in data else "CLOSED")
"#;

#[test]
fn backends_see_the_real_client_and_its_spiffe_id_in_a_proxy_header() {
    require("curl", "curl");
    let lab = Lab::up("tp");
    let dir = tempdir("proxy");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pki = sni_pki(&dir);
    let d = dir.display();
    std::fs::write(dir.join("printer.py"), PROXY_PRINTER).unwrap();
    std::fs::write(dir.join("lb_client.py"), PROXY_LB_CLIENT).unwrap();
    let _printer = spawn_in(
        &lab,
        "b",
        &format!("python3 {d}/printer.py 18090"),
        &dir.join("printer.log"),
    );
    // `pp`: mTLS, sends the header; `lb`: plain, reads a header from
    // 10.2.0.2 (the test's own "load balancer") and sends one on;
    // `strict`: trusts only 192.0.2.0/24.
    let ca = pki.ca.display();
    let services = format!(
        "    - name: pp\n      listen: 10.2.0.2:17448\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/beta.test.pem, key: {d}/beta.test-key.pem, client_ca: {ca},\n\
         \x20           allowed_identities: ['{SNI_CLIENT}'], alpn: [http/1.1]}}\n\
         \x20     upstreams: [127.0.0.1:18090]\n      proxy_protocol: {{send: true}}\n\
         \x20   - name: lb\n      listen: 10.2.0.2:17449\n      mode: plain\n      upstreams: [127.0.0.1:18090]\n\
         \x20     proxy_protocol: {{send: true, trusted_sources: [10.2.0.2/32]}}\n\
         \x20   - name: strict\n      listen: 10.2.0.2:17450\n      mode: plain\n      upstreams: [127.0.0.1:18090]\n\
         \x20     proxy_protocol: {{send: true, trusted_sources: [192.0.2.0/24]}}\n"
    );
    let gw = Gateway::start(&lab, "proxy-gw", "", &services, 17450);
    let up = wait_for(Duration::from_secs(20), || {
        listening(&lab, "b", 18090).then_some(())
    });
    assert!(
        up.is_some(),
        "{}",
        std::fs::read_to_string(dir.join("printer.log")).unwrap_or_default()
    );

    // curl with the client certificate: the backend's socket peer is the
    // terminator (127.0.0.1), the header names curl's own address and
    // its SPIFFE ID.
    let out = lab.try_exec(
        "b",
        &format!(
            "curl -s -m 5 --cacert {ca} --cert {} --key {} --resolve beta.test:17448:10.2.0.2 https://beta.test:17448/",
            pki.client.0.display(),
            pki.client.1.display()
        ),
    );
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let seen: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: `{body}`\n{}", gw.log()));
    assert!(
        seen["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{seen}"
    );
    let source = seen["source"].as_str().unwrap();
    assert!(source.starts_with("10.2.0.2:"), "curl's address: {seen}");
    assert_ne!(source, "10.2.0.2:17448");
    assert_eq!(seen["destination"], "10.2.0.2:17448", "{seen}");
    assert_eq!(seen["tlvs"]["0xe0"], SNI_CLIENT, "the SPIFFE ID: {seen}");
    assert_eq!(seen["tlvs"]["0x01"], "http/1.1", "ALPN: {seen}");
    assert_eq!(seen["tlvs"]["0x02"], "beta.test", "SNI: {seen}");
    assert_eq!(
        seen["ssl"]["client"], 7,
        "SSL, cert on conn and session: {seen}"
    );
    assert_eq!(seen["ssl"]["verify"], 0, "{seen}");
    assert_eq!(seen["ssl"]["subs"]["0x21"], "TLSv1.3", "{seen}");

    // From a trusted load balancer: its header's client is passed on.
    let lb = |port: u16| {
        let out = lab.try_exec("b", &format!("timeout 10 python3 {d}/lb_client.py {port}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let body = lb(17449);
    let seen: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: `{body}`\n{}", gw.log()));
    assert_eq!(seen["source"], "198.51.100.7:4242", "{seen}");
    assert_eq!(seen["destination"], "10.2.0.2:17449", "{seen}");
    // The same header to a service that does not trust 10.2.0.2: refused.
    assert_eq!(lb(17450), "CLOSED");

    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_refused_total{service=\"strict\",reason=\"proxy_untrusted\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "causeway_terminator_refused_total{service=\"lb\",reason=\"proxy_bad_header\"}"
        ),
        0.0,
        "{m}"
    );
}

// ---- The access log (Armoured car II) ----

#[test]
fn the_access_log_has_one_line_per_curl_connection_with_its_fields() {
    require("curl", "curl");
    let lab = Lab::up("tl");
    let dir = tempdir("access-log");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pki = sni_pki(&dir);
    let (d, ca) = (dir.display(), pki.ca.display());
    let log = dir.join("access.jsonl");
    // alpha.test (mTLS) in front of backend 8081; the access log is a
    // key of the terminator section, after its services.
    let services = format!(
        "    - name: alpha\n      listen: 10.2.0.2:17451\n      mode: terminate\n\
         \x20     tls: {{cert: {d}/alpha.test.pem, key: {d}/alpha.test-key.pem, client_ca: {ca},\n\
         \x20           allowed_identities: ['{SNI_CLIENT}'], alpn: [http/1.1]}}\n\
         \x20     upstreams: [10.2.0.2:8081]\n\
         \x20 access_log: {{to: {}, capacity: 64}}\n",
        log.display()
    );
    let gw = Gateway::start(&lab, "access-gw", "", &services, 17451);
    let b1 = backend_name(&lab, 8081);
    assert_eq!(
        curl_sni(&lab, "alpha.test", 17451, &pki.ca, Some(&pki.client)),
        ("200".to_owned(), b1),
        "{}",
        gw.log()
    );
    // No client certificate: refused in the handshake.
    assert_eq!(curl_sni(&lab, "alpha.test", 17451, &pki.ca, None).0, "none");
    let lines = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().count() >= 2).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "two access log lines: `{}`\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            gw.log()
        )
    });
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), 2, "{lines}");
    let served = &records[0];
    assert_eq!(served["service"], "alpha", "{served}");
    assert!(
        served["client"].as_str().unwrap().starts_with("10.2.0.2:"),
        "{served}"
    );
    assert_eq!(served["identity"], SNI_CLIENT, "{served}");
    assert_eq!(served["alpn"], "http/1.1", "{served}");
    assert_eq!(served["upstream"], "10.2.0.2:8081", "{served}");
    assert!(
        served["bytes_from_client"].as_u64().unwrap() > 20,
        "{served}"
    );
    assert!(served["bytes_to_client"].as_u64().unwrap() > 20, "{served}");
    assert!(served["duration_ms"].as_f64().unwrap() > 0.0, "{served}");
    assert_eq!(served["close"], "done", "{served}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ts = served["ts"].as_f64().unwrap();
    assert!(ts <= now && ts > now - 60.0, "{served}");
    let refused = &records[1];
    assert_eq!(refused["close"], "handshake_failed", "{refused}");
    assert_eq!(refused["identity"], serde_json::Value::Null, "{refused}");
    assert_eq!(refused["upstream"], serde_json::Value::Null, "{refused}");
    let m = gw.metrics();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        m.lines()
            .any(|l| l == "causeway_terminator_access_log_dropped_total 0"),
        "{m}"
    );
}
