//! The appliance configuration a lab starts with: `cli/lab/default.yaml`,
//! built into the binary, with the lab's paths filled in, followed by
//! `cli/lab/terminator.yaml` once the configuration has a `terminator:`
//! section (see [`TERMINATOR_IN_CONFIG`]).
//!
//! Placeholders are `{{name}}`. One stands at the start of a YAML scalar, and
//! the whole scalar (the placeholder and what follows it up to a space, `,`,
//! `]` or `}`, e.g. `{{pki}}/ca.pem`) is written back as one YAML string, so
//! that any path reads back as itself.

use std::path::Path;

use super::error::{LabError, Result};

/// The template as shipped; `{{socket}}` marks the API socket path.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../lab/default.yaml");

/// The terminator's section, appended to [`DEFAULT_TEMPLATE`] when
/// [`TERMINATOR_IN_CONFIG`]; `{{svc_netns}}` marks the path of the
/// terminator's namespace (`/run/netns/NAME-svc`), `{{pki}}` the lab's PKI
/// directory (`<state dir>/pki`).
pub const TERMINATOR_TEMPLATE: &str = include_str!("../../lab/terminator.yaml");

/// Whether the lab's `config.yaml` carries [`TERMINATOR_TEMPLATE`]: it
/// does, the lab runs the terminator; the switch stays so a lab without one
/// remains one line away for debugging the dataplane alone.
pub const TERMINATOR_IN_CONFIG: bool = true;

const SOCKET_PLACEHOLDER: &str = "{{socket}}";
const SVC_NETNS_PLACEHOLDER: &str = "{{svc_netns}}";
const PKI_PLACEHOLDER: &str = "{{pki}}";

/// The lab's paths that the templates refer to.
#[derive(Debug, Clone, Copy)]
pub struct ConfigPaths<'a> {
    /// The appliance's API socket.
    pub socket: &'a Path,
    /// The terminator's namespace, e.g. `/run/netns/demo-svc`.
    pub svc_netns: &'a Path,
    /// The lab's PKI directory, e.g. `/run/causeway/lab/demo/pki`.
    pub pki: &'a Path,
}

/// The lab's `config.yaml`: [`DEFAULT_TEMPLATE`], and
/// [`TERMINATOR_TEMPLATE`] if [`TERMINATOR_IN_CONFIG`], with the
/// placeholders replaced by `paths`.
///
/// # Errors
///
/// [`LabError::Config`] if a path is not valid UTF-8.
pub fn render(paths: &ConfigPaths<'_>) -> Result<String> {
    render_with(paths, TERMINATOR_IN_CONFIG)
}

fn render_with(paths: &ConfigPaths<'_>, terminator: bool) -> Result<String> {
    let values = [
        (SOCKET_PLACEHOLDER, utf8(paths.socket, "API socket")?),
        (SVC_NETNS_PLACEHOLDER, utf8(paths.svc_netns, "namespace")?),
        (PKI_PLACEHOLDER, utf8(paths.pki, "PKI directory")?),
    ];
    let mut yaml = fill(DEFAULT_TEMPLATE, &values);
    if terminator {
        yaml.push_str(&fill(TERMINATOR_TEMPLATE, &values));
    }
    Ok(yaml)
}

fn utf8<'a>(path: &'a Path, what: &str) -> Result<&'a str> {
    path.to_str().ok_or_else(|| {
        LabError::Config(format!(
            "the {what} path {} is not UTF-8; choose another {}",
            path.display(),
            super::state::RUN_DIR_ENV
        ))
    })
}

/// `template` with every placeholder of `values` replaced, in one pass (a
/// value that contains a placeholder is not expanded again). The scalar a
/// placeholder starts becomes one YAML string (see the module docs).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = values
            .iter()
            .filter_map(|&(placeholder, value)| {
                rest.find(placeholder).map(|at| (at, placeholder, value))
            })
            .min_by_key(|&(at, ..)| at);
        let Some((at, placeholder, value)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let after = &rest[at + placeholder.len()..];
        let tail_len = after
            .find(|c: char| c.is_ascii_whitespace() || ",]}".contains(c))
            .unwrap_or(after.len());
        out.push_str(&yaml_string(&format!("{value}{}", &after[..tail_len])));
        rest = &after[tail_len..];
    }
}

/// The `policy:` section of a lab with no `--manifests`: a bridge. No
/// endpoint claims the islands' addresses, and an appliance denies such
/// traffic by default (fail closed), so the lab says explicitly that it
/// forwards it.
pub(super) const BRIDGE_POLICY: &str = "\n# No --manifests: the lab is a plain bridge. No endpoint claims the\n\
# islands' addresses, and traffic between unclaimed addresses is denied\n\
# unless `unclaimed: allow` (the appliance's default is deny: with no\n\
# policy at all it forwards nothing).\npolicy:\n  unclaimed: allow\n";

/// The `policy:` section that makes the appliance enforce the manifests in
/// `dir` (the lab's `--manifests`).
///
/// # Errors
///
/// [`LabError::Config`] if `dir` is not valid UTF-8.
pub(super) fn policy_section(dir: &Path) -> Result<String> {
    let dir = dir.to_str().ok_or_else(|| {
        LabError::Config(format!("the manifests path {} is not UTF-8", dir.display()))
    })?;
    Ok(format!(
        "\n# Network policy: the lab's --manifests, reloaded on SIGHUP.\npolicy:\n  manifests: [{}]\n",
        yaml_string(dir)
    ))
}

/// The `state:` section: the appliance keeps what the control API
/// acknowledged in `dir` (inside the lab's state directory, so `lab down`
/// removes it and an appliance restarted in the lab finds it).
pub(super) fn state_section(dir: &Path) -> Result<String> {
    let dir = dir.to_str().ok_or_else(|| {
        LabError::Config(format!("the state path {} is not UTF-8", dir.display()))
    })?;
    Ok(format!(
        "
# The desired state the control API acknowledged (desired.json).
state:
  dir: {}
",
        yaml_string(dir)
    ))
}

/// A YAML scalar for `s`: plain when that reads back unchanged, else a
/// double-quoted string (JSON's escaping is valid YAML).
fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths<'a>(socket: &'a str, svc_netns: &'a str, pki: &'a str) -> ConfigPaths<'a> {
        ConfigPaths {
            socket: Path::new(socket),
            svc_netns: Path::new(svc_netns),
            pki: Path::new(pki),
        }
    }

    fn demo() -> ConfigPaths<'static> {
        paths(
            "/run/causeway/lab/demo/causeway.sock",
            "/run/netns/demo-svc",
            "/run/causeway/lab/demo/pki",
        )
    }

    fn socket_of(yaml: &str) -> String {
        let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("config is YAML");
        doc["api"]["socket"]
            .as_str()
            .expect("api.socket is a string")
            .to_owned()
    }

    /// Every `{{…}}` in `template`.
    fn placeholders_in(template: &str) -> Vec<&str> {
        let mut found = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find("{{") {
            let end = rest[at..].find("}}").expect("a placeholder is closed") + at + 2;
            found.push(&rest[at..end]);
            rest = &rest[end..];
        }
        found
    }

    #[test]
    fn the_templates_use_only_known_placeholders() {
        let mut default = placeholders_in(DEFAULT_TEMPLATE);
        default.sort_unstable();
        default.dedup();
        assert_eq!(default, [PKI_PLACEHOLDER, SOCKET_PLACEHOLDER]);
        let mut terminator = placeholders_in(TERMINATOR_TEMPLATE);
        terminator.sort_unstable();
        terminator.dedup();
        assert_eq!(terminator, [PKI_PLACEHOLDER, SVC_NETNS_PLACEHOLDER]);
    }

    #[test]
    fn the_default_config_has_the_three_ports_and_the_service_route() {
        let yaml = render_with(&demo(), false).unwrap();
        assert!(!yaml.contains("{{"), "{yaml}");
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let ports: Vec<(&str, &str, u64)> = doc["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["interface"].as_str().unwrap(),
                    p["queues"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ports, [("a", "a0", 1), ("b", "b0", 1), ("host", "hp0", 1)]);
        let routes = doc["routes"].as_sequence().unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0]["prefix"].as_str(), Some("10.100.0.0/24"));
        assert_eq!(routes[0]["via"].as_str(), Some("10.0.255.2"));
        assert_eq!(doc["workers"]["batch"].as_u64(), Some(64));
        assert_eq!(doc["workers"]["busy_poll"].as_bool(), Some(false));
        assert_eq!(doc["xdp"]["mode"].as_str(), Some("auto"));
        assert!(doc.get("terminator").is_none(), "{yaml}");
    }

    #[test]
    fn the_service_route_matches_the_topology() {
        use crate::lab::addr;
        let yaml = render_with(&demo(), true).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let route = &doc["routes"][0];
        assert_eq!(
            route["prefix"].as_str(),
            Some(addr::SERVICE_PREFIX.to_string().as_str())
        );
        let via: std::net::Ipv4Addr = route["via"].as_str().unwrap().parse().unwrap();
        assert_eq!(via, addr::HOST_SVC_V4);
        assert!(addr::HOST_PREFIX.contains(via), "via is on the host port");
        let listen: std::net::SocketAddr = doc["terminator"]["services"][0]["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            listen,
            (addr::SERVICE_V4, addr::SERVICE_PORT).into(),
            "the demo service listens where status says"
        );
        let upstreams: Vec<std::net::SocketAddr> = doc["terminator"]["services"][0]["upstreams"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().parse().unwrap())
            .collect();
        let backends: Vec<std::net::SocketAddr> = addr::BACKEND_PORTS
            .iter()
            .map(|&p| (addr::SERVER_V4, p).into())
            .collect();
        assert_eq!(upstreams, backends);
    }

    #[test]
    fn the_terminator_section_follows_the_flag() {
        assert_eq!(
            render(&demo()).unwrap(),
            render_with(&demo(), TERMINATOR_IN_CONFIG).unwrap()
        );
        let without = render_with(&demo(), false).unwrap();
        assert!(!without.contains("terminator:"), "{without}");
        let with = render_with(&demo(), true).unwrap();
        assert!(with.starts_with(&without), "the section is appended");
        assert!(!with.contains("{{"), "{with}");
        let doc: serde_yaml::Value = serde_yaml::from_str(&with).unwrap();
        let t = &doc["terminator"];
        assert_eq!(t["netns"].as_str(), Some("/run/netns/demo-svc"));
        assert_eq!(t["cores"].as_sequence().map(Vec::len), Some(1));
        let service = &t["services"][0];
        assert_eq!(service["name"].as_str(), Some("demo"));
        assert_eq!(service["mode"].as_str(), Some("terminate"));
        assert_eq!(service["balancer"].as_str(), Some("round-robin"));
        let tls = &service["tls"];
        assert_eq!(
            tls["cert"].as_str(),
            Some("/run/causeway/lab/demo/pki/server.pem")
        );
        assert_eq!(
            tls["key"].as_str(),
            Some("/run/causeway/lab/demo/pki/server-key.pem")
        );
        assert_eq!(
            tls["client_ca"].as_str(),
            Some("/run/causeway/lab/demo/pki/ca.pem")
        );
        assert_eq!(
            tls["allowed_identities"][0].as_str(),
            Some("spiffe://causeway.lab/ns/lab/sa/client")
        );
        // The rest of the configuration is as without the section.
        assert_eq!(socket_of(&with), "/run/causeway/lab/demo/causeway.sock");
    }

    #[test]
    fn a_plain_path_is_written_plain() {
        let yaml = render_with(&demo(), true).unwrap();
        assert!(yaml.contains("  socket: /run/causeway/lab/demo/causeway.sock "));
        assert!(yaml.contains("    cert: /run/causeway/lab/demo/pki/server.pem\n"));
        assert!(yaml.contains("  netns: /run/netns/demo-svc\n"));
        assert!(yaml.contains("        cert: /run/causeway/lab/demo/pki/server.pem\n"));
        assert_eq!(socket_of(&yaml), "/run/causeway/lab/demo/causeway.sock");
    }

    #[test]
    fn any_path_reads_back_as_itself() {
        for dir in [
            "/tmp/with space",
            "/tmp/colon: here/#hash",
            "/tmp/quote\"and'apostrophe\\",
            "/tmp/{{socket}}/{{pki}}",
            "/tmp/ünïcode",
        ] {
            let socket = format!("{dir}/causeway.sock");
            let pki = format!("{dir}/pki");
            let yaml = render_with(&paths(&socket, "/run/netns/x-svc", &pki), true).unwrap();
            assert_eq!(socket_of(&yaml), socket);
            let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
            let tls = &doc["terminator"]["services"][0]["tls"];
            assert_eq!(
                tls["cert"].as_str(),
                Some(format!("{pki}/server.pem").as_str())
            );
            assert_eq!(
                tls["client_ca"].as_str(),
                Some(format!("{pki}/ca.pem").as_str())
            );
        }
    }

    #[test]
    fn fill_replaces_whole_scalars_in_one_pass() {
        let values = [("{{a}}", "/x y"), ("{{b}}", "{{a}}")];
        assert_eq!(
            fill("k: {{a}}/f.pem\nl: [{{b}}, {{a}}]\n", &values),
            "k: \"/x y/f.pem\"\nl: [\"{{a}}\", \"/x y\"]\n"
        );
        assert_eq!(fill("no placeholders", &values), "no placeholders");
    }
}
