//! The `balancer-agent` binary against a loopback gmond-rs that publishes the VMs of libvirt's
//! test driver: in recommend mode it leads (the only balancer), its balancer_* metrics appear
//! on the host's HOST in gmond-rs's XML, SIGHUP with a bad policy keeps the old one, SIGTERM
//! stops it and advertises mode off. 127.0.0.1 only (unicast), no daemon beyond gmond-rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use balancer_agent::audit::Event;
use ganglia_wire::model::Host;
use ganglia_wire::xml::read_document;
use integration_tests::{free_port, poll_for, poll_until, read_xml, Proc, TempDir};

/// The HOST `name` in gmond-rs's XML on `port`.
fn host(port: u16, name: &str) -> Option<Host> {
    let doc = read_document(&read_xml(port)?).ok()?;
    doc.clusters
        .into_iter()
        .flat_map(|c| c.hosts)
        .find(|h| h.name == name)
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn audit_events(path: &Path) -> Vec<Event> {
    balancer_agent::audit::read(path)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

#[test]
fn recommend_mode_agent_publishes_into_gmond_rs_and_reloads_on_sighup() {
    let dir = TempDir::new("agent-cli");
    let (udp, tcp) = (free_port(), free_port());
    let conf = dir.path().join("gmond.conf");
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no host_dmax = 0 override_hostname = \"hvtest\" }}\n\
             udp_send_channel {{ host = 127.0.0.1 port = {udp} }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n\
             modules {{ module {{ name = \"libvirt_module\" path = \"builtin\"\n\
               param uri {{ value = \"test:///default\" }}\n\
               param collect_every {{ value = \"2\" }} }} }}\n\
             collection_group {{ collect_every = 2 time_threshold = 4 metric {{ name = \"load_one\" }} }}\n"
        ),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "policy = \"hotspot\"\n").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let agent_conf = dir.path().join("balancer-agent.toml");
    std::fs::write(
        &agent_conf,
        format!(
            "mode = \"recommend\"\npolicy = \"{}\"\ninterval_s = 1\n\
             uri_template = \"test:///default\"\ntrusted_hosts = [\"hvtest\"]\n\
             audit_log = \"{}\"\n",
            policy.display(),
            audit.display()
        ),
    )
    .unwrap();

    let _gmond = Proc::spawn(
        "gmond-rs",
        integration_tests::bin("gmond-rs"),
        &[OsStr::new("-c"), conf.as_os_str()],
    );
    // The test driver's domain shows up as VM metrics on hvtest.
    poll_until(Duration::from_secs(30), || {
        host(tcp, "hvtest")?.metric("test.vcpu_num").map(|_| ())
    });

    let feed = format!("127.0.0.1:{tcp}");
    let mut agent = Proc::spawn(
        "balancer-agent",
        integration_tests::bin("balancer-agent"),
        &[
            OsStr::new("--conf"),
            conf.as_os_str(),
            OsStr::new("--config"),
            agent_conf.as_os_str(),
            OsStr::new("--feed"),
            OsStr::new(&feed),
        ],
    );
    // Its metrics land on hvtest's HOST; alone and trusted, it leads. The ten metrics are ten
    // datagrams (balancer_leader first, balancer_leader_name eighth): a poll between them
    // sees the new flag beside the old, empty name, so wait for both.
    let h = poll_for(Duration::from_secs(30), || {
        let h = host(tcp, "hvtest")?;
        (h.metric("balancer_leader")?.val == "1"
            && !h.metric("balancer_leader_name")?.val.is_empty())
        .then_some(h)
    })
    .unwrap_or_else(|| panic!("no balancer_leader=1 on hvtest: {:?}", host(tcp, "hvtest")));
    assert_eq!(h.metric("balancer_mode").unwrap().val, "recommend");
    assert_eq!(h.metric("balancer_leader_name").unwrap().val, "hvtest");
    for name in [
        "balancer_migrations_done",
        "balancer_migrations_failed",
        "balancer_last_decision",
        "balancer_imbalance",
        "balancer_inflight",
        "balancer_planned",
    ] {
        let m = h.metric(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(m.extra("GROUP"), Some("balancer"), "{name}");
    }
    assert!(h.metric_f64("balancer_last_decision").unwrap() > 1.7e9);

    // A bad policy file on SIGHUP is rejected, the agent keeps running with the old one.
    std::fs::write(&policy, "policy = \"hotspot\"\n[hotspot]\nthreshold = -1\n").unwrap();
    signal(&agent, "HUP");
    poll_until(Duration::from_secs(20), || {
        audit_events(&audit)
            .contains(&Event::ReloadRejected)
            .then_some(())
    });
    assert!(agent.running());
    std::fs::write(&policy, "policy = \"stabilize\"\n").unwrap();
    signal(&agent, "HUP");
    poll_until(Duration::from_secs(20), || {
        audit_events(&audit).contains(&Event::Reload).then_some(())
    });
    let events = audit_events(&audit);
    assert_eq!(events.first(), Some(&Event::Leader));

    // SIGHUP also re-reads the config's mode.
    let text = std::fs::read_to_string(&agent_conf).unwrap();
    std::fs::write(
        &agent_conf,
        text.replace("mode = \"recommend\"", "mode = \"off\""),
    )
    .unwrap();
    signal(&agent, "HUP");
    poll_until(Duration::from_secs(20), || {
        (host(tcp, "hvtest")?.metric("balancer_mode")?.val == "off").then_some(())
    });
    std::fs::write(&agent_conf, &text).unwrap();
    signal(&agent, "HUP");
    poll_until(Duration::from_secs(20), || {
        (host(tcp, "hvtest")?.metric("balancer_mode")?.val == "recommend").then_some(())
    });

    // SIGTERM: exits, and its last word is mode off.
    signal(&agent, "TERM");
    poll_until(Duration::from_secs(20), || (!agent.running()).then_some(()));
    poll_until(Duration::from_secs(20), || {
        (host(tcp, "hvtest")?.metric("balancer_mode")?.val == "off").then_some(())
    });
}

#[test]
fn once_with_a_bad_config_fails_with_file_and_line() {
    let dir = TempDir::new("agent-cli-bad");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "mode = \"auto\"\nmax_parallel = 0\n").unwrap();
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, "globals { mute = yes }\n").unwrap();
    let out = Command::new(integration_tests::bin("balancer-agent"))
        .args([
            OsStr::new("--conf"),
            conf.as_os_str(),
            OsStr::new("--config"),
            cfg.as_os_str(),
            OsStr::new("--once"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:1: max_parallel"), "{err}");
}
