//! The stock Linux metric set of gmond 3.7.2: catalogue plus a collector over /proc, /sys
//! and statvfs.
//!
//! [`catalogue()`] describes every metric exactly as real gmond announces it (type, printf
//! format, units, slope, tmax, TITLE/DESC/GROUP). [`LinuxCollector`] computes values the way
//! gmond's `libmetrics/linux` code does, reading files below a configurable root so tests
//! can use a fake tree. Time is an input: rate metrics keep their previous sample inside the
//! collector and nothing sleeps. What the first sample reports:
//!
//! * `cpu_user` .. `cpu_steal`, `cpu_intr`, `cpu_sintr`: the average **since boot** (the
//!   previous counters start at zero, as in gmond).
//! * `bytes_in/out`, `pkts_in/out`: counters since the interface came up divided by the
//!   seconds since the Unix epoch, i.e. about 0 (gmond's first value too).
//!
//! Scheduling collection groups, thresholds and encoding are the daemon's job.

mod catalogue;
mod cpu;
mod net;
pub mod procfs;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

pub use catalogue::{catalogue, lookup, MetricSpec, ValueType};
pub use cpu::{aidle_percent, CpuPercent, CpuRates};
pub use net::{NetRateValues, NetRates};

/// This machine's host name, as gethostname() gives it: what gmond sends as its own HOST
/// and what the balancer agent looks for in the view.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// A collected value, in the C type the metric's module uses.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// `unsigned short`.
    U16(u16),
    /// `unsigned int`.
    U32(u32),
    /// `float`.
    F32(f32),
    /// `double`.
    F64(f64),
    /// String.
    Str(String),
}

impl MetricValue {
    /// The type this value has (always the catalogue's type for the metric).
    pub fn value_type(&self) -> ValueType {
        match self {
            MetricValue::U16(_) => ValueType::U16,
            MetricValue::U32(_) => ValueType::U32,
            MetricValue::F32(_) => ValueType::F32,
            MetricValue::F64(_) => ValueType::F64,
            MetricValue::Str(_) => ValueType::Str,
        }
    }

    /// The value as a number (for value_threshold checks); `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetricValue::U16(v) => Some(f64::from(*v)),
            MetricValue::U32(v) => Some(f64::from(*v)),
            MetricValue::F32(v) => Some(f64::from(*v)),
            MetricValue::F64(v) => Some(*v),
            MetricValue::Str(_) => None,
        }
    }
}

/// Values that come from the daemon rather than the OS (gmond's `core_metrics` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreInfo {
    /// `heartbeat`: the daemon's start time, epoch seconds. `None`: the time of the
    /// collector's first `collect` call.
    pub start_time: Option<u32>,
    /// `location`: `host { location }` or `-l` (gmond's default "unspecified").
    pub location: String,
    /// `gexec`: `globals { gexec }` (reported as "ON"/"OFF").
    pub gexec: bool,
}

impl Default for CoreInfo {
    fn default() -> Self {
        CoreInfo {
            start_time: None,
            location: "unspecified".to_string(),
            gexec: false,
        }
    }
}

/// Size figures of one mounted file system, as statvfs gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// `f_bsize`: gmond multiplies block counts by this (not by `f_frsize`).
    pub block_size: u64,
    /// `f_blocks`.
    pub blocks: u64,
    /// `f_bavail`: blocks available to unprivileged users.
    pub blocks_available: u64,
}

/// Where disk space figures come from; tests substitute a fake.
pub trait FsStat: Send {
    /// statvfs of the mount point as written in /proc/mounts (escapes not decoded, as in
    /// gmond).
    fn statvfs(&self, mount_point: &str) -> std::io::Result<FsUsage>;
}

/// statvfs(2) on the real file system, mount points taken relative to `root`.
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
}

impl HostFs {
    /// Resolves mount points below `root` (`/` on a real host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFs { root: root.into() }
    }
}

impl FsStat for HostFs {
    fn statvfs(&self, mount_point: &str) -> std::io::Result<FsUsage> {
        let path = self.root.join(mount_point.trim_start_matches('/'));
        let st = rustix::fs::statvfs(&path)?;
        Ok(FsUsage {
            block_size: st.f_bsize,
            blocks: st.f_blocks,
            blocks_available: st.f_bavail,
        })
    }
}

/// A /proc file re-read at most once per `thresh` seconds (gmond's `timely_file`), so all
/// metrics of one collection round see the same contents.
#[derive(Debug)]
struct TimelyFile {
    rel_path: &'static str,
    thresh: f64,
    read_at: Option<f64>,
    /// Incremented on every successful read; rate state remembers which read it used.
    seq: u64,
    text: String,
}

impl TimelyFile {
    const fn new(rel_path: &'static str, thresh: f64) -> Self {
        TimelyFile {
            rel_path,
            thresh,
            read_at: None,
            seq: 0,
            text: String::new(),
        }
    }

    fn get(&mut self, root: &Path, now: f64) -> Result<(&str, u64, f64), Error> {
        let stale = match self.read_at {
            None => true,
            // A clock that went backwards forces a read instead of stalling until it
            // catches up (gmond would keep serving the old buffer).
            Some(at) => now - at > self.thresh || now < at,
        };
        if stale {
            self.text = read(root, self.rel_path)?;
            self.read_at = Some(now);
            self.seq += 1;
        }
        Ok((&self.text, self.seq, self.read_at.unwrap_or(now)))
    }
}

fn read(root: &Path, rel: &str) -> Result<String, Error> {
    let path = root.join(rel);
    std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })
}

/// A parser's complaint about `rel`, under the file's full path.
fn parse_err(root: &Path, rel: &str, e: Error) -> Error {
    Error::Parse {
        path: root.join(rel),
        detail: e.detail(),
    }
}

const PROC_STAT: &str = "proc/stat";
const PROC_MEMINFO: &str = "proc/meminfo";
const PROC_LOADAVG: &str = "proc/loadavg";
const PROC_NET_DEV: &str = "proc/net/dev";
const PROC_MOUNTS: &str = "proc/mounts";
const PROC_CPUINFO: &str = "proc/cpuinfo";
const OSRELEASE: &str = "proc/sys/kernel/osrelease";
const CPU_ONLINE: &str = "sys/devices/system/cpu/online";
const SCALING_MAX_FREQ: &str = "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq";

/// Collects the stock Linux metrics from files below a root directory.
///
/// Holds the previous samples of the rate metrics and gmond's short file caches; one
/// collector per daemon. Not thread-safe by itself (`&mut self`), but `Send`.
pub struct LinuxCollector {
    root: PathBuf,
    fs: Box<dyn FsStat>,
    core: CoreInfo,
    started: Option<u32>,
    stat: TimelyFile,
    meminfo: TimelyFile,
    loadavg: TimelyFile,
    net_dev: TimelyFile,
    net_seq: Option<u64>,
    cpu: CpuRates,
    net: NetRates,
    cpu_speed: Option<u32>,
}

impl std::fmt::Debug for LinuxCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxCollector")
            .field("root", &self.root)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl LinuxCollector {
    /// A collector reading `<root>/proc/...` and `<root>/sys/...` (root `/` on a real
    /// host) and calling statvfs on mount points below `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref().to_path_buf();
        LinuxCollector {
            fs: Box::new(HostFs::new(root.clone())),
            root,
            core: CoreInfo::default(),
            started: None,
            // Cache periods are gmond's: stat and net/dev 1 s, loadavg and meminfo 5 s.
            stat: TimelyFile::new(PROC_STAT, 1.0),
            meminfo: TimelyFile::new(PROC_MEMINFO, 5.0),
            loadavg: TimelyFile::new(PROC_LOADAVG, 5.0),
            net_dev: TimelyFile::new(PROC_NET_DEV, net::MIN_INTERVAL),
            net_seq: None,
            cpu: CpuRates::new(),
            net: NetRates::new(),
            cpu_speed: None,
        }
    }

    /// Replaces the statvfs source (tests use a fake).
    pub fn with_fs_stat(mut self, fs: impl FsStat + 'static) -> Self {
        self.fs = Box::new(fs);
        self
    }

    /// Sets the daemon-provided values (heartbeat, location, gexec).
    pub fn with_core(mut self, core: CoreInfo) -> Self {
        self.core = core;
        self
    }

    /// The root this collector reads below.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Collects one metric at time `now`. The value's type is the catalogue's type.
    pub fn collect(&mut self, name: &str, now: SystemTime) -> Result<MetricValue, Error> {
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let now_u32 = epoch_u32(now_s);
        if self.started.is_none() {
            self.started = Some(self.core.start_time.unwrap_or(now_u32));
        }
        use MetricValue::{Str, F32, F64, U16, U32};
        let v = match name {
            "heartbeat" => U32(self.started.unwrap_or(now_u32)),
            "location" => Str(self.core.location.clone()),
            "gexec" => Str(if self.core.gexec { "ON" } else { "OFF" }.to_string()),
            "cpu_num" => U16(self.cpu_num()?),
            "cpu_speed" => U32(self.cpu_speed()),
            "cpu_aidle" => F32(aidle_percent(&self.stat_snapshot(now_s)?.0)),
            "boottime" => U32(self.stat_snapshot(now_s)?.0.btime),
            "sys_clock" => U32(now_u32),
            "machine_type" => Str(machine_type().to_string()),
            "os_name" => Str("Linux".to_string()),
            "os_release" => Str(self.os_release()?),
            "mtu" => U32(self.min_mtu()),
            "mem_total" => F32(self.meminfo(now_s, "MemTotal:")?),
            "mem_free" => F32(self.meminfo(now_s, "MemFree:")?),
            // Gone from the kernel since 2.5.52, so 0 on every current system (as gmond).
            "mem_shared" => F32(self.meminfo(now_s, "MemShared:")?),
            "mem_buffers" => F32(self.meminfo(now_s, "Buffers:")?),
            "mem_cached" => F32(self.meminfo(now_s, "Cached:")?),
            "mem_sreclaimable" => F32(self.meminfo(now_s, "SReclaimable:")?),
            "swap_total" => F32(self.meminfo(now_s, "SwapTotal:")?),
            "swap_free" => F32(self.meminfo(now_s, "SwapFree:")?),
            "load_one" => F32(self.loadavg(now_s)?.one),
            "load_five" => F32(self.loadavg(now_s)?.five),
            "load_fifteen" => F32(self.loadavg(now_s)?.fifteen),
            // gmond subtracts itself (the reader is always running). It would wrap a 0 to
            // 4294967295; saturating keeps a hand-made 0 at 0.
            "proc_run" => U32(self.loadavg(now_s)?.running.saturating_sub(1)),
            "proc_total" => U32(self.loadavg(now_s)?.total),
            "bytes_in" => F32(self.net_rates(now_s)?.bytes_in),
            "bytes_out" => F32(self.net_rates(now_s)?.bytes_out),
            "pkts_in" => F32(self.net_rates(now_s)?.pkts_in),
            "pkts_out" => F32(self.net_rates(now_s)?.pkts_out),
            "disk_total" => F64(self.disk_space()?.total_gb),
            "disk_free" => F64(self.disk_space()?.free_gb),
            "part_max_used" => F32(self.disk_space()?.max_used_pct),
            other => match CpuPercent::from_metric(other) {
                Some(which) => {
                    let (snap, seq) = self.stat_snapshot(now_s)?;
                    F32(self.cpu.percent(which, &snap, seq))
                }
                None => return Err(Error::UnknownMetric(other.to_string())),
            },
        };
        debug_assert_eq!(
            lookup(name).map(|s| s.value_type),
            Some(v.value_type()),
            "catalogue and collector disagree on the type of {name}"
        );
        Ok(v)
    }

    /// Collects every catalogue metric at `now`, in catalogue order.
    pub fn collect_all(
        &mut self,
        now: SystemTime,
    ) -> Vec<(&'static MetricSpec, Result<MetricValue, Error>)> {
        catalogue()
            .iter()
            .map(|spec| (spec, self.collect(spec.name, now)))
            .collect()
    }

    fn stat_snapshot(&mut self, now: f64) -> Result<(procfs::StatSnapshot, u64), Error> {
        let (text, seq, _) = self.stat.get(&self.root, now)?;
        let snap = procfs::parse_stat(text).map_err(|d| parse_err(&self.root, PROC_STAT, d))?;
        Ok((snap, seq))
    }

    fn meminfo(&mut self, now: f64, key: &str) -> Result<f32, Error> {
        let (text, _, _) = self.meminfo.get(&self.root, now)?;
        let kb =
            procfs::meminfo_kb(text, key).map_err(|d| parse_err(&self.root, PROC_MEMINFO, d))?;
        // gmond's value is a C float: large sizes lose their low bits exactly like this.
        Ok(kb.unwrap_or(0.0) as f32)
    }

    fn loadavg(&mut self, now: f64) -> Result<procfs::LoadAvg, Error> {
        let (text, _, _) = self.loadavg.get(&self.root, now)?;
        procfs::parse_loadavg(text).map_err(|d| parse_err(&self.root, PROC_LOADAVG, d))
    }

    fn net_rates(&mut self, now: f64) -> Result<NetRateValues, Error> {
        let (text, seq, read_at) = self.net_dev.get(&self.root, now)?;
        if self.net_seq == Some(seq) {
            return Ok(self.net.values());
        }
        let ifaces =
            procfs::parse_net_dev(text).map_err(|d| parse_err(&self.root, PROC_NET_DEV, d))?;
        self.net_seq = Some(seq);
        let vlan_dir = self.root.join("proc/net/vlan");
        // gmond asks the kernel with SIOCGIFVLAN; the 8021q module lists the same
        // interfaces under /proc/net/vlan.
        Ok(self
            .net
            .update(read_at, &ifaces, |name| vlan_dir.join(name).exists()))
    }

    /// `get_nprocs()`: online CPUs from sysfs, else the number of `cpuN` lines in /proc/stat.
    fn cpu_num(&mut self) -> Result<u16, Error> {
        if let Ok(text) = read(&self.root, CPU_ONLINE) {
            if let Ok(n) = procfs::count_cpu_list(&text) {
                return Ok(u16::try_from(n).unwrap_or(u16::MAX));
            }
        }
        let text = read(&self.root, PROC_STAT)?;
        let snap = procfs::parse_stat(&text).map_err(|d| parse_err(&self.root, PROC_STAT, d))?;
        Ok(u16::try_from(snap.cpu_lines).unwrap_or(u16::MAX))
    }

    /// Read once, like gmond does at start-up: cpufreq's maximum if present, else the
    /// first `cpu MHz` in /proc/cpuinfo; 0 when neither exists (e.g. most ARM boards).
    fn cpu_speed(&mut self) -> u32 {
        if let Some(v) = self.cpu_speed {
            return v;
        }
        let v = read(&self.root, SCALING_MAX_FREQ)
            .ok()
            .and_then(|t| procfs::cpufreq_mhz(&t))
            .filter(|v| *v != 0)
            .or_else(|| {
                read(&self.root, PROC_CPUINFO)
                    .ok()
                    .and_then(|t| procfs::cpuinfo_mhz(&t))
            })
            .unwrap_or(0);
        self.cpu_speed = Some(v);
        v
    }

    fn os_release(&self) -> Result<String, Error> {
        let text = read(&self.root, OSRELEASE)?;
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
    }

    /// Smallest MTU of the interfaces that are up and carry IPv4 (gmond walks SIOCGIFCONF).
    /// Approximated from sysfs: up, and either loopback or holding an IPv4 route.
    fn min_mtu(&self) -> u32 {
        const IFF_UP: u32 = 0x1;
        const IFF_LOOPBACK: u32 = 0x8;
        let routed: HashSet<String> = read(&self.root, "proc/net/route")
            .map(|t| {
                t.lines()
                    .skip(1)
                    .filter_map(|l| l.split_ascii_whitespace().next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let Ok(dir) = std::fs::read_dir(self.root.join("sys/class/net")) else {
            return 0;
        };
        let mut min: Option<u32> = None;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let num = |file: &str| -> Option<u32> {
                let t = std::fs::read_to_string(entry.path().join(file)).ok()?;
                let t = t.trim();
                match t.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => t.parse().ok(),
                }
            };
            let (Some(flags), Some(mtu)) = (num("flags"), num("mtu")) else {
                continue;
            };
            if flags & IFF_UP != 0 && (flags & IFF_LOOPBACK != 0 || routed.contains(&name)) {
                min = Some(min.map_or(mtu, |m| m.min(mtu)));
            }
        }
        min.unwrap_or(0)
    }

    /// gmond's `find_disk_space`, run afresh for each of the three disk metrics.
    fn disk_space(&self) -> Result<DiskSpace, Error> {
        let text = read(&self.root, PROC_MOUNTS)?;
        let mut seen = HashSet::new();
        let (mut total, mut free, mut max_used) = (0.0f64, 0.0f64, 0.0f32);
        for m in procfs::local_mounts(&text) {
            // A device mounted twice (bind mounts) is counted once, at its first mount.
            if !seen.insert(m.device.clone()) {
                continue;
            }
            let usage = match self.fs.statvfs(&m.mount_point) {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(mount = %m.mount_point, error = %e, "statvfs failed, mount skipped");
                    continue;
                }
            };
            let size = usage.blocks as f64;
            let avail = usage.blocks_available as f64;
            let bsize = usage.block_size as f64;
            total += size * bsize;
            free += avail * bsize;
            let pct = if usage.blocks != 0 {
                ((size - avail) / size * 100.0) as f32
            } else {
                0.0
            };
            if pct > max_used {
                max_used = pct;
            }
        }
        Ok(DiskSpace {
            total_gb: total / 1e9,
            free_gb: free / 1e9,
            max_used_pct: max_used,
        })
    }
}

struct DiskSpace {
    total_gb: f64,
    free_gb: f64,
    max_used_pct: f32,
}

fn epoch_u32(secs: f64) -> u32 {
    if secs <= 0.0 {
        0
    } else if secs >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and non-negative: truncation is the intended whole-second value.
        secs as u32
    }
}

/// gmond's compile-time architecture names; architectures it has no name for (aarch64,
/// riscv64, ...) get Rust's name instead of gmond's uninitialised buffer.
pub fn machine_type() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "x86",
        "x86_64" => "x86_64",
        "powerpc" | "powerpc64" => "powerpc",
        "sparc" | "sparc64" => "sparc",
        "mips" | "mips64" => "mips",
        "arm" => "arm",
        "m68k" => "m68k",
        "s390x" => "s390",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_types_and_numbers() {
        assert_eq!(MetricValue::U16(2).as_f64(), Some(2.0));
        assert_eq!(MetricValue::Str("x".into()).as_f64(), None);
        assert_eq!(MetricValue::F64(1.5).value_type(), ValueType::F64);
    }

    #[test]
    fn epoch_conversion_saturates() {
        assert_eq!(epoch_u32(-5.0), 0);
        assert_eq!(epoch_u32(1_795_313_226.9), 1_795_313_226);
        assert_eq!(epoch_u32(1e12), u32::MAX);
    }

    #[test]
    fn machine_type_on_this_build() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(machine_type(), "x86_64");
        assert!(!machine_type().is_empty());
    }
}
