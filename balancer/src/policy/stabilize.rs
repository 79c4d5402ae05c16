//! `stabilize`: keep the weighted standard deviation of host load (CPU and memory, each
//! normalised to capacity) under a target, Watcher workload_stabilization style: greedily
//! apply the single move that lowers the weighted sigma most, until each sigma is under its
//! target or no move gains enough. Candidates are the VMs of the most loaded hosts towards
//! the least loaded ones, which keeps a decision cheap at 1,000 hosts.

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner, Refusal};
use crate::trends::population_std_dev;

/// `[stabilize]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StabilizeParams {
    /// Weight of the CPU sigma (>= 0, default 1.0).
    pub cpu_weight: f64,
    /// Weight of the memory sigma (>= 0, default 1.0).
    pub mem_weight: f64,
    /// Target CPU sigma (0..=0.5, default 0.05).
    pub cpu_target: f64,
    /// Target memory sigma (0..=0.5, default 0.05).
    pub mem_target: f64,
    /// Number of most and least loaded hosts searched as sources and destinations
    /// (1..=1000, default 8).
    pub candidate_hosts: usize,
    /// Highest CPU utilisation a destination may reach (0..=1, default 0.85).
    pub dest_max_util: f64,
    /// Act only if a sigma was over its target for `over_s` of the last `window_s` seconds
    /// (1..=window_s, default 180).
    pub over_s: u64,
    /// Window of the sustained test, seconds (default 300).
    pub window_s: u64,
    /// Deprecated: `k` of the last `n` samples instead of `over_s` of `window_s` (both or
    /// neither; 1 <= k <= n <= 30; see `HotspotParams::k`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Deprecated: see `k`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
}

impl Default for StabilizeParams {
    fn default() -> Self {
        StabilizeParams {
            cpu_weight: 1.0,
            mem_weight: 1.0,
            cpu_target: 0.05,
            mem_target: 0.05,
            candidate_hosts: 8,
            dest_max_util: 0.85,
            over_s: 180,
            window_s: 300,
            k: None,
            n: None,
        }
    }
}

impl StabilizeParams {
    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if self.cpu_weight < 0.0 || self.mem_weight < 0.0 {
            return Err(BalancerError::config("stabilize weights must be >= 0"));
        }
        if !(0.0..=0.5).contains(&self.cpu_target) || !(0.0..=0.5).contains(&self.mem_target) {
            return Err(BalancerError::config(
                "stabilize targets must be in 0..=0.5",
            ));
        }
        if !(1..=1000).contains(&self.candidate_hosts) || !(0.0..=1.0).contains(&self.dest_max_util)
        {
            return Err(BalancerError::config(
                "stabilize candidate_hosts 1..=1000, dest_max_util 0..=1",
            ));
        }
        super::check_sustained("stabilize", self.over_s, self.window_s, self.k, self.n)?;
        Ok(())
    }
}

/// How many of the last n samples of the host histories had the CPU or memory sigma over
/// `hosts` above target (k of them are needed: a blip shorter than k samples never triggers a
/// move).
fn samples_over(cfg: &StabilizeParams, p: &Planner<'_>, hosts: &[usize]) -> usize {
    let s = p.snap();
    let trends = p.input.trends;
    let n = cfg.n.unwrap_or_else(|| trends.samples_in(cfg.window_s));
    let mut cpu: Vec<Vec<f64>> = Vec::new();
    let mut mem: Vec<Vec<f64>> = Vec::new();
    for &h in hosts {
        let name = &s.hosts[h].name;
        if let (Some(c), Some(m)) = (trends.host_cpu(name), trends.host_mem(name)) {
            cpu.push(c.recent(n).collect());
            mem.push(m.recent(n).collect());
        }
    }
    let len = cpu.iter().map(Vec::len).min().unwrap_or(0);
    let mut over = 0;
    for i in 0..len {
        let at =
            |v: &Vec<Vec<f64>>| -> Vec<f64> { v.iter().map(|x| x[x.len() - len + i]).collect() };
        if population_std_dev(&at(&cpu)) > cfg.cpu_target
            || population_std_dev(&at(&mem)) > cfg.mem_target
        {
            over += 1;
        }
    }
    over
}

/// Running sums for sigma over the counted hosts.
struct Sums {
    n: f64,
    s1: f64,
    s2: f64,
}

impl Sums {
    fn sigma(&self) -> f64 {
        if self.n < 1.0 {
            return 0.0;
        }
        let m = self.s1 / self.n;
        (self.s2 / self.n - m * m).max(0.0).sqrt()
    }

    /// Sigma after host values `a` -> `a2` and `b` -> `b2`.
    fn sigma_after(&self, a: f64, a2: f64, b: f64, b2: f64) -> f64 {
        let s1 = self.s1 - a - b + a2 + b2;
        let s2 = self.s2 - a * a - b * b + a2 * a2 + b2 * b2;
        let m = s1 / self.n;
        (s2 / self.n - m * m).max(0.0).sqrt()
    }
}

pub(crate) fn run(cfg: &StabilizeParams, p: &mut Planner<'_>) {
    let s = p.snap();
    let counted: Vec<usize> = (0..s.hosts.len()).filter(|&h| p.fillable(h)).collect();
    if !p.test(
        None,
        "hosts that can take VMs",
        counted.len() as f64,
        ">=",
        2.0,
    ) {
        return;
    }
    let over = samples_over(cfg, p, &counted) as f64;
    let sigma = |f: &dyn Fn(usize) -> f64| {
        let v: Vec<f64> = counted.iter().map(|&h| f(h)).collect();
        population_std_dev(&v)
    };
    let (sc, sm) = (sigma(&|h| p.util(h)), sigma(&|h| p.mem_util(h)));
    p.test(None, "cpu sigma now", sc, ">", cfg.cpu_target);
    p.test(None, "memory sigma now", sm, ">", cfg.mem_target);
    let trends = p.input.trends;
    let n = cfg.n.unwrap_or_else(|| trends.samples_in(cfg.window_s));
    let k = cfg
        .k
        .unwrap_or_else(|| trends.samples_in(cfg.over_s))
        .min(n);
    if !p.test(None, "samples with sigma over target", over, ">=", k as f64) {
        return;
    }
    p.qualify(None);
    let sums = |f: &dyn Fn(usize) -> f64| Sums {
        n: counted.len() as f64,
        s1: counted.iter().map(|&h| f(h)).sum(),
        s2: counted.iter().map(|&h| f(h) * f(h)).sum(),
    };
    loop {
        if !p.budget_left() {
            return;
        }
        let cpu = sums(&|h| p.util(h));
        let mem = sums(&|h| p.mem_util(h));
        let (sc, sm) = (cpu.sigma(), mem.sigma());
        if sc <= cfg.cpu_target && sm <= cfg.mem_target {
            return;
        }
        let before = cfg.cpu_weight * sc + cfg.mem_weight * sm;
        let score = |h: usize| cfg.cpu_weight * p.util(h) + cfg.mem_weight * p.mem_util(h);
        let mut order = counted.clone();
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        let k = cfg.candidate_hosts.min(order.len());
        let sources = &order[..k];
        let dests = &order[order.len() - k..];
        let mut best: Option<(f64, usize, usize)> = None;
        for &src in sources {
            let (cs, ms) = (s.hosts[src].cpu_mhz(), s.hosts[src].mem_kb as f64);
            for &v in &p.on_host[src] {
                let vm = &s.vms[v];
                for &dst in dests {
                    if dst == src {
                        continue;
                    }
                    let (cd, md) = (s.hosts[dst].cpu_mhz(), s.hosts[dst].mem_kb as f64);
                    let (us, ud) = (p.util(src), p.util(dst));
                    let (ms0, md0) = (p.mem_util(src), p.mem_util(dst));
                    let c2 = cpu.sigma_after(
                        us,
                        us - vm.cpu_demand_mhz / cs,
                        ud,
                        ud + vm.cpu_demand_mhz / cd,
                    );
                    let m2 = mem.sigma_after(
                        ms0,
                        ms0 - vm.mem_kb as f64 / ms,
                        md0,
                        md0 + vm.mem_kb as f64 / md,
                    );
                    let after = cfg.cpu_weight * c2 + cfg.mem_weight * m2;
                    // Sigma drops shrink as 1/n in big clusters; n x drop is the local improvement, so the
                    // same cost and hysteresis work at 6 hosts and at 1,000.
                    let gain = (before - after) * cpu.n;
                    // A VM of lower priority wins over a better move of a higher one.
                    let pr = p.priority(v);
                    if best.is_some_and(|(g, bv, _)| {
                        let bp = p.priority(bv);
                        pr > bp || (pr == bp && gain <= g)
                    }) {
                        continue;
                    }
                    if p.check(v, dst, gain, cfg.dest_max_util, MoveKind::Consolidate)
                        .is_ok()
                    {
                        best = Some((gain, v, dst));
                    }
                }
            }
        }
        let Some((gain, v, dst)) = best else {
            if p.moves().is_empty() {
                p.refuse(Refusal::NoDestination);
            }
            return;
        };
        let reason = Reason::Imbalance {
            sigma_before: r6(before),
            sigma_after: r6(before - gain / cpu.n),
        };
        if p.try_move(
            v,
            dst,
            reason,
            gain,
            cfg.dest_max_util,
            MoveKind::Consolidate,
        )
        .is_err()
        {
            return;
        }
    }
}
