//! The originating side: mTLS to an upstream, authorized by its SPIFFE ID.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::sign::SingleCertAndKey;

use super::material::{self, Files};
use super::reload::Reloader;
use super::verify::{Admitted, SpiffeServerVerifier};
use super::{MaterialError, Reload, TlsVersions, provider, spiffe};

/// Where the originating side's TLS material lives and which upstreams it
/// trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMaterialConfig {
    /// PEM certificate chain presented to upstreams, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub key: PathBuf,
    /// PEM bundle of CAs that upstream certificates must chain to.
    pub trust: PathBuf,
    /// Upstream SPIFFE IDs admitted; empty admits any server whose chain
    /// verifies.
    pub upstream_identities: Vec<String>,
    /// TLS versions offered.
    pub versions: TlsVersions,
}

impl ClientMaterialConfig {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone(), self.trust.clone()]
    }
}

/// The originating side's rustls config, reloadable from disk.
///
/// The server is verified by chain and SPIFFE ID, never by hostname: pass
/// any `ServerName` (the upstream's IP address is natural) to
/// `ClientConnection::new`. The name still keys the session store, so
/// resumption works per upstream address.
pub struct ClientTls {
    /// `None` for a fixed config ([`ClientTls::fixed`]).
    cfg: Option<ClientMaterialConfig>,
    reloader: Reloader<ClientConfig>,
}

impl ClientTls {
    /// Reads the files and builds the first config.
    ///
    /// # Errors
    ///
    /// Any [`MaterialError`]: a file missing or not PEM, a key that does not
    /// match the certificate, an empty trust bundle, or an allow-list entry
    /// that is not a SPIFFE ID.
    pub fn load(cfg: &ClientMaterialConfig) -> Result<Self, MaterialError> {
        spiffe::validate("upstream_identities", &cfg.upstream_identities)?;
        let reloader = Reloader::load(cfg.paths(), |files| build(cfg, files))?;
        Ok(Self {
            cfg: Some(cfg.clone()),
            reloader,
        })
    }

    /// The config for a new connection: one atomic load and a refcount.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.reloader.current()
    }

    /// As [`ServerTls::reload_if_changed`](super::ServerTls::reload_if_changed).
    /// A reload starts a new session store, so the next connection to each
    /// upstream is a full handshake under the new material.
    pub fn reload_if_changed(&self) -> Reload {
        match &self.cfg {
            Some(cfg) => self.reloader.reload_if_changed(|files| build(cfg, files)),
            None => Reload::Unchanged,
        }
    }

    /// A config built elsewhere, served as is: nothing is read from disk and
    /// `reload_if_changed` always says `Unchanged`. For tests of the proxy
    /// engine, and for callers that manage material themselves.
    pub fn fixed(config: Arc<ClientConfig>) -> Self {
        Self {
            cfg: None,
            reloader: Reloader::fixed(config),
        }
    }

    /// The paths and policy this was loaded with; `None` for [`Self::fixed`].
    pub fn material(&self) -> Option<&ClientMaterialConfig> {
        self.cfg.as_ref()
    }
}

fn build(cfg: &ClientMaterialConfig, files: &Files) -> Result<Arc<ClientConfig>, MaterialError> {
    let provider = provider();
    // The chain and key presented to upstreams.
    let certified = material::certified_key(files, &cfg.cert, &cfg.key, &provider)?;
    // Which upstreams are believed: chain to `trust`, then SPIFFE ID.
    let roots = material::roots(files, &cfg.trust)?;
    let admitted = Admitted::new(cfg.upstream_identities.clone(), "server");
    let verifier = SpiffeServerVerifier::new(roots, provider.clone(), admitted);
    // Versions offered; resumption stays at rustls's default in-memory store.
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(cfg.versions.rustls())
        .map_err(MaterialError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Ok(Arc::new(config))
}
