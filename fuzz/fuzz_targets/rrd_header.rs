//! Fuzz target: the RRD file parser (header, journal tail) must never panic, and whatever it
//! accepts must survive info, fetch, update and re-serialisation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = rrd::Rrd::from_bytes(data) {
        let _ = r.info();
        let last = r.last_update().secs;
        let _ = r.fetch(rrd::Cf::Average, last - 3600, last, 1);
        let n = r.ds().len();
        let _ = r.update(&rrd::Update::new(last + 1, &vec![rrd::Value::Float(1.0); n]));
        let again = rrd::Rrd::from_bytes(&r.to_bytes());
        assert!(again.is_ok(), "re-serialised file does not parse");
    }
});
