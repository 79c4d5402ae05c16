//! The agent's decisions as a sans-IO state machine: [`AgentCore`] is fed time, views and the
//! hypervisor's replies (`handle_*`) and hands back what to do ([`AgentCore::poll_action`]):
//! probe a host, start (pre-check then migrate), locate a VM, abort, write an audit record.
//!
//! It never blocks, never reads a clock and never touches a thread, a socket or a file, so
//! timeouts, abort retries, stuck probes and a clock that jumps back are tested by feeding it
//! numbers ([`crate::agent::Agent`] is the shell that runs the actions on worker threads).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use balancer::plan::{Move, Plan};
use balancer::planner::{History, Input, MigrationRecord};
use balancer::policy::{Policy, PolicySpec};
use balancer::trends::Trends;
use ganglia_wire::model::Cluster;

use crate::audit::{Event, Observed, Record};
use crate::config::{AgentConfig, InflightAction, Mode};
use crate::coord;
use crate::error::{AgentError, Result};
use crate::executor::{HostAddr, MigrationRequest, Presence};
use crate::metrics::AgentMetrics;
use crate::state::{PersistedMigration, PersistedState};
use crate::view::{self, View};

/// The metrics a coordination view ([`AgentCore::handle_coordination_view`]) needs of every
/// host: the advertised mode (the election) and the advertised moves (the shared budget).
pub const COORDINATION_METRICS: [&str; 2] = [coord::MODE_METRIC, coord::MOVES_METRIC];

/// Membership probes running at once, at most.
pub const MAX_PROBES: usize = 16;

/// A membership probe unanswered after this long (seconds) counts as "unreachable" and frees
/// its slot: a hypervisor that hangs on connect must not freeze membership for everyone else.
pub const PROBE_TIMEOUT_S: u64 = 30;

/// Probes not answered yet (reaped or not), at most: each is a blocked thread in the shell,
/// so hosts whose probes hang are not probed again until the old probe returns, and past
/// this many no new probe starts at all.
pub const MAX_PROBES_OUTSTANDING: usize = 4 * MAX_PROBES;

/// An abort is sent again this often (seconds) until its migration ends.
pub const ABORT_RETRY_S: u64 = 10;

/// Membership probe results are trusted for this long, seconds.
pub const MEMBERSHIP_TTL_S: u64 = 300;

/// How a migration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Verified: running on the destination, gone from the source.
    Done {
        /// Set when the migration call reported an error but verification found it moved.
        note: Option<String>,
    },
    /// Refused before starting (pre-checks against the hypervisor failed).
    Refused(String),
    /// Failed; the VM is on its source.
    Failed(String),
    /// Aborted; the VM is on its source.
    Aborted(String),
    /// Could not establish where the VM is.
    Unknown(String),
}

/// How a blocking migration call returned, reduced to what the decisions need (the
/// hypervisor's text is kept whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Not started: the hypervisor refused (another job holds the domain, not on the source).
    Refused(String),
    /// Our job was cancelled.
    Aborted(String),
    /// Anything else (the migration failed, the connection was lost mid-way).
    Other(String),
}

impl From<&AgentError> for CallError {
    fn from(e: &AgentError) -> CallError {
        match e {
            AgentError::Refused { .. } => CallError::Refused(e.to_string()),
            AgentError::Aborted { .. } => CallError::Aborted(e.to_string()),
            _ => CallError::Other(e.to_string()),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(t) | CallError::Aborted(t) | CallError::Other(t) => f.write_str(t),
        }
    }
}

/// A locate answer: where the VM stands on one host, or why the host did not say.
pub type Located = std::result::Result<Presence, String>;

/// Something the core wants done. Hypervisor actions block; the shell runs them off the
/// thread that feeds the core and reports back through the matching `handle_*`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Is this host's hypervisor reachable? Answer with [`AgentCore::handle_probed`].
    Probe(HostAddr),
    /// Pre-check right before migrating ([`precheck_source`], then [`precheck_destination`]
    /// on the hypervisor's answers), answered with [`AgentCore::handle_prechecked`]; when
    /// both pass, migrate at once (no round trip between the check and the call, so the
    /// check is as fresh as it can be) and answer with [`AgentCore::handle_migrated`].
    Migrate(MigrationRequest),
    /// Where is `req.vm` on `req.to` and on `req.from`? Answer with
    /// [`AgentCore::handle_located`]. `retry`: an earlier answer was inconclusive, so the
    /// shell waits a little first (the hypervisor may be restarting).
    Locate {
        /// The migration it is about.
        req: MigrationRequest,
        /// Wait before asking (a retry).
        retry: bool,
    },
    /// Abort the migration job; answer with [`AgentCore::handle_aborted`].
    Abort(MigrationRequest),
    /// Append this to the audit log (boxed: a record is far larger than the other actions).
    Audit(Box<Record>),
    /// Write this to the state file, atomically, before running the actions after it (a
    /// start is persisted before it is handed out).
    Persist(Box<PersistedState>),
}

/// Implausible hosts or VMs audited one by one per round at most.
pub const MAX_IMPLAUSIBLE_NOTES: usize = 16;

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    /// Hosts and VMs left out of this round's view for an implausible figure.
    pub implausible: usize,
    /// Metrics of the view left out because they were not authenticated
    /// (`authenticated_only`).
    pub unauthenticated: usize,
    /// The leader this agent sees.
    pub leader: Option<String>,
    /// Whether this agent leads.
    pub is_leader: bool,
    /// The plan made (leader only).
    pub plan: Option<Plan>,
    /// Moves started this tick (auto mode): pre-check and migration handed to the shell.
    pub started: Vec<Move>,
    /// Moves recommended this tick (recommend mode; new ones only are audited).
    pub recommended: Vec<Move>,
    /// Planned moves refused by the agent's own gates, with the gate name.
    pub skipped: Vec<(Move, String)>,
    /// Second halves of swaps held until their first half (started this tick) ends.
    pub queued: Vec<Move>,
    /// Migrations that ended since the last tick.
    pub finished: Vec<(String, Outcome)>,
    /// Untrusted hosts ignored in this view.
    pub untrusted: Vec<String>,
    /// Set when this agent leads in `auto` but sees no strict majority of the inventory
    /// live: why it recommends only.
    pub no_quorum: Option<String>,
}

/// Where a migration of this agent stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// `Action::Migrate` handed out: the pre-check, then the call.
    Starting,
    /// The pre-check passed; the migration call blocks in the shell.
    Migrating,
    /// The call returned; verification answer number `attempt` is awaited.
    Verifying {
        result: std::result::Result<(), CallError>,
        attempt: u32,
    },
    /// Found in the state file at start: where is it now? (`attempt` counts inconclusive
    /// answers; a job still running is aborted and asked about again.)
    Reconciling { attempt: u32 },
}

/// One migration this agent runs.
#[derive(Debug, Clone)]
struct Inflight {
    req: MigrationRequest,
    mv: Move,
    /// When it passed the hypervisor pre-check and used budget (`None`: not yet, or never).
    booked: Option<u64>,
    started: u64,
    phase: Phase,
    /// Why it is being aborted (timeout, lost lead, stop), once decided.
    abort_why: Option<String>,
    /// When an abort was last sent: it is sent again until the job ends.
    abort_sent_at: Option<u64>,
    /// An abort call for it is still blocked in the hypervisor (no second one meanwhile).
    abort_outstanding: bool,
    imbalance_before: f64,
}

/// A finished migration waiting for its observed gain.
#[derive(Debug, Clone)]
struct PendingObservation {
    id: u64,
    mv: Move,
    due: u64,
    imbalance_before: f64,
}

/// A membership probe not answered yet.
#[derive(Debug, Clone, Copy)]
struct Probe {
    since: u64,
    /// Past [`PROBE_TIMEOUT_S`]: counted as unreachable, its slot freed.
    reaped: bool,
}

/// The agent's decisions, sans IO. See the module doc.
pub struct AgentCore {
    name: String,
    cfg: AgentConfig,
    spec: PolicySpec,
    policy: Box<dyn Policy>,
    verify_attempts: u32,
    trends: Trends,
    history: History,
    known_moves: BTreeSet<(String, u64)>,
    own_moves: Vec<MigrationRecord>,
    placement: BTreeMap<String, String>,
    /// VM -> (destination, until): finished moves the view may not show yet.
    settled: BTreeMap<String, (String, u64)>,
    /// Second halves of swaps whose first half this agent started, held until it ends and
    /// then offered to the next plan once (at most one per migration in flight; not kept
    /// across a restart, where the first half alone is harmless).
    pending: Vec<Move>,
    vm_cooldown: BTreeMap<String, u64>,
    dest_failures: BTreeMap<String, Vec<u64>>,
    dest_excluded: BTreeMap<String, u64>,
    budget_starts: Vec<(u64, String)>,
    inflight: BTreeMap<u64, Inflight>,
    pending_obs: Vec<PendingObservation>,
    membership: BTreeMap<String, (bool, u64)>,
    probing: BTreeMap<String, Probe>,
    last_recommended: BTreeSet<(String, String, String)>,
    last_skipped: BTreeSet<(String, String, String)>,
    next_id: u64,
    was_leader: bool,
    /// The last round read a coordination view (no placement, no trends).
    lean: bool,
    /// Added to `now` for the wall clock the migration windows read (0 but in the simulator,
    /// whose seconds count from the scenario's start).
    wall_offset: u64,
    /// Plan verbosely (every test, each refused candidate, spread and power): the
    /// simulator's `--verbose`; the agent's own rounds keep the lean path.
    verbose_plans: bool,
    /// As leader in `auto`, it last saw no strict majority of the inventory (audited once
    /// per change).
    no_quorum: bool,
    /// Names in conflict in the last view (audited when they enter and leave it).
    conflicts: BTreeSet<String>,
    /// Implausible hosts and VMs already noted in the audit (noted again only after they
    /// left the list).
    implausible: BTreeSet<String>,
    /// The NAME is a guess (the hostname): the view may correct it.
    name_guessed: bool,
    /// This machine's sending addresses: the host of the view with one of them as IP is us.
    local_ips: BTreeSet<String>,
    /// The NAME was missing from the last non-empty view (logged once per change).
    name_missing: bool,
    stopping: bool,
    metrics: AgentMetrics,
    /// The latest time seen: time never runs backwards inside the core.
    clock: u64,
    /// The clock went backwards and has not caught up yet (logged once per episode).
    clock_behind: bool,
    actions: VecDeque<Action>,
    finished: Vec<(String, Outcome)>,
    /// What the last `Action::Persist` carried: unchanged state is not written again.
    persisted: Option<PersistedState>,
}

impl std::fmt::Debug for AgentCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCore")
            .field("name", &self.name)
            .field("mode", &self.cfg.mode)
            .field("policy", &self.policy.name())
            .field("inflight", &self.inflight.len())
            .finish_non_exhaustive()
    }
}

/// Judges the source side of a pre-check: the VM must run there with no job in progress,
/// or another leader (or a human) got there first.
pub fn precheck_source(req: &MigrationRequest, src: Located) -> std::result::Result<(), Outcome> {
    match src {
        Ok(Presence::Running) => Ok(()),
        Ok(p) => Err(Outcome::Refused(format!(
            "{} is {p:?} on {}",
            req.vm, req.from.name
        ))),
        Err(e) => Err(Outcome::Refused(e)),
    }
}

/// Judges the destination side of a pre-check: the VM must be absent there.
pub fn precheck_destination(
    req: &MigrationRequest,
    dst: Located,
) -> std::result::Result<(), Outcome> {
    match dst {
        Ok(Presence::Absent) => Ok(()),
        Ok(p) => Err(Outcome::Refused(format!(
            "{} is already {p:?} on {}",
            req.vm, req.to.name
        ))),
        // Counts against the destination (it may get excluded), unlike a source-side refusal.
        Err(e) => Err(Outcome::Failed(format!("destination before start: {e}"))),
    }
}

/// What the hypervisor's answers after a migration call say happened; `Err` = not
/// conclusive yet (why). `first_look`: the first verification after the call.
pub fn verdict(
    result: &std::result::Result<(), CallError>,
    dst: &Located,
    src: &Located,
    first_look: bool,
) -> std::result::Result<Outcome, String> {
    let aborted = matches!(result, Err(CallError::Aborted(_)));
    match (result, dst, src) {
        // The hypervisor shows the move done. Also after an abort, on the first look: the
        // migration completed before the abort took (a job holds the domain, so no other
        // migration of it ran meanwhile). Reporting "aborted, on the source" there would be an
        // audit line that contradicts the hypervisor.
        (r, Ok(Presence::Running), Ok(Presence::Absent)) if first_look || !aborted => {
            Ok(Outcome::Done {
                note: r
                    .as_ref()
                    .err()
                    .map(|e| format!("{e}; the hypervisor shows the migration completed")),
            })
        }
        // Our job was cancelled and the VM is on its source: aborted, as intended.
        (Err(CallError::Aborted(e)), _, Ok(Presence::Running | Presence::NotRunning)) => {
            Ok(Outcome::Aborted(e.clone()))
        }
        (Err(e), Ok(Presence::Absent), Ok(Presence::Running | Presence::NotRunning)) => {
            Ok(Outcome::Failed(e.to_string()))
        }
        // Destination unreachable or gone (it disappeared): the VM being on the source is
        // what counts.
        (Err(e), Err(_), Ok(Presence::Running)) => Ok(Outcome::Failed(format!(
            "{e} (destination unreachable afterwards)"
        ))),
        (_, d, s) => Err(format!(
            "verification: destination {d:?}, source {s:?}{}",
            result
                .as_ref()
                .err()
                .map(|e| format!(", migration: {e}"))
                .unwrap_or_default()
        )),
    }
}

impl AgentCore {
    /// A core for host `name`; fails when the config cannot run (`auto` without an
    /// inventory). `verify_attempts`: verification answers asked for after a migration call
    /// before the outcome is `unknown`.
    pub fn new(
        name: &str,
        config: AgentConfig,
        spec: PolicySpec,
        verify_attempts: u32,
    ) -> Result<AgentCore> {
        let policy = spec.build();
        AgentCore::with_policy(name, config, spec, policy, verify_attempts)
    }

    /// [`AgentCore::new`] deciding with a caller's own `policy` instead of the one `spec`
    /// names. `spec` still supplies what the core itself reads of a policy file: the cooldown
    /// of its recently-moved gate (`planner.cooldown_s`); the load histories are kept as
    /// `policy.trend_config()` asks. A later [`AgentCore::reload_policy`] replaces both with
    /// the file's. Whether the policy is fit for a real cluster is the caller's judgement:
    /// the core runs it as given.
    pub fn with_policy(
        name: &str,
        config: AgentConfig,
        spec: PolicySpec,
        policy: Box<dyn Policy>,
        verify_attempts: u32,
    ) -> Result<AgentCore> {
        // A config built in code skips the file's checks: `auto` still needs an inventory.
        if let Some(why) = config.auto_conflict() {
            return Err(AgentError::Config {
                file: "agent options".into(),
                line: 0,
                column: 0,
                message: why.into(),
            });
        }
        let metrics = AgentMetrics {
            mode: config.mode.as_str().to_string(),
            ..Default::default()
        };
        // Load histories at the policy's step, as long as its longest window.
        let trends = Trends::new(policy.trend_config());
        Ok(AgentCore {
            name: name.to_string(),
            policy,
            spec,
            verify_attempts: verify_attempts.max(1),
            trends,
            history: History::default(),
            known_moves: BTreeSet::new(),
            own_moves: Vec::new(),
            placement: BTreeMap::new(),
            settled: BTreeMap::new(),
            pending: Vec::new(),
            vm_cooldown: BTreeMap::new(),
            dest_failures: BTreeMap::new(),
            dest_excluded: BTreeMap::new(),
            budget_starts: Vec::new(),
            inflight: BTreeMap::new(),
            pending_obs: Vec::new(),
            membership: BTreeMap::new(),
            probing: BTreeMap::new(),
            last_recommended: BTreeSet::new(),
            last_skipped: BTreeSet::new(),
            next_id: 1,
            was_leader: false,
            lean: false,
            wall_offset: 0,
            verbose_plans: false,
            no_quorum: false,
            conflicts: BTreeSet::new(),
            implausible: BTreeSet::new(),
            name_guessed: false,
            local_ips: BTreeSet::new(),
            name_missing: false,
            stopping: false,
            metrics,
            clock: 0,
            clock_behind: false,
            actions: VecDeque::new(),
            finished: Vec::new(),
            persisted: None,
            cfg: config,
        })
    }

    /// A core that resumes from its state file after a crash or a restart: budget use,
    /// cooldowns, exclusions and advertised moves are taken over; every migration that was in
    /// flight is counted against the budget (it may have run) and reconciled: located on its
    /// source and destination, aborted while its job still runs, and given exactly one outcome
    /// record from what the hypervisor shows.
    pub fn restore(
        name: &str,
        config: AgentConfig,
        spec: PolicySpec,
        verify_attempts: u32,
        state: PersistedState,
    ) -> Result<AgentCore> {
        let policy = spec.build();
        AgentCore::restore_with_policy(name, config, spec, policy, verify_attempts, state)
    }

    /// [`AgentCore::restore`] deciding with a caller's own `policy` (see
    /// [`AgentCore::with_policy`]).
    pub fn restore_with_policy(
        name: &str,
        config: AgentConfig,
        spec: PolicySpec,
        policy: Box<dyn Policy>,
        verify_attempts: u32,
        state: PersistedState,
    ) -> Result<AgentCore> {
        let mut c = AgentCore::with_policy(name, config, spec, policy, verify_attempts)?;
        c.next_id = state.next_id.max(1);
        c.budget_starts = state.budget_starts;
        c.vm_cooldown = state.vm_cooldown;
        c.dest_failures = state.dest_failures;
        c.dest_excluded = state.dest_excluded;
        for m in state.own_moves {
            c.known_moves.insert((m.vm.clone(), m.start));
            c.history.record(m.clone());
            c.own_moves.push(m);
        }
        for p in state.inflight {
            let booked = match p.booked {
                Some(t) => t,
                None => {
                    // It was in its pre-check: it may have started since. Counted, to be safe.
                    let rec = MigrationRecord {
                        vm: p.mv.vm.clone(),
                        from: p.mv.from.clone(),
                        to: p.mv.to.clone(),
                        start: p.started,
                    };
                    c.budget_starts.push((p.started, rec.vm.clone()));
                    c.known_moves.insert((rec.vm.clone(), rec.start));
                    c.history.record(rec.clone());
                    c.own_moves.push(rec);
                    p.started
                }
            };
            let req = MigrationRequest {
                id: p.id,
                vm: p.mv.vm.clone(),
                from: p.from,
                to: p.to,
                timeout: Duration::from_secs(c.cfg.migration_timeout_s),
            };
            tracing::warn!(vm = %req.vm, from = %req.from.name, to = %req.to.name, id = req.id,
                "migration in flight at the last stop: asking the hypervisor where it is");
            c.next_id = c.next_id.max(p.id + 1);
            c.actions.push_back(Action::Locate {
                req: req.clone(),
                retry: false,
            });
            c.inflight.insert(
                p.id,
                Inflight {
                    req,
                    mv: p.mv,
                    booked: Some(booked),
                    started: p.started,
                    phase: Phase::Reconciling { attempt: 0 },
                    abort_why: p.abort_why,
                    abort_sent_at: None,
                    abort_outstanding: false,
                    imbalance_before: p.imbalance_before,
                },
            );
        }
        c.metrics.inflight = c.inflight.len() as u32;
        c.persisted = Some(c.state());
        Ok(c)
    }

    /// What the state file holds for this core now.
    pub fn state(&self) -> PersistedState {
        PersistedState {
            budget_starts: self.budget_starts.clone(),
            own_moves: self.own_moves.clone(),
            vm_cooldown: self.vm_cooldown.clone(),
            dest_failures: self.dest_failures.clone(),
            dest_excluded: self.dest_excluded.clone(),
            next_id: self.next_id,
            inflight: self
                .inflight
                .values()
                .map(|f| PersistedMigration {
                    id: f.req.id,
                    mv: f.mv.clone(),
                    from: f.req.from.clone(),
                    to: f.req.to.clone(),
                    started: f.started,
                    booked: f.booked,
                    abort_why: f.abort_why.clone(),
                    imbalance_before: f.imbalance_before,
                })
                .collect(),
            ..PersistedState::empty(&self.name)
        }
    }

    /// Queues the state for the state file when it changed since the last time.
    fn persist(&mut self) {
        let s = self.state();
        if self.persisted.as_ref() != Some(&s) {
            self.actions.push_back(Action::Persist(Box::new(s.clone())));
            self.persisted = Some(s);
        }
    }

    /// How to check the NAME against the view: `guessed` (no name configured, the hostname
    /// was taken) lets the view's host whose IP is one of `local_ips` (this machine's sending
    /// addresses) correct it; a configured name is only checked.
    pub fn set_name_hints(&mut self, guessed: bool, local_ips: Vec<String>) {
        self.name_guessed = guessed;
        self.local_ips = local_ips.into_iter().filter(|ip| !ip.is_empty()).collect();
    }

    /// Whether the NAME was missing from the last non-empty view (this agent can then never
    /// lead).
    pub fn name_missing(&self) -> bool {
        self.name_missing
    }

    /// This host's NAME.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config in force.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The policy file in force (for a core made by [`AgentCore::with_policy`], the spec it
    /// was given, whose `policy` need not name the policy deciding: see
    /// [`AgentCore::policy_name`]).
    pub fn policy(&self) -> &PolicySpec {
        &self.spec
    }

    /// The name of the policy deciding, as plans and audit records carry it.
    pub fn policy_name(&self) -> &str {
        self.policy.name()
    }

    /// The metrics as they would be published now.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// Migrations running now (from the start action to the verified outcome).
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Moves known to this agent (own, advertised by others, observed in the view).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Membership probes handed out and not answered yet (reaped ones included).
    pub fn probes_outstanding(&self) -> usize {
        self.probing.len()
    }

    /// The next thing to do, in order; `None` when there is nothing.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Switches mode. `auto` is refused without an inventory (`trusted_hosts`), or with an
    /// executor that cannot migrate; the mode in force is then kept.
    pub fn set_mode(&mut self, mode: Mode) -> Result<()> {
        let next = AgentConfig {
            mode,
            ..self.cfg.clone()
        };
        if let Some(why) = next.auto_conflict().or_else(|| next.executor_conflict()) {
            return Err(AgentError::Config {
                file: "mode".into(),
                line: 0,
                column: 0,
                message: why.into(),
            });
        }
        self.cfg.mode = mode;
        self.metrics.mode = mode.as_str().to_string();
        Ok(())
    }

    /// Replaces the policy with `text` (a policy TOML file). A bad text is rejected with its
    /// error, audited, and the old policy stays in force.
    pub fn reload_policy(&mut self, text: &str, now: u64) -> Result<()> {
        let now = self.clock(now);
        match PolicySpec::parse_for_cluster(text) {
            Ok(spec) => {
                let mut r = self.record(now, Event::Reload);
                r.policy = Some(spec.policy.clone());
                let policy = spec.build();
                // Histories are kept unless the new policy needs them at another step or
                // length.
                if policy.trend_config() != self.policy.trend_config() {
                    self.trends = Trends::new(policy.trend_config());
                }
                self.policy = policy;
                self.spec = spec;
                self.audit(r);
                tracing::info!(policy = %self.spec.policy, "policy reloaded");
                Ok(())
            }
            Err(e) => {
                let mut r = self.record(now, Event::ReloadRejected);
                r.error = Some(e.to_string());
                self.audit(r);
                tracing::warn!(error = %e, policy = %self.policy.name(), "new policy rejected; old one kept");
                Err(AgentError::Policy(e.to_string()))
            }
        }
    }

    /// One round on a view: read it, elect, plan (leader), start moves (auto), and what
    /// [`AgentCore::handle_timeout`] does. The report also lists migrations that ended since
    /// the last round.
    pub fn handle_view(&mut self, cluster: &Cluster, now: u64) -> TickReport {
        self.round(cluster, now, false)
    }

    /// Seconds added to `now` for the wall clock that migration windows read: the simulator's
    /// scenario start (time inside the core stays relative, as the shell's epoch seconds are).
    pub fn set_wall_clock_offset(&mut self, offset_s: u64) {
        self.wall_offset = offset_s;
    }

    /// Plans verbosely from now on ([`balancer::planner::Input::verbose`]): the plan in each
    /// [`RoundReport`] then explains every host's tests and every refused candidate.
    pub fn set_verbose_plans(&mut self, on: bool) {
        self.verbose_plans = on;
    }

    /// Does the next round need the whole view ([`AgentCore::handle_view`]), or does a
    /// coordination view do ([`AgentCore::handle_coordination_view`])? Only a leader plans;
    /// an agent with its own moves in flight or still to observe needs placement too.
    pub fn wants_full_view(&self) -> bool {
        self.was_leader || !self.inflight.is_empty() || !self.pending_obs.is_empty()
    }

    /// One round of a follower on a coordination view: every host with only the metrics
    /// coordination reads ([`COORDINATION_METRICS`]). It elects, keeps the moves other
    /// balancers advertise (the budget it inherits if it takes the lead), probes membership
    /// only as far as the election needs, and never plans. Placement and trends are dropped
    /// (the view no longer shows them), so a follower that takes the lead starts them afresh.
    /// When the round makes it the leader, [`AgentCore::wants_full_view`] says so and the
    /// shell reads the whole view at once.
    pub fn handle_coordination_view(&mut self, cluster: &Cluster, now: u64) -> TickReport {
        self.round(cluster, now, true)
    }

    fn round(&mut self, cluster: &Cluster, now: u64, lean: bool) -> TickReport {
        let now = self.clock(now);
        let mut report = TickReport {
            finished: std::mem::take(&mut self.finished),
            ..Default::default()
        };
        // With `authenticated_only`, a value anyone on the segment could have forged never
        // reaches the view, leadership or the advertised moves.
        let filtered;
        let cluster = if self.cfg.authenticated_only {
            let mut c = cluster.clone();
            let filter = balancer::view::AuthFilter::Marked(self.cfg.auth_keys.clone());
            report.unauthenticated = balancer::view::keep_authenticated(&mut c, &filter);
            filtered = c;
            &filtered
        } else {
            cluster
        };
        self.check_name(cluster);
        // Reaped first, so the slots they free serve this very round.
        self.reap_probes(now);
        self.probe_membership(cluster, now, lean);
        let v = {
            let trusted = |n: &str| self.is_trusted(n);
            view::build(cluster, &trusted, now, self.vm_stale_s())
        };
        report.untrusted = v.untrusted.clone();
        self.note_conflicts(&v, now);
        report.implausible = v.implausible.len();
        self.note_implausible(&v, now);
        self.observe(&v, now, lean);
        // A follower's view holds no load: it publishes 0, not a figure it cannot know.
        self.metrics.imbalance = if lean {
            0.0
        } else {
            view::imbalance(&v.snapshot) as f32
        };

        let leader = {
            let trusted = |n: &str| self.is_trusted(n);
            coord::leader(&v.cluster, &trusted, self.cfg.leader_timeout_s)
        };
        let is_leader =
            leader.as_ref().is_some_and(|l| l.name == self.name) && self.cfg.mode != Mode::Off;
        report.leader = leader.map(|l| l.name);
        report.is_leader = is_leader;
        if is_leader != self.was_leader {
            let mut r = self.record(now, Event::Leader);
            r.outcome = Some(if is_leader { "gained" } else { "lost" }.to_string());
            self.audit(r);
            if !is_leader && self.cfg.on_lost_lead == InflightAction::Abort {
                self.abort_all("lost the lead");
            }
            self.was_leader = is_leader;
        }
        self.metrics.leader = is_leader;
        self.metrics.leader_name = report.leader.clone().unwrap_or_default();

        self.timeouts(now);

        // A lean round that elected this agent plans nothing: the shell reads the whole view
        // and runs a full round next, which checks the quorum on live hosts.
        report.no_quorum = if is_leader && self.cfg.mode == Mode::Auto && !lean {
            self.check_quorum(&v, now)
        } else {
            self.no_quorum = false;
            None
        };
        if is_leader && !self.stopping && !lean {
            self.plan_and_act(&v, now, &mut report);
        } else {
            self.metrics.planned = 0;
            self.last_recommended.clear();
        }
        self.metrics.inflight = self.inflight.len() as u32;
        self.refresh_recent(now);
        self.persist();
        // Outcomes that arrived during this round belong to it too.
        report.finished.append(&mut self.finished);
        report
    }

    /// Time passes without a view: migrations past their timeout get an abort, aborts are
    /// re-sent every [`ABORT_RETRY_S`] until their job ends, probes past
    /// [`PROBE_TIMEOUT_S`] are reaped. [`AgentCore::handle_view`] does this too.
    pub fn handle_timeout(&mut self, now: u64) {
        let now = self.clock(now);
        self.timeouts(now);
        self.persist();
    }

    /// When [`AgentCore::handle_timeout`] next has work, if ever (an abort to re-send, a
    /// migration to time out, a probe to reap).
    pub fn next_timeout(&self) -> Option<u64> {
        let migrations = self.inflight.values().filter_map(|f| {
            if !f.job_may_run() {
                None
            } else if f.abort_why.is_none() {
                f.times_out()
                    .then(|| f.started.saturating_add(self.cfg.migration_timeout_s))
            } else if f.abort_outstanding {
                None
            } else {
                Some(
                    f.abort_sent_at
                        .map_or(0, |t| t.saturating_add(ABORT_RETRY_S)),
                )
            }
        });
        let probes = self
            .probing
            .values()
            .filter(|p| !p.reaped)
            .map(|p| p.since.saturating_add(PROBE_TIMEOUT_S));
        migrations.chain(probes).min()
    }

    /// A membership probe answered.
    pub fn handle_probed(&mut self, now: u64, host: &str, reachable: bool) {
        let now = self.clock(now);
        self.probing.remove(host);
        if !reachable {
            tracing::info!(host = %host, "hypervisor unreachable: not a member");
        }
        self.membership.insert(host.to_string(), (reachable, now));
    }

    /// The pre-check of migration `id` ended: `Ok` = passed (the shell is migrating now),
    /// `Err` = the outcome (refused or failed before starting).
    pub fn handle_prechecked(
        &mut self,
        now: u64,
        id: u64,
        verdict: std::result::Result<(), Outcome>,
    ) {
        let now = self.clock(now);
        match verdict {
            Ok(()) => self.book(id, now),
            Err(outcome) => self.end(id, outcome, now),
        }
        self.persist();
    }

    /// The migration call of `id` returned. A refusal ends it (not started); anything else is
    /// verified against the hypervisor.
    pub fn handle_migrated(
        &mut self,
        now: u64,
        id: u64,
        result: std::result::Result<(), CallError>,
    ) {
        let now = self.clock(now);
        if let Err(CallError::Refused(e)) = &result {
            // Not started (another job holds the domain): whatever happens to it is not ours,
            // and it used no budget.
            let e = e.clone();
            self.release(id);
            self.end(id, Outcome::Refused(e), now);
            self.persist();
            return;
        }
        let Some(f) = self.inflight.get_mut(&id) else {
            return;
        };
        f.phase = Phase::Verifying { result, attempt: 0 };
        let req = f.req.clone();
        self.actions.push_back(Action::Locate { req, retry: false });
    }

    /// Where the VM of migration `id` stands on its destination (`dst`) and source (`src`).
    pub fn handle_located(&mut self, now: u64, id: u64, dst: Located, src: Located) {
        let now = self.clock(now);
        let attempts = self.verify_attempts;
        let Some(f) = self.inflight.get_mut(&id) else {
            return;
        };
        if matches!(f.phase, Phase::Reconciling { .. }) {
            self.reconcile(now, id, dst, src);
            self.persist();
            return;
        }
        let Phase::Verifying { result, attempt } = &mut f.phase else {
            return;
        };
        match verdict(result, &dst, &src, *attempt == 0) {
            Ok(outcome) => self.end(id, outcome, now),
            Err(why) if *attempt + 1 >= attempts => self.end(id, Outcome::Unknown(why), now),
            Err(_) => {
                // After a lost connection (libvirtd restart) the answer may take a few tries.
                *attempt += 1;
                let req = f.req.clone();
                self.actions.push_back(Action::Locate { req, retry: true });
            }
        }
        self.persist();
    }

    /// A migration found in the state file, as the hypervisor shows it now: moved (adopted as
    /// done), on its source (ended without moving), or its job still running (aborted, asked
    /// about again until it ends).
    fn reconcile(&mut self, now: u64, id: u64, dst: Located, src: Located) {
        let attempts = self.verify_attempts;
        let Some(f) = self.inflight.get_mut(&id) else {
            return;
        };
        let Phase::Reconciling { attempt } = &mut f.phase else {
            return;
        };
        const WHY: &str = "the agent restarted mid-migration";
        match (&dst, &src) {
            (Ok(Presence::Running), Ok(Presence::Absent)) => self.end(
                id,
                Outcome::Done {
                    note: Some("completed while the agent was down (found at restart)".into()),
                },
                now,
            ),
            (Ok(Presence::Absent), Ok(Presence::Running | Presence::NotRunning)) => {
                // Not the destination's fault: the agent's own restart interrupted it.
                f.abort_why.get_or_insert_with(|| WHY.to_string());
                let text = format!("{WHY}; {} is on its source", f.req.vm);
                self.end(id, Outcome::Aborted(text), now);
            }
            (_, Ok(Presence::Busy)) | (Ok(Presence::Busy), _) => {
                // The job still runs: abort it (again every ABORT_RETRY_S) and keep asking.
                f.abort_why.get_or_insert_with(|| WHY.to_string());
                let req = f.req.clone();
                self.actions.push_back(Action::Locate { req, retry: true });
                self.send_aborts(now);
            }
            _ if *attempt + 1 >= attempts => {
                let text = format!("at restart: destination {dst:?}, source {src:?}");
                self.end(id, Outcome::Unknown(text), now);
            }
            _ => {
                *attempt += 1;
                let req = f.req.clone();
                self.actions.push_back(Action::Locate { req, retry: true });
            }
        }
    }

    /// An abort call for migration `id` returned (`Err`: the hypervisor's text). Whether the
    /// job ended is learnt from the migration call, not from this; a refused or lost abort is
    /// sent again after [`ABORT_RETRY_S`].
    pub fn handle_aborted(&mut self, now: u64, id: u64, result: std::result::Result<(), String>) {
        self.clock(now);
        if let Some(f) = self.inflight.get_mut(&id) {
            f.abort_outstanding = false;
            if let Err(e) = result {
                tracing::warn!(vm = %f.req.vm, error = %e, "abort failed");
            }
        }
    }

    /// Stops: nothing new starts; in-flight migrations are aborted when `action` says so.
    pub fn handle_stop(&mut self, now: u64, action: InflightAction) {
        let now = self.clock(now);
        self.stopping = true;
        if action == InflightAction::Abort {
            self.abort_all("agent stopping");
        }
        self.timeouts(now);
        self.persist();
    }

    /// After the stop: the metrics advertise `off`, so publishing them once more hands the
    /// lead over at once.
    pub fn stopped(&mut self) {
        self.metrics.mode = Mode::Off.as_str().to_string();
        self.metrics.leader = false;
        self.metrics.inflight = self.inflight.len() as u32;
        for f in self.inflight.values() {
            tracing::warn!(vm = %f.req.vm, "migration still running at exit");
        }
    }

    /// Outcomes produced since the last call (also reported by the next
    /// [`AgentCore::handle_view`] when not taken here).
    pub fn take_finished(&mut self) -> Vec<(String, Outcome)> {
        std::mem::take(&mut self.finished)
    }

    /// The core's time: the latest `now` seen. A clock that jumps back (NTP step, a VM
    /// restored from a snapshot) would otherwise restart budget windows and cooldowns early
    /// or make timeouts fire late; standing still until it catches up does neither.
    fn clock(&mut self, now: u64) -> u64 {
        if now < self.clock {
            if !self.clock_behind {
                tracing::warn!(
                    now,
                    latest = self.clock,
                    "clock went backwards: the agent's time stands still until it catches up"
                );
                self.clock_behind = true;
            }
            return self.clock;
        }
        self.clock_behind = false;
        self.clock = now;
        now
    }

    fn timeouts(&mut self, now: u64) {
        for f in self.inflight.values_mut() {
            if f.abort_why.is_none()
                && f.times_out()
                && now >= f.started.saturating_add(self.cfg.migration_timeout_s)
            {
                f.abort_why = Some(format!("timeout after {} s", now.saturating_sub(f.started)));
            }
        }
        self.send_aborts(now);
        self.reap_probes(now);
    }

    fn reap_probes(&mut self, now: u64) {
        let mut reaped = Vec::new();
        for (host, p) in self.probing.iter_mut() {
            if !p.reaped && now >= p.since.saturating_add(PROBE_TIMEOUT_S) {
                p.reaped = true;
                reaped.push(host.clone());
            }
        }
        for host in reaped {
            tracing::warn!(host = %host, timeout_s = PROBE_TIMEOUT_S,
                "membership probe unanswered: not a member until it answers");
            self.membership.insert(host, (false, now));
        }
    }

    fn vm_stale_s(&self) -> u64 {
        // Two VM metric periods (tmax 60) plus slack: older reports belong to a VM that left.
        self.cfg.leader_timeout_s.max(90)
    }

    fn is_trusted(&self, host: &str) -> bool {
        if !self.cfg.trusted_hosts.is_empty() {
            return self.cfg.trusted_hosts.iter().any(|h| h == host);
        }
        // The last probe result counts until a newer one arrives (re-probed after the TTL).
        self.membership.get(host).is_some_and(|(ok, _)| *ok)
    }

    /// With no trusted list, hosts whose hypervisor answers are members; probes count from
    /// their answer on.
    fn probe_membership(&mut self, cluster: &Cluster, now: u64, lean: bool) {
        if !self.cfg.trusted_hosts.is_empty() || self.stopping {
            return;
        }
        let hosts = if lean {
            self.election_hosts(cluster)
        } else {
            cluster.hosts.iter().collect()
        };
        for h in hosts {
            let fresh = self
                .membership
                .get(&h.name)
                .is_some_and(|(_, at)| now < at.saturating_add(MEMBERSHIP_TTL_S));
            // A host whose last probe still hangs is not probed again meanwhile.
            if fresh || self.probing.contains_key(&h.name) || h.name.is_empty() {
                continue;
            }
            // Bounded: a view of thousands of hosts (or a forger inventing names) must not
            // start thousands of blocking probes at once; the rest wait for later ticks.
            let live = self.probing.values().filter(|p| !p.reaped).count();
            if live >= MAX_PROBES || self.probing.len() >= MAX_PROBES_OUTSTANDING {
                break;
            }
            self.probing.insert(
                h.name.clone(),
                Probe {
                    since: now,
                    reaped: false,
                },
            );
            self.actions.push_back(Action::Probe(HostAddr {
                name: h.name.clone(),
                ip: h.ip.clone(),
            }));
        }
    }

    /// The hosts whose membership decides the election, for a follower that probes no more
    /// than it must: itself, and the hosts advertising a balancer in name order up to the
    /// first known member (no later host can lead while it is live).
    fn election_hosts<'a>(&self, cluster: &'a Cluster) -> Vec<&'a ganglia_wire::model::Host> {
        let first = |name: &str| cluster.hosts.iter().find(|h| h.name == name);
        let mut out: Vec<_> = first(&self.name).into_iter().collect();
        let anyone = |_: &str| true;
        for c in coord::candidates(cluster, &anyone, self.cfg.leader_timeout_s) {
            if c.name == self.name || self.is_trusted(&c.name) {
                break;
            }
            out.extend(first(&c.name));
        }
        out
    }

    /// Migration `id` ended with `outcome`: audit, bookkeeping, report.
    fn end(&mut self, id: u64, outcome: Outcome, now: u64) {
        let Some(f) = self.inflight.remove(&id) else {
            return;
        };
        let vm = f.req.vm.clone();
        self.finish(f, &outcome, now);
        self.metrics.inflight = self.inflight.len() as u32;
        self.finished.push((vm, outcome));
    }

    fn finish(&mut self, f: Inflight, outcome: &Outcome, now: u64) {
        let (event, text, error) = match outcome {
            Outcome::Done { note } => (Event::Done, "verified".to_string(), note.clone()),
            Outcome::Refused(e) => (Event::Skipped, "refused".to_string(), Some(e.clone())),
            Outcome::Failed(e) => (Event::Failed, "vm_on_source".to_string(), Some(e.clone())),
            Outcome::Aborted(e) => (Event::Aborted, "vm_on_source".to_string(), Some(e.clone())),
            Outcome::Unknown(e) => (Event::Unknown, "unknown".to_string(), Some(e.clone())),
        };
        let mut r = self.move_record(now, event, &f.mv);
        r.id = Some(f.req.id);
        r.outcome = Some(text);
        r.error = error;
        r.seconds = Some(now.saturating_sub(f.started));
        self.audit(r);
        if !matches!(outcome, Outcome::Done { .. }) {
            self.drop_second_half(&f.mv.vm, outcome, now);
        }
        match outcome {
            Outcome::Done { .. } => {
                self.metrics.migrations_done += 1;
                self.placement.insert(f.mv.vm.clone(), f.mv.to.clone());
                // Until the destination reports the VM, the view still shows its load on the
                // source; planning on that would relieve the source a second time.
                let until = now + self.cfg.observe_after_s.max(self.vm_stale_s());
                self.settled
                    .insert(f.mv.vm.clone(), (f.mv.to.clone(), until));
                self.pending_obs.push(PendingObservation {
                    id: f.req.id,
                    mv: f.mv.clone(),
                    due: now + self.cfg.observe_after_s,
                    imbalance_before: f.imbalance_before,
                });
            }
            Outcome::Refused(_) => {
                // Someone else moved it, or it is busy: leave it alone for a while.
                self.vm_cooldown
                    .insert(f.mv.vm.clone(), now + self.cfg.failure_cooldown_s);
                self.forget_own(&f.mv.vm, f.booked);
            }
            Outcome::Failed(_) | Outcome::Aborted(_) | Outcome::Unknown(_) => {
                self.metrics.migrations_failed += 1;
                self.vm_cooldown
                    .insert(f.mv.vm.clone(), now + self.cfg.failure_cooldown_s);
                // The planner's own cooldown then skips this VM and picks another one.
                self.history.record(MigrationRecord {
                    vm: f.mv.vm.clone(),
                    from: f.mv.from.clone(),
                    to: f.mv.from.clone(),
                    start: now,
                });
                // A timeout or failure counts against the destination; an abort we asked for
                // because of lost lead or stop does not.
                let ours = matches!(outcome, Outcome::Aborted(_))
                    && f.abort_why
                        .as_deref()
                        .is_some_and(|w| !w.starts_with("timeout"));
                if !ours {
                    self.dest_failed(&f.mv.to, now);
                }
                if !matches!(outcome, Outcome::Unknown(_)) {
                    self.forget_own(&f.mv.vm, f.booked);
                }
            }
        }
    }

    /// The first half of a swap (`vm`'s migration) did not happen: its second half, which
    /// counted on the room it would free, is dropped, with an audit line.
    fn drop_second_half(&mut self, vm: &str, outcome: &Outcome, now: u64) {
        let (dropped, kept): (Vec<Move>, Vec<Move>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|m| m.after.as_deref() == Some(vm));
        self.pending = kept;
        for m in dropped {
            let mut r = self.move_record(now, Event::Skipped, &m);
            r.outcome = Some("swap_first_half_failed".into());
            r.error = Some(format!("{vm}: {outcome:?}"));
            self.audit(r);
        }
    }

    /// A move that did not happen is no longer advertised (its budget use stays counted).
    fn forget_own(&mut self, vm: &str, booked: Option<u64>) {
        let Some(start) = booked else { return };
        self.own_moves.retain(|m| !(m.vm == vm && m.start == start));
    }

    fn dest_failed(&mut self, dest: &str, now: u64) {
        let window = self.cfg.dest_exclusion_s;
        let list = self.dest_failures.entry(dest.to_string()).or_default();
        list.push(now);
        list.retain(|t| t + window > now);
        if list.len() >= self.cfg.dest_failure_limit as usize {
            tracing::warn!(host = %dest, failures = list.len(), "destination excluded");
            self.dest_excluded.insert(dest.to_string(), now + window);
            list.clear();
        }
    }

    /// Feeds the history: moves advertised by trusted balancers, and placement changes seen in
    /// the view (a VM reported by a new host); audits the observed gains that are due.
    fn observe(&mut self, v: &View, now: u64, lean: bool) {
        let advertised = {
            let trusted = |n: &str| self.is_trusted(n);
            coord::advertised_moves(&v.cluster, &trusted)
        };
        for m in advertised {
            if m.start + self.cfg.recent_moves_window_s <= now || m.start > now + 60 {
                continue;
            }
            if self.known_moves.insert((m.vm.clone(), m.start)) {
                self.budget_starts.push((m.start, m.vm.clone()));
                self.history.record(m);
            }
        }
        if lean {
            // No placement in this view: what was known goes, rather than turning into
            // "moves observed" against a placement long out of date.
            if !self.lean {
                self.placement.clear();
                self.trends = Trends::new(self.policy.trend_config());
            }
            self.lean = true;
            return;
        }
        self.lean = false;
        let own: BTreeSet<&str> = self.inflight.values().map(|f| f.req.vm.as_str()).collect();
        let mut observed = Vec::new();
        for vm in &v.snapshot.vms {
            if vm.migrating || own.contains(vm.name.as_str()) {
                continue;
            }
            // Right after a known move the view may still show the old host for a while.
            let settling = self
                .history
                .of_vm(&vm.name)
                .any(|m| m.start + 2 * self.vm_stale_s() > now);
            match self.placement.get(&vm.name) {
                Some(old) if *old != vm.host && !settling => {
                    let known = self
                        .history
                        .of_vm(&vm.name)
                        .any(|m| m.to == vm.host && m.start + self.cfg.recent_moves_window_s > now);
                    if !known {
                        observed.push(MigrationRecord {
                            vm: vm.name.clone(),
                            from: old.clone(),
                            to: vm.host.clone(),
                            start: now,
                        });
                    }
                }
                _ => {}
            }
            self.placement.insert(vm.name.clone(), vm.host.clone());
        }
        for m in observed {
            tracing::info!(vm = %m.vm, from = %m.from, to = %m.to, "move observed in the view");
            self.known_moves.insert((m.vm.clone(), m.start));
            self.history.record(m);
        }
        self.trends.observe(&v.snapshot);
        let (due, later): (Vec<_>, Vec<_>) = self.pending_obs.drain(..).partition(|p| p.due <= now);
        self.pending_obs = later;
        for p in due {
            let s = &v.snapshot;
            let imb = view::imbalance(s);
            let mut r = self.move_record(now, Event::Observed, &p.mv);
            r.id = Some(p.id);
            r.observed = Some(Observed {
                src_before: p.mv.predicted.src_before,
                src_after: balancer::plan::r6(view::host_util(s, &p.mv.from).unwrap_or(0.0)),
                dst_before: p.mv.predicted.dst_before,
                dst_after: balancer::plan::r6(view::host_util(s, &p.mv.to).unwrap_or(0.0)),
                imbalance_before: balancer::plan::r6(p.imbalance_before),
                imbalance_after: balancer::plan::r6(imb),
                gain: balancer::plan::r6(p.imbalance_before - imb),
            });
            self.audit(r);
        }
    }

    /// Is this agent's NAME a host of the view? An agent under a name the view does not show
    /// can never lead and never sees its own host live: said clearly, once. A guessed name
    /// is corrected from the host whose IP is ours (as gmond names hosts by source address),
    /// when exactly one such host exists (and is in the inventory, when there is one).
    fn check_name(&mut self, cluster: &Cluster) {
        if cluster.hosts.is_empty() {
            return;
        }
        if cluster.hosts.iter().any(|h| h.name == self.name) {
            if self.name_missing {
                tracing::info!(name = %self.name, "this agent's name is in the view now");
                self.name_missing = false;
            }
            return;
        }
        let mine: BTreeSet<&str> = cluster
            .hosts
            .iter()
            .filter(|h| self.local_ips.contains(&h.ip))
            .filter(|h| {
                self.cfg.trusted_hosts.is_empty() || self.cfg.trusted_hosts.contains(&h.name)
            })
            .map(|h| h.name.as_str())
            .collect();
        if self.name_guessed && mine.len() == 1 {
            if let Some(found) = mine.first() {
                tracing::warn!(guessed = %self.name, name = %found,
                    "this host appears in the view as {found} (its address is ours): using that name; set name = \"{found}\" in the agent config to say so");
                self.name = (*found).to_string();
                self.name_missing = false;
                return;
            }
        }
        if !self.name_missing {
            tracing::error!(name = %self.name, hosts_with_our_addresses = ?mine,
                "this agent's name {:?} is no host of the view: it can never lead; set name = \"...\" in the agent config (or --name) to this host's NAME as the view shows it",
                self.name);
            self.name_missing = true;
        }
    }

    /// Audits names entering and leaving conflict (two addresses, one NAME).
    fn note_conflicts(&mut self, v: &View, now: u64) {
        let current: BTreeSet<String> = v.conflicts.keys().cloned().collect();
        let new: Vec<String> = current.difference(&self.conflicts).cloned().collect();
        let gone: Vec<String> = self.conflicts.difference(&current).cloned().collect();
        for name in &new {
            let ips = v
                .conflicts
                .get(name)
                .map(|a| a.join(", "))
                .unwrap_or_default();
            let why = format!(
                "host {name} is reported from several addresses ({ips}): which is the real one \
                 cannot be told from the view, so it is neither source nor destination"
            );
            tracing::warn!(host = %name, addresses = %ips, "{why}");
            let mut r = self.record(now, Event::NameConflict);
            r.outcome = Some("excluded".into());
            r.error = Some(why);
            self.audit(r);
        }
        for name in &gone {
            tracing::info!(host = %name, "host name conflict resolved");
            let mut r = self.record(now, Event::NameConflict);
            r.outcome = Some("resolved".into());
            r.error = Some(format!("host {name} is reported from one address again"));
            self.audit(r);
        }
        self.conflicts = current;
    }

    /// Audits hosts and VMs newly left out for an implausible figure: at most
    /// [`MAX_IMPLAUSIBLE_NOTES`] lines a round (a forger can invent many), the rest counted in
    /// one more line.
    fn note_implausible(&mut self, v: &View, now: u64) {
        let current: BTreeSet<String> = v.implausible.iter().map(|(n, _)| n.clone()).collect();
        let new: Vec<&(String, String)> = v
            .implausible
            .iter()
            .filter(|(n, _)| !self.implausible.contains(n))
            .collect();
        for (name, why) in new.iter().take(MAX_IMPLAUSIBLE_NOTES) {
            tracing::warn!(name = %name, why = %why, "implausible figure: left out of the view");
            let mut r = self.record(now, Event::Implausible);
            r.outcome = Some("skipped".into());
            r.error = Some(format!("{name}: {why}"));
            self.audit(r);
        }
        if new.len() > MAX_IMPLAUSIBLE_NOTES {
            let mut r = self.record(now, Event::Implausible);
            r.outcome = Some("skipped".into());
            r.error = Some(format!(
                "{} more hosts or VMs with implausible figures, not listed",
                new.len() - MAX_IMPLAUSIBLE_NOTES
            ));
            self.audit(r);
        }
        self.implausible = current;
    }

    /// A leader acts only while it sees a strict majority of the inventory live (heard within
    /// `leader_timeout_s`): in a partition at most one side can, so two leaders cannot both
    /// spend a budget. `Some(why)` when it does not; changes are audited.
    fn check_quorum(&mut self, v: &View, now: u64) -> Option<String> {
        let inventory: BTreeSet<&str> = self.cfg.trusted_hosts.iter().map(String::as_str).collect();
        if inventory.is_empty() {
            return None;
        }
        let live = inventory
            .iter()
            .filter(|n| {
                v.cluster
                    .hosts
                    .iter()
                    .any(|h| h.name == **n && h.tn < self.cfg.leader_timeout_s)
            })
            .count();
        let need = inventory.len() / 2 + 1;
        let why = (live < need).then(|| {
            format!(
                "{live} of {} trusted hosts live, a majority needs {need}: recommending only",
                inventory.len()
            )
        });
        if why.is_some() != self.no_quorum {
            self.no_quorum = why.is_some();
            let mut r = self.record(now, Event::Quorum);
            r.outcome = Some(if self.no_quorum { "lost" } else { "regained" }.into());
            r.error = why.clone();
            match &why {
                Some(w) => tracing::warn!(live, need, "{w}"),
                None => tracing::info!(live, need, "majority of the inventory live again: acting"),
            }
            self.audit(r);
        }
        why
    }

    fn plan_and_act(&mut self, v: &View, now: u64, report: &mut TickReport) {
        let mut snap = self.with_settled_moves(v, now);
        // An excluded destination is taken out of the policy's world for the exclusion period
        // (neither filled nor drained), so the policy picks another destination instead of
        // proposing the excluded one every round.
        for h in &mut snap.hosts {
            if self.dest_excluded.get(&h.name).is_some_and(|t| now < *t) {
                h.up = false;
            }
        }
        for f in self.inflight.values() {
            if let Some(i) = snap.vm_index(&f.req.vm) {
                snap.vms[i].migrating = true;
                snap.vms[i].migrating_to = Some(f.req.to.name.clone());
            }
        }
        let plan = self.policy.decide(Input {
            snapshot: &snap,
            trends: &self.trends,
            history: &self.history,
            now,
            wall_s: now.saturating_add(self.wall_offset),
            verbose: self.verbose_plans,
            pending: &self.pending,
        });
        for k in plan.note_keys() {
            self.history.reported.insert(k);
        }
        // Offered once: a second half whose first half has ended is now the plan's to make
        // (or the planner dropped it, with a note).
        let running: BTreeSet<&str> = self.inflight.values().map(|f| f.req.vm.as_str()).collect();
        self.pending
            .retain(|m| m.after.as_deref().is_some_and(|f| running.contains(f)));
        self.metrics.last_decision = u32::try_from(now).unwrap_or(u32::MAX);
        self.metrics.planned = plan.moves.len() as u32;
        let imbalance_before = view::imbalance(&v.snapshot);
        let mut recommended = BTreeSet::new();
        let mut skipped = BTreeSet::new();
        if !plan.moves.is_empty() {
            tracing::info!(mode = self.cfg.mode.as_str(), plan = %plan.explain().trim_end(), "plan");
        }
        // An affinity group's moves start all or none: judged once, at its first move, with
        // the room the whole group needs under the parallel limit and the budget.
        let mut group_gates: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut started_now: BTreeSet<String> = BTreeSet::new();
        for (i, mv) in plan.moves.iter().enumerate() {
            // A swap's second half waits for its first half to end: held, never started now.
            let first = mv.after.as_deref();
            if let Some(first) = first.filter(|f| plan.moves[..i].iter().any(|m| m.vm == *f)) {
                if self.cfg.mode == Mode::Auto && started_now.contains(first) {
                    self.pending.push(mv.clone());
                    let mut r = self.move_record(now, Event::Queued, mv);
                    r.outcome = Some(format!("after {first}"));
                    self.audit(r);
                    report.queued.push(mv.clone());
                } else if self.cfg.mode == Mode::Recommend || report.no_quorum.is_some() {
                    let outcome = format!("after {first}");
                    self.recommend(now, mv, outcome, &mut recommended, report);
                }
                continue;
            }
            // The second half that follows, if this move opens a swap.
            let second = plan
                .moves
                .get(i + 1)
                .filter(|m| m.after.as_deref() == Some(mv.vm.as_str()));
            let gate = match (&mv.group, second) {
                (None, Some(second)) => self.swap_gate(mv, second, v, now),
                (None, None) => self.gate(mv, v, now),
                (Some(g), _) => {
                    if !group_gates.contains_key(g) {
                        let members: Vec<&Move> = plan
                            .moves
                            .iter()
                            .filter(|m| m.group.as_ref() == Some(g))
                            .collect();
                        let verdict = self.group_gate(&members, v, now);
                        group_gates.insert(g.clone(), verdict);
                    }
                    group_gates.get(g).cloned().flatten()
                }
            };
            if self.cfg.mode == Mode::Recommend || report.no_quorum.is_some() {
                let outcome = match (&report.no_quorum, gate) {
                    (Some(_), _) => "no_quorum".into(),
                    (None, g) => g.unwrap_or_else(|| "would_start".into()),
                };
                self.recommend(now, mv, outcome, &mut recommended, report);
                continue;
            }
            if let Some(g) = gate {
                let skey = (mv.vm.clone(), mv.to.clone(), g.clone());
                if !self.last_skipped.contains(&skey) {
                    let mut r = self.move_record(now, Event::Skipped, mv);
                    r.outcome = Some(g.clone());
                    self.audit(r);
                }
                skipped.insert(skey);
                report.skipped.push((mv.clone(), g));
                continue;
            }
            self.start(mv, v, now, imbalance_before);
            started_now.insert(mv.vm.clone());
            report.started.push(mv.clone());
        }
        self.last_recommended = recommended;
        self.last_skipped = skipped;
        report.plan = Some(plan);
    }

    /// A move recommended this round (`outcome`: what auto would do with it), audited when it
    /// was not recommended the round before.
    fn recommend(
        &mut self,
        now: u64,
        mv: &Move,
        outcome: String,
        recommended: &mut BTreeSet<(String, String, String)>,
        report: &mut TickReport,
    ) {
        let key = (mv.vm.clone(), mv.from.clone(), mv.to.clone());
        if !self.last_recommended.contains(&key) {
            let mut r = self.move_record(now, Event::Recommend, mv);
            r.outcome = Some(outcome);
            self.audit(r);
        }
        recommended.insert(key);
        report.recommended.push(mv.clone());
    }

    /// The view's snapshot with finished moves applied where the view lags: a VM this agent
    /// moved is placed (and its load booked) on its destination until the view shows it there.
    fn with_settled_moves(&mut self, v: &View, now: u64) -> balancer::snapshot::Snapshot {
        let mut snap = v.snapshot.clone();
        let mut changed = false;
        self.settled.retain(|vm, (dest, until)| {
            if now >= *until {
                return false;
            }
            let Some(i) = snap.vm_index(vm) else {
                return true;
            };
            let shown = &snap.vms[i];
            if shown.host == *dest && !shown.migrating {
                return false;
            }
            if snap.host_index(dest).is_some() {
                snap.vms[i].host = dest.clone();
                snap.vms[i].migrating = false;
                changed = true;
            }
            true
        });
        if changed {
            match snap.clone().reindexed() {
                Ok(s) => snap = s,
                Err(e) => {
                    tracing::warn!(error = %e, "settled moves not applied");
                    snap = v.snapshot.clone();
                }
            }
        }
        snap
    }

    /// The agent's own gates on a planned move, in order; `None` = go.
    fn gate(&mut self, mv: &Move, v: &View, now: u64) -> Option<String> {
        if self.vm_cooldown.get(&mv.vm).is_some_and(|t| now < *t) {
            return Some("vm_failure_cooldown".into());
        }
        if self.dest_excluded.get(&mv.to).is_some_and(|t| now < *t) {
            return Some("destination_excluded".into());
        }
        let live = |name: &str| {
            v.cluster
                .hosts
                .iter()
                .any(|h| h.name == name && h.tn < self.cfg.leader_timeout_s)
        };
        if v.conflicts.contains_key(&mv.to) || v.conflicts.contains_key(&mv.from) {
            return Some("name_conflict".into());
        }
        if !live(&mv.to) {
            return Some("destination_not_live".into());
        }
        if !live(&mv.from) {
            return Some("source_not_live".into());
        }
        let on_source = v
            .snapshot
            .vm_index(&mv.vm)
            .is_some_and(|i| v.snapshot.vms[i].host == mv.from && !v.snapshot.vms[i].migrating);
        if !on_source || v.in_flight.contains(&mv.vm) {
            return Some("not_on_source_in_view".into());
        }
        if self.inflight.values().any(|f| f.req.vm == mv.vm) {
            return Some("in_flight".into());
        }
        let recent = self.history.of_vm(&mv.vm).any(|m| {
            m.start
                + self
                    .cfg
                    .recent_moves_window_s
                    .min(self.spec.planner.cooldown_s.max(1))
                > now
        });
        if recent {
            return Some("recently_moved".into());
        }
        if self.inflight.len() >= self.cfg.max_parallel {
            return Some("parallel_limit".into());
        }
        let window = self.cfg.budget_window_s;
        self.budget_starts.retain(|(t, _)| t + window > now);
        if self.budget_in_use() >= self.cfg.budget_migrations as usize {
            return Some("budget".into());
        }
        None
    }

    /// Migrations counted against the budget of the current window (as [`Self::gate`] last
    /// trimmed it): those started, and those still in their pre-check, which hold a
    /// reservation because they may use budget any moment.
    fn budget_in_use(&self) -> usize {
        let reserved = self
            .inflight
            .values()
            .filter(|f| f.phase == Phase::Starting)
            .count();
        self.budget_starts.len() + reserved
    }

    /// The gates of an affinity group moving together: each member's own, then room for all
    /// of them at once (a group split by the budget would break its rule until the next
    /// round's enforcement gathered it back).
    fn group_gate(&mut self, members: &[&Move], v: &View, now: u64) -> Option<String> {
        for m in members {
            if let Some(g) = self.gate(m, v, now) {
                return Some(g);
            }
        }
        let k = members.len();
        if self.inflight.len() + k > self.cfg.max_parallel {
            return Some("parallel_limit".into());
        }
        if self.budget_in_use() + k > self.cfg.budget_migrations as usize {
            return Some("budget".into());
        }
        None
    }

    /// The gates of a swap, judged at its first half: both halves' own (the second's as the
    /// view stands now; it is judged again when its turn comes), and budget for both.
    fn swap_gate(&mut self, first: &Move, second: &Move, v: &View, now: u64) -> Option<String> {
        if let Some(g) = self
            .gate(first, v, now)
            .or_else(|| self.gate(second, v, now))
        {
            return Some(g);
        }
        if self.budget_in_use() + 2 > self.cfg.budget_migrations as usize {
            return Some("budget".into());
        }
        None
    }

    fn start(&mut self, mv: &Move, v: &View, now: u64, imbalance_before: f64) {
        let id = self.next_id;
        self.next_id += 1;
        let addr = |name: &str| HostAddr {
            name: name.to_string(),
            ip: v.ips.get(name).cloned().unwrap_or_default(),
        };
        let req = MigrationRequest {
            id,
            vm: mv.vm.clone(),
            from: addr(&mv.from),
            to: addr(&mv.to),
            timeout: Duration::from_secs(self.cfg.migration_timeout_s),
        };
        // Budget, history, advertisement and the `start` record wait for the hypervisor's
        // pre-check: a VM that is not where the view says (a forged one) costs nothing.
        self.inflight.insert(
            id,
            Inflight {
                req: req.clone(),
                mv: mv.clone(),
                booked: None,
                started: now,
                phase: Phase::Starting,
                abort_why: None,
                abort_sent_at: None,
                abort_outstanding: false,
                imbalance_before,
            },
        );
        // On disk before it can exist in the hypervisor: a crash from here on is reconciled.
        self.persist();
        self.actions.push_back(Action::Migrate(req));
    }

    /// Migration `id` passed the pre-check and is being started: it uses budget now, is
    /// advertised, enters the history, and gets its `start` record.
    fn book(&mut self, id: u64, now: u64) {
        let Some(f) = self.inflight.get_mut(&id) else {
            return;
        };
        if f.phase != Phase::Starting {
            return;
        }
        f.phase = Phase::Migrating;
        f.booked = Some(now);
        let mv = f.mv.clone();
        let rec = MigrationRecord {
            vm: mv.vm.clone(),
            from: mv.from.clone(),
            to: mv.to.clone(),
            start: now,
        };
        self.known_moves.insert((rec.vm.clone(), rec.start));
        self.budget_starts.push((now, rec.vm.clone()));
        self.history.record(rec.clone());
        self.own_moves.push(rec);
        let mut r = self.move_record(now, Event::Start, &mv);
        r.id = Some(id);
        self.audit(r);
    }

    /// Migration `id` never started after all (the hypervisor refused the call): its budget
    /// use is given back.
    fn release(&mut self, id: u64) {
        let Some(f) = self.inflight.get_mut(&id) else {
            return;
        };
        if let Some(t) = f.booked.take() {
            let vm = f.req.vm.clone();
            if let Some(i) = self
                .budget_starts
                .iter()
                .position(|(bt, bv)| *bt == t && *bv == vm)
            {
                self.budget_starts.remove(i);
            }
            self.own_moves.retain(|m| !(m.vm == vm && m.start == t));
        }
    }

    fn abort_all(&mut self, why: &str) {
        for f in self.inflight.values_mut() {
            if f.abort_why.is_none() && f.job_may_run() {
                f.abort_why = Some(why.to_string());
            }
        }
    }

    /// Hands out the aborts decided, and again every [`ABORT_RETRY_S`] until the job ends: an
    /// abort can be lost (libvirtd restarting) or refused, and a job left running would hold
    /// the VM and a slot forever. No second abort while one is still blocked.
    fn send_aborts(&mut self, now: u64) {
        for f in self.inflight.values_mut() {
            let due = f
                .abort_sent_at
                .is_none_or(|t| now >= t.saturating_add(ABORT_RETRY_S));
            if f.abort_why.is_none() || !due || f.abort_outstanding || !f.job_may_run() {
                continue;
            }
            let why = f.abort_why.as_deref().unwrap_or("");
            match f.abort_sent_at {
                None => tracing::warn!(vm = %f.req.vm, why, "aborting migration"),
                Some(_) => {
                    tracing::info!(vm = %f.req.vm, why, "migration still running: abort sent again")
                }
            }
            f.abort_sent_at = Some(now);
            f.abort_outstanding = true;
            self.actions.push_back(Action::Abort(f.req.clone()));
        }
    }

    fn refresh_recent(&mut self, now: u64) {
        let window = self.cfg.recent_moves_window_s;
        self.own_moves.retain(|m| m.start + window > now);
        self.metrics.recent_moves = coord::encode_moves(&self.own_moves);
    }

    fn record(&self, now: u64, event: Event) -> Record {
        let mut r = Record::new(now, &self.name, event, self.cfg.mode.as_str());
        r.policy = Some(self.policy.name().to_string());
        r
    }

    fn move_record(&self, now: u64, event: Event, mv: &Move) -> Record {
        let mut r = self.record(now, event);
        r.vm = Some(mv.vm.clone());
        r.from = Some(mv.from.clone());
        r.to = Some(mv.to.clone());
        r.reason = Some(mv.reason.clone());
        r.predicted = Some(mv.predicted.clone());
        r
    }

    fn audit(&mut self, r: Record) {
        self.actions.push_back(Action::Audit(Box::new(r)));
    }
}

impl Inflight {
    /// Whether a migration job may exist in the hypervisor (before the call returned, or
    /// found in the state file): only then is there something to abort.
    fn job_may_run(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Migrating | Phase::Reconciling { .. }
        )
    }

    /// Whether the migration timeout applies: to a call this run made. One found at restart
    /// is aborted when the hypervisor shows its job still running, whatever its age.
    fn times_out(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Migrating)
    }
}
