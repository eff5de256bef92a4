//! Keeping one appliance in step: only what changed, as one change, with
//! the expected generation.
//!
//! Per appliance, per connection:
//! 1. list what the appliance holds of this sync's owner (`List` with the
//!    owner): after a restart of the sync, or of the appliance, only the
//!    difference is pushed, never the whole inventory again;
//! 2. wait until every source has its first complete list in (never a
//!    push of a half-synced inventory), then for each new inventory
//!    version (after `batch`, so that a burst becomes one change):
//! 3. diff the desired resources against what the appliance holds and
//!    send one `Apply`: the changed resources, the deletions in the same
//!    change (there is no instant with neither the old nor the new), the
//!    owner, `expected_generation` = the generation last seen, and
//!    `wait_enforced`;
//! 4. ABORTED (another writer changed the appliance): list again and
//!    diff again. INVALID_ARGUMENT or FAILED_PRECONDITION naming
//!    resources (a state the appliance refuses across resources, or a
//!    resource another owner holds): those resources are set aside as
//!    rejected (reported) and the rest is pushed; a rejected resource is
//!    tried again when its object changes. Anything else: reconnect
//!    with backoff (100 ms doubling to 5 s).
//!
//! A resource whose source object has become bad is neither updated nor
//! deleted: the appliance keeps enforcing its last good version
//! ([`SOURCE_ANNOTATION`] tells which source key each held resource came
//! from, also across restarts of the sync).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{Mutex, watch};
use tonic::{Code, transport::Channel};
use tracing::{info, warn};

use super::{
    config::ApplianceAddr,
    inventory::{Desired, Inventory, SOURCE_ANNOTATION},
};
use causeway_control::{
    node::Latency,
    proto::{ApplyRequest, ListRequest, ManifestFile, config_service_client::ConfigServiceClient},
    store::ref_id,
};

/// The least time between two pushes to one appliance: a burst of changes
/// (a rolling deploy) becomes at most one apply per interval, each with
/// everything that arrived meanwhile.
const PUSH_INTERVAL: Duration = Duration::from_millis(50);

/// What the status page says of an appliance.
#[derive(Debug, Default)]
pub struct ApplianceStatus {
    /// Its address.
    pub addr: String,
    /// Connected now.
    pub connected: bool,
    /// The generation of the last change this sync made (or found).
    pub generation: u64,
    /// The generation every worker enforced at the last push's answer.
    pub enforced: u64,
    /// The inventory version last pushed.
    pub version: u64,
    /// Pushes that changed something.
    pub pushes: u64,
    /// Resources created, changed and deleted by those pushes.
    pub resources_pushed: u64,
    /// When the last push was answered.
    pub last_push: Option<SystemTime>,
    /// The last error (cleared by a good push).
    pub error: Option<String>,
    /// Resources the appliance refused, with why.
    pub rejected: BTreeMap<String, String>,
    /// The last lag from a change arriving at the sync to every worker
    /// enforcing it.
    pub lag: Option<Duration>,
    /// Apply round trips (commit and enforcement included).
    pub push_latency: Latency,
    /// From a change arriving at the sync to every worker enforcing it.
    pub lag_histogram: Latency,
}

/// What one push does.
#[derive(Debug, Default, PartialEq)]
struct Diff {
    /// id → (manifest, source key).
    put: Vec<(String, Arc<Value>, String)>,
    /// ids.
    delete: Vec<String>,
}

/// The source key a held manifest was read from.
fn source_of(manifest: &Value) -> Option<&str> {
    manifest["metadata"]["annotations"][SOURCE_ANNOTATION].as_str()
}

/// What to change on the appliance to make it hold `desired`, given what
/// it `held` and what it `rejected` (id → the manifest it refused).
///
/// A held manifest found equal to the desired one is replaced by the
/// desired one's allocation, so that the next diff tells it by pointer:
/// comparing 11 000 manifests in full took most of a push's time.
///
/// `only`, when given, holds every id that may differ between `desired`
/// and `held` (what changed since `held` matched the inventory): the rest
/// is not looked at.
fn diff(
    desired: &Desired,
    only: Option<&BTreeSet<&str>>,
    held: &mut HashMap<String, Arc<Value>>,
    rejected: &BTreeMap<String, Arc<Value>>,
) -> Diff {
    let mut d = Diff::default();
    let mut put = |id: &String,
                   manifest: &Arc<Value>,
                   key: &String,
                   held: &mut HashMap<String, Arc<Value>>| {
        if rejected
            .get(id)
            .is_some_and(|r| Arc::ptr_eq(r, manifest) || r == manifest)
        {
            return;
        }
        match held.get_mut(id) {
            Some(h) if Arc::ptr_eq(h, manifest) => {}
            Some(h) if h == manifest => *h = manifest.clone(),
            _ => d.put.push((id.clone(), manifest.clone(), key.clone())),
        }
    };
    // Its object is there but bad now: keep the last good version.
    let kept =
        |manifest: &Value| source_of(manifest).is_some_and(|k| desired.problems.contains_key(k));
    match only {
        None => {
            for (id, (manifest, key)) in &desired.resources {
                put(id, manifest, key, held);
            }
            for (id, manifest) in held.iter() {
                if !desired.resources.contains_key(id) && !kept(manifest) {
                    d.delete.push(id.clone());
                }
            }
        }
        Some(ids) => {
            for id in ids {
                if let Some((id, (manifest, key))) = desired.resources.get_key_value(*id) {
                    put(id, manifest, key, held);
                } else if let Some(manifest) = held.get(*id)
                    && !kept(manifest)
                {
                    d.delete.push((*id).to_owned());
                }
            }
        }
    }
    // In id order, whatever the maps' order: one state, one request.
    d.put.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    d.delete.sort_unstable();
    d
}

/// The id a listed resource has in the store.
fn id_of(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let kind = if api_version == "networking.k8s.io/v1" {
        format!("networking.k8s.io/{kind}")
    } else {
        kind.to_owned()
    };
    ref_id(&kind, namespace, name)
}

/// How a sync writes to its appliances.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The owner it writes as (`sync/NAME`).
    pub owner: String,
    /// How long a lone change waits for company.
    pub batch: Duration,
    /// Whether a change may leave an appliance with no policy (the
    /// cluster deleted every one); refused by the appliance otherwise,
    /// and the appliance keeps the last policy it had.
    pub allow_no_policy: bool,
}

/// Keeps the appliance at `addr` in step with `inventory`, forever.
pub async fn run(
    addr: ApplianceAddr,
    settings: Settings,
    inventory: Arc<Mutex<Inventory>>,
    mut changed: watch::Receiver<u64>,
    status: Arc<StdMutex<ApplianceStatus>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = session(
            &addr,
            &settings,
            &inventory,
            &mut changed,
            &status,
            &mut backoff,
        )
        .await;
        if let Err(e) = result {
            let message = format!("{e:#}");
            warn!(appliance = %addr, error = %message, retry_in = ?backoff, "push");
            let mut s = status.lock().expect("not poisoned");
            s.connected = false;
            s.error = Some(message);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A channel to the appliance at `addr` (also `ctl --server`'s).
///
/// # Errors
/// The TLS files cannot be read, or the appliance cannot be reached.
pub(crate) async fn connect(addr: &ApplianceAddr) -> Result<Channel> {
    match addr {
        ApplianceAddr::Unix(path) => {
            let socket = path.clone();
            tonic::transport::Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }))
                .await
                .with_context(|| format!("connecting to the appliance at {addr}"))
        }
        ApplianceAddr::Https(host_port, tls) => {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            let read = |p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("appliance_tls: reading {}", p.display()))
            };
            let host = host_port
                .rsplit_once(':')
                .map_or(host_port.as_str(), |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']');
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
                .domain_name(tls.server_name.clone().unwrap_or_else(|| host.to_owned()));
            tonic::transport::Endpoint::from_shared(format!("https://{host_port}"))?
                .tls_config(config)?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("connecting to the appliance at {addr} (mTLS)"))
        }
    }
}

/// What the appliance holds of `owner`'s, and its generation.
async fn held(
    client: &mut ConfigServiceClient<Channel>,
    owner: &str,
) -> Result<(HashMap<String, Arc<Value>>, u64)> {
    let list = client
        .list(ListRequest {
            owner: owner.to_owned(),
            ..ListRequest::default()
        })
        .await
        .context("listing what the appliance holds")?
        .into_inner();
    let mut held = HashMap::new();
    for r in list.resources {
        let manifest: Value = serde_json::from_str(&r.manifest_json).with_context(|| {
            format!(
                "the appliance sent {}/{} with a manifest that is not JSON",
                r.kind, r.name
            )
        })?;
        held.insert(
            id_of(&r.api_version, &r.kind, &r.namespace, &r.name),
            Arc::new(manifest),
        );
    }
    Ok((held, list.generation))
}

#[allow(clippy::too_many_lines, reason = "one loop, commented step by step")]
async fn session(
    addr: &ApplianceAddr,
    settings: &Settings,
    inventory: &Mutex<Inventory>,
    changed: &mut watch::Receiver<u64>,
    status: &StdMutex<ApplianceStatus>,
    backoff: &mut Duration,
) -> Result<()> {
    let (owner, batch) = (settings.owner.as_str(), settings.batch);
    let mut client = ConfigServiceClient::new(connect(addr).await?)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    // 1. What it holds of ours.
    let (mut held, mut generation) = held(&mut client, owner).await?;
    {
        let mut s = status.lock().expect("not poisoned");
        s.connected = true;
        s.error = None;
        s.generation = generation;
    }
    info!(appliance = %addr, generation, held = held.len(), "connected");
    let mut rejected: BTreeMap<String, Arc<Value>> = BTreeMap::new();
    // Whether `held` may differ from the inventory in ids the inventory's
    // log does not name (it was just listed): compare everything once.
    let mut compare_all = true;
    // When the last push was sent: under load, pushes are at least
    // PUSH_INTERVAL apart, so a burst coalesces into few applies while a
    // lone change after a quiet spell waits only `batch` (default: not at
    // all).
    let mut last_push: Option<Instant> = None;
    loop {
        // 2. Every source synced, and something new.
        let pushed = status.lock().expect("not poisoned").version;
        let (d, version, arrived) = {
            let mut inv = inventory.lock().await;
            if !inv.synced() {
                drop(inv);
                changed.changed().await.context("the inventory is gone")?;
                continue;
            }
            inv.refresh();
            let desired = inv.desired();
            // Rejections of objects that changed since are forgotten.
            rejected.retain(|id, m| {
                desired
                    .resources
                    .get(id)
                    .is_some_and(|(d, _)| Arc::ptr_eq(d, m) || d == m)
            });
            let only = if compare_all {
                None
            } else {
                inv.changed_since(pushed)
            };
            (
                diff(desired, only.as_ref(), &mut held, &rejected),
                desired.version,
                inv.arrived_after(pushed),
            )
        };
        compare_all = false;
        if d.put.is_empty() && d.delete.is_empty() {
            *backoff = Duration::from_millis(100);
            {
                let mut s = status.lock().expect("not poisoned");
                s.version = version;
                s.rejected = rejected_report(&rejected, &s.rejected);
            }
            changed.changed().await.context("the inventory is gone")?;
            if !batch.is_zero() {
                tokio::time::sleep(batch).await;
            }
            continue;
        }
        // 3. One change.
        let request = ApplyRequest {
            files: d
                .put
                .iter()
                .map(|(_, m, key)| ManifestFile {
                    name: format!("{key}.json"),
                    text: m.to_string(),
                })
                .collect(),
            delete: d
                .delete
                .iter()
                .map(|id| causeway_control::grpc::split_id(id))
                .collect(),
            owner: owner.to_owned(),
            expected_generation: Some(generation),
            wait_enforced: true,
            allow_no_policy: settings.allow_no_policy,
            wait_timeout: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..ApplyRequest::default()
        };
        if let Some(due) = last_push.map(|t| t + PUSH_INTERVAL)
            && due > Instant::now()
        {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        let started = Instant::now();
        last_push = Some(started);
        match client.apply(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let took = started.elapsed();
                for (id, manifest, _) in &d.put {
                    held.insert(id.clone(), manifest.clone());
                }
                for id in &d.delete {
                    held.remove(id);
                }
                generation = answer.generation;
                let lag = arrived.map(|t| t.elapsed());
                let mut s = status.lock().expect("not poisoned");
                s.generation = generation;
                s.enforced = generation;
                s.version = version;
                s.pushes += 1;
                s.resources_pushed += (d.put.len() + d.delete.len()) as u64;
                s.last_push = Some(SystemTime::now());
                s.error = None;
                s.push_latency.observe(took);
                if let Some(lag) = lag {
                    s.lag = Some(lag);
                    s.lag_histogram.observe(lag);
                }
                s.rejected = rejected_report(&rejected, &s.rejected);
                // Only an answered push proves the appliance takes what
                // this sync sends (a connection alone does not: a refused
                // message would be retried every 100 ms).
                *backoff = Duration::from_millis(100);
                // The appliance's own part: its arrival → every worker
                // enforcing (the rest of `took` is the way there and back).
                let enforced = answer
                    .enforced_after
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or_default();
                info!(
                    appliance = %addr,
                    generation,
                    put = d.put.len(),
                    deleted = d.delete.len(),
                    took = ?took,
                    enforced = ?enforced,
                    "pushed"
                );
            }
            // 4. Someone else changed it: read it again.
            Err(e) if e.code() == Code::Aborted => {
                info!(appliance = %addr, "the appliance changed under the sync; listing again");
                (held, generation) = self::held(&mut client, owner).await?;
                compare_all = true;
            }
            Err(e) if matches!(e.code(), Code::InvalidArgument | Code::FailedPrecondition) => {
                let named = refused_ids(&e);
                let mut any = false;
                for (id, manifest, _) in &d.put {
                    if let Some(why) = named.get(id.as_str()) {
                        warn!(appliance = %addr, resource = %id, reason = %why, "the appliance refused a resource; it is left out");
                        rejected.insert(id.clone(), manifest.clone());
                        status
                            .lock()
                            .expect("not poisoned")
                            .rejected
                            .insert(id.clone(), why.clone());
                        any = true;
                    }
                }
                if !any {
                    bail!("the appliance refused the change: {}", e.message());
                }
            }
            Err(e) if e.code() == Code::DeadlineExceeded => {
                // Committed, not yet enforced everywhere: take what it holds.
                warn!(appliance = %addr, "{}", e.message());
                (held, generation) = self::held(&mut client, owner).await?;
                compare_all = true;
            }
            Err(e) => bail!("pushing to {addr}: {}", e.message()),
        }
    }
}

/// The resources a refusal names (google.rpc.BadRequest's field is
/// `<resource>:<path>`), with why.
fn refused_ids(e: &tonic::Status) -> BTreeMap<String, String> {
    use tonic_types::StatusExt;
    let mut out = BTreeMap::new();
    if let Some(bad) = e.get_details_bad_request() {
        for v in bad.field_violations {
            if let Some((id, _)) = v.field.rsplit_once(':') {
                out.insert(id.to_owned(), v.description);
            }
        }
    }
    out
}

/// The rejected ids with their reasons, as far as `known` has them.
fn rejected_report(
    rejected: &BTreeMap<String, Arc<Value>>,
    known: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let ids: BTreeSet<&String> = rejected.keys().collect();
    ids.into_iter()
        .map(|id| (id.clone(), known.get(id).cloned().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn manifest(name: &str, source: &str) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
               "metadata": {"name": name, "annotations": {SOURCE_ANNOTATION: source}},
               "spec": {"nets": ["10.0.0.0/8"]}})
    }

    #[test]
    fn a_diff_puts_what_differs_deletes_what_went_and_keeps_what_went_bad() {
        let mut desired = Desired::default();
        desired.resources.insert(
            "GlobalNetworkSet/a".into(),
            (Arc::new(manifest("a", "etcd:ka")), "etcd:ka".into()),
        );
        desired.resources.insert(
            "GlobalNetworkSet/b".into(),
            (Arc::new(manifest("b", "etcd:kb")), "etcd:kb".into()),
        );
        desired
            .problems
            .insert("etcd:kc".into(), "spec.selector: bad".into());
        let mut held: HashMap<String, Arc<Value>> = [
            (
                "GlobalNetworkSet/a".to_owned(),
                Arc::new(manifest("a", "etcd:ka")),
            ),
            (
                "GlobalNetworkSet/c".to_owned(),
                Arc::new(manifest("c", "etcd:kc")),
            ),
            (
                "GlobalNetworkSet/d".to_owned(),
                Arc::new(manifest("d", "etcd:kd")),
            ),
        ]
        .into();
        let d = diff(&desired, None, &mut held, &BTreeMap::new());
        assert_eq!(
            d.put.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["GlobalNetworkSet/b"]
        );
        // c's object went bad: the appliance keeps its last good version.
        assert_eq!(d.delete, ["GlobalNetworkSet/d"]);
        // A rejected manifest is not pushed again until it changes.
        let rejected = [(
            "GlobalNetworkSet/b".to_owned(),
            Arc::new(manifest("b", "etcd:kb")),
        )]
        .into();
        assert!(diff(&desired, None, &mut held, &rejected).put.is_empty());
        // a was found equal: from now on it is told by pointer.
        assert!(Arc::ptr_eq(
            &held["GlobalNetworkSet/a"],
            &desired.resources["GlobalNetworkSet/a"].0
        ));
    }

    #[test]
    fn a_diff_of_the_changed_ids_looks_at_those_alone() {
        let mut desired = Desired::default();
        for n in ["a", "b"] {
            desired.resources.insert(
                format!("GlobalNetworkSet/{n}"),
                (
                    Arc::new(manifest(n, &format!("etcd:k{n}"))),
                    format!("etcd:k{n}"),
                ),
            );
        }
        desired
            .problems
            .insert("etcd:kc".into(), "spec.selector: bad".into());
        let mut held: HashMap<String, Arc<Value>> = ["c", "d", "e"]
            .map(|n| {
                (
                    format!("GlobalNetworkSet/{n}"),
                    Arc::new(manifest(n, &format!("etcd:k{n}"))),
                )
            })
            .into();
        // b and d changed; a (new) and e (gone) are not named, so they
        // wait for a whole comparison; c is bad and kept.
        let only: BTreeSet<&str> = [
            "GlobalNetworkSet/b",
            "GlobalNetworkSet/c",
            "GlobalNetworkSet/d",
        ]
        .into();
        let d = diff(&desired, Some(&only), &mut held, &BTreeMap::new());
        assert_eq!(
            d.put.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["GlobalNetworkSet/b"]
        );
        assert_eq!(d.delete, ["GlobalNetworkSet/d"]);
        let all = diff(&desired, None, &mut held, &BTreeMap::new());
        assert_eq!(
            all.put.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["GlobalNetworkSet/a", "GlobalNetworkSet/b"]
        );
        assert_eq!(all.delete, ["GlobalNetworkSet/d", "GlobalNetworkSet/e"]);
    }

    #[test]
    fn ids_and_references_round_trip() {
        for (api, kind, ns, name) in [
            ("networking.k8s.io/v1", "NetworkPolicy", "shop", "db"),
            ("projectcalico.org/v3", "GlobalNetworkPolicy", "", "x"),
            ("v1", "Pod", "shop", "web-1"),
        ] {
            let id = id_of(api, kind, ns, name);
            let r = causeway_control::grpc::split_id(&id);
            assert_eq!(ref_id(&r.kind, &r.namespace, &r.name), id);
        }
    }
}
