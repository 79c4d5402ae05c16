//! Checks a gmond.conf the way gmond-rs will load it: prints errors or warnings and a summary.
//!
//! `cargo run --release -p gmond-conf --example check -- [FILE] [--repeat N]` (FILE defaults
//! to /etc/ganglia/gmond.conf, `-` = the built-in default text); `--repeat` times N loads,
//! `--render` prints the effective config (includes merged, defaults spelled out).

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut file = gmond_conf::DEFAULT_CONFIG_PATH.to_string();
    let mut repeat = 1u32;
    let mut show = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--render" {
            show = true;
        } else if args[i] == "--repeat" {
            repeat = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(1);
            i += 1;
        } else {
            file = args[i].clone();
        }
        i += 1;
    }
    let load = || {
        if file == "-" {
            gmond_conf::builtin_config()
        } else {
            gmond_conf::load(&file)
        }
    };
    let start = Instant::now();
    let mut result = load();
    for _ in 1..repeat {
        result = load();
    }
    let per_load = start.elapsed() / repeat.max(1);
    match result {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            let c = &loaded.config;
            if show {
                println!("{}", gmond_conf::render(c));
            }
            println!(
                "{file}: OK: {} send, {} recv, {} tcp channels, {} modules, {} collection groups ({} metric selectors)",
                c.udp_send.len(),
                c.udp_recv.len(),
                c.tcp_accept.len(),
                c.modules.len(),
                c.collection_groups.len(),
                c.collection_groups.iter().map(|g| g.metrics.len()).sum::<usize>()
            );
            if repeat > 1 {
                println!("{repeat} loads, {per_load:?} per load");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{file}: {} error(s)", errors.errors.len());
            ExitCode::FAILURE
        }
    }
}
