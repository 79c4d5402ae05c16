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

mod net;
mod serve;
mod tasks;
mod vm;

pub use serve::ClientLimits;
pub use vm::{VmFeed, VmSource, LIBVIRT_NOT_BUILT};

use crate::iostats::IoStats;
use crate::selfmetrics;
use crate::sender::{GroupPlan, Identity, MetricPlan, Sender};
use crate::store::{
    Caps, ClusterInfo, ClusterStore, HostsFileResolver, Resolver, StoreConfig, Timestamp,
};
use crate::vmpublish::VmPublisher;
use gmond_conf::Config;
use gmond_metrics::linux::{self, CoreInfo, LinuxCollector};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
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
    /// The authentication key file is unusable (unreadable, readable by others, not ours,
    /// or not a key file).
    #[error("key file {problem}")]
    KeyFile {
        /// The file given with `--auth`.
        path: std::path::PathBuf,
        /// `FILE:LINE:COLUMN: what` (line 0 for the file as a whole).
        problem: String,
    },
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
    /// Bounds on XML clients; `None`: [`ClientLimits::for_this_process`].
    pub client_limits: Option<ClientLimits>,
    /// Authenticated datagrams (`--auth`): sign everything sent, admit by channel mode.
    pub auth: Option<crate::auth::AuthOptions>,
    /// gmond-rs.conf (`--rs-conf`): store caps and per-channel spoof ACLs. Check it against
    /// the gmond.conf with [`check_rs_conf`] first.
    pub rs_conf: Option<gmond_conf::RsConfig>,
    /// Run on SIGHUP before returning [`Exit::Reload`]: an error (the new configuration does
    /// not load) is logged and the daemon keeps running with what it has, so a typo never
    /// takes monitoring down. `None`: every SIGHUP reloads.
    pub reload_check: Option<ReloadCheck>,
}

/// See [`RunOptions::reload_check`].
#[derive(Clone)]
pub struct ReloadCheck(pub Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for ReloadCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadCheck")
    }
}

/// What can be known about starting `cfg` without opening a socket: a config this build or
/// these settings cannot run is refused here, at start-up and before a reload.
pub fn check_startable(cfg: &Config) -> Result<(), Error> {
    not_deaf_and_mute(cfg)?;
    if !cfg.effective_mute() {
        vm::plan(cfg, None)?;
    }
    Ok(())
}

/// gmond-rs.conf must fit the gmond.conf beside it: each of its receive-channel policies
/// names the port of a gmond.conf `udp_recv_channel` (a policy that applies to nothing is a
/// mistake the operator should hear about, not a silent no-op).
pub fn check_rs_conf(cfg: &Config, rs: &gmond_conf::RsConfig) -> Result<(), Error> {
    for p in &rs.udp_recv {
        if !cfg.udp_recv.iter().any(|c| c.port == p.port) {
            return Err(Error::Config(format!(
                "{}: udp_recv_channel policy for port {} matches no udp_recv_channel of the \
                 gmond.conf",
                p.location, p.port
            )));
        }
    }
    Ok(())
}

/// The store's caps: the built-in defaults, with what gmond-rs.conf's `store { }` sets.
pub fn store_caps(rs: Option<&gmond_conf::RsConfig>) -> Caps {
    let mut caps = Caps::default();
    let Some(l) = rs.map(|r| &r.store) else {
        return caps;
    };
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(v) = l.max_hosts {
        caps.max_hosts = size(v);
    }
    if let Some(v) = l.max_metrics_per_host {
        caps.max_metrics_per_host = size(v);
    }
    if let Some(v) = l.max_metrics {
        caps.max_metrics_total = size(v);
    }
    if let Some(v) = l.max_memory_mb {
        caps.max_bytes = size(v.saturating_mul(1 << 20));
    }
    if let Some(v) = l.max_pending_requests {
        caps.max_pending_transmit = size(v);
        caps.max_pending_requested = size(v);
    }
    caps
}

/// See [`RunOptions::detach`].
#[derive(Clone)]
pub struct Detach(pub Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for Detach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Detach")
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

/// What a daemon bound, reported once every socket is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The host name it reports as (`IP:name` when spoofed).
    pub host: String,
    /// UDP receive channels.
    pub udp: Vec<SocketAddr>,
    /// XML (TCP accept) channels.
    pub tcp: Vec<SocketAddr>,
    /// Query channels (gmond-rs.conf `query_channel`).
    pub query: Vec<SocketAddr>,
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
    not_deaf_and_mute(&cfg)?;
    // Decided before any socket opens: a build without libvirt refuses libvirt_module here.
    let vm_plan = if cfg.effective_mute() {
        None // nothing to publish VM metrics on
    } else {
        vm::plan(&cfg, vm_feed)?
    };
    let stats = Arc::new(IoStats::default());
    let net::Sockets {
        outbound,
        receivers,
        listeners,
        queries,
    } = net::Sockets::open(
        &cfg,
        opts.rs_conf.as_ref().map_or(&[], |rs| rs.query.as_slice()),
        stats.clone(),
        opts.auth.as_ref(),
    )?;
    if let Some(Detach(detach)) = &opts.detach {
        detach().map_err(|source| Error::Runtime {
            what: "daemonize",
            source,
        })?;
    }
    let store = new_store(&cfg, &opts)?;
    let id = Identity::new(
        &linux::hostname(),
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
        query: queries
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect(),
    };
    let shared = tasks::Shared {
        store,
        outbound,
        stats,
        stop: stop.clone(),
        // Embedded daemons check for a stop at least this often; the stand-alone one keeps
        // its long sleeps (the process ends on a signal anyway).
        max_wait: if embedded {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(20)
        },
    };

    // Metadata requests go to every part of this daemon that sends metrics, through bounded
    // queues (anyone on the segment can send requests; the surplus is dropped and counted).
    // The VM queue exists only when a VM thread drains it.
    let (req_tx, req_rx) = mpsc::sync_channel::<Box<[u8]>>(crate::ingest::REQUEST_QUEUE);
    let vm = vm_plan.map(|plan| {
        let (tx, rx) = mpsc::sync_channel::<Box<[u8]>>(crate::ingest::REQUEST_QUEUE);
        (plan, tx, rx)
    });
    let mut requests = vec![req_tx];
    requests.extend(vm.as_ref().map(|(_, tx, _)| tx.clone()));
    let mut threads = tasks::Threads::default();
    start_receivers(&mut threads, receivers, &opts, &shared, embedded, &requests)?;
    drop(requests);
    let own = OwnMetrics {
        cfg: &cfg,
        opts: &opts,
        id,
        start: SystemTime::now(),
    };
    start_senders(
        &mut threads,
        own,
        &shared,
        vm.map(|(p, _, rx)| (p, rx)),
        req_rx,
    )?;

    let limits = opts
        .client_limits
        .unwrap_or_else(ClientLimits::for_this_process);
    let exit = serve::serve_until_exit(
        listeners,
        queries,
        &shared,
        limits,
        embedded,
        opts.reload_check.clone(),
        || {
            if let Some(ready) = on_ready {
                ready(&bound);
            }
        },
    )?;
    tracing::info!(reason = ?exit, host = %bound.host, "gmond-rs stopping");
    if embedded {
        stop.stop();
        threads.join();
    }
    Ok(exit)
}

/// The cluster store, shared by the receive threads, the sender and the XML server.
fn new_store(cfg: &Config, opts: &RunOptions) -> Result<Arc<RwLock<ClusterStore>>, Error> {
    let store_cfg = StoreConfig {
        // Every request the store queues goes out signed: leave the trailer's room.
        transmit_reserve: trailer_reserve(opts),
        caps: store_caps(opts.rs_conf.as_ref()),
        ..store_config(cfg)
    };
    tracing::info!(caps = ?store_cfg.caps, "cluster store limits");
    Ok(Arc::new(RwLock::new(ClusterStore::with_resolver(
        store_cfg,
        host_resolver(opts)?,
    ))))
}

/// Bytes every signed datagram leaves free for the authentication trailer (0 unsigned).
fn trailer_reserve(opts: &RunOptions) -> usize {
    match opts.auth {
        Some(_) => ganglia_wire::auth::TRAILER_LEN,
        None => 0,
    }
}

/// One receive thread per channel, with its ACL and authentication gate; the metadata
/// requests it hears go to every queue in `requests`.
fn start_receivers(
    threads: &mut tasks::Threads,
    receivers: Vec<(std::net::UdpSocket, Option<gmond_conf::Acl>, String)>,
    opts: &RunOptions,
    shared: &tasks::Shared,
    embedded: bool,
    requests: &[mpsc::SyncSender<Box<[u8]>>],
) -> Result<(), Error> {
    let gates = opts.auth.as_ref().map(crate::auth::Gate::shared);
    for (sock, acl, name) in receivers {
        let gate = match (&gates, &opts.auth) {
            (Some(g), Some(a)) => {
                let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
                let mode = a.mode_for(port);
                tracing::info!(channel = %name, port, ?mode, "authenticated datagrams");
                Some(g(mode))
            }
            _ => None,
        };
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
        let spoof_acl = opts
            .rs_conf
            .as_ref()
            .and_then(|rs| rs.recv_policy(port))
            .and_then(|p| p.spoof_acl.clone());
        if spoof_acl.is_some() {
            tracing::info!(channel = %name, port, "spoofing limited by gmond-rs.conf's spoof_acl");
        }
        let s = shared.clone();
        let req_txs = requests.to_vec();
        threads.spawn(name, "receive thread", move || {
            // Embedded daemons check for a stop between receive timeouts; the stand-alone
            // one blocks in the receive call (the process ends on a signal).
            let check = || s.stop.is_stopped();
            crate::ingest::receive_loop(
                sock,
                crate::ingest::ChannelRules {
                    acl,
                    spoof_acl,
                    gate,
                },
                &s.store,
                &|d| s.outbound.send(d),
                &s.stats,
                &req_txs,
                embedded.then_some(&check as &dyn Fn() -> bool),
            )
        })?;
    }
    Ok(())
}

/// What this host's own metrics need: its configuration, identity and start time.
struct OwnMetrics<'a> {
    cfg: &'a Config,
    opts: &'a RunOptions,
    id: Identity,
    start: SystemTime,
}

/// The threads that send: this host's own metrics (the sender, which also runs the store's
/// cleanup), its VMs' metrics when there is a VM source, and the archiver with
/// `--rrd-rootdir`.
fn start_senders(
    threads: &mut tasks::Threads,
    own: OwnMetrics<'_>,
    shared: &tasks::Shared,
    vm: Option<(vm::VmPlan, mpsc::Receiver<Box<[u8]>>)>,
    requests: mpsc::Receiver<Box<[u8]>>,
) -> Result<(), Error> {
    let OwnMetrics {
        cfg,
        opts,
        id,
        start,
    } = own;
    let reserve = trailer_reserve(opts);
    let max_udp = usize::from(cfg.globals.max_udp_msg_len);
    if let Some((plan, vm_requests)) = vm {
        let publisher =
            VmPublisher::new(id.clone(), plan.metadata_resend, max_udp).reserving(reserve);
        let s = shared.clone();
        threads.spawn(plan.thread, "VM metrics thread", move || {
            // Opened on this thread: a libvirt connection blocks and stays off the others.
            let mut source = (plan.open)();
            tasks::vm_loop(source.as_mut(), publisher, plan.every, &vm_requests, &s);
        })?;
    }
    let location = opts.location.clone().unwrap_or(cfg.host.location.clone());
    let collector = LinuxCollector::new(opts.proc_root.clone().unwrap_or_else(|| "/".into()))
        .with_core(CoreInfo {
            start_time: Some(Timestamp::from_system_time(start).as_secs() as u32),
            location,
            gexec: cfg.globals.gexec,
        });
    let mute = cfg.effective_mute();
    let sender = Sender::new(
        id,
        if mute { Vec::new() } else { group_plans(cfg) },
        cfg.globals.send_metadata_interval,
        max_udp,
        Timestamp::from_system_time(start),
    )
    .reserving(reserve);
    let s = shared.clone();
    threads.spawn("sender", "sender thread", move || {
        tasks::sender_loop(sender, collector, requests, &s)
    })?;
    if let Some(root) = opts.rrd_rootdir.clone() {
        let s = shared.clone();
        threads.spawn("archiver", "archiver thread", move || {
            tasks::archive_loop(&crate::archive::Archiver::new(root), &s)
        })?;
    }
    Ok(())
}

fn not_deaf_and_mute(cfg: &Config) -> Result<(), Error> {
    match cfg.globals.mute && cfg.globals.deaf {
        true => Err(Error::Config("deaf and mute at once: nothing to do".into())),
        false => Ok(()),
    }
}

/// How the store names hosts, as gmond does: the system resolver (hosts file, then DNS) off
/// the receive thread. A hosts file given explicitly (tests, simulations) is the only source.
fn host_resolver(opts: &RunOptions) -> Result<Box<dyn Resolver + Send + Sync>, Error> {
    let hosts_path = opts
        .hosts_file
        .clone()
        .unwrap_or_else(|| "/etc/hosts".into());
    let from_file =
        HostsFileResolver::parse(&std::fs::read_to_string(&hosts_path).unwrap_or_default());
    if opts.hosts_file.is_some() {
        return Ok(Box::new(from_file));
    }
    let background =
        crate::ingest::BackgroundResolver::spawn(from_file, Box::new(crate::ingest::system_lookup))
            .map_err(|source| Error::Runtime {
                what: "resolver thread",
                source,
            })?;
    Ok(Box::new(background))
}
