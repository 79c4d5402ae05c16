//! Real-world configs must parse: Debian's stock file, gmond's own `-t` text, the testbed
//! config, every file shipped in configs/, and our built-in default text.

// Test helpers outside #[test] fns: a panic is how they report failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gmond_conf::{
    default_config_text, parse_str_with, Config, Globals, LoadOptions, Loaded, MemSource,
    MetricMatch, SendTarget, WarningKind,
};

fn data(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parses with no filesystem behind includes, so results do not depend on this machine.
fn parse_mem(text: &str, name: &str) -> Loaded {
    parse_str_with(text, name, &MemSource::new(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name} does not parse:\n{e}"))
}

/// configs/ also ships gmetad's snippet for the demo and gmond-rs's own settings file: only
/// the other gmond*.conf are gmond configs.
fn is_gmond_conf(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("conf")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("gmond") && n != "gmond-rs.conf")
}

#[test]
fn the_shipped_gmond_rs_conf_parses_and_sets_what_it_documents() {
    let path = configs_dir().join("gmond-rs.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let (rs, warnings) = gmond_conf::rsconf::parse_rs(&text, "configs/gmond-rs.conf")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(rs.store.max_hosts, Some(20_000));
    assert_eq!(rs.store.max_memory_mb, Some(1024));
    // The spoof_acl example is commented out: installing the file changes no policy.
    assert!(rs.udp_recv.is_empty());
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn group_names(cfg: &Config) -> Vec<Vec<String>> {
    cfg.collection_groups
        .iter()
        .map(|g| {
            g.metrics
                .iter()
                .map(|m| match &m.matcher {
                    MetricMatch::Name(n) => n.clone(),
                    MetricMatch::Pattern(p) => format!("~{}", p.as_str()),
                })
                .collect()
        })
        .collect()
}

#[test]
fn debian_stock_config_parses_with_its_settings() {
    let l = parse_mem(&data("debian-stock-gmond.conf"), "debian-stock-gmond.conf");
    let c = &l.config;
    assert_eq!(c.globals.user, "ganglia");
    assert_eq!(c.globals.host_dmax, None, "host_dmax = 0 means never");
    assert!(c.globals.daemonize && c.globals.setuid);
    assert_eq!(c.udp_send.len(), 1);
    assert_eq!(
        c.udp_send[0].target,
        SendTarget::Multicast("239.2.11.71".parse().unwrap())
    );
    assert_eq!(c.udp_recv[0].bind.as_deref(), Some("239.2.11.71"));
    assert_eq!(c.tcp_accept[0].port, 8649);
    assert_eq!(c.modules.len(), 8);
    assert_eq!(
        c.modules[1].path.as_deref(),
        Some("/usr/lib/x86_64-linux-gnu/ganglia/modcpu.so")
    );
    assert_eq!(c.collection_groups.len(), 10);
    assert!(c.collection_groups[1].collect_once);
    assert_eq!(
        c.collection_groups[1].time_threshold,
        Duration::from_secs(1200)
    );
    assert!(
        l.warnings.is_empty(),
        "stock file uses nothing unimplemented: {:?}",
        l.warnings
    );
}

#[test]
fn live_etc_ganglia_gmond_conf_parses() {
    let path = Path::new(gmond_conf::DEFAULT_CONFIG_PATH);
    assert!(
        path.exists(),
        "{} is missing: install Debian package ganglia-monitor",
        path.display()
    );
    let l = gmond_conf::load(path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!l.config.modules.is_empty());
}

#[test]
fn fixture_configs_parse() {
    let t = parse_mem(&data("ganglia-3.7.2-gmond-t.conf"), "gmond-t.conf");
    assert_eq!(t.config.globals, Globals::default());
    let node = parse_mem(&data("ganglia-3.7.2-node.conf"), "node.conf");
    assert_eq!(node.config.cluster.name, "refcluster");
    assert_eq!(node.config.cluster.latlong, "N32.87 W117.22");
    assert!(!node.config.globals.daemonize);
    assert_eq!(
        node.config.globals.module_dir.as_deref(),
        Some("/usr/lib/x86_64-linux-gnu/ganglia")
    );
    assert!(node
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::NotImplemented && w.option == "globals.module_dir"));
    // Apart from what the testbed changed, the node config is gmond's -t text.
    let mut n = node.config.clone();
    n.globals.daemonize = true;
    n.globals.setuid = true;
    n.globals.module_dir = None;
    n.cluster = t.config.cluster.clone();
    assert_eq!(n, t.config);
}

#[test]
fn our_default_text_means_what_gmond_t_means() {
    let ours = parse_mem(default_config_text(), "<built-in default>");
    let gmond = parse_mem(&data("ganglia-3.7.2-gmond-t.conf"), "gmond-t.conf");
    assert_eq!(ours.config, gmond.config);
    assert_eq!(
        ours.warnings.iter().map(|w| &w.option).collect::<Vec<_>>(),
        vec!["udp_recv_channel.retry_bind"],
        "only retry_bind (explicit in gmond -t) is reported"
    );
}

#[test]
fn default_text_keeps_compiled_in_defaults_where_gmond_t_does() {
    let c = parse_mem(default_config_text(), "<built-in default>").config;
    let d = Config::default();
    assert_eq!(c.globals, d.globals);
    assert_eq!(c.cluster, d.cluster);
    assert_eq!(c.host, d.host);
    assert_eq!(c.sflow, d.sflow);
    // Where the text differs from an empty file: channels, modules and groups.
    assert!(d.udp_send.is_empty() && d.modules.is_empty() && d.collection_groups.is_empty());
    assert!(d.effective_mute() && d.effective_deaf());
    assert!(!c.effective_mute() && !c.effective_deaf());
    assert_eq!(c.udp_send[0].ttl, 1);
    assert_eq!(c.udp_recv[0].port, 8649);
    assert!(c.udp_recv[0].retry_bind);
    assert_eq!(c.udp_recv[0].buffer, None);
    assert_eq!(c.tcp_accept[0].timeout, None);
    let names: Vec<&str> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "core_metrics",
            "cpu_module",
            "disk_module",
            "load_module",
            "mem_module",
            "net_module",
            "proc_module",
            "sys_module"
        ]
    );
    let timing: Vec<(bool, u64, u64)> = c
        .collection_groups
        .iter()
        .map(|g| {
            (
                g.collect_once,
                g.collect_every.as_secs(),
                g.time_threshold.as_secs(),
            )
        })
        .collect();
    // Reference §D: heartbeat; 60-s info; gexec; cpu; load; proc; mem; net; disk_total; disk_free.
    assert_eq!(
        timing,
        [
            (true, 60, 20),
            (false, 60, 60),
            (true, 60, 300),
            (false, 20, 90),
            (false, 20, 90),
            (false, 80, 950),
            (false, 40, 180),
            (false, 40, 300),
            (false, 1800, 3600),
            (false, 40, 180)
        ]
    );
    assert_eq!(
        group_names(&c)[7],
        ["bytes_out", "bytes_in", "pkts_in", "pkts_out"]
    );
}

#[test]
fn default_groups_select_the_reference_metric_set() {
    let c = parse_mem(default_config_text(), "<built-in default>").config;
    let offered = data("ganglia-3.7.2-gmond-m.txt");
    let available: Vec<&str> = offered
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(available.len(), 40);
    let sel = c.select_metrics(&available);
    assert!(sel.unmatched.is_empty(), "{:?}", sel.unmatched);
    let got: Vec<(&str, Option<f64>, Option<&str>)> = sel
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.value_threshold, m.title.as_deref()))
        .collect();
    // 33 printed metrics + heartbeat + location (reference §D).
    assert_eq!(got.len(), 35);
    assert_eq!(got[0], ("heartbeat", None, None));
    assert_eq!(got[9], ("location", None, Some("Location")));
    assert_eq!(got[17], ("cpu_steal", Some(1.0), Some("CPU steal")));
    assert_eq!(got[23], ("mem_free", Some(1024.0), Some("Free Memory")));
    assert_eq!(got[29], ("bytes_in", Some(4096.0), Some("Bytes Received")));
    assert_eq!(
        got[34],
        ("part_max_used", Some(1.0), Some("Maximum Disk Space Used"))
    );
}

#[test]
fn every_shipped_config_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !is_gmond_conf(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let l = parse_mem(&text, &path.display().to_string());
        assert!(!l.config.modules.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 2,
        "configs/ should hold gmond.conf and gmond-unicast.conf"
    );
}

#[test]
fn shipped_gmond_conf_equals_debian_stock_settings() {
    let ours = std::fs::read_to_string(configs_dir().join("gmond.conf")).unwrap();
    let ours = parse_mem(&ours, "configs/gmond.conf").config;
    let stock = parse_mem(&data("debian-stock-gmond.conf"), "stock").config;
    assert_eq!(ours, stock);
}

#[test]
fn shipped_unicast_conf_is_unicast() {
    let text = std::fs::read_to_string(configs_dir().join("gmond-unicast.conf")).unwrap();
    let c = parse_mem(&text, "configs/gmond-unicast.conf").config;
    assert_eq!(
        c.udp_send[0].target,
        SendTarget::Unicast("collector.example.org".into())
    );
    assert_eq!(c.udp_recv[0].mcast_join, None);
    assert_eq!(c.udp_recv[0].bind, None);
    assert_eq!(
        c.globals.send_metadata_interval,
        Some(Duration::from_secs(60))
    );
    let acl = c.tcp_accept[0].acl.as_ref().unwrap();
    assert!(acl.allows("127.0.0.1".parse().unwrap()));
    assert!(acl.allows("10.20.30.40".parse().unwrap()));
    assert!(!acl.allows("192.168.1.1".parse().unwrap()));
}

#[test]
fn load_like_gmond_requires_an_explicit_file_to_exist() {
    let e = gmond_conf::load_like_gmond(Some(Path::new("/nonexistent/gmond.conf"))).unwrap_err();
    assert!(matches!(&e.errors[0], gmond_conf::ConfigError::Io { .. }));
    // Without -c this machine has Debian's file, which must load.
    assert!(gmond_conf::load_like_gmond(None).is_ok());
}
