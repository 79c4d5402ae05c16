//! Your own cluster's history as a scenario: a recording of the live view (`balancer record`)
//! or an import of gmetad's RRDs (`balancer import-rrd`), replayed by `simulate --scenario DIR`
//! with any policy.
//!
//! # On disk (a directory)
//!
//! * `recording.json`: what was recorded ([`Meta`]) and every host with the largest capacity
//!   it reported;
//! * `samples.csv`: one line per VM per sample, `t,vm,host,vcpus,util_pct,mem_kb` (t in epoch
//!   seconds, empty where the feed had no figure), in time order. About 40 bytes a line; a
//!   1,000-host cluster of 20 VMs each sampled every 10 s is about 7 GB a day, so record the
//!   window you want to study.
//!
//! # As a scenario
//!
//! One tick per sample interval. Every VM seen is in the scenario from the start, on the host
//! that carried it in the first sample it appears in, with its largest vCPU count and memory;
//! its demand is its `vcpu_util` as a fraction of its vCPUs, sample by sample (0 before it was
//! first seen and after it was last seen; a missed sample repeats the one before). The
//! moves the real cluster made (a VM seen on another host) are counted in the description:
//! the simulation starts from the recorded placement and lets the policy decide.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::scenario::{HostSpec, ProfileSpec, Scenario, VmSpec};
use crate::error::{BalancerError, Result};
use crate::snapshot::VmTags;
use crate::view::VnodeView;

/// Header file of a recording directory.
pub const META_FILE: &str = "recording.json";
/// Sample file of a recording directory.
pub const SAMPLES_FILE: &str = "samples.csv";
/// Lines of `samples.csv` read at most (a bound on what a bad or hostile file can cost).
pub const MAX_SAMPLE_LINES: usize = 50_000_000;
/// Ticks a recording may span as a scenario at most (a year of 10-s samples): each VM gets a
/// series this long, so a file whose times are far apart must not make that unbounded.
pub const MAX_TICKS: u64 = 3_153_600;

/// What a recording holds besides its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Where it came from (a feed address or an RRD directory).
    pub source: String,
    /// Seconds between samples.
    pub interval_s: u64,
    /// Every host seen, with the largest capacity it reported.
    pub hosts: BTreeMap<String, HostCap>,
    /// The operator's tags (`<vm>.balancer_tags`) of every VM that had any, as last seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vm_tags: BTreeMap<String, VmTags>,
}

/// A host's capacity as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostCap {
    /// CPUs.
    pub cpus: u32,
    /// MHz per CPU.
    pub mhz: f64,
    /// Memory, KB.
    pub mem_kb: u64,
}

/// One VM in one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSample {
    /// Sample time, epoch seconds.
    pub t: u64,
    /// VM name.
    pub vm: String,
    /// The host that carried it.
    pub host: String,
    /// vCPUs.
    pub vcpus: Option<f64>,
    /// `vcpu_util`, % of its vCPUs.
    pub util_pct: Option<f64>,
    /// Memory, KB.
    pub mem_kb: Option<f64>,
}

/// A recording in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRecording {
    /// Header.
    pub meta: Meta,
    /// Samples in time order.
    pub samples: Vec<VmSample>,
}

impl ClusterRecording {
    /// An empty recording of `source`, sampled every `interval_s`.
    pub fn new(source: &str, interval_s: u64) -> Self {
        ClusterRecording {
            meta: Meta {
                source: source.to_owned(),
                interval_s: interval_s.max(1),
                hosts: BTreeMap::new(),
                vm_tags: BTreeMap::new(),
            },
            samples: Vec::new(),
        }
    }

    /// Adds one view taken at `t`: its hosts' capacities and every VM on its owner.
    pub fn add_view(&mut self, t: u64, view: &VnodeView) -> Vec<VmSample> {
        for h in &view.hosts {
            if let Some(c) = h.capacity {
                self.note_host(
                    &h.name,
                    HostCap {
                        cpus: c.cpus,
                        mhz: c.mhz,
                        mem_kb: c.mem_kb,
                    },
                );
            }
        }
        for v in &view.vms {
            if v.tags.is_none() {
                self.meta.vm_tags.remove(&v.name);
            } else {
                self.meta.vm_tags.insert(v.name.clone(), v.tags);
            }
        }
        let new: Vec<VmSample> = view
            .vms
            .iter()
            .map(|v| VmSample {
                t,
                vm: v.name.clone(),
                host: v.host.clone(),
                vcpus: v.vcpus,
                util_pct: v.util_pct,
                mem_kb: v.mem_kb,
            })
            .collect();
        self.samples.extend(new.iter().cloned());
        new
    }

    /// Records `cap` for `host`, keeping the largest of each figure seen.
    pub fn note_host(&mut self, host: &str, cap: HostCap) {
        let e = self.meta.hosts.entry(host.to_owned()).or_insert(cap);
        e.cpus = e.cpus.max(cap.cpus);
        e.mhz = e.mhz.max(cap.mhz);
        e.mem_kb = e.mem_kb.max(cap.mem_kb);
    }

    /// Reads a recording directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|source| io(&meta_path, source))?;
        let meta: Meta = serde_json::from_str(&text)?;
        if meta.interval_s == 0 {
            return Err(bad(&meta_path, 0, "interval_s must be positive"));
        }
        let path = dir.join(SAMPLES_FILE);
        let file = std::fs::File::open(&path).map_err(|source| io(&path, source))?;
        let mut samples = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            if i >= MAX_SAMPLE_LINES {
                return Err(bad(&path, i + 1, "too many lines"));
            }
            let line = line.map_err(|source| io(&path, source))?;
            if i == 0 || line.is_empty() {
                continue; // the header
            }
            samples.push(parse_line(&line).map_err(|why| bad(&path, i + 1, &why))?);
        }
        if samples.windows(2).any(|w| w[1].t < w[0].t) {
            return Err(bad(&path, 0, "samples are not in time order"));
        }
        Ok(ClusterRecording { meta, samples })
    }

    /// Writes the recording into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        self.save_meta(dir)?;
        let path = dir.join(SAMPLES_FILE);
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|source| io(&path, source))?,
        );
        writeln!(out, "{SAMPLES_HEADER}").map_err(|source| io(&path, source))?;
        for s in &self.samples {
            writeln!(out, "{}", csv_line(s)).map_err(|source| io(&path, source))?;
        }
        out.flush().map_err(|source| io(&path, source))
    }

    /// Writes `recording.json` only (the recorder rewrites it as hosts appear).
    pub fn save_meta(&self, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(&self.meta)?;
        std::fs::write(&path, text).map_err(|source| io(&path, source))
    }

    /// Times of the samples, first and last.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.samples.first()?.t, self.samples.last()?.t))
    }

    /// How many times a VM was seen on a different host than in its previous sample.
    pub fn observed_moves(&self) -> usize {
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        let mut moves = 0;
        for s in &self.samples {
            if let Some(prev) = last.insert(&s.vm, &s.host) {
                moves += usize::from(prev != s.host);
            }
        }
        moves
    }

    /// The recording as a scenario named `name` (see the module docs).
    pub fn to_scenario(&self, name: &str) -> Result<Scenario> {
        let (first, last) = self
            .span()
            .ok_or_else(|| BalancerError::Scenario("the recording has no samples".into()))?;
        let tick = self.meta.interval_s;
        let span = (last - first) / tick + 1;
        if span > MAX_TICKS {
            return Err(BalancerError::Scenario(format!(
                "the recording spans {span} samples of {tick} s (from {first} to {last}), more \
                 than {MAX_TICKS}"
            )));
        }
        let ticks = usize::try_from(span)
            .map_err(|_| BalancerError::Scenario("recording too long".into()))?;
        let hosts: Vec<HostSpec> = self
            .meta
            .hosts
            .iter()
            .map(|(name, c)| HostSpec {
                name: name.clone(),
                cpus: c.cpus.max(1),
                mhz: c.mhz.round().clamp(1.0, f64::from(u32::MAX)) as u32,
                mem_kb: c.mem_kb.max(1),
                power: None,
            })
            .collect();
        struct Acc {
            host: String,
            vcpus: f64,
            mem_kb: f64,
            series: Vec<Option<f32>>,
        }
        let mut vms: BTreeMap<&str, Acc> = BTreeMap::new();
        for s in &self.samples {
            let slot = usize::try_from((s.t - first) / tick).unwrap_or(usize::MAX);
            let acc = vms.entry(&s.vm).or_insert_with(|| Acc {
                host: s.host.clone(),
                vcpus: 1.0,
                mem_kb: 0.0,
                series: vec![None; ticks],
            });
            acc.vcpus = acc.vcpus.max(s.vcpus.unwrap_or(1.0));
            acc.mem_kb = acc.mem_kb.max(s.mem_kb.unwrap_or(0.0));
            if let (Some(cell), Some(u)) = (acc.series.get_mut(slot), s.util_pct) {
                *cell = Some((u / 100.0).clamp(0.0, 1.0) as f32);
            }
        }
        let known: std::collections::BTreeSet<&str> =
            hosts.iter().map(|h| h.name.as_str()).collect();
        let vms: Vec<VmSpec> = vms
            .into_iter()
            .map(|(name, a)| VmSpec {
                name: name.to_owned(),
                vcpus: a.vcpus.round().clamp(1.0, f64::from(u32::MAX)) as u32,
                cpu_cap_mhz: 0.0,
                mem_kb: a.mem_kb.round().max(0.0) as u64,
                // A VM on a host without a recorded capacity is placed by the simulator.
                host: known.contains(a.host.as_str()).then_some(a.host),
                tags: self.meta.vm_tags.get(name).copied().unwrap_or_default(),
                profile: ProfileSpec::Samples {
                    samples: fill(&a.series),
                    period_s: tick,
                },
            })
            .collect();
        let sc = Scenario {
            name: name.to_owned(),
            description: format!(
                "recorded from {}: {} hosts, {} VMs, {} samples every {} s, {} moves observed",
                self.meta.source,
                hosts.len(),
                vms.len(),
                ticks,
                tick,
                self.observed_moves()
            ),
            tick_s: tick,
            duration_s: ticks as u64 * tick,
            hosts,
            vms,
            start_epoch: first,
            ..Scenario::empty()
        };
        sc.validate()?;
        Ok(sc)
    }
}

/// A series with its gaps filled: leading and trailing gaps 0, inner gaps the value before.
fn fill(series: &[Option<f32>]) -> Arc<[f32]> {
    let last_seen = series.iter().rposition(Option::is_some);
    let mut prev = 0.0;
    series
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) => {
                prev = *v;
                *v
            }
            None if last_seen.is_some_and(|l| i < l) => prev,
            None => 0.0,
        })
        .collect()
}

/// The first line of `samples.csv`.
pub const SAMPLES_HEADER: &str = "t,vm,host,vcpus,util_pct,mem_kb";

/// One sample as a CSV line (names never contain ',' or a newline: the view's VM and host
/// names come from XML attributes and metric names; any that do are quoted out by replacing
/// them with '_').
pub fn csv_line(s: &VmSample) -> String {
    let clean = |n: &str| n.replace([',', '\n', '\r'], "_");
    let num = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    format!(
        "{},{},{},{},{},{}",
        s.t,
        clean(&s.vm),
        clean(&s.host),
        num(s.vcpus),
        num(s.util_pct),
        num(s.mem_kb)
    )
}

fn parse_line(line: &str) -> std::result::Result<VmSample, String> {
    let f: Vec<&str> = line.split(',').collect();
    let [t, vm, host, vcpus, util, mem] = f.as_slice() else {
        return Err(format!("expected 6 fields, found {}", f.len()));
    };
    let num = |what: &str, s: &str| -> std::result::Result<Option<f64>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(format!("{what} {s:?} is not a non-negative number")),
        }
    };
    if vm.is_empty() || host.is_empty() {
        return Err("empty vm or host".into());
    }
    Ok(VmSample {
        t: t.parse()
            .map_err(|_| format!("time {t:?} is not epoch seconds"))?,
        vm: (*vm).to_owned(),
        host: (*host).to_owned(),
        vcpus: num("vcpus", vcpus)?,
        util_pct: num("util_pct", util)?,
        mem_kb: num("mem_kb", mem)?,
    })
}

fn io(path: &Path, source: std::io::Error) -> BalancerError {
    BalancerError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn bad(path: &Path, line: usize, why: &str) -> BalancerError {
    BalancerError::Scenario(format!("{}:{line}: {why}", path.display()))
}

/// Reads a gmetad `rrd_rootdir` (`<cluster>/<host>/<metric>.rrd`, as gmetad writes it) into a
/// recording of the last `since_s` seconds before the newest update, at the files' own step:
/// every host directory with a capacity (`vnode_cpu_num`/`vnode_cpu_speed`/`vnode_mem_total`,
/// else gmond's `cpu_num`/`cpu_speed`/`mem_total`; the last known value), and every VM from
/// its `<vm>.vcpu_util`, `<vm>.vcpu_num` and `<vm>.vmem_total` RRDs. At each step a VM is on
/// the host whose `<vm>.vcpu_util` has a value then (the first by name if several do: the
/// step of a migration), which gives the placement over time.
pub fn import_gmetad(root: &Path, since_s: u64) -> Result<ClusterRecording> {
    let mut host_dirs = Vec::new();
    for cluster in sorted_dirs(root)? {
        for host in sorted_dirs(&cluster)? {
            let name = file_name(&host);
            // gmetad's per-cluster and per-grid summaries are not hosts.
            if name != "__SummaryInfo__" {
                host_dirs.push((name, host));
            }
        }
    }
    let mut files = Vec::new();
    for (host, dir) in &host_dirs {
        for f in std::fs::read_dir(dir).map_err(|source| io(dir, source))? {
            let f = f.map_err(|source| io(dir, source))?.path();
            if let Some(metric) = file_name(&f).strip_suffix(".rrd") {
                files.push((host.clone(), metric.to_owned(), f.clone()));
            }
        }
    }
    files.sort();
    // One window for every file: back from the newest update.
    let opened: Vec<(String, String, rrd::RrdFile)> = files
        .into_iter()
        .filter(|(_, m, _)| wanted(m))
        .map(|(h, m, f)| Ok((h, m, rrd::RrdFile::open(&f).map_err(|e| rrd_err(&f, e))?)))
        .collect::<Result<_>>()?;
    let end = opened.iter().map(|(_, _, r)| r.last_update().secs).max();
    let Some(end) = end else {
        return Err(BalancerError::Scenario(format!(
            "{}: no RRDs of hosts in gmetad's layout",
            root.display()
        )));
    };
    let step = opened
        .iter()
        .map(|(_, _, r)| r.step())
        .min()
        .unwrap_or(15)
        .max(1);
    let start = end.saturating_sub(i64::try_from(since_s).unwrap_or(i64::MAX));
    let mut rec = ClusterRecording::new(&root.display().to_string(), step);
    // (host, metric) -> (time -> value)
    let mut series: BTreeMap<(String, String), BTreeMap<i64, f64>> = BTreeMap::new();
    for (host, metric, file) in &opened {
        let fetched = file
            .fetch(rrd::Cf::Average, start, end, step)
            .map_err(|e| rrd_err(Path::new(metric), e))?;
        let values = fetched
            .times()
            .zip(fetched.rows.iter())
            .filter_map(|(t, row)| Some((t, *row.first()?)))
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .collect();
        series.insert((host.clone(), metric.clone()), values);
    }
    let last = |host: &str, names: [&str; 2]| -> Option<f64> {
        names.iter().find_map(|n| {
            series
                .get(&(host.to_owned(), (*n).to_owned()))
                .and_then(|s| s.values().next_back().copied())
        })
    };
    for (host, _) in &host_dirs {
        let cpus = last(host, ["vnode_cpu_num", "cpu_num"]);
        let mhz = last(host, ["vnode_cpu_speed", "cpu_speed"]);
        let mem = last(host, ["vnode_mem_total", "mem_total"]);
        if let (Some(cpus), Some(mhz), Some(mem)) = (cpus, mhz, mem) {
            rec.note_host(
                host,
                HostCap {
                    cpus: cpus.round().clamp(1.0, f64::from(u32::MAX)) as u32,
                    mhz: mhz.max(1.0),
                    mem_kb: mem.round().max(1.0) as u64,
                },
            );
        }
    }
    // Every step at which some VM's utilisation is known, VM by VM on its carrier.
    let mut steps: BTreeMap<i64, BTreeMap<String, VmSample>> = BTreeMap::new();
    for ((host, metric), values) in &series {
        let Some((vm, gmond_metrics::vmetrics::suffix::VCPU_UTIL)) =
            gmond_metrics::vmetrics::parse_vm_metric(metric)
        else {
            continue;
        };
        let figure = |suffix: &str, t: i64| {
            series
                .get(&(host.clone(), format!("{vm}.{suffix}")))
                .and_then(|s| s.range(..=t).next_back().map(|(_, v)| *v))
        };
        for (&t, &util) in values {
            let at = steps.entry(t).or_default();
            // Hosts come in name order: the first carrier at a step keeps the VM.
            at.entry(vm.to_owned()).or_insert_with(|| VmSample {
                t: u64::try_from(t).unwrap_or(0),
                vm: vm.to_owned(),
                host: host.clone(),
                vcpus: figure(gmond_metrics::vmetrics::suffix::VCPU_NUM, t),
                util_pct: Some(util),
                mem_kb: figure(gmond_metrics::vmetrics::suffix::VMEM_TOTAL, t),
            });
        }
    }
    rec.samples = steps
        .into_values()
        .flat_map(BTreeMap::into_values)
        .collect();
    Ok(rec)
}

/// RRDs the importer reads: capacities and the three VM series.
fn wanted(metric: &str) -> bool {
    use gmond_metrics::vmetrics::suffix;
    matches!(
        metric,
        "vnode_cpu_num"
            | "vnode_cpu_speed"
            | "vnode_mem_total"
            | "cpu_num"
            | "cpu_speed"
            | "mem_total"
    ) || gmond_metrics::vmetrics::parse_vm_metric(metric).is_some_and(|(_, s)| {
        s == suffix::VCPU_UTIL || s == suffix::VCPU_NUM || s == suffix::VMEM_TOTAL
    })
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|source| io(dir, source))? {
        let p = e.map_err(|source| io(dir, source))?.path();
        if p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rrd_err(path: &Path, e: rrd::Error) -> BalancerError {
    BalancerError::Scenario(format!("{}: {e}", path.display()))
}

/// Appends samples to a recording directory as they are taken, so an interrupted recording
/// keeps what it had.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    recording: ClusterRecording,
    out: std::io::BufWriter<std::fs::File>,
    hosts_seen: usize,
    /// The tags last written to the header.
    tags_seen: BTreeMap<String, VmTags>,
}

impl Recorder {
    /// Starts a new recording in `dir` (created; an existing recording there is replaced).
    pub fn create(dir: &Path, source: &str, interval_s: u64) -> Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let recording = ClusterRecording::new(source, interval_s);
        recording.save_meta(dir)?;
        let path = dir.join(SAMPLES_FILE);
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|source| io(&path, source))?,
        );
        writeln!(out, "{SAMPLES_HEADER}").map_err(|source| io(&path, source))?;
        Ok(Recorder {
            dir: dir.to_owned(),
            recording,
            out,
            hosts_seen: 0,
            tags_seen: BTreeMap::new(),
        })
    }

    /// Adds one view taken at `t`; returns how many VMs it held.
    pub fn add(&mut self, t: u64, view: &VnodeView) -> Result<usize> {
        let new = self.recording.add_view(t, view);
        // Only the header is kept in memory beyond this call: samples go to disk.
        self.recording.samples.clear();
        let path = self.dir.join(SAMPLES_FILE);
        for s in &new {
            writeln!(self.out, "{}", csv_line(s)).map_err(|source| io(&path, source))?;
        }
        self.out.flush().map_err(|source| io(&path, source))?;
        // The header changes when a host appears or a VM's tags do.
        let meta = &self.recording.meta;
        if meta.hosts.len() != self.hosts_seen || meta.vm_tags != self.tags_seen {
            self.hosts_seen = meta.hosts.len();
            self.tags_seen = meta.vm_tags.clone();
            self.recording.save_meta(&self.dir)?;
        }
        Ok(new.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Capacity, HostView, VmView};

    fn view(placement: &[(&str, &str, f64)]) -> VnodeView {
        let hosts = ["hv1", "hv2"]
            .iter()
            .enumerate()
            .map(|(i, n)| HostView {
                name: (*n).into(),
                ip: format!("10.0.0.{i}"),
                up: true,
                maintenance: false,
                capacity: Some(Capacity {
                    cpus: 8,
                    mhz: 2000.0,
                    mem_kb: 16 << 20,
                }),
                index: i,
            })
            .collect();
        let vms = placement
            .iter()
            .map(|(vm, host, util)| VmView {
                name: (*vm).into(),
                host: (*host).into(),
                host_idx: usize::from(*host == "hv2"),
                tn: 1,
                vcpus: Some(2.0),
                util_pct: Some(*util),
                mem_kb: Some(1048576.0),
                mem_util_pct: None,
                in_flight: false,
                tags: Default::default(),
            })
            .collect();
        VnodeView {
            hosts,
            vms,
            ..VnodeView::default()
        }
    }

    #[test]
    fn a_recording_round_trips_and_becomes_a_scenario() {
        let dir = std::env::temp_dir().join(format!("rec-test-{}", std::process::id()));
        let mut rec = Recorder::create(&dir, "127.0.0.1:8649", 10).unwrap();
        rec.add(1000, &view(&[("web1", "hv1", 50.0), ("db1", "hv1", 90.0)]))
            .unwrap();
        // A missed sample at 1010 for db1, web1 moves to hv2; late1 appears at 1020.
        rec.add(1010, &view(&[("web1", "hv2", 60.0)])).unwrap();
        // db1 comes back tagged by the operator; the header keeps its tags.
        let mut tagged = view(&[
            ("web1", "hv2", 70.0),
            ("db1", "hv1", 80.0),
            ("late1", "hv2", 10.0),
        ]);
        tagged.vms[1].tags = VmTags::parse("exclude,priority=3");
        rec.add(1020, &tagged).unwrap();
        let loaded = ClusterRecording::load(&dir).unwrap();
        assert_eq!(loaded.samples.len(), 6);
        assert_eq!(loaded.meta.hosts.len(), 2);
        assert_eq!(loaded.observed_moves(), 1);
        let sc = loaded.to_scenario("mine").unwrap();
        assert_eq!((sc.tick_s, sc.duration_s), (10, 30));
        let vm = |n: &str| sc.vms.iter().find(|v| v.name == n).unwrap();
        // The recorded placement at the VM's first sample, demand as fractions.
        assert_eq!(vm("web1").host.as_deref(), Some("hv1"));
        let samples = |n: &str| match &vm(n).profile {
            ProfileSpec::Samples { samples, period_s } => {
                assert_eq!(*period_s, 10);
                samples.to_vec()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(samples("web1"), [0.5, 0.6, 0.7]);
        assert_eq!(samples("db1"), [0.9, 0.9, 0.8], "a missed sample repeats");
        assert_eq!(
            samples("late1"),
            [0.0, 0.0, 0.1],
            "nothing before it appeared"
        );
        assert_eq!(vm("db1").vcpus, 2);
        assert_eq!(vm("db1").tags, VmTags::parse("exclude,priority=3"));
        assert!(vm("web1").tags.is_none());
        assert!(
            sc.description.contains("1 moves observed"),
            "{}",
            sc.description
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_minimal_scenario_file_loads_as_empty() {
        let s: Scenario =
            serde_json::from_str(r#"{"name":"","tick_s":60,"duration_s":0,"hosts":[],"vms":[]}"#)
                .unwrap();
        assert_eq!(s, Scenario::empty());
    }

    /// gmetad's layout, written with the project's rrd crate (rrdtool's format): two hosts,
    /// web1 on hv1 then on hv2 from the third step.
    #[test]
    fn gmetad_rrds_import_with_placement_over_time() {
        use rrd::{Layout, RrdFile, Update, Value};
        let root = std::env::temp_dir().join(format!("rrd-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let t0 = 1_800_000_000i64;
        // gmetad's layout: DS "sum" GAUGE, heartbeat 8 steps, an AVERAGE archive per step.
        let write = |host: &str, metric: &str, points: &[(i64, f64)]| {
            let dir = root.join("cluster").join(host);
            std::fs::create_dir_all(&dir).unwrap();
            let specs = [
                "DS:sum:GAUGE:120:U:U".to_string(),
                "RRA:AVERAGE:0.5:1:244".to_string(),
            ];
            let layout = Layout::from_specs(15, t0 - 15, &specs).unwrap();
            let mut f = RrdFile::create(dir.join(format!("{metric}.rrd")), &layout).unwrap();
            for &(t, v) in points {
                f.update(&Update::new(t, &[Value::Float(v)])).unwrap();
            }
        };
        for host in ["hv1", "hv2"] {
            let cap = [(t0, 0.0), (t0 + 60, 0.0)];
            write(host, "cpu_num", &cap.map(|(t, _)| (t, 8.0)));
            write(host, "cpu_speed", &cap.map(|(t, _)| (t, 2000.0)));
            write(host, "mem_total", &cap.map(|(t, _)| (t, 16_777_216.0)));
        }
        std::fs::create_dir_all(root.join("cluster/__SummaryInfo__")).unwrap();
        write("hv1", "web1.vcpu_util", &[(t0, 40.0), (t0 + 15, 50.0)]);
        write("hv1", "web1.vcpu_num", &[(t0, 2.0), (t0 + 15, 2.0)]);
        write("hv2", "web1.vcpu_util", &[(t0 + 30, 60.0), (t0 + 45, 70.0)]);
        write("hv2", "web1.vcpu_num", &[(t0 + 30, 2.0), (t0 + 45, 2.0)]);
        let rec = import_gmetad(&root, 3600).unwrap();
        assert_eq!(rec.meta.interval_s, 15);
        assert_eq!(rec.meta.hosts.len(), 2);
        let placed: Vec<(String, f64)> = rec
            .samples
            .iter()
            .map(|s| (s.host.clone(), s.util_pct.unwrap()))
            .collect();
        assert_eq!(
            placed,
            [
                ("hv1".to_string(), 40.0),
                ("hv1".to_string(), 50.0),
                ("hv2".to_string(), 60.0),
                ("hv2".to_string(), 70.0)
            ]
        );
        assert_eq!(rec.observed_moves(), 1);
        let sc = rec.to_scenario("imported").unwrap();
        assert_eq!(sc.vms.len(), 1);
        assert_eq!(sc.vms[0].host.as_deref(), Some("hv1"));
        assert_eq!(sc.vms[0].vcpus, 2);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_recording_spanning_too_long_is_refused_not_allocated() {
        let mut rec = ClusterRecording::new("x", 1);
        for t in [0, 10_000_000_000] {
            rec.samples.push(VmSample {
                t,
                vm: "a".into(),
                host: "h".into(),
                vcpus: Some(1.0),
                util_pct: Some(1.0),
                mem_kb: Some(1.0),
            });
        }
        let err = rec.to_scenario("far").unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn bad_sample_files_are_refused_with_file_and_line() {
        let dir = std::env::temp_dir().join(format!("rec-bad-{}", std::process::id()));
        ClusterRecording::new("x", 10).save(&dir).unwrap();
        for (text, want) in [
            ("t,vm\n1,a,b,1,2\n", ":2: expected 6 fields"),
            ("h\nx,a,b,1,2,3\n", ":2: time"),
            ("h\n1,a,b,1,NaN,3\n", ":2: util_pct"),
            ("h\n1,a,b,1,-5,3\n", ":2: util_pct"),
            ("h\n5,a,b,1,2,3\n4,a,b,1,2,3\n", "time order"),
        ] {
            std::fs::write(dir.join(SAMPLES_FILE), text).unwrap();
            let err = ClusterRecording::load(&dir).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
