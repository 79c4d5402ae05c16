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
//! about 256 small ones on loopback), so a burst up to about 6x the rate a pause was sized for
//! is absorbed by a stock buffer; gmond.conf's `buffer` buys more. When datagrams are rare the
//! loop never sleeps.
//!
//! Ingest does not wait behind readers: a dump holds the store's read lock for as long as it
//! renders (tens of milliseconds at 10,000 hosts, more on a busy core), longer than a socket
//! buffer lasts at 100k datagrams/s. So the write lock is only tried; while a dump holds it,
//! batches are copied into a [`Backlog`] (bounded by [`BACKLOG_BYTES`]) and keep the socket
//! drained, and the backlog is applied, each datagram with its own arrival time, at the next
//! successful try. Only a full backlog waits for the lock.

use crate::auth::{self, Admit, Gate};
use crate::iostats::IoStats;
use crate::store::{ClusterStore, HostsFileResolver, Origin, Resolver, Timestamp};
use gmond_conf::Acl;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn};
use std::collections::{HashMap, HashSet};
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::sync::{RwLock, TryLockError};
use std::time::{Duration, SystemTime};

/// Datagrams taken per system call at most. 64 x ~1.5 KB of buffers is 94 KB per channel; a
/// stock receive buffer (208 KiB of skb truesize) holds about 200 small datagrams, so a batch
/// drains a good share of it without making one lock hold long (64 x ~0.3 µs of store work).
pub const BATCH: usize = 64;

/// Batches taken under one store lock at most when a backlog is queued (2,048 datagrams,
/// well under a millisecond of store work that a dump may wait for).
pub const DRAIN: usize = 32;

/// Datagram bytes held while a dump holds the store (about 80,000 typical datagrams, over a
/// second at 50k/s); beyond it ingest waits for the lock.
pub const BACKLOG_BYTES: usize = 8 << 20;

/// How long to wait before trying the lock again while a dump holds it and the socket is empty.
const RETRY: Duration = Duration::from_micros(200);

/// Datagrams a pause aims to let collect: an eighth of what a stock buffer holds.
pub const TARGET: u32 = 32;

/// The longest pause: the most ingest is delayed on purpose. 5 ms lets a batch of [`TARGET`]
/// collect down to about 6,400 datagrams/s (a 1,000-host cluster with VMs sends about 7,000),
/// so such a cluster wakes the thread ~200 times a second instead of once per few datagrams;
/// values are timestamped to the second, so 5 ms changes nothing a reader can see.
pub const MAX_PAUSE: Duration = Duration::from_millis(5);

/// Metadata requests waiting for a sender thread, per queue; past it they are dropped and
/// counted (a flood of requests for distinct names must not grow the daemon, and the senders
/// re-send metadata on their own schedule anyway).
pub const REQUEST_QUEUE: usize = 1024;

/// How often a receive loop with a stop check looks at it while no datagram arrives.
pub const STOP_POLL: Duration = Duration::from_millis(250);

/// What a receive channel admits: its ACL (by source address), then its auth gate; and
/// which senders may speak for other hosts.
#[derive(Default)]
pub struct ChannelRules {
    pub acl: Option<Acl>,
    /// gmond-rs.conf's `spoof_acl` for this channel: sources it denies may only speak for
    /// their own address. `None`: anyone may spoof, as in gmond.
    pub spoof_acl: Option<Acl>,
    /// `None`: no `--auth`; the store gets every datagram as it came.
    pub gate: Option<Gate>,
}

/// Receives datagrams on `sock` until the store's lock is poisoned or `stop` (checked at
/// least every [`STOP_POLL`]) says so; without a stop check it runs for the life of the
/// process. `send` transmits what the store wants sent (answers to metadata requests);
/// metadata requests received are forwarded by name to every `requests` channel. Both happen
/// after the store's lock is released.
pub fn receive_loop(
    sock: UdpSocket,
    rules: ChannelRules,
    store: &RwLock<ClusterStore>,
    send: &dyn Fn(&[u8]),
    stats: &IoStats,
    requests: &[mpsc::SyncSender<Box<[u8]>>],
    stop: Option<&dyn Fn() -> bool>,
) {
    if stop.is_some() {
        // A blocked recvmmsg returns EAGAIN after this, so the stop check runs.
        if let Err(e) = sock.set_read_timeout(Some(STOP_POLL)) {
            tracing::warn!(error = %e, "no receive timeout: this receive thread cannot be stopped");
        }
    }
    // One more byte than the largest accepted datagram, so an oversize one is seen as such
    // (recvmmsg truncates to the slot and the decoder rejects the slot-sized datagram).
    let limit = store
        .read()
        .map(|s| s.config().limits.max_datagram)
        .unwrap_or(1472);
    let slot = limit + 1;
    let mut batch = Batch::new(slot);
    let mut outgoing: Vec<Vec<u8>> = Vec::new();
    let mut asked: Vec<Box<[u8]>> = Vec::new();
    let mut backlog = Backlog::default();
    let mut previous = Timestamp::from_system_time(SystemTime::now());
    let mut waiting_since = previous;
    loop {
        if stop.is_some_and(|f| f()) {
            return;
        }
        // With a backlog, look for more without blocking: the lock is what we wait for.
        let flags = if backlog.is_empty() {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let received = match batch.receive(&sock, flags) {
            Ok(r) => Some(r),
            Err(Errno::EAGAIN) => None,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg failed");
                continue;
            }
        };
        if received.is_none() && backlog.is_empty() {
            // The receive timeout of a stoppable loop: nothing to apply.
            continue;
        }
        let now = Timestamp::from_system_time(SystemTime::now());
        let count = received.as_ref().map_or(0, |r| r.count);
        let guard = if backlog.bytes() + count * slot > BACKLOG_BYTES {
            store.write().ok()
        } else {
            match store.try_write() {
                Ok(g) => Some(g),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Poisoned(_)) => return,
            }
        };
        let Some(mut s) = guard else {
            // A dump holds the store: keep the datagrams, keep the socket drained.
            match &received {
                Some(r) => backlog.push(now, r),
                None => std::thread::sleep(RETRY),
            }
            continue;
        };
        let backlogged = !backlog.is_empty();
        s.poll_resolver();
        let rx = Rx {
            acl: rules.acl.as_ref(),
            spoof_acl: rules.spoof_acl.as_ref(),
            gate: rules.gate.as_ref(),
            stats,
        };
        backlog.apply(&mut s, &rx);
        let mut full = count == BATCH;
        if let Some(r) = received {
            rx.apply(&mut s, now, r.iter());
        }
        // A full batch means more is queued: drain it under this lock rather than queue
        // behind the next dump again.
        for _ in 1..DRAIN {
            if !full {
                break;
            }
            let Ok(more) = batch.receive(&sock, MsgFlags::MSG_DONTWAIT) else {
                break;
            };
            full = more.count == BATCH;
            rx.apply(&mut s, now, more.iter());
        }
        while let Some(d) = s.poll_transmit() {
            outgoing.push(d);
        }
        asked.extend(s.poll_metadata_requested());
        drop(s);
        for d in outgoing.drain(..) {
            send(&d);
        }
        for name in asked.drain(..) {
            for r in requests {
                if let Err(mpsc::TrySendError::Full(_)) = r.try_send(name.clone()) {
                    stats
                        .metadata_requests_dropped_total
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let pause = match backlogged {
            true => None,
            false => pause(
                count,
                now.saturating_since(previous),
                now.saturating_since(waiting_since),
            ),
        };
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
        previous = now;
        waiting_since = Timestamp::from_system_time(SystemTime::now());
    }
}

/// How a host NAME is looked up for an address: [`system_lookup`] in the daemon, a fake in
/// tests. It may block (DNS); it runs on the resolver's own thread.
pub type Lookup = Box<dyn Fn(Ipv4Addr) -> Option<String> + Send>;

/// Lookups waiting at most; an address beyond that keeps its dotted NAME (a flood of new
/// senders must not queue unbounded work).
const LOOKUPS_QUEUED: usize = 1024;

/// Remembered answers at most (then forgotten all at once and asked again).
const ANSWERS_KEPT: usize = 200_000;

/// Host NAMEs as gmond finds them (getnameinfo: /etc/hosts, then DNS), without blocking the
/// receive thread: the store asks once per new host, from memory. The hosts file answers at
/// once; any other address is queued for a resolver thread, the host is named by its address
/// meanwhile, and the answer reaches the store through [`Resolver::take_resolved`] (renamed
/// at the next batch). Answers are cached, so a host that expires and comes back is named at
/// once (a changed DNS name is seen after a restart of gmond-rs).
pub struct BackgroundResolver {
    hosts: HostsFileResolver,
    shared: Arc<Mutex<Lookups>>,
    queue: mpsc::SyncSender<Ipv4Addr>,
}

#[derive(Default)]
struct Lookups {
    answers: HashMap<Ipv4Addr, Option<String>>,
    pending: HashSet<Ipv4Addr>,
    resolved: Vec<(Ipv4Addr, String)>,
}

impl BackgroundResolver {
    /// Starts the resolver thread.
    pub fn spawn(hosts: HostsFileResolver, lookup: Lookup) -> std::io::Result<Self> {
        let (queue, asked) = mpsc::sync_channel::<Ipv4Addr>(LOOKUPS_QUEUED);
        let shared = Arc::new(Mutex::new(Lookups::default()));
        let answers = shared.clone();
        std::thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                for ip in asked {
                    let name = lookup(ip);
                    tracing::debug!(%ip, name = name.as_deref().unwrap_or(""), "reverse lookup");
                    let Ok(mut l) = answers.lock() else {
                        return;
                    };
                    l.pending.remove(&ip);
                    if l.answers.len() >= ANSWERS_KEPT {
                        l.answers.clear();
                    }
                    l.answers.insert(ip, name.clone());
                    if let Some(n) = name {
                        l.resolved.push((ip, n));
                    }
                }
            })?;
        Ok(BackgroundResolver {
            hosts,
            shared,
            queue,
        })
    }
}

impl Resolver for BackgroundResolver {
    fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(n) = self.hosts.name_of(ip) {
            return Some(n);
        }
        let Ok(mut l) = self.shared.lock() else {
            return None;
        };
        if let Some(known) = l.answers.get(&ip) {
            return known.clone();
        }
        if l.pending.insert(ip) && self.queue.try_send(ip).is_err() {
            l.pending.remove(&ip);
        }
        None
    }

    fn take_resolved(&self) -> Vec<(Ipv4Addr, String)> {
        self.shared
            .lock()
            .map(|mut l| std::mem::take(&mut l.resolved))
            .unwrap_or_default()
    }
}

/// getnameinfo through the system resolver (nsswitch order: /etc/hosts, then DNS), `None`
/// where it has no name, as gmond does for a new host. Loopback addresses other than those in
/// /etc/hosts are not asked: on a real cluster no peer sends from 127/8, and a test running
/// daemons on 127.0.0.x would otherwise send DNS queries off the machine.
pub fn system_lookup(ip: Ipv4Addr) -> Option<String> {
    if ip.is_loopback() {
        return None;
    }
    dns_lookup::lookup_addr(&std::net::IpAddr::V4(ip)).ok()
}

/// Datagrams received while a dump held the store, with their arrival times, in order.
#[derive(Default)]
struct Backlog {
    data: Vec<u8>,
    /// (arrival, source, end offset in `data`) per datagram.
    items: Vec<(Timestamp, Ipv4Addr, usize)>,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held, the per-datagram records included (a flood of empty datagrams holds no
    /// data but one record each).
    fn bytes(&self) -> usize {
        self.data.len() + self.items.len() * std::mem::size_of::<(Timestamp, Ipv4Addr, usize)>()
    }

    fn push(&mut self, now: Timestamp, received: &Received<'_>) {
        for (from, bytes) in received.iter() {
            self.data.extend_from_slice(bytes);
            self.items.push((now, from, self.data.len()));
        }
    }

    /// Feeds everything to the store in arrival order and empties the backlog (its buffers
    /// are kept for the next dump).
    fn apply(&mut self, s: &mut ClusterStore, rx: &Rx<'_>) {
        let mut start = 0;
        for &(at, from, end) in &self.items {
            let bytes = self.data.get(start..end).unwrap_or_default();
            start = end;
            rx.apply(s, at, std::iter::once((from, bytes)));
        }
        self.data.clear();
        self.items.clear();
    }
}

/// What stands between a receive channel and the store: its ACL, then its auth gate; its
/// spoof ACL says which senders may speak for other hosts.
struct Rx<'a> {
    acl: Option<&'a Acl>,
    spoof_acl: Option<&'a Acl>,
    gate: Option<&'a Gate>,
    stats: &'a IoStats,
}

impl Rx<'_> {
    /// Feeds datagrams received at `now` to the store, dropping (and counting) what the
    /// channel's ACL denies and what its auth mode refuses.
    fn apply<'b>(
        &self,
        s: &mut ClusterStore,
        now: Timestamp,
        datagrams: impl Iterator<Item = (Ipv4Addr, &'b [u8])>,
    ) {
        let allowed = datagrams.filter(|(from, _)| {
            let denied = self.acl.is_some_and(|a| !a.allows(*from));
            if denied {
                self.stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
            }
            !denied
        });
        let may_spoof = |from: Ipv4Addr| self.spoof_acl.is_none_or(|a| a.allows(from));
        let Some(gate) = self.gate else {
            for (from, bytes) in allowed {
                let origin = Origin {
                    auth: None,
                    may_spoof: may_spoof(from),
                };
                s.handle_datagram_as(now, from, bytes, origin);
            }
            return;
        };
        gate.batch(|admit| {
            for (from, bytes) in allowed {
                let verdict = admit(bytes, now.as_secs());
                auth::count(self.stats, &verdict);
                match verdict {
                    Admit::Pass { body, auth } => {
                        let origin = Origin {
                            auth,
                            may_spoof: may_spoof(from),
                        };
                        s.handle_datagram_as(now, from, body, origin);
                    }
                    Admit::Drop(reason) => {
                        tracing::debug!(%from, reason, "datagram dropped by auth mode");
                    }
                }
            }
        });
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

    /// With MSG_WAITFORONE: blocks until at least one datagram is queued, then takes whatever
    /// else is already there without waiting. With MSG_DONTWAIT: EAGAIN if none is queued.
    fn receive(&mut self, sock: &UdpSocket, flags: MsgFlags) -> Result<Received<'_>, Errno> {
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
                flags,
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

    /// Bytes queued on the UDP socket bound to 127.0.0.1:`port` (/proc/net/udp rx_queue).
    fn queued(port: u16) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/net/udp").ok()?;
        let local = format!("0100007F:{port:04X}");
        text.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()))
                .then(|| u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok())?
        })
    }

    fn poll(mut f: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                std::time::Instant::now() < end,
                "condition not reached in 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_reader_holding_the_store_does_not_stop_the_socket_being_drained() {
        use crate::store::StoreConfig;
        use ganglia_wire::{encode, Message, MetricId, Value, ValueMsg};
        use std::sync::Arc;

        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let store = Arc::new(RwLock::new(ClusterStore::new(StoreConfig::default())));
        let stats = Arc::new(IoStats::default());
        {
            let (store, stats) = (store.clone(), stats.clone());
            std::thread::spawn(move || {
                receive_loop(
                    rx,
                    ChannelRules::default(),
                    &store,
                    &|_| {},
                    &stats,
                    &[],
                    None,
                )
            });
        }
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = Vec::new();
        // Fewer than the stock buffer holds (about 256), so the kernel drops none of them.
        let n = 200;
        {
            // A dump in progress: the read lock is held while every datagram is sent.
            let _reader = store.read().unwrap();
            for i in 0..n {
                d.clear();
                encode(
                    &Message::Value(ValueMsg {
                        id: MetricId {
                            host: format!("10.0.0.{}:h", i % 7).as_bytes(),
                            name: b"m",
                            spoof: true,
                        },
                        fmt: b"%u",
                        value: Value::UInt(i),
                    }),
                    &mut d,
                );
                tx.send_to(&d, ("127.0.0.1", port)).unwrap();
            }
            // Drained into the backlog although the store is locked.
            poll(|| queued(port) == Some(0));
            assert_eq!(
                store.try_read().unwrap().stats().datagrams_received_total,
                0
            );
        }
        // Applied once the reader is gone, every one of them.
        poll(|| store.read().unwrap().stats().datagrams_received_total == u64::from(n));
        assert_eq!(store.read().unwrap().stats().hosts, 7);
    }

    #[test]
    fn a_stoppable_loop_returns_once_stopped_even_when_nothing_arrives() {
        use crate::store::StoreConfig;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let store = RwLock::new(ClusterStore::new(StoreConfig::default()));
        let stats = IoStats::default();
        let stopped = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                let check = || stopped.load(Ordering::SeqCst);
                receive_loop(
                    rx,
                    ChannelRules::default(),
                    &store,
                    &|_| {},
                    &stats,
                    &[],
                    Some(&check),
                );
            });
            // Once it has taken a datagram it is back in its blocking receive with nothing to
            // come: only the receive timeout can bring it to the flag.
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.send_to(&[0, 0, 0, 1], ("127.0.0.1", port)).unwrap();
            poll(|| store.read().unwrap().stats().datagrams_received_total == 1);
            stopped.store(true, Ordering::SeqCst);
            // Joined here: a loop that never looked at the flag would hang the test.
            t.join().unwrap();
        });
    }

    #[test]
    fn lookups_run_off_the_asking_thread_and_are_remembered() {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let r = BackgroundResolver::spawn(
            HostsFileResolver::parse("10.0.0.1 fromfile\n"),
            Box::new(move |ip| {
                counter.fetch_add(1, Ordering::SeqCst);
                // Blocks like a slow DNS server until the test lets it answer.
                gate.lock().unwrap().recv().ok()?;
                (ip.octets()[3] == 2).then(|| format!("node{}", ip.octets()[3]))
            }),
        )
        .unwrap();
        // The hosts file answers at once; other addresses are queued, not waited for.
        assert_eq!(
            r.name_of(Ipv4Addr::new(10, 0, 0, 1)).as_deref(),
            Some("fromfile")
        );
        assert_eq!(r.name_of(Ipv4Addr::new(10, 0, 0, 2)), None);
        assert_eq!(r.name_of(Ipv4Addr::new(10, 0, 0, 3)), None);
        // Asking again while the lookup is under way queues nothing more.
        assert_eq!(r.name_of(Ipv4Addr::new(10, 0, 0, 2)), None);
        assert!(r.take_resolved().is_empty());
        release.send(()).unwrap();
        release.send(()).unwrap();
        let mut got = Vec::new();
        poll(|| {
            got.extend(r.take_resolved());
            asked.load(Ordering::SeqCst) == 2 && !got.is_empty()
        });
        assert_eq!(got, vec![(Ipv4Addr::new(10, 0, 0, 2), "node2".to_owned())]);
        // Remembered, failures included: no second lookup.
        poll(|| {
            r.name_of(Ipv4Addr::new(10, 0, 0, 3)).is_none()
                && r.shared.lock().unwrap().pending.is_empty()
        });
        assert_eq!(
            r.name_of(Ipv4Addr::new(10, 0, 0, 2)).as_deref(),
            Some("node2")
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn loopback_senders_are_not_looked_up() {
        assert_eq!(system_lookup(Ipv4Addr::new(127, 0, 0, 73)), None);
    }

    #[test]
    fn pauses_follow_the_rate_and_stop_when_datagrams_are_rare() {
        let us = Duration::from_micros;
        // 200k/s: 5 µs apart, so 32 more take 160 µs.
        assert_eq!(pause(20, us(100), us(0)), Some(us(160)));
        // 20k/s: 50 µs apart, 1.6 ms.
        assert_eq!(pause(4, us(200), us(40)), Some(us(1600)));
        // 7k/s (a 1,000-host cluster with VMs): a batch of 32 every ~4.6 ms.
        assert_eq!(pause(7, us(1000), us(140)), Some(us(1000) / 7 * 32));
        // 500/s: capped at the longest pause.
        assert_eq!(pause(1, us(2000), us(2000)), Some(MAX_PAUSE));
        // A full batch: more are queued, go straight back.
        assert_eq!(pause(BATCH, us(100), us(0)), None);
        // One datagram after an 8 ms wait: rarer than one per pause, no sleep.
        assert_eq!(pause(1, us(8000), us(8000)), None);
        // Waited 300 µs for 3 at 100 µs each: the 3.2 ms pause is longer than the wait.
        assert_eq!(pause(3, us(300), us(300)), Some(us(3200)));
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
            .receive(&rx, MsgFlags::MSG_WAITFORONE)
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
            let r = batch.receive(&rx, MsgFlags::MSG_WAITFORONE).unwrap();
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
