//! The simulation loop: advance the simulated hypervisor, build the snapshot, decide, start
//! migrations, account the interval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use gmond_metrics::hypervisor::profile::Profile;
use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};

use super::report::Report;
use super::scenario::{Accounting, Event, ProfileSpec, Scenario};
use crate::constraints::Rules;
use crate::error::{BalancerError, Result};
use crate::plan::Plan;
use crate::planner::{History, Input, MigrationRecord};
use crate::policy::{Detector, PolicySpec};
use crate::snapshot::{HostState, PowerCurve, Snapshot, VmState};
use crate::trends::{population_std_dev, TrendConfig, Trends};

/// Run options.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Seed (scenarios use it for their random choices; the engine itself is deterministic).
    pub seed: u64,
    /// Print progress on stderr.
    pub progress: bool,
    /// Record per-tick host utilisation and every migration (for `--plot`); off by default so
    /// that ordinary runs pay nothing for it.
    pub record: bool,
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

fn curve(name: Option<&str>) -> Option<PowerCurve> {
    match name {
        Some("g4") => Some(PowerCurve::G4),
        Some("g5") => Some(PowerCurve::G5),
        _ => None,
    }
}

fn profile(p: &ProfileSpec) -> Profile {
    match p {
        ProfileSpec::Constant { level } => Profile::Constant(*level),
        ProfileSpec::Spike {
            base,
            peak,
            start_s,
            duration_s,
        } => Profile::Spike {
            base: *base,
            peak: *peak,
            start_ms: start_s * 1000,
            duration_ms: duration_s * 1000,
        },
        ProfileSpec::Noise {
            mean,
            amplitude,
            period_s,
            seed,
        } => Profile::Noise {
            mean: *mean,
            amplitude: *amplitude,
            period_ms: period_s * 1000,
            seed: *seed,
        },
        ProfileSpec::Samples { samples, period_s } => Profile::Trace {
            samples: samples.clone(),
            period_ms: period_s * 1000,
        },
    }
}

/// How VMs without a host are placed at the start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InitialPlacement {
    /// First fit in host order (CloudSim's `PowerVmAllocationPolicySimple`: NPA, DVFS).
    FirstFit,
    /// Power-aware best fit with the scenario's `initial_threshold`.
    Pabfd,
    /// CloudSim 3.0.3's migration policies place the first VMs through their own
    /// `findHostForVm`: every host still reports utilisation 0 (no update has run), so the
    /// power increase is priced from idle, and a non-empty host must stay at or under the
    /// detector's threshold (THR's, or the 0.7 fallback of IQR/MAD/LR). A VM that fits nowhere
    /// is never created.
    CloudsimPolicy(f64),
}

fn initial_placement(sc: &Scenario, spec: &PolicySpec) -> InitialPlacement {
    if sc.accounting == Accounting::Cloudsim && spec.policy == "consolidate" {
        let c = &spec.consolidate;
        return InitialPlacement::CloudsimPolicy(if c.detector == Detector::Thr {
            c.threshold
        } else {
            c.fallback_threshold
        });
    }
    if sc.initial_first_fit {
        InitialPlacement::FirstFit
    } else {
        InitialPlacement::Pabfd
    }
}

/// Builds the simulated cluster, placing unplaced VMs on their full capacity as CloudSim
/// creates them. Returns the cluster and, per VM, whether it could not be created (it stays
/// out of the simulation, as in CloudSim).
fn build(sc: &Scenario, placement: InitialPlacement) -> Result<(SimCluster, Vec<bool>)> {
    let mut c = SimCluster::new(0);
    c.set_ignore_memory(sc.ignore_memory);
    for h in &sc.hosts {
        c.add_host(SimHost {
            name: h.name.clone(),
            cpus: h.cpus,
            mhz: h.mhz,
            mem_kib: h.mem_kb,
            link_bps: sc.link_bps,
            up: true,
        })?;
    }
    let mut cpu = vec![0.0f64; sc.hosts.len()];
    let mut mem = vec![0u64; sc.hosts.len()];
    let mut never = Vec::with_capacity(sc.vms.len());
    for v in &sc.vms {
        let cap = if v.cpu_cap_mhz > 0.0 {
            v.cpu_cap_mhz
        } else {
            f64::from(v.vcpus) * f64::from(sc.hosts[0].mhz)
        };
        let h = match &v.host {
            Some(n) => c.host_index(n).ok_or_else(|| {
                BalancerError::Scenario(format!("vm {} on unknown host {n}", v.name))
            })?,
            None => {
                let mut best: Option<(f64, usize)> = None;
                for (i, h) in sc.hosts.iter().enumerate() {
                    let hc = f64::from(h.cpus) * f64::from(h.mhz);
                    let per_vcpu = cap / f64::from(v.vcpus.max(1));
                    if mem[i] + v.mem_kb > h.mem_kb
                        || cpu[i] + cap > hc
                        || per_vcpu > f64::from(h.mhz)
                    {
                        continue;
                    }
                    let pw = curve(h.power.as_deref()).unwrap_or(PowerCurve::G4);
                    let (d, limit) = match placement {
                        InitialPlacement::FirstFit => {
                            best = Some((0.0, i));
                            break;
                        }
                        InitialPlacement::Pabfd => (
                            pw.watts((cpu[i] + cap) / hc) - pw.watts(cpu[i] / hc),
                            sc.initial_threshold,
                        ),
                        InitialPlacement::CloudsimPolicy(t) => {
                            // The detector sums the VMs' *current* requests, and VMs created
                            // earlier request nothing until their first update: only the new
                            // VM's full MIPS count against the threshold.
                            if cpu[i] != 0.0 && cap / hc > t {
                                continue;
                            }
                            (pw.watts((cpu[i] + cap) / hc) - pw.watts(0.0), 1.0)
                        }
                    };
                    if cpu[i] != 0.0 && (cpu[i] + cap) / hc > limit {
                        continue;
                    }
                    if best.is_none_or(|(b, _)| d < b) {
                        best = Some((d, i));
                    }
                }
                match (best, placement) {
                    (Some((_, i)), _) => i,
                    (None, InitialPlacement::CloudsimPolicy(_)) => {
                        // Kept as a domain so indices match the scenario, but never running.
                        never.push(true);
                        c.add_domain(&v.name, v.vcpus, cap, v.mem_kb, 0, profile(&v.profile))?;
                        continue;
                    }
                    (None, _) => {
                        return Err(BalancerError::Scenario(format!(
                            "no host fits vm {}",
                            v.name
                        )))
                    }
                }
            }
        };
        cpu[h] += cap;
        mem[h] += v.mem_kb;
        never.push(false);
        c.add_domain(&v.name, v.vcpus, cap, v.mem_kb, h, profile(&v.profile))?;
    }
    Ok((c, never))
}

/// Demand of domain `d` at `t_ms`. In the CloudSim world a sampled trace is interpolated
/// linearly between samples (UtilizationModelPlanetLabInMemory), so demand changes between
/// the 300 s updates when a migration completes; elsewhere it is the hypervisor's step value.
fn demand(c: &SimCluster, sc: &Scenario, d: usize, t_ms: u64) -> f64 {
    if sc.accounting == Accounting::Cloudsim {
        if let Some(ProfileSpec::Samples { samples, period_s }) = sc.vms.get(d).map(|v| &v.profile)
        {
            if !samples.is_empty() && *period_s > 0 {
                let p = period_s * 1000;
                let last = samples.len() - 1;
                let i = usize::try_from(t_ms / p).unwrap_or(usize::MAX).min(last);
                let a = f64::from(samples[i]);
                let b = f64::from(samples[(i + 1).min(last)]);
                let f = (t_ms % p) as f64 / p as f64;
                return (a + (b - a) * f) * c.domains()[d].cpu_cap_mhz;
            }
        }
    }
    c.demand_mhz(d, t_ms)
}

/// Snapshot of the cluster at `t_ms` as hosts in `view` see it (hosts outside the view look
/// dead and their VMs are absent).
fn snapshot(
    c: &SimCluster,
    sc: &Scenario,
    maint: &BTreeSet<usize>,
    view: Option<&[bool]>,
    t_ms: u64,
    gone: &[bool],
) -> Result<Snapshot> {
    let visible = |h: usize| view.is_none_or(|v| v[h]);
    let hosts = c
        .hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| HostState {
            name: h.name.clone(),
            cpus: h.cpus,
            mhz: f64::from(h.mhz),
            mem_kb: h.mem_kib,
            up: h.up && visible(i),
            maintenance: maint.contains(&i),
            power: curve(sc.hosts[i].power.as_deref()),
        })
        .collect();
    let mut vms = Vec::with_capacity(c.domains().len());
    for (d, dom) in c.domains().iter().enumerate() {
        if gone.get(d).copied().unwrap_or(false)
            || !c.hosts()[dom.host].up
            || !visible(dom.host)
            || dom.state != gmond_metrics::hypervisor::DomainState::Running
        {
            continue;
        }
        vms.push(VmState {
            name: dom.name.clone(),
            host: c.hosts()[dom.host].name.clone(),
            vcpus: dom.vcpus,
            cpu_cap_mhz: dom.cpu_cap_mhz,
            cpu_demand_mhz: demand(c, sc, d, t_ms),
            mem_kb: dom.mem_kib,
            mem_used_kb: dom.mem_kib,
            migrating: dom.migration.is_some(),
            migrating_to: dom.migration.map(|m| c.hosts()[m.dest].name.clone()),
            host_idx: 0,
        });
    }
    Snapshot::new(t_ms / 1000, hosts, vms)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
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
    sc.validate()?;
    let mut spec = spec.clone();
    spec.constraints
        .anti_affinity
        .extend(sc.anti_affinity.iter().cloned());
    spec.constraints
        .affinity
        .extend(sc.affinity.iter().cloned());
    spec.constraints.pins.extend(sc.pins.iter().cloned());
    let policy = spec.build();
    let (mut c, mut gone) = build(sc, initial_placement(sc, &spec))?;
    let cs = sc.accounting == Accounting::Cloudsim;
    let nh = c.hosts().len();
    let nv = c.domains().len();
    let mut trends = Trends::new(TrendConfig::default());
    let mut history = History::default();
    let mut maint: BTreeSet<usize> = BTreeSet::new();
    let mut pending_ha: Vec<(u64, usize, usize)> = Vec::new();
    let mut partition_until: Option<u64> = None;
    let mut maint_start: Option<u64> = None;
    let mut r = Report {
        scenario: sc.name.clone(),
        policy: spec.policy.clone(),
        duration_s: sc.duration_s,
        hosts: nh,
        vms: nv,
        ..Default::default()
    };
    let mut sigmas = Vec::new();
    let mut decision_ms = Vec::new();
    let mut balanced_run = 0u32;
    let mut per_vm = vec![0u64; nv];
    let mut first_host: Vec<usize> = c.domains().iter().map(|d| d.host).collect();
    let mut mig_starts: Vec<u64> = Vec::new();
    let (mut sla_time, mut active_time) = (0.0, 0.0);
    let (mut req_total, mut unmet_total, mut unmet_mig) = (0.0, 0.0, 0.0);
    let mut energy_ws = 0.0;
    let mut active_host_ticks = 0.0;
    let mut tot = Totals::default();
    let mut ghosts: Vec<Ghost> = Vec::new();
    let tick_ms = sc.tick_s * 1000;
    let ticks = sc.duration_s / sc.tick_s;
    let pe_mhz: Vec<f64> = c.hosts().iter().map(|h| f64::from(h.mhz)).collect();
    let cap: Vec<f64> = c
        .hosts()
        .iter()
        .map(|h| f64::from(h.cpus) * f64::from(h.mhz))
        .collect();
    let rules_cfg = spec.constraints.clone();
    let mut rec = opts.record.then(|| Recording {
        hosts: c.hosts().iter().map(|h| h.name.clone()).collect(),
        util: vec![Vec::with_capacity(usize::try_from(ticks).unwrap_or(0)); nh],
        threshold: super::plot::overload_threshold(&spec),
        ..Default::default()
    });
    for k in 0..ticks {
        let t_ms = k * tick_ms;
        let t = t_ms / 1000;
        c.advance_to(t_ms)?;
        if cs {
            // CloudSim's first update is one interval after the VMs are created.
            if k == 0 {
                continue;
            }
            retire_idle(&c, sc, &mut gone, t_ms);
        }
        for e in &sc.events {
            match e {
                Event::HostDown {
                    at_s,
                    host,
                    ha_after_s,
                    restart_on,
                } if *at_s == t || (*at_s > t.saturating_sub(sc.tick_s) && *at_s < t) => {
                    let (Some(h), Some(to)) = (c.host_index(host), c.host_index(restart_on)) else {
                        continue;
                    };
                    c.set_host_up(h, false)?;
                    for (d, dom) in c.domains().iter().enumerate() {
                        if dom.host == h {
                            pending_ha.push((at_s + ha_after_s, d, to));
                        }
                    }
                }
                Event::Maintenance { at_s, host, on } if *at_s == t => {
                    if let Some(h) = c.host_index(host) {
                        if *on {
                            maint.insert(h);
                        } else {
                            maint.remove(&h);
                        }
                    }
                }
                Event::Partition { at_s, duration_s } if *at_s == t => {
                    partition_until = Some(at_s + duration_s)
                }
                _ => {}
            }
        }
        let due: Vec<(u64, usize, usize)> =
            pending_ha.iter().copied().filter(|p| p.0 <= t).collect();
        pending_ha.retain(|p| p.0 > t);
        for (_, d, to) in due {
            c.restart_on(d, to)?;
        }
        let snap = snapshot(&c, sc, &maint, None, t_ms, &gone)?;
        trends.observe(&snap);

        // Metrics at the tick: sigma, balance, rule violations.
        let loads = snap.host_loads();
        if let Some(rec) = rec.as_mut() {
            rec.times_s.push(t);
            for (h, series) in rec.util.iter_mut().enumerate() {
                series.push(loads[h].0 / cap[h]);
            }
        }
        let utils: Vec<f64> = (0..nh)
            .filter(|&h| snap.hosts[h].up && !maint.contains(&h))
            .map(|h| loads[h].0 / cap[h])
            .collect();
        let sigma = population_std_dev(&utils);
        sigmas.push(sigma);
        let maxu = utils.iter().copied().fold(0.0, f64::max);
        let minu = utils.iter().copied().fold(f64::INFINITY, f64::min);
        r.sigma_cpu_final = sigma;
        r.max_util_final = maxu;
        let mem_utils: Vec<f64> = (0..nh)
            .filter(|&h| snap.hosts[h].up && !maint.contains(&h))
            .map(|h| loads[h].1 as f64 / snap.hosts[h].mem_kb as f64)
            .collect();
        r.sigma_mem_final = population_std_dev(&mem_utils);
        if !maint.is_empty() {
            let start = *maint_start.get_or_insert(t);
            let empty = c.domains().iter().all(|d| !maint.contains(&d.host));
            if empty && r.drain_s.is_none() {
                r.drain_s = Some(t - start);
            }
        }
        r.spread_final = if utils.is_empty() { 0.0 } else { maxu - minu };
        let balanced = sigma <= sc.sigma_target
            && maxu < sc.high_util
            && maint.iter().all(|&h| loads[h].1 == 0);
        if t >= sc.perturb_at_s && r.time_to_balance_s.is_none() {
            balanced_run = if balanced { balanced_run + 1 } else { 0 };
            if balanced_run >= 3 {
                r.time_to_balance_s =
                    Some(t - sc.perturb_at_s - 2 * sc.tick_s.min(t - sc.perturb_at_s));
            }
        }
        let rules = Rules::resolve(&rules_cfg, &snap);
        r.rule_violation_vm_s += violating_vms(&rules, &snap) as f64 * sc.tick_s as f64;

        // Decide.
        let started = Instant::now();
        let plan: Plan;
        let mut extra_moves = Vec::new();
        if partition_until.is_some_and(|u| t < u) {
            let half_a: Vec<bool> = (0..nh).map(|h| h < nh / 2).collect();
            let half_b: Vec<bool> = half_a.iter().map(|b| !b).collect();
            let sa = snapshot(&c, sc, &maint, Some(&half_a), t_ms, &gone)?;
            let sb = snapshot(&c, sc, &maint, Some(&half_b), t_ms, &gone)?;
            let pa = policy.decide(Input {
                snapshot: &sa,
                trends: &trends,
                history: &history,
                now: t,
            });
            let pb = policy.decide(Input {
                snapshot: &sb,
                trends: &trends,
                history: &history,
                now: t,
            });
            let full = policy.decide(Input {
                snapshot: &snap,
                trends: &trends,
                history: &history,
                now: t,
            });
            let da: BTreeMap<&str, &str> = pa
                .moves
                .iter()
                .map(|m| (m.vm.as_str(), m.to.as_str()))
                .collect();
            let db: BTreeMap<&str, &str> = pb
                .moves
                .iter()
                .map(|m| (m.vm.as_str(), m.to.as_str()))
                .collect();
            let df: BTreeMap<&str, &str> = full
                .moves
                .iter()
                .map(|m| (m.vm.as_str(), m.to.as_str()))
                .collect();
            for (vm, to) in da.iter().chain(db.iter()) {
                if df.get(vm) != Some(to) {
                    r.partition_conflicts += 1;
                }
            }
            extra_moves.extend(pb.moves.clone());
            plan = pa;
        } else {
            partition_until = None;
            plan = policy.decide(Input {
                snapshot: &snap,
                trends: &trends,
                history: &history,
                now: t,
            });
        }
        decision_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        r.notes += plan.notes.len() as u64;
        history.reported.extend(plan.note_keys());

        // Apply.
        let mut started_now = 0;
        // A VM planned twice in one round (CloudSim's literal underload pass) makes one
        // migration to its last destination, counted once per planned move.
        let last_to: BTreeMap<&str, &str> = plan
            .moves
            .iter()
            .chain(extra_moves.iter())
            .map(|m| (m.vm.as_str(), m.to.as_str()))
            .collect();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for m in plan.moves.iter().chain(extra_moves.iter()) {
            let (Some(d), Some(to)) = (c.domain_index(&m.vm), c.host_index(&m.to)) else {
                continue;
            };
            let from = c.domains()[d].host;
            if creates_violation(&rules, &snap, &m.vm, to) || maint.contains(&to) {
                r.rule_violations += 1;
            }
            if !seen.insert(m.vm.as_str()) {
                if let Some(mig) = c.domains()[d].migration {
                    if let Some(rec) = rec.as_mut() {
                        rec.migrations.push(MigrationMark {
                            t_s: t,
                            from: c.domains()[d].host,
                            to: mig.dest,
                        });
                    }
                    r.migrations += 1;
                    *r.migrations_by_reason
                        .entry(m.reason.tag().to_string())
                        .or_default() += 1;
                    per_vm[d] += 1;
                    mig_starts.push(t);
                    r.bytes_moved += c.domains()[d].mem_kib * 1024;
                }
                continue;
            }
            let first = to;
            let to = last_to
                .get(m.vm.as_str())
                .and_then(|n| c.host_index(n))
                .unwrap_or(to);
            if first != to {
                ghosts.push(Ghost {
                    vm: d,
                    host: first,
                    start_ms: t_ms,
                    end_ms: t_ms + SimCluster::migration_ms(c.domains()[d].mem_kib, sc.link_bps),
                });
            }
            match c.start_migration(d, to) {
                Ok(end) => {
                    if let Some(rec) = rec.as_mut() {
                        rec.migrations.push(MigrationMark { t_s: t, from, to });
                    }
                    started_now += 1;
                    r.migrations += 1;
                    *r.migrations_by_reason
                        .entry(m.reason.tag().to_string())
                        .or_default() += 1;
                    per_vm[d] += 1;
                    mig_starts.push(t);
                    let secs = (end - t_ms) as f64 / 1000.0;
                    r.migration_seconds += secs;
                    r.bytes_moved += c.domains()[d].mem_kib * 1024;
                    let from_name = c.hosts()[from].name.clone();
                    if history
                        .of_vm(&m.vm)
                        .any(|h| h.from == m.to && h.start + 3600 > t)
                    {
                        r.ping_pong += 1;
                    }
                    history.record(MigrationRecord {
                        vm: m.vm.clone(),
                        from: from_name,
                        to: m.to.clone(),
                        start: t,
                    });
                }
                Err(e) => {
                    tracing::debug!(vm = %m.vm, error = %e, "migration refused");
                    r.migrations_refused += 1;
                }
            }
        }
        if started_now > 0 {
            r.rounds_with_moves += 1;
        }
        let concurrent = c.domains().iter().filter(|d| d.migration.is_some()).count() as u64;
        r.migrations_max_concurrent = r.migrations_max_concurrent.max(concurrent);

        if cs {
            // The last update of the day is its last decision; only the migrations it started
            // are accounted after it.
            let end_ms = if k + 1 == ticks {
                c.domains()
                    .iter()
                    .filter_map(|d| d.migration.map(|m| m.end_ms))
                    .max()
                    .unwrap_or(t_ms)
            } else {
                t_ms + tick_ms
            };
            ghosts.retain(|g| g.end_ms > t_ms);
            let active = account_cloudsim(
                &c, sc, &mut gone, t_ms, end_ms, &pe_mhz, &cap, &ghosts, &mut tot,
            );
            active_host_ticks += active.iter().filter(|x| **x).count() as f64;
            if opts.progress {
                progress(sc, k, ticks, t, r.migrations, sigma);
            }
            continue;
        }
        // Account [t, t + tick) in segments split at migration completions.
        let end_ms = t_ms + tick_ms;
        let mut events: Vec<u64> = vec![t_ms];
        for dom in c.domains() {
            if let Some(m) = dom.migration {
                if m.end_ms > t_ms && m.end_ms < end_ms {
                    events.push(m.end_ms);
                }
            }
        }
        events.sort_unstable();
        events.dedup();
        events.push(end_ms);
        let mut req = vec![0.0f64; nh];
        let mut alloc_req = vec![0.0f64; nh];
        let mut host_active_any = vec![false; nh];
        for w in events.windows(2) {
            let (a, b) = (w[0], w[1]);
            let dt = (b - a) as f64 / 1000.0;
            req.iter_mut().for_each(|x| *x = 0.0);
            alloc_req.iter_mut().for_each(|x| *x = 0.0);
            // (vm demand, capped request, migrating-out) per VM, for the scheduler.
            let mut vm_rows: Vec<(usize, f64, f64, u8)> = Vec::with_capacity(nv);
            for (d, dom) in c.domains().iter().enumerate() {
                if !c.hosts()[dom.host].up
                    || dom.state != gmond_metrics::hypervisor::DomainState::Running
                {
                    continue;
                }
                let dem = c.demand_mhz(d, t_ms);
                let migrating = dom
                    .migration
                    .is_some_and(|m| a >= m.start_ms && a < m.end_ms);
                // A migration that completed earlier in this tick has already moved the VM.
                let src = match dom.migration {
                    Some(m) if m.end_ms <= a => m.dest,
                    _ => dom.host,
                };
                let capped = dem.min(pe_mhz[src]);
                req[src] += dem;
                alloc_req[src] += capped;
                vm_rows.push((src, dem, capped, u8::from(migrating)));
                if migrating {
                    if let Some(m) = dom.migration {
                        let dst = m.dest;
                        let cd = dem.min(pe_mhz[dst]);
                        alloc_req[dst] += 0.1 * cd;
                        req[dst] += 0.1 * cd;
                        vm_rows.push((dst, 0.0, 0.1 * cd, 2));
                    }
                }
            }
            // Scale per host if oversubscribed.
            let scale: Vec<f64> = (0..nh)
                .map(|h| {
                    if alloc_req[h] > cap[h] {
                        cap[h] / alloc_req[h]
                    } else {
                        1.0
                    }
                })
                .collect();
            let mut util_alloc = vec![0.0f64; nh];
            for &(h, dem, capped, mig) in &vm_rows {
                let granted = capped * scale[h];
                match mig {
                    2 => util_alloc[h] += granted,
                    1 => {
                        let got = 0.9 * granted;
                        util_alloc[h] += got / 0.9;
                        unmet_total += (dem - got).max(0.0) * dt;
                        unmet_mig += (dem - got).max(0.0) * dt;
                        req_total += dem * dt;
                    }
                    _ => {
                        util_alloc[h] += granted;
                        unmet_total += (dem - granted).max(0.0) * dt;
                        req_total += dem * dt;
                    }
                }
            }
            for h in 0..nh {
                if !c.hosts()[h].up {
                    continue;
                }
                let u = util_alloc[h] / cap[h];
                if util_alloc[h] > 0.0 {
                    host_active_any[h] = true;
                    active_time += dt;
                    if util_alloc[h] < req[h] * (1.0 - 1e-9) {
                        sla_time += dt;
                    }
                    let pw = curve(sc.hosts[h].power.as_deref()).unwrap_or(PowerCurve::G4);
                    energy_ws += pw.watts(u) * dt;
                }
                if req[h] >= cap[h] {
                    r.overload_host_s += dt;
                }
                if req[h] >= sc.high_util * cap[h] {
                    r.high_util_host_s += dt;
                }
            }
        }
        active_host_ticks += host_active_any.iter().filter(|x| **x).count() as f64;
        if opts.progress {
            progress(sc, k, ticks, t, r.migrations, sigma);
        }
    }
    c.advance_to(ticks * tick_ms + 3_600_000)?;
    energy_ws += tot.energy_ws;
    sla_time += tot.sla_time;
    active_time += tot.active_time;
    req_total += tot.req;
    unmet_total += tot.unmet;
    unmet_mig += tot.unmet_mig;
    r.overload_host_s += tot.overload_s;
    r.high_util_host_s += tot.high_s;
    r.energy_kwh = energy_ws / 3.6e6;
    r.slatah = if active_time > 0.0 {
        sla_time / active_time
    } else {
        0.0
    };
    r.pdm = if req_total > 0.0 {
        unmet_mig / req_total
    } else {
        0.0
    };
    r.unmet_demand = if req_total > 0.0 {
        unmet_total / req_total
    } else {
        0.0
    };
    r.slav = r.slatah * r.pdm;
    r.esv = r.energy_kwh * r.slav;
    r.migrations_max_per_vm = per_vm.iter().copied().max().unwrap_or(0);
    let mut per_hour: BTreeMap<u64, u64> = BTreeMap::new();
    for s in &mig_starts {
        *per_hour.entry(s / 3600).or_default() += 1;
    }
    r.migrations_max_per_hour = per_hour.values().copied().max().unwrap_or(0);
    r.migrations_per_hour = (0..sc.duration_s.div_ceil(3600))
        .map(|h| per_hour.get(&h).copied().unwrap_or(0))
        .collect();
    let displaced = c
        .domains()
        .iter()
        .zip(first_host.iter_mut())
        .filter(|(d, f)| d.host != **f)
        .count() as u64;
    r.churn = r.migrations.saturating_sub(displaced);
    r.vms_on_maintenance_at_end = c
        .domains()
        .iter()
        .filter(|d| maint.contains(&d.host))
        .count() as u64;
    r.active_hosts_mean = if ticks > 0 {
        active_host_ticks / ticks as f64
    } else {
        0.0
    };
    r.sigma_cpu_mean = if sigmas.is_empty() {
        0.0
    } else {
        sigmas.iter().sum::<f64>() / sigmas.len() as f64
    };
    r.sigma_cpu_p95 = percentile(&mut sigmas, 95.0);
    r.decision_ms_p50 = percentile(&mut decision_ms, 50.0);
    r.decision_ms_p99 = percentile(&mut decision_ms, 99.0);
    Ok((r, rec))
}

/// Progress on stderr: a bar redrawn in place on a terminal, else a line every 24 ticks.
fn progress(sc: &Scenario, k: u64, ticks: u64, t: u64, migrations: u64, sigma: f64) {
    use std::io::{IsTerminal, Write};
    let last = k + 1 == ticks;
    let mut err = std::io::stderr();
    if err.is_terminal() {
        const WIDTH: u64 = 30;
        let done = (k + 1) * WIDTH / ticks.max(1);
        let bar: String = (0..WIDTH)
            .map(|i| if i < done { '#' } else { '-' })
            .collect();
        let _ = write!(
            err,
            "\r[{}] [{bar}] {:3}% t={}s migrations={} sigma={:.3}{}",
            sc.name,
            (k + 1) * 100 / ticks.max(1),
            t,
            migrations,
            sigma,
            if last { "\n" } else { "" }
        );
        let _ = err.flush();
    } else if k % 24 == 0 || last {
        let _ = writeln!(
            err,
            "[{}] t={}s/{}s migrations={} sigma={:.3}",
            sc.name, t, sc.duration_s, migrations, sigma
        );
    }
}

/// CloudSim 3.0.3 removes a VM from its host for good at any update where its requested MIPS
/// are exactly 0 and it is not migrating (`HostDynamicWorkload.getCompletedVms`): on the
/// PlanetLab traces, a VM with two consecutive zero samples leaves the data centre.
fn retire_idle(c: &SimCluster, sc: &Scenario, gone: &mut [bool], t_ms: u64) {
    for (d, dom) in c.domains().iter().enumerate() {
        let migrating = dom.migration.is_some_and(|m| m.end_ms > t_ms);
        // CloudSim's updates run 0.1 s after each sample time, where the interpolated demand
        // is 0 only if this sample and the next are both 0.
        if !gone[d] && !migrating && demand(c, sc, d, t_ms + 100) == 0.0 {
            gone[d] = true;
        }
    }
}

/// A VM planned twice in one round also migrates into its first destination in CloudSim, which
/// reserves 10 % of it and requests all of it until the migration ends.
#[derive(Debug, Clone, Copy)]
struct Ghost {
    vm: usize,
    host: usize,
    start_ms: u64,
    end_ms: u64,
}

/// Running totals of the CloudSim accounting.
#[derive(Debug, Default)]
struct Totals {
    energy_ws: f64,
    sla_time: f64,
    active_time: f64,
    req: f64,
    unmet: f64,
    unmet_mig: f64,
    overload_s: f64,
    high_s: f64,
}

/// Per host at one instant, as CloudSim's `VmSchedulerTimeSharedOverSubscription` and
/// `HostDynamicWorkload.updateVmsProcessing` compute it: (utilisation MIPS, requested MIPS), and
/// per VM row (allocated, requested).
fn cloudsim_alloc(
    rows: &[(usize, usize, Option<usize>)],
    ghosts: &[(usize, usize)],
    dem: &[f64],
    pe_mhz: &[f64],
    cap: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let nh = cap.len();
    let mut need = vec![0.0f64; nh];
    for &(d, h, dst) in rows {
        need[h] += dem[d].min(pe_mhz[h]);
        if let Some(g) = dst {
            // The destination reserves 10 % of the migrating VM's MIPS.
            need[g] += 0.1 * dem[d].min(pe_mhz[g]);
        }
    }
    for &(d, g) in ghosts {
        need[g] += 0.1 * dem[d].min(pe_mhz[g]);
    }
    // Oversubscribed hosts scale every VM's share and round each share down.
    let grant = |h: usize, mips: f64| {
        if need[h] > cap[h] {
            (mips * cap[h] / need[h]).floor()
        } else {
            mips
        }
    };
    let mut util = vec![0.0f64; nh];
    let mut req = vec![0.0f64; nh];
    let mut alloc = Vec::with_capacity(rows.len());
    for &(d, h, dst) in rows {
        let capped = dem[d].min(pe_mhz[h]);
        let a = if dst.is_some() {
            // 10 % slower while migrating out; the host still counts the full share.
            let a = if need[h] > cap[h] {
                (capped * cap[h] / need[h] * 0.9).floor()
            } else {
                capped * 0.9
            };
            util[h] += a / 0.9;
            a
        } else {
            let a = grant(h, capped);
            util[h] += a;
            a
        };
        req[h] += dem[d];
        alloc.push(a);
        if let Some(g) = dst {
            // The destination requests the VM's full MIPS but is granted 10 %: CloudSim counts
            // every host receiving a VM as short of MIPS until the migration ends.
            util[g] += grant(g, 0.1 * dem[d].min(pe_mhz[g]));
            req[g] += dem[d];
        }
    }
    for &(d, g) in ghosts {
        util[g] += grant(g, 0.1 * dem[d].min(pe_mhz[g]));
        req[g] += dem[d];
    }
    (util, req, alloc)
}

/// Accounts `[t_ms, end_ms)` as CloudSim 3.0.3 does, in segments split at migration
/// completions: energy by the trapezoid between the utilisation at the start and at the end of
/// each segment (none if the host was idle at the start: `PowerHost.getEnergyLinearInterpolation`),
/// SLATAH from the host state at each segment start, PDM from the VM state. VMs whose demand
/// reaches 0 at a completion leave (see [`retire_idle`]). Returns the hosts active at any time.
#[allow(clippy::too_many_arguments)]
fn account_cloudsim(
    c: &SimCluster,
    sc: &Scenario,
    gone: &mut [bool],
    t_ms: u64,
    end_ms: u64,
    pe_mhz: &[f64],
    cap: &[f64],
    ghosts: &[Ghost],
    tot: &mut Totals,
) -> Vec<bool> {
    let nh = cap.len();
    let nv = c.domains().len();
    let mut active = vec![false; nh];
    let mut events: Vec<u64> = vec![t_ms];
    for dom in c.domains() {
        if let Some(m) = dom.migration {
            if m.end_ms > t_ms && m.end_ms < end_ms {
                events.push(m.end_ms);
            }
        }
    }
    events.sort_unstable();
    events.dedup();
    events.push(end_ms);
    let curve_of: Vec<PowerCurve> = (0..nh)
        .map(|h| curve(sc.hosts[h].power.as_deref()).unwrap_or(PowerCurve::G4))
        .collect();
    let mut dem_a = vec![0.0f64; nv];
    let mut dem_b = vec![0.0f64; nv];
    for w in events.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        let dt = (b - a) as f64 / 1000.0;
        let mut rows: Vec<(usize, usize, Option<usize>)> = Vec::with_capacity(nv);
        for (d, dom) in c.domains().iter().enumerate() {
            if gone[d] || dom.state != gmond_metrics::hypervisor::DomainState::Running {
                continue;
            }
            let row = match dom.migration {
                Some(m) if m.start_ms <= a && a < m.end_ms => (d, dom.host, Some(m.dest)),
                Some(m) if m.end_ms <= a => (d, m.dest, None),
                _ => (d, dom.host, None),
            };
            if !c.hosts()[row.1].up {
                continue;
            }
            dem_a[d] = demand(c, sc, d, a);
            dem_b[d] = demand(c, sc, d, b);
            rows.push(row);
        }
        let live: Vec<(usize, usize)> = ghosts
            .iter()
            .filter(|g| !gone[g.vm] && g.start_ms <= a && a < g.end_ms)
            .map(|g| (g.vm, g.host))
            .collect();
        let (ua, ra, alloc) = cloudsim_alloc(&rows, &live, &dem_a, pe_mhz, cap);
        let (ub, _, _) = cloudsim_alloc(&rows, &live, &dem_b, pe_mhz, cap);
        for h in 0..nh {
            if ra[h] >= cap[h] {
                tot.overload_s += dt;
            }
            if ra[h] >= sc.high_util * cap[h] {
                tot.high_s += dt;
            }
            if ua[h] <= 0.0 {
                continue;
            }
            active[h] = true;
            tot.active_time += dt;
            if ua[h] < ra[h] {
                tot.sla_time += dt;
            }
            let pa = curve_of[h].watts(ua[h] / cap[h]);
            let pb = curve_of[h].watts(ub[h] / cap[h]);
            tot.energy_ws += (pa + pb) / 2.0 * dt;
        }
        for (&(d, _, dst), &got) in rows.iter().zip(&alloc) {
            let want = dem_a[d];
            tot.req += want * dt;
            if got < want {
                tot.unmet += (want - got) * dt;
                if dst.is_some() {
                    tot.unmet_mig += (want - got) * dt;
                }
            }
        }
        if b < end_ms {
            for (d, dom) in c.domains().iter().enumerate() {
                let migrating = dom
                    .migration
                    .is_some_and(|m| m.start_ms <= b && b < m.end_ms);
                if !gone[d] && !migrating && demand(c, sc, d, b) == 0.0 {
                    gone[d] = true;
                }
            }
        }
    }
    active
}

/// VMs currently violating an anti-affinity, affinity or pinning rule.
fn violating_vms(rules: &Rules, s: &Snapshot) -> usize {
    let mut bad = BTreeSet::new();
    for g in &rules.anti {
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        for &v in g {
            *seen.entry(s.vms[v].host_idx).or_default() += 1;
        }
        for &v in g {
            if seen[&s.vms[v].host_idx] > 1 {
                bad.insert(v);
            }
        }
    }
    for g in &rules.aff {
        let hosts: BTreeSet<usize> = g.iter().map(|&v| s.vms[v].host_idx).collect();
        if hosts.len() > 1 {
            bad.extend(g.iter().copied());
        }
    }
    for v in 0..s.vms.len() {
        if !rules.pin_allows(v, s.vms[v].host_idx) {
            bad.insert(v);
        }
    }
    bad.len()
}

/// True if moving `vm` to host `to` breaks a hard rule given the snapshot placement.
fn creates_violation(rules: &Rules, s: &Snapshot, vm: &str, to: usize) -> bool {
    let Some(v) = s.vm_index(vm) else {
        return false;
    };
    if !rules.pin_allows(v, to) {
        return true;
    }
    let infeasible = |g: &Vec<usize>| g.len() > s.hosts.iter().filter(|h| h.up).count();
    rules.anti_of[v].iter().any(|&g| {
        !infeasible(&rules.anti[g])
            && rules.anti[g]
                .iter()
                .any(|&o| o != v && s.vms[o].host_idx == to)
    })
}

/// The cluster as gmond-rs would publish it: one HOST per hypervisor with the virtual-node
/// metrics of ganglia.md E.1 (`vnode_*` on the host, `<vm>.vcpu_*`/`<vm>.vmem_*` per domain).
/// Lets tests check that [`Snapshot::from_cluster`] sees what the simulator sees.
pub fn cluster_view(c: &SimCluster, t_ms: u64) -> ganglia_wire::model::Cluster {
    use ganglia_wire::model::{Cluster, Host, Metric};
    let metric = |name: String, val: String, units: &str| Metric {
        name,
        val,
        ty: "float".into(),
        units: units.into(),
        tmax: 60,
        slope: "both".into(),
        ..Default::default()
    };
    let mut hosts = Vec::new();
    for (h, host) in c.hosts().iter().enumerate() {
        let used: u64 = c
            .domains()
            .iter()
            .filter(|d| d.host == h)
            .map(|d| d.mem_kib)
            .sum();
        let mut metrics = vec![
            metric("vnode_cpu_num".into(), host.cpus.to_string(), "CPUs"),
            metric("vnode_cpu_speed".into(), host.mhz.to_string(), "MHz"),
            metric("vnode_mem_total".into(), host.mem_kib.to_string(), "KB"),
            metric(
                "vnode_mem_free".into(),
                host.mem_kib.saturating_sub(used).to_string(),
                "KB",
            ),
        ];
        let mut n = 0;
        for (d, dom) in c.domains().iter().enumerate() {
            if dom.host != h {
                continue;
            }
            n += 1;
            // vcpu_util is a percentage of the domain's vCPUs at the host's clock.
            let cap = f64::from(dom.vcpus) * f64::from(host.mhz);
            let util = if cap > 0.0 {
                100.0 * c.demand_mhz(d, t_ms) / cap
            } else {
                0.0
            };
            metrics.push(metric(
                format!("{}.vcpu_util", dom.name),
                format!("{util}"),
                "%",
            ));
            metrics.push(metric(
                format!("{}.vcpu_num", dom.name),
                dom.vcpus.to_string(),
                "vCPUs",
            ));
            metrics.push(metric(
                format!("{}.vmem_total", dom.name),
                dom.mem_kib.to_string(),
                "KB",
            ));
            metrics.push(metric(format!("{}.vmem_util", dom.name), "100".into(), "%"));
            metrics.push(metric(
                format!("{}.vcpu_state", dom.name),
                dom.state.code().to_string(),
                "",
            ));
        }
        metrics.push(metric("vnode_domains".into(), n.to_string(), "domains"));
        hosts.push(Host {
            name: host.name.clone(),
            ip: "127.0.0.1".into(),
            tn: if host.up { 0 } else { 1000 },
            tmax: 20,
            reported: t_ms / 1000,
            metrics,
            ..Default::default()
        });
    }
    Cluster {
        name: "sim".into(),
        localtime: t_ms / 1000,
        hosts,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::builtin;

    #[test]
    fn virtual_node_view_matches_direct_snapshot() {
        let sc = builtin("flash-crowd-long", None, 1).unwrap();
        let (c, gone) = build(&sc, InitialPlacement::Pabfd).unwrap();
        let t_ms = 3_700_000;
        let direct = snapshot(&c, &sc, &BTreeSet::new(), None, t_ms, &gone).unwrap();
        let via = Snapshot::from_cluster(&cluster_view(&c, t_ms), t_ms / 1000);
        assert_eq!(via.hosts.len(), direct.hosts.len());
        assert_eq!(via.vms.len(), direct.vms.len());
        for (a, b) in via.vms.iter().zip(&direct.vms) {
            assert_eq!(
                (&a.name, &a.host, a.vcpus, a.mem_kb),
                (&b.name, &b.host, b.vcpus, b.mem_kb)
            );
            assert!(
                (a.cpu_demand_mhz - b.cpu_demand_mhz).abs() < 1e-6,
                "{}",
                a.name
            );
        }
        assert!(direct.vms.iter().any(|v| v.cpu_frac() > 0.99));
    }
}
