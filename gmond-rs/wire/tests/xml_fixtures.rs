//! The XML writer against real gmond 3.7.2 dumps: each fixture document is rebuilt from the
//! captured packets (typed values with their senders' printf formats, metadata with its
//! extras in packet order) through `XmlWriter`, and must list the same hosts and metrics with
//! the same attributes (compared as sets: gmond's order is random) and pass
//! `xmllint --valid`. Time fields (LOCALTIME, REPORTED, TN, GMOND_STARTED) are the dump's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::{fixture, read_pcap, Datagram};
use ganglia_wire::model::{Document, Host};
use ganglia_wire::xml::{
    read_document, ClusterAttrs, HostAttrs, MetricAttrs, SlopeText, Val, WriteOptions, XmlWriter,
};
use ganglia_wire::{decode, Extra, Message, Metadata, ValueMsg};
use std::process::Command;

const DUMPS: &[&str] = &[
    "node1-t30-initial.xml",
    "node3-t30-initial.xml",
    "node1-t36-after-gmetric.xml",
    "node1-t42-after-spoof.xml",
    "node2-t42-after-spoof.xml",
    "node1-t55-just-restarted.xml",
    "node1-t97-restart+45s.xml",
    "node1-t127-restart+75s.xml",
];

/// Whether a captured message speaks for the host with this IP (spoofed "IP:name", or
/// sent from that address).
fn from_host(d: &Datagram, msg: &Message<'_>, ip: &str) -> bool {
    let id = msg.metric_id();
    if id.spoof {
        id.host.split(|&b| b == b':').next() == Some(ip.as_bytes())
    } else {
        d.src.to_string() == ip
    }
}

/// The last metadata and the last value for each metric of `host` sent before `until`.
fn latest<'a>(
    pcap: &'a [Datagram],
    ip: &str,
    metric: &str,
    until: f64,
) -> (Option<Metadata<'a>>, Option<ValueMsg<'a>>) {
    let (mut md, mut val) = (None, None);
    for d in pcap.iter().filter(|d| d.time < until) {
        let msg = decode(&d.payload).unwrap();
        if !from_host(d, &msg, ip) || msg.metric_id().name != metric.as_bytes() {
            continue;
        }
        match msg {
            Message::Metadata(m) => md = Some(m),
            Message::Value(v) => val = Some(v),
            Message::MetadataRequest(_) => {}
        }
    }
    (md, val)
}

fn rebuild(real: &Document, pcap: &[Datagram]) -> Vec<u8> {
    let c = &real.clusters[0];
    // Packets of the dump's second may or may not have been in: gmond dumped within it.
    let until = c.localtime as f64 + 1.0;
    let mut w = XmlWriter::new(Vec::new(), WriteOptions::default());
    w.begin(&ClusterAttrs {
        name: c.name.as_bytes(),
        localtime: c.localtime,
        owner: c.owner.as_bytes(),
        latlong: c.latlong.as_bytes(),
        url: c.url.as_bytes(),
    })
    .unwrap();
    for h in &c.hosts {
        w.host_start(&HostAttrs {
            name: h.name.as_bytes(),
            ip: h.ip.as_bytes(),
            tags: h.tags.as_bytes(),
            reported: h.reported,
            tn: h.tn,
            tmax: h.tmax,
            dmax: h.dmax,
            location: h.location.as_bytes(),
            gmond_started: h.gmond_started as u32,
        })
        .unwrap();
        for m in &h.metrics {
            // TN = floor(dump time - arrival), so the value arrived before LOCALTIME + 1 - TN.
            let (md, _) = latest(pcap, &h.ip, &m.name, until);
            let (_, val) = latest(pcap, &h.ip, &m.name, until - m.tn as f64);
            let md = md.unwrap_or_else(|| panic!("{}/{}: no metadata captured", h.name, m.name));
            let val = val.unwrap_or_else(|| panic!("{}/{}: no value captured", h.name, m.name));
            w.metric::<Extra<'_>>(&MetricAttrs {
                name: m.name.as_bytes(),
                val: Val::Typed {
                    fmt: val.fmt,
                    value: val.value,
                },
                ty: md.metric_type,
                units: md.units,
                tn: m.tn,
                tmax: md.tmax,
                dmax: md.dmax,
                slope: SlopeText::Wire(md.slope),
                extra: &md.extra,
            })
            .unwrap();
        }
        w.host_end().unwrap();
    }
    w.finish().unwrap()
}

/// Hosts and their metrics in a canonical order, so documents compare as sets.
fn canonical(mut doc: Document) -> Document {
    for c in &mut doc.clusters {
        c.hosts.sort_by(|a, b| a.name.cmp(&b.name));
        for h in &mut c.hosts {
            h.metrics.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    doc
}

pub fn xmllint_valid(xml: &[u8], name: &str) {
    let dir = tempfile_dir();
    let path = dir.join(name.replace('+', "_"));
    std::fs::write(&path, xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--valid", "--noout"])
        .arg(&path)
        .output()
        .expect("xmllint (Debian libxml2-utils) must be installed: the test command installs it");
    assert!(
        out.status.success(),
        "xmllint --valid rejected {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ganglia-wire-xml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_fixture_dump_is_rebuilt_from_its_packets() {
    let pcap = read_pcap(&std::fs::read(fixture("pcap/testbed-3nodes.pcap")).unwrap());
    let mut metrics_checked = 0;
    for name in DUMPS {
        let raw = std::fs::read(fixture(&format!("xml/{name}"))).unwrap();
        let real = read_document(&raw).unwrap();
        assert_eq!(real.clusters.len(), 1, "{name}");
        let ours = rebuild(&real, &pcap);
        // Identical prolog and DTD, and the same GANGLIA_XML line.
        let head = |b: &[u8]| {
            b.split(|&c| c == b'\n')
                .take(53)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        };
        assert_eq!(head(&ours), head(&raw), "{name}: prolog/DTD/root differ");
        let back = read_document(&ours).unwrap();
        let (want, got) = (canonical(real.clone()), canonical(back));
        for (hw, hg) in want.clusters[0].hosts.iter().zip(&got.clusters[0].hosts) {
            compare_host(name, hw, hg);
            metrics_checked += hw.metrics.len();
        }
        assert_eq!(got, want, "{name}");
        xmllint_valid(&ours, name);
    }
    assert!(metrics_checked > 500, "checked {metrics_checked} metrics");
}

/// A readable first difference before the whole-document assertion.
fn compare_host(dump: &str, want: &Host, got: &Host) {
    assert_eq!(got.name, want.name, "{dump}: host set");
    let names = |h: &Host| h.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{dump}/{}: metric set", want.name);
    for (mw, mg) in want.metrics.iter().zip(&got.metrics) {
        assert_eq!(mg, mw, "{dump}/{}/{}", want.name, mw.name);
    }
}

#[test]
fn real_dumps_pass_xmllint_too() {
    // The reference point for the check above: the fixtures themselves are valid.
    for name in DUMPS {
        xmllint_valid(
            &std::fs::read(fixture(&format!("xml/{name}"))).unwrap(),
            name,
        );
    }
}

#[test]
fn allow_extra_data_off_drops_the_blocks() {
    let mut w = XmlWriter::new(
        Vec::new(),
        WriteOptions {
            allow_extra_data: false,
        },
    );
    w.begin(&ClusterAttrs {
        name: b"c",
        localtime: 1,
        owner: b"unspecified",
        latlong: b"unspecified",
        url: b"unspecified",
    })
    .unwrap();
    w.host_start(&HostAttrs {
        name: b"h",
        ip: b"10.0.0.1",
        tags: b"",
        reported: 1,
        tn: 0,
        tmax: 20,
        dmax: 0,
        location: b"unspecified",
        gmond_started: 0,
    })
    .unwrap();
    let extra = [(&b"GROUP"[..], &b"cpu"[..])];
    w.metric(&MetricAttrs {
        name: b"m",
        val: Val::Text(b"1"),
        ty: b"uint32",
        units: b"",
        tn: 0,
        tmax: 60,
        dmax: 0,
        slope: SlopeText::Text(b"both"),
        extra: &extra,
    })
    .unwrap();
    w.host_end().unwrap();
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    let body = &out[ganglia_wire::xml::DTD.len()..];
    assert!(!body.contains("EXTRA_DATA"), "{body}");
    assert!(out.ends_with(
        "<METRIC NAME=\"m\" VAL=\"1\" TYPE=\"uint32\" UNITS=\"\" TN=\"0\" TMAX=\"60\" DMAX=\"0\" SLOPE=\"both\">\n</METRIC>\n</HOST>\n</CLUSTER>\n</GANGLIA_XML>\n"
    ));
    xmllint_valid(out.as_bytes(), "no-extra.xml");
}
