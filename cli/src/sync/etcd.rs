//! The etcdv3 source: Calico's v3 resources, listed at a revision and then
//! watched from the next one.
//!
//! The loop, per connection:
//! 1. a paged range read of [`calico::PREFIX`] pinned at one revision R
//!    (the first page fixes R; the others read at R, so the list is one
//!    consistent snapshot however large);
//! 2. the inventory takes the list whole, diffed against what it held
//!    ([`Inventory::replace`]): after an outage or a compaction only the
//!    difference moves, never a delete-then-add;
//! 3. a watch from R+1 with previous values and progress notifications;
//!    each event sets or removes one key.
//!
//! A stream that ends or fails, or a connection refused: after a backoff
//! (100 ms doubling to 5 s) the next connection resumes the watch from
//! the revision after the last one seen, so an outage costs only the
//! events it missed. If that revision was compacted meanwhile (etcd
//! cancels the watch with a compact revision), back to 1: a fresh list,
//! diffed, never a gap. The inventory keeps what it had meanwhile, so the
//! appliances keep enforcing the last good state (fail static).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, TlsOptions, WatchOptions};
use tokio::sync::{Mutex, watch};
use tracing::{debug, info, warn};

use super::{
    calico::{self, Read},
    config::EtcdConfig,
    inventory::{Inventory, Item, check},
};

/// How many keys one page of the list reads.
const PAGE: i64 = 500;

/// Reads one key and value of source `source` as an inventory item
/// (`None`: nothing causeway enforces).
fn item(source: &str, key: &str, value: &[u8]) -> Option<Item> {
    match calico::read(key, value) {
        Ok(Read::Ignored) => None,
        Ok(Read::Resource(m)) => {
            Some(check(m, &format!("{source}:{key}")).map_or_else(Item::Problem, Item::Object))
        }
        Err(problem) => Some(Item::Problem(problem)),
    }
}

/// The kind a key holds, for event counters (`-` when it has none).
fn kind_label(key: &str) -> String {
    calico::key(key).map_or_else(|_| "-".into(), |k| k.plural.to_owned())
}

/// Runs source `index` of `inventory` against `config` until the process
/// ends, reporting changes on `changed`.
pub async fn run(
    index: usize,
    name: String,
    config: EtcdConfig,
    inventory: Arc<Mutex<Inventory>>,
    changed: watch::Sender<u64>,
) {
    let mut backoff = Duration::from_millis(100);
    // The last revision the inventory reflects: the next connection
    // resumes the watch after it.
    let mut seen: Option<i64> = None;
    loop {
        match session(
            index,
            &name,
            &config,
            &inventory,
            &changed,
            &mut backoff,
            &mut seen,
        )
        .await
        {
            Ok(()) => debug!(source = index, "etcd watch ended"),
            Err(e) => {
                // What happened and where, then the root cause, not the
                // whole chain of transport wrappers.
                let message = format!(
                    "etcd at {}: {e}: {}; retrying, and the appliances keep enforcing what they hold",
                    config.endpoints.join(","),
                    e.root_cause()
                );
                warn!(error = %message, retry_in = ?backoff, "etcd source");
                let mut inv = inventory.lock().await;
                let status = inv.status_mut(index);
                status.connected = false;
                status.error = Some(message);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(config: &EtcdConfig) -> Result<Client> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    if let Some(ca) = &config.ca {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        let mut tls =
            TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Client::connect(&config.endpoints, Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {}", config.endpoints.join(",")))
}

/// One connection: list (unless a watch can resume after `seen`), then
/// watch until the watch ends or fails.
#[allow(
    clippy::too_many_arguments,
    reason = "the source's loop state, passed down once"
)]
async fn session(
    index: usize,
    name: &str,
    config: &EtcdConfig,
    inventory: &Mutex<Inventory>,
    changed: &watch::Sender<u64>,
    backoff: &mut Duration,
    seen: &mut Option<i64>,
) -> Result<()> {
    let mut client = connect(config).await?;
    let resume = match *seen {
        Some(revision) => {
            let resume = can_resume(&mut client, revision).await?;
            if resume.is_none() {
                inventory.lock().await.status_mut(index).compactions += 1;
            }
            resume
        }
        None => None,
    };
    let revision = match resume {
        Some(revision) => {
            info!(from = revision + 1, "etcd: resuming the watch");
            revision
        }
        None => {
            let (items, revision) = list(&mut client, name).await?;
            let mut inv = inventory.lock().await;
            let n = inv.replace(index, items, revision.to_string());
            info!(revision, changed = n, "etcd: listed Calico's resources");
            changed.send_replace(inv.version());
            revision
        }
    };
    *seen = Some(revision);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_prev_key()
        .with_progress_notify();
    let mut stream = client
        .watch(calico::PREFIX, Some(options))
        .await
        .context("starting the etcd watch")?;
    while let Some(response) = stream.message().await.context("reading the etcd watch")? {
        if response.compact_revision() > 0 {
            info!(
                compacted = response.compact_revision(),
                from = revision + 1,
                "etcd: the watch's revision was compacted; listing again"
            );
            *seen = None;
            inventory.lock().await.status_mut(index).compactions += 1;
            return Ok(());
        }
        if response.canceled() {
            bail!("etcd canceled the watch: {}", response.cancel_reason());
        }
        let at = response.header().map_or(0, |h| h.revision());
        if response.created() {
            // Its header's revision is not a promise: events from the
            // start revision may still be on their way.
            let mut inv = inventory.lock().await;
            let status = inv.status_mut(index);
            status.connected = true;
            status.error = None;
            *backoff = Duration::from_millis(100);
            continue;
        }
        if response.events().is_empty() {
            // A progress notification: every event up to `at` was sent,
            // so the inventory is current at `at`.
            if at > 0 {
                *seen = Some(at);
                inventory.lock().await.status_mut(index).revision = at.to_string();
            }
            continue;
        }
        let mut inv = inventory.lock().await;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else {
                warn!("etcd: a key that is not UTF-8; skipped");
                continue;
            };
            let (item, kind) = match event.event_type() {
                EventType::Put => (
                    Some(item(name, key, kv.value())),
                    if kv.create_revision() == kv.mod_revision() {
                        "ADDED"
                    } else {
                        "MODIFIED"
                    },
                ),
                EventType::Delete => (None, "DELETED"),
            };
            *seen = Some(kv.mod_revision().max(seen.unwrap_or(0)));
            let revision = kv.mod_revision().to_string();
            match item {
                Some(Some(item)) => {
                    inv.set(index, key, Some(item), revision, &kind_label(key), kind)
                }
                // Ignored kinds, or a delete.
                Some(None) | None => inv.set(index, key, None, revision, &kind_label(key), kind),
            }
        }
        changed.send_replace(inv.version());
    }
    Ok(())
}

/// Whether a watch may resume after `seen`: `Some(seen)` if etcd still has
/// every revision after it, `None` if they were compacted (or etcd is
/// behind `seen`: restored from an older backup) and a fresh list is due.
///
/// A watch from a compacted revision is canceled with the compact revision,
/// but one from exactly the compact revision is not, and a deletion at that
/// revision is gone from the history with its tombstone. Reading at `seen`
/// itself tells: it fails if anything after `seen` may have been compacted.
async fn can_resume(client: &mut Client, seen: i64) -> Result<Option<i64>> {
    let probe = GetOptions::new()
        .with_prefix()
        .with_revision(seen)
        .with_count_only();
    match client.get(calico::PREFIX, Some(probe)).await {
        Ok(_) => Ok(Some(seen)),
        Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::OutOfRange => {
            info!(seen, reason = %s.message(), "etcd: cannot resume the watch; listing again");
            Ok(None)
        }
        Err(e) => Err(e).context("reading etcd's history"),
    }
}

/// Every key under the prefix, read at one revision, and that revision.
async fn list(client: &mut Client, name: &str) -> Result<(BTreeMap<String, Item>, i64)> {
    let mut items = BTreeMap::new();
    let end = prefix_end(calico::PREFIX.as_bytes());
    let mut from = calico::PREFIX.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = client
            .get(from.clone(), Some(options))
            .await
            .context("listing Calico's resources in etcd")?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            if let Some(item) = item(name, key, kv.value()) {
                items.insert(key.to_owned(), item);
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    Ok((items, revision))
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/calico/"), b"/calico0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
    }
}
