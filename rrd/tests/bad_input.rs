//! Truncated, corrupted, foreign and other-version files, and bad updates: typed errors,
//! no panics, and files left byte-for-byte unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{p, rrd_rs, rrdtool};
use proptest::prelude::*;
use rrd::{Cf, DsDef, DsType, Error, Layout, RraDef, Rrd, RrdFile, Update, Value};

fn layout() -> Layout {
    Layout::new(15, 1_700_000_000)
        .ds(DsDef::new("sum", DsType::Gauge, 120))
        .ds(DsDef {
            min: 0.0,
            max: 100.0,
            ..DsDef::new("lim", DsType::Gauge, 120)
        })
        .rra(RraDef::new(Cf::Average, 0.5, 1, 10))
        .rra(RraDef::new(Cf::Max, 0.5, 4, 5))
}

fn sample_bytes() -> Vec<u8> {
    let mut r = Rrd::create(&layout()).unwrap();
    for i in 1..30 {
        r.update(&Update::new(
            1_700_000_000 + 15 * i,
            &[Value::Float(i as f64), Value::Int(i)],
        ))
        .unwrap();
    }
    r.to_bytes()
}

#[test]
fn every_truncation_is_rejected() {
    let b = sample_bytes();
    for len in 0..b.len() {
        match Rrd::from_bytes(&b[..len]) {
            Err(Error::Truncated { needed, got }) => {
                assert_eq!(got, len as u64);
                assert!(needed > got);
            }
            Err(Error::NotRrd) if len < 4 => {}
            other => panic!("len {len}: {other:?}"),
        }
    }
    assert!(Rrd::from_bytes(&b).is_ok());
}

#[test]
fn truncated_file_is_rejected_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.rrd");
    let b = sample_bytes();
    for len in [0, 3, 100, 128, 500, b.len() - 1] {
        std::fs::write(&path, &b[..len]).unwrap();
        let e = RrdFile::open(&path).unwrap_err();
        assert!(
            matches!(e, Error::Truncated { .. } | Error::NotRrd),
            "len {len}: {e:?}"
        );
        assert!(std::fs::read(&path).unwrap() == b[..len], "file changed");
    }
}

#[test]
fn other_versions_are_rejected() {
    let mut b = sample_bytes();
    for v in [b"0001", b"0004", b"0005"] {
        b[4..8].copy_from_slice(v);
        assert!(
            matches!(Rrd::from_bytes(&b), Err(Error::UnsupportedVersion(ref s)) if s.as_bytes() == v),
        );
    }
}

#[test]
fn rrdtool_files_of_versions_4_and_5_are_rejected_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spec, version) in [
        ("v4.rrd", "RRA:MHWPREDICT:100:0.1:0.01:10", "0004"),
        ("v5.rrd", "RRA:AVERAGE:0.5:1:10", "0005"),
    ] {
        let path = dir.path().join(name);
        let ds = if version == "0005" {
            "DS:x:DCOUNTER:60:U:U"
        } else {
            "DS:x:GAUGE:60:U:U"
        };
        let out = rrdtool(&["create", p(&path), "--start", "1700000000", ds, spec]);
        assert!(out.ok, "{}", out.stderr);
        let before = std::fs::read(&path).unwrap();
        assert_eq!(&before[4..8], version.as_bytes());
        let e = RrdFile::open(&path).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion(ref v) if v == version),
            "{e:?}"
        );
        let out = rrd_rs(&["update", p(&path), "1700000100:1"]);
        assert!(!out.ok);
        assert!(out.stderr.contains("version"), "{}", out.stderr);
        assert!(std::fs::read(&path).unwrap() == before, "file changed");
    }
}

fn swap8(b: &mut [u8], off: usize) {
    b[off..off + 8].reverse();
}

#[test]
fn foreign_byte_order_is_detected_by_us_and_rrdtool() {
    let mut b = sample_bytes();
    for off in [16, 24, 32, 40] {
        swap8(&mut b, off);
    }
    assert!(matches!(Rrd::from_bytes(&b), Err(Error::ForeignByteOrder)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.rrd");
    std::fs::write(&path, &b).unwrap();
    assert!(!rrdtool(&["info", p(&path)]).ok);
    let out = rrd_rs(&["update", p(&path), "1700009000:1:1"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("byte order"), "{}", out.stderr);
    assert!(std::fs::read(&path).unwrap() == b, "file changed");
}

#[test]
fn thirty_two_bit_layout_is_detected() {
    // i386 aligns doubles to 4: the float cookie sits at offset 12.
    let mut b = sample_bytes();
    let cookie = rrd::FLOAT_COOKIE.to_ne_bytes();
    b[12..20].copy_from_slice(&cookie);
    assert!(matches!(
        Rrd::from_bytes(&b),
        Err(Error::ForeignArchitecture)
    ));
    b[..4].copy_from_slice(b"XYZ\0");
    assert!(matches!(Rrd::from_bytes(&b), Err(Error::NotRrd)));
}

#[test]
fn corrupt_counts_and_rows_are_rejected() {
    let base = sample_bytes();
    let set = |off: usize, v: u64| {
        let mut b = base.clone();
        b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        b
    };
    assert!(matches!(
        Rrd::from_bytes(&set(24, 0)),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(
        Rrd::from_bytes(&set(24, u64::MAX)),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(
        Rrd::from_bytes(&set(32, 1 << 40)),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(
        Rrd::from_bytes(&set(40, 0)),
        Err(Error::Corrupt(_))
    ));
    // rra[0].row_cnt at 128 + 2*120 + 24.
    let rows_off = 128 + 2 * 120 + 24;
    assert!(matches!(
        Rrd::from_bytes(&set(rows_off, u64::MAX / 4)),
        Err(Error::Corrupt(_) | Error::Truncated { .. })
    ));
    assert!(matches!(
        Rrd::from_bytes(&set(rows_off, 0)),
        Err(Error::Corrupt(_))
    ));
    // An unknown DS type.
    let mut b = base.clone();
    b[128 + 20..128 + 26].copy_from_slice(b"BOGUS\0");
    assert!(matches!(Rrd::from_bytes(&b), Err(Error::Corrupt(_))));
    // cur_row past the end of its RRA (rra_ptr is the last 16 header bytes).
    let r = Rrd::from_bytes(&base).unwrap();
    let hlen = r
        .info()
        .iter()
        .find(|(k, _)| k == "header_size")
        .map(|(_, v)| v.clone());
    let Some(rrd::InfoValue::Cnt(hlen)) = hlen else {
        panic!("no header_size")
    };
    assert!(matches!(
        Rrd::from_bytes(&set(hlen as usize - 16, 10)),
        Err(Error::Corrupt(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_bytes_never_panic(flips in prop::collection::vec((0usize..1200, any::<u8>()), 1..8)) {
        let mut b = sample_bytes();
        for (at, v) in flips {
            let at = at % b.len();
            b[at] = v;
        }
        if let Ok(mut r) = Rrd::from_bytes(&b) {
            // Whatever parsed must also be usable without panicking.
            let _ = r.info();
            let _ = r.fetch(Cf::Average, 1_700_000_000, 1_700_001_000, 1);
            let _ = r.update(&Update::new(1_800_000_000, &[Value::Float(1.0), Value::Float(2.0)]));
            let _ = r.to_bytes();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Rrd::from_bytes(&b);
    }
}

/// Every rejected update leaves the file exactly as it was.
#[test]
fn rejected_updates_leave_the_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.rrd");
    let mut f = RrdFile::create(&path, &layout()).unwrap();
    f.update(&Update::new(
        1_700_000_100,
        &[Value::Float(1.0), Value::Float(2.0)],
    ))
    .unwrap();
    let before = std::fs::read(&path).unwrap();
    type Check = fn(&Error) -> bool;
    let bad: Vec<(&str, Check)> = vec![
        ("1700000100:1:2", |e| {
            matches!(
                e,
                Error::NotAfterLastUpdate {
                    time: 1_700_000_100,
                    last: 1_700_000_100
                }
            )
        }),
        ("1700000050:1:2", |e| {
            matches!(e, Error::NotAfterLastUpdate { .. })
        }),
        ("1700000200:abc:2", |e| matches!(e, Error::InvalidUpdate(_))),
        ("1700000200:1:2x", |e| matches!(e, Error::InvalidUpdate(_))),
        ("1700000200:1", |e| matches!(e, Error::InvalidUpdate(_))),
        ("1700000200:1:2:3", |e| matches!(e, Error::InvalidUpdate(_))),
    ];
    for (s, is_expected) in &bad {
        let u = Update::parse(s).unwrap();
        let e = f.update(&u).unwrap_err();
        assert!(is_expected(&e), "{s}: {e:?}");
        assert!(
            std::fs::read(&path).unwrap() == before,
            "{s} changed the file"
        );
    }
    for s in ["nocolon", "abc:1:2", ":1:2"] {
        assert!(Update::parse(s).is_err(), "{s}");
    }
    drop(f);
    // Same through the CLI, including rrdtool-style template-less unknown DS names.
    for s in [
        "1700000100:1:2",
        "sum=1",
        "1700000200:1:2x",
        "1700000200:U:U:U",
    ] {
        let out = rrd_rs(&["update", p(&path), s]);
        assert!(!out.ok, "{s}");
        assert!(out.stderr.starts_with("ERROR: "), "{}", out.stderr);
        assert!(
            std::fs::read(&path).unwrap() == before,
            "{s} changed the file"
        );
    }
}

#[test]
fn out_of_range_values_become_unknown_like_rrdtool() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("o.rrd");
    let theirs = dir.path().join("t.rrd");
    let specs = [
        "DS:a:GAUGE:60:0:100",
        "DS:b:COUNTER:60:0:10",
        "RRA:LAST:0:1:10",
    ];
    let mut args = vec![
        "create",
        p(&theirs),
        "--start",
        "1700000000",
        "--step",
        "10",
    ];
    args.extend(specs);
    assert!(rrdtool(&args).ok);
    RrdFile::create(
        &ours,
        &Layout::from_specs(10, 1_700_000_000, &specs).unwrap(),
    )
    .unwrap();
    let ups = [
        "1700000010:50:0",
        "1700000020:150:50",
        "1700000030:-1:500",
        "1700000040:7:600",
    ];
    let mut args = vec!["update", p(&theirs)];
    args.extend(ups);
    assert!(rrdtool(&args).ok);
    let mut f = RrdFile::open(&ours).unwrap();
    for u in ups {
        f.update(&Update::parse(u).unwrap()).unwrap();
    }
    let got = f.fetch(Cf::Last, 1_700_000_000, 1_700_000_040, 1).unwrap();
    let t: Vec<i64> = got.times().collect();
    let row = |ts: i64| &got.rows[t.iter().position(|&x| x == ts).unwrap()];
    assert_eq!(row(1_700_000_010)[0], 50.0);
    assert!(row(1_700_000_020)[0].is_nan(), "150 > max");
    assert_eq!(row(1_700_000_020)[1], 5.0, "50 in 10 s is in range");
    assert!(row(1_700_000_030)[0].is_nan(), "-1 < min");
    assert!(row(1_700_000_030)[1].is_nan(), "45/s > max");
    assert_eq!(row(1_700_000_040), &vec![7.0, 10.0]);
    let fa = rrdtool(&[
        "fetch",
        p(&theirs),
        "LAST",
        "-s",
        "1700000000",
        "-e",
        "1700000040",
    ]);
    assert_eq!(fa.stdout, rrd::fetch_text(&got));
}
