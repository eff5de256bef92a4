//! `causeway sync` against the Kubernetes API: the API server double
//! (`tests/k8s-apiserver/`, proved against kubectl in `k8s_double.rs`)
//! changed with the real `kubectl`, the appliance of a lab enforcing what
//! the cluster holds on real connections.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use causeway_tests::{
    Lab, Reaped, causeway_bin, k8s::Double, ok, sh, tcp_connects, tcp_listeners, wait_for,
};
use serde_json::Value;

const CLUSTER: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: lab
  labels: {site: edge}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: lab
  labels: {role: client}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: server
  namespace: lab
  labels: {role: server}
spec:
  containers:
  - name: s
    image: nginx
    ports: [{name: http, containerPort: 8080}]
"#;

const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.server-ingress}
spec:
  tier: security
  order: 10
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: role == 'client', namespaceSelector: site == 'edge'}
    destination: {ports: [http]}
"#;

/// Gives `pod` its address the way a kubelet does: the status subresource.
fn running(k8s: &Double, pod: &str, ip: &str) {
    k8s.kubectl(&format!(
        "patch pod {pod} -n lab --subresource=status --type=merge \
         -p '{{\"status\":{{\"phase\":\"Running\",\"podIP\":\"{ip}\",\"podIPs\":[{{\"ip\":\"{ip}\"}}]}}}}'"
    ));
}

fn start_sync(lab: &Lab, k8s: &Double) -> Reaped {
    let socket = lab.status()["appliance"]["control_socket"]
        .as_str()
        .expect("control socket")
        .to_owned();
    let log = std::fs::File::create(k8s.dir.join("sync.log")).unwrap();
    let child = Command::new(causeway_bin())
        .args([
            "sync",
            // This cluster deletes its last policy, and means it.
            "--allow-no-policy",
            "--appliance",
            &format!("unix:{socket}"),
            "--status-socket",
            k8s.dir.join("sync.sock").to_str().unwrap(),
        ])
        .env("DATASTORE_TYPE", "kubernetes")
        .env("KUBECONFIG", k8s.dir.join("kubeconfig"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("causeway sync starts");
    Reaped(child)
}

fn sync_status(dir: &Path) -> Value {
    let out = sh(&format!(
        "{} sync status --socket {} -o json",
        causeway_bin().display(),
        dir.join("sync.sock").display()
    ));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn verdicts_become(lab: &Lab, want: (bool, bool), what: &str, k8s: &Double) {
    let got = wait_for(Duration::from_secs(20), || {
        let v = (tcp_connects(lab, 8080), tcp_connects(lab, 9090));
        (v == want).then_some(v)
    });
    assert!(
        got.is_some(),
        "{what}: 8080/9090 never became {want:?}\nsync status: {}\nsync log: {}",
        sync_status(&k8s.dir),
        std::fs::read_to_string(k8s.dir.join("sync.log")).unwrap_or_default()
    );
}

#[test]
fn the_clusters_pods_and_calico_policy_are_enforced_and_follow_kubectl() {
    let k8s = Double::start("sync");
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("cluster.yaml", CLUSTER).display()
    ));
    running(&k8s, "client", "10.1.0.2");
    running(&k8s, "server", "10.2.0.2");
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("policy.yaml", POLICY).display()
    ));
    let lab = Lab::start("syncku");
    let _servers = tcp_listeners(&lab, &[8080, 9090]);
    let sync = start_sync(&lab, &k8s);

    verdicts_become(&lab, (true, false), "after the first sync", &k8s);
    let status = sync_status(&k8s.dir);
    assert_eq!(status["sources"][0]["kind"], "kubernetes", "{status}");
    assert_eq!(status["synced"], true, "{status}");
    let listed = ok(&format!(
        "{} ctl --lab {} list --owner sync/default",
        causeway_bin().display(),
        lab.name
    ));
    for want in [
        "Pod",
        "server",
        "client",
        "Namespace",
        "security.server-ingress",
    ] {
        assert!(listed.contains(want), "{want} missing:\n{listed}");
    }

    // kubectl label: the client no longer matches.
    k8s.kubectl("label pod client -n lab role=visitor --overwrite");
    verdicts_become(&lab, (false, false), "after relabelling the client", &k8s);
    k8s.kubectl("label pod client -n lab role=client --overwrite");
    verdicts_become(&lab, (true, false), "after labelling it back", &k8s);
    // The namespace's label is part of the match too.
    k8s.kubectl("label namespace lab site=core --overwrite");
    verdicts_become(
        &lab,
        (false, false),
        "after relabelling the namespace",
        &k8s,
    );
    k8s.kubectl("label namespace lab site=edge --overwrite");
    verdicts_become(
        &lab,
        (true, false),
        "after labelling the namespace back",
        &k8s,
    );

    // Dropped watches resume; a change made meanwhile arrives.
    k8s.curl("-X POST", "/_double/drop-watches");
    k8s.kubectl("delete globalnetworkpolicies.projectcalico.org security.server-ingress");
    verdicts_become(
        &lab,
        (true, true),
        "after the watches dropped and the policy was deleted",
        &k8s,
    );

    // A resourceVersion compacted while the sync could not read: an
    // in-stream 410, a relist, and the change arrives with no gap.
    let pid = sync.0.id();
    ok(&format!("kill -STOP {pid}"));
    k8s.curl("-X POST", "/_double/drop-watches");
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("policy.yaml", POLICY).display()
    ));
    let rv = k8s.resource_version();
    k8s.curl("-X POST", &format!("/_double/compact?rv={rv}"));
    ok(&format!("kill -CONT {pid}"));
    verdicts_become(
        &lab,
        (true, false),
        "after a compaction past the watches",
        &k8s,
    );
    let status = wait_for(Duration::from_secs(10), || {
        let s = sync_status(&k8s.dir);
        (s["sources"][0]["compactions"].as_u64()? >= 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("no 410 seen: {}", sync_status(&k8s.dir)));
    assert!(
        status["sources"][0]["lists"].as_u64().unwrap() > 8,
        "{status}"
    );

    // A pod deleted: its address has no endpoint, so no policy applies.
    k8s.kubectl("delete pod server -n lab");
    verdicts_become(&lab, (true, true), "after the server pod was deleted", &k8s);
}

const SERVICE: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: lab}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: lab}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// An EndpointSlice of Service lab/web: one endpoint, 10.2.0.2 (where the
/// lab's backends listen), on `port`.
fn slice(name: &str, port: u16, ready: bool) -> String {
    format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: lab
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [10.2.0.2]
  conditions: {{ready: {ready}}}
ports: [{{name: http, port: {port}, protocol: TCP}}]
"#
    )
}

/// The backends that answer 9 requests to the lab's demo service.
fn backends_answering(lab: &Lab) -> std::collections::BTreeSet<String> {
    let pki = format!("/run/causeway/lab/{}/pki", lab.name);
    (0..9)
        .filter_map(|_| {
            let out = lab.try_exec(
                "a",
                &format!(
                    "curl -s -m 3 --cacert {pki}/ca.pem --cert {pki}/client.pem --key {pki}/client-key.pem \
                     --resolve demo.causeway.lab:443:10.100.0.10 https://demo.causeway.lab/"
                ),
            );
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            body.trim()
                .strip_prefix("hello from ")
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn a_tls_service_naming_a_kubernetes_service_follows_its_endpoint_slices() {
    let k8s = Double::start("svc");
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("service.yaml", SERVICE).display()
    ));
    for (name, port) in [("web-a", 8081), ("web-b", 8082)] {
        k8s.kubectl(&format!(
            "apply -f {}",
            k8s.file(&format!("{name}.yaml"), &slice(name, port, true))
                .display()
        ));
    }
    let lab = Lab::start("syncsv");
    let _sync = start_sync(&lab, &k8s);
    let ctl = |args: &str| {
        ok(&format!(
            "{} ctl --lab {} {args}",
            causeway_bin().display(),
            lab.name
        ))
    };
    wait_for(Duration::from_secs(20), || {
        ctl("list --owner sync/default")
            .contains("web-b")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the slices did not arrive: {}", sync_status(&k8s.dir)));

    // The lab's demo service takes its upstreams from Service lab/web now
    // (an operator's change to what the configuration file seeded).
    let mut svc: Value = serde_json::from_str(&ctl("get tlsservice demo -o json")).unwrap();
    let spec = svc["spec"].as_object_mut().unwrap();
    spec.remove("upstreams");
    spec.insert(
        "upstream_service".into(),
        serde_json::json!({"namespace": "lab", "name": "web", "port": "http"}),
    );
    let file = k8s.file("demo.json", &svc.to_string());
    ctl(&format!("apply -f {} --force --wait", file.display()));
    let two: std::collections::BTreeSet<String> =
        ["backend-1".to_owned(), "backend-2".to_owned()].into();
    wait_for(Duration::from_secs(20), || {
        (backends_answering(&lab) == two).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the pool is not the two slices' endpoints: {:?}",
            backends_answering(&lab)
        )
    });

    // An endpoint no longer ready leaves the pool; a new slice joins it.
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("web-b.yaml", &slice("web-b", 8082, false))
            .display()
    ));
    k8s.kubectl(&format!(
        "apply -f {}",
        k8s.file("web-c.yaml", &slice("web-c", 8083, true))
            .display()
    ));
    let now: std::collections::BTreeSet<String> =
        ["backend-1".to_owned(), "backend-3".to_owned()].into();
    wait_for(Duration::from_secs(20), || {
        (backends_answering(&lab) == now).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the pool did not follow the slices: {:?}\n{}",
            backends_answering(&lab),
            sync_status(&k8s.dir)
        )
    });
}
