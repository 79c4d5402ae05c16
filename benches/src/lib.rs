//! Shared helpers for the benchmark harnesses: the load harness's emitter and descriptor, and
//! what the harnesses read about the daemons they start (ports, XML, /proc).

use ganglia_wire::xdr::DEFAULT_MAX_UDP_MSG_LEN;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope};
use std::io::Read;
use std::net::{TcpStream, UdpSocket};

/// The load harness's emitter for spoofed host `h`: its own HOST ("IP:name") although every
/// datagram comes from one socket.
pub fn harness_emitter(h: usize) -> Emitter {
    let ip = format!("10.{}.{}.{}", (h >> 16) & 255, (h >> 8) & 255, h & 255);
    let id = Identity::new("", Some(&format!("h{h}")), Some(&ip));
    Emitter::new(id, DEFAULT_MAX_UDP_MSG_LEN)
}

/// The load harness's metric `name`: a uint with what gmond attaches to each of its own
/// metrics (reference §A.4), so memory per metric is measured with realistic metadata.
pub fn harness_descriptor(name: &str) -> MetricDescriptor<'_> {
    MetricDescriptor {
        name,
        metric_type: MetricType::UInt32,
        format: "%u",
        units: "",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        extra: Extra::gmond_standard(
            name.as_bytes(),
            b"A metric of the load harness, described as gmond describes its own",
            b"load",
        ),
    }
}

/// A port free on 127.0.0.1 right now (UDP; the harnesses use it for TCP too).
pub fn free_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The whole XML document served on 127.0.0.1:`port`; None when nothing answers.
pub fn read_xml(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut v = Vec::new();
    s.read_to_end(&mut v).ok()?;
    Some(v)
}

/// What /proc says about a process (0 when it cannot be read: the process is gone).
pub mod proc {
    /// utime + stime of a process and all its threads, dead ones included, in seconds: the
    /// process's CPU-time clock (clock_getcpuclockid, nanoseconds), or /proc/PID/stat when that
    /// cannot be read. /proc/PID/stat counts in clock ticks of 10 ms, too coarse for a process
    /// that uses a few ms a second over a window of seconds (the footprint smoke's agents).
    pub fn cpu_seconds(pid: u32) -> f64 {
        use nix::time::{clock_getcpuclockid, clock_gettime};
        let pid_t = i32::try_from(pid).unwrap_or(0);
        if let Ok(t) =
            clock_getcpuclockid(nix::unistd::Pid::from_raw(pid_t)).and_then(clock_gettime)
        {
            return t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kib(pid: u32, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resident set size, KiB.
    pub fn rss_kib(pid: u32) -> u64 {
        status_kib(pid, "VmRSS")
    }

    /// The largest resident set size since the process started (VmHWM), KiB.
    pub fn peak_rss_kib(pid: u32) -> u64 {
        status_kib(pid, "VmHWM")
    }

    /// The kernel's drop counter for the UDP socket bound to 127.0.0.1:`port` (/proc/net/udp
    /// of the reader's network namespace).
    pub fn socket_drops(port: u16) -> u64 {
        let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        let local = format!("0100007F:{port:04X}");
        text.lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    }
}
