//! `causeway policy check -f PATH...`: loads and validates manifests and
//! reports every mistake, one per line, before anything is applied.

use std::{
    collections::BTreeSet,
    io::{self, Write},
    path::PathBuf,
};

use anyhow::{Context, bail};

use super::{
    load::{self, Loaded},
    model::Resource,
};

/// Arguments of `causeway policy check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Manifest files or directories (walked for *.yaml, *.yml, *.json);
    /// `-` reads stdin. Repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// Loads and validates; prints every error to stderr, one per line
/// (`file:line:column: resource: field: message`), or a summary of what was
/// read to stdout.
///
/// # Errors
/// `N errors in M files` when anything is wrong; when nothing at all was
/// found; when stdout or stderr cannot be written.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let checked = load::check_paths(&args.files);
    if !checked.errors.is_empty() {
        let mut stderr = io::stderr().lock();
        for e in &checked.errors {
            writeln!(stderr, "{e}").context("writing to stderr")?;
        }
        let files: BTreeSet<_> = checked.errors.iter().map(|e| &e.file).collect();
        bail!(
            "{} in {}",
            plural(checked.errors.len(), "error"),
            plural(files.len(), "file")
        );
    }
    if checked.loaded.is_empty() {
        bail!("no resources found: the manifests given are empty or only comments");
    }
    writeln!(io::stdout().lock(), "{}", summary(&checked.loaded)).context("writing to stdout")?;
    Ok(())
}

/// `ok: 3 GlobalNetworkPolicy, 2 NetworkPolicy, 1 Tier, ...`: how many
/// resources of each kind, kinds in a fixed order, absent kinds left out.
pub fn summary(all: &[Loaded]) -> String {
    const ORDER: [&str; 15] = [
        "GlobalNetworkPolicy",
        "NetworkPolicy",
        "networking.k8s.io/NetworkPolicy",
        "GlobalNetworkSet",
        "NetworkSet",
        "Tier",
        "Pod",
        "Namespace",
        "StaticEndpoint",
        "Port",
        "Route",
        "Identity",
        "TLSService",
        "Service",
        "EndpointSlice",
    ];
    let mut counts = [0usize; ORDER.len()];
    for l in all {
        let i = match l.resource {
            Resource::GlobalNetworkPolicy { .. } => 0,
            Resource::NetworkPolicy { .. } => 1,
            Resource::K8sNetworkPolicy { .. } => 2,
            Resource::GlobalNetworkSet { .. } => 3,
            Resource::NetworkSet { .. } => 4,
            Resource::Tier { .. } => 5,
            Resource::Pod { .. } => 6,
            Resource::Namespace { .. } => 7,
            Resource::StaticEndpoint { .. } => 8,
            Resource::ServiceDiscovery { ref spec, .. } => match spec {
                crate::resources::ServiceDiscovery::Service(_) => 13,
                crate::resources::ServiceDiscovery::EndpointSlice(_) => 14,
            },
            Resource::Appliance { ref spec, .. } => match spec.kind() {
                "Port" => 9,
                "Route" => 10,
                "Identity" => 11,
                _ => 12,
            },
        };
        counts[i] += 1;
    }
    let parts: Vec<String> = ORDER
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!("ok: {}", parts.join(", "))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/policy")
            .join(name)
    }

    fn check(files: &[&str]) -> anyhow::Result<()> {
        run(&CheckArgs {
            files: files.iter().map(|f| fixture(f)).collect(),
        })
    }

    #[test]
    fn errors_are_counted_with_their_files() {
        let e = check(&["bad/ports.yaml", "bad/nets.yaml", "good/pod.yaml"]).unwrap_err();
        assert_eq!(e.to_string(), "7 errors in 2 files");
        let e = check(&["bad/selector.yaml"]).unwrap_err();
        assert_eq!(e.to_string(), "1 error in 1 file");
        // Errors across resources count too.
        let e = check(&["duplicate"]).unwrap_err();
        assert_eq!(e.to_string(), "1 error in 1 file");
    }

    #[test]
    fn good_manifests_pass_and_nothing_at_all_does_not() {
        check(&["good/static-endpoint.yaml", "good/k8s"]).unwrap();
        let dir = std::env::temp_dir().join(format!("causeway-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.yaml");
        std::fs::write(&empty, "# nothing yet\n---\n").unwrap();
        let e = run(&CheckArgs { files: vec![empty] }).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.to_string().starts_with("no resources found"), "{e}");
    }

    #[test]
    fn the_summary_counts_each_kind_in_a_fixed_order() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let all = load::load_str(text, Path::new("x.yaml")).unwrap();
        assert_eq!(summary(&all), "ok: 1 Tier, 2 Namespace");
    }
}
