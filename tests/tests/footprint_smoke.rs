//! The footprint bench (`benches/footprint.sh`, `benches/src/bin/footprint.rs`) in its smoke
//! mode, run the way a person runs it (the script, in a namespace with only `lo`) with the
//! binaries of the tree under test: it must report the three configurations with CPU, RSS and
//! network bytes for every process, a view that holds the emulated cluster, and the agent
//! following in the second configuration and leading in the third.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::{bin, repo_root, require_program};
use std::path::Path;
use std::process::Command;

/// The cells of every row of the markdown table whose header starts with `header`.
fn table<'a>(text: &'a str, header: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect()
        })
        .collect()
}

/// The first number of a cell ("1,234 (0.00 %)" -> 1234.0, "1,170)" -> 1170.0).
fn number(cell: &str) -> f64 {
    let first = cell.split_whitespace().next().unwrap_or("");
    let digits: String = first
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

#[test]
fn footprint_bench_reports_gmond_and_gmond_rs_with_a_follower_and_a_leader_agent() {
    require_program("ip", "iproute2");
    assert!(
        Path::new("/usr/sbin/gmond").exists(),
        "the footprint bench measures real gmond 3.7.2: apt-get install ganglia-monitor"
    );
    let dir = bin("footprint").parent().unwrap();
    bin("gmond-rs");
    bin("balancer-agent");
    let out = Command::new("bash")
        .arg(repo_root().join("benches/footprint.sh"))
        .arg("--smoke")
        .env("FOOTPRINT_BIN_DIR", dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "footprint.sh failed: {}\n{stdout}\n{stderr}",
        out.status
    );

    let rows = table(&stdout, "| configuration | process |");
    let expected = [
        ("gmond 3.7.2 alone", "gmond 3.7.2"),
        ("gmond-rs + follower agent", "gmond-rs"),
        (
            "gmond-rs + follower agent",
            "balancer-agent (follower; leader hv0000)",
        ),
        ("gmond-rs + leader agent", "gmond-rs"),
        ("gmond-rs + leader agent", "balancer-agent (leader)"),
    ];
    for (config, process) in expected {
        let row = rows
            .iter()
            .find(|r| r[0] == config && r[1] == process)
            .unwrap_or_else(|| panic!("no row for {process} in {config}:\n{stdout}\n{stderr}"));
        assert!(
            number(row[2]) > 0.0,
            "{config}: {process} used no CPU:\n{stdout}"
        );
        let rss: Vec<f64> = row[3].split('/').map(number).collect();
        assert!(
            rss.len() == 3 && rss.iter().all(|&r| r > 0.0),
            "{config}: {process} has no RSS:\n{stdout}"
        );
        assert!(
            number(row[4]) > 0.0,
            "{config}: {process} read nothing:\n{stdout}"
        );
    }
    // A follower reads the two coordination metrics of every host through the query channel,
    // the leader the metrics of a view: a return to whole-view polling by followers shows as
    // equal figures (as with --agent-feed xml).
    let agent_bytes = |config: &str| {
        rows.iter()
            .find(|r| r[0] == config && r[1].starts_with("balancer-agent"))
            .map(|r| number(r[4]))
            .unwrap()
    };
    let (follower, leader) = (
        agent_bytes("gmond-rs + follower agent"),
        agent_bytes("gmond-rs + leader agent"),
    );
    assert!(
        follower * 3.0 < leader,
        "the follower read {follower} bytes/s, the leader {leader}:\n{stdout}"
    );
    for config in ["gmond-rs + follower agent", "gmond-rs + leader agent"] {
        assert!(
            rows.iter()
                .any(|r| r[0] == config && r[1] == "total (gmond-rs + agent)"),
            "no total for {config}:\n{stdout}"
        );
    }

    // Each daemon holds the emulated view (20 hosts x 2 VMs, plus the measured agent's host).
    let views = table(&stdout, "| configuration | hosts in the view |");
    assert_eq!(views.len(), 3, "{stdout}");
    for v in &views {
        let want_hosts = if v[0] == "gmond 3.7.2 alone" {
            20.0
        } else {
            21.0
        };
        assert_eq!(number(v[1]), want_hosts, "{stdout}");
        let (metrics, expected) = (number(v[2]), number(v[2].split('(').nth(1).unwrap()));
        assert!(
            metrics >= 0.9 * expected && metrics <= expected,
            "{}: {metrics} metrics, {expected} sent:\n{stdout}",
            v[0]
        );
    }
}
