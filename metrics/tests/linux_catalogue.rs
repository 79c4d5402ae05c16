//! The Linux metric catalogue against what real gmond 3.7.2 announced in the captured
//! fixtures (XML dump of a stock node, `gmond -m` listing).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod linux_support;

use gmond_metrics::linux::{catalogue, lookup, ValueType};
use linux_support::{fixture, host_metrics};

#[test]
fn every_metric_of_a_stock_node_matches_the_catalogue() {
    let xml = std::fs::read_to_string(fixture("xml/node1-t30-initial.xml")).unwrap();
    for host in ["node1", "node2", "node3"] {
        let metrics = host_metrics(&xml, Some(host));
        assert_eq!(metrics.len(), 33, "{host}: {:?}", metrics.keys());
        for (name, m) in &metrics {
            let spec = lookup(name).unwrap_or_else(|| panic!("{name} missing from catalogue"));
            assert!(spec.default, "{name} is sent by stock gmond");
            assert_eq!(m.attr("TYPE"), spec.value_type.type_name(), "{name} TYPE");
            assert_eq!(m.attr("UNITS"), spec.units, "{name} UNITS");
            assert_eq!(m.attr("SLOPE"), spec.slope_xml(), "{name} SLOPE");
            assert_eq!(m.attr("TMAX"), spec.tmax.to_string(), "{name} TMAX");
            assert_eq!(m.attr("DMAX"), spec.dmax.to_string(), "{name} DMAX");
            assert_eq!(m.extra("GROUP"), spec.group, "{name} GROUP");
            assert_eq!(m.extra("TITLE"), spec.title, "{name} TITLE");
            assert_eq!(m.extra("DESC"), spec.desc, "{name} DESC");
            assert_eq!(m.extras.len(), 3, "{name}: exactly TITLE, DESC, GROUP");
        }
        // The catalogue's default set is exactly what a stock node prints, plus the two
        // core metrics receivers consume instead of printing.
        let mut defaults: Vec<_> = catalogue()
            .iter()
            .filter(|s| s.default && s.name != "heartbeat" && s.name != "location")
            .map(|s| s.name.to_string())
            .collect();
        defaults.sort();
        let printed: Vec<_> = metrics.keys().cloned().collect();
        assert_eq!(defaults, printed);
    }
}

#[test]
fn value_formats_render_the_fixture_values() {
    // The VAL texts of the fixture are printf(format, value): check that the catalogue's
    // format gives the same number of decimals.
    let xml = std::fs::read_to_string(fixture("xml/node1-t30-initial.xml")).unwrap();
    for (name, m) in host_metrics(&xml, Some("node1")) {
        let spec = lookup(&name).unwrap();
        let val = m.attr("VAL");
        let decimals = val.split_once('.').map_or(0, |(_, d)| d.len());
        let expected = match spec.format {
            "%.0f" | "%u" | "%hu" => 0,
            "%.1f" => 1,
            "%.2f" => 2,
            "%.3f" => 3,
            "%s" => continue,
            f => panic!("unexpected format {f}"),
        };
        assert_eq!(decimals, expected, "{name}={val} with {}", spec.format);
        if matches!(spec.value_type, ValueType::U16 | ValueType::U32) {
            val.parse::<u32>().unwrap();
        }
    }
}

#[test]
fn gmond_m_lists_the_same_names_descriptions_and_modules() {
    let text = std::fs::read_to_string(fixture("conf/gmond-m.txt")).unwrap();
    let mut listed = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line.split_once('\t').unwrap();
        let name = name.trim_end();
        let (desc, module) = rest.rsplit_once(" (module ").unwrap();
        let module = module.trim_end_matches(')');
        let spec = lookup(name).unwrap_or_else(|| panic!("{name} missing from catalogue"));
        assert_eq!(spec.desc, desc, "{name} DESC");
        assert_eq!(spec.module, module, "{name} module");
        listed.push(name.to_string());
    }
    listed.sort();
    let mut all: Vec<_> = catalogue().iter().map(|s| s.name.to_string()).collect();
    all.sort();
    assert_eq!(listed, all);
}

#[test]
fn wire_ids_follow_the_fixture_packets() {
    // bin/04 is cpu_num's value packet (id 129 = ushort), bin/06 load_one (134 float),
    // bin/08 disk_total (135 double), bin/10 os_name (133 string), bin/02 heartbeat (132).
    for (file, name) in [
        ("bin/02-uint-heartbeat-node1.bin", "heartbeat"),
        ("bin/04-ushort-cpu_num-node1.bin", "cpu_num"),
        ("bin/06-float-load_one-node1.bin", "load_one"),
        ("bin/08-double-disk_total-node1.bin", "disk_total"),
        ("bin/10-string-os_name-node1.bin", "os_name"),
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let id = u32::from_be_bytes(bytes[..4].try_into().unwrap());
        let spec = lookup(name).unwrap();
        assert_eq!(id, spec.value_type.wire_id(), "{name}");
        // The format string follows metric_id (host, name, spoof flag).
        let fmt = spec.format.as_bytes();
        assert!(
            bytes
                .windows(fmt.len() + 4)
                .any(|w| w[..4] == (fmt.len() as u32).to_be_bytes() && &w[4..] == fmt),
            "{name}: format {} not in packet",
            spec.format
        );
    }
}

#[test]
fn metadata_packets_carry_the_catalogue_fields() {
    // bin/03 is cpu_num's metadata: type, name, units, slope, tmax, dmax, then extras.
    let bytes = std::fs::read(fixture("bin/03-metadata_full-cpu_num-node1.bin")).unwrap();
    let mut r = Reader { b: &bytes, at: 0 };
    assert_eq!(r.u32(), 128);
    let _host = r.string();
    assert_eq!(r.string(), "cpu_num");
    let _spoof = r.u32();
    let spec = lookup("cpu_num").unwrap();
    assert_eq!(r.string(), spec.value_type.type_name());
    assert_eq!(r.string(), "cpu_num");
    assert_eq!(r.string(), spec.units);
    assert_eq!(r.u32(), spec.slope_number());
    assert_eq!(r.u32(), spec.tmax);
    assert_eq!(r.u32(), spec.dmax);
    assert_eq!(r.u32(), 3);
    let extras: Vec<_> = (0..3).map(|_| (r.string(), r.string())).collect();
    assert_eq!(
        extras,
        vec![
            ("TITLE".to_string(), spec.title.to_string()),
            ("DESC".to_string(), spec.desc.to_string()),
            ("GROUP".to_string(), spec.group.to_string()),
        ]
    );
    let hb = std::fs::read(fixture("bin/01-metadata_full-heartbeat-node1.bin")).unwrap();
    let mut r = Reader { b: &hb, at: 0 };
    r.u32();
    r.string();
    r.string();
    r.u32();
    let spec = lookup("heartbeat").unwrap();
    assert_eq!(r.string(), "uint32");
    assert_eq!(r.string(), "heartbeat");
    assert_eq!(r.string(), spec.units);
    assert_eq!(r.u32(), spec.slope_number());
    assert_eq!(r.u32(), spec.tmax);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_be_bytes(self.b[self.at..self.at + 4].try_into().unwrap());
        self.at += 4;
        v
    }
    fn string(&mut self) -> String {
        let n = self.u32() as usize;
        let s = String::from_utf8(self.b[self.at..self.at + n].to_vec()).unwrap();
        self.at += n.div_ceil(4) * 4;
        s
    }
}
