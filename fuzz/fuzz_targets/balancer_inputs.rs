//! Fuzz target: the balancer's user-supplied inputs (snapshot files in JSON or TOML, policy
//! TOML) are rejected with an error, never a panic; an accepted policy builds and decides on
//! an accepted snapshot without panicking, its plan explains itself, and its moves handed back
//! as pending swap halves are re-checked without panicking.
#![no_main]
use balancer::planner::{History, Input};
use balancer::policy::PolicySpec;
use balancer::snapshot::Snapshot;
use balancer::trends::{TrendConfig, Trends};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policy, snap) = text.split_once("\n---\n").unwrap_or((text, text));
    let spec = PolicySpec::parse(policy);
    for toml in [false, true] {
        let Ok(s) = Snapshot::parse(snap, toml) else {
            continue;
        };
        if s.hosts.len() > 64 || s.vms.len() > 512 {
            continue;
        }
        if let Ok(spec) = &spec {
            let mut trends = Trends::new(TrendConfig::default());
            trends.observe(&s);
            let history = History::default();
            // Verbose too: the explanation (refused candidates, spread and power before and
            // after) reads the snapshot's figures, which the fuzzer chooses.
            let plan = spec.build().decide(Input {
                snapshot: &s,
                trends: &trends,
                history: &history,
                now: s.time,
                wall_s: s.time,
                verbose: toml,
                pending: &[],
            });
            let _ = plan.explain_with(toml);
            // Its moves handed back as pending second halves: follow_ups re-checks whatever
            // the plan holds against the same figures.
            let _ = spec.build().decide(Input {
                snapshot: &s,
                trends: &trends,
                history: &history,
                now: s.time,
                wall_s: s.time,
                verbose: false,
                pending: &plan.moves,
            });
        }
    }
});
