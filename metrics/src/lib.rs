//! Host and per-VM metric collection: the hypervisor boundary and its simulated implementation.
#![forbid(unsafe_code)]

pub mod hypervisor;
pub mod linux;
