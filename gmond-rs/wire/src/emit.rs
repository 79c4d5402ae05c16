//! The one emitter of metric datagrams: a metric's descriptor and a host identity become the
//! metadata (128) and value (129-135) datagrams every sender of ours puts on the wire.
//!
//! The size rule lives here and nowhere else, and it is gmond 3.7.2's (reference §A.1):
//! metadata is encoded into a [`METADATA_LIMIT`]-byte buffer whatever `max_udp_msg_len` says,
//! values into `max_udp_msg_len` bytes, and a message that does not fit is not sent. Here "not
//! sent" is [`Error::MessageTooLarge`] with nothing written; the caller logs it and goes on.
//!
//! A signing sender ([`crate::auth`]) reserves the trailer's room ([`Emitter::reserving`]):
//! the body then fits each limit less the trailer, so the signed datagram as a whole obeys
//! the same rule, and no receiver's `max_udp_msg_len` buffer cuts off a trailer that gmond
//! itself would not have had to cut.

use crate::xdr::METADATA_LIMIT;
use crate::{encode, encoded_len, Error, Extra, Identity, Message, Metadata, MetricId, Slope};
use crate::{Value, ValueMsg};

/// A metric's TYPE (the metadata's `type` string, XML TYPE), which also fixes the value
/// message its values travel in.
///
/// gmetric sends every value as a string (133) whatever TYPE says; gmond, and so this
/// emitter, send the value message of the C type. The 8-bit types have no message of their
/// own and travel in the 16-bit ones, as XDR widens every short to 4 bytes anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `int8`, sent as a short (130).
    Int8,
    /// `uint8`, sent as an unsigned short (129).
    UInt8,
    /// `int16`, sent as a short (130).
    Int16,
    /// `uint16`, sent as an unsigned short (129).
    UInt16,
    /// `int32`, sent as an int (131).
    Int32,
    /// `uint32`, sent as an unsigned int (132).
    UInt32,
    /// `string`, sent as a string (133).
    String,
    /// `float`, sent as a float (134).
    Float,
    /// `double`, sent as a double (135).
    Double,
}

impl MetricType {
    /// The TYPE text, as gmetric validates it and gmond writes it.
    pub const fn type_name(self) -> &'static str {
        match self {
            MetricType::Int8 => "int8",
            MetricType::UInt8 => "uint8",
            MetricType::Int16 => "int16",
            MetricType::UInt16 => "uint16",
            MetricType::Int32 => "int32",
            MetricType::UInt32 => "uint32",
            MetricType::String => "string",
            MetricType::Float => "float",
            MetricType::Double => "double",
        }
    }

    /// The id of the value message this type's values travel in.
    pub const fn message_id(self) -> u32 {
        use crate::xdr::{ID_DOUBLE, ID_FLOAT, ID_INT, ID_SHORT, ID_STRING, ID_UINT, ID_USHORT};
        match self {
            MetricType::Int8 | MetricType::Int16 => ID_SHORT,
            MetricType::UInt8 | MetricType::UInt16 => ID_USHORT,
            MetricType::Int32 => ID_INT,
            MetricType::UInt32 => ID_UINT,
            MetricType::String => ID_STRING,
            MetricType::Float => ID_FLOAT,
            MetricType::Double => ID_DOUBLE,
        }
    }
}

/// Everything a receiver learns about a metric from its metadata, plus the printf format its
/// values carry: what stays the same from one value to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDescriptor<'a> {
    /// The metric name, in the metric_id and again in the metadata body.
    pub name: &'a str,
    pub metric_type: MetricType,
    /// printf format receivers print VAL with (`%u`, `%.2f`, `%s`).
    pub format: &'a str,
    pub units: &'a str,
    pub slope: Slope,
    /// Advisory maximum seconds between values.
    pub tmax: u32,
    /// Seconds after the last metadata at which receivers delete the metric; 0 = never.
    pub dmax: u32,
    /// In packet order: gmond's own metrics carry [`Extra::gmond_standard`] and nothing else.
    pub extra: Vec<Extra<'a>>,
}

/// Encodes the datagrams of one sender: who they speak for and how long a value may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitter {
    identity: Identity,
    max_udp_msg_len: usize,
    /// Bytes the caller appends after each body (a signature trailer), taken off both limits.
    reserved: usize,
}

impl Emitter {
    /// `max_udp_msg_len` bounds value datagrams only (gmond's `globals.max_udp_msg_len`).
    pub fn new(identity: Identity, max_udp_msg_len: usize) -> Self {
        Emitter {
            identity,
            max_udp_msg_len,
            reserved: 0,
        }
    }

    /// The same emitter, leaving `bytes` of each limit for what the caller appends after the
    /// body ([`crate::auth::TRAILER_LEN`] when signing).
    pub fn reserving(self, bytes: usize) -> Self {
        Emitter {
            reserved: bytes,
            ..self
        }
    }

    /// Bytes kept free after each body.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Appends `d`'s metadata datagram to `out` and returns its length; longer than
    /// [`METADATA_LIMIT`] (less the reserved room): `MessageTooLarge` and `out` is left as it
    /// was.
    pub fn metadata(&self, d: &MetricDescriptor<'_>, out: &mut Vec<u8>) -> Result<usize, Error> {
        let msg = Message::Metadata(Metadata {
            id: self.metric_id(d),
            metric_type: d.metric_type.type_name().as_bytes(),
            name: d.name.as_bytes(),
            units: d.units.as_bytes(),
            slope: d.slope,
            tmax: d.tmax,
            dmax: d.dmax,
            extra: d.extra.clone(),
        });
        bounded(&msg, METADATA_LIMIT.saturating_sub(self.reserved), out)
    }

    /// Appends a value datagram of `d` to `out` and returns its length; longer than
    /// `max_udp_msg_len` (less the reserved room): `MessageTooLarge`. A value whose message is not the one `d`'s TYPE
    /// announces is refused too (`ValueTypeMismatch`): receivers would print it under the
    /// wrong TYPE. On error `out` is left as it was.
    pub fn value(
        &self,
        d: &MetricDescriptor<'_>,
        value: Value<'_>,
        out: &mut Vec<u8>,
    ) -> Result<usize, Error> {
        if value.message_id() != d.metric_type.message_id() {
            return Err(Error::ValueTypeMismatch {
                metric_type: d.metric_type.type_name(),
                message_id: value.message_id(),
            });
        }
        let msg = Message::Value(ValueMsg {
            id: self.metric_id(d),
            fmt: d.format.as_bytes(),
            value,
        });
        bounded(
            &msg,
            self.max_udp_msg_len.saturating_sub(self.reserved),
            out,
        )
    }

    fn metric_id<'a>(&'a self, d: &MetricDescriptor<'a>) -> MetricId<'a> {
        MetricId {
            host: self.identity.host.as_bytes(),
            name: d.name.as_bytes(),
            spoof: self.identity.spoof,
        }
    }
}

/// The one "does not fit, not sent" rule, for both kinds of datagram.
fn bounded(msg: &Message<'_>, limit: usize, out: &mut Vec<u8>) -> Result<usize, Error> {
    let len = encoded_len(msg);
    if len > limit {
        return Err(Error::MessageTooLarge { len, limit });
    }
    out.reserve(len);
    Ok(encode(msg, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::xdr::DEFAULT_MAX_UDP_MSG_LEN;

    fn emitter() -> Emitter {
        Emitter::new(Identity::new("node1", None, None), DEFAULT_MAX_UDP_MSG_LEN)
    }

    fn descriptor(name: &str) -> MetricDescriptor<'_> {
        MetricDescriptor {
            name,
            metric_type: MetricType::UInt32,
            format: "%u",
            units: "",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 0,
            extra: Extra::gmond_standard(b"t", b"d", b"g"),
        }
    }

    #[test]
    fn every_type_has_its_gmetric_name_and_value_message() {
        let all = [
            (MetricType::Int8, "int8", Value::Short(-1)),
            (MetricType::UInt8, "uint8", Value::UShort(1)),
            (MetricType::Int16, "int16", Value::Short(-1)),
            (MetricType::UInt16, "uint16", Value::UShort(1)),
            (MetricType::Int32, "int32", Value::Int(-1)),
            (MetricType::UInt32, "uint32", Value::UInt(1)),
            (MetricType::String, "string", Value::Str(b"x")),
            (MetricType::Float, "float", Value::Float(1.0)),
            (MetricType::Double, "double", Value::Double(1.0)),
        ];
        for (t, name, v) in all {
            assert_eq!(t.type_name(), name);
            assert_eq!(t.message_id(), v.message_id(), "{name}");
            let d = MetricDescriptor {
                metric_type: t,
                ..descriptor("m")
            };
            let mut out = Vec::new();
            emitter().value(&d, v, &mut out).unwrap();
            emitter().metadata(&d, &mut out).unwrap();
        }
    }

    #[test]
    fn metadata_and_value_speak_for_the_identity() {
        let e = Emitter::new(
            Identity::new("x", Some("web"), Some("10.0.0.5")),
            DEFAULT_MAX_UDP_MSG_LEN,
        );
        let d = descriptor("m");
        let mut out = Vec::new();
        let n = e.metadata(&d, &mut out).unwrap();
        assert_eq!(n, out.len());
        let Message::Metadata(md) = decode(&out).unwrap() else {
            panic!("metadata")
        };
        assert_eq!((md.id.host, md.id.spoof), (&b"10.0.0.5:web"[..], true));
        assert_eq!((md.name, md.metric_type), (&b"m"[..], &b"uint32"[..]));
        assert_eq!(md.extra, d.extra);
        // Appends: the caller's earlier bytes stay.
        let m = e.value(&d, Value::UInt(7), &mut out).unwrap();
        assert_eq!(out.len(), n + m);
        let Message::Value(v) = decode(&out[n..]).unwrap() else {
            panic!("value")
        };
        assert_eq!((v.id.host, v.id.spoof), (&b"10.0.0.5:web"[..], true));
        assert_eq!((v.fmt, v.value), (&b"%u"[..], Value::UInt(7)));
    }

    #[test]
    fn a_name_too_long_for_its_buffer_is_refused_and_nothing_written() {
        // Metadata carries the name twice, so its limit (1464) is reached first.
        let long = "n".repeat(700);
        let d = descriptor(&long);
        let mut out = b"kept".to_vec();
        assert!(matches!(
            emitter().metadata(&d, &mut out),
            Err(Error::MessageTooLarge { limit: METADATA_LIMIT, len }) if len > METADATA_LIMIT
        ));
        assert_eq!(out, b"kept");
        // The value still fits max_udp_msg_len.
        assert!(emitter().value(&d, Value::UInt(1), &mut out).is_ok());

        // Metadata is bounded by gmond's buffer, not by max_udp_msg_len; values are.
        let small = Emitter::new(Identity::new("node1", None, None), 100);
        let d = descriptor("a_name_of_exactly_forty_bytes_0123456789");
        let mut out = Vec::new();
        assert!(small.metadata(&d, &mut out).unwrap() > 100);
        out.clear();
        assert_eq!(
            small.value(&d, Value::Str(b"x"), &mut out),
            Err(Error::ValueTypeMismatch {
                metric_type: "uint32",
                message_id: 133
            })
        );
        let d = MetricDescriptor {
            metric_type: MetricType::String,
            ..d
        };
        let fits = "v".repeat(100 - 4 - 12 - 44 - 4 - 8 - 4);
        assert_eq!(
            small.value(&d, Value::Str(fits.as_bytes()), &mut out),
            Ok(100)
        );
        out.clear();
        let over = format!("{fits}v");
        assert_eq!(
            small.value(&d, Value::Str(over.as_bytes()), &mut out),
            Err(Error::MessageTooLarge {
                len: 104,
                limit: 100
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn reserved_room_comes_off_both_limits() {
        use crate::auth::TRAILER_LEN;
        let e = Emitter::new(Identity::new("node1", None, None), 100).reserving(TRAILER_LEN);
        let d = MetricDescriptor {
            metric_type: MetricType::String,
            ..descriptor("m")
        };
        let mut out = Vec::new();
        // Header 4 + host 12 + name 8 + spoof 4 + fmt 8 + length 4 = 40: 12 bytes of value
        // fill 100 - 48.
        let fits = "v".repeat(100 - TRAILER_LEN - 40);
        assert_eq!(
            e.value(&d, Value::Str(fits.as_bytes()), &mut out),
            Ok(100 - TRAILER_LEN)
        );
        let over = format!("{fits}v");
        assert_eq!(
            e.value(&d, Value::Str(over.as_bytes()), &mut out),
            Err(Error::MessageTooLarge {
                len: 100 - TRAILER_LEN + 4,
                limit: 100 - TRAILER_LEN
            })
        );
        let long = "n".repeat(700);
        let big = MetricDescriptor {
            extra: vec![],
            ..descriptor(&long)
        };
        // 4 + 12 + 704 + 4 + 12 + 704 + 4 + 4*3 + 4 = 1460: fits 1464, not 1464 - 48.
        assert_eq!(emitter().metadata(&big, &mut out), Ok(1460));
        assert_eq!(
            emitter().reserving(TRAILER_LEN).metadata(&big, &mut out),
            Err(Error::MessageTooLarge {
                len: 1460,
                limit: METADATA_LIMIT - TRAILER_LEN
            })
        );
    }
}
