//! The accepting side: terminate TLS, optionally require and authorize a
//! client certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;

use super::material::{self, Files};
use super::reload::Reloader;
use super::verify::{Admitted, SpiffeClientVerifier};
use super::{MaterialError, Reload, TlsVersions, provider, spiffe, ticketer};

/// Server-side sessions remembered for ID-based resumption (TLS 1.2); TLS 1.3
/// resumes from tickets and needs no server state.
const SESSION_CACHE: usize = 1024;

/// Where a listener's TLS material lives and who it admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMaterialConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub key: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to. `None`:
    /// plain TLS, no client certificate is asked for. `Some`: mTLS, a client
    /// without a certificate from this bundle is refused.
    pub client_trust: Option<PathBuf>,
    /// SPIFFE IDs admitted; empty admits any client whose chain verifies.
    /// Must be empty when `client_trust` is `None`.
    pub allowed_identities: Vec<String>,
    /// TLS versions accepted.
    pub versions: TlsVersions,
    /// The application protocols announced with ALPN (RFC 7301), most
    /// preferred first, e.g. `h2` then `http/1.1`. Empty: no ALPN. A
    /// client that offers ALPN but none of these is refused with a fatal
    /// `no_application_protocol` alert (RFC 7301 section 3.2); a client
    /// that offers no ALPN at all is served with none negotiated.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerMaterialConfig {
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_trust.clone());
        paths
    }
}

/// A listener's rustls config, reloadable from disk.
///
/// Take [`current`](Self::current) for each new connection; call
/// [`reload_if_changed`](Self::reload_if_changed) on a timer. A connection
/// holds its own `Arc` of the config it started with, so a reload never
/// touches connections already made.
pub struct ServerTls {
    /// `None` for a fixed config ([`ServerTls::fixed`]).
    cfg: Option<ServerMaterialConfig>,
    reloader: Reloader<ServerConfig>,
}

impl ServerTls {
    /// Reads the files and builds the first config.
    ///
    /// # Errors
    ///
    /// Any [`MaterialError`]: a file missing or not PEM, a key that does not
    /// match the certificate, an empty trust bundle, an allow-list entry that
    /// is not a SPIFFE ID, or identities without `client_trust`.
    pub fn load(cfg: &ServerMaterialConfig) -> Result<Self, MaterialError> {
        spiffe::validate("allowed_identities", &cfg.allowed_identities)?;
        if cfg.client_trust.is_none() && !cfg.allowed_identities.is_empty() {
            return Err(MaterialError::IdentitiesWithoutTrust);
        }
        let reloader = Reloader::load(cfg.paths(), |files| build(cfg, files))?;
        Ok(Self {
            cfg: Some(cfg.clone()),
            reloader,
        })
    }

    /// The config for a new connection: one atomic load and a refcount.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.reloader.current()
    }

    /// Re-reads the certificate, key and trust bundle; if any changed and
    /// together they make a valid config, that config becomes `current()`.
    /// If they do not, the previous config stays and the reason is returned
    /// (and logged with `tracing::warn!` the first time).
    ///
    /// Each reload starts a new ticket key and session cache, so sessions
    /// resumed afterwards were first verified under the new trust bundle.
    pub fn reload_if_changed(&self) -> Reload {
        match &self.cfg {
            Some(cfg) => self.reloader.reload_if_changed(|files| build(cfg, files)),
            None => Reload::Unchanged,
        }
    }

    /// A config built elsewhere, served as is: nothing is read from disk and
    /// `reload_if_changed` always says `Unchanged`. For tests of the proxy
    /// engine, and for callers that manage material themselves.
    pub fn fixed(config: Arc<ServerConfig>) -> Self {
        Self {
            cfg: None,
            reloader: Reloader::fixed(config),
        }
    }

    /// The paths and policy this was loaded with; `None` for [`Self::fixed`].
    pub fn material(&self) -> Option<&ServerMaterialConfig> {
        self.cfg.as_ref()
    }
}

fn build(cfg: &ServerMaterialConfig, files: &Files) -> Result<Arc<ServerConfig>, MaterialError> {
    let provider = provider();
    // The chain and key this listener presents.
    let certified = material::certified_key(files, &cfg.cert, &cfg.key, &provider)?;
    // The versions it accepts.
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(cfg.versions.rustls())
        .map_err(MaterialError::Tls)?;
    // Who may connect: anyone (plain TLS), or a verified chain whose SPIFFE
    // ID is admitted.
    let builder = match &cfg.client_trust {
        None => builder.with_no_client_auth(),
        Some(trust) => {
            builder.with_client_cert_verifier(client_verifier(files, trust, cfg, &provider)?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // Resumption: a session cache for TLS 1.2 IDs and a ticket key for 1.3.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = ticketer().map_err(MaterialError::Tls)?;
    // The application protocols it announces.
    config.alpn_protocols.clone_from(&cfg.alpn);
    Ok(Arc::new(config))
}

fn client_verifier(
    files: &Files,
    trust: &Path,
    cfg: &ServerMaterialConfig,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<SpiffeClientVerifier>, MaterialError> {
    let roots = material::roots(files, trust)?;
    let chain = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| MaterialError::BadTrust {
            path: trust.to_path_buf(),
            reason: e.to_string(),
        })?;
    let admitted = Admitted::new(cfg.allowed_identities.clone(), "client");
    Ok(Arc::new(SpiffeClientVerifier::new(chain, admitted)))
}
