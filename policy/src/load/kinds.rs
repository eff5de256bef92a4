//! Which typed form a document takes, chosen by its `apiVersion` and
//! `kind`, and the typed forms themselves.

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_yaml::{Mapping, Value};

use crate::model::{
    CALICO_API, CAUSEWAY_API, K8S_CORE_API, K8S_DISCOVERY_API, K8S_NETWORKING_API, K8sPolicySpec,
    LooseMetadata, Metadata, NetworkSetSpec, PodSpec, PodStatus, PolicySpec, Resource,
    StaticEndpointSpec, TierSpec,
};
use crate::resources::{
    ApplianceSpec, EndpointSliceSpec, IdentitySpec, PortSpec, RouteSpec, ServiceDiscovery,
    ServicePorts, TlsServiceSpec,
};

/// What every error about kinds lists.
pub(super) const UNDERSTOOD: &str = "projectcalico.org/v3 GlobalNetworkPolicy, NetworkPolicy, \
     GlobalNetworkSet, NetworkSet and Tier; networking.k8s.io/v1 NetworkPolicy; v1 Namespace, Pod and \
     Service; discovery.k8s.io/v1 EndpointSlice; causeway.dev/v1alpha1 StaticEndpoint, Port, Route, Identity and TLSService; and a List of these";

/// A manifest's first two lines, for errors.
pub(super) const EXAMPLE: &str =
    "`apiVersion: projectcalico.org/v3` and `kind: GlobalNetworkPolicy`";

/// The kinds the loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    GlobalNetworkPolicy,
    NetworkPolicy,
    GlobalNetworkSet,
    NetworkSet,
    Tier,
    K8sNetworkPolicy,
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    StaticEndpoint,
    Port,
    Route,
    Identity,
    TlsService,
}

impl Kind {
    const ALL: [(&'static str, &'static str, Self); 15] = [
        (CALICO_API, "GlobalNetworkPolicy", Self::GlobalNetworkPolicy),
        (CALICO_API, "NetworkPolicy", Self::NetworkPolicy),
        (CALICO_API, "GlobalNetworkSet", Self::GlobalNetworkSet),
        (CALICO_API, "NetworkSet", Self::NetworkSet),
        (CALICO_API, "Tier", Self::Tier),
        (K8S_NETWORKING_API, "NetworkPolicy", Self::K8sNetworkPolicy),
        (K8S_CORE_API, "Namespace", Self::Namespace),
        (K8S_CORE_API, "Pod", Self::Pod),
        (K8S_CORE_API, "Service", Self::Service),
        (K8S_DISCOVERY_API, "EndpointSlice", Self::EndpointSlice),
        (CAUSEWAY_API, "StaticEndpoint", Self::StaticEndpoint),
        (CAUSEWAY_API, "Port", Self::Port),
        (CAUSEWAY_API, "Route", Self::Route),
        (CAUSEWAY_API, "Identity", Self::Identity),
        (CAUSEWAY_API, "TLSService", Self::TlsService),
    ];

    /// The kind of `apiVersion`/`kind`.
    ///
    /// # Errors
    /// A message saying what is understood, and which apiVersion goes with
    /// the kind when only the apiVersion is wrong.
    pub(super) fn from_type(api: &str, kind: &str) -> Result<Self, String> {
        if let Some((_, _, k)) = Self::ALL.iter().find(|(a, n, _)| *a == api && *n == kind) {
            return Ok(*k);
        }
        if api == "crd.projectcalico.org/v1" {
            return Err(format!(
                "apiVersion crd.projectcalico.org/v1 is Calico's internal storage form: write the {kind} \
                 with apiVersion projectcalico.org/v3"
            ));
        }
        let apis: Vec<&str> = Self::ALL
            .iter()
            .filter(|(_, n, _)| *n == kind)
            .map(|(a, _, _)| *a)
            .collect();
        if apis.is_empty() {
            Err(format!(
                "{api} {kind} is not a kind causeway reads: it reads {UNDERSTOOD}"
            ))
        } else {
            Err(format!(
                "{kind} is not a {api} kind: use apiVersion {}",
                apis.join(" or apiVersion ")
            ))
        }
    }

    /// The kind as [`Resource::id`] prints it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::GlobalNetworkSet => "GlobalNetworkSet",
            Self::NetworkSet => "NetworkSet",
            Self::Tier => "Tier",
            Self::K8sNetworkPolicy => "networking.k8s.io/NetworkPolicy",
            Self::Namespace => "Namespace",
            Self::Pod => "Pod",
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::StaticEndpoint => "StaticEndpoint",
            Self::Port => "Port",
            Self::Route => "Route",
            Self::Identity => "Identity",
            Self::TlsService => "TLSService",
        }
    }

    /// Whether a missing namespace means `default`.
    pub(super) fn defaults_namespace(self) -> bool {
        matches!(
            self,
            Self::NetworkPolicy
                | Self::NetworkSet
                | Self::K8sNetworkPolicy
                | Self::Pod
                | Self::Service
                | Self::EndpointSlice
        )
    }

    /// Reads the typed form.
    pub(super) fn parse<'de, D: Deserializer<'de>>(self, d: D) -> Result<Resource, D::Error> {
        Ok(match self {
            Self::GlobalNetworkPolicy => {
                let doc = Strict::<PolicySpec>::deserialize(d)?;
                Resource::GlobalNetworkPolicy {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::NetworkPolicy => {
                let doc = Strict::<PolicySpec>::deserialize(d)?;
                Resource::NetworkPolicy {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::GlobalNetworkSet => {
                let doc = Strict::<NetworkSetSpec>::deserialize(d)?;
                Resource::GlobalNetworkSet {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::NetworkSet => {
                let doc = Strict::<NetworkSetSpec>::deserialize(d)?;
                Resource::NetworkSet {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::Tier => {
                let doc = Strict::<TierSpec>::deserialize(d)?;
                Resource::Tier {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::K8sNetworkPolicy => {
                let doc = K8sPolicyDoc::deserialize(d)?;
                Resource::K8sNetworkPolicy {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
            Self::Namespace => Resource::Namespace {
                metadata: NamespaceDoc::deserialize(d)?.metadata,
            },
            Self::Pod => {
                let doc = PodDoc::deserialize(d)?;
                Resource::Pod {
                    metadata: doc.metadata,
                    spec: doc.spec,
                    status: doc.status,
                }
            }
            Self::Service => {
                let doc = ServiceDoc::deserialize(d)?;
                Resource::ServiceDiscovery {
                    metadata: doc.metadata,
                    spec: ServiceDiscovery::Service(doc.spec),
                }
            }
            Self::EndpointSlice => {
                let doc = EndpointSliceDoc::deserialize(d)?;
                Resource::ServiceDiscovery {
                    metadata: doc.metadata,
                    spec: ServiceDiscovery::EndpointSlice(doc.slice),
                }
            }
            Self::Port => {
                let doc = WithSpec::<PortSpec>::deserialize(d)?;
                appliance(doc.metadata, ApplianceSpec::Port(doc.spec))
            }
            Self::Route => {
                let doc = WithSpec::<RouteSpec>::deserialize(d)?;
                appliance(doc.metadata, ApplianceSpec::Route(doc.spec))
            }
            Self::Identity => {
                let doc = WithSpec::<IdentitySpec>::deserialize(d)?;
                appliance(doc.metadata, ApplianceSpec::Identity(doc.spec))
            }
            Self::TlsService => {
                let doc = WithSpec::<TlsServiceSpec>::deserialize(d)?;
                appliance(doc.metadata, ApplianceSpec::TlsService(Box::new(doc.spec)))
            }
            Self::StaticEndpoint => {
                let doc = Strict::<StaticEndpointSpec>::deserialize(d)?;
                Resource::StaticEndpoint {
                    metadata: doc.metadata,
                    spec: doc.spec,
                }
            }
        })
    }
}

/// A Calico or causeway manifest: nothing beyond these fields. apiVersion
/// and kind were read already (and may be implied by a typed List).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict<S> {
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(default, rename = "kind")]
    _kind: Option<IgnoredAny>,
    metadata: Metadata,
    #[serde(default)]
    spec: S,
}

/// As [`Strict`], for kinds whose spec has no default: it must be there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithSpec<S> {
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(default, rename = "kind")]
    _kind: Option<IgnoredAny>,
    metadata: Metadata,
    spec: S,
}

fn appliance(metadata: Metadata, spec: ApplianceSpec) -> Resource {
    Resource::Appliance { metadata, spec }
}

/// A Kubernetes NetworkPolicy: as [`Strict`], and `kubectl get` may add an
/// empty `status`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct K8sPolicyDoc {
    #[serde(default, rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(default, rename = "kind")]
    _kind: Option<IgnoredAny>,
    metadata: Metadata,
    #[serde(default)]
    spec: K8sPolicySpec,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

/// A Service: only its name and ports matter; the rest is ignored.
#[derive(Deserialize)]
struct ServiceDoc {
    metadata: LooseMetadata,
    #[serde(default)]
    spec: ServicePorts,
}

/// An EndpointSlice: its endpoints and ports (top-level fields, as
/// Kubernetes has them); the rest is ignored.
#[derive(Deserialize)]
struct EndpointSliceDoc {
    metadata: LooseMetadata,
    #[serde(flatten)]
    slice: EndpointSliceSpec,
}

/// A Pod: fields policy does not use are ignored.
#[derive(Deserialize)]
struct PodDoc {
    metadata: LooseMetadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

/// A Namespace: only its metadata matters.
#[derive(Deserialize)]
struct NamespaceDoc {
    metadata: LooseMetadata,
}

/// Whether a kind is a list of resources (`List`, `PodList`, ...).
pub(super) fn is_list(kind: &str) -> bool {
    kind.ends_with("List")
}

/// The apiVersion and kind a typed List (`PodList`) implies for items
/// that leave them out, as the API server's lists do.
pub(super) fn implied_item_type<'a>(
    api: &'a str,
    list_kind: &'a str,
) -> Option<(&'a str, &'a str)> {
    match list_kind.strip_suffix("List") {
        Some("") | None => None,
        Some(kind) => Some((api, kind)),
    }
}

/// Where a kind's apiVersion is, for an error about a missing one.
pub(super) fn api_hint(kind: &str) -> String {
    let apis: Vec<&str> = Kind::ALL
        .iter()
        .filter(|(_, n, _)| *n == kind)
        .map(|(a, _, _)| *a)
        .collect();
    if apis.is_empty() {
        format!("understood are {UNDERSTOOD}")
    } else {
        format!("apiVersion: {}", apis.join(" or apiVersion: "))
    }
}

/// `metadata.name` of an untyped manifest, if it is a string.
pub(super) fn value_name(map: &Mapping) -> Option<&str> {
    map.get("metadata")?.get("name")?.as_str()
}

/// The id [`Resource::id`] would give an untyped manifest of `kind`.
pub(super) fn value_id(kind: Kind, map: &Mapping) -> String {
    let name = value_name(map).unwrap_or("<no name>");
    let namespace = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .or(kind
            .defaults_namespace()
            .then_some(super::semantic::DEFAULT_NAMESPACE));
    match namespace {
        Some(ns) if kind != Kind::Namespace => format!("{}/{ns}/{name}", kind.label()),
        _ => format!("{}/{name}", kind.label()),
    }
}

/// Reads a List's items as typed resources, those from index `from` on
/// whose kind is known (`plan`); `current` tells, after an error, which
/// item it is in.
pub(super) struct ListSeed<'a> {
    pub(super) plan: &'a [Option<Kind>],
    pub(super) from: usize,
    pub(super) current: &'a mut usize,
    pub(super) out: &'a mut Vec<(usize, Resource)>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut items = Some(Items {
            plan: self.plan,
            from: self.from,
            current: self.current,
            out: self.out,
        });
        while let Some(key) = map.next_key::<Value>()? {
            match (key.as_str(), items.take()) {
                (Some("items"), Some(seed)) => map.next_value_seed(seed)?,
                (_, taken) => {
                    items = taken;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Items<'a> {
    plan: &'a [Option<Kind>],
    from: usize,
    current: &'a mut usize,
    out: &'a mut Vec<(usize, Resource)>,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of resources")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            *self.current = i;
            let kind = if i >= self.from {
                self.plan.get(i).copied().flatten()
            } else {
                None
            };
            match seq.next_element_seed(Item(kind))? {
                None => break,
                Some(Some(resource)) => self.out.push((i, resource)),
                Some(None) => {}
            }
        }
        Ok(())
    }
}

/// One item: typed if its kind is given, skipped otherwise.
struct Item(Option<Kind>);

impl<'de> DeserializeSeed<'de> for Item {
    type Value = Option<Resource>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Resource>, D::Error> {
        match self.0 {
            Some(kind) => kind.parse(d).map(Some),
            None => IgnoredAny::deserialize(d).map(|_| None),
        }
    }
}
