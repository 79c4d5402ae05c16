//! Differential tests against the real `/usr/bin/rrdtool` 1.7: same creates, same update
//! sequences (gaps, unknowns, counter wraps, fractional and rejected times, out-of-range
//! values), then identical bytes, `info` and `fetch` output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use common::{info_sans_rows, p, rrd_rs, rrdtool};
use proptest::prelude::*;
use rrd::{Cf, Rrd, RrdFile, Update};

#[derive(Debug, Clone)]
struct DsGen {
    kind: u8,
    hb_mult: u64,
    hb_extra: u64,
    limits: u8,
}

#[derive(Debug, Clone)]
struct RraGen {
    cf: u8,
    xff: u8,
    steps: u64,
    rows: u64,
}

#[derive(Debug, Clone)]
struct UpdGen {
    dt_kind: u8,
    dt_raw: u32,
    vals: Vec<(u8, u64)>,
}

#[derive(Debug, Clone)]
struct CaseGen {
    step: u64,
    start_off: i64,
    ds: Vec<DsGen>,
    rra: Vec<RraGen>,
    upd: Vec<UpdGen>,
    /// Extra fetches: CF, start offset from create time, length, resolution.
    fetches: Vec<(u8, i64, i64, u64)>,
}

fn case() -> impl Strategy<Value = CaseGen> {
    let ds =
        (0u8..4, 1u64..4, 0u64..20, 0u8..4).prop_map(|(kind, hb_mult, hb_extra, limits)| DsGen {
            kind,
            hb_mult,
            hb_extra,
            limits,
        });
    let rra = (0u8..4, 0u8..4, 1u64..6, 1u64..13).prop_map(|(cf, xff, steps, rows)| RraGen {
        cf,
        xff,
        steps,
        rows,
    });
    (
        1u64..31,
        0i64..1000,
        prop::collection::vec(ds, 1..4),
        prop::collection::vec(rra, 1..5),
    )
        .prop_flat_map(|(step, start_off, ds, rra)| {
            let n = ds.len();
            let upd = (
                0u8..100,
                any::<u32>(),
                prop::collection::vec((0u8..100, any::<u64>()), n..=n),
            )
                .prop_map(|(dt_kind, dt_raw, vals)| UpdGen {
                    dt_kind,
                    dt_raw,
                    vals,
                });
            (
                Just(step),
                Just(start_off),
                Just(ds),
                Just(rra),
                prop::collection::vec(upd, 1..40),
                prop::collection::vec((0u8..4, -500i64..3000, 0i64..2000, 1u64..400), 2..=2),
            )
        })
        .prop_map(|(step, start_off, ds, rra, upd, fetches)| CaseGen {
            step,
            start_off,
            ds,
            rra,
            upd,
            fetches,
        })
}

const TYPES: [&str; 4] = ["GAUGE", "COUNTER", "DERIVE", "ABSOLUTE"];
const CFS: [&str; 4] = ["AVERAGE", "MIN", "MAX", "LAST"];
const XFFS: [&str; 4] = ["0", "0.3", "0.5", "0.99"];

struct Built {
    start: i64,
    step: u64,
    specs: Vec<String>,
    /// Update strings in batches; a batch ends after an update expected to be rejected.
    batches: Vec<Vec<String>>,
    last_time: i64,
}

fn build(c: &CaseGen) -> Built {
    let start = 1_000_000_000 + c.start_off;
    let mut specs = Vec::new();
    for (i, d) in c.ds.iter().enumerate() {
        let hb = c.step * d.hb_mult + d.hb_extra;
        let (min, max) = match (d.kind, d.limits) {
            (_, 0) | (_, 1) => ("U".to_string(), "U".to_string()),
            (0, 2) | (2, 2) => ("-50".to_string(), "50".to_string()),
            (_, 2) => ("0".to_string(), "100".to_string()),
            _ => ("U".to_string(), "1000".to_string()),
        };
        specs.push(format!(
            "DS:d{i}:{}:{hb}:{min}:{max}",
            TYPES[d.kind as usize]
        ));
    }
    for r in &c.rra {
        specs.push(format!(
            "RRA:{}:{}:{}:{}",
            CFS[r.cf as usize], XFFS[r.xff as usize], r.steps, r.rows
        ));
    }
    // Half-seconds, so fractional times stay exact in decimal.
    let mut last_ok = 2 * start;
    let mut cur = 2 * start;
    let mut counters: Vec<u64> = vec![0; c.ds.len()];
    let mut derives: Vec<i64> = vec![0; c.ds.len()];
    let mut batches = vec![Vec::new()];
    let max_hb =
        c.ds.iter()
            .map(|d| c.step * d.hb_mult + d.hb_extra)
            .max()
            .unwrap_or(1) as i64;
    for u in &c.upd {
        let raw = i64::from(u.dt_raw);
        let step = c.step as i64;
        match u.dt_kind {
            0..=64 => cur = cur.max(last_ok) + 2 * (1 + raw % (2 * step)),
            65..=69 => cur = cur.max(last_ok) + 2 * (1 + raw % (2 * step)) + 1,
            70..=81 => cur = cur.max(last_ok) + 2 * (max_hb + 1 + raw % (60 * step)),
            82..=89 => {} // same time as the previous one: rejected
            _ => cur = cur.max(last_ok) - 2 * (1 + raw % 5), // in the past: rejected
        }
        let mut bad = cur <= last_ok;
        let mut vals = Vec::new();
        for (i, ((vk, vr), d)) in u.vals.iter().zip(&c.ds).enumerate() {
            let v = match (vk, d.kind) {
                (0..=7, _) => "U".to_string(),
                // Malformed only in the first DS: rrdtool mutates earlier DSs before failing.
                (8, 0) | (8, 3) if i == 0 => {
                    bad = true;
                    "abc".to_string()
                }
                (8, 1) if i == 0 => {
                    bad = true;
                    "1.5".to_string()
                }
                (_, 0) => match vr % 4 {
                    0 => format!("{}", (*vr % 2001) as f64 / 8.0 - 125.0),
                    1 => format!("{}e3", (vr % 200) as i64 - 100),
                    _ => format!("{}", (*vr % 200) as i64 - 60),
                },
                (9..=14, 1) => {
                    // Near the 32-bit wrap.
                    counters[i] = (4_294_967_000 + vr % 600) % (1 << 32);
                    counters[i].to_string()
                }
                (15..=17, 1) => {
                    // Near the 64-bit wrap.
                    counters[i] = 18_446_744_073_709_551_000u64.wrapping_add(vr % 1000);
                    counters[i].to_string()
                }
                (_, 1) => {
                    counters[i] = counters[i].wrapping_add(vr % 5000);
                    counters[i].to_string()
                }
                (_, 2) => {
                    derives[i] += (vr % 2001) as i64 - 1000;
                    derives[i].to_string()
                }
                (_, _) => format!("{}", vr % 5000),
            };
            vals.push(v);
        }
        let t = if cur % 2 == 0 {
            format!("{}", cur / 2)
        } else {
            format!("{}.5", cur / 2)
        };
        let s = format!("{t}:{}", vals.join(":"));
        batches.last_mut().unwrap().push(s);
        if bad {
            batches.push(Vec::new());
        } else {
            last_ok = cur;
        }
    }
    batches.retain(|b| !b.is_empty());
    Built {
        start,
        step: c.step,
        specs,
        batches,
        last_time: cur.max(last_ok) / 2 + 1,
    }
}

fn run_case(c: &CaseGen) -> Result<(), TestCaseError> {
    let b = build(c);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.rrd"); // rrdtool creates and updates
    let bb = dir.path().join("b.rrd"); // rrdtool creates, we update
    let cc = dir.path().join("c.rrd"); // we create and update
    let start = b.start.to_string();
    let step = b.step.to_string();
    let mut args = vec!["create", p(&a), "--start", &start, "--step", &step];
    args.extend(b.specs.iter().map(String::as_str));
    let out = rrdtool(&args);
    prop_assert!(out.ok, "rrdtool create failed: {}", out.stderr);
    std::fs::copy(&a, &bb).unwrap();
    let layout = rrd::Layout::from_specs(b.step, b.start, &b.specs).unwrap();
    RrdFile::create(&cc, &layout).unwrap();

    let created_info_a = rrdtool(&["info", p(&a)]).stdout;
    let created_info_c = rrdtool(&["info", p(&cc)]).stdout;
    prop_assert_eq!(
        info_sans_rows(&created_info_a),
        info_sans_rows(&created_info_c)
    );

    for batch in &b.batches {
        let mut args = vec!["update", p(&a)];
        args.extend(batch.iter().map(String::as_str));
        let theirs = rrdtool(&args);
        let parsed: Result<Vec<Update>, _> = batch.iter().map(|s| Update::parse(s)).collect();
        let parsed = parsed.unwrap();
        let ours_b = RrdFile::open(&bb).unwrap().update_many(&parsed);
        let ours_c = RrdFile::open(&cc).unwrap().update_many(&parsed);
        prop_assert_eq!(
            theirs.ok,
            ours_b.is_ok(),
            "batch {:?}: rrdtool {} vs ours {:?}",
            batch,
            theirs.stderr,
            ours_b
        );
        prop_assert_eq!(theirs.ok, ours_c.is_ok());
    }

    // Updating rrdtool's own file gives rrdtool's bytes exactly.
    let a_bytes = std::fs::read(&a).unwrap();
    let b_bytes = std::fs::read(&bb).unwrap();
    prop_assert!(b_bytes.len() >= a_bytes.len());
    if a_bytes[..] != b_bytes[..a_bytes.len()] {
        let dump_a = rrdtool(&["dump", p(&a)]).stdout;
        std::fs::write(&a, &b_bytes[..a_bytes.len()]).unwrap();
        let dump_b = rrdtool(&["dump", p(&a)]).stdout;
        let diff: Vec<_> = dump_a
            .lines()
            .zip(dump_b.lines())
            .filter(|(x, y)| x != y)
            .take(10)
            .collect();
        prop_assert!(
            false,
            "bytes differ; dump lines (rrdtool, ours): {:#?}",
            diff
        );
    }

    // Our own file: same info (but cur_row) and same fetch output, through both tools.
    let info_a = rrdtool(&["info", p(&a)]).stdout;
    let info_c = rrdtool(&["info", p(&cc)]).stdout;
    prop_assert_eq!(info_sans_rows(&info_a), info_sans_rows(&info_c));
    let ours_info = rrd_rs(&["info", p(&cc)]).stdout;
    prop_assert_eq!(info_c, ours_info);

    let rrd_c = Rrd::from_bytes(&std::fs::read(&cc).unwrap()).unwrap();
    let fs = (b.start - 3000).to_string();
    let fe = (b.last_time + 300).to_string();
    for r in &c.rra {
        let cf = CFS[r.cf as usize];
        let res = (r.steps * b.step).to_string();
        let args = |f: &std::path::Path| -> Vec<String> {
            [
                "fetch",
                p(f),
                cf,
                "--start",
                &fs,
                "--end",
                &fe,
                "--resolution",
                &res,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let fa = rrdtool(&args(&a).iter().map(String::as_str).collect::<Vec<_>>());
        let fc = rrdtool(&args(&cc).iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(fa.ok, "{}", fa.stderr);
        prop_assert_eq!(&fa.stdout, &fc.stdout);
        let ours = rrd_c
            .fetch(
                Cf::parse(cf).unwrap(),
                fs.parse().unwrap(),
                fe.parse().unwrap(),
                r.steps * b.step,
            )
            .unwrap();
        prop_assert_eq!(&fa.stdout, &rrd::fetch_text(&ours));
    }
    // Arbitrary windows and resolutions exercise the archive choice.
    for (cf, off, len, res) in &c.fetches {
        let cf = CFS[*cf as usize];
        let (fs, fe) = (b.start + off, b.start + off + len);
        let (fs_s, fe_s, res_s) = (fs.to_string(), fe.to_string(), res.to_string());
        let args = ["fetch", p(&a), cf, "-s", &fs_s, "-e", &fe_s, "-r", &res_s];
        let fa = rrdtool(&args);
        let ours = rrd_c.fetch(Cf::parse(cf).unwrap(), fs, fe, *res);
        match ours {
            Ok(f) => prop_assert_eq!(
                &fa.stdout,
                &rrd::fetch_text(&f),
                "fetch {} {} {} {}",
                cf,
                fs,
                fe,
                res
            ),
            Err(e) => prop_assert!(!fa.ok, "we failed ({}) where rrdtool did not", e),
        }
    }
    let last_a = rrdtool(&["last", p(&a)]).stdout;
    prop_assert_eq!(&last_a, &rrd_rs(&["last", p(&cc)]).stdout);
    Ok(())
}

proptest! {
    // PROPTEST_CASES overrides the default 48 for longer runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn same_as_rrdtool(c in case()) {
        run_case(&c)?;
    }
}

/// The gmetad layout with a regular 15 s feed, a gap, and a restart.
#[test]
fn gmetad_like_layout_matches_rrdtool() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.rrd");
    let c = dir.path().join("c.rrd");
    let specs = [
        "DS:sum:GAUGE:120:U:U",
        "RRA:AVERAGE:0.5:1:5856",
        "RRA:AVERAGE:0.5:4:20160",
        "RRA:AVERAGE:0.5:40:52704",
    ];
    let mut args = vec!["create", p(&a), "--start", "1700000000", "--step", "15"];
    args.extend(specs);
    assert!(rrdtool(&args).ok);
    let mut args = vec!["create", p(&c), "--start", "1700000000", "--step", "15"];
    args.extend(specs);
    let out = rrd_rs(&args);
    assert!(out.ok, "{}", out.stderr);
    let mut ups = Vec::new();
    let mut t = 1_700_000_000i64;
    for i in 0..3000 {
        t += if i == 1500 { 4000 } else { 15 };
        ups.push(format!("{t}:{}", (i * 7 % 101) as f64 / 4.0));
    }
    for chunk in ups.chunks(500) {
        let mut args = vec!["update", p(&a)];
        args.extend(chunk.iter().map(String::as_str));
        assert!(rrdtool(&args).ok);
        let mut args = vec!["update", p(&c)];
        args.extend(chunk.iter().map(String::as_str));
        let out = rrd_rs(&args);
        assert!(out.ok, "{}", out.stderr);
    }
    assert_eq!(
        info_sans_rows(&rrdtool(&["info", p(&a)]).stdout),
        info_sans_rows(&rrdtool(&["info", p(&c)]).stdout)
    );
    for res in ["15", "60", "600"] {
        let s = "1700000000";
        let e = t.to_string();
        let fa = rrdtool(&["fetch", p(&a), "AVERAGE", "-s", s, "-e", &e, "-r", res]);
        let fc = rrd_rs(&["fetch", p(&c), "AVERAGE", "-s", s, "-e", &e, "-r", res]);
        assert!(fa.ok && fc.ok);
        assert_eq!(fa.stdout, fc.stdout, "resolution {res}");
        assert!(fa.stdout.lines().count() > 10);
    }
}
