//! The `terminator:` section of the appliance configuration.
//!
//! Every field has a default where Linkerd or Envoy has one, and unknown
//! fields are errors. Durations are written as Envoy writes them: `250ms`,
//! `1s`, `5m`, `1h`.

use std::{collections::HashSet, fmt, net::SocketAddr, path::PathBuf, time::Duration};

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

/// A service: where it listens, how it secures each leg, where it sends
/// connections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Names the service in metrics and logs.
    pub name: String,
    /// The service address and port (the dataplane routes the address to
    /// the host port).
    pub listen: SocketAddr,
    /// `plain`, `terminate`, `originate` or `terminate+originate`.
    pub mode: ModeName,
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
        let mut names = HashSet::new();
        let mut listens = HashSet::new();
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
            if !listens.insert(s.listen) {
                err(
                    at("listen"),
                    format!("{} is used by two services", s.listen),
                );
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
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
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
}
