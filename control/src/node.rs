//! The running appliance as the control API sees it: the desired state,
//! the dataplane and terminator enforcing it, and the bookkeeping that
//! tells which generation every worker enforces.
//!
//! A change goes: plan (validate the whole resulting state) → save
//! (atomic, fsync) → publish: the policy is compiled (incrementally) and
//! swapped into the dataplane workers with an atomic pointer (they adopt it
//! at their next turn and re-judge older flows on their next packet); a
//! change to TLS services or identities starts a new set of terminator
//! workers beside the old (SO_REUSEPORT) and then drains the old. Changes
//! are serialised by one mutex held from plan to publish; readers (status,
//! explain, list) take it only to copy what they need.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use causeway_dataplane::{
    route::{self, RouteProblem},
    xdp::{Dataplane, DataplaneStats},
};
use causeway_tls::{config::TerminatorConfig, metrics::WorkerMetrics, terminator::Terminator};
use tracing::{info, warn};

use causeway_policy::{
    compile::{self, Cache, Compiled},
    load::LoadError,
    normalize::{Endpoint, PolicySet},
    resources::ApplianceSet,
};

use crate::{
    config::Config,
    store::{Action, Desired, InputFile, Plan, Refusal, Writer, persist},
};

/// Why a change failed.
#[derive(Debug)]
pub enum ChangeError {
    /// Refused: nothing changed.
    Refused(Refusal),
    /// Saving failed: nothing changed (the old state is on disk and in
    /// force).
    Io(anyhow::Error),
}

/// What a committed change did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The generation now stored.
    pub generation: u64,
    /// Whether it is a new generation.
    pub changed: bool,
    /// Per resource.
    pub changes: Vec<(String, Action)>,
    /// When the request arrived (for apply → enforced).
    pub started: Instant,
}

/// One resource changed, for watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id.
    pub id: String,
    /// Created, Configured or Deleted.
    pub action: Action,
    /// The generation of the change.
    pub generation: u64,
    /// The manifest (as it was, for a deletion) as JSON text, and its
    /// apiVersion, kind, namespace and name.
    pub manifest: serde_json::Value,
    /// Who holds it (held it, for a deletion).
    pub owner: Arc<str>,
}

/// A terminator started for a generation.
struct RunningTerminator {
    terminator: Terminator,
}

/// The parts of the node under the change lock.
struct Inner {
    desired: Arc<Desired>,
    /// `desired`'s appliance set, kept: building it walks every resource.
    appliance: Arc<ApplianceSet>,
    cache: Cache,
    terminator: Option<RunningTerminator>,
    /// Errors of the last publish.
    errors: Vec<String>,
    /// TLS services left out because their certificate, key or trust
    /// files did not load at start: (service, why).
    degraded: Vec<Degraded>,
}

/// A TLS service left out at start: its name, and why.
type Degraded = (String, String);

/// Apply → enforced latencies, as a Prometheus histogram.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
    last_ns: AtomicU64,
}

/// Upper bounds of the histogram, in seconds.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl Latency {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(LATENCY_BOUNDS) {
            if s <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.last_ns.store(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The last observation.
    pub fn last(&self) -> Duration {
        Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }

    /// Its samples in Prometheus text: `name_bucket`, `name_sum` and
    /// `name_count`, each with `labels` (`a="b",c="d"`, or empty).
    pub fn write_samples(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write as _;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, bound) in self.buckets.iter().zip(LATENCY_BOUNDS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n{name}_sum{braces} {}\n{name}_count{braces} {count}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
    }
}

/// Counters of the control side.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    /// Applies and deletes that made a new generation.
    pub committed: AtomicU64,
    /// ... that changed nothing.
    pub unchanged: AtomicU64,
    /// ... refused as invalid.
    pub invalid: AtomicU64,
    /// ... refused for a stale generation.
    pub conflicts: AtomicU64,
    /// ... that failed to save.
    pub io_errors: AtomicU64,
    /// Apply → enforced on every worker.
    pub enforced: Latency,
    /// TLS handshakes on the TCP control API refused or timed out.
    pub api_handshakes_refused: AtomicU64,
}

/// The appliance.
pub struct Node {
    config: Config,
    inner: Mutex<Inner>,
    /// The policy set of the current generation, for explain.
    policy: arc_swap::ArcSwap<(u64, Arc<PolicySet>)>,
    dataplane: Option<Mutex<Dataplane>>,
    /// Worker metrics of every terminator this process started (old ones
    /// drain and stop; their counters still count).
    terminator_metrics: Mutex<Vec<Arc<WorkerMetrics>>>,
    /// The generation the terminator's workers enforce.
    terminator_generation: AtomicU64,
    /// Drained ([`Node::drain`]): no terminator runs until the next start.
    draining: AtomicBool,
    /// Change events for watchers.
    events: tokio::sync::broadcast::Sender<Arc<Vec<Event>>>,
    /// Counters.
    pub metrics: ControlMetrics,
    /// When the node started.
    pub started: SystemTime,
    /// The ports the dataplane was started with (and the routes): what the
    /// stored state asks for beyond them waits for a restart.
    started_with: ApplianceSet,
    /// The appliance as an endpoint of its own policy, added to every
    /// policy set compiled (`host_endpoint` in the configuration).
    host: Option<Arc<Endpoint>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl Node {
    /// Loads the stored state (or seeds it from the configuration file),
    /// compiles it and starts the dataplane and the terminator on it.
    ///
    /// # Errors
    /// The stored state does not load, the seed does not validate, or the
    /// dataplane or terminator cannot start: nothing forwards.
    pub fn start(config: Config) -> Result<Self> {
        let desired = load_or_seed(&config)?;
        let mut cache = Cache::default();
        let appliance = desired.appliance_set();
        let host = host_endpoint(&config, &appliance)?;
        let set = desired
            .policy_set()
            .map_err(|e| anyhow::anyhow!("the stored policy does not build: {e}"))?;
        let set = with_host(Arc::new(set), host.as_ref());
        let compiled = compile_set(&set, desired.generation, &mut cache);
        let dataplane = if appliance.ports.is_empty() {
            info!("no ports: this appliance runs the terminator only");
            None
        } else {
            let mut dp_config = config.dataplane(Arc::new(compiled.program), compiled.prefilter);
            dp_config.ports = appliance.port_configs();
            dp_config.routes = appliance.route_configs().map_err(anyhow::Error::msg)?;
            Some(Mutex::new(Dataplane::start(&dp_config)?))
        };
        // A service whose files broke since they were accepted (removed,
        // rewritten) is left out, not the whole terminator: the others
        // serve and the dataplane forwards.
        let (terminator, degraded) =
            start_terminator_degraded(config.terminator.as_ref(), &appliance, |_| true)?;
        let metrics = terminator
            .as_ref()
            .map(|t| t.terminator.worker_metrics().to_vec())
            .unwrap_or_default();
        let (events, _) = tokio::sync::broadcast::channel(1024);
        Ok(Self {
            policy: arc_swap::ArcSwap::from_pointee((desired.generation, set)),
            terminator_generation: AtomicU64::new(desired.generation),
            draining: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                appliance: Arc::new(appliance.clone()),
                desired: Arc::new(desired),
                cache,
                terminator,
                errors: Vec::new(),
                degraded,
            }),
            dataplane,
            terminator_metrics: Mutex::new(metrics),
            events,
            metrics: ControlMetrics::default(),
            started: SystemTime::now(),
            started_with: appliance,
            host,
            config,
        })
    }

    /// The bootstrap configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The desired state now.
    pub fn desired(&self) -> Arc<Desired> {
        self.inner.lock().expect("not poisoned").desired.clone()
    }

    /// The policy set in force and its generation.
    pub fn policy(&self) -> Arc<(u64, Arc<PolicySet>)> {
        self.policy.load_full()
    }

    /// Subscribes to change events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<Event>>> {
        self.events.subscribe()
    }

    /// Applies `files` and deletes `delete` in one change (see
    /// [`Desired::plan_apply`]).
    ///
    /// # Errors
    /// Refused (nothing changed), or the save failed (nothing changed).
    pub fn apply(
        &self,
        files: &[InputFile],
        delete: &[String],
        writer: Writer<'_>,
        dry_run: bool,
    ) -> Result<Committed, ChangeError> {
        let started = Instant::now();
        self.change(started, dry_run, |d, t| {
            d.plan_apply(files, delete, writer, t)
        })
    }

    /// Deletes resources by id.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub fn delete(&self, ids: &[String], writer: Writer<'_>) -> Result<Committed, ChangeError> {
        let started = Instant::now();
        self.change(started, false, |d, t| d.plan_delete(ids, writer, t))
    }

    fn change(
        &self,
        started: Instant,
        dry_run: bool,
        plan: impl FnOnce(&Desired, Option<&TerminatorConfig>) -> Result<Plan, Refusal>,
    ) -> Result<Committed, ChangeError> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let plan = match plan(&inner.desired, self.config.terminator.as_ref())
            .and_then(|p| routes_build(&inner.desired, p))
        {
            Ok(p) => p,
            Err(r) => {
                match r {
                    Refusal::Conflict { .. } => &self.metrics.conflicts,
                    _ => &self.metrics.invalid,
                }
                .fetch_add(1, Ordering::Relaxed);
                return Err(ChangeError::Refused(r));
            }
        };
        if dry_run || !plan.changed {
            if !plan.changed {
                self.metrics.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Committed {
                generation: inner.desired.generation,
                changed: plan.changed && !dry_run,
                changes: plan.changes,
                started,
            });
        }
        let planned = started.elapsed();
        let inner = &mut *inner;
        // The journal's write and sync, then the compile, on this thread:
        // a thread to overlap them cost more than it saved (its start
        // waited a millisecond for a CPU on a busy 2-core machine, while
        // a single change's sync takes 0.3 ms and its compile 0.2), and a
        // change the disk refuses is not compiled into the cache at all.
        // The workers get the program only once the change is on disk.
        let fold_due = match persist::commit(&self.config.state.dir, &inner.desired, &plan.next) {
            Ok(due) => due,
            Err(e) => {
                self.metrics.io_errors.fetch_add(1, Ordering::Relaxed);
                return Err(ChangeError::Io(e));
            }
        };
        let saved = started.elapsed();
        let compiled = match plan
            .policy
            .map_or_else(|| plan.next.policy_set().map(Arc::new), Ok)
        {
            Ok(set) => {
                let set = with_host(set, self.host.as_ref());
                let c = compile_set(&set, plan.next.generation, &mut inner.cache);
                Ok((set, c))
            }
            Err(e) => Err(e),
        };
        let compiled_at = started.elapsed();
        // Acknowledged from here on: it is on disk.
        let old = std::mem::replace(&mut inner.desired, Arc::new(plan.next));
        if fold_due {
            // The journal was set aside: a snapshot of this state takes it
            // in, beside further changes, so that no answer waits for it.
            let (dir, state) = (self.config.state.dir.clone(), inner.desired.clone());
            let folded = std::thread::Builder::new()
                .name("causeway-state-fold".into())
                .spawn(move || {
                    if let Err(e) = persist::fold(&dir, &state) {
                        tracing::error!(
                            error = %format!("{e:#}"),
                            "could not write a snapshot of the state; the next start takes the journal in"
                        );
                    }
                });
            if let Err(e) = folded {
                warn!(error = %e, "could not start the snapshot thread; the next start takes the journal in");
            }
        }
        let generation = inner.desired.generation;
        self.publish(inner, &old, compiled, &plan.changes);
        let published = started.elapsed();
        self.metrics.committed.fetch_add(1, Ordering::Relaxed);
        let events: Vec<Event> = plan
            .changes
            .iter()
            .filter(|(_, a)| *a != Action::Unchanged)
            .filter_map(|(id, action)| {
                let e = match action {
                    Action::Deleted => old.entries().get(id),
                    _ => inner.desired.entries().get(id),
                }?;
                Some(Event {
                    id: id.clone(),
                    action: *action,
                    generation,
                    manifest: e.loaded.manifest.clone(),
                    owner: e.owner.clone(),
                })
            })
            .collect();
        let _ = self.events.send(Arc::new(events));
        info!(
            generation,
            changes = plan.changes.len(),
            planned = ?planned,
            saved = ?saved,
            compiled = ?compiled_at,
            published = ?published,
            "configuration committed"
        );
        Ok(Committed {
            generation,
            changed: true,
            changes: plan.changes,
            started,
        })
    }

    /// Publishes the desired state to the workers, with its policy set
    /// compiled (or why its set could not be built).
    fn publish(
        &self,
        inner: &mut Inner,
        old: &Desired,
        compiled: Result<(Arc<PolicySet>, Compiled), String>,
        changes: &[(String, Action)],
    ) {
        let desired = inner.desired.clone();
        let generation = desired.generation;
        inner.errors.clear();
        match compiled {
            Ok((set, compiled)) => {
                if let Some(dp) = &self.dataplane {
                    let dp = dp.lock().expect("not poisoned");
                    if let Err(e) = dp.set_policy(Arc::new(compiled.program), &compiled.prefilter) {
                        warn!(error = %format!("{e:#}"), "the new policy was not published; the old one stays");
                        inner.errors.push(format!("policy: {e:#}"));
                    }
                }
                self.policy.store(Arc::new((generation, set)));
            }
            Err(e) => inner.errors.push(format!("policy: {e}")),
        }
        // Only a change to an appliance resource, a Service or an
        // EndpointSlice can change the terminator's services.
        if !desired.touches_appliance(old, changes) {
            self.terminator_generation
                .store(generation, Ordering::Release);
            return;
        }
        let wanted = Arc::new(desired.appliance_set());
        let had = std::mem::replace(&mut inner.appliance, wanted.clone());
        // Resolved, so that a Service's endpoints changing changes them.
        // A drained node starts no terminator: the change is stored and
        // takes effect at the next start, which a drain comes before.
        if self.is_draining()
            || wanted.service_configs() == had.service_configs()
                && wanted.identities == had.identities
        {
            self.terminator_generation
                .store(generation, Ordering::Release);
            return;
        }
        // A service already left out for broken files stays out while they
        // are broken; any other service that does not load keeps the old
        // terminator in force.
        let was_degraded: Vec<String> = inner.degraded.iter().map(|(s, _)| s.clone()).collect();
        match start_terminator_degraded(self.config.terminator.as_ref(), &wanted, |s| {
            was_degraded.iter().any(|d| d == s)
        }) {
            Ok((new, degraded)) => {
                inner.degraded = degraded;
                if let Some(t) = &new {
                    self.terminator_metrics
                        .lock()
                        .expect("not poisoned")
                        .extend(t.terminator.worker_metrics().iter().cloned());
                }
                if let Some(old) = std::mem::replace(&mut inner.terminator, new) {
                    // The old workers drain in the background; the new
                    // ones already accept.
                    let _ = std::thread::Builder::new()
                        .name("cw-drain".into())
                        .spawn(move || old.terminator.stop());
                }
                self.terminator_generation
                    .store(generation, Ordering::Release);
                info!(generation, "terminator services published");
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "the new TLS services did not start; the old ones stay");
                inner.errors.push(format!("terminator: {e:#}"));
            }
        }
    }

    /// The oldest generation any worker enforces.
    pub fn enforced_generation(&self) -> u64 {
        let t = self.terminator_generation.load(Ordering::Acquire);
        match &self.dataplane {
            Some(dp) => dp
                .lock()
                .expect("not poisoned")
                .enforced_generation()
                .min(t),
            None => t,
        }
    }

    /// Waits until every worker enforces `generation`; records apply →
    /// enforced from `started`.
    ///
    /// # Errors
    /// Not enforced within `timeout`.
    pub fn wait_enforced(
        &self,
        generation: u64,
        started: Option<Instant>,
        timeout: Duration,
    ) -> Result<Duration, u64> {
        // A timeout past the clock's range waits as long as it can, not
        // panics (the API bounds it; this is the last line).
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        loop {
            let enforced = self.enforced_generation();
            if enforced >= generation {
                let took = started.map(|s| s.elapsed()).unwrap_or_default();
                if started.is_some() {
                    self.metrics.enforced.observe(took);
                }
                return Ok(took);
            }
            if Instant::now() >= deadline {
                return Err(enforced);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Workers: (role, index, core, generation).
    pub fn workers(&self) -> Vec<(&'static str, u32, u32, u64)> {
        let mut out = Vec::new();
        if let Some(dp) = &self.dataplane {
            let dp = dp.lock().expect("not poisoned");
            for (i, (core, g)) in dp.worker_generations().into_iter().enumerate() {
                out.push(("dataplane", i as u32, core as u32, g));
            }
        }
        let inner = self.inner.lock().expect("not poisoned");
        if inner.terminator.is_some()
            && let Some(t) = &self.config.terminator
        {
            let g = self.terminator_generation.load(Ordering::Acquire);
            for (i, core) in t.cores.iter().enumerate() {
                out.push(("terminator", i as u32, *core as u32, g));
            }
        }
        out
    }

    /// What the stored state asks for that waits for a restart, and the
    /// errors of the last publish.
    pub fn pending_and_errors(&self) -> (Vec<String>, Vec<String>) {
        let inner = self.inner.lock().expect("not poisoned");
        let wanted = inner.appliance.clone();
        let mut pending = Vec::new();
        diff(
            &self.started_with.ports,
            &wanted.ports,
            "Port",
            &mut pending,
        );
        diff(
            &self.started_with.routes,
            &wanted.routes,
            "Route",
            &mut pending,
        );
        let mut errors = inner.errors.clone();
        errors.extend(
            inner
                .degraded
                .iter()
                .map(|(service, why)| format!("TLSService/{service}: not served: {why}")),
        );
        (pending, errors)
    }

    /// The dataplane's counters (empty without one).
    pub fn dataplane_stats(&self) -> DataplaneStats {
        self.dataplane
            .as_ref()
            .map(|dp| dp.lock().expect("not poisoned").stats())
            .unwrap_or_default()
    }

    /// The terminator's and the control side's Prometheus text.
    pub fn more_metrics(&self) -> String {
        let workers = self.terminator_metrics.lock().expect("not poisoned");
        let refs: Vec<&WorkerMetrics> = workers.iter().map(AsRef::as_ref).collect();
        let mut out = if refs.is_empty() {
            String::new()
        } else {
            causeway_tls::metrics::render(&refs)
        };
        drop(workers);
        out.push_str(&self.control_metrics());
        out
    }

    fn control_metrics(&self) -> String {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let mut out = String::new();
        let generation = self.desired().generation;
        let _ = writeln!(
            out,
            "# HELP causeway_control_generation The generation of the stored configuration.\n# TYPE causeway_control_generation gauge\ncauseway_control_generation {generation}"
        );
        let _ = writeln!(
            out,
            "# HELP causeway_control_enforced_generation The oldest generation any worker enforces.\n# TYPE causeway_control_enforced_generation gauge\ncauseway_control_enforced_generation {}",
            self.enforced_generation()
        );
        let _ = writeln!(
            out,
            "# HELP causeway_control_api_handshakes_refused_total TLS handshakes on the TCP control API refused (no admin identity) or timed out.\n# TYPE causeway_control_api_handshakes_refused_total counter\ncauseway_control_api_handshakes_refused_total {}",
            m.api_handshakes_refused.load(Ordering::Relaxed)
        );
        let degraded = self.inner.lock().expect("not poisoned").degraded.clone();
        let _ = writeln!(
            out,
            "# HELP causeway_terminator_services_degraded TLS services not served because their certificate, key or trust files did not load at start.\n# TYPE causeway_terminator_services_degraded gauge\ncauseway_terminator_services_degraded {}",
            degraded.len()
        );
        let _ = writeln!(
            out,
            "# HELP causeway_terminator_service_degraded 1 for each TLS service left out for broken files.\n# TYPE causeway_terminator_service_degraded gauge"
        );
        for (service, _) in &degraded {
            let _ = writeln!(
                out,
                "causeway_terminator_service_degraded{{service=\"{service}\"}} 1"
            );
        }
        let _ = writeln!(
            out,
            "# HELP causeway_control_changes_total Applies and deletes, by result.\n# TYPE causeway_control_changes_total counter"
        );
        for (result, c) in [
            ("committed", &m.committed),
            ("unchanged", &m.unchanged),
            ("invalid", &m.invalid),
            ("conflict", &m.conflicts),
            ("io_error", &m.io_errors),
        ] {
            let _ = writeln!(
                out,
                "causeway_control_changes_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP causeway_control_apply_to_enforced_seconds From an apply's arrival until every worker enforces it (applies that waited).\n# TYPE causeway_control_apply_to_enforced_seconds histogram"
        );
        m.enforced
            .write_samples(&mut out, "causeway_control_apply_to_enforced_seconds", "");
        out
    }

    /// Drains before a restart: the terminator stops accepting, lets its
    /// open connections finish (up to `terminator.drain_timeout`) and
    /// stops; the dataplane keeps forwarding. Later changes to TLS
    /// services are stored and wait for the next start. Blocks until the
    /// terminator has stopped; false when the node was drained already.
    pub fn drain(&self) -> bool {
        if self.draining.swap(true, Ordering::AcqRel) {
            return false;
        }
        let t = self.inner.lock().expect("not poisoned").terminator.take();
        if let Some(t) = t {
            info!("draining: the terminator accepts no new connections");
            t.terminator.stop();
            info!("drained: the terminator's connections are closed");
        }
        true
    }

    /// Whether [`Node::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops the terminator (draining it), then the dataplane.
    pub fn stop(&self) {
        let t = self.inner.lock().expect("not poisoned").terminator.take();
        if let Some(t) = t {
            t.terminator.stop();
        }
        if let Some(dp) = &self.dataplane {
            dp.lock().expect("not poisoned").stop();
        }
    }
}

/// Refuses a change after which the dataplane's route table would not
/// build at the next start: a next hop no port's connected subnet holds,
/// or one reached on another port than the route names (the store checks
/// what needs no kernel). The ports' subnets are read from the kernel now;
/// when they cannot be (an interface not there yet), the check is left to
/// the start, which fails closed.
fn routes_build(current: &Desired, plan: Plan) -> Result<Plan, Refusal> {
    if !plan.changed || !plan.next.touches_appliance(current, &plan.changes) {
        return Ok(plan);
    }
    let appliance = plan.next.appliance_set();
    // Without ports there is no dataplane, and its routes are not used.
    if appliance.routes.is_empty() || appliance.ports.is_empty() {
        return Ok(plan);
    }
    let ports = appliance.port_configs();
    // A prefix that does not parse was refused by the store's checks.
    let Ok(routes) = appliance.route_configs() else {
        return Ok(plan);
    };
    let connected = match causeway_dataplane::xdp::connected(&ports) {
        Ok(c) => c,
        Err(e) => {
            warn!(
                error = %format!("{e:#}"),
                "cannot read the ports' subnets: routes are checked against them at the next start"
            );
            return Ok(plan);
        }
    };
    let Err(e) = route::build(&ports, &connected, &routes) else {
        return Ok(plan);
    };
    let name = appliance
        .routes
        .keys()
        .nth(e.index)
        .cloned()
        .unwrap_or_default();
    let resource = format!("Route/{name}");
    let source = plan.next.entries().get(&resource).map(|e| &e.loaded.source);
    let field = match e.problem {
        RouteProblem::NoSuchPort(_) => "spec.port",
        RouteProblem::Nowhere => "spec",
        _ => "spec.via",
    };
    Err(Refusal::Invalid(vec![LoadError {
        file: source.map(|s| s.file.clone()).unwrap_or_default(),
        line: source.map(|s| s.line),
        column: None,
        resource: Some(resource),
        field: Some(field.to_owned()),
        message: e.to_string(),
    }]))
}

fn diff<T: PartialEq>(
    had: &BTreeMap<String, T>,
    wanted: &BTreeMap<String, T>,
    kind: &str,
    out: &mut Vec<String>,
) {
    for (name, w) in wanted {
        match had.get(name) {
            None => out.push(format!(
                "{kind}/{name}: added; takes effect at the next start"
            )),
            Some(h) if h != w => out.push(format!(
                "{kind}/{name}: changed; takes effect at the next start"
            )),
            _ => {}
        }
    }
    for name in had.keys().filter(|n| !wanted.contains_key(*n)) {
        out.push(format!(
            "{kind}/{name}: deleted; still in force until the next start"
        ));
    }
}

/// The host endpoint the configuration asks for: the addresses of the
/// ports the dataplane starts on, as the kernel has them now.
fn host_endpoint(config: &Config, appliance: &ApplianceSet) -> Result<Option<Arc<Endpoint>>> {
    let Some(h) = &config.host_endpoint else {
        return Ok(None);
    };
    let ports = appliance.port_configs();
    let ips = if ports.is_empty() {
        Vec::new()
    } else {
        causeway_dataplane::xdp::own_addresses(&ports)
            .context("reading the appliance's addresses for host_endpoint")?
    };
    info!(name = %h.name, addresses = ?ips, "host endpoint");
    Ok(Some(Arc::new(Endpoint {
        id: format!("HostEndpoint/{}", h.name),
        namespace: String::new(),
        labels: h.labels.clone(),
        ips,
        ports: Vec::new(),
        service_account: None,
        pod: false,
    })))
}

/// `set` with the host endpoint among its endpoints. A copy: the set's
/// memo of selector results must not outlive a change of endpoints.
fn with_host(set: Arc<PolicySet>, host: Option<&Arc<Endpoint>>) -> Arc<PolicySet> {
    match host {
        Some(h) => {
            let mut set = (*set).clone();
            set.endpoints.push(h.clone());
            Arc::new(set)
        }
        None => set,
    }
}

fn compile_set(set: &PolicySet, generation: u64, cache: &mut Cache) -> Compiled {
    let c = compile::compile(set, generation, cache);
    info!(
        generation,
        policies = set.policies.len(),
        endpoints = set.endpoints.len(),
        rules = c.program.rules.len(),
        programs_built = c.built,
        programs_reused = c.reused,
        programs_resolved = c.resolved,
        carried = c.carried,
        prefilter = c.prefilter.len(),
        "policy compiled"
    );
    c
}

/// The terminator serving `set`'s TLS services (none without a
/// `terminator` section or services), leaving out each service whose TLS files do
/// not load when `tolerate(service)` says so (logged as an error and
/// returned as (service, why)); the first other such service fails the
/// whole start.
fn start_terminator_degraded(
    base: Option<&TerminatorConfig>,
    set: &ApplianceSet,
    tolerate: impl Fn(&str) -> bool,
) -> Result<(Option<RunningTerminator>, Vec<Degraded>)> {
    let Some(base) = base else {
        return Ok((None, Vec::new()));
    };
    let mut services = set.service_configs();
    let mut degraded = Vec::new();
    let mut failed = None;
    services.retain(|s| match causeway_tls::terminator::check_service_material(s) {
        Ok(()) => true,
        Err(e) if tolerate(&s.name) => {
            let why = format!("{e:#}");
            tracing::error!(
                service = %s.name,
                error = %why,
                "TLS service not served: its certificate, key or trust files do not load; the other services and the dataplane go on"
            );
            degraded.push((s.name.clone(), why));
            false
        }
        Err(e) => {
            failed.get_or_insert(e);
            true
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if services.is_empty() {
        return Ok((None, degraded));
    }
    let mut t = base.clone();
    t.services = services;
    Ok((
        Some(RunningTerminator {
            terminator: Terminator::start(&t)?,
        }),
        degraded,
    ))
}

/// The stored state, or on the first start the seed from the
/// configuration file (ports, routes, terminator services, manifests),
/// saved as generation 1.
fn load_or_seed(config: &Config) -> Result<Desired> {
    let dir = &config.state.dir;
    if let Some(d) = persist::load(dir)? {
        info!(
            generation = d.generation,
            resources = d.entries().len(),
            file = %persist::path(dir).display(),
            "loaded the stored configuration"
        );
        if !config.policy.manifests.is_empty() {
            info!(
                "policy.manifests seed only a new state; the stored state is in force (SIGHUP re-applies the files)"
            );
        }
        return Ok(d);
    }
    let seed = seed(config)?;
    persist::save(dir, &seed)
        .with_context(|| format!("saving the first state in {}", dir.display()))?;
    info!(
        resources = seed.entries().len(),
        file = %persist::path(dir).display(),
        "seeded the stored configuration from the configuration file"
    );
    Ok(seed)
}

/// The file name the seed's resources carry (errors name it).
pub const SEED_FILE: &str = "<configuration file>";

/// The configuration file's resources as a state at generation 1.
///
/// # Errors
/// The manifests do not load or the whole does not validate.
pub fn seed(config: &Config) -> Result<Desired> {
    seed_checked(config).map_err(|errors| {
        for e in &errors {
            tracing::error!("{e}");
        }
        anyhow::anyhow!(
            "{} error(s) in the configuration or its manifests; nothing was applied",
            errors.len()
        )
    })
}

/// As [`seed`], with every mistake named (file, resource, field) rather
/// than logged: what `causeway run --check` reports on a first start.
///
/// # Errors
/// Every mistake of the configuration's resources and manifests.
pub fn seed_checked(config: &Config) -> Result<Desired, Vec<String>> {
    use causeway_policy::model::manifest;
    let mut docs = Vec::new();
    for p in &config.ports {
        docs.push(manifest(
            "Port",
            &p.name,
            &causeway_policy::resources::PortSpec {
                interface: p.interface.clone(),
                queues: p.queues,
                rp_filter: p.rp_filter,
            },
        ));
    }
    for (i, r) in config.routes.iter().enumerate() {
        docs.push(manifest(
            "Route",
            &format!("route-{i}"),
            &causeway_policy::resources::RouteSpec {
                prefix: r.prefix.to_string(),
                via: r.via,
                port: r.port.clone(),
            },
        ));
    }
    if let Some(t) = &config.terminator {
        let set = ApplianceSet::from_services(&t.services);
        for (name, i) in &set.identities {
            docs.push(manifest("Identity", name, i));
        }
        for (name, s) in &set.services {
            docs.push(manifest("TLSService", name, s));
        }
    }
    let file = std::path::Path::new(SEED_FILE);
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for d in &docs {
        match crate::store::loaded_from_manifest(d, file) {
            Ok(l) => loaded.push(l),
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if !config.policy.manifests.is_empty() {
        let checked = causeway_policy::load::check_paths(&config.policy.manifests);
        errors.extend(checked.errors.iter().map(ToString::to_string));
        loaded.extend(checked.loaded);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let d = Desired::seed(loaded);
    let errors = d.check(config.terminator.as_ref());
    if !errors.is_empty() {
        return Err(errors.iter().map(ToString::to_string).collect());
    }
    Ok(d)
}

/// The files a SIGHUP re-applies: the configuration's manifests.
pub fn manifest_files(config: &Config) -> Result<Vec<InputFile>, Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in &config.policy.manifests {
        collect(p, &mut files, &mut errors);
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn collect(p: &std::path::Path, files: &mut Vec<InputFile>, errors: &mut Vec<String>) {
    let paths = if p.is_dir() {
        match causeway_policy::load::manifests_in(p) {
            Ok(paths) => paths,
            Err(e) => {
                errors.push(e.to_string());
                return;
            }
        }
    } else {
        vec![p.to_owned()]
    };
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(InputFile {
                name: path.display().to_string(),
                text,
            }),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;
    use crate::store::OWNER_CTL;

    fn apply(d: &Desired, text: &str) -> Result<Plan, Refusal> {
        let file = InputFile {
            name: "in.yaml".into(),
            text: text.into(),
        };
        d.plan_apply(&[file], &[], Writer::new(OWNER_CTL), None)
    }

    /// Port `a` on `lo`, whose connected subnet (127.0.0.0/8) every
    /// network namespace has, and a route through `via`.
    fn port_and_route(via: &str) -> String {
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Port\nmetadata: {{name: a}}\n\
             spec: {{interface: lo}}\n---\n\
             apiVersion: causeway.dev/v1alpha1\nkind: Route\nmetadata: {{name: to-c}}\n\
             spec: {{prefix: 10.3.0.0/16, via: {via}}}\n"
        )
    }

    #[test]
    fn a_route_the_dataplane_could_not_build_is_refused_at_apply() {
        let d = Desired::default();
        let good = apply(&d, &port_and_route("127.0.0.9")).unwrap();
        assert!(routes_build(&d, good).is_ok());
        let bad = apply(&d, &port_and_route("10.9.0.1")).unwrap();
        let Err(Refusal::Invalid(errors)) = routes_build(&d, bad) else {
            panic!("a next hop outside every connected subnet is refused");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.resource.as_deref(), Some("Route/to-c"));
        assert_eq!(e.field.as_deref(), Some("spec.via"));
        assert_eq!(e.file, std::path::Path::new("in.yaml"));
        assert!(
            e.message
                .contains("10.9.0.1 is not in any port's connected subnet"),
            "{}",
            e.message
        );
    }

    #[test]
    fn routes_of_an_appliance_without_ports_are_not_built() {
        let d = Desired::default();
        let route = "apiVersion: causeway.dev/v1alpha1\nkind: Route\nmetadata: {name: to-c}\n\
                     spec: {prefix: 10.3.0.0/16, via: 10.9.0.1}\n";
        let plan = apply(&d, route).unwrap();
        assert!(routes_build(&d, plan).is_ok());
    }
}
