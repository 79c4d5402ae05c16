//! A caller's own `Box<dyn Policy>` runs in the simulator and in the agent's core: the test
//! runs what examples/my_policy.rs shows, from that very file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/my_policy.rs"]
mod my_policy;

use balancer_agent::balancer::policy::PolicySpec;
use balancer_agent::balancer::sim::{builtin_scenario, simulate, simulate_policy, SimOptions};

/// In the simulator the example's policy relieves the hot host of `hot-host`, and the report
/// carries its name.
#[test]
fn the_example_policy_runs_in_the_simulator() {
    let r = my_policy::simulate_gap().unwrap();
    assert_eq!(r.policy, "gap");
    assert!(r.migrations > 0, "{r:?}");
    let none = simulate(
        &builtin_scenario("hot-host", None, 1).unwrap(),
        &PolicySpec::builtin("none").unwrap(),
        &SimOptions::default(),
    )
    .unwrap();
    assert!(
        r.overload_host_s < none.overload_host_s,
        "gap {} none {}",
        r.overload_host_s,
        none.overload_host_s
    );
}

/// Through an `AgentCore` on a view, the example's policy plans its one move off the hot host,
/// and the plan is its own.
#[test]
fn the_example_policy_decides_in_the_agent() {
    let plan = my_policy::agent_plan().unwrap();
    assert_eq!(plan.policy, "gap");
    assert_eq!(plan.moves.len(), 1, "{plan:?}");
    assert_eq!(plan.moves[0].from, "h1");
}

/// A built-in policy passed as a `Box<dyn Policy>` gives the very report its file gives: the
/// two entry points share one engine.
#[test]
fn a_built_policy_simulates_as_its_spec() {
    let sc = builtin_scenario("hot-host", None, 1).unwrap();
    let spec = PolicySpec::builtin("hotspot").unwrap();
    let by_spec = simulate(&sc, &spec, &SimOptions::default()).unwrap();
    let by_box = simulate_policy(&sc, spec.build(), &SimOptions::default()).unwrap();
    assert_eq!(by_spec.deterministic(), by_box.deterministic());
}

/// A core restored from its state file keeps deciding with the caller's policy; a reload with
/// a policy file (here a composed one) replaces it with the file's.
#[test]
fn own_policy_survives_restore_and_yields_to_a_reloaded_file() {
    use balancer_agent::core::AgentCore;
    use balancer_agent::{AgentConfig, Mode};
    let config = || AgentConfig {
        mode: Mode::Recommend,
        trusted_hosts: vec!["h1".into()],
        ..Default::default()
    };
    let spec = || PolicySpec::builtin_for_cluster("hotspot").unwrap();
    let gap = || Box::new(my_policy::gap_policy().unwrap());
    let core = AgentCore::with_policy("h1", config(), spec(), gap(), 3).unwrap();
    let mut core =
        AgentCore::restore_with_policy("h1", config(), spec(), gap(), 3, core.state()).unwrap();
    assert_eq!(core.policy_name(), "gap");
    let composed = "policy = \"composed\"\n[detector]\nkind = \"k_of_n\"\n\
                    [selector]\nkind = \"vsr\"\n[placement]\nkind = \"pabfd\"\n";
    core.reload_policy(composed, 1_000_000).unwrap();
    assert_eq!(core.policy_name(), "composed");
    assert_eq!(core.policy().policy, "composed");
    // A wrong part is refused with its key, and the composed policy stays.
    let e = core
        .reload_policy(&composed.replace("pabfd", "first_fit"), 1_000_010)
        .unwrap_err();
    assert!(e.to_string().contains("placement.kind"), "{e}");
    assert_eq!(core.policy_name(), "composed");
}
