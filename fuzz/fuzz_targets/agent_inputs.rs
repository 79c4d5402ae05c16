//! Fuzz target: the balancer agent's inputs, its TOML config, the gmond XML view it polls and
//! the `balancer_recent_moves` string other agents publish, are rejected with an error (or
//! skipped), never a panic; an accepted view builds a snapshot.
#![no_main]
use balancer_agent::config::AgentConfig;
use balancer_agent::{coord, view};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AgentConfig::parse(text, "fuzz.toml");
        let _ = coord::decode_moves(text);
    }
    if let Ok(cluster) = view::parse_xml(data) {
        let v = view::build(&cluster, &|_| true, 1_700_000_000, 600);
        let _ = view::imbalance(&v.snapshot);
    }
});
