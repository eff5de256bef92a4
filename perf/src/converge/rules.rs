//! The configuration the `converge` scenario changes, written two ways: as
//! Calico manifests for causeway and as one nftables table for the Linux
//! peer, rule for rule.
//!
//! `policies` GlobalNetworkPolicies of [`RULES_PER_POLICY`] ingress rules
//! each; policy `i` selects the StaticEndpoint `app-(i % ENDPOINTS)`, so
//! each of the [`ENDPOINTS`] endpoints has its own program of
//! `policies / ENDPOINTS` policies. Rule `k` (counted over all policies)
//! denies TCP from one /32 to one port. A change flips the port of one
//! policy's first rule ([`Flips`]), which is a real change every time.
//!
//! In nftables the same structure is what a Calico-style agent writes: the
//! forward chain jumps by destination address to one chain per endpoint,
//! which jumps to the chains of its policies in order and then drops
//! (selected by a policy, allowed by none); each policy chain has its 100
//! rules. A change replaces the whole table in one transaction
//! (`table`, `delete table`, `table { ... }` in one `nft -f`).
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Rules in each policy.
pub(crate) const RULES_PER_POLICY: u32 = 100;
/// StaticEndpoints the policies select.
pub(crate) const ENDPOINTS: u32 = 10;
/// The nftables table of the peer.
pub(crate) const NFT_TABLE: &str = "cwperf";

/// Rule `k`'s (source address, destination port).
fn rule(k: u32) -> (String, u32) {
    (
        format!("10.{}.{}.{}", 128 + (k >> 16), (k >> 8) & 255, k & 255),
        10_000 + k % 50_000,
    )
}

/// The port of policy `i`'s first rule after an odd number of flips.
fn flipped_port(i: u32) -> u32 {
    60_000 + i % 5_000
}

/// Endpoint `e`'s address (island B's subnet; nothing is sent to it).
fn endpoint_ip(e: u32) -> String {
    format!("10.2.0.{}", 10 + e)
}

/// Which policies have their first rule's port flipped.
#[derive(Debug, Clone)]
pub(crate) struct Flips(Vec<bool>);

impl Flips {
    /// None flipped, for `policies` policies.
    pub(crate) fn new(policies: u32) -> Self {
        Self(vec![false; policies as usize])
    }

    /// Flips policy `i` (a change to it).
    pub(crate) fn flip(&mut self, i: u32) {
        let f = &mut self.0[i as usize];
        *f = !*f;
    }

    fn port(&self, i: u32, j: u32, k: u32) -> u32 {
        if j == 0 && self.0[i as usize] {
            flipped_port(i)
        } else {
            rule(k).1
        }
    }

    /// How many policies there are.
    pub(crate) fn policies(&self) -> u32 {
        self.0.len() as u32
    }
}

/// The StaticEndpoints, as YAML documents.
pub(crate) fn endpoints() -> String {
    let mut y = String::new();
    for e in 0..ENDPOINTS {
        let _ = write!(
            y,
            "---\napiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata:\n  name: app-{e}\n  namespace: island-b\n  labels:\n    app: app-{e}\nspec:\n  ips: [{}]\n",
            endpoint_ip(e)
        );
    }
    y
}

/// GlobalNetworkPolicy `i` as a YAML document.
pub(crate) fn policy(flips: &Flips, i: u32) -> String {
    let mut y = String::with_capacity(130 * RULES_PER_POLICY as usize + 300);
    let _ = write!(
        y,
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: perf-{i}\nspec:\n  order: {i}\n  selector: app == 'app-{}'\n  types: [Ingress]\n  ingress:\n",
        i % ENDPOINTS
    );
    for j in 0..RULES_PER_POLICY {
        let k = i * RULES_PER_POLICY + j;
        let (src, _) = rule(k);
        let port = flips.port(i, j, k);
        let _ = writeln!(
            y,
            "    - action: Deny\n      protocol: TCP\n      source:\n        nets: [{src}/32]\n      destination:\n        ports: [{port}]"
        );
    }
    y
}

/// Every endpoint and policy: the base configuration.
pub(crate) fn calico(flips: &Flips) -> String {
    let mut y = endpoints();
    for i in 0..flips.policies() {
        y.push_str(&policy(flips, i));
    }
    y
}

/// The nftables script that replaces the peer's table with the same rules
/// in one transaction.
pub(crate) fn nft(flips: &Flips) -> String {
    let policies = flips.policies();
    let mut t = String::with_capacity(50 * (policies * RULES_PER_POLICY) as usize + 4096);
    let _ = writeln!(
        t,
        "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\ntable inet {NFT_TABLE} {{"
    );
    for i in 0..policies {
        let _ = writeln!(t, "  chain pol-{i} {{");
        for j in 0..RULES_PER_POLICY {
            let k = i * RULES_PER_POLICY + j;
            let (src, _) = rule(k);
            let _ = writeln!(
                t,
                "    ip saddr {src} tcp dport {} drop",
                flips.port(i, j, k)
            );
        }
        t.push_str("  }\n");
    }
    for e in 0..ENDPOINTS {
        let _ = writeln!(t, "  chain ep-{e} {{");
        for i in (e..policies).step_by(ENDPOINTS as usize) {
            let _ = writeln!(t, "    jump pol-{i}");
        }
        t.push_str("    drop\n  }\n");
    }
    t.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    for e in 0..ENDPOINTS {
        let _ = writeln!(t, "    ip daddr {} jump ep-{e}", endpoint_ip(e));
    }
    t.push_str("  }\n}\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_have_the_same_rules() {
        let flips = Flips::new(20);
        let rules = 20 * RULES_PER_POLICY as usize;
        assert_eq!(calico(&flips).matches("action: Deny").count(), rules);
        assert_eq!(nft(&flips).matches(" drop\n").count(), rules + 10);
        assert_eq!(endpoints().matches("kind: StaticEndpoint").count(), 10);
    }

    #[test]
    fn a_flip_changes_one_rule_of_one_policy_and_back() {
        let base = Flips::new(20);
        let mut flips = base.clone();
        flips.flip(7);
        let diff = |a: &str, b: &str| a.lines().zip(b.lines()).filter(|(x, y)| x != y).count();
        assert_eq!(diff(&policy(&base, 7), &policy(&flips, 7)), 1);
        assert_eq!(policy(&base, 6), policy(&flips, 6));
        assert_eq!(diff(&nft(&base), &nft(&flips)), 1);
        flips.flip(7);
        assert_eq!(nft(&base), nft(&flips));
    }

    #[test]
    fn each_endpoint_jumps_to_the_policies_that_select_it() {
        let t = nft(&Flips::new(20));
        assert!(t.contains("  chain ep-3 {\n    jump pol-3\n    jump pol-13\n    drop\n"));
        assert!(policy(&Flips::new(20), 13).contains("selector: app == 'app-3'"));
    }
}
