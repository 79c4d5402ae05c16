//! Issue 14: what a forger on the multicast segment can no longer make the balancer do, on
//! real QEMU. Three hosts of the `tests/libvirt` testbed with gmond-rs and an agent in auto
//! mode each (inventory hv1, hv2, hv3); hv1 runs one busy guest, not enough to be hot. From
//! inside hv3's network namespace, real `gmetric` keeps announcing (spoofing, as anyone on
//! the segment may):
//!
//! * a host `6.6.6.6:hv2`: the trusted name hv2 from a second address, advertising 64 CPUs
//!   and 64 GiB, the ideal destination. Before, the view's address went into the libvirt URI
//!   and the first host of that name won;
//! * a ghost VM on hv1 (`10.77.0.1:hv1`, `ghost.vcpu_*`) whose load makes hv1 hot, and that
//!   the policy picks to move.
//!
//! Then: hv2 is in conflict (neither source nor destination), with an audit line saying so
//! and naming the forged address; the ghost's move is refused by the hypervisor pre-check
//! (it is not on hv1) and uses no budget: no migration starts at all, and libvirt shows every
//! guest where it was. Needs what `balancer_live_qemu.rs` needs, plus gmetric.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agentbed;

use agentbed::{policy_between, AgentBed, LEADER_TIMEOUT_S, TICK_S};
use balancer_agent::audit::Event;
use integration_tests::lvt::{Guest, GMOND_PORT};
use integration_tests::require_program;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

/// The busy guest's vCPU cap, % of a host core.
const QUOTA_PCT: u32 = 10;

fn agent_toml(bed: &AgentBed, i: usize, policy: &Path) -> String {
    format!(
        "mode = \"auto\"\npolicy = \"{}\"\ninterval_s = {TICK_S}\nfeed = \"127.0.0.1:{GMOND_PORT}\"\n\
         uri_template = \"qemu+tcp://{{host}}/system\"\ntrusted_hosts = [\"hv1\", \"hv2\", \"hv3\"]\n\
         leader_timeout_s = {LEADER_TIMEOUT_S}\nbudget_migrations = 6\nbudget_window_s = 3600\n\
         max_parallel = 2\nmigration_timeout_s = 60\nobserve_after_s = 10\naudit_log = \"{}\"\n\
         metric_tmax_s = 20\nmetric_dmax_s = 600\n\n[migration]\nlive = true\np2p = true\n\
         persistent = true\nundefine_source = true\n",
        policy.display(),
        bed.audit[i - 1].display()
    )
}

#[test]
fn a_forged_destination_and_a_ghost_vm_move_nothing() {
    let gmetric = require_program("gmetric", "ganglia-monitor");
    let mut run = AgentBed::new(3, |bed| {
        bed.guest(1, "plain", Guest::Busy, 48, 1, Some(QUOTA_PCT));
    });
    run.say("testbed up");
    let cpus = run.wait_for_load(&["plain"], QUOTA_PCT);
    // Hot above two busy guests' worth less half a guest: the real guest alone is not hot;
    // with the ghost's forged load it is, and the ghost alone would fit any empty host.
    let q = f64::from(QUOTA_PCT) / 100.0;
    let (policy, threshold) = policy_between(q, cpus, 1.5, 2.5);
    let ghost_host_share = threshold - 0.4 * q / cpus;
    let ghost_util_pct = 100.0 * ghost_host_share * cpus;
    let path = run.bed.dir().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    for i in 1..=3 {
        run.write_agent_config(i, &agent_toml(&run, i, &path));
        run.start_agent(i);
    }
    let before = run.placement().expect("every libvirtd answers");
    run.say(&format!(
        "agents in auto, threshold {threshold:.3}; ghost at {ghost_util_pct:.1} % of 1 vCPU"
    ));

    // The forger: gmetric from hv3's namespace, on the testbed's multicast channel, every
    // second (killed with the testbed's processes).
    let conf = run.bed.dir().join("gmond-hv3.conf");
    let g = |spoof: &str, name: &str, val: &str, ty: &str| {
        format!(
            "{} -c {} -S {spoof} -n {name} -v {val} -t {ty} -x 60 -d 0",
            gmetric.display(),
            conf.display()
        )
    };
    let script = [
        g("6.6.6.6:hv2", "vnode_cpu_num", "64", "uint16"),
        g("6.6.6.6:hv2", "vnode_cpu_speed", "3000", "uint32"),
        g("6.6.6.6:hv2", "vnode_mem_total", "67108864", "float"),
        g("10.77.0.1:hv1", "ghost.vcpu_num", "1", "uint16"),
        g("10.77.0.1:hv1", "ghost.vmem_total", "16384", "float"),
        g(
            "10.77.0.1:hv1",
            "ghost.vcpu_util",
            &format!("{ghost_util_pct:.2}"),
            "float",
        ),
    ]
    .join(" && ");
    let _forger = run.bed.spawn(
        3,
        "forger",
        Path::new("/bin/bash"),
        &[
            OsStr::new("-c"),
            OsStr::new(&format!("while true; do {script}; sleep 1; done")),
        ],
    );

    // hv2 is in conflict, said in the audit with the forged address.
    let conflict = run.wait_for_record(Duration::from_secs(60), "name conflict line", |r| {
        r.event == Event::NameConflict && r.outcome.as_deref() == Some("excluded")
    });
    let why = conflict.error.clone().unwrap_or_default();
    assert!(
        why.contains("hv2") && why.contains("6.6.6.6"),
        "the conflict line names the host and the forged address: {why}"
    );
    // The ghost is planned and refused by the pre-check: nothing starts.
    let refused = run.wait_for_record(Duration::from_secs(60), "the ghost's refused move", |r| {
        r.event == Event::Skipped
            && r.vm.as_deref() == Some("ghost")
            && r.outcome.as_deref() == Some("refused")
    });
    run.say(&format!(
        "ghost refused: {:?} -> {:?}: {:?}",
        refused.from, refused.to, refused.error
    ));
    assert_ne!(refused.to.as_deref(), Some("hv2"), "hv2 is in conflict");
    // A few more rounds of forging: still nothing starts.
    std::thread::sleep(Duration::from_secs(6 * TICK_S));
    let audit = run.audit();
    let starts: Vec<_> = audit.iter().filter(|r| r.event == Event::Start).collect();
    assert!(
        starts.is_empty(),
        "a migration started:\n{}",
        run.audit_text()
    );
    assert!(
        !audit.iter().any(|r| r.to.as_deref() == Some("hv2")
            && matches!(r.event, Event::Recommend | Event::Start)),
        "hv2 was a destination:\n{}",
        run.audit_text()
    );
    assert_eq!(
        run.placement().expect("every libvirtd answers"),
        before,
        "a guest moved"
    );
    for i in 1..=3 {
        assert!(run.agent_running(i), "agent on hv{i} exited");
    }
}
