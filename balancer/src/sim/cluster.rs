//! The simulated cluster of a scenario: building it with its initial placement, the demand of
//! each VM, and the snapshot the policy sees.

use std::collections::BTreeSet;

use gmond_metrics::hypervisor::profile::Profile;
use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};
use gmond_metrics::hypervisor::DomainState;

use super::scenario::{Accounting, ProfileSpec, Scenario, VmSpec};
use crate::error::{BalancerError, Result};
use crate::policy::{Detector, PolicySpec};
use crate::snapshot::{HostState, PowerCurve, Snapshot, VmState};

/// The power curve a scenario names for a host (`None`: the policy's default).
pub(super) fn curve(name: Option<&str>) -> Option<PowerCurve> {
    match name {
        Some("g4") => Some(PowerCurve::G4),
        Some("g5") => Some(PowerCurve::G5),
        _ => None,
    }
}

/// The power curve the accounting prices host `h` with: the scenario's, else G4.
pub(super) fn power_of(sc: &Scenario, h: usize) -> PowerCurve {
    curve(sc.hosts[h].power.as_deref()).unwrap_or(PowerCurve::G4)
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
pub(super) enum InitialPlacement {
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

/// `spec` is `None` for a caller's own policy, placed as any policy but `consolidate`.
pub(super) fn initial_placement(sc: &Scenario, spec: Option<&PolicySpec>) -> InitialPlacement {
    let detector = spec.and_then(|s| s.beloglazov_detector().map(|d| (s, d)));
    if let Some((spec, d)) = detector.filter(|_| sc.accounting == Accounting::Cloudsim) {
        let c = &spec.consolidate;
        return InitialPlacement::CloudsimPolicy(if d == Detector::Thr {
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
pub(super) fn build(sc: &Scenario, placement: InitialPlacement) -> Result<(SimCluster, Vec<bool>)> {
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
    let mut placed = Placed {
        cpu: vec![0.0; sc.hosts.len()],
        mem: vec![0; sc.hosts.len()],
    };
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
            None => match (placed.best_host(sc, v, cap, placement), placement) {
                (Some(i), _) => i,
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
            },
        };
        placed.cpu[h] += cap;
        placed.mem[h] += v.mem_kb;
        never.push(false);
        c.add_domain(&v.name, v.vcpus, cap, v.mem_kb, h, profile(&v.profile))?;
    }
    Ok((c, never))
}

/// What the initial placement has put on each host so far: CPU capacity (MHz) and memory (KiB).
struct Placed {
    cpu: Vec<f64>,
    mem: Vec<u64>,
}

impl Placed {
    /// The host an unplaced VM of capacity `cap` MHz goes to, if any fits.
    fn best_host(
        &self,
        sc: &Scenario,
        v: &VmSpec,
        cap: f64,
        placement: InitialPlacement,
    ) -> Option<usize> {
        let (cpu, mem) = (&self.cpu, &self.mem);
        let mut best: Option<(f64, usize)> = None;
        for (i, h) in sc.hosts.iter().enumerate() {
            let hc = f64::from(h.cpus) * f64::from(h.mhz);
            let per_vcpu = cap / f64::from(v.vcpus.max(1));
            if mem[i] + v.mem_kb > h.mem_kb || cpu[i] + cap > hc || per_vcpu > f64::from(h.mhz) {
                continue;
            }
            let pw = power_of(sc, i);
            let (d, limit) = match placement {
                InitialPlacement::FirstFit => return Some(i),
                InitialPlacement::Pabfd => (
                    pw.watts((cpu[i] + cap) / hc) - pw.watts(cpu[i] / hc),
                    sc.initial_threshold,
                ),
                InitialPlacement::CloudsimPolicy(t) => {
                    // The detector sums the VMs' *current* requests, and VMs created earlier
                    // request nothing until their first update: only the new VM's full MIPS
                    // count against the threshold.
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
        best.map(|(_, i)| i)
    }
}

/// Demand of domain `d` at `t_ms`. In the CloudSim world a sampled trace is interpolated
/// linearly between samples (UtilizationModelPlanetLabInMemory), so demand changes between
/// the 300 s updates when a migration completes; elsewhere it is the hypervisor's step value.
pub(super) fn demand(c: &SimCluster, sc: &Scenario, d: usize, t_ms: u64) -> f64 {
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
pub(super) fn snapshot(
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
            || dom.state != DomainState::Running
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
            tags: sc.vms.get(d).map(|v| v.tags).unwrap_or_default(),
        });
    }
    Snapshot::new(t_ms / 1000, hosts, vms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::builtin;
    use crate::sim::view::cluster_view;

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
