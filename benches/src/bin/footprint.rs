//! Footprint bench (issue 16): what one hypervisor's monitoring costs in a 1,000-host cluster.
//! Run it inside a namespace with only `lo` (benches/footprint.sh).
//!
//! An emulated cluster (H spoofed hosts, each with gmond 3.7.2's stock metric set, V VMs with
//! the per-VM metrics of gmond-rs's VM publisher, and a balancer agent's metrics) is sent from
//! one socket, spread evenly over time, to the measured host's daemon. The configurations run
//! one after the other, each with a warm-up and then a measured window:
//!
//! 1. real gmond 3.7.2 alone;
//! 2. gmond-rs plus a balancer agent that follows (an emulated host's name sorts first and it
//!    advertises a balancer, so it leads);
//! 3. gmond-rs plus a balancer agent that leads (its name sorts before every emulated host).
//!
//! The daemon is mute (it receives, serves XML, and sends nothing); the agent reads the daemon's
//! XML port every `--agent-interval` seconds and sends its metrics to the daemon's UDP port.
//! For every process over the window: CPU % of one core (utime+stime), RSS at the end, its mean
//! (sampled every 5 s) and its peak (VmHWM), the network bytes it reads, and for the daemon the
//! datagrams the kernel dropped at its socket.
//!
//! Network bytes read: /proc/PID/io `rchar` cannot say (it counts the read(2) family only, and
//! both daemons and the agent read their sockets with recv, recvfrom or recvmmsg, so it stays
//! 0), so they come from who sends what in the namespace, which holds nothing but the
//! harness, the daemon and the agent. The daemon reads the UDP payload sent to its port: the
//! harness's datagrams (counted by the sender) and the agent's (their number from the
//! namespace's `Udp OutDatagrams` less the harness's, their size from the agent's metrics as
//! the view shows them after the window, encoded by the agent's own encoder). The agent reads
//! the TCP payload of the window, the only TCP then (its XML polls): the namespace's
//! `IpExt InOctets` less those UDP datagrams (28 header bytes each) and 52 header bytes per TCP
//! segment (`Tcp InSegs`; IP, TCP and the timestamp option).
//!
//! What the emulated hosts send, from the senders' own code:
//! * stock metrics: gmond's default collection groups (`gmond -t`, bound as gmond-rs binds them)
//!   with the catalogue's descriptors; a metric with a value_threshold is sent every
//!   collect_every with a value that moved past it, the others every time_threshold; metadata
//!   before the first value and again every `--metadata-interval` seconds (gmond's
//!   send_metadata_interval; 60 by default, as gmond.conf advises for unicast: in a multicast
//!   cluster with 0 the other hosts would answer a restarted daemon's metadata requests, which
//!   a mute daemon does not send here, so periodic metadata stands in for them);
//! * VM metrics: `vmetrics::publish` for V running VMs (2 vCPUs, 8 GiB each) on a 32-CPU
//!   host, every `--vm-interval` seconds (libvirt_module's collect_every, 20 by default), with
//!   metadata every 120 s as gmond-rs's VM publisher does; `--vm-io` adds the 16 disk and
//!   network metrics per VM that QEMU hosts publish;
//! * agent metrics: the agent's ten `balancer_*` metrics in mode recommend, metadata and value
//!   every `--agent-interval` seconds, as the agent publishes them.
//!
//! Every metric of every host is its own stream with its own phase, so the cluster's rate is
//! flat (a real host sends a group's datagrams back to back). The configuration's first
//! seconds (`min(20, warm-up / 2)`) are a catch-up in which every stream sends its metadata and
//! a value once, so the daemon holds the whole view before the window.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement tool: fail loudly

use balancer_agent::metrics::{descriptors as agent_descriptors, encode_datagrams, AgentMetrics};
use balancer_agent::AgentConfig;
use benches::proc::{cpu_seconds, peak_rss_kib, rss_kib, socket_drops};
use benches::{free_port, read_xml};
use ganglia_wire::xdr::DEFAULT_MAX_UDP_MSG_LEN;
use ganglia_wire::{Emitter, Extra, Identity, MetricDescriptor, Slope, Value};
use gmond_metrics::hypervisor::{DomainInfo, DomainState, HostCapacity};
use gmond_metrics::linux::{MetricValue, ValueType};
use gmond_metrics::vmetrics::{publish, DomainSample, IoRates, VmMetric};
use gmond_rs::sender::{wire_type, wire_value, MetricPlan};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often gmond-rs's VM publisher re-sends a VM metric's metadata (gmond-rs/src/daemon/vm.rs).
const VM_METADATA_RESEND_S: u64 = 120;
/// The measured host's address in its agent's spoofed identity.
const AGENT_IP: &str = "10.255.255.254";
/// Seconds between RSS samples in the window.
const RSS_SAMPLE_S: f64 = 5.0;
/// Datagrams per `sendmmsg` at most.
const SEND_BATCH: usize = 64;

/// One configuration of the measured host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Real gmond 3.7.2 alone.
    Gmond,
    /// gmond-rs and an agent whose name sorts after the emulated leader's.
    Follower,
    /// gmond-rs and an agent whose name sorts before every emulated host's.
    Leader,
}

impl Setup {
    fn parse(s: &str) -> Setup {
        match s {
            "gmond" => Setup::Gmond,
            "follower" => Setup::Follower,
            "leader" => Setup::Leader,
            other => panic!("--configs: gmond, follower or leader, not {other}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Setup::Gmond => "gmond 3.7.2 alone",
            Setup::Follower => "gmond-rs + follower agent",
            Setup::Leader => "gmond-rs + leader agent",
        }
    }

    /// The measured agent's host NAME: `a-...` sorts before `hv0000`, `z-...` after it.
    fn agent_name(self) -> Option<&'static str> {
        match self {
            Setup::Gmond => None,
            Setup::Follower => Some("z-measured"),
            Setup::Leader => Some("a-measured"),
        }
    }
}

struct Opts {
    gmond: Option<PathBuf>,
    gmond_rs: Option<PathBuf>,
    agent: Option<PathBuf>,
    setups: Vec<Setup>,
    hosts: usize,
    vms: usize,
    vm_io: bool,
    warmup: f64,
    window: f64,
    agent_interval: u64,
    vm_interval: u64,
    metadata_interval: u64,
    agent_sets: Vec<String>,
    rs_conf: Option<PathBuf>,
    executor: String,
    probe_membership: bool,
    /// How the agent reads gmond-rs: `query` (its query channel) or `xml` (the XML port).
    agent_feed: String,
    pin: Option<String>,
    progress: f64,
}

const USAGE: &str =
    "footprint --gmond PATH --gmond-rs PATH --agent PATH [--configs gmond,follower,leader]
  [--smoke (= --hosts 20 --vms 2 --warmup 3 --window 5 --agent-interval 1)]
  [--hosts 1000] [--vms 20] [--vm-io] [--warmup 60] [--window 300] [--agent-interval 10]
  [--vm-interval 20] [--metadata-interval 60] [--agent-set 'key = value']... [--rs-conf FILE]
  [--executor libvirt|none] [--probe-membership] [--agent-feed query|xml] [--pin CPU] [--progress 30]";

fn parse_args() -> Opts {
    let mut o = Opts {
        gmond: None,
        gmond_rs: None,
        agent: None,
        setups: vec![Setup::Gmond, Setup::Follower, Setup::Leader],
        hosts: 1000,
        vms: 20,
        vm_io: false,
        warmup: 60.0,
        window: 300.0,
        agent_interval: 10,
        vm_interval: gmond_conf::LibvirtModule::DEFAULT_COLLECT_EVERY.as_secs(),
        metadata_interval: 60,
        agent_sets: Vec::new(),
        rs_conf: None,
        executor: "libvirt".into(),
        probe_membership: false,
        agent_feed: "query".into(),
        pin: None,
        progress: 30.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let next = |i: &mut usize| {
        *i += 1;
        args.get(*i)
            .cloned()
            .unwrap_or_else(|| panic!("{} needs a value\n{USAGE}", args[*i - 1]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--gmond" => o.gmond = Some(next(&mut i).into()),
            "--gmond-rs" => o.gmond_rs = Some(next(&mut i).into()),
            "--agent" => o.agent = Some(next(&mut i).into()),
            "--configs" => o.setups = next(&mut i).split(',').map(Setup::parse).collect(),
            "--hosts" => o.hosts = next(&mut i).parse().unwrap(),
            "--vms" => o.vms = next(&mut i).parse().unwrap(),
            "--vm-io" => o.vm_io = true,
            "--warmup" => o.warmup = next(&mut i).parse().unwrap(),
            "--window" => o.window = next(&mut i).parse().unwrap(),
            "--agent-interval" => o.agent_interval = next(&mut i).parse().unwrap(),
            "--vm-interval" => o.vm_interval = next(&mut i).parse().unwrap(),
            "--metadata-interval" => o.metadata_interval = next(&mut i).parse().unwrap(),
            "--agent-set" => o.agent_sets.push(next(&mut i)),
            "--rs-conf" => o.rs_conf = Some(next(&mut i).into()),
            "--executor" => o.executor = next(&mut i),
            "--probe-membership" => o.probe_membership = true,
            "--agent-feed" => {
                o.agent_feed = next(&mut i);
                assert!(
                    ["query", "xml"].contains(&o.agent_feed.as_str()),
                    "--agent-feed: query or xml"
                );
            }
            // Seconds instead of minutes, for tests; later flags still override.
            "--smoke" => {
                (o.hosts, o.vms, o.warmup, o.window, o.agent_interval) = (20, 2, 3.0, 5.0, 1)
            }
            "--pin" => o.pin = Some(next(&mut i)),
            "--progress" => o.progress = next(&mut i).parse().unwrap(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}\n{USAGE}"),
        }
        i += 1;
    }
    assert!(o.hosts >= 1, "--hosts must be at least 1");
    assert!(
        o.agent_interval >= 1 && o.vm_interval >= 1,
        "intervals of at least 1 s"
    );
    assert!(o.window > 0.0 && o.warmup >= 0.0, "a positive --window");
    assert!(
        ["libvirt", "none"].contains(&o.executor.as_str()),
        "--executor libvirt or none"
    );
    assert!(
        !(o.probe_membership && o.executor == "none"),
        "--probe-membership needs --executor libvirt (executor none reaches no hypervisor)"
    );
    for s in &o.setups {
        let need = match s {
            Setup::Gmond => [("--gmond", &o.gmond)].to_vec(),
            _ => [("--gmond-rs", &o.gmond_rs), ("--agent", &o.agent)].to_vec(),
        };
        for (flag, path) in need {
            assert!(path.is_some(), "{} needs {flag} PATH\n{USAGE}", s.label());
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The emulated cluster

/// A stock metric as every emulated host sends it.
struct Stock {
    plan: MetricPlan,
    /// collect_every when the group has a value_threshold for it, else time_threshold.
    period: Duration,
    base: MetricValue,
    /// How far each send moves the value (the value_threshold), or constant.
    step: Option<f64>,
}

/// Which metric of a host a stream sends.
#[derive(Debug, Clone, Copy)]
enum What {
    Stock(u16),
    Vm(u32),
    Agent(u8),
}

/// Everything the emulated hosts send; built once, shared by every configuration.
struct Cluster {
    names: Vec<String>,
    emitters: Vec<Emitter>,
    stock: Vec<Stock>,
    /// Per host: what `vmetrics::publish` gives for its VMs.
    vms: Vec<Vec<VmMetric>>,
    agent: [MetricDescriptor<'static>; 10],
    vm_period: Duration,
    agent_period: Duration,
    /// Stock metadata re-sent this often; None: only before the first value.
    stock_metadata: Option<Duration>,
}

/// Emulated host `h`'s NAME: `hv` and a zero-padded number, so names sort by number.
fn host_name(h: usize, hosts: usize) -> String {
    let width = (hosts.saturating_sub(1)).to_string().len().max(4);
    format!("hv{h:0width$}")
}

/// Emulated host `h`'s address: 10.x.y.z from h + 1.
fn host_ip(h: usize) -> String {
    let n = h + 1;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// A deterministic number in [0, 1) for `i` (Knuth's multiplicative hash).
fn frac(i: u64) -> f64 {
    (i.wrapping_mul(2_654_435_761) & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// A value of type `t` near `x`.
fn of_type(t: ValueType, x: f64, s: &str) -> MetricValue {
    match t {
        ValueType::U16 => MetricValue::U16(x as u16),
        ValueType::U32 => MetricValue::U32(x as u32),
        ValueType::F32 => MetricValue::F32(x as f32),
        ValueType::F64 => MetricValue::F64(x),
        ValueType::Str => MetricValue::Str(s.to_owned()),
    }
}

/// What a 32-CPU, 256 GiB hypervisor reports for a stock metric.
fn stock_base(name: &str, t: ValueType, started: u32) -> MetricValue {
    let (x, s) = match name {
        "heartbeat" => (f64::from(started), ""),
        "cpu_num" => (32.0, ""),
        "cpu_speed" => (2400.0, ""),
        "mem_total" => (263_000_000.0, ""),
        "swap_total" => (8_388_604.0, ""),
        "boottime" => (f64::from(started.saturating_sub(30 * 86_400)), ""),
        "machine_type" => (0.0, "x86_64"),
        "os_name" => (0.0, "Linux"),
        "os_release" => (0.0, "6.1.0-28-amd64"),
        "location" => (0.0, "unspecified"),
        "gexec" => (0.0, "OFF"),
        "cpu_user" => (35.0, ""),
        "cpu_system" => (6.0, ""),
        "cpu_idle" => (50.0, ""),
        "cpu_aidle" => (80.0, ""),
        "load_one" | "load_five" | "load_fifteen" => (12.0, ""),
        "proc_run" => (4.0, ""),
        "proc_total" => (900.0, ""),
        "mem_free" => (40_000_000.0, ""),
        "mem_shared" => (100_000.0, ""),
        "mem_buffers" => (500_000.0, ""),
        "mem_cached" => (20_000_000.0, ""),
        "swap_free" => (8_000_000.0, ""),
        "bytes_in" | "bytes_out" => (5_000_000.0, ""),
        "pkts_in" | "pkts_out" => (8_000.0, ""),
        "disk_total" => (900.0, ""),
        "disk_free" => (450.0, ""),
        "part_max_used" => (50.0, ""),
        _ => (1.0, "x"),
    };
    of_type(t, x, s)
}

/// `base` moved by `k` steps.
fn vary(base: &MetricValue, step: Option<f64>, k: u32) -> MetricValue {
    let Some(s) = step else {
        return base.clone();
    };
    let d = s * f64::from(k);
    match base {
        MetricValue::U16(x) => MetricValue::U16((f64::from(*x) + d) as u16),
        MetricValue::U32(x) => MetricValue::U32((f64::from(*x) + d) as u32),
        MetricValue::F32(x) => MetricValue::F32(*x + d as f32),
        MetricValue::F64(x) => MetricValue::F64(*x + d),
        MetricValue::Str(_) => base.clone(),
    }
}

/// The VM metrics of emulated host `h` (named `host`): `vms` running VMs of 2 vCPUs and 8 GiB.
fn vm_metrics(h: usize, host: &str, vms: usize, io: bool) -> Vec<VmMetric> {
    const GIB_KIB: u64 = 1 << 20;
    let domains: Vec<DomainSample> = (0..vms)
        .map(|j| {
            let seed = (h * 1000 + j) as u64;
            DomainSample {
                info: DomainInfo {
                    name: format!("{host}-vm{j:02}"),
                    uuid: format!("00000000-0000-4000-8000-{h:06x}{j:06x}"),
                    state: DomainState::Running,
                    vcpus_current: 2,
                    vcpus_max: 2,
                    mem_max_kib: 8 * GIB_KIB,
                    mem_current_kib: 8 * GIB_KIB,
                    mem_used_kib: (4.0 + 3.0 * frac(seed + 7)) as u64 * GIB_KIB,
                    cpu_time_ns: 0,
                },
                vcpu_util: Some(5.0 + 55.0 * frac(seed)),
                io: io.then_some(IoRates {
                    disk_space: Some((40 << 30, 20 << 30)),
                    disk: Some([20.0, 400_000.0, 30.0, 600_000.0, 0.0]),
                    net: Some([200_000.0, 150_000.0, 300.0, 250.0, 0.0, 0.0, 0.0, 0.0]),
                }),
            }
        })
        .collect();
    let used: u64 = domains.iter().map(|d| d.info.mem_current_kib).sum();
    let capacity = HostCapacity {
        cpus: 32,
        mhz: 2400,
        mem_kib: 256 * GIB_KIB,
        mem_free_kib: (256 * GIB_KIB).saturating_sub(used),
    };
    publish(&capacity, &domains)
}

/// What a VM metric announces: gmond-rs's VM publisher's descriptor (gmond-rs/src/vmpublish.rs,
/// private there; the test below checks that the bytes are the publisher's).
fn vm_descriptor(m: &VmMetric) -> MetricDescriptor<'_> {
    let mut extra =
        Extra::gmond_standard(m.title.as_bytes(), m.desc.as_bytes(), m.group.as_bytes());
    extra.extend(m.extras.iter().map(|(k, v)| Extra {
        name: k.as_bytes(),
        data: v.as_bytes(),
    }));
    MetricDescriptor {
        name: &m.name,
        metric_type: wire_type(m.value_type()),
        format: m.format,
        units: m.units,
        slope: Slope::from_name(m.slope),
        tmax: m.tmax,
        dmax: m.dmax,
        extra,
    }
}

/// How far a VM metric moves per send: utilisations and rates by 1, free memory by 1 MiB;
/// counts, sizes and states stay.
fn vm_step(m: &VmMetric) -> Option<f64> {
    match &m.value {
        MetricValue::F32(_) => Some(1.0),
        MetricValue::F64(_) if m.name == "vnode_mem_free" => Some(1024.0),
        _ => None,
    }
}

/// A value the agent publishes, owned.
fn owned(v: Value<'_>) -> MetricValue {
    match v {
        Value::UShort(x) => MetricValue::U16(x),
        Value::UInt(x) => MetricValue::U32(x),
        Value::Float(x) => MetricValue::F32(x),
        Value::Double(x) => MetricValue::F64(x),
        Value::Str(s) => MetricValue::Str(String::from_utf8_lossy(s).into_owned()),
        other => panic!("the agent publishes no {other:?}"),
    }
}

/// The agent metrics of an emulated host in mode recommend that sees `leader` lead.
fn agent_values(leads: bool, leader: &str) -> Vec<MetricValue> {
    let m = AgentMetrics {
        leader: leads,
        mode: "recommend".into(),
        leader_name: leader.into(),
        imbalance: 9.5,
        ..AgentMetrics::default()
    };
    m.values().into_iter().map(owned).collect()
}

impl Cluster {
    fn new(o: &Opts) -> Cluster {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let conf = gmond_conf::parse_str_with(
            gmond_conf::default_config_text(),
            "<built-in default>",
            &gmond_conf::MemSource::new(),
            &gmond_conf::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let stock: Vec<Stock> = gmond_rs::daemon::group_plans(&conf)
            .into_iter()
            .flat_map(|g| {
                g.metrics.into_iter().map(move |plan| {
                    let period = match plan.value_threshold {
                        Some(_) if !g.collect_once => g.collect_every,
                        _ => g.time_threshold,
                    };
                    let base = stock_base(plan.spec.name, plan.spec.value_type, started);
                    let step = plan.value_threshold;
                    Stock {
                        plan,
                        period,
                        base,
                        step,
                    }
                })
            })
            .collect();
        let names: Vec<String> = (0..o.hosts).map(|h| host_name(h, o.hosts)).collect();
        let emitters = names
            .iter()
            .enumerate()
            .map(|(h, n)| {
                let id = Identity::new("", Some(n), Some(&host_ip(h)));
                Emitter::new(id, DEFAULT_MAX_UDP_MSG_LEN)
            })
            .collect();
        let vms = names
            .iter()
            .enumerate()
            .map(|(h, n)| vm_metrics(h, n, o.vms, o.vm_io))
            .collect();
        let cfg = AgentConfig::default();
        Cluster {
            names,
            emitters,
            stock,
            vms,
            // A real agent on its own host is not spoofed: no SPOOF_HOST extra.
            agent: agent_descriptors(None, cfg.metric_tmax_s, cfg.metric_dmax_s),
            vm_period: Duration::from_secs(o.vm_interval),
            agent_period: Duration::from_secs(o.agent_interval),
            stock_metadata: (o.metadata_interval > 0)
                .then(|| Duration::from_secs(o.metadata_interval)),
        }
    }

    /// The metrics of one host, in send order, with their periods and metadata re-send
    /// intervals (zero: metadata with every value).
    fn slots(&self) -> Vec<(What, Duration, Option<Duration>)> {
        let vm_md = Some(Duration::from_secs(VM_METADATA_RESEND_S));
        let per_host_vms = self.vms.first().map_or(0, Vec::len);
        (0..self.stock.len())
            .map(|i| {
                let s = &self.stock[i];
                (What::Stock(i as u16), s.period, self.stock_metadata)
            })
            .chain((0..per_host_vms).map(|j| (What::Vm(j as u32), self.vm_period, vm_md)))
            .chain((0..self.agent.len()).map(|k| {
                (
                    What::Agent(k as u8),
                    self.agent_period,
                    Some(Duration::ZERO),
                )
            }))
            .collect()
    }

    /// Metrics per host in the XML view: heartbeat and location are not printed.
    fn printed_per_host(&self) -> usize {
        let hidden = self
            .stock
            .iter()
            .filter(|s| ["heartbeat", "location"].contains(&s.plan.spec.name))
            .count();
        self.slots().len() - hidden
    }

    /// Datagrams per second once the catch-up is over.
    fn steady_rate(&self) -> f64 {
        let per_host: f64 = self
            .slots()
            .iter()
            .map(|(_, p, md)| {
                let p = p.as_secs_f64();
                let md_rate = match md {
                    None => 0.0,
                    // Metadata rides on the first send at least `m` after the last one.
                    Some(m) => 1.0 / ((m.as_secs_f64() / p).ceil().max(1.0) * p),
                };
                1.0 / p + md_rate
            })
            .sum();
        per_host * self.names.len() as f64
    }
}

/// One metric of one emulated host: when it is next due, and its metadata state.
struct Stream {
    host: u32,
    what: What,
    period_ns: u64,
    /// Offset of its steady sends within the period, ns.
    phase_ns: u64,
    /// None: metadata only before the first value.
    metadata_every_ns: Option<u64>,
    metadata_due_ns: u64,
    sends: u32,
}

/// What the sender thread reports while it runs.
#[derive(Default)]
struct SenderStats {
    datagrams: AtomicU64,
    /// UDP payload bytes of the datagrams sent.
    bytes: AtomicU64,
    /// Largest delay of a datagram behind its schedule since last read, ms.
    lag_ms: AtomicU64,
    send_errors: AtomicU64,
}

/// The sender thread of one configuration; stopped on drop.
struct Sender {
    stop: Arc<AtomicBool>,
    stats: Arc<SenderStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts sending the cluster to 127.0.0.1:`port` as seen in `setup`: a catch-up of every
/// stream's metadata and value over `catch_up`, then each stream every period at its phase.
fn start_sender(cluster: Arc<Cluster>, setup: Setup, port: u16, catch_up: Duration) -> Sender {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SenderStats::default());
    let (s, st) = (stop.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || send_loop(&cluster, setup, port, catch_up, &s, &st))
        .unwrap();
    Sender {
        stop,
        stats,
        thread: Some(thread),
    }
}

fn send_loop(
    c: &Cluster,
    setup: Setup,
    port: u16,
    catch_up: Duration,
    stop: &AtomicBool,
    stats: &SenderStats,
) {
    use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    sock.connect(("127.0.0.1", port)).unwrap();

    // With the measured agent leading, no emulated host leads; else the first one does.
    let leader = match setup {
        Setup::Leader => Setup::Leader.agent_name().unwrap().to_owned(),
        _ => c.names[0].clone(),
    };
    let agent_plain = agent_values(false, &leader);
    let agent_leading = agent_values(true, &leader);
    let leading_host = (setup != Setup::Leader).then_some(0u32);

    // Phases: streams of one period are spread evenly over it, metric by metric across hosts.
    let slots = c.slots();
    let hosts = c.names.len() as u64;
    let mut class_size: BTreeMap<u64, u64> = BTreeMap::new();
    let mut slot_rank = Vec::with_capacity(slots.len());
    for (_, p, _) in &slots {
        let n = class_size.entry(p.as_nanos() as u64).or_default();
        slot_rank.push(*n);
        *n += 1;
    }
    let mut streams = Vec::with_capacity(slots.len() * c.names.len());
    let mut heap = BinaryHeap::with_capacity(slots.len() * c.names.len());
    let total = (slots.len() as u64 * hosts) as f64;
    for h in 0..hosts {
        for (j, (what, period, md)) in slots.iter().enumerate() {
            let period_ns = period.as_nanos() as u64;
            let rank = slot_rank[j] * hosts + h;
            let size = class_size[&period_ns] * hosts;
            let idx = streams.len() as u64;
            streams.push(Stream {
                host: h as u32,
                what: *what,
                period_ns,
                phase_ns: ((rank as f64 + 0.5) / size as f64 * period_ns as f64) as u64,
                metadata_every_ns: md.map(|m| m.as_nanos() as u64),
                metadata_due_ns: 0,
                sends: 0,
            });
            // The catch-up: host after host, evenly over `catch_up`.
            let due = (idx as f64 / total * catch_up.as_nanos() as f64) as u64;
            heap.push(Reverse((due, idx as u32)));
        }
    }
    let catch_up_ns = catch_up.as_nanos() as u64;

    let mut bufs: Vec<Vec<u8>> = (0..SEND_BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(SEND_BATCH, None);
    let addrs = [None::<SockaddrIn>; SEND_BATCH];
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_nanos() as u64;
        let Some(&Reverse((due, _))) = heap.peek() else {
            break;
        };
        if due > now {
            std::thread::sleep(Duration::from_nanos((due - now).min(20_000_000)));
            continue;
        }
        let lag_ms = (now - due) / 1_000_000;
        stats.lag_ms.fetch_max(lag_ms, Ordering::Relaxed);
        let mut n = 0;
        while n + 2 <= SEND_BATCH {
            let Some(&Reverse((due, idx))) = heap.peek() else {
                break;
            };
            if due > now {
                break;
            }
            heap.pop();
            let s = &mut streams[idx as usize];
            let h = s.host as usize;
            let md = match s.metadata_every_ns {
                _ if s.sends == 0 => true,
                Some(every) => now >= s.metadata_due_ns || every == 0,
                None => false,
            };
            if md {
                if let Some(every) = s.metadata_every_ns {
                    // After the catch-up, re-sends start at a phase of their own.
                    s.metadata_due_ns = if s.sends == 0 {
                        now + (frac(u64::from(idx)) * every as f64) as u64
                    } else {
                        now + every
                    };
                }
            }
            let k = s.sends % 3;
            let (d, v) = match s.what {
                What::Stock(i) => {
                    let st = &c.stock[i as usize];
                    (st.plan.descriptor(), vary(&st.base, st.step, k))
                }
                What::Vm(j) => {
                    let m = &c.vms[h][j as usize];
                    (vm_descriptor(m), vary(&m.value, vm_step(m), k))
                }
                What::Agent(a) => {
                    let vals = if leading_host == Some(s.host) {
                        &agent_leading
                    } else {
                        &agent_plain
                    };
                    (c.agent[a as usize].clone(), vals[a as usize].clone())
                }
            };
            let e = &c.emitters[h];
            if md {
                bufs[n].clear();
                e.metadata(&d, &mut bufs[n]).unwrap();
                n += 1;
            }
            bufs[n].clear();
            e.value(&d, wire_value(&v), &mut bufs[n]).unwrap();
            n += 1;
            s.sends += 1;
            let next = if s.sends == 1 {
                catch_up_ns + s.phase_ns
            } else {
                due + s.period_ns
            };
            heap.push(Reverse((next, idx)));
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = bufs[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        match sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &iovs,
            &addrs[..n],
            [],
            MsgFlags::empty(),
        ) {
            Ok(r) => {
                let sent = r.count();
                let bytes: usize = bufs[..sent].iter().map(Vec::len).sum();
                stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                let sent = sent as u64;
                stats.datagrams.fetch_add(sent, Ordering::Relaxed);
                stats
                    .send_errors
                    .fetch_add(n as u64 - sent, Ordering::Relaxed);
            }
            Err(_) => {
                stats.send_errors.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The measured processes

/// A process this harness started; stopped by PID (SIGTERM, then SIGKILL) on drop.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
        Proc {
            name,
            child,
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the end of its log if it has exited.
    fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `bin` under `taskset -c CPU` when pinned.
fn command(bin: &Path, pin: &Option<String>) -> Command {
    match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// A directory of this run's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("footprint-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The measured daemon's gmond.conf, the same for gmond and gmond-rs: it receives on
/// 127.0.0.1:`udp`, serves XML on 127.0.0.1:`tcp`, and sends nothing (mute, no send channel).
fn daemon_conf(udp: u16, tcp: u16) -> String {
    format!(
        "globals {{\n  daemonize = no\n  setuid = no\n  mute = yes\n  deaf = no\n  \
         max_udp_msg_len = 1472\n  send_metadata_interval = 0\n}}\n\
         cluster {{\n  name = \"footprint\"\n}}\n\
         udp_recv_channel {{\n  bind = 127.0.0.1\n  port = {udp}\n}}\n\
         tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {tcp}\n}}\n"
    )
}

/// The agent's gmond.conf: its identity (the measured host, spoofed so that its NAME is
/// `name`) and where its metrics go (the daemon's UDP port).
fn agent_gmond_conf(name: &str, udp: u16) -> String {
    format!(
        "globals {{\n  override_hostname = \"{name}\"\n  override_ip = \"{AGENT_IP}\"\n}}\n\
         udp_send_channel {{\n  host = 127.0.0.1\n  port = {udp}\n}}\n"
    )
}

/// The agent's TOML: recommend mode, the daemon's XML port, the configured executor, and as
/// inventory every emulated host and itself (empty with `--probe-membership`); `--agent-set`
/// lines replace a generated key of the same name or add one.
fn agent_toml(o: &Opts, name: &str, tcp: u16, query: Option<u16>, hosts: &[String]) -> String {
    let trusted = if o.probe_membership {
        "[]".to_string()
    } else {
        let mut all: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        all.push(format!("\"{name}\""));
        format!("[{}]", all.join(", "))
    };
    let generated = [
        ("mode", "\"recommend\"".to_string()),
        ("interval_s", o.agent_interval.to_string()),
        ("feed", format!("\"127.0.0.1:{tcp}\"")),
        (
            "query",
            query.map_or("\"\"".to_string(), |q| format!("\"127.0.0.1:{q}\"")),
        ),
        ("executor", format!("\"{}\"", o.executor)),
        // libvirt's in-process test driver: every host's URI is the same fresh test node.
        ("uri_template", "\"test:///default\"".to_string()),
        ("trusted_hosts", trusted),
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = o.agent_sets.iter().map(|l| key(l)).collect();
    let mut out = String::from("# written by benches/src/bin/footprint.rs\n");
    for (k, v) in generated {
        if !overridden.iter().any(|o| o == k) {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    for l in &o.agent_sets {
        out.push_str(l);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// One process's figures over the window.
struct Measured {
    process: String,
    cpu_pct: f64,
    rss_end_kib: u64,
    rss_mean_kib: f64,
    rss_peak_kib: u64,
    read_per_s: f64,
    /// The daemon's row: datagrams sent to it per second and the drops at its socket.
    traffic: Option<(f64, u64, u64)>,
}

/// What the daemon's view holds after the window.
struct ViewCheck {
    hosts: usize,
    metrics: usize,
    xml_bytes: usize,
}

/// The namespace's kernel counters the byte accounting needs (/proc/net is the reader's
/// namespace, which the harness shares with the measured processes).
#[derive(Debug, Clone, Copy, Default)]
struct NetCounters {
    /// IpExt InOctets: bytes of every IP packet received (all of them are on `lo`).
    in_octets: u64,
    /// Tcp InSegs.
    tcp_in_segs: u64,
    /// Udp OutDatagrams: datagrams sent by the harness and the agent.
    udp_out: u64,
}

/// A field of a /proc/net/snmp-style file: a `Section:` line of names, then one of values.
fn snmp_field(text: &str, section: &str, field: &str) -> u64 {
    let prefix = format!("{section}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn net_counters() -> NetCounters {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    NetCounters {
        in_octets: snmp_field(&netstat, "IpExt", "InOctets"),
        tcp_in_segs: snmp_field(&snmp, "Tcp", "InSegs"),
        udp_out: snmp_field(&snmp, "Udp", "OutDatagrams"),
    }
}

/// UDP payload bytes of one round of the agent's datagrams (metadata and value of each of its
/// metrics), with the values its host shows in `doc`: only the strings change the sizes.
fn agent_round_bytes(doc: &ganglia_wire::model::Document, name: &str) -> (u64, u64) {
    let host = doc
        .clusters
        .iter()
        .flat_map(|c| &c.hosts)
        .find(|h| h.name == name);
    let val = |m: &str| {
        host.and_then(|h| h.metric(m))
            .map(|m| m.val.clone())
            .unwrap_or_default()
    };
    let metrics = AgentMetrics {
        leader: val("balancer_leader").trim() == "1",
        mode: val("balancer_mode"),
        leader_name: val("balancer_leader_name"),
        recent_moves: val("balancer_recent_moves"),
        ..AgentMetrics::default()
    };
    let id = Identity::new("", Some(name), Some(AGENT_IP));
    let cfg = AgentConfig::default();
    let d = encode_datagrams(
        &id,
        &metrics,
        cfg.metric_tmax_s,
        cfg.metric_dmax_s,
        true,
        DEFAULT_MAX_UDP_MSG_LEN,
        0,
    );
    (d.len() as u64, d.iter().map(|b| b.len() as u64).sum())
}

/// The agent's role as its own metrics in the view say (`balancer_leader`,
/// `balancer_leader_name` on its host).
fn agent_role(doc: &ganglia_wire::model::Document, name: &str) -> String {
    let host = doc
        .clusters
        .iter()
        .flat_map(|c| &c.hosts)
        .find(|h| h.name == name);
    let Some(h) = host else {
        return "not in the view".into();
    };
    let leader = h
        .metric("balancer_leader")
        .map(|m| m.val.trim().to_string());
    let leader_name = h
        .metric("balancer_leader_name")
        .map(|m| m.val.clone())
        .unwrap_or_default();
    match leader.as_deref() {
        Some("1") => "leader".into(),
        Some(_) if !leader_name.is_empty() => format!("follower; leader {leader_name}"),
        Some(_) => "no leader".into(),
        None => "no balancer_leader metric".into(),
    }
}

fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// Sleeps until `end`, calling `tick(now)` at least once a second.
fn wait_until(end: Instant, mut tick: impl FnMut(Instant)) {
    loop {
        let now = Instant::now();
        tick(now);
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_secs(1)));
    }
}

/// Runs one configuration: start, warm up, measure, check the view, stop.
fn run_setup(
    o: &Opts,
    setup: Setup,
    cluster: &Arc<Cluster>,
) -> (Vec<Measured>, ViewCheck, Option<String>) {
    let label = setup.label();
    let dir = TempDir::new(match setup {
        Setup::Gmond => "gmond",
        Setup::Follower => "follower",
        Setup::Leader => "leader",
    });
    let (udp, tcp) = (free_port().unwrap(), free_port().unwrap());
    // The agent reads gmond-rs's query channel (the shipped way), or with `--agent-feed xml`
    // its XML port (whole-view polling: the regression this bench exists to show).
    let query = (setup != Setup::Gmond && o.agent_feed == "query").then(|| free_port().unwrap());
    let conf = dir.0.join("gmond.conf");
    std::fs::write(&conf, daemon_conf(udp, tcp)).unwrap();

    let mut procs: Vec<Proc> = Vec::new();
    match setup {
        Setup::Gmond => {
            let mut cmd = command(o.gmond.as_deref().unwrap(), &o.pin);
            cmd.arg("-c").arg(&conf).arg("-f");
            procs.push(Proc::spawn(
                "gmond 3.7.2",
                &mut cmd,
                &dir.0.join("gmond.log"),
            ));
        }
        Setup::Follower | Setup::Leader => {
            // Our own gmond-rs.conf (so /etc/ganglia/gmond-rs.conf never is read): the query
            // channel, then the given file's text.
            let p = dir.0.join("gmond-rs.conf");
            let mut text = query.map_or(String::new(), |q| {
                format!("query_channel {{\n  port = {q}\n}}\n")
            });
            if let Some(given) = &o.rs_conf {
                text.push_str(&std::fs::read_to_string(given).unwrap());
            }
            std::fs::write(&p, text).unwrap();
            let rs = p;
            let mut cmd = command(o.gmond_rs.as_deref().unwrap(), &o.pin);
            cmd.arg("-c").arg(&conf).arg("-f").arg("--rs-conf").arg(&rs);
            procs.push(Proc::spawn(
                "gmond-rs",
                &mut cmd,
                &dir.0.join("gmond-rs.log"),
            ));
        }
    }
    let end = Instant::now() + Duration::from_secs(20);
    while read_xml(tcp).is_none() {
        procs[0].check_running();
        assert!(Instant::now() < end, "{label}: the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(name) = setup.agent_name() {
        let gconf = dir.0.join("agent-gmond.conf");
        std::fs::write(&gconf, agent_gmond_conf(name, udp)).unwrap();
        let toml = dir.0.join("agent.toml");
        std::fs::write(&toml, agent_toml(o, name, tcp, query, &cluster.names)).unwrap();
        let mut cmd = command(o.agent.as_deref().unwrap(), &o.pin);
        cmd.arg("--conf")
            .arg(&gconf)
            .arg("--config")
            .arg(&toml)
            .arg("--name")
            .arg(name);
        procs.push(Proc::spawn(
            "balancer-agent",
            &mut cmd,
            &dir.0.join("agent.log"),
        ));
    }

    let catch_up = Duration::from_secs_f64((o.warmup / 2.0).min(20.0));
    let sender = start_sender(cluster.clone(), setup, udp, catch_up);
    let stats = sender.stats.clone();
    let t0 = Instant::now();
    let mut last = (t0, 0u64);
    let mut progress = |phase: &str, now: Instant, total: f64, since: Instant| {
        if now.duration_since(last.0).as_secs_f64() + 1e-3 < o.progress {
            return;
        }
        let sent = stats.datagrams.load(Ordering::Relaxed);
        let rate = (sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        eprintln!(
            "footprint: {label}: {phase} {:.0}/{total:.0} s, {} datagrams/s sent, sender lag {} ms",
            now.duration_since(since).as_secs_f64(),
            fmt_int(rate),
            stats.lag_ms.swap(0, Ordering::Relaxed),
        );
        last = (now, sent);
    };
    eprintln!(
        "footprint: {label}: started (UDP {udp}, XML {tcp}); warm-up {} s",
        o.warmup
    );
    wait_until(t0 + Duration::from_secs_f64(o.warmup), |now| {
        progress("warm-up", now, o.warmup, t0)
    });
    for p in &mut procs {
        p.check_running();
    }

    // The window.
    let w0 = Instant::now();
    let before: Vec<f64> = procs.iter().map(|p| cpu_seconds(p.pid())).collect();
    let (sent0, bytes0) = (
        stats.datagrams.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
    );
    let (net0, drops0) = (net_counters(), socket_drops(udp));
    let mut rss_sum = vec![0.0; procs.len()];
    let mut rss_n = 0u32;
    let mut next_rss = w0;
    let pids: Vec<u32> = procs.iter().map(Proc::pid).collect();
    wait_until(w0 + Duration::from_secs_f64(o.window), |now| {
        if now >= next_rss {
            for (s, &pid) in rss_sum.iter_mut().zip(&pids) {
                *s += rss_kib(pid) as f64;
            }
            rss_n += 1;
            next_rss += Duration::from_secs_f64(RSS_SAMPLE_S);
        }
        progress("window", now, o.window, w0);
    });
    let secs = w0.elapsed().as_secs_f64();
    let after: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let (sent1, bytes1) = (
        stats.datagrams.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
    );
    let (net1, drops1) = (net_counters(), socket_drops(udp));
    for (s, &pid) in rss_sum.iter_mut().zip(&pids) {
        *s += rss_kib(pid) as f64;
    }
    rss_n += 1;
    for p in &mut procs {
        p.check_running();
    }
    let errors = stats.send_errors.load(Ordering::Relaxed);
    if errors > 0 {
        eprintln!("footprint: {label}: {errors} datagrams the kernel refused to send");
    }
    // Memory at the end of the window, before the whole document is fetched below: that
    // fetch renders the daemon's full XML, which no process of the measured host asks for.
    let rss_end: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let rss_peak: Vec<u64> = pids.iter().map(|&p| peak_rss_kib(p)).collect();

    // After the window: what the view holds, and the agent's role.
    let xml = read_xml(tcp).unwrap_or_default();
    let doc = ganglia_wire::xml::read_document(&xml).unwrap_or_default();
    let view = ViewCheck {
        hosts: doc.clusters.iter().map(|c| c.hosts.len()).sum(),
        metrics: doc
            .clusters
            .iter()
            .flat_map(|c| &c.hosts)
            .map(|h| h.metrics.len())
            .sum(),
        xml_bytes: xml.len(),
    };
    let role = setup.agent_name().map(|n| agent_role(&doc, n));
    drop(sender);

    // Network bytes (see the module docs): the daemon reads every UDP datagram, the agent
    // every TCP byte of the window.
    let sent = (sent1 - sent0) as f64;
    let agent_datagrams = (net1.udp_out - net0.udp_out).saturating_sub(sent1 - sent0);
    let agent_udp = match setup.agent_name() {
        Some(name) => {
            let (n, bytes) = agent_round_bytes(&doc, name);
            agent_datagrams * bytes / n.max(1)
        }
        None => 0,
    };
    let udp_payload = (bytes1 - bytes0) + agent_udp;
    let udp_ip = udp_payload + 28 * (net1.udp_out - net0.udp_out);
    let tcp_payload = (net1.in_octets - net0.in_octets)
        .saturating_sub(udp_ip)
        .saturating_sub(52 * (net1.tcp_in_segs - net0.tcp_in_segs));
    let net_read = [udp_payload, tcp_payload];
    let rows = procs
        .iter()
        .enumerate()
        .map(|(i, p)| Measured {
            process: match (&role, i) {
                (Some(r), 1) => format!("{} ({r})", p.name),
                _ => p.name.to_string(),
            },
            cpu_pct: (after[i] - before[i]) / secs * 100.0,
            rss_end_kib: rss_end[i],
            rss_mean_kib: rss_sum[i] / f64::from(rss_n),
            rss_peak_kib: rss_peak[i],
            read_per_s: net_read[i] as f64 / secs,
            traffic: (i == 0).then_some((sent / secs, drops1 - drops0, sent1 - sent0)),
        })
        .collect();
    drop(procs);
    (rows, view, role)
}

fn main() {
    let o = parse_args();
    let cluster = Arc::new(Cluster::new(&o));
    let per_host = cluster.slots().len();
    eprintln!(
        "footprint: {} hosts x {per_host} metrics ({} stock, {} VM, {} agent), {} datagrams/s \
         expected once caught up; warm-up {} s, window {} s per configuration",
        o.hosts,
        cluster.stock.len(),
        cluster.vms.first().map_or(0, Vec::len),
        cluster.agent.len(),
        fmt_int(cluster.steady_rate()),
        o.warmup,
        o.window,
    );
    let mut results = Vec::new();
    for &setup in &o.setups {
        let (rows, view, role) = run_setup(&o, setup, &cluster);
        results.push((setup, rows, view, role));
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Footprint: {} emulated hosts x {} VMs ({} metrics per host in the view), warm-up {} s, \
         window {} s, agent interval {} s, agent reads gmond-rs's {}, executor {}{}{}",
        o.hosts,
        o.vms,
        cluster.printed_per_host(),
        o.warmup,
        o.window,
        o.agent_interval,
        if o.agent_feed == "query" {
            "query channel"
        } else {
            "XML port"
        },
        o.executor,
        if o.probe_membership {
            ", membership probed"
        } else {
            ", trusted_hosts = every host"
        },
        o.pin
            .as_ref()
            .map(|c| format!(", daemon and agent pinned to CPU {c}"))
            .unwrap_or_default(),
    )
    .unwrap();
    writeln!(out).unwrap();
    writeln!(
        out,
        "| configuration | process | CPU % of a core | RSS end / mean / peak MiB | network bytes read per s | datagrams/s sent | drops |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|---|---|").unwrap();
    for (setup, rows, _, _) in &results {
        for r in rows {
            let (rate, drops) = match r.traffic {
                Some((rate, drops, sent)) => (
                    fmt_int(rate),
                    format!(
                        "{drops} ({:.2} %)",
                        100.0 * drops as f64 / (sent.max(1)) as f64
                    ),
                ),
                None => ("-".into(), "-".into()),
            };
            writeln!(
                out,
                "| {} | {} | {:.2} | {} / {} / {} | {} | {rate} | {drops} |",
                setup.label(),
                r.process,
                r.cpu_pct,
                mib(r.rss_end_kib as f64),
                mib(r.rss_mean_kib),
                mib(r.rss_peak_kib as f64),
                fmt_int(r.read_per_s),
            )
            .unwrap();
        }
        if rows.len() > 1 {
            let sum = |f: &dyn Fn(&Measured) -> f64| rows.iter().map(f).sum::<f64>();
            writeln!(
                out,
                "| {} | total (gmond-rs + agent) | {:.2} | {} / {} / {} | {} | - | - |",
                setup.label(),
                sum(&|r| r.cpu_pct),
                mib(sum(&|r| r.rss_end_kib as f64)),
                mib(sum(&|r| r.rss_mean_kib)),
                mib(sum(&|r| r.rss_peak_kib as f64)),
                fmt_int(sum(&|r| r.read_per_s)),
            )
            .unwrap();
        }
    }
    writeln!(out).unwrap();
    writeln!(
        out,
        "| configuration | hosts in the view | metrics in the view (expected) | XML bytes | agent |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|").unwrap();
    let expected = o.hosts * cluster.printed_per_host();
    for (setup, _, v, role) in &results {
        writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {} |",
            setup.label(),
            fmt_int(v.hosts as f64),
            fmt_int(v.metrics as f64),
            fmt_int(expected as f64 + if role.is_some() { 10.0 } else { 0.0 }),
            fmt_int(v.xml_bytes as f64),
            role.as_deref().unwrap_or("-"),
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nCPU: utime+stime (the process's CPU-time clock) over the window / its length. RSS: \
         VmRSS at the end, its mean over samples every {RSS_SAMPLE_S:.0} s, and VmHWM (the peak \
         since the process started, warm-up included; the total's peak is the sum of the peaks). \
         Network bytes read: the daemon's UDP payload (the harness's datagrams as sent, the \
         agent's from the namespace's Udp OutDatagrams and the size of its metrics), the agent's \
         TCP payload (the namespace's IpExt InOctets less the UDP datagrams and 52 header bytes \
         per TCP segment; its XML polls are the window's only TCP); /proc/PID/io rchar is not \
         used, as it does not count recv/recvfrom/recvmmsg. Drops: the daemon's receive socket in \
         /proc/net/udp during the window. Agent role: its own balancer_leader / \
         balancer_leader_name in the view after the window."
    )
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmond_rs::store::Timestamp;
    use gmond_rs::vmpublish::VmPublisher;

    /// The emulated VM metrics are byte for byte what gmond-rs's VM publisher sends.
    #[test]
    fn vm_datagrams_are_the_publishers() {
        let metrics = vm_metrics(3, "hv0003", 2, true);
        let id = Identity::new("", Some("hv0003"), Some("10.0.0.4"));
        let mut p = VmPublisher::new(id.clone(), Duration::from_secs(120), 1472);
        let published = p.encode_round(Timestamp::from_secs(1000), &metrics);
        let e = Emitter::new(id, 1472);
        let mut ours = Vec::new();
        for m in &metrics {
            let d = vm_descriptor(m);
            let mut b = Vec::new();
            e.metadata(&d, &mut b).unwrap();
            ours.push(b);
            let mut b = Vec::new();
            e.value(&d, wire_value(&m.value), &mut b).unwrap();
            ours.push(b);
        }
        assert_eq!(published, ours);
        // 5 vnode metrics, then per VM 5 plus 16 disk and network metrics.
        assert_eq!(metrics.len(), 5 + 2 * 21);
    }

    #[test]
    fn stock_set_is_gmonds_default_groups() {
        let o = Opts {
            hosts: 2,
            vms: 1,
            ..test_opts()
        };
        let c = Cluster::new(&o);
        assert_eq!(
            c.stock.len(),
            35,
            "33 printed metrics, heartbeat and location"
        );
        let period = |n: &str| {
            c.stock
                .iter()
                .find(|s| s.plan.spec.name == n)
                .map(|s| s.period.as_secs())
        };
        // value_threshold: collect_every; none: time_threshold; collect_once: time_threshold.
        assert_eq!(period("cpu_user"), Some(20));
        assert_eq!(period("mem_free"), Some(40));
        assert_eq!(period("proc_run"), Some(80));
        assert_eq!(period("cpu_num"), Some(60));
        assert_eq!(period("heartbeat"), Some(20));
        assert_eq!(period("gexec"), Some(300));
        assert_eq!(period("disk_total"), Some(1800));
        assert_eq!(c.printed_per_host(), 33 + 5 + 5 + 10);
        // Every send of a thresholded metric moves it past its threshold.
        let cpu = c
            .stock
            .iter()
            .find(|s| s.plan.spec.name == "cpu_user")
            .unwrap();
        assert_eq!(vary(&cpu.base, cpu.step, 1), MetricValue::F32(36.0));
        assert_eq!(vary(&cpu.base, cpu.step, 0), cpu.base);
    }

    #[test]
    fn names_sort_around_the_measured_agents() {
        let (a, z) = (
            Setup::Leader.agent_name().unwrap(),
            Setup::Follower.agent_name().unwrap(),
        );
        let first = host_name(0, 1000);
        assert!(a < first.as_str() && first.as_str() < z);
        assert_eq!(host_name(999, 1000), "hv0999");
        assert_eq!(host_name(12_345, 20_000), "hv12345");
        assert!(balancer_agent::config::valid_host_name(a));
        assert!(balancer_agent::config::valid_host_name(z));
    }

    #[test]
    fn agent_set_replaces_generated_keys() {
        let o = Opts {
            agent_sets: vec!["interval_s = 3".into(), "leader_timeout_s = 30".into()],
            ..test_opts()
        };
        let t = agent_toml(&o, "z-measured", 8649, Some(8653), &["hv0000".into()]);
        let cfg = AgentConfig::parse(&t, "agent.toml").unwrap();
        assert_eq!(cfg.interval_s, 3);
        assert_eq!(cfg.leader_timeout_s, 30);
        assert_eq!(cfg.trusted_hosts, ["hv0000", "z-measured"]);
        assert_eq!(cfg.uri_template, "test:///default");
        assert_eq!(t.matches("interval_s").count(), 1);
    }

    #[test]
    fn snmp_fields_by_name() {
        let text = "Tcp: RtoAlgorithm InSegs OutSegs\nTcp: 1 42 43\nUdp: InDatagrams OutDatagrams\nUdp: 5 7\n";
        assert_eq!(snmp_field(text, "Tcp", "InSegs"), 42);
        assert_eq!(snmp_field(text, "Udp", "OutDatagrams"), 7);
        assert_eq!(snmp_field(text, "Udp", "Nothing"), 0);
        assert_eq!(snmp_field(text, "IpExt", "InOctets"), 0);
    }

    fn test_opts() -> Opts {
        Opts {
            gmond: None,
            gmond_rs: None,
            agent: None,
            setups: vec![],
            hosts: 1,
            vms: 0,
            vm_io: false,
            warmup: 0.0,
            window: 1.0,
            agent_interval: 10,
            vm_interval: 20,
            metadata_interval: 60,
            agent_sets: vec![],
            rs_conf: None,
            executor: "libvirt".into(),
            probe_membership: false,
            agent_feed: "query".into(),
            pin: None,
            progress: 30.0,
        }
    }
}
