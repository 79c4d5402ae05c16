//! Fuzz target: gmond-rs's query-channel request line (`METRICS <list>[ EXTRAS <list>]`), read
//! from any client that reaches the port. A line is refused with an error or accepted, never
//! a panic; an accepted one survives its own request line unchanged, and matching names
//! against it does not panic either.
#![no_main]
use ganglia_wire::filter::MetricFilter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = MetricFilter::from_request(data) else {
        return;
    };
    let line = f.request_line();
    assert_eq!(MetricFilter::from_request(line.as_bytes()).as_ref(), Ok(&f));
    let _ = f.matches(data) || f.keeps_extra(data);
});
