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

use crate::error::BalancerError;
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner};
use crate::trends::{weighted_sum, Series};

/// `[hotspot]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotspotParams {
    /// CPU utilisation threshold of a hotspot (0..=1.5, default 0.85).
    pub threshold: f64,
    /// Memory utilisation threshold of a hotspot (0..=1, default 0.95).
    pub mem_threshold: f64,
    /// k: samples of the last n that must exceed the threshold (1..=n, default 3).
    pub k: usize,
    /// n: window of the sustained test (1..=30, default 5).
    pub n: usize,
    /// Samples used by the linear trend (2..=30, default 6).
    pub trend_window: usize,
    /// Forecast horizon in samples (0..=12, default 1).
    pub forecast_ahead: usize,
    /// Relieve a hot host until its utilisation is at most this, and never fill a destination
    /// above it (0..=threshold, default 0.75).
    pub target: f64,
}

impl Default for HotspotParams {
    fn default() -> Self {
        HotspotParams {
            threshold: 0.85,
            mem_threshold: 0.95,
            k: 3,
            n: 5,
            trend_window: 6,
            forecast_ahead: 1,
            target: 0.75,
        }
    }
}

impl HotspotParams {
    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.5).contains(&self.threshold) || !(0.0..=1.0).contains(&self.mem_threshold) {
            return Err(BalancerError::config("hotspot thresholds out of range"));
        }
        if self.k == 0 || self.k > self.n || self.n > 30 {
            return Err(BalancerError::config(format!(
                "hotspot k={} n={} needs 1 <= k <= n <= 30",
                self.k, self.n
            )));
        }
        if !(2..=30).contains(&self.trend_window) || self.forecast_ahead > 12 {
            return Err(BalancerError::config(
                "hotspot trend_window 2..=30, forecast_ahead 0..=12",
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
    let s = p.snap();
    let trends = p.input.trends;
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
            .then(|| placed_cpu(p, h, cfg.n.max(cfg.trend_window)))
            .flatten();
        let cpu = placed.as_ref().unwrap_or(own);
        let forecast = cpu
            .forecast(cfg.trend_window, cfg.forecast_ahead)
            .unwrap_or(0.0);
        let over = |s: &Series, t: f64| s.recent(cfg.n).filter(|v| *v > t).count() as f64;
        let (cpu_over, mem_over) = (over(cpu, cfg.threshold), over(mem, cfg.mem_threshold));
        let k = cfg.k as f64;
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
    for (_, h, forecast) in hot {
        let cap = s.hosts[h].cpu_mhz();
        let mem_cap = s.hosts[h].mem_kb as f64;
        let mut vms: Vec<(f64, usize)> = p.on_host[h]
            .iter()
            .map(|&v| {
                let vm = &s.vms[v];
                let vol = volume(vm.cpu_demand_mhz / cap, vm.mem_kb as f64 / mem_cap);
                (vol / (vm.mem_kb.max(1) as f64), v)
            })
            .collect();
        vms.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let util0 = p.util(h);
        for (_, v) in vms {
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
            let d = match p.least_loaded_or_why(v, cfg.target, MoveKind::Balance, gain) {
                Ok(d) => d,
                Err(why) => {
                    p.refuse(why);
                    continue;
                }
            };
            let reason = Reason::Hotspot {
                host: s.hosts[h].name.clone(),
                util: r6(util0),
                forecast: r6(forecast),
                threshold: cfg.threshold,
            };
            let _ = p.try_move(v, d, reason, gain, cfg.target, MoveKind::Balance);
        }
    }
}

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
