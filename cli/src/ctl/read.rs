//! `ctl get` and `ctl list`: stored resources as manifests or a table.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{kind, out, rpc_error::RpcError, table::Table};
use causeway_control::proto::{
    GetRequest, ListRequest, Resource, ResourceRef, config_service_client::ConfigServiceClient,
};

/// How `get` prints a manifest.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ManifestFormat {
    /// YAML, as manifests are written.
    #[default]
    Yaml,
    /// JSON, as stored.
    Json,
}

/// How `list` prints.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ListFormat {
    /// KIND NAMESPACE NAME OWNER GENERATION.
    #[default]
    Table,
    /// A List manifest (applies back).
    Yaml,
    /// A List manifest as JSON (applies back).
    Json,
}

/// Arguments of `causeway ctl get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The kind, e.g. GlobalNetworkPolicy (any case).
    pub kind: String,
    /// The name.
    pub name: String,
    /// The namespace of a namespaced kind (default: "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ManifestFormat,
}

/// Arguments of `causeway ctl list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this kind (any case; default: every kind).
    pub kind: Option<String>,
    /// Only this namespace (default: every namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only what this owner holds (e.g. ctl, config, sync/cluster-a).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ListFormat,
    /// Resources asked for per request: the list is read page by page
    /// (each page also ends before 4 MiB), so any state lists within
    /// gRPC's message limits. 0: all in one request.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub page_size: u32,
}

/// How often a paged list starts over because the state changed between
/// its pages, before giving up.
const LIST_TRIES: usize = 5;

/// Runs `causeway ctl get`.
pub(super) async fn get(channel: Channel, args: &GetArgs) -> Result<()> {
    let request = GetRequest {
        resource: Some(ResourceRef {
            kind: kind::canonical(&args.kind),
            namespace: args.namespace.clone().unwrap_or_default(),
            name: args.name.clone(),
        }),
    };
    let resource = client(channel)
        .get(request)
        .await
        .map_err(RpcError)?
        .into_inner();
    let manifest = manifest(&resource)?;
    out::print(&match args.output {
        ManifestFormat::Yaml => held_by(&resource) + &yaml(&manifest)?,
        ManifestFormat::Json => pretty_json(&manifest)?,
    })?;
    Ok(())
}

/// Runs `causeway ctl list`: page by page; when the state changes between
/// two pages (their generations differ), it lists again from the first,
/// so what it prints is one generation's state.
pub(super) async fn list(channel: Channel, args: &ListArgs) -> Result<()> {
    let mut client = client(channel);
    let request = ListRequest {
        kind: args
            .kind
            .as_deref()
            .map(kind::canonical)
            .unwrap_or_default(),
        namespace: args.namespace.clone().unwrap_or_default(),
        owner: args.owner.clone().unwrap_or_default(),
        page_size: args.page_size,
        page_token: String::new(),
    };
    let mut resources = None;
    for _ in 0..LIST_TRIES {
        if let Some(all) = list_pages(&mut client, &request).await? {
            resources = Some(all);
            break;
        }
    }
    let resources = resources.with_context(|| {
        format!(
            "the configuration changed between pages {LIST_TRIES} times in a row; try again, or list with --page-size 0"
        )
    })?;
    out::print(&match args.output {
        ListFormat::Table => resource_table(&resources),
        ListFormat::Yaml => yaml(&list_manifest(&resources)?)?,
        ListFormat::Json => pretty_json(&list_manifest(&resources)?)?,
    })?;
    Ok(())
}

/// Every page of `first`; `None` if the generation changed on the way.
async fn list_pages(
    client: &mut ConfigServiceClient<Channel>,
    first: &ListRequest,
) -> Result<Option<Vec<Resource>>> {
    let mut request = first.clone();
    let mut resources = Vec::new();
    let mut generation = None;
    loop {
        let page = client
            .list(request.clone())
            .await
            .map_err(RpcError)?
            .into_inner();
        if *generation.get_or_insert(page.generation) != page.generation {
            return Ok(None);
        }
        resources.extend(page.resources);
        if page.next_page_token.is_empty() {
            return Ok(Some(resources));
        }
        request.page_token = page.next_page_token;
    }
}

/// A client that takes answers as large as the appliance sends (one
/// resource of a 100 000-rule policy is past gRPC's default 4 MiB).
fn client(channel: Channel) -> ConfigServiceClient<Channel> {
    ConfigServiceClient::new(channel)
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

/// The appliance's own limit on Apply and List messages.
const MESSAGE_LIMIT: usize = 128 << 20;

/// A YAML comment naming who holds `r` and when it last changed (a comment,
/// so the output still applies back as it is).
fn held_by(r: &Resource) -> String {
    let owner = if r.owner.is_empty() {
        "nobody (stored before owners)"
    } else {
        &r.owner
    };
    format!("# owner: {owner}, generation {}\n", r.generation)
}

/// The stored manifest of `r`.
fn manifest(r: &Resource) -> Result<Value> {
    serde_json::from_str(&r.manifest_json).with_context(|| {
        format!(
            "the appliance sent {}/{} with a manifest that is not JSON",
            r.kind, r.name
        )
    })
}

/// `{apiVersion: v1, kind: List, items: [...]}`: what `apply -f` takes
/// back.
fn list_manifest(resources: &[Resource]) -> Result<Value> {
    let items = resources.iter().map(manifest).collect::<Result<Vec<_>>>()?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

fn yaml(v: &Value) -> Result<String> {
    serde_yaml::to_string(v).context("writing YAML")
}

fn pretty_json(v: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(v).context("writing JSON")? + "\n")
}

/// KIND NAMESPACE NAME OWNER GENERATION, in the order the appliance lists.
fn resource_table(resources: &[Resource]) -> String {
    let mut table =
        Table::new(&["KIND", "NAMESPACE", "NAME", "OWNER", "GENERATION"]).right_align(4);
    for r in resources {
        table.row(vec![
            kind::ref_kind(&r.api_version, &r.kind),
            r.namespace.clone(),
            r.name.clone(),
            r.owner.clone(),
            r.generation.to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        generation: u64,
    ) -> Resource {
        let mut metadata = json!({"name": name});
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        Resource {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            manifest_json:
                json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": {}})
                    .to_string(),
            generation,
            owner: "ctl".into(),
        }
    }

    #[test]
    fn the_table_names_kubernetes_policies_by_group() {
        let resources = [
            resource(
                "projectcalico.org/v3",
                "GlobalNetworkPolicy",
                "",
                "allow-web",
                4,
            ),
            resource("networking.k8s.io/v1", "NetworkPolicy", "shop", "db", 12),
        ];
        assert_eq!(
            resource_table(&resources),
            "KIND                             NAMESPACE  NAME       OWNER  GENERATION\n\
             GlobalNetworkPolicy              -          allow-web  ctl             4\n\
             networking.k8s.io/NetworkPolicy  shop       db         ctl            12\n"
        );
    }

    #[test]
    fn the_list_manifest_applies_back() {
        let resources = [resource("projectcalico.org/v3", "Tier", "", "security", 2)];
        assert_eq!(
            yaml(&list_manifest(&resources).unwrap()).unwrap(),
            "apiVersion: v1\n\
             items:\n\
             - apiVersion: projectcalico.org/v3\n\
             \x20 kind: Tier\n\
             \x20 metadata:\n\
             \x20   name: security\n\
             \x20 spec: {}\n\
             kind: List\n"
        );
    }

    #[test]
    fn a_manifest_that_is_not_json_is_named() {
        let mut r = resource("v1", "Namespace", "", "shop", 1);
        r.manifest_json = "{".into();
        let e = manifest(&r).unwrap_err();
        assert!(e.to_string().contains("Namespace/shop"), "{e}");
    }
}
