//! Trend analysis, pluggable balancing policies, shared constraints, the move planner and a
//! discrete-time simulator that drives the same policy code over a simulated hypervisor.
#![forbid(unsafe_code)]
// Placement code indexes several parallel per-host vectors at once; iterators would hide that.
#![allow(clippy::needless_range_loop)]
// `!(x > 0.0)` is deliberate in validation: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod constraints;
pub mod error;
pub mod feed;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod rrdstore;
pub mod sim;
pub mod snapshot;
pub mod trends;
pub mod view;

pub use error::{BalancerError, Result};
