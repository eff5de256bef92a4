//! The appliance configuration a lab starts with: `control/lab/default.yaml`,
//! built into the binary, with the lab's paths filled in.

use std::path::Path;

use super::error::{LabError, Result};

/// The template as shipped; `{{socket}}` marks the API socket path.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../lab/default.yaml");

const SOCKET_PLACEHOLDER: &str = "{{socket}}";

/// The lab's `config.yaml`: the template with `{{socket}}` replaced by
/// `socket`, written as a YAML string so that any path reads back as itself.
///
/// # Errors
///
/// [`LabError::Config`] if `socket` is not valid UTF-8.
pub fn render(socket: &Path) -> Result<String> {
    let socket = socket.to_str().ok_or_else(|| {
        LabError::Config(format!(
            "the API socket path {} is not UTF-8; choose another {}",
            socket.display(),
            super::state::RUN_DIR_ENV
        ))
    })?;
    Ok(DEFAULT_TEMPLATE.replace(SOCKET_PLACEHOLDER, &yaml_string(socket)))
}

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

    fn socket_of(yaml: &str) -> String {
        let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("config is YAML");
        doc["api"]["socket"]
            .as_str()
            .expect("api.socket is a string")
            .to_owned()
    }

    #[test]
    fn the_template_has_one_placeholder_and_the_three_ports() {
        assert_eq!(DEFAULT_TEMPLATE.matches(SOCKET_PLACEHOLDER).count(), 1);
        let yaml = render(Path::new("/run/causeway/lab/demo/causeway.sock")).unwrap();
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
        assert_eq!(doc["routes"].as_sequence().map(Vec::len), Some(0));
        assert_eq!(doc["workers"]["batch"].as_u64(), Some(64));
        assert_eq!(doc["workers"]["busy_poll"].as_bool(), Some(false));
        assert_eq!(doc["xdp"]["mode"].as_str(), Some("auto"));
    }

    #[test]
    fn a_plain_path_is_written_plain() {
        let yaml = render(Path::new("/run/causeway/lab/demo/causeway.sock")).unwrap();
        assert!(yaml.contains("  socket: /run/causeway/lab/demo/causeway.sock\n"));
        assert_eq!(socket_of(&yaml), "/run/causeway/lab/demo/causeway.sock");
    }

    #[test]
    fn any_path_reads_back_as_itself() {
        for path in [
            "/tmp/with space/causeway.sock",
            "/tmp/colon: here/#hash/causeway.sock",
            "/tmp/quote\"and'apostrophe\\/causeway.sock",
            "/tmp/{{socket}}/causeway.sock",
            "/tmp/ünïcode/causeway.sock",
        ] {
            let yaml = render(Path::new(path)).unwrap();
            assert_eq!(socket_of(&yaml), path);
        }
    }
}
