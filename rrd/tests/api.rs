//! Public API behaviour not covered elsewhere: exact float readings, full-sync commits,
//! create_new, and the typed value formatting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use rrd::{Cf, DsDef, DsType, Error, Layout, RraDef, Rrd, RrdFile, Sync, Update, Value};

fn layout() -> Layout {
    Layout::new(1, 1_700_000_000)
        .ds(DsDef::new("g", DsType::Gauge, 10))
        .ds(DsDef::new("c", DsType::Counter, 10))
        .rra(RraDef::new(Cf::Last, 0.0, 1, 20))
}

#[test]
fn typed_floats_are_stored_exactly() {
    let mut r = Rrd::create(&layout()).unwrap();
    let x = 0.123_456_789_012_345_6_f64;
    r.update(&Update::new(
        1_700_000_001,
        &[Value::Float(x), Value::UInt((1 << 32) - 6)],
    ))
    .unwrap();
    r.update(&Update::new(
        1_700_000_002,
        &[Value::Float(x), Value::UInt(4)],
    ))
    .unwrap();
    let f = r.fetch(Cf::Last, 1_700_000_000, 1_700_000_002, 1).unwrap();
    let row = &f.rows[f.times().position(|t| t == 1_700_000_002).unwrap()];
    assert_eq!(row[0].to_bits(), x.to_bits());
    // 32-bit wrap from 2^32-6 to 4: rrdtool adds 2^32-1, not 2^32, so 9 rather than 10.
    assert_eq!(row[1], 9.0);
    let info = r.info();
    let last_ds = info.iter().find(|(k, _)| k == "ds[c].last_ds").unwrap();
    assert_eq!(last_ds.1, rrd::InfoValue::Str("4".to_string()));
}

#[test]
fn full_sync_commits_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rrd");
    let mut f = RrdFile::create(&path, &layout()).unwrap();
    f.set_sync(Sync::Full);
    for i in 1..=5 {
        f.update(&Update::new(
            1_700_000_000 + i,
            &[Value::Int(i), Value::Int(i * 10)],
        ))
        .unwrap();
    }
    drop(f);
    let f = RrdFile::open(&path).unwrap();
    assert_eq!(f.last_update().secs, 1_700_000_005);
    let got = f.fetch(Cf::Last, 1_700_000_000, 1_700_000_005, 1).unwrap();
    let t: Vec<i64> = got.times().collect();
    let at = t.iter().position(|&x| x == 1_700_000_005).unwrap();
    assert_eq!(got.rows[at], vec![5.0, 10.0]);
}

#[test]
fn create_new_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.rrd");
    RrdFile::create_new(&path, &layout()).unwrap();
    assert!(matches!(
        RrdFile::create_new(&path, &layout()),
        Err(Error::Exists(_))
    ));
    // create (like rrdtool create) replaces it.
    RrdFile::create(&path, &layout()).unwrap();
}

#[test]
fn invalid_definitions_are_rejected() {
    for bad in [
        "DS:toolongname_toolongname:GAUGE:1:U:U",
        "DS:x:GAUGE:0:U:U",
        "DS:x:GAUGE:10:5:1",
        "DS:x:BOGUS:10:U:U",
        "DS:x:GAUGE:10:U",
        "RRA:AVERAGE:1.0:1:10",
        "RRA:AVERAGE:0.5:0:10",
        "RRA:AVERAGE:0.5:1:0",
        "RRA:BOGUS:0.5:1:10",
    ] {
        assert!(Layout::from_specs(15, 0, &[bad]).is_err(), "{bad}");
    }
    assert!(matches!(
        Layout::from_specs(15, 0, &["DS:x:COMPUTE:10:U:U"]),
        Err(Error::Unsupported(_))
    ));
    let dup = Layout::from_specs(
        15,
        0,
        &["DS:x:GAUGE:10:U:U", "DS:x:GAUGE:10:U:U", "RRA:LAST:0:1:1"],
    )
    .unwrap();
    assert!(Rrd::create(&dup).is_err());
    assert!(Rrd::create(&Layout::new(15, 0).ds(DsDef::new("x", DsType::Gauge, 1))).is_err());
}

#[test]
fn headers_larger_than_a_page_work_on_disk() {
    let mut layout = Layout::new(10, 1_700_000_000);
    for d in 0..12 {
        layout = layout.ds(DsDef::new(&format!("d{d}"), DsType::Gauge, 60));
    }
    for r in 1..=8 {
        layout = layout.rra(RraDef::new(Cf::Average, 0.5, r, 30));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.rrd");
    let mut mem = Rrd::create(&layout).unwrap();
    RrdFile::create(&path, &layout).unwrap();
    for i in 1..=40 {
        let vals: Vec<Value> = (0..12).map(|d| Value::Int(i * d)).collect();
        let u = Update::new(1_700_000_000 + 10 * i, &vals);
        mem.update(&u).unwrap();
        // Reopen every time: the header (over 11 KB) takes the two-read path.
        RrdFile::open(&path).unwrap().update(&u).unwrap();
    }
    let disk = std::fs::read(&path).unwrap();
    let want = mem.to_bytes();
    assert!(want.len() > 11_000);
    assert!(disk[..want.len()] == want[..]);
}
