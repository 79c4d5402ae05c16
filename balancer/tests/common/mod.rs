//! Helpers the balancer's integration tests share.
#![allow(dead_code)]

use balancer::snapshot::HostState;

/// KB in a GB.
pub const GB: u64 = 1024 * 1024;

/// A 16 x 2,000 MHz host with 64 GB, up and not in maintenance.
pub fn host(name: &str) -> HostState {
    HostState {
        name: name.into(),
        cpus: 16,
        mhz: 2000.0,
        mem_kb: 64 * GB,
        up: true,
        maintenance: false,
        power: None,
    }
}
