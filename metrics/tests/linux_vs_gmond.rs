//! LinuxCollector against the real gmond 3.7.2 running on the same machine.
//!
//! gmond is started inside a network namespace created by this test (`lo`, unicast to
//! 127.0.0.1, and a veth pair whose ends both stay in the namespace), so nothing leaves the
//! machine. Its XML is read from inside the namespace and compared with the catalogue
//! (metadata, exactly) and with our collector (values, with tolerances for figures that move
//! between two reads; for rates, derived from how far apart the two reads were, which the
//! test measures through gmond's `rchar`). /proc is the same machine inside the namespace,
//! except the network counters: /proc/net/dev is per namespace, so our collector reads the
//! namespace's through `/proc/<gmond's pid>/net`.
//!
//! So that the values compared are not zeros, a helper process (this test binary, running
//! the ignored `load_helper`) keeps one CPU busy (`proc_run` >= 1, CPU shares that move) and
//! sends paced UDP datagrams out of one veth end; they arrive at the other end, where the
//! kernel drops them (no address, no forwarding), so each counts once out and once in.
//!
//! Needs root, iproute2 (`ip`), bash and /usr/sbin/gmond (Debian ganglia-monitor); fails
//! with a clear message when one is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod linux_support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use gmond_metrics::linux::procfs::{interface_counted_by_name, parse_net_dev, IfCounters};
use gmond_metrics::linux::{catalogue, lookup, LinuxCollector, MetricValue};
use linux_support::{fixture, host_metrics, XmlMetric};

const GMOND: &str = "/usr/sbin/gmond";
const MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/ganglia";
const UDP_PORT: u16 = 8649;
const TCP_PORT: u16 = 8651;

/// The veth pair: `VETH_OUT` has an address and a static neighbour entry for `SINK` with
/// `VETH_IN`'s MAC, so datagrams to `SINK` leave by `VETH_OUT` and arrive at `VETH_IN`
/// without ARP. 192.0.2.0/24 is TEST-NET-1 (documentation only).
const VETH_OUT: &str = "gv0";
const VETH_IN: &str = "gv1";
const MAC_OUT: &str = "02:00:00:00:00:01";
const MAC_IN: &str = "02:00:00:00:00:02";
const SINK: &str = "192.0.2.2:9";
/// The load helper's datagrams: payload, and the bytes /proc/net/dev counts for each one
/// (+ UDP 8, IPv4 20, Ethernet 14).
const PAYLOAD: usize = 1000;
const FRAME: f64 = (PAYLOAD + 8 + 20 + 14) as f64;
/// The helper sleeps this long after each datagram, so it never sends faster.
const PACE: Duration = Duration::from_millis(1);
/// How many datagrams the helper sends (0: until it exits).
const LOAD_ENV: &str = "GMRS_LOAD_DATAGRAMS";
/// The helper stops by itself after this long, should its test die without killing it.
const HELPER_LIFETIME: Duration = Duration::from_secs(90);

/// Deletes the namespace when the test ends, whether it passed or not.
struct Netns {
    name: String,
}

impl Netns {
    /// `tag` keeps the names of tests running in parallel apart.
    fn create(tag: &str) -> Netns {
        let name = format!("gmrs-linux-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        run(
            "ip",
            &["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"],
        );
        ns
    }

    /// The namespace with the veth pair described at [`VETH_OUT`], and no IPv6 (whose
    /// neighbour discovery would add packets of its own).
    fn create_with_veth(tag: &str) -> Netns {
        let ns = Netns::create(tag);
        let sh = |args: &[&str]| {
            let st = ns.exec(args).status().unwrap();
            assert!(st.success(), "{args:?} in {}: {st}", ns.name);
        };
        sh(&[
            "bash",
            "-c",
            "cd /proc/sys/net/ipv6/conf 2>/dev/null || exit 0; \
             echo 1 > all/disable_ipv6 && echo 1 > default/disable_ipv6",
        ]);
        sh(&[
            "ip", "link", "add", VETH_OUT, "address", MAC_OUT, "type", "veth", "peer", "name",
            VETH_IN, "address", MAC_IN,
        ]);
        sh(&["ip", "link", "set", VETH_OUT, "up"]);
        sh(&["ip", "link", "set", VETH_IN, "up"]);
        sh(&["ip", "addr", "add", "192.0.2.1/24", "dev", VETH_OUT]);
        let sink_ip = SINK.split(':').next().unwrap();
        sh(&[
            "ip",
            "neigh",
            "add",
            sink_ip,
            "lladdr",
            MAC_IN,
            "dev",
            VETH_OUT,
            "nud",
            "permanent",
        ]);
        ns
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// [`counted`] of this namespace, read from inside it.
    fn counters(&self) -> IfCounters {
        let out = self.exec(&["cat", "/proc/net/dev"]).output().unwrap();
        assert!(out.status.success(), "cat /proc/net/dev in {}", self.name);
        counted(&String::from_utf8_lossy(&out.stdout))
    }

    /// Starts [`load_helper`] in the namespace, sending `datagrams` (0: without end), and
    /// returns once it has sent `wait_for` of them.
    fn start_load(&self, datagrams: u64, wait_for: u64) -> Process {
        let exe = std::env::current_exe().unwrap();
        let mut c = self.exec(&[
            exe.to_str().unwrap(),
            "--exact",
            "load_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        c.env(LOAD_ENV, datagrams.to_string()).stdout(Stdio::null());
        let mut helper = Process {
            child: c.spawn().expect("start the load helper"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Not through the helper's /proc/PID: until `ip netns exec` has entered the
        // namespace, that shows the machine's counters.
        while self.counters().tx_packets < wait_for {
            assert!(
                helper.child.try_wait().unwrap().is_none(),
                "the load helper exited early"
            );
            assert!(Instant::now() < deadline, "the load helper sent too little");
            std::thread::sleep(Duration::from_millis(20));
        }
        helper
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Kills gmond or the load helper (by its own PID: `ip netns exec` execs it in place) when
/// dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

fn require_environment() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        euid, "0",
        "linux_vs_gmond must run as root (it creates a network namespace)"
    );
    let ip_ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ip_ok,
        "`ip` (iproute2) is required: apt-get install iproute2"
    );
    assert!(
        Path::new(GMOND).exists() && Path::new(MODULE_DIR).is_dir(),
        "{GMOND} and {MODULE_DIR} are required: apt-get install ganglia-monitor"
    );
    assert!(
        Command::new("bash").arg("-c").arg("true").status().is_ok(),
        "bash is required"
    );
}

/// The stock configuration (modules and collection groups of `gmond -t`), talking only
/// to itself on 127.0.0.1.
fn config() -> String {
    let stock =
        std::fs::read_to_string(fixture("conf/gmond-default-t.conf")).expect("fixture conf");
    let start = stock
        .find("modules {")
        .expect("modules section in gmond -t output");
    let body = stock[start..].replace("include (\"/etc/ganglia/conf.d/*.conf\")", "");
    format!(
        "globals {{\n  daemonize = no\n  setuid = no\n  debug_level = 0\n  \
         module_dir = \"{MODULE_DIR}\"\n}}\n\
         cluster {{\n  name = \"gmrs-linux\"\n}}\n\
         udp_send_channel {{\n  host = 127.0.0.1\n  port = {UDP_PORT}\n}}\n\
         udp_recv_channel {{\n  bind = 127.0.0.1\n  port = {UDP_PORT}\n}}\n\
         tcp_accept_channel {{\n  port = {TCP_PORT}\n}}\n{body}"
    )
}

/// Only the modules of the stock configuration plus one fast group of the rate metrics, so
/// the rate state of gmond's modules is advanced by that group alone, and gmond reads /proc
/// only when that group collects.
fn fast_rates_config() -> String {
    let stock = config();
    let end = stock
        .find("collection_group {")
        .expect("collection groups in gmond -t output");
    let metrics: String = CPU_RATES
        .iter()
        .chain(&NET_RATES)
        .map(|m| format!("  metric {{\n    name = \"{m}\"\n  }}\n"))
        .collect();
    format!(
        "{}collection_group {{\n  collect_every = {FAST_EVERY}\n  time_threshold = {FAST_EVERY}\n{metrics}}}\n",
        &stock[..end]
    )
}

const CPU_RATES: [&str; 4] = ["cpu_user", "cpu_system", "cpu_idle", "cpu_wio"];
const NET_RATES: [&str; 4] = ["bytes_in", "bytes_out", "pkts_in", "pkts_out"];
const FAST_EVERY: u64 = 5;
/// Datagrams sent before gmond starts in values_and_metadata_match_real_gmond.
const FIRST_SAMPLE_DATAGRAMS: u64 = 200;

/// Counters of the interfaces gmond counts (not `lo`), summed, in /proc/net/dev `text`.
fn counted(text: &str) -> IfCounters {
    let mut sum = IfCounters::default();
    for (name, c) in parse_net_dev(text).unwrap() {
        if interface_counted_by_name(&name) {
            sum.rx_bytes += c.rx_bytes;
            sum.rx_packets += c.rx_packets;
            sum.tx_bytes += c.tx_bytes;
            sum.tx_packets += c.tx_packets;
        }
    }
    sum
}

/// A root for [`LinuxCollector`] whose `proc/net` is that of `pid`'s namespace and whose
/// `proc/stat` is the machine's.
fn ns_proc_root(pid: u32) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("proc")).unwrap();
    std::os::unix::fs::symlink(format!("/proc/{pid}/net"), root.path().join("proc/net")).unwrap();
    std::os::unix::fs::symlink("/proc/stat", root.path().join("proc/stat")).unwrap();
    root
}

/// Reads the XML from inside the namespace; `None` while gmond is not listening yet.
fn read_xml(ns: &Netns) -> Option<String> {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{TCP_PORT} && cat <&3");
    let out = ns
        .exec(&["bash", "-c", &script])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn close(name: &str, ours: f64, theirs: f64, tol: f64) {
    eprintln!("{name:>14}: ours {ours:<14} gmond {theirs:<14} tolerance {tol}");
    assert!(
        (ours - theirs).abs() <= tol,
        "{name}: ours {ours} vs gmond {theirs} (tolerance {tol})"
    );
}

#[test]
fn values_and_metadata_match_real_gmond() {
    require_environment();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, config()).unwrap();
    let log = std::fs::File::create(dir.path().join("gmond.log")).unwrap();

    // The helper spins (so proc_run >= 1 at gmond's first read as at ours) and sends a
    // fixed number of datagrams first, so the counters behind the first network sample
    // are known and not zero.
    let ns = Netns::create_with_veth("xml");
    let _load = ns.start_load(FIRST_SAMPLE_DATAGRAMS, FIRST_SAMPLE_DATAGRAMS);
    let mut gmond = Process {
        child: ns
            .exec(&[GMOND, "-c", conf.to_str().unwrap(), "-f"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gmond"),
    };

    // gmond sends all collection groups at start-up and hears itself: poll until the
    // whole stock set is in its XML.
    let deadline = Instant::now() + Duration::from_secs(20);
    let xml_metrics: BTreeMap<String, XmlMetric> = loop {
        if let Some(status) = gmond.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("gmond.log")).unwrap();
            panic!("gmond exited early ({status}): {log}");
        }
        if let Some(xml) = read_xml(&ns) {
            let m = host_metrics(&xml, None);
            if m.len() >= 33 {
                break m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gmond did not publish 33 metrics in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Metadata: exactly the catalogue's default set, field by field.
    let expected: Vec<&str> = catalogue()
        .iter()
        .filter(|s| s.default && s.name != "heartbeat" && s.name != "location")
        .map(|s| s.name)
        .collect();
    let got: Vec<&str> = xml_metrics.keys().map(String::as_str).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_unstable();
    assert_eq!(got, expected_sorted);
    for (name, m) in &xml_metrics {
        let spec = lookup(name).unwrap();
        assert_eq!(m.attr("TYPE"), spec.value_type.type_name(), "{name} TYPE");
        assert_eq!(m.attr("UNITS"), spec.units, "{name} UNITS");
        assert_eq!(m.attr("SLOPE"), spec.slope_xml(), "{name} SLOPE");
        assert_eq!(m.attr("TMAX"), spec.tmax.to_string(), "{name} TMAX");
        assert_eq!(m.attr("DMAX"), spec.dmax.to_string(), "{name} DMAX");
        assert_eq!(m.extra("GROUP"), spec.group, "{name} GROUP");
        assert_eq!(m.extra("TITLE"), spec.title, "{name} TITLE");
        assert_eq!(m.extra("DESC"), spec.desc, "{name} DESC");
    }

    // Values. Our first sample, like gmond's, gives since-boot CPU shares.
    let mut ours = LinuxCollector::new("/");
    let now = SystemTime::now();
    let mut mine = |name: &str| -> MetricValue {
        ours.collect(name, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let theirs_num = |name: &str| -> f64 {
        xml_metrics[name]
            .attr("VAL")
            .parse()
            .unwrap_or_else(|_| panic!("{name} VAL is not a number"))
    };
    let theirs_str = |name: &str| xml_metrics[name].attr("VAL").to_string();

    for name in ["machine_type", "os_name", "os_release", "gexec"] {
        assert_eq!(
            mine(name),
            MetricValue::Str(theirs_str(name)),
            "{name} differs"
        );
    }
    // Exact: counts and sizes that do not move.
    for name in ["cpu_num", "mem_total", "swap_total"] {
        assert_eq!(mine(name).as_f64().unwrap(), theirs_num(name), "{name}");
    }
    let mut n = |name: &str| mine(name).as_f64().unwrap();
    // btime can be off by one second between reads on some kernels.
    close("boottime", n("boottime"), theirs_num("boottime"), 1.0);
    let speed = theirs_num("cpu_speed");
    close("cpu_speed", n("cpu_speed"), speed, speed * 0.05);
    close(
        "disk_total",
        n("disk_total"),
        theirs_num("disk_total"),
        0.01,
    );

    // Moving figures: read seconds apart, so loose.
    let mem_total = theirs_num("mem_total");
    for name in ["mem_free", "mem_buffers", "mem_cached"] {
        close(name, n(name), theirs_num(name), mem_total * 0.03);
    }
    assert_eq!(n("mem_shared"), theirs_num("mem_shared"));
    close(
        "swap_free",
        n("swap_free"),
        theirs_num("swap_free"),
        65536.0,
    );
    close("disk_free", n("disk_free"), theirs_num("disk_free"), 1.0);
    close(
        "part_max_used",
        n("part_max_used"),
        theirs_num("part_max_used"),
        1.0,
    );
    close("load_one", n("load_one"), theirs_num("load_one"), 1.5);
    close("load_five", n("load_five"), theirs_num("load_five"), 0.75);
    close(
        "load_fifteen",
        n("load_fifteen"),
        theirs_num("load_fifteen"),
        0.5,
    );
    close(
        "proc_total",
        n("proc_total"),
        theirs_num("proc_total"),
        100.0,
    );
    // proc_run is the number of runnable tasks at the instant of the read, which everything
    // else on the machine moves: two reads seconds apart cannot be held to a tolerance. What
    // holds at every instant is that the helper's spinning thread is runnable (the reader
    // itself is not counted), so both must see at least 1.
    for (who, run, total) in [
        ("ours", n("proc_run"), n("proc_total")),
        ("gmond", theirs_num("proc_run"), theirs_num("proc_total")),
    ] {
        eprintln!("{:>14}: {who} {run} of {total}", "proc_run");
        assert!(
            (1.0..=total).contains(&run),
            "{who}: proc_run {run} of {total} processes, with a busy helper"
        );
    }
    // Both first samples are averages since boot, taken a few seconds apart.
    for name in [
        "cpu_user",
        "cpu_system",
        "cpu_idle",
        "cpu_nice",
        "cpu_wio",
        "cpu_steal",
        "cpu_aidle",
    ] {
        // Since-boot shares drift by at most 100 * gap / uptime; 2 points covers a
        // sub-second gap on a machine up for a minute or more.
        close(name, n(name), theirs_num(name), 2.0);
    }

    // First network sample: both divide the counters since the interfaces came up by the
    // seconds since 1970 (gmond's previous sample starts at zero), which prints 0.00 even
    // though the helper's datagrams are in the counters; a since-uptime average would not.
    // The rates themselves are compared in rates_over_the_same_window_follow_gmond.
    let pid = gmond.child.id();
    let sent = ns.counters();
    assert_eq!(
        (sent.tx_packets, sent.rx_packets),
        (FIRST_SAMPLE_DATAGRAMS, FIRST_SAMPLE_DATAGRAMS),
        "the namespace's counters hold the helper's datagrams, out and in"
    );
    let root = ns_proc_root(pid);
    let mut in_ns = LinuxCollector::new(root.path());
    for name in ["bytes_in", "bytes_out", "pkts_in", "pkts_out"] {
        assert_eq!(theirs_str(name), "0.00", "{name} of gmond's first sample");
        let v = in_ns.collect(name, now).unwrap().as_f64().unwrap();
        assert_eq!(format!("{v:.2}"), "0.00", "{name} of our first sample");
    }
}

#[test]
fn gmond_m_lists_the_catalogue() {
    require_environment();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gmond.conf");
    std::fs::write(&conf, config()).unwrap();
    // -m only loads modules and prints; run it in a namespace all the same.
    let ns = Netns::create("m");
    let out = ns
        .exec(&[GMOND, "-c", conf.to_str().unwrap(), "-m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "gmond -m failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line.split_once('\t').unwrap();
        let name = name.trim_end();
        let (desc, module) = rest.rsplit_once(" (module ").unwrap();
        let spec = lookup(name).unwrap_or_else(|| panic!("{name} missing from catalogue"));
        assert_eq!(spec.desc, desc, "{name}");
        assert_eq!(spec.module, module.trim_end_matches(')'), "{name}");
        names.push(name.to_string());
    }
    names.sort();
    let mut all: Vec<String> = catalogue().iter().map(|s| s.name.to_string()).collect();
    all.sort();
    assert_eq!(names, all);
}

/// Starts gmond with `conf_text` in the namespace, logging to `dir/gmond.log`.
fn start_gmond(ns: &Netns, dir: &Path, conf_text: &str) -> Process {
    let conf = dir.join("gmond.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let log = std::fs::File::create(dir.join("gmond.log")).unwrap();
    Process {
        child: ns
            .exec(&[GMOND, "-c", conf.to_str().unwrap(), "-f"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gmond"),
    }
}

/// (VAL, TN) of `name` in gmond's XML, if it is there.
fn val_tn(ns: &Netns, name: &str) -> Option<(f64, u64)> {
    let xml = read_xml(ns)?;
    let m = host_metrics(&xml, None).remove(name)?;
    Some((m.attr("VAL").parse().ok()?, m.attr("TN").parse().ok()?))
}

/// Bytes gmond has read through read(2) (`rchar` of /proc/PID/io): with only the fast
/// group configured it reads /proc, and anything else, only when that group collects.
fn rchar(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// One of our samples, with how well it is aligned with gmond's.
struct Aligned {
    /// Our values, in the order of `CPU_RATES` then `NET_RATES`.
    values: Vec<f64>,
    /// When our read started and ended.
    start: Instant,
    end: Instant,
    /// Bound on the distance between our read and gmond's, seconds.
    offset: f64,
}

/// How long gmond's `rchar` must stay still before its collection counts as finished.
const SETTLE: Duration = Duration::from_millis(5);

/// Waits for gmond's next collection of the fast group and samples ours right after it, or
/// `None` if the collection could not be bracketed (gmond read again after our sample, or
/// no new value followed its reads), in which case our collector has moved on all the same.
///
/// gmond's reads happen after `quiet` (the last instant its `rchar` was still at its value
/// after the previous collection) and before our read starts (its `rchar` has changed and
/// then stayed still, and stays so until its new values are in the XML). So the two reads
/// are at most `end - quiet` apart.
fn sample_at_next_collection(
    ns: &Netns,
    gmond: &mut Process,
    ours: &mut LinuxCollector,
) -> Option<Aligned> {
    let pid = gmond.child.id();
    // Until gmond's current value is 2 s old, a TN of 0 or 1 would not tell a new one.
    let deadline = Instant::now() + Duration::from_secs(2 * FAST_EVERY);
    while val_tn(ns, "cpu_user").is_none_or(|(_, tn)| tn < 2) {
        assert!(Instant::now() < deadline, "gmond's cpu_user stays new");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut quiet = Instant::now();
    let base = rchar(pid);
    let mut last = loop {
        assert!(
            Instant::now() < deadline,
            "gmond read nothing for a long time"
        );
        std::thread::sleep(Duration::from_millis(1));
        let polled = Instant::now();
        match rchar(pid) {
            r if r == base => quiet = polled,
            r => break r,
        }
    };
    let mut still_since = Instant::now();
    while still_since.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(1));
        let r = rchar(pid);
        if r != last {
            (last, still_since) = (r, Instant::now());
        }
    }
    let start = Instant::now();
    let now = SystemTime::now();
    let values = CPU_RATES
        .iter()
        .chain(&NET_RATES)
        .map(|m| ours.collect(m, now).unwrap().as_f64().unwrap())
        .collect();
    let end = Instant::now();

    // Confirm that this was the collection: a new cpu_user (TN 0 or 1, where the previous
    // value was at least 2 s old) and no read since ours.
    let confirm_by = Instant::now() + Duration::from_secs(2);
    loop {
        assert!(
            gmond.child.try_wait().unwrap().is_none(),
            "gmond exited early"
        );
        if val_tn(ns, "cpu_user").is_some_and(|(_, tn)| tn <= 1) {
            break;
        }
        if Instant::now() > confirm_by {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (rchar(pid) == last).then(|| Aligned {
        values,
        start,
        end,
        offset: (end - quiet).as_secs_f64(),
    })
}

/// Our samples at two consecutive collections of gmond's fast group.
fn aligned_window(
    ns: &Netns,
    gmond: &mut Process,
    ours: &mut LinuxCollector,
) -> (Aligned, Aligned) {
    let mut open = None;
    for _ in 0..6 {
        match (open.take(), sample_at_next_collection(ns, gmond, ours)) {
            (Some(open), Some(close)) => return (open, close),
            (None, next) => open = next,
            (Some(_), None) => {}
        }
    }
    panic!("could not bracket two consecutive collections of gmond in six tries");
}

#[test]
fn rates_over_the_same_window_follow_gmond() {
    require_environment();
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::create_with_veth("rate");
    let _load = ns.start_load(0, 1);
    let mut gmond = start_gmond(&ns, dir.path(), &fast_rates_config());
    let root = ns_proc_root(gmond.child.id());
    let mut ours = LinuxCollector::new(root.path());
    let ncpu = LinuxCollector::new("/")
        .collect("cpu_num", SystemTime::now())
        .unwrap()
        .as_f64()
        .unwrap();

    // gmond's start-up collection (its values are since boot and since 1970) is over when
    // its values are in the XML.
    let deadline = Instant::now() + Duration::from_secs(4 * FAST_EVERY);
    while val_tn(&ns, "cpu_user").is_none() {
        assert!(
            gmond.child.try_wait().unwrap().is_none(),
            "gmond exited early"
        );
        assert!(Instant::now() < deadline, "gmond published no cpu_user");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two consecutive collections open and close a window of FAST_EVERY seconds for gmond;
    // ours is opened and closed right after each, and theirs are the values of the second.
    let (opening, closing) = aligned_window(&ns, &mut gmond, &mut ours);
    let xml = read_xml(&ns).unwrap();
    let theirs = host_metrics(&xml, None);
    let theirs = |name: &str| -> f64 { theirs[name].attr("VAL").parse().unwrap() };
    let mine = |name: &str| -> f64 {
        let i = CPU_RATES.iter().chain(&NET_RATES).position(|m| *m == name);
        closing.values[i.unwrap()]
    };

    // The two windows differ by at most `offset` at each end, `apart` in all.
    let apart = opening.offset + closing.offset;
    let window = (closing.start - opening.end).as_secs_f64() - apart;
    eprintln!(
        "window {window:.3} s, ends at most {:.3} s and {:.3} s apart",
        opening.offset, closing.offset
    );
    assert!(window > 0.5 * FAST_EVERY as f64, "windows too far apart");

    // CPU shares are ratios of /proc/stat tick counts. In ticks, a share over one window
    // differs from the share over the windows' overlap by at most (ticks outside the
    // overlap) / (ticks in the window), since the share's ticks are part of the total; the
    // ticks outside are those of `apart` seconds (USER_HZ = 100 per CPU per second) plus,
    // per end, up to 8 (each of the 8 summed fields rounds down to whole ticks on its own)
    // and up to one per CPU (the kernel charges a whole kernel tick, at most 1/100 s, at
    // once). gmond prints one decimal (0.05 more).
    let ticks = 100.0 * ncpu;
    let slack = 8.0 + ncpu;
    let cpu_tol = 100.0 * (ticks * apart + 2.0 * slack) / (ticks * window - slack) + 0.05;
    for name in CPU_RATES {
        close(name, mine(name), theirs(name), cpu_tol);
    }
    let busy = theirs("cpu_user") + theirs("cpu_system");
    assert!(
        busy >= 50.0 / ncpu,
        "only {busy}% busy with a spinning helper on {ncpu} CPUs"
    );

    // Network: every datagram leaves by one veth end and arrives at the other, where the
    // kernel counts it once (the same counter serves both), so on each side in = out, and
    // bytes = FRAME x packets (up to gmond's two decimals).
    for (who, get) in [
        ("ours", &mine as &dyn Fn(&str) -> f64),
        ("gmond", &theirs as &dyn Fn(&str) -> f64),
    ] {
        let (pkts, bytes) = (get("pkts_in"), get("bytes_in"));
        eprintln!("{who:>14}: {pkts} pkts/s, {bytes} bytes/s");
        assert_eq!(get("pkts_out"), pkts, "{who}: pkts_out != pkts_in");
        assert_eq!(get("bytes_out"), bytes, "{who}: bytes_out != bytes_in");
        assert!(
            (bytes - FRAME * pkts).abs() <= FRAME * 0.01,
            "{who}: {bytes} bytes/s is not {FRAME} x {pkts} packets/s"
        );
        assert!(pkts >= 50.0, "{who}: {pkts} packets/s from the helper");
    }
    // Packet counts over the two windows differ by the datagrams sent in the `apart`
    // seconds outside the overlap (at most one per PACE, plus one per end), and the rates
    // also by the windows' lengths differing by up to `apart`.
    let rate = mine("pkts_in");
    let pkts_tol = (apart / PACE.as_secs_f64() + 2.0 + rate * apart) / window + 0.01;
    close("pkts_in", rate, theirs("pkts_in"), pkts_tol);
    close("pkts_out", mine("pkts_out"), theirs("pkts_out"), pkts_tol);
    close(
        "bytes_in",
        mine("bytes_in"),
        theirs("bytes_in"),
        FRAME * pkts_tol,
    );
    close(
        "bytes_out",
        mine("bytes_out"),
        theirs("bytes_out"),
        FRAME * pkts_tol,
    );
}

/// Run inside a test's namespace by `Netns::start_load` (ignored when run directly): keeps
/// one CPU busy and sends `GMRS_LOAD_DATAGRAMS` datagrams of PAYLOAD bytes to SINK (0:
/// without end), at most one per PACE; stops after HELPER_LIFETIME if nobody kills it.
#[test]
#[ignore = "run inside a namespace by values_and_metadata_match_real_gmond and rates_over_the_same_window_follow_gmond"]
fn load_helper() {
    let datagrams: u64 = std::env::var(LOAD_ENV)
        .unwrap_or_else(|_| panic!("{LOAD_ENV} is not set: this helper is run by other tests"))
        .parse()
        .unwrap();
    let deadline = Instant::now() + HELPER_LIFETIME;
    let spinner = std::thread::spawn(move || {
        while Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                std::hint::black_box(i);
            }
        }
    });
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    let payload = [0u8; PAYLOAD];
    let mut sent = 0;
    while (datagrams == 0 || sent < datagrams) && Instant::now() < deadline {
        socket.send_to(&payload, SINK).unwrap();
        sent += 1;
        std::thread::sleep(PACE);
    }
    spinner.join().unwrap();
}
