//! What the balancer's QEMU tests share: a testbed of hypervisors each running gmond-rs (with
//! per-VM metrics) and a `balancer-agent`, the agents' audit logs, where libvirt says each
//! guest runs, and a policy whose threshold sits between two guests' loads. Included by each
//! test file as `mod agentbed;`.
#![allow(dead_code)] // each test file uses its own part

use balancer_agent::audit::{Event, Record};
use ganglia_wire::model::{Cluster, Host};
use ganglia_wire::xml::read_document;
use integration_tests::lvt::{gmond_conf, Testbed, GMOND_PORT};
use integration_tests::Proc;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// gmond-rs's VM collection period, s.
pub const COLLECT_S: u32 = 2;
/// The agents' tick, s.
pub const TICK_S: u64 = 2;
/// A host whose balancer metrics are older than this is no leader candidate, s.
pub const LEADER_TIMEOUT_S: u64 = 10;

/// A testbed of `hosts` hypervisors with gmond-rs on each; agents are started by the test.
/// Fields drop in order: agents, then gmond-rs, then the testbed.
pub struct AgentBed {
    pub agents: Vec<Option<Proc>>,
    pub gmonds: Vec<Proc>,
    pub audit: Vec<PathBuf>,
    pub bed: Testbed,
    pub hosts: usize,
    pub t0: Instant,
}

impl AgentBed {
    /// The testbed, guests defined by `guests(bed)`, then gmond-rs on every host.
    pub fn new(hosts: usize, guests: impl FnOnce(&Testbed)) -> AgentBed {
        let bed = Testbed::new(hosts);
        guests(&bed);
        let mut run = AgentBed {
            agents: (0..hosts).map(|_| None).collect(),
            gmonds: Vec::new(),
            audit: (1..=hosts)
                .map(|i| bed.dir().join(format!("audit-hv{i}.jsonl")))
                .collect(),
            bed,
            hosts,
            t0: Instant::now(),
        };
        for i in 1..=hosts {
            let conf = run.bed.dir().join(format!("gmond-hv{i}.conf"));
            std::fs::write(&conf, gmond_conf(true, COLLECT_S)).unwrap();
            let g = run.bed.spawn(
                i,
                &format!("gmond-hv{i}"),
                integration_tests::bin("gmond-rs"),
                &[OsStr::new("-c"), conf.as_os_str()],
            );
            run.gmonds.push(g);
        }
        run
    }

    pub fn say(&self, what: &str) {
        eprintln!("[{:6.1} s] {what}", self.t0.elapsed().as_secs_f64());
    }

    /// Host `i`'s view of the cluster, when its gmond-rs answers.
    pub fn view(&self, i: usize) -> Option<Cluster> {
        let doc = read_document(&self.bed.read_xml(i, GMOND_PORT)?).ok()?;
        doc.clusters.into_iter().next()
    }

    /// Where libvirt says each guest is running: guest -> host indexes. None when a libvirtd
    /// does not answer.
    pub fn placement(&self) -> Option<BTreeMap<String, Vec<usize>>> {
        let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 1..=self.hosts {
            for vm in self.bed.running(i)? {
                out.entry(vm).or_default().push(i);
            }
        }
        Some(out)
    }

    /// Every audit record of every agent so far (a torn last line is skipped by the reader).
    pub fn audit(&self) -> Vec<Record> {
        self.audit
            .iter()
            .filter(|p| p.exists())
            .flat_map(|p| {
                balancer_agent::audit::read(p)
                    .unwrap_or_else(|e| panic!("{}: unreadable audit log: {e}", p.display()))
            })
            .collect()
    }

    /// The audit as text, one record a line, for failure messages.
    pub fn audit_text(&self) -> String {
        self.audit()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} id={:?} {:?} {:?}->{:?} outcome={:?} error={:?}\n",
                    r.time, r.host, r.event, r.id, r.vm, r.from, r.to, r.outcome, r.error
                )
            })
            .collect()
    }

    /// Writes host `i`'s agent config (`agent-hv<i>.toml`).
    pub fn write_agent_config(&self, i: usize, text: &str) {
        std::fs::write(self.bed.dir().join(format!("agent-hv{i}.toml")), text).unwrap();
    }

    /// Starts host `i`'s agent on its config file and its gmond.conf (where its metrics go).
    pub fn start_agent(&mut self, i: usize) {
        let dir = self.bed.dir().to_owned();
        let p = self.bed.spawn_env(
            i,
            &format!("agent-hv{i}"),
            integration_tests::bin("balancer-agent"),
            &[
                OsStr::new("--config"),
                dir.join(format!("agent-hv{i}.toml")).as_os_str(),
                OsStr::new("--conf"),
                dir.join(format!("gmond-hv{i}.conf")).as_os_str(),
            ],
            &[(
                "RUST_LOG",
                &std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )],
        );
        self.agents[i - 1] = Some(p);
    }

    /// SIGKILL to host `i`'s agent: no goodbye, no abort, its files as they were.
    pub fn kill_agent(&mut self, i: usize) {
        drop(self.agents[i - 1].take());
    }

    pub fn agent_running(&mut self, i: usize) -> bool {
        self.agents[i - 1].as_mut().is_some_and(Proc::running)
    }

    /// Waits until every host sees every host and `guests` on host 1 report a `vcpu_util`
    /// within 30 % of `quota_pct`; returns host 1's CPU count.
    pub fn wait_for_load(&self, guests: &[&str], quota_pct: u32) -> f64 {
        let q = f64::from(quota_pct) / 100.0;
        let mut last = None;
        let found = self.bed.wait_for(Duration::from_secs(90), || {
            let views: Vec<Cluster> = (1..=self.hosts)
                .map(|i| self.view(i))
                .collect::<Option<_>>()?;
            let all = views.iter().all(|v| {
                (1..=self.hosts).all(|j| v.hosts.iter().any(|h| h.name == self.bed.name(j)))
            });
            let hv1 = views[0].hosts.iter().find(|h| h.name == "hv1")?;
            let utils: Vec<f64> = guests
                .iter()
                .map(|vm| metric_f64(hv1, &format!("{vm}.vcpu_util")))
                .collect::<Option<_>>()?;
            last = Some(utils.clone());
            let at_cap = utils
                .iter()
                .all(|u| (0.7 * q..1.3 * q).contains(&(u / 100.0)));
            (all && at_cap).then_some(metric_f64(hv1, "vnode_cpu_num")?)
        });
        found.unwrap_or_else(|| {
            self.fail(&format!(
                "hosts never all saw each other with hv1's guests at their {quota_pct} % cap; \
                 last readings {last:?}"
            ))
        })
    }

    /// The first record `pick` accepts, waiting up to `deadline`.
    pub fn wait_for_record(
        &self,
        deadline: Duration,
        what: &str,
        pick: impl Fn(&Record) -> bool,
    ) -> Record {
        self.bed
            .wait_for(deadline, || self.audit().into_iter().find(|r| pick(r)))
            .unwrap_or_else(|| self.fail(&format!("no {what} within {deadline:?}")))
    }

    pub fn fail(&self, msg: &str) -> ! {
        self.bed.dump_logs();
        eprintln!("--- audit:\n{}", self.audit_text());
        panic!("{msg}");
    }
}

pub fn metric_f64(h: &Host, name: &str) -> Option<f64> {
    h.metric(name)?.val.trim().parse().ok()
}

/// Hotspot with its threshold between `low` and `high` guests' load (`q` = one guest's
/// fraction of a core, `cpus` per host): a host running `high` such guests is hot, one
/// running `low` is not.
pub fn policy_between(q: f64, cpus: f64, low: f64, high: f64) -> (String, f64) {
    let threshold = ((low + high) / 2.0 * q / cpus).clamp(0.02, 1.0);
    let text = format!(
        "policy = \"hotspot\"\nstep_s = {TICK_S}\n\n[hotspot]\nthreshold = {threshold:.4}\ntarget = {threshold:.4}\n\
         mem_threshold = 1.0\nk = 2\nn = 3\ntrend_window = 3\nforecast_ahead = 0\n\n\
         [planner]\nmax_moves_per_round = 4\nmax_parallel = 2\nmax_moves_per_vm_per_hour = 4\n\
         cooldown_s = 900\nforbid_pingpong = true\nmin_gain = 0.0\n"
    );
    (text, threshold)
}

/// An outcome record (the migration ended one way or another).
pub fn is_outcome(e: Event) -> bool {
    matches!(
        e,
        Event::Done | Event::Failed | Event::Aborted | Event::Unknown
    )
}
