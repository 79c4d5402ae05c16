//! `composed`: a policy put together from the parts of the built-in ones, named in the policy
//! file: a detector (which hosts need relief), a selector (which of their VMs go first) and a
//! placement (where they go). Each part is the built-in policy's own code, with its parameters
//! read from that policy's section (`[consolidate]`, `[hotspot]`, `[stabilize]`), so a
//! composition equal to a shipped policy decides exactly as it does, and a new combination
//! (hotspot's detector with PABFD, say) is a file, not code.

use serde::{Deserialize, Serialize};

use super::consolidate::{self, ConsolidateParams, Detector, Selection};
use super::{hotspot, stabilize, PolicySpec};
use crate::error::{BalancerError, Result};
use crate::plan::{r6, Reason};
use crate::planner::{MoveKind, Planner};

/// One part of a composed policy: a `[detector]`, `[selector]` or `[placement]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Which implementation (see [`DETECTORS`], [`SELECTORS`], [`PLACEMENTS`]).
    pub kind: String,
}

/// `[detector] kind` values: Beloglazov's five (parameters in `[consolidate]`), Sandpiper's
/// k of n with a forecast (`[hotspot]`), the sustained load sigma (`[stabilize]`).
pub const DETECTORS: [&str; 7] = ["threshold", "iqr", "mad", "lr", "lrr", "k_of_n", "sigma"];
/// `[selector] kind` values: minimum migration time, minimum utilisation, Sandpiper's
/// volume-to-size ratio, Beloglazov's fewest migrations and maximum correlation.
pub const SELECTORS: [&str; 5] = ["mmt", "mu", "vsr", "mm", "mc"];
/// `[placement] kind` values: power-aware best fit decreasing (`[consolidate]`), the least
/// loaded host under `[hotspot] target`, the most loaded host under it, stabilize's greedy
/// sigma search (`[stabilize]`).
pub const PLACEMENTS: [&str; 4] = ["pabfd", "worst_fit", "best_fit", "sigma_search"];

/// Where overloaded hosts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detect {
    /// One of consolidate's detectors.
    Beloglazov(Detector),
    /// Hotspot's sustained-and-forecast test.
    KOfN,
    /// Stabilize's sustained sigma test.
    Sigma,
}

/// Where the VMs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Pabfd,
    WorstFit,
    BestFit,
    SigmaSearch,
}

/// A checked composition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Composition {
    pub(crate) detect: Detect,
    /// `None` only with the sigma search, which picks VM and destination together.
    pub(crate) select: Option<Selection>,
    pub(crate) place: Place,
}

/// An unknown kind, naming the key and the kinds there are.
fn unknown(key: &str, kind: &str, known: &[&str]) -> BalancerError {
    BalancerError::Config(format!(
        "{key}: unknown kind {kind:?} (one of {})",
        known.join(", ")
    ))
}

impl Composition {
    /// The composition a spec names; a `Config` error naming the offending key otherwise.
    pub(crate) fn of(spec: &PolicySpec) -> Result<Composition> {
        let missing =
            |key: &str| BalancerError::Config(format!("policy = \"composed\" needs [{key}] kind"));
        let d = spec.detector.as_ref().ok_or_else(|| missing("detector"))?;
        let detect = match d.kind.as_str() {
            "threshold" => Detect::Beloglazov(Detector::Thr),
            "iqr" => Detect::Beloglazov(Detector::Iqr),
            "mad" => Detect::Beloglazov(Detector::Mad),
            "lr" => Detect::Beloglazov(Detector::Lr),
            "lrr" => Detect::Beloglazov(Detector::Lrr),
            "k_of_n" => Detect::KOfN,
            "sigma" => Detect::Sigma,
            k => return Err(unknown("detector.kind", k, &DETECTORS)),
        };
        let select = match spec.selector.as_ref().map(|s| s.kind.as_str()) {
            None => None,
            Some("mmt") => Some(Selection::Mmt),
            Some("mu") => Some(Selection::Mu),
            Some("vsr") => Some(Selection::Vsr),
            Some("mm") => Some(Selection::Mm),
            Some("mc") => Some(Selection::Mc),
            Some(k) => return Err(unknown("selector.kind", k, &SELECTORS)),
        };
        let p = spec
            .placement
            .as_ref()
            .ok_or_else(|| missing("placement"))?;
        let place = match p.kind.as_str() {
            "pabfd" => Place::Pabfd,
            "worst_fit" => Place::WorstFit,
            "best_fit" => Place::BestFit,
            "sigma_search" => Place::SigmaSearch,
            k => return Err(unknown("placement.kind", k, &PLACEMENTS)),
        };
        // The sigma search judges the cluster, not hosts: it pairs with the sigma detector
        // only, and chooses its VMs itself.
        match (detect == Detect::Sigma, place == Place::SigmaSearch, select) {
            (true, true, None) => {}
            (true, true, Some(_)) => {
                return Err(BalancerError::config(
                    "selector: placement.kind = \"sigma_search\" picks its own VMs; drop [selector]",
                ))
            }
            (false, false, Some(_)) => {}
            (false, false, None) => return Err(missing("selector")),
            (true, false, _) => {
                return Err(BalancerError::config(
                    "detector.kind = \"sigma\" flags no host: it needs placement.kind = \"sigma_search\"",
                ))
            }
            (false, true, _) => {
                return Err(BalancerError::config(
                    "placement.kind = \"sigma_search\" needs detector.kind = \"sigma\"",
                ))
            }
        }
        Ok(Composition {
            detect,
            select,
            place,
        })
    }

    /// `[consolidate]` with the composition's detector and selector: what consolidate's own
    /// code reads.
    fn consolidate(&self, spec: &PolicySpec) -> ConsolidateParams {
        let mut cfg = spec.consolidate.clone();
        if let Detect::Beloglazov(d) = self.detect {
            cfg.detector = d;
        }
        if let Some(s) = self.select {
            cfg.selection = s;
        }
        cfg
    }

    /// The longest window the parts read, seconds. (PABFD after another detector places by
    /// a static threshold, without history.)
    pub(crate) fn longest_window_s(&self, spec: &PolicySpec) -> u64 {
        match self.detect {
            Detect::Beloglazov(_) => spec.consolidate.longest_window_s(),
            Detect::KOfN => spec.hotspot.window_s.max(spec.hotspot.trend_window_s),
            Detect::Sigma => spec.stabilize.window_s,
        }
    }

    /// The consolidate detector whose threshold the composition places by (CloudSim's
    /// initial placement, the plot's line), where it has one.
    pub(crate) fn beloglazov(&self) -> Option<Detector> {
        match self.detect {
            Detect::Beloglazov(d) => Some(d),
            _ => None,
        }
    }
}

/// One round of the composition.
pub(crate) fn run(c: &Composition, spec: &PolicySpec, p: &mut Planner<'_>) {
    let sel = c.select.unwrap_or(Selection::Mmt);
    match (c.detect, c.place) {
        // consolidate itself, with its underload pass.
        (Detect::Beloglazov(_), Place::Pabfd) => consolidate::run(&c.consolidate(spec), p),
        // hotspot itself.
        (Detect::KOfN, Place::WorstFit) => {
            let hot = hotspot::hot_hosts(&spec.hotspot, p);
            hotspot::relieve(&spec.hotspot, p, hot, sel);
        }
        (Detect::Sigma, _) | (_, Place::SigmaSearch) => stabilize::run(&spec.stabilize, p),
        (Detect::KOfN, Place::Pabfd) => kofn_pabfd(spec, sel, p),
        (Detect::Beloglazov(_), Place::WorstFit) => beloglazov_fit(c, spec, p, false),
        (Detect::Beloglazov(_), Place::BestFit) => beloglazov_fit(c, spec, p, true),
        (Detect::KOfN, Place::BestFit) => {
            let hot = hotspot::hot_hosts(&spec.hotspot, p);
            hotspot::relieve_to(&spec.hotspot, p, hot, sel, true);
        }
    }
}

/// Hotspot's hot hosts, relieved as hotspot would (down to `target`, in `sel`'s order), their
/// VMs placed by PABFD on hosts that stay at or under `target` (consolidate's static
/// threshold at hotspot's target, so no destination becomes a new hotspot). No underload
/// pass: nothing here asks to save power.
fn kofn_pabfd(spec: &PolicySpec, sel: Selection, p: &mut Planner<'_>) {
    let cfg = &spec.hotspot;
    let s = p.snap();
    let hot = hotspot::hot_hosts(cfg, p);
    let mut excluded = vec![false; s.hosts.len()];
    let mut to_move = Vec::new();
    for &(_, h, forecast) in &hot {
        excluded[h] = true;
        let (cap, mem_cap) = (s.hosts[h].cpu_mhz(), s.hosts[h].mem_kb as f64);
        let (mut cpu, mut mem) = (p.cpu[h], p.mem[h] as f64);
        let reason = Reason::Hotspot {
            host: s.hosts[h].name.clone(),
            util: r6(p.util(h)),
            forecast: r6(forecast),
            threshold: cfg.threshold,
        };
        // Selected before any is placed, as consolidate selects: until the host would be at
        // its target once they are gone.
        for v in hotspot::vm_order(p, h, sel, cfg.target) {
            if cpu / cap <= cfg.target && mem / mem_cap <= cfg.mem_threshold {
                break;
            }
            if s.vms[v].migrating {
                continue;
            }
            cpu -= s.vms[v].cpu_demand_mhz;
            mem -= s.vms[v].mem_kb as f64;
            to_move.push((v, h, reason.clone()));
        }
    }
    let place = ConsolidateParams {
        detector: Detector::Thr,
        threshold: cfg.target,
        underload: false,
        ..spec.consolidate.clone()
    };
    consolidate::pabfd(&place, p, &excluded, to_move);
}

/// Consolidate's detector and selector, each VM sent to the least loaded host that stays
/// under `[hotspot] target`, as hotspot places (or, `fullest`, the most loaded one).
fn beloglazov_fit(c: &Composition, spec: &PolicySpec, p: &mut Planner<'_>, fullest: bool) {
    let (_, to_move) = consolidate::overloaded_hosts(&c.consolidate(spec), p);
    let target = spec.hotspot.target;
    for (v, h, reason) in to_move {
        if !p.budget_left() {
            return;
        }
        let gain = p.snap().vms[v].cpu_demand_mhz / p.snap().hosts[h].cpu_mhz();
        let dest = if fullest {
            p.fullest_fit_or_why(v, target, MoveKind::Balance, gain)
        } else {
            p.least_loaded_or_why(v, target, MoveKind::Balance, gain)
        };
        match dest {
            Ok(d) => {
                // A refusal is counted in the plan by try_move itself.
                let _ = p.try_move(v, d, reason, gain, target, MoveKind::Balance);
            }
            Err(why) => {
                p.refuse_vm(v, None, why);
            }
        }
    }
}
