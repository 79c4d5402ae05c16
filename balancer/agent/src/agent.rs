//! The agent's shell around [`AgentCore`]: it feeds the core views and the hypervisor's
//! replies, runs the core's hypervisor actions on worker threads through an [`Executor`] (they
//! block), and writes the audit records; every decision is the core's.
//!
//! Time is an input (`now`, epoch or simulated seconds) here too: the shell reads no clock but
//! its own waits (`wait_worker`, `shutdown`, the pause between verification retries).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::planner::History;
use balancer::policy::{Policy, PolicySpec};
use ganglia_wire::model::Cluster;

use crate::audit::{AuditLog, Record};
use crate::config::{AgentConfig, InflightAction, Mode};
use crate::core::{Action, AgentCore, CallError, Located};
use crate::error::{AgentError, Result};
use crate::executor::{Executor, MigrationRequest};
use crate::metrics::{encode_datagrams, AgentMetrics, Identity, MetricSink};
use crate::view;

pub use crate::core::{Outcome, TickReport};

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
    /// A caller's own policy, deciding instead of the one the file names; the file still
    /// supplies the core's cooldown (see `AgentCore::with_policy`). Default `None`.
    pub policy: Option<Box<dyn Policy>>,
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
    /// `name` is a guess (the hostname, nothing configured): the view may correct it, and a
    /// state file written under the corrected name is taken over. Default false.
    pub name_guessed: bool,
    /// This machine's sending addresses (how the view recognises its host). Default empty.
    pub local_ips: Vec<String>,
}

impl AgentOptions {
    /// Options with defaults for everything but the essentials.
    pub fn new(name: &str, config: AgentConfig, executor: Arc<dyn Executor>) -> AgentOptions {
        AgentOptions {
            name: name.to_string(),
            identity: Identity::new(name, None, None),
            config,
            policy_text: None,
            policy: None,
            executor,
            audit: AuditLog::none(),
            verify_retry: Duration::from_millis(500),
            verify_attempts: 10,
            max_udp_msg_len: 1472,
            reserve: 0,
            name_guessed: false,
            local_ips: Vec::new(),
        }
    }
}

/// Resolves a policy name or file path into a validated spec that may run on a real cluster
/// (a simulation-only one, such as `check_memory = false`, is refused).
pub fn load_policy(policy: &str) -> Result<PolicySpec> {
    let path = std::path::Path::new(policy);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            path: policy.to_string(),
            source,
        })?;
        PolicySpec::parse_for_cluster(&text)
            .map_err(|e| AgentError::Policy(format!("{policy}: {e}")))
    } else {
        PolicySpec::builtin_for_cluster(policy).map_err(|e| AgentError::Policy(e.to_string()))
    }
}

/// A worker's report: the hypervisor's answer to one action.
enum WorkerMsg {
    Probed(String, bool),
    Prechecked(u64, std::result::Result<(), Outcome>),
    Migrated(u64, std::result::Result<(), CallError>),
    Located(u64, Located, Located),
    Aborted(u64, std::result::Result<(), String>),
}

/// The balancer agent of one host.
pub struct Agent {
    core: AgentCore,
    identity: Identity,
    exec: Arc<dyn Executor>,
    audit: AuditLog,
    verify_retry: Duration,
    max_udp_msg_len: usize,
    reserve: usize,
    /// `config.state_path()`: where `Action::Persist` writes.
    state_path: Option<PathBuf>,
    tx: Sender<WorkerMsg>,
    rx: Receiver<WorkerMsg>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("core", &self.core)
            .field("executor", &self.exec.name())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Builds an agent; fails when the policy cannot be loaded, the config cannot run, or
    /// the state file (`config.state_path()`) exists but cannot be used. When it exists, the
    /// agent resumes from it and starts reconciling the migrations it lists at once.
    pub fn new(opts: AgentOptions) -> Result<Agent> {
        let spec = match &opts.policy_text {
            Some(text) => PolicySpec::parse_for_cluster(text)
                .map_err(|e| AgentError::Policy(e.to_string()))?,
            None => load_policy(&opts.config.policy)?,
        };
        if !opts.config.uri_template.contains("{host}") && opts.config.host_uris.is_empty() {
            tracing::warn!(uri = %opts.config.uri_template,
                "uri_template has no {{host}}: every host maps to the same URI (tests only)");
        }
        let state_path = opts.config.state_path();
        let saved = match &state_path {
            // A guessed name may have been corrected from the view last time: the file's.
            Some(p) => crate::state::load(p, (!opts.name_guessed).then_some(opts.name.as_str()))?,
            None => None,
        };
        let name = match &saved {
            Some(st) if opts.name_guessed => st.host.clone(),
            _ => opts.name.clone(),
        };
        let policy = opts.policy.unwrap_or_else(|| spec.build());
        let core = match saved {
            Some(st) => {
                tracing::info!(path = %state_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    inflight = st.inflight.len(), budget_used = st.budget_starts.len(),
                    "resuming from the state file");
                AgentCore::restore_with_policy(
                    &name,
                    opts.config,
                    spec,
                    policy,
                    opts.verify_attempts,
                    st,
                )?
            }
            None => AgentCore::with_policy(&name, opts.config, spec, policy, opts.verify_attempts)?,
        };
        let mut core = core;
        core.set_name_hints(opts.name_guessed, opts.local_ips);
        let (tx, rx) = channel();
        let mut agent = Agent {
            core,
            identity: opts.identity,
            exec: opts.executor,
            audit: opts.audit,
            verify_retry: opts.verify_retry,
            max_udp_msg_len: opts.max_udp_msg_len,
            reserve: opts.reserve,
            state_path,
            tx,
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        agent.run_actions();
        Ok(agent)
    }

    /// This host's NAME.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.core.config().mode
    }

    /// Switches mode (SIGHUP). `auto` is refused without an inventory (`trusted_hosts`), or
    /// with an executor that cannot migrate; the mode in force is then kept.
    pub fn set_mode(&mut self, mode: Mode) -> Result<()> {
        self.core.set_mode(mode)
    }

    /// The config in force.
    pub fn config(&self) -> &AgentConfig {
        self.core.config()
    }

    /// The policy in force.
    pub fn policy(&self) -> &PolicySpec {
        self.core.policy()
    }

    /// The metrics as they would be published now.
    pub fn metrics(&self) -> &AgentMetrics {
        self.core.metrics()
    }

    /// Migrations running now.
    pub fn inflight(&self) -> usize {
        self.core.inflight()
    }

    /// Moves known to this agent (own, advertised by others, observed in the view).
    pub fn history(&self) -> &History {
        self.core.history()
    }

    /// The decisions, for inspection.
    pub fn core(&self) -> &AgentCore {
        &self.core
    }

    /// Replaces the policy with `text` (a policy TOML file). A bad text is rejected with its
    /// error, audited, and the old policy stays in force.
    pub fn reload_policy(&mut self, text: &str, now: u64) -> Result<()> {
        let r = self.core.reload_policy(text, now);
        self.run_actions();
        r
    }

    /// Parses an XML view and ticks.
    pub fn tick_xml(&mut self, xml: &[u8], now: u64) -> Result<TickReport> {
        let c = view::parse_xml(xml)?;
        Ok(self.tick(&c, now))
    }

    /// One round: collect worker results, then the core's round on the view (elect, plan,
    /// start, abort), and run what it asks for. Never blocks on the hypervisor.
    pub fn tick(&mut self, cluster: &Cluster, now: u64) -> TickReport {
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, now);
        }
        let report = self.core.handle_view(cluster, now);
        self.run_actions();
        report
    }

    /// A follower's round on a coordination view (see
    /// [`AgentCore::handle_coordination_view`]).
    pub fn tick_coordination(&mut self, cluster: &Cluster, now: u64) -> TickReport {
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, now);
        }
        let report = self.core.handle_coordination_view(cluster, now);
        self.run_actions();
        report
    }

    /// Does the next round need the whole view? (See [`AgentCore::wants_full_view`].)
    pub fn wants_full_view(&self) -> bool {
        self.core.wants_full_view()
    }

    /// Datagrams for this host's metrics (metadata then value for each).
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        let cfg = self.core.config();
        encode_datagrams(
            &self.identity,
            self.core.metrics(),
            cfg.metric_tmax_s,
            cfg.metric_dmax_s,
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
        let mut finished = self.core.take_finished();
        self.core.handle_stop(now, action);
        self.run_actions();
        let end = Instant::now() + wait;
        while self.core.inflight() > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    self.handle(msg, now);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
            self.core.handle_timeout(now);
            self.run_actions();
        }
        finished.append(&mut self.core.take_finished());
        self.cancel.store(true, Ordering::SeqCst);
        self.core.stopped();
        finished
    }

    /// Blocks up to `wait` for worker results and handles them, until one settles something
    /// (a migration's outcome, a probe's or an abort's answer); intermediate steps (a
    /// pre-check passed, a migration call returned and now verified) are followed within the
    /// same wait. Tests and the demo use it instead of sleeping. Returns whether something
    /// settled.
    pub fn wait_worker(&mut self, now: u64, wait: Duration) -> bool {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    let settled = self.handle(msg, now);
                    self.core.handle_timeout(now);
                    self.run_actions();
                    if settled {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Feeds a worker's answer to the core; returns whether it settled something.
    fn handle(&mut self, msg: WorkerMsg, now: u64) -> bool {
        match msg {
            WorkerMsg::Probed(host, ok) => {
                self.core.handle_probed(now, &host, ok);
                true
            }
            WorkerMsg::Prechecked(id, verdict) => {
                let ended = verdict.is_err();
                self.core.handle_prechecked(now, id, verdict);
                ended
            }
            WorkerMsg::Migrated(id, result) => {
                let before = self.core.inflight();
                self.core.handle_migrated(now, id, result);
                self.core.inflight() < before
            }
            WorkerMsg::Located(id, dst, src) => {
                let before = self.core.inflight();
                self.core.handle_located(now, id, dst, src);
                self.core.inflight() < before
            }
            WorkerMsg::Aborted(id, result) => {
                self.core.handle_aborted(now, id, result);
                true
            }
        }
    }

    /// Runs what the core asked for: audit records here, hypervisor calls each on a thread of
    /// its own (they block; the core never waits for them).
    fn run_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Audit(r) => self.audit_write(&r),
                Action::Persist(st) => {
                    if let Some(path) = &self.state_path {
                        if let Err(e) = crate::state::save(path, &st) {
                            tracing::error!(error = %e, "state file not written");
                        }
                    }
                }
                Action::Probe(addr) => {
                    let (exec, tx) = (self.exec.clone(), self.tx.clone());
                    std::thread::spawn(move || {
                        let ok = exec.reachable(&addr);
                        let _ = tx.send(WorkerMsg::Probed(addr.name, ok));
                    });
                }
                Action::Migrate(req) => {
                    let (exec, tx) = (self.exec.clone(), self.tx.clone());
                    std::thread::spawn(move || migrate(exec.as_ref(), &req, &tx));
                }
                Action::Locate { req, retry } => {
                    let (exec, tx, cancel) =
                        (self.exec.clone(), self.tx.clone(), self.cancel.clone());
                    let pause = if retry {
                        self.verify_retry
                    } else {
                        Duration::ZERO
                    };
                    std::thread::spawn(move || {
                        if !pause.is_zero() {
                            if cancel.load(Ordering::SeqCst) {
                                return;
                            }
                            std::thread::sleep(pause);
                        }
                        let dst = exec.locate(&req.vm, &req.to).map_err(|e| e.to_string());
                        let src = exec.locate(&req.vm, &req.from).map_err(|e| e.to_string());
                        let _ = tx.send(WorkerMsg::Located(req.id, dst, src));
                    });
                }
                Action::Abort(req) => {
                    let (exec, tx) = (self.exec.clone(), self.tx.clone());
                    std::thread::spawn(move || {
                        let r = exec.abort(&req).map_err(|e| e.to_string());
                        let _ = tx.send(WorkerMsg::Aborted(req.id, r));
                    });
                }
            }
        }
    }

    fn audit_write(&self, r: &Record) {
        if let Err(e) = self.audit.write(r) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Verification retries poll this and return; libvirt calls finish on their own.
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// A start's whole worker job: the pre-check right before the call (the VM running on the
/// source with no job, absent from the destination), judged by the core's own functions, then
/// the migration when it passed. Each step is reported as it ends.
fn migrate(exec: &dyn Executor, req: &MigrationRequest, tx: &Sender<WorkerMsg>) {
    let verdict = crate::core::precheck_source(
        req,
        exec.locate(&req.vm, &req.from).map_err(|e| e.to_string()),
    )
    .and_then(|()| {
        crate::core::precheck_destination(
            req,
            exec.locate(&req.vm, &req.to).map_err(|e| e.to_string()),
        )
    });
    let go = verdict.is_ok();
    let _ = tx.send(WorkerMsg::Prechecked(req.id, verdict));
    if go {
        let result = exec.migrate(req).map_err(|e| CallError::from(&e));
        let _ = tx.send(WorkerMsg::Migrated(req.id, result));
    }
}
