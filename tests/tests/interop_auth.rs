//! Signed datagrams are plain datagrams to real gmond 3.7.2: metadata and values built by the
//! wire crate's emitter and sealed by its signer, sent to a real gmond bound to 127.0.0.1,
//! show up in its XML with the right values, including datagrams of the largest size the
//! emitter allows when signing (metadata 1464 bytes, values `max_udp_msg_len` 1472). This is
//! the check behind the reference's "gmond ignores bytes after the message" for our trailer.
//!
//! The other direction (gmond-rs signing its own metrics, real gmond receiving them) comes
//! with the daemon's signing (issue 13, step 4); until then the emitter + signer used here
//! are exactly what the daemon's senders will call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::auth::{Key, KeyRing, Signer, Verdict, Verifier, VerifierConfig, TRAILER_LEN};
use ganglia_wire::model::Host;
use ganglia_wire::xml::read_document;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope, Value};
use ganglia_wire::{Error, METADATA_LIMIT};
use integration_tests::{poll_until, LoopbackGmond};
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_UDP_MSG_LEN: usize = 1472;

fn descriptor<'a>(
    name: &'a str,
    metric_type: MetricType,
    format: &'a str,
    desc: &'a str,
) -> MetricDescriptor<'a> {
    MetricDescriptor {
        name,
        metric_type,
        format,
        units: "u",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: Extra::gmond_standard(name.as_bytes(), desc.as_bytes(), b"auth"),
    }
}

/// The longest string (a multiple of 4, so padding adds nothing) for which `emit` succeeds,
/// and the body length it gives.
fn longest(emit: impl Fn(&str, &mut Vec<u8>) -> Result<usize, Error>) -> (String, usize) {
    let mut s = "x".repeat(1600);
    loop {
        let mut out = Vec::new();
        if let Ok(n) = emit(&s, &mut out) {
            return (s, n);
        }
        s.truncate(s.len() - 4);
    }
}

fn signed_host(xml: &[u8]) -> Option<Host> {
    read_document(xml)
        .ok()?
        .clusters
        .into_iter()
        .next()?
        .hosts
        .into_iter()
        .find(|h| h.name == "signed-node")
}

#[test]
fn real_gmond_reads_signed_datagrams_as_plain_ones() {
    let gmond = LoopbackGmond::start("auth");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ring = KeyRing::new([(3, Key::from_bytes([0x11; 32]))], 3).unwrap();
    let mut signer = Signer::new(&ring, 0xfeed);
    let mut verifier = Verifier::new(ring.clone(), VerifierConfig::default());
    // Spoofed, so the host's NAME and IP are ours to choose and no reverse lookup is needed.
    let emitter = Emitter::new(
        Identity::new("unused", Some("signed-node"), Some("10.99.0.1")),
        MAX_UDP_MSG_LEN,
    )
    .reserving(TRAILER_LEN);

    let uint = descriptor("auth_uint", MetricType::UInt32, "%u", "d");
    let double = descriptor("auth_double", MetricType::Double, "%.3f", "d");
    let text = descriptor("auth_text", MetricType::String, "%s", "d");
    // Metadata as long as signing allows (1464 bytes with the trailer): 16 padding extras and
    // a DESC of the length left. Every XML line stays short of gmond's 1023-byte cut, so the
    // document stays well-formed.
    let pads: Vec<String> = (0..16).map(|i| format!("PAD{i:02}")).collect();
    let bigmeta_of = |desc: &str| {
        let mut d = descriptor("auth_bigmeta", MetricType::UInt32, "%u", "");
        d.extra = pads
            .iter()
            .map(|p| Extra {
                name: p.as_bytes(),
                data: &[b'y'; 48],
            })
            .collect();
        let mut out = Vec::new();
        d.extra.push(Extra {
            name: b"DESC",
            data: desc.as_bytes(),
        });
        emitter.metadata(&d, &mut out).map(|_| out)
    };
    let (long_desc, n) = longest(|desc, out| {
        let bytes = bigmeta_of(desc)?;
        out.extend_from_slice(&bytes);
        Ok(bytes.len())
    });
    assert_eq!(n + TRAILER_LEN, METADATA_LIMIT);
    // A value as long as signing allows (1472 bytes with the trailer): gmond ignores a string
    // value's format, so the length goes there and VAL stays short.
    let (long_fmt, n) = longest(|fmt, out| {
        let d = descriptor("auth_bigval", MetricType::String, fmt, "d");
        emitter.value(&d, Value::Str(b"big ok"), out)
    });
    assert_eq!(n + TRAILER_LEN, MAX_UDP_MSG_LEN);
    let bigval = descriptor("auth_bigval", MetricType::String, &long_fmt, "d");

    let metrics: Vec<(&MetricDescriptor, Value)> = vec![
        (&uint, Value::UInt(4242)),
        (&double, Value::Double(2.5)),
        (&text, Value::Str(b"signed hello")),
        (&bigval, Value::Str(b"big ok")),
    ];
    let mut datagrams = Vec::new();
    let mut seal = |mut out: Vec<u8>| {
        let body_len = out.len();
        signer.seal(&mut out, 0, now);
        assert_eq!(out.len(), body_len + TRAILER_LEN);
        assert!(matches!(
            verifier.verify(&out, now),
            Verdict::Authentic { body, key_id: 3, .. } if body.len() == body_len
        ));
        out
    };
    let bigmeta = descriptor("auth_bigmeta", MetricType::UInt32, "%u", "");
    datagrams.push(seal(bigmeta_of(&long_desc).unwrap()));
    let mut out = Vec::new();
    emitter.value(&bigmeta, Value::UInt(7), &mut out).unwrap();
    datagrams.push(seal(out));
    for (d, v) in &metrics {
        for value in [None, Some(*v)] {
            let mut out = Vec::new();
            match value {
                None => emitter.metadata(d, &mut out).unwrap(),
                Some(v) => emitter.value(d, v, &mut out).unwrap(),
            };
            datagrams.push(seal(out));
        }
    }
    assert_eq!(datagrams[0].len(), METADATA_LIMIT);
    assert_eq!(
        datagrams.iter().map(Vec::len).max(),
        Some(MAX_UDP_MSG_LEN),
        "the largest signed value datagram fills max_udp_msg_len"
    );

    // UDP on loopback can still drop under a burst: resend until everything is there.
    let host = poll_until(Duration::from_secs(30), || {
        for d in &datagrams {
            sock.send_to(d, ("127.0.0.1", gmond.udp_port)).unwrap();
        }
        let h = signed_host(&gmond.try_xml()?)?;
        (h.metrics.len() == metrics.len() + 1).then_some(h)
    });
    assert_eq!(host.ip, "10.99.0.1");
    let val = |name: &str| host.metric(name).unwrap().val.clone();
    assert_eq!(val("auth_uint"), "4242");
    assert_eq!(val("auth_double"), "2.500");
    assert_eq!(val("auth_text"), "signed hello");
    assert_eq!(val("auth_bigmeta"), "7");
    assert_eq!(val("auth_bigval"), "big ok");
    let big = host.metric("auth_bigmeta").unwrap();
    assert!(big.extra.contains(&("DESC".to_string(), long_desc.clone())));
    assert_eq!(big.extra.len(), 16 + 1);
    assert_eq!(host.metric("auth_uint").unwrap().ty, "uint32");
}
