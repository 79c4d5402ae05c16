//! Helpers shared by the cluster-store integration tests: fixture paths, a classic-pcap
//! reader, the testbed timeline, message builders and XML parsing of a store's dump.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::{Cluster, Document};
use ganglia_wire::xml::read_document;
use ganglia_wire::{encode, Extra, Message, Metadata, MetricId, Slope, Value, ValueMsg};
use gmond_rs::store::{ClusterStore, Timestamp};
use std::path::PathBuf;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ganglia-3.7.2")
        .join(rel)
}

pub use integration_tests::pcap::{read_pcap, Datagram};

pub fn testbed_pcap() -> Vec<Datagram> {
    read_pcap(&std::fs::read(fixture("pcap/testbed-3nodes.pcap")).unwrap())
}

/// timeline.txt: (script seconds, event text).
pub fn timeline() -> Vec<(f64, String)> {
    std::fs::read_to_string(fixture("timeline.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (t, rest) = l.split_once(' ')?;
            Some((t.parse().ok()?, rest.trim().to_owned()))
        })
        .collect()
}

/// The script time of the first event containing `needle`.
pub fn event_time(tl: &[(f64, String)], needle: &str) -> f64 {
    tl.iter()
        .find(|(_, e)| e.contains(needle))
        .unwrap_or_else(|| panic!("timeline has no {needle:?}"))
        .0
}

pub fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs)
}

/// The store's document, parsed back.
pub fn dump(store: &ClusterStore, now: Timestamp) -> Document {
    let mut out = Vec::new();
    store.write_xml(now, &mut out).unwrap();
    read_document(&out).unwrap()
}

pub fn cluster(store: &ClusterStore, now: Timestamp) -> Cluster {
    dump(store, now).clusters.remove(0)
}

pub fn id<'a>(host: &'a str, name: &'a str, spoof: bool) -> MetricId<'a> {
    MetricId {
        host: host.as_bytes(),
        name: name.as_bytes(),
        spoof,
    }
}

fn enc(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out);
    out
}

/// A metadata datagram with gmond-style extras (TITLE, DESC, GROUP in packet order).
pub fn metadata(host: &str, name: &str, spoof: bool, ty: &str, dmax: u32) -> Vec<u8> {
    metadata_with(
        host,
        name,
        spoof,
        ty,
        dmax,
        &[("TITLE", name), ("GROUP", "test")],
    )
}

pub fn metadata_with(
    host: &str,
    name: &str,
    spoof: bool,
    ty: &str,
    dmax: u32,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    enc(&Message::Metadata(Metadata {
        id: id(host, name, spoof),
        metric_type: ty.as_bytes(),
        name: name.as_bytes(),
        units: b"u",
        slope: Slope::BOTH,
        tmax: 60,
        dmax,
        extra: extra
            .iter()
            .map(|(k, v)| Extra {
                name: k.as_bytes(),
                data: v.as_bytes(),
            })
            .collect(),
    }))
}

pub fn value(host: &str, name: &str, spoof: bool, fmt: &str, v: Value<'_>) -> Vec<u8> {
    enc(&Message::Value(ValueMsg {
        id: id(host, name, spoof),
        fmt: fmt.as_bytes(),
        value: v,
    }))
}

pub fn uint(host: &str, name: &str, spoof: bool, v: u32) -> Vec<u8> {
    value(host, name, spoof, "%u", Value::UInt(v))
}

pub fn string(host: &str, name: &str, spoof: bool, v: &str) -> Vec<u8> {
    value(host, name, spoof, "%s", Value::Str(v.as_bytes()))
}

pub fn request(host: &str, name: &str, spoof: bool) -> Vec<u8> {
    enc(&Message::MetadataRequest(id(host, name, spoof)))
}

/// Every datagram the store wants sent, decoded to (host, name, spoof).
pub fn drain_requests(store: &mut ClusterStore) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    while let Some(bytes) = store.poll_transmit() {
        match ganglia_wire::decode(&bytes).unwrap() {
            Message::MetadataRequest(id) => out.push((
                String::from_utf8(id.host.to_vec()).unwrap(),
                String::from_utf8(id.name.to_vec()).unwrap(),
                id.spoof,
            )),
            other => panic!("store transmitted {other:?}"),
        }
    }
    out
}
