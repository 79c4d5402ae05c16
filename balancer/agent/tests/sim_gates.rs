//! The simulator driven through the agent (`balancer_agent::simulate::AgentSim`): its budget
//! holds per window where the policy alone moves more, a VM that exists only in the view is
//! refused by the pre-check and costs nothing, and with the gates off the report is the
//! policy-only one, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::policy::PolicySpec;
use balancer::sim::scenario::Event;
use balancer::sim::{
    builtin_scenario, simulate, simulate_driven, NoProgress, Report, Scenario, SimOptions,
};
use balancer_agent::audit::{Event as AuditEvent, Record};
use balancer_agent::simulate::{AgentSim, ForgedVm};
use balancer_agent::AgentConfig;

fn hot_host() -> Scenario {
    builtin_scenario("hot-host", None, 1).unwrap()
}

fn hotspot() -> PolicySpec {
    PolicySpec::builtin("hotspot").unwrap()
}

/// Runs `sc` through `agents`; returns the report and the agents' audit records.
fn gated(sc: &Scenario, agents: AgentSim) -> (Report, Vec<Record>) {
    let mut agents = agents.keep_audit(true);
    let (r, _) = simulate_driven(
        sc,
        &hotspot(),
        &SimOptions::default(),
        &mut agents,
        &mut NoProgress,
    )
    .unwrap();
    (r, agents.audit().to_vec())
}

fn budget(n: u32, window_s: u64) -> AgentConfig {
    AgentConfig {
        budget_migrations: n,
        budget_window_s: window_s,
        ..Default::default()
    }
}

fn starts(audit: &[Record]) -> Vec<&Record> {
    audit
        .iter()
        .filter(|r| r.event == AuditEvent::Start)
        .collect()
}

#[test]
fn the_budget_holds_per_window_where_the_policy_alone_moves_more() {
    let sc = hot_host();
    let (n, window) = (4, 1800);
    let alone = simulate(&sc, &hotspot(), &SimOptions::default()).unwrap();
    let agents = AgentSim::new(&sc, &hotspot(), budget(n, window)).unwrap();
    let (r, audit) = gated(&sc, agents);
    let s = starts(&audit);
    // Every window of the budget's length holds at most n starts.
    for a in &s {
        let in_window = s
            .iter()
            .filter(|b| b.time >= a.time && b.time < a.time + window)
            .count();
        assert!(
            in_window <= n as usize,
            "{in_window} starts from {}",
            a.time
        );
    }
    let gates = r.gates.clone().unwrap();
    assert_eq!(r.migrations, s.len() as u64, "every start is a migration");
    assert_eq!(gates.starts, r.migrations);
    assert_eq!(gates.done, r.migrations, "each verified on the hypervisor");
    assert!(gates.budget_limited > 0 && gates.skipped["budget"] > 0);
    // Four windows in two hours: the agent moves at its budget, the policy alone beyond it.
    assert_eq!(r.migrations, 4 * n as u64);
    assert!(alone.migrations > r.migrations, "{alone:?}");
    assert!(alone.migrations_max_per_hour > 2 * n as u64);
    assert!(alone.gates.is_none());
    // Only one leader acts, with at most max_parallel migrations at once.
    assert!(r.migrations_max_concurrent <= AgentConfig::default().max_parallel as u64);
    assert!(s.iter().all(|a| a.host == s[0].host));
    assert_eq!(r.rule_violations, 0);
}

#[test]
fn a_vm_only_the_view_shows_is_refused_by_the_pre_check_and_costs_nothing() {
    let sc = hot_host();
    // A forger publishes a busy VM on the hot host: the policy sees it as the best to move.
    let ghost = ForgedVm {
        vm: "ghost".into(),
        host: "host-000".into(),
        vcpus: 8,
        util: 100.0,
    };
    let agents = AgentSim::new(&sc, &hotspot(), budget(2, 3600))
        .unwrap()
        .forge(ghost);
    let (r, audit) = gated(&sc, agents);
    let refused: Vec<&Record> = audit
        .iter()
        .filter(|a| a.vm.as_deref() == Some("ghost") && a.outcome.as_deref() == Some("refused"))
        .collect();
    assert!(!refused.is_empty(), "the ghost was never tried: {audit:#?}");
    assert!(starts(&audit)
        .iter()
        .all(|a| a.vm.as_deref() != Some("ghost")));
    let gates = r.gates.unwrap();
    assert!(gates.refused >= 1);
    // The refusal used no budget: the two real moves of each hour still happened.
    assert_eq!(r.migrations, 4);
    assert_eq!(gates.starts, 4);
}

#[test]
fn without_the_gates_the_report_is_the_policy_alone() {
    // Figures of hot-host under hotspot from the simulator before agents could drive it
    // (the `balancer simulate` of commit 0d2aadc).
    let r = simulate(&hot_host(), &hotspot(), &SimOptions::default())
        .unwrap()
        .deterministic();
    assert_eq!(r.migrations, 18);
    assert_eq!(r.migrations_per_hour, vec![18, 0]);
    assert_eq!(r.migrations_max_concurrent, 4);
    assert!(
        (r.overload_host_s - 334.36).abs() < 1e-9,
        "{}",
        r.overload_host_s
    );
    assert!(r.gates.is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("gates").is_none(), "the JSON report is unchanged");
}

#[test]
fn a_simulation_only_policy_is_refused_as_the_agent_refuses_it() {
    let sc = hot_host();
    let spec = PolicySpec::builtin("thr-mmt-0.8").unwrap();
    let e = AgentSim::new(&sc, &spec, AgentConfig::default()).unwrap_err();
    assert!(e.to_string().contains("simulation only"), "{e}");
}

#[test]
fn a_partition_without_a_majority_on_either_side_moves_nothing_meanwhile() {
    let sc = builtin_scenario("partition", None, 1).unwrap();
    let agents = AgentSim::new(&sc, &hotspot(), AgentConfig::default()).unwrap();
    let (r, audit) = gated(&sc, agents);
    let gates = r.gates.clone().unwrap();
    assert!(gates.no_quorum_rounds > 0, "{gates:?}");
    assert_eq!(r.partition_conflicts, 0);
    let quorum: Vec<&Record> = audit
        .iter()
        .filter(|a| a.event == AuditEvent::Quorum)
        .collect();
    let (lost, regained) = (
        quorum.iter().find(|a| a.outcome.as_deref() == Some("lost")),
        quorum
            .iter()
            .find(|a| a.outcome.as_deref() == Some("regained")),
    );
    let lost_at = lost.map(|a| a.time).unwrap();
    let back_at = regained.map(|a| a.time).unwrap_or(u64::MAX);
    assert!(starts(&audit)
        .iter()
        .all(|a| a.time < lost_at || a.time >= back_at));
}

/// host-failure with the leader's own host failing (host-000), its VMs restarted on host-001.
fn leader_fails() -> Scenario {
    let mut sc = builtin_scenario("host-failure", None, 1).unwrap();
    sc.name = "leader-fails".into();
    for e in &mut sc.events {
        if let Event::HostDown {
            host, restart_on, ..
        } = e
        {
            *host = "host-000".into();
            *restart_on = "host-001".into();
        }
    }
    sc
}

#[test]
fn when_the_leader_host_fails_the_next_agent_leads_and_balances() {
    let sc = leader_fails();
    let agents = AgentSim::new(&sc, &hotspot(), AgentConfig::default()).unwrap();
    let (r, audit) = gated(&sc, agents);
    let gained: Vec<(&str, u64)> = audit
        .iter()
        .filter(|a| a.event == AuditEvent::Leader && a.outcome.as_deref() == Some("gained"))
        .map(|a| (a.host.as_str(), a.time))
        .collect();
    assert_eq!(gained[0], ("host-000", 0), "{gained:?}");
    assert!(
        gained.iter().any(|(h, t)| *h == "host-001" && *t >= 1800),
        "{gained:?}"
    );
    // The restarted VMs overload host-001: the new leader moves some away.
    assert!(starts(&audit)
        .iter()
        .any(|a| a.host == "host-001" && a.time >= 1800));
    assert_eq!(r.rule_violations, 0);
}

#[test]
fn feeding_only_the_agents_that_can_act_changes_no_decision() {
    for sc in [
        "hot-host",
        "host-failure",
        "partition",
        "maintenance-drain",
        "anti-affinity",
    ]
    .map(|n| builtin_scenario(n, None, 1).unwrap())
    .into_iter()
    .chain([leader_fails()])
    {
        let name = sc.name.clone();
        let run = |all: bool| {
            let agents = AgentSim::new(&sc, &hotspot(), AgentConfig::default())
                .unwrap()
                .feed_every_agent(all);
            let (r, audit) = gated(&sc, agents);
            let moves: Vec<(u64, Option<String>, Option<String>)> = starts(&audit)
                .iter()
                .map(|a| (a.time, a.vm.clone(), a.to.clone()))
                .collect();
            (r.deterministic(), moves)
        };
        let (some, all) = (run(false), run(true));
        assert_eq!(some.1, all.1, "{name}: the same starts");
        assert_eq!(some.0, all.0, "{name}: the same report");
    }
}

#[test]
fn a_migration_past_its_timeout_is_aborted_and_the_vm_stays_on_its_source() {
    let mut sc = hot_host();
    // 100 Mbit/s: a 2 GiB VM takes 344 s, past a 120 s timeout (and past a 60 s tick).
    sc.link_bps = 100_000_000;
    let cfg = AgentConfig {
        migration_timeout_s: 120,
        ..Default::default()
    };
    let agents = AgentSim::new(&sc, &hotspot(), cfg).unwrap();
    let (r, audit) = gated(&sc, agents);
    let gates = r.gates.clone().unwrap();
    assert!(gates.starts > 0 && gates.aborts > 0, "{gates:?}");
    assert_eq!(gates.done, 0, "{gates:?}");
    assert_eq!(gates.failed, gates.starts, "every start aborted: {gates:?}");
    let aborted = audit
        .iter()
        .filter(|a| a.event == AuditEvent::Aborted)
        .count() as u64;
    assert_eq!(aborted, gates.starts);
    // Aborted migrations count against their destination: after two (`dest_failure_limit`)
    // it is out of the policy's world for `dest_exclusion_s`, so no third start goes there
    // meanwhile.
    let excl = AgentConfig::default().dest_exclusion_s;
    let ends: Vec<&Record> = audit
        .iter()
        .filter(|a| a.event == AuditEvent::Aborted)
        .collect();
    for s in starts(&audit) {
        let before = ends
            .iter()
            .filter(|e| e.to == s.to && e.time <= s.time && e.time + excl > s.time)
            .count();
        assert!(
            before < 2,
            "a start to {:?} at {} after two failures",
            s.to,
            s.time
        );
    }
    // Nothing moved: the hot host keeps every VM.
    assert_eq!(r.churn, r.migrations, "{r:?}");
}

/// Issue 15, item 8: the operator's rules in the policy file hold for the agents in the
/// simulator as on a cluster. hot-host starts at 1970-01-01 00:00 UTC (a Thursday): with
/// `windows = ["30-59 0 * * *"]` no move starts before 00:30 or after 00:59, and the VMs
/// `exclude` names never move.
#[test]
fn migration_windows_and_excluded_vms_hold_in_the_simulated_agents() {
    let sc = hot_host();
    let run = |windows: &[&str], exclude: &[&str]| {
        let mut spec = hotspot();
        spec.constraints.windows = windows.iter().map(|w| w.to_string()).collect();
        spec.constraints.exclude = exclude.iter().map(|w| w.to_string()).collect();
        let agents = AgentSim::new(&sc, &spec, AgentConfig::default())
            .unwrap()
            .keep_audit(true);
        let mut agents = agents;
        let (r, _) = simulate_driven(
            &sc,
            &spec,
            &SimOptions::default(),
            &mut agents,
            &mut NoProgress,
        )
        .unwrap();
        let starts: Vec<(u64, String)> = starts(agents.audit())
            .iter()
            .map(|r| (r.time, r.vm.clone().unwrap_or_default()))
            .collect();
        (r, starts)
    };
    let (_, free) = run(&[], &[]);
    assert!(free.iter().any(|(t, _)| *t < 1800), "{free:?}");
    let (r, windowed) = run(&["30-59 0 * * *"], &[]);
    assert!(!windowed.is_empty(), "the window opened: {r:?}");
    assert!(
        windowed.iter().all(|(t, _)| (1800..3600).contains(t)),
        "{windowed:?}"
    );
    // A window that never opens in the scenario's two hours (Saturdays): nothing moves.
    let (r, none) = run(&["* * * * 6"], &[]);
    assert!(none.is_empty() && r.migrations == 0, "{none:?}");
    // Excluded VMs stay put; the others still relieve the hot host.
    let (_, excluded) = run(&[], &["vm-0*", "*-12"]);
    assert!(!excluded.is_empty());
    assert!(
        excluded
            .iter()
            .all(|(_, vm)| !vm.starts_with("vm-0") && vm != "vm-12"),
        "{excluded:?}"
    );
}

/// hot-host with its first two VMs an affinity group: the agent starts the pair together (the
/// same round, one destination) or not at all; a budget with room for one move holds both.
#[test]
fn an_affinity_group_starts_together_or_not_at_all() {
    let mut sc = hot_host();
    sc.affinity.push(balancer::constraints::Group {
        name: "pair".into(),
        vms: vec!["vm-00".into(), "vm-01".into()],
    });
    let pair_starts = |audit: &[Record]| -> Vec<(u64, String, String)> {
        starts(audit)
            .into_iter()
            .filter(|r| matches!(r.vm.as_deref(), Some("vm-00" | "vm-01")))
            .map(|r| {
                (
                    r.time,
                    r.vm.clone().unwrap_or_default(),
                    r.to.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let agents = AgentSim::new(&sc, &hotspot(), AgentConfig::default()).unwrap();
    let (r, audit) = gated(&sc, agents);
    let s = pair_starts(&audit);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!((s[0].0, &s[0].2), (s[1].0, &s[1].2), "{s:?}");
    assert_eq!(r.rule_violations, 0);

    // Room for one start per hour: the pair is held by the budget, every time.
    let agents = AgentSim::new(&sc, &hotspot(), budget(1, 3600)).unwrap();
    let (r, audit) = gated(&sc, agents);
    assert!(pair_starts(&audit).is_empty(), "{:?}", pair_starts(&audit));
    assert!(
        audit.iter().any(|a| a.event == AuditEvent::Skipped
            && a.vm.as_deref() == Some("vm-00")
            && a.outcome.as_deref() == Some("budget")),
        "the pair was never held by the budget"
    );
    assert!(r.migrations > 0, "single VMs still move within the budget");
}

/// The operator's tags on a scenario's VMs reach the policy alone (in its snapshot) and the
/// simulated agents (as `<vm>.balancer_tags` in the view they read): a VM tagged `exclude`
/// never moves either way, and `priority` sends the untagged VMs first.
#[test]
fn tags_on_scenario_vms_reach_the_policy_and_the_agents_through_the_view() {
    use balancer::snapshot::VmTags;
    let plain = hot_host();
    let (_, audit) = gated(
        &plain,
        AgentSim::new(&plain, &hotspot(), AgentConfig::default()).unwrap(),
    );
    let first: Vec<String> = starts(&audit)
        .iter()
        .filter_map(|r| r.vm.clone())
        .take(2)
        .collect();
    assert_eq!(first.len(), 2, "hot-host moves VMs through the agent");
    let mut tagged = plain.clone();
    for v in tagged.vms.iter_mut() {
        if first.contains(&v.name) {
            v.tags = VmTags::parse("exclude");
        }
    }
    // Through the agents, which see the tags only in the Ganglia view.
    let (r, audit) = gated(
        &tagged,
        AgentSim::new(&tagged, &hotspot(), AgentConfig::default()).unwrap(),
    );
    let moved: Vec<String> = starts(&audit).iter().filter_map(|r| r.vm.clone()).collect();
    assert!(
        !moved.is_empty() && moved.iter().all(|v| !first.contains(v)),
        "{moved:?}"
    );
    assert_eq!(r.rule_violations, 0);
    // The policy alone reads them from its snapshot: same spared VMs.
    let opts = SimOptions {
        explain: true,
        ..SimOptions::default()
    };
    let mut texts = Vec::new();
    struct Moves<'a>(&'a mut Vec<String>);
    impl balancer::sim::Progress for Moves<'_> {
        fn tick(&mut self, _: &balancer::sim::TickProgress) {}
        fn explain(&mut self, _: u64, text: &str) {
            self.0.push(text.to_string());
        }
    }
    balancer::sim::simulate_with_progress(&tagged, &hotspot(), &opts, &mut Moves(&mut texts))
        .unwrap();
    let planned: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.trim_start().strip_prefix("move "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(!planned.is_empty());
    assert!(
        planned.iter().all(|v| !first.contains(&v.to_string())),
        "{planned:?}"
    );
}

#[test]
fn a_swap_runs_through_the_agents_one_half_after_the_other() {
    // swap-needed: no single move fits, two swaps relieve host 0. The agent holds each second
    // half (`queued`) and starts it only once its first half is done; the simulated
    // hypervisor refuses any migration into memory that is not free.
    let sc = builtin_scenario("swap-needed", None, 1).unwrap();
    let agents = AgentSim::new(&sc, &hotspot(), AgentConfig::default()).unwrap();
    let (r, audit) = gated(&sc, agents);
    assert_eq!(r.migrations_refused, 0, "{r:#?}");
    assert!(r.max_util_final <= 0.75, "max {}", r.max_util_final);
    let queued: Vec<&Record> = audit
        .iter()
        .filter(|r| r.event == AuditEvent::Queued)
        .collect();
    assert_eq!(queued.len(), 2, "{audit:#?}");
    for q in queued {
        let first = q
            .outcome
            .as_deref()
            .unwrap()
            .strip_prefix("after ")
            .unwrap();
        let done = audit
            .iter()
            .find(|r| r.event == AuditEvent::Done && r.vm.as_deref() == Some(first))
            .expect("first half done");
        let start = audit
            .iter()
            .find(|r| r.event == AuditEvent::Start && r.vm == q.vm)
            .expect("second half started");
        assert!(start.time >= done.time, "{start:?} before {done:?}");
        assert_eq!(
            (start.from.as_ref(), start.to.as_ref()),
            (q.from.as_ref(), q.to.as_ref())
        );
    }
}
