//! Interop: real gmond 3.7.2 still prints every recorded printf case as the fixture table says
//! (so the table, and through it our formatter, cannot drift from the real program), and our
//! formatter agrees with it on the spot. gmond runs mute on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::Host;
use ganglia_wire::printf::format_to_vec;
use ganglia_wire::xml::read_document;
use ganglia_wire::{encode, Message, Metadata, MetricId, Slope, Value, ValueMsg};
use integration_tests::{fixture, poll_until, LoopbackGmond};
use std::net::UdpSocket;
use std::time::Duration;

struct Case {
    ty: String,
    fmt: String,
    bits: u64,
    int: i64,
    val: String,
}

impl Case {
    fn value(&self) -> Value<'static> {
        match self.ty.as_str() {
            "double" => Value::Double(f64::from_bits(self.bits)),
            "float" => Value::Float(f32::from_bits(self.bits as u32)),
            "int" => Value::Int(self.int as i32),
            "uint" => Value::UInt(self.int as u32),
            "short" => Value::Short(self.int as i16),
            "ushort" => Value::UShort(self.int as u16),
            t => panic!("type {t}"),
        }
    }

    fn xdr_type(&self) -> &'static [u8] {
        match self.ty.as_str() {
            "double" => b"double",
            "float" => b"float",
            "int" => b"int32",
            "uint" => b"uint32",
            "short" => b"int16",
            _ => b"uint16",
        }
    }
}

fn cases() -> Vec<Case> {
    std::fs::read_to_string(fixture("apr-printf/cases.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            Case {
                ty: j["type"].as_str().unwrap().into(),
                fmt: j["fmt"].as_str().unwrap().into(),
                bits: j["bits"]
                    .as_str()
                    .map(|b| u64::from_str_radix(b, 16).unwrap())
                    .unwrap_or(0),
                int: j["int"].as_i64().unwrap_or(0),
                val: j["val"].as_str().unwrap().into(),
            }
        })
        .collect()
}

const HOST: &[u8] = b"10.9.9.9:printf-probe";

fn send(sock: &UdpSocket, port: u16, i: usize, c: &Case) {
    let name = format!("m{i:04}");
    let id = MetricId {
        host: HOST,
        name: name.as_bytes(),
        spoof: true,
    };
    let mut buf = Vec::new();
    encode(
        &Message::Metadata(Metadata {
            id,
            metric_type: c.xdr_type(),
            name: name.as_bytes(),
            units: b"",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 0,
            extra: vec![],
        }),
        &mut buf,
    );
    sock.send_to(&buf, ("127.0.0.1", port)).unwrap();
    buf.clear();
    encode(
        &Message::Value(ValueMsg {
            id,
            fmt: c.fmt.as_bytes(),
            value: c.value(),
        }),
        &mut buf,
    );
    sock.send_to(&buf, ("127.0.0.1", port)).unwrap();
}

fn probe_host(xml: &[u8]) -> Option<Host> {
    let doc = read_document(xml).ok()?;
    doc.clusters
        .into_iter()
        .next()?
        .hosts
        .into_iter()
        .find(|h| h.name == "printf-probe")
}

#[test]
fn real_gmond_prints_every_recorded_case_and_so_do_we() {
    let cases = cases();
    let gmond = LoopbackGmond::start("printf-probe");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, c) in cases.iter().enumerate() {
        send(&sock, gmond.udp_port, i, c);
    }
    // Resend what has not shown up yet (UDP may drop under a burst) until all are there.
    let host = poll_until(Duration::from_secs(60), || {
        let h = probe_host(&gmond.xml())?;
        if h.metrics.len() == cases.len() {
            return Some(h);
        }
        for (i, c) in cases.iter().enumerate() {
            if h.metric(&format!("m{i:04}")).is_none() {
                send(&sock, gmond.udp_port, i, c);
            }
        }
        None
    });
    let mut differ = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let real = &host.metric(&format!("m{i:04}")).unwrap().val;
        let ours =
            String::from_utf8_lossy(&format_to_vec(c.fmt.as_bytes(), &c.value())).into_owned();
        if *real != c.val || ours != *real {
            differ.push(format!(
                "{} {:?}: gmond {real:?}, table {:?}, ours {ours:?}",
                c.ty, c.fmt, c.val
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} cases differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
