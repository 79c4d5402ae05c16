//! The simulation loop: advance the simulated hypervisor, apply the scenario's events, build
//! the snapshot, measure, decide, start migrations, account the interval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use gmond_metrics::hypervisor::sim::SimCluster;

use super::accounting::{Capacity, Totals};
use super::cloudsim::{self, Ghost};
use super::cluster::{build, initial_placement, snapshot};
use super::exact;
use super::measure::{creates_violation, violating_vms, Tally, Utilisation};
use super::progress::{NoProgress, Progress, TickProgress};
use super::report::Report;
use super::scenario::{Accounting, Event, Scenario};
use crate::constraints::{ConstraintConfig, Rules};
use crate::error::Result;
use crate::plan::{Move, Plan};
use crate::planner::{History, Input, MigrationRecord};
use crate::policy::{Policy, PolicySpec};
use crate::snapshot::{Snapshot, VmTags};
use crate::trends::Trends;

/// Run options.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Seed (scenarios use it for their random choices; the engine itself is deterministic).
    pub seed: u64,
    /// Record per-tick host utilisation and every migration (for `--plot`); off by default so
    /// that ordinary runs pay nothing for it.
    pub record: bool,
    /// Explain every decision round to [`Progress::explain`] (`simulate --verbose`): each
    /// host's tests with their figures, every refused candidate with its gate, spread and
    /// power before and after. Off by default: it costs the rounds their lean path.
    pub explain: bool,
}

/// One migration as the plot shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationMark {
    /// Simulated second at which the migration started.
    pub t_s: u64,
    /// Source host index (into [`Recording::hosts`]).
    pub from: usize,
    /// Destination host index.
    pub to: usize,
}

/// What a run recorded with [`SimOptions::record`]: the input of [`crate::sim::plot`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// Host names, in scenario order.
    pub hosts: Vec<String>,
    /// Simulated second of each recorded tick.
    pub times_s: Vec<u64>,
    /// `util[host][tick]`: requested CPU / capacity (above 1 when oversubscribed).
    pub util: Vec<Vec<f64>>,
    /// Every migration counted in [`Report::migrations`], in order.
    pub migrations: Vec<MigrationMark>,
    /// The policy's CPU overload threshold, where it has a single one.
    pub threshold: Option<f64>,
}

/// Who decides and starts the moves of each tick, when not the policy itself. The engine
/// stays the world (hypervisor, migrations, accounting); a driver sees it through [`World`]
/// and answers with the moves to start now. `balancer_agent::simulate` implements it with
/// one agent core per host, so the agent's own gates (budget, leadership and quorum,
/// pre-check, settling, cooldowns, parallelism) are simulated without this crate knowing the
/// agent (the crate graph points from the agent to the balancer, never back).
pub trait Driver {
    /// The moves to start at this tick, in order. Each gets a [`Started`] in
    /// [`Driver::started`] the same tick.
    fn decide(&mut self, world: &World<'_>) -> Result<Vec<Move>>;

    /// Migrations to cancel now, as (VM, source host), asked for during [`Driver::decide`]:
    /// one still running from that source is cancelled before this tick's moves start, the VM
    /// left running on its source (as libvirt's job abort does); anything else is ignored.
    fn aborts(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// What the hypervisor made of the moves [`Driver::decide`] returned, in their order.
    fn started(&mut self, world: &World<'_>, results: &[(Move, Started)]);

    /// The run is over: the driver adds what its gates did to the report.
    fn finish(&mut self, report: &mut Report);

    /// This tick's decisions explained, when [`SimOptions::explain`] asked for it (drained).
    fn explanations(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// What the simulated hypervisor did with one move of a [`Driver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// The migration runs; it ends when the domain's `migration` is `None` again.
    Yes,
    /// Refused (the VM or a host unknown, the VM not running, the destination full).
    Refused,
}

/// The simulated world at one tick, as a [`Driver`] sees it.
pub struct World<'a> {
    /// Simulated second of this tick.
    pub t_s: u64,
    /// The same in milliseconds.
    pub t_ms: u64,
    /// The simulated hypervisor: where every domain is and which migrations run.
    pub cluster: &'a SimCluster,
    /// Hosts in maintenance (indices).
    pub maintenance: &'a BTreeSet<usize>,
    /// During a partition, the hosts of the first half (`true`) and the second (`false`):
    /// each side sees only its own.
    pub partition: Option<Vec<bool>>,
    /// Per VM: never created, or left the data centre (CloudSim world).
    pub gone: &'a [bool],
    /// Per VM (domain index): the operator's tags from the scenario, published in the view
    /// as gmetric would (empty: none).
    pub vm_tags: &'a [VmTags],
}

impl World<'_> {
    /// The Ganglia view the hosts of `side` (all when `None`) publish now: gmond-rs's
    /// virtual-node metrics, a `maintenance` metric on hosts in maintenance, VMs that left
    /// hidden, hosts on the other side of a partition absent.
    pub fn view(&self, side: Option<&[bool]>) -> ganglia_wire::model::Cluster {
        let hide = |d: usize| self.gone.get(d).copied().unwrap_or(false);
        let mut v = super::view::cluster_view_with(self.cluster, self.t_ms, &hide);
        // The operator's tags, as gmetric would publish them: on the VM's host.
        for (d, tags) in self.vm_tags.iter().enumerate() {
            let Some(dom) = self.cluster.domains().get(d) else {
                continue;
            };
            if tags.is_none() || hide(d) {
                continue;
            }
            if let Some(host) = v.hosts.get_mut(dom.host) {
                host.metrics.push(ganglia_wire::model::Metric {
                    name: format!("{}.{}", dom.name, crate::view::TAGS_SUFFIX),
                    val: tags.to_value(),
                    ty: "string".into(),
                    tmax: 60,
                    ..Default::default()
                });
            }
        }
        for (h, host) in v.hosts.iter_mut().enumerate() {
            if self.maintenance.contains(&h) {
                host.metrics.push(ganglia_wire::model::Metric {
                    name: "maintenance".into(),
                    val: "1".into(),
                    ty: "uint32".into(),
                    tmax: 60,
                    ..Default::default()
                });
            }
        }
        if let Some(side) = side {
            let mut h = 0;
            v.hosts.retain(|_| {
                let keep = side.get(h).copied().unwrap_or(false);
                h += 1;
                keep
            });
        }
        v
    }
}

/// Runs a scenario under a policy.
pub fn simulate(sc: &Scenario, spec: &PolicySpec, opts: &SimOptions) -> Result<Report> {
    simulate_recorded(sc, spec, opts).map(|(r, _)| r)
}

/// Runs a scenario under a policy and returns what it recorded: `Some` exactly when
/// `opts.record` is set.
pub fn simulate_recorded(
    sc: &Scenario,
    spec: &PolicySpec,
    opts: &SimOptions,
) -> Result<(Report, Option<Recording>)> {
    simulate_with_progress(sc, spec, opts, &mut NoProgress)
}

/// [`simulate_recorded`], telling `progress` after every accounted tick.
pub fn simulate_with_progress(
    sc: &Scenario,
    spec: &PolicySpec,
    opts: &SimOptions,
    progress: &mut dyn Progress,
) -> Result<(Report, Option<Recording>)> {
    run_with(sc, spec, opts, None, progress)
}

/// [`simulate_with_progress`] with `driver` deciding and starting the moves instead of the
/// policy (`spec` still gives the initial placement and the rules the report checks).
pub fn simulate_driven(
    sc: &Scenario,
    spec: &PolicySpec,
    opts: &SimOptions,
    driver: &mut dyn Driver,
    progress: &mut dyn Progress,
) -> Result<(Report, Option<Recording>)> {
    run_with(sc, spec, opts, Some(driver), progress)
}

fn run_with(
    sc: &Scenario,
    spec: &PolicySpec,
    opts: &SimOptions,
    driver: Option<&mut dyn Driver>,
    progress: &mut dyn Progress,
) -> Result<(Report, Option<Recording>)> {
    sc.validate()?;
    let spec = with_scenario_rules(sc, spec);
    let setup = Setup {
        placement: initial_placement(sc, Some(&spec)),
        threshold: super::plot::overload_threshold(&spec),
        rules: spec.constraints.clone(),
        policy: spec.build(),
    };
    run_setup(sc, setup, opts, driver, progress)
}

/// Runs a scenario under a caller's own policy, as [`simulate`] runs a policy file. The
/// policy decides alone: it gets no constraints from the simulator, so it must resolve the
/// rules it keeps itself (the scenario's affinity, anti-affinity and pinning groups are in
/// `sc`, and `Report::rule_violation_vm_s` counts them against the default constraints).
/// VMs without a host are placed as for any policy but `consolidate` on CloudSim accounting.
pub fn simulate_policy(
    sc: &Scenario,
    policy: Box<dyn Policy>,
    opts: &SimOptions,
) -> Result<Report> {
    simulate_policy_with_progress(sc, policy, opts, &mut NoProgress).map(|(r, _)| r)
}

/// [`simulate_policy`], telling `progress` after every accounted tick and returning what it
/// recorded (`Some` exactly when `opts.record` is set).
pub fn simulate_policy_with_progress(
    sc: &Scenario,
    policy: Box<dyn Policy>,
    opts: &SimOptions,
    progress: &mut dyn Progress,
) -> Result<(Report, Option<Recording>)> {
    sc.validate()?;
    let mut rules = ConstraintConfig::default();
    add_scenario_rules(sc, &mut rules);
    let setup = Setup {
        placement: initial_placement(sc, None),
        threshold: None,
        rules,
        policy,
    };
    run_setup(sc, setup, opts, None, progress)
}

/// What a run takes from the policy side, whether a file or a caller's own policy.
struct Setup {
    policy: Box<dyn Policy>,
    /// Constraints the simulator measures violations against.
    rules: ConstraintConfig,
    placement: super::cluster::InitialPlacement,
    /// CPU overload threshold drawn in the plot, if the policy has one.
    threshold: Option<f64>,
}

fn run_setup(
    sc: &Scenario,
    setup: Setup,
    opts: &SimOptions,
    mut driver: Option<&mut dyn Driver>,
    progress: &mut dyn Progress,
) -> Result<(Report, Option<Recording>)> {
    let mut run = Run::new(sc, setup, opts)?;
    for k in 0..run.ticks {
        // A reborrow for this tick only (the trait object's lifetime shortened to it).
        let d = driver.as_mut().map(|d| &mut **d as &mut dyn Driver);
        let at = run.step(k, d)?;
        if let Some(at) = &at {
            if opts.explain {
                let mut texts = std::mem::take(&mut run.explained);
                if let Some(d) = driver.as_mut() {
                    texts.extend(d.explanations());
                }
                for text in texts {
                    progress.explain(at.t_s, &text);
                }
            }
            progress.tick(at);
        }
    }
    let (mut r, rec) = run.finish()?;
    if let Some(d) = driver {
        d.finish(&mut r);
    }
    Ok((r, rec))
}

/// The policy with the scenario's own affinity, anti-affinity and pinning rules added (what
/// a [`Driver`]'s own policy should decide with).
pub fn with_scenario_rules(sc: &Scenario, spec: &PolicySpec) -> PolicySpec {
    let mut spec = spec.clone();
    add_scenario_rules(sc, &mut spec.constraints);
    spec
}

fn add_scenario_rules(sc: &Scenario, rules: &mut ConstraintConfig) {
    rules.anti_affinity.extend(sc.anti_affinity.iter().cloned());
    rules.affinity.extend(sc.affinity.iter().cloned());
    rules.pins.extend(sc.pins.iter().cloned());
}

/// One run's state between ticks.
struct Run<'a> {
    sc: &'a Scenario,
    policy: Box<dyn Policy>,
    rules: ConstraintConfig,
    c: SimCluster,
    /// Per VM: never created, or left the data centre (CloudSim world).
    gone: Vec<bool>,
    hosts: Capacity,
    trends: Trends,
    history: History,
    /// Hosts in maintenance.
    maint: BTreeSet<usize>,
    /// HA restarts to come: (when, s; VM; host).
    pending_ha: Vec<(u64, usize, usize)>,
    /// While set and in the future, the cluster view is split in two halves.
    partition_until: Option<u64>,
    r: Report,
    tally: Tally,
    tot: Totals,
    ghosts: Vec<Ghost>,
    rec: Option<Recording>,
    tick_ms: u64,
    ticks: u64,
    /// Per VM: the scenario's tags (see [`World::vm_tags`]).
    vm_tags: Vec<VmTags>,
    /// Explain each round's plan into `explained` (`SimOptions::explain`).
    explain: bool,
    explained: Vec<String>,
    /// Second halves of swaps held back until their first half ends, then offered to the
    /// next decision once (`Input::pending`), as the agent does.
    pending: Vec<Move>,
}

impl<'a> Run<'a> {
    fn new(sc: &'a Scenario, setup: Setup, opts: &SimOptions) -> Result<Run<'a>> {
        let (c, gone) = build(sc, setup.placement)?;
        let ticks = sc.duration_s / sc.tick_s;
        let r = Report {
            scenario: sc.name.clone(),
            policy: setup.policy.name().to_string(),
            duration_s: sc.duration_s,
            hosts: c.hosts().len(),
            vms: c.domains().len(),
            ..Default::default()
        };
        let rec = opts.record.then(|| Recording {
            hosts: c.hosts().iter().map(|h| h.name.clone()).collect(),
            util: vec![Vec::with_capacity(usize::try_from(ticks).unwrap_or(0)); c.hosts().len()],
            threshold: setup.threshold,
            ..Default::default()
        });
        Ok(Run {
            sc,
            trends: Trends::new(setup.policy.trend_config()),
            policy: setup.policy,
            rules: setup.rules,
            hosts: Capacity::of(&c, sc),
            tally: Tally::new(&c),
            c,
            gone,
            history: History::default(),
            maint: BTreeSet::new(),
            pending_ha: Vec::new(),
            partition_until: None,
            r,
            tot: Totals::default(),
            ghosts: Vec::new(),
            rec,
            tick_ms: sc.tick_s * 1000,
            ticks,
            explain: opts.explain,
            explained: Vec::new(),
            pending: Vec::new(),
            vm_tags: sc.vms.iter().map(|v| v.tags).collect(),
        })
    }

    fn cloudsim(&self) -> bool {
        self.sc.accounting == Accounting::Cloudsim
    }

    /// Runs tick `k`; `None` for a tick that is not accounted.
    fn step(&mut self, k: u64, driver: Option<&mut dyn Driver>) -> Result<Option<TickProgress>> {
        let t_ms = k * self.tick_ms;
        let t = t_ms / 1000;
        self.c.advance_to(t_ms)?;
        if self.cloudsim() {
            // CloudSim's first update is one interval after the VMs are created.
            if k == 0 {
                return Ok(None);
            }
            cloudsim::retire_idle(&self.c, self.sc, &mut self.gone, t_ms);
        }
        self.apply_events(t)?;
        let snap = self.snapshot(t_ms, None)?;
        self.trends.observe(&snap);
        let sigma = self.measure(t, &snap);
        let rules = Rules::resolve(&self.rules, &snap);
        self.r.rule_violation_vm_s += violating_vms(&rules, &snap) as f64 * self.sc.tick_s as f64;
        match driver {
            None => {
                let moves = self.decide(t, t_ms, &snap)?;
                self.apply(t, t_ms, &snap, &rules, &moves);
            }
            Some(d) => self.drive(d, t, t_ms, &snap, &rules)?,
        }
        self.account(k, t_ms);
        Ok(Some(TickProgress {
            tick: k,
            ticks: self.ticks,
            t_s: t,
            migrations: self.r.migrations,
            sigma,
        }))
    }

    /// The scenario's events due at `t` (a host failure anywhere in the last tick counts now),
    /// then the HA restarts due.
    fn apply_events(&mut self, t: u64) -> Result<()> {
        let sc = self.sc;
        for e in &sc.events {
            match e {
                Event::HostDown {
                    at_s,
                    host,
                    ha_after_s,
                    restart_on,
                } if *at_s == t || (*at_s > t.saturating_sub(sc.tick_s) && *at_s < t) => {
                    let (Some(h), Some(to)) =
                        (self.c.host_index(host), self.c.host_index(restart_on))
                    else {
                        continue;
                    };
                    self.c.set_host_up(h, false)?;
                    for (d, dom) in self.c.domains().iter().enumerate() {
                        if dom.host == h {
                            self.pending_ha.push((at_s + ha_after_s, d, to));
                        }
                    }
                }
                Event::Maintenance { at_s, host, on } if *at_s == t => {
                    if let Some(h) = self.c.host_index(host) {
                        if *on {
                            self.maint.insert(h);
                        } else {
                            self.maint.remove(&h);
                        }
                    }
                }
                Event::Partition { at_s, duration_s } if *at_s == t => {
                    self.partition_until = Some(at_s + duration_s)
                }
                _ => {}
            }
        }
        let due: Vec<(u64, usize, usize)> = self
            .pending_ha
            .iter()
            .copied()
            .filter(|p| p.0 <= t)
            .collect();
        self.pending_ha.retain(|p| p.0 > t);
        for (_, d, to) in due {
            self.c.restart_on(d, to)?;
        }
        Ok(())
    }

    /// Records and measures the tick; returns the CPU sigma.
    fn measure(&mut self, t: u64, snap: &Snapshot) -> f64 {
        let loads = snap.host_loads();
        if let Some(rec) = self.rec.as_mut() {
            rec.times_s.push(t);
            for (h, series) in rec.util.iter_mut().enumerate() {
                series.push(loads[h].0 / self.hosts.cap[h]);
            }
        }
        self.tally.drain(&mut self.r, &self.c, &self.maint, t);
        let u = Utilisation::of(snap, &loads, &self.maint, &self.hosts.cap);
        self.tally.balance(&mut self.r, self.sc, t, &u)
    }

    /// The moves of this tick's plan (times the decision, counts its notes).
    fn decide(&mut self, t: u64, t_ms: u64, snap: &Snapshot) -> Result<Vec<Move>> {
        let started = Instant::now();
        let (plan, extra) = if self.partition_until.is_some_and(|u| t < u) {
            let (a, b) = self.decide_partitioned(t, t_ms, snap)?;
            (a, b.moves)
        } else {
            self.partition_until = None;
            (self.decide_on(snap, t), Vec::new())
        };
        self.tally
            .decision(started.elapsed().as_secs_f64() * 1000.0);
        if self.explain {
            self.explained.push(plan.explain_with(true));
        }
        self.r.notes += plan.notes.len() as u64;
        self.history.reported.extend(plan.note_keys());
        // Offered once: a second half whose first has ended is now the plan's (or dropped).
        let c = &self.c;
        self.pending.retain(|m| {
            m.after
                .as_deref()
                .and_then(|f| c.domain_index(f))
                .is_some_and(|d| c.domains()[d].migration.is_some())
        });
        let mut moves = plan.moves;
        moves.extend(extra);
        Ok(moves)
    }

    /// The cluster at `t_ms` as the hosts in `view` (all if `None`) see it.
    fn snapshot(&self, t_ms: u64, view: Option<&[bool]>) -> Result<Snapshot> {
        snapshot(&self.c, self.sc, &self.maint, view, t_ms, &self.gone)
    }

    fn decide_on(&self, snap: &Snapshot, t: u64) -> Plan {
        self.policy.decide(Input {
            snapshot: snap,
            trends: &self.trends,
            history: &self.history,
            now: t,
            wall_s: self.sc.start_epoch.saturating_add(t),
            verbose: self.explain,
            pending: &self.pending,
        })
    }

    /// During a partition each half of the hosts (by order) decides alone, and both halves'
    /// plans are carried out; a move the whole view would not have made is a conflict.
    fn decide_partitioned(&mut self, t: u64, t_ms: u64, snap: &Snapshot) -> Result<(Plan, Plan)> {
        let nh = self.c.hosts().len();
        let half_a: Vec<bool> = (0..nh).map(|h| h < nh / 2).collect();
        let half_b: Vec<bool> = half_a.iter().map(|b| !b).collect();
        let pa = self.decide_on(&self.snapshot(t_ms, Some(&half_a))?, t);
        let pb = self.decide_on(&self.snapshot(t_ms, Some(&half_b))?, t);
        let whole = self.decide_on(snap, t);
        let full = targets(&whole);
        for (vm, to) in targets(&pa).into_iter().chain(targets(&pb)) {
            if full.get(vm) != Some(&to) {
                self.r.partition_conflicts += 1;
            }
        }
        Ok((pa, pb))
    }

    /// The world as a driver sees it at `t_ms`.
    fn world(&self, t: u64, t_ms: u64) -> World<'_> {
        let nh = self.c.hosts().len();
        World {
            t_s: t,
            t_ms,
            cluster: &self.c,
            maintenance: &self.maint,
            partition: self
                .partition_until
                .is_some_and(|u| t < u)
                .then(|| (0..nh).map(|h| h < nh / 2).collect()),
            gone: &self.gone,
            vm_tags: &self.vm_tags,
        }
    }

    /// A driver's tick: it decides (timed as a decision), the engine starts its moves as it
    /// starts a plan's, and tells it which ones the hypervisor took.
    fn drive(
        &mut self,
        d: &mut dyn Driver,
        t: u64,
        t_ms: u64,
        snap: &Snapshot,
        rules: &Rules,
    ) -> Result<()> {
        if self.partition_until.is_some_and(|u| t >= u) {
            self.partition_until = None;
        }
        let started = Instant::now();
        let moves = d.decide(&self.world(t, t_ms))?;
        self.tally
            .decision(started.elapsed().as_secs_f64() * 1000.0);
        for (vm, from) in d.aborts() {
            let (Some(dom), Some(src)) = (self.c.domain_index(&vm), self.c.host_index(&from))
            else {
                continue;
            };
            let x = &self.c.domains()[dom];
            // The migration stays counted (it ran until now); only its end changes.
            if x.migration.is_some() && x.host == src {
                self.c.restart_on(dom, src)?;
            }
        }
        let ok = self.apply(t, t_ms, snap, rules, &moves);
        let results: Vec<(Move, Started)> = moves
            .into_iter()
            .zip(ok)
            .map(|(m, ok)| (m, if ok { Started::Yes } else { Started::Refused }))
            .collect();
        d.started(&self.world(t, t_ms), &results);
        Ok(())
    }

    /// Starts the planned migrations, counting them and any that break a hard rule. Returns,
    /// per move, whether a migration of it runs (a second plan of a VM counts as its first).
    fn apply(
        &mut self,
        t: u64,
        t_ms: u64,
        snap: &Snapshot,
        rules: &Rules,
        moves: &[Move],
    ) -> Vec<bool> {
        // A VM planned twice in one round (CloudSim's literal underload pass) makes one
        // migration to its last destination, counted once per planned move.
        let last_to: BTreeMap<&str, &str> = moves
            .iter()
            .map(|m| (m.vm.as_str(), m.to.as_str()))
            .collect();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut started_now = 0;
        let mut ok = Vec::with_capacity(moves.len());
        let mut running: BTreeSet<&str> = BTreeSet::new();
        for m in moves {
            // A swap's second half waits for its first (planned this round) to end.
            if let Some(first) = m.after.as_deref() {
                if moves.iter().any(|o| o.vm == first) {
                    if running.contains(first) {
                        self.pending.push(m.clone());
                    }
                    ok.push(false);
                    continue;
                }
            }
            let (Some(d), Some(to)) = (self.c.domain_index(&m.vm), self.c.host_index(&m.to)) else {
                ok.push(false);
                continue;
            };
            if creates_violation(rules, snap, &m.vm, to) || self.maint.contains(&to) {
                self.r.rule_violations += 1;
            }
            if !seen.insert(m.vm.as_str()) {
                self.count_replanned(t, d, m);
                ok.push(self.c.domains()[d].migration.is_some());
                continue;
            }
            let last = last_to
                .get(m.vm.as_str())
                .and_then(|n| self.c.host_index(n))
                .unwrap_or(to);
            let started = self.start(t, t_ms, d, m, (to, last));
            if started {
                started_now += 1;
                running.insert(m.vm.as_str());
            }
            ok.push(started);
        }
        if started_now > 0 {
            self.r.rounds_with_moves += 1;
        }
        let concurrent = self
            .c
            .domains()
            .iter()
            .filter(|d| d.migration.is_some())
            .count() as u64;
        self.r.migrations_max_concurrent = self.r.migrations_max_concurrent.max(concurrent);
        ok
    }

    /// Starts VM `d`'s migration for move `m`, to `last` of the round's destinations
    /// `(first, last)`. Returns whether the hypervisor accepted it.
    fn start(
        &mut self,
        t: u64,
        t_ms: u64,
        d: usize,
        m: &Move,
        (first, last): (usize, usize),
    ) -> bool {
        let from = self.c.domains()[d].host;
        let mem_kib = self.c.domains()[d].mem_kib;
        if first != last {
            self.ghosts.push(Ghost {
                vm: d,
                host: first,
                start_ms: t_ms,
                end_ms: t_ms + SimCluster::migration_ms(mem_kib, self.sc.link_bps),
            });
        }
        let end = match self.c.start_migration(d, last) {
            Ok(end) => end,
            Err(e) => {
                tracing::debug!(vm = %m.vm, error = %e, "migration refused");
                self.r.migrations_refused += 1;
                return false;
            }
        };
        self.mark(t, from, last);
        self.tally
            .migration(&mut self.r, d, t, mem_kib * 1024, m.reason.tag());
        self.r.migration_seconds += (end - t_ms) as f64 / 1000.0;
        // The history keeps the move as planned, its first destination.
        if self
            .history
            .of_vm(&m.vm)
            .any(|h| h.from == m.to && h.start + 3600 > t)
        {
            self.r.ping_pong += 1;
        }
        self.history.record(MigrationRecord {
            vm: m.vm.clone(),
            from: self.c.hosts()[from].name.clone(),
            to: m.to.clone(),
            start: t,
        });
        true
    }

    /// A second plan for a VM already migrating this round counts as one more migration.
    fn count_replanned(&mut self, t: u64, d: usize, m: &Move) {
        let dom = &self.c.domains()[d];
        let (from, bytes) = (dom.host, dom.mem_kib * 1024);
        if let Some(mig) = dom.migration {
            self.mark(t, from, mig.dest);
            self.tally
                .migration(&mut self.r, d, t, bytes, m.reason.tag());
        }
    }

    fn mark(&mut self, t_s: u64, from: usize, to: usize) {
        if let Some(rec) = self.rec.as_mut() {
            rec.migrations.push(MigrationMark { t_s, from, to });
        }
    }

    /// Accounts tick `k`, which starts at `t_ms`, in the scenario's accounting.
    fn account(&mut self, k: u64, t_ms: u64) {
        if !self.cloudsim() {
            exact::account(
                &self.c,
                self.sc,
                t_ms,
                t_ms + self.tick_ms,
                &self.hosts,
                &mut self.tot,
            );
            return;
        }
        // The last update of the day is its last decision; only the migrations it started
        // are accounted after it.
        let end_ms = if k + 1 == self.ticks {
            self.c
                .domains()
                .iter()
                .filter_map(|d| d.migration.map(|m| m.end_ms))
                .max()
                .unwrap_or(t_ms)
        } else {
            t_ms + self.tick_ms
        };
        self.ghosts.retain(|g| g.end_ms > t_ms);
        cloudsim::account(
            &self.c,
            self.sc,
            &mut self.gone,
            (t_ms, end_ms),
            &self.hosts,
            &self.ghosts,
            &mut self.tot,
        );
    }

    /// Lets the last migrations complete and writes the report.
    fn finish(self) -> Result<(Report, Option<Recording>)> {
        let Run {
            sc,
            mut c,
            mut r,
            tally,
            tot,
            maint,
            rec,
            tick_ms,
            ticks,
            ..
        } = self;
        c.advance_to(ticks * tick_ms + 3_600_000)?;
        tot.write_to(&mut r, ticks);
        tally.finish(&mut r, sc, &c, &maint);
        Ok((r, rec))
    }
}

/// Each planned VM's destination (the last one if planned twice).
fn targets(p: &Plan) -> BTreeMap<&str, &str> {
    p.moves
        .iter()
        .map(|m| (m.vm.as_str(), m.to.as_str()))
        .collect()
}
