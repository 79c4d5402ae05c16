//! The metrics of a simulation run (balancing.md section 5.1 and Beloglazov's SLA metrics).

use serde::{Deserialize, Serialize};

/// Results of one run. Everything except `decision_ms_*` is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Hosts and VMs.
    pub hosts: usize,
    /// VMs.
    pub vms: usize,
    /// Energy, kWh (host power integrated while the host has load).
    pub energy_kwh: f64,
    /// The least energy, kWh, that could have served all the CPU the running VMs asked for in
    /// this run: their demand (each vCPU capped at the fastest host CPU) priced at the best
    /// watts per MHz of any host at any load, as if work split freely between hosts running
    /// at their most efficient load. No placement that serves all demand uses less; a run
    /// below it left demand unserved.
    #[serde(default)]
    pub energy_floor_kwh: f64,
    /// Migrations started.
    pub migrations: u64,
    /// Migrations started, per reason tag.
    pub migrations_by_reason: std::collections::BTreeMap<String, u64>,
    /// Migrations started per hour of simulated time.
    pub migrations_per_hour: Vec<u64>,
    /// Migrations refused by the hypervisor.
    pub migrations_refused: u64,
    /// Highest number of migrations in one hour.
    pub migrations_max_per_hour: u64,
    /// Highest number of migrations of one VM.
    pub migrations_max_per_vm: u64,
    /// Highest number of concurrent migrations.
    pub migrations_max_concurrent: u64,
    /// Bytes copied by migrations.
    pub bytes_moved: u64,
    /// Seconds of migration.
    pub migration_seconds: f64,
    /// SLA violation time per active host, fraction.
    pub slatah: f64,
    /// Performance degradation due to migration, fraction.
    pub pdm: f64,
    /// SLATAH x PDM.
    pub slav: f64,
    /// Energy x SLAV.
    pub esv: f64,
    /// Unmet CPU demand / requested, fraction (all causes).
    pub unmet_demand: f64,
    /// Host-seconds with requested CPU >= capacity.
    pub overload_host_s: f64,
    /// Host-seconds with requested CPU >= the scenario's high-utilisation mark.
    pub high_util_host_s: f64,
    /// Time-average of the CPU sigma over up hosts.
    pub sigma_cpu_mean: f64,
    /// 95th percentile of the CPU sigma.
    pub sigma_cpu_p95: f64,
    /// Final CPU sigma.
    pub sigma_cpu_final: f64,
    /// Highest host CPU utilisation (requested) at the last sample.
    pub max_util_final: f64,
    /// Final memory sigma over up hosts.
    pub sigma_mem_final: f64,
    /// Seconds from the first maintenance start until every host in maintenance was empty.
    pub drain_s: Option<u64>,
    /// Final spread (max - min utilisation).
    pub spread_final: f64,
    /// Seconds from the perturbation to a balanced state held 3 samples (None if never).
    pub time_to_balance_s: Option<u64>,
    /// Moves back to a host the VM left within one hour.
    pub ping_pong: u64,
    /// Gross migrations minus VMs whose final host differs from their first.
    pub churn: u64,
    /// Moves whose destination broke a hard rule at the time (must be 0).
    pub rule_violations: u64,
    /// VM-seconds spent violating an anti-affinity, affinity or pinning rule (any cause).
    pub rule_violation_vm_s: f64,
    /// VMs on a host in maintenance at the end.
    pub vms_on_maintenance_at_end: u64,
    /// Mean number of hosts with load.
    pub active_hosts_mean: f64,
    /// Notes (infeasible rules) reported, total.
    pub notes: u64,
    /// Conflicting moves between partition halves.
    pub partition_conflicts: u64,
    /// Plans with at least one move.
    pub rounds_with_moves: u64,
    /// Decision wall time, p50, ms (not deterministic).
    pub decision_ms_p50: f64,
    /// Decision wall time, p99, ms (not deterministic).
    pub decision_ms_p99: f64,
    /// What the gates of a [`crate::sim::Driver`] did (the agent's budget, leadership,
    /// pre-check, ...); absent when the policy alone decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GateTally>,
}

/// What a driver's gates did over a run: the policy proposed, the gates let through or held
/// back. Counted from the driver's own records (for the agent: its audit records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GateTally {
    /// Who decided (`agent`).
    pub driver: String,
    /// Migrations started past every gate and the pre-check.
    pub starts: u64,
    /// Moves refused by the hypervisor's pre-check or at the call (costing no budget).
    pub refused: u64,
    /// Moves held back by the budget (a move held back over consecutive rounds counts once,
    /// as the agent audits it once).
    pub budget_limited: u64,
    /// Moves held back, per gate (the budget included), counted each round.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Migrations verified done.
    pub done: u64,
    /// Migrations failed, aborted or of unknown outcome.
    pub failed: u64,
    /// Leadership changes (gained or lost, over every host).
    pub leader_changes: u64,
    /// Rounds in which a leader recommended only, for want of a quorum.
    pub no_quorum_rounds: u64,
    /// Aborts sent (a migration past its timeout, or on a lost lead when configured): the
    /// simulated hypervisor cancels a migration still running, leaving the VM on its source.
    pub aborts: u64,
}

impl Report {
    /// The report without wall-clock fields (for determinism checks).
    pub fn deterministic(&self) -> Report {
        Report {
            decision_ms_p50: 0.0,
            decision_ms_p99: 0.0,
            ..self.clone()
        }
    }
}
