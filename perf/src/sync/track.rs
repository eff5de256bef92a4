//! When each change arrived where: the writer notes t0 just before its
//! etcd transaction, and two watchers note the rest without polling —
//!
//! - the floor: a watch of Calico's prefix on our own etcd connection,
//!   the instant the change's event arrives (etcd's own write → event
//!   latency, what any watcher, the sync included, cannot beat);
//! - the appliance: `ConfigService.Watch` from the current generation; the
//!   instant the event of the change's resource arrives, with its
//!   generation, and at once a `StatusService.WaitEnforced` of that
//!   generation, whose answer is the instant every worker enforces it.
//!   A writer that knows its change will be the next generation (one
//!   change at a time, nothing else writing) asks ahead
//!   ([`Shared::ask_ahead`]): the WaitEnforced of the next generation is
//!   then already waiting when the change lands, so its answer comes when
//!   the workers enforce it, not a round trip after the watch's event.
//!
//! Each change is matched by its etcd key (floor) and by the id of the
//! resource it stands for on the appliance: the scenario keeps at most one
//! change of a resource in flight, so the next event of that resource is
//! the change's.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use causeway_control::proto::{
    WaitEnforcedRequest, WatchRequest, config_service_client::ConfigServiceClient,
    status_service_client::StatusServiceClient,
};
use etcd_client::{Client, WatchOptions};
use tokio::sync::{Notify, mpsc};
use tonic::transport::Channel;

use super::inventory::PREFIX;

/// How long a WaitEnforced may wait.
const ENFORCE_TIMEOUT: Duration = Duration::from_secs(60);

/// One change's instants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change {
    /// Just before the etcd transaction was sent.
    pub(crate) t0: Instant,
    /// The transaction's answer.
    pub(crate) written: Option<Instant>,
    /// Its event on our own etcd watch.
    pub(crate) floor: Option<Instant>,
    /// Its resource's event on the appliance's watch, and its generation.
    pub(crate) seen: Option<(u64, Instant)>,
    /// WaitEnforced of that generation answered.
    pub(crate) enforced: Option<Instant>,
}

impl Change {
    /// t0 → `t`.
    pub(crate) fn since(&self, t: Option<Instant>) -> Option<Duration> {
        t.map(|t| t.saturating_duration_since(self.t0))
    }

    pub(crate) fn done(&self) -> bool {
        self.enforced.is_some() && self.floor.is_some()
    }
}

/// Every change, and who still waits for what.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    changes: Vec<Change>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    /// Seen on the appliance, not yet known enforced.
    waiting: Vec<usize>,
    /// The highest generation asked of WaitEnforced.
    requested: u64,
    /// The highest generation known enforced.
    enforced: u64,
    /// Generation → when WaitEnforced of it answered. A commit's events
    /// may still be on their way when that answer comes (thousands of
    /// resources in one generation): those are enforced since then.
    answered: BTreeMap<u64, Instant>,
    /// Events of resources the sync owns (`sync/*`), and the generation of
    /// the last one.
    sync_events: u64,
    last_sync_generation: u64,
}

/// The tracker, shared by the writer and the watchers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    inner: Arc<Mutex<Tracker>>,
    /// Woken at every enforcement.
    enforced: Arc<Notify>,
    /// Told to ask WaitEnforced of the next generation now.
    ahead: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.inner.lock().expect("not poisoned")
    }

    /// Asks WaitEnforced of the generation after the highest asked, before
    /// the change that will make it is written. An ask that turns out
    /// early (another generation came first) still answers the change
    /// it covers: an answer for `g` covers every event up to `g`.
    pub(crate) fn ask_ahead(&self) {
        self.ahead.notify_one();
    }

    /// A change of `key` (resource `id`) about to be written: t0 is now.
    pub(crate) fn register(&self, key: &str, id: &str) -> usize {
        let mut t = self.lock();
        let i = t.changes.len();
        t.changes.push(Change {
            t0: Instant::now(),
            written: None,
            floor: None,
            seen: None,
            enforced: None,
        });
        t.by_key.insert(key.to_owned(), i);
        t.by_id.insert(id.to_owned(), i);
        i
    }

    /// Change `i`'s transaction answered at `at`.
    pub(crate) fn written(&self, i: usize, at: Instant) {
        self.lock().changes[i].written = Some(at);
    }

    pub(crate) fn change(&self, i: usize) -> Change {
        self.lock().changes[i]
    }

    /// Changes `range` as they are now.
    pub(crate) fn changes(&self, range: std::ops::Range<usize>) -> Vec<Change> {
        self.lock().changes[range].to_vec()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().changes.len()
    }

    /// (events of `sync/*` resources, the last one's generation, the
    /// highest generation known enforced).
    pub(crate) fn sync_progress(&self) -> (u64, u64, u64) {
        let t = self.lock();
        (t.sync_events, t.last_sync_generation, t.enforced)
    }

    /// Waits until every change from `from` on is done (enforced and seen
    /// by the floor), up to `timeout`; returns whether they are.
    pub(crate) async fn wait_done(&self, from: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.enforced.notified();
            if self.lock().changes[from..].iter().all(Change::done) {
                return true;
            }
            // The floor's event has no wake-up of its own: it comes before
            // the appliance's in all but pathological cases, and a short
            // timeout covers those.
            let step = tokio::time::Instant::now() + Duration::from_millis(20);
            if tokio::time::timeout_at(step.min(deadline), woken)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.lock().changes[from..].iter().all(Change::done);
            }
        }
    }

    /// Waits until `n` resources of the sync's have arrived and the last
    /// one's generation is enforced, up to `deadline`.
    pub(crate) async fn wait_sync_events(&self, n: u64, deadline: Instant) -> bool {
        loop {
            let woken = self.enforced.notified();
            let (events, last, enforced) = self.sync_progress();
            if events >= n && enforced >= last {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), woken).await;
        }
    }
}

/// Watches Calico's prefix on `client` (a connection of its own) and
/// notes each change's floor; `ready` is told once the watch is in place.
pub(crate) async fn floor(
    mut client: Client,
    shared: Shared,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut stream = client
        .watch(PREFIX, Some(WatchOptions::new().with_prefix()))
        .await
        .context("starting the floor's etcd watch")?;
    let mut ready = Some(ready);
    while let Some(response) = stream.message().await.context("the floor's etcd watch")? {
        let now = Instant::now();
        if response.created() {
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            continue;
        }
        let mut t = shared.lock();
        for event in response.events() {
            let Some(key) = event.kv().and_then(|kv| kv.key_str().ok()) else {
                continue;
            };
            if let Some(i) = t.by_key.remove(key) {
                t.changes[i].floor = Some(now);
            }
        }
    }
    Ok(())
}

/// Watches the appliance from generation `from` and notes when each
/// change's resource arrives and when its generation is enforced.
pub(crate) async fn appliance(channel: Channel, from: u64, shared: Shared) -> anyhow::Result<()> {
    let mut config = ConfigServiceClient::new(channel.clone())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let status = StatusServiceClient::new(channel);
    let mut stream = config
        .watch(WatchRequest {
            from_generation: from,
            kind: String::new(),
        })
        .await
        .context("watching the appliance")?
        .into_inner();
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    {
        let mut t = shared.lock();
        t.requested = t.requested.max(from);
    }
    let ask = |generation: u64| {
        let (mut status, tx) = (status.clone(), tx.clone());
        tokio::spawn(async move {
            let answer = status
                .wait_enforced(WaitEnforcedRequest {
                    generation,
                    timeout: prost_types::Duration::try_from(ENFORCE_TIMEOUT).ok(),
                })
                .await;
            let now = Instant::now();
            match answer {
                Ok(_) => {
                    let _ = tx.send((generation, now));
                }
                Err(e) => eprintln!("sync: WaitEnforced({generation}): {}", e.message()),
            }
        });
    };
    loop {
        tokio::select! {
            () = shared.ahead.notified() => {
                let generation = {
                    let mut t = shared.lock();
                    t.requested += 1;
                    t.requested
                };
                ask(generation);
            }
            message = stream.message() => {
                let Some(event) = message.context("the appliance's watch")? else { break };
                let now = Instant::now();
                let generation = event.generation;
                let Some(r) = event.resource else { continue };
                let id = format!("{}/{}/{}", r.kind, r.namespace, r.name);
                let unasked = {
                    let mut t = shared.lock();
                    if r.owner.starts_with("sync/") {
                        t.sync_events += 1;
                        t.last_sync_generation = t.last_sync_generation.max(generation);
                    }
                    if let Some(i) = t.by_id.remove(&id) {
                        t.changes[i].seen = Some((generation, now));
                        // The first answer that covers this generation.
                        match t.answered.range(generation..).next().map(|(_, at)| *at) {
                            Some(at) => t.changes[i].enforced = Some(at),
                            None => t.waiting.push(i),
                        }
                    }
                    let unasked = generation > t.requested;
                    if unasked {
                        t.requested = generation;
                    }
                    unasked
                };
                if unasked {
                    ask(generation);
                }
            }
            Some((generation, at)) = rx.recv() => {
                let mut t = shared.lock();
                t.enforced = t.enforced.max(generation);
                t.answered.insert(generation, at);
                let Tracker { waiting, changes, .. } = &mut *t;
                waiting.retain(|&i| {
                    let c = &mut changes[i];
                    match c.seen {
                        Some((g, _)) if g <= generation => {
                            c.enforced = Some(at);
                            false
                        }
                        _ => true,
                    }
                });
                drop(t);
                shared.enforced.notify_waiters();
            }
        }
    }
    Ok(())
}
