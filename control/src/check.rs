//! `causeway run --check --config FILE` (as `nginx -t`): everything a
//! start would load and validate, without touching an interface, binding a
//! socket or writing the state.
//!
//! What it loads, in the order a start does: the configuration file
//! (every mistake, not only the first), the stored state in `state.dir`
//! (or, when there is none, the seed the file would make: its ports,
//! routes, terminator services and `policy.manifests`), the policy that
//! state compiles to, the identities' certificates, keys and trust bundles,
//! the control API's TCP certificates, the terminator's network namespace,
//! the ports' interfaces and the route table over their subnets. A deployment tool runs it on a new
//! configuration before restarting the service, so a bad template never
//! stops a running appliance.
//!
//! Departure from a start: the manifests named in `policy.manifests` are
//! checked even when a stored state is in force (a start ignores them then,
//! but SIGHUP re-applies them, and a deployment that templates them wants
//! to know now).

use std::path::{Path, PathBuf};

use crate::{config::Config, node, store::persist};

/// What a successful check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Where the state in force comes from.
    pub state: StateSource,
    /// Its generation (1 for a seed).
    pub generation: u64,
    /// Resources in it.
    pub resources: usize,
    /// Dataplane ports it starts.
    pub ports: usize,
    /// TLS services the terminator serves.
    pub services: usize,
}

/// Where the state a start would enforce comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSource {
    /// The stored state in this file.
    Stored(PathBuf),
    /// None is stored yet: the configuration file seeds it.
    Seed,
}

/// Checks the configuration at `path` and all it leads to.
///
/// # Errors
/// Every mistake found, each naming its file and field (or resource).
pub fn check(path: &Path) -> Result<Checked, Vec<String>> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: {e}")])?;
    let config: Config = serde_yaml::from_str(&text).map_err(|e| vec![format!("{file}: {e}")])?;
    let mut errors: Vec<String> = config
        .problems()
        .into_iter()
        .map(|p| format!("{file}: {p}"))
        .collect();
    let manifests = |errors: &mut Vec<String>| {
        if !config.policy.manifests.is_empty() {
            let checked = causeway_policy::load::check_paths(&config.policy.manifests);
            errors.extend(checked.errors.iter().map(ToString::to_string));
        }
    };
    let state = match persist::load(&config.state.dir) {
        Ok(Some(d)) => {
            let stored = persist::path(&config.state.dir);
            errors.extend(
                d.check(config.terminator.as_ref())
                    .iter()
                    .map(|e| format!("stored state {}: {e}", stored.display())),
            );
            manifests(&mut errors);
            Some((StateSource::Stored(stored), d))
        }
        // The file's own mistakes are named above; the seed would name
        // them again, so only its manifests are checked.
        Ok(None) if !errors.is_empty() => {
            manifests(&mut errors);
            None
        }
        Ok(None) => match node::seed_checked(&config) {
            Ok(d) => Some((StateSource::Seed, d)),
            Err(e) => {
                let name = file.to_string();
                errors.extend(e.into_iter().map(|e| e.replace(node::SEED_FILE, &name)));
                None
            }
        },
        Err(e) => {
            errors.push(format!("{file}: state.dir: {e:#}"));
            None
        }
    };
    if let Some(tcp) = &config.api.tcp {
        use causeway_tls::identity::{ServerMaterialConfig, ServerTls, TlsVersions};
        if let Err(e) = ServerTls::load(&ServerMaterialConfig {
            cert: tcp.cert.clone(),
            key: tcp.key.clone(),
            client_trust: Some(tcp.client_ca.clone()),
            allowed_identities: tcp.admin_identities.clone(),
            versions: TlsVersions::Tls13,
            alpn: Vec::new(),
        }) {
            errors.push(format!("{file}: api.tcp: {e}"));
        }
    }
    if let Some(ns) = config.terminator.as_ref().and_then(|t| t.netns.as_ref())
        && !ns.exists()
    {
        errors.push(format!(
            "{file}: terminator.netns: {} does not exist (make the namespace first: ip netns add NAME)",
            ns.display()
        ));
    }
    let (from, ports) = match &state {
        Some((StateSource::Stored(p), d)) => (
            format!("stored state {}", p.display()),
            d.appliance_set().port_configs(),
        ),
        _ => (file.to_string(), config.ports.clone()),
    };
    for p in &ports {
        if !interface_exists(&p.interface) {
            errors.push(format!(
                "{from}: port {}: interface {} does not exist in this network namespace",
                p.name, p.interface
            ));
        }
    }
    let Some((source, desired)) = state else {
        return Err(errors);
    };
    let appliance = desired.appliance_set();
    match appliance.route_configs() {
        Err(e) => errors.push(format!("{file}: routes: {e}")),
        // The route table a start builds, over the ports' subnets as the
        // kernel has them now (once every interface is there).
        Ok(routes) if errors.is_empty() && !appliance.ports.is_empty() => {
            let ports = appliance.port_configs();
            match causeway_dataplane::xdp::connected(&ports) {
                Ok(connected) => {
                    if let Err(e) = causeway_dataplane::route::build(&ports, &connected, &routes) {
                        let name = appliance.routes.keys().nth(e.index);
                        let name = name.map_or_else(String::new, |n| format!("Route/{n}: "));
                        errors.push(format!("{from}: {name}{e}"));
                    }
                }
                Err(e) => errors.push(format!("{from}: reading the ports' subnets: {e:#}")),
            }
        }
        Ok(_) => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Checked {
        generation: desired.generation,
        resources: desired.entries().len(),
        ports: ports.len(),
        services: appliance.service_configs().len(),
        state: source,
    })
}

/// Whether `name` is an interface of this network namespace (sysfs shows
/// the namespace of whoever mounted it; `ip netns exec` mounts its own).
fn interface_exists(name: &str) -> bool {
    !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cw-check-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp dir");
        d
    }

    #[test]
    fn a_good_configuration_passes_and_writes_nothing() {
        let d = tmp("good");
        let state = d.join("state");
        let cfg = write(
            &d,
            "c.yaml",
            &format!(
                "ports: [{{name: lo, interface: lo}}]\nworkers: {{cores: [0]}}\nstate: {{dir: {}}}\n",
                state.display()
            ),
        );
        let c = check(&cfg).expect("valid");
        assert_eq!(c.state, StateSource::Seed);
        assert_eq!((c.ports, c.services, c.generation), (1, 0, 1));
        assert!(!state.exists(), "--check must not seed the state");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_route_whose_next_hop_no_port_reaches_is_named() {
        let d = tmp("route");
        let config = |via: &str| {
            format!(
                "ports: [{{name: lo, interface: lo}}]\nroutes: [{{prefix: 10.3.0.0/16, via: {via}}}]\n\
                 workers: {{cores: [0]}}\nstate: {{dir: {}}}\n",
                d.join("state").display()
            )
        };
        // lo's subnet, 127.0.0.0/8, is in every network namespace.
        check(&write(&d, "good.yaml", &config("127.0.0.9"))).expect("reachable");
        let errors = check(&write(&d, "bad.yaml", &config("10.9.0.1"))).expect_err("refused");
        let all = errors.join("\n");
        assert!(
            all.contains("10.9.0.1 is not in any port's connected subnet"),
            "{all}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn every_mistake_is_named_not_only_the_first() {
        let d = tmp("bad");
        let pol = write(
            &d,
            "p.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  selector: \"a ==\"\n",
        );
        let cfg = write(
            &d,
            "c.yaml",
            &format!(
                "ports:\n  - {{name: a, interface: nosuchif0, queues: 0}}\n  - {{name: a, interface: lo}}\nworkers: {{cores: [999]}}\npolicy: {{manifests: [{}]}}\nstate: {{dir: {}}}\n",
                pol.display(),
                d.join("state").display()
            ),
        );
        let errors = check(&cfg).expect_err("invalid");
        let all = errors.join("\n");
        for needle in [
            "ports[0].queues",
            "ports[1].name",
            "workers.cores[0]",
            "spec.selector",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        let files = [cfg.display().to_string(), pol.display().to_string()];
        assert!(
            errors
                .iter()
                .all(|e| files.iter().any(|f| e.starts_with(f.as_str()))),
            "each names its file:\n{all}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn manifests_and_missing_interfaces_are_named() {
        let d = tmp("pol");
        let pol = write(
            &d,
            "p.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  selector: \"a ==\"\n",
        );
        let cfg = write(
            &d,
            "c.yaml",
            &format!(
                "ports: [{{name: a, interface: nosuchif0}}]\nworkers: {{cores: [0]}}\npolicy: {{manifests: [{}]}}\nstate: {{dir: {}}}\n",
                pol.display(),
                d.join("state").display()
            ),
        );
        let all = check(&cfg).expect_err("invalid").join("\n");
        assert!(all.contains("p.yaml"), "the manifest is named:\n{all}");
        assert!(all.contains("selector"), "the field is named:\n{all}");
        let fixed = write(
            &d,
            "p.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  selector: all()\n",
        );
        assert_eq!(fixed, pol);
        let all = check(&cfg).expect_err("invalid").join("\n");
        assert!(all.contains("interface nosuchif0 does not exist"), "{all}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unreadable_state_and_missing_certificates_are_named() {
        let d = tmp("state");
        let state = d.join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::write(state.join("desired.json"), "not json").expect("write");
        let cfg = write(
            &d,
            "c.yaml",
            &format!(
                "ports: [{{name: lo, interface: lo}}]\nworkers: {{cores: [0]}}\nstate: {{dir: {}}}\napi:\n  tcp: {{listen: 127.0.0.1:7443, cert: /nonexistent/c.pem, key: /nonexistent/k.pem, client_ca: /nonexistent/ca.pem, admin_identities: [spiffe://x/y]}}\n",
                state.display()
            ),
        );
        let all = check(&cfg).expect_err("invalid").join("\n");
        assert!(all.contains("state.dir"), "{all}");
        assert!(all.contains("api.tcp"), "{all}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
