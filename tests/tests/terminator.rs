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
    let auth = cert.map_or(String::new(), |(c, k)| {
        format!("--cert {} --key {}", c.display(), k.display())
    });
    let out = lab.try_exec(
        "a",
        &format!(
            "curl -s -m 5 -D - -o /dev/null --cacert {} {auth} --resolve {}:{port}:{host} https://{}:{port}/",
            t.ca.display(),
            t.server_name,
            t.server_name
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
