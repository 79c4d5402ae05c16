//! Side-by-side load harness: the same XDR traffic against real gmond and gmond-rs, one after
//! the other, on 127.0.0.1 (run it inside a namespace with only `lo`: benches/gmond-load.sh).
//!
//! H spoofed hosts x M metrics; metadata first, then rounds of values where round r carries the
//! value r, so the XML read afterwards tells exactly which metrics are stale. Per daemon,
//! receive buffer and rate it reports: the rate reached, the daemon's CPU time per datagram
//! (utime+stime from /proc), datagrams the kernel dropped at the socket (/proc/net/udp), and
//! stale metrics after the run. With `--readers N`, N clients poll the XML back to back during
//! the load. With `--dump`, the time to fetch the whole document.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use ganglia_wire::xdr::DEFAULT_MAX_UDP_MSG_LEN;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, MetricType, Slope, Value};
use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    daemons: Vec<(String, PathBuf)>,
    hosts: usize,
    metrics: usize,
    rates: Vec<u64>,
    seconds: f64,
    buffers: Vec<Option<u32>>,
    readers: usize,
    pin: Option<String>,
    dump: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        daemons: Vec::new(),
        hosts: 1000,
        metrics: 10,
        rates: vec![20_000, 100_000, 200_000],
        seconds: 3.0,
        buffers: vec![None, Some(4 << 20)],
        readers: 0,
        pin: None,
        dump: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let next = |i: &mut usize| {
        *i += 1;
        args.get(*i)
            .cloned()
            .unwrap_or_else(|| panic!("{} needs a value", args[*i - 1]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--gmond" => o.daemons.push(("gmond 3.7.2".into(), next(&mut i).into())),
            "--gmond-rs" => o.daemons.push(("gmond-rs".into(), next(&mut i).into())),
            "--hosts" => o.hosts = next(&mut i).parse().unwrap(),
            "--metrics" => o.metrics = next(&mut i).parse().unwrap(),
            "--rates" => {
                o.rates = next(&mut i)
                    .split(',')
                    .map(|r| r.parse().unwrap())
                    .collect()
            }
            "--seconds" => o.seconds = next(&mut i).parse().unwrap(),
            "--buffers" => {
                o.buffers = next(&mut i)
                    .split(',')
                    .map(|b| (b != "default").then(|| b.parse().unwrap()))
                    .collect()
            }
            "--readers" => o.readers = next(&mut i).parse().unwrap(),
            "--pin" => o.pin = Some(next(&mut i)),
            "--dump" => o.dump = true,
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    assert!(
        !o.daemons.is_empty(),
        "give --gmond PATH and/or --gmond-rs PATH"
    );
    o
}

fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    udp: u16,
    tcp: u16,
    _dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start(bin: &PathBuf, buffer: Option<u32>, pin: &Option<String>) -> Daemon {
    let (udp, tcp) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("gmond-load-{}-{udp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("gmond.conf");
    let buf = buffer.map(|b| format!("buffer = {b}")).unwrap_or_default();
    std::fs::write(
        &conf,
        format!(
            "globals {{ daemonize = no setuid = no mute = yes host_dmax = 0 max_udp_msg_len = 1472 }}\n\
             cluster {{ name = \"load\" }}\n\
             udp_recv_channel {{ bind = 127.0.0.1 port = {udp} {buf} }}\n\
             tcp_accept_channel {{ bind = 127.0.0.1 port = {tcp} }}\n"
        ),
    )
    .unwrap();
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .arg("-c")
        .arg(&conf)
        .arg("-f")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        udp,
        tcp,
        _dir: dir,
    };
    let end = Instant::now() + Duration::from_secs(20);
    while read_xml(tcp).is_none() {
        assert!(Instant::now() < end, "{} did not start", bin.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn read_xml(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut v = Vec::new();
    s.read_to_end(&mut v).ok()?;
    Some(v)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The kernel's drop counter for the UDP socket bound to 127.0.0.1:`port`.
fn socket_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// Spoofed host `h`: its own HOST ("IP:name") although every datagram comes from one socket.
fn emitter(h: usize) -> Emitter {
    let ip = format!("10.{}.{}.{}", (h >> 16) & 255, (h >> 8) & 255, h & 255);
    let id = Identity::new("", Some(&format!("h{h}")), Some(&ip));
    Emitter::new(id, DEFAULT_MAX_UDP_MSG_LEN)
}

fn descriptor(name: &str) -> MetricDescriptor<'_> {
    MetricDescriptor {
        name,
        metric_type: MetricType::UInt32,
        format: "%u",
        units: "",
        slope: Slope::BOTH,
        tmax: 60,
        dmax: 0,
        // What gmond attaches to each of its own metrics (reference §A.4), so memory per
        // metric is measured with realistic metadata.
        extra: Extra::gmond_standard(
            name.as_bytes(),
            b"A metric of the load harness, described as gmond describes its own",
            b"load",
        ),
    }
}

/// Datagrams handed to the kernel per `sendmmsg` at most.
const SEND_BATCH: usize = 32;

/// Sends `total` datagrams from `make` at `rate` per second; returns the rate reached. The
/// schedule is kept per datagram; whatever is due when the sender gets to it goes out in one
/// `sendmmsg` (at most SEND_BATCH), so the sender's own system calls do not cap the rate.
fn paced(
    sock: &UdpSocket,
    port: u16,
    rate: u64,
    total: u64,
    mut make: impl FnMut(u64, &mut Vec<u8>),
) -> f64 {
    use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    sock.connect(("127.0.0.1", port)).unwrap();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(SEND_BATCH, None);
    let mut bufs: Vec<Vec<u8>> = (0..SEND_BATCH).map(|_| Vec::with_capacity(256)).collect();
    let addrs = [None::<SockaddrIn>; SEND_BATCH];
    let due = |i: u64| Duration::from_secs_f64(i as f64 / rate as f64);
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        while start.elapsed() < due(i) {
            std::hint::spin_loop();
        }
        let now = start.elapsed();
        let mut n = 0;
        while n < SEND_BATCH && i + (n as u64) < total && due(i + n as u64) <= now {
            make(i + n as u64, &mut bufs[n]);
            n += 1;
        }
        // n >= 1: datagram i was due when `now` was read.
        let iovs: Vec<[IoSlice<'_>; 1]> = bufs[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        let _ = sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs[..n],
            [],
            MsgFlags::empty(),
        );
        i += n as u64;
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Metrics whose VAL is not `want` (stale or missing), out of hosts x metrics.
fn stale(port: u16, hosts: usize, metrics: usize, want: u32) -> usize {
    let xml = read_xml(port).unwrap_or_default();
    let doc = ganglia_wire::xml::read_document(&xml).unwrap_or_default();
    let fresh = doc
        .clusters
        .iter()
        .flat_map(|c| &c.hosts)
        .flat_map(|h| &h.metrics)
        .filter(|m| m.val == want.to_string())
        .count();
    hosts * metrics - fresh.min(hosts * metrics)
}

fn main() {
    let o = parse_args();
    let emitters: Vec<Emitter> = (0..o.hosts).map(emitter).collect();
    let names: Vec<String> = (0..o.metrics).map(|m| format!("m{m}")).collect();
    let descriptors: Vec<MetricDescriptor<'_>> = names.iter().map(|m| descriptor(m)).collect();
    let total = (o.hosts * o.metrics) as u64;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    println!(
        "| daemon | rcvbuf | target rate/s | reached rate/s | CPU µs/datagram | socket drops | stale metrics | readers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, bin) in &o.daemons {
        for buffer in &o.buffers {
            let d = start(bin, *buffer, &o.pin);
            // Metadata for everything, paced, until the document shows every metric.
            let mds: Vec<Vec<u8>> = emitters
                .iter()
                .flat_map(|e| {
                    descriptors.iter().map(move |d| {
                        let mut b = Vec::new();
                        e.metadata(d, &mut b).unwrap();
                        b
                    })
                })
                .collect();
            paced(&sock, d.udp, 20_000, mds.len() as u64, |i, b| {
                b.clone_from(&mds[i as usize])
            });
            let mut round = 0u32;
            for &rate in &o.rates {
                round += 1;
                let stop = Arc::new(AtomicBool::new(false));
                let dumps = Arc::new(AtomicU64::new(0));
                let readers: Vec<_> = (0..o.readers)
                    .map(|_| {
                        let (stop, dumps, tcp) = (stop.clone(), dumps.clone(), d.tcp);
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                if read_xml(tcp).is_some() {
                                    dumps.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        })
                    })
                    .collect();
                let n = ((rate as f64 * o.seconds) as u64).max(total);
                let (cpu0, drops0) = (cpu_seconds(d.child.id()), socket_drops(d.udp));
                let reached = paced(&sock, d.udp, rate, n, |i, b| {
                    let k = (i % total) as usize;
                    // The last full pass of the run carries `round`; earlier ones round - 1.
                    let r = if i >= n - total {
                        round
                    } else {
                        round.saturating_sub(1)
                    };
                    b.clear();
                    emitters[k / o.metrics]
                        .value(&descriptors[k % o.metrics], Value::UInt(r), b)
                        .unwrap();
                });
                std::thread::sleep(Duration::from_millis(500));
                stop.store(true, Ordering::Relaxed);
                for r in readers {
                    let _ = r.join();
                }
                let cpu = cpu_seconds(d.child.id()) - cpu0;
                let drops = socket_drops(d.udp) - drops0;
                let st = stale(d.tcp, o.hosts, o.metrics, round);
                println!(
                    "| {label} | {} | {rate} | {reached:.0} | {:.2} | {drops} ({:.2} %) | {st} ({:.2} %) | {} ({} dumps, {:.1}/s) |",
                    buffer.map(|b| format!("{} KiB", b / 1024)).unwrap_or("default".into()),
                    cpu * 1e6 / n as f64,
                    100.0 * drops as f64 / n as f64,
                    100.0 * st as f64 / total as f64,
                    o.readers,
                    dumps.load(Ordering::Relaxed),
                    dumps.load(Ordering::Relaxed) as f64 / (n as f64 / reached + 0.5),
                );
            }
            if o.dump {
                let t = Instant::now();
                let xml = read_xml(d.tcp).unwrap_or_default();
                let rss = rss_kib(d.child.id());
                println!(
                    "| {label} | dump of {} hosts x {} metrics: {:.1} ms, {} bytes; RSS {} KiB = {:.2} KiB per metric |",
                    o.hosts,
                    o.metrics,
                    t.elapsed().as_secs_f64() * 1e3,
                    xml.len(),
                    rss,
                    rss as f64 / total as f64
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_spoofed_ip_and_name() {
        let e = emitter(0x01_02_03);
        assert_eq!(
            e.identity(),
            &Identity {
                host: "10.1.2.3:h66051".into(),
                spoof: true
            }
        );
        let mut b = Vec::new();
        e.value(&descriptor("m0"), Value::UInt(1), &mut b).unwrap();
        let m = ganglia_wire::decode(&b).unwrap();
        assert_eq!(
            (m.metric_id().host, m.metric_id().spoof),
            (&b"10.1.2.3:h66051"[..], true)
        );
    }
}
