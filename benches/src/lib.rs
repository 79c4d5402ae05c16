//! Shared helpers for the benchmark harnesses.

use ganglia_wire::xdr::DEFAULT_MAX_UDP_MSG_LEN;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope};

/// The load harness's emitter for spoofed host `h`: its own HOST ("IP:name") although every
/// datagram comes from one socket.
pub fn harness_emitter(h: usize) -> Emitter {
    let ip = format!("10.{}.{}.{}", (h >> 16) & 255, (h >> 8) & 255, h & 255);
    let id = Identity::new("", Some(&format!("h{h}")), Some(&ip));
    Emitter::new(id, DEFAULT_MAX_UDP_MSG_LEN)
}

/// The load harness's metric `name`: a uint with what gmond attaches to each of its own
/// metrics (reference §A.4), so memory per metric is measured with realistic metadata.
pub fn harness_descriptor(name: &str) -> MetricDescriptor<'_> {
    MetricDescriptor {
        name,
        metric_type: MetricType::UInt32,
        format: "%u",
        units: "",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: Extra::gmond_standard(
            name.as_bytes(),
            b"A metric of the load harness, described as gmond describes its own",
            b"load",
        ),
    }
}
