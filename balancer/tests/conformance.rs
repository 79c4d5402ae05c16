//! Conformance suite every built-in policy must pass: no moves on a balanced cluster, no hard
//! constraint ever broken, byte-identical plans for identical input, (near) zero migrations
//! under steady noise, and convergence of a hot host.
// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use balancer::constraints::{Group, Pin};
use balancer::plan::Plan;
use balancer::planner::{History, Input};
use balancer::policy::{PolicySpec, BUILTIN};
use balancer::sim::{builtin_scenario, simulate, SimOptions};
use balancer::snapshot::{HostState, Snapshot, VmState, VmTags};
use balancer::trends::{TrendConfig, Trends};
use gmond_metrics::hypervisor::profile::{splitmix64, unit};

mod common;
use common::{host, GB};

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

/// Trends built from `n` identical observations of the snapshot.
fn steady_trends(s: &Snapshot, n: u64) -> Trends {
    let mut t = Trends::new(TrendConfig::default());
    for k in 0..n {
        let mut s2 = s.clone();
        s2.time = s.time - (n - 1 - k) * 60;
        t.observe(&s2);
    }
    t
}

/// Four hosts with twelve VMs at 95 % on h0 (2.7 of its CPUs), at time `t`.
fn twelve_hot_on_h0(t: u64) -> Snapshot {
    let hosts: Vec<HostState> = (0..4).map(|i| host(&format!("h{i}"))).collect();
    let vms: Vec<VmState> = (0..12)
        .map(|i| vm(&format!("v{i:02}"), "h0", 0.95, 4))
        .collect();
    Snapshot::new(t, hosts, vms).unwrap()
}

/// The plan of `spec` for `s`, held steady for 40 observations, decided at wall-clock `wall_s`.
fn decide_steady(spec: &PolicySpec, s: &Snapshot, wall_s: u64) -> Plan {
    let trends = steady_trends(s, 40);
    spec.build().decide(Input {
        snapshot: s,
        trends: &trends,
        history: &History::default(),
        now: s.time,
        wall_s,
        verbose: false,
        pending: &[],
    })
}

/// Every built-in policy, and compositions that mix the parts of different ones.
fn policies() -> Vec<PolicySpec> {
    let mut all: Vec<PolicySpec> = BUILTIN
        .iter()
        .map(|n| PolicySpec::builtin(n).unwrap())
        .collect();
    all.extend(MIXES.iter().map(mix));
    all
}

/// Compositions no shipped file makes: (detector, selector, placement).
const MIXES: [(&str, &str, &str); 2] = [("k_of_n", "vsr", "pabfd"), ("iqr", "mmt", "worst_fit")];

/// A composed policy of the given parts over the shipped hotspot file's gates (the parts read
/// their parameters from the default `[consolidate]` and the file's `[hotspot]`).
fn mix((detector, selector, placement): &(&str, &str, &str)) -> PolicySpec {
    let hotspot = balancer::policy::builtin_file("hotspot").unwrap();
    let text = hotspot.replace("policy = \"hotspot\"", "policy = \"composed\"")
        + &format!(
            "[detector]\nkind = \"{detector}\"\n[selector]\nkind = \"{selector}\"\n\
             [placement]\nkind = \"{placement}\"\n"
        );
    // consolidate's detectors keep 30 steps of history: at 60 s, half an hour.
    let text = text + "[consolidate]\nmin_history_s = 1800\nlr_window_s = 1800\n";
    PolicySpec::parse(&text).unwrap()
}

#[test]
fn every_shipped_policy_file_parses_and_bad_ones_fail() {
    for name in [
        "none",
        "naive-threshold",
        "hotspot",
        "stabilize",
        "consolidate",
        "consolidate-aggressive",
        "thr-mmt-0.8",
        "iqr-mmt-1.5",
        "mad-mmt-2.5",
        "lr-mmt-1.2",
        "hotspot-pabfd",
    ] {
        let path = format!(
            "{}/../configs/policies/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        PolicySpec::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    assert!(PolicySpec::parse("policy = \"nope\"").is_err());
    // The deprecated sample counts still parse, with their old ranges, and go together.
    assert!(PolicySpec::parse("policy = \"hotspot\"\n[hotspot]\nk = 3\nn = 5\n").is_ok());
    assert!(PolicySpec::parse("policy = \"hotspot\"\n[hotspot]\nk = 9\nn = 5\n").is_err());
    assert!(PolicySpec::parse("policy = \"hotspot\"\n[hotspot]\nk = 3\n").is_err());
    assert!(PolicySpec::parse("policy = \"hotspot\"\n[hotspot]\nover_s = 600\n").is_err());
    // consolidate's detectors keep 30 samples: an hour of history needs steps of 120 s or more.
    let short = "policy = \"consolidate\"\nstep_s = 60\n";
    let e = PolicySpec::parse(short).unwrap_err().to_string();
    assert!(
        e.contains("at most 30 steps (1800 s at step_s = 60)"),
        "{e}"
    );
    assert!(PolicySpec::parse(&format!(
        "{short}[consolidate]\nmin_history_s = 1800\nlr_window_s = 600\n"
    ))
    .is_ok());
    assert!(PolicySpec::parse("policy = \"hotspot\"\n[planner]\nbogus = 1\n").is_err());
    assert!(
        PolicySpec::parse("policy = \"hotspot\"\n[constraints]\nmem_reserve_frac = 1.5\n").is_err()
    );
}

#[test]
fn simulation_only_policies_are_refused_for_a_real_cluster() {
    // Memory unchecked or CloudSim's literal round: simulator only, whatever the file says.
    for name in [
        "consolidate-aggressive",
        "thr-mmt-0.8",
        "iqr-mmt-1.5",
        "mad-mmt-2.5",
        "lr-mmt-1.2",
    ] {
        let spec = PolicySpec::builtin(name).unwrap();
        assert!(spec.simulation_only_reason().is_some(), "{name}");
        let e = PolicySpec::builtin_for_cluster(name)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is for simulation only: constraints.check_memory = false"),
            "{name}: {e}"
        );
    }
    for name in BUILTIN {
        PolicySpec::builtin_for_cluster(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Derived from the settings, not only from the flag.
    let cases = [
        (
            "[constraints]\ncheck_memory = false\n",
            "check_memory = false",
        ),
        (
            "[consolidate]\ncloudsim_quirks = true\n",
            "cloudsim_quirks = true",
        ),
        (
            "simulation_only = true\n",
            "the file says simulation_only = true",
        ),
    ];
    for (extra, why) in cases {
        let text = format!("policy = \"consolidate\"\n{extra}");
        assert!(
            PolicySpec::parse(&text).is_ok(),
            "the simulator takes it: {text}"
        );
        let e = PolicySpec::parse_for_cluster(&text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn the_simulation_only_policy_plans_moves_a_hypervisor_refuses() {
    // Why the flag exists: on memory-bound, consolidate-aggressive plans moves into memory
    // the destination does not have (the simulated hypervisor refuses them); consolidate,
    // which may run on a cluster, never does.
    let sc = builtin_scenario("memory-bound", None, 1).unwrap();
    let run = |p: &str| {
        simulate(
            &sc,
            &PolicySpec::builtin(p).unwrap(),
            &SimOptions::default(),
        )
        .unwrap()
    };
    assert!(run("consolidate-aggressive").migrations_refused > 0);
    assert_eq!(run("consolidate").migrations_refused, 0);
}

#[test]
fn balanced_cluster_gets_no_moves() {
    let hosts: Vec<HostState> = (0..4).map(|i| host(&format!("h{i}"))).collect();
    let vms: Vec<VmState> = (0..24)
        .map(|i| vm(&format!("v{i:02}"), &format!("h{}", i % 4), 0.5, 4))
        .collect();
    let s = Snapshot::new(3600, hosts, vms).unwrap();
    let trends = steady_trends(&s, 10);
    let history = History::default();
    for spec in policies() {
        let plan = spec.build().decide(Input {
            snapshot: &s,
            trends: &trends,
            history: &history,
            now: s.time,
            wall_s: s.time,
            verbose: false,
            pending: &[],
        });
        assert!(
            plan.moves.is_empty(),
            "{} moved on a balanced cluster: {}",
            spec.policy,
            plan.explain()
        );
    }
}

/// A cluster with every kind of rule and some hot hosts, generated from a seed.
fn messy(seed: u64) -> (Snapshot, PolicyRules) {
    let r = |k: u64| unit(splitmix64(seed.wrapping_mul(1000) + k));
    let nh = 6;
    let mut hosts: Vec<HostState> = (0..nh).map(|i| host(&format!("h{i}"))).collect();
    hosts[5].maintenance = true;
    hosts[4].up = r(1) < 0.5;
    let mut vms = Vec::new();
    for i in 0..30u64 {
        let h = if i < 12 {
            0
        } else {
            (r(10 + i) * nh as f64) as usize % nh
        };
        let h = if !hosts[h].up { 0 } else { h };
        vms.push(vm(
            &format!("v{i:02}"),
            &format!("h{h}"),
            0.2 + 0.8 * r(100 + i),
            1 + (r(200 + i) * 6.0) as u64,
        ));
    }
    let s = Snapshot::new(7200, hosts, vms).unwrap();
    let rules = PolicyRules {
        anti: vec![Group {
            name: "web".into(),
            vms: vec!["v00".into(), "v01".into(), "v02".into()],
        }],
        aff: vec![Group {
            name: "db".into(),
            vms: vec!["v03".into(), "v04".into()],
        }],
        pins: vec![Pin {
            vm: "v05".into(),
            hosts: vec!["h0".into(), "h1".into()],
        }],
    };
    (s, rules)
}

struct PolicyRules {
    anti: Vec<Group>,
    aff: Vec<Group>,
    pins: Vec<Pin>,
}

#[test]
fn no_move_ever_breaks_a_constraint() {
    let mut total_moves = 0;
    let mut rule_moves = 0;
    let mut grouped = 0;
    for seed in 0..12 {
        let (s, rules) = messy(seed);
        let trends = steady_trends(&s, 12);
        let history = History::default();
        for mut spec in policies() {
            spec.constraints.anti_affinity = rules.anti.clone();
            spec.constraints.affinity = rules.aff.clone();
            spec.constraints.pins = rules.pins.clone();
            let plan = spec.build().decide(Input {
                snapshot: &s,
                trends: &trends,
                history: &history,
                now: s.time,
                wall_s: s.time,
                verbose: false,
                pending: &[],
            });
            // Replay the plan and check every hard rule after each move.
            let mut place: Vec<usize> = s.vms.iter().map(|v| v.host_idx).collect();
            for m in &plan.moves {
                let v = s.vm_index(&m.vm).unwrap();
                let to = s.host_index(&m.to).unwrap();
                assert_eq!(
                    s.hosts[place[v]].name, m.from,
                    "{}: move source mismatch",
                    spec.policy
                );
                place[v] = to;
                let h = &s.hosts[to];
                assert!(
                    h.up && !h.maintenance,
                    "{}: moved {} onto unusable {}",
                    spec.policy,
                    m.vm,
                    h.name
                );
                if spec.constraints.check_memory {
                    let mem: u64 = (0..s.vms.len())
                        .filter(|&i| place[i] == to)
                        .map(|i| s.vms[i].mem_kb)
                        .sum();
                    let limit =
                        (h.mem_kb as f64 * (1.0 - spec.constraints.mem_reserve_frac)) as u64;
                    assert!(
                        mem <= limit,
                        "{}: memory over limit on {}",
                        spec.policy,
                        h.name
                    );
                }
                if spec.constraints.max_vcpu_ratio > 0.0 {
                    let vc: u32 = (0..s.vms.len())
                        .filter(|&i| place[i] == to)
                        .map(|i| s.vms[i].vcpus)
                        .sum();
                    assert!(f64::from(vc) <= f64::from(h.cpus) * spec.constraints.max_vcpu_ratio);
                }
                if m.vm == "v05" {
                    assert!(m.to == "h0" || m.to == "h1", "{}: pin broken", spec.policy);
                }
                if ["v00", "v01", "v02"].contains(&m.vm.as_str()) {
                    let others = ["v00", "v01", "v02"]
                        .iter()
                        .filter(|o| **o != m.vm)
                        .map(|o| place[s.vm_index(o).unwrap()]);
                    assert!(
                        others.into_iter().all(|o| o != to),
                        "{}: anti-affinity broken by {}",
                        spec.policy,
                        m.vm
                    );
                }
                // A group carried together is judged once all its moves are made (below).
                if ["v03", "v04"].contains(&m.vm.as_str()) && m.group.is_none() {
                    let other = if m.vm == "v03" { "v04" } else { "v03" };
                    assert_eq!(
                        place[s.vm_index(other).unwrap()],
                        to,
                        "{}: affinity broken",
                        spec.policy
                    );
                }
            }
            if plan.moves.iter().any(|m| m.group.is_some()) {
                let (a, b) = (s.vm_index("v03").unwrap(), s.vm_index("v04").unwrap());
                assert_eq!(place[a], place[b], "{}: group split", spec.policy);
                grouped += 1;
            }
            total_moves += plan.moves.len();
            rule_moves += plan.moves.iter().filter(|m| m.reason.is_rule()).count();
        }
    }
    assert!(grouped > 0, "no plan carried the affinity group");
    // The cases must exercise the planner, or the checks above prove nothing.
    assert!(total_moves > 50, "only {total_moves} moves");
    assert!(rule_moves > 10, "only {rule_moves} rule moves");
}

#[test]
fn same_input_gives_byte_identical_plans() {
    for seed in 0..6 {
        let (s, _) = messy(seed);
        // The same cluster given in a different order must give the same plan.
        let mut rev_hosts = s.hosts.clone();
        rev_hosts.reverse();
        let mut rev_vms = s.vms.clone();
        rev_vms.reverse();
        let s2 = Snapshot::new(s.time, rev_hosts, rev_vms).unwrap();
        let t1 = steady_trends(&s, 12);
        let t2 = steady_trends(&s2, 12);
        let history = History::default();
        assert_eq!(s2, s);
        for spec in policies() {
            let a = spec
                .build()
                .decide(Input {
                    snapshot: &s,
                    trends: &t1,
                    history: &history,
                    now: s.time,
                    wall_s: s.time,
                    verbose: false,
                    pending: &[],
                })
                .to_json();
            let b = spec
                .build()
                .decide(Input {
                    snapshot: &s2,
                    trends: &t2,
                    history: &history,
                    now: s.time,
                    wall_s: s.time,
                    verbose: false,
                    pending: &[],
                })
                .to_json();
            assert_eq!(a, b, "{} is not deterministic", spec.policy);
        }
    }
}

/// A composition of a shipped policy's own parts plans byte for byte as its file (the name
/// apart) on the messy clusters.
#[test]
fn compositions_of_shipped_parts_plan_as_the_files() {
    let presets = [
        ("hotspot", "[detector]\nkind = \"k_of_n\"\n[selector]\nkind = \"vsr\"\n[placement]\nkind = \"worst_fit\"\n"),
        ("stabilize", "[detector]\nkind = \"sigma\"\n[placement]\nkind = \"sigma_search\"\n"),
        ("consolidate", "[detector]\nkind = \"threshold\"\n[selector]\nkind = \"mmt\"\n[placement]\nkind = \"pabfd\"\n"),
    ];
    let mut moves = 0;
    for seed in 0..6 {
        let (s, _) = messy(seed);
        let t = steady_trends(&s, 12);
        let history = History::default();
        let input = Input {
            snapshot: &s,
            trends: &t,
            history: &history,
            now: s.time,
            wall_s: s.time,
            verbose: false,
            pending: &[],
        };
        for (name, parts) in presets {
            let file = balancer::policy::builtin_file(name).unwrap();
            let text = file.replace(&format!("policy = \"{name}\""), "policy = \"composed\"");
            let composed = PolicySpec::parse(&format!("{text}\n{parts}")).unwrap();
            let want = PolicySpec::builtin(name).unwrap().build().decide(input);
            let mut got = composed.build().decide(input);
            got.policy = want.policy.clone();
            assert_eq!(got.to_json(), want.to_json(), "{name}, seed {seed}");
            moves += want.moves.len();
        }
    }
    assert!(
        moves > 10,
        "only {moves} moves: the comparison proves little"
    );
}

#[test]
fn steady_noise_gives_no_migrations() {
    let sc = builtin_scenario("steady-noise-short", None, 7).unwrap();
    for spec in policies() {
        let r = simulate(&sc, &spec, &SimOptions::default()).unwrap();
        assert!(
            r.migrations <= 1,
            "{}: {} migrations under steady noise",
            spec.policy,
            r.migrations
        );
        assert_eq!(r.ping_pong, 0);
    }
}

#[test]
fn hot_host_converges() {
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    for spec in policies() {
        let r = simulate(&sc, &spec, &SimOptions::default()).unwrap();
        if spec.policy == "none" {
            assert_eq!(r.migrations, 0);
            assert!(r.max_util_final > 2.0);
            continue;
        }
        assert!(
            r.max_util_final < 0.85,
            "{}: hot host not relieved ({})",
            spec.policy,
            r.max_util_final
        );
        assert!(
            r.migrations <= 20,
            "{}: {} migrations (ideal 18)",
            spec.policy,
            r.migrations
        );
        assert_eq!(r.ping_pong, 0, "{}", spec.policy);
        assert_eq!(r.rule_violations, 0, "{}", spec.policy);
    }
}

/// Issue 15, item 8: every policy honours the operator's rules through the planner's gates:
/// an excluded VM is never planned (not even off a host in maintenance), and outside the
/// migration windows nothing is, with a note saying when the next window opens.
#[test]
fn every_policy_honours_exclusion_and_migration_windows() {
    // Monday 2026-12-07 12:00 UTC.
    let s = twelve_hot_on_h0(1_796_601_600 + 12 * 3600);
    let decide = |spec: &PolicySpec| decide_steady(spec, &s, s.time);
    let mut tried = Vec::new();
    for base in policies() {
        let free = decide(&base);
        if free.moves.is_empty() {
            continue; // `none`, and policies that do not act on one sample's load
        }
        tried.push(base.policy.clone());
        let moved: Vec<String> = free.moves.iter().map(|m| m.vm.clone()).collect();
        let mut spec = base.clone();
        spec.constraints.exclude = moved.clone();
        let plan = decide(&spec);
        assert!(
            plan.moves.iter().all(|m| !moved.contains(&m.vm)),
            "{}: moved an excluded VM: {}",
            spec.policy,
            plan.explain()
        );
        // Weeknights only: closed at Monday noon, open at 22:00.
        let mut spec = base.clone();
        spec.constraints.windows = vec!["* 22-23,0-5 * * 1-5".into()];
        let plan = decide(&spec);
        assert!(plan.moves.is_empty(), "{}: {}", spec.policy, plan.explain());
        assert!(
            plan.notes
                .iter()
                .any(|n| n.message.contains("next window opens 2026-12-07 22:00 UTC")),
            "{}: {:?}",
            spec.policy,
            plan.notes
        );
        let open = decide_steady(&spec, &s, s.time + 10 * 3600);
        assert_eq!(open.moves, free.moves, "{}", spec.policy);
    }
    assert!(tried.len() >= 5, "policies that moved: {tried:?}");
    // Maintenance: everything leaves h0 but the excluded VMs.
    let mut spec = PolicySpec::builtin("hotspot").unwrap();
    spec.constraints.maintenance = vec!["h0".into()];
    spec.constraints.exclude = vec!["v0*".into()];
    spec.planner.max_moves_per_round = 0;
    spec.planner.max_parallel = 0;
    let plan = decide(&spec);
    assert!(!plan.moves.is_empty());
    assert!(
        plan.moves.iter().all(|m| m.vm.starts_with("v1")),
        "{}",
        plan.explain()
    );
}

/// h0 with twelve VMs at 95 %, the first two an affinity group: every policy moves the pair
/// together (the same round, one destination, consecutive, marked with the group) or not at
/// all; enough of them do move it; a round with room for one move leaves it.
#[test]
fn an_affinity_group_that_runs_together_moves_together() {
    let s = twelve_hot_on_h0(36_000);
    let decide = |spec: &PolicySpec| decide_steady(spec, &s, s.time);
    let pair = Group {
        name: "pair".into(),
        vms: vec!["v00".into(), "v01".into()],
    };
    let mut carried = Vec::new();
    for base in policies() {
        let mut spec = base.clone();
        spec.constraints.affinity = vec![pair.clone()];
        let plan = decide(&spec);
        let at: Vec<usize> = (0..plan.moves.len())
            .filter(|&i| pair.vms.contains(&plan.moves[i].vm))
            .collect();
        match at.as_slice() {
            [] => {}
            [a, b] => {
                let (x, y) = (&plan.moves[*a], &plan.moves[*b]);
                assert_eq!(b - a, 1, "{}: {}", spec.policy, plan.explain());
                assert_eq!(x.to, y.to, "{}", spec.policy);
                assert_eq!(x.group.as_deref(), Some("pair"), "{}", spec.policy);
                assert_eq!(y.group.as_deref(), Some("pair"), "{}", spec.policy);
                carried.push(spec.policy.clone());
                // With room for one move only, the pair stays.
                spec.planner.max_moves_per_round = 1;
                let one = decide(&spec);
                assert!(
                    one.moves.iter().all(|m| !pair.vms.contains(&m.vm)),
                    "{}: {}",
                    spec.policy,
                    one.explain()
                );
            }
            _ => panic!("{}: the pair split: {}", spec.policy, plan.explain()),
        }
    }
    assert!(
        carried.len() >= 3,
        "policies that moved the pair: {carried:?}"
    );
}

/// h0 with twelve VMs at 95 %: with v00..v09 at priority 10 (from the policy file, or from
/// the view's tags), every policy that moves VMs off h0 takes v10 and v11 first; an
/// `exclude` tag spares a VM as the file's `exclude` does.
#[test]
fn lower_priority_vms_move_first_and_tags_in_the_view_count_as_the_file() {
    let plain = twelve_hot_on_h0(36_000);
    let mut tagged = plain.clone();
    for v in tagged.vms.iter_mut().filter(|v| v.name.starts_with("v0")) {
        v.tags = VmTags::parse("priority=10");
    }
    let decide = |spec: &PolicySpec, s: &Snapshot| decide_steady(spec, s, s.time);
    let mut tried = Vec::new();
    for base in policies() {
        let free = decide(&base, &plain);
        if free.moves.len() < 2 {
            continue;
        }
        // Without priorities the policies take the lowest names first: v10 and v11 stay.
        let first = |plan: &Plan| {
            let mut v: Vec<String> = plan.moves.iter().take(2).map(|m| m.vm.clone()).collect();
            v.sort();
            v
        };
        assert_ne!(first(&free), ["v10", "v11"], "{}", base.policy);
        let mut spec = base.clone();
        spec.constraints.priority = [("v0*".to_string(), 10)].into_iter().collect();
        let by_file = decide(&spec, &plain);
        assert_eq!(
            first(&by_file),
            ["v10", "v11"],
            "{}: {}",
            spec.policy,
            by_file.explain()
        );
        let by_tag = decide(&base, &tagged);
        assert_eq!(by_tag.moves, by_file.moves, "{}", base.policy);
        tried.push(base.policy.clone());
    }
    assert!(tried.len() >= 4, "policies that moved two VMs: {tried:?}");
    // An exclude tag spares the VM, as the file's exclude does.
    let spec = PolicySpec::builtin("hotspot").unwrap();
    let free = decide(&spec, &plain);
    let mut spared = plain.clone();
    for v in spared.vms.iter_mut() {
        if free.moves.iter().any(|m| m.vm == v.name) {
            v.tags = VmTags::parse("exclude");
        }
    }
    let plan = decide(&spec, &spared);
    assert!(
        plan.moves
            .iter()
            .all(|m| free.moves.iter().all(|f| f.vm != m.vm)),
        "{}",
        plan.explain()
    );
}

#[test]
fn bad_operator_rules_are_refused_with_the_pattern() {
    let base = balancer::policy::builtin_file("hotspot").unwrap();
    for (rules, want) in [
        ("exclude = [\"a*b\"]", "exclude: \"a*b\""),
        ("exclude = [\"*\"]", "exclude: \"*\""),
        ("windows = [\"* 22-23 * *\"]", "five fields"),
        ("windows = [\"* 25 * * *\"]", "is not a cron pattern"),
        ("priority = { \"db*x\" = 5 }", "priority: \"db*x\""),
        (
            "priority = { \"db*\" = 5000 }",
            "priority: \"db*\" = 5000 is outside -1000..=1000",
        ),
    ] {
        // The shipped file sets each key to its empty default: replace that line.
        let key = rules.split(' ').next().unwrap();
        let empty = if key == "priority" { "{}" } else { "[]" };
        let text = base.replacen(&format!("{key} = {empty}"), rules, 1);
        assert_ne!(text, base);
        let e = PolicySpec::parse(&text).unwrap_err().to_string();
        assert!(e.contains(want), "{rules}: {e}");
    }
}
