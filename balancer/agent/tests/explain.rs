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
        tags: Default::default(),
    }
}

/// The plan of `policy` for `s` held steady for 10 steps of the policy.
fn decide(policy: &str, s: &Snapshot) -> Plan {
    decide_with(policy, s, false)
}

/// [`decide`], verbose or not.
fn decide_with(policy: &str, s: &Snapshot, verbose: bool) -> Plan {
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
        verbose,
        pending: &[],
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

#[test]
fn a_verbose_plan_lists_each_refused_candidate_every_hosts_tests_and_the_effect() {
    // hotspot on h0 (2.7 of its CPUs) with h1 short of memory: every candidate is refused.
    let s = hot_and_nowhere_to_go();
    let lean = decide("hotspot", &s);
    assert!(lean.refused_moves.is_empty() && lean.effect.is_none() && lean.checks.is_empty());
    let plan = decide_with("hotspot", &s, true);
    assert!(plan.moves.is_empty());
    let listed = plan.refused_moves.len() as u32;
    let counted: u32 = plan.refused.iter().map(|(_, k)| k).sum();
    assert!(listed > 0 && listed <= counted, "{listed} of {counted}");
    let r = &plan.refused_moves[0];
    assert_eq!(
        (r.from.as_str(), r.gate.as_str()),
        ("h0", "memory"),
        "{r:?}"
    );
    assert!(r.vm.starts_with('v'), "{r:?}");
    let e = plan.effect.clone().unwrap();
    assert_eq!(e.sigma_before, e.sigma_after, "nothing moved: {e:?}");
    assert!(
        e.watts_before > 0.0 && e.watts_before == e.watts_after,
        "{e:?}"
    );
    let text = plan.explain_with(true);
    assert!(
        text.contains(&format!("refused {} h0 -> ", r.vm)) && text.contains(" by memory"),
        "{text}"
    );
    assert!(text.contains("effect: cpu sigma "), "{text}");

    // With room on h1 the plan moves, and the verbose plan still shows every host's tests
    // (the detector's sample count among them) and a spread that falls.
    let mut s = s;
    s.hosts[1].mem_kb = 64 * GB;
    let plan = decide_with("hotspot", &s, true);
    assert!(!plan.moves.is_empty());
    assert!(
        plan.checks
            .iter()
            .any(|c| c.host == "h0" && c.test == "cpu samples over threshold" && c.fired),
        "{:?}",
        plan.checks
    );
    assert!(
        plan.checks.iter().any(|c| c.host == "h1"),
        "{:?}",
        plan.checks
    );
    let e = plan.effect.clone().unwrap();
    assert!(e.sigma_after < e.sigma_before, "{e:?}");
    // h1 was empty (switched off) and now carries VMs: the power rises by at least its idle draw.
    assert!(e.watts_after >= e.watts_before + 120.0, "{e:?}");
    let text = plan.explain_with(true);
    assert!(
        text.contains("tests per host, nearest to firing first:"),
        "{text}"
    );
    assert!(
        text.contains("    h0: cpu samples over threshold 5 >= 3: yes"),
        "{text}"
    );
    assert!(!decide("hotspot", &s).explain().contains("tests per host"));
}

/// What `simulate --verbose` receives: the explanations, in order, with their times.
#[derive(Default)]
struct Collect(Vec<(u64, String)>);

impl balancer::sim::Progress for Collect {
    fn tick(&mut self, _: &balancer::sim::TickProgress) {}
    fn explain(&mut self, t_s: u64, text: &str) {
        self.0.push((t_s, text.to_string()));
    }
}

#[test]
fn the_simulator_explains_every_round_alone_and_through_the_agents_gates() {
    use balancer::sim::{builtin_scenario, simulate_driven, simulate_with_progress, SimOptions};
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    let spec = PolicySpec::builtin("hotspot").unwrap();
    let opts = SimOptions {
        explain: true,
        ..SimOptions::default()
    };
    let mut alone = Collect::default();
    let (r, _) = simulate_with_progress(&sc, &spec, &opts, &mut alone).unwrap();
    // One explanation per decision round, each a whole plan.
    assert_eq!(
        alone.0.len() as u64,
        sc.duration_s / sc.tick_s,
        "{:?}",
        alone.0.first()
    );
    assert!(alone
        .0
        .iter()
        .all(|(_, t)| t.starts_with("policy hotspot at t=")));
    let first_move = alone
        .0
        .iter()
        .find(|(_, t)| !t.contains(": 0 move(s)"))
        .unwrap();
    assert!(
        first_move.1.contains("effect: cpu sigma "),
        "{}",
        first_move.1
    );
    assert!(
        first_move
            .1
            .contains("    host-000: cpu samples over threshold"),
        "{}",
        first_move.1
    );
    // Rounds before the first move say why nothing moved, with host-000's sample count.
    let before = &alone.0[0].1;
    assert!(before.contains("why no move: "), "{before}");
    // Explaining changes nothing about the run.
    let quiet = balancer::sim::simulate(&sc, &spec, &SimOptions::default()).unwrap();
    assert_eq!(r.deterministic(), quiet.deterministic());

    // Through the agent: the leader's plans, and the moves its own gates held back.
    let mut agents = balancer_agent::simulate::AgentSim::new(
        &sc,
        &spec,
        balancer_agent::config::AgentConfig::default(),
    )
    .unwrap()
    .explain(true);
    let mut gated = Collect::default();
    simulate_driven(&sc, &spec, &opts, &mut agents, &mut gated).unwrap();
    assert!(gated
        .0
        .iter()
        .any(|(_, t)| t.starts_with("agent host-000: policy hotspot")));
    assert!(
        gated
            .0
            .iter()
            .any(|(_, t)| t.contains("held by the agent's budget gate: vm-")),
        "{:?}",
        gated
            .0
            .iter()
            .map(|(_, t)| t.lines().last())
            .collect::<Vec<_>>()
    );
}

#[test]
fn cli_simulate_verbose_prints_the_rounds_before_the_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args([
            "simulate",
            "--scenario",
            "hot-host",
            "--policy",
            "hotspot",
            "--no-agent-gates",
            "--verbose",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("t=0s policy hotspot at t=0: 0 move(s)"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.contains("t=120s policy hotspot at t=120: 4 move(s)"),
        "{text}"
    );
    assert!(text.contains("effect: cpu sigma "), "{text}");
    // The report follows the explanations.
    let report_at = text.find("migrations ").unwrap();
    assert!(
        report_at > text.rfind("t=").unwrap(),
        "report before the last round"
    );
}
