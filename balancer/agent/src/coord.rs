//! Coordination from the shared view, pure: who leads (the lowest-named live trusted host that
//! advertises a balancer in a mode other than off), and the moves other balancers advertise.
//!
//! Every agent evaluates the same function on its own copy of the Ganglia view, so agents with
//! the same view agree on the leader without talking to each other.

use ganglia_wire::model::{Cluster, Host};

use crate::config::Mode;
use balancer::planner::MigrationRecord;

/// The metric whose presence (fresh) and value say that a host runs a balancer, and in which mode.
pub const MODE_METRIC: &str = "balancer_mode";
/// The string metric listing the recent moves a balancer started (see [`encode_moves`]).
pub const MOVES_METRIC: &str = "balancer_recent_moves";
/// Largest `balancer_recent_moves` value published, bytes (fits a 1472-byte datagram).
pub const MOVES_MAX_BYTES: usize = 1024;

/// A host that advertises a balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Ganglia host NAME.
    pub name: String,
    /// Advertised mode.
    pub mode: Mode,
    /// Seconds since its balancer's mode metric was last heard.
    pub tn: u64,
}

/// Whether `h` is live for coordination: the host and its `balancer_mode` metric were both
/// heard less than `timeout_s` ago. Returns the advertised mode.
pub fn advertised_mode(h: &Host, timeout_s: u64) -> Option<Mode> {
    if h.tn >= timeout_s {
        return None;
    }
    let m = h.metric(MODE_METRIC)?;
    if m.tn >= timeout_s {
        return None;
    }
    Mode::parse(&m.val)
}

/// Hosts of `view` that are trusted, live, and advertise a balancer in a mode other than off,
/// sorted by name (byte order).
pub fn candidates(
    view: &Cluster,
    trusted: &dyn Fn(&str) -> bool,
    timeout_s: u64,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = view
        .hosts
        .iter()
        .filter(|h| trusted(&h.name))
        .filter_map(|h| {
            let mode = advertised_mode(h, timeout_s)?;
            let tn = h.metric(MODE_METRIC).map_or(u64::MAX, |m| m.tn);
            (mode != Mode::Off).then(|| Candidate {
                name: h.name.clone(),
                mode,
                tn,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out.dedup_by(|b, a| a.name == b.name);
    out
}

/// The leader: the first of [`candidates`], if any.
pub fn leader(view: &Cluster, trusted: &dyn Fn(&str) -> bool, timeout_s: u64) -> Option<Candidate> {
    candidates(view, trusted, timeout_s).into_iter().next()
}

/// Encodes moves as `start:from>to:vm` items separated by spaces, newest first, cut to
/// [`MOVES_MAX_BYTES`] (older moves are dropped first).
pub fn encode_moves(moves: &[MigrationRecord]) -> String {
    let mut sorted: Vec<&MigrationRecord> = moves.iter().collect();
    sorted.sort_by(|a, b| b.start.cmp(&a.start).then(a.vm.cmp(&b.vm)));
    let mut out = String::new();
    for m in sorted {
        let item = format!("{}:{}>{}:{}", m.start, m.from, m.to, m.vm);
        if item.contains(char::is_whitespace) {
            continue;
        }
        if out.len() + item.len() + 1 > MOVES_MAX_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&item);
    }
    out
}

/// Parses [`encode_moves`] text; malformed items are skipped (the view is untrusted input).
pub fn decode_moves(text: &str) -> Vec<MigrationRecord> {
    text.split_whitespace()
        .take(256)
        .filter_map(|item| {
            let (start, rest) = item.split_once(':')?;
            let (hosts, vm) = rest.split_once(':')?;
            let (from, to) = hosts.split_once('>')?;
            if from.is_empty() || to.is_empty() || vm.is_empty() {
                return None;
            }
            Some(MigrationRecord {
                vm: vm.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                start: start.parse().ok()?,
            })
        })
        .collect()
}

/// Moves advertised by trusted hosts in `view`.
pub fn advertised_moves(view: &Cluster, trusted: &dyn Fn(&str) -> bool) -> Vec<MigrationRecord> {
    view.hosts
        .iter()
        .filter(|h| trusted(&h.name))
        .filter_map(|h| h.metric(MOVES_METRIC))
        .flat_map(|m| decode_moves(&m.val))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::model::Metric;
    use proptest::prelude::*;

    fn host(name: &str, tn: u64, mode: Option<(&str, u64)>) -> Host {
        Host {
            name: name.into(),
            tn,
            tmax: 20,
            metrics: mode
                .map(|(v, tn)| Metric {
                    name: MODE_METRIC.into(),
                    val: v.into(),
                    ty: "string".into(),
                    tn,
                    tmax: 60,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn view(hosts: Vec<Host>) -> Cluster {
        Cluster {
            hosts,
            ..Default::default()
        }
    }

    #[test]
    fn lowest_live_trusted_advertising_host_leads() {
        let v = view(vec![
            host("c", 1, Some(("auto", 1))),
            host("a", 1, Some(("off", 1))),
            host("b", 100, Some(("auto", 1))),
            host("d", 1, Some(("auto", 70))),
            host("B", 1, None),
            host("e", 1, Some(("recommend", 5))),
            host("0evil", 1, Some(("auto", 1))),
        ]);
        let trusted = |n: &str| n != "0evil";
        let c = candidates(&v, &trusted, 60);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        // a is off, b's host is silent, d's balancer is silent, B has none, 0evil untrusted.
        assert_eq!(names, ["c", "e"]);
        assert_eq!(leader(&v, &trusted, 60).unwrap().name, "c");
        // With a longer bound the silent balancer of d is still live, b's host too.
        let names: Vec<String> = candidates(&v, &trusted, 200)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["b", "c", "d", "e"]);
        assert_eq!(leader(&view(vec![]), &trusted, 60), None);
    }

    #[test]
    fn moves_round_trip_and_garbage_is_skipped() {
        let m = |vm: &str, start| MigrationRecord {
            vm: vm.into(),
            from: "h1".into(),
            to: "h2".into(),
            start,
        };
        let text = encode_moves(&[m("a", 10), m("b", 20)]);
        assert_eq!(text, "20:h1>h2:b 10:h1>h2:a");
        assert_eq!(decode_moves(&text), vec![m("b", 20), m("a", 10)]);
        assert_eq!(
            decode_moves("x:h1>h2:a 5:h1:a 6:>h:a 7:h>i: 8:h>i:v"),
            vec![MigrationRecord {
                vm: "v".into(),
                from: "h".into(),
                to: "i".into(),
                start: 8
            }]
        );
        let many: Vec<MigrationRecord> = (0..500).map(|i| m(&format!("vm{i}"), i)).collect();
        let text = encode_moves(&many);
        assert!(text.len() <= MOVES_MAX_BYTES);
        assert!(text.starts_with("499:"), "newest first");
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,400}") {
            let _ = decode_moves(&s);
        }

        /// Every agent computes the same leader whatever the host order in its view.
        #[test]
        fn leader_is_independent_of_host_order(
            hosts in proptest::collection::vec(("[a-e]{1,2}", 0u64..100, 0u64..100, 0usize..3), 0..8),
            seed in any::<u64>(),
        ) {
            let modes = ["off", "recommend", "auto"];
            let hs: Vec<Host> = hosts.iter().map(|(n, tn, mtn, m)| host(n, *tn, Some((modes[*m], *mtn)))).collect();
            let mut shuffled = hs.clone();
            let k = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % k);
            shuffled.reverse();
            let all = |_: &str| true;
            // Duplicate names (never in a real view) may differ; compare names only.
            let a = leader(&view(hs.clone()), &all, 60).map(|c| c.name);
            let b = leader(&view(shuffled), &all, 60).map(|c| c.name);
            prop_assert_eq!(a.clone(), b);
            if let Some(name) = a {
                // No live candidate sorts before it.
                for h in &hs {
                    if advertised_mode(h, 60).is_some_and(|m| m != Mode::Off) {
                        prop_assert!(h.name.as_bytes() >= name.as_bytes());
                    }
                }
            }
        }
    }
}
