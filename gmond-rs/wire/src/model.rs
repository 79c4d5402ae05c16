//! Owned, decoded view of a Ganglia XML document (gmond's or gmetad's): what the XML reader
//! returns, and what tests, tools and the balancer consume.
//!
//! Numbers that gmond prints as integers are parsed; everything else stays text exactly as the
//! document had it (after XML unescaping), because VAL formatting belongs to the sender.

/// A whole `GANGLIA_XML` document. gmond serves one CLUSTER; gmetad may nest GRIDs, which the
/// reader flattens into `clusters`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// `GANGLIA_XML VERSION`, e.g. "3.7.2".
    pub version: String,
    /// `GANGLIA_XML SOURCE`: "gmond" or "gmetad".
    pub source: String,
    /// Every CLUSTER in document order.
    pub clusters: Vec<Cluster>,
}

/// One CLUSTER element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    pub name: String,
    /// Epoch seconds at which the document was written.
    pub localtime: u64,
    pub owner: String,
    pub latlong: String,
    pub url: String,
    pub hosts: Vec<Host>,
}

/// One HOST element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Host {
    pub name: String,
    pub ip: String,
    pub tags: String,
    /// Epoch seconds of the last message heard from the host.
    pub reported: u64,
    /// Seconds since the last message.
    pub tn: u64,
    pub tmax: u32,
    pub dmax: u32,
    pub location: String,
    /// The host's heartbeat (gmond's start time), printed by gmond as a signed 32-bit number:
    /// garbage heartbeats (gmetric -H) can be negative.
    pub gmond_started: i64,
    pub metrics: Vec<Metric>,
}

/// One METRIC element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metric {
    pub name: String,
    /// VAL as printed by the serving gmond (already formatted with the sender's printf format).
    pub val: String,
    /// TYPE: string, int8, uint8, int16, uint16, int32, uint32, float, double (free text on the wire).
    pub ty: String,
    pub units: String,
    /// Seconds since the last value arrived.
    pub tn: u64,
    pub tmax: u32,
    pub dmax: u32,
    /// SLOPE as text: zero, positive, negative, both, derivative, unspecified.
    pub slope: String,
    /// EXTRA_ELEMENTs in document order (gmond prints them in reverse packet order).
    pub extra: Vec<(String, String)>,
}

impl Cluster {
    /// The host with this NAME, if present.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

impl Host {
    /// The metric with this NAME, if present.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The value of a numeric metric, if present and parseable.
    pub fn metric_f64(&self, name: &str) -> Option<f64> {
        self.metric(name).and_then(Metric::as_f64)
    }

    /// gmetad's and ganglia-web's liveness rule: up iff TN < 4 * TMAX.
    pub fn is_up(&self) -> bool {
        self.tn < 4 * u64::from(self.tmax)
    }
}

impl Metric {
    /// VAL parsed as a number (None for strings and unparseable text).
    pub fn as_f64(&self) -> Option<f64> {
        self.val.trim().parse().ok()
    }

    /// The first EXTRA_ELEMENT with this NAME (e.g. "GROUP", "TITLE", "DESC").
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
