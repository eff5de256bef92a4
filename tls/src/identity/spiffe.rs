//! SPIFFE IDs: reading them off certificates and checking their syntax.
//!
//! An X.509-SVID carries its SPIFFE ID as its one URI SAN (SPIFFE X.509-SVID
//! spec §2: "An X.509 SVID MUST contain exactly one URI SAN").

use rustls::CommonState;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::MaterialError;

/// The SPIFFE ID of the peer's leaf certificate, once the handshake has got
/// that far: `None` when the peer sent no certificate or its leaf is not an
/// SVID (no URI SAN, several, or one that is not a SPIFFE ID).
///
/// Works on either side: pass a `ServerConnection` or `ClientConnection`
/// (both deref to [`CommonState`]), including resumed sessions, whose peer
/// chain rustls keeps in the session.
pub fn peer_identity(conn: &CommonState) -> Option<String> {
    spiffe_id_of(conn.peer_certificates()?.first()?)
}

/// The SPIFFE ID of a certificate: its single URI SAN, if that is a
/// well-formed `spiffe://` ID.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = x509.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    is_spiffe_id(uri).then(|| uri.to_owned())
}

/// Whether `s` is a SPIFFE ID (SPIFFE-ID spec §2): `spiffe://`, a trust
/// domain of `[a-z0-9._-]`, then zero or more `/segment`s of
/// `[a-zA-Z0-9._-]`, none empty, `.` or `..`, no trailing `/`.
pub(crate) fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let path_ok = !rest.contains('/')
        || path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    domain_ok && path_ok
}

/// Checks every entry of an allow-list.
pub(crate) fn validate(field: &'static str, ids: &[String]) -> Result<(), MaterialError> {
    match ids.iter().find(|id| !is_spiffe_id(id)) {
        Some(id) => Err(MaterialError::NotSpiffeId {
            field,
            id: id.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_spiffe_id;

    #[test]
    fn spiffe_id_syntax() {
        for ok in [
            "spiffe://cluster.local",
            "spiffe://cluster.local/ns/lab/sa/gateway",
            "spiffe://a-b_c.d/Path.With-Caps_1",
        ] {
            assert!(is_spiffe_id(ok), "{ok}");
        }
        for bad in [
            "",
            "https://cluster.local/ns/lab",
            "spiffe://",
            "spiffe:///ns/lab",
            "spiffe://Cluster.local/ns",
            "spiffe://cluster.local/",
            "spiffe://cluster.local//x",
            "spiffe://cluster.local/ns/../x",
            "spiffe://cluster.local/ns?x=1",
            "spiffe://user@cluster.local/ns",
            "spiffe://cluster.local:8443/ns",
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
    }
}
