//! The cluster snapshot every policy decides on: hosts and VMs with capacities and demands,
//! built from a Ganglia cluster view (read by [`crate::view`], the one reader of the
//! virtual-node convention), a scenario file or the simulator, always through the same type.

use ganglia_wire::model::Cluster;
use serde::{Deserialize, Serialize};

use crate::error::{BalancerError, Result};
use crate::view::{ReadOptions, VnodeView};

/// Power draw in watts at 0, 10, ..., 100 % CPU (SPECpower style), linearly interpolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerCurve(pub [f64; 11]);

impl PowerCurve {
    /// Generic curve for a host that has none: 60 % of peak when idle, linear.
    pub const GENERIC: PowerCurve = PowerCurve([
        120.0, 128.0, 136.0, 144.0, 152.0, 160.0, 168.0, 176.0, 184.0, 192.0, 200.0,
    ]);
    /// HP ProLiant ML110 G4 (Xeon 3040), SPECpower, as used by CloudSim.
    pub const G4: PowerCurve = PowerCurve([
        86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0,
    ]);
    /// HP ProLiant ML110 G5 (Xeon 3075), SPECpower, as used by CloudSim.
    pub const G5: PowerCurve = PowerCurve([
        93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0,
    ]);

    /// Watts at utilisation `u` (clamped to 0..=1).
    pub fn watts(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0) * 10.0;
        // u >= 0, so truncation is floor (and avoids a libm call in the placement loop).
        let i = (u as usize).min(9);
        let f = u - i as f64;
        self.0[i] + (self.0[i + 1] - self.0[i]) * f
    }
}

/// One physical host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    /// Host name (unique).
    pub name: String,
    /// Physical CPUs.
    pub cpus: u32,
    /// MHz per CPU.
    pub mhz: f64,
    /// Memory, KB.
    pub mem_kb: u64,
    /// Alive (TN < 4 TMAX for a Ganglia view).
    #[serde(default = "yes")]
    pub up: bool,
    /// In maintenance: drained, never filled.
    #[serde(default)]
    pub maintenance: bool,
    /// Power model, if known (consolidation uses it; a generic curve otherwise).
    #[serde(default)]
    pub power: Option<PowerCurve>,
}

fn yes() -> bool {
    true
}

impl HostState {
    /// CPU capacity in MHz.
    pub fn cpu_mhz(&self) -> f64 {
        f64::from(self.cpus) * self.mhz
    }

    /// The host's power curve, or the generic one.
    pub fn power_curve(&self) -> &PowerCurve {
        self.power.as_ref().unwrap_or(&PowerCurve::GENERIC)
    }
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    /// VM name (unique).
    pub name: String,
    /// Name of the host it runs on.
    pub host: String,
    /// vCPUs.
    pub vcpus: u32,
    /// CPU capacity of the VM, MHz (vCPUs x host MHz unless the VM is capped).
    pub cpu_cap_mhz: f64,
    /// Current CPU demand, MHz.
    pub cpu_demand_mhz: f64,
    /// Memory size, KB.
    pub mem_kb: u64,
    /// Memory in use, KB.
    #[serde(default)]
    pub mem_used_kb: u64,
    /// A migration of this VM is in flight.
    #[serde(default)]
    pub migrating: bool,
    /// Destination of the migration in flight, if known. The planner books the VM's load
    /// there already, so that a slow migration is not answered by a second one.
    #[serde(default)]
    pub migrating_to: Option<String>,
    /// Index of `host` in `Snapshot::hosts`, filled by [`Snapshot::new`].
    #[serde(skip)]
    pub host_idx: usize,
    /// What the view's `<vm>.balancer_tags` says about it (none by default).
    #[serde(default, skip_serializing_if = "VmTags::is_none")]
    pub tags: VmTags,
}

/// An operator's per-VM tags, read from the cluster view: a string metric
/// `<vm>.balancer_tags` (e.g. sent with `gmetric -t string -n web1.balancer_tags -v
/// "exclude,priority=5"`), on any host. They can only spare a VM or change which VM of a host
/// goes first, never cause a move, so a forged tag cannot make the balancer do harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmTags {
    /// Never move it (`exclude`), as `[constraints] exclude` does.
    #[serde(default)]
    pub exclude: bool,
    /// `priority=N`, as `[constraints] priority` (the higher of the two counts).
    #[serde(default)]
    pub priority: i32,
}

impl VmTags {
    /// Priorities beyond this either way are clamped to it.
    pub const MAX_PRIORITY: i32 = 1000;
    /// Tags read from one value; the rest are ignored.
    pub const MAX_TAGS: usize = 8;

    /// No tags.
    pub fn is_none(&self) -> bool {
        *self == VmTags::default()
    }

    /// Parses a `balancer_tags` value: tags separated by commas or spaces; `exclude`,
    /// `priority=N`; unknown tags are ignored (a newer agent's tag must not stop an older
    /// one), as is anything past [`VmTags::MAX_TAGS`].
    pub fn parse(value: &str) -> VmTags {
        let mut t = VmTags::default();
        for tag in value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .take(VmTags::MAX_TAGS)
        {
            if tag == "exclude" {
                t.exclude = true;
            } else if let Some(n) = tag.strip_prefix("priority=") {
                if let Ok(n) = n.parse::<i64>() {
                    let max = i64::from(VmTags::MAX_PRIORITY);
                    t.priority = i32::try_from(n.clamp(-max, max)).unwrap_or(0);
                }
            }
        }
        t
    }

    /// The tags as a `balancer_tags` value ([`VmTags::parse`] reads it back).
    pub fn to_value(self) -> String {
        let mut parts = Vec::new();
        if self.exclude {
            parts.push("exclude".to_string());
        }
        if self.priority != 0 {
            parts.push(format!("priority={}", self.priority));
        }
        parts.join(",")
    }

    /// Both sets of tags at once: excluded if either says so, the higher priority.
    pub fn merge(self, other: VmTags) -> VmTags {
        VmTags {
            exclude: self.exclude || other.exclude,
            priority: self.priority.max(other.priority),
        }
    }
}

impl VmState {
    /// CPU demand as a fraction of the VM's capacity.
    pub fn cpu_frac(&self) -> f64 {
        if self.cpu_cap_mhz > 0.0 {
            self.cpu_demand_mhz / self.cpu_cap_mhz
        } else {
            0.0
        }
    }
}

/// Hosts and VMs at one instant. Both lists are sorted by name, so iteration order (and every
/// plan derived from it) is the same on every machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Epoch (or simulated) seconds.
    pub time: u64,
    /// Hosts, sorted by name.
    pub hosts: Vec<HostState>,
    /// VMs, sorted by name.
    pub vms: Vec<VmState>,
}

impl Snapshot {
    /// Sorts, checks uniqueness and resolves every VM's host index.
    pub fn new(time: u64, mut hosts: Vec<HostState>, mut vms: Vec<VmState>) -> Result<Snapshot> {
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        for w in hosts.windows(2) {
            if w[0].name == w[1].name {
                return Err(BalancerError::Snapshot(format!(
                    "duplicate host {:?}",
                    w[0].name
                )));
            }
        }
        for w in vms.windows(2) {
            if w[0].name == w[1].name {
                return Err(BalancerError::Snapshot(format!(
                    "duplicate vm {:?}",
                    w[0].name
                )));
            }
        }
        use crate::view::bounds;
        for h in &hosts {
            if h.cpus == 0 || !(h.mhz > 0.0) || h.mem_kb == 0 {
                return Err(BalancerError::Snapshot(format!(
                    "host {:?} needs cpus, mhz and memory > 0",
                    h.name
                )));
            }
            // The reader's bounds, for snapshots from files too: no sum can overflow.
            if f64::from(h.cpus) > bounds::MAX_HOST_CPUS
                || h.mhz > bounds::MAX_CPU_MHZ
                || h.mem_kb as f64 > bounds::MAX_HOST_MEM_KB
            {
                return Err(BalancerError::Snapshot(format!(
                    "host {:?}: implausible capacity",
                    h.name
                )));
            }
        }
        for vm in &mut vms {
            vm.host_idx = hosts
                .binary_search_by(|h| h.name.as_str().cmp(&vm.host))
                .map_err(|_| {
                    BalancerError::Snapshot(format!(
                        "vm {:?} on unknown host {:?}",
                        vm.name, vm.host
                    ))
                })?;
            if f64::from(vm.vcpus) > bounds::MAX_VM_VCPUS
                || vm.mem_kb as f64 > bounds::MAX_VM_MEM_KB
                || vm.mem_used_kb > vm.mem_kb
            {
                return Err(BalancerError::Snapshot(format!(
                    "vm {:?}: implausible vCPUs or memory",
                    vm.name
                )));
            }
            if !vm.cpu_demand_mhz.is_finite() || vm.cpu_demand_mhz < 0.0 {
                return Err(BalancerError::Snapshot(format!(
                    "vm {:?}: bad cpu demand",
                    vm.name
                )));
            }
        }
        Ok(Snapshot { time, hosts, vms })
    }

    /// Re-resolves host indices after deserialising (serde skips them).
    pub fn reindexed(self) -> Result<Snapshot> {
        Snapshot::new(self.time, self.hosts, self.vms)
    }

    /// Parses a snapshot from JSON or TOML text (chosen by `is_toml`).
    pub fn parse(text: &str, is_toml: bool) -> Result<Snapshot> {
        let s: Snapshot = if is_toml {
            toml::from_str(text).map_err(|e| BalancerError::Config(e.to_string()))?
        } else {
            serde_json::from_str(text)?
        };
        s.reindexed()
    }

    /// Index of a host by name.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts
            .binary_search_by(|h| h.name.as_str().cmp(name))
            .ok()
    }

    /// Index of a VM by name.
    pub fn vm_index(&self, name: &str) -> Option<usize> {
        self.vms
            .binary_search_by(|v| v.name.as_str().cmp(name))
            .ok()
    }

    /// Builds a snapshot from a Ganglia cluster view through the one reader of the
    /// virtual-node convention, [`crate::view::VnodeView`] (its docs give the rules: VM names,
    /// host capacity, which host owns a VM reported by several, in flight). No VM metric is
    /// taken as stale here; the agent, which knows its round length, reads with a bound.
    /// `now` is the snapshot time (the cluster's LOCALTIME is not trusted for it).
    pub fn from_cluster(cluster: &Cluster, now: u64) -> Snapshot {
        VnodeView::read(cluster, &ReadOptions::default()).snapshot(now)
    }

    /// Demand and capacity totals per host: (cpu demand MHz, memory committed KB, vCPUs).
    pub fn host_loads(&self) -> Vec<(f64, u64, u32)> {
        let mut out = vec![(0.0, 0u64, 0u32); self.hosts.len()];
        for vm in &self.vms {
            let o = &mut out[vm.host_idx];
            o.0 += vm.cpu_demand_mhz;
            o.1 += vm.mem_kb;
            o.2 += vm.vcpus;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::model::{Host, Metric};

    fn metric(name: &str, val: &str) -> Metric {
        Metric {
            name: name.into(),
            val: val.into(),
            ty: "float".into(),
            tmax: 60,
            ..Default::default()
        }
    }

    fn hv(name: &str, tn: u64, metrics: Vec<Metric>) -> Host {
        Host {
            name: name.into(),
            tn,
            tmax: 20,
            metrics,
            ..Default::default()
        }
    }

    #[test]
    fn cluster_view_becomes_snapshot() {
        let c = Cluster {
            name: "c".into(),
            hosts: vec![
                hv(
                    "hv1",
                    5,
                    vec![
                        metric("vnode_cpu_num", "8"),
                        metric("vnode_cpu_speed", "2000"),
                        metric("vnode_mem_total", "16000000"),
                        metric("cpu_num", "4"),
                        metric("web1.example.com.vcpu_util", "50"),
                        metric("web1.example.com.vcpu_num", "2"),
                        metric("web1.example.com.vmem_total", "2000000"),
                        metric("web1.example.com.vmem_util", "25"),
                        metric("db.vcpu_num", "4"),
                        metric("disk.free", "3"),
                        metric(".vcpu_num", "3"),
                    ],
                ),
                // Stock gmond only, and dead (TN >= 4 TMAX).
                hv(
                    "hv0",
                    80,
                    vec![
                        metric("cpu_num", "4"),
                        metric("cpu_speed", "1000"),
                        metric("mem_total", "8000000"),
                    ],
                ),
                hv("nocap", 0, vec![metric("load_one", "1")]),
            ],
            ..Default::default()
        };
        let s = Snapshot::from_cluster(&c, 42);
        assert_eq!(s.time, 42);
        let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["hv0", "hv1"]);
        assert!(!s.hosts[0].up);
        assert!(s.hosts[1].up);
        assert_eq!(s.hosts[1].cpus, 8);
        let vms: Vec<&str> = s.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(vms, ["db", "web1.example.com"]);
        let web = &s.vms[1];
        assert_eq!(web.host_idx, 1);
        assert_eq!(web.cpu_cap_mhz, 4000.0);
        assert_eq!(web.cpu_demand_mhz, 2000.0);
        assert_eq!(web.mem_kb, 2_000_000);
        assert_eq!(web.mem_used_kb, 500_000);
        assert_eq!(s.vms[0].cpu_demand_mhz, 0.0);
    }

    #[test]
    fn bad_snapshots_are_errors() {
        let h = HostState {
            name: "a".into(),
            cpus: 1,
            mhz: 1.0,
            mem_kb: 1,
            up: true,
            maintenance: false,
            power: None,
        };
        let vm = VmState {
            name: "v".into(),
            host: "zz".into(),
            vcpus: 1,
            cpu_cap_mhz: 1.0,
            cpu_demand_mhz: 0.5,
            mem_kb: 1,
            mem_used_kb: 0,
            migrating: false,
            migrating_to: None,
            host_idx: 0,
            tags: Default::default(),
        };
        assert!(Snapshot::new(0, vec![h.clone(), h.clone()], vec![]).is_err());
        assert!(Snapshot::new(0, vec![h.clone()], vec![vm.clone()]).is_err());
        let ok = Snapshot::new(
            0,
            vec![h],
            vec![VmState {
                host: "a".into(),
                ..vm
            }],
        )
        .unwrap();
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(Snapshot::parse(&json, false).unwrap(), ok);
        assert!(Snapshot::parse("{", false).is_err());
    }

    #[test]
    fn power_curve_interpolates() {
        assert_eq!(PowerCurve::G4.watts(0.0), 86.0);
        assert_eq!(PowerCurve::G4.watts(1.0), 117.0);
        assert!((PowerCurve::G5.watts(0.05) - 95.35).abs() < 1e-9);
        assert_eq!(PowerCurve::G5.watts(2.0), 135.0);
    }
}
