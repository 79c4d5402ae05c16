//! Interop on loopback: a real gmond 3.7.2 and gmond-rs, both with the stock metric set, each
//! sending unicast from its own 127.0.0.x address to both receive ports (nothing leaves the
//! machine). Both views must list both hosts with the same metrics and metadata; gstat must
//! read gmond-rs's feed; gmetric (plain and spoofed) sent to both must show in both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::{Cluster, Host};
use ganglia_wire::xml::read_document;
use integration_tests::{
    assert_same_metrics, fast_stock_config_with_channels, free_port, poll_for, poll_until,
    read_xml, require_program, Proc, TempDir,
};
use std::ffi::OsStr;

use std::process::Command;
use std::time::Duration;

const REAL: &str = "127.0.0.2";
const OURS: &str = "127.0.0.3";

struct Ports {
    recv_real: u16,
    recv_ours: u16,
    tcp_real: u16,
    tcp_ours: u16,
}

fn channels(src: &str, recv: u16, tcp: u16, p: &Ports) -> String {
    format!(
        "udp_send_channel {{ host = 127.0.0.1 port = {} bind = {src} }}\n\
         udp_send_channel {{ host = 127.0.0.1 port = {} bind = {src} }}\n\
         udp_recv_channel {{ bind = 127.0.0.1 port = {recv} }}\n\
         tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
         globals {{ host_dmax = 0 }}\n",
        p.recv_real, p.recv_ours
    )
}

fn cluster(port: u16) -> Option<Cluster> {
    read_document(&read_xml(port)?)
        .ok()?
        .clusters
        .into_iter()
        .next()
}

/// Both hosts present with at least `n` metrics each.
fn both_hosts(port: u16, n: usize) -> Option<Cluster> {
    let c = cluster(port)?;
    let ok = [REAL, OURS]
        .iter()
        .all(|ip| c.hosts.iter().any(|h| h.ip == *ip && h.metrics.len() >= n));
    ok.then_some(c)
}

fn host<'a>(c: &'a Cluster, ip: &str) -> &'a Host {
    c.hosts.iter().find(|h| h.ip == ip).unwrap()
}

fn names(h: &Host) -> Vec<String> {
    let mut v: Vec<String> = h.metrics.iter().map(|m| m.name.clone()).collect();
    v.sort();
    v
}

#[test]
fn real_gmond_and_gmond_rs_share_one_cluster_view() {
    let gmond = require_program("gmond", "ganglia-monitor");
    let dir = TempDir::new("interop");
    let p = Ports {
        recv_real: free_port(),
        recv_ours: free_port(),
        tcp_real: free_port(),
        tcp_ours: free_port(),
    };
    let real_conf = dir.path().join("real.conf");
    let ours_conf = dir.path().join("ours.conf");
    std::fs::write(
        &real_conf,
        fast_stock_config_with_channels(&channels(REAL, p.recv_real, p.tcp_real, &p), 5, 10),
    )
    .unwrap();
    std::fs::write(
        &ours_conf,
        fast_stock_config_with_channels(&channels(OURS, p.recv_ours, p.tcp_ours, &p), 5, 10),
    )
    .unwrap();
    let c = OsStr::new("-c");
    let f = OsStr::new("-f");
    let mut real = Proc::spawn("gmond", &gmond, &[c, real_conf.as_os_str(), f]);
    let mut ours = Proc::spawn(
        "gmond-rs",
        integration_tests::bin("gmond-rs"),
        &[c, ours_conf.as_os_str(), f],
    );

    // The stock set, every group collected every 5 s: whichever daemon started second missed
    // the other's start-up metadata and gets it through metadata requests (A.7) within 5 s.
    let show = |port: u16| {
        cluster(port).map(|c| {
            c.hosts
                .iter()
                .map(|h| format!("{} ({} metrics)", h.ip, h.metrics.len()))
                .collect::<Vec<_>>()
        })
    };
    let view_real = poll_for(Duration::from_secs(60), || both_hosts(p.tcp_real, 33))
        .unwrap_or_else(|| panic!("real gmond's view: {:?}", show(p.tcp_real)));
    let view_ours = poll_for(Duration::from_secs(60), || both_hosts(p.tcp_ours, 33))
        .unwrap_or_else(|| panic!("gmond-rs's view: {:?}", show(p.tcp_ours)));
    assert!(real.running() && ours.running());

    // 1. The same metric names for both hosts in both views.
    let want = names(host(&view_real, REAL));
    assert_eq!(want.len(), 33, "{want:?}");
    for (view, label) in [
        (&view_real, "real gmond's view"),
        (&view_ours, "gmond-rs's view"),
    ] {
        for ip in [REAL, OURS] {
            assert_eq!(names(host(view, ip)), want, "{label}, host {ip}");
        }
    }
    // 2. Our metrics carry exactly the metadata real gmond sends for the same metric, and the
    //    values that cannot differ between two daemons on one machine are equal.
    for view in [&view_real, &view_ours] {
        let (r, o) = (host(view, REAL), host(view, OURS));
        assert_same_metrics(r, o, "same view, real vs ours");
        assert!(o.gmond_started > 0, "heartbeat seen");
    }
    // 3. The two documents agree on the host attributes the serving daemon decides.
    assert_eq!(view_ours.name, view_real.name);
    for ip in [REAL, OURS] {
        let (a, b) = (host(&view_real, ip), host(&view_ours, ip));
        assert_eq!(
            (&a.name, a.tmax, a.dmax, &a.location),
            (&b.name, b.tmax, b.dmax, &b.location)
        );
        assert_eq!(a.gmond_started, b.gmond_started, "{ip}: heartbeat");
    }

    // 4. gstat reads gmond-rs's feed.
    let gstat = require_program("gstat", "ganglia-monitor");
    let out = Command::new(gstat)
        .args(["-a", "-i", "127.0.0.1", "-p", &p.tcp_ours.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gstat failed: {text}");
    assert!(text.contains("CLUSTER INFORMATION"), "{text}");
    assert!(
        text.contains(&format!("Name: {}", view_ours.name)),
        "{text}"
    );
    assert!(text.contains("Hosts: 2"), "{text}");
    assert!(text.contains(REAL) && text.contains(OURS), "{text}");

    // 5. gmetric, plain and spoofed, sent to both daemons, shows in both views.
    let gmetric = require_program("gmetric", "ganglia-monitor");
    let gconf = dir.path().join("gmetric.conf");
    std::fs::write(
        &gconf,
        format!(
            "udp_send_channel {{ host = 127.0.0.1 port = {} }}\nudp_send_channel {{ host = 127.0.0.1 port = {} }}\n",
            p.recv_real, p.recv_ours
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let st = Command::new(&gmetric)
            .arg("-c")
            .arg(&gconf)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "gmetric {args:?}");
    };
    run(&[
        "-n",
        "interop_gauge",
        "-v",
        "42.5",
        "-t",
        "float",
        "-u",
        "widgets",
        "-g",
        "interop",
    ]);
    run(&[
        "-n",
        "vm_cpu",
        "-v",
        "12.5",
        "-t",
        "float",
        "-S",
        "10.9.9.9:spoofed-vm",
    ]);
    for port in [p.tcp_real, p.tcp_ours] {
        let c = poll_until(Duration::from_secs(30), || {
            let c = cluster(port)?;
            let plain = c.hosts.iter().any(|h| h.metric("interop_gauge").is_some());
            let spoofed = c
                .host("spoofed-vm")
                .and_then(|h| h.metric("vm_cpu"))
                .is_some();
            (plain && spoofed).then_some(c)
        });
        let h = c
            .hosts
            .iter()
            .find(|h| h.metric("interop_gauge").is_some())
            .unwrap();
        let m = h.metric("interop_gauge").unwrap();
        assert_eq!(
            (m.val.as_str(), m.units.as_str(), m.extra("GROUP")),
            ("42.5", "widgets", Some("interop"))
        );
        assert_eq!(c.host("spoofed-vm").unwrap().ip, "10.9.9.9");
    }
    assert!(real.running() && ours.running(), "both daemons survived");
}
