//! Per-VM metrics end to end: gmond-rs with `libvirt_module` pointed at libvirt's test driver
//! (in-process, no libvirtd) publishes `<vm>.vcpu_num`, `<vm>.vcpu_state`, `<vm>.vmem_total`
//! and `vnode_*` on its own HOST, with dmax 600; and the balancer's snapshot reader finds the
//! VMs and their host in that very feed. Loopback only: gmond-rs sends to itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::Host;
use ganglia_wire::xml::read_document;
use integration_tests::{free_port, poll_until, read_xml, Proc, TempDir};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

fn node_xml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../metrics/tests/data/libvirt/node.xml")
        .canonicalize()
        .unwrap()
}

#[test]
fn libvirt_domains_show_as_virtual_node_metrics() {
    let dir = TempDir::new("vm-metrics");
    let (udp, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 }}\n\
             cluster {{ name = \"hypervisors\" }}\n\
             udp_send_channel {{ host = 127.0.0.1 port = {udp} }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
             modules {{\n  module {{\n    name = \"libvirt_module\"\n    path = \"builtin\"\n\
               param uri {{ value = \"test://{}\" }}\n    param collect_every {{ value = 1 }}\n  }}\n}}\n",
            node_xml().display()
        ),
    )
    .unwrap();
    let mut d = Proc::spawn(
        "gmond-rs",
        integration_tests::bin("gmond-rs"),
        &[OsStr::new("-c"), conf.as_os_str()],
    );
    let me: Host = poll_until(Duration::from_secs(30), || {
        let doc = read_document(&read_xml(tcp)?).ok()?;
        let c = doc.clusters.into_iter().next()?;
        let h = c.hosts.into_iter().find(|h| h.ip == "127.0.0.1")?;
        (h.metric("vnode_domains").is_some() && h.metric("cache.vcpu_num").is_some()).then_some(h)
    });
    assert!(d.running());
    let val = |n: &str| {
        me.metric(n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .val
            .clone()
    };
    // vCPUs and memory exactly as node.xml defines them (web1: current 2 of max 4).
    assert_eq!(val("web1.vcpu_num"), "2");
    assert_eq!(val("db.example.com.vcpu_num"), "1");
    assert_eq!(val("cache.vcpu_num"), "3");
    assert_eq!(val("web1.vcpu_state"), "running");
    assert_eq!(val("spare.vcpu_state"), "shutoff");
    assert!(
        me.metric("spare.vcpu_num").is_none(),
        "a shut-off VM has no load metrics"
    );
    let web_mem: f64 = val("web1.vmem_total").parse().unwrap();
    assert_eq!(web_mem, 786_432.0);
    // A name outside the convention's characters is rewritten, deterministically.
    assert!(me
        .metrics
        .iter()
        .any(|m| m.name.starts_with("batch__job__7_--") && m.name.ends_with(".vcpu_state")));
    let m = me.metric("web1.vcpu_num").unwrap();
    assert_eq!((m.tmax, m.dmax), (60, 600));
    assert!(m.extra("VM_UUID").is_some());
    // node.xml: 8 active CPUs at 2400 MHz.
    assert_eq!(val("vnode_cpu_num"), "8");
    assert_eq!(val("vnode_cpu_speed"), "2400");

    // The balancer reads the same feed into its model.
    let doc = read_document(&read_xml(tcp).unwrap()).unwrap();
    let snap =
        balancer::snapshot::Snapshot::from_cluster(&doc.clusters[0], doc.clusters[0].localtime);
    let names: Vec<&str> = snap.vms.iter().map(|v| v.name.as_str()).collect();
    for vm in ["web1", "db.example.com", "cache"] {
        assert!(
            names.contains(&vm),
            "{vm} not in the balancer's snapshot: {names:?}"
        );
    }
    let web = snap.vms.iter().find(|v| v.name == "web1").unwrap();
    assert_eq!(web.host, me.name);
}
