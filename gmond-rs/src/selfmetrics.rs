//! gmond-rs's own counters as Ganglia metrics (group `gmond_rs`), so drops, sizes and XML
//! clients show in the feed, gmetad's RRDs and ganglia-web. Opt-in the gmond way: a
//! `collection_group` that selects them, e.g. `metric { name_match = "^gmond_rs_" }`.

use crate::iostats::IoStats;
use crate::store::Stats;
use gmond_metrics::linux::{MetricSpec, MetricValue, ValueType};
use std::sync::atomic::Ordering;

const fn spec(
    name: &'static str,
    units: &'static str,
    slope: &'static str,
    title: &'static str,
    desc: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        value_type: ValueType::F64,
        format: "%.0f",
        units,
        slope,
        tmax: 300,
        dmax: 0,
        group: "gmond_rs",
        title,
        desc,
        module: "gmond_rs",
        default: false,
    }
}

/// Counters are `positive` (gmetad makes COUNTER archives of them, graphed as rates); sizes
/// are `both`.
pub static SELF_METRICS: &[MetricSpec] = &[
    spec(
        "gmond_rs_datagrams_received",
        "datagrams",
        "positive",
        "Datagrams received",
        "UDP datagrams given to the cluster store",
    ),
    spec(
        "gmond_rs_datagrams_dropped",
        "datagrams",
        "positive",
        "Datagrams dropped",
        "Datagrams dropped: malformed, unknown id, oversize, bad spoof, or over a memory cap",
    ),
    spec(
        "gmond_rs_datagrams_sent",
        "datagrams",
        "positive",
        "Datagrams sent",
        "Datagrams sent on all send channels (own metrics and metadata requests)",
    ),
    spec(
        "gmond_rs_acl_denied",
        "datagrams",
        "positive",
        "ACL denials",
        "Datagrams and XML connections refused by an acl",
    ),
    spec(
        "gmond_rs_xml_clients",
        "clients",
        "positive",
        "XML clients served",
        "XML documents written completely to a client",
    ),
    spec(
        "gmond_rs_metadata_requests_suppressed",
        "requests",
        "positive",
        "Metadata requests held back",
        "Metadata requests not sent because the same name was asked about within metadata_request_interval",
    ),
    spec(
        "gmond_rs_auth_accepted",
        "datagrams",
        "positive",
        "Authenticated datagrams",
        "Datagrams whose signature (--auth) was verified and accepted",
    ),
    spec(
        "gmond_rs_auth_dropped",
        "datagrams",
        "positive",
        "Datagrams refused by auth",
        "Datagrams a receive channel's auth mode dropped: unsigned (require), malformed trailer, unknown key, bad MAC, stale, replay",
    ),
    spec(
        "gmond_rs_hosts",
        "hosts",
        "both",
        "Hosts held",
        "Hosts in this node's cluster view",
    ),
    spec(
        "gmond_rs_metrics",
        "metrics",
        "both",
        "Metrics held",
        "Metrics in this node's cluster view",
    ),
    spec(
        "gmond_rs_store_bytes",
        "bytes",
        "both",
        "Store memory",
        "Bytes the cluster store accounts for (what gmond-rs.conf's max_memory_mb bounds)",
    ),
];

/// The spec of a self metric by name.
pub fn lookup(name: &str) -> Option<&'static MetricSpec> {
    SELF_METRICS.iter().find(|s| s.name == name)
}

/// The current value of a self metric (None for other names).
pub fn value(name: &str, store: &Stats, io: &IoStats) -> Option<MetricValue> {
    let n = |v: u64| Some(MetricValue::F64(v as f64));
    match name {
        "gmond_rs_datagrams_received" => n(store.datagrams_received_total),
        "gmond_rs_datagrams_dropped" => n(store.datagrams_dropped_total),
        "gmond_rs_datagrams_sent" => n(io.datagrams_sent_total.load(Ordering::Relaxed)),
        "gmond_rs_acl_denied" => n(io.acl_denied_total.load(Ordering::Relaxed)),
        "gmond_rs_xml_clients" => n(io.xml_clients_served_total.load(Ordering::Relaxed)),
        "gmond_rs_metadata_requests_suppressed" => n(store.metadata_requests_suppressed_total),
        "gmond_rs_auth_accepted" => n(io.auth_accepted_total.load(Ordering::Relaxed)),
        "gmond_rs_auth_dropped" => n(io
            .auth_dropped_total
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()),
        "gmond_rs_hosts" => n(store.hosts as u64),
        "gmond_rs_metrics" => n(store.metrics as u64),
        "gmond_rs_store_bytes" => n(store.bytes as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_self_metric_has_a_value_and_a_distinct_name() {
        let stats = Stats {
            datagrams_received_total: 7,
            metadata_requests_suppressed_total: 5,
            hosts: 3,
            ..Stats::default()
        };
        let io = IoStats::default();
        io.xml_clients_served_total.store(2, Ordering::Relaxed);
        for s in SELF_METRICS {
            assert!(value(s.name, &stats, &io).is_some(), "{}", s.name);
            assert_eq!(lookup(s.name).map(|x| x.name), Some(s.name));
            assert!(gmond_metrics::linux::lookup(s.name).is_none(), "no clash");
        }
        assert_eq!(
            value("gmond_rs_datagrams_received", &stats, &io),
            Some(MetricValue::F64(7.0))
        );
        assert_eq!(
            value("gmond_rs_hosts", &stats, &io),
            Some(MetricValue::F64(3.0))
        );
        assert_eq!(
            value("gmond_rs_xml_clients", &stats, &io),
            Some(MetricValue::F64(2.0))
        );
        assert_eq!(
            value("gmond_rs_metadata_requests_suppressed", &stats, &io),
            Some(MetricValue::F64(5.0))
        );
        assert_eq!(value("cpu_num", &stats, &io), None);
    }
}
