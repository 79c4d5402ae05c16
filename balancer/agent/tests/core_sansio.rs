//! The agent's core driven directly, with time as a number and the hypervisor's answers typed
//! in by the test: no threads, no sleeps, every step deterministic. Hung migrations and their
//! repeated aborts, stuck membership probes, a clock that jumps back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use balancer_agent::audit::{Event, Record};
use balancer_agent::balancer::policy::PolicySpec;
use balancer_agent::core::{
    Action, AgentCore, CallError, Outcome, ABORT_RETRY_S, MAX_PROBES, PROBE_TIMEOUT_S,
};
use balancer_agent::{AgentConfig, MigrationRequest, Mode, Presence};
use ganglia_wire::model::{Cluster, Host, Metric};

const T0: u64 = 1_000_000;

/// Hotspot that reacts after three hot rounds.
const POLICY: &str = r#"
policy = "hotspot"
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

fn metric(name: &str, val: &str, ty: &str) -> Metric {
    Metric {
        name: name.into(),
        val: val.into(),
        ty: ty.into(),
        tn: 1,
        tmax: 60,
        slope: "both".into(),
        ..Default::default()
    }
}

/// A hypervisor of 4 x 1000 MHz whose balancer runs in `mode` (none: no balancer), with VMs
/// of one vCPU at `util` %.
fn host(name: &str, mode: Option<&str>, vms: &[(&str, f64)]) -> Host {
    let mut metrics = vec![
        metric("vnode_cpu_num", "4", "uint16"),
        metric("vnode_cpu_speed", "1000", "uint32"),
        metric("vnode_mem_total", "16777216", "float"),
    ];
    if let Some(m) = mode {
        metrics.push(metric("balancer_mode", m, "string"));
    }
    for (vm, util) in vms {
        metrics.push(metric(&format!("{vm}.vcpu_num"), "1", "uint16"));
        metrics.push(metric(
            &format!("{vm}.vcpu_util"),
            &format!("{util}"),
            "float",
        ));
        metrics.push(metric(&format!("{vm}.vmem_total"), "524288", "float"));
    }
    Host {
        name: name.into(),
        ip: "127.0.0.1".into(),
        tn: 1,
        tmax: 20,
        metrics,
        ..Default::default()
    }
}

/// h1 holds four busy VMs; h2 and h3 are empty. Every host runs a balancer in auto.
fn hot_view() -> Cluster {
    let busy = [
        ("busy-a", 95.0),
        ("busy-b", 95.0),
        ("busy-c", 95.0),
        ("busy-d", 95.0),
    ];
    Cluster {
        name: "test".into(),
        hosts: vec![
            host("h1", Some("auto"), &busy),
            host("h2", Some("auto"), &[]),
            host("h3", Some("auto"), &[]),
        ],
        ..Default::default()
    }
}

fn config() -> AgentConfig {
    AgentConfig {
        mode: Mode::Auto,
        trusted_hosts: vec!["h1".into(), "h2".into(), "h3".into()],
        leader_timeout_s: 40,
        migration_timeout_s: 30,
        max_parallel: 1,
        failure_cooldown_s: 600,
        observe_after_s: 30,
        ..Default::default()
    }
}

fn core(name: &str, cfg: AgentConfig) -> AgentCore {
    AgentCore::new(name, cfg, PolicySpec::parse(POLICY).unwrap(), 3).unwrap()
}

/// Everything the core asks for now, audit records apart.
fn drain(c: &mut AgentCore, audit: &mut Vec<Record>) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(a) = c.poll_action() {
        match a {
            Action::Audit(r) => audit.push(*r),
            other => out.push(other),
        }
    }
    out
}

fn migrations(actions: &[Action]) -> Vec<MigrationRequest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Migrate(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn aborts(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Abort(_)))
        .count()
}

/// Ticks every 10 s on the hot view until the core hands out a migration; returns it and
/// the time.
fn until_a_start(c: &mut AgentCore, audit: &mut Vec<Record>) -> (MigrationRequest, u64) {
    let v = hot_view();
    for i in 0..20 {
        let now = T0 + 10 * i;
        c.handle_view(&v, now);
        if let Some(req) = migrations(&drain(c, audit)).pop() {
            return (req, now);
        }
    }
    panic!("no migration started: {audit:#?}");
}

#[test]
fn a_hung_migration_is_aborted_at_its_timeout_and_again_until_its_job_ends() {
    let mut c = core("h1", config());
    let mut audit = Vec::new();
    let (req, t) = until_a_start(&mut c, &mut audit);
    c.handle_prechecked(t, req.id, Ok(()));
    // The call never returns. Nothing before the timeout.
    for s in 1..30 {
        c.handle_timeout(t + s);
        assert_eq!(aborts(&drain(&mut c, &mut audit)), 0, "at +{s}");
    }
    assert_eq!(c.next_timeout(), Some(t + 30));
    c.handle_timeout(t + 30);
    let a = drain(&mut c, &mut audit);
    assert_eq!(a, vec![Action::Abort(req.clone())]);
    // The abort call itself hangs: no second one meanwhile, however long.
    for s in 31..100 {
        c.handle_timeout(t + s);
        assert_eq!(aborts(&drain(&mut c, &mut audit)), 0, "at +{s}");
    }
    // It returns refused (libvirtd restarting): sent again ABORT_RETRY_S after the last one.
    c.handle_aborted(t + 100, req.id, Err("Cannot recv data".into()));
    c.handle_timeout(t + 100);
    assert_eq!(aborts(&drain(&mut c, &mut audit)), 1, "due since +40");
    c.handle_aborted(t + 101, req.id, Ok(()));
    // Accepted, yet the job goes on: every ABORT_RETRY_S another, while the call blocks.
    let mut sent = Vec::new();
    for s in 101..=140 {
        c.handle_timeout(t + s);
        for a in drain(&mut c, &mut audit) {
            assert_eq!(a, Action::Abort(req.clone()));
            sent.push(s);
            c.handle_aborted(t + s, req.id, Ok(()));
        }
    }
    assert_eq!(
        sent,
        [
            100 + ABORT_RETRY_S,
            100 + 2 * ABORT_RETRY_S,
            100 + 3 * ABORT_RETRY_S,
            100 + 4 * ABORT_RETRY_S
        ]
    );
    // The job ends: the call returns "aborted", verification finds the VM on its source.
    c.handle_migrated(
        t + 141,
        req.id,
        Err(CallError::Aborted("canceled by client".into())),
    );
    let a = drain(&mut c, &mut audit);
    assert!(
        matches!(&a[..], [Action::Locate { retry: false, .. }]),
        "{a:?}"
    );
    c.handle_located(t + 141, req.id, Ok(Presence::Absent), Ok(Presence::Running));
    assert!(drain(&mut c, &mut audit).is_empty());
    assert_eq!(c.inflight(), 0);
    let outcomes: Vec<&Record> = audit
        .iter()
        .filter(|r| r.id == Some(req.id) && r.event != Event::Start)
        .collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0].event, Event::Aborted);
    assert_eq!(outcomes[0].seconds, Some(141));
    // Nothing more is sent for it.
    for s in 142..300 {
        c.handle_timeout(t + s);
        assert_eq!(aborts(&drain(&mut c, &mut audit)), 0);
    }
    assert_eq!(c.take_finished().len(), 1);
}

#[test]
fn verification_is_retried_until_the_hypervisor_answers() {
    let mut c = core("h1", config());
    let mut audit = Vec::new();
    let (req, t) = until_a_start(&mut c, &mut audit);
    c.handle_prechecked(t, req.id, Ok(()));
    // The call lost its connection; the hypervisor answers nothing at first.
    c.handle_migrated(
        t + 9,
        req.id,
        Err(CallError::Other("Connection reset by peer".into())),
    );
    assert!(matches!(
        &drain(&mut c, &mut audit)[..],
        [Action::Locate { retry: false, .. }]
    ));
    c.handle_located(t + 9, req.id, Err("down".into()), Err("down".into()));
    assert!(matches!(
        &drain(&mut c, &mut audit)[..],
        [Action::Locate { retry: true, .. }]
    ));
    // Then it shows the VM on the destination: done, with the call's error as a note.
    c.handle_located(t + 10, req.id, Ok(Presence::Running), Ok(Presence::Absent));
    assert!(drain(&mut c, &mut audit).is_empty());
    let done: Vec<&Record> = audit.iter().filter(|r| r.event == Event::Done).collect();
    assert_eq!(done.len(), 1);
    assert!(done[0]
        .error
        .as_deref()
        .unwrap()
        .contains("Connection reset"));
    assert!(matches!(
        c.take_finished()[..],
        [(_, Outcome::Done { note: Some(_) })]
    ));
}

/// Today's bug: 16 probes that never answer froze membership for good (no slot ever freed).
#[test]
fn stuck_probes_are_reaped_so_membership_is_not_frozen() {
    // No inventory: membership is whoever's hypervisor answers (recommend mode).
    let cfg = AgentConfig {
        mode: Mode::Recommend,
        trusted_hosts: Vec::new(),
        ..config()
    };
    let mut c = core("h00", cfg);
    let mut audit = Vec::new();
    let names: Vec<String> = (0..MAX_PROBES + 4).map(|i| format!("h{i:02}")).collect();
    let view = Cluster {
        hosts: names
            .iter()
            .map(|n| host(n, Some("recommend"), &[]))
            .collect(),
        ..Default::default()
    };
    let probed = |a: &[Action]| -> Vec<String> {
        a.iter()
            .filter_map(|a| match a {
                Action::Probe(h) => Some(h.name.clone()),
                _ => None,
            })
            .collect()
    };
    c.handle_view(&view, T0);
    let first = probed(&drain(&mut c, &mut audit));
    assert_eq!(first.len(), MAX_PROBES);
    // None answers; before the timeout no slot is free.
    c.handle_view(&view, T0 + PROBE_TIMEOUT_S - 1);
    assert!(probed(&drain(&mut c, &mut audit)).is_empty());
    // Past it the hung ones are reaped (not members) and the rest get probed.
    c.handle_view(&view, T0 + PROBE_TIMEOUT_S);
    let second = probed(&drain(&mut c, &mut audit));
    assert_eq!(second, names[MAX_PROBES..].to_vec());
    // The late hosts answer: they are members, and the lowest of them leads.
    for h in &second {
        c.handle_probed(T0 + PROBE_TIMEOUT_S + 1, h, true);
    }
    let r = c.handle_view(&view, T0 + PROBE_TIMEOUT_S + 10);
    assert_eq!(r.leader.as_deref(), Some(names[MAX_PROBES].as_str()));
    // A reaped host is not probed again while its old probe hangs (one blocked thread per
    // host at most), but it counts as soon as that probe does answer.
    assert!(probed(&drain(&mut c, &mut audit)).is_empty());
    assert_eq!(c.probes_outstanding(), MAX_PROBES);
    c.handle_probed(T0 + PROBE_TIMEOUT_S + 20, "h00", true);
    let r = c.handle_view(&view, T0 + PROBE_TIMEOUT_S + 20);
    assert_eq!(r.leader.as_deref(), Some("h00"));
    assert!(r.is_leader);
}

#[test]
fn a_clock_that_jumps_back_does_no_harm() {
    let cfg = AgentConfig {
        budget_migrations: 1,
        budget_window_s: 100,
        ..config()
    };
    let mut c = core("h1", cfg);
    let mut audit = Vec::new();
    let (req, t) = until_a_start(&mut c, &mut audit);
    c.handle_prechecked(t, req.id, Ok(()));
    // An hour back, for a while: no timeout fires early or late, nothing new starts.
    let v = hot_view();
    for i in 0..20 {
        c.handle_view(&v, t - 3600 + i);
        let a = drain(&mut c, &mut audit);
        assert!(a.is_empty(), "{a:?}");
    }
    // The budget window is not reopened and the timeout is counted from the real start.
    c.handle_view(&v, t + 29);
    assert!(drain(&mut c, &mut audit).is_empty());
    c.handle_view(&v, t + 30);
    assert_eq!(aborts(&drain(&mut c, &mut audit)), 1);
    c.handle_migrated(t + 31, req.id, Err(CallError::Aborted("canceled".into())));
    drain(&mut c, &mut audit);
    // The answer arrives stamped in the past: recorded at the core's time, not before it.
    c.handle_located(t - 500, req.id, Ok(Presence::Absent), Ok(Presence::Running));
    drain(&mut c, &mut audit);
    let out = audit.iter().find(|r| r.event == Event::Aborted).unwrap();
    assert_eq!((out.time, out.seconds), (t + 31, Some(31)));
    // Audit time never runs backwards.
    assert!(audit.windows(2).all(|w| w[0].time <= w[1].time));
    // Still within the budget window (from the core's time): no second start.
    for i in 0..5 {
        c.handle_view(&v, t + 40 + 10 * i);
        assert!(migrations(&drain(&mut c, &mut audit)).is_empty());
    }
}
