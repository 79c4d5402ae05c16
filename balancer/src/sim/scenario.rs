//! Scenario descriptions (JSON/TOML files or built-in), including the nine of balancing.md
//! section 5.2 and the PlanetLab day on the CloudSim setup.

use std::path::Path;
use std::sync::Arc;

use gmond_metrics::hypervisor::profile::{read_planetlab_dir, splitmix64, unit};
use serde::{Deserialize, Serialize};

use crate::constraints::{Group, Pin};
use crate::error::{BalancerError, Result};
use crate::snapshot::VmTags;

/// A host of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Name.
    pub name: String,
    /// CPUs.
    pub cpus: u32,
    /// MHz per CPU.
    pub mhz: u32,
    /// Memory, KB.
    pub mem_kb: u64,
    /// Power model: "g4", "g5" or none (generic).
    #[serde(default)]
    pub power: Option<String>,
}

/// CPU demand profile of a scenario VM (fractions of its capacity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProfileSpec {
    /// Constant level.
    Constant {
        /// Level.
        level: f64,
    },
    /// Base level with a spike.
    Spike {
        /// Base level.
        base: f64,
        /// Spike level.
        peak: f64,
        /// Start, s.
        start_s: u64,
        /// Length, s.
        duration_s: u64,
    },
    /// Mean ± amplitude white noise.
    Noise {
        /// Mean.
        mean: f64,
        /// Amplitude.
        amplitude: f64,
        /// New value every this many seconds.
        period_s: u64,
        /// Stream seed.
        seed: u64,
    },
    /// Explicit samples.
    Samples {
        /// Values 0..=1.
        samples: Arc<[f32]>,
        /// Period, s.
        period_s: u64,
    },
}

/// A VM of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Name.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// CPU capacity, MHz (0 = vcpus x the first host's MHz).
    #[serde(default)]
    pub cpu_cap_mhz: f64,
    /// Memory, KB.
    pub mem_kb: u64,
    /// Initial host (None = placed by PABFD on full capacity, as CloudSim).
    #[serde(default)]
    pub host: Option<String>,
    /// The operator's tags on it (`exclude`, `priority`), as the view's `<vm>.balancer_tags`
    /// would carry them: in the policy's snapshot, and in the view the simulated agents read.
    #[serde(default, skip_serializing_if = "VmTags::is_none")]
    pub tags: VmTags,
    /// Demand.
    pub profile: ProfileSpec,
}

/// Something that happens at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A host stops; its VMs restart `ha_after_s` later on `restart_on`.
    HostDown {
        /// When, s.
        at_s: u64,
        /// Host.
        host: String,
        /// HA delay, s.
        ha_after_s: u64,
        /// Host receiving the restarted VMs.
        restart_on: String,
    },
    /// Maintenance starts (on = true) or ends.
    Maintenance {
        /// When, s.
        at_s: u64,
        /// Host.
        host: String,
        /// On or off.
        on: bool,
    },
    /// The cluster view splits in two halves (by host order) for a while.
    Partition {
        /// When, s.
        at_s: u64,
        /// Length, s.
        duration_s: u64,
    },
}

/// How host SLA time is accounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// Migrations affect hosts exactly while they run.
    #[default]
    Exact,
    /// CloudSim 3.0.3's world, for comparison with the paper's numbers: nothing happens before
    /// the first update one tick after start; traces are interpolated between samples; a VM
    /// whose demand reaches exactly 0 leaves for good; energy is the trapezoid between
    /// consecutive updates and nothing for a host idle at the earlier one; a host receiving a
    /// VM requests its full MIPS but is granted 10 % until the migration ends (counted in
    /// SLATAH); the initial placement of a `consolidate` policy goes through its own detector
    /// threshold, of others by first fit.
    Cloudsim,
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// What it tests.
    #[serde(default)]
    pub description: String,
    /// Sample period, s.
    pub tick_s: u64,
    /// Length, s.
    pub duration_s: u64,
    /// Migration link, bit/s.
    #[serde(default = "gbit")]
    pub link_bps: u64,
    /// Hosts.
    pub hosts: Vec<HostSpec>,
    /// VMs.
    pub vms: Vec<VmSpec>,
    /// Events.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Anti-affinity groups added to the policy's constraints.
    #[serde(default)]
    pub anti_affinity: Vec<Group>,
    /// Affinity groups added to the policy's constraints.
    #[serde(default)]
    pub affinity: Vec<Group>,
    /// Pins added to the policy's constraints.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Balanced means CPU sigma at most this (default 0.05).
    #[serde(default = "sigma_default")]
    pub sigma_target: f64,
    /// ... and no host at or above this CPU utilisation (default 0.9).
    #[serde(default = "high_default")]
    pub high_util: f64,
    /// Start of the perturbation for time-to-balance, s.
    #[serde(default)]
    pub perturb_at_s: u64,
    /// SLA accounting mode.
    #[serde(default)]
    pub accounting: Accounting,
    /// The hypervisor lets migrations overcommit memory (CloudSim semantics).
    #[serde(default)]
    pub ignore_memory: bool,
    /// Initial PABFD placement leaves a host alone once it would exceed this share of its
    /// CPU at the VMs' full capacity (default 1.0: only capacity and memory limit it, like
    /// CloudSim's NPA/DVFS runs).
    #[serde(default = "one")]
    pub initial_threshold: f64,
    /// Initial placement by first fit in host order instead of PABFD (CloudSim's NPA/DVFS
    /// runs place this way; default false).
    #[serde(default)]
    pub initial_first_fit: bool,
    /// The wall-clock time of the scenario's second 0, epoch seconds UTC, which migration
    /// windows read (default 0: 1970-01-01 00:00, a Thursday; a recording starts at its
    /// first sample).
    #[serde(default)]
    pub start_epoch: u64,
}

fn one() -> f64 {
    1.0
}

fn gbit() -> u64 {
    1_000_000_000
}
fn sigma_default() -> f64 {
    0.05
}
fn high_default() -> f64 {
    0.9
}

/// Built-in scenario names.
pub const BUILTIN_SCENARIOS: [&str; 15] = [
    "hot-host",
    "planetlab",
    "planetlab-small",
    "flash-crowd-short",
    "flash-crowd-long",
    "host-failure",
    "partition",
    "anti-affinity",
    "maintenance-drain",
    "maintenance-drain-2",
    "memory-bound",
    "swap-needed",
    "steady-noise",
    "steady-noise-short",
    "scale",
];

const GB: u64 = 1024 * 1024;

fn host(name: String, cpus: u32, mhz: u32, mem_kb: u64) -> HostSpec {
    HostSpec {
        name,
        cpus,
        mhz,
        mem_kb,
        power: None,
    }
}

fn vm(name: String, vcpus: u32, mem_kb: u64, host: Option<String>, profile: ProfileSpec) -> VmSpec {
    VmSpec {
        name,
        vcpus,
        cpu_cap_mhz: 0.0,
        mem_kb,
        host,
        tags: Default::default(),
        profile,
    }
}

fn hn(i: usize) -> String {
    format!("host-{i:03}")
}

fn base(
    name: &str,
    description: &str,
    tick_s: u64,
    duration_s: u64,
    hosts: Vec<HostSpec>,
) -> Scenario {
    Scenario {
        name: name.into(),
        description: description.into(),
        tick_s,
        duration_s,
        link_bps: gbit(),
        hosts,
        vms: Vec::new(),
        events: Vec::new(),
        anti_affinity: Vec::new(),
        affinity: Vec::new(),
        pins: Vec::new(),
        sigma_target: 0.05,
        high_util: 0.9,
        perturb_at_s: 0,
        accounting: Accounting::Exact,
        ignore_memory: false,
        initial_threshold: 1.0,
        initial_first_fit: false,
        start_epoch: 0,
    }
}

fn uniform(n: usize) -> Vec<HostSpec> {
    (0..n).map(|i| host(hn(i), 16, 2000, 64 * GB)).collect()
}

/// Where PlanetLab traces are looked for by default: the copy shipped in gmond-metrics.
pub fn default_trace_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../metrics/data/planetlab/20110303")
}

/// CloudSim's four VM types: (MIPS, RAM MB).
const VM_TYPES: [(f64, u64); 4] = [(2500.0, 870), (2000.0, 1740), (1000.0, 1740), (500.0, 613)];

/// Builds a built-in scenario. `trace_dir` overrides the PlanetLab directory; `seed` drives
/// every random choice.
pub fn builtin(name: &str, trace_dir: Option<&Path>, seed: u64) -> Result<Scenario> {
    let mut sc = match name {
        "hot-host" => hot_host(),
        "flash-crowd-short" | "flash-crowd-long" => flash_crowd(name),
        "host-failure" | "partition" => host_failure(name),
        "anti-affinity" => anti_affinity(),
        "maintenance-drain" | "maintenance-drain-2" => maintenance_drain(name),
        "memory-bound" => memory_bound(),
        "swap-needed" => swap_needed(),
        "steady-noise" | "steady-noise-short" => steady_noise(name, seed),
        "planetlab" | "planetlab-small" | "scale" => planetlab(name, trace_dir, seed)?,
        _ => {
            return Err(BalancerError::Scenario(format!(
                "unknown built-in scenario {name:?}"
            )))
        }
    };
    sc.name = name.to_string();
    Ok(sc)
}

/// A hot host whose only cool neighbour has no memory to spare: 8 busy 4 GB VMs (2 vCPU at
/// 90 %) on host 0, 15 idle 4 GB VMs (10 %) filling host 1's memory. No single move relieves
/// host 0; exchanging busy VMs for idle ones does, if each exchange's second half starts only
/// after its first has ended (both at once would need 4 GB more than host 1 has).
fn swap_needed() -> Scenario {
    let mut sc = base(
        "swap-needed",
        "host 0 hot (8 busy 4 GB VMs), host 1 cool but out of memory (15 idle 4 GB VMs)",
        60,
        3600,
        uniform(2),
    );
    // `n` VMs of 2 vCPUs and 4 GB named `prefix-NN` on host `h`, steady at `level`.
    let group = |prefix: &str, n: usize, h: usize, level: f64| {
        (0..n)
            .map(|i| {
                let profile = ProfileSpec::Constant { level };
                vm(format!("{prefix}-{i:02}"), 2, 4 * GB, Some(hn(h)), profile)
            })
            .collect::<Vec<_>>()
    };
    sc.vms = group("busy", 8, 0, 0.9);
    sc.vms.extend(group("idle", 15, 1, 0.1));
    // Two hosts cannot reach sigma 0.05 with relief down to hotspot's target: balanced here
    // means host 0 relieved (no host at 80 %) and the spread at most 0.2.
    sc.sigma_target = 0.2;
    sc.high_util = 0.8;
    sc
}

/// 24 VMs of 2 vCPU at 90 % all start on host 0 of 4.
fn hot_host() -> Scenario {
    let mut sc = base(
        "hot-host",
        "24 VMs of 2 vCPU at 90 % all start on host 0 of 4",
        60,
        7200,
        uniform(4),
    );
    sc.vms = (0..24)
        .map(|i| {
            vm(
                format!("vm-{i:02}"),
                2,
                2 * GB,
                Some(hn(0)),
                ProfileSpec::Constant { level: 0.9 },
            )
        })
        .collect();
    sc
}

/// Steady 40 %; 7 of 64 VMs, all on host 0, spike at 1 h (2 min short, 1 h long).
fn flash_crowd(name: &str) -> Scenario {
    let long = name.ends_with("long");
    let dur = if long { 3600 } else { 120 };
    let mut sc = base(
        name,
        "steady 40 %; 7 of 64 VMs (all on host 0) jump to 100 % at 1 h",
        60,
        4 * 3600,
        uniform(8),
    );
    sc.perturb_at_s = 3600;
    for i in 0..64 {
        let h = i / 8;
        let p = if i < 7 {
            ProfileSpec::Spike {
                base: 0.4,
                peak: 1.0,
                start_s: 3600,
                duration_s: dur,
            }
        } else {
            ProfileSpec::Constant { level: 0.4 }
        };
        sc.vms
            .push(vm(format!("vm-{i:02}"), 2, 4 * GB, Some(hn(h)), p));
    }
    sc
}

/// 8 hosts at 45 %: host 7 fails at 30 min, or (partition) the view splits for 30 s.
fn host_failure(name: &str) -> Scenario {
    let part = name == "partition";
    let tick = if part { 10 } else { 60 };
    let mut sc = base(
        name,
        "8 hosts at 45 %; host 7 fails at 30 min, HA restarts its VMs on host 0 after 60 s",
        tick,
        3 * 3600,
        uniform(8),
    );
    sc.perturb_at_s = 1800;
    for i in 0..48 {
        sc.vms.push(vm(
            format!("vm-{i:02}"),
            2,
            4 * GB,
            Some(hn(i / 6)),
            ProfileSpec::Constant { level: 0.6 },
        ));
    }
    if part {
        sc.description = "host 0 hot; the view splits in two halves for 30 s at 30 min".into();
        sc.duration_s = 3600;
        // Four extra VMs on host 0 wake up just before the split, so that the
        // sustained tests fire while the view is partitioned.
        for i in 0..4 {
            let p = ProfileSpec::Spike {
                base: 0.0,
                peak: 1.0,
                start_s: 1780,
                duration_s: 3600,
            };
            sc.vms
                .push(vm(format!("hot-{i:02}"), 2, 4 * GB, Some(hn(0)), p));
        }
        sc.events.push(Event::Partition {
            at_s: 1800,
            duration_s: 30,
        });
    } else {
        sc.events.push(Event::HostDown {
            at_s: 1800,
            host: hn(7),
            ha_after_s: 60,
            restart_on: hn(0),
        });
    }
    sc
}

/// Co-located anti-affinity groups to split, and one infeasible group.
fn anti_affinity() -> Scenario {
    let mut sc = base(
        "anti-affinity",
        "6 hosts; 4 co-located groups of 3 must be split; a 7-VM group is infeasible",
        60,
        3600,
        uniform(6),
    );
    sc.sigma_target = 0.5;
    for g in 0..4 {
        let names: Vec<String> = (0..3).map(|k| format!("g{g}-{k}")).collect();
        for n in &names {
            sc.vms.push(vm(
                n.clone(),
                2,
                4 * GB,
                Some(hn(g)),
                ProfileSpec::Constant { level: 0.3 },
            ));
        }
        sc.anti_affinity.push(Group {
            name: format!("g{g}"),
            vms: names,
        });
    }
    let big: Vec<String> = (0..7).map(|k| format!("big-{k}")).collect();
    for (k, n) in big.iter().enumerate() {
        sc.vms.push(vm(
            n.clone(),
            1,
            2 * GB,
            Some(hn(k % 6)),
            ProfileSpec::Constant { level: 0.2 },
        ));
    }
    sc.anti_affinity.push(Group {
        name: "big".into(),
        vms: big,
    });
    sc
}

/// Host 0 (and 1 for `-2`) in maintenance from 10 min to 2 h.
fn maintenance_drain(name: &str) -> Scenario {
    let two = name.ends_with('2');
    let mut sc = base(
        name,
        "8 hosts at 40 %; host 0 (and 1) enter maintenance at 10 min, leave at 2 h",
        60,
        4 * 3600,
        uniform(8),
    );
    sc.perturb_at_s = 600;
    sc.sigma_target = 0.1;
    for i in 0..48 {
        sc.vms.push(vm(
            format!("vm-{i:02}"),
            2,
            4 * GB,
            Some(hn(i / 6)),
            ProfileSpec::Constant { level: 0.5 },
        ));
    }
    let hosts = if two { vec![0, 1] } else { vec![0] };
    for h in hosts {
        sc.events.push(Event::Maintenance {
            at_s: 600,
            host: hn(h),
            on: true,
        });
        sc.events.push(Event::Maintenance {
            at_s: 7200,
            host: hn(h),
            on: false,
        });
    }
    sc
}

/// Low CPU, memory 85 % on two hosts and 40 % on four.
fn memory_bound() -> Scenario {
    let mut sc = base(
        "memory-bound",
        "low CPU; memory 85 % on two hosts and 40 % on four; mixed VM sizes",
        60,
        3600,
        uniform(6),
    );
    sc.sigma_target = 0.2;
    let sizes = [2 * GB, 4 * GB, 8 * GB];
    let mut k = 0;
    for h in 0..6 {
        let target = if h < 2 { 0.85 } else { 0.40 };
        let mut used = 0;
        let mut j = 0;
        while (used as f64) < target * (64 * GB) as f64 - (GB as f64) {
            let s = sizes[(h + j) % 3].min(
                ((target * (64 * GB) as f64) as u64)
                    .saturating_sub(used)
                    .max(2 * GB),
            );
            sc.vms.push(vm(
                format!("vm-{k:02}"),
                1,
                s,
                Some(hn(h)),
                ProfileSpec::Constant { level: 0.1 },
            ));
            used += s;
            k += 1;
            j += 1;
        }
    }
    sc
}

/// 8 hosts at 55 % with white noise, 24 h (4 h short).
fn steady_noise(name: &str, seed: u64) -> Scenario {
    let short = name.ends_with("short");
    let dur = if short { 4 * 3600 } else { 24 * 3600 };
    let mut sc = base(
        name,
        "8 hosts at 55 % ± 10 % white noise",
        60,
        dur,
        uniform(8),
    );
    sc.sigma_target = 0.1;
    for i in 0..64 {
        let p = ProfileSpec::Noise {
            mean: 0.55,
            amplitude: 0.1,
            period_s: 60,
            seed: splitmix64(seed ^ i as u64),
        };
        sc.vms
            .push(vm(format!("vm-{i:02}"), 2, 4 * GB, Some(hn(i / 8)), p));
    }
    sc
}

fn planetlab(name: &str, trace_dir: Option<&Path>, seed: u64) -> Result<Scenario> {
    let dir = trace_dir.map_or_else(default_trace_dir, Path::to_path_buf);
    let traces = read_planetlab_dir(&dir)?;
    if traces.is_empty() {
        return Err(BalancerError::Scenario(format!(
            "no traces in {}",
            dir.display()
        )));
    }
    let (nh, nv) = match name {
        "planetlab" => (800, traces.len()),
        "planetlab-small" => (40, 52.min(traces.len())),
        _ => (1000, 20_000),
    };
    let mut sc = base(
        name,
        "PlanetLab 20110303 on the CloudSim 3.0.3 setup (800 hosts, 1052 VMs)",
        300,
        86_400,
        Vec::new(),
    );
    if name == "scale" {
        sc.description = "1,000 hosts x 20,000 VMs, PlanetLab day resampled with jitter".into();
        sc.hosts = (0..nh).map(|i| host(hn(i), 16, 2660, 128 * GB)).collect();
    } else {
        sc.accounting = Accounting::Cloudsim;
        // CloudSim's migration time is RAM (MB) / (1,000,000 kbit/s / (2 x 8,000)), i.e. 62.5
        // MB/s: a "1 Gbit/s" link of 2^20-byte megabytes.
        sc.link_bps = 1_048_576_000;
        sc.ignore_memory = true;
        sc.initial_first_fit = true;
        sc.hosts = cloudsim_hosts(nh);
    }
    sc.sigma_target = 1.0;
    sc.high_util = 1.0;
    // The small variant draws its VMs from the whole day with a fixed seed.
    let mut picks: Vec<usize> = (0..traces.len()).collect();
    if name == "planetlab-small" {
        let mut keyed: Vec<(u64, usize)> = picks
            .iter()
            .map(|&i| (splitmix64(seed ^ (i as u64 + 1)), i))
            .collect();
        keyed.sort_unstable();
        picks = keyed.into_iter().take(nv).map(|(_, i)| i).collect();
        picks.sort_unstable();
    }
    let per_type = nv.div_ceil(4);
    for k in 0..nv {
        let src = picks[k % picks.len()];
        let mut samples = traces[src].1.clone();
        if name == "scale" {
            for (j, s) in samples.iter_mut().enumerate() {
                let u = unit(splitmix64(seed ^ ((k as u64) << 20) ^ j as u64));
                *s = (*s + (u as f32 - 0.5) * 0.04).clamp(0.0, 1.0);
            }
        }
        let (mips, ram_mb) = VM_TYPES[(k / per_type).min(3)];
        sc.vms.push(VmSpec {
            name: format!("vm-{k:05}"),
            vcpus: 1,
            cpu_cap_mhz: mips,
            mem_kb: ram_mb * 1024,
            host: None,
            tags: Default::default(),
            profile: ProfileSpec::Samples {
                samples: samples.into(),
                period_s: 300,
            },
        });
    }
    Ok(sc)
}

/// Beloglazov & Buyya's hosts: HP ProLiant ML110 G4 (1860 MHz) and G5 (2660 MHz), two cores
/// and 4 GB each, alternating.
fn cloudsim_hosts(n: usize) -> Vec<HostSpec> {
    (0..n)
        .map(|i| {
            let g5 = i % 2 == 1;
            HostSpec {
                name: format!("host-{i:03}"),
                cpus: 2,
                mhz: if g5 { 2660 } else { 1860 },
                mem_kb: 4096 * 1024,
                power: Some(if g5 { "g5" } else { "g4" }.into()),
            }
        })
        .collect()
}

impl Scenario {
    /// Loads a scenario file (TOML if it ends in .toml, JSON otherwise).
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(|source| BalancerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let sc: Scenario = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| BalancerError::Scenario(e.to_string()))?
        } else {
            serde_json::from_str(&text)?
        };
        sc.validate()?;
        Ok(sc)
    }

    /// A scenario of `hosts` and `vms` with every other setting at its default (a file that
    /// gives only these fields loads as this).
    pub fn empty() -> Scenario {
        Scenario {
            name: String::new(),
            description: String::new(),
            tick_s: 60,
            duration_s: 0,
            link_bps: gbit(),
            hosts: Vec::new(),
            vms: Vec::new(),
            events: Vec::new(),
            anti_affinity: Vec::new(),
            affinity: Vec::new(),
            pins: Vec::new(),
            sigma_target: sigma_default(),
            high_util: high_default(),
            perturb_at_s: 0,
            accounting: Accounting::default(),
            ignore_memory: false,
            initial_threshold: one(),
            initial_first_fit: false,
            start_epoch: 0,
        }
    }

    /// Consistency checks.
    pub fn validate(&self) -> Result<()> {
        if self.tick_s == 0 || self.hosts.is_empty() {
            return Err(BalancerError::Scenario(
                "tick_s > 0 and at least one host needed".into(),
            ));
        }
        Ok(())
    }
}
