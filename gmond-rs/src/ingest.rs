//! The UDP receive path: datagrams from a receive channel into the cluster store.
//!
//! Kept apart from the daemon's start-up and other loops so the hot path can be measured and
//! changed on its own. It touches the socket and the clock; the store stays sans-IO.
//!
//! Datagrams are taken in batches: one `recvmmsg` system call returns everything queued on
//! the socket (up to [`BATCH`]), then one clock read and one write lock serve the whole batch.
//! At low rates a batch is a single datagram and this is the old one-`recv_from` loop; under
//! load the per-datagram share of the system call, the wake-up, the clock and the lock shrinks
//! with the batch, which is what keeps the socket from overflowing. Datagrams of one batch get
//! the same timestamp: they were all queued within one wake-up, microseconds apart.
//!
//! Most of a receive's CPU at 20-200k datagrams/s is not the copy but the wake-up (the context
//! switch in and out of `recvmmsg`): profiled, about two thirds. So while datagrams arrive
//! faster than the thread would otherwise wake, it sleeps after a batch that did not fill up,
//! for as long as [`TARGET`] datagrams take to arrive at the rate just seen (at most
//! [`MAX_PAUSE`]), letting the next batch collect in the socket buffer: one wake-up per batch
//! instead of one per datagram. It delays ingest by at most [`MAX_PAUSE`] and needs the
//! receive buffer to hold [`TARGET`] datagrams plus scheduling jitter (the stock 208 KiB holds
//! about 256 small ones on loopback). When datagrams are rare the loop never sleeps.

use crate::daemon::IoStats;
use crate::store::{ClusterStore, Timestamp};
use gmond_conf::Acl;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn};
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

/// Datagrams taken per system call at most. 64 x ~1.5 KB of buffers is 94 KB per channel; a
/// stock receive buffer (208 KiB of skb truesize) holds about 200 small datagrams, so a batch
/// drains a good share of it without making one lock hold long (64 x ~0.3 µs of store work).
pub const BATCH: usize = 64;

/// Datagrams a pause aims to let collect: an eighth of what a stock buffer holds.
pub const TARGET: u32 = 32;

/// The longest pause: the most ingest is delayed on purpose.
pub const MAX_PAUSE: Duration = Duration::from_millis(1);

/// Receives datagrams on `sock` until the store's lock is poisoned. `send` transmits what the
/// store wants sent (answers to metadata requests); metadata requests received are forwarded
/// by name to every `requests` channel. Both happen after the store's lock is released.
pub fn receive_loop(
    sock: UdpSocket,
    acl: Option<Acl>,
    store: &RwLock<ClusterStore>,
    send: &dyn Fn(&[u8]),
    stats: &IoStats,
    requests: &[mpsc::Sender<Box<[u8]>>],
) {
    // One more byte than the largest accepted datagram, so an oversize one is seen as such
    // (recvmmsg truncates to the slot and the decoder rejects the slot-sized datagram).
    let limit = store
        .read()
        .map(|s| s.config().limits.max_datagram)
        .unwrap_or(1472);
    let mut batch = Batch::new(limit + 1);
    let mut outgoing: Vec<Vec<u8>> = Vec::new();
    let mut asked: Vec<Box<[u8]>> = Vec::new();
    let mut previous = Timestamp::from_system_time(SystemTime::now());
    let mut waiting_since = previous;
    loop {
        let received = match batch.receive(&sock) {
            Ok(r) => r,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg failed");
                continue;
            }
        };
        let now = Timestamp::from_system_time(SystemTime::now());
        let count = received.count;
        {
            let Ok(mut s) = store.write() else {
                return;
            };
            for (from, bytes) in received.iter() {
                if let Some(acl) = &acl {
                    if !acl.allows(from) {
                        stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                s.handle_datagram(now, from, bytes);
            }
            while let Some(d) = s.poll_transmit() {
                outgoing.push(d);
            }
            asked.extend(s.poll_metadata_requested());
        }
        for d in outgoing.drain(..) {
            send(&d);
        }
        for name in asked.drain(..) {
            for r in requests {
                let _ = r.send(name.clone());
            }
        }
        if let Some(p) = pause(
            count,
            now.saturating_since(previous),
            now.saturating_since(waiting_since),
        ) {
            std::thread::sleep(p);
        }
        previous = now;
        waiting_since = Timestamp::from_system_time(SystemTime::now());
    }
}

/// How long to sleep after a batch of `count` datagrams that arrived over `interval` (since the
/// previous batch), when the receive call blocked for `waited` of it: long enough for
/// [`TARGET`] more at that rate, capped at [`MAX_PAUSE`]; no pause after a full batch (more
/// are waiting) or when the call waited longer than the pause would last (datagrams are rare
/// enough that sleeping would cost a wake-up of its own).
fn pause(count: usize, interval: Duration, waited: Duration) -> Option<Duration> {
    if count == 0 || count >= BATCH {
        return None;
    }
    let per_datagram = interval / u32::try_from(count).unwrap_or(u32::MAX);
    let p = (per_datagram * TARGET).min(MAX_PAUSE);
    (waited < p).then_some(p)
}

/// Buffers and message headers for one `recvmmsg`, allocated once per channel.
struct Batch {
    slot: usize,
    bufs: Vec<u8>,
    headers: MultiHeaders<SockaddrIn>,
}

/// What one `recvmmsg` returned: each datagram's IPv4 source and bytes.
struct Received<'a> {
    slot: usize,
    bufs: &'a [u8],
    meta: [(Ipv4Addr, usize); BATCH],
    count: usize,
}

impl Batch {
    fn new(slot: usize) -> Self {
        Batch {
            slot,
            bufs: vec![0; slot * BATCH],
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Blocks until at least one datagram is queued, then takes whatever else is already
    /// there without waiting (MSG_WAITFORONE).
    fn receive(&mut self, sock: &UdpSocket) -> Result<Received<'_>, Errno> {
        let mut meta = [(Ipv4Addr::UNSPECIFIED, 0); BATCH];
        let mut count = 0;
        {
            let mut chunks = self.bufs.chunks_exact_mut(self.slot);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            let results = recvmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )?;
            for r in results {
                // A datagram without an IPv4 source cannot arrive on an AF_INET socket; one
                // that did would have nothing to key its host by.
                if let Some(addr) = r.address {
                    if let Some(m) = meta.get_mut(count) {
                        *m = (addr.ip(), r.bytes);
                        count += 1;
                        continue;
                    }
                }
                // Keep slots aligned with headers: an unusable entry has no bytes.
                if let Some(m) = meta.get_mut(count) {
                    *m = (Ipv4Addr::UNSPECIFIED, usize::MAX);
                    count += 1;
                }
            }
        }
        Ok(Received {
            slot: self.slot,
            bufs: &self.bufs,
            meta,
            count,
        })
    }
}

impl Received<'_> {
    /// The batch's datagrams in arrival order, skipping entries without a source address.
    fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &[u8])> + '_ {
        self.meta[..self.count]
            .iter()
            .enumerate()
            .filter(|(_, (_, len))| *len != usize::MAX)
            .map(|(i, &(from, len))| {
                let start = i * self.slot;
                let end = start + len.min(self.slot);
                (from, self.bufs.get(start..end).unwrap_or_default())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_follow_the_rate_and_stop_when_datagrams_are_rare() {
        let us = Duration::from_micros;
        // 200k/s: 5 µs apart, so 32 more take 160 µs.
        assert_eq!(pause(20, us(100), us(0)), Some(us(160)));
        // 20k/s: capped at the longest pause.
        assert_eq!(pause(4, us(200), us(40)), Some(MAX_PAUSE));
        // A full batch: more are queued, go straight back.
        assert_eq!(pause(BATCH, us(100), us(0)), None);
        // One datagram after a 2 ms wait: rarer than one per pause, no sleep.
        assert_eq!(pause(1, us(2000), us(2000)), None);
        // Waited 300 µs for 3 at 100 µs each: a 1 ms pause would be longer than the wait.
        assert_eq!(pause(3, us(300), us(300)), Some(MAX_PAUSE));
        assert_eq!(pause(0, us(10), us(0)), None);
    }

    #[test]
    fn one_call_takes_every_queued_datagram_in_order_with_its_source() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.2:0").unwrap();
        let to = rx.local_addr().unwrap();
        a.send_to(b"first", to).unwrap();
        b.send_to(b"second", to).unwrap();
        a.send_to(&[7u8; 40], to).unwrap();
        // Loopback delivery is synchronous: all three are queued once send_to returns.
        let mut batch = Batch::new(32);
        let got: Vec<(Ipv4Addr, Vec<u8>)> = batch
            .receive(&rx)
            .unwrap()
            .iter()
            .map(|(ip, d)| (ip, d.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Ipv4Addr::LOCALHOST, b"first".to_vec()),
                (Ipv4Addr::new(127, 0, 0, 2), b"second".to_vec()),
                // Longer than the slot: cut to the slot, so the decoder sees an oversize one.
                (Ipv4Addr::LOCALHOST, vec![7u8; 32]),
            ]
        );
    }

    #[test]
    fn more_than_a_batch_is_taken_over_several_calls() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..BATCH + 5 {
            tx.send_to(&(i as u32).to_be_bytes(), to).unwrap();
        }
        let mut batch = Batch::new(8);
        let mut seen = Vec::new();
        for want in [BATCH, 5] {
            let r = batch.receive(&rx).unwrap();
            let before = seen.len();
            seen.extend(
                r.iter()
                    .map(|(_, d)| u32::from_be_bytes(d.try_into().unwrap())),
            );
            assert_eq!(seen.len() - before, want);
        }
        assert_eq!(seen, (0..(BATCH + 5) as u32).collect::<Vec<_>>());
    }
}
