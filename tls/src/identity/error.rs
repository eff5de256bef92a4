//! What can be wrong with TLS material on disk.

use std::io;
use std::path::{Path, PathBuf};

/// Why a certificate, key or trust bundle could not be turned into a config.
///
/// Every variant names the file (or config field) at fault, so the message
/// alone tells an operator what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// The file could not be read (missing, permissions, a directory).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file (a device such as `/dev/zero`, a
    /// FIFO, a socket or a directory): refused before a byte is read.
    #[error(
        "{}: not a regular file (a device, FIFO, socket or directory); name a PEM file",
        path.display()
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than any certificate, key or bundle should be.
    #[error(
        "{}: larger than {limit} bytes; a certificate chain, key or trust bundle is a few \
         kilobytes (a whole public CA bundle is a few hundred)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file is not well-formed PEM.
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error(
        "{}: no CERTIFICATE block; expected a PEM certificate chain, leaf first",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A `CERTIFICATE` block does not hold a parseable X.509 certificate.
    #[error("{}: certificate {index} cannot be parsed: {source}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Which certificate in the file, from 0.
        index: usize,
        /// What the certificate parser said.
        #[source]
        source: rustls::Error,
    },
    /// A key file holds no private key block.
    #[error(
        "{}: no private key; expected a PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1) or \
         RSA PRIVATE KEY (PKCS#1) block",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key parsed but the crypto provider cannot sign with it.
    #[error(
        "{}: private key not usable: {source}; ECDSA P-256/P-384, RSA (2048 bits or more) \
         and Ed25519 are supported",
        path.display()
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the provider said.
        #[source]
        source: rustls::Error,
    },
    /// The key is not the one the certificate was issued for.
    #[error(
        "{} does not match the certificate in {}; write both files from the same issuance",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A trust bundle holds no certificate usable as a trust anchor.
    #[error("{}: trust bundle holds no CA certificate", path.display())]
    EmptyTrust {
        /// The file.
        path: PathBuf,
    },
    /// A trust bundle holds a certificate that cannot be a trust anchor.
    #[error("{}: trust bundle rejected: {reason}", path.display())]
    BadTrust {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// An allow-list entry is not a SPIFFE ID.
    #[error(
        "{field}: {id:?} is not a SPIFFE ID; write spiffe://<trust-domain>/<path>, \
         e.g. spiffe://cluster.local/ns/default/sa/web"
    )]
    NotSpiffeId {
        /// The config field holding the list.
        field: &'static str,
        /// The entry.
        id: String,
    },
    /// Identities are listed but no client trust bundle is set, so no client
    /// certificate would ever be asked for and the list could never admit
    /// anyone.
    #[error("allowed_identities is set but client_trust is not; set client_trust to require mTLS")]
    IdentitiesWithoutTrust,
    /// rustls refused to build the config.
    #[error("building the TLS config: {0}")]
    Tls(#[source] rustls::Error),
}

impl MaterialError {
    /// The file at fault, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::NotAFile { path }
            | Self::TooLarge { path, .. }
            | Self::Pem { path, .. }
            | Self::NoCertificate { path }
            | Self::BadCertificate { path, .. }
            | Self::NoKey { path }
            | Self::BadKey { path, .. }
            | Self::EmptyTrust { path }
            | Self::BadTrust { path, .. } => Some(path),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::NotSpiffeId { .. } | Self::IdentitiesWithoutTrust | Self::Tls(_) => None,
        }
    }
}
