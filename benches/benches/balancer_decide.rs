//! Decision latency of every shipped policy file on a 1,000-host x 20,000-VM snapshot (goal:
//! p99 < 50 ms on one core). Criterion measures the mean; a plain loop prints p50/p99 of wall
//! time and of the thread's CPU time.

use std::hint::black_box;
use std::time::Instant;

use balancer::planner::{History, Input};
use balancer::policy::PolicySpec;
use balancer::snapshot::{HostState, Snapshot, VmState};
use balancer::trends::{TrendConfig, Trends};
use criterion::{criterion_group, criterion_main, Criterion};
use gmond_metrics::hypervisor::profile::{splitmix64, unit};

const HOSTS: usize = 1000;
const VMS: usize = 20_000;

/// A deterministic cluster: 20 VMs per host on average, loads skewed so that about 5 % of
/// hosts are hot and some are nearly idle; `k` shifts the demand a little per observation.
fn snapshot(k: u64) -> Snapshot {
    let hosts = (0..HOSTS)
        .map(|i| HostState {
            name: format!("host-{i:04}"),
            cpus: 16,
            mhz: 2660.0,
            mem_kb: 128 << 20,
            up: true,
            maintenance: false,
            power: None,
        })
        .collect();
    let vms = (0..VMS)
        .map(|i| {
            let r = unit(splitmix64(i as u64));
            let h = (splitmix64(i as u64 ^ 0xabc) % HOSTS as u64) as usize;
            let hot = h % 20 == 0;
            let base = if hot { 0.9 } else { 0.1 + 0.4 * r };
            let jitter = 0.05 * (unit(splitmix64((i as u64) << 8 | k)) - 0.5);
            VmState {
                name: format!("vm-{i:05}"),
                host: format!("host-{h:04}"),
                vcpus: 2,
                cpu_cap_mhz: 2.0 * 2660.0,
                cpu_demand_mhz: 2.0 * 2660.0 * (base + jitter).clamp(0.0, 1.0),
                mem_kb: (1 + (i % 4) as u64) << 20,
                mem_used_kb: 1 << 20,
                migrating: false,
                migrating_to: None,
                host_idx: 0,
                tags: Default::default(),
            }
        })
        .collect();
    Snapshot::new(3600 + k * 300, hosts, vms).unwrap_or_default()
}

/// CPU time of the calling thread, ns, from /proc/thread-self/schedstat (Linux): on a shared
/// machine the wall clock also counts time spent waiting for a core; the goal is per core.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn pct(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn decide(c: &mut Criterion) {
    let mut trends = Trends::new(TrendConfig::default());
    let mut snap = snapshot(0);
    for k in 0..12 {
        snap = snapshot(k);
        trends.observe(&snap);
    }
    let history = History::default();
    let mut group = c.benchmark_group("balancer_decide_1000x20000");
    group.sample_size(20);
    for name in [
        "none",
        "naive-threshold",
        "hotspot",
        "stabilize",
        "consolidate",
        "consolidate-aggressive",
        "thr-mmt-0.8",
        "iqr-mmt-1.5",
        "mad-mmt-2.5",
        "lr-mmt-1.2",
    ] {
        // BALANCER_DECIDE=name,name limits the run to some policies.
        if std::env::var("BALANCER_DECIDE").is_ok_and(|only| !only.split(',').any(|o| o == name)) {
            continue;
        }
        let Ok(spec) = PolicySpec::builtin(name) else {
            continue;
        };
        let policy = spec.build();
        let input = Input {
            snapshot: &snap,
            trends: &trends,
            history: &history,
            now: snap.time,
            wall_s: snap.time,
            verbose: false,
            pending: &[],
        };
        let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..50)
            .map(|_| {
                let c0 = thread_cpu_ns();
                let t = Instant::now();
                black_box(policy.decide(input));
                let w = t.elapsed().as_secs_f64() * 1000.0;
                let c = match (c0, thread_cpu_ns()) {
                    (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
                    _ => f64::NAN,
                };
                (w, c)
            })
            .unzip();
        let moves = policy.decide(input).moves.len();
        eprintln!(
            "{name}: wall p50 {:.2} ms, p99 {:.2} ms; cpu p50 {:.2} ms, p99 {:.2} ms; {moves} moves",
            pct(&mut wall, 50),
            pct(&mut wall, 99),
            pct(&mut cpu, 50),
            pct(&mut cpu, 99),
        );
        group.bench_function(name, |b| b.iter(|| black_box(policy.decide(input))));
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
