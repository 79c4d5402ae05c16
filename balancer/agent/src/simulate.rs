//! The agent in the simulator: one [`AgentCore`] per simulated host drives `balancer`'s
//! simulation engine (a [`Driver`]), so a simulation shows what the agent would do, its gates
//! included (budget per window, leadership and quorum, the hypervisor pre-check, settling of
//! finished moves, cooldowns, parallelism, failure handling), not only what the policy plans.
//!
//! Each tick a core is fed the view its side of the cluster publishes (the simulator's
//! virtual-node metrics, a moved VM's ageing copy on its old host, and every agent's
//! `balancer_mode` and `balancer_recent_moves`, as the real agents publish them), at the
//! simulated second. Its actions are answered at once from the simulated hypervisor: a
//! pre-check reads where the VM is, a migration is started by the engine (which models its
//! duration), its completion is seen on a later tick and verified by locating the VM; an abort
//! cancels it in the engine before the tick's starts. Nothing is persisted: the simulator does
//! not crash.
//!
//! Only the agents that can act are fed: per side, the leader the view elects and the next in
//! line (a follower only reads, so its state matters once it leads), any agent that led last
//! tick (to hear it no longer does), and any agent with a migration of its own in flight.
//! Feeding all of them gives the same moves at N times the cost
//! ([`AgentSim::feed_every_agent`]); what a follower fed late lacks is load history, so a third
//! host taking over at once starts with cold trends, as a restarted agent does.

use std::collections::{BTreeMap, BTreeSet};

use balancer::plan::Move;
use balancer::policy::PolicySpec;
use balancer::sim::{Driver, GateTally, Report, Scenario, Started, World};
use ganglia_wire::model::{Cluster, Metric};
use gmond_metrics::vmetrics::VM_DMAX;

use crate::audit::{Event, Record};
use crate::config::{AgentConfig, Mode};
use crate::coord::{self, MODE_METRIC, MOVES_METRIC};
use crate::core::{
    precheck_destination, precheck_source, Action, AgentCore, CallError, Located, TickReport,
};
use crate::error::{AgentError, Result};
use crate::executor::{HostAddr, MigrationRequest, Presence};

/// Verification answers a core asks for before an outcome is `unknown`: the binary's
/// (`AgentOptions::new`); here a retry waits a tick instead of 500 ms.
const VERIFY_ATTEMPTS: u32 = 10;

/// A VM that exists only in the view: someone on the segment publishes its metrics (a forger,
/// or a stale report), the hypervisor has no such domain.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgedVm {
    /// VM name.
    pub vm: String,
    /// The host whose view entry carries it.
    pub host: String,
    /// vCPUs claimed.
    pub vcpus: u32,
    /// CPU use claimed, percent of its vCPUs.
    pub util: f64,
}

/// A migration the hypervisor is running for a core: (domain index, destination index,
/// source index, completion in simulated ms).
type Running = (usize, usize, usize, u64);

/// A VM that left a host by migration: the old host's gmond keeps its last metrics, unrefreshed,
/// until their DMAX (`gmond_metrics::vmetrics::VM_DMAX`).
#[derive(Debug, Clone)]
struct Departed {
    vm: String,
    from: usize,
    end_s: u64,
}

/// The agents of a simulated cluster, as a [`Driver`] of `balancer`'s engine.
pub struct AgentSim {
    cores: Vec<AgentCore>,
    /// Per core: migration id -> the domain and destination the engine started.
    running: Vec<BTreeMap<u64, Running>>,
    /// This tick's moves handed to the engine: (core, migration id), in the order returned.
    handed: Vec<(usize, u64)>,
    /// Locate retries, answered on the next tick (the shell waits before asking again).
    retries: Vec<(usize, MigrationRequest)>,
    /// Aborts for the engine to carry out this tick: (VM, source).
    abort_now: Vec<(String, String)>,
    /// Migrations an abort was sent for: (core, id). One that ends on its source was cancelled.
    aborting: BTreeSet<(usize, u64)>,
    forged: Vec<ForgedVm>,
    /// VMs whose old host still publishes their last metrics (when `stale_copies`).
    departed: Vec<Departed>,
    stale_copies: bool,
    /// Host name -> index of its core (and of its host in the simulated cluster).
    index: BTreeMap<String, usize>,
    /// The inventory and liveness bound the agents elect with.
    trusted: BTreeSet<String>,
    leader_timeout_s: u64,
    /// Followers fed per side after the leader (`usize::MAX`: every agent).
    standbys: usize,
    tally: GateTally,
    notes: u64,
    keep_audit: bool,
    audit: Vec<Record>,
    /// Explain every leader's round (`explain`), drained by the engine each tick.
    explain: bool,
    explained: Vec<String>,
}

impl std::fmt::Debug for AgentSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSim")
            .field("cores", &self.cores.len())
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl AgentSim {
    /// Agents for every host of `sc`, in `auto`, deciding with `spec` (plus the scenario's own
    /// rules) under `cfg`'s gates; an empty `trusted_hosts` becomes every host of the
    /// scenario. A policy the agent refuses on a real cluster (simulation-only) is refused
    /// here too: the policy alone can still be simulated.
    pub fn new(sc: &Scenario, spec: &PolicySpec, mut cfg: AgentConfig) -> Result<AgentSim> {
        let spec = balancer::sim::with_scenario_rules(sc, spec)
            .for_cluster()
            .map_err(|e| {
                AgentError::Policy(format!(
                    "{e}; the agent refuses it, so only the policy alone can be simulated"
                ))
            })?;
        cfg.mode = Mode::Auto;
        if cfg.trusted_hosts.is_empty() {
            cfg.trusted_hosts = sc.hosts.iter().map(|h| h.name.clone()).collect();
        }
        let cores = sc
            .hosts
            .iter()
            .map(|h| {
                let mut c = AgentCore::new(&h.name, cfg.clone(), spec.clone(), VERIFY_ATTEMPTS)?;
                // Simulated seconds count from the scenario's start; windows read the wall clock.
                c.set_wall_clock_offset(sc.start_epoch);
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AgentSim {
            index: sc
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.name.clone(), i))
                .collect(),
            trusted: cfg.trusted_hosts.iter().cloned().collect(),
            leader_timeout_s: cfg.leader_timeout_s,
            standbys: 1,
            running: vec![BTreeMap::new(); cores.len()],
            cores,
            handed: Vec::new(),
            retries: Vec::new(),
            abort_now: Vec::new(),
            aborting: BTreeSet::new(),
            forged: Vec::new(),
            departed: Vec::new(),
            stale_copies: true,
            tally: GateTally {
                driver: "agent".into(),
                ..Default::default()
            },
            notes: 0,
            keep_audit: false,
            explain: false,
            explained: Vec::new(),
            audit: Vec::new(),
        })
    }

    /// Publishes a VM the hypervisor does not have in every view (a forger's).
    pub fn forge(mut self, vm: ForgedVm) -> AgentSim {
        self.forged.push(vm);
        self
    }

    /// Feeds every agent every tick, not only the leader, the next in line and agents with a
    /// migration in flight: the same decisions at the cost of one view read per host.
    pub fn feed_every_agent(mut self, all: bool) -> AgentSim {
        self.standbys = if all { usize::MAX } else { 1 };
        self
    }

    /// Whether a VM's old host keeps publishing its last metrics after a migration, ageing,
    /// until their DMAX, as gmond does for metrics no longer refreshed (default): the agent's
    /// view shows the VM in flight, then on its new host with a stale copy, which its settling
    /// of finished moves is for. Off: the old host stops reporting the VM at once.
    pub fn stale_copies(mut self, on: bool) -> AgentSim {
        self.stale_copies = on;
        self
    }

    /// Keeps every audit record of every core ([`AgentSim::audit`]); off by default, as a day
    /// of a large cluster writes many.
    pub fn keep_audit(mut self, keep: bool) -> AgentSim {
        self.keep_audit = keep;
        self
    }

    /// Explains every round a leader plans: the plan as `plan --explain` prints it, then the
    /// moves the agent's own gates held back (budget, pre-check, cooldowns, ...). The engine
    /// asks for it with [`balancer::sim::SimOptions::explain`].
    pub fn explain(mut self, on: bool) -> AgentSim {
        self.explain = on;
        for c in &mut self.cores {
            c.set_verbose_plans(on);
        }
        self
    }

    /// The audit records kept so far, in order.
    pub fn audit(&self) -> &[Record] {
        &self.audit
    }

    /// What the gates did so far.
    pub fn tally(&self) -> &GateTally {
        &self.tally
    }

    /// The view one side of the cluster publishes now, with each live agent's metrics.
    fn view(&self, w: &World<'_>, side: Option<&[bool]>) -> Cluster {
        let mut v = w.view(side);
        self.add_stale_copies(w, &mut v);
        for host in &mut v.hosts {
            let Some(&i) = self.index.get(&host.name) else {
                continue;
            };
            if let Some(f) = w.cluster.hosts().get(i) {
                if !f.up {
                    continue;
                }
            }
            let m = self.cores[i].metrics();
            host.metrics.push(text_metric(MODE_METRIC, &m.mode));
            if !m.recent_moves.is_empty() {
                host.metrics
                    .push(text_metric(MOVES_METRIC, &m.recent_moves));
            }
            for f in self.forged.iter().filter(|f| f.host == host.name) {
                let num = |n: &str, v: String| Metric {
                    name: format!("{}.{n}", f.vm),
                    val: v,
                    ty: "float".into(),
                    tmax: 60,
                    ..Default::default()
                };
                host.metrics.push(num("vcpu_num", f.vcpus.to_string()));
                host.metrics.push(num("vcpu_util", f.util.to_string()));
                host.metrics.push(num("vmem_total", "1048576".into()));
            }
        }
        v
    }

    /// Each departed VM's last metrics on its old host, aged since the migration ended (the
    /// values are the new host's now: the load does not depend on where the VM runs).
    fn add_stale_copies(&self, w: &World<'_>, v: &mut Cluster) {
        if !self.stale_copies {
            return;
        }
        for dep in &self.departed {
            let age = w.t_s.saturating_sub(dep.end_s);
            let back = w
                .cluster
                .domain_index(&dep.vm)
                .is_none_or(|d| w.cluster.domains()[d].host == dep.from);
            let Some(from) = w.cluster.hosts().get(dep.from) else {
                continue;
            };
            if back || age >= u64::from(VM_DMAX) {
                continue;
            }
            let prefix = format!("{}.", dep.vm);
            let copy: Vec<Metric> = v
                .hosts
                .iter()
                .filter(|h| h.name != from.name)
                .flat_map(|h| h.metrics.iter())
                .filter(|m| m.name.starts_with(&prefix))
                .map(|m| Metric {
                    tn: age,
                    ..m.clone()
                })
                .collect();
            if let Some(h) = v.hosts.iter_mut().find(|h| h.name == from.name) {
                h.metrics.extend(copy);
            }
        }
    }

    /// The agents of `view`'s side that may act this tick: the leader it elects and the next
    /// [`AgentSim::standbys`] in line (as [`coord::candidates`] orders them).
    fn may_act(&self, view: &Cluster) -> BTreeSet<String> {
        let trusted = |n: &str| self.trusted.contains(n);
        coord::candidates(view, &trusted, self.leader_timeout_s)
            .into_iter()
            .take(self.standbys.saturating_add(1))
            .map(|c| c.name)
            .collect()
    }

    /// Runs core `i`'s queued actions against the simulated hypervisor until none is left.
    /// Migrations that pass the pre-check are added to `out` (for the engine to start).
    fn run_actions(
        &mut self,
        i: usize,
        w: &World<'_>,
        report: Option<&TickReport>,
        claimed: &mut BTreeSet<String>,
        out: &mut Vec<Move>,
    ) {
        let now = w.t_s;
        while let Some(a) = self.cores[i].poll_action() {
            match a {
                Action::Audit(r) => self.count(*r),
                // Nothing survives a crash here: the simulator does not crash.
                Action::Persist(_) => {}
                Action::Probe(h) => {
                    let up = w
                        .cluster
                        .host_index(&h.name)
                        .is_some_and(|x| w.cluster.hosts()[x].up);
                    self.cores[i].handle_probed(now, &h.name, up);
                }
                Action::Migrate(req) => {
                    let mv = report
                        .and_then(|r| r.started.iter().find(|m| m.vm == req.vm))
                        .cloned();
                    let checked = precheck_source(&req, locate(w, &req.vm, &req.from, claimed))
                        .and_then(|()| {
                            precheck_destination(&req, locate(w, &req.vm, &req.to, claimed))
                        });
                    let pass = checked.is_ok();
                    self.cores[i].handle_prechecked(now, req.id, checked);
                    match (pass, mv) {
                        (true, Some(mv)) => {
                            claimed.insert(req.vm.clone());
                            self.handed.push((i, req.id));
                            out.push(mv);
                        }
                        (true, None) => {
                            // Cannot happen (a start comes from this round's plan); said, not
                            // assumed away.
                            self.cores[i].handle_migrated(
                                now,
                                req.id,
                                Err(CallError::Refused("no planned move for this start".into())),
                            );
                        }
                        (false, _) => {}
                    }
                }
                Action::Locate { req, retry } => {
                    if retry {
                        self.retries.push((i, req));
                    } else {
                        let dst = locate(w, &req.vm, &req.to, claimed);
                        let src = locate(w, &req.vm, &req.from, claimed);
                        self.cores[i].handle_located(now, req.id, dst, src);
                    }
                }
                Action::Abort(req) => {
                    // The engine cancels it before this tick's starts; whether the job ended
                    // the core learns from the migration call, as from libvirt.
                    self.tally.aborts += 1;
                    self.aborting.insert((i, req.id));
                    self.abort_now.push((req.vm.clone(), req.from.name.clone()));
                    self.cores[i].handle_aborted(now, req.id, Ok(()));
                }
            }
        }
    }

    /// Counts (and keeps, if asked) one audit record.
    fn count(&mut self, r: Record) {
        let t = &mut self.tally;
        match r.event {
            Event::Start => t.starts += 1,
            Event::Done => t.done += 1,
            Event::Failed | Event::Aborted | Event::Unknown => t.failed += 1,
            Event::Leader => t.leader_changes += 1,
            Event::Skipped => match r.outcome.as_deref() {
                Some("refused") => t.refused += 1,
                Some("budget") => t.budget_limited += 1,
                _ => {}
            },
            _ => {}
        }
        if self.keep_audit {
            self.audit.push(r);
        }
    }

    /// Migrations that ended in the hypervisor since the last tick: their calls return.
    fn settle(&mut self, w: &World<'_>, claimed: &mut BTreeSet<String>) {
        for i in 0..self.cores.len() {
            if !host_up(w, i) {
                // A dead agent hears nothing; the hypervisor's work goes on without it.
                continue;
            }
            let ended: Vec<(u64, Running)> = self.running[i]
                .iter()
                .filter(|(_, (d, ..))| {
                    w.cluster
                        .domains()
                        .get(*d)
                        .is_none_or(|dom| dom.migration.is_none())
                })
                .map(|(id, r)| (*id, *r))
                .collect();
            for (id, (d, dest, src, end_ms)) in ended {
                self.running[i].remove(&id);
                if self.stale_copies && w.cluster.domains().get(d).is_some_and(|x| x.host == dest) {
                    self.departed.push(Departed {
                        vm: w.cluster.domains()[d].name.clone(),
                        from: src,
                        end_s: end_ms / 1000,
                    });
                }
                let arrived = w
                    .cluster
                    .domains()
                    .get(d)
                    .is_some_and(|dom| dom.host == dest);
                let result = if arrived {
                    Ok(())
                } else if self.aborting.contains(&(i, id)) {
                    Err(CallError::Aborted(
                        "operation aborted: migration out job: canceled by client".into(),
                    ))
                } else {
                    Err(CallError::Other(
                        "migration job ended without completing".into(),
                    ))
                };
                self.aborting.remove(&(i, id));
                self.cores[i].handle_migrated(w.t_s, id, result);
                self.run_actions(i, w, None, claimed, &mut Vec::new());
            }
        }
        for (i, req) in std::mem::take(&mut self.retries) {
            if host_up(w, i) {
                let dst = locate(w, &req.vm, &req.to, claimed);
                let src = locate(w, &req.vm, &req.from, claimed);
                self.cores[i].handle_located(w.t_s, req.id, dst, src);
                self.run_actions(i, w, None, claimed, &mut Vec::new());
            }
        }
    }
}

impl Driver for AgentSim {
    fn decide(&mut self, w: &World<'_>) -> balancer::Result<Vec<Move>> {
        self.handed.clear();
        let dmax = u64::from(VM_DMAX);
        self.departed.retain(|d| d.end_s + dmax > w.t_s);
        let mut claimed = BTreeSet::new();
        self.settle(w, &mut claimed);
        let views = match &w.partition {
            None => (self.view(w, None), None),
            Some(half) => {
                let other: Vec<bool> = half.iter().map(|b| !b).collect();
                (
                    self.view(w, Some(half)),
                    Some((half.clone(), self.view(w, Some(&other)))),
                )
            }
        };
        let fed = {
            let mut fed = self.may_act(&views.0);
            if let Some((_, b)) = &views.1 {
                fed.extend(self.may_act(b));
            }
            fed
        };
        let mut out = Vec::new();
        for i in 0..self.cores.len() {
            let c = &self.cores[i];
            // An agent that led last tick must hear that it no longer does (it may abort).
            let may_act = fed.contains(c.name()) || c.inflight() > 0 || c.metrics().leader;
            if !host_up(w, i) || !may_act {
                continue;
            }
            let view = match &views {
                (_, Some((half, b))) if !half.get(i).copied().unwrap_or(false) => b,
                (a, _) => a,
            };
            let report = self.cores[i].handle_view(view, w.t_s);
            for (_, gate) in &report.skipped {
                *self.tally.skipped.entry(gate.clone()).or_default() += 1;
            }
            if report.no_quorum.is_some() {
                self.tally.no_quorum_rounds += 1;
            }
            if let Some(p) = &report.plan {
                self.notes += p.notes.len() as u64;
                if self.explain {
                    let mut text =
                        format!("agent {}: {}", self.cores[i].name(), p.explain_with(true));
                    for (mv, gate) in &report.skipped {
                        text.push_str(&format!(
                            "  held by the agent's {gate} gate: {} {} -> {}\n",
                            mv.vm, mv.from, mv.to
                        ));
                    }
                    self.explained.push(text);
                }
            }
            self.run_actions(i, w, Some(&report), &mut claimed, &mut out);
        }
        Ok(out)
    }

    fn aborts(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.abort_now)
    }

    fn started(&mut self, w: &World<'_>, results: &[(Move, Started)]) {
        let handed = std::mem::take(&mut self.handed);
        for ((i, id), (mv, st)) in handed.into_iter().zip(results) {
            match st {
                Started::Yes => {
                    let d = w.cluster.domain_index(&mv.vm);
                    let to = w.cluster.host_index(&mv.to);
                    if let (Some(d), Some(to)) = (d, to) {
                        let dom = &w.cluster.domains()[d];
                        let end_ms = dom.migration.map_or(w.t_ms, |m| m.end_ms);
                        self.running[i].insert(id, (d, to, dom.host, end_ms));
                    }
                }
                Started::Refused => {
                    self.cores[i].handle_migrated(
                        w.t_s,
                        id,
                        Err(CallError::Refused(
                            "the simulated hypervisor refused the migration".into(),
                        )),
                    );
                    self.run_actions(i, w, None, &mut BTreeSet::new(), &mut Vec::new());
                }
            }
        }
    }

    fn explanations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.explained)
    }

    fn finish(&mut self, report: &mut Report) {
        report.notes += self.notes;
        report.gates = Some(self.tally.clone());
    }
}

fn host_up(w: &World<'_>, i: usize) -> bool {
    w.cluster.hosts().get(i).is_some_and(|h| h.up)
}

/// Where `vm` stands on `host` per the simulated hypervisor; a VM another start of this tick
/// claimed already is busy on its source (that migration job holds it).
fn locate(w: &World<'_>, vm: &str, host: &HostAddr, claimed: &BTreeSet<String>) -> Located {
    let c = w.cluster;
    let h = c
        .host_index(&host.name)
        .ok_or_else(|| format!("{}: no such host", host.name))?;
    if !c.hosts()[h].up {
        return Err(format!("{}: host is down", host.name));
    }
    let Some(d) = c.domain_index(vm) else {
        return Ok(Presence::Absent);
    };
    if w.gone.get(d).copied().unwrap_or(false) {
        return Ok(Presence::Absent);
    }
    Ok(crate::sim_exec::presence(c, d, h, claimed.contains(vm)))
}

fn text_metric(name: &str, val: &str) -> Metric {
    Metric {
        name: name.into(),
        val: val.into(),
        ty: "string".into(),
        tmax: 60,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer::sim::builtin_scenario;
    use gmond_metrics::hypervisor::profile::Profile;
    use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};

    /// hot-host's four hosts, one VM moved from host-000 to host-001 at 100 s.
    fn moved() -> (AgentSim, SimCluster) {
        let sc = builtin_scenario("hot-host", None, 1).unwrap();
        let mut c = SimCluster::new(0);
        for h in &sc.hosts {
            c.add_host(SimHost {
                name: h.name.clone(),
                cpus: h.cpus,
                mhz: h.mhz,
                mem_kib: h.mem_kb,
                link_bps: sc.link_bps,
                up: true,
            })
            .unwrap();
        }
        c.add_domain("vm-x", 2, 4000.0, 1 << 21, 0, Profile::Constant(0.5))
            .unwrap();
        c.start_migration(0, 1).unwrap();
        c.advance_to(100_000).unwrap();
        assert_eq!(c.domains()[0].host, 1);
        let mut sim = AgentSim::new(
            &sc,
            &PolicySpec::builtin("hotspot").unwrap(),
            AgentConfig::default(),
        )
        .unwrap();
        sim.departed.push(Departed {
            vm: "vm-x".into(),
            from: 0,
            end_s: 100,
        });
        (sim, c)
    }

    fn world<'a>(c: &'a SimCluster, none: &'a BTreeSet<usize>, t_s: u64) -> World<'a> {
        World {
            t_s,
            t_ms: t_s * 1000,
            cluster: c,
            maintenance: none,
            partition: None,
            gone: &[],
            vm_tags: &[],
        }
    }

    #[test]
    fn the_old_host_keeps_a_moved_vms_last_metrics_ageing_until_their_dmax() {
        let (sim, c) = moved();
        let none = BTreeSet::new();
        let copy_tn = |v: &Cluster, host: &str| {
            v.hosts
                .iter()
                .find(|h| h.name == host)
                .and_then(|h| h.metric("vm-x.vcpu_util"))
                .map(|m| m.tn)
        };
        let trusted = |_: &str| true;
        // 20 s after: both copies fresh enough to call it in flight.
        let v = sim.view(&world(&c, &none, 120), None);
        assert_eq!(copy_tn(&v, "host-000"), Some(20));
        assert_eq!(copy_tn(&v, "host-001"), Some(0));
        assert!(crate::view::build(&v, &trusted, 120, 90)
            .in_flight
            .contains("vm-x"));
        // 60 s after: superseded; the new host owns it.
        let v = sim.view(&world(&c, &none, 160), None);
        assert_eq!(copy_tn(&v, "host-000"), Some(60));
        let b = crate::view::build(&v, &trusted, 160, 90);
        assert!(!b.in_flight.contains("vm-x"));
        assert_eq!(b.snapshot.vms[0].host, "host-001");
        // Past DMAX gmond has deleted it.
        let v = sim.view(&world(&c, &none, 100 + u64::from(VM_DMAX)), None);
        assert_eq!(copy_tn(&v, "host-000"), None);
        // Switched off: the old host stops reporting it at once.
        let v = sim.stale_copies(false).view(&world(&c, &none, 120), None);
        assert_eq!(copy_tn(&v, "host-000"), None);
        assert_eq!(copy_tn(&v, "host-001"), Some(0));
    }
}
