//! Hard rules no move may break: memory capacity minus a reserve, the vCPU:pCPU ratio,
//! VM-VM affinity and anti-affinity groups, VM-host pinning and maintenance hosts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::BalancerError;
use crate::snapshot::Snapshot;

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
        Ok(())
    }
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
        Rules {
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
