//! The agent state machine: `tick(view, now)` reads the cleaned view, elects the leader, and, on
//! the leader only, plans with the configured policy and starts migrations on worker threads
//! through an [`Executor`], under the hard budget, parallelism, cooldowns and exclusions.
//!
//! Time is an input (`now`, epoch or simulated seconds); the only blocking work (hypervisor
//! calls) happens on worker threads whose results are collected at the next tick.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::plan::{Move, Plan};
use balancer::planner::{History, Input, MigrationRecord};
use balancer::policy::{Policy, PolicySpec};
use balancer::trends::{TrendConfig, Trends};
use ganglia_wire::model::Cluster;

use crate::audit::{AuditLog, Event, Observed, Record};
use crate::config::{AgentConfig, InflightAction, Mode};
use crate::coord;
use crate::error::{AgentError, Result};
use crate::executor::{Executor, HostAddr, MigrationRequest, Presence};
use crate::metrics::{encode_datagrams, AgentMetrics, Identity, MetricSink};
use crate::view::{self, View};

/// Who the agent is and how it reaches the world.
pub struct AgentOptions {
    /// This host's NAME as it appears in the Ganglia view.
    pub name: String,
    /// The identity its metric datagrams carry.
    pub identity: Identity,
    /// The agent config.
    pub config: AgentConfig,
    /// Policy file text; `None` resolves `config.policy` (built-in name or file path).
    pub policy_text: Option<String>,
    /// The hypervisor backend.
    pub executor: Arc<dyn Executor>,
    /// Where audit records go.
    pub audit: AuditLog,
    /// Pause between verification retries after a failed hypervisor call (default 500 ms).
    pub verify_retry: Duration,
    /// Verification attempts after a migration call returned (default 10).
    pub verify_attempts: u32,
    /// Largest datagram sent (gmond.conf max_udp_msg_len, default 1472).
    pub max_udp_msg_len: usize,
    /// Bytes of every datagram's size limit left free for what the sink appends (a signature
    /// trailer, `ganglia_wire::auth::TRAILER_LEN`, when the agent signs); default 0.
    pub reserve: usize,
}

impl AgentOptions {
    /// Options with defaults for everything but the essentials.
    pub fn new(name: &str, config: AgentConfig, executor: Arc<dyn Executor>) -> AgentOptions {
        AgentOptions {
            name: name.to_string(),
            identity: Identity::new(name, None, None),
            config,
            policy_text: None,
            executor,
            audit: AuditLog::none(),
            verify_retry: Duration::from_millis(500),
            verify_attempts: 10,
            max_udp_msg_len: 1472,
            reserve: 0,
        }
    }
}

/// Resolves a policy name or file path into a validated spec.
pub fn load_policy(policy: &str) -> Result<PolicySpec> {
    let path = std::path::Path::new(policy);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            path: policy.to_string(),
            source,
        })?;
        PolicySpec::parse(&text).map_err(|e| AgentError::Policy(format!("{policy}: {e}")))
    } else {
        PolicySpec::builtin(policy).map_err(|e| AgentError::Policy(e.to_string()))
    }
}

/// How a migration ended, as a worker reports it.
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

/// One migration this agent runs.
#[derive(Debug, Clone)]
struct Inflight {
    req: MigrationRequest,
    mv: Move,
    started: u64,
    /// Why it is being aborted (timeout, lost lead, stop), once decided.
    abort_why: Option<String>,
    /// When an abort was last sent: it is sent again until the job ends.
    abort_sent_at: Option<u64>,
    /// An abort call for it is still blocked in the hypervisor (no second one meanwhile).
    abort_running: Arc<std::sync::atomic::AtomicBool>,
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

enum WorkerMsg {
    Finished(u64, Outcome),
    Reachable(String, bool),
}

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    /// The leader this agent sees.
    pub leader: Option<String>,
    /// Whether this agent leads.
    pub is_leader: bool,
    /// The plan made (leader only).
    pub plan: Option<Plan>,
    /// Moves started this tick (auto mode).
    pub started: Vec<Move>,
    /// Moves recommended this tick (recommend mode; new ones only are audited).
    pub recommended: Vec<Move>,
    /// Planned moves refused by the agent's own gates, with the gate name.
    pub skipped: Vec<(Move, String)>,
    /// Migrations that ended since the last tick.
    pub finished: Vec<(String, Outcome)>,
    /// Untrusted hosts ignored in this view.
    pub untrusted: Vec<String>,
}

/// Membership probes running at once, at most.
const MAX_PROBES: usize = 16;

/// An abort is sent again this often (seconds) until its migration ends.
const ABORT_RETRY_S: u64 = 10;

/// Membership probe results are trusted for this long, seconds.
const MEMBERSHIP_TTL_S: u64 = 300;

/// The balancer agent of one host.
pub struct Agent {
    name: String,
    identity: Identity,
    cfg: AgentConfig,
    spec: PolicySpec,
    policy: Box<dyn Policy>,
    exec: Arc<dyn Executor>,
    audit: AuditLog,
    verify_retry: Duration,
    verify_attempts: u32,
    max_udp_msg_len: usize,
    reserve: usize,
    trends: Trends,
    history: History,
    known_moves: BTreeSet<(String, u64)>,
    own_moves: Vec<MigrationRecord>,
    placement: BTreeMap<String, String>,
    /// VM -> (destination, until): finished moves the view may not show yet.
    settled: BTreeMap<String, (String, u64)>,
    vm_cooldown: BTreeMap<String, u64>,
    dest_failures: BTreeMap<String, Vec<u64>>,
    dest_excluded: BTreeMap<String, u64>,
    budget_starts: Vec<(u64, String)>,
    inflight: BTreeMap<u64, Inflight>,
    pending_obs: Vec<PendingObservation>,
    membership: BTreeMap<String, (bool, u64)>,
    probing: BTreeSet<String>,
    last_recommended: BTreeSet<(String, String, String)>,
    last_skipped: BTreeSet<(String, String, String)>,
    tx: Sender<WorkerMsg>,
    rx: Receiver<WorkerMsg>,
    next_id: u64,
    was_leader: bool,
    stopping: bool,
    cancel: Arc<AtomicBool>,
    metrics: AgentMetrics,
    last_view: View,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("mode", &self.cfg.mode)
            .field("policy", &self.spec.policy)
            .field("inflight", &self.inflight.len())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Builds an agent; fails when the policy cannot be loaded.
    pub fn new(opts: AgentOptions) -> Result<Agent> {
        let spec = match &opts.policy_text {
            Some(text) => PolicySpec::parse(text).map_err(|e| AgentError::Policy(e.to_string()))?,
            None => load_policy(&opts.config.policy)?,
        };
        // A config built in code skips the file's checks: `auto` still needs an inventory.
        if let Some(why) = opts.config.auto_conflict() {
            return Err(AgentError::Config {
                file: "agent options".into(),
                line: 0,
                column: 0,
                message: why.into(),
            });
        }
        if !opts.config.uri_template.contains("{host}") && opts.config.host_uris.is_empty() {
            tracing::warn!(uri = %opts.config.uri_template,
                "uri_template has no {{host}}: every host maps to the same URI (tests only)");
        }
        let (tx, rx) = channel();
        let metrics = AgentMetrics {
            mode: opts.config.mode.as_str().to_string(),
            ..Default::default()
        };
        Ok(Agent {
            name: opts.name,
            identity: opts.identity,
            policy: spec.build(),
            spec,
            exec: opts.executor,
            audit: opts.audit,
            verify_retry: opts.verify_retry,
            verify_attempts: opts.verify_attempts.max(1),
            max_udp_msg_len: opts.max_udp_msg_len,
            reserve: opts.reserve,
            trends: Trends::new(TrendConfig::default()),
            history: History::default(),
            known_moves: BTreeSet::new(),
            own_moves: Vec::new(),
            placement: BTreeMap::new(),
            settled: BTreeMap::new(),
            vm_cooldown: BTreeMap::new(),
            dest_failures: BTreeMap::new(),
            dest_excluded: BTreeMap::new(),
            budget_starts: Vec::new(),
            inflight: BTreeMap::new(),
            pending_obs: Vec::new(),
            membership: BTreeMap::new(),
            probing: BTreeSet::new(),
            last_recommended: BTreeSet::new(),
            last_skipped: BTreeSet::new(),
            tx,
            rx,
            next_id: 1,
            was_leader: false,
            stopping: false,
            cancel: Arc::new(AtomicBool::new(false)),
            metrics,
            last_view: View::default(),
            cfg: opts.config,
        })
    }

    /// This host's NAME.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Changes the mode (e.g. `--mode` or an operator switch from recommend to auto).
    /// Switches mode (SIGHUP). `auto` is refused without an inventory (`trusted_hosts`), or
    /// with an executor that cannot migrate; the mode in force is then kept.
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

    /// The config in force.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The policy in force.
    pub fn policy(&self) -> &PolicySpec {
        &self.spec
    }

    /// The metrics as they would be published now.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// Migrations running now.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Moves known to this agent (own, advertised by others, observed in the view).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Replaces the policy with `text` (a policy TOML file). A bad text is rejected with its
    /// error, audited, and the old policy stays in force.
    pub fn reload_policy(&mut self, text: &str, now: u64) -> Result<()> {
        match PolicySpec::parse(text) {
            Ok(spec) => {
                let mut r = self.record(now, Event::Reload);
                r.policy = Some(spec.policy.clone());
                self.policy = spec.build();
                self.spec = spec;
                self.audit_write(&r);
                tracing::info!(policy = %self.spec.policy, "policy reloaded");
                Ok(())
            }
            Err(e) => {
                let mut r = self.record(now, Event::ReloadRejected);
                r.error = Some(e.to_string());
                self.audit_write(&r);
                tracing::warn!(error = %e, policy = %self.spec.policy, "new policy rejected; old one kept");
                Err(AgentError::Policy(e.to_string()))
            }
        }
    }

    /// Parses an XML view and ticks.
    pub fn tick_xml(&mut self, xml: &[u8], now: u64) -> Result<TickReport> {
        let c = view::parse_xml(xml)?;
        Ok(self.tick(&c, now))
    }

    /// One round: collect worker results, read the view, elect, plan (leader), start moves
    /// (auto), send aborts for timed-out migrations.
    pub fn tick(&mut self, cluster: &Cluster, now: u64) -> TickReport {
        let mut report = TickReport::default();
        self.drain(now, &mut report);
        self.probe_membership(cluster, now);
        let v = {
            let trusted = |n: &str| self.is_trusted(n, now);
            view::build(cluster, &trusted, now, self.vm_stale_s())
        };
        report.untrusted = v.untrusted.clone();
        self.observe(&v, now);
        self.metrics.imbalance = view::imbalance(&v.snapshot) as f32;

        let leader = {
            let trusted = |n: &str| self.is_trusted(n, now);
            coord::leader(&v.cluster, &trusted, self.cfg.leader_timeout_s)
        };
        let is_leader =
            leader.as_ref().is_some_and(|l| l.name == self.name) && self.cfg.mode != Mode::Off;
        report.leader = leader.map(|l| l.name);
        report.is_leader = is_leader;
        if is_leader != self.was_leader {
            let mut r = self.record(now, Event::Leader);
            r.outcome = Some(if is_leader { "gained" } else { "lost" }.to_string());
            self.audit_write(&r);
            if !is_leader && self.cfg.on_lost_lead == InflightAction::Abort {
                self.abort_all("lost the lead", now);
            }
            self.was_leader = is_leader;
        }
        self.metrics.leader = is_leader;
        self.metrics.leader_name = report.leader.clone().unwrap_or_default();

        for f in self.inflight.values_mut() {
            if f.abort_why.is_none() && now >= f.started + self.cfg.migration_timeout_s {
                f.abort_why = Some(format!("timeout after {} s", now.saturating_sub(f.started)));
            }
        }
        self.send_aborts(now);

        if is_leader && !self.stopping {
            self.plan_and_act(&v, now, &mut report);
        } else {
            self.metrics.planned = 0;
            self.last_recommended.clear();
        }
        self.last_view = v;
        self.metrics.inflight = self.inflight.len() as u32;
        self.refresh_recent(now);
        report
    }

    /// Datagrams for this host's metrics (metadata then value for each).
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        encode_datagrams(
            &self.identity,
            &self.metrics,
            self.cfg.metric_tmax_s,
            self.cfg.metric_dmax_s,
            true,
            self.max_udp_msg_len,
            self.reserve,
        )
    }

    /// Sends [`Agent::datagrams`] to `sink`.
    pub fn publish(&self, sink: &mut dyn MetricSink) {
        for d in self.datagrams() {
            sink.send(&d);
        }
    }

    /// Stops: no new migrations; in-flight ones are aborted or left to finish per `action`;
    /// waits up to `wait` for the workers, and returns the outcomes collected. The metrics
    /// then advertise mode `off`, so publishing them once more hands the lead over at once.
    pub fn shutdown(
        &mut self,
        now: u64,
        action: InflightAction,
        wait: Duration,
    ) -> Vec<(String, Outcome)> {
        self.stopping = true;
        if action == InflightAction::Abort {
            self.abort_all("agent stopping", now);
        }
        let end = Instant::now() + wait;
        let mut report = TickReport::default();
        while !self.inflight.is_empty() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(msg) => self.handle(msg, now, &mut report),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for f in self.inflight.values() {
            tracing::warn!(vm = %f.req.vm, "migration still running at exit");
        }
        self.cancel.store(true, Ordering::SeqCst);
        self.metrics.mode = Mode::Off.as_str().to_string();
        self.metrics.leader = false;
        self.metrics.inflight = self.inflight.len() as u32;
        report.finished
    }

    /// Blocks up to `wait` for the next worker result and handles it (tests and the demo use
    /// it instead of sleeping). Returns whether a result arrived.
    pub fn wait_worker(&mut self, now: u64, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(msg) => {
                let mut report = TickReport::default();
                self.handle(msg, now, &mut report);
                true
            }
            Err(_) => false,
        }
    }

    fn vm_stale_s(&self) -> u64 {
        // Two VM metric periods (tmax 60) plus slack: older reports belong to a VM that left.
        self.cfg.leader_timeout_s.max(90)
    }

    fn is_trusted(&self, host: &str, _now: u64) -> bool {
        if !self.cfg.trusted_hosts.is_empty() {
            return self.cfg.trusted_hosts.iter().any(|h| h == host);
        }
        // The last probe result counts until a newer one arrives (re-probed after the TTL).
        self.membership.get(host).is_some_and(|(ok, _)| *ok)
    }

    /// With no trusted list, hosts whose hypervisor answers are members; probes run on worker
    /// threads (they block) and count from the next tick.
    fn probe_membership(&mut self, cluster: &Cluster, now: u64) {
        if !self.cfg.trusted_hosts.is_empty() || self.stopping {
            return;
        }
        for h in &cluster.hosts {
            let fresh = self
                .membership
                .get(&h.name)
                .is_some_and(|(_, at)| now < at + MEMBERSHIP_TTL_S);
            if fresh || self.probing.contains(&h.name) || h.name.is_empty() {
                continue;
            }
            // Bounded: a view of thousands of hosts (or a forger inventing names) must not
            // start thousands of blocking probes at once; the rest wait for later ticks.
            if self.probing.len() >= MAX_PROBES {
                break;
            }
            self.probing.insert(h.name.clone());
            let addr = HostAddr {
                name: h.name.clone(),
                ip: h.ip.clone(),
            };
            let (exec, tx) = (self.exec.clone(), self.tx.clone());
            std::thread::spawn(move || {
                let ok = exec.reachable(&addr);
                let _ = tx.send(WorkerMsg::Reachable(addr.name, ok));
            });
        }
    }

    fn drain(&mut self, now: u64, report: &mut TickReport) {
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, now, report);
        }
    }

    fn handle(&mut self, msg: WorkerMsg, now: u64, report: &mut TickReport) {
        match msg {
            WorkerMsg::Reachable(host, ok) => {
                self.probing.remove(&host);
                if !ok {
                    tracing::info!(host = %host, "hypervisor unreachable: not a member");
                }
                self.membership.insert(host, (ok, now));
            }
            WorkerMsg::Finished(id, outcome) => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                let vm = f.req.vm.clone();
                self.finish(f, &outcome, now);
                report.finished.push((vm, outcome));
            }
        }
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
        self.audit_write(&r);
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
                self.forget_own(&f.mv.vm, f.started);
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
                    self.forget_own(&f.mv.vm, f.started);
                }
            }
        }
    }

    /// A move that did not happen is no longer advertised (its budget use stays counted).
    fn forget_own(&mut self, vm: &str, start: u64) {
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
    /// the view (a VM reported by a new host).
    fn observe(&mut self, v: &View, now: u64) {
        let trusted = |n: &str| self.is_trusted(n, now);
        let advertised = coord::advertised_moves(&v.cluster, &trusted);
        for m in advertised {
            if m.start + self.cfg.recent_moves_window_s <= now || m.start > now + 60 {
                continue;
            }
            if self.known_moves.insert((m.vm.clone(), m.start)) {
                self.budget_starts.push((m.start, m.vm.clone()));
                self.history.record(m);
            }
        }
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
        // Observed gains that are due.
        let due: Vec<PendingObservation> = {
            let (due, later): (Vec<_>, Vec<_>) =
                self.pending_obs.drain(..).partition(|p| p.due <= now);
            self.pending_obs = later;
            due
        };
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
            self.audit_write(&r);
        }
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
        });
        for k in plan.note_keys() {
            self.history.reported.insert(k);
        }
        self.metrics.last_decision = u32::try_from(now).unwrap_or(u32::MAX);
        self.metrics.planned = plan.moves.len() as u32;
        let imbalance_before = view::imbalance(&v.snapshot);
        let mut recommended = BTreeSet::new();
        let mut skipped = BTreeSet::new();
        if !plan.moves.is_empty() {
            tracing::info!(mode = self.cfg.mode.as_str(), plan = %plan.explain().trim_end(), "plan");
        }
        for mv in &plan.moves {
            let key = (mv.vm.clone(), mv.from.clone(), mv.to.clone());
            let gate = self.gate(mv, v, now);
            if self.cfg.mode == Mode::Recommend {
                if !self.last_recommended.contains(&key) {
                    let mut r = self.move_record(now, Event::Recommend, mv);
                    r.outcome = Some(gate.clone().unwrap_or_else(|| "would_start".into()));
                    self.audit_write(&r);
                }
                recommended.insert(key);
                report.recommended.push(mv.clone());
                continue;
            }
            if let Some(g) = gate {
                let skey = (mv.vm.clone(), mv.to.clone(), g.clone());
                if !self.last_skipped.contains(&skey) {
                    let mut r = self.move_record(now, Event::Skipped, mv);
                    r.outcome = Some(g.clone());
                    self.audit_write(&r);
                }
                skipped.insert(skey);
                report.skipped.push((mv.clone(), g));
                continue;
            }
            self.start(mv, v, now, imbalance_before);
            report.started.push(mv.clone());
        }
        self.last_recommended = recommended;
        self.last_skipped = skipped;
        report.plan = Some(plan);
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
        if self.budget_starts.len() >= self.cfg.budget_migrations as usize {
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
        let mut r = self.move_record(now, Event::Start, mv);
        r.id = Some(id);
        r.policy = Some(self.spec.policy.clone());
        self.audit_write(&r);
        self.inflight.insert(
            id,
            Inflight {
                req: req.clone(),
                mv: mv.clone(),
                started: now,
                abort_why: None,
                abort_sent_at: None,
                abort_running: Arc::default(),
                imbalance_before,
            },
        );
        let (exec, tx, cancel) = (self.exec.clone(), self.tx.clone(), self.cancel.clone());
        let (retry, attempts) = (self.verify_retry, self.verify_attempts);
        std::thread::spawn(move || {
            let outcome = run_migration(exec.as_ref(), &req, retry, attempts, &cancel);
            let _ = tx.send(WorkerMsg::Finished(req.id, outcome));
        });
    }

    fn abort_all(&mut self, why: &str, now: u64) {
        for f in self.inflight.values_mut() {
            if f.abort_why.is_none() {
                f.abort_why = Some(why.to_string());
            }
        }
        self.send_aborts(now);
    }

    /// Sends the aborts decided, each on its own thread (abort blocks too), and sends them
    /// again every [`ABORT_RETRY_S`] until the job ends: an abort can be lost (libvirtd
    /// restarting) or refused, and a job left running would hold the VM and a slot forever.
    fn send_aborts(&mut self, now: u64) {
        for f in self.inflight.values_mut() {
            let due = f
                .abort_sent_at
                .is_none_or(|t| now >= t.saturating_add(ABORT_RETRY_S));
            if f.abort_why.is_none() || !due || f.abort_running.load(Ordering::SeqCst) {
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
            f.abort_running.store(true, Ordering::SeqCst);
            let (exec, req, running) = (self.exec.clone(), f.req.clone(), f.abort_running.clone());
            std::thread::spawn(move || {
                if let Err(e) = exec.abort(&req) {
                    tracing::warn!(vm = %req.vm, error = %e, "abort failed");
                }
                running.store(false, Ordering::SeqCst);
            });
        }
    }

    fn refresh_recent(&mut self, now: u64) {
        let window = self.cfg.recent_moves_window_s;
        self.own_moves.retain(|m| m.start + window > now);
        self.metrics.recent_moves = coord::encode_moves(&self.own_moves);
    }

    fn record(&self, now: u64, event: Event) -> Record {
        let mut r = Record::new(now, &self.name, event, self.cfg.mode.as_str());
        r.policy = Some(self.spec.policy.clone());
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

    fn audit_write(&self, r: &Record) {
        if let Err(e) = self.audit.write(r) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Simulated workers poll this and return; libvirt calls finish on their own.
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// A worker's whole job: pre-checks against the hypervisor, the migration, verification.
fn run_migration(
    exec: &dyn Executor,
    req: &MigrationRequest,
    retry: Duration,
    attempts: u32,
    cancel: &AtomicBool,
) -> Outcome {
    // The view said the VM is on the source; the hypervisor must agree right now, or another
    // leader (or a human) got there first.
    match exec.locate(&req.vm, &req.from) {
        Ok(Presence::Running) => {}
        Ok(p) => return Outcome::Refused(format!("{} is {p:?} on {}", req.vm, req.from.name)),
        Err(e) => return Outcome::Refused(e.to_string()),
    }
    match exec.locate(&req.vm, &req.to) {
        Ok(Presence::Absent) => {}
        Ok(p) => {
            return Outcome::Refused(format!("{} is already {p:?} on {}", req.vm, req.to.name))
        }
        // Counts against the destination (it may get excluded), unlike a source-side refusal.
        Err(e) => return Outcome::Failed(format!("destination before start: {e}")),
    }
    let result = exec.migrate(req);
    if let Err(e @ AgentError::Refused { .. }) = &result {
        // Not started (another job holds the domain): whatever happens to the VM is not ours.
        return Outcome::Refused(e.to_string());
    }
    // Verification: running on the destination and gone from the source. After a lost
    // connection (libvirtd restart) the answer may take a few tries.
    let mut last_err = String::new();
    for i in 0..attempts {
        if i > 0 {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(retry);
        }
        let dst = exec.locate(&req.vm, &req.to);
        let src = exec.locate(&req.vm, &req.from);
        match (&result, dst, src) {
            // The hypervisor shows the move done. Also after an abort, on the first look: the
            // migration completed before the abort took (a job holds the domain, so no other
            // migration of it ran meanwhile). Reporting "aborted, on the source" there would
            // be an audit line that contradicts the hypervisor.
            (r, Ok(Presence::Running), Ok(Presence::Absent))
                if i == 0 || !matches!(r, Err(AgentError::Aborted { .. })) =>
            {
                return Outcome::Done {
                    note: result
                        .as_ref()
                        .err()
                        .map(|e| format!("{e}; the hypervisor shows the migration completed")),
                };
            }
            // Our job was cancelled and the VM is on its source: aborted, as intended.
            (
                Err(e @ AgentError::Aborted { .. }),
                _,
                Ok(Presence::Running | Presence::NotRunning),
            ) => {
                return Outcome::Aborted(e.to_string());
            }
            (Err(e), Ok(Presence::Absent), Ok(Presence::Running | Presence::NotRunning)) => {
                return match e {
                    AgentError::Aborted { .. } => Outcome::Aborted(e.to_string()),
                    _ => Outcome::Failed(e.to_string()),
                };
            }
            // Destination unreachable or gone (it disappeared): the VM being on the source is
            // what counts.
            (Err(e), Err(_), Ok(Presence::Running)) => {
                return match e {
                    AgentError::Aborted { .. } => Outcome::Aborted(e.to_string()),
                    _ => Outcome::Failed(format!("{e} (destination unreachable afterwards)")),
                };
            }
            (_, d, s) => {
                last_err = format!(
                    "verification: destination {:?}, source {:?}{}",
                    d.map_err(|e| e.to_string()),
                    s.map_err(|e| e.to_string()),
                    result
                        .as_ref()
                        .err()
                        .map(|e| format!(", migration: {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Outcome::Unknown(last_err)
}
