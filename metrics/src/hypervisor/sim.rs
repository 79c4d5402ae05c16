//! A deterministic simulated cluster of hypervisors: domains follow demand profiles, CPU time
//! accumulates from demand, and live migration takes memory / (bandwidth / 2) of simulated time.
//!
//! Time is always an argument (`SimMs`); nothing here reads a clock.

use std::collections::BTreeMap;

use super::profile::{splitmix64, Profile, SimMs};
use super::{DomainInfo, DomainState, HostCapacity, Hypervisor};
use crate::Error;

/// A simulated physical host.
#[derive(Debug, Clone, PartialEq)]
pub struct SimHost {
    /// Host name.
    pub name: String,
    /// Physical CPUs.
    pub cpus: u32,
    /// MHz per CPU (treated as MIPS per core, as CloudSim does).
    pub mhz: u32,
    /// Memory, KiB.
    pub mem_kib: u64,
    /// Link bandwidth for migration, bits per second.
    pub link_bps: u64,
    /// False once the host has failed (its domains stop accumulating CPU time).
    pub up: bool,
}

/// A migration in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Destination host index.
    pub dest: usize,
    /// Start, ms.
    pub start_ms: SimMs,
    /// Completion, ms.
    pub end_ms: SimMs,
}

/// A simulated domain.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDomain {
    /// Domain name.
    pub name: String,
    /// UUID derived deterministically from the cluster seed and the name.
    pub uuid: String,
    /// vCPUs.
    pub vcpus: u32,
    /// CPU capacity of the domain in MHz (MIPS); demand is a fraction of this.
    pub cpu_cap_mhz: f64,
    /// Memory, KiB.
    pub mem_kib: u64,
    /// Current host index (the source while migrating).
    pub host: usize,
    /// CPU demand over time.
    pub profile: Profile,
    /// Cumulative CPU time, ns.
    pub cpu_time_ns: u64,
    /// Run state.
    pub state: DomainState,
    /// In-flight migration.
    pub migration: Option<Migration>,
}

/// A finished migration, as reported by [`SimCluster::advance_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedMigration {
    /// Domain index.
    pub domain: usize,
    /// Source host index.
    pub from: usize,
    /// Destination host index.
    pub to: usize,
    /// Start, ms.
    pub start_ms: SimMs,
    /// End, ms.
    pub end_ms: SimMs,
}

/// The whole simulated cluster.
#[derive(Debug, Clone, Default)]
pub struct SimCluster {
    seed: u64,
    now_ms: SimMs,
    hosts: Vec<SimHost>,
    domains: Vec<SimDomain>,
    host_by_name: BTreeMap<String, usize>,
    domain_by_name: BTreeMap<String, usize>,
    ignore_memory: bool,
}

impl SimCluster {
    /// An empty cluster at time 0; `seed` feeds the domain UUIDs.
    pub fn new(seed: u64) -> Self {
        SimCluster {
            seed,
            ..Default::default()
        }
    }

    /// Lets migrations overcommit destination memory (CloudSim's PlanetLab setup requests no
    /// RAM after instantiation, so its hosts never refuse a VM for memory).
    pub fn set_ignore_memory(&mut self, ignore: bool) {
        self.ignore_memory = ignore;
    }

    /// Current simulated time.
    pub fn now_ms(&self) -> SimMs {
        self.now_ms
    }

    /// Adds a host; names must be unique.
    pub fn add_host(&mut self, host: SimHost) -> Result<usize, Error> {
        if self.host_by_name.contains_key(&host.name) {
            return Err(Error::Backend(format!("duplicate host {:?}", host.name)));
        }
        let i = self.hosts.len();
        self.host_by_name.insert(host.name.clone(), i);
        self.hosts.push(host);
        Ok(i)
    }

    /// Adds a running domain on host `host`; memory is not checked (initial placement may
    /// overcommit on purpose in scenarios).
    #[allow(clippy::too_many_arguments)]
    pub fn add_domain(
        &mut self,
        name: &str,
        vcpus: u32,
        cpu_cap_mhz: f64,
        mem_kib: u64,
        host: usize,
        profile: Profile,
    ) -> Result<usize, Error> {
        if host >= self.hosts.len() {
            return Err(Error::UnknownHost(format!("#{host}")));
        }
        if self.domain_by_name.contains_key(name) {
            return Err(Error::Backend(format!("duplicate domain {name:?}")));
        }
        let i = self.domains.len();
        let h = splitmix64(self.seed ^ fnv(name));
        let l = splitmix64(h);
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            (l >> 52) & 0xfff,
            l & 0xffff_ffff_ffff
        );
        self.domain_by_name.insert(name.to_string(), i);
        self.domains.push(SimDomain {
            name: name.to_string(),
            uuid,
            vcpus,
            cpu_cap_mhz,
            mem_kib,
            host,
            profile,
            cpu_time_ns: 0,
            state: DomainState::Running,
            migration: None,
        });
        Ok(i)
    }

    /// All hosts, by index.
    pub fn hosts(&self) -> &[SimHost] {
        &self.hosts
    }

    /// All domains, by index.
    pub fn domains(&self) -> &[SimDomain] {
        &self.domains
    }

    /// Host index by name.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.host_by_name.get(name).copied()
    }

    /// Domain index by name.
    pub fn domain_index(&self, name: &str) -> Option<usize> {
        self.domain_by_name.get(name).copied()
    }

    /// Demand of domain `d` at time `t` in MHz (0 if unknown or not running).
    pub fn demand_mhz(&self, d: usize, t: SimMs) -> f64 {
        self.domains.get(d).map_or(0.0, |dom| {
            if dom.state == DomainState::Running {
                dom.profile.demand_at(t) * dom.cpu_cap_mhz
            } else {
                0.0
            }
        })
    }

    /// Memory committed on host `h`, KiB: resident domains plus those migrating in.
    pub fn host_mem_committed_kib(&self, h: usize) -> u64 {
        self.domains
            .iter()
            .filter(|d| d.host == h || d.migration.is_some_and(|m| m.dest == h))
            .map(|d| d.mem_kib)
            .sum()
    }

    /// Migration duration for `mem_kib` over a `link_bps` link of which half is reserved for
    /// migration (CloudSim's model).
    pub fn migration_ms(mem_kib: u64, link_bps: u64) -> SimMs {
        let bits = mem_kib as f64 * 1024.0 * 8.0;
        let secs = bits / (link_bps.max(1) as f64 / 2.0);
        (secs * 1000.0).ceil() as SimMs
    }

    /// Starts a live migration of domain `d` to host `dest` at the current time; returns its
    /// completion time. Memory on the destination is reserved from now on.
    pub fn start_migration(&mut self, d: usize, dest: usize) -> Result<SimMs, Error> {
        let dom = self
            .domains
            .get(d)
            .ok_or_else(|| Error::UnknownDomain(format!("#{d}")))?;
        let dst = self
            .hosts
            .get(dest)
            .ok_or_else(|| Error::UnknownHost(format!("#{dest}")))?;
        let refuse = |why: &str| Error::MigrationRefused {
            domain: dom.name.clone(),
            why: why.to_string(),
        };
        if dom.migration.is_some() {
            return Err(refuse("already migrating"));
        }
        if dom.host == dest {
            return Err(refuse("already on destination"));
        }
        if !dst.up {
            return Err(Error::HostDown(dst.name.clone()));
        }
        let src = &self.hosts[dom.host];
        if !src.up {
            return Err(Error::HostDown(src.name.clone()));
        }
        if !self.ignore_memory && self.host_mem_committed_kib(dest) + dom.mem_kib > dst.mem_kib {
            return Err(Error::InsufficientMemory {
                host: dst.name.clone(),
                domain: dom.name.clone(),
            });
        }
        let link = src.link_bps.min(dst.link_bps);
        let end = self.now_ms + Self::migration_ms(dom.mem_kib, link);
        self.domains[d].migration = Some(Migration {
            dest,
            start_ms: self.now_ms,
            end_ms: end,
        });
        Ok(end)
    }

    /// Marks a host failed (or repaired). Domains on a failed host stop; migrations touching it
    /// are aborted.
    pub fn set_host_up(&mut self, h: usize, up: bool) -> Result<(), Error> {
        let host = self
            .hosts
            .get_mut(h)
            .ok_or_else(|| Error::UnknownHost(format!("#{h}")))?;
        host.up = up;
        for d in &mut self.domains {
            if d.migration.is_some_and(|m| m.dest == h || d.host == h) && !up {
                d.migration = None;
            }
            if d.host == h {
                d.state = if up {
                    DomainState::Running
                } else {
                    DomainState::Crashed
                };
            }
        }
        Ok(())
    }

    /// Restarts domain `d` on host `h` immediately (HA restart after a host failure).
    pub fn restart_on(&mut self, d: usize, h: usize) -> Result<(), Error> {
        if h >= self.hosts.len() {
            return Err(Error::UnknownHost(format!("#{h}")));
        }
        let dom = self
            .domains
            .get_mut(d)
            .ok_or_else(|| Error::UnknownDomain(format!("#{d}")))?;
        dom.host = h;
        dom.migration = None;
        dom.state = DomainState::Running;
        Ok(())
    }

    /// Advances simulated time: accumulates CPU time (demand held constant from the last step,
    /// as sampled monitoring would see it) and completes migrations due by `now_ms`, in
    /// completion-time order.
    pub fn advance_to(&mut self, now_ms: SimMs) -> Result<Vec<CompletedMigration>, Error> {
        if now_ms < self.now_ms {
            return Err(Error::TimeBackwards {
                now_ms,
                last_ms: self.now_ms,
            });
        }
        let dt_ms = now_ms - self.now_ms;
        let last = self.now_ms;
        for d in &mut self.domains {
            if d.state == DomainState::Running && self.hosts[d.host].up {
                let frac = d.profile.demand_at(last);
                d.cpu_time_ns += (frac * f64::from(d.vcpus) * dt_ms as f64 * 1e6) as u64;
            }
        }
        let mut done = Vec::new();
        for (i, d) in self.domains.iter_mut().enumerate() {
            if let Some(m) = d.migration {
                if m.end_ms <= now_ms {
                    done.push(CompletedMigration {
                        domain: i,
                        from: d.host,
                        to: m.dest,
                        start_ms: m.start_ms,
                        end_ms: m.end_ms,
                    });
                    d.host = m.dest;
                    d.migration = None;
                }
            }
        }
        done.sort_by_key(|c| (c.end_ms, c.domain));
        self.now_ms = now_ms;
        Ok(done)
    }

    /// A [`Hypervisor`] view of one host.
    pub fn host_view<'a>(&'a self, name: &'a str) -> SimHostView<'a> {
        SimHostView {
            cluster: self,
            name,
        }
    }
}

/// FNV-1a, to derive per-name seeds.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// One simulated host seen through the [`Hypervisor`] trait.
#[derive(Debug, Clone, Copy)]
pub struct SimHostView<'a> {
    cluster: &'a SimCluster,
    name: &'a str,
}

impl SimHostView<'_> {
    fn index(&self) -> Result<usize, Error> {
        let h = self
            .cluster
            .host_index(self.name)
            .ok_or_else(|| Error::UnknownHost(self.name.to_string()))?;
        if self.cluster.hosts[h].up {
            Ok(h)
        } else {
            Err(Error::HostDown(self.name.to_string()))
        }
    }
}

impl Hypervisor for SimHostView<'_> {
    fn hostname(&self) -> Result<String, Error> {
        self.index().map(|_| self.name.to_string())
    }

    fn capacity(&self) -> Result<HostCapacity, Error> {
        let h = self.index()?;
        let host = &self.cluster.hosts[h];
        let used = self.cluster.host_mem_committed_kib(h);
        Ok(HostCapacity {
            cpus: host.cpus,
            mhz: host.mhz,
            mem_kib: host.mem_kib,
            mem_free_kib: host.mem_kib.saturating_sub(used),
        })
    }

    fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        let h = self.index()?;
        // Name order comes from the BTreeMap, so the listing is sorted without a sort.
        Ok(self
            .cluster
            .domain_by_name
            .values()
            .map(|&i| &self.cluster.domains[i])
            .filter(|d| d.host == h)
            .map(|d| DomainInfo {
                name: d.name.clone(),
                uuid: d.uuid.clone(),
                state: if d.migration.is_some() && d.state == DomainState::Running {
                    DomainState::Running
                } else {
                    d.state
                },
                vcpus_current: d.vcpus,
                vcpus_max: d.vcpus,
                mem_max_kib: d.mem_kib,
                mem_current_kib: d.mem_kib,
                mem_used_kib: d.mem_kib,
                cpu_time_ns: d.cpu_time_ns,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_hosts() -> SimCluster {
        let mut c = SimCluster::new(1);
        for n in ["a", "b"] {
            c.add_host(SimHost {
                name: n.into(),
                cpus: 4,
                mhz: 2000,
                mem_kib: 4 << 20,
                link_bps: 1_000_000_000,
                up: true,
            })
            .unwrap();
        }
        c
    }

    #[test]
    fn cpu_time_accumulates_from_demand() {
        let mut c = two_hosts();
        let d = c
            .add_domain("vm1", 2, 4000.0, 1 << 20, 0, Profile::Constant(0.5))
            .unwrap();
        c.advance_to(10_000).unwrap();
        // 0.5 x 2 vCPUs x 10 s = 10 s of CPU.
        assert_eq!(c.domains()[d].cpu_time_ns, 10_000_000_000);
        assert!((c.demand_mhz(d, 0) - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn migration_takes_memory_over_half_bandwidth() {
        let mut c = two_hosts();
        // 1 GiB over 1 Gbit/s with half reserved: 8 * 2^30 / 5e8 = 17.18 s.
        let d = c
            .add_domain("vm1", 1, 1000.0, 1 << 20, 0, Profile::Constant(0.1))
            .unwrap();
        let end = c.start_migration(d, 1).unwrap();
        assert_eq!(end, 17_180);
        assert!(c.host_view("b").domains().unwrap().is_empty());
        assert_eq!(c.host_mem_committed_kib(1), 1 << 20);
        assert!(c.advance_to(17_179).unwrap().is_empty());
        let done = c.advance_to(17_180).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(c.host_view("b").domains().unwrap()[0].name, "vm1");
        assert!(matches!(
            c.start_migration(d, 1),
            Err(Error::MigrationRefused { .. })
        ));
    }

    #[test]
    fn refuses_memory_overcommit_and_dead_hosts() {
        let mut c = two_hosts();
        let big = c
            .add_domain("big", 1, 1000.0, 3 << 20, 0, Profile::Constant(0.1))
            .unwrap();
        c.add_domain("other", 1, 1000.0, 2 << 20, 1, Profile::Constant(0.1))
            .unwrap();
        assert!(matches!(
            c.start_migration(big, 1),
            Err(Error::InsufficientMemory { .. })
        ));
        let mut loose = c.clone();
        loose.set_ignore_memory(true);
        assert!(loose.start_migration(big, 1).is_ok());
        c.set_host_up(1, false).unwrap();
        assert!(matches!(c.start_migration(big, 1), Err(Error::HostDown(_))));
        assert!(matches!(
            c.host_view("b").capacity(),
            Err(Error::HostDown(_))
        ));
        assert!(c.advance_to(5).is_ok());
        assert!(matches!(c.advance_to(4), Err(Error::TimeBackwards { .. })));
    }

    #[test]
    fn listing_is_sorted_and_uuids_stable() {
        let mut c = two_hosts();
        for n in ["zz", "aa", "mm"] {
            c.add_domain(n, 1, 1000.0, 1024, 0, Profile::Constant(0.0))
                .unwrap();
        }
        let names: Vec<String> = c
            .host_view("a")
            .domains()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["aa", "mm", "zz"]);
        let mut c2 = two_hosts();
        c2.add_domain("zz", 1, 1000.0, 1024, 0, Profile::Constant(0.0))
            .unwrap();
        assert_eq!(c.domains()[0].uuid, c2.domains()[0].uuid);
        assert_eq!(c.domains()[0].uuid.len(), 36);
        let cap = c.host_view("a").capacity().unwrap();
        assert_eq!(cap.mem_free_kib, (4 << 20) - 3 * 1024);
    }
}
