//! `balancer plan --feed` reads a live cluster: a simulation-only policy is refused before
//! anything is fetched (issue 15); `simulate` refuses it through the agent's gates, as the
//! agent would, and runs it with `--no-agent-gates`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn plan_feed_and_gated_simulate_refuse_a_simulation_only_policy_the_policy_alone_takes_it() {
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
    // Through the agent's gates (the default), simulate refuses it as the agent would...
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "anti-affinity", "--json"])
        .args(["--policy", "consolidate-aggressive"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains("is for simulation only") && err.contains("--no-agent-gates"),
        "{err}"
    );
    // ...and the policy alone takes it.
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .args(["simulate", "--scenario", "anti-affinity", "--json"])
        .args(["--policy", "consolidate-aggressive", "--no-agent-gates"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
