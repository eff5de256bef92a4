//! causeway's own resource kinds, for what only an appliance has:
//! `causeway.dev/v1alpha1` Port, Route, Identity and TLSService. They sit
//! beside the policy and endpoint kinds in the desired state (see
//! the appliance's store) and use the same field names as the configuration
//! file's `ports`, `routes` and `terminator.services`, so that a user
//! writes each thing one way.
//!
//! What is live and what waits for a restart (docs/ARCHITECTURE.md,
//! "Control API"): policy, endpoints, identities and TLS services take
//! effect at once; ports and routes at the next start, since a port is an
//! XDP attachment and a set of AF_XDP sockets made at start, and the route
//! table is built with them. Status lists what waits.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use causeway_dataplane::{
    route::IpPrefix,
    topology::{PortConfig, RouteConfig, RpFilter},
};
use causeway_tls::{
    config::{
        BalancerName, BreakerConfig, BudgetConfigFile, MinVersion, ModeName, ProtocolName,
        ProxyProtocolConfig, ServerTlsConfig, ServiceConfig, TerminatorConfig, TimeoutsConfig,
        UpstreamTlsConfig,
    },
    identity::{ClientMaterialConfig, ClientTls, ServerMaterialConfig, ServerTls, TlsVersions},
};
use serde::{Deserialize, Serialize};

/// A port: an interface the dataplane attaches to (applied at start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The kernel interface.
    pub interface: String,
    /// RX queues to bind (one per dataplane worker).
    #[serde(default = "one")]
    pub queues: u32,
    /// The reverse-path check of received sources (anti-spoofing):
    /// `strict` (the default), `loose` or `off`.
    #[serde(default, skip_serializing_if = "RpFilter::is_default")]
    pub rp_filter: RpFilter,
}

fn one() -> u32 {
    1
}

/// A route beyond the ports' connected subnets (applied at start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The destination prefix.
    pub prefix: String,
    /// The next hop.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// The egress Port's name.
    #[serde(default)]
    pub port: Option<String>,
}

/// A certificate and key the terminator presents, and the bundle it trusts
/// for the other side (live; files are re-read when they change).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The trust bundle for peers: clients of a terminating service (then
    /// a client certificate is required) or upstreams of an originating one.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// The client-facing TLS of a TLSService.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTlsSpec {
    /// The Identity presented to clients (its `ca` verifies their
    /// certificates).
    pub identity: String,
    /// SPIFFE IDs admitted; empty admits any client the bundle verifies.
    #[serde(default)]
    pub allowed_identities: Vec<String>,
    /// `"1.3"` (default) or `"1.2"`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// ALPN protocols announced to clients, most preferred first (see the
    /// terminator's `ServerTlsConfig::alpn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// The upstream-facing mTLS of a TLSService.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUpstreamTlsSpec {
    /// The Identity presented upstream (its `ca` verifies the upstream).
    pub identity: String,
    /// SPIFFE IDs the upstream may present; empty: any the bundle verifies.
    #[serde(default)]
    pub identities: Vec<String>,
    /// `"1.3"` (default) or `"1.2"`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// The SNI sent to upstreams (see the terminator's
    /// `UpstreamTlsConfig::server_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// ALPN protocols offered to upstreams; empty: the client's, forwarded
    /// (see the terminator's `UpstreamTlsConfig::alpn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// A terminator service (live): as `terminator.services[]` in the
/// configuration file, with certificates named by Identity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServiceSpec {
    /// The service address and port; several TLSServices may share one,
    /// told apart by SNI (`server_names`).
    pub listen: SocketAddr,
    /// The TLS server names (SNI) this service answers on a shared
    /// address: exact, or `*.` and a suffix; empty: the address's default
    /// (see the terminator's `ServiceConfig`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
    /// `plain`, `terminate`, `originate` or `terminate+originate`.
    pub mode: ModeName,
    /// `tcp` (the default) or `postgres` (answers PostgreSQL's
    /// SSLRequest; see the terminator's `ProtocolName`).
    #[serde(default, skip_serializing_if = "is_tcp")]
    pub protocol: ProtocolName,
    /// The client-facing TLS (terminate modes).
    #[serde(default)]
    pub tls: Option<ServiceTlsSpec>,
    /// The upstream-facing mTLS (originate modes).
    #[serde(default)]
    pub upstream_tls: Option<ServiceUpstreamTlsSpec>,
    /// The upstream endpoints (or `upstream_service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<SocketAddr>,
    /// A Kubernetes Service whose ready endpoints are the upstreams,
    /// following its EndpointSlices (as a sync stores them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_service: Option<UpstreamService>,
    /// `round-robin`, `peak-ewma` or `maglev`.
    #[serde(default)]
    pub balancer: BalancerName,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The retry budget.
    #[serde(default)]
    pub retry_budget: BudgetConfigFile,
    /// Ejection of failing endpoints.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Connections open at most per worker.
    #[serde(default = "max_connections")]
    pub max_connections: usize,
    /// Connections one client address holds open at most per worker; the
    /// next is reset and counted (see the terminator's `ServiceConfig`).
    #[serde(default = "max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// The PROXY protocol v2 towards upstreams and from trusted load
    /// balancers (see the terminator's `ProxyProtocolConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolConfig>,
}

fn is_tcp(p: &ProtocolName) -> bool {
    *p == ProtocolName::Tcp
}

fn max_connections() -> usize {
    10_000
}

fn max_connections_per_client() -> usize {
    1_000
}

/// A Kubernetes Service and one of its ports: a TLSService's upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamService {
    /// The Service's name.
    pub name: String,
    /// Its namespace (default: `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The Service port: its name, or its number.
    pub port: PortRef,
}

fn default_namespace() -> String {
    "default".into()
}

/// A Service port by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortRef {
    /// Its number (`port` in the Service).
    Number(u16),
    /// Its name.
    Name(String),
}

/// What the appliance knows of Kubernetes Services: their ports and the
/// endpoints their EndpointSlices list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceViews {
    /// (namespace, name) → the Service's ports.
    pub services: BTreeMap<(String, String), ServicePorts>,
    /// (namespace, service name) → its EndpointSlices.
    pub slices: BTreeMap<(String, String), Vec<EndpointSliceSpec>>,
}

impl ServiceViews {
    /// The ready endpoints of `s` (in a stable order, without repeats):
    /// every ready address of its EndpointSlices with the slice's port for
    /// the Service port `s.port` names (a slice port carries the Service
    /// port's name; a Service of one unnamed port has slice ports without
    /// a name).
    pub fn endpoints(&self, s: &UpstreamService) -> Vec<SocketAddr> {
        let key = (s.namespace.clone(), s.name.clone());
        let name: Option<String> = match &s.port {
            PortRef::Name(n) => Some(n.clone()),
            PortRef::Number(p) => match self.services.get(&key) {
                Some(ports) => match ports.ports.iter().find(|x| x.port == *p) {
                    Some(found) => found.name.clone(),
                    None => return Vec::new(),
                },
                None => return Vec::new(),
            },
        };
        let mut out: Vec<SocketAddr> = self
            .slices
            .get(&key)
            .into_iter()
            .flatten()
            .flat_map(|slice| {
                let port = slice
                    .ports
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| p.port);
                slice
                    .endpoints
                    .iter()
                    .filter(|e| e.conditions.ready != Some(false))
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(move |a| Some(SocketAddr::new(a.parse().ok()?, port?)))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A Kubernetes Service's ports (what a TLSService's `upstream_service`
/// names); the rest of a Service is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServicePorts {
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServicePort {
    /// Its name (needed when the Service has more than one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Service's port.
    pub port: u16,
}

/// A discovery.k8s.io/v1 EndpointSlice: endpoints of one Service, with the
/// ports they listen on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EndpointSliceSpec {
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    /// The ports every endpoint of the slice serves.
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SliceEndpoint {
    /// Its addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `ready: false` means it takes no new connections.
    #[serde(default)]
    pub conditions: SliceConditions,
}

/// An endpoint's conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SliceConditions {
    /// Absent means ready, as Kubernetes reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SlicePort {
    /// The Service port's name it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The endpoints' port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A Kubernetes Service or one of its EndpointSlices: where a TLSService
/// that names a Service finds its upstreams. Policy ignores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceDiscovery {
    /// v1 Service.
    Service(ServicePorts),
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice(EndpointSliceSpec),
}

impl ServiceDiscovery {
    /// The kind as manifests spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Service(_) => "Service",
            Self::EndpointSlice(_) => "EndpointSlice",
        }
    }
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One of causeway's appliance kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplianceSpec {
    /// A Port.
    Port(PortSpec),
    /// A Route.
    Route(RouteSpec),
    /// An Identity.
    Identity(IdentitySpec),
    /// A TLSService.
    TlsService(Box<TlsServiceSpec>),
}

impl ApplianceSpec {
    /// The kind as manifests spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Port(_) => "Port",
            Self::Route(_) => "Route",
            Self::Identity(_) => "Identity",
            Self::TlsService(_) => "TLSService",
        }
    }

    /// Whether a change takes effect only at the next start.
    pub fn at_start(&self) -> bool {
        matches!(self, Self::Port(_) | Self::Route(_))
    }
}

/// A problem found across appliance resources: which resource, which field,
/// what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `Kind/name`.
    pub resource: String,
    /// The field path, e.g. `spec.tls.identity`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The appliance kinds of a desired state, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplianceSet {
    /// Ports, by name.
    pub ports: BTreeMap<String, PortSpec>,
    /// Routes, by name.
    pub routes: BTreeMap<String, RouteSpec>,
    /// Identities, by name.
    pub identities: BTreeMap<String, IdentitySpec>,
    /// TLS services, by name.
    pub services: BTreeMap<String, TlsServiceSpec>,
    /// Kubernetes Services and EndpointSlices, for TLS services that name
    /// a Service.
    pub views: ServiceViews,
}

impl ApplianceSet {
    /// Adds one resource.
    pub fn insert(&mut self, name: &str, spec: &ApplianceSpec) {
        let name = name.to_owned();
        match spec {
            ApplianceSpec::Port(s) => {
                self.ports.insert(name, s.clone());
            }
            ApplianceSpec::Route(s) => {
                self.routes.insert(name, s.clone());
            }
            ApplianceSpec::Identity(s) => {
                self.identities.insert(name, s.clone());
            }
            ApplianceSpec::TlsService(s) => {
                self.services.insert(name, (**s).clone());
            }
        }
    }

    /// The ports as the dataplane takes them (in name order).
    pub fn port_configs(&self) -> Vec<PortConfig> {
        self.ports
            .iter()
            .map(|(name, p)| PortConfig {
                name: name.clone(),
                interface: p.interface.clone(),
                queues: p.queues,
                rp_filter: p.rp_filter,
            })
            .collect()
    }

    /// The routes as the dataplane takes them.
    ///
    /// # Errors
    /// A prefix does not parse (validation catches this first).
    pub fn route_configs(&self) -> Result<Vec<RouteConfig>, String> {
        self.routes
            .iter()
            .map(|(name, r)| {
                Ok(RouteConfig {
                    prefix: parse_prefix(&r.prefix)
                        .map_err(|e| format!("Route/{name}: spec.prefix: {e}"))?,
                    via: r.via,
                    port: r.port.clone(),
                })
            })
            .collect()
    }

    /// The terminator's services with each Identity resolved. A service
    /// whose identity is missing is left out (validation refuses it first).
    pub fn service_configs(&self) -> Vec<ServiceConfig> {
        self.services
            .iter()
            .filter_map(|(name, s)| self.service_config(name, s).ok())
            .collect()
    }

    fn service_config(&self, name: &str, s: &TlsServiceSpec) -> Result<ServiceConfig, Problem> {
        let problem = |field: &str, message: String| Problem {
            resource: format!("TLSService/{name}"),
            field: field.to_owned(),
            message,
        };
        let identity = |field: &str, id: &str| {
            self.identities.get(id).ok_or_else(|| {
                problem(
                    field,
                    format!(
                        "Identity/{id} does not exist: apply it in the same batch or first{}",
                        known(self.identities.keys())
                    ),
                )
            })
        };
        let tls = match &s.tls {
            Some(t) => {
                let i = identity("spec.tls.identity", &t.identity)?;
                Some(ServerTlsConfig {
                    cert: i.cert.clone(),
                    key: i.key.clone(),
                    client_ca: i.ca.clone(),
                    allowed_identities: t.allowed_identities.clone(),
                    min_version: t.min_version,
                    alpn: t.alpn.clone(),
                })
            }
            None => None,
        };
        let upstream_tls = match &s.upstream_tls {
            Some(t) => {
                let i = identity("spec.upstream_tls.identity", &t.identity)?;
                let ca = i.ca.clone().ok_or_else(|| {
                    problem(
                        "spec.upstream_tls.identity",
                        format!(
                            "Identity/{} has no ca: an upstream is verified against it, so set its spec.ca",
                            t.identity
                        ),
                    )
                })?;
                Some(UpstreamTlsConfig {
                    cert: i.cert.clone(),
                    key: i.key.clone(),
                    ca,
                    identities: t.identities.clone(),
                    min_version: t.min_version,
                    server_name: t.server_name.clone(),
                    alpn: t.alpn.clone(),
                })
            }
            None => None,
        };
        Ok(ServiceConfig {
            name: name.to_owned(),
            listen: s.listen,
            server_names: s.server_names.clone(),
            mode: s.mode,
            protocol: s.protocol,
            tls,
            upstream_tls,
            upstreams: match &s.upstream_service {
                Some(u) => self.views.endpoints(u),
                None => s.upstreams.clone(),
            },
            upstreams_from: s.upstream_service.as_ref().map(|u| {
                format!(
                    "the ready endpoints of Service {}/{} port {}",
                    u.namespace,
                    u.name,
                    match &u.port {
                        PortRef::Name(n) => n.clone(),
                        PortRef::Number(p) => p.to_string(),
                    }
                )
            }),
            balancer: s.balancer,
            timeouts: s.timeouts,
            retry_budget: s.retry_budget,
            breaker: s.breaker,
            max_connections: s.max_connections,
            max_connections_per_client: s.max_connections_per_client,
            proxy_protocol: s.proxy_protocol.clone(),
        })
    }

    /// Every problem across these resources: dangling references, files
    /// that do not load, conflicts. `base` gives the terminator's cores,
    /// namespace and driver (from the configuration file).
    pub fn validate(&self, base: Option<&TerminatorConfig>) -> Vec<Problem> {
        self.validate_since(base, None)
    }

    /// As [`Self::validate`], loading only the identities that differ from
    /// `previous` (their files were loaded when they were accepted; a file
    /// changed since is the reloader's business, which keeps the old
    /// material and logs).
    pub fn validate_since(
        &self,
        base: Option<&TerminatorConfig>,
        previous: Option<&Self>,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut interfaces = HashMap::new();
        for (name, p) in &self.ports {
            if let Some(other) = interfaces.insert(&p.interface, name) {
                out.push(Problem {
                    resource: format!("Port/{name}"),
                    field: "spec.interface".into(),
                    message: format!("{} is used by Port/{other} too", p.interface),
                });
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                out.push(Problem {
                    resource: format!("Port/{name}"),
                    field: "metadata.name".into(),
                    message: "a port's name must be letters, digits, - or _".into(),
                });
            }
        }
        for (name, r) in &self.routes {
            let problem = |field: &str, message: String| Problem {
                resource: format!("Route/{name}"),
                field: field.into(),
                message,
            };
            match parse_prefix(&r.prefix) {
                Ok(prefix) => {
                    if let Some(via) = r.via
                        && via.is_ipv4() != prefix.addr().is_ipv4()
                    {
                        out.push(problem(
                            "spec.via",
                            format!("{} via {via} mixes IPv4 and IPv6", r.prefix),
                        ));
                    }
                }
                Err(e) => out.push(problem("spec.prefix", e)),
            }
            if let Some(port) = &r.port
                && !self.ports.contains_key(port)
            {
                out.push(problem(
                    "spec.port",
                    format!("Port/{port} does not exist{}", known(self.ports.keys())),
                ));
            }
            if r.via.is_none() && r.port.is_none() {
                out.push(problem("spec", "give a next hop (via) or a port".into()));
            }
        }
        for (name, i) in &self.identities {
            if previous.is_some_and(|p| p.identities.get(name) == Some(i)) {
                continue;
            }
            let problem = |field: &str, message: String| Problem {
                resource: format!("Identity/{name}"),
                field: field.into(),
                message,
            };
            let server = ServerMaterialConfig {
                cert: i.cert.clone(),
                key: i.key.clone(),
                client_trust: i.ca.clone(),
                allowed_identities: Vec::new(),
                versions: TlsVersions::Tls12And13,
                alpn: Vec::new(),
            };
            if let Err(e) = ServerTls::load(&server) {
                let field = material_field(&e.to_string(), i);
                out.push(problem(field, e.to_string()));
            } else if let Some(ca) = &i.ca {
                let client = ClientMaterialConfig {
                    cert: i.cert.clone(),
                    key: i.key.clone(),
                    trust: ca.clone(),
                    upstream_identities: Vec::new(),
                    versions: TlsVersions::Tls12And13,
                };
                if let Err(e) = ClientTls::load(&client) {
                    out.push(problem("spec.ca", e.to_string()));
                }
            }
        }
        let mut services = Vec::new();
        let mut names = Vec::new();
        for (name, s) in &self.services {
            if s.upstream_service.is_some() && !s.upstreams.is_empty() {
                out.push(Problem {
                    resource: format!("TLSService/{name}"),
                    field: "spec.upstream_service".into(),
                    message: "give upstreams or upstream_service, not both".into(),
                });
            }
            match self.service_config(name, s) {
                Ok(c) => {
                    services.push(c);
                    names.push(name.clone());
                }
                Err(p) => out.push(p),
            }
        }
        if !self.services.is_empty() && base.is_none() {
            out.push(Problem {
                resource: format!(
                    "TLSService/{}",
                    self.services.keys().next().expect("not empty")
                ),
                field: "spec".into(),
                message: "this appliance has no terminator: add a `terminator:` section (cores, netns) to its configuration file".into(),
            });
        }
        let mut t = base.cloned().unwrap_or_else(|| TerminatorConfig {
            cores: vec![0],
            netns: None,
            driver: Default::default(),
            drain_timeout: std::time::Duration::from_secs(10),
            services: Vec::new(),
            access_log: None,
        });
        t.services = services;
        // Read once per process: it reads cgroup files, and every apply
        // comes here.
        static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cpus =
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if let Err(errors) = t.validate(cpus) {
            for e in errors {
                // terminator.services[N].field → TLSService/name: spec.field
                let Some(rest) = e.field.strip_prefix("terminator.services[") else {
                    continue;
                };
                let Some((index, field)) = rest.split_once("].") else {
                    continue;
                };
                let Some(name) = index.parse::<usize>().ok().and_then(|i| names.get(i)) else {
                    continue;
                };
                let field = match field {
                    "tls.allowed_identities" => "spec.tls.allowed_identities".to_owned(),
                    f => format!("spec.{f}"),
                };
                let message = e
                    .reason
                    .replace("set tls.client_ca", "give the Identity a ca");
                out.push(Problem {
                    resource: format!("TLSService/{name}"),
                    field,
                    message,
                });
            }
        }
        out
    }

    /// Converts the configuration file's terminator services into
    /// Identities and TLSServices (the first start's seed). A service's
    /// client-facing material becomes Identity `<service>`, its upstream
    /// material `<service>-upstream`.
    pub fn from_services(services: &[ServiceConfig]) -> Self {
        let mut set = Self::default();
        for s in services {
            let tls = s.tls.as_ref().map(|t| {
                set.identities.insert(
                    s.name.clone(),
                    IdentitySpec {
                        cert: t.cert.clone(),
                        key: t.key.clone(),
                        ca: t.client_ca.clone(),
                    },
                );
                ServiceTlsSpec {
                    identity: s.name.clone(),
                    allowed_identities: t.allowed_identities.clone(),
                    min_version: t.min_version,
                    alpn: t.alpn.clone(),
                }
            });
            let upstream_tls = s.upstream_tls.as_ref().map(|t| {
                let id = format!("{}-upstream", s.name);
                set.identities.insert(
                    id.clone(),
                    IdentitySpec {
                        cert: t.cert.clone(),
                        key: t.key.clone(),
                        ca: Some(t.ca.clone()),
                    },
                );
                ServiceUpstreamTlsSpec {
                    identity: id,
                    identities: t.identities.clone(),
                    min_version: t.min_version,
                    server_name: t.server_name.clone(),
                    alpn: t.alpn.clone(),
                }
            });
            set.services.insert(
                s.name.clone(),
                TlsServiceSpec {
                    listen: s.listen,
                    server_names: s.server_names.clone(),
                    mode: s.mode,
                    protocol: s.protocol,
                    tls,
                    upstream_tls,
                    upstreams: s.upstreams.clone(),
                    upstream_service: None,
                    balancer: s.balancer,
                    timeouts: s.timeouts,
                    retry_budget: s.retry_budget,
                    breaker: s.breaker,
                    max_connections: s.max_connections,
                    max_connections_per_client: s.max_connections_per_client,
                    proxy_protocol: s.proxy_protocol.clone(),
                },
            );
        }
        set
    }
}

/// Which Identity field a material error is about.
fn material_field(message: &str, i: &IdentitySpec) -> &'static str {
    let mentions = |p: &Path| message.contains(&*p.to_string_lossy());
    if i.ca.as_deref().is_some_and(mentions) {
        "spec.ca"
    } else if mentions(&i.key) && !mentions(&i.cert) {
        "spec.key"
    } else {
        "spec.cert"
    }
}

fn parse_prefix(s: &str) -> Result<IpPrefix, String> {
    s.parse::<IpPrefix>()
        .map_err(|e| format!("`{s}` is not a prefix: {e}"))
}

/// ` (there are: a, b)` or nothing.
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (there are: {})", names.join(", "))
    }
}
