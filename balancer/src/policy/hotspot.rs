//! `hotspot`: relieve hosts that are overloaded in a sustained way and forecast to stay so
//! (Sandpiper: k of the last n samples and the next predicted value over the threshold).
//! Hot hosts are handled in decreasing volume, their VMs in decreasing volume-to-size ratio,
//! each to the least loaded host that stays under the target after the move.
//!
//! The CPU tests run on the history of the VMs a host holds now (their series summed), not on
//! the host's own series: a move is not a change in demand, so a host half relieved by earlier
//! rounds stays hot until it is at its target, and a host that just took VMs is judged on
//! what it took.

use serde::{Deserialize, Serialize};

use super::consolidate::Selection;
use crate::error::BalancerError;
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner, Refusal};
use crate::snapshot::Snapshot;
use crate::trends::{weighted_sum, Series};

/// `[hotspot]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotspotParams {
    /// CPU utilisation threshold of a hotspot (0..=1.5, default 0.85).
    pub threshold: f64,
    /// Memory utilisation threshold of a hotspot (0..=1, default 0.95).
    pub mem_threshold: f64,
    /// Seconds of the last `window_s` the CPU must have been over the threshold (Sandpiper's
    /// k of n, in time: 1..=window_s, default 180).
    pub over_s: u64,
    /// Window of the sustained test, seconds (default 300).
    pub window_s: u64,
    /// Seconds of history the linear trend is fitted to (at least two steps; default 360).
    pub trend_window_s: u64,
    /// Forecast horizon after the newest sample, seconds (0..=3600, default 60).
    pub forecast_ahead_s: u64,
    /// Deprecated: `k` of the last `n` samples instead of `over_s` of `window_s` (both or
    /// neither; 1 <= k <= n <= 30). A sample is one step of the histories, which is only a
    /// fixed time where the caller resamples them (`PolicySpec::trend_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Deprecated: see `k`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Deprecated: samples in the trend instead of `trend_window_s` (2..=30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend_window: Option<usize>,
    /// Deprecated: samples ahead instead of `forecast_ahead_s` (0..=12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_ahead: Option<usize>,
    /// Relieve a hot host until its utilisation is at most this, and never fill a destination
    /// above it (0..=threshold, default 0.75).
    pub target: f64,
    /// When no single move relieves a hot host, exchange one of its VMs with a lighter VM of
    /// another host (Sandpiper's swap), in an order that never overfills memory: the second
    /// half starts only after the first has ended (default true).
    pub swaps: bool,
}

impl Default for HotspotParams {
    fn default() -> Self {
        HotspotParams {
            threshold: 0.85,
            mem_threshold: 0.95,
            over_s: 180,
            window_s: 300,
            trend_window_s: 360,
            forecast_ahead_s: 60,
            k: None,
            n: None,
            trend_window: None,
            forecast_ahead: None,
            target: 0.75,
            swaps: true,
        }
    }
}

impl HotspotParams {
    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.5).contains(&self.threshold) || !(0.0..=1.0).contains(&self.mem_threshold) {
            return Err(BalancerError::config("hotspot thresholds out of range"));
        }
        super::check_sustained("hotspot", self.over_s, self.window_s, self.k, self.n)?;
        if self.trend_window.is_some_and(|w| !(2..=30).contains(&w))
            || self.forecast_ahead.is_some_and(|a| a > 12)
        {
            return Err(BalancerError::config(
                "hotspot trend_window 2..=30, forecast_ahead 0..=12 (deprecated: use the _s keys)",
            ));
        }
        if self.trend_window_s == 0 || self.forecast_ahead_s > 3600 {
            return Err(BalancerError::config(
                "hotspot trend_window_s > 0, forecast_ahead_s 0..=3600",
            ));
        }
        if !(0.0..=self.threshold).contains(&self.target) {
            return Err(BalancerError::config(
                "hotspot target must be in 0..=threshold",
            ));
        }
        Ok(())
    }
}

/// Sandpiper's volume: 1/(1-cpu) * 1/(1-mem), with utilisations capped below 1.
fn volume(cpu: f64, mem: f64) -> f64 {
    1.0 / (1.0 - cpu.clamp(0.0, 0.99)) / (1.0 - mem.clamp(0.0, 0.99))
}

pub(crate) fn run(cfg: &HotspotParams, p: &mut Planner<'_>) {
    let hot = hot_hosts(cfg, p);
    relieve(cfg, p, hot, Selection::Vsr);
}

/// A host found hot: (volume, host, CPU forecast).
pub(crate) type Hot = (f64, usize, f64);

/// Sandpiper's detector (a composed policy's `k_of_n`): the hosts over the CPU threshold for
/// k of the last n samples and forecast to stay over it, or over the memory threshold for k
/// of n, and above their target now; hottest (largest volume) first.
pub(crate) fn hot_hosts(cfg: &HotspotParams, p: &mut Planner<'_>) -> Vec<Hot> {
    let s = p.snap();
    let trends = p.input.trends;
    // The windows in samples of the histories' step: the same time at any observation rate.
    let n = cfg.n.unwrap_or_else(|| trends.samples_in(cfg.window_s));
    let k = cfg
        .k
        .unwrap_or_else(|| trends.samples_in(cfg.over_s))
        .min(n) as f64;
    let trend_window = cfg
        .trend_window
        .unwrap_or_else(|| trends.samples_in(cfg.trend_window_s))
        .max(2);
    let step = trends.step_s();
    let ahead = cfg
        .forecast_ahead
        .unwrap_or_else(|| usize::try_from((cfg.forecast_ahead_s + step / 2) / step).unwrap_or(0));
    let mut hot: Vec<(f64, usize, f64)> = Vec::new();
    for (h, host) in s.hosts.iter().enumerate() {
        if !host.up || p.rules.maintenance[h] {
            continue;
        }
        let (Some(own), Some(mem)) = (trends.host_cpu(&host.name), trends.host_mem(&host.name))
        else {
            continue;
        };
        let util = p.util(h);
        // Only a host above its target can be hot, and summing its VMs' histories costs a
        // lookup per VM: the others are shown with their own series (1k hosts x 20k VMs:
        // 7 ms a round for the sums everywhere, against 1 ms before them).
        let placed = (util > cfg.target)
            .then(|| placed_cpu(p, h, n.max(trend_window)))
            .flatten();
        let cpu = placed.as_ref().unwrap_or(own);
        let forecast = cpu.forecast(trend_window, ahead).unwrap_or(0.0);
        let over = |s: &Series, t: f64| s.recent(n).filter(|v| *v > t).count() as f64;
        let (cpu_over, mem_over) = (over(cpu, cfg.threshold), over(mem, cfg.mem_threshold));
        // Every test is recorded (no short cut), so that a round without moves shows them all.
        let sustained = p.test(Some(h), "cpu samples over threshold", cpu_over, ">=", k);
        let rising = p.test(Some(h), "cpu forecast", forecast, ">", cfg.threshold);
        let mem_hot = p.test(
            Some(h),
            "memory samples over mem_threshold",
            mem_over,
            ">=",
            k,
        );
        let above = p.test(Some(h), "cpu now above target", util, ">", cfg.target);
        if ((sustained && rising) || mem_hot) && above {
            p.qualify(Some(h));
            hot.push((volume(util, p.mem_util(h)), h, forecast));
        }
    }
    hot.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    hot
}

/// Sandpiper's volume-to-size ratio of VM `v` on host `h`: the load a move takes off per byte
/// it copies.
pub(crate) fn vsr(s: &Snapshot, h: usize, v: usize) -> f64 {
    let vm = &s.vms[v];
    let vol = volume(
        vm.cpu_demand_mhz / s.hosts[h].cpu_mhz(),
        vm.mem_kb as f64 / s.hosts[h].mem_kb as f64,
    );
    vol / (vm.mem_kb.max(1) as f64)
}

/// The VMs of host `h` in the order `sel` takes them off: `vsr` largest ratio first, `mmt`
/// least memory first, `mu` least CPU first, `mc` most correlated with the rest first, `mm`
/// each pick the fewest-migrations choice for what is left above `target` (once there, the
/// smallest first); ties to the lower index. VMs of a lower priority come first, whatever
/// the selection.
pub(crate) fn vm_order(p: &Planner<'_>, h: usize, sel: Selection, target: f64) -> Vec<usize> {
    // Priority classes lowest first, each in the selection's order.
    let mut rest = p.on_host[h].clone();
    let mut cpu = p.cpu[h];
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let class = p.lowest_priority(&rest);
        let Some(&first) = class.first() else {
            break;
        };
        let low = p.priority(first);
        rest.retain(|&v| p.priority(v) != low);
        for v in class_order(p, h, &class, sel, target, &mut cpu) {
            out.push(v);
        }
    }
    out
}

/// [`vm_order`] within one priority class; `cpu` is the host's load before the class's VMs
/// leave, and after on return (for `mm`).
fn class_order(
    p: &Planner<'_>,
    h: usize,
    class: &[usize],
    sel: Selection,
    target: f64,
    cpu: &mut f64,
) -> Vec<usize> {
    let s = p.snap();
    match sel {
        Selection::Mm => {
            let mut rest = class.to_vec();
            let goal = target * s.hosts[h].cpu_mhz();
            let mut out = Vec::with_capacity(rest.len());
            while let Some(i) = super::select::fewest_moves(p, &rest, *cpu - goal) {
                let v = rest.remove(i);
                *cpu -= s.vms[v].cpu_demand_mhz;
                out.push(v);
            }
            return out;
        }
        Selection::Mc => {
            let scores = super::select::correlations(p, class);
            let mut order: Vec<usize> = (0..class.len()).collect();
            order.sort_by(|&a, &b| {
                scores[b]
                    .total_cmp(&scores[a])
                    .then(class[a].cmp(&class[b]))
            });
            *cpu -= class.iter().map(|&v| s.vms[v].cpu_demand_mhz).sum::<f64>();
            return order.into_iter().map(|i| class[i]).collect();
        }
        _ => {}
    }
    *cpu -= class.iter().map(|&v| s.vms[v].cpu_demand_mhz).sum::<f64>();
    let mut vms: Vec<(f64, usize)> = class
        .iter()
        .map(|&v| {
            let key = match sel {
                Selection::Vsr => -vsr(s, h, v),
                Selection::Mmt => s.vms[v].mem_kb as f64,
                Selection::Mu => s.vms[v].cpu_demand_mhz,
                Selection::Mm | Selection::Mc => 0.0,
            };
            (key, v)
        })
        .collect();
    vms.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    vms.into_iter().map(|(_, v)| v).collect()
}

/// Sandpiper's placement (a composed policy's `worst_fit`): VMs off each hot host in `sel`'s
/// order, each to the least loaded host that stays under the target, until the host is at
/// its target.
pub(crate) fn relieve(cfg: &HotspotParams, p: &mut Planner<'_>, hot: Vec<Hot>, sel: Selection) {
    relieve_to(cfg, p, hot, sel, false);
}

/// [`relieve`], each VM to the least loaded host under the target, or (`fullest`, a composed
/// policy's `best_fit`) to the most loaded one still under it.
pub(crate) fn relieve_to(
    cfg: &HotspotParams,
    p: &mut Planner<'_>,
    hot: Vec<Hot>,
    sel: Selection,
    fullest: bool,
) {
    let s = p.snap();
    for (_, h, forecast) in hot {
        let cap = s.hosts[h].cpu_mhz();
        let mem_cap = s.hosts[h].mem_kb as f64;
        let util0 = p.util(h);
        let reason = Reason::Hotspot {
            host: s.hosts[h].name.clone(),
            util: r6(util0),
            forecast: r6(forecast),
            threshold: cfg.threshold,
        };
        // VMs no host could take for lack of room: the swap phase's candidates.
        let mut stuck = Vec::new();
        for v in vm_order(p, h, sel, cfg.target) {
            if p.util(h) <= cfg.target && p.mem_util(h) <= cfg.mem_threshold {
                break;
            }
            if !p.budget_left() {
                return;
            }
            // Gain: the load this move takes off a host still above its target, CPU and memory.
            // Not capped at the excess: the last move of a relief removes a small excess with a
            // whole VM, and a capped gain would fail the cost-benefit test there and leave the
            // host just above target for good (hot-host ended at 7/6/6/5 VMs that way).
            let share = s.vms[v].cpu_demand_mhz / cap;
            let over = p.util(h) > cfg.target;
            let mem_over = p.mem_util(h) > cfg.mem_threshold;
            let gain = if over { share } else { 0.0 }
                + if mem_over {
                    s.vms[v].mem_kb as f64 / mem_cap
                } else {
                    0.0
                };
            let dest = if fullest {
                p.fullest_fit_or_why(v, cfg.target, MoveKind::Balance, gain)
            } else {
                p.least_loaded_or_why(v, cfg.target, MoveKind::Balance, gain)
            };
            let d = match dest {
                Ok(d) => d,
                Err(why) => {
                    p.refuse_vm(v, None, why);
                    if matches!(
                        why,
                        Refusal::Memory | Refusal::VcpuRatio | Refusal::DestLoad
                    ) {
                        stuck.push(v);
                    }
                    continue;
                }
            };
            let _ = p.try_move(v, d, reason.clone(), gain, cfg.target, MoveKind::Balance);
        }
        // Sandpiper's swap phase, for a host still over its target: its first stuck VMs in
        // the selection's order, each exchanged with a lighter VM elsewhere.
        if !cfg.swaps {
            continue;
        }
        for &v in stuck.iter().take(MAX_SWAP_TRIES) {
            if p.util(h) <= cfg.target || !p.budget_left() {
                break;
            }
            let _ = p.try_swap(v, cfg.target, reason.clone());
        }
    }
}

/// Stuck VMs of one hot host tried for a swap: each try scans every VM of the cluster.
const MAX_SWAP_TRIES: usize = 4;

/// CPU history (fraction of host `h`'s capacity) of the VMs the planner has on `h` now,
/// including those booked there in flight: the newest `n` sample times. `None` if one of them
/// has no history, where the host's own series is all there is.
fn placed_cpu(p: &Planner<'_>, h: usize, n: usize) -> Option<Series> {
    let s = p.snap();
    let cap = s.hosts[h].cpu_mhz();
    if cap <= 0.0 {
        return None;
    }
    let mut parts = Vec::with_capacity(p.on_host[h].len());
    for &v in &p.on_host[h] {
        let vm = &s.vms[v];
        parts.push((p.input.trends.vm_cpu(&vm.name)?, vm.cpu_cap_mhz / cap));
    }
    Some(weighted_sum(&parts, n))
}
