//! LinuxCollector against the real gmond 3.7.2 running on the same machine.
//!
//! gmond is started inside a network namespace created by this test (only `lo`, unicast to
//! 127.0.0.1), so nothing leaves the machine. Its XML is read from inside the namespace and
//! compared with the catalogue (metadata, exactly) and with our collector (values, with
//! tolerances for figures that move between two reads). /proc is the same machine inside
//! the namespace, except the network counters: /proc/net/dev is per namespace, so gmond's
//! rates are those of a namespace with only `lo` (which both implementations skip).
//!
//! Needs root, iproute2 (`ip`), bash and /usr/sbin/gmond (Debian ganglia-monitor); fails
//! with a clear message when one is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod linux_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use gmond_metrics::linux::{catalogue, lookup, LinuxCollector, MetricValue};
use linux_support::{fixture, host_metrics, XmlMetric};

const GMOND: &str = "/usr/sbin/gmond";
const MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/ganglia";
const UDP_PORT: u16 = 8649;
const TCP_PORT: u16 = 8651;

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

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Kills gmond (by its own PID: `ip netns exec` execs it in place) when dropped.
struct Gmond {
    child: Child,
}

impl Drop for Gmond {
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

/// Only the modules of the stock configuration plus one fast CPU group, so the CPU rate
/// state of gmond's module is advanced by that group alone.
fn fast_cpu_config() -> String {
    let stock = config();
    let end = stock
        .find("collection_group {")
        .expect("collection groups in gmond -t output");
    let metrics: String = CPU_RATES
        .iter()
        .map(|m| format!("  metric {{\n    name = \"{m}\"\n  }}\n"))
        .collect();
    format!(
        "{}collection_group {{\n  collect_every = {FAST_EVERY}\n  time_threshold = {FAST_EVERY}\n{metrics}}}\n",
        &stock[..end]
    )
}

const CPU_RATES: [&str; 4] = ["cpu_user", "cpu_system", "cpu_idle", "cpu_wio"];
const FAST_EVERY: u64 = 5;

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

    let ns = Netns::create("xml");
    let mut gmond = Gmond {
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
    assert!(theirs_num("proc_run") <= theirs_num("proc_total"));
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

    // Network: gmond's namespace has only lo, which is not counted -> 0.00. Feed the same
    // namespace's /proc/net/dev to our collector through a fake root.
    let pid = gmond.child.id();
    let net_dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc/net")).unwrap();
    std::fs::write(root.path().join("proc/net/dev"), net_dev).unwrap();
    let mut in_ns = LinuxCollector::new(root.path());
    for name in ["bytes_in", "bytes_out", "pkts_in", "pkts_out"] {
        assert_eq!(theirs_num(name), 0.0, "{name} of gmond in the namespace");
        let v = in_ns.collect(name, now).unwrap().as_f64().unwrap();
        assert_eq!(format!("{v:.2}"), "0.00", "{name}");
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
fn start_gmond(ns: &Netns, dir: &Path, conf_text: &str) -> Gmond {
    let conf = dir.join("gmond.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let log = std::fs::File::create(dir.join("gmond.log")).unwrap();
    Gmond {
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

#[test]
fn cpu_rates_of_the_second_sample_follow_gmond() {
    require_environment();
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::create("rate");
    let mut gmond = start_gmond(&ns, dir.path(), &fast_cpu_config());
    let mut ours = LinuxCollector::new("/");
    let sample = |c: &mut LinuxCollector| -> Vec<f64> {
        let now = SystemTime::now();
        CPU_RATES
            .iter()
            .map(|m| c.collect(m, now).unwrap().as_f64().unwrap())
            .collect()
    };

    // First sample: as soon as gmond's start-up value is visible (gmond took its own at
    // start, a few hundred ms earlier).
    let deadline = Instant::now() + Duration::from_secs(4 * FAST_EVERY);
    let mut last_tn = loop {
        assert!(
            gmond.child.try_wait().unwrap().is_none(),
            "gmond exited early"
        );
        if let Some((_, tn)) = val_tn(&ns, "cpu_user") {
            break tn;
        }
        assert!(Instant::now() < deadline, "gmond published no cpu_user");
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = sample(&mut ours);

    // Second sample: when gmond's next value arrives (TN drops back), take ours at once so
    // both cover about the same FAST_EVERY seconds.
    let second = loop {
        assert!(Instant::now() < deadline, "gmond sent no second cpu sample");
        std::thread::sleep(Duration::from_millis(50));
        let Some((_, tn)) = val_tn(&ns, "cpu_user") else {
            continue;
        };
        if tn < last_tn {
            break sample(&mut ours);
        }
        last_tn = tn;
    };
    let xml = read_xml(&ns).unwrap();
    let theirs = host_metrics(&xml, None);
    for (i, name) in CPU_RATES.iter().enumerate() {
        let t: f64 = theirs[*name].attr("VAL").parse().unwrap();
        // Windows are aligned to ~0.1-0.3 s of FAST_EVERY s; a busy machine moves
        // percentages quickly, hence the loose bound.
        close(name, second[i], t, 10.0);
        assert!((0.0..=100.0).contains(&first[i]));
    }
}
