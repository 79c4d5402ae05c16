//! Cost of one per-VM collection round (list domains, CPU % from the previous round, build the
//! metrics): 200 simulated domains through `vmetrics::collect_round`, and, when
//! `VM_COLLECT_URI` names a libvirt URI (e.g. a host of the `tests/libvirt` testbed), the real
//! guests behind it through `LibvirtHypervisor::collect_round`, as gmond-rs's libvirt thread
//! calls it.
//!
//! ```sh
//! cargo bench -p benches --bench vm_collect
//! VM_COLLECT_URI='qemu+unix:///system?socket=/tmp/gmond-rs-lvt/PREFIX/h1/run/libvirt-sock' \
//!     cargo bench -p benches --bench vm_collect
//! ```

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use gmond_metrics::hypervisor::libvirt::{BackoffPolicy, LibvirtHypervisor};
use gmond_metrics::hypervisor::profile::Profile;
use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};
use gmond_metrics::vmetrics::{collect_round, UtilTracker};

const DOMAINS: usize = 200;
/// gmond-rs's default `collect_every` for the module, in simulated ms.
const ROUND_MS: u64 = 20_000;

/// One 64-core host with 200 domains of 1-4 vCPUs and noisy demand.
fn cluster() -> SimCluster {
    let mut c = SimCluster::new(7);
    let h = c
        .add_host(SimHost {
            name: "hv1".into(),
            cpus: 64,
            mhz: 2600,
            mem_kib: 512 << 20,
            link_bps: 10_000_000_000,
            up: true,
        })
        .unwrap_or_default();
    for i in 0..DOMAINS {
        let vcpus = 1 + (i % 4) as u32;
        let profile = Profile::Noise {
            mean: 0.1 + 0.8 * (i % 10) as f64 / 10.0,
            amplitude: 0.1,
            period_ms: 5_000,
            seed: i as u64,
        };
        let _ = c.add_domain(
            &format!("vm-{i:03}.example.com"),
            vcpus,
            f64::from(vcpus) * 2600.0,
            (1 + (i % 8) as u64) << 20,
            h,
            profile,
        );
    }
    c
}

fn simulated(c: &mut Criterion) {
    let mut sim = cluster();
    let mut tracker = UtilTracker::new();
    let mut now = 0;
    // A first round so that every measured round computes CPU % from a previous sample.
    let _ = collect_round(&sim.host_view("hv1"), &mut tracker, || now * 1_000_000);
    let mut g = c.benchmark_group("vm_collect");
    g.bench_function("sim_200_domains_round", |b| {
        // Simulated time moves on outside the timed part: only the round itself is measured.
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                now += ROUND_MS;
                let _ = sim.advance_to(now);
                let hv = sim.host_view("hv1");
                let t = Instant::now();
                let metrics = collect_round(&hv, &mut tracker, || now * 1_000_000);
                black_box(metrics.map(|m| m.len()).unwrap_or(0));
                spent += t.elapsed();
            }
            spent
        });
    });
    g.finish();
    // A round must produce the convention's metrics (5 per domain once CPU % is known, plus
    // the host's), or the figure above measures nothing.
    now += ROUND_MS;
    let _ = sim.advance_to(now);
    let n = collect_round(&sim.host_view("hv1"), &mut tracker, || now * 1_000_000)
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(n > DOMAINS * 5, "only {n} metrics from {DOMAINS} domains");
}

fn real(c: &mut Criterion) {
    let Some(uri) = std::env::var_os("VM_COLLECT_URI") else {
        eprintln!("vm_collect: VM_COLLECT_URI not set; real-guest round not measured");
        return;
    };
    let uri = uri.to_string_lossy().into_owned();
    let hv = LibvirtHypervisor::open_lazy(&uri, BackoffPolicy::default());
    let start = Instant::now();
    let clock = || start.elapsed().as_nanos() as u64;
    let mut tracker = UtilTracker::new();
    // Fail loudly: a URI was asked for, so an unreachable one is an error, not a skip.
    let first = match hv.collect_round(Instant::now(), &mut tracker, clock) {
        Ok(m) => m,
        Err(e) => panic!("vm_collect: {uri}: {e}"),
    };
    let domains = first
        .iter()
        .filter(|m| m.name.ends_with(".vcpu_num"))
        .count();
    eprintln!(
        "vm_collect: {uri}: {domains} running domains, {} metrics",
        first.len()
    );
    let mut g = c.benchmark_group("vm_collect");
    g.sample_size(30);
    g.bench_function(format!("libvirt_round_{domains}_domains"), |b| {
        b.iter(|| {
            black_box(
                hv.collect_round(Instant::now(), &mut tracker, clock)
                    .map(|m| m.len()),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, simulated, real);
criterion_main!(benches);
