//! Host and per-VM metric collection: the hypervisor boundary and its simulated implementation.
// `deny`, not `forbid`: hypervisor::libvirt::ffi alone allows unsafe (libvirt bulk stats).
#![deny(unsafe_code)]

pub mod hypervisor;
pub mod linux;
pub mod vmetrics;
