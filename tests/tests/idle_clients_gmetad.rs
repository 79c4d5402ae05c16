//! Issue 13: clients that connect to gmond-rs's XML port and never read must not starve real
//! gmetad. gmond-rs runs under an open-file limit of 256 with a document of several
//! megabytes; 400 idle connections are opened from three other loopback addresses; real
//! gmetad 3.7.2, polling every second, keeps getting complete documents: a value changed after
//! the attack began shows up in gmetad's own XML, twice in a row.
//! Everything on 127.0.0.0/8; gmetad writes its RRDs under a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::xml::read_document;
use ganglia_wire::Value;
use integration_tests::{
    free_port, idle_client, metric_datagrams, poll_for, read_xml, require_program,
};
use integration_tests::{Proc, TempDir};
use std::ffi::OsStr;
use std::net::UdpSocket;
use std::time::Duration;

/// String metric `name` = `v` for the spoofed host `host`. gmetad keeps no RRD for strings,
/// so a large document costs it no disk.
fn string_metric(host: &str, name: &str, v: &str) -> [Vec<u8>; 2] {
    metric_datagrams(host, name, true, "string", "%s", Value::Str(v.as_bytes()))
}

/// The marker host's `marker` value in gmetad's XML (its xml_port dumps the whole grid).
fn marker_in_gmetad(xml_port: u16) -> Option<String> {
    let doc = read_document(&read_xml(xml_port)?).ok()?;
    let host = doc.clusters.iter().find_map(|c| c.host("marker-node"))?;
    Some(host.metric("marker")?.val.clone())
}

#[test]
fn real_gmetad_keeps_polling_while_idle_clients_hold_connections() {
    let gmetad_bin = require_program("gmetad", "gmetad");
    let prlimit = require_program("prlimit", "util-linux");
    let dir = TempDir::new("idle-gmetad");
    let (udp, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 }}\n\
             cluster {{ name = \"idle\" }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} buffer = 4194304 }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n"
        ),
    )
    .unwrap();
    let mut gmond_rs = Proc::spawn(
        "gmond-rs",
        &prlimit,
        &[
            OsStr::new("--nofile=256:256"),
            OsStr::new("--"),
            integration_tests::bin("gmond-rs").as_os_str(),
            OsStr::new("-c"),
            conf.as_os_str(),
        ],
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |dgs: [Vec<u8>; 2]| {
        for d in dgs {
            sock.send_to(&d, ("127.0.0.1", udp)).unwrap();
        }
    };
    // About 4 MB of XML: far more than a never-reading client's socket buffers hold.
    let filler = "x".repeat(120);
    let size = poll_for(Duration::from_secs(60), || {
        for h in 0..300 {
            for m in 0..40 {
                send(string_metric(
                    &format!("10.4.{}.{}:filler{h}", h / 250, h % 250),
                    &format!("text_{m}"),
                    &filler,
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let xml = read_xml(tcp)?;
        (xml.len() > 3_000_000).then_some(xml.len())
    })
    .expect("gmond-rs never served the filled document");

    let attackers: Vec<socket2::Socket> = (0..400)
        .filter_map(|i| idle_client([127, 0, 0, 2 + (i % 3) as u8], tcp))
        .collect();
    assert!(
        attackers.len() >= 300,
        "only {} idle clients connected",
        attackers.len()
    );

    // Real gmetad polls every second from 127.0.0.1 while the idle clients stay connected.
    let rrds = dir.path().join("rrds");
    std::fs::create_dir_all(&rrds).unwrap();
    // gmetad binds its ports on every address: a port free on 127.0.0.1 a moment ago can be
    // taken meanwhile (by another test's outgoing connection), and gmetad then exits with
    // "tcp_listen() failed". Such a start is retried on other ports.
    let pid_file = dir.path().join("gmetad.pid");
    let (mut gmetad, xml_port) = (0..5)
        .find_map(|_| {
            let (xml_port, interactive_port) = (free_port(), free_port());
            let gconf = dir.path().join("gmetad.conf");
            std::fs::write(
                &gconf,
                format!(
                    "data_source \"idle\" 1 127.0.0.1:{tcp}\ngridname \"idlegrid\"\nsetuid off\n\
                     rrd_rootdir \"{}\"\ntrusted_hosts 127.0.0.1\nxml_port {xml_port}\n\
                     interactive_port {interactive_port}\n",
                    rrds.display()
                ),
            )
            .unwrap();
            let mut p = Proc::spawn(
                "gmetad",
                &gmetad_bin,
                &[
                    OsStr::new("-c"),
                    gconf.as_os_str(),
                    OsStr::new("-d"),
                    OsStr::new("1"),
                    OsStr::new("-p"),
                    pid_file.as_os_str(),
                ],
            );
            let up = poll_for(Duration::from_secs(10), || {
                read_xml(xml_port)
                    .map(|_| ())
                    .or_else(|| (!p.running()).then_some(()))
            });
            (up.is_some() && p.running()).then_some((p, xml_port))
        })
        .expect("gmetad never started on free ports");
    // Each value is sent after the attack began and must reach gmetad through a fresh poll.
    for round in 1..=2 {
        let want = format!("round-{round}");
        let seen = poll_for(Duration::from_secs(60), || {
            send(string_metric("10.5.0.1:marker-node", "marker", &want));
            (marker_in_gmetad(xml_port)? == want).then_some(())
        });
        assert!(
            seen.is_some(),
            "gmetad never showed {want} (gmetad running: {}, gmond-rs running: {})",
            gmetad.running(),
            gmond_rs.running()
        );
    }
    assert!(gmond_rs.running(), "gmond-rs survived the idle clients");
    assert!(
        attackers.len() >= 300,
        "the idle clients were still connected"
    );
    // The document gmetad got was the whole view, not a truncated one (UDP on loopback may
    // have lost a filler host: compare with gmond-rs's own count).
    let ours = read_document(&read_xml(tcp).unwrap()).unwrap().clusters[0]
        .hosts
        .len();
    let doc = read_document(&read_xml(xml_port).unwrap()).unwrap();
    let hosts: usize = doc.clusters.iter().map(|c| c.hosts.len()).sum();
    assert!(
        ours > 250 && hosts == ours,
        "gmetad holds {hosts} hosts, gmond-rs {ours} ({size} bytes of XML)"
    );
    drop(attackers);
}
