//! The sync's configuration: a file, the environment calicoctl reads
//! (`DATASTORE_TYPE`, `ETCD_ENDPOINTS` and the etcd TLS variables,
//! `KUBECONFIG`), and `--appliance` flags, so that a first run needs no
//! file.
//!
//! ```yaml
//! name: cluster-a                  # the owner it writes as: sync/cluster-a
//! sources:
//!   - name: calico
//!     etcdv3:
//!       endpoints: [http://127.0.0.1:2379]
//!       # ca: ..., cert: ..., key: ...     (TLS to etcd)
//!   - name: gitops
//!     manifests: {dir: /etc/causeway/cluster}
//! appliances: [unix:/run/causeway/causeway-control.sock]
//! status_socket: /run/causeway/sync.sock
//! metrics_listen: 127.0.0.1:9465  # optional: Prometheus on TCP
//! batch_ms: 0                      # wait this long after a change that follows
//!                                  # a quiet spell (0: push it at once); under
//!                                  # load, pushes are 50 ms apart anyway
//! ```

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Names this sync: it writes as owner `sync/<name>`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where the cluster's state comes from.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// The appliances kept in step: `unix:PATH` (a control socket) or
    /// `https://HOST:PORT` (the control API on TCP with mTLS; see
    /// `appliance_tls`).
    #[serde(default)]
    pub appliances: Vec<String>,
    /// The client identity for `https://` appliances: an admin identity
    /// of theirs (`api.tcp.admin_identities`).
    #[serde(default)]
    pub appliance_tls: Option<ApplianceTls>,
    /// Where `causeway sync status` and `/metrics` are served (HTTP on a
    /// Unix socket, mode 0600).
    #[serde(default = "default_status_socket")]
    pub status_socket: PathBuf,
    /// Prometheus metrics on TCP too.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a change after a quiet spell waits for more before it is
    /// pushed (default 0: at once, as a change is latency someone waits
    /// for). Under load, pushes to one appliance are at least 50 ms apart
    /// whatever this is, each carrying everything that arrived meanwhile.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Let the cluster's state leave an appliance with no policy at all
    /// (every policy deleted). Off by default: such a push is refused by
    /// the appliance, which keeps the last policy it had, and `sync
    /// status` shows the refusal.
    #[serde(default)]
    pub allow_no_policy: bool,
}

fn default_name() -> String {
    "default".into()
}

fn default_status_socket() -> PathBuf {
    "/run/causeway/sync.sock".into()
}

const fn default_batch_ms() -> u64 {
    0
}

/// mTLS to appliances' TCP control API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplianceTls {
    /// The CA bundle the appliances' certificates chain to.
    pub ca: PathBuf,
    /// This sync's certificate (an admin SPIFFE identity of the appliances).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The name the appliances' certificates carry, when it is not the
    /// host of the address (a DNS SAN).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// One source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Its name, in status, metrics and problems.
    pub name: String,
    /// Calico's etcdv3 datastore.
    #[serde(default)]
    pub etcdv3: Option<EtcdConfig>,
    /// A directory of manifests, watched.
    #[serde(default)]
    pub manifests: Option<ManifestsConfig>,
    /// The Kubernetes API.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
}

/// An etcd cluster holding Calico's v3 resources.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Its client URLs.
    pub endpoints: Vec<String>,
    /// CA bundle to verify etcd with (TLS).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (mutual TLS).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// A directory of manifests (YAML or JSON, as `ctl apply -f` reads them).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestsConfig {
    /// The directory.
    pub dir: PathBuf,
}

/// A Kubernetes API server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The kubeconfig (default: in-cluster credentials).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

/// A checked configuration's sources (name and kind) and appliances.
pub type Checked = (Vec<(String, SourceKind)>, Vec<ApplianceAddr>);

/// What a source is, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// Calico's etcdv3 datastore.
    Etcd(EtcdConfig),
    /// A directory of manifests.
    Manifests(ManifestsConfig),
    /// The Kubernetes API.
    Kubernetes(KubernetesConfig),
}

impl SourceKind {
    /// `etcdv3`, `manifests` or `kubernetes`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Etcd(_) => "etcdv3",
            Self::Manifests(_) => "manifests",
            Self::Kubernetes(_) => "kubernetes",
        }
    }
}

/// An appliance address, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplianceAddr {
    /// A control socket.
    Unix(PathBuf),
    /// The control API on TCP with mTLS: `host:port`, and the identity.
    Https(String, Box<ApplianceTls>),
}

impl std::fmt::Display for ApplianceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Https(a, _) => write!(f, "https://{a}"),
        }
    }
}

/// How a sync is given its mTLS files, for [`appliance_addr`]'s error.
pub const SYNC_TLS_HINT: &str = "appliance_tls (ca, cert, key) in the file, or --appliance-ca, --appliance-cert and --appliance-key";

/// Parses `unix:PATH` or `https://HOST:PORT` (which needs `tls`).
///
/// # Errors
/// Another scheme, or none, named with what to write instead; https
/// without `tls`, saying to give `tls_hint` (how the caller takes them).
pub fn appliance_addr(
    s: &str,
    tls: Option<&ApplianceTls>,
    tls_hint: &str,
) -> Result<ApplianceAddr> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            bail!(
                "`{s}`: unix: needs the control socket's path, e.g. unix:/run/causeway/causeway-control.sock"
            );
        }
        return Ok(ApplianceAddr::Unix(path.into()));
    }
    if let Some(addr) = s.strip_prefix("https://") {
        let addr = addr.trim_end_matches('/');
        if !addr.contains(':') {
            bail!("`{s}`: give the API's port, e.g. https://10.0.0.1:7443");
        }
        let Some(tls) = tls else {
            bail!("`{s}`: the TCP control API needs mTLS: give {tls_hint}");
        };
        return Ok(ApplianceAddr::Https(addr.to_owned(), Box::new(tls.clone())));
    }
    bail!(
        "`{s}` is not an appliance address: write unix:PATH (a control socket) or https://HOST:PORT"
    )
}

impl Default for SyncConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("every field has a default")
    }
}

impl SyncConfig {
    /// Reads a configuration file.
    ///
    /// # Errors
    /// It cannot be read or does not parse (serde names the field and line).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Adds the source calicoctl's environment describes, if any and if the
    /// file has no source of that kind: `DATASTORE_TYPE` (`etcdv3` or
    /// `kubernetes`), `ETCD_ENDPOINTS` (comma separated), `ETCD_CA_CERT_FILE`,
    /// `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `KUBECONFIG`.
    ///
    /// # Errors
    /// `DATASTORE_TYPE` is neither, or etcdv3 without endpoints.
    pub fn add_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let Some(kind) = var("DATASTORE_TYPE") else {
            return Ok(());
        };
        match kind.as_str() {
            "etcdv3" => {
                if self.sources.iter().any(|s| s.etcdv3.is_some()) {
                    return Ok(());
                }
                let endpoints: Vec<String> = var("ETCD_ENDPOINTS")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect();
                if endpoints.is_empty() {
                    bail!(
                        "DATASTORE_TYPE=etcdv3 needs ETCD_ENDPOINTS (e.g. http://127.0.0.1:2379)"
                    );
                }
                self.sources.push(SourceConfig {
                    name: "etcd".into(),
                    etcdv3: Some(EtcdConfig {
                        endpoints,
                        ca: var("ETCD_CA_CERT_FILE").map(Into::into),
                        cert: var("ETCD_CERT_FILE").map(Into::into),
                        key: var("ETCD_KEY_FILE").map(Into::into),
                    }),
                    manifests: None,
                    kubernetes: None,
                });
            }
            "kubernetes" => {
                if self.sources.iter().any(|s| s.kubernetes.is_some()) {
                    return Ok(());
                }
                self.sources.push(SourceConfig {
                    name: "kubernetes".into(),
                    etcdv3: None,
                    manifests: None,
                    kubernetes: Some(KubernetesConfig {
                        kubeconfig: var("KUBECONFIG").map(Into::into),
                    }),
                });
            }
            other => bail!("DATASTORE_TYPE=`{other}`: use etcdv3 or kubernetes"),
        }
        Ok(())
    }

    /// The owner this sync writes as.
    pub fn owner(&self) -> String {
        format!("sync/{}", self.name)
    }

    /// Checks the whole configuration and returns its sources (name and
    /// kind) and appliances.
    ///
    /// # Errors
    /// Every mistake, one per line, each naming its field.
    pub fn check(&self) -> Result<Checked> {
        let mut errors = Vec::new();
        if self.name.is_empty()
            || self.name.len() > 48
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.push(format!(
                "name: `{}` must be 1 to 48 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        if self.sources.is_empty() {
            errors.push(
                "sources: name at least one (in the file, or DATASTORE_TYPE and ETCD_ENDPOINTS or KUBECONFIG)"
                    .into(),
            );
        }
        let mut names = HashSet::new();
        let mut sources = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !names.insert(&s.name) {
                errors.push(format!("sources[{i}].name: `{}` is used twice", s.name));
            }
            let kinds = [
                s.etcdv3.is_some(),
                s.manifests.is_some(),
                s.kubernetes.is_some(),
            ];
            match (kinds.iter().filter(|k| **k).count(), s) {
                (
                    1,
                    SourceConfig {
                        etcdv3: Some(e), ..
                    },
                ) => {
                    if e.endpoints.is_empty() {
                        errors.push(format!("sources[{i}].etcdv3.endpoints: name at least one"));
                    }
                    if e.cert.is_some() != e.key.is_some() {
                        errors.push(format!("sources[{i}].etcdv3: cert and key go together"));
                    }
                    sources.push((s.name.clone(), SourceKind::Etcd(e.clone())));
                }
                (
                    1,
                    SourceConfig {
                        manifests: Some(m), ..
                    },
                ) => {
                    sources.push((s.name.clone(), SourceKind::Manifests(m.clone())));
                }
                (
                    1,
                    SourceConfig {
                        kubernetes: Some(k),
                        ..
                    },
                ) => sources.push((s.name.clone(), SourceKind::Kubernetes(k.clone()))),
                _ => errors.push(format!(
                    "sources[{i}] (`{}`): give exactly one of etcdv3, manifests, kubernetes",
                    s.name
                )),
            }
        }
        if self.appliances.is_empty() {
            errors.push("appliances: name at least one (or pass --appliance unix:PATH)".into());
        }
        let mut appliances = Vec::new();
        for (i, a) in self.appliances.iter().enumerate() {
            match appliance_addr(a, self.appliance_tls.as_ref(), SYNC_TLS_HINT) {
                Ok(a) => appliances.push(a),
                Err(e) => errors.push(format!("appliances[{i}]: {e}")),
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok((sources, appliances))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calicoctls_environment_makes_a_first_run_need_no_file() {
        let mut c = SyncConfig::default();
        let env = |k: &str| match k {
            "DATASTORE_TYPE" => Some("etcdv3".to_owned()),
            "ETCD_ENDPOINTS" => Some("http://127.0.0.1:2379, http://127.0.0.2:2379".to_owned()),
            _ => None,
        };
        c.add_env(env).unwrap();
        c.appliances.push("unix:/run/x.sock".into());
        let (sources, appliances) = c.check().unwrap();
        assert_eq!(
            sources[0].1,
            SourceKind::Etcd(EtcdConfig {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://127.0.0.2:2379".into()
                ],
                ca: None,
                cert: None,
                key: None
            })
        );
        assert_eq!(appliances, [ApplianceAddr::Unix("/run/x.sock".into())]);
        assert_eq!(c.owner(), "sync/default");
    }

    #[test]
    fn every_mistake_is_named() {
        let c: SyncConfig = serde_yaml::from_str(
            "name: 'a b'\nsources: [{name: x}, {name: x, manifests: {dir: /tmp}}]\nappliances: [tcp://1.2.3.4]",
        )
        .unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("name: `a b`"), "{e}");
        assert!(e.contains("sources[0] (`x`): give exactly one"), "{e}");
        assert!(e.contains("sources[1].name: `x` is used twice"), "{e}");
        assert!(
            e.contains("appliances[0]: `tcp://1.2.3.4` is not an appliance address"),
            "{e}"
        );
        let e = appliance_addr("https://10.0.0.1:7443", None, SYNC_TLS_HINT).unwrap_err();
        assert!(e.to_string().contains("needs mTLS"), "{e}");
        let e = serde_yaml::from_str::<SyncConfig>("sourcez: []").unwrap_err();
        assert!(e.to_string().contains("sourcez"), "{e}");
        let mut c = SyncConfig::default();
        assert!(
            c.add_env(|k| (k == "DATASTORE_TYPE").then(|| "consul".into()))
                .is_err()
        );
    }
}
