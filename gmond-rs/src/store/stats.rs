//! Counters the store keeps about itself (the daemon exports them; XML clients are its own).

use std::collections::BTreeMap;

/// Monotonic counters (`*_total`) and current sizes. Every datagram ends up in exactly one of
/// `datagrams_accepted_total` or `datagrams_dropped_total`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams given to `handle_datagram`.
    pub datagrams_received_total: u64,
    /// Datagrams that decoded as a Ganglia 3.1+ message.
    pub datagrams_decoded_total: u64,
    /// Decoded datagrams that changed the store.
    pub datagrams_accepted_total: u64,
    /// Datagrams dropped, decodable or not.
    pub datagrams_dropped_total: u64,
    /// `datagrams_dropped_total` split by [`DropReason::as_str`](super::DropReason::as_str).
    pub dropped_by_reason: BTreeMap<&'static str, u64>,
    /// `location` values that were not strings (real gmond crashes on them).
    pub location_not_string_total: u64,
    /// Metadata requests queued for sending (values without metadata).
    pub metadata_requests_sent_total: u64,
    /// Metadata requests not queued because the transmit queue was full.
    pub metadata_requests_unsent_total: u64,
    /// Values without metadata not asked about again: a request for that name went out
    /// within `metadata_request_interval`.
    pub metadata_requests_suppressed_total: u64,
    /// Metadata requests received from the network.
    pub metadata_requests_received_total: u64,
    /// Requested names not recorded because the pending set was full.
    pub metadata_requested_dropped_total: u64,
    /// Host NAMEs a spoof had claimed for an address before the address spoke for itself,
    /// replaced by the address's own name (squatting undone).
    pub spoofed_names_replaced_total: u64,
    /// Hosts only spoofs had named, removed at a cap to admit a host heard directly.
    pub spoofed_hosts_evicted_total: u64,
    /// Hosts removed by cleanup (host_dmax).
    pub hosts_expired_total: u64,
    /// Metrics removed by cleanup (their metadata's dmax), not counting those of removed hosts.
    pub metrics_expired_total: u64,
    /// Cleanup sweeps run.
    pub cleanups_total: u64,
    /// Rate-limited warnings logged about drops at the caps.
    pub cap_warnings_total: u64,
    /// Hosts currently stored.
    pub hosts: usize,
    /// Metrics currently stored (including ones not printable yet).
    pub metrics: usize,
    /// Approximate bytes held (the quantity `Caps::max_bytes` bounds).
    pub bytes: usize,
}

impl Stats {
    /// Drops recorded under one reason label (0 if none).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped_by_reason.get(reason).copied().unwrap_or(0)
    }
}
