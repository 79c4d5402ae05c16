//! The per-host balancer agent: reads the cluster's Ganglia view, elects a leader from it,
//! and on the leader turns the `balancer` crate's plans into libvirt live migrations, under a
//! hard budget, with an append-only audit log; it publishes its state as Ganglia metrics.
//!
//! # Coordination without a central server
//!
//! Every host runs an agent. Each agent advertises itself with the metric `balancer_mode` on
//! its own HOST. The **leader** is the lowest NAME (byte order) among hosts that are trusted,
//! whose HOST and `balancer_mode` metric were heard less than `leader_timeout_s` ago, and whose
//! mode is not `off` ([`coord::leader`]). Only the leader plans and migrates. When the leader's
//! agent stops, its `balancer_mode` ages past the bound (or reads `off` at once after a clean
//! stop) and the next host takes over: failover within `leader_timeout_s` plus one interval.
//!
//! # Why no VM is moved twice, even when two agents briefly both lead
//!
//! Views differ between hosts for a few seconds (packet loss, a host that just (re)started), so
//! two agents may both believe they lead for a short while. A double move needs the same VM
//! migrated by both, or migrated back soon after. Each is blocked by an independent check:
//!
//! 1. **At planning**, a VM is only a candidate if the leader's view shows it on exactly one
//!    host (a VM reported fresh by two hosts, within `view::SUPERSEDED_AFTER_S` of each other,
//!    is in flight: [`view::build`]), on the planned
//!    source, with the source and destination live; VMs with a recent move in the history are
//!    refused (planner cooldown and the agent's `recently_moved` gate).
//! 2. **The history is shared through the view**: every agent advertises the moves it started
//!    (`balancer_recent_moves`, as soon as they start) and every agent records placement
//!    changes it observes in the view. A new leader therefore knows the old leader's moves.
//! 3. **Right before migrating**, the worker asks the hypervisor itself: the VM must be
//!    running on the planned source with no job in progress, and absent from the destination
//!    ([`core::precheck_source`], [`core::precheck_destination`], run by the shell's worker
//!    right before the call). If another agent moved it, the source says so; if another
//!    agent is moving it now, libvirt reports the migration job (and would refuse a second job
//!    on the same domain anyway).
//! 4. **Afterwards**, the outcome is verified against the hypervisor (running on the
//!    destination, gone from the source), never assumed.
//!
//! A host that loses the lead starts nothing more; its in-flight migrations finish or are
//! aborted (`on_lost_lead`); either way libvirt leaves the VM on exactly one host. A leader
//! that does not see a strict majority of the inventory live starts nothing either: it
//! recommends, so in a partition at most one side moves VMs.
//!
//! # Decisions without IO
//!
//! [`core::AgentCore`] makes every decision from inputs (views, time, the hypervisor's
//! answers) and returns actions; [`agent::Agent`] runs them (worker threads, the audit log,
//! the [`state`] file that lets a restarted agent reconcile what it left in flight).
//!
//! The same core drives `balancer`'s simulator: [`simulate::AgentSim`] runs one per simulated
//! host, so `balancer simulate` shows what the agents would do, gates included.
//!
//! # Safety against bad input
//!
//! Only trusted hosts count: a configured `trusted_hosts` list, or when empty the cluster's
//! membership, i.e. hosts whose hypervisor this agent reaches through the URI template.
//! Everything else in the view is ignored: not a source, not a destination, not a leader
//! candidate, its advertised moves unread. A hard budget (`budget_migrations` per
//! `budget_window_s`, counting this agent's starts once the hypervisor's pre-check passed, and
//! the moves other trusted balancers advertise) holds whatever the view says, so forged load
//! cannot cause a migration storm, and a forged VM costs nothing.
// libvirt (and its unsafe FFI) is reached only through gmond-metrics' safe control API.
#![forbid(unsafe_code)]

pub mod agent;
pub mod audit;
pub mod config;
pub mod coord;
pub mod core;
pub mod error;
pub mod executor;
#[cfg(feature = "libvirt")]
pub mod libvirt_exec;
pub mod metrics;
pub mod sim_exec;
pub mod simulate;
pub mod state;
pub mod view;

/// The policy crate, re-exported so users need no second dependency.
pub use balancer;

pub use agent::{Agent, AgentOptions};
pub use config::{AgentConfig, ExecutorKind, InflightAction, Mode};
pub use core::{Action, AgentCore, Outcome, TickReport};
pub use error::{AgentError, Result};
pub use executor::{Executor, HostAddr, MigrationRequest, Presence};
#[cfg(feature = "libvirt")]
pub use libvirt_exec::LibvirtExecutor;
pub use sim_exec::{Fault, SimExecutor};
