//! `causeway sync` against a real etcd (Debian's etcd-server) and a lab
//! appliance: Calico resources written as calicoctl writes them
//! (`tests/python/calico_etcd.py`) change the verdicts of real packets
//! through the dataplane; the appliance keeps enforcing while etcd or the
//! sync is gone, and converges when they return.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use causeway_tests::{
    Lab, Reaped, causeway_bin, ok, require, sh, tcp_connects, tcp_listeners, wait_for,
};
use serde_json::Value;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("causeway-sync-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A free loopback port (bound and released: etcd takes it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real etcd on loopback with its data in `dir`.
struct Etcd {
    dir: PathBuf,
    client: u16,
    peer: u16,
    process: Option<Reaped>,
}

impl Etcd {
    fn start(dir: &Path) -> Self {
        require("etcd", "etcd-server");
        let mut e = Self {
            dir: dir.join("etcd"),
            client: free_port(),
            peer: free_port(),
            process: None,
        };
        e.restart();
        e
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Starts it (again, on the same data) and waits until it answers.
    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args([
                "--name",
                "causeway-test",
                "--data-dir",
                self.dir.to_str().unwrap(),
                "--listen-client-urls",
                &self.endpoint(),
                "--advertise-client-urls",
                &self.endpoint(),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
                "--initial-cluster",
                &format!("causeway-test=http://127.0.0.1:{}", self.peer),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.process = Some(Reaped(child));
        let up = wait_for(Duration::from_secs(20), || {
            sh(&format!("curl -sf {}/health", self.endpoint()))
                .status
                .success()
                .then_some(())
        });
        assert!(up.is_some(), "etcd did not come up: {}", self.log());
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// `calico_etcd.py ARGS`: writes as calicoctl does.
    fn calico(&self, args: &str) -> String {
        ok(&format!(
            "python3 {} --endpoint {} {args}",
            script().display(),
            self.endpoint()
        ))
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/calico_etcd.py")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/calico-etcd")
        .join(name)
}

/// `causeway sync` for `lab` on `etcd`, its status socket in `dir`.
fn start_sync(lab: &Lab, etcd: &Etcd, dir: &Path) -> Reaped {
    let socket = control_socket(lab);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sync.log"))
        .unwrap();
    let child = Command::new(causeway_bin())
        .args([
            "sync",
            // This cluster deletes its last policy, and means it.
            "--allow-no-policy",
            "--appliance",
            &format!("unix:{socket}"),
            "--status-socket",
            dir.join("sync.sock").to_str().unwrap(),
        ])
        .env("DATASTORE_TYPE", "etcdv3")
        .env("ETCD_ENDPOINTS", etcd.endpoint())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("causeway sync starts");
    Reaped(child)
}

fn control_socket(lab: &Lab) -> String {
    lab.status()["appliance"]["control_socket"]
        .as_str()
        .expect("control socket")
        .to_owned()
}

fn sync_status(dir: &Path) -> Value {
    let out = sh(&format!(
        "{} sync status --socket {} -o json",
        causeway_bin().display(),
        dir.join("sync.sock").display()
    ));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until connections to 8080 and 9090 get `(http, other)`.
fn verdicts_become(lab: &Lab, want: (bool, bool), what: &str, dir: &Path) {
    let got = wait_for(Duration::from_secs(20), || {
        let v = (tcp_connects(lab, 8080), tcp_connects(lab, 9090));
        (v == want).then_some(v)
    });
    assert!(
        got.is_some(),
        "{what}: 8080/9090 never became {want:?}\nsync status: {}\nsync log: {}",
        sync_status(dir),
        std::fs::read_to_string(dir.join("sync.log")).unwrap_or_default()
    );
}

fn ctl(lab: &Lab, args: &str) -> String {
    ok(&format!(
        "{} ctl --lab {} {args}",
        causeway_bin().display(),
        lab.name
    ))
}

/// The generation every worker of the appliance enforces.
fn generation(lab: &Lab) -> u64 {
    lab.stats()["enforced_generation"]
        .as_u64()
        .expect("generation")
}

#[test]
fn calico_policy_in_etcd_is_enforced_follows_changes_and_survives_etcd_going_away() {
    require("python3", "python3");
    require("curl", "curl");
    let dir = scratch("etcd");
    let mut etcd = Etcd::start(&dir.0);
    let lab = Lab::start("sync");
    let _servers = tcp_listeners(&lab, &[8080, 9090]);
    // Nothing selects the server yet: both ports open.
    assert!(tcp_connects(&lab, 8080) && tcp_connects(&lab, 9090));
    etcd.calico(&format!("apply {}", example("endpoints.json").display()));
    etcd.calico(&format!("apply {}", example("policy.json").display()));
    let _sync = start_sync(&lab, &etcd, &dir.0);

    // The policy written to etcd is enforced on real packets.
    verdicts_become(&lab, (true, false), "after the first sync", &dir.0);
    let listed = ctl(&lab, "list --owner sync/default");
    for want in [
        "GlobalNetworkPolicy",
        "security.server-ingress",
        "Pod",
        "server",
        "Namespace",
        "sync/default",
    ] {
        assert!(listed.contains(want), "{want} missing from:\n{listed}");
    }
    let status = sync_status(&dir.0);
    assert_eq!(status["synced"], true, "{status}");
    assert_eq!(status["sources"][0]["kind"], "etcdv3");
    assert_eq!(status["appliances"][0]["connected"], true, "{status}");

    // An operator cannot overwrite what the sync holds without --force.
    let out = sh(&format!(
        "{} ctl --lab {} delete globalnetworkpolicy security.server-ingress",
        causeway_bin().display(),
        lab.name
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by sync/default"), "{err}");

    // The client relabelled: its namespace-and-role match is gone.
    let relabelled = std::fs::read_to_string(example("endpoints.json"))
        .unwrap()
        .replace("\"role\": \"client\"", "\"role\": \"visitor\"");
    std::fs::write(dir.0.join("relabelled.json"), relabelled).unwrap();
    etcd.calico(&format!(
        "apply {}",
        dir.0.join("relabelled.json").display()
    ));
    verdicts_become(&lab, (false, false), "after relabelling the client", &dir.0);
    etcd.calico(&format!("apply {}", example("endpoints.json").display()));
    verdicts_become(&lab, (true, false), "after labelling it back", &dir.0);

    // Bad input: each is reported and skipped; nothing enforced is dropped.
    let bad_selector = r#"{"kind":"GlobalNetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{"name":"broken"},"spec":{"selector":"role == ","types":["Ingress"]}}"#;
    etcd.calico(&format!(
        "put-raw /calico/resources/v3/projectcalico.org/globalnetworkpolicies/broken '{bad_selector}'"
    ));
    etcd.calico(
        "put-raw /calico/resources/v3/projectcalico.org/globalnetworksets/garbled '{not json'",
    );
    etcd.calico("put-raw /calico/resources/v3/projectcalico.org/frobnicators/x '{}'");
    let problems = wait_for(Duration::from_secs(10), || {
        let s = sync_status(&dir.0);
        let p = s["sources"][0]["problems"].as_object().cloned()?;
        (p.len() == 3).then_some(p)
    })
    .unwrap_or_else(|| panic!("problems not reported: {}", sync_status(&dir.0)));
    let text = serde_json::to_string(&problems).unwrap();
    for want in ["selector", "not JSON", "unknown kind: `frobnicators`"] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    verdicts_become(&lab, (true, false), "with bad objects in etcd", &dir.0);
    // A policy enforced whose new version is bad keeps its last good one.
    let policy = std::fs::read_to_string(example("policy.json")).unwrap();
    std::fs::write(
        dir.0.join("bad-policy.json"),
        policy.replace("role == 'server'", "role == "),
    )
    .unwrap();
    etcd.calico(&format!(
        "apply {}",
        dir.0.join("bad-policy.json").display()
    ));
    wait_for(Duration::from_secs(10), || {
        let s = sync_status(&dir.0);
        (s["sources"][0]["problems"].as_object()?.len() == 4).then_some(())
    })
    .unwrap_or_else(|| panic!("the bad policy was not reported: {}", sync_status(&dir.0)));
    verdicts_become(
        &lab,
        (true, false),
        "with the policy's new version bad",
        &dir.0,
    );
    etcd.calico(&format!("apply {}", example("policy.json").display()));

    // etcd goes away: the appliance keeps enforcing, the sync says so.
    etcd.stop();
    wait_for(Duration::from_secs(15), || {
        (sync_status(&dir.0)["sources"][0]["connected"] == false).then_some(())
    })
    .unwrap_or_else(|| panic!("the sync did not notice etcd went: {}", sync_status(&dir.0)));
    verdicts_become(&lab, (true, false), "while etcd is down", &dir.0);
    // It comes back, and a change made then is enforced.
    etcd.restart();
    etcd.calico("delete GlobalNetworkPolicy security.server-ingress");
    verdicts_become(
        &lab,
        (true, true),
        "after etcd returned and the policy was deleted",
        &dir.0,
    );
    etcd.calico(&format!("apply {}", example("policy.json").display()));
    verdicts_become(
        &lab,
        (true, false),
        "after the policy was written again",
        &dir.0,
    );

    // Compacted past the watch's revision while the sync could not read:
    // it lists again and converges, with no gap.
    let pid = _sync.0.id();
    ok(&format!("kill -STOP {pid}"));
    etcd.stop();
    etcd.restart();
    etcd.calico("delete GlobalNetworkPolicy security.server-ingress");
    etcd.calico("compact");
    ok(&format!("kill -CONT {pid}"));
    verdicts_become(
        &lab,
        (true, true),
        "after a compaction past the watch",
        &dir.0,
    );
    let status = wait_for(Duration::from_secs(10), || {
        let s = sync_status(&dir.0);
        (s["sources"][0]["compactions"].as_u64()? >= 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("no relist after the compaction: {}", sync_status(&dir.0)));
    assert!(
        status["sources"][0]["lists"].as_u64().unwrap() >= 2,
        "{status}"
    );
}

#[test]
fn kill_9_of_the_sync_changes_nothing_and_a_restart_pushes_only_the_difference() {
    require("python3", "python3");
    require("curl", "curl");
    let dir = scratch("failstatic");
    let etcd = Etcd::start(&dir.0);
    let lab = Lab::start("syncks");
    let _servers = tcp_listeners(&lab, &[8080, 9090]);
    etcd.calico(&format!("apply {}", example("endpoints.json").display()));
    etcd.calico(&format!("apply {}", example("policy.json").display()));
    let sync = start_sync(&lab, &etcd, &dir.0);
    verdicts_become(&lab, (true, false), "after the first sync", &dir.0);
    let before = generation(&lab);
    let held_before = ctl(&lab, "list --owner sync/default -o json");

    // kill -9: the appliance is untouched and keeps enforcing.
    drop(sync);
    verdicts_become(&lab, (true, false), "with the sync killed", &dir.0);
    assert_eq!(generation(&lab), before);

    // A restart with nothing changed in etcd changes nothing.
    let sync = start_sync(&lab, &etcd, &dir.0);
    wait_for(Duration::from_secs(15), || {
        let s = sync_status(&dir.0);
        (s["appliances"][0]["connected"] == true
            && s["appliances"][0]["behind"] == 0
            && s["synced"] == true)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the restarted sync did not catch up: {}",
            sync_status(&dir.0)
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        generation(&lab),
        before,
        "a restart with nothing new pushed something"
    );
    assert_eq!(ctl(&lab, "list --owner sync/default -o json"), held_before);
    drop(sync);

    // A change made while the sync was dead arrives as one change: the
    // policy is never absent (its generation does not move).
    // `ctl get -o yaml` begins `# owner: sync/default, generation N`.
    let policy_generation = |lab: &Lab| -> u64 {
        ctl(
            lab,
            "get globalnetworkpolicy security.server-ingress -o yaml",
        )
        .lines()
        .next()
        .and_then(|l| l.rsplit("generation ").next())
        .and_then(|g| g.trim().parse().ok())
        .expect("the owner comment")
    };
    let policy_at = policy_generation(&lab);
    etcd.calico("churn WorkloadEndpoint island--a-k8s-client-eth0 1 lab");
    let _sync = start_sync(&lab, &etcd, &dir.0);
    wait_for(Duration::from_secs(15), || {
        (generation(&lab) > before).then_some(())
    })
    .unwrap_or_else(|| panic!("the change did not arrive: {}", sync_status(&dir.0)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        generation(&lab),
        before + 1,
        "one change, not a delete and an add"
    );
    assert_eq!(policy_generation(&lab), policy_at);
    verdicts_become(&lab, (true, false), "after the restart", &dir.0);

    // 1000 rapid changes: one consistent final state, in far fewer pushes.
    let last = etcd.calico("churn WorkloadEndpoint island--a-k8s-client-eth0 1000 lab");
    let last = last.trim();
    let pod = wait_for(Duration::from_secs(30), || {
        let out = ctl(&lab, "get pod client -n lab -o json");
        let v: Value = serde_json::from_str(&out).ok()?;
        (v["metadata"]["labels"]["churn"] == last).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "the last of 1000 changes never arrived: {}",
            sync_status(&dir.0)
        )
    });
    assert_eq!(pod["metadata"]["labels"]["role"], "client");
    let pushes = sync_status(&dir.0)["appliances"][0]["pushes"]
        .as_u64()
        .unwrap();
    eprintln!("1000 changes to one pod: {pushes} pushes since the sync started");
    assert!(
        pushes < 200,
        "1000 changes took {pushes} pushes: bursts are not batched"
    );
    verdicts_become(&lab, (true, false), "after 1000 changes", &dir.0);
}

const GITOPS_ENDPOINTS: &str = "apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: client, namespace: edge, labels: {role: client}}
spec: {ips: [10.1.0.2]}
---
apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: server, namespace: edge, labels: {role: server}}
spec: {ips: [10.2.0.2]}
";

const GITOPS_POLICY: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: server-ingress}
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: role == 'client'}, destination: {ports: [8080]}}
";

#[test]
fn a_manifest_directory_named_in_a_config_file_is_synced_and_a_bad_file_changes_nothing() {
    let dir = scratch("gitops");
    let manifests = dir.0.join("cluster");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("endpoints.yaml"), GITOPS_ENDPOINTS).unwrap();
    std::fs::write(manifests.join("policy.yaml"), GITOPS_POLICY).unwrap();
    let lab = Lab::start("syncgo");
    let _servers = tcp_listeners(&lab, &[8080, 9090]);
    let config = dir.0.join("sync.yaml");
    std::fs::write(
        &config,
        format!(
            "name: gitops\nsources:\n  - name: git\n    manifests: {{dir: {}}}\n\
             appliances: [unix:{}]\nstatus_socket: {}\nbatch_ms: 10\n",
            manifests.display(),
            control_socket(&lab),
            dir.0.join("sync.sock").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("sync.log")).unwrap();
    let _sync = Reaped(
        Command::new(causeway_bin())
            .args(["sync", "--config", config.to_str().unwrap()])
            .stderr(log)
            .spawn()
            .expect("causeway sync starts"),
    );
    verdicts_become(&lab, (true, false), "after the first sync", &dir.0);
    let listed = ctl(&lab, "list --owner sync/gitops");
    assert!(listed.contains("server-ingress"), "{listed}");

    // A file that does not load is reported; what it held stays.
    std::fs::write(manifests.join("policy.yaml"), "kind: [unclosed\n").unwrap();
    let status = wait_for(Duration::from_secs(10), || {
        let s = sync_status(&dir.0);
        (s["sources"][0]["problems"].as_object()?.len() == 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("the bad file was not reported: {}", sync_status(&dir.0)));
    let problem = serde_json::to_string(&status["sources"][0]["problems"]).unwrap();
    assert!(problem.contains("policy.yaml"), "{problem}");
    std::thread::sleep(Duration::from_millis(1500));
    verdicts_become(&lab, (true, false), "with the file broken", &dir.0);

    // The file removed: that would leave the appliance no policy at all,
    // which this sync was not told to allow (no `allow_no_policy`). The
    // appliance refuses the push and keeps its policy; the sync says why.
    std::fs::remove_file(manifests.join("policy.yaml")).unwrap();
    let status = wait_for(Duration::from_secs(10), || {
        let s = sync_status(&dir.0);
        s["appliances"][0]["error"]
            .as_str()?
            .contains("deletes every policy")
            .then_some(s)
    })
    .unwrap_or_else(|| panic!("no refusal reported: {}", sync_status(&dir.0)));
    verdicts_become(&lab, (true, false), "after the file was removed", &dir.0);
    let listed = ctl(&lab, "list --owner sync/gitops");
    assert!(listed.contains("server-ingress"), "{listed}\n{status}");
}

#[test]
fn an_appliance_is_kept_in_step_over_the_mtls_api_and_a_wrong_identity_is_refused() {
    let dir = scratch("mtls");
    let manifests = dir.0.join("cluster");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("endpoints.yaml"), GITOPS_ENDPOINTS).unwrap();
    std::fs::write(manifests.join("policy.yaml"), GITOPS_POLICY).unwrap();
    let lab = Lab::start("syncmt");
    let pki = format!("/run/causeway/lab/{}/pki", lab.name);
    // The lab's TCP control API: 127.0.0.1:7443 in the appliance's
    // namespace, admitting the `client` identity as admin; its certificate
    // names demo.causeway.lab.
    let start = |who: &str, tag: &str| {
        let config = dir.0.join(format!("{tag}.yaml"));
        std::fs::write(
            &config,
            format!(
                "name: {tag}\nsources:\n  - name: git\n    manifests: {{dir: {}}}\n\
                 appliances: [https://127.0.0.1:7443]\n\
                 appliance_tls: {{ca: {pki}/ca.pem, cert: {pki}/{who}.pem, key: {pki}/{who}-key.pem, \
                 server_name: demo.causeway.lab}}\nstatus_socket: {}\n",
                manifests.display(),
                dir.0.join(format!("{tag}.sock")).display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.0.join(format!("{tag}.log"))).unwrap();
        Reaped(
            Command::new("ip")
                .args(["netns", "exec", &lab.ns("gw")])
                .arg(causeway_bin())
                .args(["sync", "--config", config.to_str().unwrap()])
                .stderr(log)
                .spawn()
                .expect("causeway sync starts"),
        )
    };
    let status_of = |tag: &str| -> Value {
        let out = sh(&format!(
            "{} sync status --socket {} -o json",
            causeway_bin().display(),
            dir.0.join(format!("{tag}.sock")).display()
        ));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };

    // Another identity is refused inside the handshake: nothing is pushed.
    let _stranger = start("upstream", "stranger");
    let refused = wait_for(Duration::from_secs(15), || {
        let s = status_of("stranger");
        s["appliances"][0]["error"].as_str().map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no error for a wrong identity: {}", status_of("stranger")));
    assert_eq!(
        status_of("stranger")["appliances"][0]["pushes"],
        0,
        "{refused}"
    );
    assert!(!ctl(&lab, "list").contains("server-ingress"));

    // The admin identity keeps it in step.
    let _admin = start("client", "admin");
    let pushed = wait_for(Duration::from_secs(15), || {
        ctl(&lab, "list --owner sync/admin")
            .contains("server-ingress")
            .then_some(())
    });
    assert!(
        pushed.is_some(),
        "nothing pushed over mTLS: {}\n{}",
        status_of("admin"),
        std::fs::read_to_string(dir.0.join("admin.log")).unwrap_or_default()
    );
    assert_eq!(
        status_of("admin")["appliances"][0]["address"],
        "https://127.0.0.1:7443"
    );
}
