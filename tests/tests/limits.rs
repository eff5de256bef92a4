//! Limits against hostile and careless clients (issue 19, items 8, 11 and
//! 12), on a lab with real clients: curl and a Python socket client on the
//! metrics listener, `causeway ctl` and `openssl s_client` on the control
//! API, and a restart with a TLS key file removed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use causeway_tests::{Lab, Reaped, causeway_bin, ok, sh, wait_for};

/// `causeway ctl --lab NAME ARGS...`.
fn ctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(causeway_bin())
        .args(["ctl", "--lab", &lab.name])
        .args(args)
        .output()
        .expect("causeway ctl runs")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A fresh directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("causeway-limits-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pid(lab: &Lab) -> u64 {
    lab.status()["appliance"]["pid"]
        .as_u64()
        .expect("appliance pid")
}

/// The appliance's threads named `name`.
fn threads_named(pid: u64, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// A `VmHWM`-style line of /proc/PID/status, in KiB.
fn status_kib(pid: u64, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The appliance's Prometheus text, from its TCP listener.
fn metrics(lab: &Lab) -> String {
    lab.exec("gw", "curl -sf --max-time 20 http://127.0.0.1:9464/metrics")
}

fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_metrics_listener_bounds_request_size_connections_and_time() {
    let lab = Lab::start("mlim");
    let pid = pid(&lab);

    // A request head past 8 KiB, from curl: 431, not read on and on.
    let pad = "a".repeat(16 << 10);
    let code = lab.exec(
        "gw",
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 20 -H 'X-Pad: {pad}' http://127.0.0.1:9464/live"
        ),
    );
    assert_eq!(code.trim(), "431", "a 16 KiB request head was not refused");

    // A slowloris: a header line every second, never the end of the head.
    // The per-request limit is 10 s; 40 s is the generous bound.
    let slowloris = "import socket, time\n\
        s = socket.create_connection(('127.0.0.1', 9464)); s.sendall(b'GET /live HTTP/1.1\\r\\n')\n\
        start = time.monotonic(); closed = None\n\
        while time.monotonic() - start < 40:\n\
        \x20   try:\n\
        \x20       s.sendall(b'X-Slow: 1\\r\\n')\n\
        \x20       s.settimeout(1.0)\n\
        \x20       if s.recv(4096) == b'':\n\
        \x20           closed = time.monotonic() - start; break\n\
        \x20   except socket.timeout:\n\
        \x20       pass\n\
        \x20   except OSError:\n\
        \x20       closed = time.monotonic() - start; break\n\
        print('closed' if closed is not None else 'open', closed)\n";
    let out = lab.exec("gw", &format!("python3 -c \"{slowloris}\""));
    assert!(
        out.starts_with("closed"),
        "a slowloris held its connection for 40 s: {out}"
    );

    // 200 idle connections: the listener keeps its connections (and
    // threads) bounded, and still answers a probe.
    let idle = "import socket, sys, time\n\
        conns = []\n\
        for _ in range(200):\n\
        \x20   conns.append(socket.create_connection(('127.0.0.1', 9464)))\n\
        print('ready', flush=True)\n\
        time.sleep(120)\n";
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw"), "python3", "-c", idle])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the appliance namespace");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready line");
    let _idle = Reaped(child);
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(500));
    let threads = threads_named(pid, "cw-metrics-conn");
    assert!(
        threads <= 70,
        "{threads} connection threads for 200 idle connections (the cap is 64)"
    );
    let code = lab.exec(
        "gw",
        "curl -s -o /dev/null -w '%{http_code}' --max-time 30 http://127.0.0.1:9464/live",
    );
    assert_eq!(
        code.trim(),
        "200",
        "/live did not answer under an idle flood"
    );
}

/// One anchor of `n` nets named by `n` aliases: n² nodes from ~20n bytes.
fn alias_bomb(n: usize) -> String {
    let nets = vec!["10.9.9.9/32"; n].join(", ");
    let aliases = vec!["*nets"; n].join(", ");
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: bomb}}\n\
         spec:\n  nets: &nets [{nets}]\n  more: [{aliases}]\n"
    )
}

/// `policies` policies of `rules` rules each, selecting no endpoint (the
/// state is large; the compile stays small).
fn many_rules(policies: usize, rules: usize) -> String {
    let mut out = String::new();
    for p in 0..policies {
        out.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: big-{p:03}}}\n\
             spec:\n  order: 900\n  selector: has(never-set)\n  types: [Ingress]\n  ingress:\n"
        ));
        for r in 0..rules {
            out.push_str(&format!(
                "    - {{action: Allow, protocol: TCP, source: {{nets: [10.{}.{}.0/24]}}, destination: {{ports: [{}]}}}}\n",
                r / 250,
                r % 250,
                1000 + r
            ));
        }
    }
    out
}

#[test]
fn the_control_api_refuses_alias_bombs_and_devices_and_pages_a_100k_rule_state() {
    let lab = Lab::start("alim");
    let dir = TempDir::new("alim");
    let pid = pid(&lab);
    let gen_before = lab.stats()["policy_generation"].as_u64().unwrap_or(0);

    // An alias bomb: refused, by name, before it eats memory.
    let peak = status_kib(pid, "VmHWM:");
    let bomb = dir.write("bomb.yaml", &alias_bomb(1500));
    let out = ctl(&lab, &["apply", "-f", bomb.to_str().unwrap()]);
    assert!(!out.status.success(), "an alias bomb was applied");
    assert!(
        text(&out.stderr).contains("aliases expand"),
        "not refused for its aliases: {}",
        text(&out.stderr)
    );
    let grew = status_kib(pid, "VmHWM:").saturating_sub(peak);
    assert!(
        grew < 100 << 10,
        "the appliance's peak memory grew by {grew} KiB on an alias bomb"
    );

    // An identity whose certificate is /dev/zero: refused at once, naming
    // the file (timeout: a generous bound, not a measurement).
    let pki = PathBuf::from(lab.status()["terminator"]["ca"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned();
    let zero = dir.write(
        "zero.yaml",
        &format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Identity\nmetadata: {{name: zero}}\n\
             spec: {{cert: /dev/zero, key: {}}}\n",
            pki.join("server-key.pem").display()
        ),
    );
    let out = sh(&format!(
        "timeout 60 {} ctl --lab {} apply -f {}",
        causeway_bin().display(),
        lab.name,
        zero.display()
    ));
    assert_ne!(out.status.code(), Some(124), "/dev/zero was read for 60 s");
    assert!(
        !out.status.success(),
        "/dev/zero was accepted as a certificate"
    );
    let e = text(&out.stderr);
    assert!(
        e.contains("Identity/zero") && e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    assert_eq!(
        lab.stats()["policy_generation"].as_u64().unwrap_or(0),
        gen_before,
        "a refused apply changed the generation"
    );

    // A 100 000-rule state: applied with ctl, listed page by page.
    let big = dir.write("big.yaml", &many_rules(100, 1000));
    let out = ctl(&lab, &["apply", "-f", big.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "applying 100k rules: {}",
        text(&out.stderr)
    );
    let out = ctl(
        &lab,
        &[
            "list",
            "GlobalNetworkPolicy",
            "--page-size",
            "7",
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "listing 100k rules: {}",
        text(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let big: Vec<&serde_json::Value> = items
        .iter()
        .filter(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("big-")
        })
        .collect();
    assert_eq!(big.len(), 100, "policies listed");
    let rules: usize = big
        .iter()
        .map(|p| p["spec"]["ingress"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(rules, 100_000, "rules listed");
    // The default pages (500 resources, 4 MiB) too.
    let out = ctl(&lab, &["list"]);
    assert!(out.status.success(), "ctl list: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("big-099"));
}

/// The certificate's serial as `openssl x509 -serial` prints it.
fn served_serial(lab: &Lab, pki: &Path) -> String {
    let out = lab.try_exec(
        "gw",
        &format!(
            "sh -c 'timeout 10 openssl s_client -connect 127.0.0.1:7443 -CAfile {0}/ca.pem -cert {0}/client.pem -key {0}/client-key.pem </dev/null 2>/dev/null | openssl x509 -noout -serial'",
            pki.display()
        ),
    );
    text(&out.stdout).trim().to_owned()
}

#[test]
fn the_tcp_api_rotates_its_certificate_and_rate_limits_refused_handshake_logs() {
    let lab = Lab::start("tlim");
    let pki = PathBuf::from(lab.status()["terminator"]["ca"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned();

    // 30 clients without a certificate: every one refused and counted,
    // but the log names only a few.
    for _ in 0..30 {
        let _ = lab.try_exec(
            "gw",
            &format!(
                "sh -c 'timeout 10 openssl s_client -connect 127.0.0.1:7443 -CAfile {}/ca.pem </dev/null >/dev/null 2>&1'",
                pki.display()
            ),
        );
    }
    let refused = wait_for(Duration::from_secs(20), || {
        sample(
            &metrics(&lab),
            "causeway_control_api_handshakes_refused_total",
        )
        .filter(|n| *n >= 30.0)
    });
    assert!(refused.is_some(), "30 refused handshakes were not counted");
    let logged = lab
        .log()
        .lines()
        .filter(|l| l.contains("control API: TLS handshake"))
        .count();
    assert!(
        (1..=10).contains(&logged),
        "{logged} log lines for 30 refused handshakes"
    );

    // A new certificate for the same key, with another serial, written
    // over the old one: new handshakes get it.
    let before = served_serial(&lab, &pki);
    assert!(
        before.starts_with("serial="),
        "no certificate served: {before}"
    );
    ok(&format!(
        "cd {0} && openssl x509 -x509toreq -in server.pem -signkey server-key.pem -copy_extensions copyall -out rotate.csr \
         && openssl x509 -req -in rotate.csr -CA ca.pem -CAkey ca-key.pem -set_serial 0x4242 -days 2 -copy_extensions copyall -out rotate.pem \
         && mv rotate.pem server.pem",
        pki.display()
    ));
    let after = wait_for(Duration::from_secs(30), || {
        let s = served_serial(&lab, &pki);
        (s == "serial=4242").then_some(s)
    });
    assert!(
        after.is_some(),
        "the TCP API still serves {} after its certificate was replaced",
        served_serial(&lab, &pki)
    );
}

#[test]
fn what_the_dataplane_cannot_enforce_is_refused_and_a_broken_key_degrades_one_service() {
    let lab = Lab::start("elim");
    let dir = TempDir::new("elim");
    let st = lab.status();
    let term = st["terminator"].clone();
    let pki = PathBuf::from(term["ca"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned();
    let generation = |lab: &Lab| lab.stats()["policy_generation"].as_u64().unwrap_or(0);
    let before = generation(&lab);

    // More doNotTrack nets than the XDP map holds: refused, naming the
    // policy and field; nothing committed.
    let nets: Vec<String> = (0..16_385)
        .map(|i: u32| format!("10.{}.{}.{}/32", 200 + (i >> 16), (i >> 8) & 255, i & 255))
        .collect();
    let blocklist = dir.write(
        "blocklist.yaml",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: blocklist}}\n\
             spec:\n  selector: all()\n  doNotTrack: true\n  applyOnForward: true\n  types: [Ingress]\n  \
             ingress:\n    - action: Deny\n      source:\n        nets: [{}]\n",
            nets.join(", ")
        ),
    );
    let out = ctl(&lab, &["apply", "-f", blocklist.to_str().unwrap()]);
    assert!(!out.status.success(), "16 385 prefilter nets were accepted");
    let e = text(&out.stderr);
    assert!(
        e.contains("GlobalNetworkPolicy/blocklist") && e.contains("spec.ingress[0].source.nets"),
        "{e}"
    );
    assert_eq!(generation(&lab), before, "a refused apply was committed");

    // A TLS service whose identity's key file is missing: refused, nothing
    // committed.
    let cert = dir.0.join("extra.pem");
    let key = dir.0.join("extra-key.pem");
    std::fs::copy(pki.join("server.pem"), &cert).unwrap();
    let service = |key: &Path| {
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Identity\nmetadata: {{name: extra}}\n\
             spec: {{cert: {}, key: {}, ca: {}}}\n---\n\
             apiVersion: causeway.dev/v1alpha1\nkind: TLSService\nmetadata: {{name: extra}}\n\
             spec:\n  listen: 10.100.0.21:7000\n  mode: originate\n  upstream_tls: {{identity: extra}}\n  \
             upstreams: [10.2.0.2:15432]\n",
            cert.display(),
            key.display(),
            pki.join("ca.pem").display()
        )
    };
    let missing = dir.write("missing.yaml", &service(&key));
    let out = ctl(&lab, &["apply", "-f", missing.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "an identity with no key file was accepted"
    );
    let e = text(&out.stderr);
    assert!(
        e.contains("Identity/extra") && e.contains("extra-key.pem"),
        "{e}"
    );
    assert_eq!(generation(&lab), before, "a refused apply was committed");

    // The key in place: accepted. Then removed, and the appliance
    // restarted: that service is left out, counted and named; the demo
    // service serves and the dataplane forwards.
    std::fs::copy(pki.join("server-key.pem"), &key).unwrap();
    let out = ctl(&lab, &["apply", "-f", missing.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(&key).unwrap();
    let cw = causeway_bin();
    ok(&format!("{} lab stop --name {}", cw.display(), lab.name));
    let started = sh(&format!("{} lab start --name {}", cw.display(), lab.name));
    assert!(
        started.status.success(),
        "the appliance did not start with one broken key file: {}\n{}",
        text(&started.stderr),
        lab.log()
    );
    let m = metrics(&lab);
    assert_eq!(
        sample(&m, "causeway_terminator_services_degraded"),
        Some(1.0),
        "the degraded service is not counted"
    );
    assert!(
        m.contains("causeway_terminator_service_degraded{service=\"extra\"} 1"),
        "the degraded service is not named"
    );
    assert!(
        lab.log().contains("TLS service not served"),
        "the degraded service is not logged"
    );
    let status = ctl(&lab, &["status"]);
    assert!(
        text(&status.stdout).contains("TLSService/extra"),
        "status does not name the degraded service: {}",
        text(&status.stdout)
    );
    lab.exec(
        "a",
        &format!(
            "curl -sf --max-time 10 --cacert {} --cert {} --key {} --resolve {}:443:10.100.0.10 https://{}/",
            term["ca"].as_str().unwrap(),
            term["client_cert"].as_str().unwrap(),
            term["client_key"].as_str().unwrap(),
            term["server_name"].as_str().unwrap(),
            term["server_name"].as_str().unwrap()
        ),
    );
    lab.exec("a", "ping -c 3 -i 0.2 -W 2 10.2.0.2");
}
