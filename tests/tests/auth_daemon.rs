//! gmond-rs with `--auth` on loopback: it signs everything it sends and its receive channel
//! in `require` mode takes only authentic datagrams. Its own stock metrics, sent to itself
//! and to a real gmond 3.7.2, show in both views (real gmond reads the signed datagrams as
//! plain ones: the reverse direction of `interop_auth.rs`); in gmond-rs's view every value
//! carries the GMOND_RS_AUTH mark. Datagrams signed by the test with the same key are
//! accepted and marked; unsigned, forged (another key under the same id) and replayed ones
//! never show. The balancer agent with `--auth` signs its `balancer_*` metrics: they pass a
//! `require` channel and are marked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::auth::{Key, KeyRing, Signer, TRAILER_LEN};
use ganglia_wire::model::{Cluster, Host};
use ganglia_wire::xml::read_document;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope, Value};
use integration_tests::{
    bin, fast_stock_config_with_channels, free_port, poll_for, read_xml, LoopbackGmond, Proc,
    TempDir,
};
use std::ffi::OsStr;
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OURS: &str = "127.0.0.3";
const MARK: &str = "GMOND_RS_AUTH";

fn cluster(port: u16) -> Option<Cluster> {
    read_document(&read_xml(port)?)
        .ok()?
        .clusters
        .into_iter()
        .next()
}

fn host_named<'a>(c: &'a Cluster, name: &str) -> Option<&'a Host> {
    c.hosts.iter().find(|h| h.name == name)
}

fn mark(h: &Host, metric: &str) -> Option<String> {
    let m = h.metric(metric)?;
    m.extra
        .iter()
        .find(|(k, _)| k == MARK)
        .map(|(_, v)| v.clone())
}

/// Metadata + value of a uint32 metric `name` = `v` for the spoofed host `host`.
fn datagrams(host: &str, name: &str, v: u32) -> Vec<Vec<u8>> {
    let e = Emitter::new(Identity::new("x", Some(host), Some("10.77.1.1")), 1472)
        .reserving(TRAILER_LEN);
    let d = MetricDescriptor {
        name,
        metric_type: MetricType::UInt32,
        format: "%u",
        units: "",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: Extra::gmond_standard(name.as_bytes(), b"test", b"auth"),
    };
    let mut meta = Vec::new();
    e.metadata(&d, &mut meta).unwrap();
    let mut val = Vec::new();
    e.value(&d, Value::UInt(v), &mut val).unwrap();
    vec![meta, val]
}

fn sign(s: &mut Signer, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    bodies
        .iter()
        .map(|b| {
            let mut out = Vec::new();
            s.sign(b, now, &mut out);
            out
        })
        .collect()
}

#[test]
fn gmond_rs_signs_what_it_sends_and_requires_signatures() {
    let real = LoopbackGmond::start("auth");
    let dir = TempDir::new("auth-daemon");
    let keys = dir.path().join("keys");
    gmond_rs::auth::add_key(&keys, Some(5)).unwrap();
    let ring = gmond_rs::auth::read_key_file(&keys).unwrap();
    let (recv, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        fast_stock_config_with_channels(
            &format!(
                "udp_send_channel {{ host = 127.0.0.1 port = {recv} bind = {OURS} }}\n\
                 udp_send_channel {{ host = 127.0.0.1 port = {} bind = {OURS} }}\n\
                 udp_recv_channel {{ bind = 127.0.0.1 port = {recv} }}\n\
                 tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
                 globals {{ host_dmax = 0 }}\n",
                real.udp_port
            ),
            5,
            10,
        ),
    )
    .unwrap();
    let mut ours = gmond_rs_requiring(&conf, &keys);

    // Its own metrics, signed, pass its own `require` channel and are marked with key 5.
    let view = poll_for(Duration::from_secs(60), || {
        let c = cluster(tcp)?;
        let h = c.hosts.iter().find(|h| h.ip == OURS)?;
        (h.metrics.len() >= 33).then_some(c)
    })
    .unwrap_or_else(|| panic!("gmond-rs's own metrics: {:?}", cluster(tcp)));
    let own = view.hosts.iter().find(|h| h.ip == OURS).unwrap();
    for m in &own.metrics {
        assert_eq!(mark(own, &m.name).as_deref(), Some("5"), "{}", m.name);
    }
    // Real gmond reads the same signed datagrams as plain ones.
    let real_view = poll_for(Duration::from_secs(60), || {
        let c = read_document(&real.try_xml()?).ok()?.clusters.pop()?;
        let n = c.hosts.iter().find(|h| h.ip == OURS)?.metrics.len();
        (n >= 33).then_some(c)
    })
    .unwrap_or_else(|| panic!("real gmond never showed gmond-rs's signed metrics"));
    let in_real = real_view.hosts.iter().find(|h| h.ip == OURS).unwrap();
    assert!(in_real.metric("cpu_num").is_some());
    assert!(
        mark(in_real, "cpu_num").is_none(),
        "real gmond knows no mark"
    );

    // From the test: signed with the key, unsigned, forged, replayed.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |ds: &[Vec<u8>]| {
        for d in ds {
            sock.send_to(d, ("127.0.0.1", recv)).unwrap();
        }
    };
    let mut signer = Signer::new(&ring, 0x7e57);
    let forged_ring = KeyRing::new([(5, Key::from_bytes([0xab; 32]))], 5).unwrap();
    let mut forger = Signer::new(&forged_ring, 0xbad);
    let mut first = sign(&mut signer, &datagrams("signed-node", "auth_value", 1));
    let replay = first.clone();
    send(&first);
    send(&datagrams("unsigned-node", "auth_value", 2));
    send(&sign(
        &mut forger,
        &datagrams("forged-node", "auth_value", 3),
    ));
    let c = poll_for(Duration::from_secs(20), || {
        let c = cluster(tcp)?;
        match host_named(&c, "signed-node")?.metric("auth_value") {
            Some(_) => Some(c),
            None => {
                // UDP on loopback may drop: send fresh copies (new sequence numbers).
                first = sign(&mut signer, &datagrams("signed-node", "auth_value", 1));
                send(&first);
                None
            }
        }
    })
    .expect("the signed datagrams show");
    let signed = host_named(&c, "signed-node").unwrap();
    assert_eq!(signed.metric("auth_value").unwrap().val, "1");
    assert_eq!(mark(signed, "auth_value").as_deref(), Some("5"));

    // A newer signed value, then the old datagrams replayed: the value stays the newer one.
    send(&sign(
        &mut signer,
        &datagrams("signed-node", "auth_value", 9),
    ));
    poll_for(Duration::from_secs(20), || {
        let c = cluster(tcp)?;
        (host_named(&c, "signed-node")?.metric("auth_value")?.val == "9").then_some(())
    })
    .expect("the newer signed value shows");
    send(&replay);
    // The forger now speaks for the real signed host: unsigned, and signed with its own key.
    send(&datagrams("signed-node", "auth_value", 666));
    send(&sign(
        &mut forger,
        &datagrams("signed-node", "auth_value", 667),
    ));
    // A marker sent after everything else: once it shows, the earlier datagrams were handled.
    let mut marker = sign(&mut signer, &datagrams("signed-node", "auth_marker", 1));
    let c = poll_for(Duration::from_secs(20), || {
        let c = cluster(tcp)?;
        if host_named(&c, "signed-node")?
            .metric("auth_marker")
            .is_some()
        {
            return Some(c);
        }
        marker = sign(&mut signer, &datagrams("signed-node", "auth_marker", 1));
        send(&marker);
        None
    })
    .expect("the marker shows");
    assert_eq!(
        host_named(&c, "signed-node")
            .unwrap()
            .metric("auth_value")
            .unwrap()
            .val,
        "9",
        "a replayed, unsigned or forged datagram for the signed host was accepted"
    );
    assert_eq!(
        mark(host_named(&c, "signed-node").unwrap(), "auth_value").as_deref(),
        Some("5")
    );
    assert!(
        host_named(&c, "unsigned-node").is_none(),
        "unsigned accepted"
    );
    assert!(host_named(&c, "forged-node").is_none(), "forged accepted");
    assert!(ours.running());
}

#[test]
fn the_balancer_agent_signs_its_metrics() {
    let dir = TempDir::new("auth-agent");
    let keys = dir.path().join("keys");
    gmond_rs::auth::add_key(&keys, Some(2)).unwrap();
    let (recv, tcp) = (free_port(), free_port());
    // gmond-rs: mute, listening on `recv` with `require`.
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no mute = yes host_dmax = 0 }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {recv} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n"
        ),
    )
    .unwrap();
    let _ours = gmond_rs_requiring(&conf, &keys);
    poll_for(Duration::from_secs(20), || cluster(tcp)).expect("gmond-rs serves");
    // The agent's gmond.conf: one send channel to gmond-rs, a spoofed identity.
    let agent_conf = dir.path().join("agent-gmond.conf");
    std::fs::write(
        &agent_conf,
        format!(
            "globals {{ override_hostname = \"hv-signed\" override_ip = \"10.77.2.2\" }}\n\
             udp_send_channel {{ host = 127.0.0.1 port = {recv} bind = 127.0.0.4 }}\n"
        ),
    )
    .unwrap();
    let toml = dir.path().join("agent.toml");
    std::fs::write(
        &toml,
        format!("mode = \"recommend\"\nexecutor = \"none\"\nfeed = \"127.0.0.1:{tcp}\"\n"),
    )
    .unwrap();
    let run = |auth: bool| {
        let mut cmd = std::process::Command::new(bin("balancer-agent"));
        cmd.arg("--conf")
            .arg(&agent_conf)
            .arg("--config")
            .arg(&toml)
            .arg("--once");
        if auth {
            cmd.arg("--auth").arg(&keys);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    // Without --auth the agent still runs and sends (unsigned, so `require` drops them;
    // the first test checks refusals).
    run(false);
    // Signed: accepted and marked (UDP may drop on loopback: run again until seen).
    let host = poll_for(Duration::from_secs(60), || {
        run(true);
        let c = cluster(tcp)?;
        let h = host_named(&c, "hv-signed")?.clone();
        h.metric("balancer_mode").is_some().then_some(h)
    })
    .expect("the agent's signed metrics show");
    assert_eq!(host.metric("balancer_mode").unwrap().val, "recommend");
    for m in &host.metrics {
        assert_eq!(mark(&host, &m.name).as_deref(), Some("2"), "{}", m.name);
    }
}

/// gmond-rs with `conf`, signing with `keys` and accepting only authentic datagrams.
fn gmond_rs_requiring(conf: &std::path::Path, keys: &std::path::Path) -> Proc {
    Proc::spawn(
        "gmond-rs",
        bin("gmond-rs"),
        &[
            OsStr::new("-c"),
            conf.as_os_str(),
            OsStr::new("-f"),
            OsStr::new("--auth"),
            keys.as_os_str(),
            OsStr::new("--auth-recv"),
            OsStr::new("require"),
        ],
    )
}
