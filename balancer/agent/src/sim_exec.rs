//! [`Executor`] over the simulated hypervisor (`gmond_metrics::hypervisor::sim::SimCluster`,
//! shared as `Arc<Mutex<..>>` with whoever advances its time), with injectable faults for the
//! failure paths real libvirt cannot easily produce: errors, hangs, libvirtd restarts.
//!
//! A migration takes simulated time: `migrate` starts it in the cluster and blocks (polling
//! every `poll` of real time) until the cluster's clock, advanced by the driver, completes it,
//! or until it disappears (destination failed, aborted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gmond_metrics::hypervisor::sim::SimCluster;
use gmond_metrics::{hypervisor::DomainState, Error as HypervisorError};

use crate::error::{AgentError, Result};
use crate::executor::{Executor, HostAddr, MigrationRequest, Presence};

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next migration of this VM fails at once with this (libvirt-like) text.
    FailMigration {
        /// VM name ("*" = any).
        vm: String,
        /// Error text.
        message: String,
    },
    /// The next migration of this VM never progresses until aborted.
    Hang {
        /// VM name ("*" = any).
        vm: String,
    },
    /// The next migration of this VM loses its libvirtd connection once started: the call
    /// fails with a connection error while the migration itself goes on, and the source host's
    /// libvirtd answers nothing for the next `down_calls` calls (a daemon restart).
    RestartMidMigration {
        /// VM name ("*" = any).
        vm: String,
        /// Calls to the source host that fail after the restart.
        down_calls: u32,
    },
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    /// Host -> calls left that fail (libvirtd down).
    down: BTreeMap<String, u32>,
    /// Hosts whose hypervisor is not reachable at all (not members).
    unreachable: Vec<String>,
    /// The migration job each VM has in progress (a token per `migrate` call), whichever
    /// agent started it: libvirt aborts the domain's current job, not a caller's.
    jobs: BTreeMap<String, u64>,
    next_job: u64,
    /// Jobs an abort cancelled; their `migrate` calls return "aborted".
    cancelled: std::collections::BTreeSet<u64>,
    /// VMs whose (hung) migration job is in progress without moving: busy on their source.
    hung: Vec<String>,
    migrations_started: u32,
}

/// The simulated executor.
#[derive(Debug, Clone)]
pub struct SimExecutor {
    cluster: Arc<Mutex<SimCluster>>,
    state: Arc<Mutex<State>>,
    poll: Duration,
    stop: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimExecutor {
    /// An executor over `cluster`, polling migrations every millisecond of real time.
    pub fn new(cluster: Arc<Mutex<SimCluster>>) -> SimExecutor {
        SimExecutor {
            cluster,
            state: Arc::default(),
            poll: Duration::from_millis(1),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Real-time polling period of blocked migrations.
    pub fn with_poll(mut self, poll: Duration) -> SimExecutor {
        self.poll = poll;
        self
    }

    /// Injects a fault (consumed by the first migration it matches).
    pub fn inject(&self, f: Fault) {
        lock(&self.state).faults.push(f);
    }

    /// Makes `host`'s hypervisor unreachable (or reachable again).
    pub fn set_unreachable(&self, host: &str, unreachable: bool) {
        let mut s = lock(&self.state);
        s.unreachable.retain(|h| h != host);
        if unreachable {
            s.unreachable.push(host.to_string());
        }
    }

    /// Migrations started through this executor (all agents sharing it).
    pub fn migrations_started(&self) -> u32 {
        lock(&self.state).migrations_started
    }

    /// Makes every blocked `migrate` return (end of a test or demo).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn take_fault(&self, vm: &str) -> Option<Fault> {
        let mut s = lock(&self.state);
        let i = s.faults.iter().position(|f| {
            let v = match f {
                Fault::FailMigration { vm, .. } | Fault::Hang { vm } => vm,
                Fault::RestartMidMigration { vm, .. } => vm,
            };
            v == vm || v == "*"
        })?;
        Some(s.faults.remove(i))
    }

    /// Fails the call when `host`'s libvirtd is down (consuming one failing call).
    fn call(&self, host: &str) -> Result<()> {
        let mut s = lock(&self.state);
        if s.unreachable.iter().any(|h| h == host) {
            return Err(AgentError::Unreachable {
                host: host.to_string(),
                message: "Failed to connect socket: Connection refused".into(),
            });
        }
        if let Some(n) = s.down.get_mut(host) {
            if *n > 0 {
                *n -= 1;
                return Err(AgentError::Unreachable {
                    host: host.to_string(),
                    message: "Cannot recv data: Connection reset by peer".into(),
                });
            }
        }
        Ok(())
    }

    /// Ends `job` of `vm` in the books (its call returns).
    fn end_job(&self, vm: &str, job: u64) {
        let mut st = lock(&self.state);
        if st.jobs.get(vm) == Some(&job) {
            st.jobs.remove(vm);
        }
        st.cancelled.remove(&job);
        st.hung.retain(|v| v != vm);
    }
}

/// Where domain `d` of the simulated cluster stands on host `h`, as libvirt would say:
/// busy on its host while a migration (or, with `job`, another job) holds it, and on the
/// destination while it is the paused incoming copy.
pub(crate) fn presence(c: &SimCluster, d: usize, h: usize, job: bool) -> Presence {
    let dom = &c.domains()[d];
    if dom.host == h {
        if dom.migration.is_some() || job {
            return Presence::Busy;
        }
        return if dom.state == DomainState::Running {
            Presence::Running
        } else {
            Presence::NotRunning
        };
    }
    // The paused incoming copy on the destination.
    if dom.migration.is_some_and(|m| m.dest == h) {
        return Presence::Busy;
    }
    Presence::Absent
}

impl Executor for SimExecutor {
    fn name(&self) -> &str {
        "sim"
    }

    fn reachable(&self, host: &HostAddr) -> bool {
        self.call(&host.name).is_ok() && lock(&self.cluster).host_index(&host.name).is_some()
    }

    fn locate(&self, vm: &str, host: &HostAddr) -> Result<Presence> {
        self.call(&host.name)?;
        let c = lock(&self.cluster);
        let h = c
            .host_index(&host.name)
            .ok_or_else(|| AgentError::Unreachable {
                host: host.name.clone(),
                message: "no such host".into(),
            })?;
        if !c.hosts()[h].up {
            return Err(AgentError::Unreachable {
                host: host.name.clone(),
                message: "host is down".into(),
            });
        }
        let Some(d) = c.domain_index(vm) else {
            return Ok(Presence::Absent);
        };
        let hung = lock(&self.state).hung.iter().any(|v| v == vm);
        Ok(presence(&c, d, h, hung))
    }

    fn migrate(&self, req: &MigrationRequest) -> Result<()> {
        self.call(&req.from.name)?;
        let fault = self.take_fault(&req.vm);
        let fail = |message: String| AgentError::Migration {
            vm: req.vm.clone(),
            message,
        };
        let (d, src, dst) = {
            let mut c = lock(&self.cluster);
            let d = c.domain_index(&req.vm).ok_or_else(|| {
                fail(format!(
                    "Domain not found: no domain with matching name '{}'",
                    req.vm
                ))
            })?;
            let src = c
                .host_index(&req.from.name)
                .ok_or_else(|| fail("unknown source".into()))?;
            let dst = c
                .host_index(&req.to.name)
                .ok_or_else(|| fail("unknown destination".into()))?;
            if c.domains()[d].host != src {
                return Err(AgentError::Refused {
                    vm: req.vm.clone(),
                    message: format!("domain {} is not on {}", req.vm, req.from.name),
                });
            }
            if lock(&self.state).hung.contains(&req.vm) {
                return Err(AgentError::Refused {
                    vm: req.vm.clone(),
                    message:
                        "Requested operation is not valid: another migration job is already running"
                            .into(),
                });
            }
            if let Some(Fault::FailMigration { message, .. }) = &fault {
                return Err(fail(message.clone()));
            }
            if matches!(fault, Some(Fault::Hang { .. })) {
                lock(&self.state).hung.push(req.vm.clone());
            }
            // From here the domain has a job (started below, or hung): an abort finds it.
            if !matches!(fault, Some(Fault::Hang { .. })) {
                c.start_migration(d, dst).map_err(|e| match e {
                    HypervisorError::MigrationRefused { .. } => AgentError::Refused {
                        vm: req.vm.clone(),
                        message: e.to_string(),
                    },
                    other => fail(other.to_string()),
                })?;
            }
            (d, src, dst)
        };
        let job = {
            let mut st = lock(&self.state);
            st.migrations_started += 1;
            st.next_job += 1;
            let job = st.next_job;
            st.jobs.insert(req.vm.clone(), job);
            job
        };
        tracing::debug!(vm = %req.vm, from = %req.from.name, to = %req.to.name, job, "sim migration started");
        if let Some(Fault::RestartMidMigration { down_calls, .. }) = fault {
            lock(&self.state)
                .down
                .insert(req.from.name.clone(), down_calls);
            return Err(AgentError::Unreachable {
                host: req.from.name.clone(),
                message: "Cannot recv data: Connection reset by peer (libvirtd restarted)".into(),
            });
        }
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.end_job(&req.vm, job);
                return Err(fail("executor stopped".into()));
            }
            if lock(&self.state).cancelled.contains(&job) {
                self.end_job(&req.vm, job);
                return Err(AgentError::Aborted {
                    vm: req.vm.clone(),
                    message: "operation aborted: migration out job: canceled by client".into(),
                });
            }
            {
                let c = lock(&self.cluster);
                let dom = &c.domains()[d];
                if dom.migration.is_none() && !matches!(fault, Some(Fault::Hang { .. })) {
                    self.end_job(&req.vm, job);
                    return if dom.host == dst {
                        Ok(())
                    } else if !c.hosts()[dst].up {
                        Err(fail(format!(
                            "Unable to read from monitor: Connection reset by peer (destination {} went down)",
                            req.to.name
                        )))
                    } else if dom.host == src {
                        Err(fail("migration job ended without completing".into()))
                    } else {
                        Err(fail("domain moved elsewhere".into()))
                    };
                }
            }
            std::thread::sleep(self.poll);
        }
    }

    /// As libvirt's virDomainAbortJob: cancels the job the domain has now, whoever started
    /// it; with no job in progress (none yet, or it ended) it is refused and changes nothing.
    fn abort(&self, req: &MigrationRequest) -> Result<()> {
        self.call(&req.from.name)?;
        let mut c = lock(&self.cluster);
        let (Some(d), Some(src)) = (c.domain_index(&req.vm), c.host_index(&req.from.name)) else {
            return Err(AgentError::Refused {
                vm: req.vm.clone(),
                message: "no such domain or host".into(),
            });
        };
        let migrating = c.domains()[d].migration.is_some() && c.domains()[d].host == src;
        let mut st = lock(&self.state);
        let hung = st.hung.contains(&req.vm);
        if !migrating && !hung {
            return Err(AgentError::Refused {
                vm: req.vm.clone(),
                message: "Requested operation is not valid: no job is active on the domain".into(),
            });
        }
        if let Some(job) = st.jobs.get(&req.vm).copied() {
            st.cancelled.insert(job);
        }
        st.hung.retain(|v| *v != req.vm);
        drop(st);
        if migrating {
            // Cancelling leaves the domain running on its source, as libvirt does.
            c.restart_on(d, src).map_err(|e| AgentError::Migration {
                vm: req.vm.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}
