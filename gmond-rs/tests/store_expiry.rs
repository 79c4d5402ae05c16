//! Expiry with simulated time (reference §B.5): cleanup sweeps at most once per
//! `cleanup_threshold`, hosts go after `host_dmax` of silence, metrics after their metadata's
//! dmax counted from the last METADATA (values do not keep them alive). No sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod store_common;

use gmond_rs::store::{ClusterStore, Outcome, StoreConfig, Timestamp};
use std::net::Ipv4Addr;
use std::time::Duration;
use store_common::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn cfg(host_dmax: u64, threshold: u64) -> StoreConfig {
    StoreConfig {
        host_dmax: Some(Duration::from_secs(host_dmax)),
        cleanup_threshold: Duration::from_secs(threshold),
        ..StoreConfig::default()
    }
}

fn feed(s: &mut ClusterStore, now: Timestamp, src: Ipv4Addr, d: &[u8]) {
    assert_eq!(s.handle_datagram(now, src, d), Outcome::Accepted);
}

fn host_names(s: &ClusterStore, now: Timestamp) -> Vec<String> {
    let mut v: Vec<_> = cluster(s, now).hosts.into_iter().map(|h| h.name).collect();
    v.sort();
    v
}

#[test]
fn hosts_expire_only_at_sweeps_after_host_dmax() {
    // gmond verified: host_dmax 30 with cleanup_threshold 10 removes a silent host at ~40 s.
    let mut s = ClusterStore::new(cfg(30, 10));
    feed(&mut s, t(0), A, &uint("x", "m", false, 1));
    feed(&mut s, t(0), B, &uint("x", "m", false, 1));
    let mut gone_at = None;
    for sec in 1..=60 {
        // B keeps talking; A is silent.
        feed(&mut s, t(sec), B, &uint("x", "m", false, 1));
        s.handle_timeout(t(sec));
        let names = host_names(&s, t(sec));
        if gone_at.is_none() && !names.contains(&"10.0.0.1".to_string()) {
            gone_at = Some(sec);
        }
    }
    // Sweeps happen when more than 10 s have passed since the previous: at 11, 22, 33, ...;
    // the first one with A silent for more than 30 s is at 33.
    assert_eq!(gone_at, Some(33));
    assert_eq!(s.stats().cleanups_total, 5);
    assert_eq!(s.stats().hosts_expired_total, 1);
    assert_eq!(host_names(&s, t(60)), vec!["10.0.0.2"]);
    assert_eq!((s.stats().hosts, s.stats().metrics), (1, 1));
}

#[test]
fn host_dmax_zero_or_none_keeps_hosts_forever() {
    for host_dmax in [None, Some(Duration::ZERO)] {
        let mut s = ClusterStore::new(StoreConfig {
            host_dmax,
            cleanup_threshold: Duration::from_secs(1),
            ..StoreConfig::default()
        });
        feed(&mut s, t(0), A, &uint("x", "m", false, 1));
        s.handle_timeout(t(1_000_000));
        s.handle_timeout(t(2_000_000));
        assert_eq!(s.stats().cleanups_total, 2);
        assert_eq!(host_names(&s, t(2_000_000)), vec!["10.0.0.1"]);
        let c = cluster(&s, t(2_000_000));
        assert_eq!((c.hosts[0].dmax, c.hosts[0].tn), (0, 2_000_000));
    }
}

#[test]
fn metric_dmax_counts_from_metadata_even_while_values_arrive() {
    let mut s = ClusterStore::new(cfg(86_400, 5));
    feed(
        &mut s,
        t(0),
        A,
        &metadata("x", "short", false, "uint32", 20),
    );
    feed(
        &mut s,
        t(0),
        A,
        &metadata("x", "forever", false, "uint32", 0),
    );
    let mut gone_at = None;
    for sec in 0..=40 {
        feed(&mut s, t(sec), A, &uint("x", "short", false, sec as u32));
        feed(&mut s, t(sec), A, &uint("x", "forever", false, sec as u32));
        s.handle_timeout(t(sec));
        let c = cluster(&s, t(sec));
        if gone_at.is_none() && c.hosts[0].metric("short").is_none() {
            gone_at = Some(sec);
        }
        if gone_at.is_some() {
            break;
        }
    }
    // Sweeps at 6, 12, 18, 24: the first with metadata older than 20 s is at 24.
    assert_eq!(gone_at, Some(24));
    assert_eq!(s.stats().metrics_expired_total, 1);
    assert!(
        s.poll_transmit().is_none(),
        "no request while metadata was known"
    );
    // After deletion each new value asks for metadata again, and is held unprinted.
    feed(&mut s, t(25), A, &uint("x", "short", false, 25));
    assert_eq!(
        drain_requests(&mut s),
        vec![("10.0.0.1".into(), "short".into(), false)]
    );
    let c = cluster(&s, t(25));
    assert!(c.hosts[0].metric("short").is_none());
    assert_eq!(c.hosts[0].metric("forever").unwrap().val, "24");
    // Fresh metadata restores it with the held value.
    feed(
        &mut s,
        t(26),
        A,
        &metadata("x", "short", false, "uint32", 20),
    );
    assert_eq!(
        cluster(&s, t(26)).hosts[0].metric("short").unwrap().val,
        "25"
    );
}

#[test]
fn refreshed_metadata_keeps_a_metric_alive() {
    let mut s = ClusterStore::new(cfg(86_400, 5));
    for sec in (0..=100).step_by(10) {
        // gmetric-style: metadata with every value.
        feed(&mut s, t(sec), A, &metadata("x", "g", false, "uint32", 15));
        feed(&mut s, t(sec), A, &uint("x", "g", false, 1));
        s.handle_timeout(t(sec));
    }
    assert_eq!(s.stats().metrics_expired_total, 0);
    assert!(cluster(&s, t(100)).hosts[0].metric("g").is_some());
}

#[test]
fn next_timeout_tells_when_a_sweep_is_due() {
    let mut s = ClusterStore::new(cfg(30, 10));
    assert_eq!(s.next_timeout(), None, "no time seen yet");
    s.handle_timeout(t(0));
    let due = s.next_timeout().unwrap();
    assert!(due > t(10) && due < t(11), "{due:?}");
    s.handle_timeout(t(10));
    assert_eq!(
        s.stats().cleanups_total,
        0,
        "exactly the threshold is not more than it"
    );
    s.handle_timeout(due);
    assert_eq!(s.stats().cleanups_total, 1);
    assert!(s.next_timeout().unwrap() > t(20));
    // A datagram also starts the clock.
    let mut s = ClusterStore::new(cfg(30, 10));
    feed(&mut s, t(3), A, &uint("x", "m", false, 1));
    assert!(s.next_timeout().unwrap() > t(13));
}

#[test]
fn expiry_returns_the_memory_it_accounted() {
    let mut s = ClusterStore::new(cfg(30, 1));
    for i in 0..50u8 {
        let src = Ipv4Addr::new(10, 1, 0, i);
        feed(&mut s, t(0), src, &metadata("x", "m", false, "string", 0));
        feed(
            &mut s,
            t(0),
            src,
            &string("x", "m", false, &"v".repeat(usize::from(i) * 10)),
        );
        feed(
            &mut s,
            t(0),
            src,
            &string("x", "location", false, "somewhere"),
        );
    }
    assert!(s.stats().bytes > 50 * 100);
    // The metadata requests queued for the daemon to send hold memory until it takes them.
    while s.poll_transmit().is_some() {}
    s.handle_timeout(t(0));
    s.handle_timeout(t(100));
    assert_eq!(
        (s.stats().hosts, s.stats().metrics, s.stats().bytes),
        (0, 0, 0)
    );
    assert_eq!(s.stats().hosts_expired_total, 50);
}
