//! A lab certificate authority that issues X.509-SVIDs.
//!
//! # What
//!
//! [`Ca`] makes or loads a self-signed ECDSA P-256 CA and issues leaves
//! ([`Leaf`]) with a SPIFFE ID, DNS and IP SANs, a validity window and
//! server/client EKUs. [`lab_pki`] lays out the lab's whole PKI in one
//! directory: the CA, the gateway's certificate, a client's and an
//! upstream's.
//!
//! # Why
//!
//! Tests and the network-namespace lab need real certificates, including
//! deliberately bad ones (expired, from another CA, with the wrong identity),
//! and must not depend on an outside PKI or on `openssl` being scripted
//! right. This is not a production CA: keys sit in plain files (mode 0600)
//! and nothing is revoked.
//!
//! # RSA
//!
//! rcgen can generate RSA keys only with aws-lc-rs. With the default ring
//! provider, [`KeyKind::Rsa2048`] fails with [`CaError::RsaUnavailable`];
//! generate the key elsewhere (`openssl genpkey -algorithm RSA
//! -pkeyopt rsa_keygen_bits:2048`, which writes PKCS#8) and pass it as
//! [`KeyKind::Pem`]. Built with the `aws-lc-rs` feature, `Rsa2048` works.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::spiffe::{self, is_spiffe_id};
use super::{ClientMaterialConfig, ServerMaterialConfig, TlsVersions};

/// How long a CA made by [`Ca::new`] is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long [`lab_pki`]'s leaves are valid.
const LAB_LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// Files [`lab_pki`] would reuse are reissued when they expire sooner than this.
const REUSE_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// Backdating of `not_before`, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// What went wrong making or using the lab CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused: a bad key or certificate PEM, an unencodable name.
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: String,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("{} does not match the CA certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// RSA key generation needs the `aws-lc-rs` feature.
    #[error(
        "RSA key generation needs causeway-tls's `aws-lc-rs` feature; with ring, generate \
         the key with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` and \
         pass it as KeyKind::Pem"
    )]
    RsaUnavailable,
    /// A SPIFFE ID or trust domain is malformed.
    #[error("{0:?} is not a SPIFFE ID (spiffe://<trust-domain>/<path>)")]
    NotSpiffeId(String),
}

fn rcgen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CaError {
    let what = what.into();
    move |source| CaError::Rcgen { what, source }
}

/// The key a leaf is issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A new ECDSA P-256 key.
    EcdsaP256,
    /// A new RSA 2048 key; needs the `aws-lc-rs` feature (see the module docs).
    Rsa2048,
    /// An existing key, as PEM (PKCS#8 for RSA under ring).
    Pem(String),
}

/// What to put in a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The URI SAN: the SVID's identity.
    pub spiffe_id: Option<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addrs: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The key to issue for.
    pub key: KeyKind,
    /// Extended key usage serverAuth.
    pub server: bool,
    /// Extended key usage clientAuth.
    pub client: bool,
}

impl Leaf {
    /// An ECDSA SVID for `spiffe_id`, valid from an hour ago for 90 days, for
    /// both server and client use.
    pub fn svid(spiffe_id: &str) -> Self {
        let now = SystemTime::now();
        Self {
            spiffe_id: Some(spiffe_id.to_owned()),
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            not_before: now - BACKDATE,
            not_after: now + LAB_LEAF_LIFETIME,
            key: KeyKind::EcdsaP256,
            server: true,
            client: true,
        }
    }
}

/// An issued leaf: certificate and key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf certificate (the chain is just the leaf: the CA is the root).
    pub cert_pem: String,
    /// Its private key, PKCS#8.
    pub key_pem: String,
}

impl Issued {
    /// Writes `dir/stem.pem` and `dir/stem-key.pem` (mode 0600), each
    /// atomically, and returns their paths.
    ///
    /// # Errors
    ///
    /// [`CaError::Io`] if a file cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), CaError> {
        write_pair(dir, stem, &self.cert_pem, &self.key_pem)
    }
}

/// A certificate authority: its certificate and key.
pub struct Ca {
    /// The CA certificate as rcgen re-derives it; used for its name and key
    /// identifier when signing.
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as written or loaded, byte for byte.
    cert_pem: String,
}

impl Ca {
    /// A new self-signed ECDSA P-256 CA named `common_name`, valid from an
    /// hour ago for ten years.
    ///
    /// # Errors
    ///
    /// [`CaError::Rcgen`] if key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(now + CA_LIFETIME);
        params.serial_number = Some(serial());
        let issuer = params
            .self_signed(&key)
            .map_err(rcgen_err("self-signing the CA"))?;
        let cert_pem = issuer.pem();
        Ok(Self {
            issuer,
            key,
            cert_pem,
        })
    }

    /// Loads a CA from its PEM certificate and key.
    ///
    /// # Errors
    ///
    /// [`CaError::Io`] if a file cannot be read, [`CaError::Rcgen`] if one
    /// does not parse, [`CaError::KeyMismatch`] if the key is not the CA's.
    pub fn load(cert_pem_path: &Path, key_pem_path: &Path) -> Result<Self, CaError> {
        let cert_pem = read_string(cert_pem_path)?;
        let key_pem = read_string(key_pem_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(rcgen_err(format!(
            "parsing the CA key {}",
            key_pem_path.display()
        )))?;
        let what = format!("parsing the CA certificate {}", cert_pem_path.display());
        let params = CertificateParams::from_ca_cert_pem(&cert_pem).map_err(rcgen_err(&what))?;
        let der = pem_der(&cert_pem).ok_or(CaError::Rcgen {
            what,
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
        if !key_matches(&der, &key) {
            return Err(CaError::KeyMismatch {
                cert: cert_pem_path.to_path_buf(),
                key: key_pem_path.to_path_buf(),
            });
        }
        let issuer = params
            .self_signed(&key)
            .map_err(rcgen_err("re-deriving the CA"))?;
        Ok(Self {
            issuer,
            key,
            cert_pem,
        })
    }

    /// The CA certificate, PEM: the trust bundle for peers of its leaves.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `dir/stem.pem` (the certificate) and `dir/stem-key.pem` (the
    /// key, mode 0600), each atomically, and returns their paths.
    ///
    /// # Errors
    ///
    /// [`CaError::Io`] if a file cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), CaError> {
        write_pair(dir, stem, &self.cert_pem, &self.key.serialize_pem())
    }

    /// Issues a leaf certificate signed by this CA.
    ///
    /// # Errors
    ///
    /// [`CaError::NotSpiffeId`] for a malformed `spiffe_id`,
    /// [`CaError::RsaUnavailable`] for `Rsa2048` without aws-lc-rs, and
    /// [`CaError::Rcgen`] if a key or name cannot be encoded.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, CaError> {
        let key = match &leaf.key {
            KeyKind::EcdsaP256 => {
                KeyPair::generate().map_err(rcgen_err("generating an ECDSA key"))?
            }
            KeyKind::Rsa2048 => match KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256) {
                Ok(key) => key,
                Err(rcgen::Error::KeyGenerationUnavailable) => return Err(CaError::RsaUnavailable),
                Err(e) => return Err(rcgen_err("generating an RSA key")(e)),
            },
            KeyKind::Pem(pem) => {
                KeyPair::from_pem(pem).map_err(rcgen_err("parsing the leaf key"))?
            }
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let common_name = leaf
            .spiffe_id
            .as_deref()
            .or(leaf.dns_names.first().map(String::as_str))
            .unwrap_or("causeway lab leaf");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(id) = &leaf.spiffe_id {
            if !is_spiffe_id(id) {
                return Err(CaError::NotSpiffeId(id.clone()));
            }
            let uri = id
                .clone()
                .try_into()
                .map_err(rcgen_err("encoding the SPIFFE ID"))?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        for name in &leaf.dns_names {
            let dns = name
                .clone()
                .try_into()
                .map_err(rcgen_err(format!("encoding DNS name {name:?}")))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(leaf.ip_addrs.iter().copied().map(SanType::IpAddress));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if matches!(leaf.key, KeyKind::Rsa2048) || key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        if leaf.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if leaf.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::from(leaf.not_before);
        params.not_after = OffsetDateTime::from(leaf.not_after);
        params.serial_number = Some(serial());
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(rcgen_err("signing the leaf"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// One leaf of the lab PKI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabLeaf {
    /// Its certificate, PEM.
    pub cert: PathBuf,
    /// Its key, PEM (mode 0600).
    pub key: PathBuf,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
}

/// The lab PKI laid out by [`lab_pki`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabPki {
    /// The CA certificate: the trust bundle on every side.
    pub ca_cert: PathBuf,
    /// The CA key.
    pub ca_key: PathBuf,
    /// The gateway: `spiffe://<td>/ns/lab/sa/gateway`, with the IP SANs
    /// asked for and `localhost`; serverAuth and clientAuth, since it both
    /// accepts and originates.
    pub server: LabLeaf,
    /// A downstream client: `spiffe://<td>/ns/lab/sa/client`, clientAuth.
    pub client: LabLeaf,
    /// An upstream server: `spiffe://<td>/ns/lab/sa/upstream`, serverAuth.
    pub upstream: LabLeaf,
}

impl LabPki {
    /// The gateway's listener: mTLS, admitting only the lab client.
    pub fn server_material(&self) -> ServerMaterialConfig {
        ServerMaterialConfig {
            cert: self.server.cert.clone(),
            key: self.server.key.clone(),
            client_trust: Some(self.ca_cert.clone()),
            allowed_identities: vec![self.client.spiffe_id.clone()],
            versions: TlsVersions::Tls13,
            alpn: Vec::new(),
        }
    }

    /// The gateway's upstream side: its own identity, admitting only the lab
    /// upstream.
    pub fn upstream_material(&self) -> ClientMaterialConfig {
        ClientMaterialConfig {
            cert: self.server.cert.clone(),
            key: self.server.key.clone(),
            trust: self.ca_cert.clone(),
            upstream_identities: vec![self.upstream.spiffe_id.clone()],
            versions: TlsVersions::Tls13,
        }
    }
}

/// Creates the lab PKI in `dir` for `trust_domain`, or reuses what is there.
///
/// Files: `ca.pem`/`ca-key.pem`, `server.pem`/`server-key.pem`,
/// `client.pem`/`client-key.pem`, `upstream.pem`/`upstream-key.pem`. A file
/// pair is reused if it parses, is signed by the CA, has the expected SPIFFE
/// ID (and, for the server, exactly `server_ips` as IP SANs) and is valid
/// for at least another day; otherwise it is (re)issued. A new CA reissues
/// every leaf.
///
/// # Errors
///
/// [`CaError::NotSpiffeId`] for a malformed trust domain, [`CaError::Io`]
/// if `dir` cannot be written, [`CaError::Rcgen`] if issuing fails.
pub fn lab_pki(dir: &Path, trust_domain: &str, server_ips: &[IpAddr]) -> Result<LabPki, CaError> {
    let td_id = format!("spiffe://{trust_domain}");
    if trust_domain.contains('/') || !is_spiffe_id(&td_id) {
        return Err(CaError::NotSpiffeId(td_id));
    }
    fs::create_dir_all(dir).map_err(|source| CaError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let existing = Ca::load(&ca_cert, &ca_key)
        .ok()
        .filter(|ca| pem_der(&ca.cert_pem).is_some_and(|der| still_valid(&der)));
    let fresh_ca = existing.is_none();
    let ca = match existing {
        Some(ca) => ca,
        None => {
            let ca = Ca::new(&format!("causeway lab CA ({trust_domain})"))?;
            ca.write(dir, "ca")?;
            ca
        }
    };
    let leaf = |stem: &str, sa: &str, ips: &[IpAddr], server: bool, client: bool| {
        let spiffe_id = format!("{td_id}/ns/lab/sa/{sa}");
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}-key.pem")),
        );
        if fresh_ca || !reusable(&ca, &cert, &key, &spiffe_id, ips) {
            let mut spec = Leaf::svid(&spiffe_id);
            spec.ip_addrs = ips.to_vec();
            if server {
                spec.dns_names = vec!["localhost".to_owned()];
            }
            spec.server = server;
            spec.client = client;
            ca.issue(&spec)?.write(dir, stem)?;
        }
        Ok::<_, CaError>(LabLeaf {
            cert,
            key,
            spiffe_id,
        })
    };
    let server = leaf("server", "gateway", server_ips, true, true)?;
    let client = leaf("client", "client", &[], false, true)?;
    let upstream = leaf("upstream", "upstream", &[], true, false)?;
    Ok(LabPki {
        ca_cert,
        ca_key,
        server,
        client,
        upstream,
    })
}

/// Whether an existing leaf pair can stand: see [`lab_pki`].
fn reusable(ca: &Ca, cert: &Path, key: &Path, spiffe_id: &str, ips: &[IpAddr]) -> bool {
    let (Ok(cert_pem), Ok(key_pem)) = (fs::read_to_string(cert), fs::read_to_string(key)) else {
        return false;
    };
    let (Some(der), Some(ca_der), Ok(key)) = (
        pem_der(&cert_pem),
        pem_der(&ca.cert_pem),
        KeyPair::from_pem(&key_pem),
    ) else {
        return false;
    };
    let (Ok((_, x509)), Ok((_, ca_x509))) = (
        x509_parser::parse_x509_certificate(&der),
        x509_parser::parse_x509_certificate(&ca_der),
    ) else {
        return false;
    };
    let signed_by_ca = x509.issuer().as_raw() == ca_x509.subject().as_raw()
        && x509.verify_signature(Some(ca_x509.public_key())).is_ok();
    let mut have_ips = ip_sans(&x509);
    let mut want_ips = ips.to_vec();
    have_ips.sort();
    want_ips.sort();
    signed_by_ca
        && still_valid(&der)
        && key_matches(&der, &key)
        && spiffe::spiffe_id_of(&der.as_slice().into()).as_deref() == Some(spiffe_id)
        && have_ips == want_ips
}

fn ip_sans(x509: &X509Certificate<'_>) -> Vec<IpAddr> {
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Valid now and for at least [`REUSE_MARGIN`] more.
fn still_valid(der: &[u8]) -> bool {
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let now = OffsetDateTime::now_utc();
    let validity = x509.validity();
    validity.not_before.to_datetime() <= now
        && validity.not_after.to_datetime() >= now + REUSE_MARGIN
}

fn key_matches(cert_der: &[u8], key: &KeyPair) -> bool {
    x509_parser::parse_x509_certificate(cert_der)
        .is_ok_and(|(_, x509)| x509.public_key().raw == key.public_key_der().as_slice())
}

/// The DER of the first PEM certificate in `pem`.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// A random positive 128-bit serial (RFC 5280 §4.1.2.2: at most 20 octets).
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A lab serial only needs to differ between issuances: if the system RNG
    // fails, fall back on the clock rather than failing the issue.
    if super::provider().secure_random.fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn read_string(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_pair(
    dir: &Path,
    stem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(PathBuf, PathBuf), CaError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    // Key first: a reader that sees the new certificate then finds its key.
    write_atomic(&key, key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert, cert_pem.as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// Writes to a temporary file beside `path` and renames it into place, so a
/// reader (a reload) never sees half a file.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)
}
