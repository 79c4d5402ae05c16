//! The cluster store against real gmond 3.7.2: the testbed capture is replayed into a store
//! per observing gmond (with the capture's timestamps as simulated time), and each fixture
//! dump must come out of `write_xml` as the same set of hosts and metrics with the same
//! attributes. Includes node1's restart at t≈50 s: a fresh store fed only what came after it
//! must relearn exactly the metrics real node1 printed, through the same metadata requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use ganglia_wire::model::{Cluster, Host, Metric};
use ganglia_wire::{decode, Message};
use gmond_rs::store::{ClusterInfo, ClusterStore, Outcome, StaticResolver, StoreConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use store_common::{drain_requests, event_time, fixture, testbed_pcap, timeline, ts, Datagram};

/// Which gmond process produced a dump: its address and whether it is node1's second life.
#[derive(Debug, Clone, Copy)]
struct Observer {
    ip: Ipv4Addr,
    restarted: bool,
}

const DUMPS: &[(&str, &str, bool)] = &[
    ("node1-t30-initial.xml", "10.77.0.1", false),
    ("node3-t30-initial.xml", "10.77.0.3", false),
    ("node1-t36-after-gmetric.xml", "10.77.0.1", false),
    ("node1-t42-after-spoof.xml", "10.77.0.1", false),
    ("node2-t42-after-spoof.xml", "10.77.0.2", false),
    ("node1-t55-just-restarted.xml", "10.77.0.1", true),
    ("node1-t97-restart+45s.xml", "10.77.0.1", true),
    ("node1-t127-restart+75s.xml", "10.77.0.1", true),
];

/// The capture, plus the mapping from the script's clock (timeline.txt) to capture time.
struct Testbed {
    pcap: Vec<Datagram>,
    timeline: Vec<(f64, String)>,
    /// Capture time of script second 0: node1's first datagram went out at its start event.
    epoch_offset: f64,
}

impl Testbed {
    fn load() -> Self {
        let pcap = testbed_pcap();
        let timeline = timeline();
        let node1_start = event_time(&timeline, "start gmond node1");
        let epoch_offset = pcap[0].time - node1_start;
        Testbed {
            pcap,
            timeline,
            epoch_offset,
        }
    }

    fn capture_time(&self, script: f64) -> f64 {
        self.epoch_offset + script
    }

    /// When the observer's gmond process started listening: just before its first datagram
    /// (gmond sends its startup metadata immediately).
    fn start_of(&self, obs: Observer) -> f64 {
        let after = if obs.restarted {
            self.capture_time(event_time(&self.timeline, "killed gmond node1"))
        } else {
            0.0
        };
        let first = self
            .pcap
            .iter()
            .find(|d| d.src == obs.ip && d.time > after)
            .expect("observer sent something");
        first.time - 0.05
    }

    /// The dump's instant: the timeline stamps a dump slightly after gmond wrote it, so clamp
    /// to the second gmond printed as LOCALTIME.
    fn dump_time(&self, file: &str, localtime: u64) -> f64 {
        let script = event_time(&self.timeline, &format!("xml/{file}"));
        let t = self.capture_time(script);
        let t = t.min(localtime as f64 + 0.999);
        assert!(
            t >= localtime as f64,
            "{file}: timeline {t} is before LOCALTIME {localtime}"
        );
        t
    }

    /// A store that saw what the observer's gmond saw between `from` and `until`.
    fn replay(&self, from: f64, until: f64) -> ClusterStore {
        let cfg = StoreConfig {
            cluster: ClusterInfo {
                name: "refcluster".into(),
                owner: "gref owner".into(),
                latlong: "N32.87 W117.22".into(),
                url: "http://example.invalid/ganglia/".into(),
            },
            ..StoreConfig::default()
        };
        let mut store = ClusterStore::with_resolver(cfg, Box::new(resolver()));
        for d in self
            .pcap
            .iter()
            .filter(|d| d.time >= from && d.time < until)
        {
            let outcome = store.handle_datagram(ts(d.time), d.src, &d.payload);
            assert_eq!(outcome, Outcome::Accepted, "datagram at {}", d.time);
            store.handle_timeout(ts(d.time));
        }
        store
    }
}

fn resolver() -> StaticResolver {
    (1..=3)
        .map(|n| (Ipv4Addr::new(10, 77, 0, n), format!("node{n}")))
        .collect()
}

fn close(got: u64, want: u64, what: &str) {
    assert!(
        got.abs_diff(want) <= 1,
        "{what}: got {got}, want {want} (±1)"
    );
}

fn by_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> BTreeMap<String, &T> {
    let map: BTreeMap<String, &T> = items.iter().map(|i| (name(i).to_owned(), i)).collect();
    assert_eq!(map.len(), items.len(), "duplicate names");
    map
}

fn compare_metric(ctx: &str, got: &Metric, want: &Metric) {
    close(got.tn, want.tn, &format!("{ctx}: TN"));
    let strip = |m: &Metric| Metric { tn: 0, ..m.clone() };
    assert_eq!(strip(got), strip(want), "{ctx}");
}

fn compare_host(ctx: &str, got: &Host, want: &Host) {
    close(got.tn, want.tn, &format!("{ctx}: TN"));
    close(got.reported, want.reported, &format!("{ctx}: REPORTED"));
    assert_eq!(
        (&got.ip, &got.tags, got.tmax, got.dmax, &got.location),
        (&want.ip, &want.tags, want.tmax, want.dmax, &want.location),
        "{ctx}: IP/TAGS/TMAX/DMAX/LOCATION"
    );
    // `gmetric -H` sends heartbeat as a string; gmond prints the string's pointer bits, we
    // print 0 (a deliberate difference, reference §F).
    let want_started = if want.name == "vm-guest-1" {
        0
    } else {
        want.gmond_started
    };
    assert_eq!(got.gmond_started, want_started, "{ctx}: GMOND_STARTED");
    let (g, w) = (
        by_name(&got.metrics, |m| &m.name),
        by_name(&want.metrics, |m| &m.name),
    );
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{ctx}: set of printed metrics"
    );
    for (name, wm) in &w {
        compare_metric(&format!("{ctx}/{name}"), g[name], wm);
    }
}

fn compare_cluster(ctx: &str, got: &Cluster, want: &Cluster) {
    assert_eq!(
        (&got.name, got.localtime, &got.owner, &got.latlong, &got.url),
        (
            &want.name,
            want.localtime,
            &want.owner,
            &want.latlong,
            &want.url
        ),
        "{ctx}: CLUSTER"
    );
    let (g, w) = (
        by_name(&got.hosts, |h| &h.name),
        by_name(&want.hosts, |h| &h.name),
    );
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{ctx}: set of hosts"
    );
    for (name, wh) in &w {
        compare_host(&format!("{ctx}/{name}"), g[name], wh);
    }
}

#[test]
fn every_fixture_dump_is_reproduced_from_the_capture() {
    let tb = Testbed::load();
    let mut metrics_compared = 0;
    for &(file, ip, restarted) in DUMPS {
        let raw = std::fs::read(fixture(&format!("xml/{file}"))).unwrap();
        let want = ganglia_wire::xml::read_document(&raw)
            .unwrap()
            .clusters
            .remove(0);
        let obs = Observer {
            ip: ip.parse().unwrap(),
            restarted,
        };
        let now = tb.dump_time(file, want.localtime);
        let store = tb.replay(tb.start_of(obs), now);
        let got = store_common::cluster(&store, ts(now));
        compare_cluster(file, &got, &want);
        metrics_compared += want.hosts.iter().map(|h| h.metrics.len()).sum::<usize>();
    }
    // Guard against a vacuous pass (fixtures missing metrics, filters too strict).
    assert_eq!(metrics_compared, 99 + 40 + 105 + 107 + 81 + 33 + 65 + 81);
}

#[test]
fn node3_sees_node1_as_an_empty_host() {
    let tb = Testbed::load();
    let obs = Observer {
        ip: Ipv4Addr::new(10, 77, 0, 3),
        restarted: false,
    };
    let now = tb.dump_time("node3-t30-initial.xml", 1_795_313_257);
    let mut store = tb.replay(tb.start_of(obs), now);
    let c = store_common::cluster(&store, ts(now));
    let node1 = c.host("node1").expect("node1 is listed");
    assert!(node1.metrics.is_empty(), "{:?}", node1.metrics);
    assert_eq!(
        node1.gmond_started, 1_795_313_226,
        "heartbeat value without metadata"
    );
    // ...because node3 holds node1's values and asked for their metadata.
    let asked = drain_requests(&mut store);
    assert!(
        asked.contains(&("node1".into(), "cpu_user".into(), false)),
        "{asked:?}"
    );
    assert!(store.stats().metrics > c.hosts.iter().map(|h| h.metrics.len()).sum::<usize>());
}

/// Metadata requests (id 136) as (host field, metric name, spoof).
fn request_of(d: &Datagram) -> Option<(String, String, bool)> {
    match decode(&d.payload).unwrap() {
        Message::MetadataRequest(id) => Some((
            String::from_utf8(id.host.to_vec()).unwrap(),
            String::from_utf8(id.name.to_vec()).unwrap(),
            id.spoof,
        )),
        _ => None,
    }
}

#[test]
fn restarted_node_sends_the_requests_real_node1_sent() {
    let tb = Testbed::load();
    let obs = Observer {
        ip: Ipv4Addr::new(10, 77, 0, 1),
        restarted: true,
    };
    let start = tb.start_of(obs);
    let end = tb.pcap.last().unwrap().time + 1.0;
    let mut real: Vec<_> = tb
        .pcap
        .iter()
        .filter(|d| d.src == obs.ip && d.time >= start)
        .filter_map(request_of)
        .collect();
    let mut store = tb.replay(start, end);
    let mut ours = drain_requests(&mut store);
    assert!(real.len() >= 20, "capture has {} requests", real.len());
    real.sort();
    ours.sort();
    assert_eq!(ours, real);
    assert_eq!(
        store.stats().metadata_requests_sent_total,
        real.len() as u64
    );
}

#[test]
fn requests_seen_on_the_wire_are_reported_for_resend() {
    // node1's first life: node2 and node3 ask for node1's metadata at t≈20 s; each name is
    // reported once per drain, whoever asked, and the requesters are hosts.
    let tb = Testbed::load();
    let obs = Observer {
        ip: Ipv4Addr::new(10, 77, 0, 1),
        restarted: false,
    };
    let start = tb.start_of(obs);
    let until = start + 25.0;
    let mut store = tb.replay(start, until);
    let mut want: Vec<String> = tb
        .pcap
        .iter()
        .filter(|d| d.time >= start && d.time < until)
        .filter_map(request_of)
        .map(|(_, name, _)| name)
        .collect();
    assert!(want.len() > 10);
    let received = want.len() as u64;
    want.sort();
    want.dedup();
    let mut got: Vec<String> = store
        .poll_metadata_requested()
        .map(|n| String::from_utf8(n.into_vec()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(store.poll_metadata_requested().count(), 0, "drained");
    assert_eq!(store.stats().metadata_requests_received_total, received);
}

/// Hosts and metrics sorted by name, so documents of two stores compare as sets.
fn canonical(mut c: Cluster) -> Cluster {
    c.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    for h in &mut c.hosts {
        h.metrics.sort_by(|a, b| a.name.cmp(&b.name));
    }
    c
}

#[test]
fn prepared_dumps_equal_direct_dumps() {
    // Pre-rendered metrics must never show stale values: prepare at odd moments through the
    // whole capture and compare with a twin store that never prepares (so renders directly).
    let tb = Testbed::load();
    let new = || ClusterStore::with_resolver(StoreConfig::default(), Box::new(resolver()));
    let (mut prepared, mut direct) = (new(), new());
    let mut compared = 0;
    for (i, d) in tb.pcap.iter().enumerate() {
        let _ = prepared.handle_datagram(ts(d.time), d.src, &d.payload);
        let _ = direct.handle_datagram(ts(d.time), d.src, &d.payload);
        if i % 37 == 0 {
            prepared.prepare_xml();
        }
        if i % 50 == 0 {
            let now = ts(d.time + 0.5);
            let mut before = Vec::new();
            prepared.write_xml(now, &mut before).unwrap();
            prepared.prepare_xml();
            // Same store, same hash order: preparing must not change a byte...
            let mut after = Vec::new();
            prepared.write_xml(now, &mut after).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&after),
                String::from_utf8_lossy(&before),
                "after datagram {i}"
            );
            assert_eq!(prepared.render_xml(now, Vec::new()).unwrap(), after);
            // ...and must equal what an unprepared store prints.
            assert_eq!(
                canonical(store_common::cluster(&prepared, now)),
                canonical(store_common::cluster(&direct, now)),
                "after datagram {i}"
            );
            compared += 1;
        }
    }
    assert!(compared > 10);
    // Prepared elements are counted in the store's memory.
    assert!(prepared.stats().bytes > direct.stats().bytes);
}
