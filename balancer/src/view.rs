//! The one reader of a Ganglia view under the virtual-node convention: a `Cluster` (or a whole
//! XML document) becomes hosts with their capacity and VMs with their owner, for every consumer
//! (the balancer's [`Snapshot`], the agent's in-flight detection, the demo's live view).
//!
//! # What a VM is
//!
//! A metric is a VM's when [`parse_vm_metric`] says so (`<vm>.<suffix>`, split at the last '.',
//! suffix from `gmond_metrics::vmetrics`' one list). All metrics of one VM on one host are that
//! host's *copy* of the VM. Within a copy:
//!
//! * a metric whose TN exceeds [`ReadOptions::vm_stale_s`] is *stale* and ignored: its host
//!   stopped refreshing it (the VM left, or the host's publisher stopped) and gmond keeps it
//!   until its DMAX;
//! * a metric with `0 < DMAX < TMAX` is a *farewell* and ignored for ownership: its publisher
//!   asked receivers to delete it before its next update was due, so it will not be refreshed.
//!   The demo's source sends a departed VM's last round that way; a copy made only of
//!   farewells is listed in [`VnodeView::leaving`];
//! * a copy's freshness is the smallest TN among its remaining metrics.
//!
//! # Who owns a VM
//!
//! The host with the freshest copy owns the VM (ties: the lowest host name), and the VM's
//! figures are that copy's. A second copy at most [`SUPERSEDED_AFTER_S`] less fresh makes the
//! VM *in flight* (mid-migration, or its old host's copy not yet stale); an older one is
//! superseded and only ignored. Misjudging in flight is safe for the balancer: the agent's
//! hypervisor pre-check refuses a VM with a job in progress.
//!
//! Hosts are taken once per NAME (the first, as a gmetad document listing one twice).
//! Capacity comes from `vnode_cpu_num`/`vnode_cpu_speed`/`vnode_mem_total`, falling back to
//! gmond's `cpu_num`/`cpu_speed`/`mem_total`. Non-finite values count as absent, so one forged
//! value cannot poison a sum; a value outside [`bounds`] is implausible and takes only its own
//! VM or host out of the view (listed in [`VnodeView::implausible`]), so no forged figure can
//! overflow a sum or make a host look infinitely large.

use std::collections::{BTreeMap, BTreeSet};

use ganglia_wire::filter::MetricFilter;
use ganglia_wire::model::{Cluster, Document, Host, Metric};
use gmond_metrics::vmetrics::{parse_vm_metric, suffix, VM_IO_METRICS, VM_METRICS};

use crate::error::Result;
use crate::snapshot::{HostState, Snapshot, VmState, VmTags};

/// What a view may plausibly claim. Generous for any real machine; beyond them a figure is
/// forged or broken.
pub mod bounds {
    /// Physical CPUs of a host.
    pub const MAX_HOST_CPUS: f64 = 16_384.0;
    /// MHz per CPU.
    pub const MAX_CPU_MHZ: f64 = 100_000.0;
    /// Host memory, KB (1 PiB).
    pub const MAX_HOST_MEM_KB: f64 = (1u64 << 40) as f64;
    /// vCPUs of a VM (libvirt's QEMU driver allows a few thousand).
    pub const MAX_VM_VCPUS: f64 = 4096.0;
    /// Memory of a VM, KB (64 TiB).
    pub const MAX_VM_MEM_KB: f64 = (1u64 << 36) as f64;
    /// `vcpu_util` and `vmem_util`, % (a little over 100 happens between samples).
    pub const MAX_UTIL_PCT: f64 = 1000.0;
}

/// A host or VM left out of the view because a figure was implausible.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Implausible {
    /// Host NAME or VM name.
    pub name: String,
    /// Which figure, and its value.
    pub why: String,
}

/// A copy this many seconds less fresh than the owner's is taken as superseded (the host the
/// VM left, its metrics lingering until they go stale) rather than as a migration in flight.
pub const SUPERSEDED_AFTER_S: u64 = 45;

/// How to read a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// VM metrics with a larger TN (seconds) are stale and ignored; `u64::MAX` keeps them all.
    pub vm_stale_s: u64,
}

impl Default for ReadOptions {
    /// Nothing is stale: a one-shot reader (`balancer plan`) has no round length to judge by.
    fn default() -> Self {
        ReadOptions {
            vm_stale_s: u64::MAX,
        }
    }
}

/// What a host can run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Physical CPUs (at least 1).
    pub cpus: u32,
    /// MHz per CPU (positive).
    pub mhz: f64,
    /// Memory, KB (at least 1).
    pub mem_kb: u64,
}

impl Capacity {
    /// CPU capacity in MHz.
    pub fn cpu_mhz(&self) -> f64 {
        f64::from(self.cpus) * self.mhz
    }
}

/// One host of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    /// NAME.
    pub name: String,
    /// IP attribute.
    pub ip: String,
    /// TN < 4 TMAX (gmetad's and ganglia-web's rule).
    pub up: bool,
    /// TAGS contain `maintenance`, or a `maintenance` metric is non-zero.
    pub maintenance: bool,
    /// `None` when its metrics do not give all of CPUs, MHz and memory.
    pub capacity: Option<Capacity>,
    /// Index of the HOST in the cluster that was read, for its other metrics.
    pub index: usize,
}

/// One VM as its owner reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    /// The metric prefix (the domain name when it is clean; see `vmetrics`).
    pub name: String,
    /// The owner: the host with the freshest copy.
    pub host: String,
    /// Index of the owner in [`VnodeView::hosts`].
    pub host_idx: usize,
    /// Freshness of the owner's copy (smallest TN of its metrics), seconds.
    pub tn: u64,
    /// `vcpu_num`.
    pub vcpus: Option<f64>,
    /// `vcpu_util`, % of its vCPUs.
    pub util_pct: Option<f64>,
    /// `vmem_total`, KB.
    pub mem_kb: Option<f64>,
    /// `vmem_util`, % of `vmem_total`.
    pub mem_util_pct: Option<f64>,
    /// Another host has a copy within [`SUPERSEDED_AFTER_S`] of the owner's.
    pub in_flight: bool,
    /// `<vm>.balancer_tags` on any host, merged.
    pub tags: VmTags,
}

/// Suffix of the operator's per-VM tags metric (see [`VmTags`]). Not a VM metric of the
/// virtual-node convention: it never makes a copy of a VM or its freshness, whichever host
/// carries it (an operator sends it with gmetric from anywhere).
pub const TAGS_SUFFIX: &str = "balancer_tags";

/// A host whose only copy of a VM is a farewell: the VM has just left it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leaving {
    /// VM metric prefix.
    pub vm: String,
    /// The host it left.
    pub host: String,
}

/// A view read under the virtual-node convention (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VnodeView {
    /// Hosts in document order, one per name.
    pub hosts: Vec<HostView>,
    /// VMs sorted by name, each once, on its owner.
    pub vms: Vec<VmView>,
    /// Farewell-only copies, sorted.
    pub leaving: Vec<Leaving>,
    /// Hosts without capacity and VMs skipped because of an implausible figure, sorted.
    pub implausible: Vec<Implausible>,
}

/// Every CLUSTER of a document merged into one (gmetad feeds carry several): the first name,
/// the newest LOCALTIME, all hosts in document order.
pub fn merge_document(doc: Document) -> Cluster {
    let mut merged = Cluster::default();
    for c in doc.clusters {
        if merged.name.is_empty() {
            merged.name = c.name;
        }
        merged.localtime = merged.localtime.max(c.localtime);
        merged.hosts.extend(c.hosts);
    }
    merged
}

/// Host metrics [`VnodeView::read`] reads (capacities, maintenance); with the VM suffixes,
/// everything it looks at.
const HOST_METRICS: [&str; 7] = [
    "vnode_cpu_speed",
    "cpu_speed",
    "vnode_cpu_num",
    "cpu_num",
    "vnode_mem_total",
    "mem_total",
    "maintenance",
];

/// The metrics [`VnodeView::read`] reads, as a filter (`ganglia_wire::filter`): the host
/// metrics above and every per-VM suffix (`*.vcpu_util`, ...; state and I/O metrics count for
/// a copy's freshness), plus `extra` patterns of the caller's. A view read from a document
/// filtered with it is the view of the whole document; a test holds the two equal.
pub fn read_filter(extra: &[&str]) -> MetricFilter {
    let vm = VM_METRICS
        .iter()
        .chain(VM_IO_METRICS.iter())
        .map(|s| format!("*.{s}"));
    let list: Vec<String> = HOST_METRICS
        .iter()
        .map(|s| s.to_string())
        .chain(vm)
        .chain([format!("*.{TAGS_SUFFIX}")])
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    // Fixed names of the project's own within the filter's bounds; a caller's bad extra
    // pattern falls back to everything, which reads the same view.
    MetricFilter::parse(&list.join(",")).unwrap_or_else(|_| MetricFilter::everything())
}

/// Parses a gmond/gmetad XML document into one merged cluster.
pub fn parse_xml(xml: &[u8]) -> Result<Cluster> {
    Ok(merge_document(ganglia_wire::xml::read_document(xml)?))
}

/// Which values a consumer that acts on authenticated data only keeps (see
/// [`keep_authenticated`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthFilter {
    /// Every value, marked or not (no authentication configured).
    #[default]
    Any,
    /// Only values gmond-rs marked as authenticated (`ganglia_wire::auth::XML_MARK`), under
    /// any key id, or under one of these key ids when the list is not empty.
    Marked(Vec<u32>),
}

/// Removes from `cluster` every metric whose value the serving gmond-rs did not mark as
/// authenticated (under an accepted key), so that nothing downstream (the view, leadership,
/// advertised moves) can act on a value any host on the segment could have forged. Returns
/// how many metrics were removed. Hosts stay (with what is left): liveness and membership are
/// judged by the consumer from what remains. Applied before anything reads the cluster.
pub fn keep_authenticated(cluster: &mut Cluster, filter: &AuthFilter) -> usize {
    let AuthFilter::Marked(keys) = filter else {
        return 0;
    };
    let accepted = |m: &Metric| {
        m.extra
            .iter()
            .find(|(k, _)| k == ganglia_wire::auth::XML_MARK)
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .is_some_and(|id| keys.is_empty() || keys.contains(&id))
    };
    let mut removed = 0;
    for h in &mut cluster.hosts {
        let before = h.metrics.len();
        h.metrics.retain(accepted);
        removed += before - h.metrics.len();
    }
    removed
}

/// One host's copy of one VM, while reading.
#[derive(Debug, Default)]
struct Copy {
    tn: u64,
    vcpus: Option<f64>,
    util_pct: Option<f64>,
    mem_kb: Option<f64>,
    mem_util_pct: Option<f64>,
}

impl Copy {
    /// The first figure outside [`bounds`], if any.
    fn implausible(&self) -> Option<String> {
        let checks = [
            ("vcpu_num", self.vcpus, 0.0, bounds::MAX_VM_VCPUS),
            ("vmem_total", self.mem_kb, 0.0, bounds::MAX_VM_MEM_KB),
            ("vcpu_util", self.util_pct, 0.0, bounds::MAX_UTIL_PCT),
            ("vmem_util", self.mem_util_pct, 0.0, bounds::MAX_UTIL_PCT),
        ];
        checks.into_iter().find_map(|(what, v, lo, hi)| {
            v.filter(|v| !(lo..=hi).contains(v))
                .map(|v| format!("{what} = {} is outside {lo}..={hi}", figure(v)))
        })
    }
}

impl VnodeView {
    /// Reads `cluster` (see the module docs for the rules).
    pub fn read(cluster: &Cluster, opts: &ReadOptions) -> VnodeView {
        let mut hosts: Vec<HostView> = Vec::new();
        let mut names = BTreeSet::new();
        // VM -> (index in `hosts`, copy) for every live copy.
        let mut copies: BTreeMap<&str, Vec<(usize, Copy)>> = BTreeMap::new();
        // (VM, index in `hosts`) of farewell metrics, and of live copies.
        let mut farewells: BTreeSet<(&str, usize)> = BTreeSet::new();
        let mut live: BTreeSet<(&str, usize)> = BTreeSet::new();
        let mut implausible = Vec::new();
        // VM -> its tags, from every host's `<vm>.balancer_tags`.
        let mut tags: BTreeMap<&str, VmTags> = BTreeMap::new();
        for (index, h) in cluster.hosts.iter().enumerate() {
            if !names.insert(h.name.as_str()) {
                continue;
            }
            let hi = hosts.len();
            let (view, why) = host_view(h, index);
            if let Some(why) = why {
                implausible.push(Implausible {
                    name: h.name.clone(),
                    why,
                });
            }
            hosts.push(view);
            let mut here: BTreeMap<&str, Copy> = BTreeMap::new();
            for m in &h.metrics {
                if let Some(vm) = m
                    .name
                    .strip_suffix(TAGS_SUFFIX)
                    .and_then(|p| p.strip_suffix('.'))
                    .filter(|vm| !vm.is_empty())
                {
                    let t = tags.entry(vm).or_default();
                    *t = t.merge(VmTags::parse(&m.val));
                    continue;
                }
                let Some((vm, sfx)) = parse_vm_metric(&m.name) else {
                    continue;
                };
                if m.tn > opts.vm_stale_s {
                    continue;
                }
                if is_farewell(m) {
                    farewells.insert((vm, hi));
                    continue;
                }
                let c = here.entry(vm).or_insert_with(|| Copy {
                    tn: m.tn,
                    ..Copy::default()
                });
                c.tn = c.tn.min(m.tn);
                let v = m.as_f64().filter(|v| v.is_finite());
                match sfx {
                    suffix::VCPU_NUM => c.vcpus = v,
                    suffix::VCPU_UTIL => c.util_pct = v,
                    suffix::VMEM_TOTAL => c.mem_kb = v,
                    suffix::VMEM_UTIL => c.mem_util_pct = v,
                    // State and I/O: they make the copy (and its freshness), no figure needed.
                    _ => {}
                }
            }
            for (vm, c) in here {
                live.insert((vm, hi));
                copies.entry(vm).or_default().push((hi, c));
            }
        }
        let mut vms = Vec::with_capacity(copies.len());
        for (vm, mut cs) in copies {
            cs.sort_by(|a, b| {
                a.1.tn
                    .cmp(&b.1.tn)
                    .then_with(|| hosts[a.0].name.cmp(&hosts[b.0].name))
            });
            let in_flight = cs
                .get(1)
                .is_some_and(|(_, c)| c.tn <= cs[0].1.tn.saturating_add(SUPERSEDED_AFTER_S));
            let Some((hi, c)) = cs.into_iter().next() else {
                continue;
            };
            if let Some(why) = c.implausible() {
                implausible.push(Implausible {
                    name: vm.to_owned(),
                    why,
                });
                continue;
            }
            vms.push(VmView {
                name: vm.to_owned(),
                host: hosts[hi].name.clone(),
                host_idx: hi,
                tn: c.tn,
                vcpus: c.vcpus,
                util_pct: c.util_pct,
                mem_kb: c.mem_kb,
                mem_util_pct: c.mem_util_pct,
                in_flight,
                tags: tags.get(vm).copied().unwrap_or_default(),
            });
        }
        let leaving = farewells
            .difference(&live)
            .map(|&(vm, hi)| Leaving {
                vm: vm.to_owned(),
                host: hosts[hi].name.clone(),
            })
            .collect();
        implausible.sort();
        VnodeView {
            hosts,
            vms,
            leaving,
            implausible,
        }
    }

    /// The VMs `host` owns (index in [`VnodeView::hosts`]), by name.
    pub fn vms_on(&self, host: usize) -> impl Iterator<Item = &VmView> {
        self.vms.iter().filter(move |v| v.host_idx == host)
    }

    /// Names of the VMs in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = &str> {
        self.vms
            .iter()
            .filter(|v| v.in_flight)
            .map(|v| v.name.as_str())
    }

    /// The policy's snapshot at time `now`: hosts with capacity, and the VMs on them that
    /// report `vcpu_num` (missing `vcpu_util` means demand 0, missing `vmem_total` memory 0,
    /// missing `vmem_util` all of it used); VMs in flight are marked migrating.
    pub fn snapshot(&self, now: u64) -> Snapshot {
        let hosts: Vec<HostState> = self
            .hosts
            .iter()
            .filter_map(|h| {
                let Some(cap) = h.capacity else {
                    // Without capacity the host cannot take part in balancing.
                    tracing::debug!(host = %h.name, "skipping host without capacity metrics");
                    return None;
                };
                Some(HostState {
                    name: h.name.clone(),
                    cpus: cap.cpus,
                    mhz: cap.mhz,
                    mem_kb: cap.mem_kb,
                    up: h.up,
                    maintenance: h.maintenance,
                    power: None,
                })
            })
            .collect();
        let vms = self
            .vms
            .iter()
            .filter_map(|vm| {
                let cap = self.hosts[vm.host_idx].capacity?;
                let vcpus = vm.vcpus?.max(0.0) as u32;
                let util = vm.util_pct.unwrap_or(0.0).clamp(0.0, 100.0) / 100.0;
                let mem_kb = vm.mem_kb.unwrap_or(0.0).max(0.0) as u64;
                let mem_util = vm.mem_util_pct.unwrap_or(100.0).clamp(0.0, 100.0) / 100.0;
                let cpu_cap = f64::from(vcpus) * cap.mhz;
                Some(VmState {
                    name: vm.name.clone(),
                    host: vm.host.clone(),
                    vcpus,
                    cpu_cap_mhz: cpu_cap,
                    cpu_demand_mhz: util * cpu_cap,
                    mem_kb,
                    mem_used_kb: (mem_kb as f64 * mem_util) as u64,
                    migrating: vm.in_flight,
                    migrating_to: None,
                    host_idx: 0,
                    tags: vm.tags,
                })
            })
            .collect();
        match Snapshot::new(now, hosts, vms) {
            Ok(s) => s,
            Err(e) => {
                // Hosts are unique, capacities positive and demands finite by construction, so
                // this is a bug; an empty snapshot makes the policies do nothing.
                tracing::warn!(error = %e, "cluster view inconsistent; using an empty snapshot");
                Snapshot {
                    time: now,
                    ..Default::default()
                }
            }
        }
    }
}

/// DMAX below TMAX: receivers are told to delete it before the next update is due.
fn is_farewell(m: &Metric) -> bool {
    m.dmax != 0 && m.dmax < m.tmax
}

/// A figure for a message: huge forged ones in scientific notation, so a line stays a line.
fn figure(v: f64) -> String {
    if v.abs() >= 1e12 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A host and, when a capacity figure is implausible, why it has no capacity.
fn host_view(h: &Host, index: usize) -> (HostView, Option<String>) {
    let num = |name: &str| h.metric_f64(name).filter(|v| v.is_finite());
    let mhz = num("vnode_cpu_speed").or_else(|| num("cpu_speed"));
    let cpus = num("vnode_cpu_num").or_else(|| num("cpu_num"));
    let mem = num("vnode_mem_total").or_else(|| num("mem_total"));
    let checks = [
        ("cpu_num", cpus, bounds::MAX_HOST_CPUS),
        ("cpu_speed", mhz, bounds::MAX_CPU_MHZ),
        ("mem_total", mem, bounds::MAX_HOST_MEM_KB),
    ];
    let why = checks.into_iter().find_map(|(what, v, hi)| {
        v.filter(|v| *v > hi)
            .map(|v| format!("{what} = {} is above {hi}", figure(v)))
    });
    let capacity = match (cpus, mhz, mem) {
        (Some(cpus), Some(mhz), Some(mem))
            if why.is_none() && cpus >= 1.0 && mhz > 0.0 && mem >= 1.0 =>
        {
            Some(Capacity {
                cpus: cpus as u32,
                mhz,
                mem_kb: mem as u64,
            })
        }
        _ => None,
    };
    let view = HostView {
        name: h.name.clone(),
        ip: h.ip.clone(),
        up: h.is_up(),
        maintenance: h.tags.split(',').any(|t| t.trim() == "maintenance")
            || num("maintenance").is_some_and(|v| v != 0.0),
        capacity,
        index,
    };
    (view, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM-style metric (TMAX 60) with DMAX `dmax`.
    fn m(name: &str, val: &str, tn: u64, dmax: u32) -> Metric {
        Metric {
            name: name.into(),
            val: val.into(),
            ty: "float".into(),
            tn,
            tmax: 60,
            dmax,
            ..Default::default()
        }
    }

    /// A hypervisor with capacity and `vms` as (name, TN, DMAX) copies of vcpu_num + vcpu_util.
    fn hv(name: &str, vms: &[(&str, u64, u32)]) -> Host {
        let mut metrics = vec![
            m("vnode_cpu_num", "4", 1, 0),
            m("vnode_cpu_speed", "1000", 1, 0),
            m("vnode_mem_total", "8000000", 1, 0),
        ];
        for &(vm, tn, dmax) in vms {
            metrics.push(m(&format!("{vm}.vcpu_num"), "2", tn, dmax));
            metrics.push(m(&format!("{vm}.vcpu_util"), "50", tn, dmax));
        }
        Host {
            name: name.into(),
            ip: format!("10.0.0.{}", name.len()),
            tmax: 20,
            metrics,
            ..Default::default()
        }
    }

    fn cluster(hosts: Vec<Host>) -> Cluster {
        Cluster {
            name: "c".into(),
            hosts,
            ..Default::default()
        }
    }

    fn owners(v: &VnodeView) -> Vec<(&str, &str, bool)> {
        v.vms
            .iter()
            .map(|vm| (vm.name.as_str(), vm.host.as_str(), vm.in_flight))
            .collect()
    }

    #[test]
    fn tags_from_any_host_reach_the_vm_and_never_make_a_copy() {
        let mut b = hv("b", &[]);
        // Sent with gmetric from b (an old, stale copy of the tag too): merged, and b does not
        // become an owner of web1 by carrying them.
        b.metrics
            .push(m("web1.balancer_tags", "priority=7", 900, 0));
        b.metrics.push(m("web1.balancer_tags_x", "exclude", 1, 0));
        b.metrics.push(m("ghost.balancer_tags", "exclude", 1, 0));
        let mut a = hv("a", &[("web1", 5, 0), ("web2", 5, 0)]);
        a.metrics
            .push(m("web1.balancer_tags", "exclude, junk priority=x", 1, 0));
        let v = VnodeView::read(&cluster(vec![a, b]), &ReadOptions::default());
        assert_eq!(
            owners(&v),
            [("web1", "a", false), ("web2", "a", false)],
            "{v:?}"
        );
        let tags: Vec<VmTags> = v.vms.iter().map(|vm| vm.tags).collect();
        assert_eq!(
            tags,
            [
                VmTags {
                    exclude: true,
                    priority: 7
                },
                VmTags::default()
            ]
        );
        let snap = v.snapshot(100);
        assert_eq!(snap.vms[0].tags, tags[0]);
        // The agent's filtered read keeps them.
        assert!(read_filter(&[]).matches(b"web1.balancer_tags"));
        assert_eq!(
            VmTags::parse("priority=99999").priority,
            VmTags::MAX_PRIORITY
        );
        assert_eq!(
            VmTags::parse("priority=-99999").priority,
            -VmTags::MAX_PRIORITY
        );
    }

    #[test]
    fn the_freshest_copy_owns_and_close_copies_are_in_flight() {
        let c = cluster(vec![
            hv("b", &[("moving", 1, 0), ("moved", 2, 0), ("tie", 4, 0)]),
            hv("a", &[("moving", 3, 0), ("moved", 80, 0), ("tie", 4, 0)]),
        ]);
        let v = VnodeView::read(&c, &ReadOptions::default());
        // moving: 2 s apart, in flight on the fresher b; moved: a's copy 78 s older than b's,
        // superseded; tie: equally fresh, the lower name owns, in flight.
        assert_eq!(
            owners(&v),
            [
                ("moved", "b", false),
                ("moving", "b", true),
                ("tie", "a", true)
            ]
        );
        assert_eq!(v.in_flight().collect::<Vec<_>>(), ["moving", "tie"]);
        // The owner's figures, and its host index into `hosts` (document order).
        assert_eq!(v.hosts[v.vms[1].host_idx].name, "b");
        assert_eq!((v.vms[1].tn, v.vms[1].vcpus), (1, Some(2.0)));
        assert_eq!(
            v.vms_on(1).map(|vm| vm.name.as_str()).collect::<Vec<_>>(),
            ["tie"]
        );
        // The snapshot marks in-flight VMs migrating.
        let s = v.snapshot(7);
        assert_eq!(s.time, 7);
        let migrating: Vec<(&str, bool)> = s
            .vms
            .iter()
            .map(|vm| (vm.name.as_str(), vm.migrating))
            .collect();
        assert_eq!(
            migrating,
            [("moved", false), ("moving", true), ("tie", true)]
        );
    }

    #[test]
    fn the_boundary_of_superseded_is_inclusive() {
        let at = |older: u64| {
            let c = cluster(vec![hv("a", &[("x", 10, 0)]), hv("b", &[("x", older, 0)])]);
            VnodeView::read(&c, &ReadOptions::default()).vms[0].in_flight
        };
        assert!(at(10 + SUPERSEDED_AFTER_S));
        assert!(!at(11 + SUPERSEDED_AFTER_S));
    }

    #[test]
    fn stale_metrics_are_ignored() {
        let c = cluster(vec![
            hv("a", &[("web", 5, 0), ("db", 200, 0), ("moved", 80, 0)]),
            hv("b", &[("moved", 2, 0)]),
        ]);
        let v = VnodeView::read(&c, &ReadOptions { vm_stale_s: 60 });
        // db is gone; moved's old copy is not even a superseded one.
        assert_eq!(owners(&v), [("moved", "b", false), ("web", "a", false)]);
        let v = VnodeView::read(&c, &ReadOptions::default());
        assert_eq!(owners(&v)[0], ("db", "a", false));
    }

    #[test]
    fn a_departed_vms_farewell_counts_nowhere() {
        // vm05 left a for b: a published its last round with DMAX 2 (< TMAX 60), and that
        // copy is even fresher than b's first one.
        let c = cluster(vec![
            hv("a", &[("vm05", 0, 2), ("stay", 1, 60)]),
            hv("b", &[("vm05", 1, 60), ("gone", 0, 2)]),
        ]);
        let v = VnodeView::read(&c, &ReadOptions { vm_stale_s: 30 });
        assert_eq!(owners(&v), [("stay", "a", false), ("vm05", "b", false)]);
        let leaving = |vm: &str, host: &str| Leaving {
            vm: vm.into(),
            host: host.into(),
        };
        // A VM stopped on b leaves too, with no owner anywhere.
        assert_eq!(v.leaving, [leaving("gone", "b"), leaving("vm05", "a")]);
        // DMAX 0 (never deleted) and DMAX >= TMAX are ordinary copies.
        let c = cluster(vec![hv("a", &[("x", 1, 0)]), hv("b", &[("y", 1, 60)])]);
        let v = VnodeView::read(&c, &ReadOptions::default());
        assert_eq!(v.vms.len(), 2);
        assert!(v.leaving.is_empty());
    }

    #[test]
    fn odd_and_forged_names_and_values() {
        let mut h = hv("hv", &[]);
        h.metrics.extend([
            // Prefixes with dots stay whole; sanitised prefixes are ordinary names.
            m("web1.example.com.vcpu_num", "2", 1, 0),
            m("batch__job--0badcafe.vcpu_num", "1", 1, 0),
            // Not VM metrics: no prefix, no suffix, unknown suffix.
            m(".vcpu_num", "3", 1, 0),
            m("vcpu_num", "3", 1, 0),
            m("disk.free", "3", 1, 0),
            m("web1.cpu_user", "3", 1, 0),
            // A forged value is absent, not a NaN in every sum.
            m("nan.vcpu_num", "2", 1, 0),
            m("nan.vcpu_util", "NaN", 1, 0),
            m("inf.vcpu_num", "inf", 1, 0),
            // Text where a number belongs; I/O and state only.
            m("text.vcpu_num", "two", 1, 0),
            m("io.vbytes_in", "5", 1, 0),
            m("off.vcpu_state", "shutoff", 1, 0),
            m("neg.vcpu_num", "-3", 1, 0),
        ]);
        let v = VnodeView::read(&cluster(vec![h]), &ReadOptions::default());
        let names: Vec<&str> = v.vms.iter().map(|vm| vm.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "batch__job--0badcafe",
                "inf",
                "io",
                "nan",
                "off",
                "text",
                "web1.example.com"
            ]
        );
        // A negative vCPU count is implausible: that VM (only) is left out, and listed.
        assert_eq!(
            v.implausible,
            [Implausible {
                name: "neg".into(),
                why: "vcpu_num = -3 is outside 0..=4096".into()
            }]
        );
        let nan = &v.vms[3];
        assert_eq!((nan.vcpus, nan.util_pct), (Some(2.0), None));
        // The snapshot takes those with a vCPU count; the rest are listed but not balanced.
        let s = v.snapshot(0);
        let names: Vec<(&str, u32, f64)> = s
            .vms
            .iter()
            .map(|vm| (vm.name.as_str(), vm.vcpus, vm.cpu_demand_mhz))
            .collect();
        assert_eq!(
            names,
            [
                ("batch__job--0badcafe", 1, 0.0),
                ("nan", 2, 0.0),
                ("web1.example.com", 2, 0.0)
            ]
        );
    }

    /// Issue 14: a forged `vcpu_num` or `vmem_total` overflowed the sums, and
    /// `vnode_cpu_speed = 1e300` made a host attract every move. Implausible figures now take
    /// out only their own VM or host.
    #[test]
    fn implausible_figures_take_out_only_their_vm_or_host() {
        let mut forged = hv("forged", &[("ok2", 1, 0)]);
        forged.metrics[1] = m("vnode_cpu_speed", "1e300", 1, 0);
        let mut huge = hv("huge", &[("fine", 1, 0), ("greedy", 1, 0), ("fat", 1, 0)]);
        huge.metrics.retain(|x| x.name != "greedy.vcpu_num");
        huge.metrics.push(m("greedy.vcpu_num", "4294967295", 1, 0));
        huge.metrics.push(m("fat.vmem_total", "1e15", 1, 0));
        let v = VnodeView::read(&cluster(vec![forged, huge]), &ReadOptions::default());
        let out: Vec<(&str, &str)> = v
            .implausible
            .iter()
            .map(|i| (i.name.as_str(), i.why.as_str()))
            .collect();
        assert_eq!(
            out,
            [
                ("fat", "vmem_total = 1e15 is outside 0..=68719476736"),
                ("forged", "cpu_speed = 1e300 is above 100000"),
                ("greedy", "vcpu_num = 4294967295 is outside 0..=4096"),
            ]
        );
        let s = v.snapshot(0);
        let hosts: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            hosts,
            ["huge"],
            "the forged host has no capacity, so it is no destination"
        );
        let vms: Vec<&str> = s.vms.iter().map(|vm| vm.name.as_str()).collect();
        assert_eq!(vms, ["fine"], "the rest of the view is kept");
    }

    #[test]
    fn hosts_once_each_with_capacity_fallbacks() {
        let stock = Host {
            name: "stock".into(),
            tn: 100,
            tmax: 20,
            tags: "rack1, maintenance".into(),
            metrics: vec![
                m("cpu_num", "2", 1, 0),
                m("cpu_speed", "3000", 1, 0),
                m("mem_total", "4000", 1, 0),
                m("lost.vcpu_num", "1", 1, 0),
            ],
            ..Default::default()
        };
        let bare = Host {
            name: "bare".into(),
            tmax: 20,
            metrics: vec![
                m("vnode_cpu_num", "4", 1, 0),
                m("vnode_cpu_speed", "1000", 1, 0),
                m("vnode_mem_total", "0.5", 1, 0),
                m("here.vcpu_num", "1", 1, 0),
            ],
            ..Default::default()
        };
        let mut twin = hv("stock", &[("twin", 0, 0)]);
        twin.tags.clear();
        let c = cluster(vec![stock, twin, bare]);
        let v = VnodeView::read(&c, &ReadOptions::default());
        let hosts: Vec<(&str, usize, bool, bool)> = v
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.index, h.up, h.maintenance))
            .collect();
        // The second "stock" is not read at all; less than 1 KB of memory is no capacity.
        assert_eq!(hosts, [("stock", 0, false, true), ("bare", 2, true, false)]);
        assert_eq!(
            v.hosts[0].capacity,
            Some(Capacity {
                cpus: 2,
                mhz: 3000.0,
                mem_kb: 4000
            })
        );
        assert_eq!(v.hosts[1].capacity, None);
        assert_eq!(
            owners(&v),
            [("here", "bare", false), ("lost", "stock", false)]
        );
        // A VM on a host without capacity is listed, but the policy cannot place it.
        let s = v.snapshot(0);
        assert_eq!(s.hosts.len(), 1);
        assert_eq!(s.vms.len(), 1);
        assert_eq!(s.vms[0].name, "lost");
    }

    #[test]
    fn documents_merge_and_bad_xml_is_an_error() {
        let doc = Document {
            clusters: vec![
                Cluster {
                    name: "one".into(),
                    localtime: 5,
                    hosts: vec![hv("a", &[])],
                    ..Default::default()
                },
                Cluster {
                    name: "two".into(),
                    localtime: 9,
                    hosts: vec![hv("b", &[])],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let c = merge_document(doc);
        assert_eq!((c.name.as_str(), c.localtime, c.hosts.len()), ("one", 9, 2));
        assert!(matches!(
            parse_xml(b"<GANGLIA_XML"),
            Err(crate::BalancerError::Xml(_))
        ));
    }

    #[test]
    fn only_marked_values_under_accepted_keys_survive_the_auth_filter() {
        let metric = |name: &str, mark: Option<&str>| Metric {
            name: name.into(),
            val: "1".into(),
            extra: mark
                .map(|k| vec![(ganglia_wire::auth::XML_MARK.to_string(), k.to_string())])
                .unwrap_or_default(),
            ..Metric::default()
        };
        let cluster = || Cluster {
            hosts: vec![Host {
                name: "hv1".into(),
                metrics: vec![
                    metric("web1.vcpu_util", Some("5")),
                    metric("web2.vcpu_util", None),
                    metric("web3.vcpu_util", Some("6")),
                    metric("web4.vcpu_util", Some("not-a-key")),
                ],
                ..Host::default()
            }],
            ..Cluster::default()
        };
        let names = |c: &Cluster| -> Vec<String> {
            c.hosts[0].metrics.iter().map(|m| m.name.clone()).collect()
        };
        let mut any = cluster();
        assert_eq!(keep_authenticated(&mut any, &AuthFilter::Any), 0);
        assert_eq!(names(&any).len(), 4);
        let mut marked = cluster();
        assert_eq!(
            keep_authenticated(&mut marked, &AuthFilter::Marked(vec![])),
            2
        );
        assert_eq!(names(&marked), ["web1.vcpu_util", "web3.vcpu_util"]);
        let mut key5 = cluster();
        assert_eq!(
            keep_authenticated(&mut key5, &AuthFilter::Marked(vec![5])),
            3
        );
        assert_eq!(names(&key5), ["web1.vcpu_util"]);
    }

    /// What the query channel and the agent's filtered parse rely on: the view read from a
    /// cluster filtered with [`read_filter`] is the view of the whole cluster, whatever the
    /// metrics (every name the reader knows, near misses, stale copies, farewells, forged
    /// capacities). 300 clusters from a fixed-seed generator.
    #[test]
    fn a_view_read_through_the_filter_is_the_whole_view() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let suffixes: Vec<&str> = VM_METRICS
            .iter()
            .chain(VM_IO_METRICS.iter())
            .copied()
            .collect();
        // Written out, not taken from HOST_METRICS: a name dropped there must fail here.
        let host_names = [
            "vnode_cpu_speed",
            "cpu_speed",
            "vnode_cpu_num",
            "cpu_num",
            "vnode_mem_total",
            "mem_total",
            "maintenance",
            "load_one",
            "cpu_idle",
            "disk.free",
            ".vcpu_num",
            "web.vcpu_utilx",
            "balancer_mode",
        ]
        .map(String::from);
        let filter = read_filter(&[]);
        for _ in 0..300 {
            let hosts = (0..1 + next(5))
                .map(|h| {
                    let mut metrics = Vec::new();
                    for _ in 0..next(12) {
                        let name = match next(3) {
                            0 => host_names[next(host_names.len() as u64) as usize].clone(),
                            _ => format!(
                                "vm{}.{}",
                                next(4),
                                suffixes[next(suffixes.len() as u64) as usize]
                            ),
                        };
                        let val =
                            ["4", "1000", "8000000", "1e300", "x", "50", "-1"][next(7) as usize];
                        let dmax = [0, 30, 600][next(3) as usize];
                        metrics.push(m(&name, val, next(200), dmax));
                    }
                    Host {
                        name: format!("hv{}", next(4)),
                        ip: format!("10.0.0.{h}"),
                        tmax: 20,
                        tn: next(100),
                        metrics,
                        ..Default::default()
                    }
                })
                .collect();
            let whole = cluster(hosts);
            let mut filtered = whole.clone();
            for h in &mut filtered.hosts {
                h.metrics.retain(|m| filter.matches(m.name.as_bytes()));
            }
            for opts in [ReadOptions::default(), ReadOptions { vm_stale_s: 60 }] {
                assert_eq!(
                    VnodeView::read(&filtered, &opts),
                    VnodeView::read(&whole, &opts),
                    "{whole:?}"
                );
            }
        }
    }
}
