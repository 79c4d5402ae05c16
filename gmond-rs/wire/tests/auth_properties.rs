//! Property tests of authenticated datagrams: arbitrary bytes never panic the verifier, every
//! signed message verifies, and no single flipped byte of a signed datagram passes as
//! authentic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::auth::{Key, KeyRing, Rejection, Signer, Verdict, Verifier, VerifierConfig};
use ganglia_wire::{encode, Extra, Message, Metadata, MetricId, Slope, Value, ValueMsg};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;

fn ring() -> KeyRing {
    KeyRing::new(
        [
            (1, Key::from_bytes([0x5a; 32])),
            (2, Key::from_bytes([7; 32])),
        ],
        1,
    )
    .unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(ring(), VerifierConfig::default())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// A body: a value or metadata message from arbitrary parts.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        bytes(),
        bytes(),
        any::<bool>(),
        bytes(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(host, name, spoof, text, n, meta)| {
            let id = MetricId {
                host: &host,
                name: &name,
                spoof,
            };
            let msg = if meta {
                Message::Metadata(Metadata {
                    id,
                    metric_type: b"string",
                    name: &name,
                    units: &text,
                    slope: Slope(n % 6),
                    tmax: n,
                    dmax: 0,
                    extra: vec![Extra {
                        name: b"GROUP",
                        data: &text,
                    }],
                })
            } else {
                Message::Value(ValueMsg {
                    id,
                    fmt: b"%s",
                    value: Value::Str(&text),
                })
            };
            let mut out = Vec::new();
            encode(&msg, &mut out);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1600),
                                   now in any::<u64>()) {
        let mut v = verifier();
        match v.verify(&data, now) {
            Verdict::Unsigned(b) => prop_assert_eq!(b, &data[..]),
            Verdict::Authentic { .. } => prop_assert!(false, "forged without the key"),
            Verdict::Rejected(_) => {}
        }
    }

    #[test]
    fn arbitrary_trailers_after_a_real_body_never_verify(b in body(),
                                                         tail in prop::collection::vec(any::<u8>(), 1..60)) {
        let mut data = b.clone();
        data.extend_from_slice(&tail);
        let mut v = verifier();
        prop_assert!(matches!(v.verify(&data, NOW), Verdict::Rejected(_)));
    }

    #[test]
    fn signed_verifies_and_any_flipped_byte_does_not(b in body(), sender in any::<u64>(),
                                                     at in any::<prop::sample::Index>(),
                                                     mask in 1u8..=255) {
        let mut s = Signer::new(&ring(), sender);
        let mut d = Vec::new();
        s.sign(&b, NOW, &mut d);
        match verifier().verify(&d, NOW) {
            Verdict::Authentic { body, key_id: 1, sender: got, seq: 0, time: NOW } => {
                prop_assert_eq!(body, &b[..]);
                prop_assert_eq!(got, sender);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let i = at.index(d.len());
        d[i] ^= mask;
        // A fresh verifier, so a rejection is never just "seen before".
        match verifier().verify(&d, NOW) {
            Verdict::Authentic { .. } => prop_assert!(false, "byte {} flipped still authentic", i),
            // A flipped trailer byte is always a rejection.
            Verdict::Unsigned(_) => prop_assert!(i < b.len(), "trailer byte {} flipped: unsigned", i),
            Verdict::Rejected(r) => {
                if i >= b.len() + 4 && i < b.len() + 8 {
                    prop_assert!(matches!(r, Rejection::UnknownKey(_) | Rejection::BadMac));
                }
            }
        }
    }
}

/// The fuzz target's seeds are the capture's datagrams signed with its key at its `NOW`: they
/// must stay authentic, or the fuzzer starts off the interesting path.
#[test]
fn fuzz_seeds_are_authentic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/auth_trailer");
    let ring = KeyRing::new([(1, Key::from_bytes([0x5a; 32]))], 1).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut v = Verifier::new(ring.clone(), VerifierConfig::default());
        assert!(matches!(v.verify(&data, NOW), Verdict::Authentic { .. }));
        n += 1;
    }
    assert!(n >= 30, "{n} seeds");
}
