//! One simulated host's VM metrics for its embedded daemon: the same publisher code as libvirt's
//! (`vmetrics::publish`), over the shared simulated cluster and on its simulated clock; and the
//! host's own load, CPU and memory metrics derived from those VMs (`hostmetrics`).
//!
//! CPU readings are remembered cluster-wide (by UUID), not per host: a simulated VM's CPU
//! counter carries on across a migration, so its utilisation is known from its first round on
//! the new host. (Under libvirt the destination's first round has no figure yet; the demo's
//! faster clock would make that gap look like an idle VM to the balancer for a whole tick.)
//!
//! A VM that left the host is published once more with dmax [`LEAVING_DMAX`]: receivers count
//! dmax from the latest metadata, so its entries leave the old host within seconds, while the
//! VMs still here keep a dmax long enough for gmetad, which hides a metric whose TN (grown by
//! up to its polling step) exceeds its DMAX.

use crate::hostmetrics::{HostMetrics, HostSample};
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::hypervisor::{HostCapacity, Hypervisor};
use gmond_metrics::vmetrics::{self, parse_vm_metric, CpuSample, DomainSample, VmMetric};
use gmond_metrics::Error as HypervisorError;
use gmond_rs::daemon::VmSource;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// dmax (s) of the last round published for a VM that left this host.
pub const LEAVING_DMAX: u32 = 2;

/// Last CPU reading of every VM in the cluster, by UUID.
pub type CpuReadings = Arc<Mutex<BTreeMap<String, CpuSample>>>;

/// The VM source of host `host` in the shared cluster.
pub struct SimVmSource {
    cluster: Arc<Mutex<SimCluster>>,
    host: String,
    readings: CpuReadings,
    vm_dmax: u32,
    /// Last round's metrics of each VM here, by metric prefix.
    last: BTreeMap<String, Vec<VmMetric>>,
    /// The host's own load, CPU and memory metrics, derived from its VMs.
    host_metrics: HostMetrics,
}

impl SimVmSource {
    /// Publishes the metrics of VMs on this host with dmax `vm_dmax` seconds, and those of a
    /// VM that left with [`LEAVING_DMAX`], once. The daemon must send metadata with every
    /// round for the change of dmax to reach receivers at once.
    pub fn new(
        cluster: Arc<Mutex<SimCluster>>,
        readings: CpuReadings,
        host: &str,
        vm_dmax: u32,
    ) -> Self {
        SimVmSource {
            cluster,
            host: host.to_owned(),
            readings,
            vm_dmax,
            last: BTreeMap::new(),
            host_metrics: HostMetrics::default(),
        }
    }
}

impl SimVmSource {
    /// This host's capacity and its VMs with their utilisation since the last reading, at the
    /// simulated time returned (ms).
    fn sample(&self) -> Result<(u64, HostCapacity, Vec<DomainSample>), HypervisorError> {
        let cluster = self
            .cluster
            .lock()
            .map_err(|_| HypervisorError::Backend("simulated cluster lock poisoned".into()))?;
        // Utilisation is CPU time over simulated time, so it does not depend on the speed-up.
        let now_ms = cluster.now_ms();
        let now_ns = now_ms.saturating_mul(1_000_000);
        let view = cluster.host_view(&self.host);
        let capacity = view.capacity()?;
        let domains = view.domains()?;
        drop(cluster);
        let mut readings = self
            .readings
            .lock()
            .map_err(|_| HypervisorError::Backend("CPU readings lock poisoned".into()))?;
        let samples = domains
            .into_iter()
            .map(|info| {
                let cur = CpuSample {
                    cpu_time_ns: info.cpu_time_ns,
                    at_ns: now_ns,
                };
                let util = readings
                    .insert(info.uuid.clone(), cur)
                    .and_then(|prev| vmetrics::vcpu_util(prev, cur, info.vcpus_current));
                DomainSample {
                    info,
                    vcpu_util: util,
                    io: None,
                }
            })
            .collect();
        Ok((now_ms, capacity, samples))
    }

    /// Sets the dmax of this round's VM metrics, and adds the last round's metrics of VMs that
    /// left, with [`LEAVING_DMAX`].
    fn mark_leaving(&mut self, metrics: &mut Vec<VmMetric>) {
        let mut current: BTreeMap<String, Vec<VmMetric>> = BTreeMap::new();
        for m in metrics.iter_mut() {
            if let Some((vm, _)) = parse_vm_metric(&m.name) {
                m.dmax = self.vm_dmax;
                current.entry(vm.to_owned()).or_default().push(m.clone());
            }
        }
        let last = std::mem::replace(&mut self.last, current);
        for (vm, gone) in last {
            if !self.last.contains_key(&vm) {
                metrics.extend(gone.into_iter().map(|mut m| {
                    m.dmax = LEAVING_DMAX;
                    m
                }));
            }
        }
    }
}

impl VmSource for SimVmSource {
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
        let (now_ms, capacity, samples) = self.sample()?;
        let mut metrics = vmetrics::publish(&capacity, &samples);
        self.mark_leaving(&mut metrics);
        // A VM's first reading has no utilisation yet; until every VM here has one, the host's
        // own figures would show it idle: they wait for the next round (once, at start-up).
        let demand: Option<f64> = samples
            .iter()
            .map(|d| Some(d.vcpu_util? / 100.0 * f64::from(d.info.vcpus_current)))
            .sum();
        if let Some(demand_cpus) = demand {
            metrics.extend(self.host_metrics.round(&HostSample {
                now_ms,
                cpus: capacity.cpus,
                mhz: capacity.mhz,
                demand_cpus,
                mem_kib: capacity.mem_kib,
                mem_free_kib: capacity.mem_free_kib,
                vms: samples.len(),
            }));
        }
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmond_metrics::hypervisor::profile::Profile;
    use gmond_metrics::hypervisor::sim::SimHost;
    use gmond_metrics::linux::MetricValue;

    #[test]
    fn utilisation_follows_simulated_time_and_vms_follow_migrations() {
        let mut c = SimCluster::new(1);
        for n in ["a", "b"] {
            c.add_host(SimHost {
                name: n.into(),
                cpus: 4,
                mhz: 2000,
                mem_kib: 8 << 20,
                link_bps: 1_000_000_000,
                up: true,
            })
            .unwrap();
        }
        let d = c
            .add_domain("web", 2, 4000.0, 1 << 20, 0, Profile::Constant(0.5))
            .unwrap();
        let c = Arc::new(Mutex::new(c));
        let readings = CpuReadings::default();
        let mut a = SimVmSource::new(c.clone(), readings.clone(), "a", 60);
        let first = a.collect().unwrap();
        assert!(first.iter().any(|m| m.name == "vnode_domains"));
        assert!(
            !first.iter().any(|m| m.name == "load_one"),
            "no utilisation known yet"
        );
        c.lock().unwrap().advance_to(20_000).unwrap();
        let second = a.collect().unwrap();
        let util = second.iter().find(|m| m.name == "web.vcpu_util").unwrap();
        match util.value {
            MetricValue::F32(v) => assert!((v - 50.0).abs() < 0.01, "{v}"),
            MetricValue::F64(v) => assert!((v - 50.0).abs() < 0.01, "{v}"),
            ref other => panic!("{other:?}"),
        }
        // The host's own figures follow its VM: one CPU of four busy, load 1.
        let host = |name: &str| {
            second
                .iter()
                .find(|m| m.name == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(host("cpu_idle"), MetricValue::F32(75.0));
        assert_eq!(host("load_one"), MetricValue::F32(1.0));
        assert_eq!(host("cpu_num"), MetricValue::U16(4));
        assert!(second
            .iter()
            .filter(|m| m.name.starts_with("web."))
            .all(|m| m.dmax == 60));
        assert!(second
            .iter()
            .filter(|m| m.name.starts_with("vnode_"))
            .all(|m| m.dmax != 60));
        {
            let mut g = c.lock().unwrap();
            let end = g.start_migration(d, 1).unwrap();
            g.advance_to(end).unwrap();
        }
        // Once more with a short dmax, so it leaves the old host's view; then no more.
        let leaving = a.collect().unwrap();
        let web: Vec<&VmMetric> = leaving
            .iter()
            .filter(|m| m.name.starts_with("web."))
            .collect();
        assert_eq!(web.len(), vmetrics::VM_METRICS.len());
        assert!(web.iter().all(|m| m.dmax == LEAVING_DMAX));
        assert!(!a
            .collect()
            .unwrap()
            .iter()
            .any(|m| m.name.starts_with("web.")));
        // On its new host the VM's utilisation is known from the first round.
        let mut b = SimVmSource::new(c, readings, "b", 60);
        let on_b = b.collect().unwrap();
        assert!(on_b.iter().any(|m| m.name == "web.vcpu_num"));
        assert!(on_b.iter().any(|m| m.name == "web.vcpu_util"));
    }
}
