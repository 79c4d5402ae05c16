//! One simulated host's VM metrics for its embedded daemon: the same publisher code as libvirt's
//! (`vmetrics::collect_round`), over the shared simulated cluster and on its simulated clock.

use crate::daemon::VmSource;
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::hypervisor::HypervisorError;
use gmond_metrics::vmetrics::{self, parse_vm_metric, UtilTracker, VmMetric};
use std::sync::{Arc, Mutex};

/// The VM source of host `host` in the shared cluster.
pub struct SimVmSource {
    cluster: Arc<Mutex<SimCluster>>,
    host: String,
    tracker: UtilTracker,
    vm_dmax: u32,
}

impl SimVmSource {
    /// Publishes per-VM metrics with dmax `vm_dmax` seconds: the demo runs faster than real
    /// time, so a VM that migrated away must leave its old host's view in seconds, not in
    /// gmond's 10 minutes.
    pub fn new(cluster: Arc<Mutex<SimCluster>>, host: &str, vm_dmax: u32) -> Self {
        SimVmSource {
            cluster,
            host: host.to_owned(),
            tracker: UtilTracker::new(),
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
        let mut metrics =
            vmetrics::collect_round(&cluster.host_view(&self.host), &mut self.tracker, || now_ns)?;
        drop(cluster);
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
        let mut a = SimVmSource::new(c.clone(), "a", 12);
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
        let mut b = SimVmSource::new(c, "b", 12);
        assert!(b
            .collect()
            .unwrap()
            .iter()
            .any(|m| m.name == "web.vcpu_num"));
    }
}
