//! Multi-host testbed: N hosts in network namespaces of their own, on one bridge, for tests that
//! need real multicast and distinct source addresses without sending anything off the machine.
//!
//! Built by `tests/netns/cluster.sh` (usable by hand too). Host `i` (1-based) lives in namespace
//! `gmrs-<pid>-c<k>-n<i>` with address `10.213.<k>.<i>/24`, hostname `node<i>` for the programs
//! started through [`Cluster::spawn`]/[`Cluster::run`], and an /etc/hosts mapping every
//! `node<j>` to its address (so reverse lookups give names, as on the reference testbed). The
//! root namespace and eth0 are never touched; dropping the [`Cluster`] kills everything running
//! inside (by PID) and deletes it, also when a test panics. Leftovers of a run that was killed
//! outright are removed by the next [`Cluster::new`] once their owner PID is dead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

use crate::{repo_root, require_program, Proc, TempDir};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A testbed of hosts node1..nodeN; torn down on drop.
pub struct Cluster {
    prefix: String,
    subnet: String,
    hosts: usize,
    script: PathBuf,
    dir: TempDir,
}

impl Cluster {
    /// Builds `hosts` namespaces on one bridge. Panics with the reason when that is impossible
    /// here (not root, iproute2 or util-linux missing), since the project's test command has both.
    pub fn new(hosts: usize) -> Cluster {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        assert!((1..=250).contains(&hosts), "1..=250 hosts, not {hosts}");
        assert!(
            effective_uid() == Some(0),
            "network-namespace tests must run as root (they create namespaces and veths)"
        );
        require_program("ip", "iproute2");
        require_program("unshare", "util-linux");
        require_program("timeout", "coreutils");
        require_program("bash", "bash");
        let script = repo_root().join("tests/netns/cluster.sh");
        assert!(script.exists(), "{} missing", script.display());

        // A run killed before its Drop could run leaves namespaces behind; only those whose
        // owner PID is gone are removed, so parallel runs do not tear each other down.
        sh(&script, &["gc"]);
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("gmrs-{}-c{k}", std::process::id());
        let subnet = format!("10.213.{}", k % 250 + 1);
        // Constructed before creating anything, so a failing create is cleaned up by Drop too.
        let cluster = Cluster {
            prefix,
            subnet,
            hosts,
            script,
            dir: TempDir::new("netns"),
        };
        sh(
            &cluster.script,
            &[
                "create",
                &cluster.prefix,
                &hosts.to_string(),
                &cluster.subnet,
            ],
        );
        cluster
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts
    }

    /// Always false: a cluster has at least one host.
    pub fn is_empty(&self) -> bool {
        self.hosts == 0
    }

    /// Host `i`'s address (1-based).
    pub fn ip(&self, i: usize) -> String {
        self.check(i);
        format!("{}.{i}", self.subnet)
    }

    /// Host `i`'s name, as its hostname and every host's /etc/hosts give it.
    pub fn name(&self, i: usize) -> String {
        self.check(i);
        format!("node{i}")
    }

    /// Host `i`'s network namespace.
    pub fn ns(&self, i: usize) -> String {
        self.check(i);
        format!("{}-n{i}", self.prefix)
    }

    /// Adds a second link, `e1`, directly between hosts `a` and `b` (a veth pair), with
    /// addresses `10.214.<k>.a/24` and `10.214.<k>.b/24` (`k` as in this testbed's subnet):
    /// for tests where a host has two interfaces and traffic must leave by a chosen one. The
    /// pair goes with the namespaces; nothing is routed off the testbed.
    pub fn link(&self, a: usize, b: usize) -> (String, String) {
        let (na, nb) = (self.ns(a), self.ns(b));
        assert_ne!(a, b, "a link joins two hosts");
        let k = self.subnet.rsplit('.').next().unwrap_or("1");
        // Short names in the root namespace for the instant before they move (15-byte limit).
        let tag = format!("{:x}", std::process::id() % 0xffff);
        let (ta, tb) = (format!("gl{tag}a{a}"), format!("gl{tag}b{b}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb]);
        ip(&["link", "set", &ta, "netns", &na]);
        ip(&["link", "set", &tb, "netns", &nb]);
        let addrs = [
            (&na, &ta, format!("10.214.{k}.{a}")),
            (&nb, &tb, format!("10.214.{k}.{b}")),
        ];
        for (ns, tmp, addr) in &addrs {
            ip(&["-n", ns, "link", "set", tmp, "name", "e1"]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "e1"]);
            ip(&["-n", ns, "link", "set", "e1", "up"]);
        }
        (addrs[0].2.clone(), addrs[1].2.clone())
    }

    /// The namespace name prefix shared by everything of this testbed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch directory removed with the cluster (configs, logs, RRDs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`Cluster::spawn`] appends the stderr of the process called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// The stderr a spawned process has written so far (for failure messages).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// A command running `program args` inside host `i` with hostname node`i`.
    pub fn command(&self, i: usize, program: &Path, args: &[&OsStr]) -> Command {
        let mut c = Command::new(&self.script);
        c.arg("exec")
            .arg(&self.prefix)
            .arg(i.to_string())
            .arg(program)
            .args(args);
        self.check(i);
        c
    }

    /// Starts a daemon inside host `i`; its stderr goes to [`Cluster::log_path`]`(name)`.
    /// The returned guard's PID is the program's own (every wrapper execs), so dropping the
    /// guard kills the program itself.
    pub fn spawn(&self, i: usize, name: &str, program: &Path, args: &[&OsStr]) -> Proc {
        self.check(i);
        let log = self.log_path(name);
        let mut all: Vec<OsString> = vec![
            "exec".into(),
            self.prefix.clone().into(),
            i.to_string().into(),
            "sh".into(),
            "-c".into(),
            r#"exec "$@" 2>>"$0""#.into(),
            log.into_os_string(),
            program.as_os_str().to_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_os_string()));
        let refs: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        Proc::spawn(name, &self.script, &refs)
    }

    /// Runs `program args` inside host `i` to completion.
    pub fn run(&self, i: usize, program: &Path, args: &[&OsStr]) -> Output {
        self.command(i, program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} in host {i}: {e}", program.display()))
    }

    /// Everything `addr:port` sends to a client connecting from inside host `i`, read to EOF
    /// (10 s limit); None when the connection fails.
    pub fn read_tcp(&self, i: usize, addr: &str, port: u16) -> Option<Vec<u8>> {
        crate::read_tcp_with(|program, args| self.run(i, program, args), addr, port)
    }

    /// The XML document served on host `i`'s own `port` (connecting over its e0 address, the
    /// way gmetad or a web frontend on another host would see it).
    pub fn read_xml(&self, i: usize, port: u16) -> Option<Vec<u8>> {
        self.read_tcp(i, &self.ip(i), port)
    }

    fn check(&self, i: usize) {
        assert!(
            (1..=self.hosts).contains(&i),
            "host index {i} outside 1..={}",
            self.hosts
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never panic in drop (it may run while unwinding): report and carry on.
        match Command::new(&self.script)
            .args(["destroy", &self.prefix])
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("netns: destroying {} failed: {other:?}", self.prefix),
        }
    }
}

/// Runs cluster.sh, panicking with its stderr on failure.
fn sh(script: &Path, args: &[&str]) {
    let out = Command::new(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The effective uid, from /proc (no libc call needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Cluster::new` runs `gc`, which would remove the deliberately orphaned testbed of the
    /// gc test while it is being built: the tests of this module take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn root_ns_state() -> String {
        let mut s = String::new();
        for args in [
            &["-br", "link"][..],
            &["-br", "addr"],
            &["route", "show", "table", "all"],
        ] {
            let out = Command::new("ip").args(args).output().unwrap();
            s.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        s
    }

    fn netns_of(pid: u32) -> PathBuf {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
    }

    #[test]
    fn hosts_get_names_addresses_and_routes_and_vanish_on_drop() {
        let _turn = serial();
        let before = root_ns_state();
        let c = Cluster::new(3);
        let txt = |out: Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();

        assert_eq!(txt(c.run(2, Path::new("hostname"), &[])), "node2");
        let got = txt(c.run(
            1,
            Path::new("getent"),
            &[OsStr::new("hosts"), c.ip(3).as_ref()],
        ));
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            [&*c.ip(3), "node3"]
        );
        let routes = txt(c.run(3, Path::new("ip"), &[OsStr::new("route")]));
        assert!(routes.contains("239.0.0.0/8 dev e0"), "{routes}");
        assert!(!routes.contains("default"), "no way out: {routes}");
        let addrs = txt(c.run(3, Path::new("ip"), &["-br", "addr"].map(OsStr::new)));
        assert!(addrs.contains(&format!("{}/24", c.ip(3))), "{addrs}");
        // The machine's own hostname is left alone.
        assert_ne!(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim(),
            "node2"
        );

        // The guard's PID is the program itself, inside the host's namespace.
        let mut p = c.spawn(1, "sleeper", Path::new("/bin/sleep"), &[OsStr::new("300")]);
        let pid = p.pid();
        let comm = crate::poll_until(std::time::Duration::from_secs(10), || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "sleep").then_some(comm)
        });
        assert_eq!(comm.trim(), "sleep");
        assert_ne!(netns_of(pid), netns_of(std::process::id()));
        assert!(p.running());

        let nss: Vec<String> = (1..=3).map(|i| c.ns(i)).collect();
        let br = format!("{}-br", c.prefix());
        drop(c);
        // Drop killed the sleeper (reaped by its guard) and removed every trace.
        assert!(!p.running(), "process inside survived teardown");
        for ns in nss.iter().chain([&br]) {
            assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} left");
            assert!(
                !Path::new("/etc/netns").join(ns).exists(),
                "/etc/netns/{ns} left"
            );
        }
        assert_eq!(root_ns_state(), before, "root namespace changed");
    }

    #[test]
    fn gc_removes_leftovers_of_dead_owners_only() {
        let _turn = serial();
        let script = repo_root().join("tests/netns/cluster.sh");
        assert_eq!(effective_uid(), Some(0), "must run as root");
        // A PID that was ours a moment ago and is now dead.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!Path::new(&format!("/proc/{dead}")).exists());
        let stale = format!("gmrs-{dead}-gc");
        let live = format!("gmrs-{}-gc", std::process::id());
        sh(&script, &["create", &stale, "1", "10.213.251"]);
        sh(&script, &["create", &live, "1", "10.213.252"]);
        sh(&script, &["gc"]);
        let exists = |p: &str| Path::new(&format!("/run/netns/{p}-n1")).exists();
        let (stale_left, live_left) = (exists(&stale), exists(&live));
        sh(&script, &["destroy", &stale]);
        sh(&script, &["destroy", &live]);
        assert!(!stale_left, "leftover of dead PID {dead} kept");
        assert!(live_left, "a live owner's testbed was removed");
        assert!(!exists(&live));
    }
}
