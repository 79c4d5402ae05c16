//! `Accounting::Exact`: what really happens in a tick, segment by segment between migration
//! completions: each VM requests its demand at the tick start, an oversubscribed host scales
//! every share, a VM migrating out runs 10 % slower and its destination reserves 10 % of it.
//! A VM can use at most one host CPU per vCPU: more demand than that is unmet however idle
//! the host.

use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::hypervisor::DomainState;

use super::accounting::{segments, Capacity, Totals};
use super::scenario::Scenario;

/// Accounts `[t_ms, end_ms)` into `tot`.
pub(super) fn account(
    c: &SimCluster,
    sc: &Scenario,
    t_ms: u64,
    end_ms: u64,
    hosts: &Capacity,
    tot: &mut Totals,
) {
    let mut active = vec![false; hosts.cap.len()];
    for w in segments(c, t_ms, end_ms).windows(2) {
        let (a, b) = (w[0], w[1]);
        let dt = (b - a) as f64 / 1000.0;
        let load = Load::at(c, t_ms, a, &hosts.pe_mhz);
        tot.floor_ws += load.servable(hosts.max_pe_mhz) * hosts.best_w_per_mhz * dt;
        let granted = load.grant(&hosts.cap, dt, tot);
        for h in 0..hosts.cap.len() {
            if !c.hosts()[h].up {
                continue;
            }
            if granted[h] > 0.0 {
                active[h] = true;
                tot.active_time += dt;
                if granted[h] < load.req[h] * (1.0 - 1e-9) {
                    tot.sla_time += dt;
                }
                tot.energy_ws += hosts.power[h].watts(granted[h] / hosts.cap[h]) * dt;
            }
            if load.req[h] >= hosts.cap[h] {
                tot.overload_s += dt;
            }
            if load.req[h] >= sc.high_util * hosts.cap[h] {
                tot.high_s += dt;
            }
        }
    }
    tot.active_host_ticks += active.iter().filter(|x| **x).count() as f64;
}

/// What a VM's row stands for in [`Load::rows`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Row {
    /// A VM running where it is.
    Staying,
    /// A VM migrating out of this host.
    MigratingOut,
    /// The 10 % a destination reserves for a VM migrating in.
    Reserve,
}

/// The load of every host during one segment.
struct Load {
    /// (host, demand, request capped at its vCPUs' worth of CPUs, kind) per row.
    rows: Vec<(usize, f64, f64, Row)>,
    /// Requested MHz per host.
    req: Vec<f64>,
    /// Requested MHz per host with each VM capped at its vCPUs' worth of CPUs.
    alloc_req: Vec<f64>,
    /// vCPUs of the VM of each row that is not a reserve.
    vcpus: Vec<f64>,
}

impl Load {
    /// The load of the segment starting at `a` in the tick starting at `t_ms`.
    fn at(c: &SimCluster, t_ms: u64, a: u64, pe_mhz: &[f64]) -> Load {
        let nh = pe_mhz.len();
        let mut l = Load {
            rows: Vec::with_capacity(c.domains().len()),
            req: vec![0.0; nh],
            alloc_req: vec![0.0; nh],
            vcpus: Vec::with_capacity(c.domains().len()),
        };
        for (d, dom) in c.domains().iter().enumerate() {
            if !c.hosts()[dom.host].up || dom.state != DomainState::Running {
                continue;
            }
            let dem = c.demand_mhz(d, t_ms);
            let migrating = dom.migration.filter(|m| a >= m.start_ms && a < m.end_ms);
            // A migration that completed earlier in this tick has already moved the VM.
            let src = match dom.migration {
                Some(m) if m.end_ms <= a => m.dest,
                _ => dom.host,
            };
            // Each vCPU runs on at most one host CPU: a 2-vCPU VM may use two of them.
            let vcpus = f64::from(dom.vcpus.max(1));
            let capped = dem.min(vcpus * pe_mhz[src]);
            l.req[src] += dem;
            l.alloc_req[src] += capped;
            l.vcpus.push(vcpus);
            if let Some(m) = migrating {
                l.rows.push((src, dem, capped, Row::MigratingOut));
                let cd = dem.min(vcpus * pe_mhz[m.dest]);
                l.alloc_req[m.dest] += 0.1 * cd;
                l.req[m.dest] += 0.1 * cd;
                l.rows.push((m.dest, 0.0, 0.1 * cd, Row::Reserve));
            } else {
                l.rows.push((src, dem, capped, Row::Staying));
            }
        }
        l
    }

    /// The most of the VMs' demand any placement could serve: each VM capped at its vCPUs'
    /// worth of the fastest host CPU.
    fn servable(&self, max_pe_mhz: f64) -> f64 {
        self.rows
            .iter()
            .filter(|r| r.3 != Row::Reserve)
            .zip(&self.vcpus)
            .map(|(&(_, dem, _, _), v)| dem.min(v * max_pe_mhz))
            .sum()
    }

    /// MHz granted per host, scaling every share on an oversubscribed host; adds what the VMs
    /// requested and did not get over `dt` seconds to `tot`.
    fn grant(&self, cap: &[f64], dt: f64, tot: &mut Totals) -> Vec<f64> {
        let scale: Vec<f64> = (0..cap.len())
            .map(|h| {
                if self.alloc_req[h] > cap[h] {
                    cap[h] / self.alloc_req[h]
                } else {
                    1.0
                }
            })
            .collect();
        let mut util = vec![0.0f64; cap.len()];
        for &(h, dem, capped, row) in &self.rows {
            let granted = capped * scale[h];
            match row {
                Row::Reserve => util[h] += granted,
                Row::MigratingOut => {
                    // The host still spends the full share; the VM gets 90 % of it.
                    let got = 0.9 * granted;
                    util[h] += got / 0.9;
                    tot.unmet += (dem - got).max(0.0) * dt;
                    tot.unmet_mig += (dem - got).max(0.0) * dt;
                    tot.req += dem * dt;
                }
                Row::Staying => {
                    util[h] += granted;
                    tot.unmet += (dem - granted).max(0.0) * dt;
                    tot.req += dem * dt;
                }
            }
        }
        util
    }
}
