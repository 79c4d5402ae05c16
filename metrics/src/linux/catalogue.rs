//! Static description of every metric the stock Linux gmond 3.7.2 modules offer.
//!
//! The fields are what real gmond puts into its metadata packets and XML: the module's
//! C type, printf format, units, slope string, tmax, description, plus the TITLE and GROUP
//! that the built-in default configuration (`gmond -t`) attaches. Cross-checked against a
//! captured XML dump and `gmond -m` of the Debian 3.7.2 binary (see `tests/linux_catalogue.rs`).

/// The C type a module reports a value in; it decides the wire message id and XML TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `unsigned short`, sent as message 129.
    U16,
    /// `unsigned int`, sent as message 132.
    U32,
    /// `float`, sent as message 134.
    F32,
    /// `double`, sent as message 135.
    F64,
    /// String, sent as message 133.
    Str,
}

impl ValueType {
    /// The TYPE text gmond writes into metadata and the XML feed.
    pub const fn type_name(self) -> &'static str {
        match self {
            ValueType::U16 => "uint16",
            ValueType::U32 => "uint32",
            ValueType::F32 => "float",
            ValueType::F64 => "double",
            ValueType::Str => "string",
        }
    }

    /// The id of the value message (`gmetric_ushort` = 129 ... `gmetric_double` = 135).
    pub const fn wire_id(self) -> u32 {
        match self {
            ValueType::U16 => 129,
            ValueType::U32 => 132,
            ValueType::Str => 133,
            ValueType::F32 => 134,
            ValueType::F64 => 135,
        }
    }
}

/// One metric as gmond's module table and default configuration describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// Metric name (`cpu_num`).
    pub name: &'static str,
    /// C type of the value.
    pub value_type: ValueType,
    /// printf format carried in every value packet (`%hu`, `%.1f`, ...).
    pub format: &'static str,
    /// Units text, verbatim (the load and process metrics use a single space).
    pub units: &'static str,
    /// Slope text as the module states it: `"zero"`, `"both"`, or `""` (= unspecified).
    pub slope: &'static str,
    /// Advisory maximum seconds between updates (metadata tmax).
    pub tmax: u32,
    /// Seconds until receivers delete the metric; 0 (never) for every stock metric.
    pub dmax: u32,
    /// GROUP extra: the module's group.
    pub group: &'static str,
    /// TITLE extra: the default config's `title`, or the metric name when it has none.
    pub title: &'static str,
    /// DESC extra: the module's description.
    pub desc: &'static str,
    /// The gmond module providing it (as `gmond -m` prints).
    pub module: &'static str,
    /// Whether the stock default configuration collects and sends it.
    pub default: bool,
}

impl MetricSpec {
    /// The slope number used on the wire (0 zero, 3 both, 4 unspecified).
    pub fn slope_number(&self) -> u32 {
        match self.slope {
            "zero" => 0,
            "positive" => 1,
            "negative" => 2,
            "both" => 3,
            "derivative" => 5,
            _ => 4,
        }
    }

    /// The slope as the XML feed prints it (`""` becomes `unspecified`).
    pub fn slope_xml(&self) -> &'static str {
        if self.slope.is_empty() {
            "unspecified"
        } else {
            self.slope
        }
    }
}

/// Builds one catalogue row; keeps the table below one line per metric.
#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    value_type: ValueType,
    format: &'static str,
    units: &'static str,
    slope: &'static str,
    tmax: u32,
    group: &'static str,
    title: &'static str,
    desc: &'static str,
    module: &'static str,
    default: bool,
) -> MetricSpec {
    MetricSpec {
        name,
        value_type,
        format,
        units,
        slope,
        tmax,
        dmax: 0,
        group,
        title,
        desc,
        module,
        default,
    }
}

use ValueType::{Str, F32, F64, U16, U32};

const CORE: &str = "core_metrics";
const CPU: &str = "cpu_module";
const DISK: &str = "disk_module";
const LOAD: &str = "load_module";
const MEM: &str = "mem_module";
const NET: &str = "net_module";
const PROC: &str = "proc_module";
const SYS: &str = "sys_module";

/// Every metric, in the send order of the default configuration's collection groups, then
/// the extras that no default group collects.
#[rustfmt::skip]
static CATALOGUE: &[MetricSpec] = &[
    spec("heartbeat", U32, "%u", "", "", 20, "core", "heartbeat", "Last heartbeat", CORE, true),
    spec("cpu_num", U16, "%hu", "CPUs", "zero", 1200, "cpu", "CPU Count", "Total number of CPUs", CPU, true),
    spec("cpu_speed", U32, "%u", "MHz", "zero", 1200, "cpu", "CPU Speed", "CPU Speed in terms of MHz", CPU, true),
    spec("mem_total", F32, "%.0f", "KB", "zero", 1200, "memory", "Memory Total", "Total amount of memory displayed in KBs", MEM, true),
    spec("swap_total", F32, "%.0f", "KB", "zero", 1200, "memory", "Swap Space Total", "Total amount of swap space displayed in KBs", MEM, true),
    spec("boottime", U32, "%u", "s", "zero", 1200, "system", "Last Boot Time", "The last time that the system was started", SYS, true),
    spec("machine_type", Str, "%s", "", "zero", 1200, "system", "Machine Type", "System architecture", SYS, true),
    spec("os_name", Str, "%s", "", "zero", 1200, "system", "Operating System", "Operating system name", SYS, true),
    spec("os_release", Str, "%s", "", "zero", 1200, "system", "Operating System Release", "Operating system release date", SYS, true),
    spec("location", Str, "%s", "(x,y,z)", "", 1200, "core", "Location", "Location of the machine", CORE, true),
    spec("gexec", Str, "%s", "", "zero", 300, "core", "Gexec Status", "gexec available", CORE, true),
    spec("cpu_user", F32, "%.1f", "%", "both", 90, "cpu", "CPU User", "Percentage of CPU utilization that occurred while executing at the user level", CPU, true),
    spec("cpu_system", F32, "%.1f", "%", "both", 90, "cpu", "CPU System", "Percentage of CPU utilization that occurred while executing at the system level", CPU, true),
    spec("cpu_idle", F32, "%.1f", "%", "both", 90, "cpu", "CPU Idle", "Percentage of time that the CPU or CPUs were idle and the system did not have an outstanding disk I/O request", CPU, true),
    spec("cpu_nice", F32, "%.1f", "%", "both", 90, "cpu", "CPU Nice", "Percentage of CPU utilization that occurred while executing at the user level with nice priority", CPU, true),
    spec("cpu_aidle", F32, "%.1f", "%", "both", 3800, "cpu", "CPU aidle", "Percent of time since boot idle CPU", CPU, true),
    spec("cpu_wio", F32, "%.1f", "%", "both", 90, "cpu", "CPU wio", "Percentage of time that the CPU or CPUs were idle during which the system had an outstanding disk I/O request", CPU, true),
    spec("cpu_steal", F32, "%.1f", "%", "both", 90, "cpu", "CPU steal", "cpu_steal", CPU, true),
    spec("load_one", F32, "%.2f", " ", "both", 70, "load", "One Minute Load Average", "One minute load average", LOAD, true),
    spec("load_five", F32, "%.2f", " ", "both", 325, "load", "Five Minute Load Average", "Five minute load average", LOAD, true),
    spec("load_fifteen", F32, "%.2f", " ", "both", 950, "load", "Fifteen Minute Load Average", "Fifteen minute load average", LOAD, true),
    spec("proc_run", U32, "%u", " ", "both", 950, "process", "Total Running Processes", "Total number of running processes", PROC, true),
    spec("proc_total", U32, "%u", " ", "both", 950, "process", "Total Processes", "Total number of processes", PROC, true),
    spec("mem_free", F32, "%.0f", "KB", "both", 180, "memory", "Free Memory", "Amount of available memory", MEM, true),
    spec("mem_shared", F32, "%.0f", "KB", "both", 180, "memory", "Shared Memory", "Amount of shared memory", MEM, true),
    spec("mem_buffers", F32, "%.0f", "KB", "both", 180, "memory", "Memory Buffers", "Amount of buffered memory", MEM, true),
    spec("mem_cached", F32, "%.0f", "KB", "both", 180, "memory", "Cached Memory", "Amount of cached memory", MEM, true),
    spec("swap_free", F32, "%.0f", "KB", "both", 180, "memory", "Free Swap Space", "Amount of available swap memory", MEM, true),
    spec("bytes_out", F32, "%.2f", "bytes/sec", "both", 300, "network", "Bytes Sent", "Number of bytes out per second", NET, true),
    spec("bytes_in", F32, "%.2f", "bytes/sec", "both", 300, "network", "Bytes Received", "Number of bytes in per second", NET, true),
    spec("pkts_in", F32, "%.2f", "packets/sec", "both", 300, "network", "Packets Received", "Packets in per second", NET, true),
    spec("pkts_out", F32, "%.2f", "packets/sec", "both", 300, "network", "Packets Sent", "Packets out per second", NET, true),
    spec("disk_total", F64, "%.3f", "GB", "both", 1200, "disk", "Total Disk Space", "Total available disk space", DISK, true),
    spec("disk_free", F64, "%.3f", "GB", "both", 180, "disk", "Disk Space Available", "Total free disk space", DISK, true),
    spec("part_max_used", F32, "%.1f", "%", "both", 180, "disk", "Maximum Disk Space Used", "Maximum percent used for all partitions", DISK, true),
    // Not in any default collection group: a config naming them without `title` gets the
    // metric name as TITLE (the commented-out stock lines would give "CPU intr"/"CPU sintr").
    spec("cpu_intr", F32, "%.1f", "%", "both", 90, "cpu", "cpu_intr", "cpu_intr", CPU, false),
    spec("cpu_sintr", F32, "%.1f", "%", "both", 90, "cpu", "cpu_sintr", "cpu_sintr", CPU, false),
    spec("mem_sreclaimable", F32, "%.0f", "KB", "both", 180, "memory", "mem_sreclaimable", "Amount of reclaimable slab memory", MEM, false),
    spec("sys_clock", U32, "%u", "s", "zero", 1200, "system", "sys_clock", "Time as reported by the system clock", SYS, false),
    spec("mtu", U32, "%u", "", "both", 1200, "system", "mtu", "Network maximum transmission unit", SYS, false),
];

/// All metrics the stock Linux modules and core provide (40 of them), default set first.
pub fn catalogue() -> &'static [MetricSpec] {
    CATALOGUE
}

/// The catalogue row for `name` (exact, case-sensitive match).
pub fn lookup(name: &str) -> Option<&'static MetricSpec> {
    catalogue().iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_has_33_printed_metrics_plus_heartbeat_and_location() {
        let defaults: Vec<_> = catalogue().iter().filter(|s| s.default).collect();
        assert_eq!(defaults.len(), 35);
        let printed = defaults
            .iter()
            .filter(|s| s.name != "heartbeat" && s.name != "location")
            .count();
        assert_eq!(printed, 33);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = catalogue().iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue().len());
    }

    #[test]
    fn formats_match_value_types() {
        for s in catalogue() {
            let ok = match s.value_type {
                ValueType::U16 => s.format == "%hu",
                ValueType::U32 => s.format == "%u",
                ValueType::Str => s.format == "%s",
                ValueType::F32 | ValueType::F64 => s.format.ends_with('f'),
            };
            assert!(ok, "{}: {} with {:?}", s.name, s.format, s.value_type);
        }
    }

    #[test]
    fn slope_strings_map_like_gmond() {
        let hb = lookup("heartbeat").unwrap();
        assert_eq!((hb.slope_number(), hb.slope_xml()), (4, "unspecified"));
        let num = lookup("cpu_num").unwrap();
        assert_eq!((num.slope_number(), num.slope_xml()), (0, "zero"));
        let user = lookup("cpu_user").unwrap();
        assert_eq!((user.slope_number(), user.slope_xml()), (3, "both"));
        assert!(lookup("no_such_metric").is_none());
        assert!(lookup("CPU_NUM").is_none());
    }
}
