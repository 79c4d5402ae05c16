//! Crash safety: a child process updating in a loop is SIGKILLed at random points; the
//! file must stay readable by rrdtool and by us and hold exactly the state after one of the
//! attempted updates. Also rolls a hand-made interrupted commit forward.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{p, rrdtool};
use rrd::{Cf, DsDef, DsType, Layout, RraDef, Rrd, RrdFile, Update, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const T0: i64 = 1_700_000_000;
const CHILD_ENV: &str = "RRD_CRASH_CHILD_FILE";

fn layout() -> Layout {
    Layout::new(15, T0)
        .ds(DsDef::new("sum", DsType::Gauge, 120))
        .ds(DsDef::new("bytes", DsType::Counter, 120))
        .rra(RraDef::new(Cf::Average, 0.5, 1, 50))
        .rra(RraDef::new(Cf::Max, 0.5, 4, 30))
        .rra(RraDef::new(Cf::Average, 0.5, 40, 20))
}

/// The i-th attempted update (1-based); every fifth jumps a few steps to write several rows.
fn nth_update(i: i64) -> Update {
    let t = T0 + 15 * i + 45 * (i / 5);
    Update::new(
        t,
        &[Value::Float((i % 37) as f64 * 1.5), Value::Int(1000 * i)],
    )
}

/// Child side, run by `kill_during_updates` (ignored when run directly): updates the file
/// named by `RRD_CRASH_CHILD_FILE` until killed.
#[test]
#[ignore = "run as a child process by kill_during_updates"]
fn crash_child() {
    let path = std::env::var(CHILD_ENV)
        .unwrap_or_else(|_| panic!("{CHILD_ENV} is not set: run kill_during_updates instead"));
    let batch = std::env::var("RRD_CRASH_BATCH").is_ok();
    let mut f = RrdFile::open(&path).unwrap();
    if std::env::var("RRD_CRASH_SYNC").is_ok() {
        // fsync inside the commit widens the window a kill can land in.
        f.set_sync(rrd::Sync::Full);
    }
    let mut i = 1;
    loop {
        if batch {
            let ups: Vec<Update> = (i..i + 3).map(nth_update).collect();
            f.update_many(&ups).unwrap();
            i += 3;
        } else {
            f.update(&nth_update(i)).unwrap();
            i += 1;
        }
    }
}

/// The state after the first `n` attempted updates, computed in memory.
fn expected_after(n: i64) -> Vec<u8> {
    let mut r = Rrd::create(&layout()).unwrap();
    for i in 1..=n {
        r.update(&nth_update(i)).unwrap();
    }
    r.to_bytes()
}

fn update_index_of(last: i64) -> i64 {
    if last == T0 {
        return 0;
    }
    (1..10_000_000)
        .find(|&i| nth_update(i).time.secs >= last)
        .filter(|&i| nth_update(i).time.secs == last)
        .unwrap_or_else(|| panic!("last update {last} is not one of the attempted ones"))
}

/// Returns whether the kill landed inside a commit (the file needed rolling forward) and how
/// many updates the file holds.
fn kill_run(batch: bool, sync: bool, delay_us: u64) -> (bool, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.rrd");
    RrdFile::create(&path, &layout()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "crash_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, &path)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if batch {
        cmd.env("RRD_CRASH_BATCH", "1");
    }
    if sync {
        cmd.env("RRD_CRASH_SYNC", "1");
    }
    let mut child = cmd.spawn().unwrap();
    // The pause only chooses where the kill lands; nothing waits on it.
    std::thread::sleep(Duration::from_micros(delay_us));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // rrdtool reads the file as the kill left it.
    let raw = std::fs::read(&path).unwrap();
    let info = rrdtool(&["info", p(&path)]);
    assert!(info.ok, "rrdtool info failed: {}", info.stderr);
    let last = rrdtool(&["last", p(&path)]);
    assert!(last.ok, "{}", last.stderr);
    let rrdtool_last: i64 = last.stdout.trim().parse().unwrap();
    update_index_of(rrdtool_last);

    // We read it (rolling forward in memory) as exactly one attempted state.
    let ours = Rrd::from_bytes(&raw).unwrap();
    let mid_commit = raw[..ours.to_bytes().len()] != ours.to_bytes()[..];
    let n = update_index_of(ours.last_update().secs);
    let want = expected_after(n);
    assert!(
        ours.to_bytes() == want,
        "state after kill is not the state after update {n}"
    );
    assert!(n == update_index_of(rrdtool_last) || n == update_index_of(rrdtool_last) + 1 || batch);

    // Opening for update repairs the file on disk; then rrdtool sees the same state.
    drop(RrdFile::open(&path).unwrap());
    let repaired = std::fs::read(&path).unwrap();
    assert!(
        repaired[..want.len()] == want[..],
        "repaired file differs from update {n}"
    );
    let last = rrdtool(&["last", p(&path)]);
    assert_eq!(last.stdout.trim(), ours.last_update().secs.to_string());
    let fetch = rrdtool(&[
        "fetch",
        p(&path),
        "AVERAGE",
        "-s",
        &T0.to_string(),
        "-e",
        &(T0 + 3000).to_string(),
    ]);
    assert!(fetch.ok, "{}", fetch.stderr);

    // And it keeps working.
    let mut f = RrdFile::open(&path).unwrap();
    f.update(&nth_update(n + 1)).unwrap();
    (mid_commit, n)
}

#[test]
fn kill_during_updates() {
    // Spread kills from process start-up to some thousands of updates in.
    let mut inside = 0;
    let mut most = 0;
    for k in 0..16u64 {
        let (mid_commit, n) = kill_run(k % 3 == 2, k % 2 == 1, 2_000 + k * k * 1_000);
        inside += usize::from(mid_commit);
        most = most.max(n);
    }
    // The child is a test of this binary run by name: had the name or the filter been
    // wrong, it would have run nothing and every file would still hold its first state.
    assert!(
        most > 0,
        "no child updated its file: crash_child did not run"
    );
    // Informational: where the kills landed varies from run to run.
    eprintln!("{inside} of 16 kills landed inside a commit (at most {most} updates)");
}

/// A commit cut after its journal and some rows, before the header: rolled forward on open
/// and when read, and left untouched by a reader that only parses.
#[test]
fn interrupted_commit_is_rolled_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.rrd");
    let mut f = RrdFile::create(&path, &layout()).unwrap();
    for i in 1..=20 {
        f.update(&nth_update(i)).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    // This update jumps 3 steps: several rows in several RRAs.
    f.update(&nth_update(21)).unwrap();
    drop(f);
    let after = std::fs::read(&path).unwrap();
    let data_len = expected_after(21).len();
    assert!(
        after.len() > data_len,
        "journal expected after the data area"
    );
    let journal = &after[data_len..];

    // Old data area + new journal, with the writes a kill could have left: some or all
    // rows (written first), then part of the live header (written last, may tear).
    let hlen = match Rrd::from_bytes(&after)
        .unwrap()
        .info()
        .into_iter()
        .find(|(k, _)| k == "header_size")
    {
        Some((_, rrd::InfoValue::Cnt(n))) => n as usize,
        other => panic!("{other:?}"),
    };
    let changed: Vec<usize> = (0..data_len).filter(|&i| before[i] != after[i]).collect();
    let rows: Vec<usize> = changed.iter().copied().filter(|&i| i >= hlen).collect();
    let live: Vec<usize> = changed.iter().copied().filter(|&i| i < hlen).collect();
    assert!(!rows.is_empty() && !live.is_empty());
    let scenarios: Vec<Vec<usize>> = vec![
        vec![],
        rows[..rows.len() / 2].to_vec(),
        rows.clone(),
        [rows.clone(), live[..live.len() / 2].to_vec()].concat(),
        [rows.clone(), live[live.len() / 3..].to_vec()].concat(),
    ];
    for (k, copy) in scenarios.iter().enumerate() {
        let mut img = before[..data_len].to_vec();
        for &i in copy {
            img[i] = after[i];
        }
        img.extend_from_slice(journal);
        let r = Rrd::from_bytes(&img).unwrap();
        assert!(
            r.to_bytes() == expected_after(21),
            "scenario {k}: not rolled forward"
        );
        std::fs::write(&path, &img).unwrap();
        drop(RrdFile::open(&path).unwrap());
        assert!(std::fs::read(&path).unwrap()[..data_len] == after[..data_len]);
    }

    // A torn journal (cut short) is ignored: the old state stands.
    let record_len = 24 + u64::from_ne_bytes(journal[8..16].try_into().unwrap()) as usize;
    for cut in [1, record_len / 2, record_len - 1] {
        let mut img = before[..data_len].to_vec();
        img.extend_from_slice(&journal[..cut]);
        let r = Rrd::from_bytes(&img).unwrap();
        assert!(
            r.to_bytes() == expected_after(20),
            "torn journal at {cut} applied"
        );
    }
}
