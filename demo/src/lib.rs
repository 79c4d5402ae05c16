//! The embedded demo behind `cargo run --release`: several simulated hypervisor hosts, each a
//! real gmond-rs daemon ([`gmond_rs::daemon::run_with`]) on its own 127.0.0.x address, unicasting
//! the Ganglia protocol to the others; VMs from PlanetLab traces on a shared simulated
//! hypervisor, one host spiking; one balancer agent per host in `auto` mode; a live view read
//! back from the cluster's XML feed on 127.0.0.1.
//!
//! Nothing here binds or sends to a non-loopback address: every channel of every daemon, and
//! every agent socket, is bound to its host's 127.0.0.x address.

pub mod agents;
mod clock;
pub mod cluster;
mod daemons;
mod error;
pub mod hostmetrics;
mod live;
pub mod net;
pub mod source;
mod state;
pub mod summary;
pub mod tui;
pub mod view;

use agents::PolicyChoice;
use cluster::{BuiltCluster, ClusterSpec, LoadSource};
use gmond_rs::daemon::StopHandle;
use state::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use error::Error;
pub use state::DemoEvent;
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
            return Err(Error::Option(format!(
                "--hosts {}: the demo runs 1 to {} hosts",
                self.hosts,
                net::MAX_HOSTS
            )));
        }
        if !(1..=1000).contains(&self.vms) {
            return Err(Error::Option(format!("--vms {}: 1 to 1000", self.vms)));
        }
        if !(self.speedup.is_finite() && (0.1..=1000.0).contains(&self.speedup)) {
            return Err(Error::Option(format!(
                "--speedup {}: 0.1 to 1000",
                self.speedup
            )));
        }
        if self.port == 0 {
            return Err(Error::Option("--port 0: give a port number".into()));
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

/// Runs the demo until `stop` (Ctrl-C in the binary) or `opts.duration`, and returns the
/// summary. Start-up problems that have a fallback (port taken, traces missing) are reported on
/// stderr and the demo carries on; others are errors.
pub fn run(opts: &DemoOptions, stop: &StopHandle) -> Result<Summary, Error> {
    opts.validate()?;
    let (cluster, mut plan) = prepare(opts)?;
    let BuiltCluster {
        sim,
        host_names,
        spike_host,
        spike_at_ms,
        ..
    } = cluster;
    let shared = Arc::new(Shared::new(
        sim,
        summary::Tracker::new(plan.policy.threshold, spike_at_ms),
        host_names.clone(),
        !opts.tui,
    ));
    let daemons = daemons::start(&daemons::Setup {
        host_names: &host_names,
        port: plan.port,
        every: opts.vm_every(),
        sim: shared.sim.clone(),
    })?;
    announce(opts, plan.port);

    let wall_start = Instant::now();
    let clock = clock::spawn(
        shared.clone(),
        wall_start,
        opts.speedup,
        spike_host,
        [stop.clone(), daemons.stop_handle()],
    )?;
    let balancers = match start_balancers(opts, &plan, &shared, wall_start) {
        Ok(b) => Some(b),
        // The monitoring alone is still worth watching.
        Err(e) => {
            plan.fallback(format!("balancer not started: {e}"));
            None
        }
    };
    let mut capture = opts
        .capture
        .as_deref()
        .map(|p| live::Capture::create(p, wall_start));
    let shown = live::run(
        &live::Setup {
            shared: &shared,
            feed: SocketAddr::from((net::FEED_ADDR, plan.port)),
            title: "gmond-rs demo".into(),
            header: header(opts, &plan, &host_names[spike_host], spike_at_ms),
            threshold: plan.policy.threshold,
            speedup: opts.speedup,
            wall_start,
            duration: opts.duration,
            tui: opts.tui,
            stale_s: (opts.vm_every().as_secs_f64() * 2.5).ceil().max(2.0) as u64,
        },
        capture.as_mut(),
        stop,
    );

    // The balancers go first and publish their last metrics while the daemons still listen.
    stop.stop();
    if let Some(b) = balancers {
        b.shutdown();
    }
    let _ = clock.join();
    daemons.shutdown();
    shown?;
    let summary = shared.summary(opts.speedup)?;
    if let Some(c) = &capture {
        c.summary(&summary);
    }
    Ok(summary)
}

/// The demo's choices made before anything starts, besides the cluster.
struct Plan {
    /// The port of every host and of the feed.
    port: u16,
    policy: PolicyChoice,
    /// What the header mentions besides the basics (load source, fallbacks taken).
    notes: Vec<String>,
}

impl Plan {
    /// A fallback taken: said on stderr and in the header.
    fn fallback(&mut self, msg: String) {
        eprintln!("ganglia-demo: {msg}");
        self.notes.push(msg);
    }
}

/// Builds the simulated cluster, picks the port and resolves the policy, so that a bad option
/// stops the demo before any thread starts.
fn prepare(opts: &DemoOptions) -> Result<(BuiltCluster, Plan), Error> {
    let cluster = cluster::build(&ClusterSpec {
        hosts: opts.hosts,
        vms: opts.vms,
        seed: opts.seed,
        trace_dir: Some(
            opts.trace_dir
                .clone()
                .unwrap_or_else(cluster::default_trace_dir),
        ),
        spike_at_ms: (SPIKE_AFTER_WALL_S * opts.speedup * 1000.0) as u64,
    })?;
    for (vm, origin) in &cluster.vm_origin {
        tracing::debug!(vm = %vm, trace = %origin, "VM load");
    }
    let mut plan = Plan {
        port: opts.port,
        policy: agents::resolve_policy(opts.policy.as_deref())?,
        notes: vec![load_note(&cluster.load)],
    };
    plan.port = net::choose_port(opts.port, opts.hosts).ok_or(Error::NoFreePort {
        first: opts.port,
        last: opts.port.saturating_add(net::PORT_TRIES),
    })?;
    if plan.port != opts.port {
        plan.fallback(format!(
            "port {} is taken on 127.0.0.1 (another gmond?); using port {} instead",
            opts.port, plan.port
        ));
    }
    Ok((cluster, plan))
}

/// Where the VMs' load comes from; a fallback to synthetic load is also said on stderr.
fn load_note(load: &LoadSource) -> String {
    match load {
        LoadSource::PlanetLab(dir) => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            // Relative to where the demo was started, when below it (as from `cargo run`).
            let shown = std::env::current_dir()
                .ok()
                .and_then(|cwd| dir.strip_prefix(cwd).ok().map(PathBuf::from))
                .unwrap_or_else(|| dir.clone());
            format!(
                "load: PlanetLab (CoMon) CPU traces, one per VM, from {}",
                shown.display()
            )
        }
        LoadSource::Synthetic(why) => {
            eprintln!(
                "ganglia-demo: PlanetLab traces unavailable ({why}); using synthetic load \
                 instead (give the day directory with --trace DIR)"
            );
            format!("load: synthetic ({why})")
        }
    }
}

/// The line tests and users look for: where the hosts are and where the feed is.
fn announce(opts: &DemoOptions, port: u16) {
    eprintln!(
        "ganglia-demo: {} host{} on {}..{} (unicast, port {port}); cluster XML feed on {}  \
         (try: {})",
        opts.hosts,
        if opts.hosts == 1 { "" } else { "s" },
        net::host_addr(0),
        net::host_addr(opts.hosts - 1),
        SocketAddr::from((net::FEED_ADDR, port)),
        gstat(port)
    );
}

fn gstat(port: u16) -> String {
    format!("gstat -a -i 127.0.0.1 -p {port}")
}

/// One balancer agent per host, publishing and deciding on simulated time.
fn start_balancers(
    opts: &DemoOptions,
    plan: &Plan,
    shared: &Arc<Shared>,
    wall_start: Instant,
) -> Result<agents::Balancers, Error> {
    // Agents see Unix time at the start plus simulated time as their clock.
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(wall_start.elapsed().as_secs());
    agents::start(&agents::AgentsSetup {
        hosts: shared.host_names.clone(),
        port: plan.port,
        policy: plan.policy.clone(),
        sim: shared.sim.clone(),
        tick: opts.agent_every(),
        speedup: opts.speedup,
        epoch,
        // Their own handle: they keep publishing until the view has drawn its last frame.
        stop: StopHandle::new(),
        events: {
            let shared = shared.clone();
            Arc::new(move |sim_ms, text: String| shared.event(sim_ms, text))
        },
        reasons: {
            let shared = shared.clone();
            Arc::new(move |vm: &str, why: String| shared.set_reason(vm, why))
        },
    })
}

/// The frame's first lines: what runs where, the scenario, the notes.
fn header(opts: &DemoOptions, plan: &Plan, spike_host: &str, spike_at_ms: u64) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{} hypervisors on {}..{}:{}, unicast Ganglia protocol, balancer policy {} in auto \
             mode",
            opts.hosts,
            net::host_addr(0),
            net::host_addr(opts.hosts - 1),
            plan.port,
            plan.policy.name
        ),
        format!(
            "cluster XML feed: {}   ({})",
            SocketAddr::from((net::FEED_ADDR, plan.port)),
            gstat(plan.port)
        ),
        format!(
            "scenario: {} VMs; at t={} s (simulated; {:.0} s wall) the VMs of {spike_host} jump \
             to {:.0} % CPU",
            opts.vms,
            spike_at_ms / 1000,
            SPIKE_AFTER_WALL_S,
            cluster::SPIKE_LEVEL * 100.0
        ),
    ];
    lines.extend(plan.notes.iter().cloned());
    lines
}
