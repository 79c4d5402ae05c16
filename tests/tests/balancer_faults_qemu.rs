//! Issue 14: the balancer agent on real QEMU when things go wrong mid-migration. Two hosts of
//! the `tests/libvirt` testbed, each with gmond-rs (per-VM metrics) and an agent in auto mode;
//! hv1 runs two busy guests and a policy makes it hot with two and not with one, so the leader
//! (hv1) live-migrates one of them to hv2. The one it picks first (Sandpiper's volume-to-size
//! ratio prefers the smaller) is `dirty`, which rewrites its memory without pause: with the
//! agents capping migration bandwidth at 1 MiB/s its migration never converges and stays in
//! flight until aborted. The other, `plain`, migrates in a moment.
//!
//! * The destination's libvirtd is stopped (SIGSTOP) mid-migration: the migration is aborted
//!   at its timeout, the guest keeps running on its source, and with libvirtd resumed
//!   balancing resumes: `plain` moves, verified (`dirty` sits out its failure cooldown).
//! * The leader's agent is killed (SIGKILL) mid-migration and started again: it finds the
//!   migration in its state file, settles it with the hypervisor, and writes exactly one
//!   outcome line for it; the guest runs on exactly one host; the budget use is remembered.
//!
//! Needs what `balancer_live_qemu.rs` needs; fails, never skips, without.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agentbed;

use agentbed::{is_outcome, policy_between, AgentBed, LEADER_TIMEOUT_S, TICK_S};
use balancer_agent::audit::Event;
use integration_tests::lvt::{Guest, GMOND_PORT};
use integration_tests::ResumeOnDrop;
use std::path::Path;
use std::time::{Duration, Instant};

const BUSY: [&str; 2] = ["dirty", "plain"];
/// Each busy guest's vCPU cap, % of a host core (see balancer_live_qemu.rs on why small).
const QUOTA_PCT: u32 = 10;
/// The agents' migration timeout, s.
const TIMEOUT_S: u64 = 20;
/// A VM whose migration failed is left alone this long, s.
const COOLDOWN_S: u64 = 30;

fn agent_toml(bed: &AgentBed, i: usize, policy: &Path) -> String {
    format!(
        "mode = \"auto\"\npolicy = \"{}\"\ninterval_s = {TICK_S}\nfeed = \"127.0.0.1:{GMOND_PORT}\"\n\
         uri_template = \"qemu+tcp://{{host}}/system\"\ntrusted_hosts = [\"hv1\", \"hv2\"]\n\
         leader_timeout_s = {LEADER_TIMEOUT_S}\nbudget_migrations = 6\nbudget_window_s = 3600\n\
         max_parallel = 1\nmigration_timeout_s = {TIMEOUT_S}\nfailure_cooldown_s = {COOLDOWN_S}\n\
         dest_failure_limit = 3\nobserve_after_s = 10\naudit_log = \"{}\"\n\
         on_lost_lead = \"finish\"\non_stop = \"abort\"\nmetric_tmax_s = 20\nmetric_dmax_s = 600\n\n\
         [migration]\nlive = true\np2p = true\npersistent = true\nundefine_source = true\n\
         bandwidth_mib_s = 1\n",
        policy.display(),
        bed.audit[i - 1].display()
    )
}

/// Two hosts, two busy guests on hv1, gmond-rs everywhere, agents in auto on a policy that
/// makes hv1 hot; returns once the agents run.
fn start() -> AgentBed {
    let mut run = AgentBed::new(2, |bed| {
        bed.guest(1, "dirty", Guest::Dirty, 16, 1, Some(QUOTA_PCT));
        bed.guest(1, "plain", Guest::Busy, 48, 1, Some(QUOTA_PCT));
    });
    run.say("testbed up");
    let cpus = run.wait_for_load(&BUSY, QUOTA_PCT);
    let (policy, threshold) = policy_between(f64::from(QUOTA_PCT) / 100.0, cpus, 1.0, 2.0);
    let path = run.bed.dir().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    for i in 1..=2 {
        run.write_agent_config(i, &agent_toml(&run, i, &path));
        run.start_agent(i);
    }
    run.say(&format!(
        "agents started (auto, threshold {threshold:.3}, {cpus} CPUs)"
    ));
    run
}

fn signal(sig: &str, pid: u32) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn a_hung_destination_libvirtd_is_aborted_in_time_and_balancing_resumes() {
    let mut run = start();
    let start = run.wait_for_record(Duration::from_secs(90), "migration start", |r| {
        r.event == Event::Start
    });
    let vm = start.vm.clone().unwrap();
    assert_eq!(
        (start.from.as_deref(), start.to.as_deref()),
        (Some("hv1"), Some("hv2"))
    );
    assert_eq!(vm, "dirty", "the smaller guest goes first");
    let dest = run.bed.libvirtd_pid(2);
    signal("-STOP", dest);
    let resume = ResumeOnDrop(dest);
    let stopped = Instant::now();
    run.say(&format!(
        "{vm} migrating hv1 -> hv2; hv2's libvirtd stopped"
    ));

    // The abort goes to the source at the timeout; hv2's libvirtd comes back a little after,
    // so the outcome can be verified on both sides.
    std::thread::sleep(Duration::from_secs(TIMEOUT_S + 2));
    drop(resume);
    run.say("hv2's libvirtd resumed");
    let outcome = run.wait_for_record(
        Duration::from_secs(TIMEOUT_S + 60),
        "outcome of the hung migration",
        |r| is_outcome(r.event) && r.id == start.id && r.host == start.host,
    );
    run.say(&format!(
        "outcome {:?} after {:.1} s: {:?}",
        outcome.event,
        stopped.elapsed().as_secs_f64(),
        outcome.error
    ));
    assert!(
        matches!(outcome.event, Event::Aborted | Event::Failed),
        "the VM must be reported on its source:\n{}",
        run.audit_text()
    );
    let on_source = run.bed.running(1).unwrap_or_default();
    assert!(
        on_source.contains(&vm),
        "{vm} is not running on hv1: {on_source:?}"
    );

    // The guest runs on exactly one host (its source).
    let placed = run.bed.wait_for(Duration::from_secs(60), || {
        let p = run.placement()?;
        (p.get(&vm)? == &vec![1]).then_some(p)
    });
    if placed.is_none() {
        run.fail(&format!(
            "{vm} not on hv1 alone after resume: {:?}",
            run.placement()
        ));
    }

    // Balancing resumes: the other busy guest moves to hv2, verified.
    let done = run.wait_for_record(
        Duration::from_secs(COOLDOWN_S + 120),
        "a verified move after the cooldown",
        |r| r.event == Event::Done,
    );
    assert_eq!(done.vm.as_deref(), Some("plain"), "{}", run.audit_text());
    run.say(&format!(
        "resumed: {:?} moved {:?} -> {:?}",
        done.vm, done.from, done.to
    ));
    let p = run.placement().expect("every libvirtd answers");
    for g in BUSY {
        assert_eq!(p.get(g).map(Vec::len), Some(1), "{g} on one host: {p:?}");
    }
    assert_eq!(
        p.values().filter(|h| **h == vec![2]).count(),
        1,
        "one busy guest on hv2: {p:?}"
    );
    assert!(run.agent_running(1) && run.agent_running(2));
}

#[test]
fn a_leader_killed_mid_migration_settles_it_once_after_restart() {
    let mut run = start();
    let start = run.wait_for_record(Duration::from_secs(90), "migration start", |r| {
        r.event == Event::Start
    });
    let vm = start.vm.clone().unwrap();
    assert_eq!(start.host, "hv1", "hv1 leads");
    assert_eq!(vm, "dirty", "the smaller guest goes first");
    // Mid-migration (it never converges on its own).
    std::thread::sleep(Duration::from_secs(3));
    run.kill_agent(1);
    run.say(&format!("{vm} migrating; hv1's agent killed"));
    assert!(
        !run.audit()
            .iter()
            .any(|r| is_outcome(r.event) && r.id == start.id),
        "the migration ended before the kill; the test needs a slower one"
    );
    let state_file = {
        let mut p = run.audit[0].clone().into_os_string();
        p.push(".state");
        std::path::PathBuf::from(p)
    };
    let saved = balancer_agent::state::load(&state_file, Some("hv1"))
        .unwrap()
        .expect("a state file");
    assert!(
        saved.inflight.iter().any(|m| m.mv.vm == vm),
        "the migration is in the state file"
    );

    run.start_agent(1);
    run.say("hv1's agent restarted");
    let outcome = run.wait_for_record(
        Duration::from_secs(TIMEOUT_S + 90),
        "the killed migration's outcome",
        |r| is_outcome(r.event) && r.id == start.id && r.host == "hv1",
    );
    run.say(&format!("outcome {:?}: {:?}", outcome.event, outcome.error));
    // Exactly one outcome line for it, and the guest on exactly one host, the one the
    // outcome names.
    std::thread::sleep(Duration::from_secs(2 * TICK_S));
    let lines = run
        .audit()
        .iter()
        .filter(|r| is_outcome(r.event) && r.id == start.id && r.host == "hv1")
        .count();
    assert_eq!(
        lines,
        1,
        "outcome lines for the killed migration:\n{}",
        run.audit_text()
    );
    let p = run
        .bed
        .wait_for(Duration::from_secs(30), || {
            let p = run.placement()?;
            (p.get(&vm)?.len() == 1).then_some(p)
        })
        .unwrap_or_else(|| run.fail(&format!("{vm} not on exactly one host")));
    let want = if outcome.event == Event::Done { 2 } else { 1 };
    assert_eq!(
        p[&vm],
        vec![want],
        "{vm} where its outcome says:\n{}",
        run.audit_text()
    );
    // The budget remembers the start.
    let now = balancer_agent::state::load(&state_file, Some("hv1"))
        .unwrap()
        .expect("a state file");
    assert!(
        now.budget_starts.iter().any(|(_, v)| *v == vm),
        "the restarted agent forgot the budget use: {:?}",
        now.budget_starts
    );
    assert!(
        now.inflight.iter().all(|m| m.mv.vm != vm),
        "still in flight in the state file"
    );
    assert!(run.agent_running(1));
}
