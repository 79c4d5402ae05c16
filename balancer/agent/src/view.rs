//! From a gmond XML view to what the agent decides on: untrusted hosts removed, stale VM
//! metrics dropped, a VM reported fresh by two hosts treated as in flight (it is mid-migration
//! or its old host's metrics have not expired yet), and the snapshot built through
//! `balancer::snapshot::Snapshot::from_cluster`.

use std::collections::{BTreeMap, BTreeSet};

use balancer::snapshot::{Snapshot, VM_METRICS};
use ganglia_wire::model::{Cluster, Document, Host};

use crate::error::{AgentError, Result};

/// Every CLUSTER of a document merged into one (gmetad feeds carry several).
pub fn merge_document(doc: Document) -> Cluster {
    let mut merged = Cluster::default();
    for c in doc.clusters {
        if merged.name.is_empty() {
            merged.name = c.name.clone();
        }
        merged.localtime = merged.localtime.max(c.localtime);
        merged.hosts.extend(c.hosts);
    }
    merged
}

/// Parses a gmond/gmetad XML document into one merged cluster.
pub fn parse_xml(xml: &[u8]) -> Result<Cluster> {
    let doc =
        ganglia_wire::xml::read_document(xml).map_err(|e| AgentError::View(format!("xml: {e}")))?;
    Ok(merge_document(doc))
}

/// A VM report this many seconds older than the freshest report of the same VM (on another
/// host) is taken as superseded rather than as a migration in flight.
pub const SUPERSEDED_AFTER_S: u64 = 45;

/// The cleaned view of one tick.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Trusted hosts only, VM metrics cleaned (what coordination and planning see).
    pub cluster: Cluster,
    /// The snapshot for the policy; VMs in `in_flight` are marked migrating.
    pub snapshot: Snapshot,
    /// VMs reported fresh by two or more hosts: in flight as far as the view can tell.
    pub in_flight: BTreeSet<String>,
    /// IP attribute per trusted host.
    pub ips: BTreeMap<String, String>,
    /// Hosts dropped because they are not trusted (their metrics are ignored).
    pub untrusted: Vec<String>,
}

/// The VM a metric belongs to under the virtual-node convention, with the suffix.
fn vm_of(name: &str) -> Option<(&str, &str)> {
    let (vm, suffix) = name.rsplit_once('.')?;
    (!vm.is_empty() && VM_METRICS.contains(&suffix)).then_some((vm, suffix))
}

/// How fresh a VM's report on a host is: the smallest TN of its metrics.
fn vm_tn(h: &Host, vm: &str) -> Option<u64> {
    h.metrics
        .iter()
        .filter(|m| vm_of(&m.name).is_some_and(|(v, _)| v == vm))
        .map(|m| m.tn)
        .min()
}

/// Builds the view: keeps trusted hosts, drops VM metrics older than `vm_stale_s`, resolves a
/// VM reported by several hosts to the freshest report (ties: lowest host name) and marks it in
/// flight, and builds the snapshot at time `now`.
pub fn build(cluster: &Cluster, trusted: &dyn Fn(&str) -> bool, now: u64, vm_stale_s: u64) -> View {
    let mut untrusted = Vec::new();
    let mut hosts: Vec<Host> = Vec::new();
    for h in &cluster.hosts {
        if !trusted(&h.name) {
            untrusted.push(h.name.clone());
            continue;
        }
        if hosts.iter().any(|o| o.name == h.name) {
            continue;
        }
        let mut h = h.clone();
        h.metrics
            .retain(|m| vm_of(&m.name).is_none() || m.tn <= vm_stale_s);
        hosts.push(h);
    }
    // VM -> hosts reporting it, with freshness.
    let mut seen: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let vms: BTreeSet<&str> = h
            .metrics
            .iter()
            .filter_map(|m| vm_of(&m.name).map(|(v, _)| v))
            .collect();
        for vm in vms {
            if let Some(tn) = vm_tn(h, vm) {
                seen.entry(vm.to_string()).or_default().push((tn, i));
            }
        }
    }
    let mut in_flight = BTreeSet::new();
    for (vm, mut reports) in seen {
        if reports.len() < 2 {
            continue;
        }
        reports.sort_by(|a, b| a.0.cmp(&b.0).then(hosts[a.1].name.cmp(&hosts[b.1].name)));
        // A report much older than the freshest one is the host the VM left (its metrics
        // linger until they expire); close reports mean the VM is mid-migration. Misjudging
        // this is safe: the hypervisor pre-check refuses a VM with a job in progress.
        if reports[1].0 <= reports[0].0 + SUPERSEDED_AFTER_S {
            in_flight.insert(vm.clone());
        }
        for &(_, i) in &reports[1..] {
            hosts[i]
                .metrics
                .retain(|m| vm_of(&m.name).is_none_or(|(v, _)| v != vm));
        }
    }
    let ips = hosts
        .iter()
        .map(|h| (h.name.clone(), h.ip.clone()))
        .collect();
    let cleaned = Cluster {
        hosts,
        ..cluster.clone()
    };
    let mut snapshot = Snapshot::from_cluster(&cleaned, now);
    for vm in &mut snapshot.vms {
        if in_flight.contains(&vm.name) {
            vm.migrating = true;
        }
    }
    untrusted.sort();
    untrusted.dedup();
    View {
        cluster: cleaned,
        snapshot,
        in_flight,
        ips,
        untrusted,
    }
}

/// Population standard deviation of CPU utilisation over the up hosts of `s` (the published
/// `balancer_imbalance`).
pub fn imbalance(s: &Snapshot) -> f64 {
    let loads = s.host_loads();
    let utils: Vec<f64> = s
        .hosts
        .iter()
        .zip(&loads)
        .filter(|(h, _)| h.up)
        .map(|(h, l)| l.0 / h.cpu_mhz())
        .collect();
    balancer::trends::population_std_dev(&utils)
}

/// CPU utilisation of host `name` in `s`.
pub fn host_util(s: &Snapshot, name: &str) -> Option<f64> {
    let i = s.host_index(name)?;
    let load: f64 = s
        .vms
        .iter()
        .filter(|v| v.host_idx == i)
        .map(|v| v.cpu_demand_mhz)
        .sum();
    Some(load / s.hosts[i].cpu_mhz())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::model::Metric;

    fn m(name: &str, val: &str, tn: u64) -> Metric {
        Metric {
            name: name.into(),
            val: val.into(),
            ty: "float".into(),
            tn,
            tmax: 60,
            ..Default::default()
        }
    }

    fn hv(name: &str, vms: &[(&str, u64)]) -> Host {
        let mut metrics = vec![
            m("vnode_cpu_num", "4", 1),
            m("vnode_cpu_speed", "1000", 1),
            m("vnode_mem_total", "8000000", 1),
        ];
        for (vm, tn) in vms {
            metrics.push(m(&format!("{vm}.vcpu_num"), "1", *tn));
            metrics.push(m(&format!("{vm}.vcpu_util"), "50", *tn));
        }
        Host {
            name: name.into(),
            ip: format!("10.0.0.{}", name.len()),
            tmax: 20,
            metrics,
            ..Default::default()
        }
    }

    #[test]
    fn untrusted_stale_and_doubled_vms_are_handled() {
        let c = Cluster {
            hosts: vec![
                hv(
                    "a",
                    &[("web", 5), ("db", 200), ("moved", 80), ("moving", 3)],
                ),
                hv("b", &[("moved", 2), ("new", 1), ("moving", 1)]),
                hv("evil", &[("fake", 1)]),
            ],
            ..Default::default()
        };
        let v = build(&c, &|n| n != "evil", 1000, 90);
        assert_eq!(v.untrusted, ["evil"]);
        let vms: Vec<(&str, &str, bool)> = v
            .snapshot
            .vms
            .iter()
            .map(|vm| (vm.name.as_str(), vm.host.as_str(), vm.migrating))
            .collect();
        // db is stale (dropped); moved left a long ago (superseded by b); moving is fresh on
        // both: placed on the fresher b, in flight.
        assert_eq!(
            vms,
            [
                ("moved", "b", false),
                ("moving", "b", true),
                ("new", "b", false),
                ("web", "a", false)
            ]
        );
        assert_eq!(v.in_flight.iter().collect::<Vec<_>>(), ["moving"]);
        // Once a's report is older than the bound, it is dropped outright.
        let v = build(&c, &|n| n != "evil", 1000, 60);
        assert_eq!(v.in_flight.iter().collect::<Vec<_>>(), ["moving"]);
        assert_eq!(v.snapshot.vms.len(), 4);
        // a: web (0.125); b: moved, new, moving (0.375).
        assert!((imbalance(&v.snapshot) - 0.125).abs() < 1e-9);
        assert_eq!(host_util(&v.snapshot, "b"), Some(0.375));
    }
}
