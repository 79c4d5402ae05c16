//! `consolidate`: Beloglazov & Buyya's dynamic consolidation for power saving. An overload
//! detector (THR, IQR, MAD or LR) flags hosts; VMs are taken off them by minimum migration
//! time (or minimum utilisation) until the detector is quiet; they and the VMs of underloaded
//! hosts are placed by power-aware best-fit decreasing (PABFD). An underloaded host is only
//! emptied if all its VMs fit elsewhere. Our defaults add what the paper lacks: a sustained
//! underload test and the planner's hysteresis, cooldown and limits.

use serde::{Deserialize, Serialize};

use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner};
use crate::snapshot::PowerCurve;
use crate::trends::{iqr_cloudsim, linear_fit, mad};

/// Overload detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// Static threshold.
    Thr,
    /// 1 - s * IQR(host history).
    Iqr,
    /// 1 - s * MAD(host history).
    Mad,
    /// s * linear prediction >= 1.
    Lr,
}

/// VM selection on an overloaded host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Minimum migration time (smallest memory).
    Mmt,
    /// Minimum CPU utilisation.
    Mu,
}

/// `[consolidate]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsolidateParams {
    /// Overload detector (default thr).
    pub detector: Detector,
    /// Static threshold for thr (0..=1, default 0.8).
    pub threshold: f64,
    /// Safety parameter s of iqr/mad/lr (0..=5; 1.5 / 2.5 / 1.2 in the paper).
    pub safety: f64,
    /// Threshold used by iqr/mad/lr while the history is too short (default 0.7).
    pub fallback_threshold: f64,
    /// History samples iqr/mad need (default 12).
    pub min_history: usize,
    /// Samples in the lr fit (default 10).
    pub lr_window: usize,
    /// Sustained overload: the detector must also hold for `overload_k` of the last
    /// `overload_n` host samples (1 of 1 = the paper; 1..=n..=30).
    pub overload_k: usize,
    /// Window of the sustained overload test (default 1).
    pub overload_n: usize,
    /// VM selection (default mmt).
    pub selection: Selection,
    /// Empty underloaded hosts (default true).
    pub underload: bool,
    /// A host is underload-eligible only if its mean CPU utilisation over the last
    /// `underload_window` samples is below this (0..=1; 1.0 = any host, as in the paper).
    pub underload_threshold: f64,
    /// Samples of the underload test (1..=30, default 1).
    pub underload_window: usize,
    /// Most underloaded hosts emptied per round (0 = unlimited, default 0).
    pub max_underload_hosts: usize,
    /// Reproduce CloudSim 3.0.3's placement arithmetic: power and the skip-the-detector test
    /// use each host's utilisation from the start of the round, ignoring VMs placed earlier in
    /// the same round (default false).
    pub cloudsim_stale_util: bool,
    /// Reproduce CloudSim 3.0.3's round literally (default false): "switched off" means idle
    /// at the start of the round, and the underload pass may evacuate a host that just received
    /// VMs from an overloaded one, planning those VMs twice (both moves count as migrations).
    pub cloudsim_quirks: bool,
    /// Reproduce CloudSim 3.0.3's placement check: the demand per vCPU must fit one physical
    /// core (default true).
    pub pe_check: bool,
}

impl Default for ConsolidateParams {
    fn default() -> Self {
        ConsolidateParams {
            detector: Detector::Thr,
            threshold: 0.8,
            safety: 1.5,
            fallback_threshold: 0.7,
            min_history: 12,
            lr_window: 10,
            overload_k: 1,
            overload_n: 1,
            selection: Selection::Mmt,
            underload: true,
            underload_threshold: 1.0,
            underload_window: 1,
            max_underload_hosts: 0,
            pe_check: true,
            cloudsim_stale_util: false,
            cloudsim_quirks: false,
        }
    }
}

impl ConsolidateParams {
    /// Range checks.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) || !(0.0..=1.0).contains(&self.fallback_threshold)
        {
            return Err("consolidate thresholds must be in 0..=1".into());
        }
        if !(0.0..=5.0).contains(&self.safety) {
            return Err("consolidate.safety must be in 0..=5".into());
        }
        if !(2..=30).contains(&self.min_history) || !(2..=30).contains(&self.lr_window) {
            return Err("consolidate min_history and lr_window must be in 2..=30".into());
        }
        if self.overload_k == 0 || self.overload_k > self.overload_n || self.overload_n > 30 {
            return Err("consolidate needs 1 <= overload_k <= overload_n <= 30".into());
        }
        if !(0.0..=1.0).contains(&self.underload_threshold)
            || !(1..=30).contains(&self.underload_window)
        {
            return Err("consolidate underload_threshold 0..=1, underload_window 1..=30".into());
        }
        Ok(())
    }
}

/// Generic power curve when a host has none: 60 % of peak when idle, linear.
const GENERIC: PowerCurve = PowerCurve([
    120.0, 128.0, 136.0, 144.0, 152.0, 160.0, 168.0, 176.0, 184.0, 192.0, 200.0,
]);

struct Ctx<'p, 'a> {
    cfg: &'p ConsolidateParams,
    p: &'p mut Planner<'a>,
    /// Per VM: CPU history (fractions of its capacity), newest first.
    hist: Vec<Vec<f64>>,
    /// Per host: CPU utilisation at the start of the decision. CloudSim ranks underloaded
    /// hosts and prices power by this value, not by the tentative placement.
    util0: Vec<f64>,
    /// Per host: utilisation history of its current VMs, computed on demand and dropped when
    /// a move touches the host (placement asks for it once per candidate host per VM).
    hcache: std::cell::RefCell<Vec<Option<Vec<f64>>>>,
}

impl Ctx<'_, '_> {
    fn power(&self, h: usize) -> &PowerCurve {
        self.p.snap().hosts[h].power.as_ref().unwrap_or(&GENERIC)
    }

    /// Host utilisation history (newest first) from the VMs in `vms` plus `extra`.
    fn host_history(&self, h: usize, vms: &[usize], extra: Option<usize>) -> Vec<f64> {
        let s = self.p.snap();
        let cap = s.hosts[h].cpu_mhz();
        let mut out = vec![0.0; 30];
        let mut len = 0;
        for &v in vms.iter().chain(extra.iter()) {
            let w = s.vms[v].cpu_cap_mhz / cap;
            for (i, x) in self.hist[v].iter().enumerate().take(30) {
                out[i] += x * w;
                len = len.max(i + 1);
            }
        }
        out.truncate(len);
        while out.last() == Some(&0.0) {
            out.pop();
        }
        out
    }

    /// History of host `h` with its current VMs plus `extra`, from the cache.
    fn current_history(&self, h: usize, extra: Option<usize>) -> Vec<f64> {
        let mut cache = self.hcache.borrow_mut();
        let base = cache[h].get_or_insert_with(|| self.host_history(h, &self.p.on_host[h], None));
        let Some(v) = extra else {
            return base.clone();
        };
        let s = self.p.snap();
        let w = s.vms[v].cpu_cap_mhz / s.hosts[h].cpu_mhz();
        let n = base.len().max(self.hist[v].len().min(30));
        let mut out = base.clone();
        out.resize(n, 0.0);
        for (i, x) in self.hist[v].iter().enumerate().take(30) {
            out[i] += x * w;
        }
        while out.last() == Some(&0.0) {
            out.pop();
        }
        out
    }

    /// Forgets the cached histories of hosts touched by a move.
    fn invalidate(&self, hosts: &[usize]) {
        let mut cache = self.hcache.borrow_mut();
        for &h in hosts {
            cache[h] = None;
        }
    }

    /// (overloaded, compared value, threshold) for host `h` holding `vms` plus `extra`, with
    /// requested CPU `cpu_mhz`.
    fn detect(
        &self,
        h: usize,
        vms: &[usize],
        extra: Option<usize>,
        cpu_mhz: f64,
    ) -> (bool, f64, f64) {
        let cached = std::ptr::eq(vms, self.p.on_host[h].as_slice());
        let history = || {
            if cached {
                self.current_history(h, extra)
            } else {
                self.host_history(h, vms, extra)
            }
        };
        let cfg = self.cfg;
        let util = cpu_mhz / self.p.snap().hosts[h].cpu_mhz();
        let thr = |t: f64| (util > t, util, t);
        match cfg.detector {
            Detector::Thr => thr(cfg.threshold),
            Detector::Iqr | Detector::Mad => {
                let hist = history();
                if hist.len() < cfg.min_history {
                    return thr(cfg.fallback_threshold);
                }
                let spread = if cfg.detector == Detector::Iqr {
                    iqr_cloudsim(&hist)
                } else {
                    mad(&hist)
                };
                thr(1.0 - cfg.safety * spread.unwrap_or(0.0))
            }
            Detector::Lr => {
                let hist = history();
                if hist.len() < cfg.lr_window {
                    return thr(cfg.fallback_threshold);
                }
                let mut y: Vec<f64> = hist[..cfg.lr_window].to_vec();
                y.reverse();
                let Some((a, b)) = linear_fit(&y) else {
                    return thr(cfg.fallback_threshold);
                };
                let s = self.p.snap();
                let max_mig = self.p.on_host[h]
                    .iter()
                    .map(|&v| self.p.cfg.migration_seconds(s.vms[v].mem_kb))
                    .fold(0.0, f64::max);
                // The fit is over x = 0..n-1; predict the interval after the slowest migration.
                let ahead = (max_mig / 300.0).ceil();
                let pred = cfg.safety * (a + b * (cfg.lr_window as f64 + ahead));
                (pred >= 1.0, pred, 1.0)
            }
        }
    }

    fn overloaded(&self, h: usize) -> (bool, f64, f64) {
        self.detect(h, &self.p.on_host[h], None, self.p.cpu[h])
    }

    /// PABFD: the host whose power grows least when `v` is added, among hosts not excluded,
    /// that fit it and would not be overloaded after (ties: lowest index).
    fn best_host(&self, v: usize, excluded: &[bool]) -> Option<usize> {
        let s = self.p.snap();
        let vm = &s.vms[v];
        let mut best: Option<(f64, usize)> = None;
        for h in 0..s.hosts.len() {
            if excluded[h] {
                continue;
            }
            let host = &s.hosts[h];
            if self.cfg.pe_check && vm.cpu_demand_mhz / f64::from(vm.vcpus.max(1)) > host.mhz {
                continue;
            }
            let cap = host.cpu_mhz();
            let after = self.p.cpu[h] + vm.cpu_demand_mhz;
            if after > cap {
                continue;
            }
            // CloudSim prices power and skips the detector by the host's utilisation at the
            // start of the round, so a host idle then takes VMs up to full capacity.
            let (priced, checked) = if self.cfg.cloudsim_stale_util {
                let stale = self.util0[h] * cap;
                (stale + vm.cpu_demand_mhz, stale != 0.0)
            } else {
                (after, self.p.cpu[h] != 0.0)
            };
            if priced > cap {
                continue;
            }
            // Cheap tests first: most hosts lose on power before the detector is needed.
            let pw = self.power(h);
            let diff = pw.watts(priced / cap) - pw.watts(self.util0[h]);
            if best.is_some_and(|(b, _)| diff >= b) {
                continue;
            }
            if self.p.fits(v, h).is_err() {
                continue;
            }
            if checked && self.detect(h, &self.p.on_host[h], Some(v), after).0 {
                continue;
            }
            best = Some((diff, h));
        }
        best.map(|(_, h)| h)
    }
}

pub(crate) fn run(cfg: &ConsolidateParams, p: &mut Planner<'_>) {
    let s = p.snap();
    let trends = p.input.trends;
    let hist: Vec<Vec<f64>> = s
        .vms
        .iter()
        .map(|vm| {
            trends.vm_cpu(&vm.name).map_or_else(Vec::new, |ser| {
                let mut v: Vec<f64> = ser.recent(30).collect();
                v.reverse();
                v
            })
        })
        .collect();
    let nh = s.hosts.len();
    let util0: Vec<f64> = (0..nh).map(|h| p.util(h)).collect();
    let ctx = Ctx {
        cfg,
        p,
        hist,
        util0,
        hcache: std::cell::RefCell::new(vec![None; nh]),
    };

    // Overload pass.
    let mut over = vec![false; nh];
    let mut to_move: Vec<(usize, usize, Reason)> = Vec::new();
    for h in 0..nh {
        if !s.hosts[h].up || ctx.p.rules.maintenance[h] {
            continue;
        }
        let (hot, value, threshold) = ctx.overloaded(h);
        if !hot {
            continue;
        }
        if cfg.overload_n > 1 {
            let sustained = trends.host_cpu(&s.hosts[h].name).is_some_and(|ser| {
                ser.sustained_above(cfg.overload_k, cfg.overload_n, threshold.min(1.0))
            });
            if !sustained {
                continue;
            }
        }
        over[h] = true;
        let reason = Reason::Overload {
            host: s.hosts[h].name.clone(),
            detector: format!("{:?}", cfg.detector).to_lowercase(),
            value: r6(value),
            threshold: r6(threshold),
        };
        let mut rest: Vec<usize> = ctx.p.on_host[h]
            .iter()
            .copied()
            .filter(|&v| !s.vms[v].migrating)
            .collect();
        let mut cpu = ctx.p.cpu[h];
        loop {
            let pick = match cfg.selection {
                Selection::Mmt => rest.iter().enumerate().min_by(|a, b| {
                    s.vms[*a.1]
                        .mem_kb
                        .cmp(&s.vms[*b.1].mem_kb)
                        .then(a.0.cmp(&b.0))
                }),
                Selection::Mu => rest.iter().enumerate().min_by(|a, b| {
                    s.vms[*a.1]
                        .cpu_demand_mhz
                        .total_cmp(&s.vms[*b.1].cpu_demand_mhz)
                        .then(a.0.cmp(&b.0))
                }),
            };
            let Some((i, &v)) = pick else { break };
            rest.remove(i);
            cpu -= s.vms[v].cpu_demand_mhz;
            to_move.push((v, h, reason.clone()));
            if !ctx.detect(h, &rest, None, cpu).0 {
                break;
            }
        }
    }
    // Stable, as CloudSim's sort: ties keep host order, then selection order.
    to_move.sort_by(|a, b| {
        s.vms[b.0]
            .cpu_demand_mhz
            .total_cmp(&s.vms[a.0].cpu_demand_mhz)
    });
    for (v, h, reason) in to_move {
        if !ctx.p.budget_left() {
            return;
        }
        if let Some(d) = ctx.best_host(v, &over) {
            let gain = (ctx.p.util(h) - cfg.threshold).max(0.0) + 1.0;
            let src = ctx.p.vm_host[v];
            if ctx
                .p
                .try_move(v, d, reason, gain, 1.0, MoveKind::Consolidate)
                .is_ok()
            {
                ctx.invalidate(&[src, d]);
            }
        }
    }
    if !cfg.underload {
        return;
    }

    // Underload pass.
    // "Switched off" is judged by the utilisation at the start of the round (CloudSim's
    // getSwitchedOffHosts): an idle host woken by the overload pass above neither gets
    // evacuated nor receives an underloaded host's VMs in the same round.
    let off: Vec<bool> = (0..nh)
        .map(|h| {
            let idle = if cfg.cloudsim_quirks {
                ctx.util0[h] == 0.0
            } else {
                ctx.p.cpu[h] == 0.0
            };
            idle || !s.hosts[h].up
        })
        .collect();
    let mut excl_src: Vec<bool> = (0..nh)
        .map(|h| over[h] || off[h] || ctx.p.rules.maintenance[h])
        .collect();
    let mut excl_dst: Vec<bool> = (0..nh).map(|h| over[h] || off[h]).collect();
    let mut emptied = 0;
    loop {
        if cfg.max_underload_hosts > 0 && emptied >= cfg.max_underload_hosts {
            return;
        }
        let mut cand: Option<(f64, usize)> = None;
        for h in 0..nh {
            if excl_src[h] {
                continue;
            }
            let u = ctx.util0[h];
            if u > 0.0 && cand.is_none_or(|(b, _)| u < b) {
                cand = Some((u, h));
            }
        }
        let Some((u, h)) = cand else { return };
        excl_src[h] = true;
        excl_dst[h] = true;
        if cfg.underload_threshold < 1.0 {
            let mean = trends
                .host_cpu(&s.hosts[h].name)
                .and_then(|ser| ser.mean(cfg.underload_window))
                .unwrap_or(1.0);
            if mean.max(u) >= cfg.underload_threshold {
                continue;
            }
        }
        // A host that cannot be emptied within this round's budget is not started: a partial
        // evacuation would be rolled back anyway.
        if ctx
            .p
            .budget_remaining()
            .is_some_and(|b| b < ctx.p.on_host[h].len())
        {
            continue;
        }
        let mut vms: Vec<usize> = ctx.p.on_host[h].clone();
        // Hosts with a VM already moving are skipped; so are hosts that received VMs this
        // round, except in CloudSim's literal round, which evacuates them too.
        if vms.is_empty()
            || vms
                .iter()
                .any(|&v| s.vms[v].migrating || (!cfg.cloudsim_quirks && s.vms[v].host_idx != h))
        {
            continue;
        }
        vms.sort_by(|&a, &b| s.vms[b].cpu_demand_mhz.total_cmp(&s.vms[a].cpu_demand_mhz));
        let start = ctx.p.moves().len();
        let mut ok = true;
        for v in vms {
            let reason = Reason::Underload {
                host: s.hosts[h].name.clone(),
                util: r6(u),
            };
            if s.vms[v].host_idx != h {
                ctx.p.allow_second_move(v);
            }
            let placed = ctx.best_host(v, &excl_dst).is_some_and(|d| {
                let ok = ctx
                    .p
                    .try_move(v, d, reason, 1.0, 1.0, MoveKind::Consolidate)
                    .is_ok();
                if ok {
                    ctx.invalidate(&[h, d]);
                }
                ok
            });
            if !placed {
                ok = false;
                break;
            }
        }
        if ok {
            emptied += 1;
            let dests: Vec<usize> = ctx.p.moves()[start..]
                .iter()
                .filter_map(|m| s.host_index(&m.to))
                .collect();
            for d in dests {
                excl_src[d] = true;
            }
        } else {
            let touched: Vec<usize> = ctx.p.moves()[start..]
                .iter()
                .filter_map(|m| s.host_index(&m.to))
                .chain([h])
                .collect();
            ctx.p.rollback_to(start);
            ctx.invalidate(&touched);
        }
    }
}
