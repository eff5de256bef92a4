//! The resources users already write, as they write them:
//! `projectcalico.org/v3` GlobalNetworkPolicy, NetworkPolicy,
//! GlobalNetworkSet, NetworkSet and Tier; `networking.k8s.io/v1`
//! NetworkPolicy; `v1` Namespace and Pod; and causeway's own
//! `causeway.dev/v1alpha1` StaticEndpoint for hosts that are not pods.
//!
//! Policy kinds refuse unknown fields (a typo must not silently widen or
//! narrow a policy). Namespace and Pod manifests carry much that policy does
//! not use (images, probes, ...), so their unknown fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::selector::{LabelSelectorRequirement, Selector};

/// Calico's API group and version.
pub const CALICO_API: &str = "projectcalico.org/v3";
/// Kubernetes NetworkPolicy's API group and version.
pub const K8S_NETWORKING_API: &str = "networking.k8s.io/v1";
/// Kubernetes core API version.
pub const K8S_CORE_API: &str = "v1";
/// causeway's own kinds.
pub const CAUSEWAY_API: &str = "causeway.dev/v1alpha1";
/// The API version of Kubernetes' EndpointSlice.
pub const K8S_DISCOVERY_API: &str = "discovery.k8s.io/v1";

/// Object metadata. The fields Kubernetes adds on `get -o yaml` are
/// accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The resource's name.
    pub name: String,
    /// The namespace (namespaced kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing)]
    uid: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    resource_version: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    generation: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    creation_timestamp: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    managed_fields: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    generate_name: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    owner_references: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing)]
    finalizers: Option<serde_yaml::Value>,
}

/// Metadata of the kinds whose unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LooseMetadata {
    /// The resource's name.
    pub name: String,
    /// The namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Action {
    /// Allow the packet.
    Allow,
    /// Deny the packet.
    Deny,
    /// Log and go on to the next rule.
    Log,
    /// Skip the rest of this tier: go on to the next tier.
    Pass,
}

/// A direction of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum PolicyType {
    /// Traffic to the selected endpoints.
    Ingress,
    /// Traffic from the selected endpoints.
    Egress,
}

/// An IP protocol by name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`,
/// `UDPLite`) or number (1-255), as Calico's `numorstring.Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(pub u8);

impl Protocol {
    /// TCP.
    pub const TCP: Self = Self(6);
    /// UDP.
    pub const UDP: Self = Self(17);
    /// ICMP.
    pub const ICMP: Self = Self(1);
    /// ICMPv6.
    pub const ICMPV6: Self = Self(58);
    /// SCTP.
    pub const SCTP: Self = Self(132);
    /// UDP-Lite.
    pub const UDPLITE: Self = Self(136);

    /// Whether the protocol has ports (rules with ports need one of these).
    pub fn has_ports(self) -> bool {
        matches!(self, Self::TCP | Self::UDP | Self::SCTP | Self::UDPLITE)
    }

    /// Parses a name (any case, as Calico) or a number.
    ///
    /// # Errors
    /// A message naming what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let p = match s.to_ascii_lowercase().as_str() {
            "tcp" => Self::TCP,
            "udp" => Self::UDP,
            "icmp" => Self::ICMP,
            "icmpv6" => Self::ICMPV6,
            "sctp" => Self::SCTP,
            "udplite" => Self::UDPLITE,
            n => match n.parse::<u8>() {
                Ok(n) if n > 0 => Self(n),
                _ => {
                    return Err(format!(
                        "`{s}` is not a protocol: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255"
                    ));
                }
            },
        };
        Ok(p)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::TCP => f.write_str("TCP"),
            Self::UDP => f.write_str("UDP"),
            Self::ICMP => f.write_str("ICMP"),
            Self::ICMPV6 => f.write_str("ICMPv6"),
            Self::SCTP => f.write_str("SCTP"),
            Self::UDPLITE => f.write_str("UDPLite"),
            Self(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrString::deserialize(d)? {
            NumOrString::Num(n) => Self::parse(&n.to_string()).map_err(serde::de::Error::custom),
            NumOrString::Str(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(i64),
    Str(String),
}

/// A port: a number, a range `"lo:hi"`, or a named port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// One port, or a range (inclusive); `lo == hi` for one port.
    Range(u16, u16),
    /// A named port, resolved per endpoint (container port names).
    Named(String),
}

impl Port {
    /// Parses Calico's port syntax.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<u16, String> {
            match t.trim().parse::<u32>() {
                Ok(n) if n <= 65535 => Ok(n as u16),
                Ok(n) => Err(format!("port {n} is out of range (0 to 65535)")),
                Err(_) => Err(format!("`{t}` is not a port number")),
            }
        };
        if let Some((lo, hi)) = s.split_once(':') {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(format!(
                    "port range `{s}` has its low end above its high end"
                ));
            }
            return Ok(Self::Range(lo, hi));
        }
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            let n = num(s)?;
            return Ok(Self::Range(n, n));
        }
        // IANA_SVC_NAME (RFC 6335 §5.1): 1-15 of [a-z0-9-], a letter, no -- or edge -.
        let ok = !s.is_empty()
            && s.len() <= 15
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && s.chars().any(|c| c.is_ascii_lowercase())
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if !ok {
            return Err(format!(
                "`{s}` is neither a port, a range `lo:hi`, nor a port name (RFC 6335: 1-15 of a-z, 0-9, -)"
            ));
        }
        Ok(Self::Named(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrString::deserialize(d)? {
            NumOrString::Num(n) if (0..=65535).contains(&n) => Ok(Self::Range(n as u16, n as u16)),
            NumOrString::Num(n) => Err(serde::de::Error::custom(format!(
                "port {n} is out of range (0 to 65535)"
            ))),
            NumOrString::Str(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Range(lo, hi) if lo == hi => s.serialize_u16(*lo),
            Self::Range(lo, hi) => s.collect_str(&format_args!("{lo}:{hi}")),
            Self::Named(n) => s.serialize_str(n),
        }
    }
}

/// An ICMP type and optional code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    /// The ICMP type (0-254).
    #[serde(rename = "type", default)]
    pub ty: Option<u8>,
    /// The ICMP code (0-255); needs a type.
    #[serde(default)]
    pub code: Option<u8>,
}

/// Which service accounts a rule's side matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Service account names.
    #[serde(default)]
    pub names: Vec<String>,
    /// A selector over service account labels.
    #[serde(default)]
    pub selector: Option<Selector>,
}

/// One side (source or destination) of a Calico rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// CIDRs the address must be in (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// CIDRs the address must not be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Endpoints (and network sets) whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// Endpoints whose labels do not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<Selector>,
    /// Namespaces whose labels match (and their endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<Selector>,
    /// Ports (numbers, ranges, names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Ports not matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// Service accounts (pods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

/// A Calico rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// What a match does.
    pub action: Action,
    /// The IP protocol matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The IP protocol not matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code matched (protocol ICMP or ICMPv6).
    #[serde(default, rename = "icmp", skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    /// ICMP type/code not matched.
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// The source side.
    #[serde(default)]
    pub source: EntityRule,
    /// The destination side.
    #[serde(default)]
    pub destination: EntityRule,
    /// Rule metadata (annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// Annotations on a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The spec of a Calico NetworkPolicy or GlobalNetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The tier (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower first; missing means last; ties by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// The endpoints the policy applies to (default: all()).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// GlobalNetworkPolicy only: the namespaces whose endpoints it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<Selector>,
    /// Service accounts whose endpoints it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<Selector>,
    /// Ingress, Egress or both; see [`Self::effective_types`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    /// Rules for traffic to the selected endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Rules for traffic from the selected endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// GlobalNetworkPolicy only: enforce before connection tracking
    /// (stateless; on the appliance: in the XDP prefilter).
    #[serde(default)]
    pub do_not_track: bool,
    /// GlobalNetworkPolicy only: apply before DNAT.
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: bool,
    /// GlobalNetworkPolicy only: also apply to forwarded traffic.
    #[serde(default)]
    pub apply_on_forward: bool,
    /// Hints Calico uses for performance; accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

impl PolicySpec {
    /// The directions the policy applies in, with Calico's defaults when
    /// `types` is missing: Egress alone if it has egress rules but no ingress
    /// rules, both if it has both, Ingress otherwise.
    pub fn effective_types(&self) -> Vec<PolicyType> {
        if let Some(t) = &self.types {
            return t.clone();
        }
        match (self.ingress.is_empty(), self.egress.is_empty()) {
            (true, false) => vec![PolicyType::Egress],
            (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
            _ => vec![PolicyType::Ingress],
        }
    }
}

/// A Tier's spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Lower first; missing means last (the `default` tier is 1 000 000).
    #[serde(default)]
    pub order: Option<f64>,
    /// What happens when policies of the tier apply but none decides:
    /// Deny (default) or Pass.
    #[serde(default)]
    pub default_action: Option<Action>,
}

/// A (Global)NetworkSet's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    /// The set's CIDRs.
    #[serde(default)]
    pub nets: Vec<String>,
}

/// A Kubernetes `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must equal.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// A Kubernetes NetworkPolicy port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPort {
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Option<String>,
    /// A number or a named port; missing means every port.
    #[serde(default)]
    pub port: Option<Port>,
    /// With a numeric `port`: the range's end (inclusive).
    #[serde(default)]
    pub end_port: Option<u16>,
}

/// A Kubernetes IPBlock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    /// The CIDR.
    pub cidr: String,
    /// CIDRs inside it that are excluded.
    #[serde(default)]
    pub except: Vec<String>,
}

/// A Kubernetes NetworkPolicy peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPeer {
    /// Pods (in the policy's namespace, or in `namespaceSelector`'s).
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
}

/// A Kubernetes NetworkPolicy ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sIngressRule {
    /// Peers allowed (missing or empty: every peer).
    #[serde(default)]
    pub from: Vec<K8sPeer>,
    /// Ports allowed (missing or empty: every port).
    #[serde(default)]
    pub ports: Vec<K8sPort>,
}

/// A Kubernetes NetworkPolicy egress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sEgressRule {
    /// Peers allowed (missing or empty: every peer).
    #[serde(default)]
    pub to: Vec<K8sPeer>,
    /// Ports allowed (missing or empty: every port).
    #[serde(default)]
    pub ports: Vec<K8sPort>,
}

/// A Kubernetes NetworkPolicy spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPolicySpec {
    /// The pods it applies to (empty: all pods of the namespace).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Ingress, Egress; default: Ingress, plus Egress if there are egress rules.
    #[serde(default)]
    pub policy_types: Option<Vec<PolicyType>>,
    /// Ingress rules (any allows).
    #[serde(default)]
    pub ingress: Vec<K8sIngressRule>,
    /// Egress rules (any allows).
    #[serde(default)]
    pub egress: Vec<K8sEgressRule>,
}

impl K8sPolicySpec {
    /// The directions, with Kubernetes' defaults.
    pub fn effective_types(&self) -> Vec<PolicyType> {
        match &self.policy_types {
            Some(t) => t.clone(),
            None if self.egress.is_empty() => vec![PolicyType::Ingress],
            None => vec![PolicyType::Ingress, PolicyType::Egress],
        }
    }
}

/// A container port of a pod: where named ports come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// The port's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The port number.
    pub container_port: u16,
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A container (only its ports matter here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

/// A pod's spec (the parts policy uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// The service account.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// The pod shares its node's network: Calico makes no workload
    /// endpoint for it, so no policy applies to it or selects it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
}

/// A pod IP entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PodIp {
    /// The address.
    pub ip: String,
}

/// A pod's status (its addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// The primary address.
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    /// Every address (IPv4 and IPv6).
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// Whether a pod is a workload endpoint as Calico sees it: not sharing its
/// node's network, and not finished (`Succeeded` or `Failed`: its
/// addresses may already be another pod's). Other pods are not endpoints:
/// no policy applies to them and no selector selects them.
pub fn pod_is_endpoint(spec: &PodSpec, status: &PodStatus) -> bool {
    !spec.host_network && !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// A causeway static endpoint's named port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    /// The name.
    pub name: String,
    /// The number.
    pub port: u16,
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// A causeway StaticEndpoint's spec: a host that is not a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpointSpec {
    /// Its addresses.
    pub ips: Vec<String>,
    /// Its named ports.
    #[serde(default)]
    pub ports: Vec<NamedPort>,
}

/// Any resource the policy loader understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// projectcalico.org/v3 GlobalNetworkPolicy.
    GlobalNetworkPolicy {
        metadata: Metadata,
        spec: PolicySpec,
    },
    /// projectcalico.org/v3 NetworkPolicy.
    NetworkPolicy {
        metadata: Metadata,
        spec: PolicySpec,
    },
    /// projectcalico.org/v3 GlobalNetworkSet.
    GlobalNetworkSet {
        metadata: Metadata,
        spec: NetworkSetSpec,
    },
    /// projectcalico.org/v3 NetworkSet.
    NetworkSet {
        metadata: Metadata,
        spec: NetworkSetSpec,
    },
    /// projectcalico.org/v3 Tier.
    Tier { metadata: Metadata, spec: TierSpec },
    /// networking.k8s.io/v1 NetworkPolicy.
    K8sNetworkPolicy {
        metadata: Metadata,
        spec: K8sPolicySpec,
    },
    /// v1 Namespace.
    Namespace { metadata: LooseMetadata },
    /// v1 Pod.
    Pod {
        metadata: LooseMetadata,
        spec: PodSpec,
        status: PodStatus,
    },
    /// causeway.dev/v1alpha1 StaticEndpoint.
    StaticEndpoint {
        metadata: Metadata,
        spec: StaticEndpointSpec,
    },
    /// v1 Service or discovery.k8s.io/v1 EndpointSlice. Policy ignores
    /// them.
    ServiceDiscovery {
        metadata: LooseMetadata,
        spec: crate::resources::ServiceDiscovery,
    },
    /// causeway.dev/v1alpha1 Port, Route, Identity or TLSService: what only
    /// an appliance has (see [`crate::resources`]). Policy ignores them.
    Appliance {
        metadata: Metadata,
        spec: crate::resources::ApplianceSpec,
    },
}

impl Resource {
    /// `Kind/namespace/name` or `Kind/name`, as errors and explain print it.
    pub fn id(&self) -> String {
        let (kind, ns, name) = match self {
            Self::GlobalNetworkPolicy { metadata: m, .. } => ("GlobalNetworkPolicy", None, &m.name),
            Self::NetworkPolicy { metadata: m, .. } => {
                ("NetworkPolicy", m.namespace.as_deref(), &m.name)
            }
            Self::GlobalNetworkSet { metadata: m, .. } => ("GlobalNetworkSet", None, &m.name),
            Self::NetworkSet { metadata: m, .. } => ("NetworkSet", m.namespace.as_deref(), &m.name),
            Self::Tier { metadata: m, .. } => ("Tier", None, &m.name),
            Self::K8sNetworkPolicy { metadata: m, .. } => (
                "networking.k8s.io/NetworkPolicy",
                m.namespace.as_deref(),
                &m.name,
            ),
            Self::Namespace { metadata: m } => ("Namespace", None, &m.name),
            Self::Pod { metadata: m, .. } => ("Pod", m.namespace.as_deref(), &m.name),
            Self::StaticEndpoint { metadata: m, .. } => {
                ("StaticEndpoint", m.namespace.as_deref(), &m.name)
            }
            Self::ServiceDiscovery { metadata: m, spec } => {
                (spec.kind(), m.namespace.as_deref(), &m.name)
            }
            Self::Appliance { metadata: m, spec } => (spec.kind(), None, &m.name),
        };
        match ns {
            Some(ns) => format!("{kind}/{ns}/{name}"),
            None => format!("{kind}/{name}"),
        }
    }
}

/// The manifest of an appliance resource, as the store keeps it.
pub fn manifest(kind: &str, name: &str, spec: &impl Serialize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": CAUSEWAY_API,
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    })
}
