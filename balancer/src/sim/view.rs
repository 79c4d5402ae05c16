//! The simulated cluster as gmond-rs would publish it (ganglia.md E.1's virtual nodes), so tests
//! can check that the policy's snapshot of a live feed is the simulator's own.

use ganglia_wire::model::{Cluster, Host, Metric};
use gmond_metrics::hypervisor::sim::SimCluster;

/// The cluster as gmond-rs would publish it: one HOST per hypervisor with the virtual-node
/// metrics of ganglia.md E.1 (`vnode_*` on the host, `<vm>.vcpu_*`/`<vm>.vmem_*` per domain).
/// Lets tests check that [`crate::snapshot::Snapshot::from_cluster`] sees what the simulator
/// sees.
pub fn cluster_view(c: &SimCluster, t_ms: u64) -> Cluster {
    cluster_view_with(c, t_ms, &|_| false)
}

/// [`cluster_view`] without the domains `hide` names (VMs that left the data centre).
pub fn cluster_view_with(c: &SimCluster, t_ms: u64, hide: &dyn Fn(usize) -> bool) -> Cluster {
    // Domains grouped by host once: a view of a large cluster is written every tick.
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); c.hosts().len()];
    for (d, dom) in c.domains().iter().enumerate() {
        if !hide(d) {
            if let Some(list) = on.get_mut(dom.host) {
                list.push(d);
            }
        }
    }
    let mut hosts = Vec::new();
    for (h, host) in c.hosts().iter().enumerate() {
        let used: u64 = on[h].iter().map(|&d| c.domains()[d].mem_kib).sum();
        let mut metrics = vec![
            metric("vnode_cpu_num".into(), host.cpus.to_string(), "CPUs"),
            metric("vnode_cpu_speed".into(), host.mhz.to_string(), "MHz"),
            metric("vnode_mem_total".into(), host.mem_kib.to_string(), "KB"),
            metric(
                "vnode_mem_free".into(),
                host.mem_kib.saturating_sub(used).to_string(),
                "KB",
            ),
        ];
        for &d in &on[h] {
            metrics.extend(domain_metrics(c, d, t_ms));
        }
        metrics.push(metric(
            "vnode_domains".into(),
            on[h].len().to_string(),
            "domains",
        ));
        hosts.push(Host {
            name: host.name.clone(),
            ip: "127.0.0.1".into(),
            tn: if host.up { 0 } else { 1000 },
            tmax: 20,
            reported: t_ms / 1000,
            metrics,
            ..Default::default()
        });
    }
    Cluster {
        name: "sim".into(),
        localtime: t_ms / 1000,
        hosts,
        ..Default::default()
    }
}

/// The `<vm>.*` metrics of domain `d` on its host.
fn domain_metrics(c: &SimCluster, d: usize, t_ms: u64) -> [Metric; 5] {
    let dom = &c.domains()[d];
    // vcpu_util is a percentage of the domain's vCPUs at the host's clock.
    let cap = f64::from(dom.vcpus) * f64::from(c.hosts()[dom.host].mhz);
    let util = if cap > 0.0 {
        100.0 * c.demand_mhz(d, t_ms) / cap
    } else {
        0.0
    };
    let name = |m: &str| format!("{}.{m}", dom.name);
    [
        metric(name("vcpu_util"), format!("{util}"), "%"),
        metric(name("vcpu_num"), dom.vcpus.to_string(), "vCPUs"),
        metric(name("vmem_total"), dom.mem_kib.to_string(), "KB"),
        metric(name("vmem_util"), "100".into(), "%"),
        metric(name("vcpu_state"), dom.state.code().to_string(), ""),
    ]
}

fn metric(name: String, val: String, units: &str) -> Metric {
    Metric {
        name,
        val,
        ty: "float".into(),
        units: units.into(),
        tmax: 60,
        slope: "both".into(),
        ..Default::default()
    }
}
