//! Test helpers shared by ganglia-wire's integration tests: fixture paths, a classic-pcap
//! reader, and comparison of decoded messages with the fixtures' JSON decodings.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::{Message, Value};
use std::path::PathBuf;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ganglia-3.7.2")
        .join(rel)
}

#[allow(unused_imports)] // each test binary uses a different part
pub use integration_tests::pcap::{read_pcap, Datagram};

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
