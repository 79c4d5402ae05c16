//! `balancer`: explain a plan for a snapshot or live gmond feed, or simulate a scenario (by
//! default through the agent's gates, `balancer_agent::simulate`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use balancer::planner::{History, Input};
use balancer::policy::{PolicySpec, DETECTORS, PLACEMENTS, SELECTORS};
use balancer::sim::{
    builtin_scenario, simulate_driven, simulate_with_progress, Progress, Scenario, SimOptions,
    TickProgress, BUILTIN_SCENARIOS,
};
use balancer::snapshot::Snapshot;
use balancer::trends::Trends;
use balancer_agent::simulate::AgentSim;
use balancer_agent::AgentConfig;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "balancer", about = "VM balancing policies: plan and simulate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decide one plan from a snapshot file (JSON or TOML) or a gmond XML feed.
    Plan(PlanArgs),
    /// Run a scenario in the simulator.
    Simulate(SimulateArgs),
    /// Record a live gmond feed into DIR, a sample every interval, for `simulate --scenario DIR`.
    Record(RecordArgs),
    /// Turn gmetad's RRDs (its rrd_rootdir) into a recording in DIR, for `simulate --scenario DIR`.
    ImportRrd(ImportArgs),
    /// List built-in scenarios and policies.
    List,
}

#[derive(Args)]
struct PlanArgs {
    /// Snapshot file.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// gmond/gmetad TCP feed host:port (loopback only in tests).
    #[arg(long)]
    feed: Option<String>,
    /// Policy name or TOML file (default hotspot).
    #[arg(long, default_value = "hotspot")]
    policy: String,
    /// Print the human-readable explanation as well as the JSON plan.
    #[arg(long)]
    explain: bool,
    /// The snapshot is assumed to have held for this many steps of the policy (`step_s`,
    /// 60 s by default; sustained tests need several; 1 = take it as a single new sample).
    #[arg(long, default_value_t = 5)]
    assume_samples: u64,
    /// Keep load history in RRD files under DIR (one per host and VM series): each run
    /// restores it, adds this snapshot, and saves it, so trends survive between runs and
    /// restarts. Replaces --assume-samples.
    #[arg(long, value_name = "DIR")]
    history: Option<PathBuf>,
}

#[derive(Args)]
struct RecordArgs {
    /// gmond/gmetad TCP feed host:port.
    #[arg(long)]
    feed: String,
    /// Directory to write (recording.json, samples.csv); an existing recording is replaced.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Samples to take (360 at the default interval is an hour).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u64).range(1..))]
    samples: u64,
}

#[derive(Args)]
struct ImportArgs {
    /// gmetad's rrd_rootdir (<cluster>/<host>/<metric>.rrd).
    #[arg(long, value_name = "DIR")]
    rrd_root: PathBuf,
    /// Directory to write the recording to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How far back from the newest update to import, seconds.
    #[arg(long, default_value_t = 3600)]
    since: u64,
}

#[derive(Args)]
struct SimulateArgs {
    /// Built-in scenario name, scenario file, or a recording directory (`record`,
    /// `import-rrd`).
    #[arg(long)]
    scenario: String,
    /// Policy name or TOML file (default hotspot).
    #[arg(long, default_value = "hotspot")]
    policy: String,
    /// PlanetLab trace directory (default: the copy in metrics/data).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Seed for the scenario's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Explain every decision round as it is taken: per host, the policy's tests with their
    /// figures (detector values, sample counts); every refused candidate with its gate (the
    /// agent's gates too); CPU spread and power before and after. On stdout before the
    /// report (on stderr with --json).
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Also draw host CPU utilisation over time and the migrations as a PNG here.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Size of the --plot image, WIDTHxHEIGHT pixels.
    #[arg(long, value_name = "WxH", default_value = "1200x600", value_parser = parse_size)]
    plot_size: (u32, u32),
    /// The policy alone decides every tick, without the agent's gates (budget, leadership,
    /// quorum, pre-check, settling, cooldowns): the paper comparisons (BENCHMARKS.md).
    #[arg(long, conflicts_with_all = ["agent_config", "budget", "budget_window"])]
    no_agent_gates: bool,
    /// Agent config whose gates apply (configs/balancer-agent.toml; its mode is taken as
    /// auto, an empty trusted_hosts as every host of the scenario). Default: the agent's
    /// defaults.
    #[arg(long, value_name = "FILE")]
    agent_config: Option<PathBuf>,
    /// Migrations the agent may start per budget window (overrides budget_migrations).
    #[arg(long, value_name = "N")]
    budget: Option<u32>,
    /// Budget window, seconds (overrides budget_window_s).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    budget_window: Option<u64>,
}

fn load_policy(p: &str) -> anyhow::Result<PolicySpec> {
    let path = PathBuf::from(p);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {p}"))?;
        Ok(PolicySpec::parse(&text)?)
    } else {
        Ok(PolicySpec::builtin(p)?)
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s}: expected WIDTHxHEIGHT"))?;
    let n = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s}: {e}"));
    Ok((n(w)?, n(h)?))
}

fn main() -> anyhow::Result<()> {
    tracing_init();
    match Cli::parse().cmd {
        Cmd::List => {
            println!("scenarios: {}", BUILTIN_SCENARIOS.join(" "));
            println!("policies: none naive-threshold hotspot stabilize consolidate consolidate-aggressive thr-mmt-0.8 iqr-mmt-1.5 mad-mmt-2.5 lr-mmt-1.2 hotspot-pabfd");
            println!(
                "composed parts: detector {}; selector {}; placement {}",
                DETECTORS.join(" "),
                SELECTORS.join(" "),
                PLACEMENTS.join(" ")
            );
            Ok(())
        }
        Cmd::Plan(a) => plan(a),
        Cmd::Simulate(a) => simulate(a),
        Cmd::Record(a) => record(a),
        Cmd::ImportRrd(a) => import_rrd(a),
    }
}

/// `balancer record`: samples the feed's view every interval into a recording directory,
/// with a progress line on stderr. A failed read is reported and skipped (the feed may be
/// restarting); the samples taken so far are on disk at every step.
fn record(a: RecordArgs) -> anyhow::Result<()> {
    use balancer::sim::recorded::Recorder;
    use balancer::view::{ReadOptions, VnodeView};
    let mut rec = Recorder::create(&a.out, &a.feed, a.interval)?;
    let timeout = std::time::Duration::from_secs(30);
    let interval = std::time::Duration::from_secs(a.interval);
    let mut next = std::time::Instant::now();
    let (mut taken, mut failed) = (0u64, 0u64);
    while taken + failed < a.samples {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match balancer::feed::read_xml(&a.feed, timeout, timeout)
            .and_then(|xml| balancer::view::parse_xml(&xml))
        {
            Ok(cluster) => {
                let view = VnodeView::read(&cluster, &ReadOptions::default());
                let vms = rec.add(now, &view)?;
                taken += 1;
                eprintln!(
                    "[record] sample {}/{}: {} hosts, {vms} VMs -> {}",
                    taken + failed,
                    a.samples,
                    view.hosts.len(),
                    a.out.display()
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "[record] sample {}/{} skipped: {e}",
                    taken + failed,
                    a.samples
                );
            }
        }
        if taken + failed < a.samples {
            next += interval;
            std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
        }
    }
    if taken == 0 {
        bail!("no sample could be read from {}", a.feed);
    }
    eprintln!(
        "[record] {taken} samples in {} ({failed} skipped)",
        a.out.display()
    );
    Ok(())
}

/// `balancer import-rrd`: gmetad's RRDs to a recording directory.
fn import_rrd(a: ImportArgs) -> anyhow::Result<()> {
    let rec = balancer::sim::recorded::import_gmetad(&a.rrd_root, a.since)?;
    rec.save(&a.out)?;
    eprintln!(
        "[import-rrd] {} hosts, {} VM samples every {} s, {} moves observed -> {}",
        rec.meta.hosts.len(),
        rec.samples.len(),
        rec.meta.interval_s,
        rec.observed_moves(),
        a.out.display()
    );
    Ok(())
}

/// `balancer plan`: one plan for one snapshot, as JSON (after the explanation if asked).
fn plan(a: PlanArgs) -> anyhow::Result<()> {
    let spec = load_policy(&a.policy)?;
    let snap = match (&a.snapshot, &a.feed) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Snapshot::parse(&text, path.extension().is_some_and(|e| e == "toml"))?
        }
        (None, Some(addr)) => {
            // A live cluster: a plan that overfills memory must not even be recommended.
            spec.clone().for_cluster()?;
            balancer::feed::fetch(addr, std::time::Duration::from_secs(30))?
        }
        _ => bail!("give exactly one of --snapshot FILE or --feed host:port"),
    };
    let trends = trends_for(&snap, &a, &spec)?;
    let history = History::default();
    let plan = spec.build().decide(Input {
        snapshot: &snap,
        trends: &trends,
        history: &history,
        now: snap.time,
        wall_s: snap.time,
        verbose: a.explain,
        pending: &[],
    });
    if a.explain {
        print!("{}", plan.explain_with(true));
    }
    println!("{}", plan.to_json());
    Ok(())
}

/// The trends `plan` decides on: the RRD history under `--history` with this snapshot added,
/// else the snapshot repeated `--assume-samples` times.
fn trends_for(snap: &Snapshot, a: &PlanArgs, spec: &PolicySpec) -> anyhow::Result<Trends> {
    let mut trends = Trends::new(spec.trend_config());
    if let Some(dir) = &a.history {
        // 60-s samples, a day of them per series.
        let mut store = balancer::rrdstore::RrdStore::new(dir, 60, 1440)?;
        let hosts: Vec<&str> = snap.hosts.iter().map(|h| h.name.as_str()).collect();
        let vms: Vec<&str> = snap.vms.iter().map(|v| v.name.as_str()).collect();
        trends.restore(&store, &hosts, &vms)?;
        trends.observe(snap);
        trends.persist(&mut store)?;
    } else {
        // One snapshot has no history: treat it as having held for `assume_samples` steps of
        // the policy, so that sustained tests can fire (said in the --help text).
        for k in (0..a.assume_samples.max(1)).rev() {
            let mut s = snap.clone();
            s.time = snap.time.saturating_sub(k * spec.step_s());
            trends.observe(&s);
        }
    }
    Ok(trends)
}

/// `balancer simulate`: runs the scenario with progress on stderr, then prints the report.
fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    let spec = load_policy(&a.policy)?;
    let path = PathBuf::from(&a.scenario);
    let sc = if path.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recording".into());
        balancer::sim::recorded::ClusterRecording::load(&path)?.to_scenario(&name)?
    } else if path.exists() {
        Scenario::load(&path)?
    } else {
        builtin_scenario(&a.scenario, a.trace.as_deref(), a.seed)?
    };
    let (w, h) = a.plot_size;
    if a.plot.is_some() {
        balancer::sim::plot::check_size(w, h)?;
    }
    let started = std::time::Instant::now();
    let opts = SimOptions {
        seed: a.seed,
        record: a.plot.is_some(),
        explain: a.verbose,
    };
    let mut progress = if a.verbose {
        // Plain progress lines between the explanations (a bar redrawn in place would tear
        // through them).
        Box::new(Explained {
            lines: ProgressLines {
                out: std::io::stderr(),
                scenario: sc.name.clone(),
                duration_s: sc.duration_s,
            },
            to_stderr: a.json,
        })
    } else {
        progress_on_stderr(&sc)
    };
    let (r, recording) = if a.no_agent_gates {
        simulate_with_progress(&sc, &spec, &opts, &mut *progress)?
    } else {
        let mut cfg = match &a.agent_config {
            Some(p) => AgentConfig::load(p)?,
            None => AgentConfig::default(),
        };
        cfg.budget_migrations = a.budget.unwrap_or(cfg.budget_migrations);
        cfg.budget_window_s = a.budget_window.unwrap_or(cfg.budget_window_s);
        let mut agents = AgentSim::new(&sc, &spec, cfg)
            .context("simulating through the agent (--no-agent-gates simulates the policy alone)")?
            .explain(a.verbose);
        simulate_driven(&sc, &spec, &opts, &mut agents, &mut *progress)?
    };
    if let (Some(path), Some(rec)) = (&a.plot, &recording) {
        balancer::sim::plot::render_png(rec, path, w, h)?;
        eprintln!("plot written to {}", path.display());
    }
    eprintln!(
        "simulated {} under {} in {:.2} s ({})",
        sc.name,
        spec.policy,
        started.elapsed().as_secs_f64(),
        if a.no_agent_gates {
            "the policy alone"
        } else {
            "through the agent's gates"
        }
    );
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if let Some(o) = serde_json::to_value(&r)?.as_object() {
        for (k, v) in o {
            println!("{k:28} {v}");
        }
    }
    Ok(())
}

/// A line of plain progress every this many ticks (and one at the last tick).
const LINE_EVERY_TICKS: u64 = 24;

/// `simulate`'s progress on stderr: a bar redrawn in place on a terminal; elsewhere (logs, CI,
/// tests) plain lines that read well in a file.
fn progress_on_stderr(sc: &Scenario) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(ProgressBarView::new(&sc.name, sc.duration_s / sc.tick_s))
    } else {
        Box::new(ProgressLines {
            out: std::io::stderr(),
            scenario: sc.name.clone(),
            duration_s: sc.duration_s,
        })
    }
}

/// `simulate --verbose`: each round's explanation, under a `t=...` heading, then the plain
/// progress lines.
struct Explained {
    lines: ProgressLines<std::io::Stderr>,
    /// Explanations to stderr (stdout carries the JSON report).
    to_stderr: bool,
}

impl Progress for Explained {
    fn tick(&mut self, at: &TickProgress) {
        self.lines.tick(at);
    }

    fn explain(&mut self, t_s: u64, text: &str) {
        // A closed pipe must not stop the simulation; the report still prints at the end.
        let _ = if self.to_stderr {
            write!(std::io::stderr(), "t={t_s}s {text}")
        } else {
            write!(std::io::stdout(), "t={t_s}s {text}")
        };
    }
}

/// `[scenario] t=Ts/Ds migrations=M sigma=S` every [`LINE_EVERY_TICKS`] ticks and at the last.
struct ProgressLines<W> {
    out: W,
    scenario: String,
    duration_s: u64,
}

impl<W: Write> Progress for ProgressLines<W> {
    fn tick(&mut self, at: &TickProgress) {
        if at.tick % LINE_EVERY_TICKS == 0 || at.is_last() {
            // Progress is a courtesy: a closed stderr must not stop the simulation.
            let _ = writeln!(
                self.out,
                "[{}] t={}s/{}s migrations={} sigma={:.3}",
                self.scenario, at.t_s, self.duration_s, at.migrations, at.sigma
            );
        }
    }
}

/// An indicatif bar over the run's ticks, with the simulated time, migrations and sigma.
struct ProgressBarView(indicatif::ProgressBar);

impl ProgressBarView {
    fn new(scenario: &str, ticks: u64) -> ProgressBarView {
        let bar = indicatif::ProgressBar::new(ticks);
        // The template is a constant, so this only falls back if indicatif changes its syntax.
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("[{prefix}] [{bar:30}] {percent:>3}% {msg}")
        {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar.set_prefix(scenario.to_string());
        ProgressBarView(bar)
    }
}

impl Progress for ProgressBarView {
    fn tick(&mut self, at: &TickProgress) {
        self.0.set_position(at.tick + 1);
        self.0.set_message(format!(
            "t={}s migrations={} sigma={:.3}",
            at.t_s, at.migrations, at.sigma
        ));
        if at.is_last() {
            self.0.finish();
        }
    }
}

fn tracing_init() {
    // Logs go to stderr (RUST_LOG, default warn) so that stdout stays a clean plan or report.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(tick: u64, ticks: u64) -> TickProgress {
        TickProgress {
            tick,
            ticks,
            t_s: tick * 60,
            migrations: tick / 10,
            sigma: 0.1234,
        }
    }

    #[test]
    fn plain_progress_is_a_line_every_24_ticks_and_at_the_last() {
        let mut lines = ProgressLines {
            out: Vec::new(),
            scenario: "s".into(),
            duration_s: 3000,
        };
        for k in 0..50 {
            lines.tick(&tick(k, 50));
        }
        assert_eq!(
            String::from_utf8(lines.out).unwrap(),
            "[s] t=0s/3000s migrations=0 sigma=0.123\n\
             [s] t=1440s/3000s migrations=2 sigma=0.123\n\
             [s] t=2880s/3000s migrations=4 sigma=0.123\n\
             [s] t=2940s/3000s migrations=4 sigma=0.123\n"
        );
    }
}
