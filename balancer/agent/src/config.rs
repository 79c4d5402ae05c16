//! The agent's config file (`configs/balancer-agent.toml`): TOML parsed into typed fields,
//! then range-checked; every error carries file:line:column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// What the agent does with a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Advertise only; never a leader candidate, never plans.
    Off,
    /// Plan, log, audit and publish; move nothing (dry run).
    #[default]
    Recommend,
    /// Plan and migrate.
    Auto,
}

impl Mode {
    /// The text published as `balancer_mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Recommend => "recommend",
            Mode::Auto => "auto",
        }
    }

    /// Parses `off`, `recommend` or `auto`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "off" => Some(Mode::Off),
            "recommend" => Some(Mode::Recommend),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }
}

/// The hypervisor backend of the `balancer-agent` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Live migration through libvirt (needs the binary's `libvirt` feature).
    #[default]
    Libvirt,
    /// No hypervisor access: `off` and `recommend` only (plans are audited and published,
    /// nothing can move), membership from `trusted_hosts` alone.
    None,
}

impl ExecutorKind {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Libvirt => "libvirt",
            ExecutorKind::None => "none",
        }
    }
}

/// What happens to migrations in flight when the agent loses the lead or stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InflightAction {
    /// Let them run to completion (libvirt migrations are atomic: the VM ends on one host).
    Finish,
    /// Abort them (the VM stays on its source).
    Abort,
}

/// Live-migration flags and limits, as passed to libvirt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationFlags {
    /// VIR_MIGRATE_LIVE (default true).
    pub live: bool,
    /// VIR_MIGRATE_PEER2PEER: the source libvirtd talks to the destination (default true).
    pub p2p: bool,
    /// VIR_MIGRATE_TUNNELLED: data through the libvirtd connection (needs p2p; default false).
    pub tunnelled: bool,
    /// VIR_MIGRATE_PERSIST_DEST (default true).
    pub persistent: bool,
    /// VIR_MIGRATE_UNDEFINE_SOURCE (default true).
    pub undefine_source: bool,
    /// VIR_MIGRATE_UNSAFE: allow migration without shared-storage cache guarantees (default false).
    pub allow_unsafe: bool,
    /// VIR_MIGRATE_TLS: the migration stream over TLS with libvirt's certificates; fails
    /// rather than fall back to plain text (default false).
    pub tls: bool,
    /// Bandwidth limit, MiB/s; 0 = libvirt's default (unlimited).
    pub bandwidth_mib_s: u64,
    /// Maximum downtime, ms; 0 = libvirt's default.
    pub max_downtime_ms: u64,
}

impl Default for MigrationFlags {
    fn default() -> Self {
        MigrationFlags {
            live: true,
            p2p: true,
            tunnelled: false,
            persistent: true,
            undefine_source: true,
            allow_unsafe: false,
            tls: false,
            bandwidth_mib_s: 0,
            max_downtime_ms: 0,
        }
    }
}

/// The whole agent config. Every field has a default; see `configs/balancer-agent.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// This host's NAME as the Ganglia view shows it. Unset: `--name`, else gmond.conf's
    /// `override_hostname`, else learnt from the view (the host whose IP is one of this
    /// machine's sending addresses, as gmond names hosts by source address), else the
    /// hostname.
    pub name: Option<String>,
    /// off | recommend | auto (default recommend).
    pub mode: Mode,
    /// Policy: a built-in name (`hotspot`, `stabilize`, ...) or a policy TOML file path.
    pub policy: String,
    /// Seconds between ticks (feed reads and metric sends). 1..=3600, default 10.
    pub interval_s: u64,
    /// gmond XML feed host:port (default 127.0.0.1:8649).
    pub feed: String,
    /// gmond-rs query channel host:port (gmond-rs.conf `query_channel`); empty (the default)
    /// reads `feed`. Through it a follower reads only what coordination needs and the leader
    /// only the metrics a view is built from, instead of the whole document.
    pub query: String,
    /// libvirt | none: how the binary reaches hypervisors (default libvirt).
    pub executor: ExecutorKind,
    /// libvirt URI per host; `{host}` is the host's name from `trusted_hosts`. Never an
    /// address from the view (`{ip}` is refused): anyone on the segment can forge the view.
    pub uri_template: String,
    /// The inventory: hosts that may be sources or destinations and whose metrics count,
    /// names of `[A-Za-z0-9.-]` (a DNS name or an IP address). Required for `auto`. Empty (in
    /// `recommend`) = the cluster's membership: hosts whose hypervisor this agent reaches.
    pub trusted_hosts: Vec<String>,
    /// `[host_uris]`: the libvirt URI of a trusted host when the template does not fit it
    /// (another transport, `qemu+tls` with a certificate name, a port). Keys must be in
    /// `trusted_hosts`.
    pub host_uris: BTreeMap<String, String>,
    /// A host (or its balancer) silent for this many seconds is not a leader candidate.
    /// 5..=3600, default 60.
    pub leader_timeout_s: u64,
    /// Hard limit: migrations started per `budget_window_s`, cluster-wide as far as this agent
    /// knows (its own plus those others advertise). 0 = none allowed. Default 6.
    pub budget_migrations: u32,
    /// Budget window, seconds. 1..=86400, default 3600.
    pub budget_window_s: u64,
    /// Migrations this agent runs at once. 1..=64, default 2.
    pub max_parallel: usize,
    /// A migration still running after this many seconds is aborted. 1..=86400, default 300.
    pub migration_timeout_s: u64,
    /// A VM whose migration failed is not moved again for this long. Default 1800.
    pub failure_cooldown_s: u64,
    /// Failures to one destination (within `dest_exclusion_s`) that exclude it. 1..=100,
    /// default 2.
    pub dest_failure_limit: u32,
    /// How long an excluded destination stays out of consideration, seconds. Default 1800.
    pub dest_exclusion_s: u64,
    /// Seconds after a migration at which its observed gain is measured. Default 120.
    pub observe_after_s: u64,
    /// Moves advertised in `balancer_recent_moves` (and honoured from others) for this long.
    /// Default 3600.
    pub recent_moves_window_s: u64,
    /// Append-only JSON-lines audit log; none = audit records only go to the log.
    pub audit_log: Option<PathBuf>,
    /// Where budget use, cooldowns, exclusions and in-flight migrations survive a crash
    /// (written atomically on every change, reconciled with the hypervisor at start). Default:
    /// beside the audit log, its name plus `.state`; none without an audit log either.
    pub state_file: Option<PathBuf>,
    /// finish | abort: in-flight migrations when another host takes the lead. Default finish.
    pub on_lost_lead: InflightAction,
    /// finish | abort: in-flight migrations on SIGTERM. Default abort.
    pub on_stop: InflightAction,
    /// TMAX of the published metrics, seconds. Default 60.
    pub metric_tmax_s: u32,
    /// DMAX of the published metrics, seconds (0 = never deleted). Default 3600.
    pub metric_dmax_s: u32,
    /// Libvirt migration flags.
    pub migration: MigrationFlags,
    /// Act on authenticated values only: every metric the feed does not mark as verified by
    /// gmond-rs (`--auth`, the `GMOND_RS_AUTH` mark) is ignored before anything reads the
    /// view: VM load, capacities, leadership and advertised moves alike. Needs gmond-rs with
    /// `--auth` on every hypervisor, and every agent with `--auth` (its own metrics must be
    /// marked to count). Default false.
    pub authenticated_only: bool,
    /// With `authenticated_only`, the key ids whose marks count; empty = any key the feed's
    /// daemon verified.
    pub auth_keys: Vec<u32>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: None,
            mode: Mode::Recommend,
            policy: "hotspot".into(),
            interval_s: 10,
            feed: "127.0.0.1:8649".into(),
            query: String::new(),
            executor: ExecutorKind::Libvirt,
            uri_template: "qemu+tcp://{host}/system".into(),
            trusted_hosts: Vec::new(),
            host_uris: BTreeMap::new(),
            leader_timeout_s: 60,
            budget_migrations: 6,
            budget_window_s: 3600,
            max_parallel: 2,
            migration_timeout_s: 300,
            failure_cooldown_s: 1800,
            dest_failure_limit: 2,
            dest_exclusion_s: 1800,
            observe_after_s: 120,
            recent_moves_window_s: 3600,
            audit_log: None,
            state_file: None,
            on_lost_lead: InflightAction::Finish,
            on_stop: InflightAction::Abort,
            metric_tmax_s: 60,
            metric_dmax_s: 3600,
            migration: MigrationFlags::default(),
            authenticated_only: false,
            auth_keys: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<AgentConfig> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            AgentError::Config {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate(text, file)?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
            path: path.display().to_string(),
            source,
        })?;
        AgentConfig::parse(&text, &path.display().to_string())
    }

    /// Range checks; `text` locates the offending key.
    fn validate(&self, text: &str, file: &str) -> Result<()> {
        let err = |key: &str, message: String| {
            let (line, column) = key_line(text, key);
            AgentError::Config {
                file: file.to_string(),
                line,
                column,
                message: format!("{key}: {message}"),
            }
        };
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(err(key, format!("{v} is outside {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        range("interval_s", self.interval_s, 1, 3600)?;
        range("leader_timeout_s", self.leader_timeout_s, 5, 3600)?;
        range("budget_window_s", self.budget_window_s, 1, 86_400)?;
        range("max_parallel", self.max_parallel as u64, 1, 64)?;
        range("migration_timeout_s", self.migration_timeout_s, 1, 86_400)?;
        range(
            "dest_failure_limit",
            u64::from(self.dest_failure_limit),
            1,
            100,
        )?;
        range("metric_tmax_s", u64::from(self.metric_tmax_s), 1, 86_400)?;
        if let Some(n) = &self.name {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("name", format!("{n:?} is not a host NAME")));
            }
        }
        for (key, addr) in [("feed", &self.feed), ("query", &self.query)] {
            if key == "query" && addr.is_empty() {
                continue;
            }
            let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                return Err(err(key, format!("{addr:?} is not host:port")));
            }
        }
        if self.policy.trim().is_empty() {
            return Err(err(
                "policy",
                "must name a built-in policy or a file".into(),
            ));
        }
        if self.uri_template.trim().is_empty() {
            return Err(err("uri_template", "must not be empty".into()));
        }
        if self.migration.tunnelled && !self.migration.p2p {
            return Err(err("tunnelled", "needs p2p = true".into()));
        }
        for h in &self.trusted_hosts {
            if !valid_host_name(h) {
                return Err(err(
                    "trusted_hosts",
                    format!("{h:?} is not a host name or address (letters, digits, '.', '-')"),
                ));
            }
        }
        for (h, uri) in &self.host_uris {
            if !self.trusted_hosts.contains(h) {
                return Err(err(
                    h,
                    format!("host_uris names {h:?}, which is not in trusted_hosts"),
                ));
            }
            if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(h, format!("{uri:?} is not a libvirt URI")));
            }
        }
        if self.uri_template.contains("{ip}") {
            return Err(err(
                "uri_template",
                "{ip} would take the address from the view, which anyone on the segment can \
                 forge; use {host} (the trusted host's name, or its address written as the name)"
                    .into(),
            ));
        }
        if !self.auth_keys.is_empty() && !self.authenticated_only {
            return Err(err(
                "auth_keys",
                "only counts with authenticated_only = true".into(),
            ));
        }
        if let Some(why) = self.executor_conflict() {
            return Err(err("executor", why.into()));
        }
        match self.auto_conflict() {
            Some(why) => Err(err("mode", why.into())),
            None => Ok(()),
        }
    }

    /// Why `auto` cannot run with this config, if it cannot: without a configured inventory,
    /// a destination would be whatever the view names. Checked at load, by the binary after
    /// `--mode`, on every reload and by `Agent::new`/`set_mode`.
    pub fn auto_conflict(&self) -> Option<&'static str> {
        (self.mode == Mode::Auto && self.trusted_hosts.is_empty()).then_some(
            "\"auto\" needs trusted_hosts: without an inventory, migration destinations would \
             come from the view, which anyone on the segment can forge (recommend works \
             without one)",
        )
    }

    /// Why `mode` and `executor` cannot go together, if they cannot: `executor = "none"`
    /// cannot migrate, so `auto` needs `libvirt`. Checked at load, and again by the binary
    /// after `--mode` and on every reload.
    pub fn executor_conflict(&self) -> Option<&'static str> {
        (self.executor == ExecutorKind::None && self.mode == Mode::Auto)
            .then_some("\"none\" cannot migrate: mode \"auto\" needs executor = \"libvirt\"")
    }

    /// The state file in force: `state_file`, else the audit log's path plus `.state`.
    pub fn state_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.state_file {
            return Some(p.clone());
        }
        let audit = self.audit_log.as_ref()?;
        let mut name = audit.file_name()?.to_os_string();
        name.push(".state");
        Some(audit.with_file_name(name))
    }

    /// The libvirt URI of a host: its `[host_uris]` entry, else the template with `{host}`
    /// substituted; `None` for a name that cannot go into a URI.
    pub fn uri_for(&self, host: &str) -> Option<String> {
        if let Some(uri) = self.host_uris.get(host) {
            return Some(uri.clone());
        }
        valid_host_name(host).then(|| self.uri_template.replace("{host}", host))
    }
}

/// A name that can go into a URI as is: letters, digits, '.' and '-' (a DNS name, an IPv4
/// address); nothing that could add a port, a path or URI parameters.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with(['-', '.'])
}

/// 1-based line and column of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Line and column of `key = ...` in `text`, (0, 0) when the key is not written (a default).
fn key_line(text: &str, key: &str) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return (i + 1, l.len() - t.len() + 1);
            }
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../../configs/balancer-agent.toml");
        let cfg = AgentConfig::parse(text, "balancer-agent.toml").unwrap();
        assert_eq!(cfg.mode, Mode::Recommend);
        assert_eq!(cfg.uri_for("h1").as_deref(), Some("qemu+tcp://h1/system"));
        assert_eq!(cfg.uri_for("evil/system?x"), None);
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let e = AgentConfig::parse(
            "mode = \"auto\"\ntrusted_hosts = [\"h1\"]\nmax_parallel = 0\n",
            "a.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.toml:3:1: max_parallel: 0 is outside 1..=64"
        );
        let e = AgentConfig::parse("mode = \"sideways\"\n", "b.toml").unwrap_err();
        let AgentError::Config { line, column, .. } = e else {
            panic!("{e}")
        };
        assert_eq!((line, column), (1, 8));
        let e = AgentConfig::parse("\n  nonsense = 1\n", "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2:"), "{e}");
        let e = AgentConfig::parse("uri_template = \" \"\n", "d").unwrap_err();
        assert!(e.to_string().starts_with("d:1:1: uri_template"), "{e}");
        let e =
            AgentConfig::parse("[migration]\np2p = false\ntunnelled = true\n", "e").unwrap_err();
        assert!(e.to_string().starts_with("e:3:1: tunnelled"), "{e}");
        let e = AgentConfig::parse("\nauth_keys = [5]\n", "k").unwrap_err();
        assert!(e.to_string().starts_with("k:2:1: auth_keys"), "{e}");
        let ok = AgentConfig::parse("authenticated_only = true\nauth_keys = [5]\n", "l").unwrap();
        assert_eq!((ok.authenticated_only, ok.auth_keys), (true, vec![5]));
        let e = AgentConfig::parse("\nquery = \"127.0.0.1\"\n", "m").unwrap_err();
        assert!(e.to_string().starts_with("m:2:1: query"), "{e}");
        let e = AgentConfig::parse("feed = \"h:0\"\n", "n").unwrap_err();
        assert!(e.to_string().starts_with("n:1:1: feed"), "{e}");
        let ok = AgentConfig::parse("query = \"127.0.0.1:8653\"\n", "o").unwrap();
        assert_eq!(
            (ok.query.as_str(), ok.feed.as_str()),
            ("127.0.0.1:8653", "127.0.0.1:8649")
        );
    }

    #[test]
    fn auto_needs_an_executor_that_can_migrate() {
        let e = AgentConfig::parse("mode = \"auto\"\nexecutor = \"none\"\n", "f").unwrap_err();
        assert!(e.to_string().starts_with("f:2:1: executor"), "{e}");
        let cfg = AgentConfig::parse("mode = \"recommend\"\nexecutor = \"none\"\n", "g").unwrap();
        assert_eq!(cfg.executor, ExecutorKind::None);
    }

    #[test]
    fn destinations_come_from_the_inventory_only() {
        let e = AgentConfig::parse("mode = \"auto\"\n", "h").unwrap_err();
        assert!(e.to_string().starts_with("h:1:1: mode"), "{e}");
        let ok = "mode = \"auto\"\ntrusted_hosts = [\"hv1\", \"10.0.0.2\"]\n";
        assert!(AgentConfig::parse(ok, "i").is_ok());
        for bad in ["6.6.6.6:hv3", "hv1/system?x=y", "a b", "-x", ""] {
            let text = format!("trusted_hosts = [{bad:?}]\n");
            let e = AgentConfig::parse(&text, "j").unwrap_err();
            assert!(
                e.to_string().starts_with("j:1:1: trusted_hosts"),
                "{bad}: {e}"
            );
        }
        let e = AgentConfig::parse("uri_template = \"qemu+tcp://{ip}/system\"\n", "k").unwrap_err();
        assert!(e.to_string().contains("forge"), "{e}");
        let inv =
            "trusted_hosts = [\"hv1\"]\n[host_uris]\nhv1 = \"qemu+tls://hv1.example/system\"\n";
        let cfg = AgentConfig::parse(inv, "l").unwrap();
        assert_eq!(
            cfg.uri_for("hv1").as_deref(),
            Some("qemu+tls://hv1.example/system")
        );
        let e = AgentConfig::parse("[host_uris]\nhv9 = \"test:///default\"\n", "m").unwrap_err();
        assert!(e.to_string().starts_with("m:2:1: hv9"), "{e}");
    }

    #[test]
    fn the_state_file_sits_beside_the_audit_log_unless_set() {
        let cfg = AgentConfig::parse("audit_log = \"/var/log/ba/audit.jsonl\"\n", "s").unwrap();
        assert_eq!(
            cfg.state_path(),
            Some(PathBuf::from("/var/log/ba/audit.jsonl.state"))
        );
        let cfg = AgentConfig::parse(
            "audit_log = \"/var/log/ba/audit.jsonl\"\nstate_file = \"/var/lib/ba/state.json\"\n",
            "s",
        )
        .unwrap();
        assert_eq!(
            cfg.state_path(),
            Some(PathBuf::from("/var/lib/ba/state.json"))
        );
        assert_eq!(AgentConfig::default().state_path(), None);
    }

    #[test]
    fn a_name_must_be_one() {
        let cfg = AgentConfig::parse("name = \"hv1.example\"\n", "n").unwrap();
        assert_eq!(cfg.name.as_deref(), Some("hv1.example"));
        let e = AgentConfig::parse("\nname = \"hv 1\"\n", "n").unwrap_err();
        assert!(e.to_string().starts_with("n:2:1: name"), "{e}");
    }

    #[test]
    fn empty_text_is_all_defaults() {
        assert_eq!(AgentConfig::parse("", "x").unwrap(), AgentConfig::default());
        assert_eq!(Mode::parse("auto"), Some(Mode::Auto));
        assert_eq!(Mode::parse("nope"), None);
    }
}
