//! Windows are time, not samples (issue 15): a scenario simulated with 10 s and with 300 s
//! ticks (the agent observes every 10 s, the PlanetLab scenarios every 300 s) gets the same
//! decisions, within one coarse tick for when they happen.
// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use balancer::policy::PolicySpec;
use balancer::sim::{builtin_scenario, simulate_recorded, Recording, Report, SimOptions};

/// `scenario` under `policy` observed every `tick_s` seconds.
fn run(scenario: &str, policy: &str, tick_s: u64) -> (Report, Recording) {
    let mut sc = builtin_scenario(scenario, None, 1).unwrap();
    sc.tick_s = tick_s;
    let opts = SimOptions {
        seed: 1,
        record: true,
        ..SimOptions::default()
    };
    let (r, rec) = simulate_recorded(&sc, &PolicySpec::builtin(policy).unwrap(), &opts).unwrap();
    (r, rec.unwrap())
}

/// Start of the first migration, s.
fn first_move(rec: &Recording) -> Option<u64> {
    rec.migrations.first().map(|m| m.t_s)
}

/// Final CPU utilisation of every host, rounded to 1e-3 (the final placement, in load).
fn final_util(rec: &Recording) -> Vec<f64> {
    rec.util
        .iter()
        .map(|u| (u.last().copied().unwrap_or(0.0) * 1000.0).round() / 1000.0)
        .collect()
}

/// The tolerance: decisions are taken at ticks, so the coarse run may decide up to one of its
/// ticks later; what is decided (how many moves, the final placement) must be the same. Later
/// moves are paced by the per-round limits (4 moves a round), so a run with fewer rounds
/// finishes later: that is rounds, not windows, and is not compared.
const COARSE: u64 = 300;

/// The policies with a sustained test (naive-threshold has none: it reacts to one sample).
const DAMPED: [&str; 3] = ["hotspot", "stabilize", "consolidate"];

#[test]
fn a_two_minute_spike_moves_nothing_whatever_the_tick() {
    // The sustained tests are 3 of the last 5 minutes: a 2-minute spike never passes them (in
    // samples, hotspot's was 3 of 5 observations: 30 s at a 10 s tick, and it moved VMs).
    for policy in DAMPED {
        for tick in [10, 60, COARSE] {
            let (r, _) = run("flash-crowd-short", policy, tick);
            assert_eq!(r.migrations, 0, "{policy} at a {tick} s tick");
        }
    }
}

/// Same moves and final placement at 10 s and 300 s ticks, the first within one coarse tick.
fn same_decisions(scenario: &str, policy: &str) {
    let (fine, fr) = run(scenario, policy, 10);
    let (coarse, cr) = run(scenario, policy, COARSE);
    assert!(
        fine.migrations > 0,
        "{scenario} {policy}: nothing to compare"
    );
    assert_eq!(fine.migrations, coarse.migrations, "{scenario} {policy}");
    assert_eq!(final_util(&fr), final_util(&cr), "{scenario} {policy}");
    assert_eq!(
        (fine.ping_pong, coarse.ping_pong),
        (0, 0),
        "{scenario} {policy}"
    );
    let (f, c) = (first_move(&fr).unwrap(), first_move(&cr).unwrap());
    assert!(
        f.abs_diff(c) <= COARSE,
        "{scenario} {policy}: first move at {f} s vs {c} s"
    );
}

#[test]
fn hot_host_gets_the_same_moves_at_10_s_and_300_s_ticks() {
    // hotspot and stabilize: 18 moves to 6/6/6/6, the first at 120 s (10 s ticks) and 300 s;
    // in samples the first came at 20 s and 600 s.
    for policy in DAMPED {
        same_decisions("hot-host", policy);
    }
}

#[test]
fn a_long_spike_is_relieved_alike_at_10_s_and_300_s_ticks() {
    // hotspot: 2 moves, at 3720 s and 3900 s (in samples: 3620 s and 4200 s).
    same_decisions("flash-crowd-long", "hotspot");
}
