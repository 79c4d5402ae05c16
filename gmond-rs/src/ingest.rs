//! The UDP receive path: datagrams from a receive channel into the cluster store.
//!
//! Kept apart from the daemon's start-up and other loops so the hot path can be measured and
//! changed on its own. It touches the socket and the clock; the store stays sans-IO.

use crate::daemon::IoStats;
use crate::store::{ClusterStore, Timestamp};
use gmond_conf::Acl;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::RwLock;
use std::time::SystemTime;

/// Receives datagrams on `sock` until the store's lock is poisoned. `send` transmits what the
/// store wants sent (answers to metadata requests); metadata requests received are forwarded
/// by name to every `requests` channel.
pub fn receive_loop(
    sock: UdpSocket,
    acl: Option<Acl>,
    store: &RwLock<ClusterStore>,
    send: &dyn Fn(&[u8]),
    stats: &IoStats,
    requests: &[mpsc::Sender<Box<[u8]>>],
) {
    // One more byte than the largest accepted datagram, so an oversize one is seen as such.
    let limit = store
        .read()
        .map(|s| s.config().limits.max_datagram)
        .unwrap_or(1472);
    let mut buf = vec![0u8; limit + 1];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "recv failed");
                continue;
            }
        };
        let SocketAddr::V4(from) = from else {
            continue;
        };
        if let Some(acl) = &acl {
            if !acl.allows(*from.ip()) {
                stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        let now = Timestamp::from_system_time(SystemTime::now());
        let Ok(mut s) = store.write() else {
            return;
        };
        s.handle_datagram(now, *from.ip(), &buf[..n]);
        while let Some(d) = s.poll_transmit() {
            send(&d);
        }
        for name in s.poll_metadata_requested() {
            for r in requests {
                let _ = r.send(name.clone());
            }
        }
    }
}
