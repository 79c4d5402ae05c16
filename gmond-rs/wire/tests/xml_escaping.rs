//! Hostile strings (`& < > " '`, every control byte, DEL, UTF-8, Latin-1 bytes, NUL) through
//! every attribute the writer emits: the document stays well-formed (xmllint), and reading
//! it back gives each value with only the documented substitutions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::Document;
use ganglia_wire::xml::{
    read_document, ClusterAttrs, HostAttrs, MetricAttrs, SlopeText, Val, WriteOptions, XmlWriter,
};
use ganglia_wire::{Slope, Value};
use std::process::Command;

/// What a value becomes after writing and reading back: C-string cut at NUL, controls other
/// than tab/LF/CR replaced by U+FFFD, then read as UTF-8 if valid, else ISO-8859-1.
fn expected(input: &[u8]) -> String {
    let cut = input.split(|&b| b == 0).next().unwrap();
    let mut bytes = Vec::new();
    for &b in cut {
        match b {
            1..=8 | 11 | 12 | 14..=31 => bytes.extend_from_slice("\u{fffd}".as_bytes()),
            _ => bytes.push(b),
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    }
}

fn hostile_strings() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"&<>\"'".to_vec(),
        b"a&amp;b".to_vec(),
        b"<METRIC NAME=\"x\">".to_vec(),
        b"]]>".to_vec(),
        b"tab\there\nnewline\rcr".to_vec(),
        b"del\x7fdel".to_vec(),
        "utf8 é ✓ 漢字".as_bytes().to_vec(),
        vec![b'l', b'a', b't', 0xe9, 0xff, 0x80],
        b"nul\0hidden".to_vec(),
        (1u8..32).collect(),
        b"".to_vec(),
        b"&#1;&#x0;".to_vec(),
    ];
    // A deterministic spray of random bytes (xorshift; no NUL so the whole string counts).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 1..60 {
        let s = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 255) as u8 + 1
            })
            .collect();
        v.push(s);
    }
    v
}

#[test]
fn hostile_attributes_stay_well_formed_and_round_trip() {
    let strings = hostile_strings();
    let mut w = XmlWriter::new(Vec::new(), WriteOptions::default());
    let s0 = &strings[0];
    w.begin(&ClusterAttrs {
        name: s0,
        localtime: 1,
        owner: &strings[1],
        latlong: &strings[2],
        url: &strings[3],
    })
    .unwrap();
    for (i, s) in strings.iter().enumerate() {
        let host_name = [s.as_slice(), format!("#{i}").as_bytes()].concat();
        w.host_start(&HostAttrs {
            name: &host_name,
            ip: s,
            tags: s,
            reported: 1,
            tn: 2,
            tmax: 20,
            dmax: 0,
            location: s,
            gmond_started: 3,
        })
        .unwrap();
        let extra = [(s.clone(), s.clone()), (b"GROUP".to_vec(), s.clone())];
        // Once as a string VAL (gmond's own escaping), once as a numeric VAL whose format
        // carries the hostile text, once as raw text.
        let fmt = [s.as_slice(), b"%u"].concat();
        let vals = [
            Val::Typed {
                fmt: b"%s",
                value: Value::Str(s),
            },
            Val::Typed {
                fmt: &fmt,
                value: Value::UInt(7),
            },
            Val::Text(s),
        ];
        for (k, val) in vals.into_iter().enumerate() {
            w.metric(&MetricAttrs {
                name: format!("m{k}").as_bytes(),
                val,
                ty: s,
                units: s,
                tn: 0,
                tmax: 60,
                dmax: 0,
                slope: if k == 2 {
                    SlopeText::Text(s)
                } else {
                    SlopeText::Wire(Slope(99))
                },
                extra: &extra,
            })
            .unwrap();
        }
        w.host_end().unwrap();
    }
    let xml = w.finish().unwrap();

    // Well-formed for a real XML parser (validity needs TYPE/SLOPE from the DTD's lists).
    let path = std::env::temp_dir().join(format!("hostile-{}.xml", std::process::id()));
    std::fs::write(&path, &xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg(&path)
        .output()
        .expect("xmllint (Debian libxml2-utils) must be installed: the test command installs it");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doc: Document = read_document(&xml).unwrap();
    let c = &doc.clusters[0];
    assert_eq!(c.name, expected(&strings[0]));
    assert_eq!(c.owner, expected(&strings[1]));
    assert_eq!(c.latlong, expected(&strings[2]));
    assert_eq!(c.url, expected(&strings[3]));
    assert_eq!(c.hosts.len(), strings.len());
    for (i, (s, h)) in strings.iter().zip(&c.hosts).enumerate() {
        let e = expected(s);
        if !s.contains(&0) {
            assert_eq!(
                h.name,
                expected(&[s.as_slice(), format!("#{i}").as_bytes()].concat())
            );
        }
        assert_eq!((&h.ip, &h.tags, &h.location), (&e, &e, &e), "host {i}");
        assert_eq!(h.metrics.len(), 3);
        for m in &h.metrics {
            assert_eq!((&m.ty, &m.units), (&e, &e), "host {i} {}", m.name);
            assert_eq!(
                m.extra,
                vec![("GROUP".into(), e.clone()), (e.clone(), e.clone())]
            );
        }
        assert_eq!(h.metrics[0].val, e, "string VAL, host {i}");
        assert_eq!(h.metrics[2].val, e, "text VAL, host {i}");
        assert_eq!(h.metrics[0].slope, "unspecified");
        assert_eq!(h.metrics[2].slope, e);
        if !s.contains(&0) && !s.contains(&b'%') {
            assert_eq!(
                h.metrics[1].val,
                expected(&[s.as_slice(), b"7"].concat()),
                "host {i}"
            );
        }
    }
}
