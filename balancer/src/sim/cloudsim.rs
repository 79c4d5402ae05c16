//! `Accounting::Cloudsim`: CloudSim 3.0.3's world, for the PlanetLab scenarios. Energy by the
//! trapezoid and none for a host idle at the earlier update, a destination short of MIPS while a
//! VM migrates in, VMs leaving when their demand hits exactly 0, VMs planned twice in a round.

use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::hypervisor::DomainState;

use super::accounting::{segments, Capacity, Totals};
use super::cluster::demand;
use super::scenario::Scenario;

/// CloudSim 3.0.3 removes a VM from its host for good at any update where its requested MIPS
/// are exactly 0 and it is not migrating (`HostDynamicWorkload.getCompletedVms`): on the
/// PlanetLab traces, a VM with two consecutive zero samples leaves the data centre.
pub(super) fn retire_idle(c: &SimCluster, sc: &Scenario, gone: &mut [bool], t_ms: u64) {
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
pub(super) struct Ghost {
    pub vm: usize,
    pub host: usize,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// A running VM in one segment: (VM, host it runs on, destination while migrating out).
type Row = (usize, usize, Option<usize>);

/// Accounts `[t_ms, end_ms)` as CloudSim 3.0.3 does, in segments split at migration
/// completions: energy by the trapezoid between the utilisation at the start and at the end of
/// each segment (none if the host was idle at the start: `PowerHost.getEnergyLinearInterpolation`),
/// SLATAH from the host state at each segment start, PDM from the VM state. VMs whose demand
/// reaches 0 at a completion leave (see [`retire_idle`]).
pub(super) fn account(
    c: &SimCluster,
    sc: &Scenario,
    gone: &mut [bool],
    (t_ms, end_ms): (u64, u64),
    hosts: &Capacity,
    ghosts: &[Ghost],
    tot: &mut Totals,
) {
    let nv = c.domains().len();
    let mut active = vec![false; hosts.cap.len()];
    let mut dem_a = vec![0.0f64; nv];
    let mut dem_b = vec![0.0f64; nv];
    for w in segments(c, t_ms, end_ms).windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        let dt = (b - a) as f64 / 1000.0;
        let rows = rows_at(c, gone, a);
        for &(d, _, _) in &rows {
            dem_a[d] = demand(c, sc, d, a);
            dem_b[d] = demand(c, sc, d, b);
        }
        let live: Vec<(usize, usize)> = ghosts
            .iter()
            .filter(|g| !gone[g.vm] && g.start_ms <= a && a < g.end_ms)
            .map(|g| (g.vm, g.host))
            .collect();
        let serve = |dem: &[f64]| -> f64 {
            rows.iter()
                .map(|&(d, _, _)| dem[d].min(hosts.max_pe_mhz))
                .sum()
        };
        tot.floor_ws += (serve(&dem_a) + serve(&dem_b)) / 2.0 * hosts.best_w_per_mhz * dt;
        let start = alloc(&rows, &live, &dem_a, hosts);
        let end = alloc(&rows, &live, &dem_b, hosts);
        charge_hosts(sc, hosts, &start, &end.util, dt, &mut active, tot);
        for (&(d, _, dst), &got) in rows.iter().zip(&start.vm) {
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
            retire_at_completion(c, sc, gone, b);
        }
    }
    tot.active_host_ticks += active.iter().filter(|x| **x).count() as f64;
}

/// The running VMs at `a`, on the host that runs them then.
fn rows_at(c: &SimCluster, gone: &[bool], a: u64) -> Vec<Row> {
    let mut rows = Vec::with_capacity(c.domains().len());
    for (d, dom) in c.domains().iter().enumerate() {
        if gone[d] || dom.state != DomainState::Running {
            continue;
        }
        let row = match dom.migration {
            Some(m) if m.start_ms <= a && a < m.end_ms => (d, dom.host, Some(m.dest)),
            Some(m) if m.end_ms <= a => (d, m.dest, None),
            _ => (d, dom.host, None),
        };
        if c.hosts()[row.1].up {
            rows.push(row);
        }
    }
    rows
}

/// Adds one segment's energy (trapezoid from `start` to `end_util`), SLA time and overload
/// time, judged on the host state at the segment start.
fn charge_hosts(
    sc: &Scenario,
    hosts: &Capacity,
    start: &Alloc,
    end_util: &[f64],
    dt: f64,
    active: &mut [bool],
    tot: &mut Totals,
) {
    let (ua, ra, cap) = (&start.util, &start.req, &hosts.cap);
    for h in 0..cap.len() {
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
        let pa = hosts.power[h].watts(ua[h] / cap[h]);
        let pb = hosts.power[h].watts(end_util[h] / cap[h]);
        tot.energy_ws += (pa + pb) / 2.0 * dt;
    }
}

/// A VM whose interpolated demand reaches exactly 0 when a migration completes at `b` leaves,
/// as at an update.
fn retire_at_completion(c: &SimCluster, sc: &Scenario, gone: &mut [bool], b: u64) {
    for (d, dom) in c.domains().iter().enumerate() {
        let migrating = dom
            .migration
            .is_some_and(|m| m.start_ms <= b && b < m.end_ms);
        if !gone[d] && !migrating && demand(c, sc, d, b) == 0.0 {
            gone[d] = true;
        }
    }
}

/// One instant as CloudSim's `VmSchedulerTimeSharedOverSubscription` and
/// `HostDynamicWorkload.updateVmsProcessing` compute it.
struct Alloc {
    /// Utilisation MIPS per host.
    util: Vec<f64>,
    /// Requested MIPS per host.
    req: Vec<f64>,
    /// MIPS allocated per VM row.
    vm: Vec<f64>,
}

/// The allocation of `rows` and `ghosts` (VM, destination) under demands `dem`.
fn alloc(rows: &[Row], ghosts: &[(usize, usize)], dem: &[f64], hosts: &Capacity) -> Alloc {
    let (pe_mhz, cap) = (&hosts.pe_mhz, &hosts.cap);
    let need = needs(rows, ghosts, dem, pe_mhz);
    // Oversubscribed hosts scale every VM's share and round each share down.
    let grant = |h: usize, mips: f64| {
        if need[h] > cap[h] {
            (mips * cap[h] / need[h]).floor()
        } else {
            mips
        }
    };
    let mut util = vec![0.0f64; cap.len()];
    let mut req = vec![0.0f64; cap.len()];
    let mut vm = Vec::with_capacity(rows.len());
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
        vm.push(a);
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
    Alloc { util, req, vm }
}

/// MIPS each host's scheduler is asked for: every VM capped at one PE, plus the 10 % a
/// destination reserves for each VM migrating in. One PE per VM is CloudSim's setup (every
/// PlanetLab VM has one vCPU); multi-vCPU VMs belong in `Accounting::Exact`.
fn needs(rows: &[Row], ghosts: &[(usize, usize)], dem: &[f64], pe_mhz: &[f64]) -> Vec<f64> {
    let mut need = vec![0.0f64; pe_mhz.len()];
    for &(d, h, dst) in rows {
        need[h] += dem[d].min(pe_mhz[h]);
        if let Some(g) = dst {
            need[g] += 0.1 * dem[d].min(pe_mhz[g]);
        }
    }
    for &(d, g) in ghosts {
        need[g] += 0.1 * dem[d].min(pe_mhz[g]);
    }
    need
}
