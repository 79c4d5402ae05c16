//! Shared helpers for the cross-crate integration and interop tests: real Ganglia programs
//! started on 127.0.0.1 with configs that cannot send a packet off the machine, stopped by PID.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

pub mod lvt;
pub mod netns;
pub mod pcap;

use std::ffi::OsStr;
use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of the workspace (`gmond-rs`, `balancer-agent`, `balancer`, `ganglia-demo`,
/// `rrd-rs`), from the target directory this test runs from.
///
/// Cargo gives a test `CARGO_BIN_EXE_*` only for its own package's binaries, and these tests
/// run every component's, so they look beside themselves: a test executable lives in
/// `<target>/<profile>/deps/`, the binaries in `<target>/<profile>/`. The test command builds
/// them first with the same features and profile (`cargo build --workspace --bins
/// --all-features`), so the binary is the one built from the tree under test.
pub fn bin(name: &str) -> &'static Path {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in <target>/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first \
         (cargo build --workspace --bins --all-features; tests/run-all.sh does)",
        path.display()
    );
    Box::leak(path.into_boxed_path())
}

/// A fixture file under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Everything `addr:port` sends, read to EOF with a 10 s limit by a client that `run` starts
/// (inside a test host's namespaces); None when the connection fails or sends nothing.
pub fn read_tcp_with(
    run: impl FnOnce(&Path, &[&OsStr]) -> std::process::Output,
    addr: &str,
    port: u16,
) -> Option<Vec<u8>> {
    let port = port.to_string();
    let out = run(
        Path::new("timeout"),
        &[
            OsStr::new("10"),
            OsStr::new("bash"),
            OsStr::new("-c"),
            OsStr::new(r#"exec 3<>"/dev/tcp/$0/$1" && cat <&3"#),
            OsStr::new(addr),
            OsStr::new(&port),
        ],
    );
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// Metadata and value datagrams of metric `name` (`ty`, printed with `fmt`) = `value` for
/// `host` (an "IP:name" spoof when `spoof`), as gmond sends them.
pub fn metric_datagrams(
    host: &str,
    name: &str,
    spoof: bool,
    ty: &str,
    fmt: &str,
    value: ganglia_wire::Value<'_>,
) -> [Vec<u8>; 2] {
    use ganglia_wire::{encode, Message, Metadata, MetricId, Slope, ValueMsg};
    let id = MetricId {
        host: host.as_bytes(),
        name: name.as_bytes(),
        spoof,
    };
    let mut md = Vec::new();
    encode(
        &Message::Metadata(Metadata {
            id,
            metric_type: ty.as_bytes(),
            name: name.as_bytes(),
            units: b"",
            slope: Slope::BOTH,
            tmax: 60,
            dmax: 0,
            extra: vec![],
        }),
        &mut md,
    );
    let mut val = Vec::new();
    encode(
        &Message::Value(ValueMsg {
            id,
            fmt: fmt.as_bytes(),
            value,
        }),
        &mut val,
    );
    [md, val]
}

/// A TCP connection to 127.0.0.1:`port` from `from` with a tiny receive window, which the
/// test never reads: the server's write blocks early (an idle or hostile XML client).
pub fn idle_client(from: [u8; 4], port: u16) -> Option<socket2::Socket> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SockAddr::from(std::net::SocketAddrV4::new(from.into(), 0)))
        .ok()?;
    s.set_recv_buffer_size(4096).ok()?;
    s.connect_timeout(
        &SockAddr::from(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), port)),
        Duration::from_secs(2),
    )
    .ok()?;
    Some(s)
}

/// Sends SIGCONT to a process when dropped: a test that stops a daemon with SIGSTOP holds
/// one, so that a failure does not leave the daemon stopped.
pub struct ResumeOnDrop(pub u32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// `balancer simulate --json --policy POLICY --scenario DIR` (a recording directory); its
/// stdout, the report as JSON, after checking that it succeeded.
pub fn simulate_recording(dir: &Path, policy: &str) -> Vec<u8> {
    let out = Command::new(bin("balancer"))
        .args(["simulate", "--policy", policy, "--json", "--scenario"])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run balancer: {e}"));
    assert!(
        out.status.success(),
        "balancer simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A port that was free a moment ago on 127.0.0.1 (UDP and TCP both checked).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Fails with a clear message when a system program the tests drive is missing.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's {package} (tests/run-all.sh does)");
}

/// A real gmond 3.7.2 bound to 127.0.0.1 only, with no send channel (so it is mute: it never
/// transmits), killed by PID when dropped.
pub struct LoopbackGmond {
    child: Child,
    pub udp_port: u16,
    pub tcp_port: u16,
    _dir: TempDir,
}

impl LoopbackGmond {
    pub fn start(cluster: &str) -> LoopbackGmond {
        let gmond = require_program("gmond", "ganglia-monitor");
        let dir = TempDir::new("gmond");
        let (udp_port, tcp_port) = (free_port(), free_port());
        let conf = dir.path().join("gmond.conf");
        std::fs::write(
            &conf,
            format!(
                "globals {{\n  daemonize = no\n  setuid = no\n  mute = yes\n  host_dmax = 0\n}}\n\
                 cluster {{ name = \"{cluster}\" }}\n\
                 udp_recv_channel {{\n  bind = 127.0.0.1\n  port = {udp_port}\n  buffer = 4194304\n}}\n\
                 tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {tcp_port}\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new(gmond)
            .arg("-c")
            .arg(&conf)
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let g = LoopbackGmond {
            child,
            udp_port,
            tcp_port,
            _dir: dir,
        };
        // Ready when the XML port answers.
        poll_until(Duration::from_secs(20), || g.try_xml().map(|_| ()));
        g
    }

    pub fn try_xml(&self) -> Option<Vec<u8>> {
        read_xml(self.tcp_port)
    }

    pub fn xml(&self) -> Vec<u8> {
        self.try_xml().expect("gmond's XML port answers")
    }
}

impl Drop for LoopbackGmond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (by PID) and reaped when dropped, so a failing test leaves nothing
/// running.
pub struct Proc {
    child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `program` with `args`, output discarded (set RUST_LOG to see gmond-rs's own).
    pub fn spawn(name: &str, program: &Path, args: &[&std::ffi::OsStr]) -> Proc {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// [`Proc::spawn`] with the program's standard error appended to `log` (to read what it
    /// logged).
    pub fn spawn_logged(name: &str, program: &Path, args: &[&std::ffi::OsStr], log: &Path) -> Proc {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("{name}: log {}: {e}", log.display()));
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (a daemon that exited on its own is a test failure).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The XML document served on 127.0.0.1:`port`, read to EOF.
pub fn read_xml(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The stock config (see [`stock_config_with_channels`]) with every `collect_every` shortened to
/// `every` seconds and every `time_threshold` to `threshold`: peers that missed each other's
/// start-up metadata recover through metadata requests within `every` instead of up to 30 min.
pub fn fast_stock_config_with_channels(channels: &str, every: u32, threshold: u32) -> String {
    stock_config_with_channels(channels)
        .lines()
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with("collect_every") {
                format!("  collect_every = {every}")
            } else if t.starts_with("time_threshold") {
                format!("  time_threshold = {threshold}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// gmond.conf text of the fixture testbed (= `gmond -t` with the stock modules and collection
/// groups) with its channel sections replaced by `channels`.
pub fn stock_config_with_channels(channels: &str) -> String {
    let text = std::fs::read_to_string(fixture("ganglia-3.7.2/conf/gmond-node.conf")).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim_start();
        if !skipping
            && ["udp_send_channel", "udp_recv_channel", "tcp_accept_channel"]
                .iter()
                .any(|k| t.starts_with(k))
        {
            skipping = true;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
        if skipping && t.starts_with('}') {
            skipping = false;
        }
    }
    out.push_str(channels);
    out
}

/// Calls `f` until it returns Some, or panics at the deadline.
pub fn poll_until<T>(deadline: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll_for(deadline, f).unwrap_or_else(|| panic!("condition not met within {deadline:?}"))
}

/// Calls `f` until it returns Some; None at the deadline (for a custom failure message).
pub fn poll_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stock metrics whose values are the same for every daemon on one machine.
pub const MACHINE_WIDE: [&str; 9] = [
    "cpu_num",
    "cpu_speed",
    "mem_total",
    "swap_total",
    "boottime",
    "machine_type",
    "os_name",
    "os_release",
    "gexec",
];

/// Asserts that every metric of `reference` appears on `other` with the same metadata (TYPE,
/// UNITS, SLOPE, TMAX, DMAX, extras), and with the same value for the [`MACHINE_WIDE`] ones:
/// two hosts on one machine, one run by real gmond and one by gmond-rs.
pub fn assert_same_metrics(
    reference: &ganglia_wire::model::Host,
    other: &ganglia_wire::model::Host,
    context: &str,
) {
    for m in &reference.metrics {
        let o = other
            .metric(&m.name)
            .unwrap_or_else(|| panic!("{context}: {} missing", m.name));
        assert_eq!(
            (&o.ty, &o.units, &o.slope, o.tmax, o.dmax, &o.extra),
            (&m.ty, &m.units, &m.slope, m.tmax, m.dmax, &m.extra),
            "{context}: metadata of {}",
            m.name
        );
        if MACHINE_WIDE.contains(&m.name.as_str()) {
            assert_eq!(o.val, m.val, "{context}: value of {}", m.name);
        }
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("gmond-rs-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
