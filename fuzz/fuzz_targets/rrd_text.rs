//! Fuzz target: rrdtool's text syntaxes as users type them (`DS:...`, `RRA:...`, `T:V:V`
//! updates, `--template` lists) never panic, and an accepted layout can create an archive
//! that applies an accepted update without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rrd::{DsDef, Layout, RraDef, Rrd, Template, Update};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (ds, rra, upd, tpl) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let ds = DsDef::parse(ds);
    let rra = RraDef::parse(rra);
    let update = Update::parse(upd);
    if let (Ok(ds), Ok(rra)) = (ds, rra) {
        if let Ok(t) = Template::new(tpl, std::slice::from_ref(&ds)) {
            let _ = t.parse(upd);
        }
        // Keep archives small: the fuzzer is after panics, not allocation size.
        if rra.rows <= 10_000 && rra.pdp_per_row <= 10_000 {
            let layout = Layout::new(60, 1_000_000).ds(ds).rra(rra);
            if let (Ok(mut rrd), Ok(u)) = (Rrd::create(&layout), update) {
                let _ = rrd.update(&u);
                let _ = rrd.to_bytes();
            }
        }
    }
});
