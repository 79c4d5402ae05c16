//! Issue 14: a network partition on real QEMU. Three hosts of the `tests/libvirt` testbed with
//! gmond-rs and an agent in auto mode each (inventory hv1, hv2, hv3); hv1 and hv2 each run two
//! busy guests (hot), hv3 none. The bridge is cut between hv1 and the others (blackhole routes
//! and strict reverse-path filtering on both sides), before any agent starts. hv1 sees only
//! itself live: it leads its side but without a strict majority of the inventory, so it only
//! recommends and says why in its audit. hv2 and hv3 are a majority: hv2 leads and moves one
//! of its guests to hv3. Healed, hv1 regains its quorum; every migration started stays within
//! the budget and each guest runs on exactly one host.
//! Needs what `balancer_live_qemu.rs` needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agentbed;

use agentbed::{policy_between, AgentBed, LEADER_TIMEOUT_S, TICK_S};
use balancer_agent::audit::Event;
use integration_tests::lvt::{Guest, GMOND_PORT};
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

const QUOTA_PCT: u32 = 10;
const BUDGET: usize = 4;

fn agent_toml(bed: &AgentBed, i: usize, policy: &Path) -> String {
    format!(
        "mode = \"auto\"\npolicy = \"{}\"\ninterval_s = {TICK_S}\nfeed = \"127.0.0.1:{GMOND_PORT}\"\n\
         uri_template = \"qemu+tcp://{{host}}/system\"\ntrusted_hosts = [\"hv1\", \"hv2\", \"hv3\"]\n\
         leader_timeout_s = {LEADER_TIMEOUT_S}\nbudget_migrations = {BUDGET}\nbudget_window_s = 3600\n\
         max_parallel = 1\nmigration_timeout_s = 60\nobserve_after_s = 10\naudit_log = \"{}\"\n\
         metric_tmax_s = 20\nmetric_dmax_s = 600\n\n[migration]\nlive = true\np2p = true\n\
         persistent = true\nundefine_source = true\n",
        policy.display(),
        bed.audit[i - 1].display()
    )
}

/// Host `i` stops exchanging packets with `sources` (or, with none, heals): a blackhole route
/// to each drops what it sends them, and strict reverse-path filtering drops what they send
/// it, multicast included (their source address no longer routes back through the testbed
/// interface). Routing only: no firewall or queueing module is needed in the namespace.
fn cut(run: &AgentBed, i: usize, sources: &[usize], heal: bool) {
    let ip = Path::new("/sbin/ip");
    let sysctl = Path::new("/sbin/sysctl");
    let run_in = |program: &Path, args: &[&str]| {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let out = run.bed.run(i, program, &args);
        assert!(
            out.status.success(),
            "hv{i}: {} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for key in [
        "net.ipv4.conf.all.rp_filter=1",
        "net.ipv4.conf.e0.rp_filter=1",
    ] {
        run_in(sysctl, &["-q", "-w", key]);
    }
    for s in sources {
        let dst = format!("{}/32", run.bed.ip(*s));
        let verb = if heal { "del" } else { "add" };
        run_in(ip, &["route", verb, "blackhole", &dst]);
    }
}

#[test]
fn only_the_majority_side_of_a_partition_moves() {
    let mut run = AgentBed::new(3, |bed| {
        for (host, vm) in [(1, "a1"), (1, "a2"), (2, "b1"), (2, "b2")] {
            bed.guest(host, vm, Guest::Busy, 16, 1, Some(QUOTA_PCT));
        }
    });
    run.say("testbed up");
    let cpus = run.wait_for_load(&["a1", "a2"], QUOTA_PCT);
    let (policy, threshold) = policy_between(f64::from(QUOTA_PCT) / 100.0, cpus, 1.0, 2.0);
    let path = run.bed.dir().join("policy.toml");
    std::fs::write(&path, policy).unwrap();

    cut(&run, 1, &[2, 3], false);
    cut(&run, 2, &[1], false);
    cut(&run, 3, &[1], false);
    // Each side stops hearing the other: hv1's view of hv2 ages past the leader timeout.
    let split = run.bed.wait_for(Duration::from_secs(60), || {
        let v1 = run.view(1)?;
        let v2 = run.view(2)?;
        let stale = |v: &ganglia_wire::model::Cluster, name: &str| {
            v.hosts
                .iter()
                .find(|h| h.name == name)
                .is_none_or(|h| h.tn > LEADER_TIMEOUT_S)
        };
        (stale(&v1, "hv2") && stale(&v1, "hv3") && stale(&v2, "hv1")).then_some(())
    });
    if split.is_none() {
        run.fail("the partition never showed in the views");
    }
    run.say(&format!(
        "partitioned {{hv1}} | {{hv2, hv3}}; threshold {threshold:.3}"
    ));
    for i in 1..=3 {
        run.write_agent_config(i, &agent_toml(&run, i, &path));
        run.start_agent(i);
    }

    // The majority moves one of hv2's guests to hv3.
    let done = run.wait_for_record(
        Duration::from_secs(90),
        "a move on the majority side",
        |r| r.event == Event::Done,
    );
    assert_eq!(
        (done.host.as_str(), done.from.as_deref(), done.to.as_deref()),
        ("hv2", Some("hv2"), Some("hv3")),
        "{}",
        run.audit_text()
    );
    // hv1, alone, said it has no quorum, and started nothing, though it is hot.
    let lost = run.wait_for_record(Duration::from_secs(30), "hv1's quorum line", |r| {
        r.host == "hv1" && r.event == Event::Quorum && r.outcome.as_deref() == Some("lost")
    });
    run.say(&format!(
        "hv1: quorum lost ({:?}); hv2 moved {:?}",
        lost.error, done.vm
    ));
    std::thread::sleep(Duration::from_secs(4 * TICK_S));
    assert!(
        !run.audit()
            .iter()
            .any(|r| r.host == "hv1" && r.event == Event::Start),
        "the minority side started a migration:\n{}",
        run.audit_text()
    );

    // Healed: hv1 hears the others again and regains its quorum.
    cut(&run, 1, &[2, 3], true);
    cut(&run, 2, &[1], true);
    cut(&run, 3, &[1], true);
    run.say("healed");
    run.wait_for_record(Duration::from_secs(60), "hv1's quorum regained", |r| {
        r.host == "hv1" && r.event == Event::Quorum && r.outcome.as_deref() == Some("regained")
    });
    std::thread::sleep(Duration::from_secs(4 * TICK_S));
    let audit = run.audit();
    let starts = audit.iter().filter(|r| r.event == Event::Start).count();
    assert!(starts <= BUDGET, "{starts} starts:\n{}", run.audit_text());
    let p = run
        .bed
        .wait_for(Duration::from_secs(60), || {
            let p = run.placement()?;
            p.values().all(|h| h.len() == 1).then_some(p)
        })
        .unwrap_or_else(|| run.fail("a guest is not on exactly one host"));
    assert_eq!(p.len(), 4, "{p:?}");
    for i in 1..=3 {
        assert!(run.agent_running(i), "agent on hv{i} exited");
    }
}
