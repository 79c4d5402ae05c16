//! Criterion benches of the wire crate: decode and encode of every message type (real
//! payloads from the fixtures), and writing the XML of 1,000 hosts x 33 metrics next to a
//! plain memory copy of the same number of bytes (the target: within 3x of the copy).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ganglia_wire::xml::{
    ClusterAttrs, HostAttrs, MetricAttrs, PreparedMetric, SlopeText, Val, WriteOptions, XmlWriter,
};
use ganglia_wire::{decode, encode, Slope, Value};
use std::hint::black_box;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ganglia-3.7.2/bin")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One real payload per message id (130/131 are the synthetic ones: no stock sender emits them).
const PAYLOADS: &[(&str, &str)] = &[
    ("128_metadata", "03-metadata_full-cpu_num-node1.bin"),
    ("129_ushort", "04-ushort-cpu_num-node1.bin"),
    ("130_short", "31-synthetic-short-value.bin"),
    ("131_int", "33-synthetic-int-value.bin"),
    ("132_uint", "02-uint-heartbeat-node1.bin"),
    ("133_string", "10-string-os_name-node1.bin"),
    ("134_float", "06-float-load_one-node1.bin"),
    ("135_double", "08-double-disk_total-node1.bin"),
    (
        "136_request",
        "14-metadata_request-heartbeat-for-node1-from-node3.bin",
    ),
];

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (label, file) in PAYLOADS {
        let bytes = fixture(file);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(label), &bytes, |b, bytes| {
            b.iter(|| decode(black_box(bytes)).map(|m| m.message_id()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("encode");
    for (label, file) in PAYLOADS {
        let bytes = fixture(file);
        let msg = decode(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut out = Vec::with_capacity(1500);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&msg), &mut out)
            })
        });
    }
    g.finish();
}

/// The stock metric set's shapes (name, value, fmt, type, units, slope, tmax, group).
fn stock_metrics() -> Vec<(String, Value<'static>, &'static [u8], &'static [u8])> {
    let mut v = Vec::new();
    let floats = [
        "cpu_user",
        "cpu_system",
        "cpu_idle",
        "cpu_nice",
        "cpu_aidle",
        "cpu_wio",
        "cpu_steal",
        "load_one",
        "load_five",
        "load_fifteen",
        "mem_free",
        "mem_shared",
        "mem_buffers",
        "mem_cached",
        "swap_free",
        "bytes_out",
        "bytes_in",
        "pkts_in",
        "pkts_out",
        "part_max_used",
        "mem_total",
        "swap_total",
    ];
    for (i, n) in floats.iter().enumerate() {
        v.push((
            n.to_string(),
            Value::Float(i as f32 * 3.7 + 0.25),
            &b"%.1f"[..],
            &b"float"[..],
        ));
    }
    for n in ["cpu_speed", "boottime", "proc_run", "proc_total"] {
        v.push((n.to_string(), Value::UInt(1_795_313_226), b"%u", b"uint32"));
    }
    v.push(("cpu_num".into(), Value::UShort(32), b"%hu", b"uint16"));
    v.push((
        "disk_total".into(),
        Value::Double(270.553174016),
        b"%.3f",
        b"double",
    ));
    v.push((
        "disk_free".into(),
        Value::Double(83.855),
        b"%.3f",
        b"double",
    ));
    for (n, s) in [
        ("machine_type", "x86_64"),
        ("os_name", "Linux"),
        ("os_release", "6.1.0-26-amd64"),
        ("gexec", "OFF"),
    ] {
        v.push((n.to_string(), Value::Str(s.as_bytes()), b"%s", b"string"));
    }
    assert_eq!(v.len(), 33);
    v
}

fn render(
    hosts: usize,
    metrics: &[(String, Value<'static>, &[u8], &[u8])],
    out: Vec<u8>,
) -> Vec<u8> {
    let extra: [(&[u8], &[u8]); 3] = [
        (b"TITLE", b"Some Metric Title"),
        (b"DESC", b"A description of the metric as gmond sends it"),
        (b"GROUP", b"cpu"),
    ];
    let mut w = XmlWriter::new(out, WriteOptions::default());
    let ok = w
        .begin(&ClusterAttrs {
            name: b"bench",
            localtime: 1_795_313_268,
            owner: b"unspecified",
            latlong: b"unspecified",
            url: b"unspecified",
        })
        .is_ok();
    assert!(ok);
    let mut name = Vec::with_capacity(16);
    let mut ip = Vec::with_capacity(16);
    for h in 0..hosts {
        name.clear();
        ip.clear();
        name.extend_from_slice(format!("host{h:05}").as_bytes());
        ip.extend_from_slice(format!("10.{}.{}.{}", h >> 16, (h >> 8) & 255, h & 255).as_bytes());
        let r = w.host_start(&HostAttrs {
            name: &name,
            ip: &ip,
            tags: b"",
            reported: 1_795_313_266,
            tn: 2,
            tmax: 20,
            dmax: 86400,
            location: b"unspecified",
            gmond_started: 1_795_313_226,
        });
        assert!(r.is_ok());
        for (mname, value, fmt, ty) in metrics {
            let r = w.metric(&MetricAttrs {
                name: mname.as_bytes(),
                val: Val::Typed { fmt, value: *value },
                ty,
                units: b"%",
                tn: 5,
                tmax: 90,
                dmax: 0,
                slope: SlopeText::Wire(Slope::BOTH),
                extra: &extra,
            });
            assert!(r.is_ok());
        }
        assert!(w.host_end().is_ok());
    }
    w.finish().unwrap_or_default()
}

fn render_prepared(prepared: &[PreparedMetric], out: Vec<u8>) -> Vec<u8> {
    let mut w = XmlWriter::in_memory(out, WriteOptions::default());
    let ok = w
        .begin(&ClusterAttrs {
            name: b"bench",
            localtime: 1_795_313_268,
            owner: b"unspecified",
            latlong: b"unspecified",
            url: b"unspecified",
        })
        .is_ok();
    assert!(ok);
    let mut name = Vec::with_capacity(16);
    for (h, metrics) in prepared.chunks(33).enumerate() {
        name.clear();
        name.extend_from_slice(format!("host{h:05}").as_bytes());
        let r = w.host_start(&HostAttrs {
            name: &name,
            ip: b"10.0.0.1",
            tags: b"",
            reported: 1_795_313_266,
            tn: 2,
            tmax: 20,
            dmax: 86400,
            location: b"unspecified",
            gmond_started: 1_795_313_226,
        });
        assert!(r.is_ok());
        for p in metrics {
            assert!(w.prepared_metric(p, 5).is_ok());
        }
        assert!(w.host_end().is_ok());
    }
    w.finish_vec()
}

fn xml(c: &mut Criterion) {
    let metrics = stock_metrics();
    let sample = render(1000, &metrics, Vec::new());
    let bytes = sample.len();
    let mut g = c.benchmark_group("xml_1000x33");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(30);
    let mut buf = Vec::with_capacity(bytes);
    g.bench_function("write", |b| {
        b.iter(|| {
            let out = render(1000, black_box(&metrics), std::mem::take(&mut buf));
            buf = out;
            buf.clear();
        })
    });
    // The daemon's path: each METRIC pre-rendered when its value changed, only TN written now.
    let extra: [(&[u8], &[u8]); 3] = [
        (b"TITLE", b"Some Metric Title"),
        (b"DESC", b"A description of the metric as gmond sends it"),
        (b"GROUP", b"cpu"),
    ];
    let prepared: Vec<PreparedMetric> = (0..1000)
        .flat_map(|_| metrics.iter())
        .map(|(mname, value, fmt, ty)| {
            PreparedMetric::new(
                &MetricAttrs {
                    name: mname.as_bytes(),
                    val: Val::Typed { fmt, value: *value },
                    ty,
                    units: b"%",
                    tn: 0,
                    tmax: 90,
                    dmax: 0,
                    slope: SlopeText::Wire(Slope::BOTH),
                    extra: &extra,
                },
                WriteOptions::default(),
            )
        })
        .collect();
    g.bench_function("write_prepared", |b| {
        b.iter(|| {
            let out = render_prepared(black_box(&prepared), std::mem::take(&mut buf));
            buf = out;
            buf.clear();
        })
    });
    // The baseline the target compares against: copying the same number of bytes.
    let mut dst = vec![0u8; bytes];
    g.bench_function("memcpy_same_bytes", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&sample)))
    });
    g.finish();
}

criterion_group!(benches, codec, xml);
criterion_main!(benches);
