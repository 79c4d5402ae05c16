//! A simulated hypervisor's own host metrics (load, CPU, memory, processes), derived from its
//! VMs and sent with gmond's metadata, so that gmetad and ganglia-web tell the demo's story.
//!
//! Left to gmond-rs's collectors, every demo host would report the real machine's load, CPU and
//! memory: the same on all hosts, and whatever the machine running the demo is doing. Instead,
//! each host's configuration leaves the [`DERIVED`] names out of its collection groups
//! ([`leave_out`]) and its VM source publishes them every round, from the simulated VMs and on
//! the simulated clock ([`HostMetrics::round`]). Names, types, formats, units, slopes, TMAX,
//! DMAX, TITLE, DESC and GROUP come from `gmond_metrics::linux::catalogue()`, as the daemon's own
//! collectors send them. Disk, network and system metrics stay the real machine's.

use gmond_conf::{Config, MetricMatch};
use gmond_metrics::linux::MetricValue;
use gmond_metrics::linux::{lookup, MetricSpec, ValueType};
use gmond_metrics::vmetrics::VmMetric;

/// The stock metrics a demo host derives from its VMs instead of collecting them.
pub const DERIVED: [&str; 21] = [
    "cpu_num",
    "cpu_speed",
    "cpu_user",
    "cpu_system",
    "cpu_idle",
    "cpu_nice",
    "cpu_aidle",
    "cpu_wio",
    "cpu_steal",
    "load_one",
    "load_five",
    "load_fifteen",
    "proc_run",
    "proc_total",
    "mem_total",
    "mem_free",
    "mem_shared",
    "mem_buffers",
    "mem_cached",
    "swap_total",
    "swap_free",
];

/// Share of a busy host's CPU time spent in its kernel (KVM exits, vhost); the rest is guest
/// time, which Linux counts as user time.
const SYSTEM_SHARE: f64 = 0.08;
/// Memory of the host's own OS, libvirtd and QEMU overhead, KiB (1 GiB).
const HOST_OS_KIB: u64 = 1 << 20;
/// Buffers and page cache the host keeps while memory allows, KiB (128 MiB, 2 GiB).
const BUFFERS_KIB: u64 = 128 << 10;
const CACHED_KIB: u64 = 2 << 20;
/// Shared memory (tmpfs, SysV) of the host's own processes, KiB (64 MiB).
const SHARED_KIB: u64 = 64 << 10;
/// Processes of the host's own (systemd, libvirtd, ...); each VM adds its QEMU process.
const HOST_PROCS: u64 = 150;
/// Time constants of Linux's load averages, seconds.
const LOAD_TAU_S: [f64; 3] = [60.0, 300.0, 900.0];

/// What a host and its VMs amount to in one collection round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostSample {
    /// Simulated time, ms.
    pub now_ms: u64,
    /// Physical CPUs.
    pub cpus: u32,
    /// MHz per CPU.
    pub mhz: u32,
    /// The VMs' CPU demand in CPUs (vCPU utilisation x vCPUs, summed): above `cpus` when the
    /// host is overcommitted.
    pub demand_cpus: f64,
    /// Memory, KiB.
    pub mem_kib: u64,
    /// Memory the VMs leave free, KiB.
    pub mem_free_kib: u64,
    /// VMs on the host.
    pub vms: usize,
}

/// A host's load averages and idle time, carried from round to round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMetrics {
    /// Load over 1, 5 and 15 minutes, and when it was last updated (simulated ms).
    load: Option<([f64; 3], u64)>,
    /// Idle and total CPU time since the first round, simulated ms (for `cpu_aidle`).
    idle_ms: f64,
    total_ms: f64,
}

impl HostMetrics {
    /// The [`DERIVED`] metrics for this round, in that order.
    pub fn round(&mut self, s: &HostSample) -> Vec<VmMetric> {
        let busy = (s.demand_cpus / f64::from(s.cpus.max(1))).clamp(0.0, 1.0);
        let load = self.advance_load(s.now_ms, s.demand_cpus);
        let aidle = self.advance_idle(s.now_ms, 1.0 - busy);
        let mem = Memory::of(s);
        let procs = HOST_PROCS + s.vms as u64;
        let values: [f64; 21] = [
            f64::from(s.cpus),
            f64::from(s.mhz),
            100.0 * busy * (1.0 - SYSTEM_SHARE),
            100.0 * busy * SYSTEM_SHARE,
            100.0 * (1.0 - busy),
            0.0,
            aidle,
            0.0,
            0.0,
            load[0],
            load[1],
            load[2],
            // Linux counts runnable threads: every vCPU thread with work, queued or not.
            s.demand_cpus.round(),
            procs as f64,
            s.mem_kib as f64,
            mem.free as f64,
            SHARED_KIB as f64,
            mem.buffers as f64,
            mem.cached as f64,
            // Hypervisors run without swap here: a swapping guest is what the balancer avoids.
            0.0,
            0.0,
        ];
        DERIVED
            .iter()
            .zip(values)
            .filter_map(|(name, v)| Some(metric(lookup(name)?, v)))
            .collect()
    }

    /// Linux's exponentially damped load averages, over simulated time. The first round
    /// starts them at the current load, as if the host had been running like this.
    fn advance_load(&mut self, now_ms: u64, runnable: f64) -> [f64; 3] {
        let load = match self.load {
            None => [runnable; 3],
            Some((prev, at)) => {
                let dt_s = now_ms.saturating_sub(at) as f64 / 1000.0;
                let mut next = prev;
                for (l, tau) in next.iter_mut().zip(LOAD_TAU_S) {
                    let keep = (-dt_s / tau).exp();
                    *l = *l * keep + runnable * (1.0 - keep);
                }
                next
            }
        };
        self.load = Some((load, now_ms));
        load
    }

    /// Idle percentage since the first round, the idle fraction held since the last round.
    fn advance_idle(&mut self, now_ms: u64, idle: f64) -> f64 {
        let dt = self
            .load
            .map_or(0, |(_, at)| now_ms.saturating_sub(at))
            .max(1) as f64;
        self.idle_ms += idle * dt;
        self.total_ms += dt;
        100.0 * self.idle_ms / self.total_ms
    }
}

/// Where a host's memory goes: the VMs, the host's own use, then buffers and cache while
/// memory allows, the rest free (KiB).
struct Memory {
    free: u64,
    buffers: u64,
    cached: u64,
}

impl Memory {
    fn of(s: &HostSample) -> Memory {
        let vms = s.mem_kib.saturating_sub(s.mem_free_kib);
        let left = s.mem_kib.saturating_sub(vms).saturating_sub(HOST_OS_KIB);
        let buffers = BUFFERS_KIB.min(left);
        let cached = CACHED_KIB.min(left - buffers);
        Memory {
            free: left - buffers - cached,
            buffers,
            cached,
        }
    }
}

/// `value` as the metric `spec` describes it, with the metadata gmond sends for it.
fn metric(spec: &MetricSpec, value: f64) -> VmMetric {
    let value = match spec.value_type {
        ValueType::U16 => MetricValue::U16(value.round().clamp(0.0, f64::from(u16::MAX)) as u16),
        ValueType::U32 => MetricValue::U32(value.round().clamp(0.0, f64::from(u32::MAX)) as u32),
        ValueType::F32 => MetricValue::F32(value as f32),
        ValueType::F64 => MetricValue::F64(value),
        ValueType::Str => MetricValue::Str(value.to_string()),
    };
    VmMetric {
        name: spec.name.to_owned(),
        value,
        format: spec.format,
        units: spec.units,
        slope: spec.slope,
        tmax: spec.tmax,
        dmax: spec.dmax,
        group: spec.group,
        desc: spec.desc,
        title: spec.title.to_owned(),
        extras: Vec::new(),
    }
}

/// Takes the [`DERIVED`] metrics out of `cfg`'s collection groups (a group left empty goes),
/// so the daemon's collectors do not send the real machine's figures under the same names.
pub fn leave_out(cfg: &mut Config) {
    for group in &mut cfg.collection_groups {
        group.metrics.retain(
            |sel| !matches!(&sel.matcher, MetricMatch::Name(n) if DERIVED.contains(&n.as_str())),
        );
    }
    cfg.collection_groups.retain(|g| !g.metrics.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now_ms: u64, demand_cpus: f64) -> HostSample {
        HostSample {
            now_ms,
            cpus: 4,
            mhz: 2000,
            demand_cpus,
            mem_kib: 16 << 20,
            mem_free_kib: 8 << 20,
            vms: 4,
        }
    }

    fn value(ms: &[VmMetric], name: &str) -> f64 {
        match &ms.iter().find(|m| m.name == name).unwrap().value {
            MetricValue::U16(v) => f64::from(*v),
            MetricValue::U32(v) => f64::from(*v),
            MetricValue::F32(v) => f64::from(*v),
            MetricValue::F64(v) => *v,
            MetricValue::Str(s) => panic!("{name} = {s:?}"),
        }
    }

    #[test]
    fn every_derived_metric_carries_gmonds_metadata() {
        let ms = HostMetrics::default().round(&sample(0, 1.0));
        let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, DERIVED);
        for m in &ms {
            let spec = lookup(&m.name).unwrap();
            assert_eq!(m.value_type(), spec.value_type, "{}", m.name);
            assert_eq!(
                (m.format, m.units, m.slope, m.tmax, m.dmax),
                (spec.format, spec.units, spec.slope, spec.tmax, spec.dmax)
            );
            assert_eq!(
                (m.group, m.desc, m.title.as_str()),
                (spec.group, spec.desc, spec.title)
            );
            assert!(m.extras.is_empty());
        }
    }

    #[test]
    fn an_overloaded_host_is_busy_and_its_load_follows_with_lag() {
        let mut h = HostMetrics::default();
        let calm = h.round(&sample(0, 1.0));
        assert_eq!(value(&calm, "load_one"), 1.0);
        assert_eq!(value(&calm, "cpu_idle"), 75.0);
        let cpu: f64 = [
            "cpu_user",
            "cpu_system",
            "cpu_idle",
            "cpu_nice",
            "cpu_wio",
            "cpu_steal",
        ]
        .iter()
        .map(|n| value(&calm, n))
        .sum();
        assert!((cpu - 100.0).abs() < 1e-3, "{cpu}");
        // Six CPUs of demand on four: saturated, and the load climbs towards 6.
        let hot = h.round(&sample(60_000, 6.0));
        assert_eq!(value(&hot, "cpu_idle"), 0.0);
        let (one, five, fifteen) = (
            value(&hot, "load_one"),
            value(&hot, "load_five"),
            value(&hot, "load_fifteen"),
        );
        // One time constant: 1 + 5 (1 - 1/e).
        assert!((one - 4.16).abs() < 0.01, "{one}");
        assert!(one > five && five > fifteen && fifteen > 1.0);
        assert_eq!(value(&hot, "proc_run"), 6.0);
        // Half the time idle at 75 %, half at 0 %.
        assert!((value(&hot, "cpu_aidle") - 37.5).abs() < 0.1);
        let later = h.round(&sample(600_000, 6.0));
        assert!(value(&later, "load_one") > 5.99);
    }

    #[test]
    fn memory_adds_up_to_the_total() {
        let ms = HostMetrics::default().round(&sample(0, 0.0));
        assert_eq!(value(&ms, "mem_total"), f64::from(16u32 << 20));
        let vms = f64::from(8u32 << 20);
        let host = (HOST_OS_KIB) as f64;
        let parts = value(&ms, "mem_free") + value(&ms, "mem_buffers") + value(&ms, "mem_cached");
        assert_eq!(parts + vms + host, value(&ms, "mem_total"));
        // A full host leaves nothing free and does not underflow.
        let mut full = sample(0, 0.0);
        full.mem_free_kib = 0;
        let ms = HostMetrics::default().round(&full);
        assert_eq!(value(&ms, "mem_free"), 0.0);
        assert_eq!(value(&ms, "mem_cached"), 0.0);
    }

    #[test]
    fn the_demo_config_collects_none_of_them() {
        let mut cfg = gmond_conf::builtin_config().unwrap().config;
        let selected = |cfg: &Config| -> Vec<String> {
            let names: Vec<&str> = gmond_metrics::linux::catalogue()
                .iter()
                .map(|s| s.name)
                .collect();
            cfg.select_metrics(&names)
                .metrics
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert!(selected(&cfg).iter().any(|n| n == "load_one"));
        leave_out(&mut cfg);
        let left = selected(&cfg);
        assert!(
            left.iter().all(|n| !DERIVED.contains(&n.as_str())),
            "{left:?}"
        );
        for kept in ["heartbeat", "boottime", "bytes_in", "disk_free"] {
            assert!(left.iter().any(|n| n == kept), "{kept} gone: {left:?}");
        }
        assert!(cfg.collection_groups.iter().all(|g| !g.metrics.is_empty()));
    }
}
