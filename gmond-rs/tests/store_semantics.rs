//! gmond's receive semantics in the cluster store, one rule per test (reference §A.6-A.7,
//! §B.2): host identity and spoofing, ':' in metric names, heartbeat and location, metadata
//! requests, and what a dump prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use ganglia_wire::{Message, Value};
use gmond_rs::store::{
    ClusterStore, DropReason, Outcome, Resolver, StaticResolver, StoreConfig, Timestamp,
};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use store_common::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn store() -> ClusterStore {
    ClusterStore::with_resolver(
        StoreConfig::default(),
        Box::new(StaticResolver::new().with(A, "alpha")),
    )
}

fn feed(s: &mut ClusterStore, now: Timestamp, src: Ipv4Addr, d: &[u8]) {
    assert_eq!(s.handle_datagram(now, src, d), Outcome::Accepted);
}

fn xmllint_valid(xml: &[u8], name: &str) {
    let path = std::env::temp_dir().join(format!("store-{}-{name}", std::process::id()));
    std::fs::write(&path, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--valid", "--noout"])
        .arg(&path)
        .output()
        .expect("xmllint (Debian libxml2-utils) must be installed: the test command installs it");
    assert!(
        out.status.success(),
        "xmllint --valid rejected {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn non_spoofed_hosts_are_keyed_by_source_and_named_by_the_resolver() {
    let mut s = store();
    // The packet's host field is ignored: the source address decides.
    feed(
        &mut s,
        t(0),
        A,
        &metadata("whatever", "m", false, "uint32", 0),
    );
    feed(&mut s, t(1), A, &uint("something-else", "m", false, 7));
    feed(&mut s, t(2), B, &uint("alpha", "m", false, 8));
    let c = cluster(&s, t(3));
    let alpha = c.host("alpha").unwrap();
    assert_eq!(alpha.ip, "10.0.0.1");
    assert_eq!(alpha.metric("m").unwrap().val, "7");
    // The resolver does not know B: its NAME is the address.
    let b = c.host("10.0.0.2").unwrap();
    assert_eq!(b.ip, "10.0.0.2");
    assert!(
        b.metrics.is_empty(),
        "value without metadata is not printed"
    );
    assert_eq!(c.hosts.len(), 2);
}

/// Counts how often it is asked.
struct Counting(Arc<AtomicUsize>);

impl Resolver for Counting {
    fn name_of(&self, _ip: Ipv4Addr) -> Option<String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some("counted".into())
    }
}

#[test]
fn the_resolver_is_asked_once_per_new_host() {
    let asked = Arc::new(AtomicUsize::new(0));
    let mut s =
        ClusterStore::with_resolver(StoreConfig::default(), Box::new(Counting(asked.clone())));
    for i in 0..5 {
        feed(&mut s, t(i), A, &uint("x", "m", false, 1));
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    feed(&mut s, t(9), B, &uint("x", "m", false, 1));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    // Spoofed hosts are named by the spoof string, not the resolver.
    feed(&mut s, t(9), A, &uint("10.9.9.9:vm", "m", true, 1));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

/// Knows nothing at first sight; its answers arrive later (a lookup under way).
struct Late(std::sync::Mutex<Vec<(Ipv4Addr, String)>>);

impl Resolver for Late {
    fn name_of(&self, _ip: Ipv4Addr) -> Option<String> {
        None
    }

    fn take_resolved(&self) -> Vec<(Ipv4Addr, String)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[test]
fn with_no_request_interval_every_value_without_metadata_asks_as_gmond_does() {
    let mut s = ClusterStore::with_resolver(
        StoreConfig {
            metadata_request_interval: std::time::Duration::ZERO,
            ..StoreConfig::default()
        },
        Box::new(StaticResolver::new().with(A, "alpha")),
    );
    feed(&mut s, t(0), A, &uint("x", "m", false, 1));
    feed(&mut s, t(0), A, &uint("x", "m", false, 2));
    feed(&mut s, t(0), B, &uint("x", "m", false, 2));
    assert_eq!(
        drain_requests(&mut s),
        vec![
            ("alpha".into(), "m".into(), false),
            ("alpha".into(), "m".into(), false),
            ("10.0.0.2".into(), "m".into(), false),
        ]
    );
}

#[test]
fn late_answers_rename_hosts_still_named_by_their_address() {
    let late = Arc::new(Late(Default::default()));
    struct Shared(Arc<Late>);
    impl Resolver for Shared {
        fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
            self.0.name_of(ip)
        }
        fn take_resolved(&self) -> Vec<(Ipv4Addr, String)> {
            self.0.take_resolved()
        }
    }
    let mut s = ClusterStore::with_resolver(StoreConfig::default(), Box::new(Shared(late.clone())));
    feed(&mut s, t(0), B, &metadata("x", "m", false, "uint32", 0));
    feed(&mut s, t(0), B, &uint("x", "m", false, 5));
    feed(&mut s, t(0), A, &uint("10.0.0.3:spoofed", "m", true, 1));
    assert!(cluster(&s, t(1)).host("10.0.0.2").is_some());
    let generation = s.generation();
    *late.0.lock().unwrap() = vec![
        (B, "node-b".into()),
        // A spoofed host keeps the name its sender chose.
        (Ipv4Addr::new(10, 0, 0, 3), "dns-name".into()),
        // An address no host has any more is ignored.
        (Ipv4Addr::new(10, 0, 0, 9), "gone".into()),
    ];
    s.poll_resolver();
    assert_ne!(s.generation(), generation, "a rename is a change to render");
    let c = cluster(&s, t(2));
    let b = c.host("node-b").unwrap();
    assert_eq!(
        (b.ip.as_str(), b.metric("m").unwrap().val.as_str()),
        ("10.0.0.2", "5")
    );
    assert!(c.host("spoofed").is_some());
    assert_eq!(c.hosts.len(), 2);
    // Only a name that is still the address is replaced.
    *late.0.lock().unwrap() = vec![(B, "renamed-again".into())];
    s.poll_resolver();
    assert!(cluster(&s, t(3)).host("node-b").is_some());
}

#[test]
fn spoofed_messages_create_the_spoofed_host() {
    let mut s = store();
    feed(
        &mut s,
        t(0),
        A,
        &metadata("10.77.0.9:vm-guest-1", "vm_cpu", true, "float", 0),
    );
    feed(
        &mut s,
        t(1),
        A,
        &value(
            "10.77.0.9:vm-guest-1",
            "vm_cpu",
            true,
            "%s",
            Value::Str(b"12.5"),
        ),
    );
    // "IP:name:more": only the first ':' splits.
    feed(&mut s, t(2), A, &uint("10.77.0.10:a:b", "m", true, 1));
    let c = cluster(&s, t(3));
    let vm = c.host("vm-guest-1").unwrap();
    assert_eq!((vm.ip.as_str(), vm.reported), ("10.77.0.9", t(1).as_secs()));
    assert_eq!(vm.metric("vm_cpu").unwrap().val, "12.5");
    assert_eq!(c.host("a:b").unwrap().ip, "10.77.0.10");
    // The sender itself did not become a host: only spoofed messages came from it.
    assert!(c.host("alpha").is_none());
}

#[test]
fn malformed_spoof_strings_are_dropped_and_counted() {
    let mut s = store();
    for bad in ["novalidspoof", "10.0.0.1:", ":", ":leading-only", ""] {
        let out = s.handle_datagram(t(0), A, &uint(bad, "m", true, 1));
        assert_eq!(out, Outcome::Dropped(DropReason::BadSpoof), "{bad:?}");
    }
    assert_eq!(s.stats().dropped("bad_spoof"), 5);
    assert_eq!(s.stats().hosts, 0);
    assert!(cluster(&s, t(1)).hosts.is_empty());
    // Still alive and accepting.
    feed(&mut s, t(1), A, &uint("::name", "m", true, 1));
    assert_eq!(cluster(&s, t(1)).host("name").unwrap().ip, ":");
}

#[test]
fn a_spoof_for_a_known_address_keeps_the_known_name() {
    let mut s = store();
    feed(&mut s, t(0), A, &metadata("x", "m", false, "uint32", 0));
    feed(&mut s, t(1), B, &uint("10.0.0.1:impostor", "m", true, 5));
    let c = cluster(&s, t(2));
    assert_eq!(c.hosts.len(), 1);
    let h = c.host("alpha").unwrap();
    assert_eq!(h.metric("m").unwrap().val, "5");
}

/// Squatting (issue 13): a spoof that names an address before the address speaks used to keep
/// that NAME until restart, so the real host's own metrics appeared under the squatter's
/// name. The address's own datagram now takes its NAME back.
#[test]
fn a_spoof_that_arrives_first_does_not_keep_the_real_hosts_name() {
    let mut s = store();
    feed(&mut s, t(0), B, &uint("10.0.0.1:squatter", "m", true, 5));
    assert!(cluster(&s, t(1)).host("squatter").is_some());
    feed(&mut s, t(2), A, &metadata("x", "load", false, "uint32", 0));
    feed(&mut s, t(2), A, &uint("x", "load", false, 7));
    let c = cluster(&s, t(3));
    assert_eq!(c.hosts.len(), 1);
    assert!(c.host("squatter").is_none(), "the squatter's name is gone");
    let h = c.host("alpha").unwrap();
    assert_eq!(h.metric("load").unwrap().val, "7");
    assert_eq!(s.stats().spoofed_names_replaced_total, 1);
    // A later spoof for the address keeps the address's own name.
    feed(&mut s, t(4), B, &uint("10.0.0.1:squatter", "m", true, 6));
    assert!(cluster(&s, t(5)).host("alpha").is_some());
    assert_eq!(s.stats().spoofed_names_replaced_total, 1);
}

#[test]
fn colons_become_underscores_unless_spoofed() {
    let mut s = store();
    feed(
        &mut s,
        t(0),
        A,
        &metadata("x", "disk:sda:util", false, "uint32", 0),
    );
    feed(&mut s, t(0), A, &uint("x", "disk:sda:util", false, 3));
    let c = cluster(&s, t(1));
    assert_eq!(
        c.host("alpha")
            .unwrap()
            .metric("disk_sda_util")
            .unwrap()
            .val,
        "3"
    );
    // Requests are sanitised too: a value under the ':' spelling finds the '_' metric.
    feed(&mut s, t(2), A, &uint("x", "new:metric", false, 1));
    assert_eq!(
        drain_requests(&mut s),
        vec![("alpha".into(), "new_metric".into(), false)]
    );
    feed(&mut s, t(2), B, &request("x", "asked:for", false));
    let asked: Vec<_> = s.poll_metadata_requested().collect();
    assert_eq!(asked, vec![b"asked_for".to_vec().into_boxed_slice()]);
}

#[test]
fn spoofed_names_keep_colons_but_print_up_to_the_first() {
    let mut s = store();
    for (name, v) in [("svc:a", 1), ("svc:b", 2), (":lead:x", 3)] {
        feed(
            &mut s,
            t(0),
            A,
            &metadata("10.1.1.1:vm", name, true, "uint32", 0),
        );
        feed(&mut s, t(0), A, &uint("10.1.1.1:vm", name, true, v));
    }
    // Two distinct stored metrics...
    assert_eq!(s.stats().metrics, 3);
    let mut xml = Vec::new();
    s.write_xml(t(1), &mut xml).unwrap();
    let doc = ganglia_wire::xml::read_document(&xml).unwrap();
    let vm = doc.clusters[0].host("vm").unwrap();
    // ...printed under gmond's truncated NAME, so "svc" appears twice.
    let mut printed: Vec<_> = vm
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.val.as_str()))
        .collect();
    printed.sort();
    assert_eq!(printed, vec![(":lead", "3"), ("svc", "1"), ("svc", "2")]);
    // Duplicate NAMEs are still a valid document (NAME is CDATA, not ID, in the DTD).
    xmllint_valid(&xml, "spoofed-duplicates.xml");
}

#[test]
fn heartbeat_sets_gmond_started_from_the_value_bits() {
    let cases: [(&str, Value<'_>, i64); 6] = [
        ("heartbeat", Value::UInt(1_795_313_226), 1_795_313_226),
        ("HeartBeat", Value::UShort(7), 7),
        ("heartbeat", Value::Float(1.0), 1_065_353_216),
        // Low 32 bits of the double's IEEE encoding (gmond on x86_64).
        ("heartbeat", Value::Double(1.5), 0),
        (
            "heartbeat",
            Value::Double(f64::from_bits(0x4000_0000_0000_0001)),
            1,
        ),
        // gmetric -H: a string; gmond prints pointer bits, we print 0.
        ("HEARTBEAT", Value::Str(b"0"), 0),
    ];
    for (name, v, want) in cases {
        let mut s = store();
        feed(&mut s, t(0), A, &uint("x", "heartbeat", false, 99));
        feed(&mut s, t(1), A, &metadata("x", name, false, "uint32", 0));
        feed(&mut s, t(1), A, &value("x", name, false, "%u", v));
        let c = cluster(&s, t(2));
        let h = c.host("alpha").unwrap();
        assert_eq!(h.gmond_started, want, "{name} {v:?}");
        assert!(
            h.metrics.is_empty(),
            "heartbeat is never printed: {:?}",
            h.metrics
        );
    }
}

#[test]
fn location_sets_the_host_location_only_from_strings() {
    let mut s = store();
    feed(
        &mut s,
        t(0),
        A,
        &metadata("x", "location", false, "string", 0),
    );
    assert_eq!(
        cluster(&s, t(0)).host("alpha").unwrap().location,
        "unspecified"
    );
    feed(
        &mut s,
        t(1),
        A,
        &string("x", "Location", false, "rack 4 (1,2,3)"),
    );
    let c = cluster(&s, t(1));
    let h = c.host("alpha").unwrap();
    assert_eq!(h.location, "rack 4 (1,2,3)");
    assert!(h.metrics.is_empty(), "location is never printed");
    // A float location crashes real gmond; here it is ignored and counted.
    let out = s.handle_datagram(
        t(2),
        A,
        &value("x", "location", false, "%f", Value::Float(1.0)),
    );
    assert_eq!(out, Outcome::Accepted);
    assert_eq!(s.stats().location_not_string_total, 1);
    assert_eq!(
        cluster(&s, t(2)).host("alpha").unwrap().location,
        "rack 4 (1,2,3)"
    );
}

#[test]
fn values_without_metadata_request_it_once_per_name_and_interval() {
    let mut s = store();
    feed(&mut s, t(0), A, &uint("x", "m", false, 1));
    // Another value, or another host's value, of a name just asked about: receivers answer
    // by name whatever host a request names, so one request brings every host's metadata.
    feed(&mut s, t(1), A, &uint("x", "m", false, 2));
    feed(&mut s, t(1), B, &uint("x", "m", false, 2));
    // The spoofed spelling of a name is asked about on its own.
    feed(&mut s, t(1), A, &uint("10.5.5.5:vm", "m", true, 3));
    assert_eq!(
        drain_requests(&mut s),
        vec![
            ("alpha".into(), "m".into(), false),
            ("10.5.5.5:vm".into(), "m".into(), true),
        ]
    );
    assert_eq!(s.stats().metadata_requests_sent_total, 2);
    assert_eq!(s.stats().metadata_requests_suppressed_total, 2);
    // Still no metadata an interval later: asked again (a request can be lost).
    feed(&mut s, t(20), B, &uint("x", "m", false, 2));
    assert_eq!(
        drain_requests(&mut s),
        vec![("10.0.0.2".into(), "m".into(), false)]
    );
    assert!(s.poll_transmit().is_none());
    // The metadata arrives: the stored value prints, with its own TN.
    feed(&mut s, t(21), A, &metadata("x", "m", false, "double", 0));
    let c = cluster(&s, t(22));
    let m = c.host("alpha").unwrap().metric("m").unwrap().clone();
    assert_eq!((m.val.as_str(), m.ty.as_str(), m.tn), ("2", "double", 21));
    feed(&mut s, t(43), A, &uint("x", "m", false, 3));
    assert!(
        s.poll_transmit().is_none(),
        "metadata known: no more requests"
    );
}

#[test]
fn metadata_without_a_value_is_kept_but_not_printed() {
    let mut s = store();
    feed(&mut s, t(0), A, &metadata("x", "m", false, "uint32", 0));
    assert_eq!(s.stats().metrics, 1);
    let c = cluster(&s, t(1));
    assert!(c.host("alpha").unwrap().metrics.is_empty());
    assert!(
        s.poll_transmit().is_none(),
        "metadata alone asks for nothing"
    );
}

#[test]
fn requests_are_reported_by_name_and_make_the_requester_a_host() {
    let mut s = store();
    feed(&mut s, t(0), B, &request("alpha", "cpu_user", false));
    feed(&mut s, t(1), B, &request("someone-else", "cpu_user", false));
    feed(&mut s, t(2), B, &request("x", "heartbeat", false));
    let mut names: Vec<_> = s.poll_metadata_requested().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            b"cpu_user".to_vec().into_boxed_slice(),
            b"heartbeat".to_vec().into_boxed_slice()
        ]
    );
    assert_eq!(s.stats().metadata_requests_received_total, 3);
    let c = cluster(&s, t(3));
    let b = c.host("10.0.0.2").unwrap();
    assert_eq!((b.reported, b.tn), (t(2).as_secs(), 1));
    assert!(b.metrics.is_empty());
    // A later request for the same name is reported again after the drain.
    feed(&mut s, t(4), A, &request("x", "cpu_user", false));
    assert_eq!(s.poll_metadata_requested().count(), 1);
}

#[test]
fn every_accepted_message_refreshes_the_host() {
    let mut s = store();
    feed(&mut s, t(0), A, &metadata("x", "m", false, "uint32", 0));
    feed(&mut s, t(1), A, &uint("x", "m", false, 1));
    feed(&mut s, t(10), A, &request("x", "z", false));
    let c = cluster(&s, t(12));
    let h = c.host("alpha").unwrap();
    assert_eq!((h.reported, h.tn), (t(10).as_secs(), 2));
    assert_eq!(
        h.metric("m").unwrap().tn,
        11,
        "metric TN counts from its value"
    );
    // Dropped datagrams do not.
    let _ = s.handle_datagram(t(11), A, &[0, 0, 0, 128]);
    assert_eq!(
        cluster(&s, t(12)).host("alpha").unwrap().reported,
        t(10).as_secs()
    );
}

#[test]
fn dump_attributes_come_from_config_metadata_and_value() {
    let cfg = StoreConfig {
        tags: "rack=4".into(),
        host_tmax: std::time::Duration::from_secs(30),
        host_dmax: None,
        ..StoreConfig::default()
    };
    let mut s = ClusterStore::new(cfg);
    let md = metadata_with(
        "x",
        "m",
        false,
        "float",
        77,
        &[("TITLE", "T"), ("DESC", "D"), ("GROUP", "g")],
    );
    feed(&mut s, t(0), A, &md);
    feed(
        &mut s,
        t(3),
        A,
        &value("x", "m", false, "%.1f", Value::Float(2.25)),
    );
    let c = cluster(&s, t(5));
    assert_eq!(c.localtime, t(5).as_secs());
    assert_eq!(c.name, "unspecified");
    let h = c.host("10.0.0.1").unwrap();
    assert_eq!(
        (h.tags.as_str(), h.tmax, h.dmax, h.tn),
        ("rack=4", 30, 0, 2)
    );
    let m = h.metric("m").unwrap();
    // APR rounds half up; extras print in reverse packet order.
    assert_eq!(
        (
            m.val.as_str(),
            m.ty.as_str(),
            m.units.as_str(),
            m.tn,
            m.tmax,
            m.dmax,
            m.slope.as_str()
        ),
        ("2.3", "float", "u", 2, 60, 77, "both")
    );
    let extra: Vec<_> = m
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(extra, vec![("GROUP", "g"), ("DESC", "D"), ("TITLE", "T")]);

    let mut xml = Vec::new();
    s.write_xml(t(5), &mut xml).unwrap();
    xmllint_valid(&xml, "attributes.xml");
}

#[test]
fn allow_extra_data_off_neither_keeps_nor_prints_extras() {
    let cfg = StoreConfig {
        allow_extra_data: false,
        ..StoreConfig::default()
    };
    let mut with = store();
    let mut without = ClusterStore::new(cfg);
    for s in [&mut with, &mut without] {
        feed(
            s,
            t(0),
            A,
            &metadata_with("x", "m", false, "uint32", 0, &[("DESC", &"d".repeat(500))]),
        );
        feed(s, t(0), A, &uint("x", "m", false, 1));
    }
    let mut xml = Vec::new();
    without.write_xml(t(1), &mut xml).unwrap();
    let body = &xml[ganglia_wire::xml::DTD.len()..];
    assert!(!String::from_utf8_lossy(body).contains("EXTRA_DATA"));
    assert!(String::from_utf8_lossy(body).contains("<METRIC NAME=\"m\""));
    assert!(without.stats().bytes + 500 <= with.stats().bytes);
    let c = cluster(&with, t(1));
    assert_eq!(c.hosts[0].metrics[0].extra.len(), 1);
}

#[test]
fn string_values_are_copied_not_borrowed() {
    // The datagram buffer is reused by the daemon: the store must own what it keeps.
    let mut s = store();
    feed(&mut s, t(0), A, &metadata("x", "os", false, "string", 0));
    let mut buf = string("x", "os", false, "Linux");
    feed(&mut s, t(0), A, &buf);
    buf.fill(0);
    assert_eq!(
        cluster(&s, t(0))
            .host("alpha")
            .unwrap()
            .metric("os")
            .unwrap()
            .val,
        "Linux"
    );
    let generation = Cell::new(s.generation());
    feed(&mut s, t(1), A, &string("x", "os", false, "Linux 6"));
    assert!(s.generation() > generation.get());
    generation.set(s.generation());
    let _ = s.handle_datagram(t(1), A, b"junk");
    assert_eq!(s.generation(), generation.get(), "a drop changes nothing");
}

#[test]
fn requests_decode_as_gmond_requests() {
    let mut s = store();
    feed(&mut s, t(0), A, &uint("x", "m", false, 1));
    let bytes = s.poll_transmit().unwrap();
    // Same bytes real gmond sends for this request (id, host "alpha", name "m", spoof 0).
    assert_eq!(bytes, request("alpha", "m", false));
    assert!(matches!(
        ganglia_wire::decode(&bytes).unwrap(),
        Message::MetadataRequest(_)
    ));
}
