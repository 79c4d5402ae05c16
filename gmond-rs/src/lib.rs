//! gmond-rs as a library: the cluster store, the sender and the daemon, so tests and the demo
//! can run them in-process. It knows nothing of the balancer.
#![forbid(unsafe_code)]

pub mod archive;
pub mod auth;
pub mod daemon;
pub mod ingest;
pub mod iostats;
pub mod selfmetrics;
pub mod sender;
pub mod store;
pub mod vmpublish;
