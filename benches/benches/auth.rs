//! Criterion benches of authenticated datagrams (ganglia-wire's `auth`, issue 13): signing and
//! verifying one datagram, for real value and metadata datagrams of gmond 3.7.2 and for the
//! shapes the load harness sends, so the per-datagram cost sits beside the decode figures of
//! `wire.rs` and the whole-daemon figures of `gmond_load`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: fail loudly
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ganglia_wire::auth::{Key, KeyRing, Signer, Verdict, Verifier, VerifierConfig, KEY_LEN};
use ganglia_wire::xdr::DEFAULT_MAX_UDP_MSG_LEN;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope, Value};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NOW: u64 = 1_700_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ganglia-3.7.2/bin")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The load harness's datagrams (benches/src/bin/gmond_load.rs): a spoofed host, a uint value,
/// metadata with gmond's TITLE/DESC/GROUP extras.
fn harness_shapes() -> (Vec<u8>, Vec<u8>) {
    let id = Identity::new("", Some("h1000"), Some("10.0.3.232"));
    let e = Emitter::new(id, DEFAULT_MAX_UDP_MSG_LEN);
    let d = MetricDescriptor {
        name: "m7",
        metric_type: MetricType::UInt32,
        format: "%u",
        units: "",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: Extra::gmond_standard(
            b"m7",
            b"A metric of the load harness, described as gmond describes its own",
            b"load",
        ),
    };
    let (mut v, mut m) = (Vec::new(), Vec::new());
    e.value(&d, Value::UInt(7), &mut v).unwrap();
    e.metadata(&d, &mut m).unwrap();
    (v, m)
}

/// (label, body): typical value and metadata datagrams, smallest first.
fn bodies() -> Vec<(String, Vec<u8>)> {
    let (hv, hm) = harness_shapes();
    let mut v: Vec<(String, Vec<u8>)> = [
        ("value_float_load_one", "06-float-load_one-node1.bin"),
        (
            "value_spoofed_string_vm_cpu",
            "26-gmetric-spoof-string-vm_cpu.bin",
        ),
        ("metadata_load_one", "05-metadata_full-load_one-node1.bin"),
    ]
    .iter()
    .map(|(l, f)| (l.to_string(), fixture(f)))
    .collect();
    v.insert(2, ("value_harness".into(), hv));
    v.push(("metadata_harness".into(), hm));
    v.into_iter()
        .map(|(l, b)| (format!("{l}_{}B", b.len()), b))
        .collect()
}

fn ring() -> KeyRing {
    let k: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 7 + 3) as u8);
    KeyRing::new([(1, Key::from_bytes(k))], 1).unwrap()
}

/// Datagrams signed ahead of the timed part, per chunk (fresh sequence numbers, so every
/// verify takes the accepting path; a repeated datagram would be a replay).
const CHUNK: u64 = 4096;

fn auth(c: &mut Criterion) {
    let ring = ring();
    let mut g = c.benchmark_group("auth_sign");
    for (label, body) in bodies() {
        let mut s = Signer::new(&ring, 0x0102_0304_0506_0708);
        let mut out = Vec::with_capacity(1500);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| {
                out.clear();
                s.sign(black_box(&body), NOW, &mut out);
                out.len()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("auth_verify");
    for (label, body) in bodies() {
        g.throughput(Throughput::Elements(1));
        // Accepted: tag checked, replay window updated (one sender, as the harness).
        g.bench_function(BenchmarkId::new("authentic", &label), |b| {
            b.iter_custom(|iters| {
                let mut v = Verifier::new(ring.clone(), VerifierConfig::default());
                let mut s = Signer::new(&ring, 42);
                let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK as usize);
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    chunk.clear();
                    chunk.extend((0..n).map(|_| {
                        let mut d = Vec::with_capacity(body.len() + 48);
                        s.sign(&body, NOW, &mut d);
                        d
                    }));
                    let t = Instant::now();
                    for d in &chunk {
                        let ok = matches!(v.verify(black_box(d), NOW), Verdict::Authentic { .. });
                        assert!(ok);
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
        // Unsigned: what looking for a trailer costs (finding where the XDR body ends).
        g.bench_function(BenchmarkId::new("unsigned", &label), |b| {
            let mut v = Verifier::new(ring.clone(), VerifierConfig::default());
            b.iter(|| matches!(v.verify(black_box(&body), NOW), Verdict::Unsigned(_)))
        });
        // A copy of an accepted datagram: the whole tag check, then refused by the window.
        g.bench_function(BenchmarkId::new("replayed", &label), |b| {
            let mut v = Verifier::new(ring.clone(), VerifierConfig::default());
            let mut d = Vec::new();
            Signer::new(&ring, 43).sign(&body, NOW, &mut d);
            assert!(matches!(v.verify(&d, NOW), Verdict::Authentic { .. }));
            b.iter(|| matches!(v.verify(black_box(&d), NOW), Verdict::Rejected(_)))
        });
    }
    g.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
