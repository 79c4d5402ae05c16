//! A policy written outside the balancer crates, run unchanged in the simulator and in an agent.
//!
//! `Gap` moves one VM per round from the most to the least loaded host while their CPU
//! utilisations differ by more than `gap`. It builds on the balancer's `Planner`, so every
//! gate of the policy file's `[planner]` section (cooldown, budget, hysteresis) and the hard
//! constraints hold for it as for the built-in policies.
//!
//! `cargo run -p balancer-agent --example my_policy` prints the simulator's report and the plan
//! an agent makes on a hot view. It lives in the agent's package, not the balancer's, because
//! only here are both crates one dependency each: a balancer example that depended on the
//! agent would get a second copy of the `Policy` trait (CONVENTIONS 17: no arrow back up).

use balancer_agent::balancer::constraints::{ConstraintConfig, Rules};
use balancer_agent::balancer::plan::{r6, Plan, Reason};
use balancer_agent::balancer::planner::{Input, MoveKind, Planner, PlannerConfig};
use balancer_agent::balancer::policy::{Policy, PolicySpec};
use balancer_agent::balancer::sim::{builtin_scenario, simulate_policy, Report, SimOptions};
use balancer_agent::core::AgentCore;
use balancer_agent::{AgentConfig, Mode};
use ganglia_wire::model::{Cluster, Host, Metric};

/// Moves one VM from the most to the least loaded host while they differ by more than `gap`.
pub struct Gap {
    /// Largest tolerated difference of CPU utilisation between two hosts.
    pub gap: f64,
    /// Gates of every move (cooldown, budget, hysteresis).
    pub planner: PlannerConfig,
    /// Hard constraints (memory, vCPU ratio, affinity, maintenance).
    pub constraints: ConstraintConfig,
}

impl Policy for Gap {
    fn name(&self) -> &str {
        "gap"
    }

    fn decide(&self, input: Input<'_>) -> Plan {
        let rules = Rules::resolve(&self.constraints, input.snapshot);
        let mut p = Planner::new(input, &rules, &self.planner);
        p.enforce_rules();
        let s = p.snap();
        let open: Vec<usize> = (0..s.hosts.len()).filter(|&h| p.fillable(h)).collect();
        // Ties are broken by index, so every host of the cluster picks the same pair.
        let by_util = |a: &usize, b: &usize| p.util(*a).total_cmp(&p.util(*b)).then(b.cmp(a));
        let hot = open.iter().copied().max_by(by_util);
        let cool = open.iter().copied().min_by(by_util);
        let (Some(hot), Some(cool)) = (hot, cool) else {
            return p.finish(self.name());
        };
        let (u_hot, u_cool) = (p.util(hot), p.util(cool));
        if !p.test(
            Some(hot),
            "cpu gap to the coolest host",
            u_hot - u_cool,
            ">",
            self.gap,
        ) {
            return p.finish(self.name());
        }
        p.qualify(Some(hot));
        // The VM whose move brings the pair closest to even, smallest index on a tie.
        let half = (u_hot - u_cool) / 2.0 * s.hosts[hot].cpu_mhz();
        let best = p.on_host[hot]
            .iter()
            .copied()
            .filter(|&v| !s.vms[v].migrating)
            .min_by(|&a, &b| {
                let off = |v: usize| (s.vms[v].cpu_demand_mhz - half).abs();
                off(a).total_cmp(&off(b)).then(a.cmp(&b))
            });
        if let Some(v) = best {
            let gain = s.vms[v].cpu_demand_mhz / s.hosts[hot].cpu_mhz();
            let reason = Reason::Threshold {
                host: s.hosts[hot].name.clone(),
                util: r6(u_hot),
                threshold: self.gap,
            };
            // Refusals are counted in the plan; nothing else to do with them here.
            let _ = p.try_move(v, cool, reason, gain, 1.0, MoveKind::Balance);
        }
        p.finish(self.name())
    }
}

/// The example's policy: a gap of 0.3 and the gates of the shipped `hotspot` file.
pub fn gap_policy() -> Result<Gap, Box<dyn std::error::Error>> {
    let spec = PolicySpec::builtin("hotspot")?;
    Ok(Gap {
        gap: 0.3,
        planner: spec.planner,
        constraints: spec.constraints,
    })
}

/// `Gap` over the built-in `hot-host` scenario.
pub fn simulate_gap() -> Result<Report, Box<dyn std::error::Error>> {
    let sc = builtin_scenario("hot-host", None, 1)?;
    Ok(simulate_policy(
        &sc,
        Box::new(gap_policy()?),
        &SimOptions::default(),
    )?)
}

/// One agent round with `Gap` on a view where h1 holds four busy VMs and h2, h3 are idle: the
/// plan the agent would carry out (it runs in `recommend` mode, so nothing is started).
pub fn agent_plan() -> Result<Plan, Box<dyn std::error::Error>> {
    let config = AgentConfig {
        mode: Mode::Recommend,
        trusted_hosts: vec!["h1".into(), "h2".into(), "h3".into()],
        ..Default::default()
    };
    // The spec gives the core its own cooldown gate; the policy decides.
    let spec = PolicySpec::builtin_for_cluster("hotspot")?;
    let mut core = AgentCore::with_policy("h1", config, spec, Box::new(gap_policy()?), 3)?;
    let busy = [("a", 95.0), ("b", 95.0), ("c", 95.0), ("d", 95.0)];
    let view = Cluster {
        name: "example".into(),
        hosts: vec![host("h1", &busy), host("h2", &[]), host("h3", &[])],
        ..Default::default()
    };
    let report = core.handle_view(&view, 1_000_000);
    report
        .plan
        .ok_or_else(|| "h1 did not lead the round".into())
}

/// A hypervisor of 4 x 1000 MHz and 16 GiB running a balancer in `recommend`, with one-vCPU
/// VMs of 512 MiB at the given utilisation (%).
fn host(name: &str, vms: &[(&str, f64)]) -> Host {
    let metric = |name: &str, val: String, ty: &str| Metric {
        name: name.into(),
        val,
        ty: ty.into(),
        tn: 1,
        tmax: 60,
        slope: "both".into(),
        ..Default::default()
    };
    let mut metrics = vec![
        metric("vnode_cpu_num", "4".into(), "uint16"),
        metric("vnode_cpu_speed", "1000".into(), "uint32"),
        metric("vnode_mem_total", "16777216".into(), "float"),
        metric("balancer_mode", "recommend".into(), "string"),
    ];
    for (vm, util) in vms {
        metrics.push(metric(&format!("{vm}.vcpu_num"), "1".into(), "uint16"));
        metrics.push(metric(
            &format!("{vm}.vcpu_util"),
            format!("{util}"),
            "float",
        ));
        metrics.push(metric(
            &format!("{vm}.vmem_total"),
            "524288".into(),
            "float",
        ));
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

#[allow(dead_code)] // The integration test includes this file for its functions, not `main`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = simulate_gap()?;
    println!(
        "simulator, {} under {}: {} migrations, {:.0} s of overload",
        report.scenario, report.policy, report.migrations, report.overload_host_s
    );
    let plan = agent_plan()?;
    for m in &plan.moves {
        println!("agent on h1: move {} from {} to {}", m.vm, m.from, m.to);
    }
    Ok(())
}
