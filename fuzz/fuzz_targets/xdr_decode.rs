//! Fuzz target: the XDR decoder on arbitrary datagrams must never panic or over-read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, used)) = ganglia_wire::decode_prefix(data, &ganglia_wire::Limits::default()) {
        assert!(used <= data.len());
    }
});
