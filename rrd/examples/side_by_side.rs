//! Side-by-side update throughput on many files with the gmetad layout: this crate vs
//! librrd (through Debian's python3-rrdtool binding, one `rrdtool.update` call per update)
//! vs the `rrdtool update` command line (many updates per call).
//!
//! `cargo run --release -p rrd --example side_by_side -- [FILES] [ROUNDS] [BATCH] [DIR]`
//! (defaults 10000 files, 10 rounds, batches of 100, a temporary directory). Needs
//! /usr/bin/rrdtool and /usr/bin/python3 with the `rrdtool` module (python3-rrdtool).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: fail loudly

use rrd::{Layout, RrdFile, Update, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const STEP: i64 = 15;
const T0: i64 = 1_700_000_000;
const SPECS: [&str; 4] = [
    "DS:sum:GAUGE:120:U:U",
    "RRA:AVERAGE:0.5:1:5856",
    "RRA:AVERAGE:0.5:4:20160",
    "RRA:AVERAGE:0.5:40:52704",
];

const PY: &str = r#"
import sys, time, rrdtool
paths = open(sys.argv[1]).read().split()
t0, rounds = int(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
for r in range(rounds):
    t = t0 + 15 * (r + 1)
    for i, p in enumerate(paths):
        rrdtool.update(p, "%d:%d" % (t, (i + r) % 97))
print(time.perf_counter() - start)
"#;

fn report(what: &str, updates: u64, secs: f64) {
    println!(
        "{what:<44} {updates:>9} updates in {secs:>7.2} s = {:>9.0} updates/s ({:.1} us/update)",
        updates as f64 / secs,
        secs * 1e6 / updates as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let files: usize = args.first().map_or(10_000, |s| s.parse().unwrap());
    let rounds: i64 = args.get(1).map_or(10, |s| s.parse().unwrap());
    let batch: i64 = args.get(2).map_or(100, |s| s.parse().unwrap());
    let tmp;
    let dir: PathBuf = match args.get(3) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let template = dir.join("template.rrd");
    let mut cargs = vec![
        "create".to_string(),
        template.to_str().unwrap().to_string(),
        "--step".into(),
        STEP.to_string(),
        "--start".into(),
        T0.to_string(),
    ];
    cargs.extend(SPECS.iter().map(|s| s.to_string()));
    let ok = Command::new("rrdtool")
        .args(&cargs)
        .status()
        .unwrap()
        .success();
    assert!(ok, "rrdtool create failed");
    let size = std::fs::metadata(&template).unwrap().len();
    println!(
        "{files} files of {size} bytes (gmetad layout) in {}",
        dir.display()
    );

    let c = Instant::now();
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("h{i:05}.rrd")))
        .collect();
    for p in &paths {
        std::fs::copy(&template, p).unwrap();
    }
    println!("copied in {:.1} s", c.elapsed().as_secs_f64());
    let list = dir.join("paths.txt");
    let text: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    std::fs::write(&list, text.join("\n")).unwrap();

    // Also time creating through the crate, for the record.
    let layout = Layout::from_specs(STEP as u64, T0, &SPECS).unwrap();
    let c = Instant::now();
    let n_create = files.min(500);
    for i in 0..n_create {
        RrdFile::create(dir.join(format!("c{i:05}.rrd")), &layout).unwrap();
    }
    println!(
        "rrd crate create: {:.2} ms/file ({n_create} files)",
        c.elapsed().as_secs_f64() * 1e3 / n_create as f64
    );

    let mut t = T0;
    // 1. This crate: open, one update, close; every file, every round.
    let c = Instant::now();
    for r in 0..rounds {
        let ts = t + STEP * (r + 1);
        for (i, p) in paths.iter().enumerate() {
            let mut f = RrdFile::open(p).unwrap();
            f.update(&Update::new(ts, &[Value::Int(((i as i64) + r) % 97)]))
                .unwrap();
        }
    }
    report(
        "rrd crate: open+update+close",
        files as u64 * rounds as u64,
        c.elapsed().as_secs_f64(),
    );
    t += STEP * rounds;

    // 2. librrd via python3-rrdtool: rrd_update per update.
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            PY,
            list.to_str().unwrap(),
            &t.to_string(),
            &rounds.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    report(
        "librrd 1.7.2 (python3-rrdtool): update",
        files as u64 * rounds as u64,
        secs,
    );
    t += STEP * rounds;

    // 3. rrdtool CLI, `batch` updates per call, on a tenth of the files (process spawn cost).
    let cli_files = (files / 10).max(1);
    let c = Instant::now();
    for (i, p) in paths.iter().take(cli_files).enumerate() {
        let ups: Vec<String> = (1..=batch)
            .map(|k| format!("{}:{}", t + STEP * k, (i as i64 + k) % 97))
            .collect();
        let ok = Command::new("rrdtool")
            .arg("update")
            .arg(p)
            .args(&ups)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    report(
        &format!("rrdtool CLI: {batch} updates per call"),
        cli_files as u64 * batch as u64,
        c.elapsed().as_secs_f64(),
    );

    // 4. This crate, the same batches (one commit per batch), on the other files.
    let c = Instant::now();
    for (i, p) in paths.iter().skip(cli_files).take(cli_files).enumerate() {
        let ups: Vec<Update> = (1..=batch)
            .map(|k| Update::new(t + STEP * k, &[Value::Int((i as i64 + k) % 97)]))
            .collect();
        RrdFile::open(p).unwrap().update_many(&ups).unwrap();
    }
    report(
        &format!("rrd crate: {batch} updates per update_many"),
        cli_files as u64 * batch as u64,
        c.elapsed().as_secs_f64(),
    );

    check_same(&paths[0], &paths[1]);
}

/// Sanity: both tools left readable files.
fn check_same(a: &Path, b: &Path) {
    for p in [a, b] {
        let ok = Command::new("rrdtool")
            .arg("last")
            .arg(p)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "rrdtool cannot read {}", p.display());
    }
}
