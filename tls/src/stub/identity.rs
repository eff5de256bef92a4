//! TEMPORARY stub of helper's identity API (replaced at merge).
#![allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
use std::sync::Arc;
pub struct ServerTls(pub Arc<rustls::ServerConfig>);
impl ServerTls {
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}
pub struct ClientTls(pub Arc<rustls::ClientConfig>);
impl ClientTls {
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        self.0.clone()
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    NoClientCert,
    UnknownCa,
    Expired,
    NotYetValid,
    IdentityNotAdmitted,
    BadCertificate,
    ProtocolVersion,
    PeerMisbehaved,
    Other,
}
impl HandshakeFailure {
    pub fn as_str(self) -> &'static str {
        "other"
    }
}
pub fn classify(_e: &rustls::Error) -> HandshakeFailure {
    HandshakeFailure::Other
}
pub fn peer_identity(_c: &rustls::CommonState) -> Option<String> {
    None
}
