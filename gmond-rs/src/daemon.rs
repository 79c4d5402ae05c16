//! The daemon: the only part of gmond-rs that touches sockets, the clock and signals.
//!
//! Threads, not one event loop, where that is cheaper: each UDP receive channel has a thread
//! taking batches with `recvmmsg` (see [`crate::ingest`]) that feeds the shared store; one
//! sender thread collects this host's metrics on schedule and runs the store's cleanup ticks;
//! the XML port is served by tokio, so many slow clients cost tasks, not threads, and none
//! blocks another. The store sits in an `Arc<RwLock<_>>`: ingest takes the write lock once
//! per batch (and never waits behind a dump: it keeps a backlog while one renders), a dump
//! renders into memory under the read lock (once per second and state generation, shared by
//! every client of that second) and writes to sockets after releasing it.

use crate::selfmetrics;
use crate::sender::{GroupPlan, Identity, MetricPlan, Sender};
use crate::store::{ClusterInfo, ClusterStore, HostsFileResolver, StoreConfig, Timestamp};
use crate::vmpublish::VmPublisher;
use gmond_conf::{Acl, Config, SendTarget, TcpAcceptChannel, UdpRecvChannel};
use gmond_metrics::hypervisor::HypervisorError;
use gmond_metrics::linux::{self, CoreInfo, LinuxCollector, MetricSpec};
use gmond_metrics::vmetrics::VmMetric;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A channel's socket could not be set up (bind, join, option).
    #[error("{channel}: {what}: {source}")]
    Socket {
        channel: String,
        what: &'static str,
        source: std::io::Error,
    },
    /// The configuration asks for something this build cannot do.
    #[error("{0}")]
    Config(String),
    /// A thread or the runtime could not be started.
    #[error("{what}: {source}")]
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Command-line settings that override or complement the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-l`: host location.
    pub location: Option<String>,
    /// Root of /proc and /sys for collection ("/" normally; tests use fake trees).
    pub proc_root: Option<std::path::PathBuf>,
    /// Resolver input; defaults to /etc/hosts.
    pub hosts_file: Option<std::path::PathBuf>,
    /// Archive the cluster view every 15 s in gmetad's RRD layout under this directory.
    pub rrd_rootdir: Option<std::path::PathBuf>,
    /// Called once every socket is bound, before any thread starts: where the program forks
    /// into the background, so a bad channel is still reported on its terminal.
    pub detach: Option<Detach>,
}

/// See [`RunOptions::detach`].
#[derive(Clone)]
pub struct Detach(pub Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for Detach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Detach")
    }
}

/// Counters of the daemon's own I/O (the store counts datagrams).
#[derive(Debug, Default)]
pub struct IoStats {
    pub datagrams_sent_total: AtomicU64,
    pub send_errors_total: AtomicU64,
    pub acl_denied_total: AtomicU64,
    pub xml_clients_served_total: AtomicU64,
    pub xml_clients_failed_total: AtomicU64,
}

/// Where this host's datagrams go: every send channel gets every datagram.
struct Outbound {
    channels: Vec<(UdpSocket, SocketAddr)>,
    stats: Arc<IoStats>,
}

impl Outbound {
    fn send(&self, datagram: &[u8]) {
        for (sock, to) in &self.channels {
            match sock.send_to(datagram, to) {
                Ok(_) => {
                    self.stats
                        .datagrams_sent_total
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.send_errors_total.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(to = %to, error = %e, "send failed");
                }
            }
        }
    }
}

/// The store's settings from gmond.conf.
pub fn store_config(cfg: &Config) -> StoreConfig {
    StoreConfig {
        cluster: ClusterInfo {
            name: cfg.cluster.name.clone(),
            owner: cfg.cluster.owner.clone(),
            latlong: cfg.cluster.latlong.clone(),
            url: cfg.cluster.url.clone(),
        },
        tags: cfg.globals.tags.clone().unwrap_or_default(),
        host_dmax: cfg.globals.host_dmax,
        host_tmax: cfg.globals.host_tmax,
        cleanup_threshold: cfg.globals.cleanup_threshold,
        allow_extra_data: cfg.globals.allow_extra_data,
        limits: ganglia_wire::Limits {
            max_datagram: usize::from(cfg.globals.max_udp_msg_len),
            max_string: usize::from(cfg.globals.max_udp_msg_len),
            ..ganglia_wire::Limits::default()
        },
        ..StoreConfig::default()
    }
}

/// The collection groups bound to the metrics this host can collect: the Linux catalogue and
/// gmond-rs's own counters.
pub fn group_plans(cfg: &Config) -> Vec<GroupPlan> {
    let available: Vec<&str> = linux::catalogue()
        .iter()
        .chain(selfmetrics::SELF_METRICS)
        .map(|s| s.name)
        .collect();
    let selection = cfg.select_metrics(&available);
    let mut plans: Vec<GroupPlan> = cfg
        .collection_groups
        .iter()
        .map(|g| GroupPlan {
            collect_once: g.collect_once,
            collect_every: g.collect_every,
            time_threshold: g.time_threshold,
            metrics: Vec::new(),
        })
        .collect();
    for m in selection.metrics {
        let Some(spec) = linux::lookup(&m.name).or_else(|| selfmetrics::lookup(&m.name)) else {
            continue;
        };
        if let Some(plan) = plans.get_mut(m.group) {
            plan.metrics.push(MetricPlan {
                spec,
                title: m.title.unwrap_or_else(|| spec.title.to_owned()),
                value_threshold: m.value_threshold,
            });
        }
    }
    plans.retain(|p| !p.metrics.is_empty());
    plans
}

/// This machine's host name, as gethostname() gives it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM: stop.
    Stopped,
    /// SIGHUP: the caller re-executes the program with its original arguments, as gmond does
    /// to reload its configuration.
    Reload,
}

/// Stops embedded daemons instead of process signals: clone it into as many daemons as share
/// one process, call [`StopHandle::stop`] once, and each [`run_with`] returns.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<StopState>);

#[derive(Debug, Default)]
struct StopState {
    stopped: std::sync::atomic::AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every daemon holding a clone to stop; returns at once.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        let _guard = self.0.lock.lock();
        self.0.wake.notify_all();
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `d` or until stopped, whichever comes first; returns whether stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let Ok(mut guard) = self.0.lock.lock() else {
            return self.is_stopped();
        };
        while !self.is_stopped() {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            guard = match self.0.wake.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(_) => break,
            };
        }
        self.is_stopped()
    }
}

/// Per-VM metrics from somewhere other than libvirt, e.g. one host of a simulated cluster.
/// Called from the daemon's VM thread, so it may block.
pub trait VmSource: Send {
    /// One collection round: the host's `vnode_*` metrics and every VM's metrics.
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError>;
}

/// An injected VM metric source with its schedule; replaces `libvirt_module`.
pub struct VmFeed {
    /// Where the metrics come from.
    pub source: Box<dyn VmSource>,
    /// Time between collection rounds.
    pub every: Duration,
    /// Metadata is re-sent at least this often (receivers count a metric's dmax from it).
    pub metadata_resend: Duration,
}

/// What a daemon bound, reported once every socket is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The host name it reports as (`IP:name` when spoofed).
    pub host: String,
    /// UDP receive channels.
    pub udp: Vec<SocketAddr>,
    /// XML (TCP accept) channels.
    pub tcp: Vec<SocketAddr>,
}

/// How an embedding program runs a daemon: [`run`] is `run_with(cfg, opts, Hooks::default())`.
#[derive(Default)]
pub struct Hooks {
    /// Stop on this handle instead of SIGINT/SIGTERM/SIGHUP (no signal is handled then, and
    /// [`run_with`] returns only after the daemon's threads have ended).
    pub stop: Option<StopHandle>,
    /// Per-VM metrics from this source instead of `libvirt_module`.
    pub vm_feed: Option<VmFeed>,
    /// Called once, when every socket is bound and every thread started.
    pub on_ready: Option<OnReady>,
}

/// See [`Hooks::on_ready`].
pub type OnReady = Box<dyn FnOnce(&Bound) + Send>;

/// Runs the daemon until SIGINT/SIGTERM (or SIGHUP, see [`Exit`]). Every socket is set up
/// before anything starts, so a bad channel stops start-up instead of leaving a
/// half-configured daemon.
pub fn run(cfg: Config, opts: RunOptions) -> Result<Exit, Error> {
    run_with(cfg, opts, Hooks::default())
}

/// [`run`] for programs that embed daemons: stopped through [`Hooks::stop`], VM metrics from
/// [`Hooks::vm_feed`]; sockets still come from `cfg`, exactly as for the stand-alone daemon.
pub fn run_with(cfg: Config, opts: RunOptions, hooks: Hooks) -> Result<Exit, Error> {
    let Hooks {
        stop: external_stop,
        vm_feed,
        on_ready,
    } = hooks;
    let embedded = external_stop.is_some();
    let stop = external_stop.unwrap_or_default();
    // Embedded daemons check for a stop at least this often; the stand-alone one keeps its
    // long sleeps (the process ends on a signal anyway).
    let max_wait = if embedded {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(20)
    };
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    if cfg.globals.mute && cfg.globals.deaf {
        return Err(Error::Config("deaf and mute at once: nothing to do".into()));
    }
    let stats = Arc::new(IoStats::default());
    let mute = cfg.effective_mute();
    let deaf = cfg.globals.deaf;

    let outbound = Arc::new(Outbound {
        channels: if mute {
            Vec::new()
        } else {
            cfg.udp_send
                .iter()
                .enumerate()
                .map(|(i, ch)| send_socket(i, ch))
                .collect::<Result<_, _>>()?
        },
        stats: stats.clone(),
    });
    let receivers: Vec<(UdpSocket, Option<Acl>, String)> = if deaf {
        Vec::new()
    } else {
        cfg.udp_recv
            .iter()
            .enumerate()
            .filter(|(_, ch)| !cfg.is_sflow_channel(ch))
            .map(|(i, ch)| {
                recv_socket(i, ch).map(|s| (s, ch.acl.clone(), format!("udp_recv_channel#{i}")))
            })
            .collect::<Result<_, _>>()?
    };
    let listeners: Vec<(std::net::TcpListener, TcpAcceptChannel)> = if deaf {
        Vec::new()
    } else {
        cfg.tcp_accept
            .iter()
            .enumerate()
            .map(|(i, ch)| tcp_listener(i, ch).map(|l| (l, ch.clone())))
            .collect::<Result<_, _>>()?
    };
    if let Some(Detach(detach)) = &opts.detach {
        detach().map_err(|source| Error::Runtime {
            what: "daemonize",
            source,
        })?;
    }

    let hosts_path = opts
        .hosts_file
        .clone()
        .unwrap_or_else(|| "/etc/hosts".into());
    let resolver =
        HostsFileResolver::parse(&std::fs::read_to_string(&hosts_path).unwrap_or_default());
    // As gmond: the system resolver (hosts file, then DNS) off the receive thread. A hosts
    // file given explicitly (tests, simulations) is the only source.
    let resolver: Box<dyn crate::store::Resolver + Send + Sync> = match opts.hosts_file {
        Some(_) => Box::new(resolver),
        None => Box::new(
            crate::ingest::BackgroundResolver::spawn(
                resolver,
                Box::new(crate::ingest::system_lookup),
            )
            .map_err(|source| Error::Runtime {
                what: "resolver thread",
                source,
            })?,
        ),
    };
    let store = Arc::new(RwLock::new(ClusterStore::with_resolver(
        store_config(&cfg),
        resolver,
    )));

    let start = SystemTime::now();
    let host = hostname();
    let id = Identity::new(
        &host,
        cfg.globals.override_hostname.as_deref(),
        cfg.globals.override_ip.as_deref(),
    );
    tracing::info!(
        host = %id.host,
        spoof = id.spoof,
        send_channels = outbound.channels.len(),
        recv_channels = receivers.len(),
        tcp_channels = listeners.len(),
        "gmond-rs starting"
    );

    // Metadata requests go to every part of this daemon that sends metrics.
    let (req_tx, req_rx) = mpsc::channel::<Box<[u8]>>();
    let (vm_req_tx, vm_req_rx) = mpsc::channel::<Box<[u8]>>();
    let req_txs = vec![req_tx, vm_req_tx];
    let bound = Bound {
        host: id.host.clone(),
        udp: receivers
            .iter()
            .filter_map(|(sock, _, _)| sock.local_addr().ok())
            .collect(),
        tcp: listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect(),
    };
    for (sock, acl, name) in receivers {
        let (store, outbound, stats, req_tx) = (
            store.clone(),
            outbound.clone(),
            stats.clone(),
            req_txs.clone(),
        );
        // Embedded daemons check for a stop between receive timeouts; the stand-alone one
        // blocks in the receive call as before (the process ends on a signal).
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let check = || stop.is_stopped();
                crate::ingest::receive_loop(
                    sock,
                    acl,
                    &store,
                    &|d| outbound.send(d),
                    &stats,
                    &req_tx,
                    embedded.then_some(&check as &dyn Fn() -> bool),
                )
            })
            .map_err(|source| Error::Runtime {
                what: "receive thread",
                source,
            })?;
        threads.push(handle);
    }

    let publisher = |resend: Duration| {
        VmPublisher::new(id.clone(), resend, usize::from(cfg.globals.max_udp_msg_len))
    };
    if mute {
        // Nothing to publish VM metrics on.
    } else if let Some(feed) = vm_feed {
        let VmFeed {
            mut source,
            every,
            metadata_resend,
        } = feed;
        let publisher = publisher(metadata_resend);
        let (outbound, stop) = (outbound.clone(), stop.clone());
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "per-VM metrics from an injected source"
        );
        threads.push(
            std::thread::Builder::new()
                .name("vm-source".into())
                .spawn(move || {
                    let loop_cfg = VmLoop {
                        every,
                        max_wait,
                        requests: &vm_req_rx,
                        outbound: &outbound,
                        stop: &stop,
                    };
                    vm_loop(source.as_mut(), publisher, &loop_cfg);
                })
                .map_err(|source| Error::Runtime {
                    what: "VM source thread",
                    source,
                })?,
        );
    } else if let Some(module) = cfg
        .modules
        .iter()
        .find(|m| m.enabled && m.name == "libvirt_module")
    {
        let uri = module.param("uri").unwrap_or("qemu:///system").to_owned();
        let every = module
            .param("collect_every")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(20), Duration::from_secs);
        let publisher = publisher(Duration::from_secs(120));
        let (outbound, stop) = (outbound.clone(), stop.clone());
        tracing::info!(uri = %uri, every_s = every.as_secs(), "per-VM metrics through libvirt");
        threads.push(
            std::thread::Builder::new()
                .name("libvirt".into())
                .spawn(move || {
                    // Opened on this thread: libvirt calls block and stay off the others.
                    let mut source = LibvirtSource::new(&uri);
                    let loop_cfg = VmLoop {
                        every,
                        max_wait,
                        requests: &vm_req_rx,
                        outbound: &outbound,
                        stop: &stop,
                    };
                    vm_loop(&mut source, publisher, &loop_cfg);
                })
                .map_err(|source| Error::Runtime {
                    what: "libvirt thread",
                    source,
                })?,
        );
    }

    let location = opts.location.clone().unwrap_or(cfg.host.location.clone());
    let collector = LinuxCollector::new(opts.proc_root.clone().unwrap_or_else(|| "/".into()))
        .with_core(CoreInfo {
            start_time: Some(Timestamp::from_system_time(start).as_secs() as u32),
            location,
            gexec: cfg.globals.gexec,
        });
    let sender = Sender::new(
        id,
        if mute { Vec::new() } else { group_plans(&cfg) },
        cfg.globals.send_metadata_interval,
        usize::from(cfg.globals.max_udp_msg_len),
        Timestamp::from_system_time(start),
    );
    {
        let (store, outbound, stats, stop) =
            (store.clone(), outbound.clone(), stats.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("sender".into())
                .spawn(move || {
                    sender_loop(
                        sender, collector, req_rx, &store, &outbound, &stats, &stop, max_wait,
                    )
                })
                .map_err(|source| Error::Runtime {
                    what: "sender thread",
                    source,
                })?,
        );
    }

    if let Some(root) = opts.rrd_rootdir.clone() {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("archiver".into())
                .spawn(move || archive_loop(&crate::archive::Archiver::new(root), &store, &stop))
                .map_err(|source| Error::Runtime {
                    what: "archiver thread",
                    source,
                })?,
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if embedded { 1 } else { 2 })
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime {
            what: "tokio runtime",
            source,
        })?;
    if let Some(ready) = on_ready {
        ready(&bound);
    }
    let waiter = stop.clone();
    let exit = rt.block_on(async move {
        let cache = Arc::new(Mutex::new(RenderCache::default()));
        for (listener, ch) in listeners {
            let (store, stats, cache) = (store.clone(), stats.clone(), cache.clone());
            tokio::spawn(serve_xml(listener, ch, store, stats, cache));
        }
        if embedded {
            while !waiter.is_stopped() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Exit::Stopped
        } else {
            wait_for_signal().await
        }
    });
    tracing::info!(reason = ?exit, host = %bound.host, "gmond-rs stopping");
    if embedded {
        // Closes the XML listeners before returning, so their ports are free again.
        rt.shutdown_timeout(Duration::from_secs(1));
        stop.stop();
        for t in threads {
            let _ = t.join();
        }
    }
    Ok(exit)
}

async fn wait_for_signal() -> Exit {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut term), Ok(mut int), Ok(mut hup)) => {
            tokio::select! {
                _ = term.recv() => Exit::Stopped,
                _ = int.recv() => Exit::Stopped,
                _ = hup.recv() => Exit::Reload,
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            Exit::Stopped
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sender_loop(
    mut sender: Sender,
    mut collector: LinuxCollector,
    requests: mpsc::Receiver<Box<[u8]>>,
    store: &RwLock<ClusterStore>,
    outbound: &Outbound,
    io: &IoStats,
    stop: &StopHandle,
    max_wait: Duration,
) {
    while !stop.is_stopped() {
        let now = Timestamp::from_system_time(SystemTime::now());
        let mut collect = |spec: &'static MetricSpec| {
            if spec.module == "gmond_rs" {
                let s = store.read().ok()?;
                return selfmetrics::value(spec.name, s.stats(), io);
            }
            match collector.collect(spec.name, SystemTime::now()) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(metric = spec.name, error = %e, "collect failed");
                    None
                }
            }
        };
        for d in sender.poll(now, &mut collect) {
            outbound.send(&d);
        }
        if let Ok(mut s) = store.write() {
            s.handle_timeout(now);
        }
        // Sleep until the next group or cleanup is due, waking early for metadata requests.
        let next = [
            sender.next_deadline(),
            store.read().ok().and_then(|s| s.next_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = next
            .map(|t| t.saturating_since(Timestamp::from_system_time(SystemTime::now())))
            .unwrap_or(Duration::from_secs(20))
            .clamp(Duration::from_millis(10), max_wait);
        match requests.recv_timeout(wait) {
            Ok(name) => {
                sender.metadata_requested(&name);
                while let Ok(more) = requests.try_recv() {
                    sender.metadata_requested(&more);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // No receive thread (deaf): just keep the schedule.
                stop.sleep(wait);
            }
        }
    }
}

/// The libvirt module's VM source: a lazily connecting, reconnecting read-only connection.
struct LibvirtSource {
    hv: gmond_metrics::hypervisor::libvirt::LibvirtHypervisor,
    tracker: gmond_metrics::vmetrics::UtilTracker,
}

impl LibvirtSource {
    fn new(uri: &str) -> Self {
        use gmond_metrics::hypervisor::libvirt::{BackoffPolicy, LibvirtHypervisor};
        LibvirtSource {
            hv: LibvirtHypervisor::open_lazy(uri, BackoffPolicy::default()),
            tracker: gmond_metrics::vmetrics::UtilTracker::new(),
        }
    }
}

impl VmSource for LibvirtSource {
    fn collect(&mut self) -> Result<Vec<VmMetric>, HypervisorError> {
        let clock_ns = || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        self.hv.collect_round(&mut self.tracker, clock_ns)
    }
}

/// The VM thread's schedule and outputs.
struct VmLoop<'a> {
    every: Duration,
    max_wait: Duration,
    requests: &'a mpsc::Receiver<Box<[u8]>>,
    outbound: &'a Outbound,
    stop: &'a StopHandle,
}

/// Collects the VM metrics every `every` and sends them. Sources may block (libvirt does),
/// which is why this has its own thread; an unreachable libvirtd is logged once by the
/// reconnecting hypervisor and retried with backoff while the rest of the daemon carries on.
fn vm_loop(source: &mut dyn VmSource, mut publisher: VmPublisher, l: &VmLoop<'_>) {
    while !l.stop.is_stopped() {
        match source.collect() {
            Ok(metrics) => {
                let now = Timestamp::from_system_time(SystemTime::now());
                for d in publisher.encode_round(now, &metrics) {
                    l.outbound.send(&d);
                }
            }
            Err(e) => tracing::debug!(error = %e, "no VM metrics this round"),
        }
        let deadline = std::time::Instant::now() + l.every;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if l.stop.is_stopped() {
                return;
            }
            match l.requests.recv_timeout(left.min(l.max_wait)) {
                Ok(name) => publisher.metadata_requested(&name),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    l.stop.sleep(left.min(l.max_wait));
                }
            }
        }
    }
}

/// Every 15 s (gmetad's step), the view as a document, into RRD files.
fn archive_loop(
    archiver: &crate::archive::Archiver,
    store: &RwLock<ClusterStore>,
    stop: &StopHandle,
) {
    let step = crate::archive::STEP;
    loop {
        let now = Timestamp::from_system_time(SystemTime::now());
        let next = Timestamp::from_secs((now.as_secs() / step + 1) * step);
        if stop.sleep(next.saturating_since(now)) {
            return;
        }
        let xml = match store.read() {
            Ok(s) => s.render_xml(next, Vec::new()).unwrap_or_default(),
            Err(_) => return,
        };
        match ganglia_wire::xml::read_document(&xml) {
            Ok(doc) => {
                for c in &doc.clusters {
                    let r = archiver.archive(c);
                    tracing::debug!(
                        updated = r.updated,
                        created = r.created,
                        skipped = r.skipped,
                        "rrd round"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot archive: own XML unreadable"),
        }
    }
}

/// The last rendered document, shared by every client of the same second and generation.
#[derive(Default)]
struct RenderCache {
    key: Option<(u64, u64)>,
    doc: Arc<Vec<u8>>,
}

fn render(store: &RwLock<ClusterStore>, cache: &Mutex<RenderCache>) -> Arc<Vec<u8>> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let Ok(mut cache) = cache.lock() else {
        return Arc::new(Vec::new());
    };
    if let Ok(mut s) = store.write() {
        s.prepare_xml();
    }
    let Ok(s) = store.read() else {
        return Arc::new(Vec::new());
    };
    let key = (now.as_secs(), s.generation());
    if cache.key == Some(key) {
        return cache.doc.clone();
    }
    let doc = Arc::new(
        s.render_xml(now, Vec::with_capacity(cache.doc.len()))
            .unwrap_or_default(),
    );
    cache.key = Some(key);
    cache.doc = doc.clone();
    doc
}

async fn serve_xml(
    listener: std::net::TcpListener,
    ch: TcpAcceptChannel,
    store: Arc<RwLock<ClusterStore>>,
    stats: Arc<IoStats>,
    cache: Arc<Mutex<RenderCache>>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port = ch.port, error = %e, "cannot serve XML");
            return;
        }
    };
    let ch = Arc::new(ch);
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let allowed = match (&ch.acl, peer.ip()) {
            (Some(acl), IpAddr::V4(ip)) => acl.allows(ip),
            _ => true,
        };
        if !allowed {
            stats.acl_denied_total.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (store, stats, cache, ch) = (store.clone(), stats.clone(), cache.clone(), ch.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let doc = match tokio::task::spawn_blocking(move || render(&store, &cache)).await {
                Ok(d) => d,
                Err(_) => return,
            };
            let body: Arc<Vec<u8>> = if ch.gzip_output {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = gz.write_all(&doc);
                Arc::new(gz.finish().unwrap_or_default())
            } else {
                doc
            };
            let write = async {
                conn.write_all(&body).await?;
                conn.shutdown().await
            };
            // gmond's `timeout` (µs) bounds each client; without one, a client that never
            // reads still cannot hold more than its socket buffers, and others are unaffected.
            let result = match ch.timeout {
                Some(t) => tokio::time::timeout(t, write)
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => write.await,
            };
            match result {
                Ok(()) => stats
                    .xml_clients_served_total
                    .fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "XML client failed");
                    stats
                        .xml_clients_failed_total
                        .fetch_add(1, Ordering::Relaxed)
                }
            };
        });
    }
}

fn socket_err(channel: String, what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Socket {
        channel,
        what,
        source,
    }
}

/// An interface's index, for multicast joins by interface name.
fn ifindex(name: &str) -> Result<u32, std::io::Error> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad ifindex for {name}")))
}

fn send_socket(
    i: usize,
    ch: &gmond_conf::UdpSendChannel,
) -> Result<(UdpSocket, SocketAddr), Error> {
    let label = format!("udp_send_channel#{i}");
    let to: SocketAddr = match &ch.target {
        SendTarget::Multicast(ip) => SocketAddr::new(*ip, ch.port),
        SendTarget::Unicast(host) => (host.as_str(), ch.port)
            .to_socket_addrs()
            .map_err(socket_err(label.clone(), "resolve host"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| Error::Config(format!("{label}: {host} has no IPv4 address")))?,
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err(label.clone(), "socket"))?;
    if let Some(bind) = &ch.bind {
        let ip: Ipv4Addr = bind
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {bind:?} is not an IPv4 address")))?;
        sock.bind(&SockAddr::from(SocketAddrV4::new(ip, 0)))
            .map_err(socket_err(label.clone(), "bind"))?;
    }
    if to.ip().is_multicast() {
        sock.set_multicast_ttl_v4(u32::from(ch.ttl))
            .map_err(socket_err(label.clone(), "multicast ttl"))?;
        if let Some(ifname) = &ch.mcast_if {
            sock.bind_device(Some(ifname.as_bytes()))
                .map_err(socket_err(label.clone(), "mcast_if"))?;
        }
    } else {
        sock.set_ttl(u32::from(ch.ttl).max(1))
            .map_err(socket_err(label.clone(), "ttl"))?;
    }
    Ok((sock.into(), to))
}

fn recv_socket(i: usize, ch: &UdpRecvChannel) -> Result<UdpSocket, Error> {
    let label = format!("udp_recv_channel#{i}");
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err(label.clone(), "socket"))?;
    sock.set_reuse_address(true)
        .map_err(socket_err(label.clone(), "SO_REUSEADDR"))?;
    if let Some(bytes) = ch.buffer {
        sock.set_recv_buffer_size(bytes as usize)
            .map_err(socket_err(label.clone(), "SO_RCVBUF"))?;
    }
    let bind_ip: Ipv4Addr = match &ch.bind {
        Some(b) => b
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {b:?} is not an IPv4 address")))?,
        None => Ipv4Addr::UNSPECIFIED,
    };
    sock.bind(&SockAddr::from(SocketAddrV4::new(bind_ip, ch.port)))
        .map_err(socket_err(label.clone(), "bind"))?;
    if let Some(IpAddr::V4(group)) = ch.mcast_join {
        let iface = match &ch.mcast_if {
            Some(name) => socket2::InterfaceIndexOrAddress::Index(
                ifindex(name).map_err(socket_err(label.clone(), "mcast_if"))?,
            ),
            None => socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
        };
        sock.join_multicast_v4_n(&group, &iface)
            .map_err(socket_err(label.clone(), "multicast join"))?;
    }
    Ok(sock.into())
}

fn tcp_listener(i: usize, ch: &TcpAcceptChannel) -> Result<std::net::TcpListener, Error> {
    let label = format!("tcp_accept_channel#{i}");
    let ip: Ipv4Addr = match &ch.bind {
        Some(b) => b
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {b:?} is not an IPv4 address")))?,
        None => Ipv4Addr::UNSPECIFIED,
    };
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(socket_err(label.clone(), "socket"))?;
    sock.set_reuse_address(true)
        .map_err(socket_err(label.clone(), "SO_REUSEADDR"))?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(ip, ch.port)))
        .map_err(socket_err(label.clone(), "bind"))?;
    sock.listen(128)
        .map_err(socket_err(label.clone(), "listen"))?;
    sock.set_nonblocking(true)
        .map_err(socket_err(label, "nonblocking"))?;
    Ok(sock.into())
}
