//! Decision latency of every balancing policy on a 1,000-host x 20,000-VM snapshot (goal:
//! p99 < 50 ms on one core). Criterion measures the mean; a plain loop prints p50/p99.

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
            }
        })
        .collect();
    Snapshot::new(3600 + k * 300, hosts, vms).unwrap_or_default()
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
        "naive-threshold",
        "hotspot",
        "stabilize",
        "consolidate",
        "iqr-mmt-1.5",
    ] {
        let Ok(spec) = PolicySpec::builtin(name) else {
            continue;
        };
        let policy = spec.build();
        let input = Input {
            snapshot: &snap,
            trends: &trends,
            history: &history,
            now: snap.time,
        };
        let mut times: Vec<f64> = (0..50)
            .map(|_| {
                let t = Instant::now();
                black_box(policy.decide(input));
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let moves = policy.decide(input).moves.len();
        eprintln!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms, {moves} moves",
            times[times.len() / 2],
            times[(times.len() * 99 / 100).min(times.len() - 1)]
        );
        group.bench_function(name, |b| b.iter(|| black_box(policy.decide(input))));
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
