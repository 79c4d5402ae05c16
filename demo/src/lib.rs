//! The embedded demo behind `cargo run --release`: several simulated hypervisor hosts, each a
//! real gmond-rs daemon ([`gmond_rs::daemon::run_with`]) on its own 127.0.0.x address, unicasting
//! the Ganglia protocol to the others; VMs from PlanetLab traces on a shared simulated
//! hypervisor, one host spiking; one balancer agent per host in `auto` mode; a live view read
//! back from the cluster's XML feed on 127.0.0.1.
//!
//! Nothing here binds or sends to a non-loopback address: every channel of every daemon, and
//! every agent socket, is bound to its host's 127.0.0.x address.

pub mod agents;
pub mod cluster;
pub mod net;
pub mod source;
pub mod summary;
pub mod tui;
pub mod view;

use cluster::{BuiltCluster, ClusterSpec, LoadSource};
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_rs::daemon::{self, Bound, Error, Hooks, RunOptions, StopHandle, VmFeed};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
pub use summary::Summary;

/// Default number of hosts.
pub const DEFAULT_HOSTS: usize = 4;
/// Default number of VMs.
pub const DEFAULT_VMS: usize = 16;
/// Default simulated seconds per wall second.
pub const DEFAULT_SPEEDUP: f64 = 10.0;
/// Wall seconds after start when the spike begins: long enough for every host to publish
/// a first utilisation figure, short enough to see the rebalancing within a minute.
pub const SPIKE_AFTER_WALL_S: f64 = 8.0;
/// How many events the live view keeps.
const EVENTS_SHOWN: usize = 12;

/// The demo's options (the command line of `ganglia-demo`).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Hypervisor hosts, 1..=32.
    pub hosts: usize,
    /// VMs, spread round-robin.
    pub vms: usize,
    /// Policy file (TOML) or built-in policy name; `None`: the built-in `hotspot`.
    pub policy: Option<String>,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// Draw the live view (otherwise plain logs).
    pub tui: bool,
    /// Port of the XML feed on 127.0.0.1 (and of every host's channels); the next free one
    /// is used when it is taken.
    pub port: u16,
    /// Stop after this long and print the summary.
    pub duration: Option<Duration>,
    /// Seed of every random choice.
    pub seed: u64,
    /// PlanetLab day directory; `None`: the shipped one.
    pub trace_dir: Option<PathBuf>,
    /// Write plain-text frames to this file (replaced) every 10 s and at the end.
    pub capture: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            hosts: DEFAULT_HOSTS,
            vms: DEFAULT_VMS,
            policy: None,
            speedup: DEFAULT_SPEEDUP,
            tui: true,
            port: 8649,
            duration: None,
            seed: 1,
            trace_dir: None,
            capture: None,
        }
    }
}

impl DemoOptions {
    /// Checks ranges; the message says which option is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=net::MAX_HOSTS).contains(&self.hosts) {
            return Err(Error::Config(format!(
                "--hosts {}: the demo runs 1 to {} hosts",
                self.hosts,
                net::MAX_HOSTS
            )));
        }
        if !(1..=1000).contains(&self.vms) {
            return Err(Error::Config(format!("--vms {}: 1 to 1000", self.vms)));
        }
        if !(self.speedup.is_finite() && (0.1..=1000.0).contains(&self.speedup)) {
            return Err(Error::Config(format!(
                "--speedup {}: 0.1 to 1000",
                self.speedup
            )));
        }
        if self.port == 0 {
            return Err(Error::Config("--port 0: give a port number".into()));
        }
        Ok(())
    }

    /// Wall time between VM metric rounds: 10 simulated seconds, between 0.5 s and 20 s of
    /// wall time. Faster than the balancers' tick, so that a finished migration shows in the
    /// view before the next decision.
    fn vm_every(&self) -> Duration {
        Duration::from_secs_f64((10.0 / self.speedup).clamp(0.5, 20.0))
    }

    /// Wall time between balancer ticks: 20 simulated seconds, at least 1 s.
    fn agent_every(&self) -> Duration {
        Duration::from_secs_f64((20.0 / self.speedup).clamp(1.0, 60.0))
    }
}

/// Something that happened, for the live view and the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoEvent {
    /// Simulated ms.
    pub sim_ms: u64,
    /// What happened.
    pub text: String,
}

/// State shared by the clock, the balancers and the view.
struct Shared {
    sim: Arc<Mutex<SimCluster>>,
    tracker: Mutex<summary::Tracker>,
    events: Mutex<VecDeque<DemoEvent>>,
    /// Why each VM is moving (from the leader's plan), by VM name.
    reasons: Mutex<BTreeMap<String, String>>,
    host_names: Vec<String>,
    log_events: bool,
}

impl Shared {
    fn event(&self, sim_ms: u64, text: String) {
        if self.log_events {
            tracing::info!(sim_s = sim_ms / 1000, "{text}");
        }
        if let Ok(mut ev) = self.events.lock() {
            ev.push_back(DemoEvent { sim_ms, text });
            while ev.len() > 200 {
                ev.pop_front();
            }
        }
    }
}

/// Runs the demo until `stop` (Ctrl-C in the binary) or `opts.duration`, and returns the
/// summary. Start-up problems that have a fallback (port taken, traces missing) are reported on
/// stderr and the demo carries on; others are errors.
pub fn run(opts: &DemoOptions, stop: &StopHandle) -> Result<Summary, Error> {
    opts.validate()?;
    let mut notes: Vec<String> = Vec::new();
    let trace_dir = opts
        .trace_dir
        .clone()
        .unwrap_or_else(cluster::default_trace_dir);
    let spike_at_ms = (SPIKE_AFTER_WALL_S * opts.speedup * 1000.0) as u64;
    let built = cluster::build(&ClusterSpec {
        hosts: opts.hosts,
        vms: opts.vms,
        seed: opts.seed,
        trace_dir: Some(trace_dir),
        spike_at_ms,
    })
    .map_err(Error::Config)?;
    match &built.load {
        LoadSource::PlanetLab(dir) => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            // Relative to where the demo was started, when below it (as from `cargo run`).
            let shown = std::env::current_dir()
                .ok()
                .and_then(|cwd| dir.strip_prefix(cwd).ok().map(PathBuf::from))
                .unwrap_or_else(|| dir.clone());
            notes.push(format!(
                "load: PlanetLab (CoMon) CPU traces, one per VM, from {}",
                shown.display()
            ));
        }
        LoadSource::Synthetic(why) => {
            let msg = format!(
                "PlanetLab traces unavailable ({why}); using synthetic load instead \
                 (give the day directory with --trace DIR)"
            );
            eprintln!("ganglia-demo: {msg}");
            notes.push(format!("load: synthetic ({why})"));
        }
    }
    let port = net::choose_port(opts.port, opts.hosts).ok_or_else(|| {
        Error::Config(format!(
            "no free port in {}..{} on 127.0.0.1 and the demo's 127.0.0.x addresses",
            opts.port,
            opts.port.saturating_add(net::PORT_TRIES)
        ))
    })?;
    if port != opts.port {
        let msg = format!(
            "port {} is taken on 127.0.0.1 (another gmond?); using port {port} instead",
            opts.port
        );
        eprintln!("ganglia-demo: {msg}");
        notes.push(msg);
    }
    let policy = agents::resolve_policy(opts.policy.as_deref())?;

    let BuiltCluster {
        sim,
        host_names,
        spike_host,
        spike_at_ms,
        load: _,
        vm_origin,
    } = built;
    for (vm, origin) in &vm_origin {
        tracing::debug!(vm = %vm, trace = %origin, "VM load");
    }
    let shared = Arc::new(Shared {
        sim: Arc::new(Mutex::new(sim)),
        tracker: Mutex::new(summary::Tracker::new(policy.threshold, spike_at_ms)),
        events: Mutex::new(VecDeque::new()),
        reasons: Mutex::new(BTreeMap::new()),
        host_names: host_names.clone(),
        log_events: !opts.tui,
    });

    // The daemons, each on its own address, all stopped by one handle.
    let daemons_stop = StopHandle::new();
    let base = gmond_conf::builtin_config()
        .map_err(|e| Error::Config(format!("built-in gmond.conf rejected: {e}")))?
        .config;
    let every = opts.vm_every();
    let layout = net::Layout {
        cluster: "demo".into(),
        hosts: opts.hosts,
        port,
        cleanup: Duration::from_secs(2),
    };
    // Long enough for gmetad (it hides a metric whose TN, grown by up to its 15 s polling
    // step, exceeds DMAX); a VM that leaves a host gets source::LEAVING_DMAX instead.
    let vm_dmax = 60;
    let readings = source::CpuReadings::default();
    let (ready_tx, ready_rx) = mpsc::channel::<Bound>();
    let mut daemon_threads = Vec::new();
    for (i, name) in host_names.iter().enumerate() {
        let cfg = net::host_config(&base, &layout, i, name);
        debug_assert!(net::addresses_of(&cfg)
            .iter()
            .all(|a| a.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())));
        let ready_tx = ready_tx.clone();
        let hooks = Hooks {
            stop: Some(daemons_stop.clone()),
            vm_feed: Some(VmFeed {
                source: Box::new(source::SimVmSource::new(
                    shared.sim.clone(),
                    readings.clone(),
                    name,
                    vm_dmax,
                )),
                every,
                // Metadata with every round: receivers count dmax from the latest one, and a
                // leaving VM's short dmax must reach them at once.
                metadata_resend: every / 2,
            }),
            on_ready: Some(Box::new(move |b: &Bound| {
                let _ = ready_tx.send(b.clone());
            })),
        };
        let t = std::thread::Builder::new()
            .name(format!("gmond-{name}"))
            .spawn(move || daemon::run_with(cfg, RunOptions::default(), hooks))
            .map_err(|source| Error::Runtime {
                what: "demo daemon thread",
                source,
            })?;
        daemon_threads.push(t);
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < opts.hosts {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => {
                tracing::debug!(host = %b.host, udp = ?b.udp, tcp = ?b.tcp, "demo host up");
                ready += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(t) = daemon_threads.iter().position(|t| t.is_finished()) {
                    daemons_stop.stop();
                    let failed = daemon_threads.swap_remove(t);
                    let err = match failed.join() {
                        Ok(Err(e)) => e,
                        _ => Error::Config(format!("demo host {} stopped", host_names[t])),
                    };
                    for t in daemon_threads {
                        let _ = t.join();
                    }
                    return Err(err);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let feed = SocketAddr::from((net::FEED_ADDR, port));
    let first = net::host_addr(0);
    let last = net::host_addr(opts.hosts - 1);
    let gstat = format!("gstat -a -i 127.0.0.1 -p {port}");
    eprintln!(
        "ganglia-demo: {} host{} on {first}..{last} (unicast, port {port}); \
         cluster XML feed on {feed}  (try: {gstat})",
        opts.hosts,
        if opts.hosts == 1 { "" } else { "s" }
    );

    let wall_start = Instant::now();
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    // The clock: simulated time follows wall time times the speed-up.
    let clock = {
        let (shared, stop, daemons_stop) = (shared.clone(), stop.clone(), daemons_stop.clone());
        let speedup = opts.speedup;
        std::thread::Builder::new()
            .name("demo-clock".into())
            .spawn(move || {
                clock_loop(
                    &shared,
                    wall_start,
                    speedup,
                    spike_host,
                    &stop,
                    &daemons_stop,
                )
            })
            .map_err(|source| Error::Runtime {
                what: "demo clock thread",
                source,
            })?
    };

    // The balancers, one per host.
    let balancers = agents::start(&agents::AgentsSetup {
        hosts: host_names.clone(),
        port,
        policy: policy.clone(),
        sim: shared.sim.clone(),
        tick: opts.agent_every(),
        speedup: opts.speedup,
        wall_start,
        epoch,
        // Their own handle: they keep publishing until the view has drawn its last frame.
        stop: StopHandle::new(),
        events: {
            let shared = shared.clone();
            Arc::new(move |sim_ms, text: String| shared.event(sim_ms, text))
        },
        reasons: {
            let shared = shared.clone();
            Arc::new(move |vm: &str, why: String| {
                if let Ok(mut r) = shared.reasons.lock() {
                    r.insert(vm.to_owned(), why);
                }
            })
        },
    });
    let balancers = match balancers {
        Ok(b) => Some(b),
        Err(e) => {
            let msg = format!("balancer not started: {e}");
            eprintln!("ganglia-demo: {msg}");
            notes.push(msg);
            None
        }
    };

    // The view, until stopped.
    let mut header_static = vec![
        format!(
            "gmond-rs demo: {} hypervisors on {first}..{last}:{port}, unicast Ganglia protocol, \
             balancer policy {} in auto mode",
            opts.hosts, policy.name
        ),
        format!("cluster XML feed: {feed}   ({gstat})"),
    ];
    header_static.push(format!(
        "scenario: {} VMs; at t={} s (simulated; {:.0} s wall) the VMs of {} jump to {:.0} % CPU",
        opts.vms,
        spike_at_ms / 1000,
        SPIKE_AFTER_WALL_S,
        host_names[spike_host],
        cluster::SPIKE_LEVEL * 100.0
    ));
    header_static.extend(notes.iter().cloned());
    let mut screen = if opts.tui {
        Some(tui::Screen::enter())
    } else {
        None
    };
    let mut next_capture = Duration::from_secs(10);
    if let Some(path) = &opts.capture {
        // A fresh file per run, saying how it was made.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let head = format!(
            "# Frames of the gmond-rs demo's live view as plain text, every 10 s of wall time,\n\
             # then the summary. Made by: ganglia-demo {}\n",
            args.join(" ")
        );
        if let Err(e) = std::fs::write(path, head) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write capture");
        }
    }
    let mut last_log = Instant::now();
    let mut view = view::ClusterView::default();
    // A VM's entry on a host it left stops being refreshed: after 2.5 rounds it is stale.
    let stale_s = (every.as_secs_f64() * 2.5).ceil().max(2.0) as u64;
    loop {
        let stopping =
            stop.is_stopped() || opts.duration.is_some_and(|d| wall_start.elapsed() >= d);
        if let Some(xml) = read_feed(feed) {
            match view::ClusterView::from_xml(&xml, stale_s) {
                Ok(v) => view = v,
                Err(e) => tracing::warn!(error = %e, "own feed unreadable"),
            }
        }
        let info = frame_info(
            &shared,
            &header_static,
            opts.speedup,
            wall_start,
            &view,
            policy.threshold,
        );
        if let Some(s) = screen.as_mut() {
            s.draw(&tui::render(&info, &view, true));
        } else if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            log_status(&view);
        }
        if let Some(path) = &opts.capture {
            // Every 10 s from the 10th on (the first frames are still empty), and the last.
            if stopping || wall_start.elapsed() >= next_capture {
                next_capture += Duration::from_secs(10);
                capture(path, wall_start, &tui::render(&info, &view, false));
            }
        }
        if stopping {
            break;
        }
        stop.sleep(Duration::from_millis(if opts.tui { 250 } else { 500 }));
    }
    stop.stop();
    drop(screen);

    if let Some(b) = balancers {
        b.shutdown();
    }
    let _ = clock.join();
    daemons_stop.stop();
    for t in daemon_threads {
        match t.join() {
            Ok(Err(e)) => tracing::warn!(error = %e, "demo host ended with an error"),
            Ok(Ok(_)) => {}
            Err(_) => tracing::warn!("demo host thread panicked"),
        }
    }
    let summary = shared
        .tracker
        .lock()
        .map(|t| t.summary(opts.speedup))
        .map_err(|_| Error::Config("demo state poisoned".into()))?;
    if let Some(path) = &opts.capture {
        let text: Vec<String> = summary.to_string().lines().map(str::to_owned).collect();
        capture(path, wall_start, &text);
    }
    Ok(summary)
}

/// Advances the simulated cluster with wall time, records its ground truth, and turns
/// migration starts, ends and failures into events.
fn clock_loop(
    shared: &Shared,
    wall_start: Instant,
    speedup: f64,
    spike_host: usize,
    stop: &StopHandle,
    daemons_stop: &StopHandle,
) {
    let mut spiked = false;
    // VM -> (from, to) of migrations in flight as last seen.
    let mut moving: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    while !stop.is_stopped() && !daemons_stop.is_stopped() {
        let target = (wall_start.elapsed().as_secs_f64() * speedup * 1000.0) as u64;
        let Ok(mut sim) = shared.sim.lock() else {
            return;
        };
        let now = target.max(sim.now_ms());
        let completed = match sim.advance_to(now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "simulated clock");
                Vec::new()
            }
        };
        let names = &shared.host_names;
        let host = |h: usize| names.get(h).cloned().unwrap_or_default();
        let mut events: Vec<(u64, String)> = Vec::new();
        let Ok(mut tracker) = shared.tracker.lock() else {
            return;
        };
        for c in &completed {
            let vm = sim.domains()[c.domain].name.clone();
            moving.remove(&c.domain);
            tracker.ended(&vm, c.end_ms, false);
            events.push((
                c.end_ms,
                format!(
                    "{vm} arrived on {} ({:.1} s live migration from {})",
                    host(c.to),
                    (c.end_ms - c.start_ms) as f64 / 1000.0,
                    host(c.from)
                ),
            ));
        }
        for (d, dom) in sim.domains().iter().enumerate() {
            match (dom.migration, moving.get(&d).copied()) {
                (Some(m), None) => {
                    moving.insert(d, (dom.host, m.dest));
                    let reason = shared
                        .reasons
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&dom.name).cloned())
                        .unwrap_or_default();
                    tracker.started(summary::MigrationRecord {
                        vm: dom.name.clone(),
                        from: host(dom.host),
                        to: host(m.dest),
                        reason: reason.clone(),
                        start_ms: m.start_ms,
                        end_ms: None,
                        failed: false,
                    });
                    // The reason is in the leader's "decides" event just before.
                    events.push((
                        m.start_ms,
                        format!(
                            "{} -> {}: live migration of {} started ({:.0} s expected)",
                            host(dom.host),
                            host(m.dest),
                            dom.name,
                            m.end_ms.saturating_sub(m.start_ms) as f64 / 1000.0
                        ),
                    ));
                }
                (None, Some((from, to))) => {
                    // Gone from the in-flight set without completing: aborted or failed.
                    moving.remove(&d);
                    tracker.ended(&dom.name, now, true);
                    events.push((
                        now,
                        format!(
                            "migration of {} {} -> {} FAILED; it stays on {}",
                            dom.name,
                            host(from),
                            host(to),
                            host(dom.host)
                        ),
                    ));
                }
                _ => {}
            }
        }
        // Reasons arriving after the start are filled in.
        if let Ok(r) = shared.reasons.lock() {
            for m in tracker
                .migrations
                .iter_mut()
                .filter(|m| m.reason.is_empty())
            {
                if let Some(why) = r.get(&m.vm) {
                    m.reason = why.clone();
                }
            }
        }
        let cap = |h: usize| {
            sim.hosts()
                .get(h)
                .map_or(1.0, |x| f64::from(x.cpus) * f64::from(x.mhz))
        };
        let mut per_host = vec![0.0; names.len()];
        for (d, dom) in sim.domains().iter().enumerate() {
            if let Some(p) = per_host.get_mut(dom.host) {
                *p += sim.demand_mhz(d, now);
            }
        }
        let loads: Vec<(String, f64)> = per_host
            .iter()
            .enumerate()
            .map(|(h, mhz)| (host(h), mhz / cap(h)))
            .collect();
        tracker.observe(now, &loads);
        if !spiked && now >= tracker.spike_at_ms {
            spiked = true;
            events.push((
                tracker.spike_at_ms,
                format!(
                    "spike: the VMs of {} jump to {:.0} % CPU ({} now at {:.0} %)",
                    host(spike_host),
                    cluster::SPIKE_LEVEL * 100.0,
                    host(spike_host),
                    loads.get(spike_host).map_or(0.0, |l| l.1 * 100.0)
                ),
            ));
        }
        drop(tracker);
        drop(sim);
        for (t, e) in events {
            shared.event(t, e);
        }
        stop.sleep(Duration::from_millis(100));
    }
}

/// Reads the whole XML document from `addr` through the balancer's bounded feed reader.
pub(crate) fn read_feed(addr: SocketAddr) -> Option<Vec<u8>> {
    balancer::feed::read_xml(
        &addr.to_string(),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .ok()
}

fn hms(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn frame_info(
    shared: &Shared,
    header: &[String],
    speedup: f64,
    wall_start: Instant,
    view: &view::ClusterView,
    threshold: f64,
) -> tui::FrameInfo {
    let (sim_ms, done, failed, inflight) = shared.tracker.lock().map_or((0, 0, 0, 0), |t| {
        let s = t.summary(speedup);
        (
            t.now_ms,
            s.migrations_done,
            s.migrations_failed,
            t.inflight(),
        )
    });
    let mut lines = header.to_vec();
    lines.push(format!(
        "simulated time {} (x{speedup}, {:.0} s wall)   leader: {}   migrations: {done} done, \
         {failed} failed, {inflight} in flight",
        hms(sim_ms),
        wall_start.elapsed().as_secs_f64(),
        view.leader().unwrap_or("(none yet)"),
    ));
    let events = shared
        .events
        .lock()
        .map(|ev| {
            let mut shown: Vec<&DemoEvent> =
                ev.iter().filter(|e| e.sim_ms <= sim_ms.max(1)).collect();
            shown.sort_by_key(|e| e.sim_ms);
            let skip = shown.len().saturating_sub(EVENTS_SHOWN);
            shown[skip..]
                .iter()
                .map(|e| format!("{}  {}", hms(e.sim_ms), e.text))
                .collect()
        })
        .unwrap_or_default();
    tui::FrameInfo {
        header: lines,
        events,
        footer: "Ctrl-C stops and prints a summary.  CPU = VM demand / host capacity \
                 (above 100 %: overcommitted); * = leader"
            .into(),
        threshold,
    }
}

fn log_status(view: &view::ClusterView) {
    let hosts: Vec<String> = view
        .hosts
        .iter()
        .map(|h| {
            format!(
                "{} cpu={:.0}% mem={:.0}% vms={}",
                h.name,
                h.cpu * 100.0,
                h.mem * 100.0,
                h.vms.len()
            )
        })
        .collect();
    tracing::info!(
        leader = view.leader().unwrap_or("-"),
        "{}",
        hosts.join(" | ")
    );
}

fn capture(path: &std::path::Path, wall_start: Instant, lines: &[String]) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    match file {
        Ok(mut f) => {
            let mut text = format!(
                "---- {:.0} s (wall) after start ----\n",
                wall_start.elapsed().as_secs_f64()
            );
            for l in lines {
                text.push_str(l);
                text.push('\n');
            }
            let _ = f.write_all(text.as_bytes());
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot write capture"),
    }
}
