//! The scenario's inventory: Calico v3 objects made by our own generator,
//! stored as calicoctl stores them (the whole object as JSON under
//! `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`).
//!
//! There is no public dataset of Calico inventories, so every figure of
//! the scenario is measured on this generator's data; its shape, for a
//! reader of the figures:
//!
//! - `namespaces` namespaces `ns-NN`, each a Profile `kns.ns-NN` with
//!   `labelsToApply` `pcns.projectcalico.org/name` and `pcns.team`
//!   (`t0`..`t4`);
//! - `endpoints` WorkloadEndpoints, endpoint *i* in namespace *i* mod
//!   `namespaces`, one IPv4 /32 each from 172.16.0.0/12 (172.16.0.1
//!   upwards: no address is shared, none is in the lab's 10.0/8 ranges),
//!   a named port `http` (TCP 8080) and labels `app` (`app-0`..`app-19`),
//!   `tier` (`frontend`, `backend`, `db`) and `version` (`v1`, `v2`),
//!   spread so that each namespace has every combination;
//! - two Tiers, `security` (order 100) and `platform` (order 200), beside
//!   the default tier;
//! - `policies` policies, policy *k*: a GlobalNetworkPolicy when *k* mod 5
//!   is 0, else a NetworkPolicy in namespace *k* mod `namespaces`; in tier
//!   `security` when *k* mod 10 is 0 or 1, `platform` when 2, else
//!   `default` (tiered names carry the `<tier>.` prefix); selecting
//!   `app == 'app-A' && tier == 'T'` (NetworkPolicy: about
//!   `endpoints / namespaces / 60` endpoints of its namespace) or
//!   `app == 'app-A' && version == 'v2'` (GlobalNetworkPolicy: about
//!   `endpoints / 40` endpoints); two ingress rules (TCP from
//!   `tier == 'frontend'` to one port of its own, TCP from 10.1.0.0/24 to
//!   a port range) and one egress rule (UDP 53 to `app == 'app-0'`).
//!
//! The changes the scenario makes: an endpoint's `version` label flipped
//! (it leaves the GlobalNetworkPolicies selecting `version == 'v2'` of its
//! app, or joins them), and a policy's own port moved by one.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde_json::json;

/// Where Calico keeps v3 resources in etcd.
pub(crate) const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
/// Values of the `app` label.
const APPS: u32 = 20;
/// Values of the `tier` label.
const ROLES: [&str; 3] = ["frontend", "backend", "db"];
/// The tiers besides `default`, with their order.
pub(crate) const TIERS: [(&str, u32); 2] = [("security", 100), ("platform", 200)];
/// The first endpoint address: 172.16.0.1.
const FIRST_IP: u32 = u32::from_be_bytes([172, 16, 0, 1]);
/// 172.16.0.0/12 holds this many addresses after [`FIRST_IP`].
const MAX_ENDPOINTS: u32 = (1 << 20) - 2;

/// How much to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) endpoints: u32,
    pub(crate) namespaces: u32,
    pub(crate) policies: u32,
}

/// One object to store: its etcd key, the id of the resource the appliance
/// will hold for it (`Kind/namespace/name`), and its stored value.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) value: Vec<u8>,
}

/// The generator, with the state of every object the scenario changes.
#[derive(Debug, Clone)]
pub(crate) struct Inventory {
    shape: Shape,
    /// Per endpoint: its `version` label is flipped.
    flipped: Vec<bool>,
    /// Per policy: how many times its own port moved.
    moved: Vec<u32>,
}

impl Inventory {
    /// An inventory of `shape`, nothing changed yet.
    ///
    /// # Errors
    /// The shape does not fit: no namespace, or more endpoints than
    /// 172.16.0.0/12 holds.
    pub(crate) fn new(shape: Shape) -> anyhow::Result<Self> {
        anyhow::ensure!(
            shape.namespaces > 0 && shape.namespaces <= 100,
            "namespaces: 1 to 100"
        );
        anyhow::ensure!(
            shape.endpoints >= shape.namespaces && shape.endpoints <= MAX_ENDPOINTS,
            "endpoints: from one per namespace to {MAX_ENDPOINTS} (172.16.0.0/12)"
        );
        Ok(Self {
            shape,
            flipped: vec![false; shape.endpoints as usize],
            moved: vec![0; shape.policies as usize],
        })
    }

    pub(crate) fn shape(&self) -> Shape {
        self.shape
    }

    /// Every object: tiers and profiles first (what policies and endpoints
    /// name), then endpoints, then policies.
    pub(crate) fn all(&self) -> Vec<Object> {
        let mut out = Vec::new();
        out.extend(TIERS.iter().map(|(name, order)| tier(name, *order)));
        out.extend((0..self.shape.namespaces).map(profile));
        out.extend((0..self.shape.endpoints).map(|i| self.endpoint(i)));
        out.extend((0..self.shape.policies).map(|k| self.policy(k)));
        out
    }

    /// How many resources the appliance holds for [`Inventory::all`]:
    /// every object stands for one (a profile `kns.*` for a Namespace).
    pub(crate) fn resources(&self) -> usize {
        TIERS.len() + (self.shape.namespaces + self.shape.endpoints + self.shape.policies) as usize
    }

    /// Endpoint `i` with its `version` label flipped.
    pub(crate) fn flip_endpoint(&mut self, i: u32) -> Object {
        let f = &mut self.flipped[i as usize];
        *f = !*f;
        self.endpoint(i)
    }

    /// Policy `k` with its own port moved by one.
    pub(crate) fn move_port(&mut self, k: u32) -> Object {
        self.moved[k as usize] += 1;
        self.policy(k)
    }

    fn namespace(&self, i: u32) -> String {
        ns_name(i % self.shape.namespaces)
    }

    /// WorkloadEndpoint `i`, as calicoctl (and the CNI plugin) store it.
    fn endpoint(&self, i: u32) -> Object {
        let ns = self.namespace(i);
        let j = i / self.shape.namespaces;
        let app = format!("app-{}", j % APPS);
        let role = ROLES[(j / APPS % 3) as usize];
        let v2 = ((j / (APPS * 3)) % 2 == 1) != self.flipped[i as usize];
        let pod = format!("p{i}");
        let node = format!("edge-{}", i % 16);
        let name = format!("{node}-k8s-{pod}-eth0");
        let ip = Ipv4Addr::from(FIRST_IP + i);
        let value = json!({
            "kind": "WorkloadEndpoint",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": uid(1, i),
                "creationTimestamp": "2026-12-01T00:00:00Z",
                "labels": {
                    "app": app,
                    "tier": role,
                    "version": if v2 { "v2" } else { "v1" },
                    "projectcalico.org/namespace": ns,
                    "projectcalico.org/orchestrator": "k8s",
                    "projectcalico.org/serviceaccount": "default",
                },
            },
            "spec": {
                "orchestrator": "k8s",
                "node": node,
                "containerID": format!("{:064x}", u64::from(i) * 0x9e37_79b9),
                "pod": pod,
                "endpoint": "eth0",
                "serviceAccountName": "default",
                "ipNetworks": [format!("{ip}/32")],
                "profiles": [format!("kns.{ns}"), format!("ksa.{ns}.default")],
                "interfaceName": format!("cali{:011x}", i),
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            },
        });
        Object {
            key: format!("{PREFIX}workloadendpoints/{ns}/{name}"),
            id: format!("Pod/{ns}/{pod}"),
            value: value.to_string().into_bytes(),
        }
    }

    /// Policy `k` (see the module's doc).
    fn policy(&self, k: u32) -> Object {
        let global = k.is_multiple_of(5);
        let tier = match k % 10 {
            0 | 1 => TIERS[0].0,
            2 => TIERS[1].0,
            _ => "default",
        };
        let base = if global {
            format!("gp-{k}")
        } else {
            format!("np-{k}")
        };
        let name = if tier == "default" {
            base
        } else {
            format!("{tier}.{base}")
        };
        let app = format!("app-{}", k % APPS);
        let selector = if global {
            format!("app == '{app}' && version == 'v2'")
        } else {
            format!(
                "app == '{app}' && tier == '{}'",
                ROLES[(k / APPS % 3) as usize]
            )
        };
        let port = 10_000 + (k * 7 + self.moved[k as usize]) % 50_000;
        let spec = json!({
            "tier": tier,
            "order": f64::from(k % 100),
            "selector": selector,
            "types": ["Ingress", "Egress"],
            "ingress": [
                {"action": "Allow", "protocol": "TCP",
                 "source": {"selector": "tier == 'frontend'"},
                 "destination": {"ports": [port]}},
                {"action": "Allow", "protocol": "TCP",
                 "source": {"nets": ["10.1.0.0/24"]},
                 "destination": {"ports": ["8000:8099"]}},
            ],
            "egress": [
                {"action": "Allow", "protocol": "UDP",
                 "destination": {"selector": "app == 'app-0'", "ports": [53]}},
            ],
        });
        let mut metadata = json!({
            "name": name,
            "uid": uid(2, k),
            "creationTimestamp": "2026-12-01T00:00:00Z",
        });
        let (key, id, kind) = if global {
            (
                format!("{PREFIX}globalnetworkpolicies/{name}"),
                format!("GlobalNetworkPolicy//{name}"),
                "GlobalNetworkPolicy",
            )
        } else {
            let ns = self.namespace(k);
            metadata["namespace"] = json!(ns);
            (
                format!("{PREFIX}networkpolicies/{ns}/{name}"),
                format!("NetworkPolicy/{ns}/{name}"),
                "NetworkPolicy",
            )
        };
        let value = json!({
            "kind": kind,
            "apiVersion": "projectcalico.org/v3",
            "metadata": metadata,
            "spec": spec,
        });
        Object {
            key,
            id,
            value: value.to_string().into_bytes(),
        }
    }
}

fn ns_name(n: u32) -> String {
    format!("ns-{n:02}")
}

/// A fixed, distinct uid per object (calicoctl makes random ones).
fn uid(kind: u32, i: u32) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

fn tier(name: &str, order: u32) -> Object {
    let value = json!({
        "kind": "Tier",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "uid": uid(3, order), "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"order": f64::from(order)},
    });
    Object {
        key: format!("{PREFIX}tiers/{name}"),
        id: format!("Tier//{name}"),
        value: value.to_string().into_bytes(),
    }
}

/// The namespace profile `kns.<namespace>` as the Kubernetes controllers
/// write it (the rules are Calico's allow-all; causeway reads the labels).
fn profile(n: u32) -> Object {
    let ns = ns_name(n);
    let name = format!("kns.{ns}");
    let value = json!({
        "kind": "Profile",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "uid": uid(4, n), "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {
                "pcns.projectcalico.org/name": ns,
                "pcns.team": format!("t{}", n % 5),
            },
        },
    });
    Object {
        key: format!("{PREFIX}profiles/{name}"),
        id: format!("Namespace//{ns}"),
        value: value.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn small() -> Inventory {
        Inventory::new(Shape {
            endpoints: 1_000,
            namespaces: 10,
            policies: 100,
        })
        .unwrap()
    }

    #[test]
    fn keys_ids_and_addresses_are_distinct_and_calico_reads_them() {
        let inv = small();
        let all = inv.all();
        assert_eq!(all.len(), inv.resources());
        let keys: BTreeSet<&str> = all.iter().map(|o| o.key.as_str()).collect();
        let ids: BTreeSet<&str> = all.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(keys.len(), all.len());
        assert_eq!(ids.len(), all.len());
        let mut ips = BTreeSet::new();
        for o in &all {
            let read = causeway_cli::sync::calico::read(&o.key, &o.value)
                .unwrap_or_else(|e| panic!("{}: {e}", o.key));
            let causeway_cli::sync::calico::Read::Resource(m) = read else {
                panic!("{} is ignored", o.key);
            };
            let kind = m["kind"].as_str().unwrap();
            let ns = m["metadata"]["namespace"].as_str().unwrap_or("");
            let name = m["metadata"]["name"].as_str().unwrap();
            assert_eq!(o.id, format!("{kind}/{ns}/{name}"));
            if kind == "Pod" {
                let ip = m["status"]["podIP"].as_str().unwrap().to_owned();
                assert!(ip.starts_with("172.1"), "{ip}");
                assert!(ips.insert(ip));
            }
        }
        assert_eq!(ips.len(), 1_000);
    }

    #[test]
    fn changes_change_the_value_and_come_back() {
        let mut inv = small();
        let before = inv.endpoint(7).value;
        let flipped = inv.flip_endpoint(7).value;
        assert_ne!(before, flipped);
        assert_eq!(inv.flip_endpoint(7).value, before);
        let before = inv.policy(3).value;
        assert_ne!(inv.move_port(3).value, before);
    }
}
