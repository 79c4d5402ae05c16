//! Hard rules no move may break: memory capacity minus a reserve, the vCPU:pCPU ratio,
//! VM-VM affinity and anti-affinity groups, VM-host pinning and maintenance hosts; and the
//! operator's: VMs never moved (`exclude`) and the times moves may start (`windows`).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;
use crate::snapshot::{Snapshot, VmTags};

/// A named set of VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group name (used in reasons and notes).
    pub name: String,
    /// Member VM names.
    pub vms: Vec<String>,
}

/// A VM allowed only on some hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// VM name.
    pub vm: String,
    /// Allowed host names.
    pub hosts: Vec<String>,
}

/// The constraint section of a policy file (see configs/policies/*.toml for the documented
/// defaults and ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConstraintConfig {
    /// Check memory capacity at all (default true; false reproduces CloudSim's PlanetLab setup,
    /// whose VMs request no RAM once created).
    pub check_memory: bool,
    /// Fraction of host memory never filled by moves (0..1, default 0.05).
    pub mem_reserve_frac: f64,
    /// Absolute memory reserve in KB on top of the fraction (default 0).
    pub mem_reserve_kb: u64,
    /// Maximum vCPUs per physical CPU on a destination (0 = unlimited, default 4).
    pub max_vcpu_ratio: f64,
    /// VMs that must share a host.
    pub affinity: Vec<Group>,
    /// VMs that must be on distinct hosts.
    pub anti_affinity: Vec<Group>,
    /// VM-host pinning.
    pub pins: Vec<Pin>,
    /// Hosts in maintenance besides those flagged in the snapshot.
    pub maintenance: Vec<String>,
    /// VMs the balancer never moves, not even off a host in maintenance: names, `prefix*` or
    /// `*suffix` (a database the operator moves by hand, say).
    pub exclude: Vec<String>,
    /// Migration windows: cron patterns (minute hour day-of-month month day-of-week, in UTC,
    /// as crontab(5) reads them). A move may start only in a minute one of them matches;
    /// outside, nothing is planned and the plan says when the next window opens. Empty: any
    /// time.
    pub windows: Vec<String>,
    /// Per-VM priority by name pattern (as `exclude`): how much a VM is spared. On a host
    /// that needs relief, a VM moves only when the VMs of lower priority there cannot give
    /// it; default 0, range -1000..=1000, the highest matching pattern (or the view's
    /// `priority=` tag, if higher) counts.
    pub priority: BTreeMap<String, i32>,
}

impl Default for ConstraintConfig {
    fn default() -> Self {
        ConstraintConfig {
            check_memory: true,
            mem_reserve_frac: 0.05,
            mem_reserve_kb: 0,
            max_vcpu_ratio: 4.0,
            affinity: Vec::new(),
            anti_affinity: Vec::new(),
            pins: Vec::new(),
            maintenance: Vec::new(),
            exclude: Vec::new(),
            windows: Vec::new(),
            priority: BTreeMap::new(),
        }
    }
}

impl ConstraintConfig {
    /// Range checks.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..1.0).contains(&self.mem_reserve_frac) {
            return Err(BalancerError::config(format!(
                "mem_reserve_frac {} not in [0, 1)",
                self.mem_reserve_frac
            )));
        }
        if !(self.max_vcpu_ratio >= 0.0) {
            return Err(BalancerError::config("max_vcpu_ratio must be >= 0"));
        }
        for p in &self.exclude {
            NamePattern::parse(p).map_err(|e| BalancerError::config(format!("exclude: {e}")))?;
        }
        if self.priority.len() > Self::MAX_PRIORITY_PATTERNS {
            return Err(BalancerError::config(format!(
                "priority: at most {} patterns",
                Self::MAX_PRIORITY_PATTERNS
            )));
        }
        let max = VmTags::MAX_PRIORITY;
        for (p, level) in &self.priority {
            NamePattern::parse(p).map_err(|e| BalancerError::config(format!("priority: {e}")))?;
            if !(-max..=max).contains(level) {
                return Err(BalancerError::config(format!(
                    "priority: {p:?} = {level} is outside -{max}..={max}"
                )));
            }
        }
        self.migration_windows()?;
        Ok(())
    }

    /// Most `priority` patterns (each VM is matched against all of them).
    pub const MAX_PRIORITY_PATTERNS: usize = 256;

    /// The `windows`, parsed.
    pub fn migration_windows(&self) -> crate::Result<Windows> {
        Windows::parse(&self.windows).map_err(BalancerError::config)
    }
}

/// A VM name pattern of `exclude`: a name, `prefix*` or `*suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl NamePattern {
    fn parse(p: &str) -> std::result::Result<NamePattern, String> {
        let bad = || format!("{p:?} is not a VM name, \"prefix*\" or \"*suffix\"");
        let inner = p.trim_start_matches('*').trim_end_matches('*');
        if inner.is_empty() || inner.contains('*') || inner.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        match (p.starts_with('*'), p.ends_with('*')) {
            (false, false) => Ok(NamePattern::Exact(p.to_string())),
            (false, true) => Ok(NamePattern::Prefix(inner.to_string())),
            (true, false) => Ok(NamePattern::Suffix(inner.to_string())),
            (true, true) => Err(bad()),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => name == n,
            NamePattern::Prefix(p) => name.starts_with(p.as_str()),
            NamePattern::Suffix(s) => name.ends_with(s.as_str()),
        }
    }
}

/// Parsed migration windows (croner: POSIX/Vixie cron semantics, so a pattern reads as it
/// would in a crontab; day-of-month and day-of-week restricted together match either).
#[derive(Debug, Clone, Default)]
pub struct Windows {
    patterns: Vec<(String, croner::Cron)>,
    /// Never open (patterns that stopped parsing after validation).
    closed: bool,
}

impl Windows {
    /// At most this many patterns (each is tried every round).
    pub const MAX: usize = 32;

    /// Windows that never open.
    fn closed() -> Windows {
        Windows {
            patterns: Vec::new(),
            closed: true,
        }
    }

    fn parse(patterns: &[String]) -> std::result::Result<Windows, String> {
        if patterns.len() > Windows::MAX {
            return Err(format!("windows: at most {} patterns", Windows::MAX));
        }
        let mut out = Vec::new();
        for p in patterns {
            // Five fields exactly: croner would also take seconds and years, which a
            // migration window has no use for and a reader would misread.
            if p.split_whitespace().count() != 5 {
                return Err(format!(
                    "windows: {p:?} is not a cron pattern of five fields \
                     (minute hour day-of-month month day-of-week, UTC)"
                ));
            }
            let cron = croner::Cron::from_str(p)
                .map_err(|e| format!("windows: {p:?} is not a cron pattern: {e}"))?;
            out.push((p.clone(), cron));
        }
        Ok(Windows {
            patterns: out,
            closed: false,
        })
    }

    /// Whether a move may start at `wall_s` (epoch seconds): no windows, or one matches its
    /// minute.
    pub fn open_at(&self, wall_s: u64) -> bool {
        if self.closed {
            return false;
        }
        if self.patterns.is_empty() {
            return true;
        }
        let Some(t) = minute_of(wall_s) else {
            return false;
        };
        self.patterns
            .iter()
            .any(|(_, c)| c.is_time_matching(&t).unwrap_or(false))
    }

    /// The next minute after `wall_s` that a window opens, epoch seconds (None: no windows,
    /// or none within croner's search range).
    pub fn next_open(&self, wall_s: u64) -> Option<u64> {
        let t = minute_of(wall_s)?;
        self.patterns
            .iter()
            .filter_map(|(_, c)| c.find_next_occurrence(&t, false).ok())
            .filter_map(|n| u64::try_from(n.timestamp()).ok())
            .min()
    }

    /// Whether there are any (no windows: always open).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && !self.closed
    }
}

/// `wall_s` as a UTC time truncated to its minute (cron matches minutes; croner's five-field
/// patterns would otherwise match second 0 only).
fn minute_of(wall_s: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = i64::try_from(wall_s - wall_s % 60).ok()?;
    chrono::DateTime::from_timestamp(s, 0)
}

/// Constraints resolved against one snapshot (indices instead of names).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Per host: usable memory for placement, KB.
    pub mem_limit: Vec<u64>,
    /// Per host: vCPU limit (u32::MAX if unlimited).
    pub vcpu_limit: Vec<u32>,
    /// Per host: up and not in maintenance (may receive VMs).
    pub fillable: Vec<bool>,
    /// Per host: in maintenance.
    pub maintenance: Vec<bool>,
    /// Per VM: anti-affinity group indices.
    pub anti_of: Vec<Vec<usize>>,
    /// Per VM: affinity group index.
    pub aff_of: Vec<Option<usize>>,
    /// Per VM: allowed hosts (sorted), if pinned.
    pub pinned: Vec<Option<Vec<usize>>>,
    /// Anti-affinity groups as VM indices (names in `anti_names`).
    pub anti: Vec<Vec<usize>>,
    /// Names of anti-affinity groups.
    pub anti_names: Vec<String>,
    /// Affinity groups as VM indices.
    pub aff: Vec<Vec<usize>>,
    /// Names of affinity groups.
    pub aff_names: Vec<String>,
    /// Per VM: never moved (`exclude`, or the view's `exclude` tag).
    pub excluded: Vec<bool>,
    /// Per VM: its priority (`priority`, or the view's tag if higher; 0 by default).
    pub priority: Vec<i32>,
    /// The migration windows.
    pub windows: Windows,
}

impl Rules {
    /// Resolves names; unknown VMs and hosts are ignored (they are simply not in this view).
    pub fn resolve(cfg: &ConstraintConfig, s: &Snapshot) -> Rules {
        let nh = s.hosts.len();
        let nv = s.vms.len();
        let mut maintenance: Vec<bool> = s.hosts.iter().map(|h| h.maintenance).collect();
        for m in &cfg.maintenance {
            if let Some(i) = s.host_index(m) {
                maintenance[i] = true;
            }
        }
        let mem_limit = s
            .hosts
            .iter()
            .map(|h| {
                if !cfg.check_memory {
                    return u64::MAX;
                }
                let usable = h.mem_kb as f64 * (1.0 - cfg.mem_reserve_frac);
                (usable as u64).saturating_sub(cfg.mem_reserve_kb)
            })
            .collect();
        let vcpu_limit = s
            .hosts
            .iter()
            .map(|h| {
                if cfg.max_vcpu_ratio > 0.0 {
                    (f64::from(h.cpus) * cfg.max_vcpu_ratio).floor() as u32
                } else {
                    u32::MAX
                }
            })
            .collect();
        let fillable = s
            .hosts
            .iter()
            .zip(&maintenance)
            .map(|(h, m)| h.up && !m)
            .collect();
        let resolve_groups = |groups: &[Group]| -> (Vec<Vec<usize>>, Vec<String>) {
            let mut sorted: Vec<&Group> = groups.iter().collect();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            let mut out = Vec::new();
            let mut names = Vec::new();
            for g in sorted {
                let mut v: Vec<usize> = g.vms.iter().filter_map(|n| s.vm_index(n)).collect();
                v.sort_unstable();
                v.dedup();
                out.push(v);
                names.push(g.name.clone());
            }
            (out, names)
        };
        let (anti, anti_names) = resolve_groups(&cfg.anti_affinity);
        let (aff, aff_names) = resolve_groups(&cfg.affinity);
        let mut anti_of = vec![Vec::new(); nv];
        for (g, members) in anti.iter().enumerate() {
            for &v in members {
                anti_of[v].push(g);
            }
        }
        let mut aff_of = vec![None; nv];
        for (g, members) in aff.iter().enumerate() {
            for &v in members {
                aff_of[v].get_or_insert(g);
            }
        }
        let mut pinned: Vec<Option<Vec<usize>>> = vec![None; nv];
        let mut pins: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for p in &cfg.pins {
            if let Some(v) = s.vm_index(&p.vm) {
                let e = pins.entry(v).or_default();
                e.extend(p.hosts.iter().filter_map(|h| s.host_index(h)));
            }
        }
        for (v, mut hs) in pins {
            hs.sort_unstable();
            hs.dedup();
            pinned[v] = Some(hs);
        }
        let _ = nh;
        let patterns: Vec<NamePattern> = cfg
            .exclude
            .iter()
            .filter_map(|p| NamePattern::parse(p).ok())
            .collect();
        let excluded = s
            .vms
            .iter()
            .map(|v| v.tags.exclude || patterns.iter().any(|p| p.matches(&v.name)))
            .collect();
        let levels: Vec<(NamePattern, i32)> = cfg
            .priority
            .iter()
            .filter_map(|(p, l)| NamePattern::parse(p).ok().map(|p| (p, *l)))
            .collect();
        let priority = s
            .vms
            .iter()
            .map(|v| {
                levels
                    .iter()
                    .filter(|(p, _)| p.matches(&v.name))
                    .map(|(_, l)| *l)
                    .max()
                    .map_or(v.tags.priority, |l| l.max(v.tags.priority))
            })
            .collect();
        // Validated with the policy; a pattern that no longer parses closes every window
        // rather than opening all of them.
        let windows = cfg.migration_windows().unwrap_or_else(|e| {
            tracing::error!(error = %e, "migration windows unreadable: no moves");
            Windows::closed()
        });
        Rules {
            excluded,
            priority,
            windows,
            mem_limit,
            vcpu_limit,
            fillable,
            maintenance,
            anti_of,
            aff_of,
            pinned,
            anti,
            anti_names,
            aff,
            aff_names,
        }
    }

    /// True if VM `v` may run on host `h` according to its pinning.
    pub fn pin_allows(&self, v: usize, h: usize) -> bool {
        match &self.pinned[v] {
            None => true,
            Some(hs) => hs.binary_search(&h).is_ok(),
        }
    }
}
