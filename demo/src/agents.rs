//! One balancer agent (`balancer_agent`) per simulated host, in `auto` mode, each reading its
//! own host's XML feed, executing through a `SimExecutor` over the shared simulated cluster, and
//! publishing its `balancer_*` metrics as metric datagrams from its host's 127.0.0.x address to
//! every daemon, as gmetric would send them to the udp_send_channels of the host's gmond.conf.

use crate::{net, Error};
use balancer_agent::agent::{load_policy, Agent, AgentOptions, Outcome, TickReport};
use balancer_agent::balancer::plan::{Move, Reason};
use balancer_agent::config::{AgentConfig, InflightAction, Mode};
use balancer_agent::metrics::Identity;
use balancer_agent::sim_exec::SimExecutor;
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_rs::daemon::StopHandle;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let spec = load_policy(arg).map_err(|source| Error::Policy {
        arg: arg.to_owned(),
        source,
    })?;
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

/// What the balancers' thread works with besides the agents.
struct Loop {
    /// Every host's receive channel, where the agents' metrics go.
    targets: Vec<SocketAddr>,
    sim: Arc<Mutex<SimCluster>>,
    epoch: u64,
    tick: Duration,
    stop: StopHandle,
    events: EventSink,
    reasons: ReasonSink,
}

/// Starts one agent per host on a thread of its own; errors (policy, sockets) come back here.
pub fn start(setup: &AgentsSetup) -> Result<Balancers, Error> {
    let exec = SimExecutor::new(setup.sim.clone()).with_poll(Duration::from_millis(20));
    let hosts = setup
        .hosts
        .iter()
        .enumerate()
        .map(|(i, name)| host(setup, &exec, i, name))
        .collect::<Result<Vec<Host>, Error>>()?;
    let run = Loop {
        targets: (0..setup.hosts.len())
            .map(|j| SocketAddr::from((net::host_addr(j), setup.port)))
            .collect(),
        sim: setup.sim.clone(),
        epoch: setup.epoch,
        tick: setup.tick,
        stop: setup.stop.clone(),
        events: setup.events.clone(),
        reasons: setup.reasons.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("demo-balancers".into())
        .spawn(move || run.balance(hosts))
        .map_err(|source| Error::Thread {
            what: "balancer",
            source,
        })?;
    Ok(Balancers {
        thread,
        exec,
        stop: setup.stop.clone(),
    })
}

/// Host `i`'s agent, reading its own host's feed and sending from its own address.
fn host(setup: &AgentsSetup, exec: &SimExecutor, i: usize, name: &str) -> Result<Host, Error> {
    let addr = net::host_addr(i);
    let feed = SocketAddr::from((addr, setup.port));
    let config = AgentConfig {
        mode: Mode::Auto,
        policy: setup.policy.arg.clone(),
        interval_s: (setup.tick.as_secs_f64() * setup.speedup).round().max(1.0) as u64,
        feed: feed.to_string(),
        trusted_hosts: setup.hosts.clone(),
        ..AgentConfig::default()
    };
    let mut opts = AgentOptions::new(name, config, Arc::new(exec.clone()));
    opts.identity = Identity::new(name, Some(name), Some(&addr.to_string()));
    let agent = Agent::new(opts).map_err(|source| Error::Agent {
        host: name.to_owned(),
        source,
    })?;
    let sock = UdpSocket::bind((addr, 0)).map_err(|source| Error::AgentSocket {
        host: name.to_owned(),
        addr,
        source,
    })?;
    Ok(Host { agent, feed, sock })
}

impl Loop {
    fn sim_ms(&self) -> u64 {
        self.sim.lock().map_or(0, |c| c.now_ms())
    }

    /// Ticks every agent each `tick` until stopped, then shuts them down: migrations in flight
    /// are aborted and each agent's last metrics advertise it.
    fn balance(&self, mut hosts: Vec<Host>) {
        let mut leader: Option<String> = None;
        while !self.stop.is_stopped() {
            let t_ms = self.sim_ms();
            for h in &mut hosts {
                self.tick(h, t_ms, &mut leader);
                publish(h, &self.targets);
            }
            self.stop.sleep(self.tick);
        }
        let now = self.epoch + self.sim_ms() / 1000;
        for h in &mut hosts {
            for (vm, outcome) in
                h.agent
                    .shutdown(now, InflightAction::Abort, Duration::from_secs(2))
            {
                tracing::info!(host = %h.agent.name(), vm = %vm, outcome = ?outcome, "at stop");
            }
            publish(h, &self.targets);
        }
    }

    /// One agent's tick on its host's feed at simulated time `t_ms`; its decisions become
    /// events, and so does a new leader.
    fn tick(&self, h: &mut Host, t_ms: u64, leader: &mut Option<String>) {
        let Some(xml) = net::read_feed(h.feed) else {
            return;
        };
        match h.agent.tick_xml(&xml, self.epoch + t_ms / 1000) {
            Ok(report) => {
                if report.is_leader && report.leader != *leader {
                    leader.clone_from(&report.leader);
                    (self.events)(
                        t_ms,
                        format!("{} leads the balancers (lowest live name)", h.agent.name()),
                    );
                }
                report_events(h.agent.name(), &report, t_ms, &self.events, &self.reasons);
            }
            Err(e) => tracing::warn!(host = %h.agent.name(), error = %e, "agent tick"),
        }
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
            group: None,
            after: None,
        };
        assert_eq!(
            reason_text(&mv),
            "hotspot: hv02 at 190 %, forecast 195 % > 85 %; hv02 190 % -> 143 %, hv03 20 % -> 67 %"
        );
    }
}
