//! TLS material, SPIFFE identities and who may talk to whom.
//!
//! # What
//!
//! Everything the terminator needs to know about certificates, and nothing
//! about sockets:
//!
//! - [`ServerTls`] turns a certificate, a key and (for mTLS) a client trust
//!   bundle on disk into an [`Arc<rustls::ServerConfig>`](rustls::ServerConfig)
//!   for the accepting side; [`ClientTls`] does the same for the originating
//!   side with an [`Arc<rustls::ClientConfig>`](rustls::ClientConfig).
//! - Both verify peers by chain *and* by SPIFFE ID: the peer's identity is the
//!   single `spiffe://` URI SAN of its leaf certificate (an X.509-SVID), and an
//!   allow-list of identities decides who is admitted. [`peer_identity`] reads
//!   that identity off an established connection.
//! - Both reload: [`ServerTls::reload_if_changed`] re-reads the files, and a
//!   new config replaces the old one only if every file parses and the key
//!   matches the certificate. Connections already made keep the config they
//!   were made with.
//! - [`classify`] sorts a failed handshake into a [`HandshakeFailure`], a small
//!   `Copy` reason that indexes a counter array.
//! - [`ca`] is a lab certificate authority that issues SVIDs, so tests and the
//!   lab need no outside PKI.
//!
//! # Why
//!
//! Workloads in a mesh are named by who they are (a SPIFFE ID such as
//! `spiffe://cluster.local/ns/lab/sa/gateway`), not by where they are: a pod's
//! address changes and its DNS name proves nothing. So, like Linkerd's proxy,
//! causeway checks the chain against the mesh's own trust bundle, ignores the
//! DNS name, and authorizes on the SPIFFE ID. The module is pure policy over
//! rustls configs: the io_uring driver only moves bytes through the
//! `ServerConnection`/`ClientConnection` these configs make, which is what
//! lets the tests below run real handshakes in memory.
//!
//! Certificates rotate (cert-manager, SPIRE, a Kubernetes secret remount), so
//! reload is built in: the driver calls `reload_if_changed` on a timer and
//! takes `current()` for each new connection; `current()` is one atomic load.

mod client;
mod error;
mod failure;
mod material;
mod reload;
mod server;
mod spiffe;
mod verify;

pub mod ca;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{ClientMaterialConfig, ClientTls};
pub use error::MaterialError;
pub use failure::{HandshakeFailure, classify};
pub use material::MAX_MATERIAL_FILE;
pub use reload::Reload;
pub use server::{ServerMaterialConfig, ServerTls};
pub use spiffe::{peer_identity, spiffe_id_of};

/// Which TLS versions a config accepts or offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersions {
    /// TLS 1.3 only (RFC 8446). The default: the mesh needs nothing older.
    #[default]
    Tls13,
    /// TLS 1.2 (RFC 5246) and 1.3, for peers that cannot speak 1.3.
    Tls12And13,
}

impl TlsVersions {
    fn rustls(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            Self::Tls13 => TLS13_ONLY,
            Self::Tls12And13 => rustls::ALL_VERSIONS,
        }
    }
}

/// The crypto provider every config in this module is built with: aws-lc-rs
/// when the crate's `aws-lc-rs` feature is on, ring otherwise.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// A session-ticket encrypter from the same provider as [`provider`].
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(not(feature = "aws-lc-rs"))]
    return rustls::crypto::ring::Ticketer::new();
}
