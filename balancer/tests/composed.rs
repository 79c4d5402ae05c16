//! Policies as data: a `composed` file naming the parts of a shipped policy decides as that
//! policy does, plan for plan and report for report; parts of different policies combine; an
//! unknown part is an error naming its key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::policy::{builtin_file, PolicySpec};
use balancer::sim::{builtin_scenario, simulate, SimOptions};

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
            "[detector]\nkind = \"iqr\"\n[selector]\nkind = \"mc\"\n[placement]\nkind = \"pabfd\"\n",
            "selector.kind: unknown kind \"mc\" (one of mmt, mu, vsr)",
        ),
        (
            "[detector]\nkind = \"iqr\"\n[selector]\nkind = \"mmt\"\n[placement]\nkind = \"first_fit\"\n",
            "placement.kind: unknown kind \"first_fit\" (one of pabfd, worst_fit, sigma_search)",
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
