//! gmond-rs: the command line, with gmond 3.7.2's flags.
use clap::Parser;
use gmond_rs::daemon::{self, Detach, ReloadCheck, RunOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The Ganglia Monitoring Daemon, in Rust: listens to the cluster message channel, keeps the
/// whole cluster's state in memory, and serves it as XML.
#[derive(Parser, Debug)]
#[command(name = "gmond-rs", disable_version_flag = true)]
struct Args {
    /// Location of the gmond configuration file (default /etc/ganglia/gmond.conf; the
    /// built-in default when that file does not exist)
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Location of this host in the cluster: 'rack,rank,plane'
    #[arg(short = 'l', long = "location")]
    location: Option<String>,
    /// Debug level; greater than zero keeps the daemon in the foreground with debug logs
    #[arg(short = 'd', long = "debug", default_value_t = 0)]
    debug: u32,
    /// Run in the foreground (otherwise, with `daemonize = yes`, detach as gmond does)
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// Print the default configuration to stdout and exit
    #[arg(short = 't', long = "default_config")]
    default_config: bool,
    /// Print the list of metrics this gmond supports and exit
    #[arg(short = 'm', long = "metrics")]
    metrics: bool,
    /// Calculate minimum bandwidth use for the configuration (not implemented)
    #[arg(short = 'b', long = "bandwidth")]
    bandwidth: bool,
    /// Convert a 2.5.x configuration file to the 3.x format (not implemented)
    #[arg(short = 'r', long = "convert", value_name = "FILE")]
    convert: Option<PathBuf>,
    /// Write the process id to this file
    #[arg(short = 'p', long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Print version and exit
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Also archive the cluster view every 15 s in gmetad's RRD layout under DIR
    /// (DIR/<cluster>/<host>/<metric>.rrd), for ganglia-web without gmetad. gmond-rs only.
    #[arg(long = "rrd-rootdir", value_name = "DIR")]
    rrd_rootdir: Option<PathBuf>,
    /// Sign every datagram sent and check signatures received, with the keys in FILE (made
    /// by gmond-rs-keygen; mode 0600, owned by this user; read again on SIGHUP). gmond-rs
    /// only: real gmond reads signed datagrams as plain ones.
    #[arg(long = "auth", value_name = "FILE")]
    auth: Option<PathBuf>,
    /// With --auth, what a udp_recv_channel accepts: MODE for every channel, or PORT=MODE for
    /// the channel on that port (repeatable). Modes: none (ignore signatures), prefer (the
    /// default: signed or unsigned, but no bad signature), require (signed only)
    #[arg(long = "auth-recv", value_name = "[PORT=]MODE", requires = "auth")]
    auth_recv: Vec<String>,
    /// gmond-rs's own settings, which real gmond has no options for (store caps, who may
    /// spoof on each receive channel), in gmond.conf's syntax (default
    /// /etc/ganglia/gmond-rs.conf when it exists). gmond-rs only
    #[arg(long = "rs-conf", value_name = "FILE")]
    rs_conf: Option<PathBuf>,
}

/// gmond-rs.conf: `--rs-conf FILE` (which must load), else the default file if it exists,
/// checked against the gmond.conf it complements.
fn load_rs_conf(
    arg: Option<&Path>,
    cfg: &gmond_conf::Config,
) -> Result<Option<gmond_conf::RsConfig>, String> {
    let default = Path::new(gmond_conf::DEFAULT_RS_CONFIG_PATH);
    let path = match arg {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(None),
    };
    let (rs, warnings) = gmond_conf::load_rs(path).map_err(|e| e.to_string())?;
    for w in &warnings {
        tracing::warn!(location = %w.location, option = %w.option, "{}", w.message);
    }
    daemon::check_rs_conf(cfg, &rs).map_err(|e| e.to_string())?;
    Ok(Some(rs))
}

/// Writes a listing to stdout; a reader that went away (`gmond-rs -m | head`) ends the
/// listing quietly instead of panicking as `print!` would.
fn emit(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gmond-rs: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!(
            "gmond-rs {} (gmond 3.7.2 compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if args.default_config {
        return emit(gmond_conf::default_config_text().as_bytes());
    }
    if args.metrics {
        // As gmond -m: the configuration is loaded first (a missing -c FILE or a bad file is an
        // error), then the metrics it can collect are listed.
        let loaded = match gmond_conf::load_like_gmond(args.conf.as_deref()) {
            Ok(l) => l,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(1);
            }
        };
        let mut out = String::new();
        for spec in gmond_metrics::linux::catalogue() {
            out.push_str(&format!(
                "{:<15}\t{} (module {})\n",
                spec.name, spec.desc, spec.module
            ));
        }
        if loaded
            .config
            .modules
            .iter()
            .any(|m| m.enabled && m.name == "libvirt_module")
        {
            for name in gmond_metrics::vmetrics::VM_METRICS {
                out.push_str(&format!(
                    "<vm>.{name:<10}\tper-VM metric (module libvirt_module)\n"
                ));
            }
        }
        return emit(out.as_bytes());
    }
    if args.bandwidth || args.convert.is_some() {
        eprintln!("gmond-rs: -b and -r are not implemented");
        return ExitCode::from(1);
    }
    let level = if args.debug > 0 { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();

    // gmond's rule: -c FILE must exist; without -c, /etc/ganglia/gmond.conf or the built-in.
    let loaded = match gmond_conf::load_like_gmond(args.conf.as_deref()) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("gmond-rs: configuration rejected; not starting");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!(location = %w.location, option = %w.option, "{}", w.message);
    }
    // gmond's rule: a debug level keeps it in the foreground like -f.
    let background = loaded.config.globals.daemonize && !args.foreground && args.debug == 0;
    // Absolute, because detaching changes the working directory to /.
    let pid_file = match args
        .pid_file
        .as_deref()
        .map(std::path::absolute)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gmond-rs: pid file: {e}");
            return ExitCode::from(1);
        }
    };
    let rs_conf = match load_rs_conf(args.rs_conf.as_deref(), &loaded.config) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("gmond-rs: configuration rejected; not starting");
            return ExitCode::from(1);
        }
    };
    // Before detaching: a key file problem is reported on the terminal.
    let auth = match &args.auth {
        None => None,
        Some(path) => match gmond_rs::auth::read_key_file(path) {
            Ok(keys) => {
                let mut opts = gmond_rs::auth::AuthOptions::new(keys);
                for spec in &args.auth_recv {
                    if let Err(e) = opts.set_mode(spec) {
                        eprintln!("gmond-rs: --auth-recv {spec}: {e}");
                        return ExitCode::from(1);
                    }
                }
                tracing::info!(
                    file = %path.display(),
                    keys = ?opts.keys.key_ids().collect::<Vec<_>>(),
                    signing = opts.keys.signing_key_id(),
                    "authenticated datagrams"
                );
                Some(opts)
            }
            Err(e) => {
                eprintln!("gmond-rs: {e}");
                eprintln!("gmond-rs: configuration rejected; not starting");
                return ExitCode::from(1);
            }
        },
    };
    let mut detach_hook = None;
    if background {
        let pid_file = pid_file.clone();
        detach_hook = Some(Detach(Arc::new(move || detach(pid_file.as_deref()))));
    } else if let Some(path) = &pid_file {
        if let Err(e) = write_pid_file(path) {
            eprintln!("gmond-rs: cannot write pid file {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    // SIGHUP re-executes only into a configuration that loads and that this build can run.
    // The key file is re-read by the new image too: it must still load.
    let (conf, key_file, rs_file) = (args.conf.clone(), args.auth.clone(), args.rs_conf.clone());
    let reload_check = ReloadCheck(Arc::new(move || {
        let loaded = gmond_conf::load_like_gmond(conf.as_deref()).map_err(|e| e.to_string())?;
        daemon::check_startable(&loaded.config).map_err(|e| e.to_string())?;
        load_rs_conf(rs_file.as_deref(), &loaded.config)?;
        match &key_file {
            Some(path) => gmond_rs::auth::read_key_file(path)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }));
    let result = daemon::run(
        loaded.config,
        RunOptions {
            location: args.location,
            rrd_rootdir: args.rrd_rootdir,
            detach: detach_hook,
            reload_check: Some(reload_check),
            auth,
            rs_conf,
            ..RunOptions::default()
        },
    );
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(daemon::Exit::Reload) => {
            // gmond's reload: run this program again with the same arguments (sockets are
            // close-on-exec, so the new image can bind them again).
            use std::os::unix::process::CommandExt;
            tracing::info!("SIGHUP: re-executing to reload the configuration");
            let err = std::env::current_exe().map(|exe| {
                std::process::Command::new(exe)
                    .args(std::env::args_os().skip(1))
                    .exec()
            });
            eprintln!("gmond-rs: cannot re-execute on SIGHUP: {err:?}");
            ExitCode::from(1)
        }
        Ok(daemon::Exit::Stopped) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gmond-rs: {e}");
            ExitCode::from(1)
        }
    }
}

/// Goes into the background as gmond does (fork, the parent exits 0, setsid, chdir /, standard
/// streams to /dev/null), then records the new process id. Called by the daemon once its
/// sockets are bound, so a bad channel is still reported on the terminal, and before it
/// starts any thread, so the fork copies a single-threaded process.
fn detach(pid_file: Option<&Path>) -> std::io::Result<()> {
    tracing::info!("detaching into the background");
    nix::unistd::daemon(false, false)?;
    match pid_file {
        Some(path) => write_pid_file(path),
        None => Ok(()),
    }
}

fn write_pid_file(path: &Path) -> std::io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
}
