//! Test helpers shared by ganglia-wire's integration tests: fixture paths, a classic-pcap
//! reader, and comparison of decoded messages with the fixtures' JSON decodings.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::{Message, Value};
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ganglia-3.7.2")
        .join(rel)
}

/// One UDP datagram from the capture.
pub struct Datagram {
    pub time: f64,
    pub src: Ipv4Addr,
    pub payload: Vec<u8>,
}

/// Reads a classic little-endian pcap of Ethernet/IPv4/UDP frames (what tcpdump -w writes).
pub fn read_pcap(bytes: &[u8]) -> Vec<Datagram> {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "classic LE pcap");
    let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap());
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let (sec, usec, incl) = (
            le32(&bytes[pos..]),
            le32(&bytes[pos + 4..]),
            le32(&bytes[pos + 8..]) as usize,
        );
        let frame = &bytes[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 ethertype");
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        assert_eq!(ip[9], 17, "UDP");
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let udp = &ip[ihl..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Datagram {
            time: f64::from(sec) + f64::from(usec) / 1e6,
            src,
            payload: udp[8..udp_len].to_vec(),
        });
    }
    out
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Asserts that `msg` has every field the fixture's decoder recorded in `j`.
pub fn assert_matches_json(msg: &Message<'_>, j: &serde_json::Value, what: &str) {
    assert_eq!(
        u64::from(msg.message_id()),
        j["id"].as_u64().unwrap(),
        "{what}: id"
    );
    let id = msg.metric_id();
    assert_eq!(s(id.host), j["host"].as_str().unwrap(), "{what}: host");
    assert_eq!(s(id.name), j["name"].as_str().unwrap(), "{what}: name");
    assert_eq!(
        u64::from(id.spoof),
        j["spoof"].as_u64().unwrap(),
        "{what}: spoof"
    );
    match msg {
        Message::Metadata(m) => {
            // Fields absent from a (cut) record are skipped; the caller re-encodes anyway.
            let text = |k: &str| j.get(k).map(|v| v.as_str().unwrap().to_owned());
            let num = |k: &str| j.get(k).map(|v| v.as_u64().unwrap());
            assert_eq!(Some(s(m.metric_type)), text("type"), "{what}: type");
            assert_eq!(Some(s(m.name)), text("metric_name"), "{what}");
            assert_eq!(Some(s(m.units)), text("units"), "{what}: units");
            if let Some(slope) = text("slope") {
                assert_eq!(m.slope.as_str(), slope, "{what}: slope");
            }
            if let Some(tmax) = num("tmax") {
                assert_eq!(u64::from(m.tmax), tmax, "{what}: tmax");
            }
            if let Some(dmax) = num("dmax") {
                assert_eq!(u64::from(m.dmax), dmax, "{what}: dmax");
            }
            let Some(want_extra) = j.get("extra") else {
                return;
            };
            let extra: Vec<(String, String)> =
                m.extra.iter().map(|e| (s(e.name), s(e.data))).collect();
            let want: Vec<(String, String)> = want_extra
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_owned(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(extra, want, "{what}: extra");
        }
        Message::Value(v) => {
            assert_eq!(s(v.fmt), j["fmt"].as_str().unwrap(), "{what}: fmt");
            let jv = &j["value"];
            match v.value {
                Value::Str(b) => assert_eq!(s(b), jv.as_str().unwrap(), "{what}"),
                // The reference decoder printed the widened float with 16 digits: compare as f32.
                Value::Float(f) => assert_eq!(f, jv.as_f64().unwrap() as f32, "{what}"),
                Value::Double(d) => assert_eq!(d, jv.as_f64().unwrap(), "{what}"),
                Value::UShort(x) => assert_eq!(i64::from(x), jv.as_i64().unwrap(), "{what}"),
                Value::Short(x) => assert_eq!(i64::from(x), jv.as_i64().unwrap(), "{what}"),
                Value::Int(x) => assert_eq!(i64::from(x), jv.as_i64().unwrap(), "{what}"),
                Value::UInt(x) => assert_eq!(i64::from(x), jv.as_i64().unwrap(), "{what}"),
            }
        }
        Message::MetadataRequest(_) => {}
    }
}
