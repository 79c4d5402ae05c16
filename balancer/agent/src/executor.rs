//! The hypervisor side of a migration, behind a blocking trait: [`crate::sim_exec::SimExecutor`]
//! over the simulated cluster, `LibvirtExecutor` (feature `libvirt`) over libvirt.
//!
//! Every call may block for long (a libvirt RPC to a hung daemon); the agent calls them only on
//! its own worker threads, never on an async runtime and never while holding its state.

use std::time::Duration;

use crate::error::{AgentError, Result};

/// A host as the view names it: NAME and IP attribute (for the URI template).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct HostAddr {
    /// Ganglia NAME.
    pub name: String,
    /// Ganglia IP attribute (may be empty).
    pub ip: String,
}

/// Where a VM stands on one host, per the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Defined and running, no job in progress.
    Running,
    /// Present but a job (a migration) is in progress, or it is the paused incoming copy.
    Busy,
    /// Present but not running (paused, shut off, crashed).
    NotRunning,
    /// Not on this host.
    Absent,
}

/// One live migration to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRequest {
    /// Agent-unique id (also in the audit log).
    pub id: u64,
    /// VM (libvirt domain) name.
    pub vm: String,
    /// Source host.
    pub from: HostAddr,
    /// Destination host.
    pub to: HostAddr,
    /// The agent aborts the migration after this long.
    pub timeout: Duration,
}

/// A hypervisor backend able to live-migrate. Implementations must be thread-safe: `abort`
/// is called from another thread while `migrate` blocks.
pub trait Executor: Send + Sync {
    /// Backend name for logs (`sim`, `libvirt`).
    fn name(&self) -> &str;

    /// Whether this host's hypervisor answers: the membership test used when no trusted list
    /// is configured. May be cached by the implementation.
    fn reachable(&self, host: &HostAddr) -> bool;

    /// Where `vm` stands on `host`.
    fn locate(&self, vm: &str, host: &HostAddr) -> Result<Presence>;

    /// Live-migrates `req.vm` from `req.from` to `req.to`, blocking until it completed or
    /// failed. Errors carry the hypervisor's own text.
    fn migrate(&self, req: &MigrationRequest) -> Result<()>;

    /// Aborts the migration job of `req.vm` on `req.from` (the blocked `migrate` then returns
    /// an error and the VM stays on its source).
    fn abort(&self, req: &MigrationRequest) -> Result<()>;
}

/// `executor = "none"`: no hypervisor at all. Nothing is reachable (membership comes from
/// `trusted_hosts` alone) and every hypervisor call fails, so not even a mistaken `auto` could
/// move a VM.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHypervisor;

impl NoHypervisor {
    const WHY: &'static str = "no hypervisor access (executor = \"none\")";
}

impl Executor for NoHypervisor {
    fn name(&self) -> &str {
        "none"
    }

    fn reachable(&self, _host: &HostAddr) -> bool {
        false
    }

    fn locate(&self, _vm: &str, host: &HostAddr) -> Result<Presence> {
        Err(AgentError::Unreachable {
            host: host.name.clone(),
            message: Self::WHY.into(),
        })
    }

    fn migrate(&self, req: &MigrationRequest) -> Result<()> {
        Err(AgentError::Refused {
            vm: req.vm.clone(),
            message: Self::WHY.into(),
        })
    }

    fn abort(&self, req: &MigrationRequest) -> Result<()> {
        Err(AgentError::Refused {
            vm: req.vm.clone(),
            message: Self::WHY.into(),
        })
    }
}
