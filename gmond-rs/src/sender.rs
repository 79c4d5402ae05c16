//! The sending half of gmond: collection groups scheduled with time as input, and this host's
//! own metrics encoded as metadata + value datagrams (reference §A.4) by `ganglia_wire`'s
//! emitter, from a descriptor built out of each metric's catalogue entry and configured title.
//!
//! Rules copied from gmond 3.7.2: every group is collected and sent at start-up; a group is
//! collected every `collect_every` and sent when any numeric metric moved by at least its
//! `value_threshold` since it was last sent, or when `time_threshold` passed since the group's
//! last send; `collect_once` groups are collected once and re-sent every `time_threshold`;
//! a metric's metadata goes out before its first value, after a metadata request for its name
//! (which also forces its group to send at its next collection), and every
//! `send_metadata_interval` when that is set.

use ganglia_wire::{Emitter, Extra, MetricDescriptor, MetricType, Slope, Value};
use gmond_metrics::linux::{MetricSpec, MetricValue, ValueType};
use std::time::Duration;

use crate::store::Timestamp;

/// Who this host says it is in every metric_id (shared with the VM and balancer metrics).
pub use ganglia_wire::Identity;

/// One collection group with its own metrics (indexes into `Sender::metrics`).
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub collect_once: bool,
    pub collect_every: Duration,
    pub time_threshold: Duration,
    pub metrics: Vec<MetricPlan>,
}

/// A metric of a group: its catalogue entry and the group's settings for it.
#[derive(Debug, Clone)]
pub struct MetricPlan {
    pub spec: &'static MetricSpec,
    /// TITLE extra (the config's `title`, else the catalogue's).
    pub title: String,
    pub value_threshold: Option<f64>,
}

#[derive(Debug)]
struct OwnMetric {
    plan: MetricPlan,
    value: Option<MetricValue>,
    last_sent: Option<MetricValue>,
    metadata_due: bool,
    metadata_sent_at: Option<Timestamp>,
}

#[derive(Debug)]
struct Group {
    collect_once: bool,
    collect_every: Duration,
    time_threshold: Duration,
    metrics: std::ops::Range<usize>,
    next_collect: Timestamp,
    last_sent: Option<Timestamp>,
    forced: bool,
}

/// The scheduler and encoder of this host's own metrics.
#[derive(Debug)]
pub struct Sender {
    emitter: Emitter,
    metrics: Vec<OwnMetric>,
    groups: Vec<Group>,
    send_metadata_interval: Option<Duration>,
}

impl Sender {
    pub fn new(
        id: Identity,
        groups: Vec<GroupPlan>,
        send_metadata_interval: Option<Duration>,
        max_udp_msg_len: usize,
        start: Timestamp,
    ) -> Self {
        let mut metrics = Vec::new();
        let mut gs = Vec::new();
        for g in groups {
            let first = metrics.len();
            metrics.extend(g.metrics.into_iter().map(|plan| OwnMetric {
                plan,
                value: None,
                last_sent: None,
                metadata_due: true,
                metadata_sent_at: None,
            }));
            gs.push(Group {
                collect_once: g.collect_once,
                collect_every: g.collect_every,
                time_threshold: g.time_threshold,
                metrics: first..metrics.len(),
                next_collect: start,
                last_sent: None,
                forced: false,
            });
        }
        Sender {
            emitter: Emitter::new(id, max_udp_msg_len),
            metrics,
            groups: gs,
            send_metadata_interval,
        }
    }

    /// Leaves `bytes` of every datagram's size limit free (a signature trailer).
    pub fn reserving(mut self, bytes: usize) -> Self {
        self.emitter = self.emitter.reserving(bytes);
        self
    }

    /// Names of every metric this host sends, in send order.
    pub fn metric_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.metrics.iter().map(|m| m.plan.spec.name)
    }

    /// A peer asked for the metadata of `name`: resend it with the metric's next send, and
    /// make its group send at its next collection (gmond ignores the request's host field).
    pub fn metadata_requested(&mut self, name: &[u8]) {
        for (gi, g) in self.groups.iter_mut().enumerate() {
            for m in &mut self.metrics[g.metrics.clone()] {
                if m.plan.spec.name.as_bytes() == name {
                    m.metadata_due = true;
                    g.forced = true;
                    tracing::debug!(metric = m.plan.spec.name, group = gi, "metadata requested");
                }
            }
        }
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.groups.iter().map(|g| g.next_collect).min()
    }

    /// Runs every group that is due: collects through `collect` and returns the datagrams to
    /// send, in gmond's order (per metric: metadata if due, then the value).
    pub fn poll(
        &mut self,
        now: Timestamp,
        collect: &mut dyn FnMut(&'static MetricSpec) -> Option<MetricValue>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for gi in 0..self.groups.len() {
            if self.groups[gi].next_collect > now {
                continue;
            }
            let send = self.collect_group(gi, now, collect);
            let g = &mut self.groups[gi];
            if send {
                g.last_sent = Some(now);
                g.forced = false;
                let range = g.metrics.clone();
                for mi in range {
                    self.send_metric(mi, now, &mut out);
                }
            }
            let g = &mut self.groups[gi];
            g.next_collect = if g.collect_once {
                now + g.time_threshold
            } else {
                now + g.collect_every
            };
        }
        out
    }

    /// Collects a due group; says whether it must be sent now.
    fn collect_group(
        &mut self,
        gi: usize,
        now: Timestamp,
        collect: &mut dyn FnMut(&'static MetricSpec) -> Option<MetricValue>,
    ) -> bool {
        let g = &self.groups[gi];
        let first_time = g.last_sent.is_none();
        let (forced, collect_once) = (g.forced, g.collect_once);
        let stale = g
            .last_sent
            .is_none_or(|t| now.saturating_since(t) >= g.time_threshold);
        let mut moved = false;
        for m in &mut self.metrics[g.metrics.clone()] {
            // collect_once groups keep their first reading and only re-send it.
            if collect_once && m.value.is_some() {
                continue;
            }
            match collect(m.plan.spec) {
                Some(v) => {
                    if let (Some(t), Some(new), Some(old)) = (
                        m.plan.value_threshold,
                        v.as_f64(),
                        m.last_sent.as_ref().and_then(MetricValue::as_f64),
                    ) {
                        if (new - old).abs() >= t {
                            moved = true;
                        }
                    }
                    m.value = Some(v);
                }
                None => tracing::debug!(metric = m.plan.spec.name, "collection failed"),
            }
        }
        first_time || forced || moved || stale
    }

    fn send_metric(&mut self, mi: usize, now: Timestamp, out: &mut Vec<Vec<u8>>) {
        let interval = self.send_metadata_interval;
        let m = &mut self.metrics[mi];
        let Some(value) = m.value.clone() else {
            return;
        };
        let resend = match (interval, m.metadata_sent_at) {
            (Some(i), Some(at)) => now.saturating_since(at) >= i,
            _ => false,
        };
        let d = m.plan.descriptor();
        if m.metadata_due || resend {
            let mut bytes = Vec::new();
            match self.emitter.metadata(&d, &mut bytes) {
                Ok(_) => {
                    out.push(bytes);
                    m.metadata_due = false;
                    m.metadata_sent_at = Some(now);
                }
                // Still due: a later send tries again (and warns again).
                Err(e) => tracing::warn!(metric = d.name, error = %e, "metadata not sent"),
            }
        }
        let mut bytes = Vec::new();
        match self.emitter.value(&d, wire_value(&value), &mut bytes) {
            Ok(_) => {
                out.push(bytes);
                m.last_sent = Some(value);
            }
            Err(e) => tracing::warn!(metric = d.name, error = %e, "value not sent"),
        }
    }
}

impl MetricPlan {
    /// What this metric's metadata says: its catalogue entry with the configured TITLE.
    pub fn descriptor(&self) -> MetricDescriptor<'_> {
        let spec = self.spec;
        MetricDescriptor {
            name: spec.name,
            metric_type: wire_type(spec.value_type),
            format: spec.format,
            units: spec.units,
            slope: Slope(spec.slope_number()),
            tmax: spec.tmax,
            dmax: spec.dmax,
            extra: Extra::gmond_standard(
                self.title.as_bytes(),
                spec.desc.as_bytes(),
                spec.group.as_bytes(),
            ),
        }
    }
}

/// The TYPE a collector's value type announces.
pub fn wire_type(t: ValueType) -> MetricType {
    match t {
        ValueType::U16 => MetricType::UInt16,
        ValueType::U32 => MetricType::UInt32,
        ValueType::F32 => MetricType::Float,
        ValueType::F64 => MetricType::Double,
        ValueType::Str => MetricType::String,
    }
}

/// A collected value as the XDR value message of its C type.
pub fn wire_value(v: &MetricValue) -> Value<'_> {
    match v {
        MetricValue::U16(x) => Value::UShort(*x),
        MetricValue::U32(x) => Value::UInt(*x),
        MetricValue::F32(x) => Value::Float(*x),
        MetricValue::F64(x) => Value::Double(*x),
        MetricValue::Str(s) => Value::Str(s.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::{decode, Message};
    use gmond_metrics::linux::lookup;

    fn plan(name: &str, threshold: Option<f64>) -> MetricPlan {
        let spec = lookup(name).unwrap();
        MetricPlan {
            spec,
            title: spec.title.to_owned(),
            value_threshold: threshold,
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs_f64(s as f64)
    }

    fn sender() -> Sender {
        Sender::new(
            Identity::new("node1", None, None),
            vec![
                GroupPlan {
                    collect_once: true,
                    collect_every: Duration::from_secs(20),
                    time_threshold: Duration::from_secs(20),
                    metrics: vec![plan("heartbeat", None)],
                },
                GroupPlan {
                    collect_once: false,
                    collect_every: Duration::from_secs(20),
                    time_threshold: Duration::from_secs(90),
                    metrics: vec![plan("cpu_user", Some(1.0)), plan("load_one", Some(1.0))],
                },
            ],
            None,
            1472,
            t(1000),
        )
    }

    /// Heartbeat as the core module gives it (uint32), everything else the float `v`.
    fn values(v: f32) -> impl FnMut(&'static MetricSpec) -> Option<MetricValue> {
        // The heartbeat reading changes with `v` too, to show collect_once keeps the first.
        move |spec| match spec.name {
            "heartbeat" => Some(MetricValue::U32((v * 1000.0) as u32)),
            _ => Some(MetricValue::F32(v)),
        }
    }

    fn names(d: &[Vec<u8>]) -> Vec<(u32, String)> {
        d.iter()
            .map(|b| {
                let m = decode(b).unwrap();
                (
                    m.message_id(),
                    String::from_utf8(m.metric_id().name.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn startup_sends_metadata_then_value_for_every_metric() {
        let mut s = sender();
        let mut collect = |spec: &'static MetricSpec| match spec.name {
            "heartbeat" => Some(MetricValue::U32(1000)),
            _ => Some(MetricValue::F32(1.5)),
        };
        let out = s.poll(t(1000), &mut collect);
        assert_eq!(
            names(&out),
            vec![
                (128, "heartbeat".into()),
                (132, "heartbeat".into()),
                (128, "cpu_user".into()),
                (134, "cpu_user".into()),
                (128, "load_one".into()),
                (134, "load_one".into()),
            ]
        );
        // The metadata is gmond's: TITLE, DESC, GROUP in that order.
        let Message::Metadata(md) = decode(&out[2]).unwrap() else {
            panic!()
        };
        let keys: Vec<&[u8]> = md.extra.iter().map(|e| e.name).collect();
        assert_eq!(keys, [&b"TITLE"[..], b"DESC", b"GROUP"]);
        assert_eq!(md.metric_type, b"float");
        assert_eq!(md.tmax, 90);
    }

    #[test]
    fn thresholds_decide_when_a_group_is_sent() {
        let mut s = sender();
        let out = s.poll(t(1000), &mut values(1.0));
        assert_eq!(out.len(), 6);
        // Heartbeat (collect_once, time_threshold 20) re-sends its first value every 20 s; the
        // cpu group moved by 0.5 < 1.0 and its time_threshold (90 s) has not passed.
        let out = s.poll(t(1020), &mut values(1.5));
        assert_eq!(names(&out), vec![(132, "heartbeat".into())]);
        let Message::Value(v) = decode(&out[0]).unwrap() else {
            panic!()
        };
        assert_eq!(v.value, Value::UInt(1000), "first reading kept");
        // A move of >= value_threshold since the last SENT value sends the group (values only).
        let out = s.poll(t(1040), &mut values(2.0));
        assert_eq!(
            names(&out),
            vec![
                (132, "heartbeat".into()),
                (134, "cpu_user".into()),
                (134, "load_one".into())
            ]
        );
        // Unchanged: nothing until 90 s after the last send (1040 + 90 = 1130, next tick 1140).
        for now in [1060, 1080, 1100, 1120] {
            let out = s.poll(t(now), &mut values(2.0));
            assert_eq!(names(&out), vec![(132, "heartbeat".into())], "at {now}");
        }
        let out = s.poll(t(1140), &mut values(2.0));
        assert!(names(&out).contains(&(134, "cpu_user".into())));
    }

    #[test]
    fn metadata_request_forces_resend_with_next_collection() {
        let mut s = sender();
        s.poll(t(1000), &mut values(1.0));
        s.metadata_requested(b"load_one");
        let out = s.poll(t(1020), &mut values(1.0));
        assert_eq!(
            names(&out),
            vec![
                (132, "heartbeat".into()),
                (134, "cpu_user".into()),
                (128, "load_one".into()),
                (134, "load_one".into())
            ]
        );
    }

    /// Real gmond 3.7.2's start-up datagrams on node1 (tests/fixtures/ganglia-3.7.2/bin/01-12):
    /// the same readings give the same bytes.
    #[test]
    fn startup_datagrams_are_real_gmonds_bytes() {
        let names = [
            "heartbeat",
            "cpu_num",
            "load_one",
            "disk_total",
            "os_name",
            "location",
        ];
        let mut s = Sender::new(
            Identity::new("node1", None, None),
            vec![GroupPlan {
                collect_once: false,
                collect_every: Duration::from_secs(20),
                time_threshold: Duration::from_secs(60),
                metrics: names.iter().map(|n| plan(n, None)).collect(),
            }],
            None,
            1472,
            t(1000),
        );
        let mut collect = |spec: &'static MetricSpec| match spec.name {
            "heartbeat" => Some(MetricValue::U32(1_795_313_226)),
            "cpu_num" => Some(MetricValue::U16(2)),
            "load_one" => Some(MetricValue::F32(0.92)),
            "disk_total" => Some(MetricValue::F64(270.553174016)),
            "os_name" => Some(MetricValue::Str("Linux".into())),
            "location" => Some(MetricValue::Str("unspecified".into())),
            _ => None,
        };
        let out = s.poll(t(1000), &mut collect);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/ganglia-3.7.2/bin");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f[..2].parse::<u32>().is_ok_and(|n| (1..=12).contains(&n)))
            .collect();
        files.sort();
        assert_eq!(out.len(), files.len());
        for (got, file) in out.iter().zip(&files) {
            assert_eq!(got, &std::fs::read(dir.join(file)).unwrap(), "{file}");
        }
    }

    #[test]
    fn override_hostname_spoofs() {
        let id = Identity::new("node1", Some("web"), Some("10.0.0.5"));
        assert_eq!((id.host.as_str(), id.spoof), ("10.0.0.5:web", true));
        let id = Identity::new("node1", Some("web"), None);
        assert_eq!(id.host, "web:web");
    }
}
