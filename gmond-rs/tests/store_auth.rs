//! The store's memory of authentication: a value that came in an authenticated datagram is
//! marked in the XML (EXTRA_ELEMENT GMOND_RS_AUTH = key id) until an unauthenticated value
//! replaces it, on the direct and the pre-rendered path alike, and never without extra data;
//! a signing daemon's store leaves a trailer's room in the metadata requests it queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use gmond_rs::store::{ClusterStore, Outcome, StoreConfig, Timestamp};
use std::net::Ipv4Addr;
use store_common::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn mark(s: &ClusterStore, now: Timestamp) -> Option<String> {
    let c = cluster(s, now);
    let m = c.hosts[0].metric("m")?.clone();
    m.extra
        .iter()
        .find(|(k, _)| k == "GMOND_RS_AUTH")
        .map(|(_, v)| v.clone())
}

fn xml(s: &ClusterStore, now: Timestamp) -> String {
    String::from_utf8(s.render_xml(now, Vec::new()).unwrap()).unwrap()
}

#[test]
fn authenticated_values_are_marked_until_replaced() {
    for prepared in [false, true] {
        let mut s = ClusterStore::new(StoreConfig::default());
        let feed = |s: &mut ClusterStore, now, d: &[u8], auth| {
            assert_eq!(s.handle_datagram_from(now, A, d, auth), Outcome::Accepted);
            if prepared {
                s.prepare_xml();
            }
        };
        feed(&mut s, t(0), &metadata("a", "m", false, "uint32", 0), None);
        feed(&mut s, t(0), &uint("a", "m", false, 1), Some(42));
        assert_eq!(mark(&s, t(1)).as_deref(), Some("42"));
        assert!(xml(&s, t(1)).contains("<EXTRA_ELEMENT NAME=\"GMOND_RS_AUTH\" VAL=\"42\"/>"));
        // Authenticated metadata does not mark anything: the mark is the value's.
        feed(
            &mut s,
            t(2),
            &metadata("a", "m", false, "uint32", 0),
            Some(42),
        );
        assert_eq!(mark(&s, t(2)).as_deref(), Some("42"));
        feed(&mut s, t(3), &uint("a", "m", false, 2), None);
        assert_eq!(mark(&s, t(3)), None, "prepared: {prepared}");
        feed(&mut s, t(4), &uint("a", "m", false, 3), Some(4_294_967_295));
        assert_eq!(mark(&s, t(4)).as_deref(), Some("4294967295"));
    }
    // allow_extra_data = no: no EXTRA_DATA at all, so no mark either.
    let mut s = ClusterStore::new(StoreConfig {
        allow_extra_data: false,
        ..StoreConfig::default()
    });
    s.handle_datagram(t(0), A, &metadata("a", "m", false, "uint32", 0));
    s.handle_datagram_from(t(0), A, &uint("a", "m", false, 1), Some(1));
    let doc = xml(&s, t(1));
    assert!(doc.contains("<METRIC NAME=\"m\""), "{doc}");
    assert!(!doc.contains("<EXTRA_DATA>") && !doc.contains("GMOND_RS_AUTH"));
}

#[test]
fn a_signing_store_leaves_the_trailer_room_in_its_requests() {
    // A value without metadata makes a request of 24 + 1420 = 1444 bytes: within gmond's
    // 1464-byte metadata buffer, not within it less a 48-byte trailer.
    let name = "n".repeat(1420);
    for (reserve, sent) in [(0, 1), (48, 0)] {
        let mut s = ClusterStore::new(StoreConfig {
            transmit_reserve: reserve,
            ..StoreConfig::default()
        });
        let d = uint("a", &name, false, 1);
        assert_eq!(s.handle_datagram(t(0), A, &d), Outcome::Accepted);
        let mut n = 0;
        while let Some(r) = s.poll_transmit() {
            assert!(r.len() + reserve <= 1464);
            n += 1;
        }
        assert_eq!(n, sent, "reserve {reserve}");
        assert_eq!(s.stats().metadata_requests_unsent_total, 1 - sent as u64);
    }
}

#[test]
fn a_query_naming_its_extras_gets_only_those_on_both_paths() {
    use ganglia_wire::filter::MetricFilter;
    for prepared in [false, true] {
        let mut s = ClusterStore::new(StoreConfig::default());
        s.handle_datagram(t(0), A, &metadata("a", "m", false, "uint32", 0));
        s.handle_datagram_from(t(0), A, &uint("a", "m", false, 1), Some(7));
        s.handle_datagram(t(0), A, &metadata("a", "n", false, "uint32", 0));
        s.handle_datagram(t(0), A, &uint("a", "n", false, 1));
        if prepared {
            s.prepare_xml();
        }
        let render = |f: &MetricFilter| {
            String::from_utf8(s.render_xml_filtered(t(1), Some(f), Vec::new()).unwrap()).unwrap()
        };
        let all = MetricFilter::parse("m,n").unwrap();
        let doc = render(&all);
        assert!(
            doc.contains("NAME=\"GROUP\"") && doc.contains("GMOND_RS_AUTH"),
            "{doc}"
        );
        let auth_only = all.clone().with_extras("GMOND_RS_AUTH").unwrap();
        let doc = render(&auth_only);
        assert!(!doc.contains("GROUP") && !doc.contains("TITLE") && !doc.contains("DESC"));
        assert_eq!(doc.matches("<METRIC ").count(), 2, "{doc}");
        assert_eq!(
            doc.matches("<EXTRA_ELEMENT NAME=\"GMOND_RS_AUTH\" VAL=\"7\"/>")
                .count(),
            1,
            "prepared: {prepared}: {doc}"
        );
        let none = all.clone().with_extras("NOTHING").unwrap();
        assert!(!render(&none).contains("<EXTRA_ELEMENT"));
    }
}
