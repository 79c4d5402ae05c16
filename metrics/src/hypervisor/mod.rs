//! The hypervisor boundary: what gmond-rs and the balancer need to know about domains on a host.
//!
//! Blocking-call style and object-safe (`&dyn Hypervisor`) so that a libvirt implementation can
//! sit behind the same trait as the deterministic simulation in [`sim`].

#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod profile;
pub mod sim;

use serde::{Deserialize, Serialize};

use crate::Error;

/// libvirt-style domain run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DomainState {
    /// Running normally.
    Running,
    /// Paused (also the final phase of a live migration).
    Paused,
    /// Shut off.
    Shutoff,
    /// Crashed.
    Crashed,
}

impl DomainState {
    /// Numeric code as libvirt's virDomainState (used by the `vcpu_state` metric).
    pub fn code(self) -> u32 {
        match self {
            DomainState::Running => 1,
            DomainState::Paused => 3,
            DomainState::Shutoff => 5,
            DomainState::Crashed => 6,
        }
    }
}

/// One domain as a hypervisor reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Domain name (unique on the cluster).
    pub name: String,
    /// UUID text, 36 characters.
    pub uuid: String,
    /// Run state.
    pub state: DomainState,
    /// vCPUs currently online.
    pub vcpus_current: u32,
    /// vCPUs configured maximum.
    pub vcpus_max: u32,
    /// Maximum memory, KiB.
    pub mem_max_kib: u64,
    /// Current balloon size, KiB.
    pub mem_current_kib: u64,
    /// Memory used by the guest, KiB (balloon stats; equals current if unknown).
    pub mem_used_kib: u64,
    /// Cumulative CPU time consumed, nanoseconds.
    pub cpu_time_ns: u64,
}

/// Host capacity as the hypervisor reports it (virNodeGetInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCapacity {
    /// Physical CPUs (cores).
    pub cpus: u32,
    /// Clock per CPU, MHz.
    pub mhz: u32,
    /// Physical memory, KiB.
    pub mem_kib: u64,
    /// Free memory, KiB.
    pub mem_free_kib: u64,
}

/// A connection to one host's hypervisor. Calls block; implementations must not panic.
pub trait Hypervisor {
    /// The host's name.
    fn hostname(&self) -> Result<String, Error>;
    /// Host capacity.
    fn capacity(&self) -> Result<HostCapacity, Error>;
    /// Every domain on the host (running or not), sorted by name.
    fn domains(&self) -> Result<Vec<DomainInfo>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_is_object_safe() {
        fn takes(_: &dyn Hypervisor) {}
        let c = sim::SimCluster::new(1);
        let h = c.host_view("none");
        takes(&h);
        assert!(matches!(h.domains(), Err(Error::UnknownHost(_))));
    }
}
