//! Per-VM metrics from real QEMU guests under a real libvirtd (issue 4), on the hypervisor
//! testbed of `tests/libvirt` (`integration_tests::lvt`): gmond-rs with `libvirt_module` runs
//! on host hv1 in its namespaces, multicasting on the testbed bridge; a busy guest reports far
//! higher `vcpu_util` than an idle one; a second gmond-rs on hv2 shows hv1's VM metrics; and a
//! libvirtd restart under gmond-rs is logged once, crashes nothing, and metrics resume alone;
//! a guest migrated away in the middle of a collection round breaks nothing.
//!
//! Needs root, cgroup v1 `cpu`/`cpuacct`, and Debian's libvirt-daemon,
//! libvirt-daemon-driver-qemu, libvirt-clients and qemu-system-x86; fails (never skips) without.
//! Set `LVT_DUMP_LOGS=1` to see every daemon's log, `RUST_LOG=debug` for gmond-rs's detail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::Host;
use ganglia_wire::xml::read_document;
use integration_tests::lvt::{gmond_conf, Guest, Testbed, GMOND_PORT as PORT};
use integration_tests::Proc;
use std::ffi::OsStr;

use std::time::Duration;

/// How long a host's view may take to show something it is waiting for (generous: the
/// machine has 2 cores, shared with builds).
const WAIT: Duration = Duration::from_secs(90);

/// Starts gmond-rs on host `i` with `conf`.
fn start_gmond(bed: &Testbed, i: usize, conf: &str) -> Proc {
    let path = bed.dir().join(format!("gmond-hv{i}.conf"));
    std::fs::write(&path, conf).unwrap();
    bed.spawn_env(
        i,
        &format!("gmond-hv{i}"),
        integration_tests::bin("gmond-rs"),
        &[OsStr::new("-c"), path.as_os_str()],
        &[(
            "RUST_LOG",
            &std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )],
    )
}

/// Host `name` as host `i`'s gmond-rs serves it, when it is there.
fn host_in_view(bed: &Testbed, i: usize, name: &str) -> Option<Host> {
    let doc = read_document(&bed.read_xml(i, PORT)?).ok()?;
    doc.clusters
        .into_iter()
        .flat_map(|c| c.hosts)
        .find(|h| h.name == name)
}

fn val(h: &Host, m: &str) -> Option<f64> {
    h.metric(m)?.val.trim().parse().ok()
}

#[test]
fn busy_guest_outweighs_idle_one_and_shows_on_another_host_over_multicast() {
    let bed = Testbed::new(2);
    // One spinning guest capped at a fifth of a core and one that halts. A small cap holds
    // even when builds load the machine (CFS gives each runnable thread more than 20 %), so
    // the busy guest's reading is its cap, not the machine's contention.
    bed.guest(1, "busy1", Guest::Busy, 16, 1, Some(20));
    bed.guest(1, "idle1", Guest::Idle, 32, 2, None);
    let mut g1 = start_gmond(&bed, 1, &gmond_conf(true, 2));
    let mut g2 = start_gmond(&bed, 2, &gmond_conf(false, 2));

    // hv2 hears hv1's VM metrics over multicast; CPU % needs two rounds of hv1's collector.
    let seen = bed.wait_for(WAIT, || {
        let h = host_in_view(&bed, 2, "hv1")?;
        (val(&h, "busy1.vcpu_util").is_some() && val(&h, "idle1.vcpu_util").is_some()).then_some(h)
    });
    let Some(first) = seen else {
        bed.dump_logs();
        panic!(
            "hv2 never showed hv1's vcpu_util; hv2 sees hv1 as {:?}",
            host_in_view(&bed, 2, "hv1").map(|h| h
                .metrics
                .into_iter()
                .map(|m| m.name)
                .collect::<Vec<_>>())
        );
    };
    assert!(g1.running() && g2.running(), "a gmond-rs exited");
    // A later round than the first one with a CPU %, whose interval may straddle start-up.
    let later = bed
        .wait_for(WAIT, || {
            let h = host_in_view(&bed, 2, "hv1")?;
            let changed = h.metric("busy1.vcpu_util")?.val != first.metric("busy1.vcpu_util")?.val;
            changed.then_some(h)
        })
        .expect("busy1.vcpu_util never refreshed on hv2");
    let busy = val(&later, "busy1.vcpu_util").unwrap();
    let idle = val(&later, "idle1.vcpu_util").unwrap();
    eprintln!("hv2's view of hv1: busy1.vcpu_util = {busy} %, idle1.vcpu_util = {idle} %");
    assert!(busy >= 10.0, "busy guest (cap 20 %) at {busy} %");
    assert!(busy <= 25.0, "busy guest above its 20 % cap: {busy} %");
    assert!(idle < 5.0, "idle guest at {idle} %");
    assert!(
        busy > 10.0 * idle.max(0.1),
        "busy {busy} % vs idle {idle} %"
    );

    // The rest of the convention, as hv2 received it, agrees with libvirt's definitions.
    assert_eq!(val(&later, "busy1.vcpu_num"), Some(1.0));
    assert_eq!(val(&later, "idle1.vcpu_num"), Some(2.0));
    assert_eq!(later.metric("busy1.vcpu_state").unwrap().val, "running");
    assert_eq!(val(&later, "idle1.vmem_total"), Some(32.0 * 1024.0));
    assert_eq!(val(&later, "vnode_domains"), Some(2.0));
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    assert_eq!(val(&later, "vnode_cpu_num"), Some(cpus as f64));
    let m = later.metric("busy1.vcpu_util").unwrap();
    assert_eq!((m.tmax, m.dmax), (60, 600));
    let uuid = bed.virsh(1, &["domuuid", "busy1"]);
    assert_eq!(
        m.extra("VM_UUID"),
        Some(String::from_utf8_lossy(&uuid.stdout).trim()),
        "VM_UUID is libvirt's domain UUID"
    );
    // hv2 itself runs no libvirt module: no VM metrics appear under its own name.
    let own = host_in_view(&bed, 2, "hv2").expect("hv2 in its own view");
    assert!(
        !own.metrics.iter().any(|m| m.name.contains("vcpu")),
        "hv2 publishes VM metrics it does not have"
    );
    // hv1's own view carries the same VM metrics under the same host.
    let mine = host_in_view(&bed, 1, "hv1").expect("hv1 in its own view");
    assert!(mine.metric("busy1.vcpu_util").is_some() && mine.metric("idle1.vmem_total").is_some());
    assert!(g1.running() && g2.running(), "a gmond-rs exited");
}

#[test]
fn libvirtd_restart_is_logged_once_and_metrics_resume_by_themselves() {
    let bed = Testbed::new(1);
    bed.guest(1, "idle1", Guest::Idle, 16, 1, None);
    let mut g = start_gmond(&bed, 1, &gmond_conf(true, 1));
    let up = bed.wait_for(WAIT, || {
        host_in_view(&bed, 1, "hv1").filter(|h| h.metric("idle1.vcpu_state").is_some())
    });
    if up.is_none() {
        bed.dump_logs();
        panic!("idle1 never appeared in hv1's view");
    }

    // libvirtd away for a few collection rounds, then back.
    bed.restart_libvirtd(1, Duration::from_secs(4));
    assert!(
        g.running(),
        "gmond-rs died with libvirtd:\n{}",
        bed.log("gmond-hv1")
    );
    // A guest started after the restart can only show up if collection resumed on its own.
    bed.guest(1, "fresh1", Guest::Idle, 16, 1, None);
    let back = bed.wait_for(WAIT, || {
        let h = host_in_view(&bed, 1, "hv1")?;
        (h.metric("fresh1.vcpu_state").is_some() && h.metric("fresh1.vcpu_util").is_some())
            .then_some(h)
    });
    let log = bed.log("gmond-hv1");
    assert!(
        back.is_some(),
        "VM metrics did not resume after libvirtd's restart:\n{log}"
    );
    assert_eq!(val(&back.unwrap(), "vnode_domains"), Some(2.0));
    assert!(g.running(), "gmond-rs exited:\n{log}");
    // One clear line when the outage starts, one when it ends; retries stay out of the log.
    let down = log.matches("hypervisor unreachable").count();
    let again = log.matches("hypervisor reachable again").count();
    assert_eq!(
        (down, again),
        (1, 1),
        "outage lines in gmond-rs's log:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn guest_migrated_away_mid_round_costs_nothing_and_the_next_round_is_exact() {
    use gmond_metrics::hypervisor::libvirt::LibvirtSession;
    use gmond_metrics::hypervisor::Hypervisor;
    use std::sync::atomic::{AtomicBool, Ordering};

    let bed = Testbed::new(2);
    bed.guest(1, "stay1", Guest::Idle, 16, 1, None);
    bed.guest(1, "leave1", Guest::Idle, 16, 1, None);
    let mut s = LibvirtSession::open_read_only(&bed.local_uri(1)).unwrap();
    // Between the bulk listing and the per-domain calls, a live migration takes leave1 to
    // hv2 (as a balancer would), through hv1's libvirtd (peer to peer over the testbed).
    let (src, dst) = (bed.local_uri(1), bed.tcp_uri(2));
    let once = AtomicBool::new(false);
    s.set_after_list_hook(move |_| {
        if once.swap(true, Ordering::SeqCst) {
            return;
        }
        let out = std::process::Command::new("virsh")
            .args(["-q", "-c", &src, "migrate", "--live", "--p2p"])
            .args(["--persistent", "--undefinesource", "leave1", &dst])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let first = s
        .domains()
        .expect("a round with a domain leaving mid-way still succeeds");
    let names: Vec<&str> = first.iter().map(|d| d.name.as_str()).collect();
    assert!(names.contains(&"stay1"), "{names:?}");
    // leave1 is either reported from the listing's snapshot or skipped as vanished; never
    // both, never an error.
    let reported = names.contains(&"leave1");
    eprintln!("round with the migration: {names:?}");
    assert_eq!(
        s.domains_vanished_total() + s.domains_failed_total(),
        u64::from(!reported),
        "{names:?}"
    );
    assert_eq!(bed.running(2).unwrap(), ["leave1"]);
    let next = s.domains().unwrap();
    let names: Vec<&str> = next.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["stay1"], "hv1 still lists a guest that left");
    let there = LibvirtSession::open_read_only(&bed.local_uri(2)).unwrap();
    let names: Vec<String> = there
        .domains()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["leave1"]);
}
