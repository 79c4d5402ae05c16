//! The policy trait, the policy file format (TOML) and the built-in policies.
//!
//! A policy is a pure function of ([`Input`], its config): no I/O, no clock, no randomness,
//! no hash-map iteration in anything that reaches the plan, so every host computes the same
//! plan from the same snapshot.

mod composed;
mod consolidate;
mod hotspot;
mod naive;
mod select;
mod stabilize;

use serde::{Deserialize, Serialize};

pub use composed::{Part, DETECTORS, PLACEMENTS, SELECTORS};
pub use consolidate::{ConsolidateParams, Detector, Selection};
pub use hotspot::HotspotParams;
pub use naive::NaiveParams;
pub use stabilize::StabilizeParams;

use crate::constraints::{ConstraintConfig, Rules};
use crate::error::{BalancerError, Result};
use crate::plan::Plan;
use crate::planner::{Input, Planner, PlannerConfig};
use crate::trends::TrendConfig;

/// A balancing policy: the simulator ([`crate::sim::simulate_policy`]) and the agent
/// (`AgentCore::with_policy`) run any implementation, so a caller's own policy needs no change
/// to this crate. The built-in ones come from [`PolicySpec::build`].
pub trait Policy: Send + Sync {
    /// Policy name as used in files and reports.
    fn name(&self) -> &str;
    /// Decides a plan. Pure and deterministic: every host of a cluster must reach the same
    /// plan from the same input (CONVENTIONS 3).
    fn decide(&self, input: Input<'_>) -> Plan;
    /// The load histories the caller keeps for [`Input::trends`]: samples of `step_s`, as
    /// many as the longest window needs. The default, 30 samples of 60 s, suits a policy
    /// that looks at half an hour or less.
    fn trend_config(&self) -> TrendConfig {
        TrendConfig {
            capacity: 30,
            step_s: 60,
            ..TrendConfig::default()
        }
    }
}

/// A policy file: which policy, its parameters, the planner limits and the constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// One of `none`, `naive-threshold`, `hotspot`, `stabilize`, `consolidate`, or
    /// `composed` (parts named in `detector`, `selector` and `placement`).
    pub policy: String,
    /// The file is meant for the simulator only (default false). Settings that let moves break
    /// a real host make a spec simulation-only whatever this says; see
    /// [`PolicySpec::simulation_only_reason`].
    #[serde(default)]
    pub simulation_only: bool,
    /// Seconds per sample of the load histories the policy reads (default 60): observations
    /// are averaged into steps of this length whatever their period, and every window of the
    /// policy is in seconds, so a decision does not depend on how often the cluster is read.
    /// Default: 300 for `consolidate` (CloudSim's sample period, which its detectors' windows
    /// come from), 60 for the others.
    #[serde(default)]
    pub step_s: Option<u64>,
    /// Planner limits and gates.
    #[serde(default)]
    pub planner: PlannerConfig,
    /// Hard constraints.
    #[serde(default)]
    pub constraints: ConstraintConfig,
    /// `naive-threshold` parameters.
    #[serde(default)]
    pub naive: NaiveParams,
    /// `hotspot` parameters.
    #[serde(default)]
    pub hotspot: HotspotParams,
    /// `stabilize` parameters.
    #[serde(default)]
    pub stabilize: StabilizeParams,
    /// `consolidate` parameters.
    #[serde(default)]
    pub consolidate: ConsolidateParams,
    /// `composed`: which hosts need relief ([`DETECTORS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Part>,
    /// `composed`: which of their VMs go first ([`SELECTORS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Part>,
    /// `composed`: where they go ([`PLACEMENTS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Part>,
}

/// Most samples a policy window may span (bounds the history kept per VM).
pub const MAX_WINDOW_SAMPLES: u64 = 240;

/// Names of the built-in policies.
pub const BUILTIN: [&str; 5] = [
    "none",
    "naive-threshold",
    "hotspot",
    "stabilize",
    "consolidate",
];

/// The shipped policy files (configs/policies/), compiled in so that a name alone works.
pub fn builtin_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "none" => include_str!("../../../configs/policies/none.toml"),
        "naive-threshold" => include_str!("../../../configs/policies/naive-threshold.toml"),
        "hotspot" => include_str!("../../../configs/policies/hotspot.toml"),
        "stabilize" => include_str!("../../../configs/policies/stabilize.toml"),
        "consolidate" => include_str!("../../../configs/policies/consolidate.toml"),
        "consolidate-aggressive" => {
            include_str!("../../../configs/policies/consolidate-aggressive.toml")
        }
        "thr-mmt-0.8" => include_str!("../../../configs/policies/thr-mmt-0.8.toml"),
        "iqr-mmt-1.5" => include_str!("../../../configs/policies/iqr-mmt-1.5.toml"),
        "mad-mmt-2.5" => include_str!("../../../configs/policies/mad-mmt-2.5.toml"),
        "lr-mmt-1.2" => include_str!("../../../configs/policies/lr-mmt-1.2.toml"),
        "hotspot-pabfd" => include_str!("../../../configs/policies/hotspot-pabfd.toml"),
        _ => return None,
    })
}

impl PolicySpec {
    /// Parses and validates a policy file.
    pub fn parse(text: &str) -> Result<PolicySpec> {
        let spec: PolicySpec =
            toml::from_str(text).map_err(|e| BalancerError::Config(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// A shipped policy by name (see [`builtin_file`]).
    pub fn builtin(name: &str) -> Result<PolicySpec> {
        let text = builtin_file(name)
            .ok_or_else(|| BalancerError::Config(format!("unknown policy {name:?}")))?;
        PolicySpec::parse(text)
    }

    /// Range checks of every section.
    pub fn validate(&self) -> Result<()> {
        if self.policy == "composed" {
            composed::Composition::of(self)?;
        } else if !BUILTIN.contains(&self.policy.as_str()) {
            return Err(BalancerError::Config(format!(
                "unknown policy {:?}",
                self.policy
            )));
        } else {
            // A part section under another policy would be silently ignored: say so instead.
            let parts = [
                ("detector", &self.detector),
                ("selector", &self.selector),
                ("placement", &self.placement),
            ];
            if let Some((key, _)) = parts.iter().find(|(_, p)| p.is_some()) {
                return Err(BalancerError::Config(format!(
                    "[{key}] is only read with policy = \"composed\" (this file: {:?})",
                    self.policy
                )));
            }
        }
        if !(1..=3600).contains(&self.step_s()) {
            return Err(BalancerError::config("step_s must be in 1..=3600"));
        }
        if self.reads_consolidate() {
            self.consolidate.validate_step(self.step_s())?;
        }
        if let Some(w) = self.longest_window_s() {
            if w.div_ceil(self.step_s()) > MAX_WINDOW_SAMPLES {
                return Err(BalancerError::Config(format!(
                    "a window of {w} s is more than {MAX_WINDOW_SAMPLES} steps of {} s",
                    self.step_s()
                )));
            }
        }
        self.planner.validate()?;
        self.constraints.validate()?;
        self.naive.validate()?;
        self.hotspot.validate()?;
        self.stabilize.validate()?;
        self.consolidate.validate()?;
        Ok(())
    }

    /// Why this spec must not drive a real cluster, if it must not: memory not checked (moves
    /// overfill hosts, which a hypervisor refuses or swaps), CloudSim's literal round (a VM
    /// planned twice in one round), or the file says `simulation_only = true`.
    pub fn simulation_only_reason(&self) -> Option<&'static str> {
        if !self.constraints.check_memory {
            Some("constraints.check_memory = false lets moves overfill host memory")
        } else if self.consolidate.cloudsim_quirks {
            Some("consolidate.cloudsim_quirks = true plans a VM twice in one round")
        } else if self.simulation_only {
            Some("the file says simulation_only = true")
        } else {
            None
        }
    }

    /// The spec, if it may drive a real cluster (an agent, `balancer plan --feed`); else a
    /// `Config` error naming the setting. The simulator takes any spec.
    pub fn for_cluster(self) -> Result<PolicySpec> {
        match self.simulation_only_reason() {
            None => Ok(self),
            Some(why) => Err(BalancerError::Config(format!(
                "policy {:?} is for simulation only: {why}",
                self.policy
            ))),
        }
    }

    /// [`PolicySpec::parse`], refusing simulation-only specs ([`PolicySpec::for_cluster`]).
    pub fn parse_for_cluster(text: &str) -> Result<PolicySpec> {
        PolicySpec::parse(text)?.for_cluster()
    }

    /// [`PolicySpec::builtin`], refusing simulation-only specs ([`PolicySpec::for_cluster`]).
    pub fn builtin_for_cluster(name: &str) -> Result<PolicySpec> {
        PolicySpec::builtin(name)?.for_cluster()
    }

    /// Seconds per sample of the policy's histories (see the `step_s` field).
    pub fn step_s(&self) -> u64 {
        // Consolidate's detectors (also in a composition) have CloudSim's windows.
        let consolidate = self.policy == "consolidate" || self.beloglazov_detector().is_some();
        self.step_s.unwrap_or(if consolidate { 300 } else { 60 })
    }

    /// The Beloglazov detector deciding which hosts are overloaded, for `consolidate` and a
    /// composition with one; `None` for every other policy.
    pub fn beloglazov_detector(&self) -> Option<Detector> {
        match self.policy.as_str() {
            "consolidate" => Some(self.consolidate.detector),
            "composed" => composed::Composition::of(self)
                .ok()
                .and_then(|c| c.beloglazov()),
            _ => None,
        }
    }

    /// Whether `[consolidate]`'s history windows are read: by consolidate, and by a
    /// composition with one of its detectors.
    fn reads_consolidate(&self) -> bool {
        self.beloglazov_detector().is_some()
    }

    /// The longest window of the policy's own section, seconds.
    fn longest_window_s(&self) -> Option<u64> {
        match self.policy.as_str() {
            "hotspot" => Some(self.hotspot.window_s.max(self.hotspot.trend_window_s)),
            "stabilize" => Some(self.stabilize.window_s),
            "consolidate" => Some(self.consolidate.longest_window_s()),
            "composed" => composed::Composition::of(self)
                .ok()
                .map(|c| c.longest_window_s(self)),
            _ => None,
        }
    }

    /// The load histories this policy needs: samples of `step_s`, enough of them for its
    /// longest window and at least CloudSim's 30.
    pub fn trend_config(&self) -> TrendConfig {
        let longest = self.longest_window_s().unwrap_or(0);
        let step = self.step_s().max(1);
        let samples = longest.div_ceil(step).min(MAX_WINDOW_SAMPLES);
        TrendConfig {
            capacity: usize::try_from(samples.max(30)).unwrap_or(30),
            step_s: step,
            ..TrendConfig::default()
        }
    }

    /// Instantiates the policy.
    pub fn build(&self) -> Box<dyn Policy> {
        Box::new(Configured {
            composition: composed::Composition::of(self).ok(),
            spec: self.clone(),
        })
    }
}

/// A policy with its spec; dispatches on the name.
struct Configured {
    spec: PolicySpec,
    /// The parts of a `composed` spec, resolved once (`None` for the other policies, and for
    /// an unvalidated composed spec, which then plans only rule fixes).
    composition: Option<composed::Composition>,
}

impl Policy for Configured {
    fn name(&self) -> &str {
        &self.spec.policy
    }

    fn trend_config(&self) -> TrendConfig {
        self.spec.trend_config()
    }

    fn decide(&self, input: Input<'_>) -> Plan {
        let spec = &self.spec;
        if spec.policy == "none" {
            return Plan {
                policy: spec.policy.clone(),
                time: input.snapshot.time,
                why_none: Some(crate::plan::WhyNone::default()),
                ..Default::default()
            };
        }
        let rules = Rules::resolve(&spec.constraints, input.snapshot);
        let mut p = Planner::new(input, &rules, &spec.planner);
        if spec.planner.enforce_rules {
            p.enforce_rules();
        }
        // Swaps whose first half has ended go next: the room they count on was freed for them.
        p.follow_ups();
        match spec.policy.as_str() {
            "naive-threshold" => naive::run(&spec.naive, &mut p),
            "hotspot" => hotspot::run(&spec.hotspot, &mut p),
            "stabilize" => stabilize::run(&spec.stabilize, &mut p),
            "consolidate" => consolidate::run(&spec.consolidate, &mut p),
            "composed" => {
                if let Some(c) = &self.composition {
                    composed::run(c, spec, &mut p);
                }
            }
            _ => {}
        }
        p.finish(&spec.policy)
    }
}

/// Checks a sustained test's window (hotspot's and stabilize's): `over_s` of the last
/// `window_s` seconds, or the deprecated `k` of the last `n` samples (both or neither).
pub(crate) fn check_sustained(
    policy: &str,
    over_s: u64,
    window_s: u64,
    k: Option<usize>,
    n: Option<usize>,
) -> Result<()> {
    if over_s == 0 || over_s > window_s {
        return Err(BalancerError::config(format!(
            "{policy} over_s={over_s} window_s={window_s} needs 1 <= over_s <= window_s"
        )));
    }
    match (k, n) {
        (None, None) => Ok(()),
        (Some(k), Some(n)) if k >= 1 && k <= n && n <= 30 => Ok(()),
        (k, n) => Err(BalancerError::config(format!(
            "{policy} k={k:?} n={n:?} (deprecated: use over_s and window_s) needs both, \
             1 <= k <= n <= 30"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each section's range check is a `BalancerError::Config` whose text names the section
    /// and the rule, as the balancer and the agent print it.
    #[test]
    fn out_of_range_sections_give_config_errors_with_their_messages() {
        let cases = [
            (
                "[planner]\ncooldown_escalation = 0.5\n",
                "invalid config: cooldown_escalation must be >= 1",
            ),
            (
                "[constraints]\nmem_reserve_frac = 1.5\n",
                "invalid config: mem_reserve_frac 1.5 not in [0, 1)",
            ),
            (
                "[naive]\nthreshold = 2.0\n",
                "invalid config: naive.threshold 2 not in 0..=1.5",
            ),
            (
                "[hotspot]\nover_s = 900\nwindow_s = 300\n",
                "invalid config: hotspot over_s=900 window_s=300 needs 1 <= over_s <= window_s",
            ),
            (
                "[hotspot]\nwindow_s = 86400\n",
                "invalid config: a window of 86400 s is more than 240 steps of 60 s",
            ),
            (
                "[stabilize]\ncpu_weight = -1.0\n",
                "invalid config: stabilize weights must be >= 0",
            ),
            (
                "[consolidate]\nsafety = 6.0\n",
                "invalid config: consolidate.safety must be in 0..=5",
            ),
            ("step_s = 0\n", "invalid config: step_s must be in 1..=3600"),
        ];
        for (section, want) in cases {
            let text = format!("policy = \"hotspot\"\n{section}");
            match PolicySpec::parse(&text) {
                Err(e @ BalancerError::Config(_)) => assert_eq!(e.to_string(), want),
                other => panic!("{section}: {other:?}"),
            }
        }
    }
}
