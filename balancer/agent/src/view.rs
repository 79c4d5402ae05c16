//! From a gmond XML view to what the agent decides on: untrusted hosts removed, then the
//! balancer's one reader of the virtual-node convention ([`balancer::view::VnodeView`]) with
//! the agent's staleness bound: it drops stale VM metrics, gives a VM reported by several hosts
//! to the freshest report and says which VMs are in flight (reported fresh by two hosts:
//! mid-migration, or the old host's metrics not stale yet), and builds the snapshot.
//!
//! A NAME reported from two addresses (two hosts in gmond's view, which keys hosts by source
//! address: a renamed or re-addressed host, a clone, or a forger spoofing `IP:name`) is in
//! conflict: which one is the real host cannot be told from the view, so it is neither a
//! source nor a destination until one of them goes away.

use std::collections::{BTreeMap, BTreeSet};

use balancer::snapshot::Snapshot;
use balancer::view::{ReadOptions, VnodeView};
use ganglia_wire::model::{Cluster, Document, Host};

use crate::coord;
use crate::error::{AgentError, Result};

pub use balancer::view::SUPERSEDED_AFTER_S;

/// Every CLUSTER of a document merged into one (gmetad feeds carry several).
pub fn merge_document(doc: Document) -> Cluster {
    balancer::view::merge_document(doc)
}

/// Parses a gmond/gmetad XML document into one merged cluster.
pub fn parse_xml(xml: &[u8]) -> Result<Cluster> {
    balancer::view::parse_xml(xml).map_err(|e| AgentError::View(e.to_string()))
}

/// The cleaned view of one tick.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Trusted hosts only, once each (what coordination and the liveness gates read).
    pub cluster: Cluster,
    /// The snapshot for the policy; VMs in `in_flight` are marked migrating.
    pub snapshot: Snapshot,
    /// VMs reported fresh by two or more hosts: in flight as far as the view can tell.
    pub in_flight: BTreeSet<String>,
    /// IP attribute per trusted host.
    pub ips: BTreeMap<String, String>,
    /// Hosts dropped because they are not trusted (their metrics are ignored).
    pub untrusted: Vec<String>,
    /// Trusted NAMEs reported from more than one address (the addresses, sorted): left out
    /// of the snapshot, so neither sources nor destinations.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Hosts and VMs left out because a figure was implausible (name, why), sorted.
    pub implausible: Vec<(String, String)>,
}

/// `h` without its metrics.
fn host_attributes(h: &Host) -> Host {
    Host {
        name: h.name.clone(),
        ip: h.ip.clone(),
        tags: h.tags.clone(),
        reported: h.reported,
        tn: h.tn,
        tmax: h.tmax,
        dmax: h.dmax,
        location: h.location.clone(),
        gmond_started: h.gmond_started,
        metrics: Vec::new(),
    }
}

/// Builds the view at time `now`: keeps trusted hosts (the first of each name), and reads them
/// with VM metrics older than `vm_stale_s` ignored (see [`balancer::view`] for ownership and
/// in flight).
pub fn build(cluster: &Cluster, trusted: &dyn Fn(&str) -> bool, now: u64, vm_stale_s: u64) -> View {
    let mut untrusted = Vec::new();
    let mut names = BTreeSet::new();
    let mut hosts: Vec<Host> = Vec::new();
    let mut addresses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for h in &cluster.hosts {
        if !trusted(&h.name) {
            untrusted.push(h.name.clone());
            continue;
        }
        if !h.ip.is_empty() {
            addresses.entry(&h.name).or_default().insert(&h.ip);
        }
        if names.insert(h.name.as_str()) {
            // Coordination reads a host's attributes and its balancer metrics only; the load
            // is read from `placeable` below. Copying every metric here cost the leader a
            // copy of the whole view each round.
            hosts.push(Host {
                metrics: h
                    .metrics
                    .iter()
                    .filter(|m| m.name == coord::MODE_METRIC || m.name == coord::MOVES_METRIC)
                    .cloned()
                    .collect(),
                ..host_attributes(h)
            });
        }
    }
    let conflicts: BTreeMap<String, Vec<String>> = addresses
        .into_iter()
        .filter(|(_, ips)| ips.len() > 1)
        .map(|(n, ips)| (n.to_string(), ips.into_iter().map(str::to_owned).collect()))
        .collect();
    let cleaned = Cluster {
        name: cluster.name.clone(),
        localtime: cluster.localtime,
        owner: cluster.owner.clone(),
        latlong: cluster.latlong.clone(),
        url: cluster.url.clone(),
        hosts,
    };
    // Coordination still sees a conflicted name (its first host): leadership and liveness
    // are not handed to whoever forges a second copy. Placement does not. In the usual case
    // (every host trusted, named once, no conflict) that is the cluster as it came.
    let vnodes =
        if untrusted.is_empty() && names.len() == cluster.hosts.len() && conflicts.is_empty() {
            VnodeView::read(cluster, &ReadOptions { vm_stale_s })
        } else {
            let mut seen = BTreeSet::new();
            let placeable = Cluster {
                hosts: cluster
                    .hosts
                    .iter()
                    .filter(|h| trusted(&h.name) && !conflicts.contains_key(&h.name))
                    .filter(|h| seen.insert(h.name.as_str()))
                    .cloned()
                    .collect(),
                ..cleaned.clone()
            };
            VnodeView::read(&placeable, &ReadOptions { vm_stale_s })
        };
    let ips = cleaned
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.ip.clone()))
        .collect();
    untrusted.sort();
    untrusted.dedup();
    View {
        snapshot: vnodes.snapshot(now),
        in_flight: vnodes.in_flight().map(str::to_owned).collect(),
        cluster: cleaned,
        ips,
        untrusted,
        conflicts,
        implausible: vnodes
            .implausible
            .iter()
            .map(|i| (i.name.clone(), i.why.clone()))
            .collect(),
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

    #[test]
    fn a_name_reported_from_two_addresses_is_in_conflict() {
        let mut forged = hv("b", &[("ghost", 1)]);
        forged.ip = "6.6.6.6".into();
        let c = Cluster {
            hosts: vec![hv("a", &[("web", 1)]), hv("b", &[("db", 1)]), forged],
            ..Default::default()
        };
        let v = build(&c, &|_| true, 1000, 90);
        assert_eq!(
            v.conflicts.get("b").map(Vec::as_slice),
            Some(&["10.0.0.1".to_string(), "6.6.6.6".to_string()][..])
        );
        // Neither copy of b is placeable: no host b, none of its VMs.
        let hosts: Vec<&str> = v.snapshot.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["a"]);
        assert_eq!(v.snapshot.vms.len(), 1);
        // Coordination still sees b once (the first copy).
        assert_eq!(v.cluster.hosts.len(), 2);
        // The same address twice (a gmetad feed merging two clusters) is no conflict.
        let c = Cluster {
            hosts: vec![hv("a", &[]), hv("a", &[])],
            ..Default::default()
        };
        assert!(build(&c, &|_| true, 1000, 90).conflicts.is_empty());
    }

    #[test]
    fn a_departed_vms_last_round_is_no_report() {
        // a migrated "done" to b and sent its last round with DMAX 2 (< TMAX): fresher than
        // b's copy, but neither owner nor a sign of a migration in flight.
        let mut old = hv("a", &[("done", 0)]);
        for m in old
            .metrics
            .iter_mut()
            .filter(|m| m.name.starts_with("done."))
        {
            m.dmax = 2;
        }
        let c = Cluster {
            hosts: vec![old, hv("b", &[("done", 1)])],
            ..Default::default()
        };
        let v = build(&c, &|_| true, 1000, 90);
        assert!(v.in_flight.is_empty());
        assert_eq!(v.snapshot.vms.len(), 1);
        assert_eq!(
            (v.snapshot.vms[0].host.as_str(), v.snapshot.vms[0].migrating),
            ("b", false)
        );
    }
}
