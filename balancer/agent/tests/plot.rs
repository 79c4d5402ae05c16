//! `--plot`: the simulator records one utilisation sample per host and tick and every counted
//! migration only when asked, and the recording renders to a PNG of the requested size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use balancer::policy::PolicySpec;
use balancer::sim::plot::{hosts_drawn, render_png, BUSIEST_HOSTS};
use balancer::sim::{
    builtin_scenario, simulate, simulate_recorded, MigrationMark, Recording, Report, SimOptions,
};

fn recorded(scenario: &str, policy: &str, record: bool) -> (Report, Option<Recording>) {
    let sc = builtin_scenario(scenario, None, 1).unwrap();
    simulate_recorded(
        &sc,
        &PolicySpec::builtin(policy).unwrap(),
        &SimOptions {
            record,
            ..SimOptions::default()
        },
    )
    .unwrap()
}

/// (width, height) from the IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(b.len() > 33, "{} bytes", b.len());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&b[8..12], &13u32.to_be_bytes(), "IHDR length");
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn recording_has_one_sample_per_host_and_tick_and_every_migration() {
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    let (r, rec) = recorded("hot-host", "hotspot", true);
    let rec = rec.expect("record = true returns a recording");
    let ticks = usize::try_from(sc.duration_s / sc.tick_s).unwrap();
    assert_eq!(rec.hosts.len(), r.hosts);
    assert_eq!(rec.hosts.len(), sc.hosts.len());
    assert_eq!(rec.times_s.len(), ticks);
    assert_eq!(rec.util.len(), r.hosts);
    for (h, s) in rec.util.iter().enumerate() {
        assert_eq!(s.len(), ticks, "host {h}");
        assert!(s.iter().all(|u| u.is_finite() && *u >= 0.0), "host {h}");
    }
    assert!(rec.times_s.windows(2).all(|w| w[1] - w[0] == sc.tick_s));
    assert!(r.migrations > 0, "hot-host must migrate");
    assert_eq!(rec.migrations.len() as u64, r.migrations);
    assert!(
        rec.migrations.windows(2).all(|w| w[0].t_s <= w[1].t_s),
        "migrations in time order"
    );
    // The first move leaves the hottest host of that tick, which is over the threshold.
    let first = rec.migrations[0];
    let k = rec.times_s.binary_search(&first.t_s).unwrap();
    let hottest = (0..rec.hosts.len())
        .max_by(|&a, &b| rec.util[a][k].total_cmp(&rec.util[b][k]))
        .unwrap();
    assert_eq!(first.from, hottest);
    assert_ne!(first.from, first.to);
    let thr = rec.threshold.expect("hotspot has a threshold");
    assert!(rec.util[hottest][k] > thr);
    // Recording changes no result.
    let plain = simulate(
        &sc,
        &PolicySpec::builtin("hotspot").unwrap(),
        &SimOptions::default(),
    )
    .unwrap();
    assert_eq!(plain.deterministic(), r.deterministic());
}

#[test]
fn nothing_is_recorded_without_the_option() {
    let (r, rec) = recorded("hot-host", "hotspot", false);
    assert!(rec.is_none());
    assert!(r.migrations > 0);
}

#[test]
fn png_has_the_requested_size() {
    let (_, rec) = recorded("hot-host", "hotspot", true);
    let rec = rec.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot.png");
    render_png(&rec, &path, 640, 320).unwrap();
    assert_eq!(png_size(&path), (640, 320));
    let other = dir.path().join("big.png");
    render_png(&rec, &other, 1200, 600).unwrap();
    assert_eq!(png_size(&other), (1200, 600));
}

#[test]
fn bad_size_is_an_error_and_writes_nothing() {
    let (_, rec) = recorded("hot-host", "none", true);
    let rec = rec.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    for (w, h) in [(0, 600), (1200, 0), (10, 10), (100_000, 600)] {
        assert!(render_png(&rec, &path, w, h).is_err(), "{w}x{h}");
    }
    assert!(!path.exists());
}

#[test]
fn big_clusters_draw_the_busiest_hosts_over_an_envelope() {
    // 40 hosts, host h at a constant h/40, except host 3 which is the busiest.
    let n = 40;
    let mut util: Vec<Vec<f64>> = (0..n).map(|h| vec![h as f64 / n as f64; 50]).collect();
    util[3] = vec![1.4; 50];
    let rec = Recording {
        hosts: (0..n).map(|h| format!("h{h}")).collect(),
        times_s: (0..50).map(|k| k * 60).collect(),
        util,
        migrations: vec![MigrationMark {
            t_s: 600,
            from: 3,
            to: 0,
        }],
        threshold: None,
    };
    let drawn = hosts_drawn(&rec);
    assert_eq!(drawn.len(), BUSIEST_HOSTS);
    assert!(drawn.contains(&3));
    assert!(drawn.contains(&39));
    assert!(!drawn.contains(&0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.png");
    render_png(&rec, &path, 800, 400).unwrap();
    assert_eq!(png_size(&path), (800, 400));
}

fn run_cli(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "hot-host", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = v.as_object_mut().unwrap();
    // Wall-clock fields differ between any two runs.
    o.remove("decision_ms_p50");
    o.remove("decision_ms_p99");
    v
}

#[test]
fn cli_plot_writes_the_png_and_keeps_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.png");
    let with = run_cli(&["--plot", path.to_str().unwrap(), "--plot-size", "900x450"]);
    assert_eq!(png_size(&path), (900, 450));
    assert_eq!(with, run_cli(&[]));
    let bad = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "hot-host", "--plot"])
        .arg(dir.path().join("no.png"))
        .args(["--plot-size", "12x10"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!dir.path().join("no.png").exists());
}
