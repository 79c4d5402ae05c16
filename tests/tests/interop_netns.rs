//! Multi-host interop in network namespaces: two real gmond 3.7.2 and two gmond-rs on one
//! private bridge, talking stock multicast (239.2.11.71:8649, ttl 1), each host with its own
//! address, hostname and /etc/hosts. Real gmetric, gstat and gmetad are driven against the
//! gmond-rs hosts; restarts and a dead host must be handled the way gmond handles them.
//! One gmond-rs signs every datagram it sends (issue 13): the others read them as plain ones.
//! Needs root and iproute2 (the project's test command has both); nothing leaves the testbed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ganglia_wire::model::{Cluster as View, Host};
use ganglia_wire::xml::read_document;
use integration_tests::netns::Cluster;
use integration_tests::{
    assert_same_metrics, fast_stock_config_with_channels, poll_for, require_program, Proc,
};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HOSTS: usize = 4;
/// gmond 3.7.2 on nodes 1-2, gmond-rs on nodes 3-4.
const REAL: [usize; 2] = [1, 2];
const OURS: [usize; 2] = [3, 4];
/// The gmond-rs node that signs every datagram (`--auth`, issue 13) and accepts signed and
/// unsigned ones (`--auth-recv prefer`): a mixed cluster where real gmond and the unsigned
/// gmond-rs read its datagrams as plain ones.
const SIGNING: usize = 4;
/// The XML mark of a value whose datagram carried a valid signature (its key id).
const MARK: &str = "GMOND_RS_AUTH";
/// Every collection group collects every EVERY s and sends at least every THRESHOLD s.
const EVERY: u32 = 5;
const THRESHOLD: u32 = 10;
const HOST_DMAX: u32 = 20;
const CLEANUP: u32 = 5;

const CHANNELS: &str =
    "udp_send_channel {\n  mcast_join = 239.2.11.71\n  port = 8649\n  ttl = 1\n}\n\
     udp_recv_channel {\n  mcast_join = 239.2.11.71\n  port = 8649\n  bind = 239.2.11.71\n}\n\
     tcp_accept_channel {\n  port = 8649\n}\n";

/// The stock config with fast groups, hosts expiring after HOST_DMAX s of silence and cleanup
/// every CLEANUP s, so a restart and a death play out within the test.
fn config() -> String {
    fast_stock_config_with_channels(CHANNELS, EVERY, THRESHOLD)
        .lines()
        .map(|l| match l.trim_start() {
            t if t.starts_with("host_dmax") => format!("  host_dmax = {HOST_DMAX}"),
            t if t.starts_with("cleanup_threshold") => format!("  cleanup_threshold = {CLEANUP}"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Bed {
    // Field order = drop order: daemons are killed before the namespaces go.
    daemons: Vec<Option<Proc>>,
    conf: PathBuf,
    net: Cluster,
}

impl Bed {
    fn start(&mut self, i: usize) {
        let c = OsStr::new("-c");
        let f = OsStr::new("-f");
        let name = format!("node{i}");
        let proc = if REAL.contains(&i) {
            let gmond = require_program("gmond", "ganglia-monitor");
            self.net
                .spawn(i, &name, &gmond, &[c, self.conf.as_os_str(), f])
        } else if i == SIGNING {
            let ours = integration_tests::bin("gmond-rs");
            let keys = self.net.dir().join("auth.keys");
            if !keys.exists() {
                gmond_rs::auth::add_key(&keys, Some(7)).unwrap();
            }
            let args = [
                c,
                self.conf.as_os_str(),
                f,
                OsStr::new("--auth"),
                keys.as_os_str(),
                OsStr::new("--auth-recv"),
                OsStr::new("prefer"),
            ];
            self.net.spawn(i, &name, ours, &args)
        } else {
            let ours = integration_tests::bin("gmond-rs");
            self.net
                .spawn(i, &name, ours, &[c, self.conf.as_os_str(), f])
        };
        self.daemons[i] = Some(proc);
    }

    fn stop(&mut self, i: usize) {
        self.daemons[i] = None;
    }

    fn view(&self, i: usize) -> Option<View> {
        read_document(&self.net.read_xml(i, 8649)?)
            .ok()?
            .clusters
            .into_iter()
            .next()
    }

    /// Every node's view, or None if one does not answer.
    fn views(&self, nodes: &[usize]) -> Option<Vec<(usize, View)>> {
        nodes.iter().map(|&i| Some((i, self.view(i)?))).collect()
    }

    fn ip(&self, i: usize) -> String {
        self.net.ip(i)
    }

    fn assert_running(&mut self) {
        for i in 1..=HOSTS {
            if let Some(p) = self.daemons[i].as_mut() {
                assert!(p.running(), "node{i} exited: {}", self.net.log(&p.name));
            }
        }
    }

    /// One line per view, for failure messages.
    fn describe(&self, nodes: &[usize]) -> String {
        let mut s = String::new();
        for &i in nodes {
            s.push_str(&format!("\n  node{i}'s view: "));
            match self.view(i) {
                None => s.push_str("no answer"),
                Some(v) => {
                    for h in &v.hosts {
                        s.push_str(&format!(
                            "{}={} ({} metrics, TN {}, started {}); ",
                            h.ip,
                            h.name,
                            h.metrics.len(),
                            h.tn,
                            h.gmond_started
                        ));
                    }
                }
            }
        }
        s
    }
}

/// Directories and files under `dir` (for failure messages).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn names(h: &Host) -> BTreeSet<String> {
    h.metrics.iter().map(|m| m.name.clone()).collect()
}

fn host_by_ip<'a>(v: &'a View, ip: &str) -> Option<&'a Host> {
    v.hosts.iter().find(|h| h.ip == ip)
}

/// Every node of `hosts` is in `v` under its name, with all of `want` and a heartbeat.
fn complete(v: &View, bed: &Bed, hosts: &[usize], want: &BTreeSet<String>) -> bool {
    hosts.iter().all(|&j| {
        host_by_ip(v, &bed.ip(j)).is_some_and(|h| {
            h.name == format!("node{j}") && h.gmond_started > 0 && names(h).is_superset(want)
        })
    })
}

/// Restarts `node` and waits until its view is complete again and everyone has its new
/// heartbeat; prints when each peer became complete in its view.
fn restart_and_recover(bed: &mut Bed, node: usize, all: &[usize], want: &BTreeSet<String>) {
    let old = bed
        .view(node)
        .and_then(|v| host_by_ip(&v, &bed.ip(node)).map(|h| h.gmond_started))
        .unwrap();
    bed.stop(node);
    let restarted = Instant::now();
    bed.start(node);
    let mut done: Vec<Option<Duration>> = vec![None; HOSTS + 1];
    // What each peer still lacked just before it became complete: the slowest metadata.
    let mut lacked: Vec<Vec<String>> = vec![Vec::new(); HOSTS + 1];
    let recovered = poll_for(
        Duration::from_secs(u64::from(2 * THRESHOLD + 2 * EVERY)),
        || {
            let v = bed.view(node)?;
            for &j in all {
                if done[j].is_some() {
                    continue;
                }
                if complete(&v, bed, &[j], want) {
                    done[j] = Some(restarted.elapsed());
                } else if let Some(h) = host_by_ip(&v, &bed.ip(j)) {
                    let have = names(h);
                    let mut miss: Vec<String> = want.difference(&have).cloned().collect();
                    if h.gmond_started == 0 {
                        miss.push("(heartbeat)".into());
                    }
                    lacked[j] = miss;
                }
            }
            complete(&v, bed, all, want).then_some(v)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "restarted node{node} did not recover its view (peers complete: {done:?}):{}",
            bed.describe(&[node])
        )
    });
    eprintln!(
        "e. restarted node{node} has the full view after {:?}; per peer: {:?}, last lacking {:?}",
        restarted.elapsed(),
        &done[1..],
        &lacked[1..]
    );
    // The others see the new process's heartbeat.
    let started = host_by_ip(&recovered, &bed.ip(node)).unwrap().gmond_started;
    assert!(
        started > old,
        "node{node}: heartbeat {started} after restart, {old} before"
    );
    poll_for(Duration::from_secs(u64::from(2 * THRESHOLD)), || {
        bed.views(all)?
            .iter()
            .all(|(_, v)| host_by_ip(v, &bed.ip(node)).is_some_and(|h| h.gmond_started == started))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "new heartbeat {started} of node{node} not seen everywhere:{}",
            bed.describe(all)
        )
    });
}

#[test]
fn two_real_gmond_and_two_gmond_rs_share_a_multicast_cluster() {
    let t0 = Instant::now();
    let net = Cluster::new(HOSTS);
    let conf = net.dir().join("gmond.conf");
    std::fs::write(&conf, config()).unwrap();
    let mut bed = Bed {
        daemons: (0..=HOSTS).map(|_| None).collect(),
        conf,
        net,
    };
    for i in 1..=HOSTS {
        bed.start(i);
    }
    let all: Vec<usize> = (1..=HOSTS).collect();

    // a. Every view lists all four hosts, by name, with the metric set real gmond collects for
    //    itself, and every metric's metadata is the same in every view. Whoever started later
    //    missed the others' start-up metadata and gets it through metadata requests.
    let want = poll_for(Duration::from_secs(60), || {
        let own = bed.view(REAL[0])?;
        let want = names(host_by_ip(&own, &bed.ip(REAL[0]))?);
        let vs = bed.views(&all)?;
        (want.len() >= 30
            && vs
                .iter()
                .all(|(_, v)| v.hosts.len() == HOSTS && complete(v, &bed, &all, &want)))
        .then_some(want)
    })
    .unwrap_or_else(|| panic!("views never complete:{}", bed.describe(&all)));
    bed.assert_running();
    let views = bed.views(&all).unwrap();
    let reference = host_by_ip(&views[0].1, &bed.ip(REAL[0])).unwrap().clone();
    for (i, v) in &views {
        assert_eq!(v.name, views[0].1.name, "node{i}: cluster name");
        for j in 1..=HOSTS {
            let mut h = host_by_ip(v, &bed.ip(j)).unwrap().clone();
            // The signing node marks the values it verified: its own, and only its own
            // (nobody else signs); the other views carry no mark.
            for m in &mut h.metrics {
                let marked = m.extra.iter().position(|(k, _)| k == MARK);
                let want = (*i == SIGNING && j == SIGNING).then_some("7");
                assert_eq!(
                    marked.map(|p| m.extra[p].1.as_str()),
                    want,
                    "node{i}'s view of node{j}: {}'s mark",
                    m.name
                );
                if let Some(p) = marked {
                    m.extra.remove(p);
                }
            }
            let h = &h;
            assert_eq!(names(h), want, "node{i}'s view of node{j}: metric names");
            assert_eq!(
                (h.tmax, h.dmax, h.location.as_str(), h.tags.as_str()),
                (20, HOST_DMAX, "unspecified", ""),
                "node{i}'s view of node{j}: host TMAX/DMAX/LOCATION/TAGS"
            );
            assert_same_metrics(&reference, h, &format!("node{i}'s view of node{j}"));
            // Every view has the same heartbeat (start time) for the same host.
            let first = host_by_ip(&views[0].1, &bed.ip(j)).unwrap();
            assert_eq!(h.gmond_started, first.gmond_started, "node{j}'s heartbeat");
        }
    }
    eprintln!("a. full 4-host views after {:?}", t0.elapsed());

    // d (start). Real gmetad on node1 polls gmond-rs on node3 over the bridge.
    let rrds = bed.net.dir().join("rrds");
    std::fs::create_dir_all(&rrds).unwrap();
    let gmetad_conf = bed.net.dir().join("gmetad.conf");
    std::fs::write(
        &gmetad_conf,
        format!(
            "data_source \"netns\" 15 {}:8649\ngridname \"netnsgrid\"\nsetuid off\n\
             rrd_rootdir \"{}\"\ntrusted_hosts 127.0.0.1\nxml_port 8651\n\
             interactive_port 8652\ncase_sensitive_hostnames 0\n",
            bed.ip(OURS[0]),
            rrds.display()
        ),
    )
    .unwrap();
    let gmetad = require_program("gmetad", "gmetad");
    let pid_file = bed.net.dir().join("gmetad.pid");
    let mut gmetad = bed.net.spawn(
        REAL[0],
        "gmetad",
        &gmetad,
        &[
            OsStr::new("-c"),
            gmetad_conf.as_os_str(),
            OsStr::new("-d"),
            OsStr::new("1"),
            OsStr::new("-p"),
            pid_file.as_os_str(),
        ],
    );

    // c. gstat, run on node2 (a real gmond's host), reads gmond-rs's feed on node3.
    let gstat = require_program("gstat", "ganglia-monitor");
    let out = bed.net.run(
        REAL[1],
        &gstat,
        &["-a", "-i", &bed.ip(OURS[0]), "-p", "8649"].map(OsStr::new),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gstat failed: {text}");
    assert!(text.contains("CLUSTER INFORMATION"), "{text}");
    assert!(
        text.contains(&format!("Name: {}", views[0].1.name)),
        "{text}"
    );
    assert!(text.contains(&format!("Hosts: {HOSTS}")), "{text}");
    for j in 1..=HOSTS {
        assert!(
            text.contains(&format!("node{j}")),
            "node{j} in gstat: {text}"
        );
    }

    // b. gmetric on node3 (a gmond-rs host) multicasts; plain and spoofed metrics reach all.
    let gmetric = require_program("gmetric", "ganglia-monitor");
    let gconf = bed.net.dir().join("gmetric.conf");
    std::fs::write(&gconf, CHANNELS).unwrap();
    let gmetric_run = |args: &[&str]| {
        let mut a = vec![OsStr::new("-c"), gconf.as_os_str()];
        a.extend(args.iter().map(OsStr::new));
        let out = bed.net.run(OURS[0], &gmetric, &a);
        assert!(
            out.status.success(),
            "gmetric {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    gmetric_run(&[
        "-n",
        "netns_gauge",
        "-v",
        "42.5",
        "-t",
        "float",
        "-u",
        "widgets",
        "-g",
        "interop",
    ]);
    gmetric_run(&[
        "-n",
        "vm_cpu",
        "-v",
        "12.5",
        "-t",
        "float",
        "-S",
        "10.9.9.9:spoofed-vm",
    ]);
    for i in 1..=HOSTS {
        let v = poll_for(Duration::from_secs(15), || {
            let v = bed.view(i)?;
            let plain = host_by_ip(&v, &bed.ip(OURS[0]))?
                .metric("netns_gauge")
                .is_some();
            let spoofed = v.host("spoofed-vm")?.metric("vm_cpu").is_some();
            (plain && spoofed).then_some(v)
        })
        .unwrap_or_else(|| panic!("gmetric's metrics not in node{i}'s view"));
        let m = host_by_ip(&v, &bed.ip(OURS[0]))
            .unwrap()
            .metric("netns_gauge")
            .unwrap();
        assert_eq!(
            (m.val.as_str(), m.ty.as_str(), m.units.as_str()),
            ("42.5", "float", "widgets"),
            "node{i}"
        );
        assert_eq!(m.extra("GROUP"), Some("interop"), "node{i}");
        let s = v.host("spoofed-vm").unwrap();
        assert_eq!(s.ip, "10.9.9.9", "node{i}");
        assert_eq!(s.metric("vm_cpu").unwrap().val, "12.5", "node{i}");
    }
    eprintln!("b, c. gstat and gmetric checked after {:?}", t0.elapsed());

    // d. gmetad keeps an RRD per host and metric, with the layout of E.2. The directory is
    //    named after the CLUSTER NAME in gmond's XML, not the data_source name (they differ
    //    here on purpose: real gmetad 3.7.2 verified).
    let rrdtool = require_program("rrdtool", "rrdtool");
    let cluster_dir = rrds.join(&views[0].1.name);
    let host_rrd = |j: usize| cluster_dir.join(format!("node{j}")).join("load_one.rrd");
    // gmetad writes the cluster summary after the hosts, in the same pass or the next one.
    let summary = cluster_dir.join("__SummaryInfo__/load_one.rrd");
    poll_for(Duration::from_secs(40), || {
        ((1..=HOSTS).all(|j| host_rrd(j).exists()) && summary.exists()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "gmetad wrote no RRDs for all hosts and the summary (running: {}): {:?}\n{}",
            gmetad.running(),
            walk(&rrds),
            bed.net.log("gmetad")
        )
    });
    let info = std::process::Command::new(&rrdtool)
        .arg("info")
        .arg(host_rrd(OURS[1]))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    for line in [
        "step = 15",
        "ds[sum].type = \"GAUGE\"",
        "ds[sum].minimal_heartbeat = 120",
        "rra[0].rows = 5856",
    ] {
        assert!(info.lines().any(|l| l == line), "{line:?} in {info}");
    }
    // gmetad's own XML (port 8651 on node1) carries the four hosts it read from gmond-rs.
    let grid = poll_for(Duration::from_secs(20), || {
        let doc = read_document(&bed.net.read_tcp(REAL[0], "127.0.0.1", 8651)?).ok()?;
        let c = doc
            .clusters
            .into_iter()
            .find(|c| c.name == views[0].1.name)?;
        (1..=HOSTS)
            .all(|j| {
                c.host(&format!("node{j}"))
                    .is_some_and(|h| h.metric("load_one").is_some())
            })
            .then_some(c)
    })
    .unwrap_or_else(|| panic!("gmetad's XML lacks the hosts: {}", bed.net.log("gmetad")));
    assert_eq!(
        grid.host("node4").unwrap().ip,
        bed.ip(4),
        "gmetad keeps gmond-rs's IP"
    );
    assert!(gmetad.running(), "gmetad died: {}", bed.net.log("gmetad"));
    drop(gmetad);
    eprintln!("d. gmetad RRDs checked after {:?}", t0.elapsed());

    // e1. A restarted daemon gets its whole view back through metadata requests: values
    //     arrive at least every THRESHOLD s, each unknown one triggers a request, and the owner
    //     answers at its next collection (EVERY s) or, for collect-once groups, its next
    //     THRESHOLD. First gmond-rs restarts (its requests answered by real gmond and
    //     gmond-rs), then a real gmond (answered by gmond-rs too).
    for node in [OURS[0], REAL[0]] {
        restart_and_recover(&mut bed, node, &all, &want);
    }
    bed.assert_running();

    // e2. A dead host (real gmond on node2) ages on the others: TN grows past every send
    //     interval up to just under host_dmax with the host still listed (nothing removes it
    //     early), then it is removed once silent for more than host_dmax; so is the spoofed
    //     host gmetric announced once.
    let dead = REAL[1];
    let watchers = [REAL[0], OURS[0], OURS[1]];
    bed.stop(dead);
    let killed = Instant::now();
    let dead_ip = bed.ip(dead);
    let tn = |v: &View| host_by_ip(v, &dead_ip).map(|h| h.tn);
    // Each watcher is checked on its own, so a slow round of reads cannot skip the window
    // between TN = host_dmax - 3 and the removal.
    let mut old_tn: Vec<Option<u64>> = vec![None; HOSTS + 1];
    poll_for(Duration::from_secs(u64::from(HOST_DMAX + CLEANUP)), || {
        for &i in &watchers {
            if old_tn[i].is_none() {
                let h = bed.view(i).and_then(|v| host_by_ip(&v, &dead_ip).cloned());
                if let Some(h) = h.filter(|h| h.tn + 3 >= u64::from(HOST_DMAX)) {
                    // Still listed, with the host_dmax the receivers were configured with.
                    assert_eq!(h.dmax, HOST_DMAX, "node{i}'s view of node{dead}");
                    old_tn[i] = Some(h.tn);
                }
            }
        }
        watchers.iter().all(|&i| old_tn[i].is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "node{dead} not seen with TN >= host_dmax - 3 by every watcher (removed early?) \
             {old_tn:?}:{}",
            bed.describe(&watchers)
        )
    });
    poll_for(
        Duration::from_secs(u64::from(HOST_DMAX + 2 * CLEANUP + THRESHOLD)),
        || {
            bed.views(&watchers)?
                .iter()
                .all(|(_, v)| tn(v).is_none() && v.host("spoofed-vm").is_none())
                .then_some(())
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "node{dead} or spoofed-vm not removed after host_dmax {HOST_DMAX}:{}",
            bed.describe(&watchers)
        )
    });
    eprintln!(
        "e. node{dead} removed everywhere {:?} after the kill",
        killed.elapsed()
    );
    // The living keep each other.
    let vs = bed.views(&watchers).unwrap();
    for (i, v) in &vs {
        for j in watchers {
            assert!(host_by_ip(v, &bed.ip(j)).is_some(), "node{i} lost node{j}");
        }
    }
    bed.assert_running();
    if std::env::var_os("NETNS_DUMP_LOGS").is_some() {
        for i in 1..=HOSTS {
            eprintln!("--- node{i} log:\n{}", bed.net.log(&format!("node{i}")));
        }
    }
    eprintln!("total {:?}", t0.elapsed());
}

/// Size of a pcap file holding only its global header (no packet captured).
const PCAP_HEADER: u64 = 24;

#[test]
fn mcast_if_sends_by_the_configured_interface() {
    let tcpdump = require_program("tcpdump", "tcpdump");
    // node1 has two interfaces: e0 on the bridge (where 239.0.0.0/8 is routed) and e1, a
    // direct link to node2. mcast_if = e1 must take the datagrams off the route's interface.
    let net = Cluster::new(2);
    net.link(1, 2);
    let capture = |iface: &str| net.dir().join(format!("{iface}.pcap"));
    let mut dumps = Vec::new();
    for iface in ["e0", "e1"] {
        let out = capture(iface);
        dumps.push(net.spawn(
            1,
            &format!("tcpdump-{iface}"),
            &tcpdump,
            &[
                OsStr::new("-i"),
                OsStr::new(iface),
                OsStr::new("-n"),
                OsStr::new("-U"),
                OsStr::new("-w"),
                out.as_os_str(),
                OsStr::new("udp and port 8649"),
            ],
        ));
    }
    // Both captures run (their header is written) before anything is sent.
    for iface in ["e0", "e1"] {
        let started = poll_for(Duration::from_secs(20), || {
            let len = std::fs::metadata(capture(iface)).ok()?.len();
            (len >= PCAP_HEADER).then_some(())
        });
        assert!(
            started.is_some(),
            "tcpdump on {iface} did not start: {}",
            net.log(&format!("tcpdump-{iface}"))
        );
    }
    let conf = net.dir().join("mcast-if.conf");
    std::fs::write(
        &conf,
        fast_stock_config_with_channels(
            "udp_send_channel {\n  mcast_join = 239.2.11.71\n  port = 8649\n  ttl = 1\n  \
             mcast_if = e1\n}\n",
            EVERY,
            THRESHOLD,
        ),
    )
    .unwrap();
    let _ours = net.spawn(
        1,
        "gmond-rs",
        integration_tests::bin("gmond-rs"),
        &[OsStr::new("-c"), conf.as_os_str(), OsStr::new("-f")],
    );
    // Start-up metadata goes out at once: it must show on e1.
    let on_e1 = poll_for(Duration::from_secs(20), || {
        let len = std::fs::metadata(capture("e1")).ok()?.len();
        (len > PCAP_HEADER).then_some(len)
    });
    assert!(
        on_e1.is_some(),
        "nothing sent on e1 (mcast_if); gmond-rs log: {}",
        net.log("gmond-rs")
    );
    // Give a wrongly routed copy time to appear too (the sender sends every group at start,
    // and again within THRESHOLD s): one more send round on e1 first.
    let first = on_e1.unwrap();
    let more = poll_for(Duration::from_secs(u64::from(THRESHOLD) * 2), || {
        let len = std::fs::metadata(capture("e1")).ok()?.len();
        (len > first).then_some(())
    });
    assert!(more.is_some(), "only one burst on e1");
    drop(dumps);
    assert_eq!(
        std::fs::metadata(capture("e0")).unwrap().len(),
        PCAP_HEADER,
        "datagrams left by e0, the multicast route's interface, despite mcast_if = e1"
    );
}

/// Run by [`reverse_lookup_goes_through_the_system_resolver`] inside a testbed host (ignored
/// when run directly): prints what getnameinfo says for `GMRS_PROBE_IP`.
#[test]
#[ignore = "run inside a testbed host by reverse_lookup_goes_through_the_system_resolver"]
fn getnameinfo_probe() {
    let ip: std::net::Ipv4Addr = std::env::var("GMRS_PROBE_IP").unwrap().parse().unwrap();
    println!(
        "probe-answer={}",
        gmond_rs::ingest::system_lookup(ip).unwrap_or_default()
    );
}

#[test]
fn reverse_lookup_goes_through_the_system_resolver() {
    // Inside a testbed host, /etc/hosts is the testbed's (ip netns exec bind-mounts it) and
    // has no DNS to reach: the answer for node2's address must come from getnameinfo's files
    // backend, as gmond's does.
    let net = Cluster::new(2);
    let probe = |ip: &str| {
        let out = net
            .command(
                1,
                &std::env::current_exe().unwrap(),
                &[
                    OsStr::new("--exact"),
                    OsStr::new("getnameinfo_probe"),
                    OsStr::new("--ignored"),
                    OsStr::new("--nocapture"),
                ],
            )
            .env("GMRS_PROBE_IP", ip)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "probe failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .find_map(|l| l.strip_prefix("probe-answer=").map(str::to_owned))
            .unwrap_or_else(|| panic!("no answer in {text}"))
    };
    assert_eq!(probe(&net.ip(2)), net.name(2));
    // An address nobody names: no answer (the daemon then uses the dotted address).
    assert_eq!(probe("10.213.250.250"), "");
}
