//! What the two accountings share: the running energy and SLA totals, each host's capacity,
//! the split of an interval at migration completions, and the report fields they yield.

use gmond_metrics::hypervisor::sim::SimCluster;

use super::cluster::power_of;
use super::report::Report;
use super::scenario::Scenario;
use crate::snapshot::PowerCurve;

/// Each host's capacity, fixed for the run.
#[derive(Debug)]
pub(super) struct Capacity {
    /// MHz of one CPU: the most a single vCPU can get on the host.
    pub pe_mhz: Vec<f64>,
    /// MHz of the whole host.
    pub cap: Vec<f64>,
    /// The curve the host's energy is priced with.
    pub power: Vec<PowerCurve>,
    /// The fewest watts per MHz any host spends at any load: what the energy floor prices
    /// demand at.
    pub best_w_per_mhz: f64,
    /// MHz of the fastest host CPU: the most one vCPU can get anywhere.
    pub max_pe_mhz: f64,
}

impl Capacity {
    pub fn of(c: &SimCluster, sc: &Scenario) -> Capacity {
        let hosts = c.hosts();
        let pe_mhz: Vec<f64> = hosts.iter().map(|h| f64::from(h.mhz)).collect();
        let cap: Vec<f64> = hosts
            .iter()
            .map(|h| f64::from(h.cpus) * f64::from(h.mhz))
            .collect();
        let power: Vec<PowerCurve> = (0..hosts.len()).map(|h| power_of(sc, h)).collect();
        Capacity {
            best_w_per_mhz: best_w_per_mhz(&cap, &power),
            max_pe_mhz: pe_mhz.iter().copied().fold(0.0, f64::max),
            pe_mhz,
            cap,
            power,
        }
    }
}

/// The least watts per MHz of work over every host and load. The curves are linear between
/// their 10 % points with positive idle power, so watts / MHz falls along each piece and its
/// least value lies on a 10 % point; a 1 % grid covers those.
fn best_w_per_mhz(cap: &[f64], power: &[PowerCurve]) -> f64 {
    let mut best = f64::INFINITY;
    for (c, p) in cap.iter().zip(power) {
        if *c <= 0.0 {
            continue;
        }
        for pct in 1..=100u32 {
            let u = f64::from(pct) / 100.0;
            best = best.min(p.watts(u) / (u * c));
        }
    }
    if best.is_finite() {
        best
    } else {
        0.0
    }
}

/// Running totals of either accounting over the whole run (seconds, MHz-seconds, watt-seconds).
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub energy_ws: f64,
    /// Host-seconds where an active host got less than it requested.
    pub sla_time: f64,
    /// Host-seconds with load.
    pub active_time: f64,
    /// MHz-seconds requested by the VMs.
    pub req: f64,
    /// MHz-seconds requested and not granted, all causes.
    pub unmet: f64,
    /// MHz-seconds requested and not granted to VMs migrating out.
    pub unmet_mig: f64,
    /// Host-seconds with requested CPU >= capacity.
    pub overload_s: f64,
    /// Host-seconds with requested CPU >= the scenario's high-utilisation mark.
    pub high_s: f64,
    /// Sum over ticks of the hosts active at any time in the tick.
    pub active_host_ticks: f64,
    /// Watt-seconds the running VMs' demand costs at the best watts per MHz of any host (see
    /// [`Report::energy_floor_kwh`]).
    pub floor_ws: f64,
}

impl Totals {
    /// Writes energy, SLATAH, PDM, SLAV, ESV, unmet demand, overload and active hosts.
    pub fn write_to(&self, r: &mut Report, ticks: u64) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        r.overload_host_s = self.overload_s;
        r.high_util_host_s = self.high_s;
        r.energy_kwh = self.energy_ws / 3.6e6;
        r.energy_floor_kwh = self.floor_ws / 3.6e6;
        r.slatah = ratio(self.sla_time, self.active_time);
        r.pdm = ratio(self.unmet_mig, self.req);
        r.unmet_demand = ratio(self.unmet, self.req);
        r.slav = r.slatah * r.pdm;
        r.esv = r.energy_kwh * r.slav;
        r.active_hosts_mean = ratio(self.active_host_ticks, ticks as f64);
    }
}

/// `[t_ms, end_ms)` split at the migration completions inside it, where a host's load changes
/// between two decisions: the boundaries, first `t_ms` and last `end_ms`.
pub(super) fn segments(c: &SimCluster, t_ms: u64, end_ms: u64) -> Vec<u64> {
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
    events
}
