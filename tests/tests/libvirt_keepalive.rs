//! Issue 14: a hung libvirtd must not hang its clients forever. A control connection is opened
//! to a testbed host's libvirtd, the daemon is stopped with SIGSTOP (it neither answers nor
//! closes the socket), and a call made on the connection must fail within libvirt's keepalive
//! bound (`KEEPALIVE_INTERVAL_S * (KEEPALIVE_COUNT + 1)`, 20 s) rather than block: before
//! keepalive it blocked until the daemon came back. The daemon is resumed at the end.
//! Needs what `vm_metrics_qemu.rs` needs (root, libvirt-daemon with the QEMU driver).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gmond_metrics::hypervisor::libvirt::{
    LibvirtControl, Presence, KEEPALIVE_COUNT, KEEPALIVE_INTERVAL_S,
};
use integration_tests::lvt::Testbed;
use integration_tests::ResumeOnDrop;
use std::time::{Duration, Instant};

#[test]
fn a_call_to_a_stopped_libvirtd_fails_within_the_keepalive_bound() {
    let bed = Testbed::new(1);
    let uri = bed.local_uri(1);
    let ctl = LibvirtControl::open(&uri).unwrap();
    assert_eq!(ctl.presence("no-such-guest").unwrap(), Presence::Absent);

    let pid = bed.libvirtd_pid(1);
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _resume = ResumeOnDrop(pid);

    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = ctl.presence("no-such-guest");
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let bound = Duration::from_secs(KEEPALIVE_INTERVAL_S as u64 * (u64::from(KEEPALIVE_COUNT) + 1));
    // The bound plus slack for a loaded machine; without keepalive nothing comes at all.
    let outcome = rx.recv_timeout(bound * 3).unwrap_or_else(|_| {
        panic!(
            "the call to a stopped libvirtd still blocks after {:?}",
            bound * 3
        )
    });
    let err = outcome.expect_err("a stopped daemon cannot answer");
    eprintln!("failed after {:?}: {err}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(KEEPALIVE_INTERVAL_S as u64));
}
