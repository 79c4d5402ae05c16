//! Fidelity to CloudSim 3.0.3: the PlanetLab day 20110303 on Beloglazov & Buyya's setup must
//! reproduce the table of balancing.md section 3.3 (the authors' code, re-run) within 15 % on
//! energy, migrations and SLATAH; plus hand-computed micro cases of the CloudSim world model
//! (idle VMs leaving, destinations short of MIPS while a VM migrates in, trapezoid energy).
// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer::policy::PolicySpec;
use balancer::sim::scenario::{Accounting, HostSpec, ProfileSpec, VmSpec};
use balancer::sim::{builtin_scenario, simulate, Report, Scenario, SimOptions};
use balancer::trends::iqr_cloudsim;

/// One row of the CloudSim 3.0.3 table (balancing.md section 3.3, day 20110303).
struct Cloudsim {
    policy: &'static str,
    energy_kwh: f64,
    migrations: f64,
    slatah: f64,
}

const TABLE: [Cloudsim; 4] = [
    Cloudsim {
        policy: "thr-mmt-0.8",
        energy_kwh: 198.08,
        migrations: 27_728.0,
        slatah: 0.0500,
    },
    Cloudsim {
        policy: "iqr-mmt-1.5",
        energy_kwh: 193.63,
        migrations: 27_592.0,
        slatah: 0.0502,
    },
    Cloudsim {
        policy: "mad-mmt-2.5",
        energy_kwh: 189.79,
        migrations: 27_781.0,
        slatah: 0.0509,
    },
    Cloudsim {
        policy: "lr-mmt-1.2",
        energy_kwh: 167.83,
        migrations: 27_649.0,
        slatah: 0.0572,
    },
];

const BAR: f64 = 0.15;

fn planetlab(policy: &str) -> Report {
    planetlab_day(policy, DAY_1)
}

/// The day the table above is of, and the one shipped beside it that no policy was tuned on.
const DAY_1: &str = "20110303";
const DAY_2: &str = "20110309";

fn planetlab_day(policy: &str, day: &str) -> Report {
    simulate_day(&PolicySpec::builtin(policy).unwrap(), day)
}

fn simulate_day(spec: &PolicySpec, day: &str) -> Report {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../metrics/data/planetlab")
        .join(day);
    let sc = builtin_scenario("planetlab", Some(&dir), 1).unwrap();
    simulate(&sc, spec, &SimOptions::default()).unwrap()
}

/// IQR-MMT-1.5 with memory checked as the agent's policies check it.
fn iqr_with_memory(day: &str) -> Report {
    let mut spec = PolicySpec::builtin("iqr-mmt-1.5").unwrap();
    spec.constraints.check_memory = true;
    spec.constraints.mem_reserve_frac = 0.05;
    simulate_day(&spec, day)
}

fn within(what: &str, ours: f64, theirs: f64) -> Option<String> {
    let dev = ours / theirs - 1.0;
    (dev.abs() > BAR).then(|| {
        format!(
            "{what}: ours {ours:.4} vs CloudSim {theirs:.4} ({:+.1} %)",
            dev * 100.0
        )
    })
}

fn check(row: &Cloudsim) {
    let r = planetlab(row.policy);
    let errs: Vec<String> = [
        within("energy kWh", r.energy_kwh, row.energy_kwh),
        within("migrations", r.migrations as f64, row.migrations),
        within("SLATAH", r.slatah, row.slatah),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(errs.is_empty(), "{}: {}", row.policy, errs.join("; "));
}

#[test]
fn thr_mmt_0_8_reproduces_cloudsim_within_15_percent() {
    check(&TABLE[0]);
}

#[test]
fn iqr_mmt_1_5_reproduces_cloudsim_within_15_percent() {
    check(&TABLE[1]);
}

#[test]
fn mad_mmt_2_5_reproduces_cloudsim_within_15_percent() {
    check(&TABLE[2]);
}

#[test]
fn lr_mmt_1_2_reproduces_cloudsim_within_15_percent() {
    check(&TABLE[3]);
}

#[test]
fn dvfs_energy_matches_cloudsim_within_15_percent() {
    // No migrations ("none" places by first fit, as CloudSim's DVFS run): checks the world
    // alone (power model, trapezoid energy, idle VMs leaving). CloudSim: 764.96 kWh.
    let r = planetlab("none");
    assert_eq!(r.migrations, 0);
    if let Some(e) = within("energy kWh", r.energy_kwh, 764.96) {
        panic!("{e}");
    }
}

fn cloudsim_micro(vms: Vec<VmSpec>, hosts: usize, duration_s: u64) -> Scenario {
    let mut sc = builtin_scenario("planetlab-small", None, 1).unwrap();
    sc.name = "micro".into();
    sc.duration_s = duration_s;
    sc.hosts = (0..hosts)
        .map(|i| HostSpec {
            name: format!("h{i}"),
            cpus: 1,
            mhz: 1000,
            mem_kb: 4 << 20,
            power: Some("g4".into()),
        })
        .collect();
    sc.vms = vms;
    assert_eq!(sc.accounting, Accounting::Cloudsim);
    sc
}

fn traced(name: &str, host: &str, samples: &[f32]) -> VmSpec {
    VmSpec {
        name: name.into(),
        vcpus: 1,
        cpu_cap_mhz: 1000.0,
        mem_kb: 1 << 20,
        host: Some(host.into()),
        tags: Default::default(),
        profile: ProfileSpec::Samples {
            samples: samples.into(),
            period_s: 300,
        },
    }
}

/// One VM on one 1,000 MHz G4 host asking 10, 50, 70, 70 % at 0, 300, 600, 900 s, never
/// moved.
fn one_vm_ramp() -> Report {
    let sc = cloudsim_micro(vec![traced("v", "h0", &[0.1, 0.5, 0.7, 0.7])], 1, 1200);
    simulate(
        &sc,
        &PolicySpec::builtin("none").unwrap(),
        &SimOptions::default(),
    )
    .unwrap()
}

#[test]
fn energy_is_the_trapezoid_from_the_first_update_on() {
    // CloudSim's first update is at 300 s. Then 0.5 -> 0.7 over [300, 600) and 0.7 -> 0.7 over
    // [600, 900): (102 + 108) / 2 * 300 + 108 * 300 W s. The last sample (900 s) is the end.
    let r = one_vm_ramp();
    let want = ((102.0 + 108.0) / 2.0 * 300.0 + 108.0 * 300.0) / 3.6e6;
    // Samples are f32, as the trace reader stores them.
    assert!(
        (r.energy_kwh / want - 1.0).abs() < 1e-7,
        "{} vs {want}",
        r.energy_kwh
    );
}

#[test]
fn a_vm_with_two_zero_samples_in_a_row_leaves() {
    // v1 reaches 0 at 600 s and stays there at 900 s: it leaves at the 600 s update and its
    // host draws nothing afterwards; v2 has a single zero and stays.
    let sc = cloudsim_micro(
        vec![
            traced("v1", "h0", &[0.5, 0.5, 0.0, 0.0, 0.9, 0.9]),
            traced("v2", "h1", &[0.5, 0.5, 0.0, 0.5, 0.5, 0.5]),
        ],
        2,
        1800,
    );
    let r = simulate(
        &sc,
        &PolicySpec::builtin("none").unwrap(),
        &SimOptions::default(),
    )
    .unwrap();
    // h0: [300, 600) 0.5 -> 0.0 only. h1: [300, 600) 0.5 -> 0; [600, 900) idle at its start,
    // so nothing; [900, 1500) at 0.5.
    let h0 = (102.0 + 86.0) / 2.0 * 300.0;
    let h1 = (102.0 + 86.0) / 2.0 * 300.0 + 102.0 * 600.0;
    let want = (h0 + h1) / 3.6e6;
    assert!(
        (r.energy_kwh / want - 1.0).abs() < 1e-7,
        "{} vs {want}",
        r.energy_kwh
    );
}

#[test]
fn a_host_receiving_a_vm_is_short_of_mips_until_the_migration_ends() {
    // h0 is overloaded (1.0 > 0.8) at 300 s; THR-MMT moves one VM to h1. CloudSim: 1024 MB at
    // 62.5 MB/s = 16.384 s. h1 requests the VM's full MIPS but gets 10 % meanwhile: 16.384
    // violated seconds. The source loses 10 % of the VM meanwhile.
    let sc = cloudsim_micro(
        vec![
            traced("a", "h0", &[0.5, 0.5, 0.5, 0.5]),
            traced("b", "h0", &[0.5, 0.5, 0.5, 0.5]),
        ],
        2,
        1200,
    );
    let mut spec = PolicySpec::builtin("thr-mmt-0.8").unwrap();
    spec.consolidate.underload = false;
    let r = simulate(&sc, &spec, &SimOptions::default()).unwrap();
    assert_eq!(r.migrations, 1);
    let secs = 16.384;
    assert!(
        (r.migration_seconds - secs).abs() < 1e-9,
        "{}",
        r.migration_seconds
    );
    // Active host-seconds: h0 over [300, 900), h1 from the migration's start.
    let active = 600.0 + 600.0;
    assert!((r.slatah - secs / active).abs() < 1e-9, "{}", r.slatah);
    // Requested: 2 VMs x 500 MHz x 600 s; lost to the migration: 10 % of 500 MHz for 16 s.
    assert!(
        (r.pdm - 0.1 * 500.0 * secs / (2.0 * 500.0 * 600.0)).abs() < 1e-9,
        "{}",
        r.pdm
    );
}

#[test]
fn iqr_as_cloudsim_3_0_3_computes_it() {
    // n = 10: positions round(2.75) = 3 and round(8.25) = 8 (1-based) of the sorted data.
    let v = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0];
    assert_eq!(iqr_cloudsim(&v), Some(8.0 - 3.0));
    // n = 12: round(3.25) = 3, round(9.75) = 10.
    let w: Vec<f64> = (1..=12).map(f64::from).collect();
    assert_eq!(iqr_cloudsim(&w), Some(10.0 - 3.0));
    assert_eq!(iqr_cloudsim(&[]), None);
}

/// The bars of the quality goal, judged as the papers judge a policy: energy and SLA
/// violation separately, never their product alone (ESV = energy x SLAV is 0 for a policy that
/// never migrates, so ESV alone would let `none` win). Returns the bars `ours` misses.
///
/// - Energy: at least 20 % less than without migration (`none`, CloudSim's DVFS run).
/// - SLA: SLATAH and PDM each at most a tenth of IQR-MMT-1.5's.
/// - Migrations: at most a fifth of IQR-MMT-1.5's; no ping-pong, refusal or rule violation.
/// - Against IQR-MMT-1.5 in the same memory-respecting world (`iqr_mem`: its spec with memory
///   checked, as ours): SLAV no higher, energy at most 1.35 x (the price of 4 moves a round).
fn quality_misses(ours: &Report, none: &Report, iqr: &Report, iqr_mem: &Report) -> Vec<String> {
    let mut miss = Vec::new();
    let mut bar = |ok: bool, what: String| {
        if !ok {
            miss.push(what);
        }
    };
    bar(
        ours.energy_kwh <= 0.8 * none.energy_kwh,
        format!(
            "energy {:.1} kWh > 0.8 x none's {:.1}",
            ours.energy_kwh, none.energy_kwh
        ),
    );
    bar(
        ours.slatah <= iqr.slatah / 10.0,
        format!(
            "SLATAH {:.5} > IQR-MMT's {:.5} / 10",
            ours.slatah, iqr.slatah
        ),
    );
    bar(
        ours.pdm <= iqr.pdm / 10.0,
        format!("PDM {:.3e} > IQR-MMT's {:.3e} / 10", ours.pdm, iqr.pdm),
    );
    bar(
        ours.migrations * 5 <= iqr.migrations,
        format!(
            "{} migrations > IQR-MMT's {} / 5",
            ours.migrations, iqr.migrations
        ),
    );
    bar(
        ours.slav <= iqr_mem.slav,
        format!(
            "SLAV {:.3e} > memory-checked IQR-MMT's {:.3e}",
            ours.slav, iqr_mem.slav
        ),
    );
    bar(
        ours.energy_kwh <= 1.35 * iqr_mem.energy_kwh,
        format!(
            "energy {:.1} kWh > 1.35 x memory-checked IQR-MMT's {:.1}",
            ours.energy_kwh, iqr_mem.energy_kwh
        ),
    );
    bar(
        (
            ours.ping_pong,
            ours.migrations_refused,
            ours.rule_violations,
        ) == (0, 0, 0),
        format!(
            "ping-pong {}, refused {}, rule violations {}",
            ours.ping_pong, ours.migrations_refused, ours.rule_violations
        ),
    );
    miss
}

#[test]
fn consolidate_defaults_save_energy_with_far_fewer_sla_violations_and_migrations_than_iqr_mmt() {
    // The quality goal of issues 6 and 15, on the same day and world as the fidelity table.
    let none = planetlab("none");
    let iqr = planetlab("iqr-mmt-1.5");
    let iqr_mem = iqr_with_memory(DAY_1);
    let ours = planetlab("consolidate");
    let miss = quality_misses(&ours, &none, &iqr, &iqr_mem);
    assert!(miss.is_empty(), "consolidate misses: {}", miss.join("; "));
    // The bars must be able to fail: doing nothing misses the energy bar, and the paper's
    // policy misses the SLA and migration bars.
    let miss = quality_misses(&none, &none, &iqr, &iqr_mem);
    assert!(miss.iter().any(|m| m.starts_with("energy")), "{miss:?}");
    let miss = quality_misses(&iqr, &none, &iqr, &iqr_mem);
    assert!(
        miss.iter().any(|m| m.contains("SLATAH")) && miss.iter().any(|m| m.contains("migrations")),
        "{miss:?}"
    );
}

#[test]
fn lrr_mmt_1_2_reproduces_cloudsim_within_15_percent() {
    // CloudSim 3.0.3's LRR-MMT-1.2 prints exactly LR-MMT-1.2's numbers (balancing.md 3.3).
    let mut spec = PolicySpec::builtin("lr-mmt-1.2").unwrap();
    spec.consolidate.detector = balancer::policy::Detector::Lrr;
    let sc = builtin_scenario("planetlab", None, 1).unwrap();
    let r = simulate(&sc, &spec, &SimOptions::default()).unwrap();
    let row = &TABLE[3];
    let errs: Vec<String> = [
        within("energy kWh", r.energy_kwh, row.energy_kwh),
        within("migrations", r.migrations as f64, row.migrations),
        within("SLATAH", r.slatah, row.slatah),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(errs.is_empty(), "lrr: {}", errs.join("; "));
}

#[test]
fn consolidate_meets_the_same_bars_on_a_day_it_was_not_tuned_on() {
    // Every threshold of consolidate.toml was chosen on 20110303; 20110309 (1,061 VMs, a
    // lighter day) checks that the quality bars do not hold by fitting one day.
    let none = planetlab_day("none", DAY_2);
    let iqr = planetlab_day("iqr-mmt-1.5", DAY_2);
    let iqr_mem = iqr_with_memory(DAY_2);
    let ours = planetlab_day("consolidate", DAY_2);
    assert_eq!(ours.vms, 1061, "not the second day's trace");
    let miss = quality_misses(&ours, &none, &iqr, &iqr_mem);
    assert!(
        miss.is_empty(),
        "consolidate misses on {DAY_2}: {}",
        miss.join("; ")
    );
    let miss = quality_misses(&none, &none, &iqr, &iqr_mem);
    assert!(miss.iter().any(|m| m.starts_with("energy")), "{miss:?}");
}

#[test]
fn the_energy_floor_prices_the_demand_at_the_best_watts_per_mhz() {
    // One 1,000 MHz G4 host: its best watts per MHz is at full load, 117 W / 1,000 MHz. The VM
    // asks 500 -> 700 MHz over [300, 600) and 700 over [600, 900): 0.117 * (600 + 700) * 300
    // W s, against the trapezoid energy (102 + 108) / 2 * 300 + 108 * 300 that it really costs.
    let r = one_vm_ramp();
    let want = 0.117 * (600.0 + 700.0) * 300.0 / 3.6e6;
    assert!(
        (r.energy_floor_kwh / want - 1.0).abs() < 1e-6,
        "{} vs {want}",
        r.energy_floor_kwh
    );
    assert!(r.energy_kwh > r.energy_floor_kwh);
}

/// AFED-EF (Zhou et al. 2021): the lowest energy published for this setup that we know of
/// (CloudSim, 800 hosts, 1,052 VMs of day 20110303).
const AFED_EF_KWH: f64 = 73.57;

#[test]
fn no_policy_beats_the_energy_floor_and_afed_ef_s_published_energy_lies_below_it() {
    // The floor is a bound only if no run that serves its demand goes below it; and it is the
    // measured reason no policy here can match AFED-EF's energy: in CloudSim's world as this
    // simulator reproduces it (fidelity table above), serving day 20110303's demand at the
    // best watts per MHz of any host takes more than AFED-EF reports.
    for day in [DAY_1, DAY_2] {
        let floor = planetlab_day("none", day).energy_floor_kwh;
        for p in ["none", "iqr-mmt-1.5", "lr-mmt-1.2", "consolidate"] {
            let r = planetlab_day(p, day);
            assert!(
                r.energy_kwh >= r.energy_floor_kwh && r.energy_floor_kwh >= 0.95 * floor,
                "{p} on {day}: energy {:.1} kWh, its floor {:.1}, none's floor {floor:.1}",
                r.energy_kwh,
                r.energy_floor_kwh
            );
        }
        if day == DAY_1 {
            assert!(
                floor > 1.2 * AFED_EF_KWH,
                "floor {floor:.1} kWh: AFED-EF's {AFED_EF_KWH} is reachable"
            );
        }
    }
}
