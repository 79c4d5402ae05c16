//! The agent's own metrics (group "balancer", on this host's HOST): their descriptors and values,
//! encoded as metadata + value datagrams by `ganglia_wire`'s emitter; plus where datagrams go:
//! any [`MetricSink`] (UDP send channels in the binary, a callback in the demo).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;

use ganglia_wire::auth::{Signer, TRAILER_LEN};
use ganglia_wire::{Emitter, Extra, MetricDescriptor, MetricType, Slope, Value};

use crate::coord::{MODE_METRIC, MOVES_METRIC};

/// A snapshot of the agent's state as published.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentMetrics {
    /// 1 while this host leads.
    pub leader: bool,
    /// off | recommend | auto.
    pub mode: String,
    /// Migrations finished and verified since start.
    pub migrations_done: u32,
    /// Migrations failed or aborted since start.
    pub migrations_failed: u32,
    /// Epoch seconds of the last plan this host made as leader (0 = never).
    pub last_decision: u32,
    /// Population stddev of host CPU utilisation in the last view.
    pub imbalance: f32,
    /// Migrations this agent is running.
    pub inflight: u32,
    /// The leader this agent sees (empty = none).
    pub leader_name: String,
    /// Moves planned in the last round (recommend mode: what it would do).
    pub planned: u32,
    /// Recent moves started by this agent (`start:from>to:vm ...`).
    pub recent_moves: String,
}

/// GROUP extra of every agent metric.
pub const GROUP: &str = "balancer";

/// Names of the published metrics, in send order.
pub const NAMES: [&str; 10] = [
    "balancer_leader",
    MODE_METRIC,
    "balancer_migrations_done",
    "balancer_migrations_failed",
    "balancer_last_decision",
    "balancer_imbalance",
    "balancer_inflight",
    "balancer_leader_name",
    "balancer_planned",
    MOVES_METRIC,
];

impl AgentMetrics {
    /// The current values, in [`NAMES`] order and in the types [`descriptors`] announce.
    pub fn values(&self) -> [Value<'_>; 10] {
        [
            Value::UShort(u16::from(self.leader)),
            Value::Str(self.mode.as_bytes()),
            Value::UInt(self.migrations_done),
            Value::UInt(self.migrations_failed),
            Value::UInt(self.last_decision),
            Value::Float(self.imbalance),
            Value::UInt(self.inflight),
            Value::Str(self.leader_name.as_bytes()),
            Value::UInt(self.planned),
            Value::Str(self.recent_moves.as_bytes()),
        ]
    }
}

/// What each metric announces, in [`NAMES`] order. Extras are gmond's TITLE, DESC, GROUP,
/// then `spoof_host` (gmetric marks spoofed metrics with it; see
/// [`Identity::spoof_host_extra`]); tmax and dmax come from the agent's configuration.
pub fn descriptors(
    spoof_host: Option<Extra<'_>>,
    tmax: u32,
    dmax: u32,
) -> [MetricDescriptor<'_>; 10] {
    let d = |i: usize, metric_type, units, slope, title: &'static str, desc: &'static str| {
        let mut extra = Extra::gmond_standard(title.as_bytes(), desc.as_bytes(), GROUP.as_bytes());
        extra.extend(spoof_host);
        MetricDescriptor {
            name: NAMES[i],
            metric_type,
            format: format_of(metric_type),
            units,
            slope,
            tmax,
            dmax,
            extra,
        }
    };
    [
        d(
            0,
            MetricType::UInt8,
            "",
            Slope::BOTH,
            "Balancer leader",
            "1 while this host's balancer executes plans for the cluster",
        ),
        d(
            1,
            MetricType::String,
            "",
            Slope::ZERO,
            "Balancer mode",
            "off, recommend (dry run) or auto",
        ),
        d(
            2,
            MetricType::UInt32,
            "migrations",
            Slope::POSITIVE,
            "Migrations done",
            "Live migrations finished and verified by this host's balancer",
        ),
        d(
            3,
            MetricType::UInt32,
            "migrations",
            Slope::POSITIVE,
            "Migrations failed",
            "Live migrations that failed or were aborted",
        ),
        d(
            4,
            MetricType::UInt32,
            "s",
            Slope::BOTH,
            "Last balancer decision",
            "Epoch seconds of the last plan made as leader",
        ),
        d(
            5,
            MetricType::Float,
            "",
            Slope::BOTH,
            "Cluster imbalance",
            "Standard deviation of host CPU utilisation",
        ),
        d(
            6,
            MetricType::UInt32,
            "migrations",
            Slope::BOTH,
            "Migrations in flight",
            "Live migrations this host's balancer is running",
        ),
        d(
            7,
            MetricType::String,
            "",
            Slope::ZERO,
            "Balancer leader name",
            "The host this balancer sees as leader",
        ),
        d(
            8,
            MetricType::UInt32,
            "moves",
            Slope::BOTH,
            "Moves planned",
            "Moves in the last plan (recommend mode: what auto would do)",
        ),
        d(
            9,
            MetricType::String,
            "",
            Slope::ZERO,
            "Recent moves",
            "start:from>to:vm of recent migrations started by this balancer",
        ),
    ]
}

/// The printf format receivers print each kind of agent value with.
fn format_of(t: MetricType) -> &'static str {
    match t {
        MetricType::UInt8 => "%hu",
        MetricType::Float => "%.3f",
        MetricType::String => "%s",
        // uint32, the agent's only other type.
        _ => "%u",
    }
}

/// Who the datagrams speak for: gmond's identity rule, shared with gmond-rs.
pub use ganglia_wire::Identity;

/// Encodes `metrics` as datagrams: each metric's metadata (when `with_metadata`) then its
/// value. What does not fit (the emitter's rule, with `reserve` bytes kept free for a
/// signature) is left out and logged.
pub fn encode_datagrams(
    id: &Identity,
    metrics: &AgentMetrics,
    tmax: u32,
    dmax: u32,
    with_metadata: bool,
    max_udp_msg_len: usize,
    reserve: usize,
) -> Vec<Vec<u8>> {
    let emitter = Emitter::new(id.clone(), max_udp_msg_len).reserving(reserve);
    let mut out = Vec::with_capacity(2 * NAMES.len());
    let descriptors = descriptors(id.spoof_host_extra(), tmax, dmax);
    for (d, value) in descriptors.iter().zip(metrics.values()) {
        if with_metadata {
            let mut b = Vec::new();
            match emitter.metadata(d, &mut b) {
                Ok(_) => out.push(b),
                Err(e) => tracing::warn!(metric = d.name, error = %e, "metadata not sent"),
            }
        }
        let mut b = Vec::new();
        match emitter.value(d, value, &mut b) {
            Ok(_) => out.push(b),
            Err(e) => tracing::warn!(metric = d.name, error = %e, "value not sent"),
        }
    }
    out
}

/// Where the agent's datagrams go.
pub trait MetricSink: Send {
    /// Sends one datagram; failures are the sink's to log.
    fn send(&mut self, datagram: &[u8]);
}

/// Any closure is a sink (the demo feeds in-process daemons this way).
impl<F: FnMut(&[u8]) + Send> MetricSink for F {
    fn send(&mut self, datagram: &[u8]) {
        self(datagram)
    }
}

/// Collects datagrams in memory (tests).
#[derive(Debug, Default)]
pub struct MemorySink(pub Mutex<Vec<Vec<u8>>>);

impl MetricSink for &MemorySink {
    fn send(&mut self, datagram: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(datagram.to_vec());
    }
}

/// One UDP send channel (a gmond.conf `udp_send_channel`, resolved by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendChannel {
    /// Destination (multicast group or unicast address) and port.
    pub to: SocketAddr,
    /// Local IPv4 address to send from.
    pub bind: Option<std::net::Ipv4Addr>,
    /// Interface for multicast sends (SO_BINDTODEVICE), as gmond's `mcast_if`.
    pub mcast_if: Option<String>,
    /// TTL (multicast TTL for groups).
    pub ttl: u32,
}

/// UDP to every send channel: one socket per channel, set up as gmond sets up its own; with
/// a signer (gmond-rs's `--auth` key file), every datagram is signed first.
#[derive(Debug)]
pub struct UdpSink {
    sockets: Vec<(UdpSocket, SocketAddr)>,
    signer: Option<Signer>,
    /// Datagrams that could not be sent.
    pub send_errors_total: u64,
}

impl UdpSink {
    /// Opens a socket per channel; fails on the first channel that cannot be set up.
    pub fn new(channels: &[SendChannel]) -> std::io::Result<UdpSink> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let mut sockets = Vec::with_capacity(channels.len());
        for ch in channels {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            if let Some(ip) = ch.bind {
                s.bind(&SockAddr::from(std::net::SocketAddrV4::new(ip, 0)))?;
            }
            if ch.to.ip().is_multicast() {
                s.set_multicast_ttl_v4(ch.ttl)?;
                if let Some(dev) = &ch.mcast_if {
                    s.bind_device(Some(dev.as_bytes()))?;
                }
            } else {
                s.set_ttl(ch.ttl.max(1))?;
            }
            sockets.push((s.into(), ch.to));
        }
        Ok(UdpSink {
            sockets,
            signer: None,
            send_errors_total: 0,
        })
    }

    /// Signs every datagram with `signer` (the agent's metrics must then be encoded with
    /// [`ganglia_wire::auth::TRAILER_LEN`] reserved: `AgentOptions::reserve`).
    pub fn signing(self, signer: Signer) -> UdpSink {
        UdpSink {
            signer: Some(signer),
            ..self
        }
    }

    /// Switches to the signing key of a re-read key file (same sender id and sequence).
    pub fn rekey(&mut self, keys: &ganglia_wire::auth::KeyRing) {
        if let Some(s) = &mut self.signer {
            s.rekey(keys);
        }
    }
}

impl MetricSink for UdpSink {
    fn send(&mut self, datagram: &[u8]) {
        let signed;
        let datagram = match &mut self.signer {
            None => datagram,
            Some(signer) => {
                // The sink is the agent's I/O edge: it reads the wall clock for the trailer.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut out = Vec::with_capacity(datagram.len() + TRAILER_LEN);
                signer.sign(datagram, now, &mut out);
                signed = out;
                &signed
            }
        };
        for (sock, to) in &self.sockets {
            if let Err(e) = sock.send_to(datagram, to) {
                self.send_errors_total += 1;
                tracing::debug!(to = %to, error = %e, "metric datagram not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::{decode, Message};

    #[test]
    fn metrics_encode_as_metadata_then_value() {
        let m = AgentMetrics {
            leader: true,
            mode: "auto".into(),
            imbalance: 0.25,
            ..Default::default()
        };
        let id = Identity::new("hv1", None, None);
        let d = encode_datagrams(&id, &m, 60, 3600, true, 1472, 0);
        assert_eq!(d.len(), 2 * NAMES.len());
        let names: Vec<Vec<u8>> = d
            .iter()
            .step_by(2)
            .map(|b| decode(b).unwrap().metric_id().name.to_vec())
            .collect();
        assert_eq!(names, NAMES.map(|n| n.as_bytes().to_vec()));
        let Message::Metadata(md) = decode(&d[0]).unwrap() else {
            panic!("metadata first")
        };
        assert_eq!(
            (md.name, md.metric_type, md.tmax, md.dmax),
            (&b"balancer_leader"[..], &b"uint8"[..], 60, 3600)
        );
        assert!(md
            .extra
            .iter()
            .any(|e| e.name == b"GROUP" && e.data == b"balancer"));
        assert!(md.extra.iter().all(|e| e.name != b"SPOOF_HOST"));
        let Message::Value(v) = decode(&d[3]).unwrap() else {
            panic!("value second")
        };
        assert_eq!(v.id.host, b"hv1");
        assert_eq!(v.value, Value::Str(b"auto"));
        let values_only = encode_datagrams(&id, &m, 60, 0, false, 1472, 0);
        assert_eq!(values_only.len(), NAMES.len());
        let spoof = Identity::new("x", Some("hv9"), Some("10.0.0.9"));
        let d = encode_datagrams(&spoof, &m, 60, 0, true, 1472, 0);
        let Message::Metadata(md) = decode(&d[0]).unwrap() else {
            panic!()
        };
        assert_eq!((md.id.host, md.id.spoof), (&b"10.0.0.9:hv9"[..], true));
        // A value too long for the datagram limit is left out.
        let short = encode_datagrams(&id, &m, 60, 0, false, 52, 0);
        assert!(
            !short.is_empty() && short.len() < NAMES.len(),
            "{}",
            short.len()
        );
        assert!(short.iter().all(|d| d.len() <= 52));
    }
}

#[cfg(test)]
mod byte_tests {
    use super::*;

    /// The agent's datagrams are the emitter's for these descriptors: gmetric-style extras
    /// (TITLE, DESC, GROUP, then SPOOF_HOST when spoofing), one TYPE and format per value kind.
    #[test]
    fn datagrams_are_the_emitters_for_the_balancer_metrics() {
        let m = AgentMetrics {
            leader: true,
            mode: "auto".into(),
            migrations_done: 3,
            migrations_failed: 1,
            last_decision: 1_700_000_000,
            imbalance: 0.25,
            inflight: 2,
            leader_name: "hv9".into(),
            planned: 4,
            recent_moves: "100:hv9>hv2:web1".into(),
        };
        let id = Identity::new("x", Some("hv9"), Some("10.0.0.9"));
        let got = encode_datagrams(&id, &m, 60, 3600, true, 1472, 0);
        let d =
            |name, metric_type, format, units, slope, title: &'static str, desc: &'static str| {
                MetricDescriptor {
                    name,
                    metric_type,
                    format,
                    units,
                    slope,
                    tmax: 60,
                    dmax: 3600,
                    extra: vec![
                        Extra {
                            name: b"TITLE",
                            data: title.as_bytes(),
                        },
                        Extra {
                            name: b"DESC",
                            data: desc.as_bytes(),
                        },
                        Extra {
                            name: b"GROUP",
                            data: b"balancer",
                        },
                        Extra {
                            name: b"SPOOF_HOST",
                            data: b"10.0.0.9:hv9",
                        },
                    ],
                }
            };
        let want = [
            (
                d(
                    "balancer_leader",
                    MetricType::UInt8,
                    "%hu",
                    "",
                    Slope::BOTH,
                    "Balancer leader",
                    "1 while this host's balancer executes plans for the cluster",
                ),
                Value::UShort(1),
            ),
            (
                d(
                    "balancer_mode",
                    MetricType::String,
                    "%s",
                    "",
                    Slope::ZERO,
                    "Balancer mode",
                    "off, recommend (dry run) or auto",
                ),
                Value::Str(b"auto"),
            ),
            (
                d(
                    "balancer_migrations_done",
                    MetricType::UInt32,
                    "%u",
                    "migrations",
                    Slope::POSITIVE,
                    "Migrations done",
                    "Live migrations finished and verified by this host's balancer",
                ),
                Value::UInt(3),
            ),
            (
                d(
                    "balancer_migrations_failed",
                    MetricType::UInt32,
                    "%u",
                    "migrations",
                    Slope::POSITIVE,
                    "Migrations failed",
                    "Live migrations that failed or were aborted",
                ),
                Value::UInt(1),
            ),
            (
                d(
                    "balancer_last_decision",
                    MetricType::UInt32,
                    "%u",
                    "s",
                    Slope::BOTH,
                    "Last balancer decision",
                    "Epoch seconds of the last plan made as leader",
                ),
                Value::UInt(1_700_000_000),
            ),
            (
                d(
                    "balancer_imbalance",
                    MetricType::Float,
                    "%.3f",
                    "",
                    Slope::BOTH,
                    "Cluster imbalance",
                    "Standard deviation of host CPU utilisation",
                ),
                Value::Float(0.25),
            ),
            (
                d(
                    "balancer_inflight",
                    MetricType::UInt32,
                    "%u",
                    "migrations",
                    Slope::BOTH,
                    "Migrations in flight",
                    "Live migrations this host's balancer is running",
                ),
                Value::UInt(2),
            ),
            (
                d(
                    "balancer_leader_name",
                    MetricType::String,
                    "%s",
                    "",
                    Slope::ZERO,
                    "Balancer leader name",
                    "The host this balancer sees as leader",
                ),
                Value::Str(b"hv9"),
            ),
            (
                d(
                    "balancer_planned",
                    MetricType::UInt32,
                    "%u",
                    "moves",
                    Slope::BOTH,
                    "Moves planned",
                    "Moves in the last plan (recommend mode: what auto would do)",
                ),
                Value::UInt(4),
            ),
            (
                d(
                    "balancer_recent_moves",
                    MetricType::String,
                    "%s",
                    "",
                    Slope::ZERO,
                    "Recent moves",
                    "start:from>to:vm of recent migrations started by this balancer",
                ),
                Value::Str(b"100:hv9>hv2:web1"),
            ),
        ];
        let e = Emitter::new(id, 1472);
        let mut expected = Vec::new();
        for (d, v) in want {
            let (mut md, mut val) = (Vec::new(), Vec::new());
            e.metadata(&d, &mut md).unwrap();
            e.value(&d, v, &mut val).unwrap();
            expected.extend([md, val]);
        }
        assert_eq!(got, expected);
    }
}

#[cfg(test)]
mod udp_tests {
    use super::*;

    #[test]
    fn udp_sink_sends_to_every_channel() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ch = |s: &UdpSocket| SendChannel {
            to: s.local_addr().unwrap(),
            bind: Some(std::net::Ipv4Addr::LOCALHOST),
            mcast_if: None,
            ttl: 1,
        };
        let mut sink = UdpSink::new(&[ch(&a), ch(&b)]).unwrap();
        sink.send(b"hello");
        let mut buf = [0u8; 16];
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from.ip(), std::net::Ipv4Addr::LOCALHOST);
        }
        assert_eq!(sink.send_errors_total, 0);
    }
}
