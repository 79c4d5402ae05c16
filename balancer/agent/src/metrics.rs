//! The agent's own metrics (group "balancer", on this host's HOST) and their encoding as Ganglia
//! metric datagrams (metadata + value, as gmetric sends them), plus where datagrams go: any
//! [`MetricSink`] (UDP send channels in the binary, a callback in the demo).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;

use ganglia_wire::{
    encode, encode_bounded, Extra, Message, Metadata, MetricId, Slope, Value, ValueMsg,
};

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

/// A published value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricVal {
    /// uint8 (sent as an unsigned short, as gmetric does).
    U8(u8),
    /// uint32.
    U32(u32),
    /// float.
    F32(f32),
    /// string.
    Str(String),
}

/// One metric definition plus value.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedMetric {
    /// Metric name.
    pub name: &'static str,
    /// Value.
    pub value: MetricVal,
    /// Units.
    pub units: &'static str,
    /// Slope name.
    pub slope: &'static str,
    /// TITLE extra.
    pub title: &'static str,
    /// DESC extra.
    pub desc: &'static str,
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
    /// The metrics with their metadata, in [`NAMES`] order.
    pub fn published(&self) -> Vec<PublishedMetric> {
        let p = |name, value, units, slope, title, desc| PublishedMetric {
            name,
            value,
            units,
            slope,
            title,
            desc,
        };
        vec![
            p(
                NAMES[0],
                MetricVal::U8(u8::from(self.leader)),
                "",
                "both",
                "Balancer leader",
                "1 while this host's balancer executes plans for the cluster",
            ),
            p(
                NAMES[1],
                MetricVal::Str(self.mode.clone()),
                "",
                "zero",
                "Balancer mode",
                "off, recommend (dry run) or auto",
            ),
            p(
                NAMES[2],
                MetricVal::U32(self.migrations_done),
                "migrations",
                "positive",
                "Migrations done",
                "Live migrations finished and verified by this host's balancer",
            ),
            p(
                NAMES[3],
                MetricVal::U32(self.migrations_failed),
                "migrations",
                "positive",
                "Migrations failed",
                "Live migrations that failed or were aborted",
            ),
            p(
                NAMES[4],
                MetricVal::U32(self.last_decision),
                "s",
                "both",
                "Last balancer decision",
                "Epoch seconds of the last plan made as leader",
            ),
            p(
                NAMES[5],
                MetricVal::F32(self.imbalance),
                "",
                "both",
                "Cluster imbalance",
                "Standard deviation of host CPU utilisation",
            ),
            p(
                NAMES[6],
                MetricVal::U32(self.inflight),
                "migrations",
                "both",
                "Migrations in flight",
                "Live migrations this host's balancer is running",
            ),
            p(
                NAMES[7],
                MetricVal::Str(self.leader_name.clone()),
                "",
                "zero",
                "Balancer leader name",
                "The host this balancer sees as leader",
            ),
            p(
                NAMES[8],
                MetricVal::U32(self.planned),
                "moves",
                "both",
                "Moves planned",
                "Moves in the last plan (recommend mode: what auto would do)",
            ),
            p(
                NAMES[9],
                MetricVal::Str(self.recent_moves.clone()),
                "",
                "zero",
                "Recent moves",
                "start:from>to:vm of recent migrations started by this balancer",
            ),
        ]
    }
}

/// Who the datagrams speak for: gmond's identity rule, shared with gmond-rs.
pub use ganglia_wire::Identity;

/// gmond encodes metadata into a 1464-byte buffer.
const METADATA_BUFFER: usize = 1464;

/// Encodes `metrics` as datagrams: each metric's metadata (when `with_metadata`) then its value.
/// Values that do not fit `max_len` are left out (logged).
pub fn encode_datagrams(
    id: &Identity,
    metrics: &[PublishedMetric],
    tmax: u32,
    dmax: u32,
    with_metadata: bool,
    max_len: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(metrics.len() * 2);
    for m in metrics {
        let mid = MetricId {
            host: id.host.as_bytes(),
            name: m.name.as_bytes(),
            spoof: id.spoof,
        };
        let (ty, fmt, value) = match &m.value {
            MetricVal::U8(v) => ("uint8", "%hu", Value::UShort(u16::from(*v))),
            MetricVal::U32(v) => ("uint32", "%u", Value::UInt(*v)),
            MetricVal::F32(v) => ("float", "%.3f", Value::Float(*v)),
            MetricVal::Str(s) => ("string", "%s", Value::Str(s.as_bytes())),
        };
        if with_metadata {
            let mut extra =
                Extra::gmond_standard(m.title.as_bytes(), m.desc.as_bytes(), GROUP.as_bytes());
            if id.spoof {
                extra.push(Extra {
                    name: b"SPOOF_HOST",
                    data: id.host.as_bytes(),
                });
            }
            let md = Message::Metadata(Metadata {
                id: mid,
                metric_type: ty.as_bytes(),
                name: m.name.as_bytes(),
                units: m.units.as_bytes(),
                slope: Slope::from_name(m.slope),
                tmax,
                dmax,
                extra,
            });
            match encode_bounded(&md, METADATA_BUFFER.min(max_len)) {
                Ok(b) => out.push(b),
                Err(e) => tracing::warn!(metric = m.name, error = %e, "metadata not sent"),
            }
        }
        let v = Message::Value(ValueMsg {
            id: mid,
            fmt: fmt.as_bytes(),
            value,
        });
        if ganglia_wire::encoded_len(&v) > max_len {
            tracing::warn!(
                metric = m.name,
                "value does not fit max_udp_msg_len; not sent"
            );
            continue;
        }
        let mut b = Vec::with_capacity(96);
        encode(&v, &mut b);
        out.push(b);
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

/// UDP to every send channel: one socket per channel, set up as gmond sets up its own.
#[derive(Debug)]
pub struct UdpSink {
    sockets: Vec<(UdpSocket, SocketAddr)>,
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
            send_errors_total: 0,
        })
    }
}

impl MetricSink for UdpSink {
    fn send(&mut self, datagram: &[u8]) {
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
    use ganglia_wire::decode;

    #[test]
    fn metrics_encode_as_metadata_then_value() {
        let m = AgentMetrics {
            leader: true,
            mode: "auto".into(),
            imbalance: 0.25,
            ..Default::default()
        };
        let pubs = m.published();
        let names: Vec<&str> = pubs.iter().map(|p| p.name).collect();
        assert_eq!(names, NAMES);
        let id = Identity::new("hv1", None, None);
        let d = encode_datagrams(&id, &pubs, 60, 3600, true, 1472);
        assert_eq!(d.len(), 2 * NAMES.len());
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
        let Message::Value(v) = decode(&d[3]).unwrap() else {
            panic!("value second")
        };
        assert_eq!(v.id.host, b"hv1");
        assert_eq!(v.value, Value::Str(b"auto"));
        let values_only = encode_datagrams(&id, &pubs, 60, 0, false, 1472);
        assert_eq!(values_only.len(), NAMES.len());
        let spoof = Identity::new("x", Some("hv9"), Some("10.0.0.9"));
        let d = encode_datagrams(&spoof, &pubs[..1], 60, 0, true, 1472);
        let Message::Metadata(md) = decode(&d[0]).unwrap() else {
            panic!()
        };
        assert_eq!((md.id.host, md.id.spoof), (&b"10.0.0.9:hv9"[..], true));
        // A value too long for the datagram limit is left out.
        let short = encode_datagrams(&id, &pubs, 60, 0, false, 52);
        assert!(
            !short.is_empty() && short.len() < NAMES.len(),
            "{}",
            short.len()
        );
        assert!(short.iter().all(|d| d.len() <= 52));
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
