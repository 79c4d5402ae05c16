//! Host and per-VM metric collection: the hypervisor boundary and its simulated implementation.
// `deny`, not `forbid`: hypervisor::libvirt::ffi alone allows unsafe (libvirt bulk stats and
// virDomainAbortJob, which `virt` 0.5 does not wrap).
#![deny(unsafe_code)]

mod error;
pub mod hypervisor;
pub mod linux;
pub mod vmetrics;

pub use error::{Error, Result};
