//! Untrusted input: malformed datagrams are counted by reason and dropped, floods of new
//! hosts and metric names stop at the caps with exact counters, queues stay bounded, and no
//! byte sequence makes the store panic or lose count.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use ganglia_wire::Value;
use gmond_rs::store::{
    Caps, ClusterStore, DropReason, Origin, Outcome, StaticResolver, StoreConfig, Timestamp,
};
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::time::Duration;
use store_common::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn with_caps(caps: Caps) -> ClusterStore {
    ClusterStore::new(StoreConfig {
        caps,
        ..StoreConfig::default()
    })
}

fn assert_books_balance(s: &ClusterStore) {
    let st = s.stats();
    assert_eq!(
        st.datagrams_received_total,
        st.datagrams_accepted_total + st.datagrams_dropped_total
    );
    assert_eq!(
        st.dropped_by_reason.values().sum::<u64>(),
        st.datagrams_dropped_total
    );
}

#[test]
fn malformed_datagrams_are_counted_by_reason() {
    let mut s = ClusterStore::new(StoreConfig::default());
    let good = metadata("x", "m", false, "uint32", 0);
    let mut huge_len = 136u32.to_be_bytes().to_vec();
    huge_len.extend_from_slice(&u32::MAX.to_be_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        (good[..10].to_vec(), "truncated"),
        (vec![0, 0, 0, 5, 0, 0, 0, 0], "unknown_id"),
        (137u32.to_be_bytes().to_vec(), "unknown_id"),
        (vec![0xff; 64], "unknown_id"),
        (huge_len, "bad_length"),
        (vec![0; 1473], "oversize"),
        (uint("nocolon", "m", true, 1), "bad_spoof"),
    ];
    for (bytes, reason) in &cases {
        match s.handle_datagram(t(0), A, bytes) {
            Outcome::Dropped(r) => assert_eq!(r.as_str(), *reason, "{bytes:?}"),
            Outcome::Accepted => panic!("accepted {bytes:?}"),
        }
    }
    let st = s.stats();
    assert_eq!(st.dropped("truncated"), 3);
    assert_eq!(st.dropped("unknown_id"), 3);
    assert_eq!(st.dropped("bad_length"), 1);
    assert_eq!(st.dropped("oversize"), 1);
    assert_eq!(st.dropped("bad_spoof"), 1);
    assert_eq!(st.datagrams_decoded_total, 1, "only the bad spoof decoded");
    assert_eq!((st.hosts, st.metrics), (0, 0));
    assert_books_balance(&s);
    // Trailing bytes after a whole message are fine (verified on real gmond).
    let mut padded = good.clone();
    padded.extend_from_slice(b"trailing junk");
    assert_eq!(s.handle_datagram(t(0), A, &padded), Outcome::Accepted);
    // A configured larger max_udp_msg_len accepts what the default rejects.
    let mut big = ClusterStore::new(StoreConfig {
        limits: ganglia_wire::Limits {
            max_datagram: 9000,
            ..Default::default()
        },
        ..StoreConfig::default()
    });
    let mut long = good;
    long.resize(4000, 0);
    assert_eq!(big.handle_datagram(t(0), A, &long), Outcome::Accepted);
}

#[test]
fn a_flood_of_spoofed_hosts_stops_at_max_hosts() {
    let mut s = with_caps(Caps {
        max_hosts: 100,
        ..Caps::default()
    });
    for i in 0..1000 {
        let host = format!("10.9.{}.{}:flood{i}", i / 256, i % 256);
        let _ = s.handle_datagram(t(0), A, &uint(&host, "m", true, 1));
    }
    let st = s.stats();
    assert_eq!(st.hosts, 100);
    assert_eq!(st.dropped("host_limit"), 900);
    assert_eq!(st.datagrams_accepted_total, 100);
    assert_eq!(cluster(&s, t(1)).hosts.len(), 100);
    // Known hosts keep updating.
    let out = s.handle_datagram(t(2), A, &uint("10.9.0.0:flood0", "m", true, 2));
    assert_eq!(out, Outcome::Accepted);
    let out = s.handle_datagram(t(2), A, &uint("10.200.0.0:new", "m", true, 2));
    assert_eq!(out, Outcome::Dropped(DropReason::HostLimit));
    assert_books_balance(&s);
}

/// Issue 13: at the host cap, hosts that only spoofs named kept real hosts out. A host heard
/// directly now evicts the oldest spoofed-only one; it is never evicted itself, and spoofs
/// evict nothing.
#[test]
fn a_host_heard_directly_evicts_spoofed_only_hosts_at_the_cap() {
    let mut s = with_caps(Caps {
        max_hosts: 3,
        ..Caps::default()
    });
    for i in 0..3 {
        let host = format!("10.9.0.{i}:fake{i}");
        assert_eq!(
            s.handle_datagram(t(i), A, &uint(&host, "m", true, 1)),
            Outcome::Accepted
        );
    }
    // A spoof at the cap evicts nothing.
    let out = s.handle_datagram(t(5), A, &uint("10.9.0.9:more", "m", true, 1));
    assert_eq!(out, Outcome::Dropped(DropReason::HostLimit));
    // Three real hosts come: each evicts the oldest spoofed-only host.
    for i in 1..=3u8 {
        let real = Ipv4Addr::new(10, 0, 0, i);
        assert_eq!(
            s.handle_datagram(t(10), real, &uint("", "load", false, 1)),
            Outcome::Accepted,
            "real host {i}"
        );
        let names: Vec<String> = cluster(&s, t(10))
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .collect();
        assert_eq!(names.len(), 3);
        for gone in 0..i {
            assert!(!names.contains(&format!("fake{gone}")), "{names:?}");
        }
    }
    assert_eq!(s.stats().spoofed_hosts_evicted_total, 3);
    // Now every stored host was heard directly: a fourth real host is refused, no spoof or
    // other host is evicted for it, and a spoof naming a real host's address updates it.
    let out = s.handle_datagram(
        t(11),
        Ipv4Addr::new(10, 0, 0, 4),
        &uint("", "load", false, 1),
    );
    assert_eq!(out, Outcome::Dropped(DropReason::HostLimit));
    let out = s.handle_datagram(t(11), A, &uint("10.9.0.7:again", "m", true, 1));
    assert_eq!(out, Outcome::Dropped(DropReason::HostLimit));
    assert_eq!(s.stats().hosts, 3);
    assert_eq!(s.stats().spoofed_hosts_evicted_total, 3);
    // A spoofed host later heard directly is no longer evictable.
    let mut s = with_caps(Caps {
        max_hosts: 2,
        ..Caps::default()
    });
    let _ = s.handle_datagram(t(0), A, &uint("10.0.0.7:squat", "m", true, 1));
    let _ = s.handle_datagram(t(1), Ipv4Addr::new(10, 0, 0, 7), &uint("", "m", false, 1));
    let _ = s.handle_datagram(t(2), A, &uint("10.9.9.9:fake", "m", true, 1));
    let out = s.handle_datagram(t(3), Ipv4Addr::new(10, 0, 0, 8), &uint("", "m", false, 1));
    assert_eq!(out, Outcome::Accepted);
    let ips: Vec<String> = cluster(&s, t(3))
        .hosts
        .iter()
        .map(|h| h.ip.clone())
        .collect();
    assert!(ips.contains(&"10.0.0.7".to_string()) && ips.contains(&"10.0.0.8".to_string()));
    assert_books_balance(&s);
}

/// A full store of spoofed metrics does not keep a real host's metrics out either.
#[test]
fn eviction_also_relieves_the_metric_and_memory_caps() {
    let mut s = with_caps(Caps {
        max_metrics_total: 10,
        ..Caps::default()
    });
    for i in 0..10 {
        let _ = s.handle_datagram(t(0), A, &uint("10.9.0.1:fake", &format!("m{i}"), true, 1));
    }
    let real = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        s.handle_datagram(t(1), real, &uint("", "load", false, 1)),
        Outcome::Accepted
    );
    assert_eq!(s.stats().spoofed_hosts_evicted_total, 1);
    assert_eq!(s.stats().metrics, 1);
    // The host's own metric cap is not relieved by evicting others.
    let mut s = with_caps(Caps {
        max_metrics_per_host: 1,
        ..Caps::default()
    });
    let _ = s.handle_datagram(t(0), A, &uint("10.9.0.1:fake", "m", true, 1));
    let _ = s.handle_datagram(t(0), real, &uint("", "a", false, 1));
    let out = s.handle_datagram(t(0), real, &uint("", "b", false, 1));
    assert_eq!(out, Outcome::Dropped(DropReason::MetricLimit));
    assert_eq!(s.stats().spoofed_hosts_evicted_total, 0);
}

/// Issue 13: a channel's spoof policy: a sender it denies may only speak for its own address.
#[test]
fn spoofs_from_a_sender_that_may_not_spoof_are_refused() {
    let mut s = ClusterStore::new(StoreConfig::default());
    let own = Origin {
        auth: None,
        may_spoof: false,
    };
    let out = s.handle_datagram_as(t(0), A, &uint("10.0.0.9:victim", "m", true, 1), own);
    assert_eq!(out, Outcome::Dropped(DropReason::SpoofRefused));
    let out = s.handle_datagram_as(t(0), A, &request("10.0.0.9:victim", "m", true), own);
    assert_eq!(out, Outcome::Dropped(DropReason::SpoofRefused));
    // Speaking for itself is fine, and so is spoofing from an allowed sender.
    let out = s.handle_datagram_as(t(0), A, &uint("", "m", false, 1), own);
    assert_eq!(out, Outcome::Accepted);
    let out = s.handle_datagram_as(
        t(0),
        A,
        &uint("10.0.0.9:relay", "m", true, 1),
        Origin::default(),
    );
    assert_eq!(out, Outcome::Accepted);
    assert_eq!(s.stats().dropped("spoof_refused"), 2);
    assert_eq!(s.stats().cap_warnings_total, 1, "one rate-limited warning");
    assert_books_balance(&s);
}

/// Issue 13: the `asked` maps, the requested names and the transmit queue held memory the
/// store did not count. They are in `Stats::bytes` now, and give it back when drained or
/// forgotten: with everything expired and drained, the books are back at zero.
#[test]
fn request_bookkeeping_is_counted_and_given_back() {
    let mut s = ClusterStore::new(StoreConfig {
        host_dmax: Some(Duration::from_secs(60)),
        cleanup_threshold: Duration::from_secs(10),
        ..StoreConfig::default()
    });
    // Values without metadata (asked about) and requests from others, for distinct names.
    for i in 0..200 {
        let _ = s.handle_datagram(t(0), A, &uint("", &format!("orphan_{i:04}"), false, 1));
        let _ = s.handle_datagram(t(0), A, &request("x", &format!("wanted_{i:04}"), false));
    }
    let with_queues = s.stats().bytes;
    assert_eq!(drain_requests(&mut s).len(), 200);
    let after_transmit = s.stats().bytes;
    assert!(
        with_queues - after_transmit >= 200 * 20,
        "the queued requests were counted ({with_queues} -> {after_transmit})"
    );
    assert_eq!(s.poll_metadata_requested().count(), 200);
    let after_requested = s.stats().bytes;
    assert!(
        after_transmit - after_requested >= 200 * 2 * 11,
        "the requested names were counted ({after_transmit} -> {after_requested})"
    );
    // The host expires; the asked names are forgotten after the request interval.
    s.handle_timeout(t(5));
    s.handle_timeout(t(100));
    assert_eq!((s.stats().hosts, s.stats().metrics), (0, 0));
    assert_eq!(s.stats().bytes, 0, "everything given back");
}

#[test]
fn a_flood_of_metric_names_stops_at_the_metric_caps() {
    let mut s = with_caps(Caps {
        max_metrics_per_host: 50,
        max_metrics_total: 120,
        ..Caps::default()
    });
    for i in 0..200 {
        let _ = s.handle_datagram(
            t(0),
            A,
            &metadata("x", &format!("m{i}"), false, "uint32", 0),
        );
    }
    assert_eq!(s.stats().metrics, 50);
    assert_eq!(s.stats().dropped("metric_limit"), 150);
    // Other hosts fill up to the store-wide cap.
    for h in 2..=4u8 {
        for i in 0..50 {
            let src = Ipv4Addr::new(10, 0, 0, h);
            let _ = s.handle_datagram(t(0), src, &uint("x", &format!("m{i}"), false, 1));
        }
    }
    assert_eq!(s.stats().metrics, 120);
    assert_eq!(s.stats().dropped("metric_limit"), 150 + 80);
    assert_eq!(s.stats().hosts, 4);
    // Existing metrics still take values.
    let out = s.handle_datagram(t(1), A, &uint("x", "m3", false, 9));
    assert_eq!(out, Outcome::Accepted);
    assert_eq!(
        cluster(&s, t(1))
            .host("10.0.0.1")
            .unwrap()
            .metric("m3")
            .unwrap()
            .val,
        "9"
    );
    assert_books_balance(&s);
}

#[test]
fn hosts_share_one_copy_of_identical_metadata_and_it_is_freed_with_them() {
    let mut s = ClusterStore::new(StoreConfig {
        host_dmax: Some(Duration::from_secs(60)),
        cleanup_threshold: Duration::from_secs(1),
        ..StoreConfig::default()
    });
    let desc = "a description long enough to matter ".repeat(4);
    let md = |host: &str| {
        metadata_with(
            host,
            "load_one",
            false,
            "float",
            0,
            &[
                ("TITLE", "One Minute Load Average"),
                ("DESC", &desc),
                ("GROUP", "load"),
            ],
        )
    };
    let payload =
        "float".len() + "u".len() + "TITLEOne Minute Load AverageDESCGROUPload".len() + desc.len();
    assert_eq!(s.handle_datagram(t(0), A, &md("a")), Outcome::Accepted);
    let first = s.stats().bytes;
    let b = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(s.handle_datagram(t(0), b, &md("b")), Outcome::Accepted);
    let second = s.stats().bytes - first;
    // The second host pays for its own entries, not for another copy of the metadata.
    assert!(
        second + payload <= first,
        "first host {first} bytes, second {second}, metadata payload {payload}"
    );
    // Different metadata is a body of its own.
    let c = Ipv4Addr::new(10, 0, 0, 3);
    assert_eq!(
        s.handle_datagram(t(0), c, &metadata("c", "load_one", false, "float", 0)),
        Outcome::Accepted
    );
    assert!(s.stats().bytes - first - second > 0);
    // Every host expires; the shared bodies go with the last of their users.
    s.handle_timeout(t(30));
    s.handle_timeout(t(100));
    assert_eq!((s.stats().hosts, s.stats().metrics), (0, 0));
    assert_eq!(s.stats().bytes, 0, "bytes left after every host expired");
}

#[test]
fn memory_stays_under_max_bytes() {
    let max_bytes = 200_000;
    let mut s = with_caps(Caps {
        max_bytes,
        ..Caps::default()
    });
    let long = "x".repeat(600);
    for i in 0..2000 {
        let host = format!("10.{}.{}.1:{long}", i / 256, i % 256);
        let name = format!("{i}{}", &long[..200]);
        let _ = s.handle_datagram(t(0), A, &string(&host, &name, true, &long[..100]));
        assert!(
            s.stats().bytes <= max_bytes,
            "{} after {i}",
            s.stats().bytes
        );
    }
    assert!(s.stats().dropped("memory_limit") > 1500);
    assert!(
        s.stats().bytes > max_bytes / 2,
        "the budget is used, not wasted"
    );
    // Growing an existing value past the budget is refused too; updates in place are not.
    let mut s = with_caps(Caps {
        max_bytes: 3_000,
        ..Caps::default()
    });
    let big = "y".repeat(1400);
    let outcomes = [
        s.handle_datagram(t(0), A, &string("x", "m", false, "short")),
        s.handle_datagram(t(0), A, &string("x", "n", false, &big)),
        s.handle_datagram(t(0), A, &string("x", "m", false, &big)),
        s.handle_datagram(t(0), A, &string("x", "m", false, "tiny")),
        s.handle_datagram(t(0), A, &string("x", "n", false, &big[..700])),
    ];
    use Outcome::{Accepted, Dropped};
    assert_eq!(
        outcomes,
        [
            Accepted,
            Accepted,
            Dropped(DropReason::MemoryLimit),
            Accepted,
            Accepted
        ]
    );
    assert!(s.stats().bytes <= 3_000, "{}", s.stats().bytes);
}

#[test]
fn cap_warnings_are_rate_limited() {
    let mut s = ClusterStore::new(StoreConfig {
        caps: Caps {
            max_hosts: 1,
            ..Caps::default()
        },
        warn_interval: Duration::from_secs(60),
        ..StoreConfig::default()
    });
    for sec in 0..=150u64 {
        let host = format!("10.1.1.{}:h{sec}", sec % 250);
        let _ = s.handle_datagram(t(sec), A, &uint(&host, "m", true, 1));
    }
    // Warned at 1 (first drop), 61 and 121.
    assert_eq!(s.stats().cap_warnings_total, 3);
    assert_eq!(s.stats().dropped("host_limit"), 150);
}

#[test]
fn pending_queues_are_bounded() {
    let mut s = with_caps(Caps {
        max_pending_transmit: 10,
        max_pending_requested: 5,
        ..Caps::default()
    });
    for i in 0..25 {
        let _ = s.handle_datagram(t(0), A, &uint("x", &format!("m{i}"), false, 1));
        let _ = s.handle_datagram(t(0), A, &request("x", &format!("r{i}"), false));
        let _ = s.handle_datagram(t(0), A, &request("x", "r0", false));
    }
    assert_eq!(s.stats().metadata_requests_sent_total, 10);
    assert_eq!(s.stats().metadata_requests_unsent_total, 15);
    assert_eq!(drain_requests(&mut s).len(), 10);
    assert_eq!(s.poll_metadata_requested().count(), 5);
    assert_eq!(s.stats().metadata_requested_dropped_total, 20);
    // Draining makes room again (for a name not asked about within the request interval).
    let _ = s.handle_datagram(t(1), A, &uint("x", "m24", false, 1));
    assert_eq!(drain_requests(&mut s).len(), 1);
}

#[test]
fn a_request_that_would_not_fit_is_not_sent() {
    // gmond builds requests in 1464 bytes. The request carries the resolved NAME where the
    // value carried an (ignored) empty host field, so a value that fit can ask too much.
    let long_name = "h".repeat(100);
    let mut s = ClusterStore::with_resolver(
        StoreConfig::default(),
        Box::new(StaticResolver::new().with(A, long_name)),
    );
    let name = "n".repeat(1420);
    assert_eq!(
        s.handle_datagram(t(0), A, &uint("", &name, false, 1)),
        Outcome::Accepted
    );
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.stats().metadata_requests_unsent_total, 1);
    assert_eq!(s.stats().metadata_requests_sent_total, 0);
}

fn arb_valid() -> impl Strategy<Value = Vec<u8>> {
    let host = prop_oneof![
        Just("h".to_string()),
        "[0-9.:a-z]{0,12}",
        Just("10.0.0.5:spoofed".to_string())
    ];
    let name = prop_oneof![
        Just("heartbeat".to_string()),
        Just("LOCATION".to_string()),
        "[a-z:_]{0,8}"
    ];
    (
        0u8..6,
        host,
        name,
        any::<bool>(),
        any::<u32>(),
        "[ -~]{0,20}",
    )
        .prop_map(|(kind, host, name, spoof, n, text)| match kind {
            0 => metadata(&host, &name, spoof, &text, n % 3),
            1 => uint(&host, &name, spoof, n),
            2 => string(&host, &name, spoof, &text),
            3 => value(&host, &name, spoof, &text, Value::Float(f32::from_bits(n))),
            4 => value(
                &host,
                &name,
                spoof,
                "%.3f",
                Value::Double(f64::from(n) / 7.0),
            ),
            _ => request(&host, &name, spoof),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes, and valid messages with random corruption, never panic, the
    /// counters add up, and the dump stays a well-formed document.
    #[test]
    fn no_input_breaks_the_store(
        datagrams in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                arb_valid(),
                (arb_valid(), any::<usize>(), any::<u8>()).prop_map(|(mut d, at, b)| {
                    let i = at % d.len();
                    d[i] ^= b;
                    d
                }),
                (arb_valid(), any::<usize>()).prop_map(|(d, cut)| d[..cut % (d.len() + 1)].to_vec()),
            ],
            1..40,
        ),
        srcs in prop::collection::vec(any::<u32>(), 1..4),
        step in 0u64..400,
    ) {
        let mut s = ClusterStore::new(StoreConfig {
            cleanup_threshold: Duration::from_secs(10),
            host_dmax: Some(Duration::from_secs(500)),
            ..StoreConfig::default()
        });
        for (i, d) in datagrams.iter().enumerate() {
            let now = t(i as u64 * step);
            let src = Ipv4Addr::from(srcs[i % srcs.len()]);
            let _ = s.handle_datagram(now, src, d);
            s.handle_timeout(now);
            while s.poll_transmit().is_some() {}
        }
        assert_books_balance(&s);
        let end = t(datagrams.len() as u64 * step);
        let mut xml = Vec::new();
        s.write_xml(end, &mut xml).unwrap();
        let doc = ganglia_wire::xml::read_document(&xml).unwrap();
        prop_assert!(doc.clusters[0].hosts.len() <= s.stats().hosts);
    }
}

/// configs/gmond-rs.conf documents the built-in caps by stating them: they must agree.
#[test]
fn the_shipped_gmond_rs_conf_states_the_default_caps() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/gmond-rs.conf");
    let text = std::fs::read_to_string(path).unwrap();
    let (rs, _) = gmond_conf::rsconf::parse_rs(&text, path).unwrap();
    assert_eq!(gmond_rs::daemon::store_caps(Some(&rs)), Caps::default());
    assert_eq!(gmond_rs::daemon::store_caps(None), Caps::default());
}
