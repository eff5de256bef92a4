//! Kinds as the API names them in a `ResourceRef`, and as operators type
//! them.

use causeway_control::proto::ResourceRef;

/// Every kind, spelled as a `ResourceRef` spells it.
const KINDS: [&str; 13] = [
    "GlobalNetworkPolicy",
    "NetworkPolicy",
    "GlobalNetworkSet",
    "NetworkSet",
    "Tier",
    "networking.k8s.io/NetworkPolicy",
    "Namespace",
    "Pod",
    "StaticEndpoint",
    "Port",
    "Route",
    "Identity",
    "TLSService",
];

/// The API's spelling of a kind typed in any case (`globalnetworkpolicy`
/// as `apply` prints it); a kind the client does not know goes as typed,
/// for the appliance to judge.
pub(super) fn canonical(kind: &str) -> String {
    KINDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(kind))
        .map_or_else(|| kind.to_owned(), |k| (*k).to_owned())
}

/// The `ResourceRef` kind of a stored resource: the bare kind, except a
/// Kubernetes NetworkPolicy, which is `networking.k8s.io/NetworkPolicy`.
pub(super) fn ref_kind(api_version: &str, kind: &str) -> String {
    match api_version.split_once('/') {
        Some((group @ "networking.k8s.io", _)) => format!("{group}/{kind}"),
        _ => kind.to_owned(),
    }
}

/// A resource as `kubectl` prints it: `kind/name` or
/// `kind/namespace/name`, the kind lowercased.
pub(super) fn ref_path(r: &ResourceRef) -> String {
    let kind = r.kind.to_lowercase();
    if r.namespace.is_empty() {
        format!("{kind}/{}", r.name)
    } else {
        format!("{kind}/{}/{}", r.namespace, r.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_in_any_case() {
        assert_eq!(canonical("globalnetworkpolicy"), "GlobalNetworkPolicy");
        assert_eq!(canonical("tlsservice"), "TLSService");
        assert_eq!(
            canonical("networking.k8s.io/networkpolicy"),
            "networking.k8s.io/NetworkPolicy"
        );
        assert_eq!(canonical("Gadget"), "Gadget");
    }

    #[test]
    fn only_the_kubernetes_policy_carries_its_group() {
        assert_eq!(
            ref_kind("networking.k8s.io/v1", "NetworkPolicy"),
            "networking.k8s.io/NetworkPolicy"
        );
        assert_eq!(
            ref_kind("projectcalico.org/v3", "NetworkPolicy"),
            "NetworkPolicy"
        );
        assert_eq!(ref_kind("v1", "Pod"), "Pod");
    }

    #[test]
    fn paths_are_lowercased_kind_namespace_name() {
        let r = |kind: &str, namespace: &str, name: &str| ResourceRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        assert_eq!(
            ref_path(&r("GlobalNetworkPolicy", "", "allow-web")),
            "globalnetworkpolicy/allow-web"
        );
        assert_eq!(
            ref_path(&r("NetworkPolicy", "shop", "db")),
            "networkpolicy/shop/db"
        );
    }
}
