//! The `terminator:` section of the appliance configuration.
//!
//! Every field has a default where Linkerd or Envoy has one, and unknown
//! fields are errors. Durations are written as Envoy writes them: `250ms`,
//! `1s`, `5m`, `1h`.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The terminator.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TerminatorConfig {
    /// One worker thread per listed CPU, each with its own ring and its own
    /// listener per service.
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    /// A network namespace (a path such as `/run/netns/NAME`) the workers
    /// enter before they open any socket: the kernel side of the host port.
    /// Absent: the appliance's own namespace.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// `auto` (io_uring, falling back to tokio with a log line), `io_uring`
    /// or `tokio`.
    #[serde(default)]
    pub driver: DriverChoice,
    /// On shutdown, how long open connections may run on after the
    /// listeners close.
    #[serde(default = "default_drain", with = "duration")]
    pub drain_timeout: Duration,
    /// The services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// One JSON line per connection, written by a thread of its own.
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogConfig>,
}

/// The access log (see [`crate::access_log`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout`, or an absolute file path, appended to (created if
    /// missing).
    pub to: String,
    /// Records that may wait for the writer; past it the workers drop
    /// records (counted in `access_log_dropped_total`) rather than wait.
    /// Default 4096, about a megabyte of records.
    #[serde(default = "default_access_log_capacity")]
    pub capacity: usize,
}

fn default_access_log_capacity() -> usize {
    4096
}

impl AccessLogConfig {
    /// Where the lines go.
    #[must_use]
    pub fn sink(&self) -> crate::access_log::Sink {
        if self.to == "stdout" {
            crate::access_log::Sink::Stdout
        } else {
            crate::access_log::Sink::File(PathBuf::from(&self.to))
        }
    }
}

fn default_cores() -> Vec<usize> {
    vec![0]
}

fn default_drain() -> Duration {
    Duration::from_secs(10)
}

pub use crate::driver::DriverChoice;

/// How a service's legs are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ModeName {
    /// Plain TCP both ways.
    #[serde(rename = "plain")]
    Plain,
    /// TLS or mTLS from the client, plain TCP to the upstream.
    #[serde(rename = "terminate")]
    Terminate,
    /// Plain TCP from the client, mTLS to the upstream.
    #[serde(rename = "originate")]
    Originate,
    /// mTLS on both legs.
    #[serde(rename = "terminate+originate")]
    TerminateOriginate,
}

/// What a client says before its TLS handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolName {
    /// Nothing: the client leg is TLS (or plain TCP) from its first byte.
    #[default]
    Tcp,
    /// PostgreSQL: the terminator answers the client's SSLRequest with
    /// `S` and terminates the TLS that follows, or takes PostgreSQL 17's
    /// direct TLS (a ClientHello first, which must offer ALPN
    /// `postgresql`); it declines a GSSENCRequest with `N`, refuses a
    /// client that starts without TLS with a FATAL ErrorResponse, and
    /// proxies the plaintext PostgreSQL protocol to the upstream. Needs a
    /// terminating mode.
    Postgres,
}

impl ProtocolName {
    fn is_tcp(&self) -> bool {
        *self == Self::Tcp
    }
}

/// A service: where it listens, how it secures each leg, where it sends
/// connections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Names the service in metrics and logs.
    pub name: String,
    /// The service address and port (the dataplane routes the address to
    /// the host port). Several services may share one address if each
    /// terminates TLS: the client's SNI chooses among them (see
    /// `server_names`).
    pub listen: SocketAddr,
    /// The TLS server names (SNI) this service answers, as Envoy's
    /// `filter_chain_match.server_names`: exact names (`db.example.com`)
    /// or one leading wildcard label (`*.example.com`, which matches
    /// `a.example.com` but neither `example.com` nor `a.b.example.com`).
    /// Empty: this service is its address's default and takes every
    /// client whose SNI no other service on the address names, or that
    /// sends none. An address with no default refuses such clients,
    /// counted in `listener_refused_total{reason="unknown_sni"|"no_sni"}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
    /// `plain`, `terminate`, `originate` or `terminate+originate`.
    pub mode: ModeName,
    /// What the client says before its TLS: `tcp` (the default: TLS, or
    /// plain bytes, from the first byte) or `postgres` (see
    /// [`ProtocolName::Postgres`]).
    #[serde(default, skip_serializing_if = "ProtocolName::is_tcp")]
    pub protocol: ProtocolName,
    /// The client-facing TLS (terminate modes).
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// The upstream-facing mTLS (originate modes).
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// The upstream endpoints.
    pub upstreams: Vec<SocketAddr>,
    /// Where `upstreams` come from when not from this file: e.g. a
    /// Kubernetes Service's ready endpoints. The list may then be empty
    /// (the Service has none ready): clients are refused, counted as
    /// `no_endpoint`, until it has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams_from: Option<String>,
    /// `round-robin`, `peak-ewma` (power of two choices, Linkerd's
    /// default) or `maglev` (consistent hashing on the client address).
    #[serde(default)]
    pub balancer: BalancerName,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The retry budget for failed connects.
    #[serde(default)]
    pub retry_budget: BudgetConfigFile,
    /// Ejection of failing endpoints.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Connections open at most per worker; beyond it the worker stops
    /// accepting (the kernel's backlog holds the rest), counted in
    /// `service_limit_reached_total`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold open at most per worker
    /// (SO_REUSEPORT spreads a client's connections over the workers, so
    /// the appliance-wide figure is up to this times the workers). The
    /// next one is accepted and reset at once, counted in
    /// `refused_total{reason="client_limit"}`. Default 1000, a tenth of
    /// `max_connections`: no single address can take a worker's capacity.
    /// An island behind one NAT address needs it raised.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// The PROXY protocol v2 (HAProxy's spec): sent to upstreams, read
    /// from trusted load balancers in front. Absent: neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolConfig>,
}

/// The PROXY protocol v2 on a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    /// Send a v2 header to each upstream connection, before any other
    /// byte (before the ClientHello, originating): the client's address
    /// and port, the service address, and for a TLS client its ALPN
    /// (`PP2_TYPE_ALPN`), SNI (`PP2_TYPE_AUTHORITY`), TLS version and
    /// cipher with whether it showed a verified certificate
    /// (`PP2_TYPE_SSL`), and its SPIFFE ID in TLV `0xE0`. The upstream
    /// must expect it (nginx `listen ... proxy_protocol`, HAProxy
    /// `accept-proxy`).
    #[serde(default)]
    pub send: bool,
    /// Load balancers (addresses or prefixes: `10.1.0.0/24`,
    /// `2001:db8::/64`) whose v2 header is read before anything else;
    /// its source address then stands for the client's (balancing,
    /// flows, the header sent upstream). Such a source without a header,
    /// or with a malformed one, is refused, counted as
    /// `proxy_bad_header`; any other client that starts with a header
    /// is refused, counted as `proxy_untrusted`. The per-client cap
    /// still counts the socket's address (the load balancer's): raise
    /// `max_connections_per_client` behind one. Services sharing an
    /// address must list the same sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_sources: Vec<String>,
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_connections_per_client() -> usize {
    1_000
}

/// TLS towards clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// The trust bundle client certificates are verified against: present,
    /// a client certificate is required (mTLS); absent, none is asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// SPIFFE IDs admitted; empty admits any client the bundle verifies.
    #[serde(default)]
    pub allowed_identities: Vec<String>,
    /// `"1.3"` (the default) or `"1.2"` (TLS 1.2 and 1.3).
    #[serde(default)]
    pub min_version: MinVersion,
    /// The application protocols announced with ALPN (RFC 7301), most
    /// preferred first: `[h2, http/1.1]` for a gRPC or HTTP/2 backend that
    /// also takes HTTP/1.1. Empty (the default): no ALPN. A client that
    /// offers ALPN but none of these gets a fatal `no_application_protocol`
    /// alert, counted in
    /// `tls_handshake_failures_total{reason="no_application_protocol"}`;
    /// one that offers none is served with none negotiated (as nginx and
    /// Envoy do), so a plain `openssl s_client` still connects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// mTLS towards upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// This gateway's client certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The trust bundle the upstream's certificate is verified against.
    pub ca: PathBuf,
    /// SPIFFE IDs the upstream may present; empty admits any the bundle
    /// verifies.
    #[serde(default)]
    pub identities: Vec<String>,
    /// `"1.3"` or `"1.2"`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// The server name sent to upstreams as SNI (RFC 6066), for an
    /// upstream that serves several names. Absent: none (the upstream is
    /// dialled by address). Never used to verify the upstream: that is
    /// by chain and SPIFFE ID (`identities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The application protocols offered to upstreams with ALPN, most
    /// preferred first. Empty (the default): in mode
    /// `terminate+originate` the protocol negotiated with the client, if
    /// any, is offered (ALPN is forwarded, so an h2 client reaches an h2
    /// upstream); in mode `originate` none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// The oldest TLS version accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

/// The balancer's name in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerName {
    /// Each endpoint in turn.
    RoundRobin,
    /// Power of two choices over peak-EWMA latency.
    #[default]
    PeakEwma,
    /// Maglev consistent hashing on the client address.
    Maglev,
}

/// Timeouts of a service. Each one is separate, so a slow or silent
/// client is let go at the first stage it stalls in, and each is counted
/// apart (`tls_handshake_failures_total{reason="timeout"}`,
/// `first_byte_timeouts_total`, `idle_timeouts_total`).
///
/// The defaults, and why (Envoy and nginx are the references):
///
/// | field        | default | reference |
/// |--------------|---------|-----------|
/// | `connect`    | 1 s     | Linkerd's connect timeout (Envoy's 5 s is for WANs; islands are a hop away) |
/// | `handshake`  | 10 s    | Envoy's `listener_filters_timeout` is 15 s for the first bytes alone, nginx's `ssl_handshake_timeout` 60 s for the open web; a client one hop away that needs over 10 s for a TLS handshake is stalling |
/// | `first_byte` | 10 s    | nginx's `client_header_timeout` (60 s) and Envoy's recommended edge `request_headers_timeout` (10 s) bound the same thing for HTTP: a client that completed its handshake, holds an upstream connection, and says nothing |
/// | `idle`       | 1 h     | Envoy's `tcp_proxy` `idle_timeout`; nginx's 75 s `keepalive_timeout` is between HTTP requests, which an L4 proxy cannot tell from a long silence inside one |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// One connect attempt to an upstream (TCP and, originating, TLS).
    #[serde(default = "d_connect", with = "duration")]
    pub connect: Duration,
    /// The client's whole TLS handshake, from its accept (terminate modes).
    /// Expiry: a reset, counted as a client handshake failure `timeout`.
    #[serde(default = "d_handshake", with = "duration")]
    pub handshake: Duration,
    /// From the moment the client may send data (its accept in plain and
    /// originate modes, the end of its TLS handshake in terminate modes)
    /// until its first byte of data. Expiry closes the connection, counted
    /// in `first_byte_timeouts_total`. A protocol where the client waits
    /// for the server to speak first and then stays silent needs this as
    /// long as `idle`.
    #[serde(default = "d_first_byte", with = "duration")]
    pub first_byte: Duration,
    /// No byte either way for this long closes a connection.
    #[serde(default = "d_idle", with = "duration")]
    pub idle: Duration,
}

fn d_connect() -> Duration {
    Duration::from_secs(1)
}
fn d_handshake() -> Duration {
    Duration::from_secs(10)
}
fn d_first_byte() -> Duration {
    Duration::from_secs(10)
}
fn d_idle() -> Duration {
    Duration::from_secs(3600)
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect: d_connect(),
            handshake: d_handshake(),
            first_byte: d_first_byte(),
            idle: d_idle(),
        }
    }
}

/// The retry budget (Linkerd's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfigFile {
    /// Retries allowed per new connection.
    #[serde(default = "d_ratio")]
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic.
    #[serde(default = "d_min")]
    pub min_per_second: u32,
    /// The window deposits count for.
    #[serde(default = "d_ttl", with = "duration")]
    pub ttl: Duration,
}

fn d_ratio() -> f64 {
    0.2
}
fn d_min() -> u32 {
    10
}
fn d_ttl() -> Duration {
    Duration::from_secs(10)
}

impl Default for BudgetConfigFile {
    fn default() -> Self {
        Self {
            ratio: d_ratio(),
            min_per_second: d_min(),
            ttl: d_ttl(),
        }
    }
}

/// Ejection of endpoints that keep failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed connects that eject an endpoint.
    #[serde(default = "d_failures")]
    pub consecutive_failures: u32,
    /// The first ejection's length; each next one doubles.
    #[serde(default = "d_bmin", with = "duration")]
    pub backoff_min: Duration,
    /// The longest ejection.
    #[serde(default = "d_bmax", with = "duration")]
    pub backoff_max: Duration,
}

fn d_failures() -> u32 {
    7
}
fn d_bmin() -> Duration {
    Duration::from_secs(1)
}
fn d_bmax() -> Duration {
    Duration::from_secs(60)
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: d_failures(),
            backoff_min: d_bmin(),
            backoff_max: d_bmax(),
        }
    }
}

/// A configuration problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as a path: `terminator.services[0].tls`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl TerminatorConfig {
    /// Checks what serde cannot: every problem, each naming its field.
    ///
    /// # Errors
    ///
    /// Every problem found.
    pub fn validate(&self, cpus: usize) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, reason: String| errors.push(ConfigError { field, reason });
        if self.cores.is_empty() {
            err("terminator.cores".into(), "list at least one CPU".into());
        }
        for (i, c) in self.cores.iter().enumerate() {
            if *c >= cpus {
                err(
                    format!("terminator.cores[{i}]"),
                    format!("CPU {c} does not exist (this machine has {cpus})"),
                );
            }
        }
        if let Some(a) = &self.access_log {
            if a.to != "stdout" && !a.to.starts_with('/') {
                err(
                    "terminator.access_log.to".into(),
                    format!("`{}`: write stdout or an absolute file path", a.to),
                );
            }
            if !(1..=1_000_000).contains(&a.capacity) {
                err(
                    "terminator.access_log.capacity".into(),
                    format!("{} is out of range (1 to 1000000)", a.capacity),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |f: &str| format!("terminator.services[{i}].{f}");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                err(
                    at("name"),
                    format!("`{}` must be letters, digits, - or _", s.name),
                );
            }
            if !names.insert(&s.name) {
                err(at("name"), format!("`{}` is used twice", s.name));
            }
            for (j, n) in s.server_names.iter().enumerate() {
                if let Err(why) = check_server_name(n) {
                    err(at(&format!("server_names[{j}]")), why);
                }
            }
            if s.listen.port() == 0 {
                err(at("listen"), "port 0 is not a port to listen on".into());
            }
            let terminates = matches!(s.mode, ModeName::Terminate | ModeName::TerminateOriginate);
            let originates = matches!(s.mode, ModeName::Originate | ModeName::TerminateOriginate);
            match (&s.tls, terminates) {
                (None, true) => err(at("tls"), format!("mode {:?} needs a tls section", s.mode)),
                (Some(_), false) => err(
                    at("tls"),
                    format!(
                        "mode {:?} does not terminate TLS; remove tls or change the mode",
                        s.mode
                    ),
                ),
                _ => {}
            }
            match (&s.upstream_tls, originates) {
                (None, true) => err(
                    at("upstream_tls"),
                    format!("mode {:?} needs an upstream_tls section", s.mode),
                ),
                (Some(_), false) => err(
                    at("upstream_tls"),
                    format!(
                        "mode {:?} does not originate TLS; remove upstream_tls or change the mode",
                        s.mode
                    ),
                ),
                _ => {}
            }
            if let Some(t) = &s.tls {
                for (j, id) in t.allowed_identities.iter().enumerate() {
                    if !id.starts_with("spiffe://") {
                        err(
                            at(&format!("tls.allowed_identities[{j}]")),
                            format!("`{id}` is not a SPIFFE ID (spiffe://trust-domain/path)"),
                        );
                    }
                }
                if !t.allowed_identities.is_empty() && t.client_ca.is_none() {
                    err(
                        at("tls.allowed_identities"),
                        "identities can only be checked with client certificates: set tls.client_ca".into(),
                    );
                }
                check_alpn(&t.alpn, &|j| at(&format!("tls.alpn[{j}]")), &mut err);
                if s.protocol == ProtocolName::Postgres && !t.alpn.is_empty() {
                    err(
                        at("tls.alpn"),
                        "protocol postgres announces ALPN `postgresql` itself: remove tls.alpn"
                            .into(),
                    );
                }
            }
            if let Some(p) = &s.proxy_protocol {
                for (j, c) in p.trusted_sources.iter().enumerate() {
                    if let Err(why) = c.parse::<crate::proxy::Cidr>() {
                        err(at(&format!("proxy_protocol.trusted_sources[{j}]")), why);
                    }
                }
                if !p.send && p.trusted_sources.is_empty() {
                    err(
                        at("proxy_protocol"),
                        "neither sends nor reads a header: set send: true, list trusted_sources, or remove proxy_protocol".into(),
                    );
                }
            }
            if let Some(t) = &s.upstream_tls {
                check_alpn(
                    &t.alpn,
                    &|j| at(&format!("upstream_tls.alpn[{j}]")),
                    &mut err,
                );
                if let Some(n) = &t.server_name {
                    let why = if n.starts_with("*.") {
                        Err(format!(
                            "`{n}` is a wildcard: SNI names one server; write its name"
                        ))
                    } else {
                        check_server_name(n)
                    };
                    if let Err(why) = why {
                        err(at("upstream_tls.server_name"), why);
                    }
                }
            }
            if s.protocol == ProtocolName::Postgres && !terminates {
                err(
                    at("protocol"),
                    format!(
                        "postgres: the terminator answers PostgreSQL's SSLRequest and terminates the TLS that follows, which mode {:?} does not; set mode terminate or terminate+originate with a tls section",
                        s.mode
                    ),
                );
            }
            if s.upstreams.is_empty() && s.upstreams_from.is_none() {
                err(
                    at("upstreams"),
                    "list at least one upstream endpoint".into(),
                );
            }
            for (j, u) in s.upstreams.iter().enumerate() {
                if u.port() == 0 || u.ip().is_unspecified() {
                    err(
                        at(&format!("upstreams[{j}]")),
                        format!("{u} is not an endpoint"),
                    );
                }
            }
            if !(0.0..=10.0).contains(&s.retry_budget.ratio) {
                err(
                    at("retry_budget.ratio"),
                    format!("{} is out of range (0 to 10)", s.retry_budget.ratio),
                );
            }
            if s.breaker.consecutive_failures == 0 {
                err(
                    at("breaker.consecutive_failures"),
                    "must be at least 1".into(),
                );
            }
            if s.breaker.backoff_min > s.breaker.backoff_max {
                err(
                    at("breaker.backoff_min"),
                    "is longer than breaker.backoff_max".into(),
                );
            }
            if s.max_connections == 0 {
                err(at("max_connections"), "must be at least 1".into());
            }
            if s.max_connections_per_client == 0 {
                err(
                    at("max_connections_per_client"),
                    "must be at least 1".into(),
                );
            }
            for (f, d) in [
                ("timeouts.connect", s.timeouts.connect),
                ("timeouts.handshake", s.timeouts.handshake),
                ("timeouts.first_byte", s.timeouts.first_byte),
                ("timeouts.idle", s.timeouts.idle),
            ] {
                if d.is_zero() {
                    err(at(f), "must be longer than zero".into());
                }
            }
        }
        self.validate_shared_addresses(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The services that share a listen address are told apart by SNI:
    /// each terminates TLS, no server name is claimed twice, at most one
    /// is the default, and they agree on what is enforced per address
    /// (the accept limits and the ClientHello's timeout).
    fn validate_shared_addresses(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |i: usize, f: &str, reason: String| {
            errors.push(ConfigError {
                field: format!("terminator.services[{i}].{f}"),
                reason,
            });
        };
        let mut first_at: HashMap<SocketAddr, usize> = HashMap::new();
        let mut default_at: HashMap<SocketAddr, usize> = HashMap::new();
        let mut claimed: HashMap<(SocketAddr, String), usize> = HashMap::new();
        for (i, s) in self.services.iter().enumerate() {
            let routes = s.routes_by_sni() || self.shares_listen(i);
            if !routes {
                first_at.insert(s.listen, i);
                continue;
            }
            if !s.terminates() {
                let why = if s.server_names.is_empty() {
                    format!(
                        "{} is shared with another service: services on one address are told apart by their TLS server name (SNI), so each must terminate TLS (mode terminate or terminate+originate)",
                        s.listen
                    )
                } else {
                    "server_names are read from the client's TLS ClientHello: only a service that terminates TLS can have them".into()
                };
                err(i, "mode", why);
            }
            if s.server_names.is_empty()
                && let Some(&d) = default_at.get(&s.listen)
            {
                err(
                    i,
                    "server_names",
                    format!(
                        "service `{}` is already the default (no server_names) on {}: give this one server_names, or that one",
                        self.services[d].name, s.listen
                    ),
                );
            } else if s.server_names.is_empty() {
                default_at.insert(s.listen, i);
            }
            for (j, n) in s.server_names.iter().enumerate() {
                let key = (s.listen, n.to_ascii_lowercase());
                if let Some(&other) = claimed.get(&key) {
                    err(
                        i,
                        &format!("server_names[{j}]"),
                        format!(
                            "`{n}` on {} is claimed by service `{}` already: a server name chooses one service",
                            s.listen, self.services[other].name
                        ),
                    );
                } else {
                    claimed.insert(key, i);
                }
            }
            let Some(&f) = first_at.get(&s.listen) else {
                first_at.insert(s.listen, i);
                continue;
            };
            let first = &self.services[f];
            for (field, mine, theirs) in [
                (
                    "protocol",
                    format!("{:?}", s.protocol).to_ascii_lowercase(),
                    format!("{:?}", first.protocol).to_ascii_lowercase(),
                ),
                (
                    "max_connections",
                    s.max_connections.to_string(),
                    first.max_connections.to_string(),
                ),
                (
                    "max_connections_per_client",
                    s.max_connections_per_client.to_string(),
                    first.max_connections_per_client.to_string(),
                ),
                (
                    "timeouts.handshake",
                    format!("{:?}", s.timeouts.handshake),
                    format!("{:?}", first.timeouts.handshake),
                ),
                (
                    "proxy_protocol.trusted_sources",
                    format!("{:?}", trusted(s)),
                    format!("{:?}", trusted(first)),
                ),
            ] {
                if mine != theirs {
                    err(
                        i,
                        field,
                        format!(
                            "{mine} differs from service `{}`'s {theirs}: services sharing {} are accepted by one listener, which enforces one value; make them equal",
                            first.name, s.listen
                        ),
                    );
                }
            }
        }
    }

    /// Whether another service listens on service `i`'s address.
    fn shares_listen(&self, i: usize) -> bool {
        let listen = self.services[i].listen;
        self.services
            .iter()
            .enumerate()
            .any(|(j, s)| j != i && s.listen == listen)
    }
}

impl ServiceConfig {
    /// Whether the client leg is TLS that this service terminates.
    #[must_use]
    pub fn terminates(&self) -> bool {
        matches!(
            self.mode,
            ModeName::Terminate | ModeName::TerminateOriginate
        )
    }

    /// Whether this service names the server names it answers.
    #[must_use]
    pub fn routes_by_sni(&self) -> bool {
        !self.server_names.is_empty()
    }

    /// Whether the client's first bytes are read before a service and its
    /// TLS session are started: to choose by SNI, or to answer a
    /// PostgreSQL SSLRequest.
    #[must_use]
    pub fn reads_first_bytes(&self) -> bool {
        self.routes_by_sni() || self.protocol == ProtocolName::Postgres
    }
}

/// The PROXY sources a service trusts (its listener reads headers from).
fn trusted(s: &ServiceConfig) -> &[String] {
    s.proxy_protocol
        .as_ref()
        .map_or(&[][..], |p| p.trusted_sources.as_slice())
}

/// ALPN protocol names (RFC 7301 section 3.1: each 1 to 255 bytes; an
/// IANA name such as `h2` or `http/1.1`, written as visible ASCII here),
/// each once.
fn check_alpn(
    names: &[String],
    at: &dyn Fn(usize) -> String,
    err: &mut impl FnMut(String, String),
) {
    let mut seen = HashSet::new();
    for (j, n) in names.iter().enumerate() {
        if n.is_empty() || n.len() > 255 || !n.bytes().all(|b| b.is_ascii_graphic()) {
            err(
                at(j),
                format!(
                    "`{n}` is not an ALPN protocol name: 1 to 255 visible ASCII characters, such as h2 or http/1.1"
                ),
            );
        } else if !seen.insert(n.as_str()) {
            err(at(j), format!("`{n}` is listed twice"));
        }
    }
}

/// A server name as SNI carries it (RFC 6066 section 3: a DNS host name,
/// no IP literal, no trailing dot), or `*.` and such a name.
fn check_server_name(name: &str) -> Result<(), String> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.is_empty() || name.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a server name: write a DNS name (db.example.com) or one leading wildcard label (*.example.com)"
        ));
    }
    if host.parse::<std::net::IpAddr>().is_ok()
        || host
            .split('.')
            .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "`{name}` is an IP address: TLS clients send no SNI for an address (RFC 6066 section 3), so route it with a default service (one without server_names)"
        ));
    }
    Ok(())
}

/// `250ms`, `1s`, `5m`, `1h` as a [`Duration`], for serde's `with`.
pub mod duration {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    /// Parses a duration such as `250ms` or `1.5s`.
    ///
    /// # Errors
    ///
    /// A message naming the text and the accepted units.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (write 250ms, 1s, 5m or 1h)"))?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
        };
        Ok(Duration::from_secs_f64(value * scale))
    }

    /// serde: deserialise.
    ///
    /// # Errors
    ///
    /// Not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// serde: serialise as milliseconds.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r"
cores: [0]
services:
  - name: demo
    listen: 10.100.0.10:443
    mode: terminate
    tls: {cert: /x/server.pem, key: /x/server-key.pem, client_ca: /x/ca.pem,
          allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/client']}
    upstreams: [10.2.0.2:8081, 10.2.0.2:8082]
    balancer: round-robin
    timeouts: {connect: 500ms, idle: 5m}
";

    #[test]
    fn a_good_section_parses_with_defaults() {
        let c: TerminatorConfig = serde_yaml::from_str(GOOD).unwrap();
        c.validate(2).unwrap();
        let s = &c.services[0];
        assert_eq!(s.timeouts.connect, Duration::from_millis(500));
        assert_eq!(s.timeouts.idle, Duration::from_secs(300));
        assert_eq!(s.timeouts.handshake, Duration::from_secs(10));
        assert_eq!(s.timeouts.first_byte, Duration::from_secs(10));
        assert_eq!(s.max_connections_per_client, 1000);
        assert_eq!(s.breaker.consecutive_failures, 7);
        assert_eq!(s.retry_budget.min_per_second, 10);
        assert_eq!(s.tls.as_ref().unwrap().min_version, MinVersion::Tls13);
        assert_eq!(c.driver, DriverChoice::Auto);
    }

    #[test]
    fn problems_name_their_field() {
        let bad = GOOD
            .replace("mode: terminate", "mode: originate")
            .replace("spiffe://causeway", "https://causeway");
        let c: TerminatorConfig = serde_yaml::from_str(&bad).unwrap();
        let errors = c.validate(2).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("terminator.services[0].tls:")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.starts_with("terminator.services[0].upstream_tls:")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.starts_with("terminator.services[0].tls.allowed_identities[0]:")),
            "{text:?}"
        );
        let e = serde_yaml::from_str::<TerminatorConfig>(&GOOD.replace("500ms", "500 parsecs"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unit must be"), "{e}");
        let e = serde_yaml::from_str::<TerminatorConfig>(&GOOD.replace("balancer:", "balancr:"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `balancr`"), "{e}");
    }

    const SHARED: &str = r"
cores: [0]
services:
  - name: alpha
    listen: 10.100.0.10:443
    server_names: [alpha.example.com, '*.alpha.example.com']
    mode: terminate
    tls: {cert: /x/alpha.pem, key: /x/alpha-key.pem, client_ca: /x/ca.pem}
    upstreams: [10.2.0.2:8081]
  - name: beta
    listen: 10.100.0.10:443
    server_names: [beta.example.com]
    mode: terminate
    tls: {cert: /x/beta.pem, key: /x/beta-key.pem}
    upstreams: [10.2.0.2:8082]
";

    fn errors_of(yaml: &str) -> Vec<String> {
        let c: TerminatorConfig = serde_yaml::from_str(yaml).unwrap();
        c.validate(2)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn services_with_distinct_server_names_share_an_address() {
        assert_eq!(errors_of(SHARED), Vec::<String>::new());
        // A third without names is the address's default.
        let with_default = format!(
            "{SHARED}  - {{name: fallback, listen: 10.100.0.10:443, mode: terminate,\n      tls: {{cert: /x/f.pem, key: /x/f-key.pem}}, upstreams: [10.2.0.2:8083]}}\n"
        );
        assert_eq!(errors_of(&with_default), Vec::<String>::new());
        // Without server_names the section still reads as before.
        let c: TerminatorConfig = serde_yaml::from_str(GOOD).unwrap();
        assert!(c.services[0].server_names.is_empty());
        let back = serde_yaml::to_string(&c).unwrap();
        assert!(!back.contains("server_names"), "{back}");
    }

    #[test]
    fn two_services_on_one_address_without_names_are_refused() {
        let e = errors_of(
            &SHARED
                .replace("    server_names: [beta.example.com]\n", "")
                .replace(
                    "    server_names: [alpha.example.com, '*.alpha.example.com']\n",
                    "",
                ),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("terminator.services[1].server_names: service `alpha` is already the default (no server_names) on 10.100.0.10:443"),
            "{e:?}"
        );
    }

    #[test]
    fn a_server_name_claimed_twice_on_one_address_is_refused() {
        let e = errors_of(&SHARED.replace(
            "[beta.example.com]",
            "[beta.example.com, Alpha.Example.com]",
        ));
        assert_eq!(
            e,
            [
                "terminator.services[1].server_names[1]: `Alpha.Example.com` on 10.100.0.10:443 is claimed by service `alpha` already: a server name chooses one service"
            ]
        );
        // The same name on another address is fine.
        let e = errors_of(&SHARED.replace(
            "listen: 10.100.0.10:443\n    server_names: [beta.example.com]",
            "listen: 10.100.0.11:443\n    server_names: [alpha.example.com]",
        ));
        assert_eq!(e, Vec::<String>::new());
    }

    #[test]
    fn services_sharing_an_address_must_terminate_and_agree_on_its_limits() {
        let e = errors_of(
            &SHARED
                .replacen(
                    "mode: terminate\n    tls: {cert: /x/beta.pem, key: /x/beta-key.pem}",
                    "mode: plain",
                    1,
                )
                .replacen(
                    "upstreams: [10.2.0.2:8082]",
                    "upstreams: [10.2.0.2:8082]\n    max_connections: 5",
                    1,
                ),
        );
        assert!(
            e.iter().any(|e| e.starts_with("terminator.services[1].mode: server_names are read from the client's TLS ClientHello")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with(
                "terminator.services[1].max_connections: 5 differs from service `alpha`'s 10000"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn malformed_server_names_are_refused_with_their_index() {
        let e = errors_of(&SHARED.replace(
            "[beta.example.com]",
            "[beta.example.com, 'bad name', 10.0.0.1, 'a.*.com', '']",
        ));
        let at = |j: usize| format!("terminator.services[1].server_names[{j}]:");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with(&at(1)) && e[0].contains("not a server name"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(&at(2)) && e[1].contains("is an IP address"),
            "{e:?}"
        );
        assert!(e[2].starts_with(&at(3)), "{e:?}");
        assert!(e[3].starts_with(&at(4)), "{e:?}");
    }

    #[test]
    fn postgres_needs_a_terminating_mode_and_one_protocol_per_address() {
        let pg = GOOD.replace("mode: terminate", "mode: terminate\n    protocol: postgres");
        assert_eq!(errors_of(&pg), Vec::<String>::new());
        let c: TerminatorConfig = serde_yaml::from_str(&pg).unwrap();
        assert_eq!(c.services[0].protocol, ProtocolName::Postgres);
        assert!(
            serde_yaml::to_string(&c)
                .unwrap()
                .contains("protocol: postgres")
        );
        let e = errors_of(
            &pg.replace("mode: terminate", "mode: plain")
                .replace(
                    "    tls: {cert: /x/server.pem, key: /x/server-key.pem, client_ca: /x/ca.pem,\n          allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/client']}\n",
                    "",
                ),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("terminator.services[0].protocol: postgres: the terminator answers PostgreSQL's SSLRequest"),
            "{e:?}"
        );
        let e = errors_of(&SHARED.replacen(
            "    mode: terminate\n    tls: {cert: /x/beta.pem",
            "    mode: terminate\n    protocol: postgres\n    tls: {cert: /x/beta.pem",
            1,
        ));
        assert_eq!(
            e,
            [
                "terminator.services[1].protocol: postgres differs from service `alpha`'s tcp: services sharing 10.100.0.10:443 are accepted by one listener, which enforces one value; make them equal"
            ]
        );
        let e = serde_yaml::from_str::<TerminatorConfig>(
            &GOOD.replace("mode: terminate", "mode: terminate\n    protocol: mysql"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant `mysql`"), "{e}");
    }

    #[test]
    fn alpn_lists_and_the_upstream_server_name_are_checked_by_index() {
        let with = GOOD.replace(
            "allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/client']}",
            "allowed_identities: ['spiffe://causeway.lab/ns/lab/sa/client'], alpn: [h2, http/1.1]}",
        );
        assert_eq!(errors_of(&with), Vec::<String>::new());
        let c: TerminatorConfig = serde_yaml::from_str(&with).unwrap();
        assert_eq!(c.services[0].tls.as_ref().unwrap().alpn, ["h2", "http/1.1"]);
        let e = errors_of(&with.replace("[h2, http/1.1]", "[h2, '', 'h 2', h2]"));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("terminator.services[0].tls.alpn[1]: `` is not an ALPN protocol name"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("terminator.services[0].tls.alpn[2]:"),
            "{e:?}"
        );
        assert_eq!(
            e[2],
            "terminator.services[0].tls.alpn[3]: `h2` is listed twice"
        );
        let e =
            errors_of(&with.replace("mode: terminate", "mode: terminate\n    protocol: postgres"));
        assert_eq!(
            e,
            [
                "terminator.services[0].tls.alpn: protocol postgres announces ALPN `postgresql` itself: remove tls.alpn"
            ]
        );
        let up = GOOD.replace("mode: terminate", "mode: terminate+originate").replace(
            "    upstreams:",
            "    upstream_tls: {cert: /x/gw.pem, key: /x/gw-key.pem, ca: /x/ca.pem,\n                   server_name: grpc.example.com, alpn: [h2]}\n    upstreams:",
        );
        assert_eq!(errors_of(&up), Vec::<String>::new());
        let e = errors_of(
            &up.replace("grpc.example.com", "'*.example.com'")
                .replace("[h2]", "[h2, h2]"),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "terminator.services[0].upstream_tls.alpn[1]: `h2` is listed twice"
        );
        assert!(
            e[1].starts_with(
                "terminator.services[0].upstream_tls.server_name: `*.example.com` is a wildcard"
            ),
            "{e:?}"
        );
        let e = errors_of(&up.replace("grpc.example.com", "10.0.0.1"));
        assert!(e[0].contains("is an IP address"), "{e:?}");
    }

    #[test]
    fn proxy_protocol_sources_are_parsed_and_agreed_per_address() {
        let with = format!(
            "{GOOD}    proxy_protocol: {{send: true, trusted_sources: [10.9.0.0/16, '2001:db8::7']}}\n"
        );
        assert_eq!(errors_of(&with), Vec::<String>::new());
        let c: TerminatorConfig = serde_yaml::from_str(&with).unwrap();
        assert!(c.services[0].proxy_protocol.as_ref().unwrap().send);
        let e = errors_of(
            &with
                .replace("10.9.0.0/16", "10.9.0.1/16")
                .replace("'2001:db8::7'", "lb.example"),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("terminator.services[0].proxy_protocol.trusted_sources[0]: `10.9.0.1/16` has host bits set"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("terminator.services[0].proxy_protocol.trusted_sources[1]: `lb.example` is not an address"),
            "{e:?}"
        );
        let e = errors_of(&format!("{GOOD}    proxy_protocol: {{}}\n"));
        assert!(
            e[0].starts_with("terminator.services[0].proxy_protocol: neither sends nor reads"),
            "{e:?}"
        );
        let e = errors_of(&format!(
            "{SHARED}    proxy_protocol: {{trusted_sources: [10.9.0.0/16]}}\n"
        ));
        assert_eq!(
            e,
            [
                "terminator.services[1].proxy_protocol.trusted_sources: [\"10.9.0.0/16\"] differs from service `alpha`'s []: services sharing 10.100.0.10:443 are accepted by one listener, which enforces one value; make them equal"
            ]
        );
    }

    #[test]
    fn the_access_log_goes_to_stdout_or_an_absolute_file() {
        let with =
            |a: &str| GOOD.replace("cores: [0]\n", &format!("cores: [0]\naccess_log: {a}\n"));
        let c: TerminatorConfig = serde_yaml::from_str(&with("{to: stdout}")).unwrap();
        c.validate(2).unwrap();
        assert_eq!(c.access_log.as_ref().unwrap().capacity, 4096);
        assert_eq!(
            c.access_log.unwrap().sink(),
            crate::access_log::Sink::Stdout
        );
        assert_eq!(
            errors_of(&with("{to: /var/log/causeway/access.jsonl, capacity: 10}")),
            Vec::<String>::new()
        );
        assert_eq!(
            errors_of(&with("{to: access.log, capacity: 0}")),
            [
                "terminator.access_log.to: `access.log`: write stdout or an absolute file path",
                "terminator.access_log.capacity: 0 is out of range (1 to 1000000)"
            ]
        );
    }
}
