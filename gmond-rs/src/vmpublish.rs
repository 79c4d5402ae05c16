//! Sending the per-VM metrics of this hypervisor (`gmond_metrics::vmetrics`) on this host's
//! channels, as gmond sends its own: metadata before a metric's first value, again when a peer
//! asks for it, and at least every `resend` so receivers never expire it (its dmax is 600 s and
//! counts from the last metadata, reference §B.5).

use crate::sender::{wire_type, wire_value, Identity};
use crate::store::Timestamp;
use ganglia_wire::{Emitter, Extra, MetricDescriptor, Slope};
use gmond_metrics::vmetrics::VmMetric;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Encoder of VM metric rounds, remembering when each name's metadata last went out.
#[derive(Debug)]
pub struct VmPublisher {
    emitter: Emitter,
    resend: Duration,
    metadata_at: BTreeMap<String, Timestamp>,
    requested: BTreeSet<Vec<u8>>,
}

impl VmPublisher {
    pub fn new(id: Identity, resend: Duration, max_udp_msg_len: usize) -> Self {
        VmPublisher {
            emitter: Emitter::new(id, max_udp_msg_len),
            resend,
            metadata_at: BTreeMap::new(),
            requested: BTreeSet::new(),
        }
    }

    /// Leaves `bytes` of every datagram's size limit free (a signature trailer).
    pub fn reserving(mut self, bytes: usize) -> Self {
        self.emitter = self.emitter.reserving(bytes);
        self
    }

    /// A peer asked for the metadata of `name`: it goes out with the next round. Only names
    /// this publisher sends are kept (anyone may ask for anything: a flood of requests for
    /// distinct names must not grow this set), and at most until that round.
    pub fn metadata_requested(&mut self, name: &[u8]) {
        let ours = std::str::from_utf8(name).is_ok_and(|n| self.metadata_at.contains_key(n));
        if ours {
            self.requested.insert(name.to_vec());
        }
    }

    /// The datagrams for one collection round, in order (per metric: metadata if due, value).
    /// Names no longer published are forgotten, so a VM that comes back gets metadata again.
    pub fn encode_round(&mut self, now: Timestamp, metrics: &[VmMetric]) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(metrics.len() * 2);
        let current: BTreeSet<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        self.metadata_at.retain(|n, _| current.contains(n.as_str()));
        for m in metrics {
            let due = self.requested.remove(m.name.as_bytes())
                || self
                    .metadata_at
                    .get(&m.name)
                    .is_none_or(|at| now.saturating_since(*at) >= self.resend);
            let d = descriptor(m);
            if due {
                let mut b = Vec::new();
                match self.emitter.metadata(&d, &mut b) {
                    Ok(_) => {
                        out.push(b);
                        self.metadata_at.insert(m.name.clone(), now);
                    }
                    Err(e) => tracing::warn!(metric = %m.name, error = %e, "VM metadata not sent"),
                }
            }
            let mut b = Vec::new();
            match self.emitter.value(&d, wire_value(&m.value), &mut b) {
                Ok(_) => out.push(b),
                Err(e) => tracing::warn!(metric = %m.name, error = %e, "VM value not sent"),
            }
        }
        self.requested.clear();
        out
    }
}

/// What a VM metric announces: gmond's own extras (TITLE, DESC, GROUP), then the module's.
fn descriptor(m: &VmMetric) -> MetricDescriptor<'_> {
    let mut extra =
        Extra::gmond_standard(m.title.as_bytes(), m.desc.as_bytes(), m.group.as_bytes());
    extra.extend(m.extras.iter().map(|(k, v)| Extra {
        name: k.as_bytes(),
        data: v.as_bytes(),
    }));
    MetricDescriptor {
        name: &m.name,
        metric_type: wire_type(m.value_type()),
        format: m.format,
        units: m.units,
        slope: Slope::from_name(m.slope),
        tmax: m.tmax,
        dmax: m.dmax,
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::{decode, Message};
    use gmond_metrics::linux::MetricValue;

    fn metric(name: &str, v: f32) -> VmMetric {
        VmMetric {
            name: name.into(),
            value: MetricValue::F32(v),
            format: "%.1f",
            units: "%",
            slope: "both",
            tmax: 60,
            dmax: 600,
            group: "vm cpu",
            desc: "VM CPU utilization",
            title: "web1: CPU utilization".into(),
            extras: vec![("VM_UUID", "00000000-0000-0000-0000-000000000001".into())],
        }
    }

    fn ids(d: &[Vec<u8>]) -> Vec<u32> {
        d.iter().map(|b| decode(b).unwrap().message_id()).collect()
    }

    /// The bytes are the emitter's for the descriptor below: what a VM metric announces.
    #[test]
    fn datagrams_are_the_emitters_for_the_vm_metric() {
        let id = Identity::new("x", Some("hv1"), Some("10.0.0.1"));
        let mut p = VmPublisher::new(id.clone(), Duration::from_secs(120), 1472);
        let out = p.encode_round(
            Timestamp::from_secs(1000),
            &[metric("web1.vcpu_util", 12.5)],
        );
        let d = MetricDescriptor {
            name: "web1.vcpu_util",
            metric_type: ganglia_wire::MetricType::Float,
            format: "%.1f",
            units: "%",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 600,
            extra: vec![
                Extra {
                    name: b"TITLE",
                    data: b"web1: CPU utilization",
                },
                Extra {
                    name: b"DESC",
                    data: b"VM CPU utilization",
                },
                Extra {
                    name: b"GROUP",
                    data: b"vm cpu",
                },
                Extra {
                    name: b"VM_UUID",
                    data: b"00000000-0000-0000-0000-000000000001",
                },
            ],
        };
        let e = Emitter::new(id, 1472);
        let (mut md, mut v) = (Vec::new(), Vec::new());
        e.metadata(&d, &mut md).unwrap();
        e.value(&d, ganglia_wire::Value::Float(12.5), &mut v)
            .unwrap();
        assert_eq!(out, [md, v]);
    }

    #[test]
    fn requests_for_names_we_do_not_send_are_not_remembered() {
        let mut p = VmPublisher::new(
            Identity::new("hv1", None, None),
            Duration::from_secs(120),
            1472,
        );
        let m = metric("web1.vcpu_util", 1.0);
        p.encode_round(Timestamp::from_secs(0), std::slice::from_ref(&m));
        for i in 0..10_000 {
            p.metadata_requested(format!("flood_{i}").as_bytes());
        }
        assert!(p.requested.is_empty());
        p.metadata_requested(b"web1.vcpu_util");
        assert_eq!(p.requested.len(), 1);
        // Answered with the next round, then forgotten.
        let out = p.encode_round(Timestamp::from_secs(10), std::slice::from_ref(&m));
        assert_eq!(out.len(), 2, "metadata and value");
        assert!(p.requested.is_empty());
    }

    #[test]
    fn metadata_first_then_only_when_due_or_requested() {
        let mut p = VmPublisher::new(
            Identity::new("hv1", None, None),
            Duration::from_secs(120),
            1472,
        );
        let t = |s| Timestamp::from_secs(s);
        let ms = [metric("web1.vcpu_util", 12.5)];
        let out = p.encode_round(t(1000), &ms);
        assert_eq!(ids(&out), [128, 134]);
        let Message::Metadata(md) = decode(&out[0]).unwrap() else {
            panic!()
        };
        assert_eq!((md.dmax, md.tmax, md.metric_type), (600, 60, &b"float"[..]));
        let keys: Vec<&[u8]> = md.extra.iter().map(|e| e.name).collect();
        assert_eq!(keys, [&b"TITLE"[..], b"DESC", b"GROUP", b"VM_UUID"]);
        assert_eq!(ids(&p.encode_round(t(1020), &ms)), [134]);
        p.metadata_requested(b"web1.vcpu_util");
        assert_eq!(ids(&p.encode_round(t(1040), &ms)), [128, 134]);
        assert_eq!(ids(&p.encode_round(t(1060), &ms)), [134]);
        // Re-sent before receivers' dmax (600 s) could expire it.
        assert_eq!(ids(&p.encode_round(t(1160), &ms)), [128, 134]);
        // A VM that went away and came back gets its metadata again.
        assert!(p.encode_round(t(1180), &[]).is_empty());
        assert_eq!(ids(&p.encode_round(t(1200), &ms)), [128, 134]);
    }
}
