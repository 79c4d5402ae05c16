//! The move planner every policy builds its plan through: a working copy of the placement,
//! the shared constraints, gates on predicted post-move load, a cost-benefit test with a
//! hysteresis band, rate limits, escalating per-VM cooldowns, ping-pong refusal, and the
//! priority-1 rule enforcement (maintenance drain, affinity, anti-affinity, pinning).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::constraints::Rules;
use crate::error::BalancerError;
use crate::plan::{
    r6, Check, Cost, Effect, Move, Note, Plan, Prediction, Reason, RefusedMove, WhyNone,
};
use crate::snapshot::{Snapshot, VmState};
use crate::trends::Trends;

/// One past (or in-flight) migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// VM name.
    pub vm: String,
    /// Source host.
    pub from: String,
    /// Destination host.
    pub to: String,
    /// Start, seconds.
    pub start: u64,
}

/// What the policy knows of its own past: migrations and notes already reported.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    /// Migrations, oldest first.
    pub migrations: Vec<MigrationRecord>,
    /// Note keys already reported (not repeated).
    pub reported: BTreeSet<String>,
    /// Per VM: indices into `migrations`, built lazily by [`History::index`].
    #[serde(skip)]
    by_vm: BTreeMap<String, Vec<usize>>,
}

impl History {
    /// Records a migration.
    pub fn record(&mut self, rec: MigrationRecord) {
        self.by_vm
            .entry(rec.vm.clone())
            .or_default()
            .push(self.migrations.len());
        self.migrations.push(rec);
    }

    /// Rebuilds the per-VM index (after deserialising).
    pub fn index(&mut self) {
        self.by_vm.clear();
        for (i, m) in self.migrations.iter().enumerate() {
            self.by_vm.entry(m.vm.clone()).or_default().push(i);
        }
    }

    /// Migrations of `vm`, oldest first.
    pub fn of_vm<'a>(&'a self, vm: &str) -> impl Iterator<Item = &'a MigrationRecord> + 'a {
        self.by_vm
            .get(vm)
            .into_iter()
            .flatten()
            .map(|&i| &self.migrations[i])
    }
}

/// The inputs of a decision. Policies are pure functions of this and their config.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Current snapshot.
    pub snapshot: &'a Snapshot,
    /// Load histories (including this snapshot).
    pub trends: &'a Trends,
    /// Past migrations and reported notes.
    pub history: &'a History,
    /// Decision time, seconds.
    pub now: u64,
    /// Wall-clock time of the decision, epoch seconds (UTC), which the migration windows read:
    /// the agent's `now`; in the simulator the scenario's `start_epoch` plus `now`.
    pub wall_s: u64,
    /// Keep every test the policy ran in the plan, moves or not, and the refused candidates
    /// one by one (`plan --explain`, `simulate --verbose`); off in the agent's rounds, which
    /// then pay only for the counts.
    pub verbose: bool,
    /// Second halves of swaps the executor holds back ([`Move::after`]): while the VM they
    /// wait for still migrates, their VM is left alone; once it has ended, the round plans
    /// them first if every hard gate still passes (or notes why not). Empty for a plain
    /// decision.
    pub pending: &'a [Move],
}

/// The `[planner]` section of a policy file (defaults and ranges documented in
/// configs/policies/*.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Moves planned per round (0 = unlimited; default 4).
    pub max_moves_per_round: usize,
    /// Migrations in flight at once, counting those already running (0 = unlimited; default 2).
    pub max_parallel: usize,
    /// Migrations per VM in any sliding hour (0 = unlimited; default 2).
    pub max_moves_per_vm_per_hour: usize,
    /// Base cooldown after a VM moved, seconds (default 900).
    pub cooldown_s: u64,
    /// Cooldown multiplier per extra move of the same VM within `pingpong_window_s` (>= 1;
    /// default 2).
    pub cooldown_escalation: f64,
    /// A move back to a host the VM left within this many seconds is a ping-pong (default 3600).
    pub pingpong_window_s: u64,
    /// Refuse ping-pong moves (default true).
    pub forbid_pingpong: bool,
    /// Minimum net gain (policy objective minus migration cost) to accept a move: the
    /// hysteresis band (default 0.02).
    pub min_gain: f64,
    /// Weight of migration cost in the cost-benefit test, per migration-second divided by
    /// `benefit_horizon_s` (default 1.0).
    pub cost_weight: f64,
    /// Horizon over which a move's gain is expected to last, seconds (default 1800).
    pub benefit_horizon_s: f64,
    /// Link bandwidth for migration, bits per second (default 1e9; half is used).
    pub link_bps: f64,
    /// Extra fraction of memory re-copied because of dirty pages (default 0.0).
    pub dirty_factor: f64,
    /// Run the priority-1 rule enforcement (maintenance, affinity, pinning) before the
    /// policy's own moves (default true).
    pub enforce_rules: bool,
    /// Highest CPU utilisation a rule-enforcement move may create on its destination
    /// (default 1.0).
    pub rule_dest_max_util: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            max_moves_per_round: 4,
            max_parallel: 2,
            max_moves_per_vm_per_hour: 2,
            cooldown_s: 900,
            cooldown_escalation: 2.0,
            pingpong_window_s: 3600,
            forbid_pingpong: true,
            min_gain: 0.02,
            cost_weight: 1.0,
            benefit_horizon_s: 1800.0,
            link_bps: 1e9,
            dirty_factor: 0.0,
            enforce_rules: true,
            rule_dest_max_util: 1.0,
        }
    }
}

impl PlannerConfig {
    /// A planner that lets every feasible move through: no limits, cooldown, hysteresis or
    /// cost (for Beloglazov fidelity runs and the naive baseline).
    pub fn permissive() -> Self {
        PlannerConfig {
            max_moves_per_round: 0,
            max_parallel: 0,
            max_moves_per_vm_per_hour: 0,
            cooldown_s: 0,
            forbid_pingpong: false,
            min_gain: f64::NEG_INFINITY,
            cost_weight: 0.0,
            ..Default::default()
        }
    }

    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if self.cooldown_escalation < 1.0 {
            return Err(BalancerError::config("cooldown_escalation must be >= 1"));
        }
        if !(self.link_bps > 0.0) || !(self.benefit_horizon_s > 0.0) {
            return Err(BalancerError::config(
                "link_bps and benefit_horizon_s must be > 0",
            ));
        }
        if self.cost_weight < 0.0 || self.dirty_factor < 0.0 {
            return Err(BalancerError::config(
                "cost_weight and dirty_factor must be >= 0",
            ));
        }
        Ok(())
    }

    /// Migration seconds for `mem_kb`: memory / (bandwidth / 2).
    pub fn migration_seconds(&self, mem_kb: u64) -> f64 {
        mem_kb as f64 * 1024.0 * 8.0 / (self.link_bps / 2.0)
    }
}

/// Kinds of move, which decide the gates applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// Priority-1 rule fix: constraints and budget only.
    Rule,
    /// Load balancing: every gate, and the destination must end below the source's old load.
    Balance,
    /// Consolidation: every gate except the destination-below-source test.
    Consolidate,
}

/// Why a candidate move was refused (counted per gate in the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// The VM is migrating or already moved this round.
    Busy,
    /// Per-VM cooldown not over.
    Cooldown,
    /// Per-VM hourly limit.
    VmRate,
    /// Back to a host left recently.
    PingPong,
    /// Destination down, in maintenance, or equal to the source.
    Destination,
    /// Memory would exceed capacity minus reserve.
    Memory,
    /// vCPU:pCPU ratio would be exceeded.
    VcpuRatio,
    /// Anti-affinity would be broken.
    AntiAffinity,
    /// Affinity would be broken.
    Affinity,
    /// Pinning forbids the destination.
    Pinning,
    /// Destination would be too loaded after the move.
    DestLoad,
    /// Gain minus cost below the hysteresis band.
    CostBenefit,
    /// Round or parallel budget exhausted.
    Budget,
    /// No host passed every gate for the VM (counted by policies whose destination search
    /// does not say which gate).
    NoDestination,
    /// The operator excludes the VM from balancing (`exclude`).
    Excluded,
    /// Outside the migration windows.
    Window,
    /// The first half of a swap did not end where it was planned to: the second is dropped.
    SwapBroken,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Cooldown => "cooldown",
            Refusal::VmRate => "vm_rate",
            Refusal::PingPong => "ping_pong",
            Refusal::Destination => "destination",
            Refusal::Memory => "memory",
            Refusal::VcpuRatio => "vcpu_ratio",
            Refusal::AntiAffinity => "anti_affinity",
            Refusal::Affinity => "affinity",
            Refusal::Pinning => "pinning",
            Refusal::DestLoad => "dest_load",
            Refusal::CostBenefit => "cost_benefit",
            Refusal::Budget => "budget",
            Refusal::NoDestination => "no_destination",
            Refusal::Excluded => "excluded",
            Refusal::Window => "window",
            Refusal::SwapBroken => "swap_broken",
        }
    }
}

/// Working state of one decision.
#[derive(Debug)]
pub struct Planner<'a> {
    /// Inputs.
    pub input: Input<'a>,
    /// Resolved constraints.
    pub rules: &'a Rules,
    /// Limits and gates.
    pub cfg: &'a PlannerConfig,
    /// Current host of every VM (after planned moves).
    pub vm_host: Vec<usize>,
    /// CPU demand per host, MHz (after planned moves).
    pub cpu: Vec<f64>,
    /// Committed memory per host, KB.
    pub mem: Vec<u64>,
    /// vCPUs per host.
    pub vcpus: Vec<u32>,
    /// VMs per host (indices, ascending).
    pub on_host: Vec<Vec<usize>>,
    /// Memory (KB) and vCPUs of the VMs planned out of each host this round: the moves of a
    /// round run at once, so a host holds what leaves it until those migrations end, and a
    /// move into it may not count on that room (only a swap's second half, started after its
    /// first, may).
    leaving: Vec<(u64, u32)>,
    /// Pending second halves whose first half has ended: (VM, the first half's VM, move).
    due: Vec<(usize, Option<usize>, Move)>,
    moved: Vec<bool>,
    /// Moves planned per VM (a VM can be planned twice, see `allow_second_move`).
    move_count: Vec<u32>,
    in_flight: usize,
    moves: Vec<Move>,
    notes: Vec<Note>,
    refused: BTreeMap<Refusal, u32>,
    /// Refused candidates (VM, destination tried), the first [`Plan::MAX_REFUSED_LISTED`],
    /// kept when `input.verbose`.
    refusals: Vec<(usize, Option<usize>, Refusal)>,
    /// Tests the policy ran (host or cluster, test, value, op, threshold, fired), kept as
    /// static text so that a round with moves pays only for the pushes.
    checks: Vec<RawCheck>,
    /// Hosts (None = the cluster) the policy found in need of moves.
    qualified: Vec<Option<usize>>,
    /// Inside a migration window (or none configured): moves may be planned.
    window_open: bool,
}

/// A [`Check`] before host names are resolved.
type RawCheck = (Option<usize>, &'static str, f64, &'static str, f64, bool);

impl<'a> Planner<'a> {
    /// Starts from the snapshot's placement.
    pub fn new(input: Input<'a>, rules: &'a Rules, cfg: &'a PlannerConfig) -> Planner<'a> {
        let s = input.snapshot;
        let nh = s.hosts.len();
        let mut p = Planner {
            input,
            rules,
            cfg,
            vm_host: Vec::with_capacity(s.vms.len()),
            cpu: vec![0.0; nh],
            mem: vec![0; nh],
            vcpus: vec![0; nh],
            on_host: vec![Vec::new(); nh],
            leaving: vec![(0, 0); nh],
            due: Vec::new(),
            moved: vec![false; s.vms.len()],
            move_count: vec![0; s.vms.len()],
            in_flight: s.vms.iter().filter(|v| v.migrating).count(),
            moves: Vec::new(),
            notes: Vec::new(),
            refused: BTreeMap::new(),
            refusals: Vec::new(),
            checks: Vec::new(),
            qualified: Vec::new(),
            window_open: rules.windows.open_at(input.wall_s),
        };
        if !p.window_open {
            let next = rules.windows.next_open(input.wall_s);
            let when = next
                .and_then(|t| i64::try_from(t).ok())
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map_or("never".to_string(), |t| {
                    t.format("%Y-%m-%d %H:%M UTC").to_string()
                });
            p.note(
                format!("window:{}", next.unwrap_or(0)),
                format!(
                    "outside the migration windows: no move starts; the next window opens {when}"
                ),
            );
        }
        for (i, vm) in s.vms.iter().enumerate() {
            let h = vm
                .migrating_to
                .as_deref()
                .and_then(|d| s.host_index(d))
                .unwrap_or(vm.host_idx);
            p.vm_host.push(h);
            p.cpu[h] += vm.cpu_demand_mhz;
            p.mem[h] += vm.mem_kb;
            p.vcpus[h] += vm.vcpus;
            p.on_host[h].push(i);
            // Until a live migration ends, the source still holds the VM's memory and vCPUs:
            // a move into the source meanwhile must find them taken, or memory overfills.
            if h != vm.host_idx {
                p.mem[vm.host_idx] += vm.mem_kb;
                p.vcpus[vm.host_idx] += vm.vcpus;
            }
        }
        for m in input.pending {
            let (Some(v), first) = (s.vm_index(&m.vm), m.after.as_deref()) else {
                continue;
            };
            let first = first.and_then(|f| s.vm_index(f));
            if first.is_some_and(|f| s.vms[f].migrating) {
                // Its turn comes when the first half ends: nothing else moves it meanwhile.
                p.moved[v] = true;
            } else {
                p.due.push((v, first, m.clone()));
            }
        }
        p
    }

    /// The snapshot.
    pub fn snap(&self) -> &'a Snapshot {
        self.input.snapshot
    }

    /// VM `v`'s priority (`[constraints] priority`, the view's tag): the higher, the later it
    /// is chosen to move off its host.
    pub fn priority(&self, v: usize) -> i32 {
        self.rules.priority.get(v).copied().unwrap_or(0)
    }

    /// Of `vms`, those of the lowest priority: the class a policy chooses from first.
    pub fn lowest_priority(&self, vms: &[usize]) -> Vec<usize> {
        let low = vms.iter().map(|&v| self.priority(v)).min();
        vms.iter()
            .copied()
            .filter(|&v| Some(self.priority(v)) == low)
            .collect()
    }

    /// CPU utilisation of host `h` in the working placement.
    pub fn util(&self, h: usize) -> f64 {
        self.cpu[h] / self.snap().hosts[h].cpu_mhz()
    }

    /// Memory utilisation of host `h` in the working placement.
    pub fn mem_util(&self, h: usize) -> f64 {
        self.mem[h] as f64 / self.snap().hosts[h].mem_kb as f64
    }

    /// Hosts that may receive VMs.
    pub fn fillable(&self, h: usize) -> bool {
        self.rules.fillable[h]
    }

    /// Moves planned so far.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// True while the round and parallel budgets allow another move.
    pub fn budget_left(&self) -> bool {
        let n = self.moves.len();
        self.window_open
            && (self.cfg.max_moves_per_round == 0 || n < self.cfg.max_moves_per_round)
            && (self.cfg.max_parallel == 0 || self.in_flight + n < self.cfg.max_parallel)
    }

    /// Moves still allowed this round (None = unlimited).
    pub fn budget_remaining(&self) -> Option<usize> {
        if !self.window_open {
            return Some(0);
        }
        let n = self.moves.len();
        let round = (self.cfg.max_moves_per_round > 0)
            .then(|| self.cfg.max_moves_per_round.saturating_sub(n));
        let par = (self.cfg.max_parallel > 0)
            .then(|| self.cfg.max_parallel.saturating_sub(self.in_flight + n));
        match (round, par) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records a test the policy ran on host `h` (None = the cluster) for the explanation of
    /// a round without moves; returns whether `value op threshold` holds (`op`: `>`, `>=`,
    /// `<`), so that a policy can test and record in one call.
    pub fn test(
        &mut self,
        h: Option<usize>,
        what: &'static str,
        value: f64,
        op: &'static str,
        threshold: f64,
    ) -> bool {
        let fired = match op {
            ">" => value > threshold,
            ">=" => value >= threshold,
            _ => value < threshold,
        };
        self.record(h, what, value, op, threshold, fired);
        fired
    }

    /// Records a test whose outcome the policy computed itself (see [`Planner::test`]).
    pub fn record(
        &mut self,
        h: Option<usize>,
        what: &'static str,
        value: f64,
        op: &'static str,
        threshold: f64,
        fired: bool,
    ) {
        self.checks.push((h, what, value, op, threshold, fired));
    }

    /// Records that host `h` (None = the cluster) passed the policy's tests.
    pub fn qualify(&mut self, h: Option<usize>) {
        self.qualified.push(h);
    }

    /// Counts a refusal.
    pub fn refuse(&mut self, r: Refusal) -> Refusal {
        *self.refused.entry(r).or_default() += 1;
        r
    }

    /// Counts a refusal of moving VM `v` (to `dst`, or to any host when None) and, in a
    /// verbose round, lists it.
    pub fn refuse_vm(&mut self, v: usize, dst: Option<usize>, r: Refusal) -> Refusal {
        if self.input.verbose && self.refusals.len() < Plan::MAX_REFUSED_LISTED {
            self.refusals.push((v, dst, r));
        }
        self.refuse(r)
    }

    /// Adds a note unless its key was already reported.
    pub fn note(&mut self, key: String, message: String) {
        if !self.input.history.reported.contains(&key) && !self.notes.iter().any(|n| n.key == key) {
            tracing::info!(key = %key, message = %message, "balancer note");
            self.notes.push(Note { key, message });
        }
    }

    /// Per-VM gates: busy, hourly rate, escalating cooldown, ping-pong (to `dst`).
    pub fn vm_gate(&self, v: usize, dst: usize, kind: MoveKind) -> Result<(), Refusal> {
        let s = self.snap();
        let vm = &s.vms[v];
        if vm.migrating || self.moved[v] {
            return Err(Refusal::Busy);
        }
        if self.rules.excluded.get(v) == Some(&true) {
            return Err(Refusal::Excluded);
        }
        if kind == MoveKind::Rule {
            return Ok(());
        }
        let now = self.input.now;
        let hist: Vec<&MigrationRecord> = self.input.history.of_vm(&vm.name).collect();
        if self.cfg.max_moves_per_vm_per_hour > 0 {
            let last_hour = hist.iter().filter(|m| m.start + 3600 > now).count();
            if last_hour >= self.cfg.max_moves_per_vm_per_hour {
                return Err(Refusal::VmRate);
            }
        }
        if let Some(last) = hist.last() {
            let recent = hist
                .iter()
                .filter(|m| m.start + self.cfg.pingpong_window_s > now)
                .count()
                .max(1);
            let exp = i32::try_from(recent - 1).unwrap_or(i32::MAX).min(30);
            let cd = self.cfg.cooldown_s as f64 * self.cfg.cooldown_escalation.powi(exp);
            if (now as f64) < last.start as f64 + cd {
                return Err(Refusal::Cooldown);
            }
        }
        if self.cfg.forbid_pingpong {
            let dst_name = &s.hosts[dst].name;
            if hist
                .iter()
                .any(|m| &m.from == dst_name && m.start + self.cfg.pingpong_window_s > now)
            {
                return Err(Refusal::PingPong);
            }
        }
        Ok(())
    }

    /// Hard constraints for VM `v` on host `dst` in the working placement; for a VM whose
    /// affinity group runs with it, those of the whole group moving there (see
    /// [`Planner::try_move`]).
    pub fn fits(&self, v: usize, dst: usize) -> Result<(), Refusal> {
        match self.fits_alone(v, dst) {
            Err(Refusal::Affinity) => match self.companions(v) {
                Some((_, others)) => self.fits_group(v, &others, dst).map(|_| ()),
                None => Err(Refusal::Affinity),
            },
            r => r,
        }
    }

    /// The affinity group VM `v` would carry along to `dst`: its group and the other members,
    /// when `v` alone would break the group and the group runs together with it.
    fn carries_group(&self, v: usize, dst: usize) -> Option<(usize, Vec<usize>)> {
        (self.fits_alone(v, dst) == Err(Refusal::Affinity))
            .then(|| self.companions(v))
            .flatten()
    }

    /// Hard constraints for VM `v` alone on host `dst`.
    fn fits_alone(&self, v: usize, dst: usize) -> Result<(), Refusal> {
        let s = self.snap();
        let vm = &s.vms[v];
        let src = self.vm_host[v];
        if dst == src || !self.rules.fillable[dst] {
            return Err(Refusal::Destination);
        }
        let (mem, vcpus) = self.held(dst);
        if mem.saturating_add(vm.mem_kb) > self.rules.mem_limit[dst] {
            return Err(Refusal::Memory);
        }
        if vcpus.saturating_add(vm.vcpus) > self.rules.vcpu_limit[dst] {
            return Err(Refusal::VcpuRatio);
        }
        self.placement_rules(v, dst, &[v])?;
        if let Some(g) = self.rules.aff_of[v] {
            // Leaving the group's host is only allowed towards another member.
            let others: Vec<usize> = self.rules.aff[g]
                .iter()
                .copied()
                .filter(|&o| o != v)
                .collect();
            if !others.is_empty() && !others.iter().any(|&o| self.vm_host[o] == dst) {
                return Err(Refusal::Affinity);
            }
        }
        Ok(())
    }

    /// Tries a move through every gate of `kind`; `dst_max_util` caps the destination's
    /// predicted CPU utilisation; `gain` is the policy objective improvement. On success the
    /// move is recorded and the working placement updated.
    pub fn try_move(
        &mut self,
        v: usize,
        dst: usize,
        reason: Reason,
        gain: f64,
        dst_max_util: f64,
        kind: MoveKind,
    ) -> Result<(), Refusal> {
        if let Err(r) = self.check(v, dst, gain, dst_max_util, kind) {
            return Err(self.refuse_vm(v, Some(dst), r));
        }
        // A VM whose affinity group runs with it leaves only with the whole group.
        match self.carries_group(v, dst) {
            Some((g, others)) => self.commit_group(v, (g, &others), dst, reason, gain),
            None => self.commit(v, dst, reason, gain),
        }
        Ok(())
    }

    /// VM `v`'s affinity group and its other members when they all run on `v`'s host (a
    /// group together, which moves together); None otherwise.
    fn companions(&self, v: usize) -> Option<(usize, Vec<usize>)> {
        let g = self.rules.aff_of[v]?;
        let src = self.vm_host[v];
        let others: Vec<usize> = self.rules.aff[g]
            .iter()
            .copied()
            .filter(|&o| o != v)
            .collect();
        (!others.is_empty() && others.iter().all(|&o| self.vm_host[o] == src))
            .then_some((g, others))
    }

    /// Records `v` and its group's `others` moving to `dst` together (checked by
    /// [`Planner::check`]), consecutive and marked with the group's name.
    fn commit_group(
        &mut self,
        v: usize,
        (g, others): (usize, &[usize]),
        dst: usize,
        reason: Reason,
        gain: f64,
    ) {
        let name = self.rules.aff_names.get(g).cloned();
        let first = self.moves.len();
        self.commit(v, dst, reason.clone(), gain);
        for &o in others {
            self.commit(o, dst, reason.clone(), 0.0);
        }
        for m in &mut self.moves[first..] {
            m.group.clone_from(&name);
        }
    }

    /// Hard constraints for `v` and its group's `others` moving to `dst` together: each
    /// member's pinning and anti-affinity, the group's sum against memory and vCPUs.
    /// Returns the group's CPU demand (MHz) and migration seconds.
    fn fits_group(&self, v: usize, others: &[usize], dst: usize) -> Result<(f64, f64), Refusal> {
        let s = self.snap();
        if dst == self.vm_host[v] || !self.rules.fillable[dst] {
            return Err(Refusal::Destination);
        }
        let members: Vec<usize> = std::iter::once(v).chain(others.iter().copied()).collect();
        let (mut cpu, mut mem, mut vcpus, mut seconds) = (0.0, 0u64, 0u32, 0.0);
        for &m in &members {
            self.placement_rules(m, dst, &members)?;
            let vm = &s.vms[m];
            cpu += vm.cpu_demand_mhz;
            mem = mem.saturating_add(vm.mem_kb);
            vcpus = vcpus.saturating_add(vm.vcpus);
            seconds += self.cfg.migration_seconds(vm.mem_kb);
        }
        let (held_mem, held_vcpus) = self.held(dst);
        if held_mem.saturating_add(mem) > self.rules.mem_limit[dst] {
            return Err(Refusal::Memory);
        }
        if held_vcpus.saturating_add(vcpus) > self.rules.vcpu_limit[dst] {
            return Err(Refusal::VcpuRatio);
        }
        Ok((cpu, seconds))
    }

    /// Pinning and anti-affinity for VM `x` on host `to`, where the VMs in `moving` (`x`
    /// among them) are leaving their hosts with it and count as no one's neighbours.
    fn placement_rules(&self, x: usize, to: usize, moving: &[usize]) -> Result<(), Refusal> {
        if !self.rules.pin_allows(x, to) {
            return Err(Refusal::Pinning);
        }
        for &g in &self.rules.anti_of[x] {
            if self.rules.anti[g]
                .iter()
                .any(|&o| !moving.contains(&o) && self.vm_host[o] == to)
            {
                return Err(Refusal::AntiAffinity);
            }
        }
        Ok(())
    }

    /// Memory (KB) and vCPUs host `h` holds while this round's migrations run: what it
    /// carries after them plus what is still leaving it.
    fn held(&self, h: usize) -> (u64, u32) {
        let (mem, vcpus) = self.leaving[h];
        (
            self.mem[h].saturating_add(mem),
            self.vcpus[h].saturating_add(vcpus),
        )
    }

    /// All gates without recording anything.
    pub fn check(
        &self,
        v: usize,
        dst: usize,
        gain: f64,
        dst_max_util: f64,
        kind: MoveKind,
    ) -> Result<(), Refusal> {
        if !self.window_open {
            return Err(Refusal::Window);
        }
        if !self.budget_left() {
            return Err(Refusal::Budget);
        }
        self.vm_gate(v, dst, kind)?;
        // A VM whose affinity group runs with it is judged with the whole group: every
        // member's gates, the group's sums, every member's migration against `v`'s gain.
        let group = match self.fits_alone(v, dst) {
            Ok(()) => None,
            Err(Refusal::Affinity) => match self.companions(v) {
                Some((_, others)) => Some(others),
                None => return Err(Refusal::Affinity),
            },
            Err(r) => return Err(r),
        };
        let (cpu, seconds) = match group {
            Some(others) => {
                if self
                    .budget_remaining()
                    .is_some_and(|left| left < 1 + others.len())
                {
                    return Err(Refusal::Budget);
                }
                for &m in &others {
                    self.vm_gate(m, dst, kind)?;
                }
                self.fits_group(v, &others, dst)?
            }
            None => {
                let vm = &self.snap().vms[v];
                (vm.cpu_demand_mhz, self.cfg.migration_seconds(vm.mem_kb))
            }
        };
        let cap = self.snap().hosts[dst].cpu_mhz();
        let dst_after = (self.cpu[dst] + cpu) / cap;
        if dst_after > dst_max_util + 1e-12 {
            return Err(Refusal::DestLoad);
        }
        if kind == MoveKind::Rule {
            return Ok(());
        }
        let src = self.vm_host[v];
        if kind == MoveKind::Balance && dst_after >= self.util(src) - self.cfg.min_gain.max(0.0) {
            return Err(Refusal::DestLoad);
        }
        let cost = self.cfg.cost_weight * seconds / self.cfg.benefit_horizon_s;
        if gain - cost < self.cfg.min_gain {
            return Err(Refusal::CostBenefit);
        }
        Ok(())
    }

    /// Records a move unconditionally (callers have checked it).
    pub fn commit(&mut self, v: usize, dst: usize, reason: Reason, gain: f64) {
        let s = self.snap();
        let vm = &s.vms[v];
        let src = self.vm_host[v];
        let src_before = self.util(src);
        let dst_before = self.util(dst);
        self.cpu[src] -= vm.cpu_demand_mhz;
        self.mem[src] -= vm.mem_kb;
        self.vcpus[src] -= vm.vcpus;
        self.leaving[src].0 += vm.mem_kb;
        self.leaving[src].1 += vm.vcpus;
        self.on_host[src].retain(|&x| x != v);
        self.cpu[dst] += vm.cpu_demand_mhz;
        self.mem[dst] += vm.mem_kb;
        self.vcpus[dst] += vm.vcpus;
        let pos = self.on_host[dst].partition_point(|&x| x < v);
        self.on_host[dst].insert(pos, v);
        self.vm_host[v] = dst;
        self.moved[v] = true;
        self.move_count[v] += 1;
        let seconds = self.cfg.migration_seconds(vm.mem_kb);
        tracing::debug!(vm = %vm.name, from = %s.hosts[src].name, to = %s.hosts[dst].name, reason = reason.tag(), "planned move");
        self.moves.push(Move {
            vm: vm.name.clone(),
            from: s.hosts[src].name.clone(),
            to: s.hosts[dst].name.clone(),
            reason,
            predicted: Prediction {
                src_before: r6(src_before),
                src_after: r6(self.util(src)),
                dst_before: r6(dst_before),
                dst_after: r6(self.util(dst)),
                gain: r6(gain),
            },
            cost: Cost {
                seconds: r6(seconds),
                bytes: (vm.mem_kb as f64 * 1024.0 * (1.0 + self.cfg.dirty_factor)) as u64,
            },
            group: None,
            after: None,
        });
    }

    /// Plans the pending second halves of swaps whose first half has ended
    /// ([`Input::pending`]): each if the first half arrived where it was planned to and the
    /// VM still passes the hard gates (memory, vCPUs, placement rules, the window, the budget,
    /// `rule_dest_max_util`); a note says why one is dropped. The policy's own gates judged
    /// the swap when it was planned.
    pub fn follow_ups(&mut self) {
        let s = self.snap();
        for (v, first, m) in std::mem::take(&mut self.due) {
            let (Some(src), Some(dst)) = (s.host_index(&m.from), s.host_index(&m.to)) else {
                continue;
            };
            let arrived = first.is_some_and(|f| self.vm_host[f] == src);
            let verdict = if self.vm_host[v] != src || !arrived {
                Err(Refusal::SwapBroken)
            } else if !self.window_open {
                Err(Refusal::Window)
            } else if !self.budget_left() {
                Err(Refusal::Budget)
            } else {
                self.vm_gate(v, dst, MoveKind::Rule)
                    .and_then(|()| self.fits(v, dst))
                    .and_then(|()| {
                        let after =
                            (self.cpu[dst] + s.vms[v].cpu_demand_mhz) / s.hosts[dst].cpu_mhz();
                        if after > self.cfg.rule_dest_max_util + 1e-12 {
                            Err(Refusal::DestLoad)
                        } else {
                            Ok(())
                        }
                    })
            };
            match verdict {
                Ok(()) => self.commit(v, dst, m.reason.clone(), m.predicted.gain),
                Err(r) => {
                    self.refuse_vm(v, Some(dst), r);
                    self.note(
                        format!("swap:{}:{}:{}", m.vm, m.to, self.input.now),
                        format!(
                            "second half of a swap dropped: {} stays on {} ({})",
                            m.vm,
                            m.from,
                            r.name()
                        ),
                    );
                }
            }
        }
    }

    /// Sandpiper's swap, for VM `v` that no single move takes off its host `h`: `v` changes
    /// places with a VM `w` of another host `d` that carries less CPU. The exchange must pass
    /// both VMs' gates, relieve `h` by more than both migrations cost, leave `d` at or under
    /// `dst_max_util`, and have an order in which memory and vCPUs never overfill: one half
    /// first into room free now, the other ([`Move::after`] it) into the room the first
    /// leaves. Of the exchanges that pass, the lowest-priority `w`, then the one leaving the
    /// busier of the two hosts least loaded. VMs of affinity groups are not swapped.
    pub fn try_swap(&mut self, v: usize, dst_max_util: f64, reason: Reason) -> Result<(), Refusal> {
        if !self.window_open {
            return Err(Refusal::Window);
        }
        if self.budget_remaining().is_some_and(|left| left < 2) {
            return Err(Refusal::Budget);
        }
        if self.rules.aff_of[v].is_some() {
            return Err(Refusal::Affinity);
        }
        let s = self.snap();
        let h = self.vm_host[v];
        let a = &s.vms[v];
        let cap_h = s.hosts[h].cpu_mhz();
        // (priority of w, busier host's load after, d, w, v goes first, gain)
        let mut best: Option<(i32, f64, usize, usize, bool, f64)> = None;
        let mut why = Refusal::NoDestination;
        for d in 0..self.cpu.len() {
            if d == h || !self.rules.fillable[d] {
                continue;
            }
            if let Err(r) = self.vm_gate(v, d, MoveKind::Balance) {
                why = r;
                continue;
            }
            let cap_d = s.hosts[d].cpu_mhz();
            for &w in &self.on_host[d] {
                let b = &s.vms[w];
                if b.cpu_demand_mhz >= a.cpu_demand_mhz || self.rules.aff_of[w].is_some() {
                    continue;
                }
                let verdict = self.swap_verdict((v, h), (w, d));
                let order = match verdict {
                    Ok(first) => first,
                    Err(r) => {
                        why = r;
                        continue;
                    }
                };
                let d_after = (self.cpu[d] - b.cpu_demand_mhz + a.cpu_demand_mhz) / cap_d;
                let h_after = (self.cpu[h] - a.cpu_demand_mhz + b.cpu_demand_mhz) / cap_h;
                if d_after > dst_max_util + 1e-12 || d_after >= self.util(h) {
                    why = Refusal::DestLoad;
                    continue;
                }
                let gain = (a.cpu_demand_mhz - b.cpu_demand_mhz) / cap_h;
                let seconds =
                    self.cfg.migration_seconds(a.mem_kb) + self.cfg.migration_seconds(b.mem_kb);
                if gain - self.cfg.cost_weight * seconds / self.cfg.benefit_horizon_s
                    < self.cfg.min_gain
                {
                    why = Refusal::CostBenefit;
                    continue;
                }
                let key = (self.priority(w), d_after.max(h_after));
                if best.is_none_or(|(p, l, ..)| key.0 < p || (key.0 == p && key.1 < l)) {
                    best = Some((key.0, key.1, d, w, order, gain));
                }
            }
        }
        let Some((_, _, d, w, v_first, gain)) = best else {
            return Err(why);
        };
        let back = Reason::Swap {
            host: s.hosts[h].name.clone(),
            with: a.name.clone(),
        };
        let n = self.moves.len();
        if v_first {
            self.commit(v, d, reason, gain);
            self.commit(w, h, back, 0.0);
        } else {
            self.commit(w, h, back, 0.0);
            self.commit(v, d, reason, gain);
        }
        let first = self.moves.get(n).map(|m| m.vm.clone());
        if let Some(second) = self.moves.get_mut(n + 1) {
            second.after = first;
        }
        Ok(())
    }

    /// Whether VM `v` on `h` and VM `w` on `d` may change places, and in which order (true:
    /// `v` first): the per-VM gates, pinning and anti-affinity of each at the other's host,
    /// and memory and vCPUs for the half that goes first, into room free now, and for the
    /// second, into that room plus what the first left.
    fn swap_verdict(
        &self,
        (v, h): (usize, usize),
        (w, d): (usize, usize),
    ) -> Result<bool, Refusal> {
        let s = self.snap();
        self.vm_gate(w, h, MoveKind::Balance)?;
        self.placement_rules(v, d, &[v, w])?;
        self.placement_rules(w, h, &[v, w])?;
        let (a, b) = (&s.vms[v], &s.vms[w]);
        let fits = |host: usize, add: &VmState, freed: Option<&VmState>| {
            let (mem, vcpus) = self.held(host);
            let (fm, fc) = freed.map_or((0, 0), |f| (f.mem_kb, f.vcpus));
            mem.saturating_sub(fm).saturating_add(add.mem_kb) <= self.rules.mem_limit[host]
                && vcpus.saturating_sub(fc).saturating_add(add.vcpus) <= self.rules.vcpu_limit[host]
        };
        if fits(d, a, None) && fits(h, b, Some(a)) {
            Ok(true)
        } else if fits(h, b, None) && fits(d, a, Some(b)) {
            Ok(false)
        } else {
            Err(Refusal::Memory)
        }
    }

    /// Lets VM `v` be planned once more this round although it already moved (CloudSim 3.0.3's
    /// underload pass can evacuate a host that just received it; see `consolidate`'s
    /// `cloudsim_quirks`). The plan then holds both moves; executors run the last one.
    pub fn allow_second_move(&mut self, v: usize) {
        if let Some(m) = self.moved.get_mut(v) {
            *m = false;
        }
    }

    /// Undoes the last `n` moves (used when a group of moves must be all-or-nothing).
    pub fn rollback_to(&mut self, n: usize) {
        while self.moves.len() > n {
            let Some(m) = self.moves.pop() else { break };
            let s = self.snap();
            let (Some(v), Some(src)) = (s.vm_index(&m.vm), s.host_index(&m.from)) else {
                continue;
            };
            let dst = self.vm_host[v];
            let vm = &s.vms[v];
            self.cpu[dst] -= vm.cpu_demand_mhz;
            self.mem[dst] -= vm.mem_kb;
            self.vcpus[dst] -= vm.vcpus;
            self.on_host[dst].retain(|&x| x != v);
            self.cpu[src] += vm.cpu_demand_mhz;
            self.mem[src] += vm.mem_kb;
            self.vcpus[src] += vm.vcpus;
            self.leaving[src].0 -= vm.mem_kb;
            self.leaving[src].1 -= vm.vcpus;
            let pos = self.on_host[src].partition_point(|&x| x < v);
            self.on_host[src].insert(pos, v);
            self.vm_host[v] = src;
            // A VM planned twice (see allow_second_move) keeps its first move.
            self.move_count[v] = self.move_count[v].saturating_sub(1);
            self.moved[v] = self.move_count[v] > 0;
        }
    }

    /// The feasible destination with the lowest CPU utilisation after the move (ties: lowest
    /// index), under `kind`'s gates.
    pub fn least_loaded_dest(
        &self,
        v: usize,
        dst_max_util: f64,
        kind: MoveKind,
        gain: f64,
    ) -> Option<usize> {
        self.least_loaded_or_why(v, dst_max_util, kind, gain).ok()
    }

    /// [`Planner::least_loaded_dest`], or the gate that refused the least loaded candidate
    /// (`Destination` when there was none), for a policy to count.
    pub fn least_loaded_or_why(
        &self,
        v: usize,
        dst_max_util: f64,
        kind: MoveKind,
        gain: f64,
    ) -> Result<usize, Refusal> {
        self.fit_or_why(v, dst_max_util, kind, gain, false)
    }

    /// Best fit: the most loaded host that passes every gate with the VM and stays at or
    /// under `dst_max_util` (it packs, where [`Planner::least_loaded_or_why`] spreads), or
    /// the gate that refused the most loaded candidate.
    pub fn fullest_fit_or_why(
        &self,
        v: usize,
        dst_max_util: f64,
        kind: MoveKind,
        gain: f64,
    ) -> Result<usize, Refusal> {
        self.fit_or_why(v, dst_max_util, kind, gain, true)
    }

    /// The least (or, `fullest`, most) loaded host after the move that passes every gate.
    fn fit_or_why(
        &self,
        v: usize,
        dst_max_util: f64,
        kind: MoveKind,
        gain: f64,
        fullest: bool,
    ) -> Result<usize, Refusal> {
        let d = self.snap().vms[v].cpu_demand_mhz;
        // Ranked by utilisation after the move, negated for best fit: lower ranks first.
        let rank = |after: f64| if fullest { -after } else { after };
        let mut best: Option<(f64, usize)> = None;
        let mut why: Option<(f64, Refusal)> = None;
        for h in 0..self.cpu.len() {
            if !self.rules.fillable[h] || h == self.vm_host[v] {
                continue;
            }
            let after = rank((self.cpu[h] + d) / self.snap().hosts[h].cpu_mhz());
            if best.is_some_and(|(b, _)| after >= b) {
                continue;
            }
            match self.check(v, h, gain, dst_max_util, kind) {
                Ok(()) => best = Some((after, h)),
                Err(r) => {
                    if why.is_none_or(|(w, _)| after < w) {
                        why = Some((after, r));
                    }
                }
            }
        }
        match (best, why) {
            (Some((_, h)), _) => Ok(h),
            (None, Some((_, r))) => Err(r),
            (None, None) => Err(Refusal::Destination),
        }
    }

    /// Priority-1 moves: drain maintenance hosts, fix pinning, anti-affinity and affinity.
    /// Infeasible rules become notes (once) and are not retried.
    pub fn enforce_rules(&mut self) {
        let s = self.snap();
        let max = self.cfg.rule_dest_max_util;
        // Maintenance drain, biggest memory first so the hard ones get the free space.
        for h in 0..s.hosts.len() {
            if !self.rules.maintenance[h] || !s.hosts[h].up {
                continue;
            }
            let mut vms = self.on_host[h].clone();
            vms.sort_by(|&a, &b| s.vms[b].mem_kb.cmp(&s.vms[a].mem_kb).then(a.cmp(&b)));
            for v in vms {
                if !self.budget_left() {
                    return;
                }
                if s.vms[v].migrating {
                    continue;
                }
                match self.least_loaded_dest(v, max, MoveKind::Rule, 0.0) {
                    Some(d) => self.commit(
                        v,
                        d,
                        Reason::Maintenance {
                            host: s.hosts[h].name.clone(),
                        },
                        0.0,
                    ),
                    None => self.note(
                        format!("drain-blocked/{}/{}", s.hosts[h].name, s.vms[v].name),
                        format!(
                            "cannot drain {} from {}: no feasible host",
                            s.vms[v].name, s.hosts[h].name
                        ),
                    ),
                }
            }
        }
        // Pinning.
        for v in 0..s.vms.len() {
            if self.rules.pin_allows(v, self.vm_host[v]) || !self.budget_left() {
                continue;
            }
            match self.least_loaded_dest(v, max, MoveKind::Rule, 0.0) {
                Some(d) => self.commit(v, d, Reason::Pinning, 0.0),
                None => self.note(
                    format!("pin-infeasible/{}", s.vms[v].name),
                    format!(
                        "{} is not on an allowed host and none can take it",
                        s.vms[v].name
                    ),
                ),
            }
        }
        // Anti-affinity: a group with more members than eligible hosts is infeasible.
        for g in 0..self.rules.anti.len() {
            let members = self.rules.anti[g].clone();
            let name = self.rules.anti_names[g].clone();
            let eligible = (0..s.hosts.len())
                .filter(|&h| {
                    self.rules.fillable[h]
                        || members
                            .iter()
                            .any(|&m| self.vm_host[m] == h && s.hosts[h].up)
                })
                .filter(|&h| members.iter().all(|&m| self.rules.pin_allows(m, h)))
                .count();
            if members.len() > eligible {
                self.note(
                    format!("anti-affinity-infeasible/{name}"),
                    format!("anti-affinity group {name} has {} VMs for {eligible} eligible hosts; left as is", members.len()),
                );
                continue;
            }
            let mut seen: BTreeSet<usize> = BTreeSet::new();
            for &m in &members {
                if seen.insert(self.vm_host[m]) {
                    continue;
                }
                if !self.budget_left() {
                    return;
                }
                match self.least_loaded_dest(m, max, MoveKind::Rule, 0.0) {
                    Some(d) => {
                        self.commit(
                            m,
                            d,
                            Reason::AntiAffinity {
                                group: name.clone(),
                            },
                            0.0,
                        );
                        seen.insert(d);
                    }
                    None => self.note(
                        format!("anti-affinity-blocked/{name}/{}", s.vms[m].name),
                        format!(
                            "cannot separate {} (group {name}): no feasible host",
                            s.vms[m].name
                        ),
                    ),
                }
            }
        }
        // Affinity: gather on the host holding most members (ties: lowest index).
        for g in 0..self.rules.aff.len() {
            let members = self.rules.aff[g].clone();
            let name = self.rules.aff_names[g].clone();
            let mut count: BTreeMap<usize, usize> = BTreeMap::new();
            for &m in &members {
                *count.entry(self.vm_host[m]).or_default() += 1;
            }
            if count.len() <= 1 {
                continue;
            }
            let Some((&target, _)) = count.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            else {
                continue;
            };
            let start = self.moves.len();
            let mut ok = true;
            for &m in &members {
                if self.vm_host[m] == target {
                    continue;
                }
                if !self.budget_left() {
                    ok = false;
                    break;
                }
                if self.check(m, target, 0.0, max, MoveKind::Rule).is_ok() {
                    self.commit(
                        m,
                        target,
                        Reason::Affinity {
                            group: name.clone(),
                        },
                        0.0,
                    );
                } else {
                    ok = false;
                    break;
                }
            }
            if !ok {
                self.rollback_to(start);
                self.note(
                    format!("affinity-infeasible/{name}"),
                    format!(
                        "affinity group {name} cannot be gathered on {}",
                        s.hosts[target].name
                    ),
                );
            }
        }
    }

    /// The tests the policy ran, with host names.
    fn named_checks(&self) -> Vec<Check> {
        let s = self.snap();
        let name = |h: Option<usize>| {
            h.and_then(|h| s.hosts.get(h))
                .map_or_else(|| "cluster".to_string(), |x| x.name.clone())
        };
        self.checks
            .iter()
            .map(|&(h, test, value, op, threshold, fired)| Check {
                host: name(h),
                test: test.to_string(),
                value: r6(value),
                op: op.to_string(),
                threshold: r6(threshold),
                fired,
            })
            .collect()
    }

    /// CPU spread and power of the hosts with CPU load `cpu` (MHz per host).
    fn spread_and_power(&self, cpu: &[f64]) -> (f64, f64) {
        let s = self.snap();
        let mut utils = Vec::with_capacity(s.hosts.len());
        let mut watts = 0.0;
        for (h, host) in s.hosts.iter().enumerate() {
            if !host.up {
                continue;
            }
            let cap = host.cpu_mhz();
            let u = if cap > 0.0 { cpu[h] / cap } else { 0.0 };
            utils.push(u);
            // An empty host is switched off, as the simulator's energy counts it.
            if cpu[h] > 0.0 {
                watts += host.power_curve().watts(u);
            }
        }
        let n = utils.len().max(1) as f64;
        let mean = utils.iter().sum::<f64>() / n;
        let var = utils.iter().map(|u| (u - mean) * (u - mean)).sum::<f64>() / n;
        (var.sqrt(), watts)
    }

    /// Spread and power before the round (the snapshot's placement, migrations in flight
    /// booked at their destinations) and after its moves.
    fn effect(&self) -> Effect {
        let s = self.snap();
        let mut before = self.cpu.clone();
        for m in &self.moves {
            // Undo the moves on the working placement.
            if let (Some(v), Some(f), Some(t)) = (
                s.vm_index(&m.vm),
                s.host_index(&m.from),
                s.host_index(&m.to),
            ) {
                let d = s.vms[v].cpu_demand_mhz;
                before[t] -= d;
                before[f] += d;
            }
        }
        let (sigma_before, watts_before) = self.spread_and_power(&before);
        let (sigma_after, watts_after) = self.spread_and_power(&self.cpu);
        Effect {
            sigma_before: r6(sigma_before),
            sigma_after: r6(sigma_after),
            watts_before: r6(watts_before),
            watts_after: r6(watts_after),
        }
    }

    /// Finishes the plan.
    pub fn finish(self, policy: &str) -> Plan {
        let why_none = self.moves.is_empty().then(|| WhyNone {
            qualified: {
                let s = self.snap();
                self.qualified
                    .iter()
                    .map(|&h| {
                        h.and_then(|h| s.hosts.get(h))
                            .map_or_else(|| "cluster".to_string(), |x| x.name.clone())
                    })
                    .collect()
            },
            checks: self.named_checks(),
            in_flight: (!self.qualified.is_empty() && !self.budget_left())
                .then_some((self.in_flight, self.cfg.max_parallel)),
        });
        let verbose = self.input.verbose;
        let checks = if verbose && !self.moves.is_empty() {
            self.named_checks()
        } else {
            Vec::new()
        };
        let effect = verbose.then(|| self.effect());
        let s = self.snap();
        let refused_moves = self
            .refusals
            .iter()
            .map(|&(v, dst, r)| RefusedMove {
                vm: s.vms[v].name.clone(),
                from: s.hosts[self.vm_host[v]].name.clone(),
                to: dst.map(|d| s.hosts[d].name.clone()),
                gate: r.name().to_string(),
            })
            .collect();
        Plan {
            policy: policy.to_string(),
            time: self.input.snapshot.time,
            moves: self.moves,
            notes: self.notes,
            refused: self
                .refused
                .into_iter()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
            why_none,
            refused_moves,
            effect,
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::ConstraintConfig;
    use crate::snapshot::HostState;
    use crate::trends::TrendConfig;

    fn snap() -> Snapshot {
        let host = |n: &str| HostState {
            name: n.into(),
            cpus: 4,
            mhz: 1000.0,
            mem_kb: 8 << 20,
            up: true,
            maintenance: false,
            power: None,
        };
        let vm = |n: &str, h: &str| VmState {
            name: n.into(),
            host: h.into(),
            vcpus: 1,
            cpu_cap_mhz: 1000.0,
            cpu_demand_mhz: 900.0,
            mem_kb: 1 << 20,
            mem_used_kb: 1 << 20,
            migrating: false,
            migrating_to: None,
            host_idx: 0,
            tags: Default::default(),
        };
        Snapshot::new(
            10_000,
            vec![host("a"), host("b")],
            vec![vm("v1", "a"), vm("v2", "a"), vm("v3", "a")],
        )
        .unwrap()
    }

    /// Runs `f` on a planner over `s` with default constraints, `history` and `cfg`, at `now`.
    fn with_planner<R>(
        s: &Snapshot,
        history: &History,
        cfg: &PlannerConfig,
        now: u64,
        f: impl FnOnce(&mut Planner<'_>) -> R,
    ) -> R {
        with_pending(s, history, cfg, now, &[], f)
    }

    /// [`with_planner`] with swap halves `pending`.
    fn with_pending<R>(
        s: &Snapshot,
        history: &History,
        cfg: &PlannerConfig,
        now: u64,
        pending: &[Move],
        f: impl FnOnce(&mut Planner<'_>) -> R,
    ) -> R {
        let trends = Trends::new(TrendConfig::default());
        let rules = Rules::resolve(&ConstraintConfig::default(), s);
        let mut p = Planner::new(
            Input {
                snapshot: s,
                trends: &trends,
                history,
                now,
                wall_s: now,
                verbose: false,
                pending,
            },
            &rules,
            cfg,
        );
        f(&mut p)
    }

    fn gate(history: &History, cfg: &PlannerConfig, now: u64) -> Result<(), Refusal> {
        with_planner(&snap(), history, cfg, now, |p| {
            p.vm_gate(0, 1, MoveKind::Balance)
        })
    }

    fn moved(history: &mut History, from: &str, to: &str, start: u64) {
        history.record(MigrationRecord {
            vm: "v1".into(),
            from: from.into(),
            to: to.into(),
            start,
        });
    }

    #[test]
    fn cooldown_escalates_with_repeat_moves() {
        let cfg = PlannerConfig {
            forbid_pingpong: false,
            max_moves_per_vm_per_hour: 0,
            ..Default::default()
        };
        let mut h = History::default();
        moved(&mut h, "b", "a", 9_000);
        // One move: 900 s cooldown, over at 9,900.
        assert_eq!(gate(&h, &cfg, 9_899), Err(Refusal::Cooldown));
        assert_eq!(gate(&h, &cfg, 9_900), Ok(()));
        // Second move within the window doubles it: 1,800 s after the last move.
        moved(&mut h, "a", "b", 9_500);
        assert_eq!(gate(&h, &cfg, 11_299), Err(Refusal::Cooldown));
        assert_eq!(gate(&h, &cfg, 11_300), Ok(()));
    }

    #[test]
    fn a_migration_in_flight_holds_memory_on_both_hosts_until_it_ends() {
        // v1 (1 GB) migrates a -> b, beside v2 and v3 on a; c carries five more 1 GB VMs that
        // a policy might send to a meanwhile. Until the migration ends, a still holds v1.
        let mut s = snap();
        s.hosts.push(HostState {
            name: "c".into(),
            ..s.hosts[0].clone()
        });
        for i in 0..5 {
            s.vms.push(VmState {
                name: format!("w{i}"),
                host: "c".into(),
                ..s.vms[0].clone()
            });
        }
        s.vms[0].migrating = true;
        s.vms[0].migrating_to = Some("b".into());
        let s = s.reindexed().unwrap();
        let (a, b) = (s.host_index("a").unwrap(), s.host_index("b").unwrap());
        let cfg = PlannerConfig::default();
        with_planner(&s, &History::default(), &cfg, 10_000, |p| {
            assert_eq!(p.mem[a], 3 << 20, "v1's memory is still on a");
            assert_eq!(p.mem[b], 1 << 20, "and already booked on b");
            assert!(p.cpu[a] < 2_000.0, "its CPU load is booked at b only");
        });
    }

    #[test]
    fn ping_pong_and_hourly_rate_are_refused() {
        let mut h = History::default();
        moved(&mut h, "b", "a", 5_000);
        let cfg = PlannerConfig {
            cooldown_s: 0,
            max_moves_per_vm_per_hour: 0,
            ..Default::default()
        };
        // v1 left b at 5,000; going back to b before 8,600 is a ping-pong.
        assert_eq!(gate(&h, &cfg, 8_599), Err(Refusal::PingPong));
        assert_eq!(gate(&h, &cfg, 8_600), Ok(()));
        let rate = PlannerConfig {
            cooldown_s: 0,
            forbid_pingpong: false,
            max_moves_per_vm_per_hour: 1,
            ..Default::default()
        };
        assert_eq!(gate(&h, &rate, 8_599), Err(Refusal::VmRate));
        assert_eq!(gate(&h, &rate, 8_600), Ok(()));
    }

    #[test]
    fn budget_gain_and_destination_gates() {
        let s = snap();
        let trends = Trends::new(TrendConfig::default());
        let history = History::default();
        let rules = Rules::resolve(&ConstraintConfig::default(), &s);
        let cfg = PlannerConfig {
            max_moves_per_round: 1,
            ..Default::default()
        };
        let mut p = Planner::new(
            Input {
                snapshot: &s,
                trends: &trends,
                history: &history,
                now: 10_000,
                wall_s: 10_000,
                verbose: false,
                pending: &[],
            },
            &rules,
            &cfg,
        );
        // Gain below migration cost (17 s / 1800 s) plus the band: refused.
        assert_eq!(
            p.check(0, 1, 0.01, 1.0, MoveKind::Balance),
            Err(Refusal::CostBenefit)
        );
        // Destination cap.
        assert_eq!(
            p.check(0, 1, 1.0, 0.2, MoveKind::Balance),
            Err(Refusal::DestLoad)
        );
        assert_eq!(
            p.check(0, 0, 1.0, 1.0, MoveKind::Balance),
            Err(Refusal::Destination)
        );
        p.try_move(0, 1, Reason::Pinning, 1.0, 1.0, MoveKind::Balance)
            .unwrap();
        assert_eq!(p.util(0), 0.45);
        assert_eq!(
            p.check(1, 1, 1.0, 1.0, MoveKind::Balance),
            Err(Refusal::Budget)
        );
        p.rollback_to(0);
        assert_eq!(p.util(0), 0.675);
        let plan = p.finish("t");
        assert!(plan.moves.is_empty());
        assert_eq!(plan.refused, vec![]);
    }

    /// Hosts `a` (four busy 900 MHz VMs) and `b` (seven idle 100 MHz VMs): 4 x 1000 MHz and
    /// 8 GB each, every VM 1 GB, so `b` (7 GB of a 7.6 GB limit) has no room for one more.
    fn hot_beside_full() -> Snapshot {
        let base = snap();
        let vm = |n: String, h: &str, mhz: f64| VmState {
            name: n,
            host: h.into(),
            cpu_demand_mhz: mhz,
            ..base.vms[0].clone()
        };
        let vms = (0..4)
            .map(|i| vm(format!("busy{i}"), "a", 900.0))
            .chain((0..7).map(|i| vm(format!("idle{i}"), "b", 100.0)))
            .collect();
        Snapshot::new(10_000, base.hosts.clone(), vms).unwrap()
    }

    fn hotspot_reason() -> Reason {
        Reason::Hotspot {
            host: "a".into(),
            util: 0.9,
            forecast: 0.9,
            threshold: 0.85,
        }
    }

    #[test]
    fn a_swap_goes_in_the_order_that_never_overfills_memory() {
        let s = hot_beside_full();
        let (a, b) = (s.host_index("a").unwrap(), s.host_index("b").unwrap());
        let busy = s.vm_index("busy0").unwrap();
        let cfg = PlannerConfig::default();
        with_planner(&s, &History::default(), &cfg, 10_000, |p| {
            assert_eq!(p.fits(busy, b), Err(Refusal::Memory), "no single move");
            p.try_swap(busy, 0.75, hotspot_reason()).unwrap();
            let m = p.moves();
            assert_eq!(m.len(), 2, "{m:?}");
            // busy0 cannot go first (b would hold 8 GB), so an idle VM makes room on b by
            // going to a, and busy0 follows once that migration has ended.
            assert!(
                m[0].vm.starts_with("idle") && (m[0].from.as_str(), m[0].to.as_str()) == ("b", "a")
            );
            assert_eq!(m[0].after, None);
            assert!(
                matches!(&m[0].reason, Reason::Swap { host, with } if host == "a" && with == "busy0")
            );
            assert_eq!((m[1].vm.as_str(), m[1].to.as_str()), ("busy0", "b"));
            assert_eq!(m[1].after.as_deref(), Some(m[0].vm.as_str()));
            assert!(p.util(a) < 0.9 && p.util(b) <= 0.75);
            // Nothing else may count on the room the swap moves around this round.
            let other = s.vm_index("busy1").unwrap();
            assert_eq!(p.fits(other, b), Err(Refusal::Memory));
        });
    }

    #[test]
    fn a_swap_needs_a_lighter_partner_and_room_for_its_first_half() {
        let mut s = hot_beside_full();
        for v in &mut s.vms {
            if v.host == "b" {
                v.cpu_demand_mhz = 950.0;
            }
        }
        let s = s.reindexed().unwrap();
        let busy = s.vm_index("busy0").unwrap();
        let cfg = PlannerConfig::default();
        with_planner(&s, &History::default(), &cfg, 10_000, |p| {
            // Every VM of b is busier than busy0: exchanging relieves nothing.
            assert!(p.try_swap(busy, 0.75, hotspot_reason()).is_err());
            assert!(p.moves().is_empty());
        });
        // Both hosts full: neither half has room to go first.
        let mut s = hot_beside_full();
        let extra: Vec<VmState> = (0..3)
            .map(|i| VmState {
                name: format!("fill{i}"),
                host: "a".into(),
                cpu_demand_mhz: 0.0,
                mem_kb: 1 << 20,
                ..s.vms[0].clone()
            })
            .collect();
        s.vms.extend(extra);
        s.vms[0].mem_kb = (3 << 20) / 2;
        let s = s.reindexed().unwrap();
        with_planner(&s, &History::default(), &cfg, 10_000, |p| {
            let busy = s.vm_index("busy0").unwrap();
            assert_eq!(
                p.try_swap(busy, 0.75, hotspot_reason()),
                Err(Refusal::Memory)
            );
        });
    }

    #[test]
    fn a_move_may_not_count_on_room_another_move_of_the_round_frees() {
        // idle0 leaves b in this round; until its migration ends b still holds it, so a VM
        // that does not fit b now may not be planned into b in the same round.
        let s = hot_beside_full();
        let (a, b) = (s.host_index("a").unwrap(), s.host_index("b").unwrap());
        let cfg = PlannerConfig::default();
        with_planner(&s, &History::default(), &cfg, 10_000, |p| {
            let idle = s.vm_index("idle0").unwrap();
            p.commit(idle, a, Reason::Pinning, 0.0);
            let busy = s.vm_index("busy0").unwrap();
            assert_eq!(p.mem[b], 6 << 20, "b carries 6 GB after the round");
            assert_eq!(p.fits(busy, b), Err(Refusal::Memory));
            p.rollback_to(0);
            assert_eq!(p.held(b), (7 << 20, 7));
        });
    }

    /// The decision after a swap's first half (idle0 b -> a) started: busy0 waits for it.
    fn follow_up(first_at: &str, migrating: bool) -> (Vec<Move>, Vec<String>, bool) {
        let mut s = hot_beside_full();
        let i = s.vms.iter().position(|v| v.name == "idle0").unwrap();
        s.vms[i].host = first_at.into();
        s.vms[i].migrating = migrating;
        s.vms[i].migrating_to = migrating.then(|| "a".into());
        let s = s.reindexed().unwrap();
        let second = Move {
            vm: "busy0".into(),
            from: "a".into(),
            to: "b".into(),
            reason: hotspot_reason(),
            predicted: Prediction {
                src_before: 0.9,
                src_after: 0.7,
                dst_before: 0.2,
                dst_after: 0.4,
                gain: 0.2,
            },
            cost: Cost {
                seconds: 17.0,
                bytes: 1 << 30,
            },
            group: None,
            after: Some("idle0".into()),
        };
        let cfg = PlannerConfig::default();
        with_pending(&s, &History::default(), &cfg, 10_000, &[second], |p| {
            p.follow_ups();
            let busy = s.vm_index("busy0").unwrap();
            let waiting = p.vm_gate(busy, 1, MoveKind::Rule) == Err(Refusal::Busy);
            let notes = p.notes.iter().map(|n| n.message.clone()).collect();
            (p.moves().to_vec(), notes, waiting)
        })
    }

    #[test]
    fn a_swaps_second_half_starts_only_after_its_first_has_ended_where_planned() {
        // First half still migrating: busy0 is left alone, nothing is planned for it.
        let (moves, notes, waiting) = follow_up("b", true);
        assert!(
            moves.is_empty() && notes.is_empty() && waiting,
            "{moves:?} {notes:?}"
        );
        // First half ended on a: the room on b is busy0's.
        let (moves, _, _) = follow_up("a", false);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].vm.as_str(), moves[0].to.as_str()), ("busy0", "b"));
        assert_eq!(moves[0].after, None);
        // First half failed (idle0 still on b): the second is dropped, with a note.
        let (moves, notes, _) = follow_up("b", false);
        assert!(moves.is_empty(), "{moves:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("swap dropped") && n.contains("swap_broken")),
            "{notes:?}"
        );
    }
}
