//! Stage 3 output: the validated, typed gmond configuration.
//!
//! `Config::default()` is what gmond uses for an EMPTY file: its compiled-in option defaults,
//! no channels, no modules, no collection groups. That differs from the built-in config TEXT
//! (`gmond -t`, [`crate::default_config_text`]), which adds multicast channels, the stock
//! modules and collection groups. Both are tested.

use std::net::IpAddr;
use std::time::Duration;

use crate::acl::Acl;
use crate::collect::CollectionGroup;
use crate::error::ConfigError;

/// A whole gmond.conf after validation.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    /// `globals { }`.
    pub globals: Globals,
    /// `cluster { }`: attributes of the `<CLUSTER>` element.
    pub cluster: Cluster,
    /// `host { }`.
    pub host: Host,
    /// Every `udp_send_channel`, in file order.
    pub udp_send: Vec<UdpSendChannel>,
    /// Every `udp_recv_channel`, in file order.
    pub udp_recv: Vec<UdpRecvChannel>,
    /// Every `tcp_accept_channel`, in file order.
    pub tcp_accept: Vec<TcpAcceptChannel>,
    /// Every `modules { module { } }`, in file order (several `modules` sections merge).
    pub modules: Vec<Module>,
    /// Every `collection_group`, in file order (= gmond's send order).
    pub collection_groups: Vec<CollectionGroup>,
    /// `sflow { }`; gmond always has one, with defaults if the section is absent.
    pub sflow: Sflow,
}

impl Config {
    /// gmond mutes itself when no send channel exists, even with `mute = no`.
    pub fn effective_mute(&self) -> bool {
        self.globals.mute || self.udp_send.is_empty()
    }

    /// Whether datagrams arriving on `channel` are sFlow (its port is `sflow.udp_port`).
    pub fn is_sflow_channel(&self, channel: &UdpRecvChannel) -> bool {
        channel.port == self.sflow.udp_port
    }

    /// gmond is deaf when asked, or when it has no channel to listen on.
    pub fn effective_deaf(&self) -> bool {
        self.globals.deaf || (self.udp_recv.is_empty() && self.tcp_accept.is_empty())
    }

    /// The first enabled `libvirt_module` (gmond-rs's per-VM metrics), with its parameters.
    /// Loading rejected bad values with FILE:LINE, so only a hand-built `Config` falls back
    /// to the defaults here.
    pub fn libvirt_module(&self) -> Option<LibvirtModule> {
        let m = self
            .modules
            .iter()
            .find(|m| m.enabled && m.name == LibvirtModule::NAME)?;
        Some(LibvirtModule {
            uri: m
                .param("uri")
                .unwrap_or(LibvirtModule::DEFAULT_URI)
                .to_owned(),
            collect_every: m
                .param("collect_every")
                .and_then(|v| LibvirtModule::parse_collect_every(v).ok())
                .unwrap_or(LibvirtModule::DEFAULT_COLLECT_EVERY),
        })
    }
}

/// `module { name = "libvirt_module" ... }`: per-VM metrics read through libvirt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibvirtModule {
    /// `param uri`: the libvirt connection (default `qemu:///system`).
    pub uri: String,
    /// `param collect_every`: seconds between collection rounds (default 20).
    pub collect_every: Duration,
}

impl LibvirtModule {
    /// The module's name in gmond.conf.
    pub const NAME: &'static str = "libvirt_module";
    /// Default connection URI.
    pub const DEFAULT_URI: &'static str = "qemu:///system";
    /// Default round interval.
    pub const DEFAULT_COLLECT_EVERY: Duration = Duration::from_secs(20);
    /// Longest accepted round interval: beyond it the VM metrics' dmax (600 s) would expire
    /// them between rounds.
    pub const MAX_COLLECT_EVERY_S: u64 = 600;

    /// Parses `collect_every`: whole seconds, 1 to [`Self::MAX_COLLECT_EVERY_S`] (else a
    /// [`ConfigError::Value`] about `collect_every`).
    pub fn parse_collect_every(value: &str) -> Result<Duration, ConfigError> {
        match value.trim().parse::<u64>() {
            Ok(s) if (1..=Self::MAX_COLLECT_EVERY_S).contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(ConfigError::Value {
                what: "collect_every",
                message: format!(
                    "libvirt_module: collect_every = \"{value}\" is not a whole number of \
                     seconds from 1 to {}",
                    Self::MAX_COLLECT_EVERY_S
                ),
            }),
        }
    }
}

/// `globals { }`, with gmond 3.7.2's compiled-in defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Globals {
    /// Fork into the background (default yes).
    pub daemonize: bool,
    /// Drop privileges to `user` (default yes).
    pub setuid: bool,
    /// User to switch to (compiled-in default "nobody"; Debian's file says "ganglia").
    pub user: String,
    /// Debug verbosity; > 0 also keeps gmond in the foreground.
    pub debug_level: u32,
    /// Largest datagram gmond builds or accepts, bytes.
    pub max_udp_msg_len: u16,
    /// Send no metrics.
    pub mute: bool,
    /// Receive nothing and serve no XML.
    pub deaf: bool,
    /// Accept EXTRA_DATA in metadata packets.
    pub allow_extra_data: bool,
    /// Forget hosts silent this long; `None` (0 in the file) means never.
    pub host_dmax: Option<Duration>,
    /// Expected heartbeat interval of hosts, used for the TMAX of `<HOST>`.
    pub host_tmax: Duration,
    /// Minimum time between two cleanups of expired hosts and metrics.
    pub cleanup_threshold: Duration,
    /// Report gexec as ON.
    pub gexec: bool,
    /// Re-send all metadata this often; `None` (0) means only at start and on request.
    pub send_metadata_interval: Option<Duration>,
    /// Directory for relative module paths.
    pub module_dir: Option<String>,
    /// Name to report instead of the reverse DNS of our address.
    pub override_hostname: Option<String>,
    /// Address to report instead of our own (kept as written).
    pub override_ip: Option<String>,
    /// `TAGS` attribute of our `<HOST>`.
    pub tags: Option<String>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            daemonize: true,
            setuid: true,
            user: "nobody".into(),
            debug_level: 0,
            max_udp_msg_len: 1472,
            mute: false,
            deaf: false,
            allow_extra_data: true,
            host_dmax: Some(Duration::from_secs(86_400)),
            host_tmax: Duration::from_secs(20),
            cleanup_threshold: Duration::from_secs(300),
            gexec: false,
            send_metadata_interval: None,
            module_dir: None,
            override_hostname: None,
            override_ip: None,
            tags: None,
        }
    }
}

/// `cluster { }`: every field defaults to "unspecified".
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// `NAME` of `<CLUSTER>`.
    pub name: String,
    /// `OWNER`.
    pub owner: String,
    /// `LATLONG`.
    pub latlong: String,
    /// `URL`.
    pub url: String,
}

impl Default for Cluster {
    fn default() -> Self {
        let u = || "unspecified".to_string();
        Cluster {
            name: u(),
            owner: u(),
            latlong: u(),
            url: u(),
        }
    }
}

/// `host { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// `LOCATION` of our `<HOST>` (`-l` on the command line overrides it).
    pub location: String,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            location: "unspecified".into(),
        }
    }
}

/// Where a send channel sends.
#[derive(Clone, Debug, PartialEq)]
pub enum SendTarget {
    /// `mcast_join = group` (wins over `host` if both are given, as in gmond).
    Multicast(IpAddr),
    /// `host = name-or-address`, resolved by the daemon.
    Unicast(String),
}

/// `udp_send_channel { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpSendChannel {
    /// Destination.
    pub target: SendTarget,
    /// Destination port.
    pub port: u16,
    /// Multicast TTL (0..=255, default 1).
    pub ttl: u8,
    /// Interface for multicast sends.
    pub mcast_if: Option<String>,
    /// Local address to send from (name or address).
    pub bind: Option<String>,
    /// Send from the address our hostname resolves to.
    pub bind_hostname: bool,
}

/// Address family of a listening channel (`family`; gmond looks for a '4' or '6' in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv4 (default).
    #[default]
    Inet4,
    /// IPv6.
    Inet6,
}

/// `udp_recv_channel { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpRecvChannel {
    /// Multicast group to join.
    pub mcast_join: Option<IpAddr>,
    /// Interface for the multicast join.
    pub mcast_if: Option<String>,
    /// Local address to bind (name or address); the group address means "multicast only".
    pub bind: Option<String>,
    /// Port (a port equal to `sflow.udp_port` makes this an sFlow channel).
    pub port: u16,
    /// Address family.
    pub family: Family,
    /// Keep retrying a failed bind instead of exiting.
    pub retry_bind: bool,
    /// SO_RCVBUF in bytes; `None` (0) keeps the system default.
    pub buffer: Option<u32>,
    /// Who may send to us; `None` allows everyone.
    pub acl: Option<Acl>,
}

/// `tcp_accept_channel { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpAcceptChannel {
    /// Local address to bind (name or address).
    pub bind: Option<String>,
    /// Port.
    pub port: u16,
    /// Accepted but unused by gmond 3.7.2 as well.
    pub interface: Option<String>,
    /// Address family.
    pub family: Family,
    /// Per-client send timeout; `None` (negative in the file, default -1) blocks forever.
    /// The file gives microseconds; 0 means non-blocking.
    pub timeout: Option<Duration>,
    /// Compress the XML with gzip.
    pub gzip_output: bool,
    /// Who may connect; `None` allows everyone.
    pub acl: Option<Acl>,
}

/// `module { }` inside `modules { }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    /// Module (and symbol) name, e.g. "cpu_module".
    pub name: String,
    /// Shared object path; relative paths are under `globals.module_dir`.
    pub path: Option<String>,
    /// `language`; gmond itself loads only unset or "C/C++".
    pub language: Option<String>,
    /// Load it at all (default yes).
    pub enabled: bool,
    /// `params = "..."` string.
    pub params: Option<String>,
    /// `param NAME { value = ... }` in file order (same title twice merges, as in libconfuse).
    pub param: Vec<ModuleParam>,
}

impl Module {
    /// The value of `param NAME`, compared case-insensitively like libconfuse titles.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.param
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .and_then(|p| p.value.as_deref())
    }
}

/// One `param NAME { value = ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleParam {
    /// The section title.
    pub name: String,
    /// `value`, if given.
    pub value: Option<String>,
}

/// `sflow { }`: always present in gmond, defaults when absent.
#[derive(Clone, Debug, PartialEq)]
pub struct Sflow {
    /// Port whose udp_recv_channel carries sFlow (default 6343).
    pub udp_port: u16,
    /// Accept virtual-machine metrics.
    pub accept_vm_metrics: bool,
    /// Accept HTTP metrics.
    pub accept_http_metrics: bool,
    /// Keep HTTP metrics of several instances apart.
    pub multiple_http_instances: bool,
    /// Accept memcache metrics.
    pub accept_memcache_metrics: bool,
    /// Keep memcache metrics of several instances apart.
    pub multiple_memcache_instances: bool,
    /// Accept JVM metrics.
    pub accept_jvm_metrics: bool,
    /// Keep JVM metrics of several instances apart.
    pub multiple_jvm_instances: bool,
}

impl Default for Sflow {
    fn default() -> Self {
        Sflow {
            udp_port: 6343,
            accept_vm_metrics: true,
            accept_http_metrics: true,
            multiple_http_instances: false,
            accept_memcache_metrics: true,
            multiple_memcache_instances: false,
            accept_jvm_metrics: true,
            multiple_jvm_instances: false,
        }
    }
}
