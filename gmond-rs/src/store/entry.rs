//! Stored hosts and metrics: owned copies of what the wire said, laid out so that updating a
//! known metric reuses its buffers instead of allocating.

use super::names::{self, Special};
use super::time::Timestamp;
use ganglia_wire::xml::PreparedMetric;
use ganglia_wire::{Extra, Metadata, Slope, Value};

/// Byte-string-keyed table, looked up by `&[u8]` without allocating. Keys come from the
/// network, so each map has its own random seed (hashbrown's default, foldhash): colliding
/// keys cannot be precomputed. foldhash is not a keyed PRF like SipHash, which cost three
/// times the instructions per short key (a third of the store's ingest work); what an
/// attacker could still gain is bounded by the caps (at most `max_metrics_per_host` entries
/// in one map, `max_hosts` in the other).
pub(crate) type Map<V> = hashbrown::HashMap<Box<[u8]>, V>;

/// One HOST: keyed in the store by its IP text (source address, or spoof IP part).
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) name: Box<[u8]>,
    /// The last string `location` value; `None` prints "unspecified".
    pub(crate) location: Option<Vec<u8>>,
    /// The last `heartbeat` value's low 32 bits.
    pub(crate) gmond_started: u32,
    pub(crate) last_heard: Timestamp,
    /// Boxed: a table sized for 33 metrics has 64 slots, and a slot holding the whole
    /// 128-byte metric would waste half the table; a pointer wastes 8 bytes per empty slot.
    pub(crate) metrics: Map<Box<Metric>>,
    /// Some metric changed since the last `prepare_xml`.
    pub(crate) dirty: bool,
    /// A datagram came from the host's own address without spoofing: its NAME is then the
    /// address's, whatever a spoof that arrived first claimed.
    pub(crate) heard_directly: bool,
}

impl Host {
    pub(crate) fn new(name: Box<[u8]>, now: Timestamp, heard_directly: bool) -> Self {
        Host {
            name,
            location: None,
            gmond_started: 0,
            last_heard: now,
            metrics: Map::default(),
            dirty: false,
            heard_directly,
        }
    }

    /// Bytes this host holds besides its metrics (key included).
    pub(crate) fn own_bytes(&self, key_len: usize) -> usize {
        HOST_OVERHEAD + key_len + self.name.len() + self.location.as_ref().map_or(0, Vec::capacity)
    }
}

/// Fixed cost charged per host and per metric on top of their byte strings: the structs, a
/// share of hash-table slots, and the allocator's headers and rounding on their separate
/// allocations (a metric has three: key, box, value buffer). Calibrated against RSS at
/// 100,000 hosts (`daemon_bad_input::accounted_memory_matches_rss_at_100000_hosts`): with
/// the table share alone, the store accounted for 78 % of what it held.
pub(crate) const HOST_OVERHEAD: usize = std::mem::size_of::<Host>() + 128;
pub(crate) const METRIC_OVERHEAD: usize = std::mem::size_of::<Metric>() + 112;

/// One metric of a host: printed only once it has both a value and metadata.
#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) value: Option<StoredValue>,
    pub(crate) meta: Option<StoredMeta>,
    /// Bytes of the key that XML prints (see [`names::printed_len`]).
    pub(crate) printed_len: u32,
    /// heartbeat/location are stored like any metric (so their metadata requests happen as in
    /// gmond) but never printed.
    pub(crate) hidden: bool,
    /// The METRIC element rendered by the last `prepare_xml`, valid while `dirty` is false.
    pub(crate) prepared: Option<PreparedMetric>,
    pub(crate) dirty: bool,
}

impl Metric {
    pub(crate) fn new(name: &[u8]) -> Self {
        Metric {
            value: None,
            meta: None,
            printed_len: u32::try_from(names::printed_len(name)).unwrap_or(u32::MAX),
            hidden: names::special(name) != Special::None,
            prepared: None,
            dirty: true,
        }
    }

    /// Bytes held, key included.
    pub(crate) fn bytes(&self, key_len: usize) -> usize {
        METRIC_OVERHEAD
            + key_len
            + self.value.as_ref().map_or(0, |v| v.buf.capacity())
            + self.prepared.as_ref().map_or(0, PreparedMetric::len)
    }
}

/// The numeric payload of a value, or the marker that the value is the string in `buf`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    UShort(u16),
    Short(i16),
    Int(i32),
    UInt(u32),
    Float(f32),
    Double(f64),
    Str,
}

/// The last value: fmt and (for strings) the text share one buffer.
#[derive(Debug)]
pub(crate) struct StoredValue {
    num: Num,
    fmt_len: usize,
    buf: Vec<u8>,
    pub(crate) received: Timestamp,
    /// The id of the key that authenticated this value, as decimal text (XML prints it);
    /// empty: not authenticated.
    auth: AuthMark,
}

/// A key id as decimal text, inline (at most 10 digits), so a dump lends it out as bytes.
#[derive(Debug, Default, Clone, Copy)]
struct AuthMark {
    text: [u8; 10],
    len: u8,
}

impl StoredValue {
    pub(crate) fn new(fmt: &[u8], value: &Value<'_>, now: Timestamp) -> Self {
        let mut v = StoredValue {
            num: Num::Str,
            fmt_len: 0,
            buf: Vec::new(),
            received: now,
            auth: AuthMark::default(),
        };
        v.set(fmt, value, now);
        v
    }

    /// Records which key authenticated the value just set (`None`: none did).
    pub(crate) fn set_auth(&mut self, key_id: Option<u32>) {
        let mut mark = AuthMark::default();
        if let Some(mut id) = key_id {
            // Digits from the right, in place: this runs for every authenticated datagram, and
            // `to_string` allocated each time (u32::MAX has 10 digits, the buffer's size).
            let mut digits = [0u8; 10];
            let mut start = digits.len();
            loop {
                start -= 1;
                digits[start] = b'0' + (id % 10) as u8;
                id /= 10;
                if id == 0 {
                    break;
                }
            }
            let n = digits.len() - start;
            mark.text[..n].copy_from_slice(&digits[start..]);
            mark.len = n as u8;
        }
        self.auth = mark;
    }

    /// The authenticating key's id as text, if the value was authenticated.
    pub(crate) fn auth(&self) -> Option<&[u8]> {
        (self.auth.len > 0).then(|| &self.auth.text[..usize::from(self.auth.len)])
    }

    /// Overwrites in place; allocates only if the new text outgrows the buffer.
    pub(crate) fn set(&mut self, fmt: &[u8], value: &Value<'_>, now: Timestamp) {
        self.buf.clear();
        self.buf.extend_from_slice(fmt);
        self.fmt_len = fmt.len();
        self.num = match *value {
            Value::UShort(x) => Num::UShort(x),
            Value::Short(x) => Num::Short(x),
            Value::Int(x) => Num::Int(x),
            Value::UInt(x) => Num::UInt(x),
            Value::Float(x) => Num::Float(x),
            Value::Double(x) => Num::Double(x),
            Value::Str(s) => {
                self.buf.extend_from_slice(s);
                Num::Str
            }
        };
        self.received = now;
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) fn fmt(&self) -> &[u8] {
        &self.buf[..self.fmt_len]
    }

    pub(crate) fn value(&self) -> Value<'_> {
        match self.num {
            Num::UShort(x) => Value::UShort(x),
            Num::Short(x) => Value::Short(x),
            Num::Int(x) => Value::Int(x),
            Num::UInt(x) => Value::UInt(x),
            Num::Float(x) => Value::Float(x),
            Num::Double(x) => Value::Double(x),
            Num::Str => Value::Str(&self.buf[self.fmt_len..]),
        }
    }
}

/// TYPE, UNITS and the extras of a metric's metadata, in one buffer (`type | units | name data
/// name data ...`, `spans` locating each extra so a dump lends them out without parsing).
///
/// Every host running the same gmond sends the same body for a metric name, so the store keeps
/// each distinct body once ([`Interner`]) and metrics share it: with gmond's TITLE, DESC and
/// GROUP extras that is about 100 bytes per metric not stored 10,000 times.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct MetaBody {
    buf: Box<[u8]>,
    type_len: u32,
    units_len: u32,
    /// (name start, name end, data end) of each extra, in packet order; data starts at name end.
    spans: Box<[[u32; 3]]>,
}

/// Distinct metadata bodies, shared by the metrics that carry them. A body no metric uses any
/// more is dropped at the next cleanup sweep.
pub(crate) type Interner = hashbrown::HashSet<std::sync::Arc<MetaBody>>;

impl MetaBody {
    pub(crate) fn new(md: &Metadata<'_>, keep_extra: bool) -> Self {
        // A datagram is far below 4 GiB, so every offset fits.
        let off = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let mut b = Vec::with_capacity(
            md.metric_type.len()
                + md.units.len()
                + if keep_extra {
                    md.extra.iter().map(|e| e.name.len() + e.data.len()).sum()
                } else {
                    0
                },
        );
        b.extend_from_slice(md.metric_type);
        b.extend_from_slice(md.units);
        let mut spans = Vec::new();
        if keep_extra {
            spans.reserve_exact(md.extra.len());
            for Extra { name, data } in &md.extra {
                let start = b.len();
                b.extend_from_slice(name);
                let mid = b.len();
                b.extend_from_slice(data);
                spans.push([off(start), off(mid), off(b.len())]);
            }
        }
        MetaBody {
            buf: b.into_boxed_slice(),
            type_len: off(md.metric_type.len()),
            units_len: off(md.units.len()),
            spans: spans.into_boxed_slice(),
        }
    }

    /// Heap bytes held by one shared copy, the reference counts included.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 16 + self.buf.len() + self.spans.len() * 12
    }

    pub(crate) fn ty(&self) -> &[u8] {
        self.buf.get(..self.type_len as usize).unwrap_or_default()
    }

    pub(crate) fn units(&self) -> &[u8] {
        let start = self.type_len as usize;
        self.buf
            .get(start..start + self.units_len as usize)
            .unwrap_or_default()
    }

    /// The extras in packet order.
    pub(crate) fn extras(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&[a, b, c]| {
            let (a, b, c) = (a as usize, b as usize, c as usize);
            (
                self.buf.get(a..b).unwrap_or_default(),
                self.buf.get(b..c).unwrap_or_default(),
            )
        })
    }
}

/// The last metadata: the shared body plus what is per metric.
#[derive(Debug)]
pub(crate) struct StoredMeta {
    pub(crate) body: std::sync::Arc<MetaBody>,
    pub(crate) slope: Slope,
    pub(crate) tmax: u32,
    pub(crate) dmax: u32,
    /// When this metadata last arrived: metric dmax counts from here (gmond's rule).
    pub(crate) received: Timestamp,
}

impl StoredMeta {
    pub(crate) fn new(body: std::sync::Arc<MetaBody>, md: &Metadata<'_>, now: Timestamp) -> Self {
        StoredMeta {
            body,
            slope: md.slope,
            tmax: md.tmax,
            dmax: md.dmax,
            received: now,
        }
    }

    pub(crate) fn ty(&self) -> &[u8] {
        self.body.ty()
    }

    pub(crate) fn units(&self) -> &[u8] {
        self.body.units()
    }

    pub(crate) fn extras(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.body.extras()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglia_wire::MetricId;

    fn md<'a>(extra: Vec<Extra<'a>>) -> Metadata<'a> {
        Metadata {
            id: MetricId {
                host: b"h",
                name: b"m",
                spoof: false,
            },
            metric_type: b"float",
            name: b"m",
            units: b"KB",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 5,
            extra,
        }
    }

    #[test]
    fn auth_mark_is_the_key_id_in_decimal() {
        let mut v = StoredValue::new(b"%u", &Value::UInt(1), Timestamp::from_secs(0));
        assert_eq!(v.auth(), None);
        for id in [0, 7, 10, 4_096, u32::MAX] {
            v.set_auth(Some(id));
            assert_eq!(v.auth(), Some(id.to_string().as_bytes()));
        }
        v.set_auth(None);
        assert_eq!(v.auth(), None);
    }

    #[test]
    fn metadata_round_trips_through_one_buffer() {
        let extra = vec![
            Extra {
                name: b"TITLE",
                data: b"T",
            },
            Extra {
                name: b"DESC",
                data: b"",
            },
            Extra {
                name: b"GROUP",
                data: b"cpu",
            },
        ];
        let now = Timestamp::from_secs(7);
        let body = std::sync::Arc::new(MetaBody::new(&md(extra.clone()), true));
        let m = StoredMeta::new(body, &md(extra), now);
        assert_eq!(m.ty(), b"float");
        assert_eq!(m.units(), b"KB");
        let got: Vec<_> = m.extras().collect();
        assert_eq!(
            got,
            vec![
                (&b"TITLE"[..], &b"T"[..]),
                (&b"DESC"[..], &b""[..]),
                (&b"GROUP"[..], &b"cpu"[..])
            ]
        );
        let one = vec![Extra {
            name: b"X",
            data: b"Y",
        }];
        let body = MetaBody::new(&md(one.clone()), false);
        assert_eq!(body.extras().count(), 0);
        // Equal content is one body, whatever the extras the store chose not to keep.
        assert_eq!(body, MetaBody::new(&md(vec![]), false));
        assert_ne!(body, MetaBody::new(&md(one.clone()), true));
        let m = StoredMeta::new(std::sync::Arc::new(body), &md(one), now);
        assert_eq!((m.tmax, m.dmax, m.received), (60, 5, now));
    }

    #[test]
    fn values_are_overwritten_in_place() {
        let now = Timestamp::from_secs(1);
        let mut v = StoredValue::new(b"%s", &Value::Str(b"a longer string"), now);
        assert_eq!(v.value(), Value::Str(b"a longer string"));
        let cap = v.buf.capacity();
        v.set(b"%.1f", &Value::Float(2.5), Timestamp::from_secs(2));
        assert_eq!((v.fmt(), v.value()), (&b"%.1f"[..], Value::Float(2.5)));
        v.set(b"%s", &Value::Str(b"short"), now);
        assert_eq!(v.value(), Value::Str(b"short"));
        assert_eq!(v.buf.capacity(), cap, "no reallocation for smaller values");
    }

    #[test]
    fn hidden_and_printed_names() {
        assert!(Metric::new(b"HEARTBEAT").hidden);
        assert!(!Metric::new(b"cpu_user").hidden);
        assert_eq!(Metric::new(b"svc:a").printed_len, 3);
    }
}
