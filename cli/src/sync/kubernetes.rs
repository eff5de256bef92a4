//! The Kubernetes API source: namespaces, pods, Services and their
//! EndpointSlices (the upstreams of TLS services that name a Service),
//! Kubernetes NetworkPolicies and Calico's policy kinds as the cluster
//! serves them, each listed and then watched on its own.
//!
//! Per kind, as the API's concepts prescribe
//! (kubernetes.io/docs/reference/using-api/api-concepts):
//! 1. list in pages (`limit` 500, `continue`), the first page fixing the
//!    resourceVersion every page is read at; an expired continue token
//!    (410 Gone) restarts the list;
//! 2. the kind's part of the inventory becomes the list, diffed against
//!    what it held ([`Inventory::replace_within`]); once every kind has
//!    listed, the source is synced;
//! 3. watch from the list's resourceVersion with bookmarks
//!    (`allowWatchBookmarks`), each event setting or removing one key and
//!    moving the resourceVersion on (bookmarks move it too, so a quiet
//!    kind resumes from a recent one); a watch that times out (the server
//!    ends it) is started again from there;
//! 4. an in-stream ERROR with 410 (the resourceVersion is too old): back
//!    to 1. A dropped connection or any other error: after a backoff
//!    (100 ms doubling to 5 s), watch again from the last resourceVersion
//!    (a 410 then sends it to 1).
//!
//! Calico's kinds are read from `projectcalico.org/v3` (the Calico API
//! server) if the cluster serves it, else from the CRDs
//! (`crd.projectcalico.org/v1`, where policies of the default tier are
//! stored as `default.<name>`), else not at all.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, Result, anyhow};
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use super::{
    calico,
    config::KubernetesConfig,
    inventory::{Inventory, Item, check},
};

/// A kind the source watches.
#[derive(Debug, Clone, Copy)]
struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    /// Also served as a CRD in `crd.projectcalico.org/v1` (Calico kinds).
    calico: bool,
}

const KINDS: [Kind; 10] = [
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        calico: false,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        calico: false,
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        calico: false,
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        calico: false,
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        calico: false,
    },
    Kind {
        group: "projectcalico.org",
        version: "v3",
        kind: "Tier",
        plural: "tiers",
        calico: true,
    },
    Kind {
        group: "projectcalico.org",
        version: "v3",
        kind: "GlobalNetworkPolicy",
        plural: "globalnetworkpolicies",
        calico: true,
    },
    Kind {
        group: "projectcalico.org",
        version: "v3",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        calico: true,
    },
    Kind {
        group: "projectcalico.org",
        version: "v3",
        kind: "GlobalNetworkSet",
        plural: "globalnetworksets",
        calico: true,
    },
    Kind {
        group: "projectcalico.org",
        version: "v3",
        kind: "NetworkSet",
        plural: "networksets",
        calico: true,
    },
];

/// Where a kind is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Its own group (the Calico API server, or a built-in group).
    Api,
    /// Calico's CRDs.
    Crd,
}

impl Kind {
    fn resource(self, served: Served) -> ApiResource {
        let (group, version) = match served {
            Served::Api => (self.group, self.version),
            Served::Crd => ("crd.projectcalico.org", "v1"),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.kind),
            self.plural,
        )
    }

    /// The prefix of this kind's keys in the source's part of the
    /// inventory.
    fn prefix(self) -> String {
        if self.group.is_empty() {
            format!("{}/", self.plural)
        } else {
            format!("{}.{}/", self.plural, self.group)
        }
    }
}

/// The key of an object: `<plural>[.<group>]/[<namespace>/]<name>`.
fn key_of(kind: Kind, obj: &Value) -> Option<String> {
    let name = obj["metadata"]["name"].as_str()?;
    Some(match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{}{ns}/{name}", kind.prefix()),
        None => format!("{}{name}", kind.prefix()),
    })
}

/// The causeway manifest an object of `kind` stands for (`None`: nothing
/// to enforce).
///
/// # Errors
/// What is wrong with it, for the operator.
fn read(kind: Kind, served: Served, obj: &Value) -> Result<Option<Value>, String> {
    let meta = obj["metadata"].as_object();
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or("metadata.name is missing")?;
    let namespace = obj["metadata"]["namespace"].as_str();
    let labels = obj["metadata"]["labels"].clone();
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    if calico::non_empty(&labels) {
        metadata["labels"] = labels;
    }
    Ok(Some(match (kind.group, kind.kind) {
        ("", "Namespace") => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
        ("", "Pod") => pod(metadata, obj),
        ("", "Service") => {
            let ports: Vec<Value> = obj["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["name"].as_str() {
                    Some(n) => json!({"name": n, "port": p["port"]}),
                    None => json!({"port": p["port"]}),
                })
                .collect();
            json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata,
                   "spec": {"ports": ports}})
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let endpoints: Vec<Value> = obj["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let mut out = json!({"addresses": e["addresses"]});
                    if let Some(ready) = e["conditions"]["ready"].as_bool() {
                        out["conditions"] = json!({"ready": ready});
                    }
                    out
                })
                .collect();
            let ports: Vec<Value> = obj["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let mut out = json!({"port": p["port"]});
                    if let Some(n) = p["name"].as_str() {
                        out["name"] = json!(n);
                    }
                    out
                })
                .collect();
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": metadata, "endpoints": endpoints, "ports": ports})
        }
        ("networking.k8s.io", "NetworkPolicy") => json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata, "spec": obj["spec"],
        }),
        _ => {
            let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
            // In CRD mode a default-tier policy is stored as default.NAME
            // (its v3 name, when stashed in the annotation, wins anyway).
            let in_default_tier = spec["tier"].as_str().is_none_or(|t| t == "default");
            let name = match name.strip_prefix("default.") {
                Some(n)
                    if served == Served::Crd
                        && kind.kind.ends_with("Policy")
                        && in_default_tier =>
                {
                    n
                }
                _ => name,
            };
            calico::policy_kind(kind.kind, name, namespace, meta, spec)
        }
    }))
}

/// A pod as causeway's Pod: labels, service account, host network, named
/// container ports, phase and addresses.
fn pod(metadata: Value, obj: &Value) -> Value {
    let containers: Vec<Value> = obj["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let ports: Vec<Value> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"].is_string())
                .map(|p| {
                    json!({"name": p["name"], "containerPort": p["containerPort"],
                           "protocol": p["protocol"].as_str().unwrap_or("TCP")})
                })
                .collect();
            json!({"name": c["name"], "ports": ports})
        })
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(sa) = obj["spec"]["serviceAccountName"].as_str() {
        spec["serviceAccountName"] = json!(sa);
    }
    if obj["spec"]["hostNetwork"] == true {
        spec["hostNetwork"] = json!(true);
    }
    let s = &obj["status"];
    let mut status = json!({});
    if let Some(phase) = s["phase"].as_str() {
        status["phase"] = json!(phase);
    }
    if let Some(ip) = s["podIP"].as_str() {
        status["podIP"] = json!(ip);
    }
    if let Some(ips) = s["podIPs"].as_array() {
        status["podIPs"] = json!(
            ips.iter()
                .map(|i| json!({"ip": i["ip"]}))
                .collect::<Vec<_>>()
        );
    }
    let mut metadata = metadata;
    if let Some(t) = obj["metadata"]["deletionTimestamp"].as_str() {
        // Kept so that the inventory can hand a terminating pod's address
        // to its successor; the appliance's loader ignores it.
        metadata["deletionTimestamp"] = json!(t);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
}

/// An inventory item for `obj`.
fn item(source: &str, kind: Kind, served: Served, key: &str, obj: &Value) -> Option<Item> {
    match read(kind, served, obj) {
        Ok(None) => None,
        Ok(Some(m)) => {
            Some(check(m, &format!("{source}:{key}")).map_or_else(Item::Problem, Item::Object))
        }
        Err(p) => Some(Item::Problem(p)),
    }
}

/// The client `config` describes: its kubeconfig, or in-cluster
/// credentials (or `KUBECONFIG`, or `~/.kube/config`) when it names none.
async fn client(config: &KubernetesConfig) -> Result<Client> {
    let c = match &config.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no kubeconfig given, and neither in-cluster credentials nor ~/.kube/config",
        )?,
    };
    Client::try_from(c).context("making the Kubernetes client")
}

/// What one kind's loop shares with the others.
struct Shared {
    index: usize,
    name: String,
    inventory: Arc<Mutex<Inventory>>,
    changed: watch::Sender<u64>,
    /// Kinds that have not listed yet: the source is synced at 0.
    unlisted: Mutex<usize>,
}

/// Runs source `index` (named `name`) until the process ends.
pub async fn run(
    index: usize,
    name: String,
    config: KubernetesConfig,
    inventory: Arc<Mutex<Inventory>>,
    changed: watch::Sender<u64>,
) {
    let client = loop {
        match client(&config).await {
            Ok(c) => break c,
            Err(e) => {
                let message = format!("{e:#}");
                warn!(error = %message, "kubernetes source");
                inventory.lock().await.status_mut(index).error = Some(message);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let shared = Arc::new(Shared {
        index,
        name,
        inventory,
        changed,
        unlisted: Mutex::new(KINDS.len()),
    });
    let tasks: Vec<_> = KINDS
        .iter()
        .map(|kind| tokio::spawn(run_kind(*kind, client.clone(), shared.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Why a kind's watch stopped.
enum Stop {
    /// Its resourceVersion is too old: list again.
    Gone,
    /// Anything else: watch again from the last resourceVersion.
    Failed(anyhow::Error),
}

/// One kind, forever.
async fn run_kind(kind: Kind, client: Client, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    let mut served = None;
    let mut listed_once = false;
    // The resourceVersion to watch from; `None`: list first.
    let mut at: Option<String> = None;
    loop {
        if at.is_none() {
            match list(kind, &client, &shared, &mut served).await {
                Ok(rv) => {
                    at = rv;
                    backoff = Duration::from_millis(100);
                    if !listed_once {
                        listed_once = true;
                        let mut left = shared.unlisted.lock().await;
                        *left -= 1;
                        if *left == 0 {
                            let mut inv = shared.inventory.lock().await;
                            let status = inv.status_mut(shared.index);
                            status.synced = true;
                            shared.changed.send_replace(inv.version());
                        }
                    }
                    if at.is_none() {
                        // Not served by this cluster: nothing to watch.
                        return;
                    }
                }
                Err(e) => {
                    fail(&shared, kind, &e, backoff).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let from = at.clone().expect("listed");
        let api: Api<DynamicObject> =
            Api::all_with(client.clone(), &kind.resource(served.expect("listed")));
        match watch_from(
            kind,
            &api,
            &shared,
            served.expect("listed"),
            &from,
            &mut at,
            &mut backoff,
        )
        .await
        {
            Ok(()) => {}
            Err(Stop::Gone) => {
                info!(kind = kind.kind, from = %from, "kubernetes: the resourceVersion is too old (410); listing again");
                shared
                    .inventory
                    .lock()
                    .await
                    .status_mut(shared.index)
                    .compactions += 1;
                at = None;
            }
            Err(Stop::Failed(e)) => {
                fail(&shared, kind, &e, backoff).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn fail(shared: &Shared, kind: Kind, e: &anyhow::Error, retry_in: Duration) {
    let message = format!(
        "{}: {e}: {}; retrying, and the appliances keep enforcing what they hold",
        kind.prefix().trim_end_matches('/'),
        e.root_cause()
    );
    warn!(error = %message, ?retry_in, "kubernetes source");
    let mut inv = shared.inventory.lock().await;
    let status = inv.status_mut(shared.index);
    status.connected = false;
    status.error = Some(message);
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Lists `kind` whole into the inventory; its resourceVersion, or `None`
/// when the cluster does not serve it.
async fn list(
    kind: Kind,
    client: &Client,
    shared: &Shared,
    served: &mut Option<Served>,
) -> Result<Option<String>> {
    let candidates: &[Served] = match *served {
        Some(s) => &[s][..].to_vec().leak()[..],
        None if kind.calico => &[Served::Api, Served::Crd],
        None => &[Served::Api],
    };
    for &s in candidates {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource(s));
        match list_pages(kind, s, &api, &shared.name).await {
            Ok((items, rv)) => {
                *served = Some(s);
                let mut inv = shared.inventory.lock().await;
                let n = inv.replace_within(shared.index, &kind.prefix(), items, rv.clone());
                let status = inv.status_mut(shared.index);
                status.connected = true;
                status.error = None;
                info!(kind = kind.kind, group = %kind.resource(s).group, resource_version = %rv, changed = n, "kubernetes: listed");
                shared.changed.send_replace(inv.version());
                return Ok(Some(rv));
            }
            Err(e) if e.downcast_ref::<kube::Error>().and_then(status_code) == Some(404) => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    info!(
        kind = kind.kind,
        "kubernetes: the cluster does not serve this kind; it holds none"
    );
    Ok(None)
}

/// Every object of `kind`, read in pages at one resourceVersion; an
/// expired continue token starts the list again.
async fn list_pages(
    kind: Kind,
    served: Served,
    api: &Api<DynamicObject>,
    source: &str,
) -> Result<(BTreeMap<String, Item>, String)> {
    'restart: for _ in 0..5 {
        let mut items = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) if token.is_some() && status_code(&e) == Some(410) => continue 'restart,
                Err(e) => return Err(anyhow::Error::new(e)),
            };
            let rv = page.metadata.resource_version.clone().unwrap_or_default();
            for obj in page.items {
                let obj =
                    serde_json::to_value(&obj).context("an object that does not serialise")?;
                if let Some(key) = key_of(kind, &obj)
                    && let Some(item) = item(source, kind, served, &key, &obj)
                {
                    items.insert(key, item);
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok((items, rv));
            }
        }
    }
    Err(anyhow!(
        "the list kept expiring (410) before it was read whole"
    ))
}

/// Watches `kind` from `from`, moving `at` on, until the server ends the
/// watch (Ok), the resourceVersion is gone, or something fails.
async fn watch_from(
    kind: Kind,
    api: &Api<DynamicObject>,
    shared: &Shared,
    served: Served,
    from: &str,
    at: &mut Option<String>,
    backoff: &mut Duration,
) -> Result<(), Stop> {
    // Bookmarks are on by default (allowWatchBookmarks=true).
    let wp = WatchParams::default().timeout(290);
    let stream = match api.watch(&wp, from).await {
        Ok(s) => s,
        Err(e) if status_code(&e) == Some(410) => return Err(Stop::Gone),
        Err(e) => return Err(Stop::Failed(e.into())),
    };
    let mut stream = stream.boxed();
    {
        let mut inv = shared.inventory.lock().await;
        let status = inv.status_mut(shared.index);
        status.connected = true;
        status.error = None;
    }
    *backoff = Duration::from_millis(100);
    loop {
        let event = match stream.try_next().await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Stop::Failed(e.into())),
        };
        let (obj, label) = match event {
            WatchEvent::Added(o) => (o, "ADDED"),
            WatchEvent::Modified(o) => (o, "MODIFIED"),
            WatchEvent::Deleted(o) => (o, "DELETED"),
            WatchEvent::Bookmark(b) => {
                *at = Some(b.metadata.resource_version);
                continue;
            }
            WatchEvent::Error(s) if s.code == 410 => return Err(Stop::Gone),
            WatchEvent::Error(s) => {
                return Err(Stop::Failed(anyhow!(
                    "the watch answered {} {}",
                    s.code,
                    s.message
                )));
            }
        };
        let obj = serde_json::to_value(&obj).map_err(|e| Stop::Failed(e.into()))?;
        let Some(key) = key_of(kind, &obj) else {
            continue;
        };
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let new = if label == "DELETED" {
            None
        } else {
            item(&shared.name, kind, served, &key, &obj)
        };
        let mut inv = shared.inventory.lock().await;
        inv.set(shared.index, &key, new, rv.clone(), kind.plural, label);
        shared.changed.send_replace(inv.version());
        if !rv.is_empty() {
            *at = Some(rv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(k: &str, group: &str) -> Kind {
        *KINDS
            .iter()
            .find(|x| x.kind == k && x.group == group)
            .unwrap()
    }

    #[test]
    fn a_pod_reads_with_its_addresses_and_named_ports_only() {
        let obj = json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                         "uid": "x", "resourceVersion": "7", "managedFields": []},
            "spec": {"serviceAccountName": "web", "nodeName": "n1",
                     "containers": [{"name": "c", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": "10.2.0.2", "podIPs": [{"ip": "10.2.0.2"}],
                       "conditions": []}
        });
        let m = read(kind("Pod", ""), Served::Api, &obj).unwrap().unwrap();
        assert_eq!(
            m,
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]}],
                            "serviceAccountName": "web"},
                   "status": {"phase": "Running", "podIP": "10.2.0.2", "podIPs": [{"ip": "10.2.0.2"}]}})
        );
        check(m, "k:pods/shop/web-1").unwrap();
        assert_eq!(key_of(kind("Pod", ""), &obj).unwrap(), "pods/shop/web-1");
    }

    #[test]
    fn a_crd_mode_default_tier_policy_loses_its_prefix() {
        let obj = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
                         "metadata": {"name": "default.allow-dns"},
                         "spec": {"selector": "all()", "types": ["Egress"], "egress": [{"action": "Allow"}]}});
        let k = kind("GlobalNetworkPolicy", "projectcalico.org");
        let m = read(k, Served::Crd, &obj).unwrap().unwrap();
        assert_eq!(m["metadata"]["name"], "allow-dns");
        assert_eq!(m["apiVersion"], "projectcalico.org/v3");
        // From the Calico API server, names are as they are.
        assert_eq!(
            read(k, Served::Api, &obj).unwrap().unwrap()["metadata"]["name"],
            "default.allow-dns"
        );
        assert_eq!(
            key_of(k, &obj).unwrap(),
            "globalnetworkpolicies.projectcalico.org/default.allow-dns"
        );
    }
}
