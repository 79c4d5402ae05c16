//! Criterion benches of the rrd crate with gmetad's layout (step 15, one GAUGE DS, RRAs of
//! 5856 x 1, 20160 x 4 and 52704 x 40 steps, 630 KB per file): one update on an open file,
//! open + update + close (how gmetad and `rrdtool update` work), batches, and the in-memory
//! engine alone. The side-by-side comparison with librrd is rrd/examples/side_by_side.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: fail loudly
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rrd::{Layout, Rrd, RrdFile, Update, Value};
use std::hint::black_box;
use std::time::Duration;

const T0: i64 = 1_700_000_000;

fn gmetad_layout() -> Layout {
    Layout::from_specs(
        15,
        T0,
        &[
            "DS:sum:GAUGE:120:U:U",
            "RRA:AVERAGE:0.5:1:5856",
            "RRA:AVERAGE:0.5:4:20160",
            "RRA:AVERAGE:0.5:40:52704",
        ],
    )
    .unwrap()
}

fn bench_update(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gmetad.rrd");
    let mut g = c.benchmark_group("rrd_update");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));

    let mut f = RrdFile::create(&path, &gmetad_layout()).unwrap();
    let mut t = T0;
    g.bench_function("gmetad/update_open_file", |b| {
        b.iter(|| {
            t += 15;
            f.update(black_box(&Update::new(t, &[Value::Float(1.5)])))
                .unwrap();
        })
    });
    drop(f);

    g.bench_function("gmetad/open_update_close", |b| {
        b.iter(|| {
            t += 15;
            let mut f = RrdFile::open(&path).unwrap();
            f.update(&Update::new(t, &[Value::Float(2.5)])).unwrap();
        })
    });

    g.bench_function("gmetad/parse_update_string", |b| {
        let mut f = RrdFile::open(&path).unwrap();
        b.iter(|| {
            t += 15;
            f.update(&Update::parse(&format!("{t}:3.25")).unwrap())
                .unwrap();
        })
    });

    let mut mem = Rrd::create(&gmetad_layout()).unwrap();
    let mut tm = T0;
    g.bench_function("gmetad/in_memory_engine", |b| {
        b.iter(|| {
            tm += 15;
            mem.update(black_box(&Update::new(tm, &[Value::Float(1.0)])))
                .unwrap();
        })
    });

    g.throughput(Throughput::Elements(100));
    g.bench_function("gmetad/update_many_100", |b| {
        let mut f = RrdFile::open(&path).unwrap();
        b.iter(|| {
            let ups: Vec<Update> = (1..=100)
                .map(|k| Update::new(t + 15 * k, &[Value::Int(k)]))
                .collect();
            t += 1500;
            f.update_many(&ups).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_update);
criterion_main!(benches);
