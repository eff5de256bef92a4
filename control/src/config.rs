//! The appliance configuration file (`causeway run --config FILE`).
//!
//! YAML, every field documented in `cli/lab/default.yaml`; unknown
//! fields are errors (a typo must not silently mean "default").

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use std::sync::Arc;

use causeway_dataplane::{
    host::{CALICO_FAILSAFE_INBOUND, FailsafePort},
    policy::program::{PolicyProgram, RuleId, Unclaimed},
    route::IpPrefix,
    topology::{PortConfig, RouteConfig},
    xdp::{DataplaneConfig, WorkerConfig, XdpMode, neigh::NeighLimits},
};
use causeway_tls::config::TerminatorConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The dataplane's ports, in order.
    pub ports: Vec<PortConfig>,
    /// Routes beyond the ports' connected subnets.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Worker threads.
    #[serde(default)]
    pub workers: WorkerConfig,
    /// The XDP program.
    #[serde(default)]
    pub xdp: XdpConfig,
    /// The operator API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Network policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The TLS terminator and its services (none: no terminator).
    #[serde(default)]
    pub terminator: Option<TerminatorConfig>,
    /// Where the desired state is kept.
    #[serde(default)]
    pub state: StateConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Bounds on the neighbour resolutions the dataplane asks for.
    #[serde(default)]
    pub neighbours: NeighboursConfig,
    /// The appliance as an endpoint of its own policy: traffic to its
    /// addresses is judged by the policies that select these labels for
    /// ingress (none: nothing but failsafe reaches it).
    #[serde(default)]
    pub host_endpoint: Option<HostEndpointConfig>,
    /// Ports of the appliance's addresses that policy never closes.
    #[serde(default)]
    pub failsafe: FailsafeConfig,
}

/// The appliance as a host endpoint (Calico's HostEndpoint): its
/// addresses are its ports' addresses, its labels these; policy selectors
/// select it as they select any endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostEndpointConfig {
    /// Its name, in counters and `explain` (`HostEndpoint/<name>`).
    #[serde(default = "default_host_name")]
    pub name: String,
    /// Its labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn default_host_name() -> String {
    "appliance".to_owned()
}

/// Failsafe ports (Calico's `failsafeInboundHostPorts`): TCP or UDP to
/// one of them, addressed to the appliance, reaches its kernel whatever
/// the policy, even before a worker runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailsafeConfig {
    /// The inbound ports. Absent: Calico's defaults (tcp 22, udp 68,
    /// tcp 179, 2379, 2380, 5473, 6443, 6666, 6667) and the ports of
    /// `api.tcp.listen` and `metrics.listen`. A list, `[]` included, is
    /// taken as it is.
    #[serde(default)]
    pub inbound: Option<Vec<FailsafePort>>,
}

/// Bounds on the neighbour resolutions (ARP/NDP) the dataplane asks the
/// kernel for when a next hop is missing: whoever sends packets chooses
/// the destinations, so a scan of a connected subnet must not fill the
/// kernel's table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighboursConfig {
    /// Resolutions outstanding at once (1 to 65536); further misses are
    /// dropped and counted until some resolve or time out (3 s).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// New resolutions per second (1 to 100000); over it, dropped and
    /// counted.
    #[serde(default = "default_neigh_rate")]
    pub rate: u32,
}

fn default_max_pending() -> usize {
    NeighLimits::default().max_pending
}

fn default_neigh_rate() -> u32 {
    NeighLimits::default().rate
}

impl Default for NeighboursConfig {
    fn default() -> Self {
        Self {
            max_pending: default_max_pending(),
            rate: default_neigh_rate(),
        }
    }
}

/// Where the desired state (what the control API acknowledged) is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The directory of `desired.json`. On the first start (no state yet)
    /// the state is seeded from this file's ports, routes, terminator
    /// services and policy manifests; after that the stored state is what
    /// the appliance enforces, and the control API changes it.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/causeway")
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

/// The Prometheus text endpoint on TCP (it is also at `GET /metrics` on
/// the API's Unix socket).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// An address such as `127.0.0.1:9464` to serve `GET /metrics` on, in
    /// the appliance's network namespace. Absent: no TCP endpoint.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Manifest files and directories (Calico and Kubernetes policy,
    /// namespaces, pods, static endpoints), loaded before the first packet
    /// is forwarded and again on SIGHUP. None: no policy, all allowed.
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// Flows each worker tracks at most (Linux: nf_conntrack_max).
    #[serde(default = "default_conntrack")]
    pub conntrack_capacity: usize,
    /// Traffic between addresses no endpoint claims: `deny` (the default;
    /// with no policy at all, nothing is forwarded) or `allow`.
    #[serde(default)]
    pub unclaimed: Unclaimed,
}

fn default_conntrack() -> usize {
    262_144
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            manifests: Vec::new(),
            conntrack_capacity: default_conntrack(),
            unclaimed: Unclaimed::default(),
        }
    }
}

/// How the XDP program attaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// native, generic, or auto (native, falling back to generic).
    #[serde(default)]
    pub mode: XdpMode,
}

/// Where the operator API listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// A Unix socket, mode 0600: `GET /metrics` (Prometheus text) and
    /// `GET /stats` (JSON) over HTTP/1.1.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The gRPC control API's Unix socket, mode 0600. Default:
    /// `<stem>-control.sock` beside `socket` (`causeway-control.sock`).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// The gRPC control API on TCP as well, with mTLS: only clients with a
    /// certificate from `client_ca` whose SPIFFE ID is listed are admitted.
    #[serde(default)]
    pub tcp: Option<TcpApiConfig>,
}

/// The control API on TCP, always with mTLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpApiConfig {
    /// Address and port, e.g. `10.0.0.1:7443`.
    pub listen: std::net::SocketAddr,
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The bundle admin client certificates must chain to.
    pub client_ca: PathBuf,
    /// The SPIFFE IDs admitted (at least one).
    pub admin_identities: Vec<String>,
}

impl ApiConfig {
    /// The gRPC socket's path: `control_socket`, or `<stem>-control.sock`
    /// beside `socket` (two appliances with their own sockets in one
    /// directory get their own control sockets too).
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| {
            let stem = self
                .socket
                .file_stem()
                .map_or_else(|| "causeway".into(), |s| s.to_string_lossy());
            self.socket.with_file_name(format!("{stem}-control.sock"))
        })
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/causeway/causeway.sock")
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            control_socket: None,
            tcp: None,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid YAML for this schema (the error
    /// names the field and the line), or fails validation.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and validates configuration text.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = serde_yaml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let errors = self.problems();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("\n"))
        }
    }

    /// Every mistake in the configuration (not only the first), each
    /// naming its field: what `causeway run --check` prints.
    pub fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.ports.is_empty() && self.terminator.is_none() {
            errors.push("ports: at least one port is needed (or a terminator, for an appliance without a dataplane)".to_owned());
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(t) = &self.terminator
            && let Err(problems) = t.validate(cpus)
        {
            errors.extend(problems.iter().map(ToString::to_string));
        }
        let mut names = HashSet::new();
        let mut interfaces = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                errors.push(format!(
                    "ports[{i}].name: `{}` must be letters, digits, - or _",
                    p.name
                ));
            }
            if !names.insert(&p.name) {
                errors.push(format!("ports[{i}].name: `{}` is used twice", p.name));
            }
            if p.interface.is_empty() || p.interface.len() > 15 {
                errors.push(format!(
                    "ports[{i}].interface: `{}` is not an interface name (1 to 15 characters)",
                    p.interface
                ));
            }
            if !interfaces.insert(&p.interface) {
                errors.push(format!(
                    "ports[{i}].interface: {} is used by two ports",
                    p.interface
                ));
            }
            if p.queues == 0 || p.queues > 64 {
                errors.push(format!(
                    "ports[{i}].queues: {} is out of range (1 to 64)",
                    p.queues
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Some(via) = r.via
                && via.is_ipv4() != r.prefix.addr().is_ipv4()
            {
                errors.push(format!(
                    "routes[{i}]: {} via {via} mixes IPv4 and IPv6",
                    r.prefix
                ));
            }
            if let Some(p) = &r.port
                && !names.contains(p)
            {
                errors.push(format!("routes[{i}].port: no port named `{p}`"));
            }
            if r.via.is_none() && r.port.is_none() {
                errors.push(format!("routes[{i}]: give a next hop (via) or a port"));
            }
        }
        let mut seen = HashSet::new();
        for (i, c) in self.workers.cores.iter().enumerate() {
            if *c >= cpus {
                errors.push(format!(
                    "workers.cores[{i}]: CPU {c} does not exist (this machine has {cpus})"
                ));
            }
            if !seen.insert(c) {
                errors.push(format!("workers.cores[{i}]: CPU {c} is listed twice"));
            }
        }
        if self.workers.cores.is_empty() && !self.ports.is_empty() {
            errors.push("workers.cores: list at least one CPU".to_owned());
        }
        if !(1024..=1 << 26).contains(&self.policy.conntrack_capacity) {
            errors.push(format!(
                "policy.conntrack_capacity: {} is out of range (1024 to 67108864)",
                self.policy.conntrack_capacity
            ));
        }
        if !(1..=65_536).contains(&self.neighbours.max_pending) {
            errors.push(format!(
                "neighbours.max_pending: {} is out of range (1 to 65536)",
                self.neighbours.max_pending
            ));
        }
        if !(1..=100_000).contains(&self.neighbours.rate) {
            errors.push(format!(
                "neighbours.rate: {} is out of range (1 to 100000)",
                self.neighbours.rate
            ));
        }
        if let Some(t) = &self.api.tcp
            && t.admin_identities.is_empty()
        {
            errors.push("api.tcp.admin_identities: list at least one SPIFFE ID; the control API admits no one else on TCP".to_owned());
        }
        if let Some(list) = &self.failsafe.inbound {
            let max = causeway_dataplane::xdp::program::FAILSAFE_MAX;
            if list.len() > max {
                errors.push(format!(
                    "failsafe.inbound: {} ports; at most {max}",
                    list.len()
                ));
            }
        }
        if let Some(h) = &self.host_endpoint
            && h.name.is_empty()
        {
            errors.push("host_endpoint.name: must not be empty".to_owned());
        }
        if !(1..=1024).contains(&self.workers.batch) {
            errors.push(format!(
                "workers.batch: {} is out of range (1 to 1024)",
                self.workers.batch
            ));
        }
        errors
    }

    /// The dataplane's part of the configuration, enforcing `policy`.
    pub fn dataplane(
        &self,
        policy: Arc<PolicyProgram>,
        prefilter: Vec<(IpPrefix, RuleId)>,
    ) -> DataplaneConfig {
        DataplaneConfig {
            ports: self.ports.clone(),
            routes: self.routes.clone(),
            workers: self.workers.clone(),
            xdp_mode: self.xdp.mode,
            policy,
            prefilter,
            conntrack_capacity: self.policy.conntrack_capacity,
            neighbours: NeighLimits {
                max_pending: self.neighbours.max_pending,
                rate: self.neighbours.rate,
                ..NeighLimits::default()
            },
            unclaimed: self.policy.unclaimed,
            failsafe: self.failsafe_inbound(),
            local_stack: self.host_endpoint.is_some(),
        }
    }

    /// The failsafe inbound ports in force: the file's list, or Calico's
    /// defaults with the API's and the metrics endpoint's TCP ports.
    pub fn failsafe_inbound(&self) -> Vec<FailsafePort> {
        if let Some(list) = &self.failsafe.inbound {
            return list.clone();
        }
        let mut ports = CALICO_FAILSAFE_INBOUND.to_vec();
        let own = [
            self.api.tcp.as_ref().map(|t| t.listen.port()),
            self.metrics.listen.map(|l| l.port()),
        ];
        for port in own.into_iter().flatten() {
            let p = FailsafePort::tcp(port);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminator_only_appliance_needs_no_ports() {
        let yaml = "ports: []\nterminator:\n  cores: [0]\n  services:\n    - {name: web, listen: 127.0.0.1:8443, mode: plain, upstreams: [127.0.0.1:8080]}\n";
        let c = Config::parse(yaml).unwrap();
        assert_eq!(c.terminator.unwrap().services[0].name, "web");
        let e = format!("{:#}", Config::parse("ports: []\n").unwrap_err());
        assert!(e.contains("at least one port"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(&yaml.replace("mode: plain", "mode: terminate")).unwrap_err()
        );
        assert!(e.contains("terminator.services[0].tls"), "{e}");
    }

    #[test]
    fn unclaimed_traffic_is_denied_unless_the_file_says_allow() {
        let base = "ports: []\nterminator:\n  cores: [0]\n  services:\n    - {name: web, listen: 127.0.0.1:8443, mode: plain, upstreams: [127.0.0.1:8080]}\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.policy.unclaimed, Unclaimed::Deny);
        let c = Config::parse(&format!("{base}policy:\n  unclaimed: allow\n")).unwrap();
        assert_eq!(c.policy.unclaimed, Unclaimed::Allow);
        let e = format!(
            "{:#}",
            Config::parse(&format!("{base}policy:\n  unclaimed: maybe\n")).unwrap_err()
        );
        assert!(e.contains("unclaimed"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(&format!("{base}neighbours:\n  max_pending: 0\n")).unwrap_err()
        );
        assert!(e.contains("neighbours.max_pending"), "{e}");
    }

    #[test]
    fn failsafe_ports_are_calicos_and_the_appliances_unless_the_file_lists_them() {
        let base = "ports: [{name: a, interface: a0}]\nmetrics: {listen: 127.0.0.1:9464}\n";
        let c = Config::parse(base).unwrap();
        let ports = c.failsafe_inbound();
        assert_eq!(ports[..9], CALICO_FAILSAFE_INBOUND);
        assert_eq!(ports[9..], [FailsafePort::tcp(9464)]);
        assert!(c.host_endpoint.is_none());
        let c = Config::parse(&format!(
            "{base}failsafe:\n  inbound: [{{protocol: udp, port: 53}}]\nhost_endpoint:\n  labels: {{role: gw}}\n"
        ))
        .unwrap();
        assert_eq!(c.failsafe_inbound(), [FailsafePort::udp(53)]);
        let h = c.host_endpoint.unwrap();
        assert_eq!(
            (h.name.as_str(), h.labels["role"].as_str()),
            ("appliance", "gw")
        );
        let c = Config::parse(&format!("{base}failsafe: {{inbound: []}}\n")).unwrap();
        assert!(c.failsafe_inbound().is_empty());
        let e = format!(
            "{:#}",
            Config::parse(&format!(
                "{base}failsafe:\n  inbound: [{{protocol: icmp, port: 1}}]\n"
            ))
            .unwrap_err()
        );
        assert!(e.contains("unknown variant `icmp`"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = format!(
            "{:#}",
            Config::parse("ports:\n  - name: a\n    interface: a0\n    queue: 2\n").unwrap_err()
        );
        assert!(e.contains("unknown field `queue`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("ports:\n  - {name: a, interface: a0}\n  - {name: a, interface: b0}\n")
                .unwrap_err()
        );
        assert!(e.contains("ports[1].name"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                "ports: [{name: a, interface: a0}]\nroutes: [{prefix: 10.0.0.1/8, via: 10.1.0.9}]\n"
            )
            .unwrap_err()
        );
        assert!(e.contains("host bits"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                "ports: [{name: a, interface: a0}]\nroutes: [{prefix: 10.0.0.0/8, port: z}]\n"
            )
            .unwrap_err()
        );
        assert!(e.contains("routes[0].port"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("ports: [{name: a, interface: a0}]\nworkers: {cores: [999]}\n")
                .unwrap_err()
        );
        assert!(e.contains("workers.cores[0]"), "{e}");
    }

    #[test]
    fn rp_filter_is_strict_unless_a_port_says_otherwise() {
        use causeway_dataplane::topology::RpFilter;
        let c = Config::parse(
            "ports:\n  - {name: a, interface: a0, rp_filter: loose}\n  - {name: b, interface: b0, rp_filter: off}\n  - {name: c, interface: c0}\n",
        )
        .unwrap();
        let modes: Vec<_> = c.ports.iter().map(|p| p.rp_filter).collect();
        assert_eq!(modes, [RpFilter::Loose, RpFilter::Off, RpFilter::Strict]);
        let e = format!(
            "{:#}",
            Config::parse("ports:\n  - name: a\n    interface: a0\n    rp_filter: sloppy\n")
                .unwrap_err()
        );
        assert!(e.contains("unknown variant `sloppy`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }
}
