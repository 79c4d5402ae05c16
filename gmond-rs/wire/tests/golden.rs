//! Golden bytes: every captured payload from real gmond 3.7.2 / gmetric (fixtures bin/ and
//! pcap/) decodes to what the fixture's reference decoder recorded and re-encodes to the very
//! same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::{assert_matches_json, fixture, read_pcap};
use ganglia_wire::{decode_prefix, encode, Limits, Message};

/// bin/INDEX.txt: each file name is followed (same line or next) by its JSON decoding.
fn index() -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(fixture("bin/INDEX.txt")).unwrap();
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(json_at) = line.find('{') {
            let name = line[..json_at].split_whitespace().next().map(str::to_owned);
            let name = name
                .filter(|n| n.ends_with(".bin"))
                .or(pending.take())
                .unwrap();
            out.push((name, parse_possibly_cut(&line[json_at..])));
        } else {
            pending = line.split_whitespace().next().map(str::to_owned);
        }
    }
    out
}

/// Two INDEX lines (30 and 32) were cut mid-object; keep the fields that are complete. The
/// byte-exact re-encoding still checks the rest.
fn parse_possibly_cut(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let cut = text.rfind(", \"").expect("at least one complete field");
        serde_json::from_str(&format!("{}}}", &text[..cut])).unwrap()
    })
}

fn roundtrip(bytes: &[u8], j: &serde_json::Value, what: &str) -> usize {
    let (msg, used) = decode_prefix(bytes, &Limits::default())
        .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
    assert_matches_json(&msg, j, what);
    if let Some(consumed) = j.get("consumed").and_then(|c| c.as_u64()) {
        assert_eq!(used as u64, consumed, "{what}: consumed");
    }
    let mut again = Vec::new();
    encode(&msg, &mut again);
    assert_eq!(again, &bytes[..used], "{what}: re-encoding differs");
    used
}

#[test]
fn every_bin_fixture_decodes_and_reencodes_byte_for_byte() {
    let entries = index();
    let files: Vec<_> = std::fs::read_dir(fixture("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    assert_eq!(files.len(), 33);
    assert_eq!(entries.len(), files.len(), "INDEX covers every .bin");
    let mut ids = std::collections::BTreeSet::new();
    for (name, j) in &entries {
        let bytes = std::fs::read(fixture(&format!("bin/{name}"))).unwrap();
        let used = roundtrip(&bytes, j, name);
        assert_eq!(used, bytes.len(), "{name}: whole file is one message");
        ids.insert(j["id"].as_u64().unwrap());
    }
    // All nine message ids are covered by the fixtures.
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        (128..=136).collect::<Vec<_>>()
    );
}

#[test]
fn every_pcap_datagram_decodes_like_the_reference_decoder() {
    let pcap = read_pcap(&std::fs::read(fixture("pcap/testbed-3nodes.pcap")).unwrap());
    let decoded = std::fs::read_to_string(fixture("pcap/testbed-3nodes.decoded.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = decoded
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pcap.len(), 713);
    assert_eq!(pcap.len(), lines.len());
    let mut requests = 0;
    for (i, (d, j)) in pcap.iter().zip(&lines).enumerate() {
        assert_eq!(
            d.src.to_string(),
            j["src"].as_str().unwrap(),
            "datagram {i}: src"
        );
        let used = roundtrip(&d.payload, j, &format!("datagram {i}"));
        assert_eq!(used, d.payload.len());
        if matches!(
            ganglia_wire::decode(&d.payload).unwrap(),
            Message::MetadataRequest(_)
        ) {
            requests += 1;
        }
    }
    assert!(requests > 0, "the capture includes metadata requests");
}
