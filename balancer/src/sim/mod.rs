//! Discrete-time simulator: drives a policy over the simulated hypervisor (gmond-metrics) tick
//! by tick and measures the balancing.md section 5.1 metrics.
//!
//! Migration model as CloudSim's: time = memory / (bandwidth / 2); while migrating the VM gets
//! 90 % of its demand on the source and the destination reserves another 10 %.

mod accounting;
mod cloudsim;
mod cluster;
pub mod engine;
mod exact;
mod measure;
pub mod plot;
pub mod progress;
pub mod recorded;
pub mod report;
pub mod scenario;
pub mod view;

pub use engine::{
    simulate, simulate_driven, simulate_policy, simulate_policy_with_progress, simulate_recorded,
    simulate_with_progress, with_scenario_rules, Driver, MigrationMark, Recording, SimOptions,
    Started, World,
};
pub use progress::{NoProgress, Progress, TickProgress};
pub use report::{GateTally, Report};
pub use scenario::{builtin as builtin_scenario, Scenario, BUILTIN_SCENARIOS};
