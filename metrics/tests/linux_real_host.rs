//! LinuxCollector on the machine running the tests: every catalogue metric collects and
//! lands in a plausible range.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gmond_metrics::linux::{catalogue, procfs, LinuxCollector, MetricValue};

fn num(v: &MetricValue) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not numeric: {v:?}"))
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test: {e}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn every_metric_collects_with_plausible_values() {
    let now = SystemTime::now();
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let mut c = LinuxCollector::new("/");
    let values: std::collections::HashMap<&str, MetricValue> = c
        .collect_all(now)
        .into_iter()
        .map(|(spec, v)| {
            let v = v.unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert_eq!(v.value_type(), spec.value_type, "{}", spec.name);
            (spec.name, v)
        })
        .collect();
    assert_eq!(values.len(), catalogue().len());
    let n = |name: &str| num(&values[name]);

    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        n("cpu_num") >= cpus,
        "cpu_num {} < usable {cpus}",
        n("cpu_num")
    );
    #[cfg(target_arch = "x86_64")]
    assert!(
        (100.0..20_000.0).contains(&n("cpu_speed")),
        "cpu_speed {}",
        n("cpu_speed")
    );

    let pct = [
        "cpu_user",
        "cpu_nice",
        "cpu_system",
        "cpu_idle",
        "cpu_wio",
        "cpu_intr",
        "cpu_sintr",
        "cpu_aidle",
        "part_max_used",
    ];
    for name in pct {
        assert!((0.0..=100.0).contains(&n(name)), "{name} = {}", n(name));
    }
    // First sample: all shares of the same since-boot totals, so they add up to 100.
    let sum: f64 = [
        "cpu_user",
        "cpu_nice",
        "cpu_system",
        "cpu_idle",
        "cpu_wio",
        "cpu_steal",
    ]
    .iter()
    .map(|m| n(m))
    .sum();
    assert!((sum - 100.0).abs() < 0.01, "cpu shares add up to {sum}");
    assert!(
        (n("cpu_idle") - n("cpu_aidle")).abs() < 0.01,
        "first idle = since-boot idle"
    );

    assert!(n("mem_total") > 0.0);
    for m in ["mem_free", "mem_buffers", "mem_cached", "mem_sreclaimable"] {
        assert!((0.0..=n("mem_total")).contains(&n(m)), "{m} = {}", n(m));
    }
    assert_eq!(n("mem_shared"), 0.0, "MemShared is gone from Linux");
    assert!((0.0..=n("swap_total")).contains(&n("swap_free")));

    let boot = n("boottime");
    assert!(
        boot < now_s && boot > now_s - 10.0 * 365.0 * 86400.0,
        "boottime {boot}"
    );
    assert!((n("sys_clock") - now_s.floor()).abs() < 1.0);
    assert!(n("heartbeat") > 0.0);

    for m in ["load_one", "load_five", "load_fifteen"] {
        assert!((0.0..10_000.0).contains(&n(m)), "{m} = {}", n(m));
    }
    assert!(n("proc_total") >= 1.0 && n("proc_run") <= n("proc_total"));

    for m in ["bytes_in", "bytes_out", "pkts_in", "pkts_out"] {
        assert!(
            n(m) >= 0.0 && n(m) < 1e4,
            "first {m} = {} (should be ~0)",
            n(m)
        );
    }

    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if procfs::local_mounts(&mounts).is_empty() {
        assert_eq!(n("disk_total"), 0.0);
    } else {
        assert!(n("disk_total") > 0.0);
    }
    assert!((0.0..=n("disk_total")).contains(&n("disk_free")));

    assert_eq!(values["os_name"], MetricValue::Str("Linux".into()));
    assert_eq!(
        values["os_release"],
        MetricValue::Str(command_line("uname", &["-r"]))
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        values["machine_type"],
        MetricValue::Str(command_line("uname", &["-m"]))
    );
    assert_eq!(values["location"], MetricValue::Str("unspecified".into()));
    assert_eq!(values["gexec"], MetricValue::Str("OFF".into()));
    let mtu = n("mtu");
    assert!(mtu == 0.0 || (68.0..=65536.0).contains(&mtu), "mtu {mtu}");

    // A second round a few (simulated) seconds later re-reads /proc and gives rates.
    let later = now + Duration::from_secs(3);
    for (spec, v) in c.collect_all(later) {
        let v = v.unwrap_or_else(|e| panic!("second {}: {e}", spec.name));
        if let Some(x) = v.as_f64() {
            assert!(x.is_finite(), "{} = {x}", spec.name);
        }
    }
    for m in ["cpu_user", "cpu_system", "cpu_idle", "cpu_steal"] {
        let v = num(&c.collect(m, later).unwrap());
        assert!((-0.01..=100.0).contains(&v), "{m} = {v}");
    }
    for m in ["bytes_in", "bytes_out", "pkts_in", "pkts_out"] {
        assert!(num(&c.collect(m, later).unwrap()) >= 0.0);
    }
}
