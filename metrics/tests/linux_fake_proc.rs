//! LinuxCollector on hand-written /proc and /sys trees: exact values, first-sample and
//! rate behaviour, counter wrap, error cases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gmond_metrics::linux::{catalogue, CoreInfo, FsStat, FsUsage, LinuxCollector, MetricValue};
use gmond_metrics::Error;
use MetricValue::{Str, F32, F64, U16, U32};

const T0: u64 = 1_795_313_226;

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const STAT_A: &str = "cpu  1000 100 400 8000 200 50 50 200 30 0\n\
cpu0 500 50 200 4000 100 25 25 100 15 0\n\
cpu1 500 50 200 4000 100 25 25 100 15 0\n\
intr 12345 0 0\nctxt 999\nbtime 1795300000\nprocesses 4242\nprocs_running 2\n";

// +300 user, +0 nice, +100 system, +20 irq, +30 softirq, +500 idle, +10 iowait, +40 steal
// => total +1000
const STAT_B: &str = "cpu  1300 100 500 8500 210 70 80 240 30 0\n\
cpu0 650 50 250 4250 105 35 40 120 15 0\n\
cpu1 650 50 250 4250 105 35 40 120 15 0\n\
intr 12345 0 0\nctxt 999\nbtime 1795300000\nprocesses 4242\nprocs_running 2\n";

const MEMINFO: &str = "MemTotal:       24683657 kB\n\
MemFree:         1234567 kB\n\
MemAvailable:   20000000 kB\n\
Buffers:           11072 kB\n\
Cached:          1455444 kB\n\
SwapCached:          128 kB\n\
Active:           900000 kB\n\
SwapTotal:       2097148 kB\n\
SwapFree:        2097000 kB\n\
Shmem:             40000 kB\n\
SReclaimable:      65432 kB\n";

const NET_HEADER: &str = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

fn net_dev(eth0: [u64; 4], eth1: [u64; 4]) -> String {
    let line = |name: &str, c: [u64; 4]| {
        format!(
            "{name:>6}: {} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n",
            c[0], c[1], c[2], c[3]
        )
    };
    let mut s = NET_HEADER.to_string();
    s += &line("lo", [1_000_000, 1000, 1_000_000, 1000]);
    s += &line("bond0", [9_000_000, 9000, 9_000_000, 9000]);
    s += &line("eth0.10", [5_000_000, 5000, 5_000_000, 5000]);
    s += &line("eth0", eth0);
    s += &line("eth1", eth1);
    s
}

const MOUNTS: &str = "proc /proc proc rw,relatime 0 0\n\
sysfs /sys sysfs rw,relatime 0 0\n\
/dev/vda / ext4 rw,relatime 0 0\n\
tmpfs /dev/shm tmpfs rw,relatime 0 0\n\
/dev/vdb /data xfs rw,relatime 0 0\n\
/dev/vdb /data-bind xfs rw,relatime 0 0\n\
/dev/vdc /readonly ext4 ro,relatime 0 0\n\
nas:/export /nfs nfs4 rw,relatime 0 0\n\
/dev/vdd /broken ext4 rw,relatime 0 0\n";

/// statvfs answers from a table; anything else fails like a vanished mount.
struct FakeFs(HashMap<&'static str, FsUsage>);

impl FsStat for FakeFs {
    fn statvfs(&self, mount_point: &str) -> std::io::Result<FsUsage> {
        self.0
            .get(mount_point)
            .copied()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn fake_fs() -> FakeFs {
    let u = |block_size, blocks, blocks_available| FsUsage {
        block_size,
        blocks,
        blocks_available,
    };
    FakeFs(HashMap::from([
        // 100 GB, 25 GB available => 75 % used
        ("/", u(4096, 24_414_062, 6_103_515)),
        // 50 GB, 40 GB available => 20 % used
        ("/data", u(1000, 50_000_000, 40_000_000)),
        // Must not be counted: second mount of /dev/vdb, read-only, remote, tmpfs.
        ("/data-bind", u(1000, 1_000_000_000, 0)),
        ("/readonly", u(1000, 1_000_000_000, 0)),
        ("/nfs", u(1000, 1_000_000_000, 0)),
        ("/dev/shm", u(1000, 1_000_000_000, 0)),
    ]))
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/stat", STAT_A);
    write(r, "proc/meminfo", MEMINFO);
    write(r, "proc/loadavg", "0.92 0.15 1.10 3/100 8564\n");
    write(r, "proc/net/dev", &net_dev([0, 0, 0, 0], [0, 0, 0, 0]));
    write(r, "proc/net/vlan/eth0.10", "eth0.10  VID: 10\n");
    write(r, "proc/mounts", MOUNTS);
    write(
        r,
        "proc/cpuinfo",
        "processor\t: 0\ncpu MHz\t\t: 2299.998\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n",
    );
    write(r, "proc/sys/kernel/osrelease", "6.18.44-fc-v657\n");
    write(r, "sys/devices/system/cpu/online", "0-3\n");
    write(
        r,
        "proc/net/route",
        "Iface\tDestination\tGateway\tFlags\n eth0\t0000000A\t00000000\t0001\n",
    );
    for (name, flags, mtu) in [
        ("lo", "0x9", 65536),
        ("eth0", "0x1003", 1500),
        ("eth1", "0x1003", 9000),
        ("eth2", "0x1002", 1400),
    ] {
        write(
            r,
            &format!("sys/class/net/{name}/flags"),
            &format!("{flags}\n"),
        );
        write(r, &format!("sys/class/net/{name}/mtu"), &format!("{mtu}\n"));
    }
    dir
}

fn collector(root: &Path) -> LinuxCollector {
    LinuxCollector::new(root).with_fs_stat(fake_fs())
}

fn get(c: &mut LinuxCollector, name: &str, t: f64) -> MetricValue {
    c.collect(name, at(t))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn f32_of(v: MetricValue) -> f32 {
    match v {
        F32(x) => x,
        other => panic!("not a float: {other:?}"),
    }
}

#[test]
fn static_metrics_read_exact_values() {
    let dir = tree();
    let mut c = collector(dir.path());
    let t = T0 as f64;
    assert_eq!(get(&mut c, "cpu_num", t), U16(4));
    assert_eq!(get(&mut c, "cpu_speed", t), U32(2299));
    // 24683657 is not representable in a C float; gmond sends the rounded value.
    assert_eq!(get(&mut c, "mem_total", t), F32(24_683_656.0));
    assert_eq!(get(&mut c, "mem_free", t), F32(1_234_567.0));
    assert_eq!(get(&mut c, "mem_buffers", t), F32(11072.0));
    // "Cached:" is found before "SwapCached:".
    assert_eq!(get(&mut c, "mem_cached", t), F32(1_455_444.0));
    assert_eq!(get(&mut c, "mem_shared", t), F32(0.0));
    assert_eq!(get(&mut c, "mem_sreclaimable", t), F32(65432.0));
    assert_eq!(get(&mut c, "swap_total", t), F32(2_097_148.0));
    assert_eq!(get(&mut c, "swap_free", t), F32(2_097_000.0));
    assert_eq!(get(&mut c, "boottime", t), U32(1_795_300_000));
    assert_eq!(get(&mut c, "sys_clock", t + 0.7), U32(T0 as u32));
    assert_eq!(get(&mut c, "os_name", t), Str("Linux".into()));
    assert_eq!(get(&mut c, "os_release", t), Str("6.18.44-fc-v657".into()));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(get(&mut c, "machine_type", t), Str("x86_64".into()));
    assert_eq!(get(&mut c, "load_one", t), F32(0.92));
    assert_eq!(get(&mut c, "load_five", t), F32(0.15));
    assert_eq!(get(&mut c, "load_fifteen", t), F32(1.10));
    // The running count includes gmond itself, which gmond subtracts.
    assert_eq!(get(&mut c, "proc_run", t), U32(2));
    assert_eq!(get(&mut c, "proc_total", t), U32(100));
    // lo (65536, loopback) and eth0 (1500, routed) count; eth1 has no IPv4 route, eth2 is down.
    assert_eq!(get(&mut c, "mtu", t), U32(1500));
}

#[test]
fn core_metrics_come_from_core_info() {
    let dir = tree();
    let mut c = collector(dir.path());
    assert_eq!(get(&mut c, "heartbeat", 2000.0), U32(2000));
    assert_eq!(
        get(&mut c, "heartbeat", 2500.0),
        U32(2000),
        "start time is fixed"
    );
    assert_eq!(get(&mut c, "location", 2500.0), Str("unspecified".into()));
    assert_eq!(get(&mut c, "gexec", 2500.0), Str("OFF".into()));
    let mut c = collector(dir.path()).with_core(CoreInfo {
        start_time: Some(1234),
        location: "1,2,3".into(),
        gexec: true,
    });
    assert_eq!(get(&mut c, "heartbeat", 2000.0), U32(1234));
    assert_eq!(get(&mut c, "location", 2000.0), Str("1,2,3".into()));
    assert_eq!(get(&mut c, "gexec", 2000.0), Str("ON".into()));
}

#[test]
fn cpu_speed_prefers_cpufreq_and_is_read_once() {
    let dir = tree();
    write(
        dir.path(),
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq",
        "3400000\n",
    );
    let mut c = collector(dir.path());
    assert_eq!(get(&mut c, "cpu_speed", 10.0), U32(3400));
    std::fs::remove_file(
        dir.path()
            .join("sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"),
    )
    .unwrap();
    assert_eq!(get(&mut c, "cpu_speed", 100.0), U32(3400));
    // Without cpufreq or cpuinfo gmond reports 0 (e.g. most ARM boards).
    std::fs::remove_file(dir.path().join("proc/cpuinfo")).unwrap();
    let mut c = collector(dir.path());
    assert_eq!(get(&mut c, "cpu_speed", 10.0), U32(0));
}

#[test]
fn cpu_num_falls_back_to_proc_stat() {
    let dir = tree();
    std::fs::remove_file(dir.path().join("sys/devices/system/cpu/online")).unwrap();
    let mut c = collector(dir.path());
    assert_eq!(get(&mut c, "cpu_num", 10.0), U16(2));
}

#[test]
fn cpu_first_sample_is_since_boot_and_next_is_the_delta() {
    let dir = tree();
    let mut c = collector(dir.path());
    let t = T0 as f64;
    // total since boot = 1000+100+400+8000+200+50+50+200 = 10000 (guest not added)
    let first = |c: &mut LinuxCollector, n: &str| f32_of(get(c, n, t));
    assert_eq!(first(&mut c, "cpu_user"), 10.0);
    assert_eq!(first(&mut c, "cpu_nice"), 1.0);
    assert_eq!(first(&mut c, "cpu_system"), 5.0, "system + irq + softirq");
    assert_eq!(first(&mut c, "cpu_idle"), 80.0);
    assert_eq!(first(&mut c, "cpu_wio"), 2.0);
    assert_eq!(first(&mut c, "cpu_intr"), 0.5);
    assert_eq!(first(&mut c, "cpu_sintr"), 0.5);
    assert_eq!(first(&mut c, "cpu_steal"), 2.0);
    assert_eq!(first(&mut c, "cpu_aidle"), 80.0);

    // Inside gmond's 1-second cache the file is not re-read: same values.
    write(dir.path(), "proc/stat", STAT_B);
    assert_eq!(f32_of(get(&mut c, "cpu_user", t + 0.5)), 10.0);

    let next = |c: &mut LinuxCollector, n: &str| f32_of(get(c, n, t + 20.0));
    assert_eq!(next(&mut c, "cpu_user"), 30.0);
    assert_eq!(next(&mut c, "cpu_nice"), 0.0);
    assert_eq!(next(&mut c, "cpu_system"), 15.0);
    assert_eq!(next(&mut c, "cpu_idle"), 50.0);
    assert_eq!(next(&mut c, "cpu_wio"), 1.0);
    assert_eq!(next(&mut c, "cpu_intr"), 2.0);
    assert_eq!(next(&mut c, "cpu_sintr"), 3.0);
    assert_eq!(next(&mut c, "cpu_steal"), 4.0);
    // aidle stays a since-boot figure: 8500 / 11000.
    assert_eq!(
        next(&mut c, "cpu_aidle"),
        (8500.0_f64 / 11000.0 * 100.0) as f32
    );
}

#[test]
fn network_first_sample_is_near_zero_then_rates() {
    let dir = tree();
    write(
        dir.path(),
        "proc/net/dev",
        &net_dev([71_748_382, 4236, 342_380, 3786], [1000, 10, 2000, 20]),
    );
    let mut c = collector(dir.path());
    let t = T0 as f64;
    // gmond divides everything since boot by the seconds since 1970 (in a C float).
    let first = f32_of(get(&mut c, "bytes_in", t));
    assert_eq!(first, 71_749_382.0_f32 / t as f32);
    assert_eq!(format!("{first:.2}"), "0.04");
    assert!(f32_of(get(&mut c, "pkts_out", t)) < 0.01);

    write(
        dir.path(),
        "proc/net/dev",
        &net_dev(
            [71_748_382 + 40_000, 4236 + 400, 342_380 + 4_000, 3786 + 40],
            [1000 + 400, 10 + 4, 2000, 20],
        ),
    );
    // lo, bond0 and the VLAN eth0.10 are not counted even though they changed.
    let t2 = t + 40.0;
    assert_eq!(get(&mut c, "bytes_in", t2), F32(1010.0));
    assert_eq!(get(&mut c, "pkts_in", t2), F32(10.1));
    assert_eq!(get(&mut c, "bytes_out", t2), F32(100.0));
    assert_eq!(get(&mut c, "pkts_out", t2), F32(1.0));
}

#[test]
fn network_counter_wrap_and_unchanged_counters() {
    let dir = tree();
    let near_max = u64::MAX - 999;
    write(
        dir.path(),
        "proc/net/dev",
        &net_dev([near_max, 5, 0, 0], [0, 0, 0, 0]),
    );
    let mut c = collector(dir.path());
    get(&mut c, "bytes_in", 100.0);
    write(
        dir.path(),
        "proc/net/dev",
        &net_dev([1000, 5, 0, 0], [0, 0, 0, 0]),
    );
    // MAX - (MAX - 999) + 1000 = 1999 bytes in 10 s (gmond's off-by-one wrap arithmetic).
    assert_eq!(get(&mut c, "bytes_in", 110.0), F32(199.9));
    assert_eq!(get(&mut c, "pkts_in", 110.0), F32(0.0));
    assert_eq!(get(&mut c, "bytes_in", 120.0), F32(0.0));
}

#[test]
fn disk_space_counts_each_local_rw_device_once() {
    let dir = tree();
    let mut c = collector(dir.path());
    let total = 24_414_062.0 * 4096.0 / 1e9 + 50_000_000.0 * 1000.0 / 1e9;
    let free = 6_103_515.0 * 4096.0 / 1e9 + 40_000_000.0 * 1000.0 / 1e9;
    assert_eq!(get(&mut c, "disk_total", 1.0), F64(total));
    assert_eq!(get(&mut c, "disk_free", 1.0), F64(free));
    let used = ((24_414_062.0 - 6_103_515.0) / 24_414_062.0 * 100.0) as f32;
    assert_eq!(get(&mut c, "part_max_used", 1.0), F32(used));
    assert_eq!(
        format!("{total:.3} {free:.3} {used:.1}"),
        "150.000 65.000 75.0"
    );
}

#[test]
fn no_local_disks_reads_zero() {
    let dir = tree();
    write(dir.path(), "proc/mounts", "proc /proc proc rw 0 0\n");
    let mut c = collector(dir.path());
    assert_eq!(get(&mut c, "disk_total", 1.0), F64(0.0));
    assert_eq!(get(&mut c, "part_max_used", 1.0), F32(0.0));
}

#[test]
fn collect_all_returns_catalogue_types() {
    let dir = tree();
    let mut c = collector(dir.path());
    let all = c.collect_all(at(T0 as f64));
    assert_eq!(all.len(), catalogue().len());
    for (spec, v) in all {
        let v = v.unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert_eq!(v.value_type(), spec.value_type, "{}", spec.name);
    }
}

#[test]
fn missing_and_malformed_files_are_typed_errors() {
    let dir = tree();
    let mut c = collector(dir.path());
    assert!(matches!(
        c.collect("cpu_usr", at(1.0)),
        Err(Error::UnknownMetric(n)) if n == "cpu_usr"
    ));
    write(dir.path(), "proc/loadavg", "0.1 0.2 zero 1/2 3\n");
    assert!(matches!(
        c.collect("load_one", at(1.0)),
        Err(Error::Parse { path, .. }) if path.ends_with("proc/loadavg")
    ));
    write(dir.path(), "proc/meminfo", "MemTotal: lots\n");
    assert!(matches!(
        c.collect("mem_total", at(1.0)),
        Err(Error::Parse { .. })
    ));
    write(dir.path(), "proc/stat", "intr 1 2 3\n");
    assert!(matches!(
        c.collect("cpu_user", at(1.0)),
        Err(Error::Parse { .. })
    ));
    write(dir.path(), "proc/net/dev", "h\nh\n  eth0: 1 2\n");
    assert!(matches!(
        c.collect("bytes_in", at(1.0)),
        Err(Error::Parse { .. })
    ));
    std::fs::remove_file(dir.path().join("proc/mounts")).unwrap();
    assert!(matches!(
        c.collect("disk_free", at(1.0)),
        Err(Error::Io { path, .. }) if path.ends_with("proc/mounts")
    ));
    let empty = tempfile::tempdir().unwrap();
    let mut c = LinuxCollector::new(empty.path());
    for name in [
        "cpu_user",
        "boottime",
        "mem_free",
        "proc_run",
        "bytes_in",
        "os_release",
    ] {
        assert!(
            matches!(c.collect(name, at(1.0)), Err(Error::Io { .. })),
            "{name}"
        );
    }
}

#[test]
fn error_messages_name_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let mut c = LinuxCollector::new(empty.path());
    let e = c.collect("load_one", at(1.0)).unwrap_err().to_string();
    assert!(e.contains("proc/loadavg"), "{e}");
}
