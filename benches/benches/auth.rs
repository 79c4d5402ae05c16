//! Criterion benches of authenticated datagrams (ganglia-wire's `auth`, issue 13): signing and
//! verifying one datagram, for real value and metadata datagrams of gmond 3.7.2 and for the
//! shapes the load harness sends, so the per-datagram cost sits beside the decode figures of
//! `wire.rs` and the whole-daemon figures of `gmond_load`; and gmond-rs's receive path per
//! datagram without the socket (the store alone, and the store behind a `require` gate), the
//! part of the whole-daemon figure that verification changes.
//!
//! Measured in this thread's CPU time, not wall time: on the shared 2-core machine a wall-clock
//! sample includes whatever time the bench waited for a core, which swamped differences of a
//! few tens of nanoseconds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: fail loudly
use benches::{harness_descriptor, harness_emitter};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ganglia_wire::auth::{Key, KeyRing, Signer, Verdict, Verifier, VerifierConfig, KEY_LEN};
use ganglia_wire::Value;
use gmond_rs::auth::{self, Admit, AuthOptions, Gate, Mode};
use gmond_rs::iostats::IoStats;
use gmond_rs::store::{ClusterStore, StoreConfig, Timestamp};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

/// Criterion measurement: CPU time of the measuring thread (CLOCK_THREAD_CPUTIME_ID), shown
/// like wall time.
struct ThreadCpu(WallTime);

fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

type Crit = Criterion<ThreadCpu>;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ganglia-3.7.2/bin")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The load harness's datagrams (benches/src/bin/gmond_load.rs) for host `h`, metric `m`: a
/// spoofed host, a uint value, metadata with gmond's TITLE/DESC/GROUP extras.
fn harness_datagrams(h: usize, m: usize) -> (Vec<u8>, Vec<u8>) {
    let e = harness_emitter(h);
    let name = format!("m{m}");
    let d = harness_descriptor(&name);
    let (mut v, mut md) = (Vec::new(), Vec::new());
    e.value(&d, Value::UInt(7), &mut v).unwrap();
    e.metadata(&d, &mut md).unwrap();
    (v, md)
}

fn harness_shapes() -> (Vec<u8>, Vec<u8>) {
    harness_datagrams(1000, 7)
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

fn auth(c: &mut Crit) {
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
                    let t = thread_cpu();
                    for d in &chunk {
                        let ok = matches!(v.verify(black_box(d), NOW), Verdict::Authentic { .. });
                        assert!(ok);
                    }
                    total += thread_cpu().saturating_sub(t);
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

/// Datagrams per `recvmmsg` batch in gmond-rs (`ingest::BATCH`): one gate lock per batch.
const BATCH: usize = 64;

/// gmond-rs's receive path per value datagram, without the socket: 1,000 hosts x 30 metrics
/// known to the store (the harness's `--hosts 1000 --metrics 30`), fed the way `ingest::Rx`
/// does: straight to the store (no `--auth`), or through a `require` gate (verify, count,
/// then the store gets the body and the key id), one gate lock per batch of 64.
fn ingest(c: &mut Crit) {
    let (hosts, metrics) = (1000, 30);
    let src = Ipv4Addr::LOCALHOST;
    let now = Timestamp::from_secs(NOW);
    let mut values = Vec::with_capacity(hosts * metrics);
    let mut store = ClusterStore::new(StoreConfig::default());
    for h in 0..hosts {
        for m in 0..metrics {
            let (v, md) = harness_datagrams(h, m);
            store.handle_datagram(now, src, &md);
            values.push(v);
        }
    }
    let ring = ring();
    let mut opts = AuthOptions::new(ring.clone());
    opts.set_mode("require").unwrap();
    let gate: Gate = Gate::shared(&opts)(Mode::Require);
    let stats = IoStats::default();

    let mut g = c.benchmark_group("auth_ingest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("store_unsigned", |b| {
        let mut i = 0;
        b.iter(|| {
            let d = &values[i % values.len()];
            i += 1;
            store.handle_datagram_from(now, src, black_box(d), None)
        })
    });
    g.bench_function("gate_require_then_store", |b| {
        b.iter_custom(|iters| {
            let mut s = Signer::new(&ring, NOW ^ iters);
            let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK as usize);
            let (mut total, mut left, mut i) = (Duration::ZERO, iters, 0);
            while left > 0 {
                let n = left.min(CHUNK);
                chunk.clear();
                chunk.extend((0..n).map(|_| {
                    let mut d = Vec::with_capacity(128);
                    s.sign(&values[i % values.len()], NOW, &mut d);
                    i += 1;
                    d
                }));
                let t = thread_cpu();
                for batch in chunk.chunks(BATCH) {
                    gate.batch(|admit| {
                        for d in batch {
                            let verdict = admit(black_box(d), NOW);
                            auth::count(&stats, &verdict);
                            if let Admit::Pass { body, auth } = verdict {
                                store.handle_datagram_from(now, src, body, auth);
                            }
                        }
                    });
                }
                total += thread_cpu().saturating_sub(t);
                left -= n;
            }
            total
        })
    });
    g.finish();
    let dropped: u64 = stats
        .auth_dropped_total
        .iter()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(
        dropped, 0,
        "the gate dropped some of the bench's own datagrams"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu(WallTime));
    targets = auth, ingest
}
criterion_main!(benches);
