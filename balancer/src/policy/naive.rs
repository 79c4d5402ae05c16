//! Baseline `naive-threshold`: every host over a fixed CPU threshold right now moves its
//! busiest VM to the least loaded host. No smoothing, no forecast.

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner};

/// `[naive]` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NaiveParams {
    /// CPU utilisation above which a host is overloaded (0..=1.5, default 0.8).
    pub threshold: f64,
}

impl Default for NaiveParams {
    fn default() -> Self {
        NaiveParams { threshold: 0.8 }
    }
}

impl NaiveParams {
    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.5).contains(&self.threshold) {
            return Err(BalancerError::config(format!(
                "naive.threshold {} not in 0..=1.5",
                self.threshold
            )));
        }
        Ok(())
    }
}

pub(crate) fn run(cfg: &NaiveParams, p: &mut Planner<'_>) {
    let s = p.snap();
    let mut hot: Vec<(f64, usize)> = Vec::new();
    for h in 0..s.hosts.len() {
        let u = p.util(h);
        if s.hosts[h].up && p.test(Some(h), "cpu now", u, ">", cfg.threshold) {
            p.qualify(Some(h));
            hot.push((u, h));
        }
    }
    hot.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (u, h) in hot {
        let movable: Vec<usize> = p.on_host[h]
            .iter()
            .copied()
            .filter(|&v| !s.vms[v].migrating)
            .collect();
        let Some(&v) = p.lowest_priority(&movable).iter().max_by(|&&a, &&b| {
            s.vms[a]
                .cpu_demand_mhz
                .total_cmp(&s.vms[b].cpu_demand_mhz)
                .then(b.cmp(&a))
        }) else {
            continue;
        };
        let gain = s.vms[v].cpu_demand_mhz / s.hosts[h].cpu_mhz();
        match p.least_loaded_or_why(v, 1.0, MoveKind::Consolidate, gain) {
            Ok(d) => {
                let reason = Reason::Threshold {
                    host: s.hosts[h].name.clone(),
                    util: r6(u),
                    threshold: cfg.threshold,
                };
                let _ = p.try_move(v, d, reason, gain, 1.0, MoveKind::Consolidate);
            }
            Err(why) => {
                p.refuse_vm(v, None, why);
            }
        }
    }
}
