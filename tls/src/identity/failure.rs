//! Why a handshake failed, as a small label for metrics.

use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};

/// Why a TLS handshake failed, from either side. A `Copy` enum that indexes
/// a counter array ([`HandshakeFailure::index`]) and names a metric label
/// ([`HandshakeFailure::as_str`]).
///
/// The same reason is given whether this side refused the peer or the peer
/// refused us with the matching alert: the driver knows which side it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// mTLS was required and the client sent no certificate.
    NoClientCert,
    /// The peer's chain does not lead to a trusted CA.
    UnknownCa,
    /// The peer's certificate (or one in its chain) has expired.
    Expired,
    /// The peer's certificate is not valid yet (clock skew, or issued ahead).
    NotYetValid,
    /// The chain is good but the peer's SPIFFE ID is not on the allow-list
    /// (or it has none).
    IdentityNotAdmitted,
    /// Any other certificate problem: bad encoding, signature, wrong EKU.
    BadCertificate,
    /// No TLS version in common, e.g. a TLS 1.2-only client to a 1.3-only
    /// listener.
    ProtocolVersion,
    /// The peer broke the protocol (unexpected or malformed messages).
    PeerMisbehaved,
    /// No application protocol in common: the client offered ALPN
    /// protocols none of which the service announces (RFC 7301 section
    /// 3.2), or the upstream refused ours.
    NoApplicationProtocol,
    /// Anything else: no cipher suite in common, internal errors.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in `index` order.
    pub const ALL: [Self; 10] = [
        Self::NoClientCert,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::IdentityNotAdmitted,
        Self::BadCertificate,
        Self::ProtocolVersion,
        Self::PeerMisbehaved,
        Self::NoApplicationProtocol,
        Self::Other,
    ];

    /// The snake_case metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCert => "no_client_cert",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IdentityNotAdmitted => "identity_not_admitted",
            Self::BadCertificate => "bad_certificate",
            Self::ProtocolVersion => "protocol_version",
            Self::PeerMisbehaved => "peer_misbehaved",
            Self::NoApplicationProtocol => "no_application_protocol",
            Self::Other => "other",
        }
    }

    /// Position in [`Self::ALL`], for a `[u64; HandshakeFailure::ALL.len()]`
    /// counter array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Sorts a rustls handshake error into a [`HandshakeFailure`].
///
/// Covers both what this side detected (`InvalidCertificate`,
/// `NoCertificatesPresented`, `PeerIncompatible`) and the alert the peer sent
/// when it refused us (`AlertReceived`). This module's own refusal of a
/// non-admitted SPIFFE ID is `InvalidCertificate(ApplicationVerificationFailure)`,
/// sent as `access_denied`.
pub fn classify(err: &Error) -> HandshakeFailure {
    use HandshakeFailure as F;
    match err {
        Error::NoCertificatesPresented => F::NoClientCert,
        Error::NoApplicationProtocol => F::NoApplicationProtocol,
        Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer => F::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => F::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                F::NotYetValid
            }
            CertificateError::ApplicationVerificationFailure => F::IdentityNotAdmitted,
            _ => F::BadCertificate,
        },
        Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => F::NoClientCert,
            AlertDescription::UnknownCA => F::UnknownCa,
            // RFC 8446 §6.2 uses certificate_expired for "not currently
            // valid", so a received alert cannot tell NotYetValid apart.
            AlertDescription::CertificateExpired => F::Expired,
            AlertDescription::AccessDenied => F::IdentityNotAdmitted,
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked => F::BadCertificate,
            AlertDescription::ProtocolVersion => F::ProtocolVersion,
            AlertDescription::NoApplicationProtocol => F::NoApplicationProtocol,
            AlertDescription::UnexpectedMessage
            | AlertDescription::DecodeError
            | AlertDescription::IllegalParameter => F::PeerMisbehaved,
            _ => F::Other,
        },
        Error::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic,
        ) => F::ProtocolVersion,
        Error::PeerMisbehaved(_)
        | Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerSentOversizedRecord => F::PeerMisbehaved,
        _ => F::Other,
    }
}
