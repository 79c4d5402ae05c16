//! The demo's loopback network: one 127.0.0.x address per simulated host, one port for all of
//! them and for the cluster feed on 127.0.0.1, and each host's gmond configuration (unicast to
//! every host, every socket bound to its loopback address).

use gmond_conf::{Config, SendTarget, TcpAcceptChannel, UdpRecvChannel, UdpSendChannel};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

/// Most hosts the demo runs (127.0.0.11 to 127.0.0.42).
pub const MAX_HOSTS: usize = 32;

/// Where the cluster's XML feed is served.
pub const FEED_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How many ports after the requested one are tried when it is taken.
pub const PORT_TRIES: u16 = 100;

/// The loopback address of host `i` (0-based): 127.0.0.11, 127.0.0.12, ...
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        0,
        11u8.saturating_add(u8::try_from(i).unwrap_or(u8::MAX)),
    )
}

/// Whether `port` can be bound (UDP and TCP) on every address in `addrs`.
pub fn port_free(port: u16, addrs: &[Ipv4Addr]) -> bool {
    port != 0
        && addrs.iter().all(|ip| {
            UdpSocket::bind((*ip, port)).is_ok() && TcpListener::bind((*ip, port)).is_ok()
        })
}

/// The first port at or after `want` that is free on the feed address and every host address.
pub fn choose_port(want: u16, hosts: usize) -> Option<u16> {
    let mut addrs: Vec<Ipv4Addr> = (0..hosts).map(host_addr).collect();
    addrs.push(FEED_ADDR);
    (0..PORT_TRIES)
        .filter_map(|k| want.checked_add(k))
        .find(|p| port_free(*p, &addrs))
}

/// Reads the whole XML document from `addr` through the balancer's bounded feed reader; `None`
/// while it cannot be read (the caller keeps what it had).
pub fn read_feed(addr: SocketAddr) -> Option<Vec<u8>> {
    balancer::feed::read_xml(
        &addr.to_string(),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .ok()
}

/// The demo cluster's shape, shared by every host's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Cluster name.
    pub cluster: String,
    /// Number of hosts.
    pub hosts: usize,
    /// Port of every host's channels and of the feed.
    pub port: u16,
    /// Minimum time between cleanup sweeps; short so that a migrated VM's metrics leave its
    /// old host soon after their dmax.
    pub cleanup: Duration,
}

/// Host `i`'s configuration: `base` (the built-in gmond.conf) with the layout's cluster name,
/// the host's name spoofed as gmond's `override_hostname`, unicast to every host (itself
/// included, so each keeps the whole cluster view), and its receive and XML channels on its own
/// loopback address. Host 0 also serves the XML on 127.0.0.1: the cluster's feed. The metrics
/// derived from the simulated VMs (`hostmetrics::DERIVED`) are not collected.
pub fn host_config(base: &Config, layout: &Layout, i: usize, name: &str) -> Config {
    let (n, port, feed) = (layout.hosts, layout.port, i == 0);
    let me = host_addr(i).to_string();
    let mut cfg = base.clone();
    cfg.cluster.name = layout.cluster.clone();
    cfg.cluster.owner = "gmond-rs demo".into();
    cfg.globals.override_hostname = Some(name.to_owned());
    cfg.globals.override_ip = Some(me.clone());
    cfg.globals.cleanup_threshold = layout.cleanup;
    cfg.globals.mute = false;
    cfg.globals.deaf = false;
    // The VM metrics come from the simulated hypervisor, never from libvirt; so do the host's
    // load, CPU and memory figures.
    cfg.modules.retain(|m| m.name != "libvirt_module");
    crate::hostmetrics::leave_out(&mut cfg);
    cfg.udp_send = (0..n)
        .map(|j| UdpSendChannel {
            target: SendTarget::Unicast(host_addr(j).to_string()),
            port,
            ttl: 1,
            mcast_if: None,
            bind: Some(me.clone()),
            bind_hostname: false,
        })
        .collect();
    cfg.udp_recv = vec![UdpRecvChannel {
        mcast_join: None,
        mcast_if: None,
        bind: Some(me.clone()),
        port,
        family: Default::default(),
        retry_bind: false,
        buffer: None,
        acl: None,
    }];
    let tcp = |bind: String| TcpAcceptChannel {
        bind: Some(bind),
        port,
        interface: None,
        family: Default::default(),
        timeout: Some(Duration::from_secs(10)),
        gzip_output: false,
        acl: None,
    };
    cfg.tcp_accept = vec![tcp(me)];
    if feed {
        cfg.tcp_accept.push(tcp(FEED_ADDR.to_string()));
    }
    cfg
}

/// Every address `cfg` binds or sends to, for the loopback-only check.
pub fn addresses_of(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for ch in &cfg.udp_send {
        match &ch.target {
            SendTarget::Unicast(h) => out.push(h.clone()),
            SendTarget::Multicast(ip) => out.push(ip.to_string()),
        }
        out.push(ch.bind.clone().unwrap_or_else(|| "0.0.0.0".into()));
    }
    for ch in &cfg.udp_recv {
        out.push(ch.bind.clone().unwrap_or_else(|| "0.0.0.0".into()));
        if let Some(g) = ch.mcast_join {
            out.push(g.to_string());
        }
    }
    for ch in &cfg.tcp_accept {
        out.push(ch.bind.clone().unwrap_or_else(|| "0.0.0.0".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            cluster: "demo".into(),
            hosts: 4,
            port: 8649,
            cleanup: Duration::from_secs(5),
        }
    }

    #[test]
    fn every_address_is_loopback_and_unicast() {
        let base = gmond_conf::builtin_config().unwrap().config;
        for i in 0..4 {
            let cfg = host_config(&base, &layout(), i, "hvx");
            let addrs = addresses_of(&cfg);
            assert!(!addrs.is_empty());
            for a in addrs {
                let ip: Ipv4Addr = a.parse().unwrap();
                assert!(ip.is_loopback() && !ip.is_multicast(), "{a}");
            }
            assert_eq!(cfg.udp_send.len(), 4);
            assert_eq!(cfg.tcp_accept.len(), if i == 0 { 2 } else { 1 });
            assert_eq!(
                cfg.globals.override_ip.as_deref(),
                Some(&*host_addr(i).to_string())
            );
        }
        // The built-in config multicasts: the demo must have replaced all of it.
        assert!(addresses_of(&base).iter().any(|a| a.starts_with("239.")));
    }

    #[test]
    fn addresses_are_distinct_and_ports_fall_back() {
        assert_eq!(host_addr(0), Ipv4Addr::new(127, 0, 0, 11));
        assert_eq!(host_addr(MAX_HOSTS - 1), Ipv4Addr::new(127, 0, 0, 42));
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = taken.local_addr().unwrap().port();
        assert!(!port_free(p, &[FEED_ADDR]));
        let got = choose_port(p, 2).unwrap();
        assert!(got > p && got < p.saturating_add(PORT_TRIES));
        assert!(!port_free(0, &[FEED_ADDR]));
    }
}
