//! `ctl apply` and `ctl delete`: changes to the desired configuration,
//! printed one line per resource as kubectl does.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use tonic::transport::Channel;

use super::{duration, files, kind, out, rpc_error::RpcError};
use causeway_control::proto::{
    ApplyRequest, ApplyResponse, Change, DeleteRequest, DeleteResponse, ResourceRef,
    change::Action, config_service_client::ConfigServiceClient,
};

/// Arguments of `causeway ctl apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Manifest files, directories (walked for *.yaml, *.yml, *.json) or
    /// `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Refuse unless the current generation is this one.
    #[arg(long, value_name = "GENERATION")]
    pub expected_generation: Option<u64>,
    /// Make these files the whole of what the owner configures: delete
    /// every resource the owner holds that they do not.
    #[arg(long)]
    pub replace: bool,
    /// Write as this owner (default: ctl). See `ctl list`'s OWNER column.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Take over resources another owner holds (a sync, the configuration
    /// file) instead of refusing the write.
    #[arg(long)]
    pub force: bool,
    /// Allow the change to leave no policy where there was one (refused
    /// otherwise: an appliance with no policy judges no traffic).
    #[arg(long)]
    pub allow_no_policy: bool,
    /// Validate and say what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer once every worker enforces the new generation.
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait (e.g. 5s, 250ms; the appliance's
    /// default is 5s).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// Arguments of `causeway ctl delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The kind, e.g. GlobalNetworkPolicy (any case).
    pub kind: String,
    /// The name.
    pub name: String,
    /// The namespace of a namespaced kind (default: "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Refuse unless the current generation is this one.
    #[arg(long, value_name = "GENERATION")]
    pub expected_generation: Option<u64>,
    /// Delete as this owner (default: ctl).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Delete it even if another owner (a sync, the configuration file)
    /// holds it.
    #[arg(long)]
    pub force: bool,
    /// Allow deleting the last policy (refused otherwise: an appliance
    /// with no policy judges no traffic).
    #[arg(long)]
    pub allow_no_policy: bool,
    /// Answer once every worker enforces the new generation.
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait (e.g. 5s, 250ms).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// Runs `causeway ctl apply`.
pub(super) async fn apply(channel: Channel, args: &ApplyArgs) -> Result<()> {
    let request = ApplyRequest {
        files: files::manifest_files(&args.files, &mut std::io::stdin().lock())?,
        expected_generation: args.expected_generation,
        replace: args.replace,
        dry_run: args.dry_run,
        wait_enforced: args.wait,
        wait_timeout: args.timeout.map(duration::to_proto).transpose()?,
        owner: args.owner.clone().unwrap_or_default(),
        force: args.force,
        delete: Vec::new(),
        allow_no_policy: args.allow_no_policy,
    };
    let response = ConfigServiceClient::new(channel)
        .apply(request)
        .await
        .map_err(RpcError)?
        .into_inner();
    out::print(&applied(&response, args.dry_run))?;
    Ok(())
}

/// Runs `causeway ctl delete`.
pub(super) async fn delete(channel: Channel, args: &DeleteArgs) -> Result<()> {
    let request = DeleteRequest {
        resources: vec![ResourceRef {
            kind: kind::canonical(&args.kind),
            namespace: args.namespace.clone().unwrap_or_default(),
            name: args.name.clone(),
        }],
        expected_generation: args.expected_generation,
        wait_enforced: args.wait,
        wait_timeout: args.timeout.map(duration::to_proto).transpose()?,
        owner: args.owner.clone().unwrap_or_default(),
        force: args.force,
        allow_no_policy: args.allow_no_policy,
    };
    let response = ConfigServiceClient::new(channel)
        .delete(request)
        .await
        .map_err(RpcError)?
        .into_inner();
    out::print(&deleted(&response))?;
    Ok(())
}

/// What an apply did: a line per resource, then the generation.
fn applied(r: &ApplyResponse, dry_run: bool) -> String {
    let mut text: String = r
        .changes
        .iter()
        .map(|c| change_line(c, dry_run) + "\n")
        .collect();
    let note = if dry_run {
        Some("dry run: nothing changed")
    } else {
        (!r.changed).then_some("unchanged")
    };
    text += &generation_line(r.generation, note, r.enforced_after.as_ref());
    text
}

/// What a delete did.
fn deleted(r: &DeleteResponse) -> String {
    let mut text: String = r
        .changes
        .iter()
        .map(|c| change_line(c, false) + "\n")
        .collect();
    text += &generation_line(r.generation, None, r.enforced_after.as_ref());
    text
}

/// `globalnetworkpolicy/allow-web created`.
fn change_line(c: &Change, dry_run: bool) -> String {
    let target = c
        .resource
        .as_ref()
        .map_or_else(|| "?".to_owned(), kind::ref_path);
    let suffix = if dry_run { " (dry run)" } else { "" };
    format!("{target} {}{suffix}", action_word(c.action()))
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Created => "created",
        Action::Configured => "configured",
        Action::Unchanged => "unchanged",
        Action::Deleted => "deleted",
        Action::Unspecified => "changed",
    }
}

/// `generation 8 (unchanged)` or `generation 9, enforced after 1.2ms`.
fn generation_line(
    generation: u64,
    note: Option<&str>,
    enforced_after: Option<&prost_types::Duration>,
) -> String {
    let mut line = format!("generation {generation}");
    if let Some(note) = note {
        line += &format!(" ({note})");
    }
    if let Some(d) = enforced_after {
        line += &format!(", enforced after {}", duration::show(d));
    }
    line + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &str, namespace: &str, name: &str, action: Action) -> Change {
        Change {
            resource: Some(ResourceRef {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            action: action.into(),
        }
    }

    #[test]
    fn an_apply_prints_a_line_per_resource_then_the_generation() {
        let response = ApplyResponse {
            generation: 9,
            changed: true,
            changes: vec![
                change("GlobalNetworkPolicy", "", "allow-web", Action::Created),
                change("NetworkPolicy", "shop", "db", Action::Configured),
                change("Tier", "", "security", Action::Unchanged),
                change(
                    "networking.k8s.io/NetworkPolicy",
                    "shop",
                    "old",
                    Action::Deleted,
                ),
            ],
            enforced_after: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_200_000,
            }),
        };
        assert_eq!(
            applied(&response, false),
            "globalnetworkpolicy/allow-web created\n\
             networkpolicy/shop/db configured\n\
             tier/security unchanged\n\
             networking.k8s.io/networkpolicy/shop/old deleted\n\
             generation 9, enforced after 1.2ms\n"
        );
    }

    #[test]
    fn an_apply_that_changes_nothing_says_so() {
        let response = ApplyResponse {
            generation: 9,
            changed: false,
            changes: vec![change("Tier", "", "security", Action::Unchanged)],
            enforced_after: None,
        };
        assert_eq!(
            applied(&response, false),
            "tier/security unchanged\ngeneration 9 (unchanged)\n"
        );
    }

    #[test]
    fn a_dry_run_is_marked_on_every_line() {
        let response = ApplyResponse {
            generation: 9,
            changed: true,
            changes: vec![change("Tier", "", "security", Action::Created)],
            enforced_after: None,
        };
        assert_eq!(
            applied(&response, true),
            "tier/security created (dry run)\ngeneration 9 (dry run: nothing changed)\n"
        );
    }

    #[test]
    fn a_delete_prints_what_went() {
        let response = DeleteResponse {
            generation: 10,
            changes: vec![change("NetworkSet", "shop", "clients", Action::Deleted)],
            enforced_after: None,
        };
        assert_eq!(
            deleted(&response),
            "networkset/shop/clients deleted\ngeneration 10\n"
        );
    }
}
