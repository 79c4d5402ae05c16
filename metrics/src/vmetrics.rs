//! Per-VM metrics in Ganglia's virtual-node convention (reference ganglia.md §E.1): VM name
//! sanitising and its inverse, CPU % from CPU-time deltas, and the pure publisher that turns a
//! host sample plus domain samples into metrics for the hypervisor's own host.
//!
//! Nothing here does I/O or reads a clock except [`collect_round`], which calls the (blocking)
//! hypervisor and the clock it is given; times are arguments, so the caller decides when a
//! sample was taken (the midpoint of the domain listing).
//!
//! # VM names
//!
//! A VM's metrics are named `<prefix>.<metric>` (e.g. `web1.vcpu_util`). The prefix is
//! [`sanitize_vm_name`] of the libvirt domain name:
//!
//! * A *clean* name is kept verbatim: 1 to [`MAX_VM_PREFIX_LEN`] bytes, every byte in
//!   `[A-Za-z0-9._-]`, and no `--`. Almost every real domain name is clean, so the prefix is
//!   the name.
//! * Any other name (':' which gmond rewrites to '_' in non-spoofed names, whitespace, quotes,
//!   '/', '<', '&', non-ASCII, empty, too long, or containing `--`) becomes: each character
//!   outside `[A-Za-z0-9._-]` replaced by one '_', the result cut to `MAX_VM_PREFIX_LEN - 10`
//!   characters, then `--` and the 8 lower-case hex digits of the 32-bit FNV-1a hash of the
//!   original name's UTF-8 bytes. `batch: job "7"` becomes `batch__job__7_--<hash>`.
//!
//! The marker is made of characters that survive every consumer of a metric name: ganglia-web
//! passes names through PHP's `escapeshellcmd`, which escapes `~`, `#`, `&`, `*`, `?`, brackets
//! and more, after which graph.php looks for a file that does not exist.
//!
//! `--` never occurs in a clean name, so a sanitised prefix never equals a clean one; two
//! different unclean names collide only if their hashes collide. Every VM metric also carries
//! the domain UUID in the `VM_UUID` extra, which maps any prefix back to its domain exactly.
//! [`parse_vm_metric`] is the inverse of the naming: it splits at the LAST '.', so prefixes may
//! contain dots (`db.example.com.vcpu_num`).

use std::collections::BTreeMap;

use crate::hypervisor::{DomainInfo, DomainState, HostCapacity, Hypervisor};
use crate::linux::{MetricValue, ValueType};
use crate::Error;

/// Bytes per GB in the disk metrics (gmond's disk_total convention: 1024^3).
const GIB: f64 = 1_073_741_824.0;

/// Longest VM prefix, bytes. Keeps `<prefix>.vdisk_bytes_written.rrd` well under the 255-byte
/// file-name limit of gmetad's RRD tree and the XML lines under gmond's 1023-byte cut.
pub const MAX_VM_PREFIX_LEN: usize = 128;

/// Seconds between updates receivers should expect (sFlow's convention in gmond).
pub const VM_TMAX: u32 = 60;

/// Seconds after the last update when receivers delete the metric, so that a VM migrated away
/// or stopped disappears from its old host.
pub const VM_DMAX: u32 = 600;

/// Extra element carrying the domain UUID on every per-VM metric.
pub const EXTRA_VM_UUID: &str = "VM_UUID";

/// The suffix of each per-VM metric that readers of the view interpret (the balancer's
/// snapshot, the agent, the demo), named so that publisher and readers share one spelling.
pub mod suffix {
    /// CPU time used as a share of the VM's vCPUs, %.
    pub const VCPU_UTIL: &str = "vcpu_util";
    /// vCPUs online.
    pub const VCPU_NUM: &str = "vcpu_num";
    /// Run state (running, paused, shutoff, crashed).
    pub const VCPU_STATE: &str = "vcpu_state";
    /// Memory given to the VM, KB.
    pub const VMEM_TOTAL: &str = "vmem_total";
    /// Memory used by the guest as a share of `vmem_total`, %.
    pub const VMEM_UTIL: &str = "vmem_util";
}

/// The per-VM metric suffixes published for every active domain, in emission order: the one
/// list, with [`VM_IO_METRICS`], that [`parse_vm_metric`] accepts.
pub const VM_METRICS: [&str; 5] = [
    suffix::VCPU_UTIL,
    suffix::VCPU_NUM,
    suffix::VCPU_STATE,
    suffix::VMEM_TOTAL,
    suffix::VMEM_UTIL,
];

/// The disk and network suffixes of §E.1, published where the hypervisor gives I/O counters.
pub const VM_IO_METRICS: [&str; 16] = [
    "vdisk_capacity",
    "vdisk_total",
    "vdisk_free",
    "vdisk_reads",
    "vdisk_bytes_read",
    "vdisk_writes",
    "vdisk_bytes_written",
    "vdisk_errs",
    "vbytes_in",
    "vbytes_out",
    "vpkts_in",
    "vpkts_out",
    "verrs_in",
    "verrs_out",
    "vdrops_in",
    "vdrops_out",
];

/// Whether `name` is used verbatim as a metric prefix (see the module docs).
pub fn is_clean_vm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VM_PREFIX_LEN
        && name.bytes().all(is_clean_byte)
        && !name.contains(MARKER)
}

/// Separates a sanitised name from its hash; never part of a clean name.
const MARKER: &str = "--";

fn is_clean_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The metric prefix for a domain name; deterministic, see the module docs for the rules.
pub fn sanitize_vm_name(name: &str) -> String {
    if is_clean_vm_name(name) {
        return name.to_owned();
    }
    let keep = MAX_VM_PREFIX_LEN - MARKER.len() - 8;
    let mut out: String = name
        .chars()
        .take(keep)
        .map(|c| {
            if c.is_ascii() && is_clean_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.push_str(MARKER);
    out.push_str(&format!("{:08x}", fnv1a32(name.as_bytes())));
    out
}

/// 32-bit FNV-1a: tiny, stable across platforms and Rust versions (unlike `DefaultHasher`).
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The full metric name of `metric` for the domain called `vm`.
pub fn vm_metric_name(vm: &str, metric: &str) -> String {
    format!("{}.{metric}", sanitize_vm_name(vm))
}

/// Splits a per-VM metric name into (prefix, suffix); `None` for host metrics and unknown
/// suffixes. The prefix is what [`sanitize_vm_name`] produced (equal to the domain name when
/// [`is_clean_vm_name`] holds for it); use the `VM_UUID` extra to map other prefixes back.
pub fn parse_vm_metric(name: &str) -> Option<(&str, &str)> {
    let (vm, metric) = name.rsplit_once('.')?;
    if vm.is_empty() || !(VM_METRICS.contains(&metric) || VM_IO_METRICS.contains(&metric)) {
        return None;
    }
    Some((vm, metric))
}

/// CPU utilisation of a domain in percent of its vCPUs:
/// `delta_cpu_ns / (delta_wall_ns * vcpus) * 100`, clamped to 0..=100.
/// `None` when the interval is empty or the domain has no vCPUs.
pub fn cpu_util_percent(delta_cpu_ns: u64, delta_wall_ns: u64, vcpus: u32) -> Option<f64> {
    if delta_wall_ns == 0 || vcpus == 0 {
        return None;
    }
    let pct = delta_cpu_ns as f64 / (delta_wall_ns as f64 * f64::from(vcpus)) * 100.0;
    Some(pct.clamp(0.0, 100.0))
}

/// One reading of a domain's cumulative CPU time and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Cumulative CPU time, ns.
    pub cpu_time_ns: u64,
    /// When it was read, ns on any monotonic clock (the same for every sample).
    pub at_ns: u64,
}

/// Utilisation between two readings; `None` when time did not advance or the CPU time went
/// backwards (the domain was restarted or came back from elsewhere: a new baseline).
pub fn vcpu_util(prev: CpuSample, cur: CpuSample, vcpus: u32) -> Option<f64> {
    let wall = cur.at_ns.checked_sub(prev.at_ns)?;
    let cpu = cur.cpu_time_ns.checked_sub(prev.cpu_time_ns)?;
    cpu_util_percent(cpu, wall, vcpus)
}

/// A domain as the publisher needs it: its info plus its CPU utilisation, if known.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSample {
    /// What the hypervisor reported.
    pub info: DomainInfo,
    /// vCPU utilisation in percent; `None` on the first sample of a running domain.
    pub vcpu_util: Option<f64>,
    /// Disk and network figures, where the hypervisor gives I/O counters.
    pub io: Option<IoRates>,
}

/// Cumulative disk counters of a domain, summed over its disks (libvirt bulk `block.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Read requests.
    pub rd_reqs: u64,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Write requests.
    pub wr_reqs: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Errors (0 where the driver does not count them).
    pub errs: u64,
    /// Logical size, bytes.
    pub capacity_bytes: u64,
    /// Bytes allocated on the host.
    pub allocation_bytes: u64,
}

/// Cumulative network counters of a domain, summed over its interfaces (bulk `net.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_pkts: u64,
    /// Receive errors.
    pub rx_errs: u64,
    /// Receive drops.
    pub rx_drop: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_pkts: u64,
    /// Send errors.
    pub tx_errs: u64,
    /// Send drops.
    pub tx_drop: u64,
}

/// A domain's I/O counters; `None` for a group the hypervisor did not report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Disks (absent when the driver has no block stats or the domain has no disk).
    pub disk: Option<DiskCounters>,
    /// Interfaces (absent when the driver has no interface stats or there is no NIC).
    pub net: Option<NetCounters>,
}

/// I/O of a domain as published: disk space, and per-second rates from two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IoRates {
    /// Disk (capacity, allocation) in bytes.
    pub disk_space: Option<(u64, u64)>,
    /// Per second: reads, bytes read, writes, bytes written, errors.
    pub disk: Option<[f64; 5]>,
    /// Per second: bytes in, bytes out, packets in, packets out, errors in, errors out,
    /// drops in, drops out.
    pub net: Option<[f64; 8]>,
}

/// Per-second rates between two counter readings `dt_ns` apart; `None` when time did not
/// advance or any counter went backwards (device replaced, domain restarted).
pub fn counter_rates<const N: usize>(
    prev: [u64; N],
    cur: [u64; N],
    dt_ns: u64,
) -> Option<[f64; N]> {
    if dt_ns == 0 {
        return None;
    }
    let secs = dt_ns as f64 / 1e9;
    let mut out = [0.0; N];
    for (o, (p, c)) in out.iter_mut().zip(prev.iter().zip(cur.iter())) {
        *o = c.checked_sub(*p)? as f64 / secs;
    }
    Some(out)
}

impl DiskCounters {
    fn rate_fields(&self) -> [u64; 5] {
        [
            self.rd_reqs,
            self.rd_bytes,
            self.wr_reqs,
            self.wr_bytes,
            self.errs,
        ]
    }
}

impl NetCounters {
    fn rate_fields(&self) -> [u64; 8] {
        [
            self.rx_bytes,
            self.tx_bytes,
            self.rx_pkts,
            self.tx_pkts,
            self.rx_errs,
            self.tx_errs,
            self.rx_drop,
            self.tx_drop,
        ]
    }
}

/// Remembers each domain's last CPU (and I/O) reading by UUID, to turn readings into
/// utilisation and rates.
#[derive(Debug, Clone, Default)]
pub struct UtilTracker {
    last: BTreeMap<String, (CpuSample, Option<IoCounters>)>,
}

impl UtilTracker {
    /// An empty tracker: the next update yields no utilisation for running domains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one listing taken at `now_ns`; domains not in it are forgotten, so one that comes
    /// back starts over. Domains that are not running use no CPU: their utilisation is 0.
    pub fn update(&mut self, now_ns: u64, domains: Vec<DomainInfo>) -> Vec<DomainSample> {
        self.update_with_io(now_ns, domains.into_iter().map(|d| (d, None)).collect())
    }

    /// [`UtilTracker::update`] with I/O counters: disk space is published from the first
    /// sample, rates from the second.
    pub fn update_with_io(
        &mut self,
        now_ns: u64,
        domains: Vec<(DomainInfo, Option<IoCounters>)>,
    ) -> Vec<DomainSample> {
        let mut next = BTreeMap::new();
        let out = domains
            .into_iter()
            .map(|(info, io)| {
                let cur = CpuSample {
                    cpu_time_ns: info.cpu_time_ns,
                    at_ns: now_ns,
                };
                let prev = self.last.get(&info.uuid);
                let util = match info.state {
                    DomainState::Running => {
                        prev.and_then(|(p, _)| vcpu_util(*p, cur, info.vcpus_current))
                    }
                    _ => Some(0.0),
                };
                let rates = io.map(|c| {
                    let prev_io =
                        prev.and_then(|(p, pio)| Some((now_ns.checked_sub(p.at_ns)?, (*pio)?)));
                    IoRates {
                        disk_space: c.disk.map(|d| (d.capacity_bytes, d.allocation_bytes)),
                        disk: match (prev_io.and_then(|(dt, p)| Some((dt, p.disk?))), c.disk) {
                            (Some((dt, p)), Some(d)) => {
                                counter_rates(p.rate_fields(), d.rate_fields(), dt)
                            }
                            _ => None,
                        },
                        net: match (prev_io.and_then(|(dt, p)| Some((dt, p.net?))), c.net) {
                            (Some((dt, p)), Some(n)) => {
                                counter_rates(p.rate_fields(), n.rate_fields(), dt)
                            }
                            _ => None,
                        },
                    }
                });
                next.insert(info.uuid.clone(), (cur, io));
                DomainSample {
                    info,
                    vcpu_util: util,
                    io: rates,
                }
            })
            .collect();
        self.last = next;
        out
    }
}

/// One metric ready for the sender: metadata plus value.
#[derive(Debug, Clone, PartialEq)]
pub struct VmMetric {
    /// Full name (`vnode_cpu_num`, `web1.vcpu_util`).
    pub name: String,
    /// The value, in the type announced by the metadata.
    pub value: MetricValue,
    /// printf format for the value (`%.1f`, `%hu`, `%s`).
    pub format: &'static str,
    /// Units text.
    pub units: &'static str,
    /// `"zero"` (constant) or `"both"`.
    pub slope: &'static str,
    /// Advisory seconds between updates.
    pub tmax: u32,
    /// Seconds until receivers delete the metric.
    pub dmax: u32,
    /// GROUP extra.
    pub group: &'static str,
    /// DESC extra.
    pub desc: &'static str,
    /// TITLE extra (`<prefix>: <title>` for per-VM metrics, as sFlow does).
    pub title: String,
    /// Further extras: `VM_UUID` on per-VM metrics.
    pub extras: Vec<(&'static str, String)>,
}

impl VmMetric {
    /// The XML/metadata TYPE of the value.
    pub fn value_type(&self) -> ValueType {
        self.value.value_type()
    }
}

struct Def {
    suffix: &'static str,
    format: &'static str,
    units: &'static str,
    slope: &'static str,
    group: &'static str,
    title: &'static str,
    desc: &'static str,
}

const HOST_GROUP: &str = "hypervisor";

const VNODE_CPU_NUM: Def = def(
    "vnode_cpu_num",
    "%hu",
    "CPUs",
    "zero",
    HOST_GROUP,
    "Hypervisor CPUs",
    "Physical CPUs of the hypervisor",
);
const VNODE_CPU_SPEED: Def = def(
    "vnode_cpu_speed",
    "%u",
    "MHz",
    "zero",
    HOST_GROUP,
    "Hypervisor CPU Speed",
    "Clock of the hypervisor CPUs",
);
const VNODE_MEM_TOTAL: Def = def(
    "vnode_mem_total",
    "%.0f",
    "KB",
    "zero",
    HOST_GROUP,
    "Hypervisor Memory Total",
    "Physical memory of the hypervisor",
);
const VNODE_MEM_FREE: Def = def(
    "vnode_mem_free",
    "%.0f",
    "KB",
    "both",
    HOST_GROUP,
    "Hypervisor Memory Free",
    "Memory of the hypervisor not in use",
);
const VNODE_DOMAINS: Def = def(
    "vnode_domains",
    "%u",
    "domains",
    "both",
    HOST_GROUP,
    "Hypervisor Domains",
    "Active (running or paused) domains on the hypervisor",
);
const VCPU_UTIL: Def = def(
    suffix::VCPU_UTIL,
    "%.1f",
    "%",
    "both",
    "vm cpu",
    "CPU Utilization",
    "CPU time used by the VM as a share of its vCPUs",
);
const VCPU_NUM: Def = def(
    suffix::VCPU_NUM,
    "%hu",
    "vCPUs",
    "both",
    "vm cpu",
    "vCPUs",
    "vCPUs online in the VM",
);
const VCPU_STATE: Def = def(
    suffix::VCPU_STATE,
    "%s",
    "",
    "zero",
    "vm cpu",
    "State",
    "Run state of the VM (running, paused, shutoff, crashed)",
);
const VMEM_TOTAL: Def = def(
    suffix::VMEM_TOTAL,
    "%.0f",
    "KB",
    "both",
    "vm memory",
    "Memory Total",
    "Memory currently given to the VM (balloon size)",
);
const VMEM_UTIL: Def = def(
    suffix::VMEM_UTIL,
    "%.1f",
    "%",
    "both",
    "vm memory",
    "Memory Utilization",
    "Memory used by the guest as a share of vmem_total",
);

const VDISK: &str = "vm disk";
const VNET: &str = "vm network";
const VDISK_CAPACITY: Def = def(
    "vdisk_capacity",
    "%.3f",
    "GB",
    "both",
    VDISK,
    "Disk Capacity",
    "Logical size of the VM disks",
);
const VDISK_TOTAL: Def = def(
    "vdisk_total",
    "%.3f",
    "GB",
    "both",
    VDISK,
    "Disk Allocated",
    "Host space allocated to the VM disks",
);
const VDISK_FREE: Def = def(
    "vdisk_free",
    "%.3f",
    "GB",
    "both",
    VDISK,
    "Disk Unallocated",
    "Capacity minus allocation of the VM disks",
);
const VDISK_RATES: [Def; 5] = [
    def(
        "vdisk_reads",
        "%.2f",
        "reads/sec",
        "both",
        VDISK,
        "Disk Reads",
        "Read requests per second",
    ),
    def(
        "vdisk_bytes_read",
        "%.2f",
        "bytes/sec",
        "both",
        VDISK,
        "Disk Bytes Read",
        "Bytes read per second",
    ),
    def(
        "vdisk_writes",
        "%.2f",
        "writes/sec",
        "both",
        VDISK,
        "Disk Writes",
        "Write requests per second",
    ),
    def(
        "vdisk_bytes_written",
        "%.2f",
        "bytes/sec",
        "both",
        VDISK,
        "Disk Bytes Written",
        "Bytes written per second",
    ),
    def(
        "vdisk_errs",
        "%.2f",
        "errors/sec",
        "both",
        VDISK,
        "Disk Errors",
        "Disk errors per second",
    ),
];
const VNET_RATES: [Def; 8] = [
    def(
        "vbytes_in",
        "%.2f",
        "bytes/sec",
        "both",
        VNET,
        "Bytes Received",
        "Bytes received per second",
    ),
    def(
        "vbytes_out",
        "%.2f",
        "bytes/sec",
        "both",
        VNET,
        "Bytes Sent",
        "Bytes sent per second",
    ),
    def(
        "vpkts_in",
        "%.2f",
        "packets/sec",
        "both",
        VNET,
        "Packets Received",
        "Packets received per second",
    ),
    def(
        "vpkts_out",
        "%.2f",
        "packets/sec",
        "both",
        VNET,
        "Packets Sent",
        "Packets sent per second",
    ),
    def(
        "verrs_in",
        "%.2f",
        "errors/sec",
        "both",
        VNET,
        "Receive Errors",
        "Receive errors per second",
    ),
    def(
        "verrs_out",
        "%.2f",
        "errors/sec",
        "both",
        VNET,
        "Send Errors",
        "Send errors per second",
    ),
    def(
        "vdrops_in",
        "%.2f",
        "packets/sec",
        "both",
        VNET,
        "Receive Drops",
        "Received packets dropped per second",
    ),
    def(
        "vdrops_out",
        "%.2f",
        "packets/sec",
        "both",
        VNET,
        "Send Drops",
        "Sent packets dropped per second",
    ),
];

const fn def(
    suffix: &'static str,
    format: &'static str,
    units: &'static str,
    slope: &'static str,
    group: &'static str,
    title: &'static str,
    desc: &'static str,
) -> Def {
    Def {
        suffix,
        format,
        units,
        slope,
        group,
        title,
        desc,
    }
}

fn host_metric(d: &Def, value: MetricValue) -> VmMetric {
    VmMetric {
        name: d.suffix.to_owned(),
        value,
        format: d.format,
        units: d.units,
        slope: d.slope,
        tmax: VM_TMAX,
        dmax: VM_DMAX,
        group: d.group,
        desc: d.desc,
        title: d.title.to_owned(),
        extras: Vec::new(),
    }
}

/// A host metric's definition, named and titled for one VM and tagged with its UUID.
fn vm_metric(prefix: &str, uuid: &str, d: &Def, value: MetricValue) -> VmMetric {
    VmMetric {
        name: format!("{prefix}.{}", d.suffix),
        title: format!("{prefix}: {}", d.title),
        extras: vec![(EXTRA_VM_UUID, sanitize_uuid(uuid))],
        ..host_metric(d, value)
    }
}

/// libvirt gives canonical UUIDs; anything else is cut down to hex digits and '-' so that the
/// extra stays safe in gmond's unescaped XML attributes.
fn sanitize_uuid(uuid: &str) -> String {
    uuid.chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .take(36)
        .collect()
}

/// The `vcpu_state` text of a state.
pub fn state_text(state: DomainState) -> &'static str {
    match state {
        DomainState::Running => "running",
        DomainState::Paused => "paused",
        DomainState::Shutoff => "shutoff",
        DomainState::Crashed => "crashed",
    }
}

/// Every metric for one round: the `vnode_*` host metrics, then per VM (ordered by prefix)
/// `vcpu_util` (when known), `vcpu_num`, `vcpu_state`, `vmem_total`, `vmem_util` (when the
/// current memory is not 0), then where I/O counters exist `vdisk_capacity`/`vdisk_total`/
/// `vdisk_free` and, from the second sample on, the disk and network rates.
///
/// Running and paused domains get all of them. Shut-off and crashed domains get only
/// `vcpu_state`: they hold neither CPU nor memory, and a consumer that needs `vcpu_num` to
/// count a VM (the balancer) ignores them. When two domains map to the same prefix (a hash
/// collision, see the module docs) the one with the smaller UUID wins and the other is dropped.
pub fn publish(host: &HostCapacity, domains: &[DomainSample]) -> Vec<VmMetric> {
    let active = domains
        .iter()
        .filter(|d| matches!(d.info.state, DomainState::Running | DomainState::Paused))
        .count();
    let mut out = vec![
        host_metric(
            &VNODE_CPU_NUM,
            MetricValue::U16(u16::try_from(host.cpus).unwrap_or(u16::MAX)),
        ),
        host_metric(&VNODE_CPU_SPEED, MetricValue::U32(host.mhz)),
        host_metric(&VNODE_MEM_TOTAL, MetricValue::F64(host.mem_kib as f64)),
        host_metric(&VNODE_MEM_FREE, MetricValue::F64(host.mem_free_kib as f64)),
        host_metric(
            &VNODE_DOMAINS,
            MetricValue::U32(u32::try_from(active).unwrap_or(u32::MAX)),
        ),
    ];

    let mut by_prefix: BTreeMap<String, &DomainSample> = BTreeMap::new();
    for d in domains {
        let prefix = sanitize_vm_name(&d.info.name);
        match by_prefix.get(&prefix) {
            Some(other) if other.info.uuid <= d.info.uuid => {
                tracing::warn!(prefix = %prefix, kept = %other.info.uuid, dropped = %d.info.uuid,
                    "two domains map to one metric prefix");
            }
            _ => {
                by_prefix.insert(prefix, d);
            }
        }
    }

    for (prefix, d) in by_prefix {
        let i = &d.info;
        let m = |def: &Def, v: MetricValue| vm_metric(&prefix, &i.uuid, def, v);
        let state = MetricValue::Str(state_text(i.state).to_owned());
        if !matches!(i.state, DomainState::Running | DomainState::Paused) {
            out.push(m(&VCPU_STATE, state));
            continue;
        }
        if let Some(u) = d.vcpu_util {
            out.push(m(&VCPU_UTIL, MetricValue::F32(u as f32)));
        }
        let vcpus = u16::try_from(i.vcpus_current).unwrap_or(u16::MAX);
        out.push(m(&VCPU_NUM, MetricValue::U16(vcpus)));
        out.push(m(&VCPU_STATE, state));
        out.push(m(&VMEM_TOTAL, MetricValue::F64(i.mem_current_kib as f64)));
        if i.mem_current_kib > 0 {
            let used = i.mem_used_kib.min(i.mem_current_kib) as f64;
            let pct = used / i.mem_current_kib as f64 * 100.0;
            out.push(m(&VMEM_UTIL, MetricValue::F32(pct as f32)));
        }
        let Some(io) = &d.io else { continue };
        if let Some((cap, alloc)) = io.disk_space {
            let gb = |b: u64| MetricValue::F32((b as f64 / GIB) as f32);
            out.push(m(&VDISK_CAPACITY, gb(cap)));
            out.push(m(&VDISK_TOTAL, gb(alloc)));
            out.push(m(&VDISK_FREE, gb(cap.saturating_sub(alloc))));
        }
        for (defs, rates) in [
            (&VDISK_RATES[..], io.disk.as_ref().map(|r| &r[..])),
            (&VNET_RATES[..], io.net.as_ref().map(|r| &r[..])),
        ] {
            for (def, v) in defs.iter().zip(rates.unwrap_or(&[])) {
                out.push(m(def, MetricValue::F32(*v as f32)));
            }
        }
    }
    out
}

/// One collection round: capacity, the domain listing timed by `clock_ns` (monotonic ns, read
/// just before and after the listing; the midpoint is the sample time), CPU % from `tracker`,
/// then [`publish`]. Blocks as long as the hypervisor does: call it off the async runtime.
/// On error the tracker is unchanged.
pub fn collect_round(
    hv: &dyn Hypervisor,
    tracker: &mut UtilTracker,
    mut clock_ns: impl FnMut() -> u64,
) -> Result<Vec<VmMetric>, Error> {
    let capacity = hv.capacity()?;
    let before = clock_ns();
    let domains = hv.domains()?;
    let after = clock_ns();
    let at = before + after.saturating_sub(before) / 2;
    Ok(publish(&capacity, &tracker.update(at, domains)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, uuid: &str, state: DomainState) -> DomainInfo {
        DomainInfo {
            name: name.into(),
            uuid: uuid.into(),
            state,
            vcpus_current: 2,
            vcpus_max: 4,
            mem_max_kib: 2048,
            mem_current_kib: 1024,
            mem_used_kib: 256,
            cpu_time_ns: 0,
        }
    }

    #[test]
    fn cpu_percent_hand_computed() {
        // 1 s of CPU over 1 s on 2 vCPUs = 50 %.
        assert_eq!(
            cpu_util_percent(1_000_000_000, 1_000_000_000, 2),
            Some(50.0)
        );
        // 3 s of CPU over 10 s on 4 vCPUs = 7.5 %.
        assert_eq!(
            cpu_util_percent(3_000_000_000, 10_000_000_000, 4),
            Some(7.5)
        );
        // 15 ms over 60 s on 1 vCPU = 0.025 %.
        let v = cpu_util_percent(15_000_000, 60_000_000_000, 1).unwrap();
        assert!((v - 0.025).abs() < 1e-12, "{v}");
        // More CPU than wall time (accounting jitter) is clamped.
        assert_eq!(
            cpu_util_percent(3_000_000_000, 1_000_000_000, 2),
            Some(100.0)
        );
        assert_eq!(cpu_util_percent(0, 5, 1), Some(0.0));
        assert_eq!(cpu_util_percent(1, 0, 1), None);
        assert_eq!(cpu_util_percent(1, 1, 0), None);
    }

    #[test]
    fn vcpu_util_between_samples() {
        let a = CpuSample {
            cpu_time_ns: 10_000_000_000,
            at_ns: 1_000_000_000,
        };
        let b = CpuSample {
            cpu_time_ns: 10_500_000_000,
            at_ns: 2_000_000_000,
        };
        assert_eq!(vcpu_util(a, b, 1), Some(50.0));
        assert_eq!(vcpu_util(a, b, 4), Some(12.5));
        // Restarted domain: CPU time went backwards.
        assert_eq!(
            vcpu_util(
                b,
                CpuSample {
                    cpu_time_ns: 1,
                    at_ns: 3_000_000_000
                },
                1
            ),
            None
        );
        // Clock did not move or went backwards.
        assert_eq!(vcpu_util(b, b, 1), None);
        assert_eq!(vcpu_util(b, a, 1), None);
    }

    #[test]
    fn tracker_first_sample_has_no_value() {
        let mut t = UtilTracker::new();
        let mut d = dom("a", "u-a", DomainState::Running);
        d.vcpus_current = 2;
        d.cpu_time_ns = 5_000_000_000;
        let s = t.update(1_000_000_000, vec![d.clone()]);
        assert_eq!(s[0].vcpu_util, None);
        d.cpu_time_ns += 3_000_000_000; // 3 s over 2 s on 2 vCPUs = 75 %
        let s = t.update(3_000_000_000, vec![d.clone()]);
        assert_eq!(s[0].vcpu_util, Some(75.0));
        // Gone for a round: forgotten, so its return is a first sample again.
        assert!(t.update(4_000_000_000, vec![]).is_empty());
        d.cpu_time_ns += 1_000_000_000;
        let s = t.update(5_000_000_000, vec![d.clone()]);
        assert_eq!(s[0].vcpu_util, None);
        // Not running: no CPU use, known without history.
        let p = dom("p", "u-p", DomainState::Paused);
        assert_eq!(t.update(6_000_000_000, vec![p])[0].vcpu_util, Some(0.0));
    }

    #[test]
    fn clean_names_kept_verbatim() {
        for n in ["web1", "db.example.com", "a-b_c.9", "A"] {
            assert!(is_clean_vm_name(n), "{n}");
            assert_eq!(sanitize_vm_name(n), n);
        }
        let long = "x".repeat(MAX_VM_PREFIX_LEN);
        assert_eq!(sanitize_vm_name(&long), long);
    }

    #[test]
    fn unclean_names_replaced_and_hashed() {
        let s = sanitize_vm_name("batch: job \"7\"");
        assert_eq!(
            s,
            format!("batch__job__7_--{:08x}", fnv1a32(b"batch: job \"7\""))
        );
        // FNV-1a 32 reference values: "" -> 811c9dc5, "a" -> e40c292c.
        assert_eq!(sanitize_vm_name(""), "--811c9dc5");
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        // One '_' per character, not per byte.
        assert!(sanitize_vm_name("vm-é").starts_with("vm-_--"));
        // A clean-looking name with the marker in it is hashed too, so it cannot pose as a
        // sanitised one.
        assert_eq!(
            sanitize_vm_name("a--b"),
            format!("a--b--{:08x}", fnv1a32(b"a--b"))
        );
        // ':' and '_' differ in the hash, so these do not collide.
        assert_ne!(sanitize_vm_name("a:b"), sanitize_vm_name("a b"));
        assert_ne!(sanitize_vm_name("a:b"), "a_b");
        let long = "y".repeat(300);
        let s = sanitize_vm_name(&long);
        assert_eq!(s.len(), MAX_VM_PREFIX_LEN);
        assert!(s.starts_with(&"y".repeat(MAX_VM_PREFIX_LEN - 10)));
        assert_ne!(s, sanitize_vm_name(&"y".repeat(301)));
        for n in ["a/b", "<x>", "tab\there", "quote'", "amp&", "x\0y"] {
            let s = sanitize_vm_name(n);
            assert!(
                s.bytes().all(is_clean_byte) && s.contains(MARKER),
                "{n:?} -> {s:?}"
            );
        }
    }

    #[test]
    fn parse_inverts_naming() {
        for vm in ["web1", "db.example.com", "batch: job", "x.vcpu_util", "é"] {
            for m in VM_METRICS {
                let name = vm_metric_name(vm, m);
                let prefix = sanitize_vm_name(vm);
                assert_eq!(parse_vm_metric(&name), Some((prefix.as_str(), m)));
            }
        }
        assert_eq!(parse_vm_metric("vnode_cpu_num"), None);
        assert_eq!(parse_vm_metric("web1.cpu_user"), None);
        assert_eq!(parse_vm_metric(".vcpu_util"), None);
        assert_eq!(parse_vm_metric("h.vbytes_in"), Some(("h", "vbytes_in")));
    }

    #[test]
    fn publish_host_and_vm_metrics() {
        let host = HostCapacity {
            cpus: 8,
            mhz: 2400,
            mem_kib: 16_000_000,
            mem_free_kib: 9_000_000,
        };
        let doms = vec![
            DomainSample {
                info: dom("web1", "01", DomainState::Running),
                vcpu_util: Some(12.5),
                io: None,
            },
            DomainSample {
                info: dom("a:b", "02", DomainState::Paused),
                vcpu_util: Some(0.0),
                io: None,
            },
            DomainSample {
                info: dom("off", "03", DomainState::Shutoff),
                vcpu_util: Some(0.0),
                io: None,
            },
            DomainSample {
                info: dom("new", "04", DomainState::Running),
                vcpu_util: None,
                io: None,
            },
        ];
        let ms = publish(&host, &doms);
        let get = |n: &str| {
            ms.iter()
                .find(|m| m.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert_eq!(get("vnode_cpu_num").value, MetricValue::U16(8));
        assert_eq!(get("vnode_cpu_speed").value, MetricValue::U32(2400));
        assert_eq!(get("vnode_mem_total").value, MetricValue::F64(16_000_000.0));
        assert_eq!(get("vnode_mem_free").value, MetricValue::F64(9_000_000.0));
        assert_eq!(get("vnode_domains").value, MetricValue::U32(3));
        let u = get("web1.vcpu_util");
        assert_eq!(u.value, MetricValue::F32(12.5));
        assert_eq!(
            (u.format, u.units, u.slope, u.tmax, u.dmax),
            ("%.1f", "%", "both", 60, 600)
        );
        assert_eq!(u.title, "web1: CPU Utilization");
        assert_eq!(u.group, "vm cpu");
        assert_eq!(u.extras, vec![("VM_UUID", "01".to_owned())]);
        assert_eq!(get("web1.vmem_util").value, MetricValue::F32(25.0));
        assert_eq!(get("web1.vmem_total").value, MetricValue::F64(1024.0));
        assert_eq!(get("web1.vcpu_num").value, MetricValue::U16(2));
        let p = sanitize_vm_name("a:b");
        assert_eq!(
            get(&format!("{p}.vcpu_state")).value,
            MetricValue::Str("paused".into())
        );
        assert_eq!(
            get("off.vcpu_state").value,
            MetricValue::Str("shutoff".into())
        );
        assert!(ms
            .iter()
            .all(|m| !m.name.starts_with("off.") || m.name == "off.vcpu_state"));
        assert!(ms.iter().all(|m| m.name != "new.vcpu_util"));
        assert!(ms.iter().any(|m| m.name == "new.vcpu_num"));
        for m in &ms {
            // Real gmond does not escape NAME or extras in its XML: keep them plain.
            let texts = [m.name.as_str(), m.title.as_str(), m.desc, m.group, m.units];
            for t in texts {
                assert!(!t.contains(['"', '\'', '<', '>', '&']), "{t:?}");
            }
            assert_eq!((m.tmax, m.dmax), (60, 600), "{}", m.name);
            assert!(!m.group.is_empty() && !m.desc.is_empty() && !m.title.is_empty());
        }
    }

    #[test]
    fn collect_round_against_the_simulator() {
        use crate::hypervisor::profile::Profile;
        use crate::hypervisor::sim::{SimCluster, SimHost};
        let mut c = SimCluster::new(7);
        let host = SimHost {
            name: "hv".into(),
            cpus: 8,
            mhz: 2000,
            mem_kib: 1 << 24,
            link_bps: 1_000_000_000,
            up: true,
        };
        c.add_host(host).unwrap();
        c.add_domain("quarter", 2, 4000.0, 1 << 20, 0, Profile::Constant(0.25))
            .unwrap();
        c.add_domain("busy", 4, 8000.0, 1 << 21, 0, Profile::Constant(1.0))
            .unwrap();
        let mut tracker = UtilTracker::new();
        // The clock is read around the listing; the sim's listing takes no time.
        let ms = collect_round(&c.host_view("hv"), &mut tracker, || 0).unwrap();
        assert!(ms.iter().all(|m| !m.name.ends_with(".vcpu_util")));
        c.advance_to(10_000).unwrap();
        let ms = collect_round(&c.host_view("hv"), &mut tracker, || 10_000_000_000).unwrap();
        let util = |n: &str| ms.iter().find(|m| m.name == n).map(|m| m.value.clone());
        assert_eq!(util("quarter.vcpu_util"), Some(MetricValue::F32(25.0)));
        assert_eq!(util("busy.vcpu_util"), Some(MetricValue::F32(100.0)));
        assert_eq!(util("vnode_domains"), Some(MetricValue::U32(2)));
        // The sample time is the midpoint of the two clock readings.
        c.advance_to(20_000).unwrap();
        let mut t = [19_000_000_000u64, 21_000_000_000].into_iter();
        let ms = collect_round(&c.host_view("hv"), &mut tracker, || t.next().unwrap()).unwrap();
        assert_eq!(
            ms.iter()
                .find(|m| m.name == "quarter.vcpu_util")
                .unwrap()
                .value,
            MetricValue::F32(25.0)
        );
        // A host that is down: an error, tracker untouched.
        assert!(collect_round(&c.host_view("nope"), &mut tracker, || 0).is_err());
    }

    #[test]
    fn counter_rates_hand_computed() {
        assert_eq!(
            counter_rates([0, 100], [50, 400], 2_000_000_000),
            Some([25.0, 150.0])
        );
        assert_eq!(counter_rates([10], [10], 500_000_000), Some([0.0]));
        // Reset counter or no time: no rates.
        assert_eq!(counter_rates([10, 5], [20, 4], 1_000_000_000), None);
        assert_eq!(counter_rates([1], [2], 0), None);
    }

    #[test]
    fn io_rates_from_the_second_sample() {
        let d = dom("io", "0a", DomainState::Running);
        let disk = DiskCounters {
            rd_reqs: 100,
            rd_bytes: 1 << 20,
            wr_reqs: 10,
            wr_bytes: 4096,
            errs: 0,
            capacity_bytes: 10 << 30,
            allocation_bytes: 4 << 30,
        };
        let net = NetCounters {
            rx_bytes: 1000,
            tx_bytes: 500,
            ..NetCounters::default()
        };
        let io = IoCounters {
            disk: Some(disk),
            net: Some(net),
        };
        let mut t = UtilTracker::new();
        let s = t.update_with_io(0, vec![(d.clone(), Some(io))]);
        let r = s[0].io.unwrap();
        assert_eq!(r.disk_space, Some((10 << 30, 4 << 30)));
        assert_eq!((r.disk, r.net), (None, None));
        let host = HostCapacity {
            cpus: 1,
            mhz: 1,
            mem_kib: 1,
            mem_free_kib: 1,
        };
        let ms = publish(&host, &s);
        let get =
            |ms: &[VmMetric], n: &str| ms.iter().find(|m| m.name == n).map(|m| m.value.clone());
        assert_eq!(get(&ms, "io.vdisk_capacity"), Some(MetricValue::F32(10.0)));
        assert_eq!(get(&ms, "io.vdisk_total"), Some(MetricValue::F32(4.0)));
        assert_eq!(get(&ms, "io.vdisk_free"), Some(MetricValue::F32(6.0)));
        assert_eq!(get(&ms, "io.vdisk_reads"), None);

        // 4 s later: 40 more reads, 4 KiB more read, 2000 more bytes in.
        let disk2 = DiskCounters {
            rd_reqs: 140,
            rd_bytes: (1 << 20) + 4096,
            ..disk
        };
        let net2 = NetCounters {
            rx_bytes: 3000,
            ..net
        };
        let io2 = IoCounters {
            disk: Some(disk2),
            net: Some(net2),
        };
        let s = t.update_with_io(4_000_000_000, vec![(d.clone(), Some(io2))]);
        let r = s[0].io.unwrap();
        assert_eq!(r.disk, Some([10.0, 1024.0, 0.0, 0.0, 0.0]));
        assert_eq!(r.net, Some([500.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]));
        let ms = publish(&host, &s);
        assert_eq!(get(&ms, "io.vdisk_reads"), Some(MetricValue::F32(10.0)));
        assert_eq!(
            get(&ms, "io.vdisk_bytes_read"),
            Some(MetricValue::F32(1024.0))
        );
        assert_eq!(get(&ms, "io.vbytes_in"), Some(MetricValue::F32(500.0)));
        assert_eq!(get(&ms, "io.vdrops_out"), Some(MetricValue::F32(0.0)));
        let io_names: Vec<&str> = ms
            .iter()
            .filter_map(|m| parse_vm_metric(&m.name))
            .map(|(_, s)| s)
            .filter(|s| VM_IO_METRICS.contains(s))
            .collect();
        assert_eq!(io_names, VM_IO_METRICS);
        for m in &ms {
            assert_eq!((m.tmax, m.dmax), (60, 600));
        }
        // A NIC that appears later starts its rates over.
        let s = t.update_with_io(
            8_000_000_000,
            vec![(
                d,
                Some(IoCounters {
                    disk: None,
                    net: Some(net2),
                }),
            )],
        );
        assert_eq!(s[0].io.unwrap().disk, None);
        assert!(s[0].io.unwrap().net.is_some());
    }

    #[test]
    fn publish_prefix_collision_keeps_smaller_uuid() {
        let host = HostCapacity {
            cpus: 1,
            mhz: 1,
            mem_kib: 1,
            mem_free_kib: 1,
        };
        let a = DomainSample {
            info: dom("same", "b2", DomainState::Running),
            vcpu_util: None,
            io: None,
        };
        let b = DomainSample {
            info: dom("same", "a1", DomainState::Running),
            vcpu_util: None,
            io: None,
        };
        let ms = publish(&host, &[a, b]);
        let n: Vec<_> = ms.iter().filter(|m| m.name == "same.vcpu_num").collect();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].extras[0].1, "a1");
    }
}
