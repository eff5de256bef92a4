//! The generator's TLS client: TLS 1.3 only, ring, no session resumption,
//! no server verification (see the parent module for why).

use std::{fs, sync::Arc};

use anyhow::Context;
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

use super::Args;

/// The name sent in SNI (the perf certificate has it as a DNS SAN).
pub(super) fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// Accepts any certificate and signature: the generator measures servers,
/// it does not authenticate them.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for `args`.
///
/// # Errors
/// The client certificate or key cannot be read.
pub(super) fn client_config(args: &Args) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)));
    let mut config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(
                &fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            )
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("certificates in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_slice(
                &fs::read(key).with_context(|| format!("reading {}", key.display()))?,
            )
            .with_context(|| format!("the key in {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate")?
        }
        _ => builder.with_no_client_auth(),
    };
    // Every new connection is a full handshake, on every server alike.
    config.resumption = Resumption::disabled();
    Ok(config)
}
