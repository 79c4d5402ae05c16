//! Load history survives a balancer restart: trends persisted to RRD files and restored into
//! a fresh `Trends` hold the same samples and give the same smoothed values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::rrdstore::RrdStore;
use balancer::snapshot::{HostState, Snapshot, VmState};
use balancer::trends::{TrendConfig, Trends};

fn snapshot(t: u64, demand: f64) -> Snapshot {
    let host = |name: &str| HostState {
        name: name.into(),
        cpus: 4,
        mhz: 2000.0,
        mem_kb: 8 << 20,
        up: true,
        maintenance: false,
        power: None,
    };
    let vm = |name: &str, host: &str, mhz: f64| VmState {
        name: name.into(),
        host: host.into(),
        vcpus: 2,
        cpu_cap_mhz: 4000.0,
        cpu_demand_mhz: mhz,
        mem_kb: 1 << 20,
        mem_used_kb: 1 << 19,
        migrating: false,
        migrating_to: None,
        host_idx: 0,
        tags: Default::default(),
    };
    Snapshot::new(
        t,
        vec![host("hv1"), host("hv2")],
        vec![vm("web1", "hv1", demand), vm("db1", "hv2", 500.0)],
    )
    .unwrap()
}

#[test]
fn trends_restored_from_rrd_files_equal_the_ones_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut before = Trends::new(TrendConfig::default());
    {
        let mut store = RrdStore::new(dir.path(), 60, 500).unwrap();
        for (i, d) in [1000.0, 1500.0, 3000.0, 3500.0, 3900.0].iter().enumerate() {
            let s = snapshot(1_800_000_000 + 60 * i as u64, *d);
            before.observe(&s);
            before.persist(&mut store).unwrap();
        }
    }
    // "Restart": a new store over the same files, and empty trends.
    let store = RrdStore::new(dir.path(), 60, 500).unwrap();
    let mut after = Trends::new(TrendConfig::default());
    after
        .restore(&store, &["hv1", "hv2"], &["web1", "db1"])
        .unwrap();
    for vm in ["web1", "db1"] {
        assert_eq!(after.vm_cpu(vm), before.vm_cpu(vm), "{vm}");
    }
    for h in ["hv1", "hv2"] {
        assert_eq!(after.host_cpu(h), before.host_cpu(h), "{h}");
    }
    assert_eq!(after.vm_cpu("web1").unwrap().len(), 5);
    // A real file rrdtool-format file per series.
    assert!(dir.path().join("vm_cpu__web1.rrd").exists());
}

#[test]
fn plan_with_history_accumulates_samples_across_runs() {
    use balancer::trends::TrendStore;
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("history");
    for (i, d) in [1000.0, 3800.0, 3900.0].iter().enumerate() {
        let snap = snapshot(1_800_000_000 + 60 * i as u64, *d);
        let file = dir.path().join(format!("snap{i}.json"));
        std::fs::write(&file, serde_json::to_string(&snap).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_balancer"))
            .args(["plan", "--policy", "hotspot", "--snapshot"])
            .arg(&file)
            .arg("--history")
            .arg(&hist)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(plan.is_object());
    }
    let store = RrdStore::new(&hist, 60, 1440).unwrap();
    let web = store.recent("vm_cpu/web1", 10).unwrap();
    assert_eq!(web.len(), 3, "{web:?}");
    assert!(web[2].1 > web[0].1, "rising load recorded: {web:?}");
}
