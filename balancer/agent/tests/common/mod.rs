//! Test world for the agent: a simulated cluster, a minimal gmond (datagrams in, a view with
//! TN out, time as input), and agents ticking over it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balancer_agent::audit::{AuditLog, Event, Record};
use balancer_agent::{Agent, AgentConfig, AgentOptions, Mode, SimExecutor};
use ganglia_wire::model::{Cluster, Host, Metric};
use ganglia_wire::{decode, Message};
use gmond_metrics::hypervisor::profile::Profile;
use gmond_metrics::hypervisor::sim::{SimCluster, SimHost};

/// Seconds between rounds in these tests.
pub const STEP: u64 = 10;
/// Epoch of the world's start.
pub const T0: u64 = 1_000_000;

#[derive(Debug, Clone, Default)]
struct MetricRec {
    val: String,
    ty: String,
    tmax: u32,
    heard: u64,
}

/// One gmond's view of the cluster, fed by the hypervisors' reports and by datagrams.
pub struct World {
    pub cluster: Arc<Mutex<SimCluster>>,
    pub exec: Arc<SimExecutor>,
    pub now: u64,
    hosts: BTreeMap<String, (u64, String, BTreeMap<String, MetricRec>)>,
    /// Hosts whose hypervisor reports are no longer heard (failed or partitioned).
    pub silent: Vec<String>,
    /// VM reports show the placement of this many rounds ago (a slow metric collection).
    pub lag_rounds: usize,
    past: std::collections::VecDeque<SimCluster>,
    /// Every migration the simulated hypervisor completed: (VM, from, to), in order.
    pub completed: Vec<(String, String, String)>,
}

/// The policy used by the tests: hotspot with quick sustained detection.
pub const POLICY: &str = r#"
policy = "hotspot"
# One history sample per round of these tests (10 s).
step_s = 10
[hotspot]
threshold = 0.85
target = 0.55
k = 2
n = 3
[planner]
max_moves_per_round = 2
max_parallel = 2
cooldown_s = 900
"#;

impl World {
    /// `hosts` of 4 CPUs x 1000 MHz, 16 GiB; `vms` (name, host index, demand fraction), 1 vCPU
    /// of 1000 MHz and 512 MiB each (a migration takes ~8.6 simulated seconds).
    pub fn new(hosts: &[&str], vms: &[(&str, usize, f64)]) -> World {
        let mut c = SimCluster::new(7);
        for h in hosts {
            c.add_host(SimHost {
                name: (*h).into(),
                cpus: 4,
                mhz: 1000,
                mem_kib: 16 << 20,
                link_bps: 1_000_000_000,
                up: true,
            })
            .unwrap();
        }
        for (n, h, d) in vms {
            c.add_domain(n, 1, 1000.0, 512 << 10, *h, Profile::Constant(*d))
                .unwrap();
        }
        c.advance_to(T0 * 1000).unwrap();
        let cluster = Arc::new(Mutex::new(c));
        let exec = Arc::new(SimExecutor::new(cluster.clone()));
        World {
            cluster,
            exec,
            now: T0,
            hosts: BTreeMap::new(),
            silent: Vec::new(),
            lag_rounds: 0,
            past: std::collections::VecDeque::new(),
            completed: Vec::new(),
        }
    }

    /// The classic: h1 holds 4 busy VMs (0.95 each = 95 %) and 2 idle ones.
    pub fn hot_host() -> World {
        World::new(
            &["h1", "h2", "h3"],
            &[
                ("busy-a", 0, 0.95),
                ("busy-b", 0, 0.95),
                ("busy-c", 0, 0.95),
                ("busy-d", 0, 0.95),
                ("idle-a", 0, 0.02),
                ("idle-b", 0, 0.02),
            ],
        )
    }

    fn put(&mut self, host: &str, name: &str, val: String, ty: &str, tmax: u32) {
        let e = self
            .hosts
            .entry(host.to_string())
            .or_insert_with(|| (0, "127.0.0.1".into(), BTreeMap::new()));
        e.0 = self.now;
        e.2.insert(
            name.to_string(),
            MetricRec {
                val,
                ty: ty.into(),
                tmax,
                heard: self.now,
            },
        );
    }

    /// Every up, non-silent hypervisor reports its capacity and its VMs (as gmond-rs with the
    /// libvirt module does).
    pub fn report_hypervisors(&mut self) {
        let now = self.cluster.lock().unwrap().clone();
        self.past.push_back(now);
        while self.past.len() > self.lag_rounds + 1 {
            self.past.pop_front();
        }
        let c = self.past.front().unwrap().clone();
        let t = c.now_ms();
        for (hi, h) in c.hosts().iter().enumerate() {
            if !h.up || self.silent.contains(&h.name) {
                continue;
            }
            self.put(&h.name, "vnode_cpu_num", h.cpus.to_string(), "uint16", 60);
            self.put(&h.name, "vnode_cpu_speed", h.mhz.to_string(), "uint32", 60);
            self.put(
                &h.name,
                "vnode_mem_total",
                h.mem_kib.to_string(),
                "float",
                60,
            );
            for (di, d) in c.domains().iter().enumerate() {
                if d.host != hi {
                    continue;
                }
                let util = c.demand_mhz(di, t) / d.cpu_cap_mhz * 100.0;
                self.put(
                    &h.name,
                    &format!("{}.vcpu_util", d.name),
                    format!("{util:.1}"),
                    "float",
                    60,
                );
                self.put(
                    &h.name,
                    &format!("{}.vcpu_num", d.name),
                    d.vcpus.to_string(),
                    "uint16",
                    60,
                );
                self.put(
                    &h.name,
                    &format!("{}.vmem_total", d.name),
                    d.mem_kib.to_string(),
                    "float",
                    60,
                );
            }
        }
    }

    /// Takes metric datagrams as gmond does (metadata gives type and tmax, values the value).
    pub fn ingest(&mut self, datagrams: &[Vec<u8>]) {
        let mut types: BTreeMap<(String, String), (String, u32)> = BTreeMap::new();
        for d in datagrams {
            let m = decode(d).unwrap();
            let id = m.metric_id();
            let host = String::from_utf8_lossy(id.host).to_string();
            // Spoofed "IP:name" speaks for `name`.
            let host = host.rsplit(':').next().unwrap_or("").to_string();
            let name = String::from_utf8_lossy(id.name).to_string();
            match &m {
                Message::Metadata(md) => {
                    types.insert(
                        (host, name),
                        (String::from_utf8_lossy(md.metric_type).to_string(), md.tmax),
                    );
                }
                Message::Value(v) => {
                    let (ty, tmax) = types
                        .get(&(host.clone(), name.clone()))
                        .cloned()
                        .unwrap_or(("string".into(), 60));
                    let val = match v.value {
                        ganglia_wire::Value::Str(s) => String::from_utf8_lossy(s).to_string(),
                        other => {
                            let f = other.as_f64().unwrap();
                            if ty == "float" {
                                format!("{f:.3}")
                            } else {
                                format!("{f}")
                            }
                        }
                    };
                    self.put(&host, &name, val, &ty, tmax);
                }
                Message::MetadataRequest(_) => {}
            }
        }
    }

    /// The XML view (as a model) at the world's time.
    pub fn view(&self) -> Cluster {
        Cluster {
            name: "test".into(),
            localtime: self.now,
            hosts: self
                .hosts
                .iter()
                .map(|(name, (heard, ip, ms))| Host {
                    name: name.clone(),
                    ip: ip.clone(),
                    reported: *heard,
                    tn: self.now - heard,
                    tmax: 20,
                    metrics: ms
                        .iter()
                        .map(|(n, r)| Metric {
                            name: n.clone(),
                            val: r.val.clone(),
                            ty: r.ty.clone(),
                            tn: self.now - r.heard,
                            tmax: r.tmax,
                            slope: "both".into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Advances simulated time by `secs`.
    pub fn advance(&mut self, secs: u64) {
        self.now += secs;
        let mut c = self.cluster.lock().unwrap();
        for m in c.advance_to(self.now * 1000).unwrap() {
            let name = |h: usize| c.hosts()[h].name.clone();
            let done = (c.domains()[m.domain].name.clone(), name(m.from), name(m.to));
            self.completed.push(done);
        }
    }

    /// Where the simulated hypervisor has `vm` (host name), and whether it is migrating.
    pub fn where_is(&self, vm: &str) -> (String, bool) {
        let c = self.cluster.lock().unwrap();
        let d = &c.domains()[c.domain_index(vm).unwrap()];
        (c.hosts()[d.host].name.clone(), d.migration.is_some())
    }

    /// Busy VMs (demand over half their capacity now) per host.
    pub fn busy_per_host(&self) -> BTreeMap<String, usize> {
        let c = self.cluster.lock().unwrap();
        let mut out = BTreeMap::new();
        let t = c.now_ms();
        for (i, d) in c.domains().iter().enumerate() {
            if c.demand_mhz(i, t) > 0.5 * d.cpu_cap_mhz {
                *out.entry(c.hosts()[d.host].name.clone()).or_default() += 1;
            }
        }
        out
    }
}

/// A test agent with its audit records in memory.
pub struct TestAgent {
    pub agent: Agent,
    pub audit: Arc<Mutex<Vec<Record>>>,
    /// Stopped agents neither tick nor publish.
    pub running: bool,
}

impl TestAgent {
    pub fn records(&self, ev: Event) -> Vec<Record> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.event == ev)
            .cloned()
            .collect()
    }
}

/// The default test config: auto, trusted h1..h3, quick timeouts.
pub fn config(mode: Mode) -> AgentConfig {
    AgentConfig {
        mode,
        trusted_hosts: vec!["h1".into(), "h2".into(), "h3".into()],
        leader_timeout_s: 40,
        migration_timeout_s: 120,
        failure_cooldown_s: 600,
        observe_after_s: 30,
        ..Default::default()
    }
}

pub fn agent(w: &World, name: &str, cfg: AgentConfig) -> TestAgent {
    let (log, audit) = AuditLog::none().with_memory();
    let mut o = AgentOptions::new(name, cfg, w.exec.clone());
    o.policy_text = Some(POLICY.into());
    o.audit = log;
    o.verify_retry = Duration::from_millis(2);
    o.verify_attempts = 3000;
    TestAgent {
        agent: Agent::new(o).unwrap(),
        audit,
        running: true,
    }
}

/// One round: hypervisors report, every running agent ticks on the view and publishes, time
/// advances, and agents with migrations in flight get a moment to collect finished workers.
pub fn step(w: &mut World, agents: &mut [TestAgent]) -> Vec<balancer_agent::TickReport> {
    step_with(w, agents, &[])
}

/// [`step`] with extra datagrams (a forger's) arriving after the hypervisors' reports.
pub fn step_with(
    w: &mut World,
    agents: &mut [TestAgent],
    extra: &[Vec<u8>],
) -> Vec<balancer_agent::TickReport> {
    w.report_hypervisors();
    w.ingest(extra);
    let view = w.view();
    let mut reports = Vec::new();
    for a in agents.iter_mut().filter(|a| a.running) {
        reports.push(a.agent.tick(&view, w.now));
        let d = a.agent.datagrams();
        w.ingest(&d);
    }
    w.advance(STEP);
    for a in agents.iter_mut().filter(|a| a.running) {
        if a.agent.inflight() > 0 {
            a.agent.wait_worker(w.now, Duration::from_millis(30));
        }
    }
    reports
}

/// Starts and completions of migrations, per VM, across all agents' audit logs.
pub fn moves_per_vm(agents: &[TestAgent]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in agents {
        for r in a.records(Event::Done) {
            *out.entry(r.vm.unwrap()).or_default() += 1;
        }
    }
    out
}
