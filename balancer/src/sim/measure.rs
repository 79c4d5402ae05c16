//! The report's measurements besides energy and SLA: balance at each tick (sigma, spread, time
//! to balance, drain), hard-rule violations, and the end-of-run summary of migrations.

use std::collections::{BTreeMap, BTreeSet};

use gmond_metrics::hypervisor::sim::SimCluster;

use super::report::Report;
use super::scenario::Scenario;
use crate::constraints::Rules;
use crate::snapshot::Snapshot;
use crate::trends::population_std_dev;

/// What the run keeps between ticks for the balance metrics and the end-of-run summary.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// CPU sigma at every tick.
    sigmas: Vec<f64>,
    /// Wall time of every decision, ms.
    decision_ms: Vec<f64>,
    /// Consecutive balanced ticks since the perturbation.
    balanced_run: u32,
    /// First tick with a host in maintenance, s.
    maint_start: Option<u64>,
    /// Migrations counted per VM.
    per_vm: Vec<u64>,
    /// Start of every counted migration, s.
    mig_starts: Vec<u64>,
    /// Each VM's host at the start, for churn.
    first_host: Vec<usize>,
}

/// Utilisation of the hosts that count for balance (up and not in maintenance), fractions.
pub(super) struct Utilisation {
    pub cpu: Vec<f64>,
    pub mem: Vec<f64>,
    /// Every host in maintenance is empty.
    pub maint_empty: bool,
}

impl Utilisation {
    pub fn of(
        snap: &Snapshot,
        loads: &[(f64, u64, u32)],
        maint: &BTreeSet<usize>,
        cap: &[f64],
    ) -> Self {
        let counted: Vec<usize> = (0..snap.hosts.len())
            .filter(|&h| snap.hosts[h].up && !maint.contains(&h))
            .collect();
        Utilisation {
            cpu: counted.iter().map(|&h| loads[h].0 / cap[h]).collect(),
            mem: counted
                .iter()
                .map(|&h| loads[h].1 as f64 / snap.hosts[h].mem_kb as f64)
                .collect(),
            maint_empty: maint.iter().all(|&h| loads[h].1 == 0),
        }
    }
}

impl Tally {
    pub fn new(c: &SimCluster) -> Tally {
        Tally {
            per_vm: vec![0; c.domains().len()],
            first_host: c.domains().iter().map(|d| d.host).collect(),
            ..Tally::default()
        }
    }

    /// Balance at tick `t`: sigma, spread and time to balance. Returns the CPU sigma.
    pub fn balance(&mut self, r: &mut Report, sc: &Scenario, t: u64, u: &Utilisation) -> f64 {
        let sigma = population_std_dev(&u.cpu);
        self.sigmas.push(sigma);
        let maxu = u.cpu.iter().copied().fold(0.0, f64::max);
        let minu = u.cpu.iter().copied().fold(f64::INFINITY, f64::min);
        r.sigma_cpu_final = sigma;
        r.max_util_final = maxu;
        r.sigma_mem_final = population_std_dev(&u.mem);
        r.spread_final = if u.cpu.is_empty() { 0.0 } else { maxu - minu };
        let balanced = sigma <= sc.sigma_target && maxu < sc.high_util && u.maint_empty;
        if t >= sc.perturb_at_s && r.time_to_balance_s.is_none() {
            self.balanced_run = if balanced { self.balanced_run + 1 } else { 0 };
            if self.balanced_run >= 3 {
                // Balanced since the first of the three ticks.
                r.time_to_balance_s =
                    Some(t - sc.perturb_at_s - 2 * sc.tick_s.min(t - sc.perturb_at_s));
            }
        }
        sigma
    }

    /// Time from the first maintenance start until every host in maintenance is empty.
    pub fn drain(&mut self, r: &mut Report, c: &SimCluster, maint: &BTreeSet<usize>, t: u64) {
        if maint.is_empty() {
            return;
        }
        let start = *self.maint_start.get_or_insert(t);
        let empty = c.domains().iter().all(|d| !maint.contains(&d.host));
        if empty && r.drain_s.is_none() {
            r.drain_s = Some(t - start);
        }
    }

    pub fn decision(&mut self, ms: f64) {
        self.decision_ms.push(ms);
    }

    /// Counts a migration of VM `d` started at `t` for `reason`, copying `bytes`.
    pub fn migration(&mut self, r: &mut Report, d: usize, t: u64, bytes: u64, reason: &str) {
        r.migrations += 1;
        *r.migrations_by_reason
            .entry(reason.to_string())
            .or_default() += 1;
        self.per_vm[d] += 1;
        self.mig_starts.push(t);
        r.bytes_moved += bytes;
    }

    /// The end-of-run summary: migrations per hour and VM, churn, what stayed in maintenance,
    /// sigma and decision time percentiles.
    pub fn finish(
        mut self,
        r: &mut Report,
        sc: &Scenario,
        c: &SimCluster,
        maint: &BTreeSet<usize>,
    ) {
        r.migrations_max_per_vm = self.per_vm.iter().copied().max().unwrap_or(0);
        let mut per_hour: BTreeMap<u64, u64> = BTreeMap::new();
        for s in &self.mig_starts {
            *per_hour.entry(s / 3600).or_default() += 1;
        }
        r.migrations_max_per_hour = per_hour.values().copied().max().unwrap_or(0);
        r.migrations_per_hour = (0..sc.duration_s.div_ceil(3600))
            .map(|h| per_hour.get(&h).copied().unwrap_or(0))
            .collect();
        let displaced = c
            .domains()
            .iter()
            .zip(&self.first_host)
            .filter(|(d, f)| d.host != **f)
            .count() as u64;
        r.churn = r.migrations.saturating_sub(displaced);
        r.vms_on_maintenance_at_end = c
            .domains()
            .iter()
            .filter(|d| maint.contains(&d.host))
            .count() as u64;
        // The mean sums in tick order, before the percentiles sort.
        r.sigma_cpu_mean = if self.sigmas.is_empty() {
            0.0
        } else {
            self.sigmas.iter().sum::<f64>() / self.sigmas.len() as f64
        };
        r.sigma_cpu_p95 = percentile(&mut self.sigmas, 95.0);
        r.decision_ms_p50 = percentile(&mut self.decision_ms, 50.0);
        r.decision_ms_p99 = percentile(&mut self.decision_ms, 99.0);
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// VMs currently violating an anti-affinity, affinity or pinning rule.
pub(super) fn violating_vms(rules: &Rules, s: &Snapshot) -> usize {
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
pub(super) fn creates_violation(rules: &Rules, s: &Snapshot, vm: &str, to: usize) -> bool {
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
