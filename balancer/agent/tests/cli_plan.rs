//! `balancer plan --feed` reads a live cluster: a simulation-only policy is refused before
//! anything is fetched (issue 15), while `simulate` still runs it.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn plan_feed_refuses_a_simulation_only_policy_and_simulate_takes_it() {
    // Port 9 on loopback: nothing is read, the policy check comes first.
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args([
            "plan",
            "--feed",
            "127.0.0.1:9",
            "--policy",
            "consolidate-aggressive",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains("\"consolidate\" is for simulation only: constraints.check_memory = false"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "anti-affinity", "--json"])
        .args(["--policy", "consolidate-aggressive"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
