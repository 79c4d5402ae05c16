//! Plans: the moves a policy proposes, each with a machine-readable reason, its predicted effect
//! and its cost, plus notes (infeasible rules). Serialised deterministically.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Why a move was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The source host is in maintenance and must be drained.
    Maintenance {
        /// Draining host.
        host: String,
    },
    /// Two members of an anti-affinity group share a host.
    AntiAffinity {
        /// Group name.
        group: String,
    },
    /// A member of an affinity group is away from the group's host.
    Affinity {
        /// Group name.
        group: String,
    },
    /// The VM runs on a host it is not pinned to.
    Pinning,
    /// Naive baseline: host utilisation over a fixed threshold right now.
    Threshold {
        /// Host.
        host: String,
        /// CPU utilisation.
        util: f64,
        /// Threshold.
        threshold: f64,
    },
    /// Sustained hotspot with a forecast over the threshold (Sandpiper style).
    Hotspot {
        /// Host.
        host: String,
        /// Current CPU utilisation.
        util: f64,
        /// Forecast CPU utilisation.
        forecast: f64,
        /// Threshold.
        threshold: f64,
    },
    /// The weighted load standard deviation is above its target.
    Imbalance {
        /// Weighted sigma before the move.
        sigma_before: f64,
        /// Weighted sigma after the move.
        sigma_after: f64,
    },
    /// A Beloglazov overload detector fired.
    Overload {
        /// Host.
        host: String,
        /// Detector name (thr, iqr, mad, lr).
        detector: String,
        /// Value the detector compared (utilisation or prediction).
        value: f64,
        /// Threshold it was compared with.
        threshold: f64,
    },
    /// The host is underloaded and is being emptied to be switched off.
    Underload {
        /// Host.
        host: String,
        /// CPU utilisation.
        util: f64,
    },
    /// One half of a swap (Sandpiper): this VM and `with` change hosts, so that `host`, which
    /// no single move could relieve, sheds load.
    Swap {
        /// The host the swap relieves.
        host: String,
        /// The VM moving the other way.
        with: String,
    },
}

impl Reason {
    /// True for rule-enforcement (priority-1) reasons.
    pub fn is_rule(&self) -> bool {
        matches!(
            self,
            Reason::Maintenance { .. }
                | Reason::AntiAffinity { .. }
                | Reason::Affinity { .. }
                | Reason::Pinning
        )
    }

    /// Short tag for text output.
    pub fn tag(&self) -> &'static str {
        match self {
            Reason::Maintenance { .. } => "maintenance",
            Reason::AntiAffinity { .. } => "anti_affinity",
            Reason::Affinity { .. } => "affinity",
            Reason::Pinning => "pinning",
            Reason::Threshold { .. } => "threshold",
            Reason::Hotspot { .. } => "hotspot",
            Reason::Imbalance { .. } => "imbalance",
            Reason::Overload { .. } => "overload",
            Reason::Underload { .. } => "underload",
            Reason::Swap { .. } => "swap",
        }
    }
}

/// Predicted CPU utilisation of source and destination around a move, and the gain the policy
/// attributes to it (in the policy's own objective, e.g. overload removed or sigma drop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Source CPU utilisation before.
    pub src_before: f64,
    /// Source CPU utilisation after.
    pub src_after: f64,
    /// Destination CPU utilisation before.
    pub dst_before: f64,
    /// Destination CPU utilisation after.
    pub dst_after: f64,
    /// Policy objective improvement.
    pub gain: f64,
}

/// Migration cost estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Seconds: memory / (link bandwidth / 2).
    pub seconds: f64,
    /// Bytes copied (memory x (1 + dirty factor)).
    pub bytes: u64,
}

/// One planned live migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// VM name.
    pub vm: String,
    /// Source host.
    pub from: String,
    /// Destination host.
    pub to: String,
    /// Why.
    pub reason: Reason,
    /// Predicted effect.
    pub predicted: Prediction,
    /// Cost.
    pub cost: Cost,
    /// The affinity group this move carries along with the VM's companions: the group's
    /// moves are consecutive in the plan, go to one host, and start all or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The VM whose migration must have ended before this one starts (the second half of a
    /// swap: the first frees the memory this one needs). Executors hold it back until then
    /// and hand it to the next decision, which checks it again (`Input::pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Something the operator should know that is not a move (an infeasible rule, a blocked drain).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    /// Stable key (reported once per key).
    pub key: String,
    /// Human-readable text.
    pub message: String,
}

/// One test a policy ran, with its figures: what a round without moves is explained by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Host tested, or `cluster` for a cluster-wide test (stabilize's sigma).
    pub host: String,
    /// What was tested, e.g. `cpu samples over threshold`.
    pub test: String,
    /// The figure.
    pub value: f64,
    /// How it is compared: `>`, `>=` or `<`.
    pub op: String,
    /// What it is compared with.
    pub threshold: f64,
    /// The comparison held.
    pub fired: bool,
}

/// Why a round planned no move: every test the policy ran, the hosts it would have acted on,
/// and the parallel limit if in-flight migrations used it up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WhyNone {
    /// Hosts (or `cluster`) that passed the policy's tests: their moves were all refused.
    pub qualified: Vec<String>,
    /// The tests, in host order.
    pub checks: Vec<Check>,
    /// (migrations in flight, `max_parallel`) when no move could start for that reason.
    pub in_flight: Option<(usize, usize)>,
}

/// One candidate move a gate refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMove {
    /// VM.
    pub vm: String,
    /// Its host.
    pub from: String,
    /// The destination tried; None when no destination passed (the gate named is the one
    /// that refused the least loaded candidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The gate (as in [`Plan::refused`]).
    pub gate: String,
}

/// What the plan does to the cluster, by the planner's own model: CPU utilisation spread and
/// power draw before the round and after its moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Effect {
    /// Standard deviation of CPU utilisation over the hosts that are up, before.
    pub sigma_before: f64,
    /// The same after the moves.
    pub sigma_after: f64,
    /// Watts drawn by the hosts carrying VMs (by their power curves; an empty host is
    /// counted as switched off), before.
    pub watts_before: f64,
    /// The same after the moves.
    pub watts_after: f64,
}

/// A policy's decision for one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Plan {
    /// Policy name.
    pub policy: String,
    /// Decision time (snapshot time).
    pub time: u64,
    /// Moves, in execution order.
    pub moves: Vec<Move>,
    /// New notes (each key once per history).
    pub notes: Vec<Note>,
    /// Candidate moves refused by the gates, per gate name, sorted.
    pub refused: Vec<(String, u32)>,
    /// Set exactly when there are no moves: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_none: Option<WhyNone>,
    /// The refused candidates one by one, the first [`Plan::MAX_REFUSED_LISTED`] of the round
    /// (`refused` keeps the full counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_moves: Vec<RefusedMove>,
    /// Spread and power before and after the moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// Every test the policy ran this round, moves or not (filled for verbose explanations
    /// only: `why_none` carries them when nothing moves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// Rounds to 6 decimals so that plans print the same everywhere and stay readable.
pub fn r6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

impl Plan {
    /// Refused candidates listed one by one per round; a round of a large cluster can refuse
    /// thousands, and their counts are in `refused`.
    pub const MAX_REFUSED_LISTED: usize = 64;

    /// Canonical JSON (field order fixed by the types, floats rounded, no maps with random
    /// order): byte-identical for identical input.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Human-readable explanation, one line per move and note.
    pub fn explain(&self) -> String {
        self.explain_with(false)
    }

    /// [`Plan::explain`]; `verbose` adds every refused candidate with its gate and, for every
    /// host the policy tested, its tests with their figures (detector values and sample
    /// counts), whether or not anything moved.
    pub fn explain_with(&self, verbose: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "policy {} at t={}: {} move(s)",
            self.policy,
            self.time,
            self.moves.len()
        );
        for m in &self.moves {
            let p = &m.predicted;
            let _ = write!(
                s,
                "  move {} {} -> {} [{}] src {:.3}->{:.3} dst {:.3}->{:.3} gain {:.4} cost {:.1}s {}B reason={}",
                m.vm,
                m.from,
                m.to,
                m.reason.tag(),
                p.src_before,
                p.src_after,
                p.dst_before,
                p.dst_after,
                p.gain,
                m.cost.seconds,
                m.cost.bytes,
                serde_json::to_string(&m.reason).unwrap_or_default()
            );
            if let Some(g) = &m.group {
                let _ = write!(s, " group={g}");
            }
            if let Some(a) = &m.after {
                let _ = write!(s, " after={a}");
            }
            let _ = writeln!(s);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note {}: {}", n.key, n.message);
        }
        for (gate, k) in &self.refused {
            let _ = writeln!(s, "  refused by {gate}: {k}");
        }
        if let Some(e) = &self.effect {
            let _ = writeln!(
                s,
                "  effect: cpu sigma {:.4} -> {:.4}, power {:.0} W -> {:.0} W ({:.3} -> {:.3} kWh per hour)",
                e.sigma_before,
                e.sigma_after,
                e.watts_before,
                e.watts_after,
                e.watts_before / 1000.0,
                e.watts_after / 1000.0
            );
        }
        if verbose {
            for r in &self.refused_moves {
                let _ = writeln!(
                    s,
                    "  refused {} {} -> {} by {}",
                    r.vm,
                    r.from,
                    r.to.as_deref().unwrap_or("(no destination passed)"),
                    r.gate
                );
            }
            let total: u32 = self.refused.iter().map(|(_, k)| k).sum();
            if total as usize > self.refused_moves.len() {
                let _ = writeln!(
                    s,
                    "  ... {} refusal(s) not listed one by one (counted above)",
                    total as usize - self.refused_moves.len()
                );
            }
        }
        if self.moves.is_empty() {
            self.explain_none(&mut s, verbose);
        } else if verbose && !self.checks.is_empty() {
            let _ = writeln!(s, "  tests per host, nearest to firing first:");
            write_checks(&mut s, &self.checks, usize::MAX);
        }
        s
    }

    /// Hosts listed by name when nothing qualified: the ones closest to it.
    const CLOSEST: usize = 5;

    /// The "why no move" lines of [`Plan::explain`]; `verbose` lists every host tested, not
    /// only the closest.
    fn explain_none(&self, s: &mut String, verbose: bool) {
        let why = self.why_none.clone().unwrap_or_default();
        if self.policy == "none" {
            let _ = writeln!(s, "  why no move: policy none never moves");
            return;
        }
        if let Some((n, max)) = why.in_flight {
            let _ = writeln!(
                s,
                "  why no move: {n} migration(s) in flight, max_parallel {max}"
            );
            return;
        }
        if !why.qualified.is_empty() {
            let gates = if self.refused.is_empty() {
                "no feasible destination".to_string()
            } else {
                let g: Vec<String> = self
                    .refused
                    .iter()
                    .map(|(g, k)| format!("{g} {k}"))
                    .collect();
                format!("refused by {}", g.join(", "))
            };
            let mut names = why.qualified.clone();
            names.dedup();
            let shown = names.len().min(Self::CLOSEST);
            let more = if names.len() > shown {
                format!(" and {} more", names.len() - shown)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  why no move: {}{more} qualified, but no candidate move passed the gates ({gates})",
                names[..shown].join(", ")
            );
        }
        let hosts = nearness(&why.checks);
        if why.qualified.is_empty() {
            let tested = hosts.iter().filter(|(h, _)| *h != "cluster").count();
            let _ = writeln!(
                s,
                "  why no move: nothing passed the policy's tests{}{}",
                if tested > 0 {
                    format!(" ({tested} host(s) tested)")
                } else {
                    String::new()
                },
                if hosts.is_empty() { "" } else { "; closest:" }
            );
        }
        let shown = if verbose { usize::MAX } else { Self::CLOSEST };
        write_checks(s, &why.checks, shown);
    }

    /// Keys of the notes, for recording in the history.
    pub fn note_keys(&self) -> BTreeSet<String> {
        self.notes.iter().map(|n| n.key.clone()).collect()
    }
}

/// Per host (or `cluster`), how near its tests came to firing: the largest value / threshold.
fn nearness(checks: &[Check]) -> Vec<(&str, f64)> {
    let mut hosts: Vec<(&str, f64)> = Vec::new();
    for c in checks {
        let near = if c.threshold > 0.0 {
            c.value / c.threshold
        } else {
            c.value
        };
        match hosts.iter_mut().find(|(h, _)| *h == c.host) {
            Some(e) => e.1 = e.1.max(near),
            None => hosts.push((&c.host, near)),
        }
    }
    hosts
}

/// One line per host with its tests, nearest to firing first, at most `shown` hosts.
fn write_checks(s: &mut String, checks: &[Check], shown: usize) {
    let mut hosts = nearness(checks);
    hosts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    for (h, _) in hosts.iter().take(shown) {
        let tests: Vec<String> = checks
            .iter()
            .filter(|c| c.host == *h)
            .map(|c| {
                format!(
                    "{} {} {} {}: {}",
                    c.test,
                    fmt_fig(c.value),
                    c.op,
                    fmt_fig(c.threshold),
                    if c.fired { "yes" } else { "no" }
                )
            })
            .collect();
        let _ = writeln!(s, "    {h}: {}", tests.join("; "));
    }
    if hosts.len() > shown {
        let _ = writeln!(s, "    ... and {} more", hosts.len() - shown);
    }
}

/// A figure as the explanation prints it: counts as integers, fractions with 3 decimals.
fn fmt_fig(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}
