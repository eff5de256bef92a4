//! Calico's etcdv3 datastore, read as causeway resources.
//!
//! Calico (libcalico-go `lib/backend/model/resource.go`) keeps each v3
//! resource under `/calico/resources/v3/projectcalico.org/<plural>/<name>`
//! (cluster-wide kinds) or `.../<plural>/<namespace>/<name>` (namespaced
//! kinds), the value being the whole v3 object as JSON as calicoctl wrote
//! it. This module turns one key and value into the causeway resource that
//! stands for it, without any IO:
//!
//! | Calico                                   | causeway                         |
//! |------------------------------------------|----------------------------------|
//! | GlobalNetworkPolicy, NetworkPolicy, Tier, GlobalNetworkSet, NetworkSet | the same kind, as is (metadata trimmed to name, namespace, labels, annotations) |
//! | WorkloadEndpoint                         | `v1 Pod` (labels, IPs of `ipNetworks`, service account, named ports) |
//! | HostEndpoint                             | `StaticEndpoint` (`expectedIPs`, named ports) |
//! | Profile `kns.<namespace>`                | `v1 Namespace` (labels `pcns.*` of `labelsToApply`, prefix removed) |
//!
//! Other Calico kinds (IP pools, nodes, Felix and BGP configuration, service
//! account profiles `ksa.*`, ...) do not bear on an appliance's policy and
//! are ignored; a key under another plural is reported as an unknown kind.
//! A policy's name is the name the user gave it: when the object carries
//! the `projectcalico.org/metadata` annotation (v3 metadata stashed by the
//! backend), its `name` wins over the stored one.

use serde_json::{Map, Value, json};

/// The prefix Calico keeps v3 resources under.
pub const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";

/// The annotation in which Calico's backend stashes the v3 metadata.
const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// Plurals that hold nothing an appliance enforces.
const IGNORED: &[&str] = &[
    "bgpconfigurations",
    "bgpfilters",
    "bgppeers",
    "blockaffinities",
    "caliconodestatuses",
    "clusterinformations",
    "felixconfigurations",
    "globalnetworkpolicies.staged",
    "ipamconfigs",
    "ippools",
    "ipreservations",
    "kubecontrollersconfigurations",
    "nodes",
    "stagedglobalnetworkpolicies",
    "stagedkubernetesnetworkpolicies",
    "stagednetworkpolicies",
    "tiers.staged",
];

/// What a key and its value stand for.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A causeway resource: its manifest.
    Resource(Value),
    /// Nothing the appliance enforces (another Calico kind).
    Ignored,
}

/// The kind and the names a key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// e.g. `globalnetworkpolicies`.
    pub plural: &'a str,
    /// Namespaced kinds only.
    pub namespace: Option<&'a str>,
    /// The resource's name.
    pub name: &'a str,
}

/// Splits a key under [`PREFIX`].
///
/// # Errors
/// The key is not under the prefix, or has not two or three parts.
pub fn key(k: &str) -> Result<Key<'_>, String> {
    let rest = k
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("`{k}` is not under {PREFIX}"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [plural, name] if !name.is_empty() => Ok(Key {
            plural,
            namespace: None,
            name,
        }),
        [plural, ns, name] if !ns.is_empty() && !name.is_empty() => Ok(Key {
            plural,
            namespace: Some(ns),
            name,
        }),
        _ => Err(format!(
            "`{k}` is not <prefix>/<plural>/<name> or <prefix>/<plural>/<namespace>/<name>"
        )),
    }
}

/// Reads one key and value.
///
/// # Errors
/// What is wrong with it, for the operator: the value is not JSON, not the
/// kind its key says, or lacks what the conversion needs.
pub fn read(k: &str, value: &[u8]) -> Result<Read, String> {
    let key = key(k)?;
    if IGNORED.contains(&key.plural) {
        return Ok(Read::Ignored);
    }
    let object: Value = serde_json::from_slice(value).map_err(|e| {
        format!("the value is not JSON ({e}); calicoctl writes the v3 object as JSON")
    })?;
    let Some(obj) = object.as_object() else {
        return Err("the value is not a JSON object".into());
    };
    let expected = kind_of(key.plural);
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    match expected {
        Some(expected) if kind != expected => {
            return Err(format!(
                "the key holds {}s, but the value's kind is `{kind}`",
                expected
            ));
        }
        None => {
            return Err(format!(
                "unknown kind: `{}` is not a Calico resource causeway reads",
                key.plural
            ));
        }
        Some(_) => {}
    }
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let meta = obj.get("metadata").and_then(Value::as_object);
    let labels = meta
        .and_then(|m| m.get("labels"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    match kind {
        "GlobalNetworkPolicy" | "NetworkPolicy" | "Tier" | "GlobalNetworkSet" | "NetworkSet" => Ok(
            Read::Resource(policy_kind(kind, key.name, key.namespace, meta, spec)),
        ),
        "WorkloadEndpoint" => workload_endpoint(&key, &labels, &spec).map(Read::Resource),
        "HostEndpoint" => host_endpoint(&key, &labels, &spec).map(Read::Resource),
        "Profile" => Ok(profile(&key, &spec).map_or(Read::Ignored, Read::Resource)),
        _ => unreachable!("kind_of names only the kinds above"),
    }
}

/// The kind a plural holds, for the plurals causeway reads.
fn kind_of(plural: &str) -> Option<&'static str> {
    Some(match plural {
        "globalnetworkpolicies" => "GlobalNetworkPolicy",
        "networkpolicies" => "NetworkPolicy",
        "tiers" => "Tier",
        "globalnetworksets" => "GlobalNetworkSet",
        "networksets" => "NetworkSet",
        "workloadendpoints" => "WorkloadEndpoint",
        "hostendpoints" => "HostEndpoint",
        "profiles" => "Profile",
        _ => return None,
    })
}

/// A Calico policy kind (a policy, tier or network set) named `name` (in
/// `namespace`) as is, with only the metadata a manifest carries; the name
/// in the stashed v3 metadata, if any, wins over `name`.
pub(crate) fn policy_kind(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    meta: Option<&Map<String, Value>>,
    spec: Value,
) -> Value {
    let mut annotations = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let stashed = annotations.remove(METADATA_ANNOTATION).and_then(|v| {
        v.as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    });
    let name = stashed
        .as_ref()
        .and_then(|m| m["name"].as_str())
        .map_or_else(|| name.to_owned(), str::to_owned);
    let mut metadata = json!({ "name": name });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    if let Some(labels) = meta.and_then(|m| m.get("labels")).filter(|l| non_empty(l)) {
        metadata["labels"] = labels.clone();
    }
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    })
}

pub(crate) fn non_empty(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

/// The addresses of `ipNetworks` (`10.1.0.2/32`) or `expectedIPs`.
fn addresses(list: &Value, field: &str) -> Result<Vec<String>, String> {
    let Some(items) = list.as_array() else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("spec.{field}: `{v}` is not a string"))?;
            let ip = s.split('/').next().unwrap_or(s);
            ip.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| format!("spec.{field}: `{s}` is not an address"))
        })
        .collect()
}

/// Calico's endpoint ports (`{name, protocol, port}`) as container ports.
fn named_ports(spec: &Value, container: bool) -> Vec<Value> {
    spec["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    let name = p["name"].as_str()?;
                    let port = p["port"].as_u64()?;
                    let protocol = match &p["protocol"] {
                        Value::String(s) => s.to_uppercase(),
                        _ => "TCP".into(),
                    };
                    Some(if container {
                        json!({"name": name, "containerPort": port, "protocol": protocol})
                    } else {
                        json!({"name": name, "port": port, "protocol": protocol})
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A workload endpoint as the pod it stands for.
fn workload_endpoint(key: &Key<'_>, labels: &Value, spec: &Value) -> Result<Value, String> {
    let namespace = key
        .namespace
        .ok_or("a WorkloadEndpoint is namespaced: its key needs <namespace>/<name>")?;
    let ips = addresses(&spec["ipNetworks"], "ipNetworks")?;
    if ips.is_empty() {
        return Err(
            "spec.ipNetworks: a workload endpoint without addresses has nothing to judge".into(),
        );
    }
    let name = spec["pod"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or(key.name);
    let mut pod_spec = json!({
        "containers": [{"name": "workload", "ports": named_ports(spec, true)}],
    });
    if let Some(sa) = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        pod_spec["serviceAccountName"] = json!(sa);
    }
    let mut metadata = json!({"name": name, "namespace": namespace});
    if non_empty(labels) {
        metadata["labels"] = labels.clone();
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": pod_spec,
        "status": {
            "phase": "Running",
            "podIP": ips[0],
            "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        },
    }))
}

/// A host endpoint as a static endpoint.
fn host_endpoint(key: &Key<'_>, labels: &Value, spec: &Value) -> Result<Value, String> {
    let ips = addresses(&spec["expectedIPs"], "expectedIPs")?;
    if ips.is_empty() {
        return Err(
            "spec.expectedIPs: causeway judges endpoints by address, and this host endpoint lists none"
                .into(),
        );
    }
    let mut metadata = json!({"name": key.name});
    if non_empty(labels) {
        metadata["labels"] = labels.clone();
    }
    let mut s = json!({ "ips": ips });
    let ports = named_ports(spec, false);
    if !ports.is_empty() {
        s["ports"] = json!(ports);
    }
    Ok(json!({
        "apiVersion": "causeway.dev/v1alpha1",
        "kind": "StaticEndpoint",
        "metadata": metadata,
        "spec": s,
    }))
}

/// A namespace profile (`kns.<namespace>`) as the namespace, with the
/// labels Calico applies to its endpoints (`pcns.<label>`) as its labels.
fn profile(key: &Key<'_>, spec: &Value) -> Option<Value> {
    let namespace = key.name.strip_prefix("kns.")?;
    let labels: Map<String, Value> = spec["labelsToApply"]
        .as_object()
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("pcns.")?.to_owned(), v.clone())))
                .collect()
        })
        .unwrap_or_default();
    let mut metadata = json!({"name": namespace});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}))
}

#[cfg(test)]
mod tests;
