//! The Kubernetes API server double (`tests/k8s-apiserver/apiserver.py`),
//! proven against clients that are not ours: the real `kubectl` creates,
//! applies, lists (by label, in chunks), watches, labels and deletes through
//! it, and `curl` checks the raw wire protocol where kubectl hides it (410
//! Expired for compacted watches and continue tokens, bookmarks, dropped
//! watches).
//!
//! Each test starts its own double on 127.0.0.1 port 0 with a kubeconfig in
//! a temporary directory; the guard kills it and removes the directory even
//! when the test fails.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use causeway_tests::{k8s::Double, sh, wait_for};
use serde_json::Value;

/// A namespace, two pods (one `app=web` with named ports), a Kubernetes
/// NetworkPolicy and a Calico GlobalNetworkPolicy; `changed` alters a
/// label, a port and the policy order.
fn manifests(changed: bool) -> String {
    let (tier, port, order) = if changed {
        ("back", 8080, 200)
    } else {
        ("front", 80, 100)
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop-apply
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {{app: web, tier: {tier}}}
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - {{name: http, containerPort: 80}}
    - {{name: https, containerPort: 443}}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  namespace: shop
  labels: {{app: db}}
spec:
  containers:
  - name: db
    image: postgres
    ports:
    - {{name: pg, containerPort: 5432}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
  namespace: shop
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - ports: [{{port: {port}, protocol: TCP}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-all
spec:
  order: {order}
  selector: all()
  types: [Ingress]
"#
    )
}

/// The server-set metadata every stored object carries.
fn assert_server_metadata(obj: &Value, what: &str) {
    let meta = &obj["metadata"];
    let uid = meta["uid"].as_str().unwrap_or_default();
    assert_eq!(uid.len(), 36, "{what}: uid {uid:?} is not a UUID: {obj}");
    let rv = meta["resourceVersion"].as_str().unwrap_or_default();
    assert!(
        rv.parse::<u64>().is_ok_and(|n| n > 0),
        "{what}: resourceVersion {rv:?} is not a positive number in a string: {obj}"
    );
    let ts = meta["creationTimestamp"].as_str().unwrap_or_default();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{what}: creationTimestamp {ts:?} is not RFC 3339 UTC: {obj}"
    );
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_creates_applies_lists_and_deletes() {
    let k8s = Double::start("apply");
    let v1 = k8s.file("v1.yaml", &manifests(false));
    let v2 = k8s.file("v2.yaml", &manifests(true));

    // 1. create and apply: every object comes back with server metadata.
    assert!(
        k8s.kubectl("create namespace shop")
            .contains("namespace/shop created")
    );
    let created = k8s.kubectl(&format!("apply -f {}", v1.display()));
    for line in [
        "namespace/shop-apply created",
        "pod/web-1 created",
        "pod/db-1 created",
        "networkpolicy.networking.k8s.io/web-allow created",
        "globalnetworkpolicy.projectcalico.org/deny-all created",
    ] {
        assert!(created.contains(line), "no {line:?} in:\n{created}");
    }
    for (args, kind) in [
        ("namespace shop", "Namespace"),
        ("namespace shop-apply", "Namespace"),
        ("pod -n shop web-1", "Pod"),
        (
            "networkpolicies.networking.k8s.io -n shop web-allow",
            "NetworkPolicy",
        ),
        (
            "globalnetworkpolicies.projectcalico.org deny-all",
            "GlobalNetworkPolicy",
        ),
    ] {
        let obj = k8s.get_json(args);
        assert_eq!(obj["kind"], kind, "{args}: {obj}");
        assert_server_metadata(&obj, args);
    }
    let pod = k8s.get_json("pod -n shop web-1");
    assert_eq!(pod["metadata"]["labels"]["app"], "web", "{pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["ports"][1]["name"], "https",
        "{pod}"
    );

    // 2. lists: all namespaces, by label, and in chunks of one.
    let all = k8s.get_json("pods -A");
    let mut all_names = names(&all);
    all_names.sort();
    assert_eq!(all_names, ["db-1", "web-1"], "{all}");
    assert!(
        all["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["metadata"]["namespace"] == "shop"),
        "{all}"
    );
    let web = k8s.kubectl("get pods -n shop -l app=web");
    assert!(web.contains("web-1") && !web.contains("db-1"), "{web}");
    let chunked = k8s.try_kubectl("get pods -n shop --chunk-size=1 -v=6");
    assert!(chunked.status.success(), "{}", stderr(&chunked));
    let rows = String::from_utf8_lossy(&chunked.stdout);
    assert!(
        rows.matches("web-1").count() == 1 && rows.matches("db-1").count() == 1,
        "each pod once across the chunks:\n{rows}"
    );
    let log = stderr(&chunked);
    let pages = log
        .lines()
        .filter(|l| l.contains("/pods?") && l.contains("limit=1") && l.contains("200 OK"))
        .count();
    let continued = log.lines().filter(|l| l.contains("continue=")).count();
    assert!(
        pages == 2 && continued >= 1,
        "two pods in chunks of one take two pages, the second with a continue token:\n{log}"
    );

    // 4. a changed manifest is configured, the same one again is unchanged.
    let before = k8s.get_json("globalnetworkpolicies.projectcalico.org deny-all");
    let configured = k8s.kubectl(&format!("apply -f {}", v2.display()));
    for line in [
        "namespace/shop-apply unchanged",
        "pod/web-1 configured",
        "pod/db-1 unchanged",
        "networkpolicy.networking.k8s.io/web-allow configured",
        "globalnetworkpolicy.projectcalico.org/deny-all configured",
    ] {
        assert!(configured.contains(line), "no {line:?} in:\n{configured}");
    }
    let again = k8s.kubectl(&format!("apply -f {}", v2.display()));
    assert_eq!(again.matches(" unchanged").count(), 5, "{again}");
    let gnp = k8s.get_json("globalnetworkpolicies.projectcalico.org deny-all");
    assert_eq!(gnp["spec"]["order"], 200, "{gnp}");
    assert_eq!(gnp["metadata"]["generation"], 2, "{gnp}");
    assert_eq!(gnp["metadata"]["uid"], before["metadata"]["uid"], "{gnp}");
    assert_ne!(
        gnp["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "{gnp}"
    );
    let netpol = k8s.get_json("networkpolicies.networking.k8s.io -n shop web-allow");
    assert_eq!(
        netpol["spec"]["ingress"][0]["ports"][0]["port"], 8080,
        "{netpol}"
    );
    let pod = k8s.get_json("pod -n shop web-1");
    assert_eq!(pod["metadata"]["labels"]["tier"], "back", "{pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["ports"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{pod}"
    );

    // 6. delete -f removes everything; get then fails naming the resource.
    let deleted = k8s.kubectl(&format!("delete -f {}", v2.display()));
    assert_eq!(deleted.matches(" deleted").count(), 5, "{deleted}");
    for (args, message) in [
        ("pod -n shop web-1", r#"pods "web-1" not found"#),
        (
            "networkpolicies.networking.k8s.io -n shop web-allow",
            r#"networkpolicies.networking.k8s.io "web-allow" not found"#,
        ),
        (
            "globalnetworkpolicies.projectcalico.org deny-all",
            r#"globalnetworkpolicies.projectcalico.org "deny-all" not found"#,
        ),
        (
            "namespace shop-apply",
            r#"namespaces "shop-apply" not found"#,
        ),
    ] {
        let out = k8s.try_kubectl(&format!("get {args}"));
        assert!(!out.status.success(), "`kubectl get {args}` found it");
        let err = stderr(&out);
        assert!(
            err.contains("NotFound") && err.contains(message),
            "`kubectl get {args}`: {err}"
        );
    }
}

/// The events (type, name, object) in `kubectl get -w --output-watch-events
/// -o json` output: pretty-printed JSON documents one after another.
fn watch_events(text: &str) -> Vec<(String, String, Value)> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .map(|e| {
            let name = e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                name,
                e["object"].clone(),
            )
        })
        .collect()
}

#[test]
fn kubectl_watch_sees_added_modified_deleted() {
    let k8s = Double::start("watch");
    k8s.kubectl("create namespace shop");
    let manifest = k8s.file("v1.yaml", &manifests(false));
    k8s.kubectl(&format!("apply -f {}", manifest.display()));

    // 3. a watch in the background, bounded by timeout(1).
    let out_path = k8s.dir.join("watch.json");
    let mut watch = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec timeout 20 {} > {} 2>&1",
            k8s.kubectl_cmd("get pods -n shop -w --output-watch-events -o json"),
            out_path.display()
        ))
        .spawn()
        .expect("kubectl watch");
    let watching = wait_for(Duration::from_secs(10), || {
        (k8s.state()["openWatches"].as_u64() == Some(1)).then_some(())
    });
    assert!(
        watching.is_some(),
        "kubectl never opened a watch:\n{}",
        k8s.log()
    );
    assert!(
        k8s.kubectl("label pod -n shop web-1 tier=mid --overwrite")
            .contains("pod/web-1 labeled")
    );
    assert!(
        k8s.kubectl("delete pod -n shop web-1")
            .contains(r#"pod "web-1" deleted"#)
    );
    let seen = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let events = watch_events(&text);
        events
            .iter()
            .any(|(t, n, _)| t == "DELETED" && n == "web-1")
            .then_some(events)
    });
    // timeout(1) passes the TERM on to kubectl.
    let _ = sh(&format!("kill -TERM {}", watch.id()));
    let _ = watch.wait();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let events = seen.unwrap_or_else(|| panic!("no DELETED event for web-1 in:\n{text}"));
    let web: Vec<_> = events.iter().filter(|(_, n, _)| n == "web-1").collect();
    let types: Vec<&str> = web.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{text}");
    assert_eq!(web[1].2["metadata"]["labels"]["tier"], "mid", "{text}");
    let rvs: Vec<u64> = web
        .iter()
        .map(|(_, _, o)| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    assert!(
        rvs[0] < rvs[1] && rvs[1] < rvs[2],
        "resourceVersions do not grow: {rvs:?}"
    );
    assert!(
        events.iter().any(|(t, n, _)| t == "ADDED" && n == "db-1"),
        "the untouched pod was not listed: {text}"
    );
}

#[test]
fn raw_watch_and_continue_get_410_after_compaction() {
    let k8s = Double::start("expired");
    k8s.kubectl("create namespace shop");
    let manifest = k8s.file("v1.yaml", &manifests(false));
    k8s.kubectl(&format!("apply -f {}", manifest.display()));

    // Typed list items carry no apiVersion/kind, as a real server sends them.
    let list: Value =
        serde_json::from_str(&k8s.curl("", "/api/v1/namespaces/shop/pods")).expect("PodList");
    assert_eq!(list["kind"], "PodList", "{list}");
    assert!(list["items"][0].get("kind").is_none(), "{list}");

    // 5a. a continue token taken now, then history compacted past it.
    let page: Value =
        serde_json::from_str(&k8s.curl("", "/api/v1/pods?limit=1")).expect("first page");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["metadata"]["remainingItemCount"], 1, "{page}");
    let token = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("no continue token: {page}"))
        .to_owned();
    let early = page["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();
    k8s.kubectl("label pod -n shop db-1 moved=yes");
    let now = k8s.resource_version();
    let compacted: Value =
        serde_json::from_str(&k8s.curl("-X POST", &format!("/_double/compact?rv={now}")))
            .expect("compact");
    assert_eq!(compacted["compacted"].as_u64(), Some(now), "{compacted}");

    // 5b. a watch from before the compaction: one in-stream ERROR 410.
    let stream = k8s.curl(
        "-N --max-time 5",
        &format!("/api/v1/pods?watch=true&resourceVersion={early}"),
    );
    let lines: Vec<Value> = stream
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stream}");
    let status = &lines[0]["object"];
    assert_eq!(lines[0]["type"], "ERROR", "{stream}");
    assert_eq!(status["kind"], "Status", "{stream}");
    assert_eq!(status["code"], 410, "{stream}");
    assert_eq!(status["reason"], "Expired", "{stream}");
    assert_eq!(
        status["message"],
        format!("too old resource version: {early} ({now})"),
        "{stream}"
    );

    // 5c. the continue token from before the compaction: 410 Expired.
    let expired = k8s.curl(
        "-w '\\n%{http_code}'",
        &format!("/api/v1/pods?limit=1&continue={token}"),
    );
    let (body, code) = expired.rsplit_once('\n').expect("body and status code");
    assert_eq!(code, "410", "{expired}");
    let status: Value = serde_json::from_str(body).expect("Status");
    assert_eq!(status["reason"], "Expired", "{status}");

    // A watch from the compaction point still works and replays what
    // followed it; bookmarks come every second when asked for.
    k8s.kubectl("label pod -n shop web-1 after=compaction");
    let stream = k8s.curl(
        "-N --max-time 10",
        &format!(
            "/api/v1/namespaces/shop/pods?watch=1&resourceVersion={now}&allowWatchBookmarks=true&timeoutSeconds=3"
        ),
    );
    let events: Vec<Value> = stream
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(events[0]["type"], "MODIFIED", "{stream}");
    assert_eq!(
        events[0]["object"]["metadata"]["labels"]["after"], "compaction",
        "{stream}"
    );
    assert!(
        events[1..]
            .iter()
            .any(|e| e["type"] == "BOOKMARK" && e["object"]["kind"] == "Pod"),
        "{stream}"
    );

    // Dropped watches end abruptly (curl: 18, transfer closed early).
    let mut cut = Command::new("curl")
        .args(["-sN", "--max-time", "10"])
        .arg(format!("{}/api/v1/pods?watch=true", k8s.url))
        .stdout(Stdio::null())
        .spawn()
        .expect("curl watch");
    let opened = wait_for(Duration::from_secs(5), || {
        (k8s.state()["openWatches"].as_u64() == Some(1)).then_some(())
    });
    assert!(opened.is_some(), "the raw watch never opened");
    k8s.curl("-X POST", "/_double/drop-watches");
    let status = cut.wait().expect("curl exit");
    assert_eq!(
        status.code(),
        Some(18),
        "curl saw a clean end of the stream"
    );
}

/// A pod manifest for the status tests; `status` (YAML lines) is appended.
fn pod_manifest(tier: &str, status: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {{app: web, tier: {tier}}}
spec:
  containers:
  - name: web
    image: nginx
{status}"#
    )
}

fn resource_version_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion: {obj}"))
}

#[test]
fn kubectl_patches_pod_status_like_a_kubelet() {
    let k8s = Double::start("status");
    k8s.kubectl("create namespace shop");
    let created = k8s.file("pod.yaml", &pod_manifest("front", ""));
    assert!(
        k8s.kubectl(&format!("apply -f {}", created.display()))
            .contains("pod/web-1 created")
    );
    let before = k8s.get_json("pod -n shop web-1");
    assert_eq!(before["status"]["phase"], "Pending", "{before}");

    // A watch in the background, bounded by timeout(1).
    let out_path = k8s.dir.join("watch.json");
    let mut watch = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec timeout 20 {} > {} 2>&1",
            k8s.kubectl_cmd("get pods -n shop -w --output-watch-events -o json"),
            out_path.display()
        ))
        .spawn()
        .expect("kubectl watch");
    let watching = wait_for(Duration::from_secs(10), || {
        (k8s.state()["openWatches"].as_u64() == Some(1)).then_some(())
    });
    assert!(
        watching.is_some(),
        "kubectl never opened a watch:\n{}",
        k8s.log()
    );

    // What a kubelet does once the pod runs: a merge patch of pods/status.
    let status_patch =
        r#"'{"status":{"phase":"Running","podIP":"10.2.0.2","podIPs":[{"ip":"10.2.0.2"}]}}'"#;
    let patched = k8s.kubectl(&format!(
        "patch pod web-1 -n shop --subresource=status --type=merge -p {status_patch}"
    ));
    assert!(patched.contains("pod/web-1 patched"), "{patched}");
    let pod = k8s.get_json("pod -n shop web-1");
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert_eq!(pod["status"]["podIP"], "10.2.0.2", "{pod}");
    assert_eq!(pod["status"]["podIPs"][0]["ip"], "10.2.0.2", "{pod}");
    assert_eq!(pod["spec"], before["spec"], "{pod}");
    assert_eq!(pod["metadata"]["uid"], before["metadata"]["uid"], "{pod}");
    let rv = resource_version_of(&pod);
    assert!(
        rv > resource_version_of(&before),
        "the status write kept the resourceVersion: {pod}"
    );
    let via_status = k8s.get_json("pod -n shop web-1 --subresource=status");
    assert_eq!(via_status["status"], pod["status"], "{via_status}");

    // The watch saw it as MODIFIED, carrying the status.
    let seen = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        watch_events(&text)
            .into_iter()
            .find(|(t, n, o)| t == "MODIFIED" && n == "web-1" && o["status"]["podIP"] == "10.2.0.2")
    });
    let _ = sh(&format!("kill -TERM {}", watch.id()));
    let _ = watch.wait();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let (_, _, event) =
        seen.unwrap_or_else(|| panic!("no MODIFIED event with the status in:\n{text}"));
    assert_eq!(event["status"]["phase"], "Running", "{text}");
    assert_eq!(resource_version_of(&event), rv, "{text}");

    // The same patch again changes nothing: no new resourceVersion.
    let again = k8s.kubectl(&format!(
        "patch pod web-1 -n shop --subresource=status --type=merge -p {status_patch}"
    ));
    assert!(again.contains("patched (no change)"), "{again}");
    assert_eq!(resource_version_of(&k8s.get_json("pod -n shop web-1")), rv);

    // JSON patch and strategic merge patch on the subresource; a change
    // to the spec through it is dropped, as a real server's status
    // strategy does.
    k8s.kubectl(
        r#"patch pod web-1 -n shop --subresource=status --type=json -p '[{"op":"add","path":"/status/hostIP","value":"192.168.1.7"},{"op":"replace","path":"/spec/containers/0/image","value":"httpd"}]'"#,
    );
    k8s.kubectl(
        r#"patch pod web-1 -n shop --subresource=status -p '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'"#,
    );
    let pod = k8s.get_json("pod -n shop web-1");
    assert_eq!(pod["status"]["hostIP"], "192.168.1.7", "{pod}");
    assert_eq!(pod["status"]["conditions"][0]["type"], "Ready", "{pod}");
    assert_eq!(pod["status"]["podIP"], "10.2.0.2", "{pod}");
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx", "{pod}");
    let status = pod["status"].clone();

    // The main endpoint ignores .status: applying the manifest with another
    // status (and a new label) changes the label only.
    let applied = k8s.file(
        "pod-with-status.yaml",
        &pod_manifest("back", "status:\n  phase: Failed\n  podIP: 10.9.9.9\n"),
    );
    let configured = k8s.kubectl(&format!("apply -f {}", applied.display()));
    assert!(configured.contains("pod/web-1 configured"), "{configured}");
    let pod = k8s.get_json("pod -n shop web-1");
    assert_eq!(pod["metadata"]["labels"]["tier"], "back", "{pod}");
    assert_eq!(pod["status"], status, "{pod}");

    // PUT on the subresource: optimistic concurrency as on the main
    // endpoint (409 on a stale resourceVersion).
    let mut stale = pod.clone();
    stale["metadata"]["resourceVersion"] = Value::from(rv.to_string());
    stale["status"]["phase"] = Value::from("Succeeded");
    let body = k8s.file("stale.json", &stale.to_string());
    let answer = k8s.curl(
        &format!(
            "-X PUT -H 'Content-Type: application/json' --data-binary @{} -w '\\n%{{http_code}}'",
            body.display()
        ),
        "/api/v1/namespaces/shop/pods/web-1/status",
    );
    let (conflict, code) = answer.rsplit_once('\n').expect("body and status code");
    assert_eq!(code, "409", "{answer}");
    let conflict: Value = serde_json::from_str(conflict).expect("Status");
    assert_eq!(conflict["reason"], "Conflict", "{conflict}");
    assert_eq!(k8s.get_json("pod -n shop web-1")["status"], status);
    let put = k8s.file("put.json", &{
        let mut fresh = pod.clone();
        fresh["status"]["phase"] = Value::from("Succeeded");
        fresh.to_string()
    });
    let replaced: Value = serde_json::from_str(&k8s.curl(
        &format!(
            "-X PUT -H 'Content-Type: application/json' --data-binary @{}",
            put.display()
        ),
        "/api/v1/namespaces/shop/pods/web-1/status",
    ))
    .expect("the replaced pod");
    assert_eq!(replaced["status"]["phase"], "Succeeded", "{replaced}");
    assert!(resource_version_of(&replaced) > resource_version_of(&pod));

    // Discovery names the subresources, plain and aggregated.
    let core: Value =
        serde_json::from_str(&k8s.kubectl("get --raw /api/v1")).expect("APIResourceList");
    for (name, namespaced) in [
        ("namespaces/status", false),
        ("pods/status", true),
        ("services/status", true),
    ] {
        let entry = core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {core}"));
        assert_eq!(entry["namespaced"], namespaced, "{entry}");
        assert_eq!(
            entry["verbs"],
            serde_json::json!(["get", "patch", "update"]),
            "{entry}"
        );
    }
    let aggregated: Value = serde_json::from_str(&k8s.curl(
        "-H 'Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'",
        "/api",
    ))
    .expect("APIGroupDiscoveryList");
    let pods = aggregated["items"][0]["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "pods")
        .unwrap_or_else(|| panic!("no pods in {aggregated}"));
    assert_eq!(pods["subresources"][0]["subresource"], "status", "{pods}");
    assert_eq!(
        pods["subresources"][0]["verbs"],
        serde_json::json!(["get", "patch", "update"]),
        "{pods}"
    );
}
