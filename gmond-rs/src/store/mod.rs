//! The cluster store: gmond's receive-side view of every host and metric, as a pure state
//! machine with time as an input (quinn-style `handle_*` / `poll_*`).
//!
//! The daemon feeds it datagrams ([`ClusterStore::handle_datagram`]) and clock ticks
//! ([`ClusterStore::handle_timeout`] at [`ClusterStore::next_timeout`]), sends what
//! [`ClusterStore::poll_transmit`] yields (metadata requests), marks its own metrics named by
//! [`ClusterStore::poll_metadata_requested`] for a metadata resend, and serves
//! [`ClusterStore::write_xml`] on its TCP port. Nothing here touches a socket or a clock, so
//! expiry and recovery are tested with simulated time (tests/store_*.rs replay a real capture).
//!
//! Receive semantics follow gmond 3.7.2 (reference §A.6-A.8, §B, §F): host identity by
//! source address or spoof string, ':' handling in metric names, heartbeat and location
//! consumed, metrics printed only with both metadata and a value, a metadata request for each
//! value without metadata, and expiry at cleanup sweeps with dmax counted from the last
//! metadata. Deliberate differences: malformed datagrams (including bad spoof strings and
//! non-string `location` values) are counted and dropped instead of crashing or replaying
//! stale bytes; a string heartbeat gives GMOND_STARTED 0 rather than pointer garbage;
//! memory is bounded by [`Caps`]; and a metric name is asked about at most once per
//! `metadata_request_interval` (gmond asks again for every value still without metadata, so
//! a restarted node sent hosts x names requests where names suffice: receivers answer by name,
//! whatever host the request names).
//!
//! # Sharing between the UDP task and XML readers
//!
//! The store is single-threaded and `Send + Sync`; it has no interior locking. The intended
//! use is `Arc<RwLock<ClusterStore>>` (std's lock, never held across an `.await`):
//!
//! * ingest takes the write lock per datagram (or per batch read in one wake-up);
//! * an XML client first takes the write lock briefly for [`ClusterStore::prepare_xml`]
//!   (pre-renders only the metrics changed since the last call), then the read lock for
//!   [`ClusterStore::render_xml`] into its own reusable `Vec<u8>` (memory speed, no socket
//!   I/O under the lock), releases it, and only then writes to the socket.
//!
//! Readers render concurrently; the UDP socket's receive buffer absorbs datagrams while a
//! dump holds the lock (size `SO_RCVBUF` for the longest dump). Clients arriving within the
//! same second may share one rendering: [`ClusterStore::generation`] changes with every state
//! change, so `(now.as_secs(), generation)` is a valid cache key. A snapshot/epoch scheme was
//! not chosen: it would copy the whole view per epoch (or need persistent maps) to save a
//! lock whose hold time is one in-memory render of pre-rendered lines.
//!
//! # Spoofed metric names with ':'
//!
//! Spoofed names keep their ':' in storage (so "svc:a" and "svc:b" are two metrics, as in
//! gmond) and XML prints each only up to its first ':' that is not the first byte, exactly as
//! gmond does — so both print as `NAME="svc"`. We copy that rather than print full names
//! because consumers were built against gmond: gmetad names RRD files after METRIC NAME, and
//! a ':' in an RRD path breaks rrdtool's `DEF:vname=file:ds:CF` syntax that ganglia-web uses.
//! Duplicate NAMEs stay valid XML (NAME is CDATA in the DTD, not ID); gmetad keeps the last.

mod config;
mod entry;
mod names;
mod resolve;
mod stats;
mod time;
mod xml;

pub use config::{Caps, ClusterInfo, StoreConfig};
pub use resolve::{HostsFileResolver, NumericResolver, Resolver, StaticResolver};
pub use stats::Stats;
pub use time::Timestamp;

use entry::{Host, Interner, Map, MetaBody, Metric, StoredMeta, StoredValue};
use ganglia_wire::{decode_with, encode_bounded, Message, MetricId, Value, METADATA_LIMIT};
use hashbrown::hash_map::EntryRef;
use names::{IpText, Special};
use std::collections::{HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

/// What happened to one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Dropped(DropReason),
}

/// Why a datagram was dropped; [`DropReason::as_str`] is the counter label.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// It did not decode (truncated, unknown id, bad length, oversize, ...).
    Decode(ganglia_wire::Error),
    /// A spoofed message whose host is not "IP:name".
    BadSpoof,
    /// A new host while `Caps::max_hosts` are stored.
    HostLimit,
    /// A new metric while the host or the store is at its metric cap.
    MetricLimit,
    /// Storing it would exceed `Caps::max_bytes`.
    MemoryLimit,
    /// A spoofed message from a source its receive channel lets speak only for itself
    /// ([`Origin::may_spoof`]).
    SpoofRefused,
}

impl DropReason {
    /// Stable label for `datagrams_dropped_total{reason=...}`; decode failures use
    /// [`ganglia_wire::Error::reason`].
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::Decode(e) => e.reason(),
            DropReason::BadSpoof => "bad_spoof",
            DropReason::HostLimit => "host_limit",
            DropReason::MetricLimit => "metric_limit",
            DropReason::MemoryLimit => "memory_limit",
            DropReason::SpoofRefused => "spoof_refused",
        }
    }

    fn is_cap(&self) -> bool {
        matches!(
            self,
            DropReason::HostLimit | DropReason::MetricLimit | DropReason::MemoryLimit
        )
    }
}

/// What the daemon knows of a datagram's sender besides its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The key id whose signature the daemon verified (`ganglia_wire::auth`); `None`: not
    /// authenticated.
    pub auth: Option<u32>,
    /// Whether the sender may speak for other hosts (spoof). gmond lets anyone; a receive
    /// channel's `spoof_acl` (gmond-rs.conf) can restrict it.
    pub may_spoof: bool,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            auth: None,
            may_spoof: true,
        }
    }
}

/// gmond's cluster state: hosts keyed by IP text, each with its metrics keyed by name.
pub struct ClusterStore {
    cfg: StoreConfig,
    resolver: Box<dyn Resolver + Send + Sync>,
    hosts: Map<Host>,
    /// Metadata bodies shared between hosts (see [`entry::MetaBody`]).
    metas: Interner,
    stats: Stats,
    /// Encoded metadata requests waiting to be multicast.
    transmit: VecDeque<Vec<u8>>,
    /// When a metadata request last went out per metric name, plain and spoofed.
    asked: [Map<Timestamp>; 2],
    /// Names other gmonds asked metadata for, deduplicated until drained.
    requested: Vec<Box<[u8]>>,
    requested_set: HashSet<Box<[u8]>>,
    /// Time of the last cleanup sweep; the first event seen starts the clock.
    last_cleanup: Option<Timestamp>,
    /// Shared with [`Generation`] handles, so a dump can check its cache without the store.
    generation: Generation,
    cap_warn: CapWarn,
    /// Keys of hosts created by a spoof and never heard from directly, oldest first: what a
    /// directly heard host may evict at the caps. May hold keys of hosts since heard directly
    /// or removed (skipped when popped, dropped at cleanup).
    spoofed_only: VecDeque<Box<[u8]>>,
    /// Reused for metric names rewritten ':' -> '_'.
    scratch: Vec<u8>,
}

/// The store's change counter, readable from other threads without the store's lock. Only
/// the store bumps it, always while it is being mutated (under the daemon's write lock).
#[derive(Debug, Clone, Default)]
pub struct Generation(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Generation {
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// Drops at the caps (and refused spoofs) since the last warning, for one rate-limited
/// `warn!`.
#[derive(Debug, Default)]
struct CapWarn {
    last: Option<Timestamp>,
    hosts: u64,
    metrics: u64,
    memory: u64,
    spoofs: u64,
    evicted: u64,
}

/// Bytes charged for one entry of the `asked` maps, the requested set or the spoofed-only
/// queue besides its name: the boxed slice header, the value and a share of table slack.
const SMALL_ENTRY_OVERHEAD: usize = 48;

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("stats", &self.stats)
            .field("last_cleanup", &self.last_cleanup)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// A store that names non-spoofed hosts by their dotted address.
    pub fn new(cfg: StoreConfig) -> Self {
        Self::with_resolver(cfg, Box::new(NumericResolver))
    }

    /// A store that asks `resolver` for the NAME of each new non-spoofed host.
    pub fn with_resolver(cfg: StoreConfig, resolver: Box<dyn Resolver + Send + Sync>) -> Self {
        ClusterStore {
            cfg,
            resolver,
            hosts: Map::default(),
            metas: Interner::default(),
            asked: Default::default(),
            stats: Stats::default(),
            transmit: VecDeque::new(),
            requested: Vec::new(),
            requested_set: HashSet::new(),
            last_cleanup: None,
            generation: Generation::default(),
            cap_warn: CapWarn::default(),
            spoofed_only: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Changes whenever the store's content does (a cache key for rendered XML, together with
    /// the dump second).
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// A handle that reads [`ClusterStore::generation`] without any lock on the store: the XML
    /// server consults its render cache with it before touching the store.
    pub fn generation_handle(&self) -> Generation {
        self.generation.clone()
    }

    /// One datagram received from `src` at `now`. Never panics; anything unusable is counted
    /// in [`Stats`] and reported as [`Outcome::Dropped`].
    pub fn handle_datagram(&mut self, now: Timestamp, src: Ipv4Addr, bytes: &[u8]) -> Outcome {
        self.handle_datagram_from(now, src, bytes, None)
    }

    /// [`handle_datagram`](Self::handle_datagram) for a datagram whose body the daemon has
    /// authenticated (`ganglia_wire::auth`) with key `auth`: a value it carries is marked so
    /// until the next value of that metric replaces it (see `xml.rs`). `None`: not
    /// authenticated.
    pub fn handle_datagram_from(
        &mut self,
        now: Timestamp,
        src: Ipv4Addr,
        bytes: &[u8],
        auth: Option<u32>,
    ) -> Outcome {
        let origin = Origin {
            auth,
            ..Origin::default()
        };
        self.handle_datagram_as(now, src, bytes, origin)
    }

    /// [`handle_datagram`](Self::handle_datagram) with what the receive channel knows of the
    /// sender: whether it was authenticated and whether it may spoof.
    pub fn handle_datagram_as(
        &mut self,
        now: Timestamp,
        src: Ipv4Addr,
        bytes: &[u8],
        origin: Origin,
    ) -> Outcome {
        self.stats.datagrams_received_total += 1;
        self.last_cleanup.get_or_insert(now);
        let msg = match decode_with(bytes, &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => return self.dropped(now, src, DropReason::Decode(e)),
        };
        self.stats.datagrams_decoded_total += 1;
        let mut result = self.ingest(now, src, &msg, origin);
        // A host heard directly is never kept out by hosts that only spoofs ever named: at
        // a cap that eviction can relieve, the oldest such host makes room (once per datagram).
        if let Err(reason) = &result {
            if !msg.metric_id().spoof && self.eviction_helps(reason) && self.evict_spoofed_only() {
                result = self.ingest(now, src, &msg, origin);
            }
        }
        match result {
            Ok(()) => {
                self.stats.datagrams_accepted_total += 1;
                self.generation.bump();
                Outcome::Accepted
            }
            Err(reason) => self.dropped(now, src, reason),
        }
    }

    /// Applies names the resolver found late (see [`Resolver::take_resolved`]): a host named
    /// by its address when first heard from takes the looked-up NAME, as it would have had
    /// with gmond's blocking lookup. Spoofed names and names already resolved are kept.
    pub fn poll_resolver(&mut self) {
        for (ip, name) in self.resolver.take_resolved() {
            let key = IpText::new(ip);
            let Some(host) = self.hosts.get_mut(key.as_bytes()) else {
                continue;
            };
            if *host.name != *key.as_bytes() {
                continue;
            }
            let before = host.name.len();
            host.name = name.into_bytes().into_boxed_slice();
            self.stats.bytes = (self.stats.bytes + host.name.len()).saturating_sub(before);
            self.generation.bump();
        }
    }

    /// Runs gmond's cleanup sweep if more than `cleanup_threshold` has passed since the last
    /// one: hosts silent for more than `host_dmax`, and metrics whose metadata is older than
    /// its own dmax, are deleted. The first call (or datagram) only starts the clock.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let Some(last) = self.last_cleanup else {
            self.last_cleanup = Some(now);
            return;
        };
        if now.saturating_since(last) <= self.cfg.cleanup_threshold {
            return;
        }
        self.last_cleanup = Some(now);
        self.cleanup(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: just past
    /// `cleanup_threshold` after the last sweep. `None` before the store has seen any time.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.last_cleanup
            .map(|t| t + self.cfg.cleanup_threshold + Duration::from_micros(1))
    }

    /// The next datagram to multicast on every send channel (metadata requests, id 136).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let d = self.transmit.pop_front()?;
        self.stats.bytes = self.stats.bytes.saturating_sub(d.capacity());
        Some(d)
    }

    /// Metric names other gmonds requested metadata for since the last call, each once. The
    /// daemon marks its own metric of that name (if any) for a metadata resend; the request's
    /// host field is ignored, as in gmond.
    pub fn poll_metadata_requested(&mut self) -> impl Iterator<Item = Box<[u8]>> + '_ {
        let held: usize = self
            .requested
            .iter()
            .map(|n| 2 * n.len() + SMALL_ENTRY_OVERHEAD)
            .sum();
        self.stats.bytes = self.stats.bytes.saturating_sub(held);
        self.requested_set.clear();
        self.requested.drain(..)
    }

    /// Whether evicting a spoofed-only host could let a datagram refused for `reason` in.
    fn eviction_helps(&self, reason: &DropReason) -> bool {
        match reason {
            DropReason::HostLimit | DropReason::MemoryLimit => true,
            // Not the host's own metric cap: another host's departure does not change it.
            DropReason::MetricLimit => self.stats.metrics >= self.cfg.caps.max_metrics_total,
            _ => false,
        }
    }

    /// Removes the oldest host that only spoofs ever named; false if there is none.
    fn evict_spoofed_only(&mut self) -> bool {
        while let Some(key) = self.spoofed_only.pop_front() {
            self.stats.bytes = self
                .stats
                .bytes
                .saturating_sub(key.len() + SMALL_ENTRY_OVERHEAD);
            let evictable = self.hosts.get(&key).is_some_and(|h| !h.heard_directly);
            if !evictable {
                continue;
            }
            if let Some(host) = self.hosts.remove(&key) {
                forget_host(&mut self.stats, &key, &host);
                self.stats.spoofed_hosts_evicted_total += 1;
                self.cap_warn.evicted += 1;
                self.generation.bump();
                return true;
            }
        }
        false
    }

    fn dropped(&mut self, now: Timestamp, src: Ipv4Addr, reason: DropReason) -> Outcome {
        self.stats.datagrams_dropped_total += 1;
        *self
            .stats
            .dropped_by_reason
            .entry(reason.as_str())
            .or_default() += 1;
        if reason.is_cap() || reason == DropReason::SpoofRefused {
            match reason {
                DropReason::HostLimit => self.cap_warn.hosts += 1,
                DropReason::MetricLimit => self.cap_warn.metrics += 1,
                DropReason::SpoofRefused => self.cap_warn.spoofs += 1,
                _ => self.cap_warn.memory += 1,
            }
            self.maybe_warn(now);
        } else {
            tracing::trace!(%src, reason = reason.as_str(), "datagram dropped");
        }
        Outcome::Dropped(reason)
    }

    fn maybe_warn(&mut self, now: Timestamp) {
        let due = self
            .cap_warn
            .last
            .is_none_or(|t| now.saturating_since(t) >= self.cfg.warn_interval);
        if !due {
            return;
        }
        let w = std::mem::take(&mut self.cap_warn);
        tracing::warn!(
            hosts_rejected = w.hosts,
            metrics_rejected = w.metrics,
            memory_rejected = w.memory,
            spoofs_refused = w.spoofs,
            spoofed_hosts_evicted = w.evicted,
            hosts = self.stats.hosts,
            metrics = self.stats.metrics,
            bytes = self.stats.bytes,
            max_hosts = self.cfg.caps.max_hosts,
            max_metrics = self.cfg.caps.max_metrics_total,
            max_bytes = self.cfg.caps.max_bytes,
            "cluster store refusing datagrams: at its caps (new hosts/metrics), or spoofs from \
             senders their channel's spoof_acl denies"
        );
        self.cap_warn.last = Some(now);
        self.stats.cap_warnings_total += 1;
    }

    /// Applies one decoded message. Split borrows of `self` so the hot path needs no
    /// allocation for known hosts and metrics.
    fn ingest(
        &mut self,
        now: Timestamp,
        src: Ipv4Addr,
        msg: &Message<'_>,
        origin: Origin,
    ) -> Result<(), DropReason> {
        let auth = origin.auth;
        let ClusterStore {
            cfg,
            resolver,
            hosts,
            metas,
            asked,
            stats,
            transmit,
            requested,
            requested_set,
            spoofed_only,
            scratch,
            ..
        } = self;
        let id = msg.metric_id();
        if id.spoof && !origin.may_spoof {
            return Err(DropReason::SpoofRefused);
        }
        let ip_text;
        let (key, spoof_name) = if id.spoof {
            let (ip, name) = names::split_spoof(id.host).ok_or(DropReason::BadSpoof)?;
            (ip, Some(name))
        } else {
            ip_text = IpText::new(src);
            (ip_text.as_bytes(), None)
        };
        let name = names::stored_name(id.name, id.spoof, scratch);

        let host = match hosts.entry_ref(key) {
            EntryRef::Occupied(e) => {
                let host = e.into_mut();
                if spoof_name.is_none() && !host.heard_directly {
                    // The address speaks for itself: a spoof that named it first (squatting)
                    // does not keep its NAME.
                    host.heard_directly = true;
                    let own: Box<[u8]> = match resolver.name_of(src) {
                        Some(n) => n.into_bytes().into_boxed_slice(),
                        None => key.into(),
                    };
                    if own != host.name {
                        stats.bytes = (stats.bytes + own.len()).saturating_sub(host.name.len());
                        stats.spoofed_names_replaced_total += 1;
                        host.name = own;
                        host.dirty = true;
                    }
                }
                host
            }
            EntryRef::Vacant(e) => {
                if stats.hosts >= cfg.caps.max_hosts {
                    return Err(DropReason::HostLimit);
                }
                // A spoofed "IP:name" for an address already known keeps the known NAME.
                let host_name: Box<[u8]> = match spoof_name {
                    Some(n) => n.into(),
                    None => match resolver.name_of(src) {
                        Some(n) => n.into_bytes().into_boxed_slice(),
                        None => key.into(),
                    },
                };
                let h = Host::new(host_name, now, spoof_name.is_none());
                let mut bytes = h.own_bytes(key.len());
                if spoof_name.is_some() {
                    bytes += key.len() + SMALL_ENTRY_OVERHEAD;
                }
                if stats.bytes.saturating_add(bytes) > cfg.caps.max_bytes {
                    return Err(DropReason::MemoryLimit);
                }
                stats.bytes += bytes;
                stats.hosts += 1;
                if spoof_name.is_some() {
                    spoofed_only.push_back(key.into());
                }
                e.insert_with_key(key.into(), h)
            }
        };
        host.last_heard = now;
        host.dirty |= !matches!(msg, Message::MetadataRequest(_));

        match msg {
            Message::MetadataRequest(_) => {
                stats.metadata_requests_received_total += 1;
                if !requested_set.contains(name) {
                    let charge = 2 * name.len() + SMALL_ENTRY_OVERHEAD;
                    if requested_set.len() >= cfg.caps.max_pending_requested
                        || stats.bytes.saturating_add(charge) > cfg.caps.max_bytes
                    {
                        stats.metadata_requested_dropped_total += 1;
                    } else {
                        let n: Box<[u8]> = name.into();
                        requested_set.insert(n.clone());
                        requested.push(n);
                        stats.bytes += charge;
                    }
                }
                Ok(())
            }
            Message::Metadata(md) => {
                let body = intern(
                    metas,
                    stats,
                    &cfg.caps,
                    MetaBody::new(md, cfg.allow_extra_data),
                )?;
                update_metric(
                    &mut host.metrics,
                    stats,
                    &cfg.caps,
                    name,
                    0,
                    |_| 0,
                    |m| {
                        m.meta = Some(StoredMeta::new(body, md, now));
                    },
                )?;
                Ok(())
            }
            Message::Value(v) => {
                match names::special(name) {
                    Special::Heartbeat => host.gmond_started = v.value.as_u32_bits(),
                    Special::Location => match v.value {
                        Value::Str(s) => {
                            let loc = host.location.get_or_insert_with(Vec::new);
                            let before = loc.capacity();
                            loc.clear();
                            loc.extend_from_slice(s);
                            stats.bytes = (stats.bytes + loc.capacity()).saturating_sub(before);
                        }
                        _ => stats.location_not_string_total += 1,
                    },
                    Special::None => {}
                }
                let need = v.fmt.len()
                    + match v.value {
                        Value::Str(s) => s.len(),
                        _ => 0,
                    };
                let have = |m: &Metric| m.value.as_ref().map_or(0, StoredValue::capacity);
                let has_meta =
                    update_metric(&mut host.metrics, stats, &cfg.caps, name, need, have, |m| {
                        let stored = match &mut m.value {
                            Some(stored) => {
                                stored.set(v.fmt, &v.value, now);
                                stored
                            }
                            None => m.value.insert(StoredValue::new(v.fmt, &v.value, now)),
                        };
                        stored.set_auth(auth);
                        m.meta.is_some()
                    })?;
                if !has_meta {
                    let last = &mut asked[usize::from(id.spoof)];
                    let recent = last
                        .get(name)
                        .is_some_and(|&t| now.saturating_since(t) < cfg.metadata_request_interval);
                    if recent {
                        stats.metadata_requests_suppressed_total += 1;
                    } else if queue_request(transmit, stats, cfg, key, &host.name, name, id)
                        && !cfg.metadata_request_interval.is_zero()
                    {
                        match last.entry_ref(name) {
                            EntryRef::Occupied(mut e) => *e.get_mut() = now,
                            // Not remembered past the byte cap: the name may then be asked
                            // about again sooner (the transmit queue stays bounded).
                            EntryRef::Vacant(e) => {
                                let charge = name.len() + SMALL_ENTRY_OVERHEAD;
                                if stats.bytes.saturating_add(charge) <= cfg.caps.max_bytes {
                                    stats.bytes += charge;
                                    e.insert_with_key(name.into(), now);
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn cleanup(&mut self, now: Timestamp) {
        let ClusterStore {
            cfg,
            hosts,
            metas,
            asked,
            stats,
            spoofed_only,
            ..
        } = self;
        stats.cleanups_total += 1;
        let host_dmax = cfg.host_dmax.filter(|d| !d.is_zero());
        let before = (stats.hosts, stats.metrics);
        hosts.retain(|key, host| {
            if host_dmax.is_some_and(|d| now.saturating_since(host.last_heard) > d) {
                forget_host(stats, key, host);
                stats.hosts_expired_total += 1;
                return false;
            }
            host.metrics.retain(|name, m| {
                let expired = m.meta.as_ref().is_some_and(|md| {
                    md.dmax != 0
                        && now.saturating_since(md.received)
                            > Duration::from_secs(u64::from(md.dmax))
                });
                if expired {
                    stats.bytes = stats.bytes.saturating_sub(m.bytes(name.len()));
                    stats.metrics -= 1;
                    stats.metrics_expired_total += 1;
                }
                !expired
            });
            true
        });
        for last in asked.iter_mut() {
            last.retain(|name, t| {
                let keep = now.saturating_since(*t) < cfg.metadata_request_interval;
                if !keep {
                    stats.bytes = stats
                        .bytes
                        .saturating_sub(name.len() + SMALL_ENTRY_OVERHEAD);
                }
                keep
            });
        }
        // Only hosts still spoofed-only stay eligible for eviction.
        spoofed_only.retain(|key| {
            let keep = hosts.get(key).is_some_and(|h| !h.heard_directly);
            if !keep {
                stats.bytes = stats.bytes.saturating_sub(key.len() + SMALL_ENTRY_OVERHEAD);
            }
            keep
        });
        // Bodies only the interner still holds: their metrics were replaced or removed.
        metas.retain(|b| {
            let used = std::sync::Arc::strong_count(b) > 1;
            if !used {
                stats.bytes = stats.bytes.saturating_sub(b.bytes());
            }
            used
        });
        if (stats.hosts, stats.metrics) != before {
            self.generation.bump();
            tracing::debug!(
                hosts_removed = before.0 - stats.hosts,
                metrics_removed = before.1 - stats.metrics,
                "cleanup removed expired entries"
            );
        }
    }
}

/// Takes a removed host's bytes, metrics and itself out of the counts.
fn forget_host(stats: &mut Stats, key: &[u8], host: &Host) {
    stats.bytes = stats.bytes.saturating_sub(
        host.own_bytes(key.len())
            + host
                .metrics
                .iter()
                .map(|(k, m)| m.bytes(k.len()))
                .sum::<usize>(),
    );
    stats.hosts -= 1;
    stats.metrics -= host.metrics.len();
}

/// Finds or creates metric `name` and applies `apply` to it, enforcing the metric and byte
/// caps. `need` is the payload size about to be stored and `have(m)` the capacity it will
/// reuse, so a cap is checked before anything grows; the byte count is then trued up from
/// the real capacities.
fn update_metric<R>(
    metrics: &mut Map<Box<Metric>>,
    stats: &mut Stats,
    caps: &Caps,
    name: &[u8],
    need: usize,
    have: impl Fn(&Metric) -> usize,
    apply: impl FnOnce(&mut Metric) -> R,
) -> Result<R, DropReason> {
    let count = metrics.len();
    let metric = match metrics.entry_ref(name) {
        EntryRef::Occupied(e) => {
            let m = e.into_mut();
            let grow = need.saturating_sub(have(m));
            if grow > 0 && stats.bytes.saturating_add(grow) > caps.max_bytes {
                return Err(DropReason::MemoryLimit);
            }
            m
        }
        EntryRef::Vacant(e) => {
            if count >= caps.max_metrics_per_host || stats.metrics >= caps.max_metrics_total {
                return Err(DropReason::MetricLimit);
            }
            let m = Box::new(Metric::new(e.key()));
            let base = m.bytes(name.len());
            if stats.bytes.saturating_add(base + need) > caps.max_bytes {
                return Err(DropReason::MemoryLimit);
            }
            stats.bytes += base;
            stats.metrics += 1;
            e.insert_with_key(name.into(), m)
        }
    };
    let before = metric.bytes(name.len());
    metric.dirty = true;
    let r = apply(metric);
    stats.bytes = (stats.bytes + metric.bytes(name.len())).saturating_sub(before);
    Ok(r)
}

/// The shared copy of `body`, stored on first sight (counted in `Stats::bytes`, refused at
/// `Caps::max_bytes`).
fn intern(
    metas: &mut Interner,
    stats: &mut Stats,
    caps: &Caps,
    body: MetaBody,
) -> Result<std::sync::Arc<MetaBody>, DropReason> {
    if let Some(b) = metas.get(&body) {
        return Ok(b.clone());
    }
    let bytes = body.bytes();
    if stats.bytes.saturating_add(bytes) > caps.max_bytes {
        return Err(DropReason::MemoryLimit);
    }
    stats.bytes += bytes;
    let b = std::sync::Arc::new(body);
    metas.insert(b.clone());
    Ok(b)
}

/// Queues gmond's metadata request for a value that arrived without metadata: host field =
/// the host's NAME, or "IP:NAME" when the value was spoofed; the value's name and spoof flag.
fn queue_request(
    transmit: &mut VecDeque<Vec<u8>>,
    stats: &mut Stats,
    cfg: &StoreConfig,
    key: &[u8],
    host_name: &[u8],
    name: &[u8],
    id: &MetricId<'_>,
) -> bool {
    if transmit.len() >= cfg.caps.max_pending_transmit {
        stats.metadata_requests_unsent_total += 1;
        return false;
    }
    if stats.bytes.saturating_add(METADATA_LIMIT) > cfg.caps.max_bytes {
        stats.metadata_requests_unsent_total += 1;
        return false;
    }
    let spoofed_host;
    let host: &[u8] = if id.spoof {
        spoofed_host = [key, b":", host_name].concat();
        &spoofed_host
    } else {
        host_name
    };
    let req = Message::MetadataRequest(MetricId {
        host,
        name,
        spoof: id.spoof,
    });
    // gmond builds requests in its metadata buffer; one that does not fit is not sent. A
    // signing daemon leaves the trailer's room in it.
    match encode_bounded(&req, METADATA_LIMIT.saturating_sub(cfg.transmit_reserve)) {
        Ok(bytes) => {
            stats.bytes += bytes.capacity();
            transmit.push_back(bytes);
            stats.metadata_requests_sent_total += 1;
            true
        }
        Err(_) => {
            stats.metadata_requests_unsent_total += 1;
            false
        }
    }
}
