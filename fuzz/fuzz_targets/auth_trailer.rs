//! Fuzz target: the verifier of signed datagrams never panics and never calls forged bytes
//! authentic; a datagram signed here always verifies, and with its last byte flipped never.
//! Seeds (`fuzz/seeds/auth_trailer`) are the 3.7.2 capture's datagrams signed with this
//! target's key at its `NOW`, so the fuzzer starts on the authentic path.
#![no_main]
use ganglia_wire::auth::{Key, KeyRing, Signer, Verdict, Verifier, VerifierConfig};
use ganglia_wire::{decode_prefix, Limits};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = KeyRing::new([(1, Key::from_bytes([0x5a; 32]))], 1) else {
        return;
    };
    let mut v = Verifier::new(ring.clone(), VerifierConfig::default());
    let first = v.verify(data, NOW);
    if let Verdict::Unsigned(b) = first {
        assert_eq!(b, data);
    }
    // Whatever the first verdict, the same bytes again are never authentic (a replay).
    assert!(!matches!(v.verify(data, NOW), Verdict::Authentic { .. }));

    // The input as a body: if it is exactly one message, its signed form verifies.
    let unbounded = Limits {
        max_datagram: usize::MAX,
        max_string: usize::MAX,
        max_extra: usize::MAX,
    };
    if matches!(decode_prefix(data, &unbounded), Ok((_, n)) if n == data.len()) {
        let mut signed = Vec::new();
        Signer::new(&ring, 9).sign(data, NOW, &mut signed);
        let mut fresh = Verifier::new(ring.clone(), VerifierConfig::default());
        match fresh.verify(&signed, NOW) {
            Verdict::Authentic { body, .. } => assert_eq!(body, data),
            other => panic!("own signature refused: {other:?}"),
        }
        let last = signed.len() - 1;
        signed[last] ^= 0x80;
        let mut fresh = Verifier::new(ring, VerifierConfig::default());
        assert!(matches!(fresh.verify(&signed, NOW), Verdict::Rejected(_)));
    }
});
