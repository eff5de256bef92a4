//! The `sync` scenario: how fast `causeway sync` carries a change from
//! Calico's etcdv3 datastore to an appliance that enforces it, on an
//! inventory of 10 000 workload endpoints and 1 000 policies, beside the
//! floor — etcd's own write → watch event latency, measured in the same
//! run on the same writes.
//!
//! ```text
//! causeway-perf sync [--quick] [--json FILE]
//! ```
//!
//! 1. A real etcd on loopback (its data in a scratch directory) and a lab
//!    appliance (`causeway lab up --start`; no traffic, only its control
//!    socket), both removed at the end, also on error.
//! 2. The inventory ([`inventory`]: our own generator's; there is no
//!    public dataset of Calico inventories) written into etcd as
//!    calicoctl writes it ([`etcd`]: one transaction per object, 32 in
//!    flight on one connection). The peer of step 3: reading it all back
//!    as the sync reads it (pages of 500 at one revision).
//! 3. Initial sync: `causeway sync` started on that etcd; from its spawn
//!    until the appliance has an event for every resource and every
//!    worker enforces the last one's generation ([`track`]), then
//!    confirmed by the sync's status (synced, nothing behind) and a List
//!    of what the appliance holds of owner `sync/default`. If the sync
//!    cannot get there (its status names the error) within
//!    `--initial-timeout`, the failure is reported, and the inventory is
//!    loaded the other way to go on: etcd emptied, the sync restarted on
//!    it, the objects written while it watches.
//! 4. Write → enforced: N single changes (an endpoint's `version` label
//!    flipped, or a policy's port moved; alternately), one at a time with
//!    a pause between. For each, t0 just before the etcd transaction;
//!    the floor when our own etcd watch sees it; t1 when `WaitEnforced` of
//!    the generation in which the appliance's watch showed the resource
//!    answers (asked before the write, for the next generation, so that
//!    it answers when the workers enforce it rather than a round trip
//!    after the watch's event). After each, the sync's own `lag_seconds`
//!    is read beside it, and a disk probe (1 KiB appended and
//!    fdatasynced beside the appliance's state) times what the
//!    appliance's journal write costs on this disk at the time.
//! 5. Churn: `--churn-rate` endpoint changes per second for
//!    `--churn-seconds`, each endpoint once, written on schedule whatever
//!    the answers (256 transactions in flight at most); lag (t0 → t1) and
//!    floor per second of t0, the sync's pushes before and after, and the
//!    writer's own lateness against its schedule, so that a writer that
//!    cannot keep the rate is seen as such.
//!
//! Every loop is bounded in count and time; all traffic is on loopback.
//! The appliance's log (`configuration committed ... planned= saved=
//! published=`) and the sync's (`pushed ... put= took=`) are read after
//! each phase to tell where the time went.

mod etcd;
mod inventory;
mod process;
mod results;
mod track;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use causeway_control::proto::{
    GetStatusRequest, ListRequest, config_service_client::ConfigServiceClient,
    status_service_client::StatusServiceClient,
};
use tonic::transport::Channel;

use crate::{
    converge::client,
    lab::{self, Lab},
    procfs,
    progress::Progress,
};
use inventory::{Inventory, Shape};
use process::{Commit, Push, Sync};
use results::Times;
use track::Shared;

/// Unmeasured single changes before the measured ones.
const WARM_UP: u32 = 5;
/// How long one single change may take to be enforced.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the churn's changes may take to be enforced after the last
/// write.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Transactions in flight during the churn: enough for 500/s with etcd
/// answering in 0.5 s.
const MAX_IN_FLIGHT: usize = 256;
/// Transactions in flight while the inventory is written.
const LOAD_PARALLEL: usize = 32;
/// The owner the sync writes as (its default name).
const OWNER: &str = "sync/default";

/// Arguments of `causeway-perf sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// 1 000 endpoints, 100 policies, 20 changes, 3 s of churn: the smoke
    /// test.
    #[arg(long)]
    quick: bool,
    /// Where to write the report (JSON, see `report_schema.rs`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Workload endpoints [default: 10 000; quick: 1 000].
    #[arg(long)]
    endpoints: Option<u32>,
    /// Namespaces they are spread over [default: 50; quick: 10].
    #[arg(long)]
    namespaces: Option<u32>,
    /// Policies [default: 1 000; quick: 100].
    #[arg(long)]
    policies: Option<u32>,
    /// Measured single changes [default: 200; quick: 20].
    #[arg(long)]
    changes: Option<u32>,
    /// Pause after each single change, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pause_ms: u64,
    /// Endpoint changes per second during the churn.
    #[arg(long, default_value_t = 500)]
    churn_rate: u32,
    /// Seconds of churn [default: 10; quick: 3].
    #[arg(long)]
    churn_seconds: Option<u32>,
    /// How long the initial sync may take before it is reported as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    initial_timeout: u64,
    /// The sync's `batch_ms` [default: the sync's own].
    #[arg(long)]
    batch_ms: Option<u64>,
    /// Stop the single changes after this many seconds, changes left or
    /// not.
    #[arg(long, value_name = "SECONDS", default_value_t = 480)]
    max_seconds: u64,
    /// Keep the logs (the sync's, etcd's, the appliance's) in this
    /// directory.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// The `causeway` binary [default: beside this one].
    #[arg(long, value_name = "PATH")]
    causeway: Option<PathBuf>,
    /// Labs are named PREFIXxN; PREFIX is a letter then letters and digits.
    #[arg(long, default_value_t = format!("sy{}", std::process::id() % 100_000))]
    lab_prefix: String,
}

/// The scenario's settings, defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    shape: Shape,
    changes: u32,
    pause: Duration,
    churn_rate: u32,
    churn_seconds: u32,
    initial_timeout: Duration,
    batch_ms: Option<u64>,
    max: Duration,
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `causeway-perf sync`.
///
/// # Errors
/// etcd, the lab, the sync or the control API fails; etcd, the sync and
/// the lab are stopped and removed either way.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let causeway = lab::causeway_binary(args.causeway.as_deref())?;
    lab::check_prefix(&args.lab_prefix)?;
    let q = args.quick;
    let plan = Plan {
        shape: Shape {
            endpoints: args.endpoints.unwrap_or(if q { 1_000 } else { 10_000 }),
            namespaces: args.namespaces.unwrap_or(if q { 10 } else { 50 }),
            policies: args.policies.unwrap_or(if q { 100 } else { 1_000 }).max(1),
        },
        changes: args.changes.unwrap_or(if q { 20 } else { 200 }).max(1),
        pause: Duration::from_millis(args.pause_ms),
        churn_rate: args.churn_rate.max(1),
        churn_seconds: args.churn_seconds.unwrap_or(if q { 3 } else { 10 }),
        initial_timeout: Duration::from_secs(args.initial_timeout),
        batch_ms: args.batch_ms,
        max: Duration::from_secs(args.max_seconds),
    };
    let inventory = Inventory::new(plan.shape)?;
    let scratch =
        Scratch(std::env::temp_dir().join(format!("causeway-perf-sync-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    eprintln!(
        "sync: {} workload endpoints in {} namespaces, {} policies ({} resources; our generator's data), {} single changes, churn {}/s for {} s",
        plan.shape.endpoints,
        plan.shape.namespaces,
        plan.shape.policies,
        inventory.resources(),
        plan.changes,
        plan.churn_rate,
        plan.churn_seconds
    );
    let lab = Lab::up(&causeway, &format!("{}x0", args.lab_prefix), true, None)?;
    let status = lab.status()?;
    let control = PathBuf::from(
        status["appliance"]["control_socket"]
            .as_str()
            .context("`causeway lab status` names no control socket")?,
    );
    let log = PathBuf::from(status["appliance"]["log"].as_str().unwrap_or_default());
    let appliance_pid = status["appliance"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .context("the lab's appliance is not running")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let env = Env {
        causeway: &causeway,
        control: &control,
        appliance_log: &log,
        appliance_pid,
        scratch: &scratch.0,
    };
    let measured = runtime.block_on(measure(&env, &plan, inventory));
    // The runtime's tasks (watches) end before etcd and the lab go.
    drop(runtime);
    if let Some(dir) = &args.logs {
        keep_logs(dir, &scratch.0, &log)?;
    }
    drop(lab);
    let m = measured?;
    let report = results::report(&m, &plan);
    results::print(&m, &report);
    if let Some(path) = &args.json {
        report.write(path)?;
    }
    Ok(())
}

/// Copies the logs of the run into `dir`.
fn keep_logs(dir: &Path, scratch: &Path, appliance: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut logs = vec![appliance.to_owned()];
    for entry in std::fs::read_dir(scratch)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push(path);
        }
    }
    for log in logs {
        if let Some(name) = log.file_name() {
            std::fs::copy(&log, dir.join(name))
                .with_context(|| format!("copying {}", log.display()))?;
        }
    }
    eprintln!("logs kept in {}", dir.display());
    Ok(())
}

/// Where things are.
struct Env<'a> {
    causeway: &'a Path,
    control: &'a Path,
    appliance_log: &'a Path,
    appliance_pid: u32,
    scratch: &'a Path,
}

/// The CPU time of each party, to tell who was busy during a phase.
struct Cpu {
    parties: Vec<(&'static str, u32)>,
    at: Instant,
    ns: Vec<u64>,
}

impl Cpu {
    fn start(parties: Vec<(&'static str, u32)>) -> Self {
        let ns = parties.iter().map(|(_, p)| procfs::cpu_ns(*p)).collect();
        Self {
            parties,
            at: Instant::now(),
            ns,
        }
    }

    /// Each party's CPU time since the start, in CPUs (1.0: one CPU all
    /// the time).
    fn since(&self) -> Vec<(String, f64)> {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        self.parties
            .iter()
            .zip(&self.ns)
            .map(|((name, pid), before)| {
                let used = procfs::cpu_ns(*pid).saturating_sub(*before);
                ((*name).to_owned(), used as f64 / 1e9 / wall)
            })
            .collect()
    }
}

/// Step 3's outcome.
#[derive(Debug)]
pub(crate) struct Initial {
    pub(crate) resources: usize,
    pub(crate) bytes: usize,
    /// The writer's time to create every object.
    pub(crate) etcd_write: Duration,
    /// Reading them all back as the sync does.
    pub(crate) etcd_list: Duration,
    /// The sync's spawn → every resource enforced; or why it did not get
    /// there.
    pub(crate) sync: Result<Duration, String>,
    /// The commits and pushes of the initial sync.
    pub(crate) commits: Vec<Commit>,
    pub(crate) pushes: Vec<Push>,
    /// When the initial sync failed: the first write → every resource
    /// enforced with the sync watching, and its pushes.
    pub(crate) through_watch: Option<Duration>,
    pub(crate) through_watch_pushes: Vec<Push>,
    pub(crate) through_watch_commits: Vec<Commit>,
    /// What the appliance holds of the sync's owner afterwards.
    pub(crate) held: usize,
}

/// Step 4's outcome.
#[derive(Debug)]
pub(crate) struct Single {
    /// t0 → enforced, all and by kind of change.
    pub(crate) enforced: Times,
    pub(crate) endpoint: Times,
    pub(crate) policy: Times,
    /// t0 → the floor's event.
    pub(crate) floor: Times,
    /// t0 → the appliance's event (committed and published).
    pub(crate) seen: Times,
    /// t0 → etcd's answer to the transaction.
    pub(crate) written: Times,
    /// Per change: enforced − floor.
    pub(crate) above_floor: Times,
    /// The sync's own `lag_seconds` read after each change.
    pub(crate) reported_lag: Times,
    /// A 1 KiB append and fdatasync beside the appliance's state, between
    /// changes: what the appliance's own journal write costs on this disk
    /// at the time (it syncs each change before acknowledging it).
    pub(crate) flush: Times,
    pub(crate) done: u32,
    pub(crate) timed_out: u32,
    pub(crate) commits: Vec<Commit>,
    pub(crate) pushes: Vec<Push>,
    /// Each party's CPU use during the phase, in CPUs.
    pub(crate) cpu: Vec<(String, f64)>,
}

/// One second of the churn (by t0).
#[derive(Debug)]
pub(crate) struct Second {
    pub(crate) lag: Times,
    pub(crate) floor: Times,
}

/// Step 5's outcome.
#[derive(Debug)]
pub(crate) struct Churn {
    pub(crate) offered: u32,
    /// Writes issued, and how long issuing them took.
    pub(crate) count: u32,
    pub(crate) issued_in: Duration,
    /// Each write's start behind its schedule.
    pub(crate) lateness: Times,
    /// t0 → etcd's answer.
    pub(crate) written: Times,
    pub(crate) seconds: Vec<Second>,
    /// The same by thirds of the churn (by t0): whether lag grows is read
    /// from the first and the last, which hold several pushes each.
    pub(crate) thirds: Vec<Second>,
    pub(crate) lag: Times,
    pub(crate) floor: Times,
    /// Changes not enforced within the drain timeout, and of those, the
    /// ones whose resource never showed on the appliance's watch.
    pub(crate) unresolved: u32,
    pub(crate) unseen: u32,
    /// Each party's CPU use from the first write to the drain, in CPUs.
    pub(crate) cpu: Vec<(String, f64)>,
    /// The last write → the last change enforced.
    pub(crate) drain: Duration,
    /// `pushes` of the sync's status, before and after.
    pub(crate) pushes: (u64, u64),
    pub(crate) resources_pushed: (u64, u64),
    /// The sync's `lag_seconds` sampled every 250 ms.
    pub(crate) reported_lag: Times,
    pub(crate) commits: Vec<Commit>,
    pub(crate) push_log: Vec<Push>,
}

/// Everything measured.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) initial: Initial,
    pub(crate) single: Single,
    pub(crate) churn: Churn,
}

/// Steps 1 to 5 (the lab is up).
async fn measure(env: &Env<'_>, plan: &Plan, mut inv: Inventory) -> anyhow::Result<Measured> {
    let server = etcd::Server::start(env.scratch).await?;
    let mut writer = etcd::Writer::new(server.connect().await?, &server);
    let channel = client::channel(env.control).await?;
    let generation = StatusServiceClient::new(channel.clone())
        .get_status(GetStatusRequest {})
        .await
        .context("GetStatus")?
        .into_inner()
        .generation;
    // The two watchers, in place before the first write.
    let shared = Shared::default();
    {
        let (shared, channel) = (shared.clone(), channel.clone());
        tokio::spawn(async move {
            if let Err(e) = track::appliance(channel, generation, shared).await {
                eprintln!("sync: the appliance's watch ended: {e:#}");
            }
        });
    }
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    {
        let (shared, floor) = (shared.clone(), server.connect().await?);
        tokio::spawn(async move {
            if let Err(e) = track::floor(floor, shared, ready).await {
                eprintln!("sync: the floor's etcd watch ended: {e:#}");
            }
        });
    }
    is_ready
        .await
        .context("the floor's etcd watch did not start")?;

    let (initial, mut sync) =
        initial(env, plan, &server, &mut writer, &inv, &shared, &channel).await?;
    let single = single(env, plan, &mut writer, &mut inv, &shared, &mut sync).await?;
    let churn = churn(env, plan, &mut writer, &mut inv, &shared, &mut sync).await?;
    drop(sync);
    drop(server);
    Ok(Measured {
        initial,
        single,
        churn,
    })
}

/// Step 2 and 3: the inventory into etcd, then the initial sync (or, if it
/// fails, the inventory through the sync's watch). Returns the sync, in
/// step with the appliance.
async fn initial(
    env: &Env<'_>,
    plan: &Plan,
    server: &etcd::Server,
    writer: &mut etcd::Writer,
    inv: &Inventory,
    shared: &Shared,
    channel: &Channel,
) -> anyhow::Result<(Initial, Sync)> {
    let objects = inv.all();
    let bytes: usize = objects.iter().map(|o| o.value.len()).sum();
    let etcd_write = writer.create_all(&objects, LOAD_PARALLEL).await?;
    let (listed, etcd_list) = writer.list_all().await?;
    anyhow::ensure!(
        listed == objects.len(),
        "etcd holds {listed} keys, {} were written",
        objects.len()
    );
    eprintln!(
        "etcd: wrote {} objects ({:.1} MB) in {:.2} s; read back in {:.0} ms",
        objects.len(),
        bytes as f64 / 1e6,
        etcd_write.as_secs_f64(),
        etcd_list.as_secs_f64() * 1e3
    );
    let expected = inv.resources() as u64;
    let options = |tag| process::Options {
        causeway: env.causeway,
        control: env.control,
        etcd: server.endpoint(),
        dir: env.scratch,
        batch_ms: plan.batch_ms,
        tag,
    };
    let log_from = process::offset(env.appliance_log);
    let (base, _, _) = shared.sync_progress();
    let mut sync = Sync::start(&options("initial"))?;
    let deadline = sync.started + plan.initial_timeout;
    let mut bar = Progress::new("initial sync", expected);
    let outcome = loop {
        let step = (Instant::now() + Duration::from_secs(1)).min(deadline);
        if shared.wait_sync_events(base + expected, step).await {
            break Ok(sync.started.elapsed());
        }
        let (events, _, _) = shared.sync_progress();
        bar.set(events - base, "resources on the appliance");
        let error = sync
            .status()
            .await
            .ok()
            .and_then(|s| process::appliance(&s)["error"].as_str().map(str::to_owned));
        // A push the appliance refuses is retried with backoff for ever:
        // after a few tries it is the answer.
        if let Some(e) = &error
            && sync.started.elapsed() > Duration::from_secs(15)
        {
            break Err(e.clone());
        }
        if Instant::now() >= deadline {
            break Err(error.unwrap_or_else(|| {
                format!(
                    "{} of {expected} resources on the appliance after {:?}",
                    events - base,
                    plan.initial_timeout
                )
            }));
        }
    };
    drop(bar);
    let commits = process::commits(env.appliance_log, log_from);
    let pushes = process::pushes(sync.log(), 0);
    let mut through_watch = None;
    let (mut through_watch_pushes, mut through_watch_commits) = (Vec::new(), Vec::new());
    match &outcome {
        Ok(took) => eprintln!(
            "initial sync: {} resources enforced {:.2} s after the sync's start",
            expected,
            took.as_secs_f64()
        ),
        Err(why) => {
            eprintln!("initial sync: FAILED: {why}");
            eprintln!("  the sync's log: {}", process::tail(sync.log(), 3));
            // Go on the other way: the inventory written while the sync
            // watches an empty prefix.
            drop(sync);
            writer.delete_all().await?;
            sync = Sync::start(&options("watch"))?;
            sync.status_until(Duration::from_secs(30), |s| {
                s["synced"] == true && process::appliance(s)["connected"] == true
            })
            .await
            .context("the restarted sync on an empty prefix")?;
            let (base, _, _) = shared.sync_progress();
            let log_from = process::offset(env.appliance_log);
            let start = Instant::now();
            writer.create_all(&objects, LOAD_PARALLEL).await?;
            let written = start.elapsed();
            let ok = shared
                .wait_sync_events(base + expected, start + plan.initial_timeout)
                .await;
            anyhow::ensure!(
                ok,
                "the inventory written with the sync watching was not enforced within {:?}",
                plan.initial_timeout
            );
            let took = start.elapsed();
            through_watch = Some(took);
            through_watch_pushes = process::pushes(sync.log(), 0);
            through_watch_commits = process::commits(env.appliance_log, log_from);
            eprintln!(
                "through the watch: {expected} resources written in {:.2} s, enforced {:.2} s after the first write, in {} pushes",
                written.as_secs_f64(),
                took.as_secs_f64(),
                through_watch_pushes.len()
            );
        }
    }
    // Confirmed by the sync itself and by what the appliance holds.
    let status = sync
        .status_until(Duration::from_secs(30), |s| {
            s["synced"] == true
                && process::appliance(s)["behind"] == 0
                && process::appliance(s)["connected"] == true
        })
        .await?;
    let held = held(channel).await?;
    eprintln!(
        "the sync: synced, generation {}, {} pushes; the appliance holds {held} resources of {OWNER}",
        process::appliance(&status)["generation"],
        process::appliance(&status)["pushes"]
    );
    Ok((
        Initial {
            resources: objects.len(),
            bytes,
            etcd_write,
            etcd_list,
            sync: outcome,
            commits,
            pushes,
            through_watch,
            through_watch_pushes,
            through_watch_commits,
            held,
        },
        sync,
    ))
}

/// What the appliance holds of [`OWNER`]'s.
async fn held(channel: &Channel) -> anyhow::Result<usize> {
    let list = ConfigServiceClient::new(channel.clone())
        .max_decoding_message_size(256 << 20)
        .list(ListRequest {
            owner: OWNER.to_owned(),
            ..ListRequest::default()
        })
        .await
        .context("List")?
        .into_inner();
    Ok(list.resources.len())
}

/// Step 4: single changes, one at a time.
async fn single(
    env: &Env<'_>,
    plan: &Plan,
    writer: &mut etcd::Writer,
    inv: &mut Inventory,
    shared: &Shared,
    sync: &mut Sync,
) -> anyhow::Result<Single> {
    let shape = inv.shape();
    let mut s = Single {
        enforced: Times::new()?,
        endpoint: Times::new()?,
        policy: Times::new()?,
        floor: Times::new()?,
        seen: Times::new()?,
        written: Times::new()?,
        above_floor: Times::new()?,
        reported_lag: Times::new()?,
        flush: Times::new()?,
        done: 0,
        timed_out: 0,
        commits: Vec::new(),
        pushes: Vec::new(),
        cpu: Vec::new(),
    };
    let cpu = Cpu::start(parties(env, sync, writer));
    let log_from = process::offset(env.appliance_log);
    let sync_from = process::offset(sync.log());
    let deadline = Instant::now() + plan.max;
    // Beside the appliance's control socket: its state directory is on
    // the same file system.
    let probe = env
        .control
        .parent()
        .unwrap_or(env.scratch)
        .join("causeway-perf-flush-probe");
    let _ = std::fs::remove_file(&probe);
    let mut bar = Progress::new("write -> enforced", u64::from(plan.changes));
    for n in 0..WARM_UP + plan.changes {
        if Instant::now() >= deadline {
            break;
        }
        // Alternately an endpoint's label and a policy's port; strides
        // coprime to the counts touch a different one each time.
        let half = n / 2;
        let is_endpoint = n % 2 == 0;
        let object = if is_endpoint {
            inv.flip_endpoint(((u64::from(half) * 7919) % u64::from(shape.endpoints)) as u32)
        } else {
            inv.move_port(((u64::from(half) * 37) % u64::from(shape.policies)) as u32)
        };
        // One change at a time and nothing else writing: it will be the
        // next generation.
        shared.ask_ahead();
        let i = shared.register(&object.key, &object.id);
        writer.update(&object).await?;
        shared.written(i, Instant::now());
        let ok = shared.wait_done(i, CHANGE_TIMEOUT).await;
        let c = shared.change(i);
        if n >= WARM_UP {
            if ok {
                let (enforced, floor) = (
                    c.since(c.enforced).expect("done"),
                    c.since(c.floor).expect("done"),
                );
                s.enforced.record(enforced);
                if is_endpoint {
                    s.endpoint.record(enforced);
                } else {
                    s.policy.record(enforced);
                }
                s.floor.record(floor);
                s.above_floor.record(enforced.saturating_sub(floor));
                if let Some(seen) = c.since(c.seen.map(|(_, t)| t)) {
                    s.seen.record(seen);
                }
                if let Some(w) = c.since(c.written) {
                    s.written.record(w);
                }
                s.done += 1;
                bar.step(&format!(
                    "last: {:.1} ms (floor {:.2} ms)",
                    enforced.as_secs_f64() * 1e3,
                    floor.as_secs_f64() * 1e3
                ));
            } else {
                s.timed_out += 1;
                bar.step("last: not enforced within 10 s");
            }
        }
        let paused = Instant::now();
        if n >= WARM_UP {
            let probe = probe.clone();
            match tokio::task::spawn_blocking(move || flush_probe(&probe)).await? {
                Ok(took) => s.flush.record(took),
                Err(e) => eprintln!("sync: the disk probe failed: {e:#}"),
            }
        }
        tokio::time::sleep(plan.pause.saturating_sub(paused.elapsed())).await;
        // What the sync says of the same change, once its push has
        // answered (the workers enforce before the Apply's answer is back).
        if n >= WARM_UP
            && ok
            && let Ok(status) = sync.status().await
            && let Some(lag) = process::appliance(&status)["lag_seconds"].as_f64()
        {
            s.reported_lag.record(Duration::from_secs_f64(lag));
        }
    }
    drop(bar);
    let _ = std::fs::remove_file(&probe);
    s.cpu = cpu.since();
    s.commits = process::commits(env.appliance_log, log_from);
    s.pushes = process::pushes(sync.log(), sync_from);
    anyhow::ensure!(s.done > 0, "no single change was enforced");
    Ok(s)
}

/// Appends 1 KiB to `file` and fdatasyncs it, as the appliance's journal
/// does for a change: how long that took.
fn flush_probe(file: &Path) -> anyhow::Result<Duration> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    let started = Instant::now();
    f.write_all(&[b'x'; 1024])?;
    f.sync_data()?;
    Ok(started.elapsed())
}

/// Step 5: the churn.
#[allow(
    clippy::too_many_lines,
    reason = "one schedule, its bookkeeping and its drain, in order"
)]
async fn churn(
    env: &Env<'_>,
    plan: &Plan,
    writer: &mut etcd::Writer,
    inv: &mut Inventory,
    shared: &Shared,
    sync: &mut Sync,
) -> anyhow::Result<Churn> {
    let shape = inv.shape();
    let count = (plan.churn_rate * plan.churn_seconds).min(shape.endpoints);
    let before = sync.status().await?;
    let number = |s: &serde_json::Value, k: &str| process::appliance(s)[k].as_u64().unwrap_or(0);
    let log_from = process::offset(env.appliance_log);
    let sync_from = process::offset(sync.log());
    // The sync's own view, sampled beside ours.
    let socket = sync.socket().to_owned();
    // Bounded: the churn and its drain end before this many samples.
    let samples = 4 * (u64::from(plan.churn_seconds) + DRAIN_TIMEOUT.as_secs() + 10);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut lags = Vec::new();
            for _ in 0..samples {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = process::status(&socket).await
                    && let Some(l) = process::appliance(&s)["lag_seconds"].as_f64()
                {
                    lags.push(l);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            lags
        })
    };
    let from = shared.len();
    let period = Duration::from_secs(1).as_secs_f64() / f64::from(plan.churn_rate);
    let mut lateness = Times::new()?;
    let mut tasks = tokio::task::JoinSet::new();
    let finish = |done: Option<Result<anyhow::Result<(String, i64)>, tokio::task::JoinError>>,
                  writer: &mut etcd::Writer|
     -> anyhow::Result<()> {
        if let Some(done) = done {
            let (key, revision) = done??;
            writer.set_revision(&key, revision);
        }
        Ok(())
    };
    let mut bar = Progress::new("churn", u64::from(count));
    let cpu = Cpu::start(parties(env, sync, writer));
    let start = Instant::now();
    for m in 0..count {
        let due = start + Duration::from_secs_f64(period * f64::from(m));
        tokio::time::sleep_until(due.into()).await;
        while tasks.len() >= MAX_IN_FLIGHT {
            finish(tasks.join_next().await, writer)?;
        }
        while let Some(done) = tasks.try_join_next() {
            finish(Some(done), writer)?;
        }
        // Each endpoint once, consecutive ones in different namespaces.
        let object = inv.flip_endpoint((shape.endpoints / 2 + m) % shape.endpoints);
        let revision = writer
            .revision(&object.key)
            .context("an endpoint the writer never wrote")?;
        lateness.record(Instant::now().saturating_duration_since(due));
        let i = shared.register(&object.key, &object.id);
        let (mut client, shared) = (writer.client(), shared.clone());
        tasks.spawn(async move {
            let r = etcd::update(&mut client, &object.key, object.value, revision).await;
            shared.written(i, Instant::now());
            r.map(|revision| (object.key, revision))
        });
        if m % 100 == 99 {
            bar.set(u64::from(m + 1), "written");
        }
    }
    let issued_in = start.elapsed();
    while let Some(done) = tasks.join_next().await {
        finish(Some(done), writer)?;
    }
    drop(bar);
    let drained = shared.wait_done(from, DRAIN_TIMEOUT).await;
    let cpu = cpu.since();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reported = sampler.await.unwrap_or_default();
    let after = sync.status().await?;
    let changes = shared.changes(from..shared.len());
    let mut c = Churn {
        offered: plan.churn_rate,
        count,
        issued_in,
        lateness,
        written: Times::new()?,
        seconds: Vec::new(),
        thirds: (0..3)
            .map(|_| {
                Ok(Second {
                    lag: Times::new()?,
                    floor: Times::new()?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        lag: Times::new()?,
        floor: Times::new()?,
        unresolved: 0,
        unseen: 0,
        cpu,
        drain: Duration::ZERO,
        pushes: (number(&before, "pushes"), number(&after, "pushes")),
        resources_pushed: (
            number(&before, "resources_pushed"),
            number(&after, "resources_pushed"),
        ),
        reported_lag: Times::new()?,
        commits: process::commits(env.appliance_log, log_from),
        push_log: process::pushes(sync.log(), sync_from),
    };
    for l in reported {
        c.reported_lag.record(Duration::from_secs_f64(l));
    }
    let last_write = changes.iter().map(|x| x.t0).max().unwrap_or(start);
    let mut last_enforced = last_write;
    for x in &changes {
        let since = x.t0.saturating_duration_since(start);
        let second = since.as_secs() as usize;
        let third =
            ((since.as_secs_f64() * 3.0 / f64::from(plan.churn_seconds.max(1))) as usize).min(2);
        while c.seconds.len() <= second {
            c.seconds.push(Second {
                lag: Times::new()?,
                floor: Times::new()?,
            });
        }
        if let Some(w) = x.since(x.written) {
            c.written.record(w);
        }
        if let Some(f) = x.since(x.floor) {
            c.floor.record(f);
            c.seconds[second].floor.record(f);
            c.thirds[third].floor.record(f);
        }
        match x.enforced {
            Some(t) => {
                let lag = t.saturating_duration_since(x.t0);
                c.lag.record(lag);
                c.seconds[second].lag.record(lag);
                c.thirds[third].lag.record(lag);
                last_enforced = last_enforced.max(t);
            }
            None => {
                c.unresolved += 1;
                c.unseen += u32::from(x.seen.is_none());
            }
        }
    }
    c.drain = last_enforced.saturating_duration_since(last_write);
    if !drained {
        eprintln!(
            "churn: {} of {count} changes not enforced {DRAIN_TIMEOUT:?} after the last write ({} never on the appliance's watch)",
            c.unresolved, c.unseen
        );
    }
    Ok(c)
}

/// The parties whose CPU time a phase reports.
fn parties(env: &Env<'_>, sync: &Sync, writer: &etcd::Writer) -> Vec<(&'static str, u32)> {
    vec![
        ("appliance", env.appliance_pid),
        ("sync", sync.pid()),
        ("etcd", writer.server_pid()),
        ("writer (causeway-perf)", std::process::id()),
    ]
}
