//! The demo's hosts: one real gmond-rs daemon per simulated hypervisor, each on its own thread
//! and 127.0.0.x address with its simulated VM source; started together and stopped together
//! (also when start-up fails half-way).

use crate::net::{self, Layout};
use crate::source::{CpuReadings, SimVmSource};
use crate::Error;
use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_rs::daemon::{self, Bound, Exit, Hooks, RunOptions, StopHandle, VmFeed};
use std::net::Ipv4Addr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Long enough for gmetad (it hides a metric whose TN, grown by up to its 15 s polling step,
/// exceeds DMAX); a VM that leaves a host gets `source::LEAVING_DMAX` instead.
const VM_DMAX: u32 = 60;

/// What the hosts are made of.
pub(crate) struct Setup<'a> {
    /// Host names, index = host number.
    pub host_names: &'a [String],
    /// Port of every host's channels and of the feed.
    pub port: u16,
    /// Wall time between VM metric rounds.
    pub every: Duration,
    /// The simulated hypervisors.
    pub sim: Arc<Mutex<SimCluster>>,
}

type DaemonThread = JoinHandle<Result<Exit, daemon::Error>>;

/// The running daemons; dropping them stops them and waits for their threads.
pub(crate) struct Daemons {
    stop: StopHandle,
    threads: Vec<(String, DaemonThread)>,
}

/// Starts every host and returns once all are bound and running, or with the first one's error.
pub(crate) fn start(setup: &Setup) -> Result<Daemons, Error> {
    let base = gmond_conf::builtin_config()
        .map_err(|e| Error::BuiltinConfig(e.to_string()))?
        .config;
    let layout = Layout {
        cluster: "demo".into(),
        hosts: setup.host_names.len(),
        port: setup.port,
        cleanup: Duration::from_secs(2),
    };
    let readings = CpuReadings::default();
    let (ready_tx, ready_rx) = mpsc::channel::<Bound>();
    let mut daemons = Daemons {
        stop: StopHandle::new(),
        threads: Vec::new(),
    };
    for (i, name) in setup.host_names.iter().enumerate() {
        let cfg = net::host_config(&base, &layout, i, name);
        debug_assert!(net::addresses_of(&cfg)
            .iter()
            .all(|a| a.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())));
        let source = SimVmSource::new(setup.sim.clone(), readings.clone(), name, VM_DMAX);
        let hooks = Hooks {
            stop: Some(daemons.stop.clone()),
            vm_feed: Some(VmFeed {
                source: Box::new(source),
                every: setup.every,
                // Metadata with every round: receivers count dmax from the latest one, and a
                // leaving VM's short dmax must reach them at once.
                metadata_resend: setup.every / 2,
            }),
            on_ready: Some({
                let ready_tx = ready_tx.clone();
                Box::new(move |b: &Bound| {
                    let _ = ready_tx.send(b.clone());
                })
            }),
        };
        let thread = std::thread::Builder::new()
            .name(format!("gmond-{name}"))
            .spawn(move || daemon::run_with(cfg, RunOptions::default(), hooks))
            .map_err(|source| Error::Thread {
                what: "demo daemon",
                source,
            })?;
        daemons.threads.push((name.clone(), thread));
    }
    drop(ready_tx);
    daemons.wait_ready(&ready_rx)?;
    Ok(daemons)
}

impl Daemons {
    /// The handle that stops every daemon (the clock also stops on it).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Waits until every daemon reported ready; a daemon that ended first is an error.
    fn wait_ready(&mut self, ready: &mpsc::Receiver<Bound>) -> Result<(), Error> {
        let mut up = 0;
        while up < self.threads.len() {
            match ready.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => {
                    tracing::debug!(host = %b.host, udp = ?b.udp, tcp = ?b.tcp, "demo host up");
                    up += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(i) = self.threads.iter().position(|(_, t)| t.is_finished()) {
                        let (host, thread) = self.threads.swap_remove(i);
                        return Err(match thread.join() {
                            Ok(Err(source)) => Error::Daemon { host, source },
                            _ => Error::HostStopped(host),
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    /// Stops every daemon and waits for it; errors are logged (the demo is ending anyway).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop.stop();
        for (host, t) in self.threads.drain(..) {
            match t.join() {
                Ok(Err(e)) => {
                    tracing::warn!(host = %host, error = %e, "demo host ended with an error")
                }
                Ok(Ok(_)) => {}
                Err(_) => tracing::warn!(host = %host, "demo host thread panicked"),
            }
        }
    }
}
