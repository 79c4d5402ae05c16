//! gmond.conf parser and validated config for gmond-rs: pure, no sockets, no runtime.
//!
//! Three stages (CONVENTIONS.md #8):
//! 1. [`ast::parse`]: text to a syntax tree with `file:line:column` on every token
//!    (libconfuse 3.x lexing rules, as gmond 3.7.2 reads its file);
//! 2. resolution: includes expanded through a [`Source`], names checked against gmond's option
//!    tables, values typed, repeated sections merged the libconfuse way;
//! 3. validation into [`Config`] with typed fields, plus gmond's own start-up checks
//!    (deaf+mute, bind+bind_hostname, port ranges...).
//!
//! Every error is collected (syntax errors stop at the first one per file, as in libconfuse)
//! and returned together as [`ConfigErrors`]; a config with any error is never returned, so the
//! daemon cannot start half-configured. Options that parse but that gmond-rs does not act on
//! come back as [`Warning`]s for the daemon to log.
//!
//! # Where gmond-rs differs from gmond 3.7.2 (on purpose)
//!
//! Checked by `tests/real_gmond.rs` against the real binary where it can be.
//! * A section still open at end of file, or a `"..."` running to end of file where an option
//!   name is expected, is an error (libconfuse silently stops there).
//! * Every included file must be complete on its own (libconfuse splices tokens, so a section
//!   could start in one file and end in another).
//! * Glob matches are included in name order (gmond: directory order); `~/` in include paths
//!   expands from `$HOME` (libconfuse asks the password database), `~user/` is not expanded.
//! * Start-up checks gmond makes later, when it opens sockets, or never are made at load time:
//!   ports present and in 1..=65535, `ttl` 0..=255, non-negative durations, deaf+mute,
//!   bind+bind_hostname, send channels need `mcast_join` or `host`, `mcast_join` is a
//!   multicast IP literal, `family` names 4 or 6, ACL entries, a module listed twice, a
//!   `metric` without `name`/`name_match` (gmond crashes), `name_match` regexes (Rust `regex`
//!   syntax: no look-around or back-references) and their `\1`..`\9` title templates.
//! * Float options do not take C hex floats; `${...}` bodies are at most 256 characters and,
//!   inside `"..."`, end at the closing quote.
//!
//! ```
//! let loaded = gmond_conf::parse_str_with(
//!     "udp_send_channel { host = \"127.0.0.1\" port = 8649 }",
//!     "example.conf",
//!     &gmond_conf::MemSource::new(),
//!     &gmond_conf::LoadOptions::default(),
//! )
//! .unwrap();
//! assert_eq!(loaded.config.udp_send[0].port, 8649);
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::path::Path;

pub mod acl;
pub mod ast;
pub mod collect;
pub mod config;
mod default_text;
pub mod error;
pub mod keyfile;
mod lexer;
pub mod render;
mod resolve;
pub mod rsconf;
pub mod source;

pub use acl::{AccessEntry, Acl, AclAction, Subnet};
pub use collect::{
    CollectionGroup, MetricMatch, MetricSelector, NamePattern, SelectedMetric, Selection,
};
pub use config::{
    Cluster, Config, Family, Globals, Host, LibvirtModule, Module, ModuleParam, SendTarget, Sflow,
    TcpAcceptChannel, UdpRecvChannel, UdpSendChannel,
};
pub use default_text::default_config_text;
pub use error::{ConfigError, ConfigErrors, Location};
pub use render::render;
pub use rsconf::{
    load_rs, QueryChannel, RecvPolicy, RsConfig, StoreLimits, DEFAULT_RS_CONFIG_PATH,
};
pub use source::{FsSource, MemSource, Source};

/// Options gmond-rs parses but does not act on (yet), as `section.option`, `section.*` (any
/// option of the section) or `section.option=value` (only that value, case-insensitive).
pub const NOT_IMPLEMENTED: &[&str] = &[
    "globals.gexec=yes",
    "globals.module_dir",
    "sflow.*",
    "modules.module.language",
    "udp_send_channel.bind_hostname=yes",
    "udp_recv_channel.retry_bind",
    "udp_recv_channel.family=inet6",
    "tcp_accept_channel.interface",
    "tcp_accept_channel.family=inet6",
];

/// Where gmond reads its config when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ganglia/gmond.conf";

/// Knobs of a load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Patterns (see [`NOT_IMPLEMENTED`]) that produce a [`WarningKind::NotImplemented`].
    pub not_implemented: Vec<String>,
    /// How deep includes may nest (libconfuse's limit is 10).
    pub max_include_depth: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            not_implemented: NOT_IMPLEMENTED.iter().map(|s| s.to_string()).collect(),
            max_include_depth: 10,
        }
    }
}

/// A successfully loaded config and what the daemon should log about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// Options parsed but not implemented, and other notes, in file order per kind.
    pub warnings: Vec<Warning>,
    /// Where each listed section was written, index-aligned with the `Config` vectors.
    pub locations: SectionLocations,
}

/// Where sections start, so the daemon can say which channel or selector a runtime problem
/// (a failed bind, an unmatched metric) comes from. Kept outside [`Config`] so that configs
/// from different files compare equal when they mean the same.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SectionLocations {
    /// One per `Config::udp_send` entry.
    pub udp_send: Vec<Location>,
    /// One per `Config::udp_recv` entry.
    pub udp_recv: Vec<Location>,
    /// One per `Config::tcp_accept` entry.
    pub tcp_accept: Vec<Location>,
    /// One per `Config::modules` entry.
    pub modules: Vec<Location>,
    /// One per `Config::collection_groups` entry.
    pub collection_groups: Vec<Location>,
    /// `metrics[g][s]`: selector `s` of group `g` (as in [`Selection::unmatched`]).
    pub metrics: Vec<Vec<Location>>,
}

/// Something worth logging that does not stop the daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// Where the option or section is.
    pub location: Location,
    /// Dotted option path, e.g. `udp_recv_channel.retry_bind` (empty for file-level notes).
    pub option: String,
    /// Why it is reported.
    pub kind: WarningKind,
    /// Human-readable text.
    pub message: String,
}

/// Kinds of [`Warning`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// The option matched a [`LoadOptions::not_implemented`] pattern.
    NotImplemented,
    /// Accepted like gmond accepts it, but probably not what was meant.
    Note,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.location, self.message)
    }
}

/// Loads a config file and its includes from the filesystem, with default options.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigErrors> {
    load_with(path.as_ref(), &FsSource, &LoadOptions::default())
}

/// Loads a config file, reading it and its includes through `source`.
pub fn load_with(
    path: &Path,
    source: &dyn Source,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    resolve::load_path(path, source, opts)
}

/// Parses config text named `name` (for locations); includes come from the filesystem.
pub fn parse_str(text: &str, name: &str) -> Result<Loaded, ConfigErrors> {
    parse_str_with(text, name, &FsSource, &LoadOptions::default())
}

/// Parses config text named `name`, with includes and `${VAR}` from `source`.
pub fn parse_str_with(
    text: &str,
    name: &str,
    source: &dyn Source,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    resolve::load_text(text, name, source, opts)
}

/// Loads the config the way gmond picks it: `-c FILE` must exist; without `-c`,
/// [`DEFAULT_CONFIG_PATH`] is used if it exists, else the built-in default text.
pub fn load_like_gmond(conf_arg: Option<&Path>) -> Result<Loaded, ConfigErrors> {
    match conf_arg {
        Some(path) => load(path),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => load(DEFAULT_CONFIG_PATH),
        None => builtin_config(),
    }
}

/// The built-in config (what gmond uses when no `-c` is given and the default file is
/// missing), with its `conf.d` include read from the filesystem.
pub fn builtin_config() -> Result<Loaded, ConfigErrors> {
    parse_str(default_config_text(), "<built-in default>")
}
