//! The daemon's sockets, all opened before anything runs so that a bad channel stops
//! start-up: UDP send channels (with where each sends), receive channels, XML listeners.

use super::Error;
use crate::iostats::IoStats;
use ganglia_wire::auth::{Signer, TRAILER_LEN};
use gmond_conf::{Acl, Config, QueryChannel, SendTarget, TcpAcceptChannel, UdpRecvChannel};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every socket a daemon uses.
pub(super) struct Sockets {
    pub outbound: Arc<Outbound>,
    /// Receive socket, its ACL and the thread's name.
    pub receivers: Vec<(UdpSocket, Option<Acl>, String)>,
    pub listeners: Vec<(std::net::TcpListener, TcpAcceptChannel)>,
    /// gmond-rs.conf's query channels.
    pub queries: Vec<(std::net::TcpListener, QueryChannel)>,
}

impl Sockets {
    /// Opens the channels of `cfg` that apply (none to send on when mute, none to receive on
    /// when deaf; sFlow ports are not ours).
    pub fn open(
        cfg: &Config,
        query: &[QueryChannel],
        stats: Arc<IoStats>,
        auth: Option<&crate::auth::AuthOptions>,
    ) -> Result<Sockets, Error> {
        let channels = if cfg.effective_mute() {
            Vec::new()
        } else {
            cfg.udp_send
                .iter()
                .enumerate()
                .map(|(i, ch)| send_socket(i, ch))
                .collect::<Result<_, _>>()?
        };
        let deaf = cfg.globals.deaf;
        let receivers = if deaf {
            Vec::new()
        } else {
            cfg.udp_recv
                .iter()
                .enumerate()
                .filter(|(_, ch)| !cfg.is_sflow_channel(ch))
                .map(|(i, ch)| {
                    let name = format!("udp_recv_channel#{i}");
                    recv_socket(i, ch).map(|s| (s, ch.acl.clone(), name))
                })
                .collect::<Result<_, _>>()?
        };
        let listeners = if deaf {
            Vec::new()
        } else {
            cfg.tcp_accept
                .iter()
                .enumerate()
                .map(|(i, ch)| {
                    let label = format!("tcp_accept_channel#{i}");
                    tcp_listener(&label, ch.bind.as_deref(), ch.port).map(|l| (l, ch.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        // A deaf daemon has nothing to answer queries with, as it has no XML port.
        let queries = if deaf {
            Vec::new()
        } else {
            query
                .iter()
                .enumerate()
                .map(|(i, ch)| {
                    let label = format!("query_channel#{i} ({})", ch.location);
                    tcp_listener(&label, Some(&ch.bind), ch.port).map(|l| (l, ch.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        let signer = auth.map(|a| a.signer()).transpose()?.map(Mutex::new);
        Ok(Sockets {
            outbound: Arc::new(Outbound {
                channels,
                stats,
                signer,
            }),
            receivers,
            listeners,
            queries,
        })
    }
}

/// Where this host's datagrams go: every send channel gets every datagram, signed when the
/// daemon has a key (`--auth`).
pub(super) struct Outbound {
    pub channels: Vec<(UdpSocket, SocketAddr)>,
    stats: Arc<IoStats>,
    /// One sender id for the whole process: every thread's datagrams take the next sequence
    /// number under this lock (held for the HMAC only, not the sends).
    signer: Option<Mutex<Signer>>,
}

impl Outbound {
    pub fn send(&self, datagram: &[u8]) {
        let signed;
        let datagram = match &self.signer {
            None => datagram,
            Some(signer) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut out = Vec::with_capacity(datagram.len() + TRAILER_LEN);
                signer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .sign(datagram, now, &mut out);
                signed = out;
                &signed
            }
        };
        for (sock, to) in &self.channels {
            match sock.send_to(datagram, to) {
                Ok(_) => {
                    self.stats
                        .datagrams_sent_total
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.send_errors_total.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(to = %to, error = %e, "send failed");
                }
            }
        }
    }
}

fn socket_err(channel: String, what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Socket {
        channel,
        what,
        source,
    }
}

/// An interface's index, for multicast joins by interface name.
fn ifindex(name: &str) -> Result<u32, std::io::Error> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad ifindex for {name}")))
}

fn send_socket(
    i: usize,
    ch: &gmond_conf::UdpSendChannel,
) -> Result<(UdpSocket, SocketAddr), Error> {
    let label = format!("udp_send_channel#{i}");
    let to: SocketAddr = match &ch.target {
        SendTarget::Multicast(ip) => SocketAddr::new(*ip, ch.port),
        SendTarget::Unicast(host) => (host.as_str(), ch.port)
            .to_socket_addrs()
            .map_err(socket_err(label.clone(), "resolve host"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| Error::Config(format!("{label}: {host} has no IPv4 address")))?,
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err(label.clone(), "socket"))?;
    if let Some(bind) = &ch.bind {
        let ip: Ipv4Addr = bind
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {bind:?} is not an IPv4 address")))?;
        sock.bind(&SockAddr::from(SocketAddrV4::new(ip, 0)))
            .map_err(socket_err(label.clone(), "bind"))?;
    }
    if to.ip().is_multicast() {
        sock.set_multicast_ttl_v4(u32::from(ch.ttl))
            .map_err(socket_err(label.clone(), "multicast ttl"))?;
        if let Some(ifname) = &ch.mcast_if {
            sock.bind_device(Some(ifname.as_bytes()))
                .map_err(socket_err(label.clone(), "mcast_if"))?;
        }
    } else {
        sock.set_ttl(u32::from(ch.ttl).max(1))
            .map_err(socket_err(label.clone(), "ttl"))?;
    }
    Ok((sock.into(), to))
}

fn recv_socket(i: usize, ch: &UdpRecvChannel) -> Result<UdpSocket, Error> {
    let label = format!("udp_recv_channel#{i}");
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(socket_err(label.clone(), "socket"))?;
    sock.set_reuse_address(true)
        .map_err(socket_err(label.clone(), "SO_REUSEADDR"))?;
    if let Some(bytes) = ch.buffer {
        sock.set_recv_buffer_size(bytes as usize)
            .map_err(socket_err(label.clone(), "SO_RCVBUF"))?;
    }
    let bind_ip: Ipv4Addr = match &ch.bind {
        Some(b) => b
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {b:?} is not an IPv4 address")))?,
        None => Ipv4Addr::UNSPECIFIED,
    };
    sock.bind(&SockAddr::from(SocketAddrV4::new(bind_ip, ch.port)))
        .map_err(socket_err(label.clone(), "bind"))?;
    if let Some(IpAddr::V4(group)) = ch.mcast_join {
        let iface = match &ch.mcast_if {
            Some(name) => socket2::InterfaceIndexOrAddress::Index(
                ifindex(name).map_err(socket_err(label.clone(), "mcast_if"))?,
            ),
            None => socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
        };
        sock.join_multicast_v4_n(&group, &iface)
            .map_err(socket_err(label.clone(), "multicast join"))?;
    }
    Ok(sock.into())
}

fn tcp_listener(
    label: &str,
    bind: Option<&str>,
    port: u16,
) -> Result<std::net::TcpListener, Error> {
    let label = label.to_string();
    let ip: Ipv4Addr = match bind {
        Some(b) => b
            .parse()
            .map_err(|_| Error::Config(format!("{label}: bind {b:?} is not an IPv4 address")))?,
        None => Ipv4Addr::UNSPECIFIED,
    };
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(socket_err(label.clone(), "socket"))?;
    sock.set_reuse_address(true)
        .map_err(socket_err(label.clone(), "SO_REUSEADDR"))?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(ip, port)))
        .map_err(socket_err(label.clone(), "bind"))?;
    sock.listen(128)
        .map_err(socket_err(label.clone(), "listen"))?;
    sock.set_nonblocking(true)
        .map_err(socket_err(label, "nonblocking"))?;
    Ok(sock.into())
}
