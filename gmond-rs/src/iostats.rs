//! Counters of the daemon's own I/O, shared by the receive threads, the sender, the XML
//! server and the self metrics (the store counts datagrams itself).

use std::sync::atomic::AtomicU64;

/// Counters of the daemon's own I/O (the store counts datagrams).
#[derive(Debug, Default)]
pub struct IoStats {
    pub datagrams_sent_total: AtomicU64,
    pub send_errors_total: AtomicU64,
    pub acl_denied_total: AtomicU64,
    pub xml_clients_served_total: AtomicU64,
    pub xml_clients_failed_total: AtomicU64,
    /// XML clients closed at once because a client limit was reached.
    pub xml_clients_refused_total: AtomicU64,
    /// Metadata requests not passed on because a sender's queue was full (a flood).
    pub metadata_requests_dropped_total: AtomicU64,
    /// Failed accepts on the XML port (usually: out of descriptors).
    pub xml_accept_errors_total: AtomicU64,
    /// Datagrams whose signature was verified and accepted (`--auth`).
    pub auth_accepted_total: AtomicU64,
    /// Datagrams a receive channel's auth mode dropped, by `crate::auth::DROP_REASONS`.
    pub auth_dropped_total: [AtomicU64; 6],
}
