//! The demo crate's one error type: what can stop the demo before or while it runs.

use balancer_agent::error::AgentError;
use gmond_metrics::Error as HypervisorError;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why the demo could not start or went on no longer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line option is out of range; the message names the option.
    #[error("{0}")]
    Option(String),
    /// `--policy` names no built-in policy, or a file that does not load.
    #[error("--policy {arg}: {source}")]
    Policy {
        /// What was given.
        arg: String,
        /// Why the balancer refused it.
        source: AgentError,
    },
    /// The simulated cluster refused a host or a VM.
    #[error("simulated cluster: {0}")]
    Cluster(#[from] HypervisorError),
    /// PlanetLab traces could not be read (the demo falls back to synthetic load).
    #[error("{0}")]
    Traces(#[source] HypervisorError),
    /// A PlanetLab day directory holds no trace file.
    #[error("{} holds no trace files", .0.display())]
    NoTraces(PathBuf),
    /// The demo needs at least one host and one VM.
    #[error("the demo needs at least one host and one VM")]
    EmptyCluster,
    /// No port in the tried range is free on every demo address.
    #[error("no free port in {first}..{last} on 127.0.0.1 and the demo's 127.0.0.x addresses")]
    NoFreePort {
        /// First port tried.
        first: u16,
        /// One past the last port tried.
        last: u16,
    },
    /// gmond-rs's built-in configuration, the base of every host's, did not load.
    #[error("built-in gmond.conf rejected: {0}")]
    BuiltinConfig(String),
    /// A demo host's daemon failed to start or stopped with an error.
    #[error("demo host {host}: {source}")]
    Daemon {
        /// The host.
        host: String,
        /// The daemon's error.
        source: gmond_rs::daemon::Error,
    },
    /// A demo host's daemon thread ended (panicked) before it was ready.
    #[error("demo host {0} stopped before it was ready")]
    HostStopped(String),
    /// A host's balancer agent could not be created.
    #[error("agent of {host}: {source}")]
    Agent {
        /// The host.
        host: String,
        /// The agent's error.
        source: AgentError,
    },
    /// A host's balancer agent could not bind its sending socket.
    #[error("agent of {host}: bind {addr}: {source}")]
    AgentSocket {
        /// The host.
        host: String,
        /// Its loopback address.
        addr: Ipv4Addr,
        /// The system's error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// A demo thread panicked while holding shared state.
    #[error("demo state poisoned (a demo thread panicked)")]
    Poisoned,
}
