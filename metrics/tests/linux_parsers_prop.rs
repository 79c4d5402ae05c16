//! Property tests: the /proc parsers and the collector never panic on arbitrary file
//! contents, and well-formed input round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::{Duration, UNIX_EPOCH};

use gmond_metrics::linux::{procfs, LinuxCollector};
use proptest::prelude::*;

/// Text that looks a bit like /proc files: digits, separators, keywords.
fn procish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        "[0-9]{1,22}",
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just(":".to_string()),
        Just("/".to_string()),
        Just("-".to_string()),
        Just(",".to_string()),
        Just("cpu".to_string()),
        Just("cpu0".to_string()),
        Just("btime".to_string()),
        Just("Cached:".to_string()),
        Just("MemTotal:".to_string()),
        Just("cpu MHz".to_string()),
        Just("/dev/".to_string()),
        Just("eth0:".to_string()),
        "\\PC{0,4}",
    ];
    proptest::collection::vec(atom, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn parsers_never_panic(text in procish()) {
        let _ = procfs::parse_stat(&text);
        let _ = procfs::parse_loadavg(&text);
        let _ = procfs::parse_net_dev(&text);
        let _ = procfs::meminfo_kb(&text, "Cached:");
        let _ = procfs::local_mounts(&text);
        let _ = procfs::count_cpu_list(&text);
        let _ = procfs::cpuinfo_mhz(&text);
        let _ = procfs::cpufreq_mhz(&text);
        let _ = procfs::leading_f64(&text);
    }

    #[test]
    fn stat_fields_round_trip(fields in proptest::collection::vec(0u64..1u64 << 50, 4..11)) {
        let line: Vec<String> = fields.iter().map(u64::to_string).collect();
        let s = procfs::parse_stat(&format!("cpu  {}\n", line.join(" "))).unwrap();
        prop_assert_eq!(s.nstates, fields.len());
        for (i, f) in fields.iter().take(8).enumerate() {
            prop_assert_eq!(s.jiffies[i], *f);
        }
    }

    #[test]
    fn loadavg_round_trips(run in 0u32..100_000, total in 0u32..10_000_000) {
        let l = procfs::parse_loadavg(&format!("1.00 2.00 3.00 {run}/{total} 42\n")).unwrap();
        prop_assert_eq!((l.running, l.total), (run, total));
    }
}

proptest! {
    // Each case writes a file tree; fewer cases keep the test fast.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn collector_returns_values_or_typed_errors(
        stat in procish(), meminfo in procish(), loadavg in procish(), net in procish(),
        mounts in procish(), t in 0u64..4_000_000_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("proc/stat", &stat);
        put("proc/meminfo", &meminfo);
        put("proc/loadavg", &loadavg);
        put("proc/net/dev", &net);
        put("proc/mounts", &mounts);
        put("proc/cpuinfo", &stat);
        put("sys/devices/system/cpu/online", &loadavg);
        let mut c = LinuxCollector::new(dir.path());
        for step in 0..2u64 {
            let now = UNIX_EPOCH + Duration::from_secs(t + 10 * step);
            for (spec, v) in c.collect_all(now) {
                if let Ok(v) = v {
                    prop_assert_eq!(v.value_type(), spec.value_type);
                }
            }
        }
    }
}
