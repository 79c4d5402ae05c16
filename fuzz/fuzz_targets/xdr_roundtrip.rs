//! Fuzz target: decode -> encode -> decode gives the same message, and the encoding is exactly
//! as long as the bytes the first decode consumed.
#![no_main]
use ganglia_wire::{decode, decode_prefix, encode, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((msg, used)) = decode_prefix(data, &Limits::default()) else {
        return;
    };
    let mut again = Vec::new();
    encode(&msg, &mut again);
    assert_eq!(again.len(), used);
    let back = decode(&again).expect("our own encoding decodes");
    assert_eq!(back, msg);
    // Formatting the value as gmond would never panics either.
    if let ganglia_wire::Message::Value(v) = &msg {
        let _ = ganglia_wire::printf::format_to_vec(v.fmt, &v.value);
    }
});
