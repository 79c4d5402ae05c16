//! Rough speed of the cluster store: ns per ingested value datagram (known hosts and metrics,
//! the steady state) and time per full XML dump, for N hosts x 33 stock-like metrics.
//!
//! `cargo run --release -p gmond-rs --example store_speed -- [HOSTS] [ROUNDS]`
//! (defaults 1000 hosts, 20 rounds). Not a benchmark harness: criterion benches live in
//! benches/; this prints single-machine figures for the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::{encode, Extra, Message, Metadata, MetricId, Slope, Value, ValueMsg};
use gmond_rs::store::{ClusterStore, Outcome, StoreConfig, Timestamp};
use std::net::Ipv4Addr;
use std::time::Instant;

/// (name, type, fmt, kind) roughly like gmond's default metric set (reference §D).
const METRICS: &[(&str, &str, &str, char)] = &[
    ("cpu_num", "uint16", "%hu", 'h'),
    ("cpu_speed", "uint32", "%u", 'u'),
    ("mem_total", "float", "%.0f", 'f'),
    ("swap_total", "float", "%.0f", 'f'),
    ("boottime", "uint32", "%u", 'u'),
    ("machine_type", "string", "%s", 's'),
    ("os_name", "string", "%s", 's'),
    ("os_release", "string", "%s", 's'),
    ("gexec", "string", "%s", 's'),
    ("cpu_user", "float", "%.1f", 'f'),
    ("cpu_system", "float", "%.1f", 'f'),
    ("cpu_idle", "float", "%.1f", 'f'),
    ("cpu_nice", "float", "%.1f", 'f'),
    ("cpu_aidle", "float", "%.1f", 'f'),
    ("cpu_wio", "float", "%.1f", 'f'),
    ("cpu_steal", "float", "%.1f", 'f'),
    ("load_one", "float", "%.2f", 'f'),
    ("load_five", "float", "%.2f", 'f'),
    ("load_fifteen", "float", "%.2f", 'f'),
    ("proc_run", "uint32", "%u", 'u'),
    ("proc_total", "uint32", "%u", 'u'),
    ("mem_free", "float", "%.0f", 'f'),
    ("mem_shared", "float", "%.0f", 'f'),
    ("mem_buffers", "float", "%.0f", 'f'),
    ("mem_cached", "float", "%.0f", 'f'),
    ("swap_free", "float", "%.0f", 'f'),
    ("bytes_out", "float", "%.2f", 'f'),
    ("bytes_in", "float", "%.2f", 'f'),
    ("pkts_in", "float", "%.2f", 'f'),
    ("pkts_out", "float", "%.2f", 'f'),
    ("disk_total", "double", "%.3f", 'd'),
    ("disk_free", "double", "%.3f", 'd'),
    ("part_max_used", "float", "%.1f", 'f'),
];

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 1)
}

fn encoded(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out);
    out
}

fn value_datagram(host: &str, name: &str, fmt: &str, kind: char, round: usize) -> Vec<u8> {
    let x = round as f64 * 1.37;
    let v = match kind {
        'h' => Value::UShort(4),
        'u' => Value::UInt(1000 + round as u32),
        'f' => Value::Float(x as f32),
        'd' => Value::Double(x * 10.0),
        _ => Value::Str(b"Linux x86_64 6.1.0"),
    };
    encoded(&Message::Value(ValueMsg {
        id: MetricId {
            host: host.as_bytes(),
            name: name.as_bytes(),
            spoof: false,
        },
        fmt: fmt.as_bytes(),
        value: v,
    }))
}

/// CPU time this thread has run, from Linux's schedstat (ns): on a loaded machine wall-clock
/// time would include time spent waiting for a core.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let hosts = args.first().copied().unwrap_or(1000);
    let rounds = args.get(1).copied().unwrap_or(20);
    let mut store = ClusterStore::new(StoreConfig::default());
    let t0 = 1_800_000_000u64;

    // Metadata once per metric, then two alternating rounds of values.
    let mut values: Vec<Vec<(Ipv4Addr, Vec<u8>)>> = vec![Vec::new(), Vec::new()];
    for h in 0..hosts {
        let name = format!("host{h}");
        for &(m, ty, fmt, kind) in METRICS {
            let md = encoded(&Message::Metadata(Metadata {
                id: MetricId {
                    host: name.as_bytes(),
                    name: m.as_bytes(),
                    spoof: false,
                },
                metric_type: ty.as_bytes(),
                name: m.as_bytes(),
                units: b"KB",
                slope: Slope::BOTH,
                tmax: 90,
                dmax: 0,
                extra: vec![
                    Extra {
                        name: b"TITLE",
                        data: m.as_bytes(),
                    },
                    Extra {
                        name: b"DESC",
                        data: b"A description of about this many characters",
                    },
                    Extra {
                        name: b"GROUP",
                        data: b"cpu",
                    },
                ],
            }));
            assert_eq!(
                store.handle_datagram(Timestamp::from_secs(t0), ip(h), &md),
                Outcome::Accepted
            );
            for (r, round) in values.iter_mut().enumerate() {
                round.push((ip(h), value_datagram(&name, m, fmt, kind, r)));
            }
        }
    }

    let n = values[0].len();
    let (start, cpu0) = (Instant::now(), cpu_ns());
    for r in 0..rounds {
        let now = Timestamp::from_secs(t0 + 1 + r as u64);
        for (src, d) in &values[r % 2] {
            store.handle_datagram(now, *src, d);
        }
    }
    let ingest = start.elapsed();
    let per = ingest.as_nanos() as f64 / (n * rounds) as f64;
    let per_cpu = (cpu_ns() - cpu0) as f64 / (n * rounds) as f64;
    assert_eq!(store.stats().datagrams_dropped_total, 0);
    assert_eq!(store.stats().metadata_requests_sent_total, 0);

    let now = Timestamp::from_secs(t0 + 100);
    let mut out = Vec::with_capacity(1 << 20);
    store.write_xml(now, &mut out).unwrap();
    let dumps = 10;
    let timed = |store: &ClusterStore, out: &mut Vec<u8>| {
        let (start, cpu0) = (Instant::now(), cpu_ns());
        for _ in 0..dumps {
            out.clear();
            store.write_xml(now, out).unwrap();
        }
        (
            start.elapsed().as_secs_f64() * 1e3 / f64::from(dumps),
            (cpu_ns() - cpu0) as f64 / 1e6 / f64::from(dumps),
        )
    };
    let (direct_ms, direct_cpu_ms) = timed(&store, &mut out);

    // Pre-rendered: every metric prepared once, then only TN written per dump. Preparing
    // after a full round of new values costs about one direct dump.
    store.prepare_xml();
    for (src, d) in &values[rounds % 2] {
        store.handle_datagram(now, *src, d);
    }
    let (start, cpu0) = (Instant::now(), cpu_ns());
    store.prepare_xml();
    let prep_ms = start.elapsed().as_secs_f64() * 1e3;
    let prep_cpu_ms = (cpu_ns() - cpu0) as f64 / 1e6;
    let (prepared_ms, prepared_cpu_ms) = timed(&store, &mut out);
    let (start, cpu0) = (Instant::now(), cpu_ns());
    let mut doc = Vec::new();
    for _ in 0..dumps {
        doc = store.render_xml(now, std::mem::take(&mut doc)).unwrap();
        doc.clear();
    }
    let render_ms = start.elapsed().as_secs_f64() * 1e3 / f64::from(dumps);
    let render_cpu_ms = (cpu_ns() - cpu0) as f64 / 1e6 / f64::from(dumps);

    println!(
        "hosts={hosts} metrics/host={} ingest: {per:.0} ns/datagram wall, {per_cpu:.0} ns CPU \
         over {} datagrams",
        METRICS.len(),
        n * rounds,
    );
    println!(
        "dump ({} bytes): direct {direct_ms:.1} ms wall / {direct_cpu_ms:.1} ms CPU; \
         prepared {prepared_ms:.1} / {prepared_cpu_ms:.1}; prepared render_xml \
         {render_ms:.1} / {render_cpu_ms:.1}; prepare_xml after a full round of values \
         {prep_ms:.1} / {prep_cpu_ms:.1}; store bytes={}",
        out.len(),
        store.stats().bytes,
    );
}
