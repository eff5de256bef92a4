//! The scenario's figures: latencies in HDR histograms, the table on
//! stderr, and the [`Report`] with its figures (causeway beside the etcd
//! floor), the values without a peer, and the goals.
#![forbid(unsafe_code)]

use std::{collections::BTreeMap, fmt, time::Duration};

use hdrhistogram::Histogram;

use super::{Churn, Measured, Plan, process::Commit, process::Push};
use crate::report_schema::{Figure, Goal, Machine, Measure, Report};

/// The goal: p99 etcd write → every worker enforcing, below this.
const GOAL_P99: Duration = Duration::from_millis(100);
/// "Within a few milliseconds of the floor": p99 above the floor's p99 by
/// less than this.
const GOAL_ABOVE_FLOOR: Duration = Duration::from_millis(5);
/// The churn's lag "does not grow": the last second's p99 below this many
/// times the first second's.
const GOAL_GROWTH: f64 = 2.0;
/// The peer of the latencies.
const FLOOR: &str = "etcd-watch-floor";

/// Latencies, in microseconds.
pub(crate) struct Times(Histogram<u64>);

impl fmt::Debug for Times {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Times(n={}, p50={}, p99={})",
            self.len(),
            self.at(0.5),
            self.at(0.99)
        )
    }
}

impl Times {
    pub(crate) fn new() -> anyhow::Result<Self> {
        // 1 µs to an hour, 3 significant digits.
        Ok(Self(Histogram::new_with_bounds(1, 3_600_000_000, 3)?))
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    /// The `q` quantile in microseconds (0 when empty).
    pub(crate) fn at(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.value_at_quantile(q) as f64
        }
    }

    pub(crate) fn max(&self) -> f64 {
        self.0.max() as f64
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    fn of(values: impl IntoIterator<Item = Duration>) -> Self {
        let mut t = Self::new().expect("fixed bounds");
        for v in values {
            t.record(v);
        }
        t
    }

    fn row(&self, what: &str) {
        eprintln!(
            "{what:<52} {:>10.0} {:>10.0} {:>10.0} {:>8}",
            self.at(0.5),
            self.at(0.99),
            self.max(),
            self.len()
        );
    }
}

/// The three phases of commits, p50 and p99 each.
fn commit_phases(commits: &[Commit]) -> [(&'static str, Times); 3] {
    [
        ("planned", Times::of(commits.iter().map(|c| c.planned))),
        ("saved", Times::of(commits.iter().map(|c| c.saved))),
        ("published", Times::of(commits.iter().map(|c| c.published))),
    ]
}

fn push_times(pushes: &[Push]) -> Times {
    Times::of(pushes.iter().map(|p| p.took))
}

/// Each push's round trip less the appliance's own part: the gRPC call's
/// way there and back (both ends' runtimes, HTTP/2, the blocking pool).
fn transport_times(pushes: &[Push]) -> Times {
    Times::of(
        pushes
            .iter()
            .filter(|p| !p.enforced.is_zero())
            .map(|p| p.took.saturating_sub(p.enforced)),
    )
}

fn ms(us: f64) -> f64 {
    us / 1e3
}

/// The churn's first and last thirds, if both have enforced changes.
fn first_last(c: &Churn) -> Option<(usize, usize)> {
    (c.thirds.len() == 3 && c.thirds[0].lag.len() > 0 && c.thirds[2].lag.len() > 0)
        .then_some((0, 2))
}

/// Writes achieved per second during the churn.
fn achieved(c: &Churn) -> f64 {
    f64::from(c.count) / c.issued_in.as_secs_f64().max(1e-9)
}

/// The report: figures beside the floor, values, goals.
pub(crate) fn report(m: &Measured, plan: &Plan) -> Report {
    let (i, s, c) = (&m.initial, &m.single, &m.churn);
    let n = i.resources;
    let mut figures = Vec::new();
    match (&i.sync, i.through_watch) {
        (Ok(took), _) => figures.push(Figure::new(
            format!("initial_sync resources={n}"),
            "ms",
            took.as_secs_f64() * 1e3,
            "etcd-list",
            i.etcd_list.as_secs_f64() * 1e3,
            false,
        )),
        (Err(_), Some(took)) => figures.push(Figure::new(
            format!("inventory_through_watch resources={n}"),
            "ms",
            took.as_secs_f64() * 1e3,
            "etcd-create",
            i.etcd_write.as_secs_f64() * 1e3,
            false,
        )),
        (Err(_), None) => {}
    }
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        figures.push(Figure::new(
            format!("write_to_enforced_{name} resources={n}"),
            "us",
            s.enforced.at(q),
            FLOOR,
            s.floor.at(q),
            false,
        ));
    }
    if let Some((first, last)) = first_last(c) {
        for (which, k) in [("first", first), ("last", last)] {
            figures.push(Figure::new(
                format!("churn_lag_p99 rate={} third={which}", c.offered),
                "us",
                c.thirds[k].lag.at(0.99),
                FLOOR,
                c.thirds[k].floor.at(0.99),
                false,
            ));
        }
    }
    figures.push(Figure::new(
        format!("churn_lag_max rate={}", c.offered),
        "us",
        c.lag.max(),
        FLOOR,
        c.floor.max(),
        false,
    ));

    let mut measures = vec![
        Measure::new(
            format!("resources the appliance holds of {}", super::OWNER),
            "count",
            i.held as f64,
        ),
        Measure::new(
            "inventory in etcd (JSON values)",
            "MB",
            i.bytes as f64 / 1e6,
        ),
        Measure::new(
            "writing it into etcd (32 txns in flight)",
            "ms",
            i.etcd_write.as_secs_f64() * 1e3,
        ),
    ];
    let initial_commits = if i.through_watch.is_some() {
        &i.through_watch_commits
    } else {
        &i.commits
    };
    let initial_pushes = if i.through_watch.is_some() {
        &i.through_watch_pushes
    } else {
        &i.pushes
    };
    measures.push(Measure::new(
        "initial: pushes",
        "count",
        initial_pushes.len() as f64,
    ));
    if let Some(big) = initial_commits.iter().max_by_key(|c| c.changes) {
        for (what, d) in [
            ("planned", big.planned),
            ("saved", big.saved),
            ("published", big.published),
        ] {
            measures.push(Measure::new(
                format!(
                    "initial: largest commit ({} changes), arrival → {what}",
                    big.changes
                ),
                "ms",
                d.as_secs_f64() * 1e3,
            ));
        }
    }
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        for (what, t) in [
            ("endpoint label flipped", &s.endpoint),
            ("policy port moved", &s.policy),
            ("write → appliance's event (committed, published)", &s.seen),
            ("write → etcd's answer", &s.written),
            ("enforced − floor, per change", &s.above_floor),
            ("the sync's own lag_seconds after each", &s.reported_lag),
            (
                "appliance disk: 1 KiB append + fdatasync (probe, between changes)",
                &s.flush,
            ),
        ] {
            measures.push(Measure::new(
                format!("single: {what} {name}"),
                "us",
                t.at(q),
            ));
        }
        for (what, t) in commit_phases(&s.commits) {
            measures.push(Measure::new(
                format!("single: appliance commit, arrival → {what} {name}"),
                "us",
                t.at(q),
            ));
        }
        measures.push(Measure::new(
            format!("single: push round trip (Apply, wait_enforced) {name}"),
            "us",
            push_times(&s.pushes).at(q),
        ));
        measures.push(Measure::new(
            format!("single: push round trip less the appliance's arrival → enforced {name}"),
            "us",
            transport_times(&s.pushes).at(q),
        ));
    }
    let pushes = c.pushes.1.saturating_sub(c.pushes.0);
    let changed = c.resources_pushed.1.saturating_sub(c.resources_pushed.0);
    measures.extend([
        Measure::new("churn: offered rate", "changes/s", f64::from(c.offered)),
        Measure::new("churn: writer's achieved rate", "changes/s", achieved(c)),
        Measure::new(
            "churn: writer behind schedule p99",
            "us",
            c.lateness.at(0.99),
        ),
        Measure::new("churn: write → etcd's answer p99", "us", c.written.at(0.99)),
        Measure::new("churn: changes", "count", f64::from(c.count)),
        Measure::new("churn: pushes", "count", pushes as f64),
        Measure::new(
            "churn: largest push",
            "resources",
            c.push_log
                .iter()
                .map(|p| p.put + p.deleted)
                .max()
                .unwrap_or(0) as f64,
        ),
        Measure::new("churn: resources pushed", "count", changed as f64),
        Measure::new(
            "churn: changes per push",
            "count",
            changed as f64 / (pushes.max(1)) as f64,
        ),
        Measure::new("churn: lag p50", "us", c.lag.at(0.5)),
        Measure::new("churn: lag p99", "us", c.lag.at(0.99)),
        Measure::new("churn: floor p99", "us", c.floor.at(0.99)),
        Measure::new(
            "churn: last write → last enforced",
            "ms",
            c.drain.as_secs_f64() * 1e3,
        ),
        Measure::new(
            "churn: changes not enforced",
            "count",
            f64::from(c.unresolved),
        ),
        Measure::new(
            "churn: of those, never on the appliance's watch",
            "count",
            f64::from(c.unseen),
        ),
        Measure::new(
            "churn: the sync's own lag_seconds, max of 4/s samples",
            "us",
            c.reported_lag.max(),
        ),
    ]);
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        for (what, t) in commit_phases(&c.commits) {
            measures.push(Measure::new(
                format!("churn: appliance commit, arrival → {what} {name}"),
                "us",
                t.at(q),
            ));
        }
        measures.push(Measure::new(
            format!("churn: push round trip {name}"),
            "us",
            push_times(&c.push_log).at(q),
        ));
    }

    for (phase, cpu) in [("single", &s.cpu), ("churn", &c.cpu)] {
        for (who, used) in cpu {
            measures.push(Measure::new(
                format!("{phase}: CPU of {who}"),
                "CPUs",
                *used,
            ));
        }
    }

    let mut goals = vec![
        Goal::below(
            "p99 etcd write → every worker enforcing < 100 ms",
            "ms",
            ms(s.enforced.at(0.99)),
            GOAL_P99.as_secs_f64() * 1e3,
            format!("{} single changes", s.done),
        ),
        Goal::below(
            "p99 within a few ms of the floor (p99 − floor p99 < 5 ms)",
            "ms",
            ms(s.enforced.at(0.99) - s.floor.at(0.99)),
            GOAL_ABOVE_FLOOR.as_secs_f64() * 1e3,
            format!("floor p99 {:.2} ms", ms(s.floor.at(0.99))),
        ),
    ];
    if let Some((first, last)) = first_last(c) {
        let growth = c.thirds[last].lag.at(0.99) / c.thirds[first].lag.at(0.99).max(1.0);
        let kept = achieved(c) >= 0.95 * f64::from(c.offered);
        let mut g = Goal::below(
            format!(
                "{} endpoint changes/s held without growing lag (p99 of the churn's last third / first third < 2)",
                c.offered
            ),
            "ratio",
            growth,
            GOAL_GROWTH,
            format!(
                "writer achieved {:.0}/s; {} of {} changes not enforced; {} pushes; lag p99 {:.0} ms, first third {:.0} ms, last third {:.0} ms",
                achieved(c),
                c.unresolved,
                c.count,
                c.pushes.1.saturating_sub(c.pushes.0),
                ms(c.lag.at(0.99)),
                ms(c.thirds[first].lag.at(0.99)),
                ms(c.thirds[last].lag.at(0.99)),
            ),
        );
        g.met = g.met && kept && c.unresolved == 0;
        goals.push(g);
    }
    Report {
        scenario: "sync".to_owned(),
        machine: Machine::detect(),
        placement: placement(m, plan),
        figures,
        measures,
        goals,
    }
}

fn placement(m: &Measured, plan: &Plan) -> BTreeMap<String, String> {
    let shape = plan.shape;
    let mut p = BTreeMap::from([
        (
            "appliance".to_owned(),
            "causeway run in a lab's gateway namespace (`causeway lab up --start`, its default configuration: one dataplane worker on the last CPU, idle, woken by an eventfd), state on this VM's disk with fdatasync".to_owned(),
        ),
        (
            "sync".to_owned(),
            format!(
                "causeway sync, DATASTORE_TYPE=etcdv3, one appliance over its gRPC Unix socket, batch_ms {}; unpinned",
                plan.batch_ms.map_or_else(|| "default (0)".to_owned(), |b| b.to_string())
            ),
        ),
        (
            "etcd".to_owned(),
            "etcd 3.4 (Debian), one member on loopback, data on this VM's disk (fsync per commit); unpinned".to_owned(),
        ),
        (
            "writer".to_owned(),
            "causeway-perf: one tokio current-thread runtime, one etcd connection for the writes (calicoctl's transactions: create if CreateRevision == 0, update if ModRevision == the last), one more for the floor's watch, one gRPC channel to the appliance (Watch, WaitEnforced); unpinned".to_owned(),
        ),
        (
            "workload".to_owned(),
            format!(
                "our own generator's data (no public dataset of Calico inventories exists): {} WorkloadEndpoints in {} namespaces (one 172.16/12 address each; labels app × 20, tier × 3, version × 2), {} Profiles kns.*, 2 Tiers, {} policies (1 in 5 GlobalNetworkPolicy, the rest NetworkPolicy; 3 in 10 in the two tiers; selectors on app+tier or app+version; 2 ingress rules with ports, 1 egress); single changes alternate an endpoint's version label and a policy's port, {} ms apart; churn: {}/s endpoint label flips for {} s, each endpoint once",
                shape.endpoints,
                shape.namespaces,
                shape.namespaces,
                shape.policies,
                plan.pause.as_millis(),
                plan.churn_rate,
                plan.churn_seconds
            ),
        ),
    ]);
    if let Err(why) = &m.initial.sync {
        p.insert(
            "initial sync".to_owned(),
            format!(
                "FAILED: {why}. The inventory was then written into an empty etcd with the sync watching (`inventory_through_watch`)"
            ),
        );
    }
    p
}

/// The tables on stderr.
pub(crate) fn print(m: &Measured, report: &Report) {
    let (i, s, c) = (&m.initial, &m.single, &m.churn);
    eprintln!();
    match &i.sync {
        Ok(took) => eprintln!(
            "initial sync: {} resources enforced {:.0} ms after the sync's start (etcd list of the same: {:.0} ms); {} pushes",
            i.resources,
            took.as_secs_f64() * 1e3,
            i.etcd_list.as_secs_f64() * 1e3,
            i.pushes.len()
        ),
        Err(why) => eprintln!(
            "initial sync: FAILED ({why}); through the watch instead: {:.0} ms from the first write, {} pushes",
            i.through_watch.unwrap_or_default().as_secs_f64() * 1e3,
            i.through_watch_pushes.len()
        ),
    }
    eprintln!(
        "the appliance holds {} resources of {}",
        i.held,
        super::OWNER
    );
    eprintln!();
    eprintln!(
        "{:<52} {:>10} {:>10} {:>10} {:>8}",
        "latency", "p50_us", "p99_us", "max_us", "samples"
    );
    s.enforced.row("single: write -> enforced");
    s.endpoint.row("single: - endpoint label flipped");
    s.policy.row("single: - policy port moved");
    s.floor.row("single: write -> etcd watch event (floor)");
    s.above_floor.row("single: enforced - floor, per change");
    s.seen.row("single: write -> appliance's event");
    s.written.row("single: write -> etcd's answer");
    s.reported_lag.row("single: the sync's own lag_seconds");
    s.flush.row("single: disk probe, 1 KiB append + fdatasync");
    for (what, t) in commit_phases(&s.commits) {
        t.row(&format!("single: appliance commit, arrival -> {what}"));
    }
    push_times(&s.pushes).row("single: push round trip");
    transport_times(&s.pushes).row("single: - less the appliance's arrival -> enforced");
    c.lag.row("churn: write -> enforced");
    c.floor.row("churn: floor");
    c.written.row("churn: write -> etcd's answer");
    c.lateness.row("churn: writer behind schedule");
    for (what, t) in commit_phases(&c.commits) {
        t.row(&format!("churn: appliance commit, arrival -> {what}"));
    }
    push_times(&c.push_log).row("churn: push round trip");
    c.reported_lag
        .row("churn: the sync's own lag_seconds (4/s)");
    if s.timed_out > 0 {
        eprintln!("single: {} changes not enforced within 10 s", s.timed_out);
    }
    eprintln!();
    eprintln!(
        "{:<8} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "second", "changes", "lag_p50", "lag_p99", "lag_max", "floor_p99"
    );
    for (k, sec) in c.seconds.iter().enumerate() {
        eprintln!(
            "{k:<8} {:>8} {:>10.0} {:>10.0} {:>10.0} {:>12.0}",
            sec.lag.len(),
            sec.lag.at(0.5),
            sec.lag.at(0.99),
            sec.lag.max(),
            sec.floor.at(0.99)
        );
    }
    let log: Vec<String> = c
        .push_log
        .iter()
        .map(|p| format!("{}:{:.0}ms", p.put + p.deleted, p.took.as_secs_f64() * 1e3))
        .collect();
    eprintln!("churn: pushes (resources:round trip): {}", log.join(" "));
    let pushes = c.pushes.1.saturating_sub(c.pushes.0);
    eprintln!(
        "churn: {} changes offered at {}/s, written at {:.0}/s; {} pushes ({:.1} resources each); {} not enforced; last enforced {:.0} ms after the last write",
        c.count,
        c.offered,
        achieved(c),
        pushes,
        c.resources_pushed.1.saturating_sub(c.resources_pushed.0) as f64 / pushes.max(1) as f64,
        c.unresolved,
        c.drain.as_secs_f64() * 1e3
    );
    for (phase, cpu) in [("single changes", &s.cpu), ("churn", &c.cpu)] {
        let used: Vec<String> = cpu.iter().map(|(who, n)| format!("{who} {n:.2}")).collect();
        eprintln!("CPUs used during the {phase}: {}", used.join(", "));
    }
    eprintln!();
    eprintln!(
        "{:<44} {:>10} {:<17} {:>10} {:>7}",
        "figure", "causeway", "peer", "peer_value", "ratio"
    );
    for f in &report.figures {
        eprintln!(
            "{:<44} {:>10.0} {:<17} {:>10.0} {:>7.3}",
            f.name, f.causeway, f.peer, f.peer_value, f.ratio
        );
    }
    eprintln!();
    for g in &report.goals {
        eprintln!(
            "goal: {}: {:.2} {} (limit {:.2}): {} — {}",
            g.name,
            g.value,
            g.unit,
            g.limit,
            if g.met { "met" } else { "NOT MET" },
            g.note
        );
    }
}
