//! Stage 2: syntax trees (plus includes) to a validated [`Config`], collecting every error.
//!
//! First the items are checked against gmond 3.7.2's option tables and typed, merging the way
//! libconfuse does (a repeated single section merges into the first, a repeated option
//! overrides, titled sections merge by title ignoring case). Then the typed tree is turned into
//! [`Config`] and gmond's own start-up checks are applied.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::acl::{AccessEntry, Acl, AclAction, Subnet};
use crate::ast::{self, Item, ItemKind, Spanned, Value};
use crate::collect::{
    check_title_template, CollectionGroup, MetricMatch, MetricSelector, NamePattern,
};
use crate::config::{
    Cluster, Config, Family, Globals, Host, LibvirtModule, Module, ModuleParam, SendTarget, Sflow,
    TcpAcceptChannel, UdpRecvChannel, UdpSendChannel,
};
use crate::error::{ConfigError, ConfigErrors, Location};
use crate::rsconf::{QueryChannel, RecvPolicy, RsConfig, StoreLimits};
use crate::source::{fnmatch, has_wildcard, Source};
use crate::{LoadOptions, Loaded, SectionLocations, Warning, WarningKind};

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Bool,
    Str,
    Sec(&'static [Opt]),
    Include,
}

#[derive(Clone, Copy)]
struct Opt {
    name: &'static str,
    kind: Kind,
    multi: bool,
    titled: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Opt {
    Opt {
        name,
        kind,
        multi: false,
        titled: false,
    }
}

const fn multi(name: &'static str, sub: &'static [Opt]) -> Opt {
    Opt {
        name,
        kind: Kind::Sec(sub),
        multi: true,
        titled: false,
    }
}

use Kind::{Bool, Float, Int, Str};

// The option tables of gmond 3.7.2 (lib/libgmond.c), with name_match (Debian builds with PCRE).
const CLUSTER: &[Opt] = &[
    opt("name", Str),
    opt("owner", Str),
    opt("latlong", Str),
    opt("url", Str),
];
const HOST: &[Opt] = &[opt("location", Str)];
const GLOBALS: &[Opt] = &[
    opt("daemonize", Bool),
    opt("setuid", Bool),
    opt("user", Str),
    opt("debug_level", Int),
    opt("max_udp_msg_len", Int),
    opt("mute", Bool),
    opt("deaf", Bool),
    opt("allow_extra_data", Bool),
    opt("host_dmax", Int),
    opt("host_tmax", Int),
    opt("cleanup_threshold", Int),
    opt("gexec", Bool),
    opt("send_metadata_interval", Int),
    opt("module_dir", Str),
    opt("override_hostname", Str),
    opt("override_ip", Str),
    opt("tags", Str),
];
const ACCESS: &[Opt] = &[opt("action", Str), opt("ip", Str), opt("mask", Str)];
const ACL: &[Opt] = &[opt("default", Str), multi("access", ACCESS)];
const UDP_SEND: &[Opt] = &[
    opt("mcast_join", Str),
    opt("mcast_if", Str),
    opt("host", Str),
    opt("port", Int),
    opt("ttl", Int),
    opt("bind", Str),
    opt("bind_hostname", Bool),
];
const UDP_RECV: &[Opt] = &[
    opt("mcast_join", Str),
    opt("bind", Str),
    opt("port", Int),
    opt("mcast_if", Str),
    opt("acl", Kind::Sec(ACL)),
    opt("family", Str),
    opt("retry_bind", Bool),
    opt("buffer", Int),
];
const TCP_ACCEPT: &[Opt] = &[
    opt("bind", Str),
    opt("port", Int),
    opt("interface", Str),
    opt("acl", Kind::Sec(ACL)),
    opt("timeout", Int),
    opt("family", Str),
    opt("gzip_output", Bool),
];
const METRIC: &[Opt] = &[
    opt("name", Str),
    opt("name_match", Str),
    opt("value_threshold", Float),
    opt("title", Str),
];
const COLLECTION_GROUP: &[Opt] = &[
    multi("metric", METRIC),
    opt("collect_once", Bool),
    opt("collect_every", Int),
    opt("time_threshold", Int),
];
const PARAM: &[Opt] = &[opt("value", Str)];
const MODULE: &[Opt] = &[
    opt("name", Str),
    opt("language", Str),
    opt("enabled", Bool),
    opt("path", Str),
    opt("params", Str),
    Opt {
        name: "param",
        kind: Kind::Sec(PARAM),
        multi: true,
        titled: true,
    },
];
const MODULES: &[Opt] = &[multi("module", MODULE)];
const SFLOW: &[Opt] = &[
    opt("udp_port", Int),
    opt("accept_vm_metrics", Bool),
    opt("accept_http_metrics", Bool),
    opt("multiple_http_instances", Bool),
    opt("accept_memcache_metrics", Bool),
    opt("multiple_memcache_instances", Bool),
    opt("accept_jvm_metrics", Bool),
    opt("multiple_jvm_instances", Bool),
];
const TOP: &[Opt] = &[
    opt("cluster", Kind::Sec(CLUSTER)),
    opt("host", Kind::Sec(HOST)),
    opt("globals", Kind::Sec(GLOBALS)),
    multi("udp_send_channel", UDP_SEND),
    multi("udp_recv_channel", UDP_RECV),
    multi("tcp_accept_channel", TCP_ACCEPT),
    multi("collection_group", COLLECTION_GROUP),
    opt("include", Kind::Include),
    opt("modules", Kind::Sec(MODULES)),
    opt("sflow", Kind::Sec(SFLOW)),
];

// gmond-rs.conf: what real gmond has no option for (crate::rsconf).
const RS_STORE: &[Opt] = &[
    opt("max_hosts", Int),
    opt("max_metrics_per_host", Int),
    opt("max_metrics", Int),
    opt("max_memory_mb", Int),
    opt("max_pending_requests", Int),
];
const RS_UDP_RECV: &[Opt] = &[opt("port", Int), opt("spoof_acl", Kind::Sec(ACL))];
const RS_QUERY: &[Opt] = &[
    opt("bind", Str),
    opt("port", Int),
    opt("acl", Kind::Sec(ACL)),
];
const RS_TOP: &[Opt] = &[
    opt("store", Kind::Sec(RS_STORE)),
    multi("udp_recv_channel", RS_UDP_RECV),
    multi("query_channel", RS_QUERY),
];

/// A typed option value.
#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

#[derive(Clone, Debug)]
struct Field {
    val: Val,
    loc: Location,
}

/// A section after typing and merging, before it becomes a config struct.
#[derive(Clone, Debug)]
struct Sec {
    path: String,
    loc: Location,
    title: Option<String>,
    fields: Vec<(&'static str, Field)>,
    subs: Vec<(&'static str, Vec<Sec>)>,
}

impl Sec {
    fn new(path: String, loc: Location, title: Option<String>) -> Self {
        Sec {
            path,
            loc,
            title,
            fields: Vec::new(),
            subs: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }

    fn loc_of(&self, name: &str) -> Location {
        self.field(name)
            .map_or_else(|| self.loc.clone(), |f| f.loc.clone())
    }

    fn bool(&self, name: &str, default: bool) -> bool {
        match self.field(name).map(|f| &f.val) {
            Some(Val::Bool(b)) => *b,
            _ => default,
        }
    }

    fn str(&self, name: &str) -> Option<String> {
        match self.field(name).map(|f| &f.val) {
            Some(Val::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn float(&self, name: &str) -> Option<f64> {
        match self.field(name).map(|f| &f.val) {
            Some(Val::Float(x)) => Some(*x),
            _ => None,
        }
    }

    fn int(&self, name: &str) -> Option<i64> {
        match self.field(name).map(|f| &f.val) {
            Some(Val::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn subs(&self, name: &str) -> &[Sec] {
        self.subs
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    fn subs_mut(&mut self, name: &'static str) -> &mut Vec<Sec> {
        let idx = match self.subs.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.subs.push((name, Vec::new()));
                self.subs.len() - 1
            }
        };
        &mut self.subs[idx].1
    }

    fn set(&mut self, name: &'static str, field: Field) {
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, f)) => *f = field,
            None => self.fields.push((name, field)),
        }
    }
}

/// An option the file set explicitly (for "parsed but not implemented" warnings).
struct SetOption {
    path: String,
    value: String,
    loc: Location,
}

struct Ctx<'a> {
    /// The top-level option table: gmond's, or gmond-rs.conf's.
    schema: &'static [Opt],
    source: &'a dyn Source,
    opts: &'a LoadOptions,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    set: Vec<SetOption>,
    stack: Vec<String>,
    /// Files in the order they were first read, to sort errors in reading order.
    files: Vec<String>,
    syntax_failed: bool,
}

/// Loads `text` (named `name`) and everything it includes, then validates it.
pub(crate) fn load_text(
    text: &str,
    name: &str,
    source: &dyn Source,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    let (config, warnings, top) = load_schema(text, name, source, opts, TOP, build)?;
    Ok(Loaded {
        config,
        warnings,
        locations: section_locations(&top),
    })
}

/// Parses `text` against the top-level table `schema`, then builds it with `build`; every
/// error (syntax, names, types, `build`'s checks) is collected and returned together.
fn load_schema<T>(
    text: &str,
    name: &str,
    source: &dyn Source,
    opts: &LoadOptions,
    schema: &'static [Opt],
    build: impl FnOnce(&mut Ctx<'_>, &Sec) -> T,
) -> Result<(T, Vec<Warning>, Sec), ConfigErrors> {
    let mut ctx = Ctx {
        schema,
        source,
        opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        set: Vec::new(),
        stack: vec![name.to_string()],
        files: Vec::new(),
        syntax_failed: false,
    };
    let mut top = Sec::new(String::new(), Location::new(Arc::from(name), 1, 1), None);
    ctx.parse_and_fill(text, name, &mut top);
    let config = if ctx.syntax_failed {
        None
    } else {
        Some(build(&mut ctx, &top))
    };
    let config = match config {
        Some(config) if ctx.errors.is_empty() => config,
        // A syntax error always records an error, so this list is never empty.
        _ => {
            let files = ctx.files;
            let mut errors = ctx.errors;
            // Every error recorded here has a location (`Value` errors are placed first).
            errors.sort_by_key(|e| {
                e.location().map(|l| {
                    let file = files.iter().position(|f| **f == *l.file);
                    (file, l.line, l.column)
                })
            });
            return Err(ConfigErrors { errors });
        }
    };
    let mut warnings = not_implemented_warnings(&ctx.set, &opts.not_implemented);
    warnings.append(&mut ctx.warnings);
    Ok((config, warnings, top))
}

/// Loads gmond-rs.conf text (see [`crate::rsconf`]).
pub(crate) fn load_rs_text(
    text: &str,
    name: &str,
    source: &dyn Source,
) -> Result<(RsConfig, Vec<Warning>), ConfigErrors> {
    let opts = LoadOptions {
        not_implemented: Vec::new(),
        ..LoadOptions::default()
    };
    let (config, warnings, _) = load_schema(text, name, source, &opts, RS_TOP, build_rs)?;
    Ok((config, warnings))
}

/// Loads the file at `path` through `source`.
pub(crate) fn load_path(
    path: &Path,
    source: &dyn Source,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    let name = path.to_string_lossy().into_owned();
    match source.read_to_string(path) {
        Ok(text) => load_text(&text, &name, source, opts),
        Err(e) => Err(ConfigError::Io {
            location: Location::new(Arc::from(name.as_str()), 0, 0),
            path: name,
            message: e.to_string(),
        }
        .into()),
    }
}

impl Ctx<'_> {
    fn parse_and_fill(&mut self, text: &str, name: &str, top: &mut Sec) {
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_string());
        }
        let source = self.source;
        let env = |v: &str| source.env_var(v);
        match ast::parse(text, name, &env) {
            Ok(file) => {
                if let Some(loc) = file.unterminated_comment {
                    self.warnings.push(Warning {
                        location: loc,
                        option: String::new(),
                        kind: WarningKind::Note,
                        message: "comment '/*' is never closed; the rest of the file is ignored"
                            .into(),
                    });
                }
                self.fill(self.schema, top, &file.items);
            }
            Err(e) => {
                self.errors.push(e);
                self.syntax_failed = true;
            }
        }
    }

    fn fill(&mut self, schema: &'static [Opt], sec: &mut Sec, items: &[Item]) {
        for item in items {
            let Some(o) = schema
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(&item.key.text))
            else {
                self.errors.push(ConfigError::UnknownOption {
                    location: item.key.location.clone(),
                    name: item.key.text.clone(),
                    section: if sec.path.is_empty() {
                        "top level".into()
                    } else {
                        sec.path.clone()
                    },
                });
                continue;
            };
            let path = if sec.path.is_empty() {
                o.name.to_string()
            } else {
                format!("{}.{}", sec.path, o.name)
            };
            let shape = |message: String| ConfigError::WrongShape {
                location: item.key.location.clone(),
                message,
            };
            match (o.kind, &item.kind) {
                (Kind::Include, ItemKind::Call { args }) => {
                    if args.len() != 1 {
                        self.errors.push(shape(format!(
                            "wrong number of arguments to include(): {} (expected 1)",
                            args.len()
                        )));
                    } else {
                        self.include(sec, &args[0]);
                    }
                }
                (Kind::Include, _) => self
                    .errors
                    .push(shape("missing parenthesis for function 'include'".into())),
                (Kind::Sec(sub), ItemKind::Section { title, body }) => {
                    match (o.titled, title) {
                        (true, None) => {
                            self.errors
                                .push(shape(format!("missing title for section '{}'", o.name)));
                            continue;
                        }
                        (false, Some(t)) => {
                            self.errors.push(ConfigError::WrongShape {
                                location: t.location.clone(),
                                message: format!(
                                    "section '{}' takes no title (found '{}')",
                                    o.name, t.text
                                ),
                            });
                            continue;
                        }
                        _ => {}
                    }
                    self.set.push(SetOption {
                        path: path.clone(),
                        value: String::new(),
                        loc: item.key.location.clone(),
                    });
                    let title_text = title.as_ref().map(|t| t.text.clone());
                    let list = sec.subs_mut(o.name);
                    let existing = if !o.multi {
                        list.first().map(|_| 0)
                    } else if let Some(t) = &title_text {
                        list.iter().position(|s| {
                            s.title
                                .as_deref()
                                .is_some_and(|x| x.eq_ignore_ascii_case(t))
                        })
                    } else {
                        None
                    };
                    let mut child = match existing {
                        Some(i) => list.remove(i),
                        None => Sec::new(path, item.key.location.clone(), title_text),
                    };
                    self.fill(sub, &mut child, body);
                    let list = sec.subs_mut(o.name);
                    match existing {
                        Some(i) => list.insert(i, child),
                        None => list.push(child),
                    }
                }
                (Kind::Sec(_), _) => self.errors.push(shape(format!(
                    "missing opening brace for section '{}'",
                    o.name
                ))),
                (_, ItemKind::Assign { append: true, .. }) => self.errors.push(shape(format!(
                    "attempt to append to non-list option '{}'",
                    o.name
                ))),
                (
                    _,
                    ItemKind::Assign {
                        value: Value::List(_),
                        ..
                    },
                ) => self.errors.push(shape(format!(
                    "option '{}' takes one value, not a list",
                    o.name
                ))),
                (
                    kind,
                    ItemKind::Assign {
                        value: Value::Scalar(v),
                        ..
                    },
                ) => {
                    if let Some(val) = self.typed(kind, o.name, v) {
                        if let Some(prev) = sec.field(o.name) {
                            let message = format!(
                                "option '{path}' is set again; this value replaces the one at {}",
                                prev.loc
                            );
                            self.note(v.location.clone(), path.clone(), message);
                        }
                        let shown = match (&val, o.name) {
                            (Val::Bool(b), _) => if *b { "yes" } else { "no" }.to_string(),
                            (Val::Str(s), "family") => family_name(s).to_string(),
                            _ => v.text.clone(),
                        };
                        self.set.push(SetOption {
                            path,
                            value: shown,
                            loc: v.location.clone(),
                        });
                        sec.set(
                            o.name,
                            Field {
                                val,
                                loc: v.location.clone(),
                            },
                        );
                    }
                }
                (_, _) => self.errors.push(shape(format!(
                    "missing equal sign after option '{}'",
                    o.name
                ))),
            }
        }
    }

    fn typed(&mut self, kind: Kind, name: &str, v: &Spanned) -> Option<Val> {
        let bad = |expected: &str| ConfigError::BadValue {
            location: v.location.clone(),
            option: name.to_string(),
            expected: expected.to_string(),
            value: v.text.clone(),
        };
        let res = match kind {
            Kind::Int => match parse_c_long(&v.text) {
                Some(i) => Ok(Val::Int(i)),
                None => Err(bad("integer")),
            },
            Kind::Float => match parse_c_double(&v.text) {
                Some(x) => Ok(Val::Float(x)),
                None => Err(bad("floating point")),
            },
            Kind::Bool => match parse_bool(&v.text) {
                Some(b) => Ok(Val::Bool(b)),
                None => Err(bad("boolean (yes/no, true/false, on/off)")),
            },
            _ => Ok(Val::Str(v.text.clone())),
        };
        match res {
            Ok(val) => Some(val),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn include(&mut self, top: &mut Sec, arg: &Spanned) {
        let expanded = self.tilde_expand(&arg.text);
        let path = expanded.as_str();
        if self.stack.iter().any(|p| p == path) {
            self.errors.push(ConfigError::IncludeLoop {
                location: arg.location.clone(),
                path: path.to_string(),
                message: "include cycle".into(),
            });
            return;
        }
        if self.stack.len() > self.opts.max_include_depth {
            self.errors.push(ConfigError::IncludeLoop {
                location: arg.location.clone(),
                path: path.to_string(),
                message: format!(
                    "includes nested too deeply (limit {})",
                    self.opts.max_include_depth
                ),
            });
            return;
        }
        if self.source.exists(Path::new(path)) {
            match self.source.read_to_string(Path::new(path)) {
                Ok(text) => {
                    self.stack.push(path.to_string());
                    self.parse_and_fill(&text, path, top);
                    self.stack.pop();
                }
                Err(e) => self.errors.push(ConfigError::Io {
                    location: arg.location.clone(),
                    path: path.to_string(),
                    message: e.to_string(),
                }),
            }
        } else if has_wildcard(path) {
            // Like gmond: only the last component is a pattern; a missing directory is fine.
            let (dir, pattern) = match path.rfind('/') {
                Some(0) => ("/", &path[1..]),
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (".", path),
            };
            let Ok(mut names) = self.source.list_dir(Path::new(dir)) else {
                return;
            };
            names.retain(|n| fnmatch(pattern, n));
            names.sort();
            for n in names {
                let full = if dir == "/" {
                    format!("/{n}")
                } else {
                    format!("{dir}/{n}")
                };
                let arg = Spanned {
                    text: full,
                    location: arg.location.clone(),
                };
                self.include(top, &arg);
            }
        } else {
            self.errors.push(ConfigError::MissingInclude {
                location: arg.location.clone(),
                path: path.to_string(),
            });
        }
    }

    /// `~` and `~/...` to the home directory, as libconfuse does for include paths (it asks
    /// the password database; `$HOME` is what the [`Source`] can offer). `~user` is kept.
    fn tilde_expand(&self, path: &str) -> String {
        match path.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                match self.source.env_var("HOME") {
                    Some(home) => format!("{home}{rest}"),
                    None => path.to_string(),
                }
            }
            _ => path.to_string(),
        }
    }

    fn note(&mut self, location: Location, option: String, message: String) {
        self.warnings.push(Warning {
            location,
            option,
            kind: WarningKind::Note,
            message,
        });
    }

    fn invalid(&mut self, location: Location, message: String) {
        self.errors.push(ConfigError::Invalid { location, message });
    }

    /// An integer option within `lo..=hi`, or `default` (after recording an error if bad).
    fn int_in(&mut self, sec: &Sec, name: &str, default: i64, lo: i64, hi: i64) -> i64 {
        match sec.int(name) {
            None => default,
            Some(v) if (lo..=hi).contains(&v) => v,
            Some(v) => {
                self.errors.push(ConfigError::OutOfRange {
                    location: sec.loc_of(name),
                    option: name.to_string(),
                    value: v.to_string(),
                    range: format!("{lo}..={hi}"),
                });
                default
            }
        }
    }

    fn seconds(&mut self, sec: &Sec, name: &str, default: u64) -> Duration {
        let v = self.int_in(sec, name, default as i64, 0, i64::from(u32::MAX));
        Duration::from_secs(v.unsigned_abs())
    }

    fn port(&mut self, sec: &Sec, what: &str) -> u16 {
        if sec.int("port").is_none() {
            self.invalid(sec.loc.clone(), format!("{what} needs a port"));
            return 0;
        }
        let p = self.int_in(sec, "port", 0, 1, 65535);
        u16::try_from(p).unwrap_or(0)
    }

    fn mcast_join(&mut self, sec: &Sec) -> Option<IpAddr> {
        let text = sec.str("mcast_join")?;
        match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_multicast() => Some(ip),
            _ => {
                self.errors.push(ConfigError::BadValue {
                    location: sec.loc_of("mcast_join"),
                    option: "mcast_join".into(),
                    expected: "multicast IP address".into(),
                    value: text,
                });
                None
            }
        }
    }

    fn family(&mut self, sec: &Sec) -> Family {
        let Some(text) = sec.str("family") else {
            return Family::Inet4;
        };
        match family_name(&text) {
            "inet4" => Family::Inet4,
            "inet6" => Family::Inet6,
            _ => {
                self.errors.push(ConfigError::BadValue {
                    location: sec.loc_of("family"),
                    option: "family".into(),
                    expected: "address family (inet4 or inet6)".into(),
                    value: text,
                });
                Family::Inet4
            }
        }
    }

    fn acl(&mut self, channel: &Sec) -> Option<Acl> {
        self.acl_named(channel, "acl")
    }

    /// The ACL section `name` of `channel` (gmond's `acl` grammar).
    fn acl_named(&mut self, channel: &Sec, name: &str) -> Option<Acl> {
        let sec = channel.subs(name).first()?;
        let accesses = sec.subs("access");
        if accesses.is_empty() {
            self.note(
                sec.loc.clone(),
                sec.path.clone(),
                "acl without access entries is ignored (everyone is allowed), as in gmond".into(),
            );
            return None;
        }
        let default = match sec.str("default") {
            None => AclAction::Allow,
            Some(d) => AclAction::parse(&d).unwrap_or_else(|| {
                self.errors.push(ConfigError::BadValue {
                    location: sec.loc_of("default"),
                    option: "default".into(),
                    expected: "ACL action (allow or deny)".into(),
                    value: d,
                });
                AclAction::Allow
            }),
        };
        let mut entries = Vec::new();
        for a in accesses {
            let (Some(ip), Some(action)) = (a.str("ip"), a.str("action")) else {
                self.invalid(a.loc.clone(), "access needs an ip and an action".into());
                continue;
            };
            let Some(action) = AclAction::parse(&action) else {
                self.errors.push(ConfigError::BadValue {
                    location: a.loc_of("action"),
                    option: "action".into(),
                    expected: "ACL action (allow or deny)".into(),
                    value: action,
                });
                continue;
            };
            let mask = a.str("mask");
            match Subnet::parse(&ip, mask.as_deref()) {
                Ok(subnet) => entries.push(AccessEntry { subnet, action }),
                Err(why) => self.invalid(
                    a.loc_of(if mask.is_some() { "mask" } else { "ip" }),
                    format!("ACL access entry has an invalid ip/mask: {why}"),
                ),
            }
        }
        Some(Acl { default, entries })
    }
}

fn section_locations(top: &Sec) -> SectionLocations {
    let locs = |sec: &Sec, name: &str| -> Vec<Location> {
        sec.subs(name).iter().map(|s| s.loc.clone()).collect()
    };
    let groups = top.subs("collection_group");
    SectionLocations {
        udp_send: locs(top, "udp_send_channel"),
        udp_recv: locs(top, "udp_recv_channel"),
        tcp_accept: locs(top, "tcp_accept_channel"),
        modules: top
            .subs("modules")
            .first()
            .map(|m| locs(m, "module"))
            .unwrap_or_default(),
        collection_groups: groups.iter().map(|g| g.loc.clone()).collect(),
        metrics: groups.iter().map(|g| locs(g, "metric")).collect(),
    }
}

/// Family as gmond decides it: a '4' anywhere means IPv4, else a '6' means IPv6.
fn family_name(s: &str) -> &'static str {
    if s.contains('4') {
        "inet4"
    } else if s.contains('6') {
        "inet6"
    } else {
        "unknown"
    }
}

/// `strtol(s, &end, 0)` with the whole string consumed: sign, `0x` hex, `0` octal, decimal.
pub(crate) fn parse_c_long(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if s.is_empty() {
        // strtol("") converts nothing and leaves an empty rest: libconfuse takes it as 0.
        return Some(0);
    }
    if t.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = i128::from_str_radix(digits, radix).ok()?;
    let v = if neg { -mag } else { mag };
    i64::try_from(v).ok()
}

/// `strtod` with the whole string consumed (decimal forms, inf, nan; no hex floats).
pub(crate) fn parse_c_double(s: &str) -> Option<f64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
    if s.is_empty() {
        return Some(0.0);
    }
    t.parse().ok()
}

/// libconfuse booleans: yes/no, true/false, on/off, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    const T: [&str; 3] = ["true", "on", "yes"];
    const F: [&str; 3] = ["false", "off", "no"];
    if T.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if F.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

fn not_implemented_warnings(set: &[SetOption], patterns: &[String]) -> Vec<Warning> {
    set.iter()
        .filter(|s| {
            patterns
                .iter()
                .any(|p| pattern_matches(p, &s.path, &s.value))
        })
        .map(|s| Warning {
            location: s.loc.clone(),
            option: s.path.clone(),
            kind: WarningKind::NotImplemented,
            message: if s.value.is_empty() {
                format!(
                    "section '{}' is parsed but not implemented by gmond-rs",
                    s.path
                )
            } else {
                format!(
                    "option '{}' = '{}' is parsed but not implemented by gmond-rs",
                    s.path, s.value
                )
            },
        })
        .collect()
}

/// `section.option`, `section.*` (any option inside), optional `=value` (case-insensitive).
fn pattern_matches(pattern: &str, path: &str, value: &str) -> bool {
    let (ppath, pval) = match pattern.split_once('=') {
        Some((p, v)) => (p, Some(v)),
        None => (pattern, None),
    };
    let path_ok = match ppath.strip_suffix(".*") {
        Some(prefix) => {
            path.len() > prefix.len() + 1
                && path.is_char_boundary(prefix.len())
                && path[..prefix.len()].eq_ignore_ascii_case(prefix)
                && path.as_bytes()[prefix.len()] == b'.'
        }
        None => ppath.eq_ignore_ascii_case(path),
    };
    path_ok && pval.is_none_or(|v| v.eq_ignore_ascii_case(value))
}

/// gmond-rs.conf's typed tree to [`RsConfig`]; limits must be positive, one policy per port.
fn build_rs(ctx: &mut Ctx<'_>, top: &Sec) -> RsConfig {
    let mut store = StoreLimits::default();
    if let Some(sec) = top.subs("store").first() {
        let mut limit = |name: &str, hi: i64| -> Option<u64> {
            sec.int(name)?;
            u64::try_from(ctx.int_in(sec, name, 0, 1, hi))
                .ok()
                .filter(|&v| v > 0)
        };
        store = StoreLimits {
            max_hosts: limit("max_hosts", 100_000_000),
            max_metrics_per_host: limit("max_metrics_per_host", 100_000_000),
            max_metrics: limit("max_metrics", 1_000_000_000),
            max_memory_mb: limit("max_memory_mb", 1 << 30),
            max_pending_requests: limit("max_pending_requests", 100_000_000),
        };
    }
    let mut udp_recv: Vec<RecvPolicy> = Vec::new();
    for sec in top.subs("udp_recv_channel") {
        let port = ctx.port(sec, "udp_recv_channel");
        if udp_recv.iter().any(|p| p.port == port) {
            ctx.invalid(
                sec.loc_of("port"),
                format!("a second udp_recv_channel policy for port {port}"),
            );
            continue;
        }
        udp_recv.push(RecvPolicy {
            port,
            spoof_acl: ctx.acl_named(sec, "spoof_acl"),
            location: sec.loc.clone(),
        });
    }
    let mut query: Vec<QueryChannel> = Vec::new();
    for sec in top.subs("query_channel") {
        let port = ctx.port(sec, "query_channel");
        query.push(QueryChannel {
            bind: sec.str("bind").unwrap_or_else(|| "127.0.0.1".to_string()),
            port,
            acl: ctx.acl(sec),
            location: sec.loc.clone(),
        });
    }
    RsConfig {
        store,
        udp_recv,
        query,
    }
}

fn build(ctx: &mut Ctx<'_>, top: &Sec) -> Config {
    let empty = |name: &str| Sec::new(name.to_string(), top.loc.clone(), None);
    let or_empty = |name: &str| {
        top.subs(name)
            .first()
            .cloned()
            .unwrap_or_else(|| empty(name))
    };

    let g = or_empty("globals");
    let d = Globals::default();
    let globals = Globals {
        daemonize: g.bool("daemonize", d.daemonize),
        setuid: g.bool("setuid", d.setuid),
        user: g.str("user").unwrap_or(d.user),
        debug_level: u32::try_from(ctx.int_in(&g, "debug_level", 0, 0, i64::from(i32::MAX)))
            .unwrap_or(0),
        max_udp_msg_len: u16::try_from(ctx.int_in(&g, "max_udp_msg_len", 1472, 1, 65535))
            .unwrap_or(d.max_udp_msg_len),
        mute: g.bool("mute", d.mute),
        deaf: g.bool("deaf", d.deaf),
        allow_extra_data: g.bool("allow_extra_data", d.allow_extra_data),
        host_dmax: Some(ctx.seconds(&g, "host_dmax", 86_400)).filter(|d| !d.is_zero()),
        host_tmax: ctx.seconds(&g, "host_tmax", 20),
        cleanup_threshold: ctx.seconds(&g, "cleanup_threshold", 300),
        gexec: g.bool("gexec", d.gexec),
        send_metadata_interval: Some(ctx.seconds(&g, "send_metadata_interval", 0))
            .filter(|d| !d.is_zero()),
        module_dir: g.str("module_dir"),
        override_hostname: g.str("override_hostname"),
        override_ip: g.str("override_ip"),
        tags: g.str("tags"),
    };
    if globals.deaf && globals.mute {
        let loc = std::cmp::max(g.loc_of("deaf"), g.loc_of("mute"));
        ctx.invalid(
            loc,
            "configured to run both deaf and mute: nothing to do (gmond exits too)".into(),
        );
    }

    let c = or_empty("cluster");
    let dc = Cluster::default();
    let cluster = Cluster {
        name: c.str("name").unwrap_or(dc.name),
        owner: c.str("owner").unwrap_or(dc.owner),
        latlong: c.str("latlong").unwrap_or(dc.latlong),
        url: c.str("url").unwrap_or(dc.url),
    };
    let host = Host {
        location: or_empty("host")
            .str("location")
            .unwrap_or_else(|| Host::default().location),
    };

    let udp_send = top
        .subs("udp_send_channel")
        .iter()
        .filter_map(|s| build_udp_send(ctx, s))
        .collect();
    let udp_recv = top
        .subs("udp_recv_channel")
        .iter()
        .map(|s| UdpRecvChannel {
            mcast_join: ctx.mcast_join(s),
            mcast_if: s.str("mcast_if"),
            bind: s.str("bind"),
            port: ctx.port(s, "udp_recv_channel"),
            family: ctx.family(s),
            retry_bind: s.bool("retry_bind", true),
            buffer: u32::try_from(ctx.int_in(s, "buffer", 0, 0, i64::from(i32::MAX)))
                .ok()
                .filter(|b| *b > 0),
            acl: ctx.acl(s),
        })
        .collect();
    let tcp_accept = top
        .subs("tcp_accept_channel")
        .iter()
        .map(|s| TcpAcceptChannel {
            bind: s.str("bind"),
            port: ctx.port(s, "tcp_accept_channel"),
            interface: s.str("interface"),
            family: ctx.family(s),
            timeout: s
                .int("timeout")
                .and_then(|t| u64::try_from(t).ok())
                .map(Duration::from_micros),
            gzip_output: s.bool("gzip_output", false),
            acl: ctx.acl(s),
        })
        .collect();

    let modules = build_modules(ctx, top);
    let collection_groups = top
        .subs("collection_group")
        .iter()
        .map(|s| build_group(ctx, s))
        .collect();

    let sf = or_empty("sflow");
    let ds = Sflow::default();
    let sflow = Sflow {
        udp_port: u16::try_from(ctx.int_in(&sf, "udp_port", 6343, 1, 65535)).unwrap_or(ds.udp_port),
        accept_vm_metrics: sf.bool("accept_vm_metrics", ds.accept_vm_metrics),
        accept_http_metrics: sf.bool("accept_http_metrics", ds.accept_http_metrics),
        multiple_http_instances: sf.bool("multiple_http_instances", ds.multiple_http_instances),
        accept_memcache_metrics: sf.bool("accept_memcache_metrics", ds.accept_memcache_metrics),
        multiple_memcache_instances: sf.bool(
            "multiple_memcache_instances",
            ds.multiple_memcache_instances,
        ),
        accept_jvm_metrics: sf.bool("accept_jvm_metrics", ds.accept_jvm_metrics),
        multiple_jvm_instances: sf.bool("multiple_jvm_instances", ds.multiple_jvm_instances),
    };

    Config {
        globals,
        cluster,
        host,
        udp_send,
        udp_recv,
        tcp_accept,
        modules,
        collection_groups,
        sflow,
    }
}

fn build_udp_send(ctx: &mut Ctx<'_>, s: &Sec) -> Option<UdpSendChannel> {
    let mcast = ctx.mcast_join(s);
    let host = s.str("host");
    let port = ctx.port(s, "udp_send_channel");
    let ttl = u8::try_from(ctx.int_in(s, "ttl", 1, 0, 255)).unwrap_or(1);
    let bind = s.str("bind");
    let bind_hostname = s.bool("bind_hostname", false);
    if bind.is_some() && bind_hostname {
        ctx.invalid(
            s.loc_of("bind_hostname"),
            "udp_send_channel: bind and bind_hostname are mutually exclusive".into(),
        );
    }
    let target = match (mcast, host) {
        (Some(group), host) => {
            if host.is_some() {
                ctx.note(
                    s.loc_of("host"),
                    format!("{}.host", s.path),
                    "host is ignored because mcast_join is set (gmond does the same)".into(),
                );
            }
            SendTarget::Multicast(group)
        }
        (None, Some(h)) => SendTarget::Unicast(h),
        (None, None) => {
            if s.str("mcast_join").is_none() {
                ctx.invalid(
                    s.loc.clone(),
                    "udp_send_channel needs mcast_join or host".into(),
                );
            }
            return None;
        }
    };
    Some(UdpSendChannel {
        target,
        port,
        ttl,
        mcast_if: s.str("mcast_if"),
        bind,
        bind_hostname,
    })
}

fn build_modules(ctx: &mut Ctx<'_>, top: &Sec) -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    let Some(modules) = top.subs("modules").first() else {
        return out;
    };
    for m in modules.subs("module") {
        let Some(name) = m.str("name") else {
            ctx.invalid(m.loc.clone(), "module needs a name".into());
            continue;
        };
        let module = Module {
            name,
            path: m.str("path"),
            language: m.str("language"),
            enabled: m.bool("enabled", true),
            params: m.str("params"),
            param: m
                .subs("param")
                .iter()
                .map(|p| ModuleParam {
                    name: p.title.clone().unwrap_or_default(),
                    value: p.str("value"),
                })
                .collect(),
        };
        let loads_natively = |x: &Module| {
            x.enabled
                && x.language
                    .as_deref()
                    .is_none_or(|l| l.eq_ignore_ascii_case("C/C++"))
        };
        if loads_natively(&module)
            && out
                .iter()
                .any(|o| loads_natively(o) && o.name == module.name && o.path == module.path)
        {
            ctx.invalid(
                m.loc.clone(),
                format!(
                    "module '{}' @ '{}' is listed more than once (gmond refuses to start)",
                    module.name,
                    module.path.as_deref().unwrap_or("")
                ),
            );
        }
        if module.enabled && module.name == LibvirtModule::NAME {
            check_libvirt_params(ctx, m);
        }
        out.push(module);
    }
    out
}

/// gmond-rs's own module: its parameters are checked here, where every other option is, so a
/// bad value stops start-up with FILE:LINE instead of falling back to a default.
fn check_libvirt_params(ctx: &mut Ctx<'_>, module: &Sec) {
    for p in module.subs("param") {
        let title = p.title.as_deref().unwrap_or_default();
        let value = p.str("value");
        if title.eq_ignore_ascii_case("collect_every") {
            if let Err(why) =
                LibvirtModule::parse_collect_every(value.as_deref().unwrap_or_default())
            {
                ctx.invalid(p.loc_of("value"), why.to_string());
            }
        } else if title.eq_ignore_ascii_case("uri")
            && value.as_deref().is_none_or(|v| v.trim().is_empty())
        {
            ctx.invalid(
                p.loc_of("value"),
                "libvirt_module: uri needs a value such as \"qemu:///system\"".into(),
            );
        }
    }
}

fn build_group(ctx: &mut Ctx<'_>, s: &Sec) -> CollectionGroup {
    let mut metrics = Vec::new();
    for m in s.subs("metric") {
        let title = m.str("title");
        let value_threshold = m.float("value_threshold").filter(|v| *v >= 0.0);
        let matcher = match (m.str("name_match"), m.str("name")) {
            (Some(pattern), name) => {
                if name.is_some() {
                    ctx.note(
                        m.loc_of("name"),
                        format!("{}.name", m.path),
                        "name is ignored because name_match is set (gmond does the same)".into(),
                    );
                }
                if let Some(t) = &title {
                    if let Err(why) = check_title_template(t) {
                        ctx.invalid(m.loc_of("title"), why.to_string());
                    }
                }
                match NamePattern::new(&pattern) {
                    Ok(p) => MetricMatch::Pattern(p),
                    Err(why) => {
                        ctx.errors.push(ConfigError::BadValue {
                            location: m.loc_of("name_match"),
                            option: "name_match".into(),
                            expected: format!(
                                "regular expression ({})",
                                first_line(&why.to_string())
                            ),
                            value: pattern,
                        });
                        continue;
                    }
                }
            }
            (None, Some(name)) => MetricMatch::Name(name),
            (None, None) => {
                ctx.invalid(m.loc.clone(), "metric needs a name or a name_match".into());
                continue;
            }
        };
        metrics.push(MetricSelector {
            matcher,
            value_threshold,
            title,
        });
    }
    CollectionGroup {
        collect_once: s.bool("collect_once", false),
        collect_every: ctx.seconds(s, "collect_every", 60),
        time_threshold: ctx.seconds(s, "time_threshold", 3600),
        metrics,
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("invalid")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_long("8649"), Some(8649));
        assert_eq!(parse_c_long("-1"), Some(-1));
        assert_eq!(parse_c_long("+7"), Some(7));
        assert_eq!(parse_c_long("0x10"), Some(16));
        assert_eq!(parse_c_long("010"), Some(8));
        assert_eq!(parse_c_long("0"), Some(0));
        assert_eq!(parse_c_long("  12"), Some(12));
        assert_eq!(parse_c_long(""), Some(0));
        assert_eq!(parse_c_long("08"), None);
        assert_eq!(parse_c_long("12 "), None);
        assert_eq!(parse_c_long("1.0"), None);
        assert_eq!(parse_c_long("0x"), None);
        assert_eq!(parse_c_long("-"), None);
        assert_eq!(parse_c_long("99999999999999999999"), None);
    }

    #[test]
    fn c_doubles_and_bools() {
        assert_eq!(parse_c_double("1.0"), Some(1.0));
        assert_eq!(parse_c_double("4096"), Some(4096.0));
        assert_eq!(parse_c_double("-1"), Some(-1.0));
        assert_eq!(parse_c_double("1e3"), Some(1000.0));
        assert_eq!(parse_c_double("x"), None);
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("sflow.*", "sflow.udp_port", "6343"));
        assert!(!pattern_matches("sflow.*", "sflow", ""));
        assert!(!pattern_matches("sflow.*", "sflowx.a", ""));
        assert!(pattern_matches("globals.gexec=yes", "globals.gexec", "YES"));
        assert!(!pattern_matches("globals.gexec=yes", "globals.gexec", "no"));
        assert!(pattern_matches(
            "globals.module_dir",
            "globals.module_dir",
            "/x"
        ));
    }
}
