//! Hypervisor testbed: N "hosts" on this machine, each a set of namespaces (network, mount,
//! UTS, cgroup) with its own libvirtd, on one bridge, running QEMU/TCG boot-sector guests that
//! migrate live between them. Built by the scripts in `tests/libvirt/` (usable by hand too).
//!
//! Host `i` (1-based) is named `hv<i>`, has address `10.77.0.<i>/24` on its namespace's `e0`,
//! a route for 239.0.0.0/8 on `e0` (Ganglia multicast stays on the bridge) and no default route
//! (nothing can reach eth0). Its libvirtd answers on `qemu+tcp://10.77.0.<i>/system` inside the
//! testbed, on `qemu:///system` for programs started in the host ([`Testbed::spawn`],
//! [`Testbed::run`]), and on [`Testbed::local_uri`] (its unix socket) from the root namespace.
//!
//! [`Testbed::new`] takes a machine-wide lock (one testbed at a time: TCG guests need the CPU)
//! and first removes leftovers of runs whose owner process is dead. Dropping the [`Testbed`]
//! tears everything down, also when the test panics: it stops the processes it recorded (by
//! PID, after checking their command line), then whatever is left inside its own namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

use crate::{poll_for, repo_root, require_program, Proc, TempDir};
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Where every testbed keeps its state (`<root>/<prefix>`), as `tests/libvirt/common.sh` has it.
const STATE_ROOT: &str = "/tmp/gmond-rs-lvt";
/// The machine-wide lock file: it holds the PID of the process whose testbed is up.
const LOCK_FILE: &str = "/tmp/gmond-rs-lvt.lock";
/// How long [`Testbed::new`] waits for another process's testbed to go away.
const LOCK_WAIT: Duration = Duration::from_secs(900);

/// The port of the gmond channels in [`gmond_conf`].
pub const GMOND_PORT: u16 = 8649;

/// gmond.conf of a testbed host: Ganglia's default multicast channel on the bridge (the host's
/// route sends 239.0.0.0/8 out of its testbed interface only), heartbeat and load metrics,
/// and, with `libvirt`, per-VM metrics from the host's own libvirtd every `every` seconds.
/// Inside a host, `qemu:///system` is that host's libvirtd: the host's mount namespace has
/// its private /run/libvirt (`qemu+tcp://<its address>/system` works too).
pub fn gmond_conf(libvirt: bool, every: u32) -> String {
    let module = if libvirt {
        format!(
            "  module {{\n    name = \"libvirt_module\"\n    path = \"builtin\"\n    \
             param uri {{ value = \"qemu:///system\" }}\n    \
             param collect_every {{ value = \"{every}\" }}\n  }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "globals {{\n  daemonize = no\n  setuid = no\n  host_dmax = 0\n  send_metadata_interval = 10\n}}\n\
         cluster {{\n  name = \"hypervisors\"\n}}\n\
         udp_send_channel {{\n  mcast_join = 239.2.11.71\n  port = {GMOND_PORT}\n  ttl = 1\n}}\n\
         udp_recv_channel {{\n  mcast_join = 239.2.11.71\n  port = {GMOND_PORT}\n  bind = 239.2.11.71\n}}\n\
         tcp_accept_channel {{\n  port = {GMOND_PORT}\n}}\n\
         modules {{\n  module {{\n    name = \"core_metrics\"\n  }}\n  module {{\n    name = \"load_module\"\n    path = \"modload.so\"\n  }}\n{module}}}\n\
         collection_group {{\n  collect_once = yes\n  time_threshold = 5\n  metric {{\n    name = \"heartbeat\"\n  }}\n}}\n\
         collection_group {{\n  collect_every = 5\n  time_threshold = 10\n  metric {{\n    name = \"load_one\"\n    value_threshold = 1.0\n  }}\n}}\n"
    )
}

/// What a boot-sector guest does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// `jmp $`: burns one host core per vCPU (or its CPU quota).
    Busy,
    /// `sti; hlt; jmp`: wakes only for timer interrupts (~0.5 % of a core).
    Idle,
    /// Rewrites its RAM from 1 to 15 MiB forever (needs 16 MiB or more): a live migration
    /// capped in bandwidth never converges, so it stays in flight until aborted.
    Dirty,
}

impl Guest {
    fn image(self) -> &'static str {
        match self {
            Guest::Busy => "busy",
            Guest::Idle => "idle",
            Guest::Dirty => "dirty",
        }
    }
}

/// A running testbed of hosts hv1..hvN; torn down on drop.
pub struct Testbed {
    prefix: String,
    hosts: usize,
    scripts: PathBuf,
    dir: TempDir,
    // Last: released after the teardown in Drop has run.
    _lock: MachineLock,
}

impl Testbed {
    /// Builds `hosts` hosts with libvirtd running on each. Panics with the reason when that is
    /// impossible here (not root, a program or cgroup v1's cpu controller missing): the
    /// project's test command provides them all.
    pub fn new(hosts: usize) -> Testbed {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        assert!((1..=20).contains(&hosts), "1..=20 hosts, not {hosts}");
        assert!(
            effective_uid() == Some(0),
            "libvirt testbed tests must run as root (namespaces, bind mounts, cgroups)"
        );
        for (prog, pkg) in [
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("unshare", "util-linux"),
            ("bash", "bash"),
            ("virsh", "libvirt-clients"),
            ("libvirtd", "libvirt-daemon and libvirt-daemon-driver-qemu"),
            ("qemu-system-x86_64", "qemu-system-x86"),
        ] {
            require_program(prog, pkg);
        }
        let scripts = repo_root().join("tests/libvirt");
        assert!(
            scripts.join("setup.sh").exists(),
            "{} missing",
            scripts.display()
        );

        let lock = MachineLock::acquire();
        // Leftovers of a run that was killed before its Drop ran: only those whose owner PID
        // is dead are removed.
        script(&scripts, "teardown.sh", &["--stale"]);
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("gvirt-{}-t{k}", std::process::id());
        // Constructed before anything is built, so a failing setup is cleaned up by Drop too.
        let bed = Testbed {
            prefix,
            hosts,
            scripts,
            dir: TempDir::new("lvt"),
            _lock: lock,
        };
        script(
            &bed.scripts,
            "setup.sh",
            &[bed.prefix.as_str(), &hosts.to_string()],
        );
        bed
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts
    }

    /// Always false: a testbed has at least one host.
    pub fn is_empty(&self) -> bool {
        self.hosts == 0
    }

    /// The name shared by this testbed's namespaces, cgroups and state directory.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Host `i`'s address (1-based).
    pub fn ip(&self, i: usize) -> String {
        self.check(i);
        format!("10.77.0.{i}")
    }

    /// Host `i`'s name: its hostname, and what every host's /etc/hosts maps its address to.
    pub fn name(&self, i: usize) -> String {
        self.check(i);
        format!("hv{i}")
    }

    /// Host `i`'s network namespace.
    pub fn ns(&self, i: usize) -> String {
        self.check(i);
        format!("{}-h{i}", self.prefix)
    }

    /// Host `i`'s libvirt over TCP: usable from programs inside any host of the testbed.
    pub fn tcp_uri(&self, i: usize) -> String {
        format!("qemu+tcp://{}/system", self.ip(i))
    }

    /// Host `i`'s libvirt through its unix socket: usable from the root namespace (the test
    /// itself), no network involved.
    pub fn local_uri(&self, i: usize) -> String {
        self.check(i);
        format!(
            "qemu+unix:///system?socket={}/run/libvirt-sock",
            self.host_state(i).display()
        )
    }

    /// A scratch directory removed with the testbed (configs, logs, audit files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`Testbed::spawn`] appends the stderr of the process called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// The stderr a spawned process has written so far (for failure messages).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Host `i`'s libvirtd log (warnings and errors).
    pub fn libvirtd_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.host_state(i).join("log/libvirtd.log")).unwrap_or_default()
    }

    /// Defines and starts a guest on host `i`: `mem_mib` MiB, `vcpus` vCPUs, each capped at
    /// `quota_pct` % of a host core when given (the cap is in the domain XML, so it moves with
    /// the guest).
    pub fn guest(
        &self,
        i: usize,
        name: &str,
        kind: Guest,
        mem_mib: u32,
        vcpus: u32,
        quota_pct: Option<u32>,
    ) {
        self.check(i);
        let (host, mem, vcpus) = (i.to_string(), mem_mib.to_string(), vcpus.to_string());
        let quota = quota_pct.map(|q| q.to_string()).unwrap_or_default();
        let mut args = vec![
            self.prefix.as_str(),
            &host,
            name,
            kind.image(),
            &mem,
            &vcpus,
        ];
        if quota_pct.is_some() {
            args.push(&quota);
        }
        script(&self.scripts, "guest.sh", &args);
    }

    /// `virsh -c <host i's unix socket> args...`, from the root namespace.
    pub fn virsh(&self, i: usize, args: &[&str]) -> Output {
        Command::new("virsh")
            .arg("-q")
            .arg("-c")
            .arg(self.local_uri(i))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("virsh runs")
    }

    /// Names of the domains running on host `i`, as its libvirtd reports them (sorted); None
    /// when it does not answer.
    pub fn running(&self, i: usize) -> Option<Vec<String>> {
        let out = self.virsh(i, &["list", "--name", "--state-running"]);
        if !out.status.success() {
            return None;
        }
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        Some(v)
    }

    /// Cumulative CPU time of domain `name` on host `i` in ns (libvirt's `cpu.time`).
    pub fn cpu_time_ns(&self, i: usize, name: &str) -> Option<u64> {
        let out = self.virsh(i, &["domstats", "--cpu-total", name]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("cpu.time=")?.parse().ok())
    }

    /// Stops host `i`'s libvirtd, leaves it down for `down`, starts it again and waits until
    /// it answers. Guests keep running throughout.
    pub fn restart_libvirtd(&self, i: usize, down: Duration) {
        self.check(i);
        script(
            &self.scripts,
            "restart-host.sh",
            &[
                self.prefix.as_str(),
                &i.to_string(),
                &format!("{:.1}", down.as_secs_f64()),
            ],
        );
    }

    /// PID of host `i`'s libvirtd as recorded at its last start.
    pub fn libvirtd_pid(&self, i: usize) -> u32 {
        std::fs::read_to_string(self.host_state(i).join("libvirtd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A command running `program args` inside host `i` (its namespaces and hostname).
    pub fn command(&self, i: usize, program: &Path, args: &[&OsStr]) -> Command {
        self.check(i);
        let mut c = Command::new(self.scripts.join("exec.sh"));
        c.arg(&self.prefix)
            .arg(i.to_string())
            .arg(program)
            .args(args);
        c
    }

    /// Runs `program args` inside host `i` to completion.
    pub fn run(&self, i: usize, program: &Path, args: &[&OsStr]) -> Output {
        self.command(i, program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} in host {i}: {e}", program.display()))
    }

    /// Starts a daemon inside host `i`; its stderr (and stdout) go to
    /// [`Testbed::log_path`]`(name)`. The guard's PID is the program's own (every wrapper
    /// execs), so dropping the guard kills the program; teardown stops it too (recorded).
    pub fn spawn(&self, i: usize, name: &str, program: &Path, args: &[&OsStr]) -> Proc {
        self.spawn_env(i, name, program, args, &[])
    }

    /// [`Testbed::spawn`] with extra environment variables.
    pub fn spawn_env(
        &self,
        i: usize,
        name: &str,
        program: &Path,
        args: &[&OsStr],
        env: &[(&str, &str)],
    ) -> Proc {
        self.check(i);
        let log = self.log_path(name);
        let mut all: Vec<OsString> = vec![
            "--record".into(),
            program.as_os_str().to_owned(),
            self.prefix.clone().into(),
            i.to_string().into(),
            "env".into(),
        ];
        all.extend(env.iter().map(|(k, v)| OsString::from(format!("{k}={v}"))));
        all.extend([
            "sh".into(),
            "-c".into(),
            r#"exec "$@" >>"$0" 2>&1"#.into(),
            log.into_os_string(),
            program.as_os_str().to_owned(),
        ]);
        all.extend(args.iter().map(|a| a.to_os_string()));
        let refs: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        Proc::spawn(name, &self.scripts.join("exec.sh"), &refs)
    }

    /// Everything `addr:port` sends to a client connecting from inside host `i`, read to EOF
    /// (10 s limit); None when the connection fails.
    pub fn read_tcp(&self, i: usize, addr: &str, port: u16) -> Option<Vec<u8>> {
        crate::read_tcp_with(|program, args| self.run(i, program, args), addr, port)
    }

    /// The XML document host `i`'s gmond serves on its own address and `port`.
    pub fn read_xml(&self, i: usize, port: u16) -> Option<Vec<u8>> {
        self.read_tcp(i, &self.ip(i), port)
    }

    /// Polls `f` every 200 ms until it returns Some or `deadline` passes.
    pub fn wait_for<T>(&self, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        poll_for(deadline, || {
            let v = f();
            if v.is_none() {
                std::thread::sleep(Duration::from_millis(150));
            }
            v
        })
    }

    /// The tail of every log this testbed has (spawned programs, libvirtd), for a failure.
    pub fn dump_logs(&self) {
        if let Ok(rd) = std::fs::read_dir(self.dir()) {
            let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths
                .iter()
                .filter(|p| p.extension() == Some(OsStr::new("log")))
            {
                eprintln!(
                    "--- {}:\n{}",
                    p.display(),
                    tail(&std::fs::read_to_string(p).unwrap_or_default(), 40)
                );
            }
        }
        for i in 1..=self.hosts {
            eprintln!(
                "--- libvirtd of hv{i}:\n{}",
                tail(&self.libvirtd_log(i), 15)
            );
        }
    }

    fn host_state(&self, i: usize) -> PathBuf {
        Path::new(STATE_ROOT)
            .join(&self.prefix)
            .join(format!("h{i}"))
    }

    fn check(&self, i: usize) {
        assert!(
            (1..=self.hosts).contains(&i),
            "host index {i} outside 1..={}",
            self.hosts
        );
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("LVT_DUMP_LOGS").is_some() {
            self.dump_logs();
        }
        // Never panic in drop (it may run while unwinding): report and carry on.
        match Command::new(self.scripts.join("teardown.sh"))
            .arg(&self.prefix)
            .stdin(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("lvt: tearing down {} failed: {other:?}", self.prefix),
        }
    }
}

/// One testbed per machine at a time: a mutex for the threads of this process, and a lock
/// file holding the owner's PID for other processes. A lock file whose PID is dead (a run that
/// was killed) is taken over.
struct MachineLock {
    _thread: MutexGuard<'static, ()>,
}

impl MachineLock {
    fn acquire() -> MachineLock {
        static IN_PROCESS: Mutex<()> = Mutex::new(());
        let guard = IN_PROCESS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let me = std::process::id();
        let mut announced = false;
        let got = poll_for(LOCK_WAIT, || {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(LOCK_FILE)
            {
                Ok(mut f) => {
                    writeln!(f, "{me}").unwrap();
                    Some(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner: Option<u32> = std::fs::read_to_string(LOCK_FILE)
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    match owner {
                        // Our own PID can only be a leftover: this thread holds the mutex.
                        Some(p) if p != me && Path::new(&format!("/proc/{p}")).exists() => {
                            if !announced {
                                eprintln!("lvt: waiting for the testbed of PID {p} ({LOCK_FILE})");
                                announced = true;
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        // Dead owner, or a file caught half-written: remove and retry. (A
                        // half-written file is at worst removed under a live owner that has
                        // not built anything yet; the next poll sees its PID.)
                        _ => {
                            std::thread::sleep(Duration::from_millis(100));
                            let again = std::fs::read_to_string(LOCK_FILE).unwrap_or_default();
                            let still: Option<u32> = again.trim().parse().ok();
                            if still.is_none_or(|p| {
                                p == me || !Path::new(&format!("/proc/{p}")).exists()
                            }) {
                                let _ = std::fs::remove_file(LOCK_FILE);
                            }
                        }
                    }
                    None
                }
                Err(e) => panic!("cannot create {LOCK_FILE}: {e}"),
            }
        });
        assert!(
            got.is_some(),
            "another testbed held {LOCK_FILE} for {LOCK_WAIT:?}"
        );
        MachineLock { _thread: guard }
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LOCK_FILE);
    }
}

/// Runs one of the testbed scripts, panicking with its stderr on failure.
fn script(dir: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(dir.join(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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

    fn txt(out: Output) -> String {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn hosts_run_guests_migrate_them_and_vanish_on_drop() {
        let before = root_ns_state();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let bed = Testbed::new(2);

        // Each host has its name, its address, multicast on e0 and no way out.
        assert_eq!(txt(bed.run(2, Path::new("hostname"), &[])), "hv2");
        let routes = txt(bed.run(1, Path::new("ip"), &[OsStr::new("route")]));
        assert!(routes.contains("239.0.0.0/8 dev e0"), "{routes}");
        assert!(!routes.contains("default"), "no way out: {routes}");
        let resolved = txt(bed.run(1, Path::new("getent"), &["hosts", "hv2"].map(OsStr::new)));
        assert_eq!(
            resolved.split_whitespace().collect::<Vec<_>>(),
            ["10.77.0.2", "hv2"]
        );

        // A capped busy guest and an idle one; CPU time shows which is which.
        bed.guest(1, "spin", Guest::Busy, 16, 1, Some(30));
        bed.guest(1, "nap", Guest::Idle, 16, 1, None);
        assert_eq!(bed.running(1).unwrap(), ["nap", "spin"]);
        // The host's only links are lo and its testbed veth; its only listener is libvirtd, on
        // the testbed address.
        let links = txt(bed.run(1, Path::new("ip"), &["-o", "link"].map(OsStr::new)));
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .collect();
        assert_eq!(names, ["lo", "e0"], "{links}");
        let listeners = txt(bed.run(1, Path::new("ss"), &["-Hltnu"].map(OsStr::new)));
        let local: Vec<&str> = listeners
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .collect();
        assert_eq!(local, ["10.77.0.1:16509"], "{listeners}");
        let t0 = (
            bed.cpu_time_ns(1, "spin").unwrap(),
            bed.cpu_time_ns(1, "nap").unwrap(),
        );
        std::thread::sleep(Duration::from_secs(3));
        let t1 = (
            bed.cpu_time_ns(1, "spin").unwrap(),
            bed.cpu_time_ns(1, "nap").unwrap(),
        );
        let (busy, idle) = (t1.0 - t0.0, t1.1 - t0.1);
        assert!(busy > 10 * idle, "busy {busy} ns vs idle {idle} ns");
        // The quota holds (30 % of 3 s = 0.9 s; generous margin for a loaded machine's timing).
        assert!(busy < 1_500_000_000, "capped guest used {busy} ns in 3 s");

        // Live migration from inside host 1 to host 2's TCP URI; each host's libvirtd agrees.
        let out = bed.run(
            1,
            Path::new("virsh"),
            &[
                "-c",
                "qemu:///system",
                "migrate",
                "--live",
                "--p2p",
                "--persistent",
                "--undefinesource",
                "spin",
                &bed.tcp_uri(2),
            ]
            .map(OsStr::new),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(bed.running(1).unwrap(), ["nap"]);
        assert_eq!(bed.running(2).unwrap(), ["spin"]);

        // libvirtd restarts; guests keep running and it finds them again.
        let old = bed.libvirtd_pid(2);
        bed.restart_libvirtd(2, Duration::ZERO);
        assert_ne!(bed.libvirtd_pid(2), old);
        assert_eq!(bed.running(2).unwrap(), ["spin"]);

        // A spawned program runs in the host, under its own PID.
        let mut p = bed.spawn(2, "sleeper", Path::new("/bin/sleep"), &[OsStr::new("300")]);
        let pid = p.pid();
        let comm = crate::poll_until(Duration::from_secs(10), || {
            let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (c.trim() == "sleep").then_some(c)
        });
        assert_eq!(comm.trim(), "sleep");
        let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(ns(pid), ns(std::process::id()));

        let prefix = bed.prefix().to_owned();
        drop(bed);
        assert!(!p.running(), "a process inside survived teardown");
        let leftovers: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !leftovers.iter().any(|n| n.starts_with(&prefix)),
            "{leftovers:?}"
        );
        assert!(!Path::new(STATE_ROOT).join(&prefix).exists());
        assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/{prefix}-h1")).exists());
        assert_eq!(root_ns_state(), before, "root namespace changed");
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
            hostname
        );
    }

    #[test]
    fn leftovers_of_a_dead_owner_go_first_and_nothing_of_them_survives() {
        // A testbed whose owner died without tearing it down (as after SIGKILL), with a guest.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let orphan = format!("gvirt-{dead}-orphan");
        let scripts = repo_root().join("tests/libvirt");
        // Built under the lock: another test's Testbed::new would (rightly) remove it
        // half-built.
        let lock = MachineLock::acquire();
        script(&scripts, "setup.sh", &[orphan.as_str(), "1"]);
        script(
            &scripts,
            "guest.sh",
            &[orphan.as_str(), "1", "lost", "idle"],
        );
        let state = Path::new(STATE_ROOT).join(&orphan);
        let pid_of = |f: &str| -> u32 {
            std::fs::read_to_string(state.join(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let pids = [
            pid_of("h1/holder.pid"),
            pid_of("h1/libvirtd.pid"),
            pid_of("h1/run/qemu/lost.pid"),
        ];
        let alive = |p: u32| {
            std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                !s.lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
        };
        assert!(
            pids.iter().all(|&p| alive(p)),
            "orphan not running: {pids:?}"
        );
        drop(lock);

        let bed = Testbed::new(1);
        assert!(!state.exists(), "orphan state left");
        assert!(!Path::new(&format!("/run/netns/{orphan}-h1")).exists());
        assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/{orphan}-h1")).exists());
        let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
        assert!(left.is_empty(), "orphan processes survived: {left:?}");
        // The live testbed was built after the clean-up and works.
        assert_eq!(bed.running(1).unwrap(), Vec::<String>::new());
    }
}
