//! One balancer agent (`balancer_agent`) per simulated host, in `auto` mode, each reading its
//! own host's XML feed, executing through a `SimExecutor` over the shared simulated cluster, and
//! publishing its `balancer_*` metrics as metric datagrams from its host's 127.0.0.x address to
//! every daemon, as gmetric would send them to the udp_send_channels of the host's gmond.conf.

use crate::net;
use balancer_agent::agent::{load_policy, Agent, AgentOptions, Outcome, TickReport};
use balancer_agent::balancer::plan::{Move, Reason};
use balancer_agent::config::{AgentConfig, InflightAction, Mode};
use balancer_agent::metrics::Identity;
use balancer_agent::sim_exec::SimExecutor;
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_rs::daemon::{Error, StopHandle};

use std::net::{SocketAddr, UdpSocket};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The policy the agents run.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChoice {
    /// Policy name (`hotspot`, ...).
    pub name: String,
    /// What the agents are given: a built-in name or a file path.
    pub arg: String,
    /// The CPU utilisation the policy treats as overloaded (the summary counts time to balance
    /// against it).
    pub threshold: f64,
}

/// Resolves `--policy` (a TOML file or a built-in name; default `hotspot`) before anything
/// starts, so a bad file is an error with its line and column, not a half-started demo.
pub fn resolve_policy(arg: Option<&str>) -> Result<PolicyChoice, Error> {
    let arg = arg.unwrap_or("hotspot");
    let spec = load_policy(arg).map_err(|e| Error::Config(format!("--policy {arg}: {e}")))?;
    let threshold = match spec.policy.as_str() {
        "hotspot" => spec.hotspot.threshold,
        "naive-threshold" => spec.naive.threshold,
        "consolidate" => spec.consolidate.threshold,
        _ => 0.85,
    };
    Ok(PolicyChoice {
        name: spec.policy.clone(),
        arg: arg.to_owned(),
        threshold,
    })
}

/// Receives (simulated ms, text) events.
pub type EventSink = Arc<dyn Fn(u64, String) + Send + Sync>;
/// Receives (VM, why it moves).
pub type ReasonSink = Arc<dyn Fn(&str, String) + Send + Sync>;

/// What the agents need from the demo.
pub struct AgentsSetup {
    /// Host names, index = host number.
    pub hosts: Vec<String>,
    /// Port of every host's channels.
    pub port: u16,
    /// The policy.
    pub policy: PolicyChoice,
    /// The shared simulated cluster.
    pub sim: Arc<Mutex<SimCluster>>,
    /// Wall time between ticks.
    pub tick: Duration,
    /// Simulated seconds per wall second.
    pub speedup: f64,
    /// When the demo started.
    pub wall_start: Instant,
    /// Unix time at the start: agents see `epoch + simulated seconds` as their clock.
    pub epoch: u64,
    /// Stops the agents.
    pub stop: StopHandle,
    /// Events for the view.
    pub events: EventSink,
    /// Reasons of moves.
    pub reasons: ReasonSink,
}

/// The running agents.
pub struct Balancers {
    thread: std::thread::JoinHandle<()>,
    exec: SimExecutor,
    stop: StopHandle,
}

impl Balancers {
    /// Stops the agents: migrations in flight are aborted (their VMs stay on their sources),
    /// and each agent's last metrics advertise mode off.
    pub fn shutdown(self) {
        self.stop.stop();
        // A migration blocked in the executor returns at once.
        self.exec.stop();
        let _ = self.thread.join();
    }
}

/// One agent and where it reads and sends.
struct Host {
    agent: Agent,
    feed: SocketAddr,
    sock: UdpSocket,
}

/// Starts one agent per host on a thread of its own; errors (policy, sockets) come back here.
pub fn start(setup: &AgentsSetup) -> Result<Balancers, String> {
    let exec = SimExecutor::new(setup.sim.clone()).with_poll(Duration::from_millis(20));
    let mut hosts = Vec::with_capacity(setup.hosts.len());
    for (i, name) in setup.hosts.iter().enumerate() {
        let addr = net::host_addr(i);
        let config = AgentConfig {
            mode: Mode::Auto,
            policy: setup.policy.arg.clone(),
            interval_s: (setup.tick.as_secs_f64() * setup.speedup).round().max(1.0) as u64,
            feed: SocketAddr::from((addr, setup.port)).to_string(),
            trusted_hosts: setup.hosts.clone(),
            ..AgentConfig::default()
        };
        let mut opts = AgentOptions::new(name, config, Arc::new(exec.clone()));
        opts.identity = Identity::new(name, Some(name), Some(&addr.to_string()));
        let agent = Agent::new(opts).map_err(|e| format!("agent of {name}: {e}"))?;
        let sock =
            UdpSocket::bind((addr, 0)).map_err(|e| format!("agent of {name}: bind {addr}: {e}"))?;
        hosts.push(Host {
            agent,
            feed: SocketAddr::from((addr, setup.port)),
            sock,
        });
    }
    let targets: Vec<SocketAddr> = (0..setup.hosts.len())
        .map(|j| SocketAddr::from((net::host_addr(j), setup.port)))
        .collect();
    let (sim, stop, events, reasons, tick) = (
        setup.sim.clone(),
        setup.stop.clone(),
        setup.events.clone(),
        setup.reasons.clone(),
        setup.tick,
    );
    let epoch = setup.epoch;
    let (ok_tx, ok_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("demo-balancers".into())
        .spawn(move || {
            let _ = ok_tx.send(());
            balance_loop(hosts, &targets, &sim, epoch, tick, &stop, &events, &reasons);
        })
        .map_err(|e| format!("balancer thread: {e}"))?;
    let _ = ok_rx.recv_timeout(Duration::from_secs(5));
    Ok(Balancers {
        thread,
        exec,
        stop: setup.stop.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn balance_loop(
    mut hosts: Vec<Host>,
    targets: &[SocketAddr],
    sim: &Mutex<SimCluster>,
    epoch: u64,
    tick: Duration,
    stop: &StopHandle,
    events: &EventSink,
    reasons: &ReasonSink,
) {
    let sim_ms = || sim.lock().map_or(0, |c| c.now_ms());
    let mut leader: Option<String> = None;
    while !stop.is_stopped() {
        let t_ms = sim_ms();
        let now = epoch + t_ms / 1000;
        for h in &mut hosts {
            if let Some(xml) = crate::read_feed(h.feed) {
                match h.agent.tick_xml(&xml, now) {
                    Ok(report) => {
                        if report.is_leader && report.leader != leader {
                            leader = report.leader.clone();
                            events(
                                t_ms,
                                format!(
                                    "{} leads the balancers (lowest live name)",
                                    h.agent.name()
                                ),
                            );
                        }
                        report_events(h.agent.name(), &report, t_ms, events, reasons);
                    }
                    Err(e) => tracing::warn!(host = %h.agent.name(), error = %e, "agent tick"),
                }
            }
            publish(h, targets);
        }
        stop.sleep(tick);
    }
    let now = epoch + sim_ms() / 1000;
    for h in &mut hosts {
        for (vm, outcome) in h
            .agent
            .shutdown(now, InflightAction::Abort, Duration::from_secs(2))
        {
            tracing::info!(host = %h.agent.name(), vm = %vm, outcome = ?outcome, "at stop");
        }
        publish(h, targets);
    }
}

/// Sends the agent's metrics to every host, from the agent's own loopback address.
fn publish(h: &Host, targets: &[SocketAddr]) {
    for d in h.agent.datagrams() {
        for t in targets {
            if let Err(e) = h.sock.send_to(&d, t) {
                tracing::debug!(to = %t, error = %e, "agent metric not sent");
            }
        }
    }
}

fn report_events(
    host: &str,
    report: &TickReport,
    t_ms: u64,
    events: &EventSink,
    reasons: &ReasonSink,
) {
    for mv in &report.started {
        let why = reason_text(mv);
        reasons(&mv.vm, why.clone());
        events(
            t_ms,
            format!(
                "{host} decides: move {} {} -> {} ({why})",
                mv.vm, mv.from, mv.to
            ),
        );
    }
    for (vm, outcome) in &report.finished {
        match outcome {
            Outcome::Done { .. } => {}
            Outcome::Refused(e)
            | Outcome::Failed(e)
            | Outcome::Aborted(e)
            | Outcome::Unknown(e) => {
                events(
                    t_ms,
                    format!("{host}: migration of {vm} did not complete: {e}"),
                );
            }
        }
    }
}

/// A move's reason in a line.
pub fn reason_text(mv: &Move) -> String {
    let pct = |x: f64| format!("{:.0} %", x * 100.0);
    let p = &mv.predicted;
    let effect = format!(
        "{} {} -> {}, {} {} -> {}",
        mv.from,
        pct(p.src_before),
        pct(p.src_after),
        mv.to,
        pct(p.dst_before),
        pct(p.dst_after)
    );
    match &mv.reason {
        Reason::Hotspot {
            host,
            util,
            forecast,
            threshold,
        } => format!(
            "hotspot: {host} at {}, forecast {} > {}; {effect}",
            pct(*util),
            pct(*forecast),
            pct(*threshold)
        ),
        Reason::Threshold {
            host,
            util,
            threshold,
        } => format!("{host} at {} > {}; {effect}", pct(*util), pct(*threshold)),
        Reason::Overload {
            host,
            detector,
            value,
            threshold,
        } => format!(
            "overload ({detector}) on {host}: {:.2} > {:.2}; {effect}",
            value, threshold
        ),
        Reason::Imbalance {
            sigma_before,
            sigma_after,
        } => format!(
            "imbalance: load spread (sigma) {:.2} -> {:.2}; {effect}",
            sigma_before, sigma_after
        ),
        other => format!("{}; {effect}", other.tag()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer_agent::balancer::plan::{Cost, Prediction};

    #[test]
    fn policies_resolve_with_their_threshold_and_bad_ones_fail() {
        let p = resolve_policy(None).unwrap();
        assert_eq!((p.name.as_str(), p.threshold), ("hotspot", 0.85));
        assert!(resolve_policy(Some("no-such-policy")).is_err());
        let dir = std::env::temp_dir().join(format!("demo-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "policy = \"hotspot\"\n[hotspot]\nthreshold = \"x\"\n").unwrap();
        let e = resolve_policy(bad.to_str()).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hotspot_reason_in_words() {
        let mv = Move {
            vm: "vm02".into(),
            from: "hv02".into(),
            to: "hv03".into(),
            reason: Reason::Hotspot {
                host: "hv02".into(),
                util: 1.9,
                forecast: 1.95,
                threshold: 0.85,
            },
            predicted: Prediction {
                src_before: 1.9,
                src_after: 1.43,
                dst_before: 0.2,
                dst_after: 0.67,
                gain: 0.5,
            },
            cost: Cost {
                seconds: 34.4,
                bytes: 2 << 30,
            },
        };
        assert_eq!(
            reason_text(&mv),
            "hotspot: hv02 at 190 %, forecast 195 % > 85 %; hv02 190 % -> 143 %, hv03 20 % -> 67 %"
        );
    }
}
