//! Peer verification: the chain against the mesh's trust bundle, then the
//! SPIFFE ID against an allow-list.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::spiffe::spiffe_id_of;

/// Which SPIFFE IDs a verifier admits.
#[derive(Debug)]
pub(crate) struct Admitted {
    ids: Vec<String>,
    /// "client" or "server", for the log line.
    peer: &'static str,
}

impl Admitted {
    pub(crate) fn new(ids: Vec<String>, peer: &'static str) -> Self {
        Self { ids, peer }
    }

    /// Admits a leaf whose chain is already verified. Refuses with
    /// `ApplicationVerificationFailure`: the certificate is good but this peer
    /// is not welcome, which rustls sends as alert `access_denied`
    /// (RFC 8446 §6.2) and [`classify`](super::classify) reports as
    /// `identity_not_admitted`.
    fn check(&self, leaf: &CertificateDer<'_>) -> Result<(), Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let id = spiffe_id_of(leaf);
        if id.as_ref().is_some_and(|id| self.ids.contains(id)) {
            return Ok(());
        }
        tracing::debug!(
            peer = self.peer,
            identity = id.as_deref().unwrap_or("<none>"),
            "peer identity not admitted",
        );
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// The accepting side's client check: rustls's WebPKI verifier for the chain,
/// then [`Admitted`].
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    admitted: Admitted,
}

impl SpiffeClientVerifier {
    pub(crate) fn new(chain: Arc<dyn ClientCertVerifier>, admitted: Admitted) -> Self {
        Self { chain, admitted }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.chain.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.chain.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        self.admitted.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The originating side's server check: the chain against the trust bundle
/// with the server-auth EKU, *no* hostname check (the name the driver passes
/// is the upstream address; identity is the SPIFFE ID), then [`Admitted`].
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    admitted: Admitted,
}

impl SpiffeServerVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        admitted: Admitted,
    ) -> Self {
        Self {
            roots,
            provider,
            admitted,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        self.admitted.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
