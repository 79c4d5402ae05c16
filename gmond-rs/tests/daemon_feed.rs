//! The XML port's options: `gzip_output` serves the same document as an RFC 1952 stream (what
//! gmetad auto-detects), and a channel `acl` refuses or serves clients by address, for TCP and
//! UDP alike. 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::xml::read_document;
use integration_tests::{free_port, poll_until, read_xml, Proc, TempDir};
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

fn start(dir: &TempDir, text: &str) -> Proc {
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, text).unwrap();
    Proc::spawn(
        "gmond-rs",
        Path::new(env!("CARGO_BIN_EXE_gmond-rs")),
        &[OsStr::new("-c"), conf.as_os_str()],
    )
}

#[test]
fn gzip_output_serves_the_same_document_compressed() {
    let dir = TempDir::new("gzip");
    let (udp, plain, gz) = (free_port(), free_port(), free_port());
    let mut d = start(
        &dir,
        &format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 }}\n\
             udp_send_channel {{ host = 127.0.0.1 port = {udp} }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {plain} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {gz} gzip_output = yes }}\n\
             collection_group {{ collect_once = yes time_threshold = 20 metric {{ name = \"os_name\" }} }}\n"
        ),
    );
    // Wait until our own metric is in the view, so both documents have content.
    poll_until(Duration::from_secs(20), || {
        let doc = read_document(&read_xml(plain)?).ok()?;
        doc.clusters[0].hosts.first()?.metric("os_name").map(|_| ())
    });
    let raw = poll_until(Duration::from_secs(20), || read_xml(gz));
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic");
    let mut xml = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut xml)
        .unwrap();
    let zipped = read_document(&xml).unwrap();
    let direct = read_document(&read_xml(plain).unwrap()).unwrap();
    let os = |doc: &ganglia_wire::model::Document| {
        doc.clusters[0].hosts[0]
            .metric("os_name")
            .map(|m| m.val.clone())
    };
    assert_eq!(os(&zipped), os(&direct));
    assert!(zipped.clusters[0].hosts.len() == 1);
    assert!(d.running());
}

#[test]
fn acls_refuse_and_allow_by_address() {
    let dir = TempDir::new("acl");
    let (udp, denied_tcp, allowed_tcp) = (free_port(), free_port(), free_port());
    let mut d = start(
        &dir,
        &format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp}\n\
               acl {{ default = \"allow\" access {{ ip = 127.0.0.2 mask = 32 action = \"deny\" }} }} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {denied_tcp}\n\
               acl {{ default = \"deny\" access {{ ip = 10.0.0.0 mask = 8 action = \"allow\" }} }} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {allowed_tcp}\n\
               acl {{ default = \"deny\" access {{ ip = 127.0.0.0 mask = 255.0.0.0 action = \"allow\" }} }} }}\n"
        ),
    );
    poll_until(Duration::from_secs(20), || read_xml(allowed_tcp));
    // A denied client is closed without a byte.
    let got = read_xml(denied_tcp).unwrap_or_default();
    assert!(got.is_empty(), "denied client got {} bytes", got.len());

    // UDP: a heartbeat from 127.0.0.2 (denied) is dropped; the same from 127.0.0.3 is not.
    let hb = |from: &str| {
        let sock = std::net::UdpSocket::bind((from, 0)).unwrap();
        let mut buf = Vec::new();
        ganglia_wire::encode(
            &ganglia_wire::Message::Value(ganglia_wire::ValueMsg {
                id: ganglia_wire::MetricId {
                    host: b"x",
                    name: b"heartbeat",
                    spoof: false,
                },
                fmt: b"%u",
                value: ganglia_wire::Value::UInt(1_795_000_000),
            }),
            &mut buf,
        );
        sock.send_to(&buf, ("127.0.0.1", udp)).unwrap();
    };
    let ips = poll_until(Duration::from_secs(20), || {
        hb("127.0.0.2");
        hb("127.0.0.3");
        let doc = read_document(&read_xml(allowed_tcp)?).ok()?;
        let ips: Vec<String> = doc.clusters[0].hosts.iter().map(|h| h.ip.clone()).collect();
        ips.contains(&"127.0.0.3".to_string()).then_some(ips)
    });
    assert!(
        !ips.contains(&"127.0.0.2".to_string()),
        "denied sender shown: {ips:?}"
    );
    assert!(d.running());
}

#[test]
fn sighup_reloads_the_configuration_in_place() {
    let dir = TempDir::new("sighup");
    let (udp, tcp) = (free_port(), free_port());
    let conf = |name: &str| {
        format!(
            "globals {{ daemonize = no setuid = no }}\ncluster {{ name = \"{name}\" }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n"
        )
    };
    let path = dir.path().join("gmond.conf");
    let log = dir.path().join("gmond-rs.log");
    std::fs::write(&path, conf("before")).unwrap();
    let mut d = Proc::spawn_logged(
        "gmond-rs",
        Path::new(env!("CARGO_BIN_EXE_gmond-rs")),
        &[OsStr::new("-c"), path.as_os_str()],
        &log,
    );
    let cluster_name = || {
        let doc = read_document(&read_xml(tcp)?).ok()?;
        Some(doc.clusters.first()?.name.clone())
    };
    let pid = d.pid().to_string();
    let hup = || {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(st.success());
    };
    assert_eq!(poll_until(Duration::from_secs(20), cluster_name), "before");

    // A typo: the reload is refused, logged, and the daemon keeps serving the old file.
    std::fs::write(&path, "globals {\n  daemonize = \n").unwrap();
    hup();
    poll_until(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("new configuration is rejected").then_some(())
    });
    assert!(d.running(), "a broken file took the daemon down");
    assert_eq!(cluster_name().as_deref(), Some("before"));

    std::fs::write(&path, conf("after")).unwrap();
    hup();
    // The same process (exec keeps the PID) serves the new configuration.
    poll_until(Duration::from_secs(20), || {
        (cluster_name()? == "after").then_some(())
    });
    assert!(d.running());
}

/// A query: the client's `METRICS` line.
fn query(port: u16, request: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

#[test]
fn a_query_channel_serves_the_metrics_asked_for_and_refuses_bad_requests() {
    let dir = TempDir::new("query");
    let (udp, tcp, q) = (free_port(), free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 }}\n\
             udp_send_channel {{ host = 127.0.0.1 port = {udp} }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
             collection_group {{ collect_once = yes time_threshold = 20\n\
               metric {{ name = \"os_name\" }} metric {{ name = \"os_release\" }}\n\
               metric {{ name = \"cpu_num\" }} }}\n"
        ),
    )
    .unwrap();
    let rs = dir.path().join("gmond-rs.conf");
    std::fs::write(&rs, format!("query_channel {{ port = {q} }}\n")).unwrap();
    let mut d = Proc::spawn(
        "gmond-rs",
        Path::new(env!("CARGO_BIN_EXE_gmond-rs")),
        &[
            OsStr::new("-c"),
            conf.as_os_str(),
            OsStr::new("--rs-conf"),
            rs.as_os_str(),
        ],
    );
    poll_until(Duration::from_secs(20), || {
        let doc = read_document(&read_xml(tcp)?).ok()?;
        let h = doc.clusters[0].hosts.first()?;
        (h.metric("os_name").is_some() && h.metric("cpu_num").is_some()).then_some(())
    });
    let whole = read_document(&read_xml(tcp).unwrap()).unwrap();
    let asked = read_document(&query(q, b"METRICS os_*\n")).unwrap();
    let names = |doc: &ganglia_wire::model::Document| {
        let mut n: Vec<String> = doc.clusters[0].hosts[0]
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&asked), ["os_name", "os_release"]);
    assert!(
        names(&whole).len() > 2,
        "the XML port still serves everything"
    );
    let (a, w) = (&asked.clusters[0].hosts[0], &whole.clusters[0].hosts[0]);
    assert_eq!(
        (&a.name, &a.ip),
        (&w.name, &w.ip),
        "hosts keep their attributes"
    );
    assert_eq!(
        a.metric("os_name").map(|m| &m.val),
        w.metric("os_name").map(|m| &m.val)
    );
    // Anything but one well-formed request line gets no document.
    for bad in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"METRICS a**b\n",
        &[b'M'; 5000][..],
        b"METRICS os_name",
    ] {
        let got = if bad.ends_with(b"\n") || bad.len() > 4096 {
            query(q, bad)
        } else {
            // No newline: the client then closes its side; nothing comes back.
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(("127.0.0.1", q)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(bad).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        };
        assert!(
            got.is_empty(),
            "{:?} got {} bytes",
            &bad[..bad.len().min(20)],
            got.len()
        );
    }
    assert!(read_document(&query(q, b"METRICS cpu_num\n")).is_ok());
    assert!(d.running());
}
