//! gmond-rs as a library: the cluster store and the daemon's parts, so tests and the demo can
//! run them in-process.
#![forbid(unsafe_code)]

pub mod store;
