//! The demo's simulated hypervisors: hosts, VMs driven by PlanetLab traces (or synthetic load
//! when the traces are missing) and one host whose VMs spike, built deterministically from a seed.

use crate::Error;
use gmond_metrics::hypervisor::profile::{read_planetlab_dir, splitmix64, unit, Profile, SimMs};
use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Physical CPUs of a demo host.
pub const HOST_CPUS: u32 = 4;
/// MHz per CPU of a demo host.
pub const HOST_MHZ: u32 = 2000;
/// Memory of a demo host, KiB (16 GiB).
pub const HOST_MEM_KIB: u64 = 16 << 20;
/// Migration link of every host, bit/s.
pub const LINK_BPS: u64 = 1_000_000_000;
/// vCPUs of every demo VM.
pub const VM_VCPUS: u32 = 2;
/// Memory of a demo VM, KiB (2 GiB: a 34 s live migration on the 1 Gbit/s link).
pub const VM_MEM_KIB: u64 = 2 << 20;
/// CPU demand of a spiking VM, fraction of its vCPUs.
pub const SPIKE_LEVEL: f32 = 0.75;
/// PlanetLab's sample period: 5 minutes.
const TRACE_PERIOD_MS: SimMs = 300_000;
/// Resolution of the spiking VMs' profile, fine enough for a spike that starts seconds in.
const FINE_PERIOD_MS: SimMs = 5_000;

/// What the demo cluster looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// Number of hypervisor hosts.
    pub hosts: usize,
    /// Number of VMs, spread round-robin.
    pub vms: usize,
    /// Seed of every random choice (which traces, synthetic noise).
    pub seed: u64,
    /// PlanetLab day directory; `None` or unreadable: synthetic load.
    pub trace_dir: Option<PathBuf>,
    /// Simulated time at which the spike host's VMs jump to [`SPIKE_LEVEL`].
    pub spike_at_ms: SimMs,
}

/// Where the load of the VMs comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadSource {
    /// PlanetLab traces from this directory.
    PlanetLab(PathBuf),
    /// Seeded noise, because the traces could not be read (the reason is kept for the banner).
    Synthetic(String),
}

/// The built cluster and what the demo needs to know about it.
#[derive(Debug, Clone)]
pub struct BuiltCluster {
    /// The simulated hypervisors at time 0.
    pub sim: SimCluster,
    /// Host names, in index order (`hv01`, `hv02`, ...).
    pub host_names: Vec<String>,
    /// Index of the host whose VMs spike.
    pub spike_host: usize,
    /// When the spike starts, simulated ms.
    pub spike_at_ms: SimMs,
    /// Where the load comes from.
    pub load: LoadSource,
    /// Per VM: (name, trace file it follows, or "synthetic").
    pub vm_origin: Vec<(String, String)>,
}

/// Name of host `i` (0-based): zero-padded so byte order is numeric order (the balancer's
/// leader is the lowest name).
pub fn host_name(i: usize) -> String {
    format!("hv{:02}", i + 1)
}

/// Name of VM `i` (0-based).
pub fn vm_name(i: usize) -> String {
    format!("vm{:02}", i + 1)
}

/// The directory of the shipped PlanetLab day, as seen from this crate's source tree.
pub fn default_trace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../metrics/data/planetlab/20110303")
}

/// Builds the cluster. Never fails for lack of traces: that becomes [`LoadSource::Synthetic`].
pub fn build(spec: &ClusterSpec) -> Result<BuiltCluster, Error> {
    if spec.hosts == 0 || spec.vms == 0 {
        return Err(Error::EmptyCluster);
    }
    let mut sim = SimCluster::new(spec.seed);
    let mut host_names = Vec::with_capacity(spec.hosts);
    for i in 0..spec.hosts {
        let name = host_name(i);
        sim.add_host(SimHost {
            name: name.clone(),
            cpus: HOST_CPUS,
            mhz: HOST_MHZ,
            mem_kib: HOST_MEM_KIB,
            link_bps: LINK_BPS,
            up: true,
        })?;
        host_names.push(name);
    }
    let (load, traces) = load_traces(spec);
    // The second host spikes, so that (with two or more hosts) the leader, hv01, moves VMs off
    // another host: coordination is visible, not just a host relieving itself.
    let spike_host = usize::from(spec.hosts > 1);
    let mut vm_origin = Vec::with_capacity(spec.vms);
    for i in 0..spec.vms {
        let host = i % spec.hosts;
        let (origin, samples) = &traces[i % traces.len()];
        let profile = if host == spike_host {
            spiked(samples, spec.spike_at_ms)
        } else {
            Profile::Trace {
                samples: samples.clone(),
                period_ms: TRACE_PERIOD_MS,
            }
        };
        let name = vm_name(i);
        sim.add_domain(
            &name,
            VM_VCPUS,
            f64::from(VM_VCPUS * HOST_MHZ),
            VM_MEM_KIB,
            host,
            profile,
        )?;
        vm_origin.push((name, origin.clone()));
    }
    Ok(BuiltCluster {
        sim,
        host_names,
        spike_host,
        spike_at_ms: spec.spike_at_ms,
        load,
        vm_origin,
    })
}

/// Per VM: the trace's file name (or "synthetic") and its samples.
type Traces = Vec<(String, Arc<[f32]>)>;

/// The traces to use (at least one), chosen by seed among the lively ones, or synthetic noise.
fn load_traces(spec: &ClusterSpec) -> (LoadSource, Traces) {
    let read = spec
        .trace_dir
        .as_ref()
        .map(|dir| read_traces(dir).map(|all| (dir.clone(), all)));
    match read {
        Some(Ok((dir, all))) => (LoadSource::PlanetLab(dir), pick_lively(spec, all)),
        Some(Err(e)) => (LoadSource::Synthetic(e.to_string()), synthetic(spec)),
        None => (
            LoadSource::Synthetic("no trace directory given".into()),
            synthetic(spec),
        ),
    }
}

/// Every trace in `dir`; a directory without any is an error too.
fn read_traces(dir: &Path) -> Result<Vec<(String, Vec<f32>)>, Error> {
    let all = read_planetlab_dir(dir).map_err(Error::Traces)?;
    if all.is_empty() {
        return Err(Error::NoTraces(dir.to_path_buf()));
    }
    Ok(all)
}

/// One trace per VM, chosen by seed among those averaging 5-25 %: they move visibly without
/// overloading a host on their own.
fn pick_lively(spec: &ClusterSpec, all: Vec<(String, Vec<f32>)>) -> Traces {
    let mut lively: Vec<(String, Vec<f32>)> = all
        .iter()
        .filter(|(_, s)| {
            let mean = s.iter().map(|&v| f64::from(v)).sum::<f64>() / s.len() as f64;
            (0.05..=0.25).contains(&mean)
        })
        .cloned()
        .collect();
    if lively.is_empty() {
        lively = all;
    }
    pick(spec.seed, lively.len(), spec.vms)
        .into_iter()
        .map(|k| {
            let (n, s) = &lively[k];
            (n.clone(), Arc::from(s.as_slice()))
        })
        .collect()
}

/// Seeded noise around 15 %, one day of 5-minute samples per VM.
fn synthetic(spec: &ClusterSpec) -> Traces {
    (0..spec.vms.max(1))
        .map(|i| {
            let seed = splitmix64(spec.seed ^ (i as u64).wrapping_mul(0x9E37));
            let p = Profile::Noise {
                mean: 0.15,
                amplitude: 0.12,
                period_ms: TRACE_PERIOD_MS,
                seed,
            };
            let samples: Vec<f32> = (0..288u64)
                .map(|k| p.demand_at(k * TRACE_PERIOD_MS) as f32)
                .collect();
            ("synthetic".to_string(), Arc::from(samples.as_slice()))
        })
        .collect()
}

/// `n` distinct indices below `len` (with repeats only when `n > len`), in a seeded order.
fn pick(seed: u64, len: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    // Fisher-Yates with SplitMix64: reproducible on every platform.
    let mut state = seed;
    for i in (1..idx.len()).rev() {
        state = splitmix64(state);
        let j = (unit(state) * (i + 1) as f64) as usize;
        idx.swap(i, j.min(i));
    }
    (0..n).map(|k| idx[k % idx.len().max(1)]).collect()
}

/// The trace at 5 s resolution, at [`SPIKE_LEVEL`] from `spike_at_ms` on.
fn spiked(samples: &[f32], spike_at_ms: SimMs) -> Profile {
    let per = (TRACE_PERIOD_MS / FINE_PERIOD_MS) as usize;
    let fine: Vec<f32> = samples
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, per))
        .enumerate()
        .map(|(k, v)| {
            if k as u64 * FINE_PERIOD_MS >= spike_at_ms {
                SPIKE_LEVEL.max(v)
            } else {
                v
            }
        })
        .collect();
    Profile::Trace {
        samples: fine.into(),
        period_ms: FINE_PERIOD_MS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(trace_dir: Option<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            hosts: 4,
            vms: 16,
            seed: 7,
            trace_dir,
            spike_at_ms: 100_000,
        }
    }

    #[test]
    fn planetlab_cluster_spikes_one_host_only() {
        let b = build(&spec(Some(default_trace_dir()))).unwrap();
        assert!(matches!(b.load, LoadSource::PlanetLab(_)));
        assert_eq!(b.host_names, ["hv01", "hv02", "hv03", "hv04"]);
        assert_eq!(b.spike_host, 1);
        let demand = |t| -> Vec<f64> {
            let mut per_host = vec![0.0; 4];
            for (d, dom) in b.sim.domains().iter().enumerate() {
                per_host[dom.host] += b.sim.demand_mhz(d, t);
            }
            per_host
                .into_iter()
                .map(|m| m / f64::from(HOST_CPUS * HOST_MHZ))
                .collect()
        };
        let after = demand(100_000);
        assert!(after[1] >= 1.5, "spike host at {after:?}");
        assert!(after.iter().enumerate().all(|(h, u)| h == 1 || *u < 0.9));
        assert!(demand(95_000)[1] < 0.9);
        // Every VM follows a real trace file.
        assert!(b.vm_origin.iter().all(|(_, o)| o != "synthetic"));
    }

    #[test]
    fn missing_traces_fall_back_to_synthetic_load() {
        let b = build(&spec(Some("/nonexistent/planetlab".into()))).unwrap();
        let LoadSource::Synthetic(why) = &b.load else {
            panic!("{:?}", b.load)
        };
        assert!(why.contains("/nonexistent/planetlab"), "{why}");
        assert_eq!(b.sim.domains().len(), 16);
        assert!(b.sim.demand_mhz(1, 200_000) >= 3000.0);
        let quiet: f64 = (0..16).map(|d| b.sim.demand_mhz(d, 0)).sum();
        assert!(quiet > 0.0);
    }

    #[test]
    fn same_seed_same_cluster_other_seed_other_traces() {
        let a = build(&spec(Some(default_trace_dir()))).unwrap();
        let b = build(&spec(Some(default_trace_dir()))).unwrap();
        assert_eq!(a.vm_origin, b.vm_origin);
        let mut other = spec(Some(default_trace_dir()));
        other.seed = 8;
        assert_ne!(build(&other).unwrap().vm_origin, a.vm_origin);
        assert!(build(&ClusterSpec {
            hosts: 0,
            ..spec(None)
        })
        .is_err());
    }

    #[test]
    fn single_host_spikes_itself() {
        let mut s = spec(None);
        s.hosts = 1;
        assert_eq!(build(&s).unwrap().spike_host, 0);
    }
}
