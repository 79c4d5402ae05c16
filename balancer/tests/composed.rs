//! Policies as data: a `composed` file naming the parts of a shipped policy decides as that
//! policy does, plan for plan and report for report; parts of different policies combine; an
//! unknown part is an error naming its key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::plan::Plan;
use balancer::planner::{History, Input};
use balancer::policy::{builtin_file, PolicySpec};
use balancer::sim::{builtin_scenario, simulate, SimOptions};
use balancer::snapshot::{Snapshot, VmState};
use balancer::trends::Trends;

mod common;
use common::{host, GB};

/// Each shipped policy file and the parts that make it.
const PRESETS: [(&str, &str, Option<&str>, &str); 8] = [
    ("hotspot", "k_of_n", Some("vsr"), "worst_fit"),
    ("stabilize", "sigma", None, "sigma_search"),
    ("consolidate", "threshold", Some("mmt"), "pabfd"),
    ("consolidate-aggressive", "threshold", Some("mmt"), "pabfd"),
    ("thr-mmt-0.8", "threshold", Some("mmt"), "pabfd"),
    ("iqr-mmt-1.5", "iqr", Some("mmt"), "pabfd"),
    ("mad-mmt-2.5", "mad", Some("mmt"), "pabfd"),
    ("lr-mmt-1.2", "lr", Some("mmt"), "pabfd"),
];

/// The shipped file `name` turned into a composition of the given parts: the same sections,
/// `policy = "composed"`.
fn composed(name: &str, detector: &str, selector: Option<&str>, placement: &str) -> PolicySpec {
    let file = builtin_file(name).unwrap();
    let policy = PolicySpec::parse(file).unwrap().policy;
    let mut text = file.replace(&format!("policy = \"{policy}\""), "policy = \"composed\"");
    text += &format!("\n[detector]\nkind = \"{detector}\"\n");
    if let Some(s) = selector {
        text += &format!("[selector]\nkind = \"{s}\"\n");
    }
    text += &format!("[placement]\nkind = \"{placement}\"\n");
    PolicySpec::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// On the shared scenarios every preset's composition gives the very report of its file (the
/// policy's name apart). planetlab-small runs CloudSim's accounting, so the Beloglazov
/// presets also take CloudSim's initial placement there.
#[test]
fn compositions_of_the_shipped_parts_simulate_as_the_shipped_files() {
    for scenario in [
        "hot-host",
        "steady-noise-short",
        "flash-crowd-short",
        "planetlab-small",
    ] {
        let sc = builtin_scenario(scenario, None, 1).unwrap();
        for (name, d, s, p) in PRESETS {
            let file = PolicySpec::builtin(name).unwrap();
            let parts = composed(name, d, s, p);
            assert_eq!(parts.trend_config(), file.trend_config(), "{name}");
            let want = simulate(&sc, &file, &SimOptions::default()).unwrap();
            let mut got = simulate(&sc, &parts, &SimOptions::default()).unwrap();
            assert_eq!(got.policy, "composed");
            got.policy = want.policy.clone();
            assert_eq!(
                got.deterministic(),
                want.deterministic(),
                "{name} on {scenario}"
            );
        }
    }
}

/// The full PlanetLab day of the fidelity tests, for the CloudSim presets: the same report.
#[test]
fn compositions_of_the_cloudsim_presets_reproduce_them_on_planetlab() {
    let sc = builtin_scenario("planetlab", None, 1).unwrap();
    for (name, d, s, p) in PRESETS.iter().filter(|r| r.0.contains("-mmt-")) {
        let want = simulate(
            &sc,
            &PolicySpec::builtin(name).unwrap(),
            &SimOptions::default(),
        )
        .unwrap();
        let mut got = simulate(&sc, &composed(name, d, *s, p), &SimOptions::default()).unwrap();
        got.policy = want.policy.clone();
        assert_eq!(got.deterministic(), want.deterministic(), "{name}");
    }
}

/// Hotspot's detector with PABFD placement (no shipped file): relieves the hot host without
/// breaking a rule or moving a VM twice, and is not merely one of its parents.
#[test]
fn hotspot_detector_with_pabfd_placement_relieves_the_hot_host() {
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    let mixed = composed("hotspot", "k_of_n", Some("vsr"), "pabfd");
    let r = simulate(&sc, &mixed, &SimOptions::default()).unwrap();
    assert!(r.max_util_final < 0.85, "{r:?}");
    assert!(r.migrations > 0 && r.migrations <= 20, "{}", r.migrations);
    assert_eq!(r.ping_pong, 0);
    assert_eq!(r.rule_violations, 0);
    let hotspot = simulate(
        &sc,
        &PolicySpec::builtin("hotspot").unwrap(),
        &SimOptions::default(),
    )
    .unwrap();
    assert_ne!(
        (r.migrations, r.energy_kwh.to_bits()),
        (hotspot.migrations, hotspot.energy_kwh.to_bits()),
        "PABFD placed exactly as hotspot's worst fit"
    );
}

/// The shipped composed file is that composition, and may drive a real cluster.
#[test]
fn the_shipped_composed_file_is_hotspot_with_pabfd() {
    let shipped = PolicySpec::builtin_for_cluster("hotspot-pabfd").unwrap();
    assert_eq!(shipped, composed("hotspot", "k_of_n", Some("vsr"), "pabfd"));
}

/// Every wrong part is a config error naming the key to fix.
#[test]
fn wrong_parts_are_errors_naming_their_key() {
    let base = "policy = \"composed\"\n";
    let cases = [
        (
            "[detector]\nkind = \"rs\"\n[selector]\nkind = \"mmt\"\n[placement]\nkind = \"pabfd\"\n",
            "detector.kind: unknown kind \"rs\" (one of threshold, iqr, mad, lr, lrr, k_of_n, sigma)",
        ),
        (
            "[detector]\nkind = \"iqr\"\n[selector]\nkind = \"rs\"\n[placement]\nkind = \"pabfd\"\n",
            "selector.kind: unknown kind \"rs\" (one of mmt, mu, vsr, mm, mc)",
        ),
        (
            "[detector]\nkind = \"iqr\"\n[selector]\nkind = \"mmt\"\n[placement]\nkind = \"first_fit\"\n",
            "placement.kind: unknown kind \"first_fit\" (one of pabfd, worst_fit, best_fit, sigma_search)",
        ),
        (
            "[detector]\nkind = \"iqr\"\n[placement]\nkind = \"pabfd\"\n",
            "policy = \"composed\" needs [selector] kind",
        ),
        (
            "[selector]\nkind = \"mmt\"\n[placement]\nkind = \"pabfd\"\n",
            "policy = \"composed\" needs [detector] kind",
        ),
        (
            "[detector]\nkind = \"k_of_n\"\n[placement]\nkind = \"sigma_search\"\n",
            "placement.kind = \"sigma_search\" needs detector.kind = \"sigma\"",
        ),
        (
            "[detector]\nkind = \"sigma\"\n[selector]\nkind = \"mmt\"\n[placement]\nkind = \"pabfd\"\n",
            "detector.kind = \"sigma\" flags no host: it needs placement.kind = \"sigma_search\"",
        ),
    ];
    for (parts, want) in cases {
        let e = PolicySpec::parse(&format!("{base}{parts}")).unwrap_err();
        assert_eq!(e.to_string(), format!("invalid config: {want}"), "{parts}");
    }
    // A part under another policy would be ignored: refused instead.
    let e = PolicySpec::parse("policy = \"hotspot\"\n[placement]\nkind = \"pabfd\"\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("[placement] is only read with policy = \"composed\""),
        "{e}"
    );
    // A part's section takes `kind` only (its parameters live in the policy sections).
    let e = PolicySpec::parse(&format!(
        "{base}[detector]\nkind = \"iqr\"\nsafety = 1.5\n[selector]\nkind = \"mmt\"\n\
         [placement]\nkind = \"pabfd\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("safety"), "{e}");
}

/// A 16-vCPU VM (so that any share of its host fits it) asking `mhz`, with 4 GB.
fn vm(name: &str, host: &str, mhz: f64) -> VmState {
    VmState {
        name: name.into(),
        host: host.into(),
        vcpus: 16,
        cpu_cap_mhz: 32_000.0,
        cpu_demand_mhz: mhz,
        mem_kb: 4 * GB,
        mem_used_kb: 4 * GB,
        migrating: false,
        migrating_to: None,
        host_idx: 0,
        tags: Default::default(),
    }
}

/// The plan of `spec` on the last of `history` (oldest first, one per policy step), every
/// snapshot observed in turn.
fn decide_after(spec: &PolicySpec, history: &[Snapshot]) -> Plan {
    let mut trends = Trends::new(spec.trend_config());
    for s in history {
        trends.observe(s);
    }
    let s = history.last().unwrap();
    spec.build().decide(Input {
        snapshot: s,
        trends: &trends,
        history: &History::default(),
        now: s.time,
        wall_s: s.time,
        verbose: false,
        pending: &[],
    })
}

/// `make(k)` for k in 0..10, one policy step apart, ending at t = 36,000.
fn steps(spec: &PolicySpec, make: impl Fn(usize) -> Snapshot) -> Vec<Snapshot> {
    (0..10)
        .map(|k| {
            let mut s = make(k);
            s.time = 36_000 - (9 - k as u64) * spec.step_s();
            s
        })
        .collect()
}

fn moved(plan: &Plan) -> Vec<(&str, &str)> {
    plan.moves
        .iter()
        .map(|m| (m.vm.as_str(), m.to.as_str()))
        .collect()
}

/// h0 at 1.2 of its CPUs: 38,400 MHz in VMs a..e (1,600, 3,200, 9,600, 16,000, 8,000 MHz),
/// h1 and h2 empty. Down to 0.8 (consolidate's threshold) is 12,800 MHz: d alone does it.
fn one_vm_suffices(_: usize) -> Snapshot {
    let mhz = [1_600.0, 3_200.0, 9_600.0, 16_000.0, 8_000.0];
    let vms = ["a", "b", "c", "d", "e"]
        .iter()
        .zip(mhz)
        .map(|(n, m)| vm(n, "h0", m))
        .collect();
    Snapshot::new(0, vec![host("h0"), host("h1"), host("h2")], vms).unwrap()
}

#[test]
fn fewest_moves_takes_the_smallest_vm_that_suffices_alone() {
    for (name, detector, placement) in [
        ("consolidate", "threshold", "pabfd"),
        ("hotspot", "k_of_n", "worst_fit"),
    ] {
        let mm = composed(name, detector, Some("mm"), placement);
        let plan = decide_after(&mm, &steps(&mm, one_vm_suffices));
        assert_eq!(
            plan.moves.iter().map(|m| m.vm.as_str()).collect::<Vec<_>>(),
            ["d"],
            "{name}: {}",
            plan.explain()
        );
        // Least CPU first needs several moves for the same relief.
        let mu = composed(name, detector, Some("mu"), placement);
        let plan = decide_after(&mu, &steps(&mu, one_vm_suffices));
        assert!(plan.moves.len() > 1, "{name}: {}", plan.explain());
    }
}

/// h0 over ten steps: p and q rise and fall together, r against them, s flat and smallest
/// (32,600 MHz at the peak, 1.02 of h0). The rest of the host's load moves with p (and with
/// q); without p, h0 is at 0.59, under both policies' bars.
fn correlated(k: usize) -> Snapshot {
    let wave = [0.0, 1.0, 3.0, 2.0, 4.0, 1.0, 0.0, 2.0, 3.0, 4.0][k] * 400.0;
    let vms = vec![
        vm("p", "h0", 12_000.0 + wave),
        vm("q", "h0", 12_000.0 + wave),
        vm("r", "h0", 6_000.0 - wave),
        vm("s", "h0", 1_000.0),
    ];
    Snapshot::new(0, vec![host("h0"), host("h1"), host("h2")], vms).unwrap()
}

#[test]
fn maximum_correlation_takes_the_vm_that_moves_with_the_rest_of_the_host() {
    for (name, detector, placement) in [
        ("consolidate", "threshold", "pabfd"),
        ("hotspot", "k_of_n", "worst_fit"),
    ] {
        let vms = |sel: &str| {
            let spec = composed(name, detector, Some(sel), placement);
            let plan = decide_after(&spec, &steps(&spec, correlated));
            let mut vms: Vec<String> = plan.moves.iter().map(|m| m.vm.clone()).collect();
            vms.sort();
            (vms, plan.explain())
        };
        let (mc, text) = vms("mc");
        assert_eq!(mc, ["p"], "{name}: {text}");
        // Least CPU starts from the small ones (s, too small to pay for its move in
        // hotspot's cost test, then r), which MC leaves where they are.
        let (mu, text) = vms("mu");
        assert!(mu.contains(&"r".to_string()), "{name}: {text}");
    }
}

/// h0 hot with one small VM to shed; h1 at 0.6, h2 at 0.1: best fit packs onto h1, worst
/// fit spreads onto h2; neither goes over hotspot's 0.75 target.
fn two_destinations(_: usize) -> Snapshot {
    let mut vms = vec![vm("small", "h0", 3_200.0), vm("big", "h0", 26_000.0)];
    vms.push(vm("h1-load", "h1", 19_200.0));
    vms.push(vm("h2-load", "h2", 3_200.0));
    Snapshot::new(0, vec![host("h0"), host("h1"), host("h2")], vms).unwrap()
}

#[test]
fn best_fit_packs_onto_the_fullest_host_that_stays_under_the_target() {
    for (name, detector) in [("hotspot", "k_of_n"), ("consolidate", "threshold")] {
        let best = composed(name, detector, Some("mu"), "best_fit");
        let plan = decide_after(&best, &steps(&best, two_destinations));
        assert_eq!(
            moved(&plan).first(),
            Some(&("small", "h1")),
            "{name}: {}",
            plan.explain()
        );
        let worst = composed(name, detector, Some("mu"), "worst_fit");
        let plan = decide_after(&worst, &steps(&worst, two_destinations));
        assert_eq!(
            moved(&plan).first(),
            Some(&("small", "h2")),
            "{name}: {}",
            plan.explain()
        );
    }
    // The new parts also run whole scenarios without breaking a rule or ping-ponging.
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    for (sel, place) in [("mm", "best_fit"), ("mc", "worst_fit"), ("mm", "pabfd")] {
        let spec = composed("hotspot", "k_of_n", Some(sel), place);
        let r = simulate(&sc, &spec, &SimOptions::default()).unwrap();
        assert!(
            r.migrations > 0 && r.max_util_final < 0.85,
            "{sel}/{place}: {r:?}"
        );
        assert_eq!((r.ping_pong, r.rule_violations), (0, 0), "{sel}/{place}");
    }
}
