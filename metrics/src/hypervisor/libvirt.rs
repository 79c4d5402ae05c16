//! The libvirt implementation of [`Hypervisor`] through the `virt` crate, with reconnect and
//! backoff when libvirtd goes away, and [`LibvirtControl`] (presence, live migration, job
//! abort) for the balancer agent: every libvirt call of the workspace goes through here.
//!
//! `virt` 0.5's `Drop` for `Connect` and `Domain` panics when libvirt fails to free the object
//! (a daemon that went away); every object is dropped through `release`, which contains
//! that panic. The only unsafe code is in `ffi.rs`.
//!
//! Every call BLOCKS (libvirt RPCs): never call it on an async runtime's worker threads; use a
//! dedicated thread or `tokio::task::spawn_blocking`, and do not start a round while the last
//! is still running. Take the sample time around the call (its midpoint), not after. Against
//! a hung (not dead) daemon a call blocks until libvirt's keepalive gives the connection up:
//! every connection opened here asks for it ([`KEEPALIVE_INTERVAL_S`], [`KEEPALIVE_COUNT`]),
//! and the first one starts libvirt's default event loop, which keepalive needs, on a thread
//! of its own for the life of the process.
//!
//! Nothing here reads the clock: the reconnect backoff is fed the `now` each call is given,
//! and a round's sample time comes from the clock its caller passes in, so tests drive
//! outages, backoff and recovery without sleeping.
//!
//! Data sources per domain: bulk stats (`virConnectGetAllDomainStats`: `state.*`, `cpu.time`,
//! `balloon.*`, `vcpu.current/maximum`, `block.*`, `net.*`) where the driver has them,
//! per-domain calls (`virDomainGetInfo`, `virDomainGetVcpusFlags`, `virDomainMemoryStats`)
//! for whatever is missing (not for I/O). libvirt's test driver gives only `state.*` in bulk,
//! so it exercises the fallbacks.
//!
//! Memory used: balloon `current - unused` when the guest reports `unused`, else the QEMU
//! process RSS capped at the current memory, else the current memory.
//!
//! State mapping (libvirt virDomainState -> [`DomainState`]): running, blocked and
//! shutting-down -> Running; paused and pm-suspended -> Paused; shut off -> Shutoff; crashed ->
//! Crashed; no-state and unknown codes -> Paused (holds memory, uses no CPU as far as we know).

mod backoff;
mod control;
mod ffi;

pub use backoff::{Backoff, BackoffPolicy, LinkState, Transition};
pub use control::{LibvirtControl, MigrateOptions, Presence};

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use virt::connect::Connect;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use super::{DomainInfo, DomainState, HostCapacity, Hypervisor};
use crate::vmetrics::{self, DiskCounters, IoCounters, NetCounters, UtilTracker, VmMetric};
use crate::Error;
use ffi::Param;

/// One live session with a hypervisor, as [`Reconnecting`] needs it.
pub trait Session {
    /// The host's name.
    fn hostname(&self) -> Result<String, Error>;
    /// Host capacity.
    fn capacity(&self) -> Result<HostCapacity, Error>;
    /// Every domain, sorted by name.
    fn domains(&self) -> Result<Vec<DomainInfo>, Error>;
    /// Every domain with its I/O counters where the backend has them.
    fn domains_with_io(&self) -> Result<Vec<(DomainInfo, Option<IoCounters>)>, Error> {
        Ok(self.domains()?.into_iter().map(|d| (d, None)).collect())
    }
    /// Whether the session still works; checked after a failed call to tell a lost daemon
    /// from a failed request.
    fn is_alive(&self) -> bool;
}

/// Opens sessions; [`LibvirtConnector`] for libvirt, fakes in tests.
pub trait Connector {
    /// The session type.
    type Session: Session;
    /// Opens a session (blocking).
    fn connect(&self) -> Result<Self::Session, Error>;
    /// What it connects to, for logs and errors (a URI).
    fn target(&self) -> &str;
}

/// A [`Hypervisor`] that opens its session lazily, drops it when it dies, and reconnects with
/// exponential backoff. While disconnected and waiting, calls fail at once with
/// [`Error::HostDown`], so a caller keeps serving its other metrics.
///
/// Logs (target `gmond_metrics::libvirt`): one `warn` when an outage starts, one `info` when it
/// ends; the attempts in between are `debug` only.
pub struct Reconnecting<C: Connector> {
    connector: C,
    inner: Mutex<Inner<C::Session>>,
}

struct Inner<S> {
    session: Option<S>,
    backoff: Backoff,
}

impl<C: Connector> Reconnecting<C> {
    /// Wraps `connector`; nothing is opened until the first call.
    pub fn new(connector: C, policy: BackoffPolicy) -> Self {
        Reconnecting {
            connector,
            inner: Mutex::new(Inner {
                session: None,
                backoff: Backoff::new(policy),
            }),
        }
    }

    /// The link state (for status pages and tests).
    pub fn link_state(&self) -> LinkState {
        self.lock().backoff.state()
    }

    /// Outages seen since creation.
    pub fn outages_total(&self) -> u64 {
        self.lock().backoff.outages_total()
    }

    /// Whether a session is open.
    pub fn is_connected(&self) -> bool {
        self.lock().session.is_some()
    }

    /// [`Hypervisor::hostname`] with the time given.
    pub fn hostname_at(&self, now: Instant) -> Result<String, Error> {
        self.call(now, Session::hostname)
    }

    /// [`Hypervisor::capacity`] with the time given.
    pub fn capacity_at(&self, now: Instant) -> Result<HostCapacity, Error> {
        self.call(now, Session::capacity)
    }

    /// [`Hypervisor::domains`] with the time given.
    pub fn domains_at(&self, now: Instant) -> Result<Vec<DomainInfo>, Error> {
        self.call(now, Session::domains)
    }

    /// Domains with I/O counters (disk, network), with the time given.
    pub fn domains_with_io_at(
        &self,
        now: Instant,
    ) -> Result<Vec<(DomainInfo, Option<IoCounters>)>, Error> {
        self.call(now, Session::domains_with_io)
    }

    /// This wrapper as a [`Hypervisor`] whose calls all happen at `now` (for the backoff).
    pub fn at(&self, now: Instant) -> ReconnectingAt<'_, C> {
        ReconnectingAt { hv: self, now }
    }

    /// One collection round with I/O at `now` (which decides whether a reconnect may be
    /// tried): like [`vmetrics::collect_round`] but also publishing the disk and network
    /// metrics where the backend gives counters. `clock_ns` is read just before and after the
    /// listing (ns, any clock that does not jump); the midpoint is the sample time. Blocks.
    pub fn collect_round(
        &self,
        now: Instant,
        tracker: &mut UtilTracker,
        mut clock_ns: impl FnMut() -> u64,
    ) -> Result<Vec<VmMetric>, Error> {
        let capacity = self.capacity_at(now)?;
        let before = clock_ns();
        let domains = self.domains_with_io_at(now)?;
        let after = clock_ns();
        let at = before + after.saturating_sub(before) / 2;
        Ok(vmetrics::publish(
            &capacity,
            &tracker.update_with_io(at, domains),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C::Session>> {
        // A panic in a session call poisons the lock; the state inside is still coherent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn call<T>(
        &self,
        now: Instant,
        f: impl FnOnce(&C::Session) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let target = self.connector.target();
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.session.is_none() {
            if !inner.backoff.may_try(now) {
                return Err(Error::HostDown(target.to_owned()));
            }
            match self.connector.connect() {
                Ok(s) => {
                    log_transition(target, inner.backoff.on_success(now), None);
                    inner.session = Some(s);
                }
                Err(e) => {
                    log_transition(target, inner.backoff.on_failure(now), Some(&e));
                    return Err(e);
                }
            }
        }
        let Some(session) = inner.session.as_ref() else {
            return Err(Error::HostDown(target.to_owned()));
        };
        let result = f(session);
        if result.is_err() && !session.is_alive() {
            let lost = inner.session.take();
            release(lost);
            let err = result.as_ref().err();
            log_transition(target, inner.backoff.on_failure(now), err);
        }
        result
    }
}

fn log_transition(target: &str, t: Transition, err: Option<&Error>) {
    let err = err.map(ToString::to_string).unwrap_or_default();
    match t {
        Transition::Steady => {
            tracing::debug!(target: "gmond_metrics::libvirt", uri = target, "connected")
        }
        Transition::WentDown { retry_in } => tracing::warn!(
            target: "gmond_metrics::libvirt", uri = target, error = %err,
            retry_in_s = retry_in.as_secs_f64(),
            "hypervisor unreachable; serving other metrics, retrying with backoff"
        ),
        Transition::StillDown { failures, retry_in } => tracing::debug!(
            target: "gmond_metrics::libvirt", uri = target, error = %err, failures,
            retry_in_s = retry_in.as_secs_f64(), "hypervisor still unreachable"
        ),
        Transition::Recovered { down_for, failures } => tracing::info!(
            target: "gmond_metrics::libvirt", uri = target, down_for_s = down_for.as_secs_f64(),
            failures, "hypervisor reachable again"
        ),
    }
}

/// A [`Reconnecting`] hypervisor seen at one instant ([`Reconnecting::at`]): the
/// [`Hypervisor`] trait has no time argument, so the time is bound here instead of read.
pub struct ReconnectingAt<'a, C: Connector> {
    hv: &'a Reconnecting<C>,
    now: Instant,
}

impl<C: Connector> Hypervisor for ReconnectingAt<'_, C> {
    fn hostname(&self) -> Result<String, Error> {
        self.hv.hostname_at(self.now)
    }

    fn capacity(&self) -> Result<HostCapacity, Error> {
        self.hv.capacity_at(self.now)
    }

    fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        self.hv.domains_at(self.now)
    }
}

/// The daemon's libvirt hypervisor: a [`LibvirtConnector`] behind [`Reconnecting`].
pub type LibvirtHypervisor = Reconnecting<LibvirtConnector>;

impl LibvirtHypervisor {
    /// A read-only, lazily connecting, reconnecting libvirt hypervisor for `uri`
    /// (`qemu:///system`, `test:///ABS/PATH/node.xml`).
    pub fn open_lazy(uri: &str, policy: BackoffPolicy) -> Self {
        Reconnecting::new(LibvirtConnector::read_only(uri), policy)
    }
}

/// Opens [`LibvirtSession`]s to one URI.
#[derive(Debug, Clone)]
pub struct LibvirtConnector {
    uri: String,
    read_only: bool,
}

impl LibvirtConnector {
    /// Read-only sessions: all that metric collection needs.
    pub fn read_only(uri: &str) -> Self {
        LibvirtConnector {
            uri: uri.to_owned(),
            read_only: true,
        }
    }

    /// Read-write sessions (tests that change domains through the same connection).
    pub fn read_write(uri: &str) -> Self {
        LibvirtConnector {
            uri: uri.to_owned(),
            read_only: false,
        }
    }
}

impl Connector for LibvirtConnector {
    type Session = LibvirtSession;

    fn connect(&self) -> Result<LibvirtSession, Error> {
        if self.read_only {
            LibvirtSession::open_read_only(&self.uri)
        } else {
            LibvirtSession::open(&self.uri)
        }
    }

    fn target(&self) -> &str {
        &self.uri
    }
}

type AfterListHook = Box<dyn Fn(&Connect) + Send + Sync>;

/// One open libvirt connection. Also a [`Hypervisor`] by itself (no reconnecting).
pub struct LibvirtSession {
    conn: Option<Connect>,
    uri: String,
    after_list: Option<AfterListHook>,
    domains_vanished_total: AtomicU64,
    domains_failed_total: AtomicU64,
}

impl std::fmt::Debug for LibvirtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtSession")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Bulk stats groups asked for; drivers without some of them just leave them out.
const STATS: u32 = sys::VIR_DOMAIN_STATS_STATE
    | sys::VIR_DOMAIN_STATS_CPU_TOTAL
    | sys::VIR_DOMAIN_STATS_BALLOON
    | sys::VIR_DOMAIN_STATS_VCPU
    | sys::VIR_DOMAIN_STATS_BLOCK
    | sys::VIR_DOMAIN_STATS_INTERFACE;

impl LibvirtSession {
    /// Opens a read-write connection.
    pub fn open(uri: &str) -> Result<Self, Error> {
        Self::open_with(uri, false)
    }

    /// Opens a read-only connection.
    pub fn open_read_only(uri: &str) -> Result<Self, Error> {
        Self::open_with(uri, true)
    }

    fn open_with(uri: &str, read_only: bool) -> Result<Self, Error> {
        Ok(LibvirtSession {
            conn: Some(open_connection(uri, read_only)?),
            uri: uri.to_owned(),
            after_list: None,
            domains_vanished_total: AtomicU64::new(0),
            domains_failed_total: AtomicU64::new(0),
        })
    }

    /// The underlying connection (tests drive domain state changes through it).
    pub fn connection(&self) -> Result<&Connect, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::HostDown(self.uri.clone()))
    }

    /// Domains that disappeared between the bulk listing and their per-domain calls.
    pub fn domains_vanished_total(&self) -> u64 {
        self.domains_vanished_total.load(Ordering::Relaxed)
    }

    /// Domains skipped because a per-domain call failed for another reason.
    pub fn domains_failed_total(&self) -> u64 {
        self.domains_failed_total.load(Ordering::Relaxed)
    }

    /// Test hook: runs between the bulk listing and the per-domain calls of
    /// [`Hypervisor::domains`], so a test can make a domain vanish in that window.
    #[doc(hidden)]
    pub fn set_after_list_hook(&mut self, hook: impl Fn(&Connect) + Send + Sync + 'static) {
        self.after_list = Some(Box::new(hook));
    }

    fn node_capacity(&self) -> Result<HostCapacity, Error> {
        let conn = self.connection()?;
        let ni = conn.node_info().map_err(backend)?;
        // Drivers without per-cell free memory (the test driver) fail or give 0: estimate from
        // the memory the active domains hold.
        let mem_free_kib = match conn.free_memory() {
            Ok(bytes) if bytes > 0 => bytes / 1024,
            _ => {
                let held: u64 = self
                    .list_domains()?
                    .iter()
                    .map(|(d, _)| d)
                    .filter(|d| matches!(d.state, DomainState::Running | DomainState::Paused))
                    .map(|d| d.mem_current_kib)
                    .sum();
                ni.memory.saturating_sub(held)
            }
        };
        Ok(HostCapacity {
            cpus: ni.cpus,
            mhz: ni.mhz,
            mem_kib: ni.memory,
            mem_free_kib,
        })
    }

    fn list_domains(&self) -> Result<Vec<(DomainInfo, Option<IoCounters>)>, Error> {
        let conn = self.connection()?;
        let records = ffi::all_domain_stats(conn, STATS, 0).map_err(backend)?;
        if let Some(hook) = &self.after_list {
            hook(conn);
        }
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let r = assemble(&rec.dom, &rec.params);
            let io = io_from_params(&rec.params);
            release(rec);
            match r {
                Ok(d) => out.push((d, io)),
                Err(e) if is_no_domain(&e) => {
                    self.domains_vanished_total.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "gmond_metrics::libvirt", error = %e,
                        "domain vanished between listing and stats; skipped");
                }
                Err(e) => {
                    if !conn.is_alive().unwrap_or(false) {
                        return Err(backend(e));
                    }
                    self.domains_failed_total.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "gmond_metrics::libvirt", error = %e,
                        "domain stats failed; domain skipped this round");
                }
            }
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }
}

impl Drop for LibvirtSession {
    fn drop(&mut self) {
        release(self.conn.take());
    }
}

/// Drops a libvirt object (or anything holding one) where `virt`'s Drop would panic if the C
/// free failed: the crate's one release guard, for collection and control alike.
fn release<T>(v: T) {
    if catch_unwind(AssertUnwindSafe(move || drop(v))).is_err() {
        tracing::warn!(target: "gmond_metrics::libvirt", "libvirt refused to free an object");
    }
}

/// Seconds between libvirt keepalive probes on every connection opened here.
pub const KEEPALIVE_INTERVAL_S: i32 = 5;
/// Unanswered probes after which libvirt closes the connection: a daemon that stops
/// answering (hung, stopped, its host gone) fails every call blocked on it after about
/// `KEEPALIVE_INTERVAL_S * (KEEPALIVE_COUNT + 1)` seconds (20) instead of never.
pub const KEEPALIVE_COUNT: u32 = 3;

/// Starts libvirt's default event loop once per process (keepalive runs on it); false if it
/// could not be started, and connections then go without keepalive.
fn event_loop() -> bool {
    static STARTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!(target: "gmond_metrics::libvirt", error = %e, "no libvirt event loop: connections go without keepalive");
            return false;
        }
        let spawned = std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                // Runs one iteration (it blocks in poll until something is due); an error
                // would otherwise spin.
                if virt::event::event_run_default_impl().is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        spawned.is_ok()
    })
}

/// Opens a connection, read-only or read-write, with keepalive where the driver has it; a
/// failure is [`Error::Connect`].
fn open_connection(uri: &str, read_only: bool) -> Result<Connect, Error> {
    // Otherwise libvirt prints every error (including expected ones) to stderr.
    virt::error::clear_error_callback();
    let keepalive = event_loop();
    let conn = if read_only {
        Connect::open_read_only(Some(uri))
    } else {
        Connect::open(Some(uri))
    }
    .map_err(|e| Error::Connect {
        uri: uri.to_owned(),
        message: e.to_string(),
    })?;
    if keepalive {
        // In-process drivers (test:///) have no remote side to probe.
        if let Err(e) = conn.set_keep_alive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
            tracing::debug!(target: "gmond_metrics::libvirt", uri, error = %e, "no keepalive on this connection");
        }
    }
    Ok(conn)
}

impl Session for LibvirtSession {
    fn hostname(&self) -> Result<String, Error> {
        self.connection()?.hostname().map_err(backend)
    }

    fn capacity(&self) -> Result<HostCapacity, Error> {
        self.node_capacity()
    }

    fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        Ok(self.list_domains()?.into_iter().map(|(d, _)| d).collect())
    }

    fn domains_with_io(&self) -> Result<Vec<(DomainInfo, Option<IoCounters>)>, Error> {
        self.list_domains()
    }

    fn is_alive(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.is_alive().unwrap_or(false))
    }
}

impl Hypervisor for LibvirtSession {
    fn hostname(&self) -> Result<String, Error> {
        Session::hostname(self)
    }

    fn capacity(&self) -> Result<HostCapacity, Error> {
        self.node_capacity()
    }

    fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        Session::domains(self)
    }
}

fn backend(e: VirtError) -> Error {
    Error::Backend(e.to_string())
}

fn is_no_domain(e: &VirtError) -> bool {
    is_code(e, ErrorNumber::NoDomain)
}

fn is_code(e: &VirtError, code: ErrorNumber) -> bool {
    e.code().is_known_and(|c| c == code)
}

/// Maps a virDomainState code (see the module docs).
pub fn state_from_code(code: u64) -> DomainState {
    match code {
        1 | 2 | 4 => DomainState::Running,
        5 => DomainState::Shutoff,
        6 => DomainState::Crashed,
        _ => DomainState::Paused,
    }
}

/// Memory used by the guest, KiB, from what the sources offer (see the module docs).
pub fn memory_used_kib(
    current_kib: u64,
    balloon_actual_kib: Option<u64>,
    unused_kib: Option<u64>,
    rss_kib: Option<u64>,
) -> u64 {
    match (unused_kib, rss_kib) {
        (Some(unused), _) => balloon_actual_kib
            .unwrap_or(current_kib)
            .saturating_sub(unused)
            .min(current_kib),
        (None, Some(rss)) => rss.min(current_kib),
        (None, None) => current_kib,
    }
}

/// Disk and network counters summed over a domain's devices from bulk `block.*`/`net.*`
/// parameters; a group is `None` when its count is missing or 0.
fn io_from_params(params: &BTreeMap<String, Param>) -> Option<IoCounters> {
    let get = |k: String| params.get(&k).and_then(Param::as_u64).unwrap_or(0);
    let count = |k: &str| params.get(k).and_then(Param::as_u64).filter(|n| *n > 0);
    let disk = count("block.count").map(|n| {
        let mut d = DiskCounters::default();
        for i in 0..n.min(4096) {
            add(&mut d.rd_reqs, get(format!("block.{i}.rd.reqs")));
            add(&mut d.rd_bytes, get(format!("block.{i}.rd.bytes")));
            add(&mut d.wr_reqs, get(format!("block.{i}.wr.reqs")));
            add(&mut d.wr_bytes, get(format!("block.{i}.wr.bytes")));
            add(&mut d.errs, get(format!("block.{i}.errs")));
            add(&mut d.capacity_bytes, get(format!("block.{i}.capacity")));
            add(
                &mut d.allocation_bytes,
                get(format!("block.{i}.allocation")),
            );
        }
        d
    });
    let net = count("net.count").map(|n| {
        let mut c = NetCounters::default();
        for i in 0..n.min(4096) {
            add(&mut c.rx_bytes, get(format!("net.{i}.rx.bytes")));
            add(&mut c.rx_pkts, get(format!("net.{i}.rx.pkts")));
            add(&mut c.rx_errs, get(format!("net.{i}.rx.errs")));
            add(&mut c.rx_drop, get(format!("net.{i}.rx.drop")));
            add(&mut c.tx_bytes, get(format!("net.{i}.tx.bytes")));
            add(&mut c.tx_pkts, get(format!("net.{i}.tx.pkts")));
            add(&mut c.tx_errs, get(format!("net.{i}.tx.errs")));
            add(&mut c.tx_drop, get(format!("net.{i}.tx.drop")));
        }
        c
    });
    (disk.is_some() || net.is_some()).then_some(IoCounters { disk, net })
}

fn add(sum: &mut u64, v: u64) {
    *sum = sum.saturating_add(v);
}

/// What `virDomainGetInfo` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BasicInfo {
    state: u64,
    max_kib: u64,
    cur_kib: u64,
    vcpus: u64,
    cpu_ns: u64,
}

/// What `virDomainMemoryStats` gives that matters here, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MemStats {
    actual: Option<u64>,
    unused: Option<u64>,
    rss: Option<u64>,
}

/// The per-domain calls [`assemble`] may make: `virt`'s `Domain` in production, a fake in the
/// unit tests (which thereby show what a driver with full bulk stats, like QEMU, needs).
trait PerDomain {
    type Err;
    fn name(&self) -> Result<String, Self::Err>;
    fn uuid(&self) -> Result<String, Self::Err>;
    fn info(&self) -> Result<BasicInfo, Self::Err>;
    fn vcpus_max(&self) -> Result<u32, Self::Err>;
    fn memory_stats(&self) -> Result<MemStats, Self::Err>;
    /// The domain no longer exists.
    fn is_gone(e: &Self::Err) -> bool;
}

impl PerDomain for virt::domain::Domain {
    type Err = VirtError;

    fn name(&self) -> Result<String, VirtError> {
        virt::domain::Domain::name(self)
    }

    fn uuid(&self) -> Result<String, VirtError> {
        self.uuid_string()
    }

    fn info(&self) -> Result<BasicInfo, VirtError> {
        let i = virt::domain::Domain::info(self)?;
        Ok(BasicInfo {
            state: u64::from(i.state.to_raw()),
            max_kib: i.max_mem,
            cur_kib: i.memory,
            vcpus: u64::from(i.nr_virt_cpu),
            cpu_ns: i.cpu_time,
        })
    }

    fn vcpus_max(&self) -> Result<u32, VirtError> {
        // AFFECT_CURRENT: the live maximum of an active domain, the configured one otherwise.
        self.vcpus_flags(sys::VIR_DOMAIN_VCPU_MAXIMUM)
    }

    fn memory_stats(&self) -> Result<MemStats, VirtError> {
        let stats = virt::domain::Domain::memory_stats(self, 0)?;
        let tag = |t: u32| stats.iter().find(|s| s.tag == t).map(|s| s.val);
        Ok(MemStats {
            actual: tag(sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON),
            unused: tag(sys::VIR_DOMAIN_MEMORY_STAT_UNUSED),
            rss: tag(sys::VIR_DOMAIN_MEMORY_STAT_RSS),
        })
    }

    fn is_gone(e: &VirtError) -> bool {
        is_no_domain(e)
    }
}

/// One domain's info from its bulk-stats parameters plus per-domain calls for what is missing.
/// Only "domain gone" errors of the optional calls propagate; their other errors fall back.
fn assemble<D: PerDomain>(dom: &D, params: &BTreeMap<String, Param>) -> Result<DomainInfo, D::Err> {
    let get = |k: &str| params.get(k).and_then(Param::as_u64);
    let name = dom.name()?;
    let uuid = dom.uuid()?;
    let b_state = get("state.state");
    let b_cpu = get("cpu.time");
    let b_cur = get("balloon.current");
    let b_max = get("balloon.maximum");
    let b_vcpus = get("vcpu.current");
    let info = if [b_state, b_cpu, b_cur, b_max, b_vcpus]
        .iter()
        .any(Option::is_none)
    {
        Some(dom.info()?)
    } else {
        None
    };
    let pick = |bulk: Option<u64>, f: fn(&BasicInfo) -> u64| {
        bulk.or_else(|| info.as_ref().map(f)).unwrap_or(0)
    };
    let state = state_from_code(pick(b_state, |i| i.state));
    let vcpus_current = u32::try_from(pick(b_vcpus, |i| i.vcpus)).unwrap_or(u32::MAX);
    let vcpus_max = match get("vcpu.maximum") {
        Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
        None => match dom.vcpus_max() {
            Ok(v) => v,
            Err(e) if D::is_gone(&e) => return Err(e),
            Err(_) => vcpus_current,
        },
    };
    let mem_max_kib = pick(b_max, |i| i.max_kib);
    let mem_current_kib = pick(b_cur, |i| i.cur_kib);
    let cpu_time_ns = pick(b_cpu, |i| i.cpu_ns);
    let active = matches!(state, DomainState::Running | DomainState::Paused);
    let has_balloon_group = params.keys().any(|k| k.starts_with("balloon."));
    let mem = if has_balloon_group || !active {
        MemStats {
            actual: b_cur,
            unused: get("balloon.unused"),
            rss: get("balloon.rss"),
        }
    } else {
        match dom.memory_stats() {
            Ok(m) => m,
            Err(e) if D::is_gone(&e) => return Err(e),
            Err(_) => MemStats::default(),
        }
    };
    Ok(DomainInfo {
        name,
        uuid,
        state,
        vcpus_current,
        vcpus_max,
        mem_max_kib,
        mem_current_kib,
        mem_used_kib: memory_used_kib(mem_current_kib, mem.actual, mem.unused, mem.rss),
        cpu_time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes() {
        let got: Vec<_> = (0..=8).map(state_from_code).collect();
        use DomainState::*;
        assert_eq!(
            got,
            [Paused, Running, Running, Paused, Running, Shutoff, Crashed, Paused, Paused]
        );
    }

    #[test]
    fn hypervisor_can_move_to_a_collector_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LibvirtHypervisor>();
        send_sync::<LibvirtSession>();
    }

    #[test]
    fn bulk_stats_decoded_from_the_test_driver() {
        let uri = concat!(
            "test://",
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/libvirt/node.xml"
        );
        let s = LibvirtSession::open_read_only(uri).unwrap();
        let recs = ffi::all_domain_stats(s.connection().unwrap(), STATS, 0).unwrap();
        let mut got: Vec<(String, Option<Param>)> = recs
            .iter()
            .map(|r| (r.dom.name().unwrap(), r.params.get("state.state").cloned()))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want = [
            ("batch: job \"7\"", 3),
            ("cache", 1),
            ("db.example.com", 1),
            ("spare", 5),
            ("web1", 1),
        ];
        assert_eq!(got.len(), want.len());
        for ((name, p), (wn, ws)) in got.iter().zip(want) {
            assert_eq!(name, wn);
            assert_eq!(p, &Some(Param::Int(ws)), "{name}");
        }
        // The test driver has only the state group (see reference libvirt.md).
        assert!(recs[0].params.keys().all(|k| k.starts_with("state.")));
    }

    /// A domain whose per-domain calls are counted; `gone` makes them all fail as vanished.
    #[derive(Default)]
    struct FakeDom {
        calls: std::cell::RefCell<Vec<&'static str>>,
        mem: MemStats,
        gone: bool,
    }

    impl PerDomain for FakeDom {
        type Err = &'static str;
        fn name(&self) -> Result<String, &'static str> {
            Ok("vm".into())
        }
        fn uuid(&self) -> Result<String, &'static str> {
            Ok("u".into())
        }
        fn info(&self) -> Result<BasicInfo, &'static str> {
            self.calls.borrow_mut().push("info");
            if self.gone {
                return Err("gone");
            }
            Ok(BasicInfo {
                state: 1,
                max_kib: 4096,
                cur_kib: 2048,
                vcpus: 2,
                cpu_ns: 7,
            })
        }
        fn vcpus_max(&self) -> Result<u32, &'static str> {
            self.calls.borrow_mut().push("vcpus_max");
            Err("unsupported")
        }
        fn memory_stats(&self) -> Result<MemStats, &'static str> {
            self.calls.borrow_mut().push("memory_stats");
            Ok(self.mem)
        }
        fn is_gone(e: &&'static str) -> bool {
            *e == "gone"
        }
    }

    fn params(kv: &[(&str, u64)]) -> BTreeMap<String, Param> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), Param::UInt(*v)))
            .collect()
    }

    #[test]
    fn full_bulk_stats_need_no_per_domain_calls() {
        // What QEMU returns in bulk for a running domain with a virtio balloon.
        let p = params(&[
            ("state.state", 1),
            ("cpu.time", 123_000_000),
            ("balloon.current", 1_048_576),
            ("balloon.maximum", 2_097_152),
            ("balloon.unused", 524_288),
            ("balloon.rss", 900_000),
            ("vcpu.current", 3),
            ("vcpu.maximum", 4),
        ]);
        let d = FakeDom::default();
        let i = assemble(&d, &p).unwrap();
        assert!(d.calls.borrow().is_empty(), "{:?}", d.calls.borrow());
        assert_eq!(i.state, DomainState::Running);
        assert_eq!((i.vcpus_current, i.vcpus_max), (3, 4));
        assert_eq!((i.mem_max_kib, i.mem_current_kib), (2_097_152, 1_048_576));
        assert_eq!(i.mem_used_kib, 524_288);
        assert_eq!(i.cpu_time_ns, 123_000_000);
        // Without guest stats (memballoon none): RSS, capped at current.
        let mut p2 = p.clone();
        p2.remove("balloon.unused");
        assert_eq!(assemble(&d, &p2).unwrap().mem_used_kib, 900_000);
        p2.insert("balloon.rss".into(), Param::UInt(5_000_000));
        assert_eq!(assemble(&d, &p2).unwrap().mem_used_kib, 1_048_576);
        assert!(d.calls.borrow().is_empty());
    }

    #[test]
    fn state_only_bulk_stats_fall_back_to_per_domain_calls() {
        // What the test driver returns in bulk.
        let p = params(&[("state.state", 3), ("state.reason", 0)]);
        let d = FakeDom {
            mem: MemStats {
                actual: Some(2048),
                unused: Some(512),
                rss: None,
            },
            ..FakeDom::default()
        };
        let i = assemble(&d, &p).unwrap();
        assert_eq!(*d.calls.borrow(), ["info", "vcpus_max", "memory_stats"]);
        // Bulk wins where it has the field (paused), info fills the rest.
        assert_eq!(i.state, DomainState::Paused);
        assert_eq!((i.vcpus_current, i.vcpus_max), (2, 2));
        assert_eq!(
            (i.mem_max_kib, i.mem_current_kib, i.mem_used_kib),
            (4096, 2048, 1536)
        );
        assert_eq!(i.cpu_time_ns, 7);
        // Shut off: no memory stats call (an inactive domain has none).
        let d = FakeDom::default();
        let i = assemble(&d, &params(&[("state.state", 5)])).unwrap();
        assert_eq!(*d.calls.borrow(), ["info", "vcpus_max"]);
        assert_eq!(i.mem_used_kib, 2048);
        // Vanished: the error propagates so the caller can skip the domain.
        let d = FakeDom {
            gone: true,
            ..FakeDom::default()
        };
        assert_eq!(assemble(&d, &p), Err("gone"));
    }

    #[test]
    fn io_counters_summed_over_devices() {
        // QEMU-shaped bulk stats: two disks, no NIC.
        let p = params(&[
            ("block.count", 2),
            ("block.0.rd.reqs", 10),
            ("block.0.rd.bytes", 4096),
            ("block.0.wr.reqs", 3),
            ("block.0.wr.bytes", 1536),
            ("block.0.capacity", 1 << 30),
            ("block.0.allocation", 1 << 20),
            ("block.1.rd.reqs", 5),
            ("block.1.rd.bytes", 512),
            ("block.1.capacity", 1 << 20),
            ("net.count", 0),
        ]);
        let io = io_from_params(&p).unwrap();
        assert_eq!(
            io.disk,
            Some(DiskCounters {
                rd_reqs: 15,
                rd_bytes: 4608,
                wr_reqs: 3,
                wr_bytes: 1536,
                errs: 0,
                capacity_bytes: (1 << 30) + (1 << 20),
                allocation_bytes: 1 << 20,
            })
        );
        assert_eq!(io.net, None);
        let p = params(&[
            ("net.count", 1),
            ("net.0.rx.bytes", 100),
            ("net.0.tx.pkts", 7),
            ("net.0.rx.drop", u64::MAX),
        ]);
        let n = io_from_params(&p).unwrap().net.unwrap();
        assert_eq!((n.rx_bytes, n.tx_pkts, n.rx_drop), (100, 7, u64::MAX));
        // The test driver's state-only records: no I/O at all.
        assert_eq!(io_from_params(&params(&[("state.state", 1)])), None);
    }

    #[test]
    fn memory_used_sources() {
        // Guest reports unused: actual - unused.
        assert_eq!(memory_used_kib(1000, Some(1000), Some(300), Some(900)), 700);
        // Balloon actual below current (deflating): still capped by current.
        assert_eq!(memory_used_kib(1000, Some(800), Some(100), None), 700);
        // Unused larger than actual: 0, not an underflow.
        assert_eq!(memory_used_kib(1000, Some(100), Some(300), None), 0);
        // Only RSS: capped at current (QEMU overhead is not guest memory).
        assert_eq!(memory_used_kib(1000, None, None, Some(400)), 400);
        assert_eq!(memory_used_kib(1000, None, None, Some(4000)), 1000);
        // Nothing: current.
        assert_eq!(memory_used_kib(1000, None, None, None), 1000);
    }
}
