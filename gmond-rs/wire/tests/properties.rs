//! Property tests of the codec: encode/decode round trips for arbitrary messages, and
//! arbitrary bytes never panic, never over-read, and never decode from a strict prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::{
    decode, decode_prefix, encode, encoded_len, Extra, Limits, Message, Metadata, MetricId, Slope,
    Value, ValueMsg,
};
use proptest::prelude::*;

/// Owned mirror of a message, so proptest can generate it; borrowed views are built from it.
#[derive(Debug, Clone)]
enum Owned {
    Meta {
        id: (Vec<u8>, Vec<u8>, bool),
        ty: Vec<u8>,
        name: Vec<u8>,
        units: Vec<u8>,
        slope: u32,
        tmax: u32,
        dmax: u32,
        extra: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Val {
        id: (Vec<u8>, Vec<u8>, bool),
        fmt: Vec<u8>,
        value: OwnedValue,
    },
    Req((Vec<u8>, Vec<u8>, bool)),
}

#[derive(Debug, Clone)]
enum OwnedValue {
    UShort(u16),
    Short(i16),
    Int(i32),
    UInt(u32),
    Str(Vec<u8>),
    Float(f32),
    Double(f64),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

fn metric_id() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool)> {
    (bytes(), bytes(), any::<bool>())
}

fn owned() -> impl Strategy<Value = Owned> {
    let value = prop_oneof![
        any::<u16>().prop_map(OwnedValue::UShort),
        any::<i16>().prop_map(OwnedValue::Short),
        any::<i32>().prop_map(OwnedValue::Int),
        any::<u32>().prop_map(OwnedValue::UInt),
        bytes().prop_map(OwnedValue::Str),
        any::<f32>().prop_map(OwnedValue::Float),
        any::<f64>().prop_map(OwnedValue::Double),
    ];
    prop_oneof![
        (
            metric_id(),
            bytes(),
            bytes(),
            bytes(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec((bytes(), bytes()), 0..6)
        )
            .prop_map(
                |(id, ty, name, units, slope, tmax, dmax, extra)| Owned::Meta {
                    id,
                    ty,
                    name,
                    units,
                    slope,
                    tmax,
                    dmax,
                    extra
                }
            ),
        (metric_id(), bytes(), value).prop_map(|(id, fmt, value)| Owned::Val { id, fmt, value }),
        metric_id().prop_map(Owned::Req),
    ]
}

fn id(t: &(Vec<u8>, Vec<u8>, bool)) -> MetricId<'_> {
    MetricId {
        host: &t.0,
        name: &t.1,
        spoof: t.2,
    }
}

fn view(o: &Owned) -> Message<'_> {
    match o {
        Owned::Meta {
            id: i,
            ty,
            name,
            units,
            slope,
            tmax,
            dmax,
            extra,
        } => Message::Metadata(Metadata {
            id: id(i),
            metric_type: ty,
            name,
            units,
            slope: Slope(*slope),
            tmax: *tmax,
            dmax: *dmax,
            extra: extra
                .iter()
                .map(|(n, d)| Extra { name: n, data: d })
                .collect(),
        }),
        Owned::Val { id: i, fmt, value } => Message::Value(ValueMsg {
            id: id(i),
            fmt,
            value: match value {
                OwnedValue::UShort(v) => Value::UShort(*v),
                OwnedValue::Short(v) => Value::Short(*v),
                OwnedValue::Int(v) => Value::Int(*v),
                OwnedValue::UInt(v) => Value::UInt(*v),
                OwnedValue::Str(v) => Value::Str(v),
                OwnedValue::Float(v) => Value::Float(*v),
                OwnedValue::Double(v) => Value::Double(*v),
            },
        }),
        Owned::Req(i) => Message::MetadataRequest(id(i)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_encode_roundtrip(o in owned()) {
        let msg = view(&o);
        let mut buf = Vec::new();
        let n = encode(&msg, &mut buf);
        prop_assert_eq!(n, buf.len());
        prop_assert_eq!(n, encoded_len(&msg));
        prop_assert_eq!(n % 4, 0);
        let limits = Limits { max_datagram: usize::MAX, ..Limits::default() };
        let (back, used) = decode_prefix(&buf, &limits).unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(&back, &msg);
        // Every strict prefix is an error, never a (stale) message.
        for cut in [0, n / 2, n.saturating_sub(1)] {
            if cut < n {
                prop_assert!(decode_prefix(&buf[..cut], &limits).is_err());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1600)) {
        if let Ok((msg, used)) = decode_prefix(&data, &Limits::default()) {
            prop_assert!(used <= data.len());
            // What decodes re-encodes to the bytes it came from, except for the bool
            // normalisation (any non-zero spoof word reads as true) and ushort/short high bits.
            let mut again = Vec::new();
            encode(&msg, &mut again);
            prop_assert_eq!(again.len(), used);
            prop_assert_eq!(decode(&again).unwrap(), msg);
        }
    }

    #[test]
    fn valid_prefix_with_garbage_tail_decodes(o in owned(), tail in bytes()) {
        let msg = view(&o);
        let mut buf = Vec::new();
        encode(&msg, &mut buf);
        buf.extend_from_slice(&tail);
        let limits = Limits { max_datagram: usize::MAX, ..Limits::default() };
        prop_assert_eq!(decode_prefix(&buf, &limits).unwrap().0, msg);
    }

    #[test]
    fn arbitrary_message_header_bytes_never_panic(
        id in 120u32..140,
        rest in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // Random bodies behind a plausible id reach deeper into the decoder than pure noise.
        let mut data = id.to_be_bytes().to_vec();
        data.extend_from_slice(&rest);
        let _ = decode(&data);
    }
}
