//! `cargo run --release` with no arguments: the embedded demo. Several simulated hypervisor
//! hosts, each a real gmond-rs daemon on its own 127.0.0.x address, a load spike and the
//! balancer rebalancing it, with a live view; loopback only, no multicast.
use clap::Parser;
use ganglia_demo::{self as demo, DemoOptions};
use gmond_rs::daemon::StopHandle;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The gmond-rs demo: a simulated cluster of hypervisors monitoring itself with gmond-rs over
/// loopback (127.0.0.x only), and the balancer moving VMs off a host whose load spikes.
#[derive(Parser, Debug)]
#[command(name = "ganglia-demo")]
struct Args {
    /// Number of hypervisor hosts (1-32)
    #[arg(long, default_value_t = demo::DEFAULT_HOSTS)]
    hosts: usize,
    /// Number of VMs, spread round-robin over the hosts
    #[arg(long, default_value_t = demo::DEFAULT_VMS)]
    vms: usize,
    /// Balancing policy: a policy TOML file or a built-in name (default hotspot)
    #[arg(long, value_name = "FILE")]
    policy: Option<String>,
    /// Simulated seconds per wall-clock second
    #[arg(long, default_value_t = demo::DEFAULT_SPEEDUP)]
    speedup: f64,
    /// Plain logs instead of the live view
    #[arg(long)]
    no_tui: bool,
    /// Port of the cluster's XML feed on 127.0.0.1 (and of the hosts' channels); the next free
    /// one is used if it is taken
    #[arg(long, default_value_t = 8649)]
    port: u16,
    /// Stop after this many seconds and print the summary
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Seed of every random choice (traces picked, synthetic load)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// PlanetLab day directory (default: the one shipped in metrics/data/planetlab)
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// Write plain-text frames of the live view to FILE (replaced; every 10 s and at the end)
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The live view needs a terminal; piped output gets the plain logs.
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    // Log lines would scribble over the live view: only errors then (RUST_LOG overrides).
    let default_level = if tui { "error" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let duration = match args.duration {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("ganglia-demo: --duration {s}: give a positive number of seconds");
            return ExitCode::from(2);
        }
    };
    let opts = DemoOptions {
        hosts: args.hosts,
        vms: args.vms,
        policy: args.policy,
        speedup: args.speedup,
        tui,
        port: args.port,
        duration,
        seed: args.seed,
        trace_dir: args.trace,
        capture: args.capture,
    };
    let stop = StopHandle::new();
    if let Err(e) = stop_on_signals(stop.clone()) {
        eprintln!("ganglia-demo: cannot handle Ctrl-C: {e}");
        return ExitCode::from(1);
    }
    match demo::run(&opts, &stop) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ganglia-demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT and SIGTERM set `stop`; the demo then winds down and prints its summary.
fn stop_on_signals(stop: StopHandle) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(mut int), Ok(mut term)) => {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                    }
                    _ => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            });
            stop.stop();
        })?;
    Ok(())
}
