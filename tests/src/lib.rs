//! Shared helpers for the cross-crate integration and interop tests: real Ganglia programs
//! started on 127.0.0.1 with configs that cannot send a packet off the machine, stopped by PID.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture file under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
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
        let mut s = TcpStream::connect(("127.0.0.1", self.tcp_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        Some(buf)
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

/// Calls `f` until it returns Some, or panics at the deadline.
pub fn poll_until<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
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
