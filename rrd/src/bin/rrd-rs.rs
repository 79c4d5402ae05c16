//! `rrd-rs`: an rrdtool-like command line (create, update, fetch, info, last) over the rrd crate.
//!
//! The syntax is rrdtool's for these subcommands: positional `DS:`/`RRA:` specs and `T:V:V`
//! updates, and rrdtool's option names. As with rrdtool's getopt, an option's value may start
//! with `-` (`--start -3600`), and an update string that starts with `-` (a negative time)
//! needs `--` before it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use rrd::{Cf, Layout, Rrd, RrdFile, Update};

#[derive(Parser)]
#[command(
    name = "rrd-rs",
    version,
    about = "Round-robin archives in rrdtool's file format",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates FILE from DS:name:TYPE:heartbeat:min:max and RRA:CF:xff:steps:rows specs.
    Create(CreateArgs),
    /// Applies T:V[:V...] updates (T in seconds, N for now, or negative from now) to FILE.
    Update(UpdateArgs),
    /// Prints one consolidation function's rows between two times, as rrdtool fetch does.
    Fetch(FetchArgs),
    /// Prints FILE's header and live state, as rrdtool info does.
    Info {
        /// The RRD file.
        file: PathBuf,
    },
    /// Prints the time of FILE's last update.
    Last {
        /// The RRD file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// The RRD file to write.
    file: PathBuf,
    /// Seconds between primary data points.
    #[arg(short = 's', long, value_name = "SECONDS", default_value_t = 300)]
    step: u64,
    /// Time of the (virtual) last update [default: now - 10 s].
    #[arg(short = 'b', long, value_name = "TIME", allow_hyphen_values = true)]
    start: Option<Time>,
    /// Refuse to overwrite an existing file.
    #[arg(short = 'O', long)]
    no_overwrite: bool,
    /// Data sources and archives: DS:name:TYPE:heartbeat:min:max, RRA:CF:xff:steps:rows.
    #[arg(value_name = "DS:...|RRA:...")]
    specs: Vec<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// The RRD file to update.
    file: PathBuf,
    /// Which data source each value is for (ds1:ds2:...); the others get U.
    #[arg(short = 't', long, value_name = "DS:DS...", allow_hyphen_values = true)]
    template: Option<String>,
    /// Updates, applied in order: T:V[:V...].
    #[arg(value_name = "T:V[:V...]")]
    updates: Vec<String>,
}

#[derive(Args)]
struct FetchArgs {
    /// The RRD file to read.
    file: PathBuf,
    /// Consolidation function: AVERAGE, MIN, MAX or LAST.
    #[arg(value_parser = parse_cf)]
    cf: Cf,
    /// First time to fetch [default: end - 1 day].
    #[arg(short = 's', long, value_name = "TIME", allow_hyphen_values = true)]
    start: Option<Time>,
    /// Last time to fetch [default: now].
    #[arg(short = 'e', long, value_name = "TIME", allow_hyphen_values = true)]
    end: Option<Time>,
    /// Wanted seconds per row (the archive closest to it is chosen).
    #[arg(short = 'r', long, value_name = "SECONDS", default_value_t = 1)]
    resolution: u64,
}

/// A time argument: integer seconds since the epoch, `now`/`N`, or a negative offset from now.
#[derive(Clone, Copy, Debug)]
enum Time {
    /// `now` or `N`.
    Now,
    /// Seconds since the epoch.
    At(i64),
    /// Negative seconds from now.
    FromNow(i64),
}

impl Time {
    fn resolve(self, now: i64) -> i64 {
        match self {
            Time::Now => now,
            Time::At(t) => t,
            Time::FromNow(d) => now + d,
        }
    }
}

impl FromStr for Time {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "now" || s == "N" {
            return Ok(Time::Now);
        }
        let v: i64 = s.parse().map_err(|_| format!("cannot parse time {s:?}"))?;
        Ok(if v < 0 { Time::FromNow(v) } else { Time::At(v) })
    }
}

fn parse_cf(s: &str) -> Result<Cf, String> {
    Cf::parse(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // Usage errors (unknown option, missing or malformed argument) exit through clap: its
    // message and usage on stderr, status 2.
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("ERROR: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn load(file: &Path) -> Result<Rrd, String> {
    let b = std::fs::read(file).map_err(|e| format!("opening '{}': {e}", file.display()))?;
    Rrd::from_bytes(&b).map_err(|e| format!("{}: {e}", file.display()))
}

fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Create(a) => create(a),
        Command::Update(a) => update(a),
        Command::Fetch(a) => fetch(a),
        Command::Info { file } => {
            let rrd = load(&file)?;
            Ok(rrd::info_text(&file.to_string_lossy(), &rrd.info()))
        }
        Command::Last { file } => Ok(format!("{}\n", load(&file)?.last_update().secs)),
    }
}

fn create(a: CreateArgs) -> Result<String, String> {
    let start = a.start.map_or(now() - 10, |t| t.resolve(now()));
    let layout = Layout::from_specs(a.step, start, &a.specs).map_err(|e| e.to_string())?;
    let r = if a.no_overwrite {
        RrdFile::create_new(&a.file, &layout)
    } else {
        RrdFile::create(&a.file, &layout)
    };
    r.map_err(|e| e.to_string())?;
    Ok(String::new())
}

fn update(a: UpdateArgs) -> Result<String, String> {
    let file = a.file.display();
    if a.updates.is_empty() {
        return Err("Not enough arguments".to_string());
    }
    let mut f = RrdFile::open(&a.file).map_err(|e| e.to_string())?;
    let template = match &a.template {
        Some(t) => Some(rrd::Template::new(t, f.ds()).map_err(|e| format!("{file}: {e}"))?),
        None => None,
    };
    // Parse lazily so a malformed argument stops the batch where rrdtool would.
    let mut parsed = Vec::with_capacity(a.updates.len());
    let mut parse_err = None;
    for u in &a.updates {
        let parsed_one = match &template {
            Some(t) => t.parse(u),
            None => Update::parse(u),
        };
        match parsed_one {
            Ok(u) => parsed.push(u),
            Err(e) => {
                parse_err = Some(e);
                break;
            }
        }
    }
    f.update_many(&parsed).map_err(|e| format!("{file}: {e}"))?;
    match parse_err {
        Some(e) => Err(format!("{file}: {e}")),
        None => Ok(String::new()),
    }
}

fn fetch(a: FetchArgs) -> Result<String, String> {
    let now = now();
    let end = a.end.map_or(now, |t| t.resolve(now));
    let start = a.start.map_or(end - 86400, |t| t.resolve(now));
    if start < 3600 * 24 * 365 * 10 {
        return Err(format!(
            "the first entry to fetch should be after 1980 ({start})"
        ));
    }
    let rrd = load(&a.file)?;
    let f = rrd
        .fetch(a.cf, start, end, a.resolution)
        .map_err(|e| e.to_string())?;
    Ok(rrd::fetch_text(&f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rrdtool_syntax_parses() {
        let cli = Cli::try_parse_from([
            "rrd-rs",
            "create",
            "x.rrd",
            "--step",
            "15",
            "-b",
            "-3600",
            "DS:sum:GAUGE:120:U:U",
            "RRA:AVERAGE:0.5:1:10",
            "-O",
        ])
        .unwrap();
        let Command::Create(a) = cli.command else {
            panic!("not create");
        };
        assert_eq!(a.step, 15);
        assert!(matches!(a.start, Some(Time::FromNow(-3600))));
        assert!(a.no_overwrite);
        assert_eq!(a.specs, ["DS:sum:GAUGE:120:U:U", "RRA:AVERAGE:0.5:1:10"]);

        let cli = Cli::try_parse_from(["rrd-rs", "update", "x.rrd", "-t", "b:a", "N:1:2", "-10:3"]);
        assert!(cli.is_err(), "a negative time needs -- as in rrdtool");
        let cli = Cli::try_parse_from([
            "rrd-rs",
            "update",
            "x.rrd",
            "--template=b:a",
            "N:1:2",
            "--",
            "-10:3",
        ])
        .unwrap();
        let Command::Update(a) = cli.command else {
            panic!("not update");
        };
        assert_eq!(a.template.as_deref(), Some("b:a"));
        assert_eq!(a.updates, ["N:1:2", "-10:3"]);

        let cli = Cli::try_parse_from([
            "rrd-rs",
            "fetch",
            "x.rrd",
            "MAX",
            "-s",
            "N",
            "-e",
            "1700000000",
            "-r",
            "60",
        ])
        .unwrap();
        let Command::Fetch(a) = cli.command else {
            panic!("not fetch");
        };
        assert_eq!(a.cf, Cf::Max);
        assert!(matches!(a.start, Some(Time::Now)));
        assert!(matches!(a.end, Some(Time::At(1_700_000_000))));
        assert_eq!(a.resolution, 60);
    }
}
