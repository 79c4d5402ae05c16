//! Issue 15: a policy author's own cluster history as a simulator scenario. The demo's live
//! feed (simulated hypervisors as real gmond-rs daemons, with per-VM metrics) is recorded by
//! `balancer record`, then replayed by `balancer simulate --scenario DIR` with a policy: the
//! scenario has the demo's hosts and VMs, starts from the recorded placement and runs for the
//! recorded time. Loopback only (the demo serves its feed on 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::sim::recorded::ClusterRecording;
use integration_tests::{free_port, poll_for, read_xml, Proc, TempDir};
use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

const HOSTS: usize = 3;

#[test]
fn a_recording_of_the_demo_replays_in_the_simulator() {
    let dir = TempDir::new("balancer-history");
    let port = free_port();
    let _demo = Proc::spawn(
        "ganglia-demo",
        integration_tests::bin("ganglia-demo"),
        &[
            "--no-tui",
            "--port",
            &port.to_string(),
            "--duration",
            "120",
            "--hosts",
            &HOSTS.to_string(),
            "--vms",
            "9",
        ]
        .map(OsStr::new),
    );
    // Once every host reports its VMs.
    poll_for(Duration::from_secs(60), || {
        let xml = read_xml(port)?;
        let text = String::from_utf8_lossy(&xml);
        (text.matches(".vcpu_util\"").count() >= 9
            && text.matches("vnode_cpu_num").count() >= HOSTS)
            .then_some(())
    })
    .expect("the demo's feed never showed its VMs");

    let out = dir.path().join("rec");
    let record = Command::new(integration_tests::bin("balancer"))
        .args([
            "record",
            "--feed",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1",
            "--samples",
            "5",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&record.stderr);
    assert!(record.status.success(), "{stderr}");
    assert!(
        stderr.contains("[record] sample 5/5"),
        "progress lines: {stderr}"
    );

    let rec = ClusterRecording::load(&out).unwrap();
    assert_eq!(rec.meta.hosts.len(), HOSTS, "{:?}", rec.meta.hosts);
    assert!(rec.meta.hosts.values().all(|c| c.cpus > 0 && c.mem_kb > 0));
    let (first, last) = rec.span().unwrap();
    assert!(last > first && last - first <= 10, "{first}..{last}");
    let sc = rec.to_scenario("demo").unwrap();
    assert!(sc.vms.len() >= 9, "{} VMs", sc.vms.len());
    assert!(
        sc.vms.iter().all(|v| v.host.is_some()),
        "every VM placed as recorded"
    );

    let report = integration_tests::simulate_recording(&out, "hotspot");
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["hosts"], HOSTS);
    assert_eq!(report["vms"], sc.vms.len());
    assert_eq!(report["duration_s"], sc.duration_s);
    assert_eq!(report["policy"], "hotspot");
}
