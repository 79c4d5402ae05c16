//! The demo binary end to end (`ganglia-demo --no-tui --duration N` on free ports, loopback
//! only): the cluster feed lists every simulated host with its per-VM and balancer metrics and
//! its own load, CPU and memory derived from its VMs (the spiking host hot, then cool again
//! after the moves), real gstat reads it, the balancer migrates at least one VM and the summary
//! and the `--capture` file say so; a taken port and missing traces fall back with a clear
//! message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::{Cluster, Document, Host};
use integration_tests::{free_port, poll_for, read_xml, require_program};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running demo; killed (by PID) if the test fails before it exits.
struct Demo {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(integration_tests::bin("ganglia-demo"))
            .args(["--no-tui"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ganglia-demo");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines() {
                let Ok(l) = l else { break };
                lines.lock().unwrap().push(l);
            }
        });
        Demo { child, stderr }
    }

    /// The feed port the demo announces.
    fn feed_port(&self) -> u16 {
        poll_for(Duration::from_secs(60), || {
            let lines = self.stderr.lock().unwrap();
            lines.iter().find_map(|l| {
                let rest = l.split("cluster XML feed on 127.0.0.1:").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or_else(|| panic!("no feed line; stderr:\n{}", self.stderr_text()))
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for the exit (the demo's --duration) and returns its stdout (the summary).
    fn finish(mut self) -> String {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "demo failed: {status}\n{}",
            self.stderr_text()
        );
        out
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn document(port: u16) -> Option<Document> {
    ganglia_wire::xml::read_document(&read_xml(port)?).ok()
}

/// Every IPv4 socket of process `pid` as (kind, local address, remote address), read from
/// /proc/PID/fd and /proc/net/{udp,tcp}; also how many of its sockets are IPv6.
fn sockets_of(pid: u32) -> (Vec<(String, std::net::Ipv4Addr, std::net::Ipv4Addr)>, usize) {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    // /proc/net addresses are the 32-bit value in host (little-endian) order, then :port.
    let addr = |hex: &str| {
        let v = u32::from_str_radix(hex.split(':').next().unwrap(), 16).unwrap();
        std::net::Ipv4Addr::from(v.swap_bytes())
    };
    let mut out = Vec::new();
    let mut v6 = 0;
    for kind in ["udp", "tcp", "udp6", "tcp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{kind}")).unwrap();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.contains(f[9]) {
                if kind.ends_with('6') {
                    v6 += 1;
                } else {
                    out.push((kind.to_owned(), addr(f[1]), addr(f[2])));
                }
            }
        }
    }
    (out, v6)
}

/// The number after `label` on the summary line starting with it.
fn summary_number(summary: &str, label: &str) -> usize {
    let line = summary
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in summary:\n{summary}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"))
}

/// A host's own figures as the demo derives them from its VMs.
#[derive(Debug, Clone, Copy)]
struct Load {
    one: f64,
    idle: f64,
    cpus: f64,
}

fn host_load(h: &Host) -> Option<Load> {
    Some(Load {
        one: h.metric_f64("load_one")?,
        idle: h.metric_f64("cpu_idle")?,
        cpus: h.metric_f64("cpu_num")?,
    })
}

/// The spiking host's and the calm hosts' figures, once every host has them.
fn loads(c: &Cluster, hot: &str) -> Option<(Load, Vec<Load>)> {
    let spiking = host_load(c.host(hot)?)?;
    let calm = c
        .hosts
        .iter()
        .filter(|h| h.name != hot)
        .map(host_load)
        .collect::<Option<Vec<_>>>()?;
    Some((spiking, calm))
}

/// Every host's load, CPU and memory metrics carry gmond's own metadata (the catalogue's), and
/// describe the simulated host (4 CPUs), not the machine running the demo.
fn assert_gmond_host_metrics(c: &Cluster) {
    for h in &c.hosts {
        for name in [
            "load_one",
            "load_fifteen",
            "cpu_idle",
            "cpu_user",
            "cpu_num",
            "mem_free",
        ] {
            let m = h
                .metric(name)
                .unwrap_or_else(|| panic!("{} lacks {name}", h.name));
            let spec = gmond_metrics::linux::lookup(name).unwrap();
            assert_eq!(
                (
                    m.ty.as_str(),
                    m.units.as_str(),
                    m.tmax,
                    m.dmax,
                    m.slope.as_str()
                ),
                (
                    spec.value_type.type_name(),
                    spec.units,
                    spec.tmax,
                    spec.dmax,
                    spec.slope_xml()
                ),
                "{} {name}",
                h.name
            );
            assert_eq!(m.extra("TITLE"), Some(spec.title), "{} {name}", h.name);
            assert_eq!(m.extra("GROUP"), Some(spec.group), "{} {name}", h.name);
        }
        assert_eq!(h.metric_f64("cpu_num"), Some(4.0), "{}", h.name);
        assert_eq!(h.metric_f64("mem_total"), Some(f64::from(16u32 << 20)));
    }
}

#[test]
fn feed_shows_every_host_and_the_balancer_moves_a_vm() {
    let port = free_port();
    let capture = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("demo-capture-{}.txt", std::process::id()));
    let demo = Demo::start(&[
        "--port",
        &port.to_string(),
        "--duration",
        "45",
        "--hosts",
        "4",
        "--vms",
        "16",
        "--capture",
        capture.to_str().unwrap(),
    ]);
    assert_eq!(demo.feed_port(), port);
    let hosts = ["hv01", "hv02", "hv03", "hv04"];
    // Every host with its capacity, its VMs' metrics and its balancer's metrics.
    let doc = poll_for(Duration::from_secs(40), || {
        let doc = document(port)?;
        let c = doc.clusters.first()?;
        hosts
            .iter()
            .all(|h| {
                c.host(h).is_some_and(|h| {
                    h.metric("vnode_cpu_num").is_some()
                        && h.metrics.iter().any(|m| m.name.ends_with(".vcpu_util"))
                        && h.metrics.iter().any(|m| m.name.ends_with(".vmem_total"))
                        && h.metric("balancer_mode").is_some_and(|m| m.val == "auto")
                        && h.metric("balancer_leader").is_some()
                })
            })
            .then_some(doc)
            .filter(|d| {
                // The first ticks elect the leader.
                d.clusters[0]
                    .hosts
                    .iter()
                    .any(|h| h.metric_f64("balancer_leader") == Some(1.0))
            })
    })
    .unwrap_or_else(|| panic!("feed incomplete; stderr:\n{}", demo.stderr_text()));
    let c = &doc.clusters[0];
    assert_eq!(c.name, "demo");
    assert_gmond_host_metrics(c);
    for h in hosts {
        let host = c.host(h).unwrap();
        assert!(host.ip.starts_with("127.0.0."), "{h} at {}", host.ip);
        // VMs that stay keep a DMAX gmetad can serve between its 15 s polls.
        for m in host
            .metrics
            .iter()
            .filter(|m| m.name.ends_with(".vcpu_util"))
        {
            assert!(
                m.dmax == 60 || m.dmax == 2,
                "{h} {}: DMAX {}",
                m.name,
                m.dmax
            );
        }
    }
    let leaders: Vec<&str> = c
        .hosts
        .iter()
        .filter(|h| h.metric_f64("balancer_leader") == Some(1.0))
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(leaders, ["hv01"], "exactly the lowest name leads");

    // Architecture invariant: every socket of the demo is bound to (and talks to) loopback.
    let (socks, v6) = sockets_of(demo.child.id());
    assert_eq!(v6, 0, "IPv6 sockets");
    // 4 receive + 16 send + 5 XML + 4 agent sockets at least.
    assert!(socks.len() >= 29, "{socks:?}");
    for (kind, local, remote) in &socks {
        assert!(local.is_loopback(), "{kind} socket bound to {local}");
        assert!(
            remote.is_loopback() || remote.is_unspecified(),
            "{kind} socket to {remote}"
        );
    }

    // Real gstat reads the same feed.
    let gstat = require_program("gstat", "ganglia-monitor");
    let out = Command::new(gstat)
        .args(["-a", "-i", "127.0.0.1", "-p", &port.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gstat: {text}");
    assert!(
        text.contains("Name: demo") && text.contains("Hosts: 4"),
        "{text}"
    );
    for h in hosts {
        assert!(
            text.lines().any(|l| l.trim() == h),
            "gstat lacks {h}:\n{text}"
        );
    }

    // The spike makes hv02 hot in its own metrics: no idle CPU, a load above the calm hosts'.
    let hot = poll_for(Duration::from_secs(40), || {
        let doc = document(port)?;
        let (spiking, calm) = loads(&doc.clusters[0], "hv02")?;
        let calm_load = calm.iter().map(|c| c.one).fold(0.0, f64::max);
        let calm_idle = calm.iter().map(|c| c.idle).fold(100.0, f64::min);
        (spiking.idle < 5.0 && calm_idle > 20.0 && spiking.one > calm_load + 1.0)
            .then_some((spiking, calm))
    });
    assert!(
        hot.is_some(),
        "hv02's load_one/cpu_idle never stood out from the calm hosts'; stderr:\n{}",
        demo.stderr_text()
    );

    // The spike on hv02 is answered by a migration, visible in the feed as a balancer counter.
    let moved = poll_for(Duration::from_secs(45), || {
        let doc = document(port)?;
        let done = doc.clusters[0]
            .host("hv01")?
            .metric_f64("balancer_migrations_done")?;
        (done >= 1.0).then_some(done)
    });
    // After the moves hv02 cools down: idle CPU again, its load falling below its CPU count.
    let cool = moved.and_then(|_| {
        poll_for(Duration::from_secs(30), || {
            let doc = document(port)?;
            let (hv02, _) = loads(&doc.clusters[0], "hv02")?;
            (hv02.idle >= 15.0 && hv02.one < hv02.cpus).then_some(hv02)
        })
    });
    let summary = demo.finish();
    assert!(
        moved.is_some(),
        "no migration seen in the feed; summary:\n{summary}"
    );
    assert!(
        cool.is_some(),
        "hv02's load_one/cpu_idle did not come back after the moves; summary:\n{summary}"
    );
    assert!(summary_number(&summary, "migrations:") >= 1, "{summary}");
    assert!(
        summary.contains("hv02 ->"),
        "moves leave the spiking host:\n{summary}"
    );
    assert!(summary.contains("peak overload:"), "{summary}");
    assert!(summary.contains("hotspot"), "reasons are shown:\n{summary}");

    // The capture holds plain-text frames of the live view (every host, the events), then
    // the summary.
    let text = std::fs::read_to_string(&capture).unwrap();
    let _ = std::fs::remove_file(&capture);
    assert!(
        text.starts_with("# Frames of the gmond-rs demo's live view"),
        "{text}"
    );
    assert!(text.matches("---- ").count() >= 4, "{text}");
    for h in hosts {
        assert!(
            text.lines().any(|l| l.contains(&format!("{h} "))),
            "{h}:\n{text}"
        );
    }
    assert!(text.contains("decides: move") && text.contains("== gmond-rs demo summary =="));
    assert!(!text.contains('\x1b'), "escape sequences in the capture");
}

#[test]
fn a_taken_port_falls_back_with_a_clear_message() {
    // Held from the start (a port picked free and bound later can be taken in between by
    // another test running in parallel).
    let holder = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken = holder.local_addr().unwrap().port();
    let demo = Demo::start(&[
        "--port",
        &taken.to_string(),
        "--duration",
        "6",
        "--hosts",
        "2",
        "--vms",
        "4",
    ]);
    let port = demo.feed_port();
    assert_ne!(port, taken);
    let said = demo.stderr_text();
    assert!(
        said.contains(&format!("port {taken} is taken"))
            && said.contains(&format!("using port {port}")),
        "{said}"
    );
    let doc = poll_for(Duration::from_secs(20), || {
        let d = document(port)?;
        (d.clusters.first()?.hosts.len() == 2).then_some(d)
    });
    assert!(doc.is_some(), "no feed on the fallback port");
    let summary = demo.finish();
    assert!(summary.contains("== gmond-rs demo summary =="), "{summary}");
    assert!(!said.contains("panicked"));
}

#[test]
fn missing_traces_fall_back_to_synthetic_load() {
    let port = free_port();
    let demo = Demo::start(&[
        "--port",
        &port.to_string(),
        "--duration",
        "6",
        "--hosts",
        "2",
        "--vms",
        "4",
        "--trace",
        "/nonexistent/planetlab",
    ]);
    demo.feed_port();
    let said = demo.stderr_text();
    assert!(
        said.contains("PlanetLab traces unavailable") && said.contains("synthetic load"),
        "{said}"
    );
    // The synthetic VMs are published like traced ones.
    let vms = poll_for(Duration::from_secs(20), || {
        let d = document(port)?;
        let n = d.clusters[0]
            .hosts
            .iter()
            .flat_map(|h| h.metrics.iter())
            .filter(|m| m.name.ends_with(".vcpu_num"))
            .count();
        (n == 4).then_some(n)
    });
    assert_eq!(vms, Some(4));
    let summary = demo.finish();
    assert!(summary.contains("migrations:"), "{summary}");
}

#[test]
fn bad_options_are_refused_without_a_trace() {
    for args in [
        &["--hosts", "0"][..],
        &["--hosts", "33"],
        &["--speedup", "0"],
        &["--policy", "/nonexistent/policy.toml"],
        &["--duration=-1"],
    ] {
        let out = Command::new(integration_tests::bin("ganglia-demo"))
            .arg("--no-tui")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains("ganglia-demo:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_with_a_summary() {
    let port = free_port();
    let demo = Demo::start(&["--port", &port.to_string(), "--hosts", "2", "--vms", "4"]);
    let port = demo.feed_port();
    assert!(
        poll_for(Duration::from_secs(20), || document(port)).is_some(),
        "no feed"
    );
    let kill = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let summary = demo.finish();
    assert!(summary.contains("== gmond-rs demo summary =="), "{summary}");
    assert!(summary.contains("ran for:"), "{summary}");
}
