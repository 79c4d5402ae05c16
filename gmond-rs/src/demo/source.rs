//! One simulated host's VM metrics for its embedded daemon: the same publisher code as libvirt's
//! (`vmetrics::publish`), over the shared simulated cluster and on its simulated clock.
//!
//! CPU readings are remembered cluster-wide (by UUID), not per host: a simulated VM's CPU
//! counter carries on across a migration, so its utilisation is known from its first round on
//! the new host. (Under libvirt the destination's first round has no figure yet; the demo's
//! faster clock would make that gap look like an idle VM to the balancer for a whole tick.)

use crate::daemon::VmSource;
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::hypervisor::Hypervisor;
use gmond_metrics::hypervisor::HypervisorError;
use gmond_metrics::vmetrics::{self, parse_vm_metric, CpuSample, DomainSample, VmMetric};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Last CPU reading of every VM in the cluster, by UUID.
pub type CpuReadings = Arc<Mutex<BTreeMap<String, CpuSample>>>;

/// The VM source of host `host` in the shared cluster.
pub struct SimVmSource {
    cluster: Arc<Mutex<SimCluster>>,
    host: String,
    readings: CpuReadings,
    vm_dmax: u32,
}

impl SimVmSource {
    /// Publishes per-VM metrics with dmax `vm_dmax` seconds: the demo runs faster than real
    /// time, so a VM that migrated away must leave its old host's view in seconds, not in
    /// gmond's 10 minutes.
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
        }
    }
}

impl VmSource for SimVmSource {
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
        let cluster = self
            .cluster
            .lock()
            .map_err(|_| HypervisorError::Backend("simulated cluster lock poisoned".into()))?;
        // Utilisation is CPU time over simulated time, so it does not depend on the speed-up.
        let now_ns = cluster.now_ms().saturating_mul(1_000_000);
        let view = cluster.host_view(&self.host);
        let capacity = view.capacity()?;
        let domains = view.domains()?;
        drop(cluster);
        let mut readings = self
            .readings
            .lock()
            .map_err(|_| HypervisorError::Backend("CPU readings lock poisoned".into()))?;
        let samples: Vec<DomainSample> = domains
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
        drop(readings);
        let mut metrics = vmetrics::publish(&capacity, &samples);
        for m in &mut metrics {
            if parse_vm_metric(&m.name).is_some() {
                m.dmax = self.vm_dmax;
            }
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
        let mut a = SimVmSource::new(c.clone(), readings.clone(), "a", 12);
        let first = a.collect().unwrap();
        assert!(first.iter().any(|m| m.name == "vnode_domains"));
        c.lock().unwrap().advance_to(20_000).unwrap();
        let second = a.collect().unwrap();
        let util = second.iter().find(|m| m.name == "web.vcpu_util").unwrap();
        match util.value {
            MetricValue::F32(v) => assert!((v - 50.0).abs() < 0.01, "{v}"),
            MetricValue::F64(v) => assert!((v - 50.0).abs() < 0.01, "{v}"),
            ref other => panic!("{other:?}"),
        }
        assert!(second
            .iter()
            .filter(|m| m.name.starts_with("web."))
            .all(|m| m.dmax == 12));
        assert!(second
            .iter()
            .filter(|m| m.name.starts_with("vnode_"))
            .all(|m| m.dmax != 12));
        {
            let mut g = c.lock().unwrap();
            let end = g.start_migration(d, 1).unwrap();
            g.advance_to(end).unwrap();
        }
        assert!(!a
            .collect()
            .unwrap()
            .iter()
            .any(|m| m.name.starts_with("web.")));
        // On its new host the VM's utilisation is known from the first round.
        let mut b = SimVmSource::new(c, readings, "b", 12);
        let on_b = b.collect().unwrap();
        assert!(on_b.iter().any(|m| m.name == "web.vcpu_num"));
        assert!(on_b.iter().any(|m| m.name == "web.vcpu_util"));
    }
}
