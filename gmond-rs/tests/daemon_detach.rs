//! Running without `-f` and with `daemonize = yes`: gmond-rs detaches as gmond does (the
//! command returns, the pid file names the background process, which serves XML), and a
//! channel that cannot be bound is still reported to the caller before detaching. 127.0.0.1
//! only, with `mute = yes` (nothing is sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::{free_port, poll_for, poll_until, read_xml, TempDir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(udp: u16, tcp: u16) -> String {
    format!(
        "globals {{ daemonize = yes setuid = no mute = yes host_dmax = 0 }}\n\
         cluster {{ name = \"detached\" }}\n\
         udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
         tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n"
    )
}

/// Kills the background daemon (by the PID its pid file named) even when the test fails.
struct Background(Option<u32>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn without_f_it_detaches_writes_its_pid_and_serves() {
    let dir = TempDir::new("detach");
    let (udp, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, config(udp, tcp)).unwrap();
    let pid_file = dir.path().join("gmond-rs.pid");
    let mut guard = Background(None);

    // The command itself returns, successfully (a daemon that stayed in the foreground
    // would still be running at the deadline).
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gmond-rs"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = poll_for(Duration::from_secs(20), || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "gmond-rs without -f did not return with success: {status:?} {stderr}"
    );

    // The pid file names a live process other than the one we started, in its own session.
    let pid: u32 = poll_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    guard.0 = Some(pid);
    assert!(alive(pid), "pid file names {pid}, which is not running");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields after the command: state, ppid, pgrp, session.
    assert_eq!(fields[3], pid.to_string(), "not a session leader: {stat}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );

    // It serves the cluster's XML on the configured port.
    let xml = poll_until(Duration::from_secs(20), || read_xml(tcp));
    let text = String::from_utf8_lossy(&xml);
    assert!(text.contains("<CLUSTER NAME=\"detached\""), "{text}");

    // Stopped by that PID, it exits and removes its pid file.
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    poll_until(Duration::from_secs(20), || (!alive(pid)).then_some(()));
    guard.0 = None;
    poll_until(Duration::from_secs(5), || {
        (!pid_file.exists()).then_some(())
    });
}

#[test]
fn a_channel_that_cannot_be_bound_is_reported_before_detaching() {
    let dir = TempDir::new("detach-busy");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = busy.local_addr().unwrap().port();
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, config(free_port(), tcp)).unwrap();
    let pid_file = dir.path().join("gmond-rs.pid");
    let out = Command::new(env!("CARGO_BIN_EXE_gmond-rs"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a busy port: {stderr}");
    assert!(stderr.contains("tcp_accept_channel"), "{stderr}");
    assert!(!pid_file.exists(), "no daemon, so no pid file");
}
