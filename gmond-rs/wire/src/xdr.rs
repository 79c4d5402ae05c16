//! Ganglia 3.1+ messages ("XDR format") and their codec: one message per UDP datagram.
//!
//! Wire rules (reference §A): big-endian XDR; 16-bit values travel as 4 bytes (ushort
//! zero-extended, short sign-extended); strings are a length word, the bytes, and zero padding
//! to a multiple of 4; anything after a whole message is ignored. Decoding borrows strings
//! from the datagram (no copies), checks every length against the bytes actually present and
//! the configured [`Limits`] before touching them, and never reads past the datagram: a
//! short datagram is an error, never a replay of an earlier one.
//!
//! Primitives (u32, i32, f32, f64, opaque) go through the `xdr-codec` crate. Its string and
//! opaque *decoders* are not used: they insist on UTF-8 (Ganglia strings are bytes) and accept
//! a string cut short by the end of input, so [`Reader::opaque`] does that part itself.

use crate::Error;
use xdr_codec::Unpack;

/// Message id of metadata ("gmetadata_full").
pub const ID_METADATA: u32 = 128;
/// Message id of a ushort value.
pub const ID_USHORT: u32 = 129;
/// Message id of a short value.
pub const ID_SHORT: u32 = 130;
/// Message id of an int value.
pub const ID_INT: u32 = 131;
/// Message id of a uint value.
pub const ID_UINT: u32 = 132;
/// Message id of a string value.
pub const ID_STRING: u32 = 133;
/// Message id of a float value.
pub const ID_FLOAT: u32 = 134;
/// Message id of a double value.
pub const ID_DOUBLE: u32 = 135;
/// Message id of a metadata request.
pub const ID_METADATA_REQUEST: u32 = 136;

/// gmond's default receive buffer (`globals.max_udp_msg_len`).
pub const DEFAULT_MAX_UDP_MSG_LEN: usize = 1472;

/// The buffer gmond and gmetric encode metadata and metadata requests into
/// (`GANGLIA_MAX_MESSAGE_LEN`, 1500 − 28 − 8), whatever `max_udp_msg_len` says; a message
/// that does not fit is not sent.
pub const METADATA_LIMIT: usize = 1464;

/// Bounds applied while decoding untrusted datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest datagram accepted; longer ones are rejected before any parsing.
    pub max_datagram: usize,
    /// Longest single string.
    pub max_string: usize,
    /// Most extra_data entries in one metadata message.
    pub max_extra: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_datagram: DEFAULT_MAX_UDP_MSG_LEN,
            max_string: DEFAULT_MAX_UDP_MSG_LEN,
            max_extra: 64,
        }
    }
}

/// `metric_id`: which host (or spoofed "IP:name") and which metric a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricId<'a> {
    /// The sender's host name, or "IP:name" when `spoof` is set.
    pub host: &'a [u8],
    /// The metric name.
    pub name: &'a [u8],
    /// Whether `host` names another host on whose behalf the sender speaks.
    pub spoof: bool,
}

/// A metric's slope, kept as the number on the wire so unknown numbers survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slope(pub u32);

impl Slope {
    pub const ZERO: Slope = Slope(0);
    pub const POSITIVE: Slope = Slope(1);
    pub const NEGATIVE: Slope = Slope(2);
    pub const BOTH: Slope = Slope(3);
    pub const UNSPECIFIED: Slope = Slope(4);
    pub const DERIVATIVE: Slope = Slope(5);

    /// The XML SLOPE text; numbers outside 0-5 print as "unspecified", as gmond does.
    pub fn as_str(self) -> &'static str {
        match self.0 {
            0 => "zero",
            1 => "positive",
            2 => "negative",
            3 => "both",
            5 => "derivative",
            _ => "unspecified",
        }
    }

    /// The slope for a name as modules and gmetric spell it; anything else is unspecified.
    pub fn from_name(name: &str) -> Slope {
        match name {
            "zero" => Slope::ZERO,
            "positive" => Slope::POSITIVE,
            "negative" => Slope::NEGATIVE,
            "both" => Slope::BOTH,
            "derivative" => Slope::DERIVATIVE,
            _ => Slope::UNSPECIFIED,
        }
    }
}

/// One `extra_data` entry (TITLE, DESC, GROUP, SPOOF_HOST, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extra<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Extra<'a> {
    /// The extras gmond attaches to every metric it originates, in its order: TITLE, DESC,
    /// GROUP. Senders append their own (SPOOF_HOST, VM_UUID, ...) after these.
    pub fn gmond_standard(title: &'a [u8], desc: &'a [u8], group: &'a [u8]) -> Vec<Extra<'a>> {
        vec![
            Extra {
                name: b"TITLE",
                data: title,
            },
            Extra {
                name: b"DESC",
                data: desc,
            },
            Extra {
                name: b"GROUP",
                data: group,
            },
        ]
    }
}

/// A metadata message (id 128).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub id: MetricId<'a>,
    /// Free text on the wire; printed verbatim as XML TYPE.
    pub metric_type: &'a [u8],
    /// Duplicates `id.name` on the wire; receivers key on `id.name`.
    pub name: &'a [u8],
    pub units: &'a [u8],
    pub slope: Slope,
    /// Advisory maximum seconds between values.
    pub tmax: u32,
    /// Seconds after which receivers delete the metric; 0 = never.
    pub dmax: u32,
    /// In packet order.
    pub extra: Vec<Extra<'a>>,
}

/// The typed payload of a value message (ids 129-135).
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    UShort(u16),
    Short(i16),
    Int(i32),
    UInt(u32),
    Str(&'a [u8]),
    Float(f32),
    Double(f64),
}

/// Equality is on the wire representation, so NaNs with the same bits are equal.
impl PartialEq for Value<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::UShort(a), Value::UShort(b)) => a == b,
            (Value::Short(a), Value::Short(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::UInt(a), Value::UInt(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl Value<'_> {
    /// The message id this value travels under.
    pub fn message_id(&self) -> u32 {
        match self {
            Value::UShort(_) => ID_USHORT,
            Value::Short(_) => ID_SHORT,
            Value::Int(_) => ID_INT,
            Value::UInt(_) => ID_UINT,
            Value::Str(_) => ID_STRING,
            Value::Float(_) => ID_FLOAT,
            Value::Double(_) => ID_DOUBLE,
        }
    }

    /// The value's 32 low bits read as an unsigned int, whatever its type: how gmond derives
    /// GMOND_STARTED from a `heartbeat` (floats give their IEEE bits, doubles their low word).
    /// Strings give 0 where gmond would print pointer garbage.
    pub fn as_u32_bits(&self) -> u32 {
        match *self {
            Value::UShort(v) => u32::from(v),
            Value::Short(v) => v as u32,
            Value::Int(v) => v as u32,
            Value::UInt(v) => v,
            Value::Str(_) => 0,
            Value::Float(v) => v.to_bits(),
            Value::Double(v) => v.to_bits() as u32,
        }
    }

    /// The numeric value as f64 (strings parse leniently; None if they do not parse).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::UShort(v) => Some(f64::from(v)),
            Value::Short(v) => Some(f64::from(v)),
            Value::Int(v) => Some(f64::from(v)),
            Value::UInt(v) => Some(f64::from(v)),
            Value::Float(v) => Some(f64::from(v)),
            Value::Double(v) => Some(v),
            Value::Str(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
        }
    }
}

/// A value message (ids 129-135).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMsg<'a> {
    pub id: MetricId<'a>,
    /// The sender's printf format, used by receivers to print VAL.
    pub fmt: &'a [u8],
    pub value: Value<'a>,
}

/// One Ganglia 3.1+ message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// id 128
    Metadata(Metadata<'a>),
    /// ids 129-135
    Value(ValueMsg<'a>),
    /// id 136: "please resend your metadata for this metric name"
    MetadataRequest(MetricId<'a>),
}

impl Message<'_> {
    /// The first word on the wire.
    pub fn message_id(&self) -> u32 {
        match self {
            Message::Metadata(_) => ID_METADATA,
            Message::Value(v) => v.value.message_id(),
            Message::MetadataRequest(_) => ID_METADATA_REQUEST,
        }
    }

    /// The metric_id every message starts with.
    pub fn metric_id(&self) -> &MetricId<'_> {
        match self {
            Message::Metadata(m) => &m.id,
            Message::Value(v) => &v.id,
            Message::MetadataRequest(id) => id,
        }
    }
}

/// Decodes one datagram with the default [`Limits`]. Trailing bytes are ignored.
pub fn decode(datagram: &[u8]) -> Result<Message<'_>, Error> {
    decode_with(datagram, &Limits::default())
}

/// Decodes one datagram under explicit limits. Trailing bytes are ignored.
pub fn decode_with<'a>(datagram: &'a [u8], limits: &Limits) -> Result<Message<'a>, Error> {
    decode_prefix(datagram, limits).map(|(m, _)| m)
}

/// Decodes one message and also returns how many bytes it took.
pub fn decode_prefix<'a>(
    datagram: &'a [u8],
    limits: &Limits,
) -> Result<(Message<'a>, usize), Error> {
    if datagram.len() > limits.max_datagram {
        return Err(Error::DatagramTooLarge {
            len: datagram.len(),
            limit: limits.max_datagram,
        });
    }
    let mut r = Reader {
        buf: datagram,
        pos: 0,
        limits,
    };
    let id = r.u32()?;
    let msg = match id {
        ID_METADATA => {
            let metric_id = r.metric_id()?;
            let metric_type = r.opaque("type")?;
            let name = r.opaque("name")?;
            let units = r.opaque("units")?;
            let slope = Slope(r.u32()?);
            let tmax = r.u32()?;
            let dmax = r.u32()?;
            let count = r.u32()? as usize;
            // Each entry needs at least two length words: bound the count by the bytes left
            // as well as by the limit before reserving anything.
            if count > limits.max_extra {
                return Err(Error::LengthTooLong {
                    what: "extra_data",
                    len: count,
                    limit: limits.max_extra,
                });
            }
            r.need(count.saturating_mul(8))?;
            let mut extra = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.opaque("extra name")?;
                let data = r.opaque("extra data")?;
                extra.push(Extra { name, data });
            }
            Message::Metadata(Metadata {
                id: metric_id,
                metric_type,
                name,
                units,
                slope,
                tmax,
                dmax,
                extra,
            })
        }
        ID_USHORT..=ID_DOUBLE => {
            let metric_id = r.metric_id()?;
            let fmt = r.opaque("fmt")?;
            let value = match id {
                // XDR's 16-bit types are 4 bytes; the receiver keeps the low 16 bits.
                ID_USHORT => Value::UShort(r.u32()? as u16),
                ID_SHORT => Value::Short(r.i32()? as i16),
                ID_INT => Value::Int(r.i32()?),
                ID_UINT => Value::UInt(r.u32()?),
                ID_STRING => Value::Str(r.opaque("value")?),
                ID_FLOAT => Value::Float(r.prim::<f32>(4)?),
                _ => Value::Double(r.prim::<f64>(8)?),
            };
            Message::Value(ValueMsg {
                id: metric_id,
                fmt,
                value,
            })
        }
        ID_METADATA_REQUEST => Message::MetadataRequest(r.metric_id()?),
        other => return Err(Error::UnknownMessageId(other)),
    };
    Ok((msg, r.pos))
}

/// Cursor over one datagram; every read is bounds-checked first.
struct Reader<'a, 'l> {
    buf: &'a [u8],
    pos: usize,
    limits: &'l Limits,
}

impl<'a> Reader<'a, '_> {
    fn need(&self, n: usize) -> Result<(), Error> {
        let left = self.buf.len() - self.pos;
        if left < n {
            return Err(Error::Truncated {
                offset: self.pos,
                needed: n - left,
            });
        }
        Ok(())
    }

    /// A fixed-size primitive through xdr-codec, after checking the bytes are there.
    fn prim<T: Unpack<&'a [u8]>>(&mut self, size: usize) -> Result<T, Error> {
        self.need(size)?;
        let mut input = &self.buf[self.pos..self.pos + size];
        let (v, used) = T::unpack(&mut input).map_err(|_| Error::Truncated {
            offset: self.pos,
            needed: size,
        })?;
        self.pos += used;
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.prim::<u32>(4)
    }

    fn i32(&mut self) -> Result<i32, Error> {
        self.prim::<i32>(4)
    }

    /// Variable-length opaque/string: checked against the limit and the bytes present
    /// (including padding) before it is sliced out.
    fn opaque(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        if len > self.limits.max_string {
            return Err(Error::LengthTooLong {
                what,
                len,
                limit: self.limits.max_string,
            });
        }
        let padded = len + pad_len(len);
        self.need(padded)?;
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += padded;
        Ok(s)
    }

    fn metric_id(&mut self) -> Result<MetricId<'a>, Error> {
        let host = self.opaque("host")?;
        let name = self.opaque("name")?;
        // xdr_bool on decode treats any non-zero word as true; so do we.
        let spoof = self.u32()? != 0;
        Ok(MetricId { host, name, spoof })
    }
}

fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Appends the encoding of `msg` to `out` and returns its length in bytes.
pub fn encode(msg: &Message<'_>, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let mut w = Writer(out);
    w.u32(msg.message_id());
    match msg {
        Message::Metadata(m) => {
            w.metric_id(&m.id);
            w.opaque(m.metric_type);
            w.opaque(m.name);
            w.opaque(m.units);
            w.u32(m.slope.0);
            w.u32(m.tmax);
            w.u32(m.dmax);
            w.u32(m.extra.len() as u32);
            for e in &m.extra {
                w.opaque(e.name);
                w.opaque(e.data);
            }
        }
        Message::Value(v) => {
            w.metric_id(&v.id);
            w.opaque(v.fmt);
            match v.value {
                Value::UShort(x) => w.u32(u32::from(x)),
                Value::Short(x) => w.i32(i32::from(x)),
                Value::Int(x) => w.i32(x),
                Value::UInt(x) => w.u32(x),
                Value::Str(s) => w.opaque(s),
                Value::Float(x) => w.prim(&x),
                Value::Double(x) => w.prim(&x),
            }
        }
        Message::MetadataRequest(id) => w.metric_id(id),
    }
    out.len() - start
}

/// Encodes into a fresh buffer, refusing messages longer than `limit` (gmond does not send a
/// message that does not fit its buffer: [`METADATA_LIMIT`] for metadata and requests,
/// `max_udp_msg_len` for values).
pub fn encode_bounded(msg: &Message<'_>, limit: usize) -> Result<Vec<u8>, Error> {
    let len = encoded_len(msg);
    if len > limit {
        return Err(Error::MessageTooLarge { len, limit });
    }
    let mut out = Vec::with_capacity(len);
    encode(msg, &mut out);
    Ok(out)
}

/// The exact number of bytes [`encode`] writes for `msg`.
pub fn encoded_len(msg: &Message<'_>) -> usize {
    fn s(b: &[u8]) -> usize {
        4 + b.len() + pad_len(b.len())
    }
    fn id(m: &MetricId<'_>) -> usize {
        s(m.host) + s(m.name) + 4
    }
    4 + match msg {
        Message::Metadata(m) => {
            id(&m.id)
                + s(m.metric_type)
                + s(m.name)
                + s(m.units)
                + 16
                + m.extra.iter().map(|e| s(e.name) + s(e.data)).sum::<usize>()
        }
        Message::Value(v) => {
            id(&v.id)
                + s(v.fmt)
                + match v.value {
                    Value::Str(b) => s(b),
                    Value::Double(_) => 8,
                    _ => 4,
                }
        }
        Message::MetadataRequest(m) => id(m),
    }
}

/// Appends XDR primitives to a Vec through xdr-codec. Writing into a Vec cannot fail, so the
/// io::Result xdr-codec returns carries no information here.
struct Writer<'o>(&'o mut Vec<u8>);

impl Writer<'_> {
    fn prim<T: xdr_codec::Pack<Vec<u8>>>(&mut self, v: &T) {
        let _infallible = v.pack(self.0);
    }

    fn u32(&mut self, v: u32) {
        self.prim(&v);
    }

    fn i32(&mut self, v: i32) {
        self.prim(&v);
    }

    fn opaque(&mut self, bytes: &[u8]) {
        let _infallible = xdr_codec::pack_opaque_flex(bytes, None, self.0);
    }

    fn metric_id(&mut self, id: &MetricId<'_>) {
        self.opaque(id.host);
        self.opaque(id.name);
        self.u32(u32::from(id.spoof));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(host: &'static str, name: &'static str, v: Value<'static>) -> Message<'static> {
        Message::Value(ValueMsg {
            id: MetricId {
                host: host.as_bytes(),
                name: name.as_bytes(),
                spoof: false,
            },
            fmt: b"%hu",
            value: v,
        })
    }

    #[test]
    fn ushort_travels_as_four_bytes() {
        let mut out = Vec::new();
        encode(&value("node1", "cpu_num", Value::UShort(2)), &mut out);
        assert_eq!(out.len(), 44);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 2]);
    }

    #[test]
    fn short_is_sign_extended() {
        let mut out = Vec::new();
        encode(&value("h", "m", Value::Short(-2)), &mut out);
        assert_eq!(&out[out.len() - 4..], &[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(decode(&out).unwrap(), value("h", "m", Value::Short(-2)));
    }

    #[test]
    fn strings_are_padded_to_four() {
        let mut out = Vec::new();
        let n = encode(&value("abcde", "m", Value::UInt(1)), &mut out);
        // id + (4+5+3) + (4+1+3) + spoof + fmt (4+3+1) + value
        assert_eq!(n, 4 + 12 + 8 + 4 + 8 + 4);
        assert_eq!(&out[4..16], b"\0\0\0\x05abcde\0\0\0");
        assert_eq!(encoded_len(&value("abcde", "m", Value::UInt(1))), n);
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let msg = value("h", "m", Value::UInt(7));
        let mut out = Vec::new();
        let n = encode(&msg, &mut out);
        out.extend_from_slice(b"junk junk");
        let (back, used) = decode_prefix(&out, &Limits::default()).unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, n);
    }

    #[test]
    fn every_strict_prefix_is_truncated_not_a_replay() {
        let mut out = Vec::new();
        encode(&value("node1", "os_name", Value::Str(b"Linux")), &mut out);
        for cut in 0..out.len() {
            match decode(&out[..cut]) {
                Err(Error::Truncated { .. }) => {}
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_ids_are_reported() {
        assert_eq!(
            decode(&[0, 0, 0, 5, 0, 0, 0, 0]),
            Err(Error::UnknownMessageId(5))
        );
        assert_eq!(
            decode(&137u32.to_be_bytes()),
            Err(Error::UnknownMessageId(137))
        );
    }

    #[test]
    fn huge_string_length_is_rejected_before_allocating() {
        let mut d = ID_METADATA_REQUEST.to_be_bytes().to_vec();
        d.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&d),
            Err(Error::LengthTooLong { what: "host", .. })
        ));
    }

    #[test]
    fn huge_extra_count_is_rejected() {
        let md = Message::Metadata(Metadata {
            id: MetricId {
                host: b"h",
                name: b"m",
                spoof: false,
            },
            metric_type: b"uint32",
            name: b"m",
            units: b"",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 0,
            extra: vec![],
        });
        let mut out = Vec::new();
        encode(&md, &mut out);
        let n = out.len();
        out[n - 4..].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert!(matches!(
            decode(&out),
            Err(Error::LengthTooLong {
                what: "extra_data",
                ..
            })
        ));
        // Under the limit but more than the bytes present: truncated, nothing reserved.
        out[n - 4..].copy_from_slice(&60u32.to_be_bytes());
        assert!(matches!(decode(&out), Err(Error::Truncated { .. })));
    }

    #[test]
    fn oversize_datagram_is_rejected() {
        let d = vec![0u8; DEFAULT_MAX_UDP_MSG_LEN + 1];
        assert!(matches!(decode(&d), Err(Error::DatagramTooLarge { .. })));
    }

    #[test]
    fn any_nonzero_spoof_word_is_true() {
        let mut out = Vec::new();
        encode(&value("h", "m", Value::UInt(1)), &mut out);
        // spoof word sits after id(4) + host(8) + name(8)
        out[20..24].copy_from_slice(&2u32.to_be_bytes());
        assert!(decode(&out).unwrap().metric_id().spoof);
    }

    #[test]
    fn slope_names() {
        assert_eq!(Slope(99).as_str(), "unspecified");
        assert_eq!(Slope(5).as_str(), "derivative");
        for n in 0..6 {
            let s = Slope(n);
            if n != 4 {
                assert_eq!(Slope::from_name(s.as_str()), s);
            }
        }
    }

    #[test]
    fn heartbeat_bits() {
        assert_eq!(Value::Float(1.0).as_u32_bits(), 1_065_353_216);
        assert_eq!(Value::UInt(7).as_u32_bits(), 7);
        assert_eq!(Value::Str(b"0").as_u32_bits(), 0);
    }
}
