//! A plan without moves says why (issue 15): every test each policy ran with its figures and
//! thresholds, the hosts that qualified and the gates that refused their moves, or the
//! migrations in flight that used up the parallel limit; `balancer plan --explain` prints it.
// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use balancer::plan::Plan;
use balancer::planner::{History, Input};
use balancer::policy::{PolicySpec, BUILTIN};
use balancer::snapshot::{HostState, Snapshot, VmState};
use balancer::trends::Trends;

const GB: u64 = 1024 * 1024;

fn host(name: &str, mem_gb: u64) -> HostState {
    HostState {
        name: name.into(),
        cpus: 16,
        mhz: 2000.0,
        mem_kb: mem_gb * GB,
        up: true,
        maintenance: false,
        power: None,
    }
}

fn vm(name: &str, host: &str, frac: f64, mem_gb: u64) -> VmState {
    VmState {
        name: name.into(),
        host: host.into(),
        vcpus: 2,
        cpu_cap_mhz: 4000.0,
        cpu_demand_mhz: 4000.0 * frac,
        mem_kb: mem_gb * GB,
        mem_used_kb: mem_gb * GB,
        migrating: false,
        migrating_to: None,
        host_idx: 0,
    }
}

/// The plan of `policy` for `s` held steady for 10 steps of the policy.
fn decide(policy: &str, s: &Snapshot) -> Plan {
    let spec = PolicySpec::builtin(policy).unwrap();
    let mut trends = Trends::new(spec.trend_config());
    for k in 0..10 {
        let mut s2 = s.clone();
        s2.time = s.time - (9 - k) * spec.step_s();
        trends.observe(&s2);
    }
    spec.build().decide(Input {
        snapshot: s,
        trends: &trends,
        history: &History::default(),
        now: s.time,
        wall_s: s.time,
    })
}

/// 4 hosts with 6 VMs at 50 % each: 0.375 of every host.
fn balanced() -> Snapshot {
    let hosts = (0..4).map(|i| host(&format!("h{i}"), 64)).collect();
    let vms = (0..24)
        .map(|i| vm(&format!("v{i:02}"), &format!("h{}", i % 4), 0.5, 4))
        .collect();
    Snapshot::new(3600, hosts, vms).unwrap()
}

/// h0 at 24 x 2 cores x 90 % = 2.7 of its CPUs; h1 empty but with no memory to spare.
fn hot_and_nowhere_to_go() -> Snapshot {
    let hosts = vec![host("h0", 64), host("h1", 2)];
    let vms = (0..24)
        .map(|i| vm(&format!("v{i:02}"), "h0", 0.9, 2))
        .collect();
    Snapshot::new(3600, hosts, vms).unwrap()
}

#[test]
fn a_balanced_cluster_says_nothing_passed_with_the_closest_hosts_figures() {
    let s = balanced();
    for policy in BUILTIN {
        let plan = decide(policy, &s);
        assert!(plan.moves.is_empty(), "{policy}");
        let why = plan
            .why_none
            .as_ref()
            .expect("a plan without moves says why");
        let text = plan.explain();
        if policy == "none" {
            assert!(
                text.contains("why no move: policy none never moves"),
                "{text}"
            );
            continue;
        }
        assert!(why.qualified.is_empty(), "{policy}: {why:?}");
        assert!(!why.checks.is_empty(), "{policy}: no figures");
        assert!(
            text.contains("why no move: nothing passed the policy's tests"),
            "{policy}: {text}"
        );
    }
    // hotspot's figures for a host: its samples over 0.85, forecast, and load against target.
    let text = decide("hotspot", &s).explain();
    assert!(
        text.contains(
            "    h0: cpu samples over threshold 0 >= 3: no; cpu forecast 0.375 > 0.850: no; \
             memory samples over mem_threshold 0 >= 3: no; cpu now above target 0.375 > 0.750: no"
        ),
        "{text}"
    );
    // stabilize tests the cluster as a whole.
    let text = decide("stabilize", &s).explain();
    assert!(
        text.contains(
            "    cluster: hosts that can take VMs 4 >= 2: yes; cpu sigma now 0 > 0.050: no"
        ),
        "{text}"
    );
}

#[test]
fn a_hot_host_whose_moves_are_all_refused_names_the_host_and_the_gates() {
    let s = hot_and_nowhere_to_go();
    for policy in ["naive-threshold", "hotspot", "consolidate"] {
        let plan = decide(policy, &s);
        assert!(plan.moves.is_empty(), "{policy}: {}", plan.explain());
        let why = plan.why_none.as_ref().unwrap();
        assert!(why.qualified.iter().any(|h| h == "h0"), "{policy}: {why:?}");
        let text = plan.explain();
        assert!(
            text.contains(
                "why no move: h0 qualified, but no candidate move passed the gates (refused by "
            ),
            "{policy}: {text}"
        );
        // h1 has 2 GB: memory is the gate, named where the policy's search can tell.
        let gate = if policy == "consolidate" {
            "no_destination"
        } else {
            "memory"
        };
        assert!(
            text.contains(&format!("refused by {gate}")),
            "{policy}: {text}"
        );
    }
}

#[test]
fn migrations_in_flight_at_the_parallel_limit_are_the_reason() {
    let mut s = hot_and_nowhere_to_go();
    s.hosts[1].mem_kb = 64 * GB;
    for v in s.vms.iter_mut().take(4) {
        v.migrating = true;
        v.migrating_to = Some("h1".into());
    }
    let plan = decide("hotspot", &s);
    assert!(plan.moves.is_empty(), "{}", plan.explain());
    assert_eq!(plan.why_none.as_ref().unwrap().in_flight, Some((4, 4)));
    let text = plan.explain();
    assert!(
        text.contains("why no move: 4 migration(s) in flight, max_parallel 4"),
        "{text}"
    );
}

#[test]
fn a_plan_with_moves_carries_no_why_none() {
    let mut s = hot_and_nowhere_to_go();
    s.hosts[1].mem_kb = 64 * GB;
    let plan = decide("hotspot", &s);
    assert!(!plan.moves.is_empty());
    assert!(plan.why_none.is_none());
    assert!(!plan.to_json().contains("why_none"));
    assert!(!plan.explain().contains("why no move"));
}

#[test]
fn cli_plan_explain_says_why_nothing_moves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.json");
    std::fs::write(&path, serde_json::to_string(&balanced()).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["plan", "--policy", "hotspot", "--explain", "--snapshot"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("policy hotspot at t=3600: 0 move(s)"),
        "{text}"
    );
    assert!(
        text.contains(
            "why no move: nothing passed the policy's tests (4 host(s) tested); closest:"
        ),
        "{text}"
    );
    assert!(text.contains("cpu forecast 0.375 > 0.850: no"), "{text}");
    assert!(
        text.contains("\"why_none\""),
        "the JSON carries it too: {text}"
    );
}
