//! Choosing a service by the server name (SNI) a client asks for, where
//! several services share one listen address.
//!
//! The driver accepts such clients on one listener and reports them as the
//! listener's service ([`ListenerSpec::accepts_for`]); the connection then
//! reads the ClientHello with [`rustls::server::Acceptor`] before any
//! service is chosen, so each service keeps its own certificate, client CA,
//! allowed identities and TLS versions. Matching follows Envoy's
//! `server_names`: an exact name first, then a `*.` wildcard for the first
//! label, then the address's default service (one configured without
//! server names); with no default, the client is refused and counted
//! ([`crate::metrics::ListenerRefusal`]).

use std::{collections::HashMap, net::SocketAddr};

use crate::metrics::ListenerRefusal;

/// A listener whose clients are routed by SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The address, for metrics.
    pub listen: SocketAddr,
    /// The service the driver reports this listener's accepts as (the
    /// first service on the address); its accept limits and handshake
    /// timeout apply until a service is chosen.
    pub accepts_for: usize,
    /// Server names (exact, or `*.` and a suffix) and the service each
    /// chooses.
    pub names: Vec<(String, usize)>,
    /// The service for clients that send no SNI or one not in `names`.
    pub default: Option<usize>,
    /// The services speak PostgreSQL: its SSLRequest comes before the
    /// ClientHello, or a ClientHello offering ALPN `postgresql` (direct
    /// TLS).
    pub postgres: bool,
}

/// A [`ListenerSpec`] ready for lookups.
#[derive(Debug)]
pub(crate) struct Router {
    exact: HashMap<String, usize>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
    pub(crate) postgres: bool,
    /// The listener's index in [`crate::metrics::WorkerMetrics`].
    pub(crate) metrics: usize,
}

impl Router {
    pub(crate) fn new(spec: &ListenerSpec, metrics: usize) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (name, service) in &spec.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => wildcard.insert(suffix.to_owned(), *service),
                None => exact.insert(name, *service),
            };
        }
        Self {
            exact,
            wildcard,
            default: spec.default,
            postgres: spec.postgres,
            metrics,
        }
    }

    /// The service for a ClientHello naming `sni` (`None`: no SNI).
    pub(crate) fn choose(&self, sni: Option<&str>) -> Result<usize, ListenerRefusal> {
        let Some(sni) = sni else {
            return self.default.ok_or(ListenerRefusal::NoSni);
        };
        let sni = sni.to_ascii_lowercase();
        let sni = sni.strip_suffix('.').unwrap_or(&sni);
        self.exact
            .get(sni)
            .or_else(|| {
                sni.split_once('.')
                    .and_then(|(_, suffix)| self.wildcard.get(suffix))
            })
            .copied()
            .or(self.default)
            .ok_or(ListenerRefusal::UnknownSni)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(default: Option<usize>) -> Router {
        Router::new(
            &ListenerSpec {
                listen: "10.2.0.2:443".parse().unwrap(),
                accepts_for: 0,
                names: vec![
                    ("db.example.com".into(), 0),
                    ("*.example.com".into(), 1),
                    ("Web.Example.Org".into(), 2),
                ],
                default,
                postgres: false,
            },
            0,
        )
    }

    #[test]
    fn exact_names_win_over_wildcards_and_case_does_not_matter() {
        let r = router(None);
        assert_eq!(r.choose(Some("db.example.com")), Ok(0));
        assert_eq!(r.choose(Some("DB.example.COM")), Ok(0));
        assert_eq!(r.choose(Some("web.example.org")), Ok(2));
        assert_eq!(r.choose(Some("cache.example.com")), Ok(1));
    }

    #[test]
    fn a_wildcard_covers_one_label_only() {
        let r = router(None);
        assert_eq!(
            r.choose(Some("example.com")),
            Err(ListenerRefusal::UnknownSni)
        );
        assert_eq!(
            r.choose(Some("a.b.example.com")),
            Err(ListenerRefusal::UnknownSni)
        );
    }

    #[test]
    fn without_a_default_unknown_and_absent_names_are_refused_apart() {
        let r = router(None);
        assert_eq!(r.choose(None), Err(ListenerRefusal::NoSni));
        assert_eq!(
            r.choose(Some("other.test")),
            Err(ListenerRefusal::UnknownSni)
        );
    }

    #[test]
    fn the_default_takes_what_no_name_chooses() {
        let r = router(Some(3));
        assert_eq!(r.choose(None), Ok(3));
        assert_eq!(r.choose(Some("other.test")), Ok(3));
        assert_eq!(r.choose(Some("db.example.com")), Ok(0));
    }
}
