//! `balancer-agent`: the per-host balancer beside gmond-rs (or gmond). Reads the cluster's XML
//! feed, leads or follows, plans and migrates through libvirt, and sends its own metrics to the
//! gmond.conf's udp_send_channels. A thin CLI over the `balancer_agent` library.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use balancer_agent::audit::AuditLog;
use balancer_agent::balancer::feed::{self, Query};
use balancer_agent::core::COORDINATION_METRICS;
use balancer_agent::metrics::{Identity, MetricSink, SendChannel, UdpSink};
use balancer_agent::{Agent, AgentConfig, AgentOptions, Executor, ExecutorKind, Mode};
use clap::Parser;
use ganglia_wire::auth::{KeyRing, Signer, TRAILER_LEN};
use ganglia_wire::filter::MetricFilter;
use gmond_conf::SendTarget;

#[derive(Parser, Debug)]
#[command(
    name = "balancer-agent",
    about = "Per-host VM balancer: leader from the Ganglia view, libvirt live migration"
)]
struct Cli {
    /// gmond.conf: its udp_send_channels receive our metrics; override_hostname/override_ip
    /// give our identity (default: gmond's own choice of file).
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Agent config (configs/balancer-agent.toml); defaults for every key when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gmond XML feed host:port (overrides the config's `feed`).
    #[arg(long)]
    feed: Option<String>,
    /// gmond-rs query channel host:port (overrides the config's `query`; "" reads `feed`).
    #[arg(long)]
    query: Option<String>,
    /// Mode override: off, recommend or auto.
    #[arg(long)]
    mode: Option<String>,
    /// Policy name or file (overrides the config's `policy`).
    #[arg(long)]
    policy: Option<String>,
    /// Audit log file (overrides the config's `audit_log`).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// This host's NAME in the Ganglia view (default: the config's `name`, else
    /// override_hostname, else learnt from the view by this machine's address, else the
    /// hostname).
    #[arg(long)]
    name: Option<String>,
    /// Seconds between rounds (overrides the config's `interval_s`).
    #[arg(long)]
    interval: Option<u64>,
    /// One round, then exit (auto mode waits for the migrations it started).
    #[arg(long)]
    once: bool,
    /// Same as --mode recommend.
    #[arg(long)]
    dry_run: bool,
    /// Sign our metrics with gmond-rs's key file (as `gmond-rs --auth FILE`: mode 0600,
    /// owned by this user; read again on SIGHUP).
    #[arg(long, value_name = "FILE")]
    auth: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();

    let gconf = gmond_conf::load_like_gmond(cli.conf.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .config;
    let cfg = agent_config(&cli)?;
    let hostname = gmond_metrics::linux::hostname();
    let g = &gconf.globals;
    let identity = Identity::new(
        &hostname,
        g.override_hostname.as_deref(),
        g.override_ip.as_deref(),
    );
    let configured = cli
        .name
        .clone()
        .or_else(|| cfg.name.clone())
        .or_else(|| g.override_hostname.clone());
    let name_guessed = configured.is_none();
    let name = configured.unwrap_or(hostname);
    let local_ips = local_addresses(&gconf);
    let keys = cli.auth.as_deref().map(read_keys).transpose()?;
    // Without --auth the sink is used as it is (taking it out only to sign would drop it).
    let sink = match (&keys, metric_sink(&gconf)?) {
        (Some(keys), Some(s)) => {
            let signer = Signer::new(keys, sender_id()?);
            tracing::info!(signing = keys.signing_key_id(), "metrics are signed");
            Some(s.signing(signer))
        }
        (_, sink) => sink,
    };
    let audit = match &cfg.audit_log {
        Some(p) => AuditLog::open(p)?,
        None => AuditLog::none(),
    };
    let mut opts = AgentOptions::new(&name, cfg.clone(), executor(&cfg)?);
    opts.identity = identity.clone();
    opts.audit = audit;
    opts.max_udp_msg_len = usize::from(g.max_udp_msg_len);
    opts.name_guessed = name_guessed;
    opts.local_ips = local_ips;
    if keys.is_some() {
        opts.reserve = TRAILER_LEN;
    }
    let agent = Agent::new(opts)?;
    let signals = Signals::install()?;
    tracing::info!(name = %name, identity = %identity.host, mode = cfg.mode.as_str(),
        policy = %agent.policy().policy, feed = %cfg.feed, query = %cfg.query,
        "balancer-agent starting");
    run(agent, sink, &cli, &cfg, &signals)
}

/// The config file (or the defaults) with the command line's overrides applied.
fn agent_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let mut cfg = match &cli.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    if let Some(f) = &cli.feed {
        cfg.feed = f.clone();
    }
    if let Some(q) = &cli.query {
        cfg.query = q.clone();
    }
    if let Some(p) = &cli.policy {
        cfg.policy = p.clone();
    }
    if let Some(a) = &cli.audit {
        cfg.audit_log = Some(a.clone());
    }
    if let Some(i) = cli.interval {
        cfg.interval_s = i.max(1);
    }
    if let Some(m) = &cli.mode {
        cfg.mode = Mode::parse(m).with_context(|| format!("--mode {m}: off, recommend or auto"))?;
    }
    if cli.dry_run {
        cfg.mode = Mode::Recommend;
    }
    if let Some(why) = cfg.executor_conflict() {
        anyhow::bail!("executor: {why}");
    }
    if let Some(why) = cfg.auto_conflict() {
        anyhow::bail!("mode: {why}");
    }
    Ok(cfg)
}

/// The addresses this machine sends from, as the gmonds receiving them see it: gmond names a
/// host by the source address of its datagrams, so the view's host with one of these as IP
/// is this one. `override_ip`, and the source address the kernel picks toward each
/// udp_send_channel (a connected UDP socket: no packet is sent).
fn local_addresses(gconf: &gmond_conf::Config) -> Vec<String> {
    let mut out: Vec<String> = gconf.globals.override_ip.iter().cloned().collect();
    for ch in &gconf.udp_send {
        let to = match &ch.target {
            SendTarget::Multicast(ip) => Some(SocketAddr::new(*ip, ch.port)),
            SendTarget::Unicast(h) => (h.as_str(), ch.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4)),
        };
        let bind = ch.bind.clone().unwrap_or_else(|| "0.0.0.0".into());
        let local = to.and_then(|to| {
            let s = std::net::UdpSocket::bind((bind.as_str(), 0)).ok()?;
            s.connect(to).ok()?;
            s.local_addr().ok()
        });
        if let Some(a) = local {
            out.push(a.ip().to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Our metrics go where the host's gmond.conf sends its own: every udp_send_channel.
fn metric_sink(gconf: &gmond_conf::Config) -> anyhow::Result<Option<UdpSink>> {
    if gconf.effective_mute() {
        tracing::warn!("gmond.conf has no udp_send_channel (or is mute): metrics are not sent");
        return Ok(None);
    }
    let mut channels = Vec::new();
    for ch in &gconf.udp_send {
        let to = match &ch.target {
            SendTarget::Multicast(ip) => SocketAddr::new(*ip, ch.port),
            SendTarget::Unicast(h) => (h.as_str(), ch.port)
                .to_socket_addrs()
                .with_context(|| format!("udp_send_channel host {h}"))?
                .find(SocketAddr::is_ipv4)
                .with_context(|| format!("udp_send_channel host {h}: no IPv4 address"))?,
        };
        let bind = match &ch.bind {
            Some(b) => Some(
                b.parse()
                    .with_context(|| format!("udp_send_channel bind {b}: not an IPv4 address"))?,
            ),
            None => None,
        };
        channels.push(SendChannel {
            to,
            bind,
            mcast_if: ch.mcast_if.clone(),
            ttl: u32::from(ch.ttl),
        });
    }
    Ok(Some(UdpSink::new(&channels).context("metric sockets")?))
}

/// Rounds every `interval_s` until SIGTERM/SIGINT (or after one round with `--once`).
fn run(
    mut agent: Agent,
    mut sink: Option<UdpSink>,
    cli: &Cli,
    cfg: &AgentConfig,
    signals: &Signals,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(cfg.interval_s);
    let feeds = Feeds::new(cfg);
    loop {
        let round = Instant::now();
        // A follower reads only what the election needs; the leader (or a follower that has
        // just been elected) reads what a view is built from.
        let mut lean = !agent.wants_full_view();
        loop {
            match feeds.read(lean) {
                Ok(cluster) => {
                    let r = if lean {
                        agent.tick_coordination(&cluster, epoch())
                    } else {
                        agent.tick(&cluster, epoch())
                    };
                    tracing::debug!(lean, leader = ?r.leader, is_leader = r.is_leader,
                        started = r.started.len(), recommended = r.recommended.len(), "round");
                }
                Err(e) => {
                    tracing::warn!(feed = %feeds.addr(), lean, error = %e, "feed unavailable")
                }
            }
            if !(lean && agent.wants_full_view()) {
                break;
            }
            lean = false;
        }
        if let Some(s) = sink.as_mut() {
            agent.publish(s as &mut dyn MetricSink);
        }
        if cli.once {
            let deadline = Instant::now() + Duration::from_secs(cfg.migration_timeout_s + 30);
            while agent.inflight() > 0 && Instant::now() < deadline {
                agent.wait_worker(epoch(), Duration::from_millis(200));
            }
            return Ok(());
        }
        // Sleep in small steps so signals are handled within ~100 ms.
        while round.elapsed() < interval {
            if signals.term.swap(false, Ordering::SeqCst) {
                stop(&mut agent, sink.as_mut(), cfg);
                return Ok(());
            }
            if signals.hup.swap(false, Ordering::SeqCst) {
                on_sighup(&mut agent, cli, cfg);
                if let (Some(path), Some(s)) = (&cli.auth, sink.as_mut()) {
                    match read_keys(path) {
                        Ok(keys) => {
                            s.rekey(&keys);
                            tracing::info!(
                                signing = keys.signing_key_id(),
                                "SIGHUP: keys reloaded"
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: key file rejected, old keys kept")
                        }
                    }
                }
            }
            // Finished migrations are collected as they come, not only once per interval.
            agent.wait_worker(epoch(), Duration::from_millis(100));
        }
    }
}

/// SIGTERM: migrations in flight end as `on_stop` says, then `off` is advertised once so
/// another host takes the lead without waiting.
fn stop(agent: &mut Agent, sink: Option<&mut UdpSink>, cfg: &AgentConfig) {
    tracing::info!("stopping");
    let outcomes = agent.shutdown(
        epoch(),
        cfg.on_stop,
        Duration::from_secs(cfg.migration_timeout_s.min(120)),
    );
    for (vm, o) in outcomes {
        tracing::info!(vm = %vm, outcome = ?o, "migration ended at stop");
    }
    if let Some(s) = sink {
        agent.publish(s as &mut dyn MetricSink);
    }
}

/// SIGHUP: the config file's `mode` and `policy` are re-read (unless fixed on the command
/// line); other keys need a restart. A file that does not load is rejected whole.
fn on_sighup(agent: &mut Agent, cli: &Cli, cfg: &AgentConfig) {
    let mut policy = cfg.policy.clone();
    if let Some(path) = &cli.config {
        match AgentConfig::load(path).and_then(|new| {
            // The executor is fixed at start: a new `auto` must suit it.
            let effective = AgentConfig {
                executor: cfg.executor,
                ..new.clone()
            };
            match effective.executor_conflict() {
                Some(why) => Err(balancer_agent::AgentError::Config {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("executor: {why}"),
                }),
                None => Ok(new),
            }
        }) {
            Ok(new) => {
                if cli.mode.is_none() && !cli.dry_run && new.mode != agent.mode() {
                    tracing::info!(
                        from = agent.mode().as_str(),
                        to = new.mode.as_str(),
                        "SIGHUP: mode changed"
                    );
                    if let Err(e) = agent.set_mode(new.mode) {
                        tracing::error!(error = %e, "SIGHUP: mode change rejected, old mode kept");
                    }
                }
                if cli.policy.is_none() {
                    policy = new.policy;
                }
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: config rejected, old one kept"),
        }
    }
    reload(agent, &policy);
}

/// The key file, under gmond-rs's rules (gmond_conf::keyfile: private, ours).
fn read_keys(path: &std::path::Path) -> anyhow::Result<KeyRing> {
    let text = gmond_conf::keyfile::read_private(path)?;
    KeyRing::parse(&text).with_context(|| format!("key file {}", path.display()))
}

/// A random id for this process's signer.
fn sender_id() -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(u64::from_ne_bytes(b))
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SIGHUP: re-reads the policy. A built-in name has nothing to re-read but is re-validated.
fn reload(agent: &mut Agent, policy: &str) {
    let path = std::path::Path::new(policy);
    let text = if path.exists() {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    } else {
        balancer_agent::balancer::policy::builtin_file(policy)
            .map(str::to_string)
            .ok_or_else(|| format!("{policy}: no such file or built-in policy"))
    };
    match text {
        Ok(t) => match agent.reload_policy(&t, epoch()) {
            Ok(()) => tracing::info!(policy = %policy, "SIGHUP: policy reloaded"),
            Err(e) => {
                tracing::error!(policy = %policy, error = %e, "SIGHUP: policy rejected, old one kept")
            }
        },
        Err(e) => tracing::error!(error = %e, "SIGHUP: policy unreadable, old one kept"),
    }
}

/// Where and how the agent reads the cluster: the plain XML feed (gmond, gmetad, gmond-rs's
/// XML port) parsed as it streams in, keeping only the metrics wanted, or gmond-rs's query
/// channel, which sends only those. Both bounded in time and size (`feed::read_cluster`).
struct Feeds {
    addr: String,
    /// Sent as the request on a query channel; `None` on a plain feed.
    query: bool,
    /// Every host's coordination metrics (a follower's round).
    lean: MetricFilter,
    /// What a view is built from, plus coordination (the leader's round).
    full: MetricFilter,
}

impl Feeds {
    fn new(cfg: &AgentConfig) -> Feeds {
        let query = !cfg.query.is_empty();
        let lean = MetricFilter::parse(&COORDINATION_METRICS.join(","))
            .unwrap_or_else(|_| MetricFilter::everything());
        Feeds {
            addr: if query { &cfg.query } else { &cfg.feed }.clone(),
            query,
            lean,
            full: balancer_agent::balancer::view::read_filter(&COORDINATION_METRICS),
        }
    }

    fn addr(&self) -> &str {
        &self.addr
    }

    fn read(&self, lean: bool) -> anyhow::Result<ganglia_wire::model::Cluster> {
        let filter = if lean { &self.lean } else { &self.full };
        let q = Query {
            request: self.query.then_some(filter),
            // Kept on a query channel too: a peer that sends more than asked gains nothing.
            keep: Some(filter),
            // Of gmond's extras the agent reads only gmond-rs's authentication mark.
            extras: Some(&[ganglia_wire::auth::XML_MARK]),
        };
        Ok(feed::read_cluster(
            &self.addr,
            q,
            Duration::from_secs(5),
            Duration::from_secs(30),
        )?)
    }
}

/// The hypervisor backend the config asks for. A build without libvirt refuses `libvirt`
/// with the build command instead of running an agent that can never migrate.
fn executor(cfg: &AgentConfig) -> anyhow::Result<Arc<dyn Executor>> {
    match cfg.executor {
        ExecutorKind::None => Ok(Arc::new(balancer_agent::executor::NoHypervisor)),
        #[cfg(feature = "libvirt")]
        ExecutorKind::Libvirt => Ok(Arc::new(balancer_agent::LibvirtExecutor::new(cfg))),
        #[cfg(not(feature = "libvirt"))]
        ExecutorKind::Libvirt => anyhow::bail!(
            "executor = \"libvirt\", but this balancer-agent was built without libvirt \
             support; build it with the `libvirt` feature: \
             cargo build --release -p balancer-agent --features libvirt \
             (or set executor = \"none\" for a recommend-only agent)"
        ),
    }
}

/// Signal flags (the agent's loop itself is plain blocking code and polls them).
struct Signals {
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl Signals {
    /// Installs SIGHUP, SIGTERM and SIGINT handlers that only set a flag.
    fn install() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let hup = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, hup.clone()).context("SIGHUP handler")?;
        signal_hook::flag::register(SIGTERM, term.clone()).context("SIGTERM handler")?;
        signal_hook::flag::register(SIGINT, term.clone()).context("SIGINT handler")?;
        Ok(Signals { hup, term })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "libvirt"))]
    #[test]
    fn the_libvirt_executor_without_the_feature_names_the_build_command() {
        let err = executor(&AgentConfig::default()).err().unwrap().to_string();
        assert!(err.contains("--features libvirt"), "{err}");
    }

    #[cfg(feature = "libvirt")]
    #[test]
    fn the_libvirt_executor_with_the_feature_is_libvirt() {
        assert_eq!(executor(&AgentConfig::default()).unwrap().name(), "libvirt");
    }

    #[test]
    fn no_hypervisor_reaches_nothing() {
        let cfg = AgentConfig {
            executor: ExecutorKind::None,
            ..AgentConfig::default()
        };
        let none = executor(&cfg).unwrap();
        let host = balancer_agent::HostAddr {
            name: "hv1".into(),
            ip: "127.0.0.1".into(),
        };
        assert!(!none.reachable(&host));
        assert!(none.locate("vm", &host).is_err());
    }
}
