//! Model-based test: random create/update/fetch/reopen sequences on a file, compared with a
//! naive in-memory archive that keeps every update and recomputes every primary data point
//! and row from scratch by the definitions (time-weighted PDPs, xff, CF over PDPs).
//! GAUGE only, heartbeat never exceeded, and no single gap longer than an archive, so the
//! model needs none of rrdtool's incremental bookkeeping.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use proptest::prelude::*;
use rrd::{Cf, DsDef, DsType, Error, Layout, RraDef, RrdFile, Update, Value};

struct Model {
    step: i64,
    start: i64,
    rra: Vec<RraDef>,
    /// Accepted updates: time and per-DS value (None = unknown).
    ups: Vec<(i64, Vec<Option<f64>>)>,
}

impl Model {
    fn last(&self) -> i64 {
        self.ups.last().map_or(self.start, |u| u.0)
    }

    /// The PDP covering [s, s + step), or NaN.
    fn pdp(&self, s: i64, ds: usize) -> f64 {
        let e = s + self.step;
        let overlap = |a: i64, b: i64| (b.min(e) - a.max(s)).max(0);
        if e <= self.start - self.start.rem_euclid(self.step) {
            return f64::NAN; // before the archive existed
        }
        // Seconds before creation count as unknown, as do unknown readings other than
        // the one whose interval reaches the end of the PDP (rrdtool's rule).
        let mut unknown_before_close = overlap(i64::MIN / 2, self.start);
        let mut known = 0i64;
        let mut weighted = 0.0;
        let mut prev = self.start;
        for (t, vals) in &self.ups {
            let o = overlap(prev, *t);
            match vals[ds] {
                Some(v) => {
                    known += o;
                    weighted += v * o as f64;
                }
                None if *t < e => unknown_before_close += o,
                None => {}
            }
            if *t >= e {
                break;
            }
            prev = *t;
        }
        if unknown_before_close as f64 > self.step as f64 / 2.0 || known == 0 {
            f64::NAN
        } else {
            weighted / known as f64
        }
    }

    /// The row of RRA `r` ending at `t`.
    fn row(&self, r: usize, t: i64, ds: usize) -> f64 {
        let def = &self.rra[r];
        let n = def.pdp_per_row as i64;
        let pdps: Vec<f64> = (0..n)
            .map(|k| self.pdp(t - (n - k) * self.step, ds))
            .collect();
        let unknown = pdps.iter().filter(|v| v.is_nan()).count();
        if unknown as f64 > n as f64 * def.xff {
            return f64::NAN;
        }
        let known = pdps.iter().copied().filter(|v| !v.is_nan());
        match def.cf {
            Cf::Average => known.clone().sum::<f64>() / known.count() as f64,
            Cf::Min => known.fold(f64::INFINITY, f64::min),
            Cf::Max => known.fold(f64::NEG_INFINITY, f64::max),
            Cf::Last => pdps[n as usize - 1],
        }
    }

    /// Rows of RRA `r`, oldest first, with their end times.
    fn rows(&self, r: usize, ds_cnt: usize) -> Vec<(i64, Vec<f64>)> {
        let def = &self.rra[r];
        let rstep = self.step * def.pdp_per_row as i64;
        let end = self.last() - self.last().rem_euclid(rstep);
        (0..def.rows as i64)
            .rev()
            .map(|j| {
                let t = end - j * rstep;
                (t, (0..ds_cnt).map(|d| self.row(r, t, d)).collect())
            })
            .collect()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[derive(Debug, Clone)]
enum Op {
    Update { dt: i64, vals: Vec<Option<i16>> },
    Past { back: i64 },
    Reopen,
    Fetch { rra: usize, from_end: i64, len: i64 },
    Check,
}

fn ops(ds_cnt: usize, rra_cnt: usize, step: i64) -> impl Strategy<Value = Vec<Op>> {
    let val = prop_oneof![1 => Just(None), 6 => any::<i16>().prop_map(Some)];
    let op = prop_oneof![
        12 => (1..=4 * step, prop::collection::vec(val, ds_cnt..=ds_cnt))
            .prop_map(|(dt, vals)| Op::Update { dt, vals }),
        1 => (0i64..3).prop_map(|back| Op::Past { back }),
        1 => Just(Op::Reopen),
        2 => (0..rra_cnt, 0i64..5, 1i64..8).prop_map(|(rra, from_end, len)| Op::Fetch { rra, from_end, len }),
        1 => Just(Op::Check),
    ];
    prop::collection::vec(op, 1..120)
}

#[derive(Debug, Clone)]
struct Setup {
    step: i64,
    start: i64,
    ds_cnt: usize,
    rra: Vec<(u8, u8, u64, u64)>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1i64..20,
        0i64..100,
        1usize..3,
        prop::collection::vec((0u8..4, 0u8..3, 1u64..6, 6u64..30), 1..4),
    )
        .prop_map(|(step, off, ds_cnt, rra)| Setup {
            step,
            start: 1_600_000_000 + off,
            ds_cnt,
            rra,
        })
}

fn run(s: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfs = [Cf::Average, Cf::Min, Cf::Max, Cf::Last];
    let xffs = [0.0, 0.5, 0.75];
    let mut layout = Layout::new(s.step as u64, s.start);
    for d in 0..s.ds_cnt {
        layout = layout.ds(DsDef::new(&format!("v{d}"), DsType::Gauge, 1_000_000));
    }
    for (cf, xff, steps, rows) in &s.rra {
        layout = layout.rra(RraDef::new(
            cfs[*cf as usize],
            xffs[*xff as usize],
            *steps,
            *rows,
        ));
    }
    let mut model = Model {
        step: s.step,
        start: s.start,
        rra: layout.rra.clone(),
        ups: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.rrd");
    let mut f = RrdFile::create(&path, &layout).unwrap();

    let check_all = |f: &RrdFile, model: &Model| -> Result<(), TestCaseError> {
        let rrd = f.load().unwrap();
        prop_assert_eq!(rrd.last_update().secs, model.last());
        for r in 0..model.rra.len() {
            let got = rrd.rra_rows(r);
            let want = model.rows(r, s.ds_cnt);
            for (g, (t, w)) in got.iter().zip(&want) {
                for (a, b) in g.iter().zip(w) {
                    prop_assert!(close(*a, *b), "rra {} row {}: file {} model {}", r, t, a, b);
                }
            }
        }
        Ok(())
    };

    for op in ops {
        match op {
            Op::Update { dt, vals } => {
                let t = model.last() + dt;
                let vals: Vec<Option<f64>> =
                    vals.iter().map(|v| v.map(|x| f64::from(x) / 4.0)).collect();
                let typed: Vec<Value> = vals
                    .iter()
                    .map(|v| v.map_or(Value::Unknown, Value::Float))
                    .collect();
                f.update(&Update::new(t, &typed)).unwrap();
                model.ups.push((t, vals));
            }
            Op::Past { back } => {
                let t = model.last() - back;
                let before = std::fs::read(&path).unwrap();
                let e = f
                    .update(&Update::new(t, &vec![Value::Float(1.0); s.ds_cnt]))
                    .unwrap_err();
                let rejected = matches!(e, Error::NotAfterLastUpdate { .. });
                prop_assert!(rejected, "unexpected error {:?}", e);
                prop_assert!(std::fs::read(&path).unwrap() == before);
            }
            Op::Reopen => {
                drop(f);
                f = RrdFile::open(&path).unwrap();
            }
            Op::Fetch { rra, from_end, len } => {
                let def = &model.rra[*rra];
                let rstep = s.step * def.pdp_per_row as i64;
                let end = model.last() - from_end * rstep;
                let start = end - len * rstep;
                let got = f.fetch(def.cf, start, end, rstep as u64).unwrap();
                // Whichever archive fetch picked, its rows must match the model's.
                let candidates: Vec<usize> = (0..model.rra.len())
                    .filter(|&j| {
                        let d = &model.rra[j];
                        (d.cf == def.cf || d.pdp_per_row == 1)
                            && s.step * d.pdp_per_row as i64 == got.step as i64
                    })
                    .collect();
                prop_assert!(!candidates.is_empty());
                let matches = candidates.iter().any(|&j| {
                    let rows = model.rows(j, s.ds_cnt);
                    got.times().zip(&got.rows).all(|(t, row)| {
                        match rows.iter().find(|(rt, _)| *rt == t) {
                            Some((_, want)) => row.iter().zip(want).all(|(a, b)| close(*a, *b)),
                            None => row.iter().all(|v| v.is_nan()),
                        }
                    })
                });
                prop_assert!(matches, "fetch {:?} matches no archive of the model", op);
            }
            Op::Check => check_all(&f, &model)?,
        }
    }
    check_all(&f, &model)
}

proptest! {
    // PROPTEST_CASES overrides the default 64 for longer runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn file_matches_naive_model((s, ops) in setup().prop_flat_map(|s| {
        let o = ops(s.ds_cnt, s.rra.len(), s.step);
        (Just(s), o)
    })) {
        run(&s, &ops)?;
    }
}
