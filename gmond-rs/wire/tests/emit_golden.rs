//! Golden bytes of the emitter: for each value message a metric can travel in, the metadata and
//! value datagrams it builds are byte for byte the captured ones (bin/01-12 from real gmond
//! 3.7.2 on node1; 30-33 the synthetic short/int shapes; 25 and 27 gmetric's spoofed metadata
//! with SPOOF_HOST).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::fixture;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope, Value};

fn bin(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("bin/{name}"))).unwrap()
}

/// A metric of gmond's own: TITLE, DESC, GROUP and nothing else.
#[allow(clippy::too_many_arguments)]
fn gmond_metric<'a>(
    name: &'a str,
    metric_type: MetricType,
    format: &'a str,
    units: &'a str,
    slope: Slope,
    tmax: u32,
    title: &'a str,
    desc: &'a str,
    group: &'a str,
) -> MetricDescriptor<'a> {
    MetricDescriptor {
        name,
        metric_type,
        format,
        units,
        slope,
        tmax,
        dmax: 0,
        extra: Extra::gmond_standard(title.as_bytes(), desc.as_bytes(), group.as_bytes()),
    }
}

fn assert_emits(
    e: &Emitter,
    d: &MetricDescriptor<'_>,
    value: Value<'_>,
    metadata_bin: &str,
    value_bin: &str,
) {
    let mut out = Vec::new();
    e.metadata(d, &mut out).unwrap();
    assert_eq!(out, bin(metadata_bin), "{metadata_bin}");
    out.clear();
    e.value(d, value, &mut out).unwrap();
    assert_eq!(out, bin(value_bin), "{value_bin}");
}

#[test]
fn gmonds_own_metrics_of_every_stock_value_type() {
    let node1 = Emitter::new(Identity::new("node1", None, None), 1472);
    let cases = [
        (
            gmond_metric(
                "heartbeat",
                MetricType::UInt32,
                "%u",
                "",
                Slope::UNSPECIFIED,
                20,
                "heartbeat",
                "Last heartbeat",
                "core",
            ),
            Value::UInt(1_795_313_226),
            "01-metadata_full-heartbeat-node1.bin",
            "02-uint-heartbeat-node1.bin",
        ),
        (
            gmond_metric(
                "cpu_num",
                MetricType::UInt16,
                "%hu",
                "CPUs",
                Slope::ZERO,
                1200,
                "CPU Count",
                "Total number of CPUs",
                "cpu",
            ),
            Value::UShort(2),
            "03-metadata_full-cpu_num-node1.bin",
            "04-ushort-cpu_num-node1.bin",
        ),
        (
            gmond_metric(
                "load_one",
                MetricType::Float,
                "%.2f",
                " ",
                Slope::BOTH,
                70,
                "One Minute Load Average",
                "One minute load average",
                "load",
            ),
            Value::Float(0.92),
            "05-metadata_full-load_one-node1.bin",
            "06-float-load_one-node1.bin",
        ),
        (
            gmond_metric(
                "disk_total",
                MetricType::Double,
                "%.3f",
                "GB",
                Slope::BOTH,
                1200,
                "Total Disk Space",
                "Total available disk space",
                "disk",
            ),
            Value::Double(270.553174016),
            "07-metadata_full-disk_total-node1.bin",
            "08-double-disk_total-node1.bin",
        ),
        (
            gmond_metric(
                "os_name",
                MetricType::String,
                "%s",
                "",
                Slope::ZERO,
                1200,
                "Operating System",
                "Operating system name",
                "system",
            ),
            Value::Str(b"Linux"),
            "09-metadata_full-os_name-node1.bin",
            "10-string-os_name-node1.bin",
        ),
        (
            gmond_metric(
                "location",
                MetricType::String,
                "%s",
                "(x,y,z)",
                Slope::UNSPECIFIED,
                1200,
                "Location",
                "Location of the machine",
                "core",
            ),
            Value::Str(b"unspecified"),
            "11-metadata_full-location-node1.bin",
            "12-string-location-node1.bin",
        ),
    ];
    for (d, v, md, val) in &cases {
        assert_emits(&node1, d, *v, md, val);
    }
}

#[test]
fn spoofed_short_and_int_metrics() {
    let syn = Emitter::new(
        Identity::new("ignored", Some("synthetic-51"), Some("10.77.0.51")),
        1472,
    );
    let d = |name, metric_type, format| MetricDescriptor {
        name,
        metric_type,
        format,
        units: "u",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: vec![Extra {
            name: b"GROUP",
            data: b"synthetic",
        }],
    };
    assert_emits(
        &syn,
        &d("syn_short", MetricType::Int16, "%hd"),
        Value::Short(-2),
        "30-synthetic-metadata_full-int16-spoofed.bin",
        "31-synthetic-short-value.bin",
    );
    assert_emits(
        &syn,
        &d("syn_int", MetricType::Int32, "%d"),
        Value::Int(-123_456),
        "32-synthetic-metadata_full-int32-spoofed.bin",
        "33-synthetic-int-value.bin",
    );
}

#[test]
fn spoof_host_extra_as_gmetric_sends_it() {
    let vm = Emitter::new(
        Identity::new("node3", Some("vm-guest-1"), Some("10.77.0.9")),
        1472,
    );
    let spoof_host = vm.identity().spoof_host_extra().unwrap();
    let cases = [
        (
            "vm_cpu",
            MetricType::Float,
            "%",
            vec![
                spoof_host,
                Extra {
                    name: b"GROUP",
                    data: b"virt",
                },
                Extra {
                    name: b"TITLE",
                    data: b"VM CPU",
                },
            ],
            "25-gmetric-spoof-metadata_full-vm_cpu.bin",
        ),
        (
            "vm_state",
            MetricType::String,
            "",
            vec![
                spoof_host,
                Extra {
                    name: b"GROUP",
                    data: b"virt",
                },
            ],
            "27-gmetric-spoof-metadata_full-vm_state.bin",
        ),
    ];
    for (name, metric_type, units, extra, file) in cases {
        let d = MetricDescriptor {
            name,
            metric_type,
            format: "%s",
            units,
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 0,
            extra,
        };
        let mut out = Vec::new();
        vm.metadata(&d, &mut out).unwrap();
        assert_eq!(out, bin(file), "{file}");
    }
}
