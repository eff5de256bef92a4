//! The rule sets the scenarios load: R rules that never match the
//! generated traffic, so every packet is checked against all of them and
//! then allowed, written three ways: a Calico GlobalNetworkPolicy for
//! causeway, and for Linux an nftables forward chain of R linear rules or
//! one rule over a set of R elements.
//!
//! Rule `i` denies UDP from `10.1.(i / 50000).2` to port
//! `10000 + i % 50000`; the generator sends from 10.1.0.2 to port
//! [`super::SINK_PORT`], below 10000, so none matches (the first 50 000
//! rules have the generator's source address, the rest do not).
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// The rules' ports start here, above every port the generator uses.
const FIRST_PORT: u32 = 10_000;
/// Distinct ports before the source address changes.
const PORTS: u32 = 50_000;

/// Rule `i`'s (source address, destination port).
fn rule(i: u32) -> (String, u32) {
    (format!("10.1.{}.2", i / PORTS), FIRST_PORT + i % PORTS)
}

/// The static endpoint of island B's server, which the policy selects.
pub(crate) const ENDPOINTS: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata:
  name: server
  namespace: island-b
  labels:
    role: server
spec:
  ips: [10.2.0.2, 'fd00:b::2']
";

/// A GlobalNetworkPolicy on island B's server: `rules` deny rules, then
/// allow everything else.
pub(crate) fn calico(rules: u32) -> String {
    let mut y = String::with_capacity(120 * rules as usize + 400);
    y.push_str(
        "apiVersion: projectcalico.org/v3\n\
         kind: GlobalNetworkPolicy\n\
         metadata:\n  name: perf-ingress\n\
         spec:\n  order: 10\n  selector: role == 'server'\n  types: [Ingress]\n  ingress:\n",
    );
    for i in 0..rules {
        let (src, port) = rule(i);
        let _ = writeln!(
            y,
            "    - action: Deny\n      protocol: UDP\n      source:\n        nets: [{src}/32]\n      destination:\n        ports: [{port}]"
        );
    }
    y.push_str("    - action: Allow\n");
    y
}

/// The nftables forward chain with `rules` linear rules and a final accept;
/// empty for 0 rules (no table at all).
pub(crate) fn nft_linear(rules: u32) -> String {
    if rules == 0 {
        return String::new();
    }
    let mut t = String::with_capacity(60 * rules as usize + 200);
    t.push_str(
        "table inet filter {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n",
    );
    for i in 0..rules {
        let (src, port) = rule(i);
        let _ = writeln!(t, "    ip saddr {src} udp dport {port} drop");
    }
    t.push_str("    accept\n  }\n}\n");
    t
}

/// The same rules as one lookup in a set of (source, port) pairs, then
/// accept; empty for 0 rules.
pub(crate) fn nft_set(rules: u32) -> String {
    if rules == 0 {
        return String::new();
    }
    let mut t = String::with_capacity(30 * rules as usize + 300);
    t.push_str(
        "table inet filter {\n  set deny {\n    type ipv4_addr . inet_service\n    elements = {\n",
    );
    for i in 0..rules {
        let (src, port) = rule(i);
        let sep = if i + 1 == rules { "" } else { "," };
        let _ = writeln!(t, "      {src} . {port}{sep}");
    }
    t.push_str(
        "    }\n  }\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    \
         ip saddr . udp dport @deny drop\n    accept\n  }\n}\n",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_has_the_rules_asked_for() {
        assert_eq!(calico(3).matches("action: Deny").count(), 3);
        assert!(calico(0).contains("action: Allow"));
        assert_eq!(nft_linear(3).matches(" drop").count(), 3);
        assert_eq!(nft_set(3).matches(" . 1000").count(), 3);
        assert!(nft_linear(0).is_empty() && nft_set(0).is_empty());
    }

    #[test]
    fn no_rule_matches_the_generated_traffic() {
        for i in [0, 1, 49_999, 50_000, 99_999] {
            let (_, port) = rule(i);
            assert!(port >= FIRST_PORT && port != u32::from(super::super::SINK_PORT));
        }
        assert_eq!(rule(50_000).0, "10.1.1.2");
    }
}
