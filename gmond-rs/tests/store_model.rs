//! The cluster store against a naive model (convention 12): random sequences of values,
//! metadata, requests, malformed spoofs, clock advances and cleanup ticks are applied to both,
//! and the printed view (hosts, metrics, values, TN/REPORTED, GMOND_STARTED, LOCATION), the
//! requests sent and the counters must agree. The model re-states reference §A.6-A.7 and §B.5
//! in the most direct way: ordered maps, full rescans, no caps.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use ganglia_wire::model::Cluster;
use gmond_rs::store::{ClusterStore, StaticResolver, StoreConfig, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;
use store_common::*;

const SRCS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 3),
];
/// Spoof strings: valid, colliding with a source address, multi-colon, and malformed.
const SPOOFS: [&str; 5] = [
    "10.0.0.9:vm",
    "10.0.0.1:impostor",
    "h:x:y",
    "bad",
    "10.0.0.8:",
];
const NAMES: [&str; 7] = ["m", "n", "a:b", "a:c", "heartbeat", "Location", ":z"];
const HOST_DMAX: u64 = 50;
const THRESHOLD: u64 = 10;
const REQUEST_INTERVAL: u64 = 7;

#[derive(Debug, Clone)]
enum Op {
    Value {
        src: usize,
        spoof: Option<usize>,
        name: usize,
        v: u32,
    },
    Text {
        src: usize,
        spoof: Option<usize>,
        name: usize,
        v: u8,
    },
    Meta {
        src: usize,
        spoof: Option<usize>,
        name: usize,
        dmax: u32,
    },
    Request {
        src: usize,
        spoof: Option<usize>,
        name: usize,
    },
    Advance(u64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let who = (
        0..SRCS.len(),
        prop::option::weighted(0.3, 0..SPOOFS.len()),
        0..NAMES.len(),
    );
    prop_oneof![
        4 => (who.clone(), any::<u32>()).prop_map(|((src, spoof, name), v)| Op::Value { src, spoof, name, v }),
        1 => (who.clone(), 0u8..3).prop_map(|((src, spoof, name), v)| Op::Text { src, spoof, name, v }),
        3 => (who.clone(), prop_oneof![Just(0u32), Just(15u32)])
            .prop_map(|((src, spoof, name), dmax)| Op::Meta { src, spoof, name, dmax }),
        1 => who.prop_map(|(src, spoof, name)| Op::Request { src, spoof, name }),
        2 => (0u64..25).prop_map(Op::Advance),
        2 => Just(Op::Tick),
    ]
}

/// A value as the model sees it: its printed VAL, its heartbeat bits, its location text.
struct MValue<'a> {
    shown: String,
    bits: u32,
    text: Option<&'a str>,
}

#[derive(Debug, Default)]
struct MMetric {
    value: Option<(String, u64)>,
    meta: Option<(u32, u64)>,
}

#[derive(Debug)]
struct MHost {
    name: String,
    /// A non-spoofed datagram came from the host's address (its own NAME then wins).
    direct: bool,
    heard: u64,
    started: u32,
    location: String,
    metrics: BTreeMap<String, MMetric>,
}

#[derive(Debug, Default)]
struct Model {
    hosts: BTreeMap<String, MHost>,
    requests: Vec<(String, String, bool)>,
    /// When a request for (name, spoofed) last went out: one per REQUEST_INTERVAL.
    asked: BTreeMap<(String, bool), u64>,
    last_cleanup: Option<u64>,
    dropped: u64,
}

fn resolve(src: usize) -> String {
    // 10.0.0.3 is unknown to the resolver: numeric name.
    match src {
        0 => "one".into(),
        1 => "two".into(),
        _ => SRCS[src].to_string(),
    }
}

impl Model {
    /// Returns whether the message was accepted.
    fn message(
        &mut self,
        now: u64,
        src: usize,
        spoof: Option<usize>,
        name: &str,
    ) -> Option<(String, String)> {
        self.last_cleanup.get_or_insert(now);
        let (key, host_name) = match spoof {
            None => (SRCS[src].to_string(), resolve(src)),
            Some(i) => {
                let s = SPOOFS[i];
                let Some(colon) = s[1..].find(':').map(|c| c + 1) else {
                    self.dropped += 1;
                    return None;
                };
                if colon + 1 == s.len() {
                    self.dropped += 1;
                    return None;
                }
                (s[..colon].to_string(), s[colon + 1..].to_string())
            }
        };
        let direct = spoof.is_none();
        let host = self.hosts.entry(key.clone()).or_insert_with(|| MHost {
            name: host_name.clone(),
            direct,
            heard: now,
            started: 0,
            location: "unspecified".into(),
            metrics: BTreeMap::new(),
        });
        if direct && !host.direct {
            host.direct = true;
            host.name = host_name;
        }
        host.heard = now;
        let name = if spoof.is_some() {
            name.to_string()
        } else {
            name.replace(':', "_")
        };
        Some((key, name))
    }

    fn value(&mut self, now: u64, src: usize, spoof: Option<usize>, name: &str, value: MValue<'_>) {
        let Some((key, name)) = self.message(now, src, spoof, name) else {
            return;
        };
        let host = self.hosts.get_mut(&key).unwrap();
        if name.eq_ignore_ascii_case("heartbeat") {
            host.started = value.bits;
        }
        if name.eq_ignore_ascii_case("location") {
            if let Some(t) = value.text {
                host.location = t.to_string();
            }
        }
        let m = host.metrics.entry(name.clone()).or_default();
        m.value = Some((value.shown, now));
        let asked = self.asked.get(&(name.clone(), spoof.is_some()));
        if m.meta.is_none() && asked.is_none_or(|&t| now - t >= REQUEST_INTERVAL) {
            let field = if spoof.is_some() {
                format!("{key}:{}", host.name)
            } else {
                host.name.clone()
            };
            self.asked.insert((name.clone(), spoof.is_some()), now);
            self.requests.push((field, name, spoof.is_some()));
        }
    }

    fn tick(&mut self, now: u64) {
        let Some(last) = self.last_cleanup else {
            self.last_cleanup = Some(now);
            return;
        };
        if now - last <= THRESHOLD {
            return;
        }
        self.last_cleanup = Some(now);
        self.hosts.retain(|_, h| now - h.heard <= HOST_DMAX);
        for h in self.hosts.values_mut() {
            h.metrics
                .retain(|_, m| !matches!(m.meta, Some((dmax, at)) if dmax != 0 && now - at > u64::from(dmax)));
        }
    }

    /// (host name, ip, reported, tn, started, location, sorted printed metrics).
    fn view(&self, now: u64) -> View {
        let mut out: Vec<_> = self
            .hosts
            .iter()
            .map(|(ip, h)| {
                let mut metrics: Vec<_> = h
                    .metrics
                    .iter()
                    .filter(|(n, _)| {
                        !n.eq_ignore_ascii_case("heartbeat") && !n.eq_ignore_ascii_case("location")
                    })
                    .filter_map(|(n, m)| {
                        let ((val, at), (dmax, _)) = (m.value.clone()?, m.meta?);
                        let printed = match n[1..].find(':') {
                            Some(i) => n[..i + 1].to_string(),
                            None => n.clone(),
                        };
                        Some((printed, val, now - at, dmax))
                    })
                    .collect();
                metrics.sort();
                (
                    h.name.clone(),
                    ip.clone(),
                    h.heard,
                    now - h.heard,
                    i64::from(h.started as i32),
                    h.location.clone(),
                    metrics,
                )
            })
            .collect();
        out.sort();
        out
    }
}

type View = Vec<(
    String,
    String,
    u64,
    u64,
    i64,
    String,
    Vec<(String, String, u64, u32)>,
)>;

fn store_view(c: Cluster, t0: u64) -> View {
    let mut out: View = c
        .hosts
        .into_iter()
        .map(|h| {
            let mut metrics: Vec<_> = h
                .metrics
                .into_iter()
                .map(|m| (m.name, m.val, m.tn, m.dmax))
                .collect();
            metrics.sort();
            (
                h.name,
                h.ip,
                h.reported - t0,
                h.tn,
                h.gmond_started,
                h.location,
                metrics,
            )
        })
        .collect();
    out.sort();
    out
}

const LOCATIONS: [&str; 3] = ["rack1", "rack 2 (x,y,z)", ""];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn store_matches_the_model(ops in prop::collection::vec(op(), 1..120), prepare_every in 1usize..20) {
        let t0 = 1_800_000_000u64;
        let resolver: StaticResolver = [(SRCS[0], "one"), (SRCS[1], "two")].into_iter().collect();
        let mut store = ClusterStore::with_resolver(
            StoreConfig {
                host_dmax: Some(Duration::from_secs(HOST_DMAX)),
                cleanup_threshold: Duration::from_secs(THRESHOLD),
                metadata_request_interval: Duration::from_secs(REQUEST_INTERVAL),
                ..StoreConfig::default()
            },
            Box::new(resolver),
        );
        let mut model = Model::default();
        let mut now = 0u64;
        let mut sent = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let at = Timestamp::from_secs(t0 + now);
            let host_of = |spoof: Option<usize>| spoof.map_or("ignored", |s| SPOOFS[s]);
            match *op {
                Op::Value { src, spoof, name, v } => {
                    let d = uint(host_of(spoof), NAMES[name], spoof.is_some(), v);
                    let _ = store.handle_datagram(at, SRCS[src], &d);
                    model.value(now, src, spoof, NAMES[name], MValue { shown: v.to_string(), bits: v, text: None });
                }
                Op::Text { src, spoof, name, v } => {
                    let text = LOCATIONS[usize::from(v)];
                    let d = string(host_of(spoof), NAMES[name], spoof.is_some(), text);
                    let _ = store.handle_datagram(at, SRCS[src], &d);
                    model.value(now, src, spoof, NAMES[name], MValue { shown: text.to_string(), bits: 0, text: Some(text) });
                }
                Op::Meta { src, spoof, name, dmax } => {
                    let d = metadata(host_of(spoof), NAMES[name], spoof.is_some(), "uint32", dmax);
                    let _ = store.handle_datagram(at, SRCS[src], &d);
                    if let Some((key, name)) = model.message(now, src, spoof, NAMES[name]) {
                        let m = model.hosts.get_mut(&key).unwrap().metrics.entry(name).or_default();
                        m.meta = Some((dmax, now));
                    }
                }
                Op::Request { src, spoof, name } => {
                    let d = request(host_of(spoof), NAMES[name], spoof.is_some());
                    let _ = store.handle_datagram(at, SRCS[src], &d);
                    model.message(now, src, spoof, NAMES[name]);
                }
                Op::Advance(dt) => now += dt,
                Op::Tick => {
                    store.handle_timeout(at);
                    model.tick(now);
                }
            }
            sent.extend(drain_requests(&mut store));
            if i % prepare_every == 0 {
                store.prepare_xml();
            }
        }
        let at = Timestamp::from_secs(t0 + now);
        prop_assert_eq!(store_view(cluster(&store, at), t0), model.view(now));
        prop_assert_eq!(&sent, &model.requests);
        prop_assert_eq!(store.stats().dropped("bad_spoof"), model.dropped);
        prop_assert_eq!(store.stats().hosts, model.hosts.len());
        prop_assert_eq!(
            store.stats().metrics,
            model.hosts.values().map(|h| h.metrics.len()).sum::<usize>()
        );
    }
}
