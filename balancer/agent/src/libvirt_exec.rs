//! [`Executor`] over libvirt through `gmond-metrics`' `LibvirtControl`: live migration with
//! `virDomainMigrateToURI3` (p2p) or `virDomainMigrate3` (client-managed), abort with
//! `virDomainAbortJob`, one connection per call to each host's URI from the inventory (its
//! `[host_uris]` entry, else the template with `{host}`; never an address from the view).
//!
//! This file only maps the agent's config ([`MigrationFlags`], the URI template) and its
//! [`AgentError`]s onto that API; the libvirt calls themselves, and the unsafe code they need,
//! live in `gmond-metrics` (`hypervisor::libvirt`). Every call blocks.

use gmond_metrics::hypervisor::libvirt::{self as lv, LibvirtControl, MigrateOptions};
use gmond_metrics::Error as LibvirtError;

use crate::config::{AgentConfig, MigrationFlags};
use crate::error::{AgentError, Result};
use crate::executor::{Executor, HostAddr, MigrationRequest, Presence};

/// The libvirt executor.
#[derive(Debug, Clone)]
pub struct LibvirtExecutor {
    /// The config the URIs come from (`uri_template`, `host_uris`).
    inventory: AgentConfig,
    flags: MigrationFlags,
}

impl LibvirtExecutor {
    /// An executor with the config's URIs and migration flags.
    pub fn new(cfg: &AgentConfig) -> LibvirtExecutor {
        LibvirtExecutor {
            inventory: cfg.clone(),
            flags: cfg.migration.clone(),
        }
    }

    /// The URI of `h`: its `[host_uris]` entry, else the template with `{host}` = its name. Only a name that can go into a
    /// URI as is (see `config::valid_host_name`) gets one; the view's IP attribute is never
    /// used, since anyone on the segment can forge it.
    pub fn uri(&self, h: &HostAddr) -> Result<String> {
        self.inventory
            .uri_for(&h.name)
            .ok_or_else(|| AgentError::Unreachable {
                host: h.name.clone(),
                message: "not a valid host name for a libvirt URI".into(),
            })
    }

    /// The configured flags as libvirt migration options.
    pub fn options(&self) -> MigrateOptions {
        let f = &self.flags;
        MigrateOptions {
            live: f.live,
            p2p: f.p2p,
            tunnelled: f.tunnelled,
            persist_dest: f.persistent,
            undefine_source: f.undefine_source,
            allow_unsafe: f.allow_unsafe,
            tls: f.tls,
            bandwidth_mib_s: f.bandwidth_mib_s,
            max_downtime_ms: f.max_downtime_ms,
        }
    }

    /// The libvirt flag word for the configured flags.
    pub fn flag_bits(&self) -> u32 {
        self.options().flag_bits()
    }

    fn open(&self, h: &HostAddr) -> Result<LibvirtControl> {
        LibvirtControl::open(&self.uri(h)?).map_err(|e| unreachable(h, e))
    }
}

fn unreachable(host: &HostAddr, e: LibvirtError) -> AgentError {
    AgentError::Unreachable {
        host: host.name.clone(),
        message: e.to_string(),
    }
}

impl Executor for LibvirtExecutor {
    fn name(&self) -> &str {
        "libvirt"
    }

    fn reachable(&self, host: &HostAddr) -> bool {
        let Ok(uri) = self.uri(host) else {
            return false;
        };
        match LibvirtControl::probe(&uri) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(host = %host.name, error = %e, "membership probe failed");
                false
            }
        }
    }

    fn locate(&self, vm: &str, host: &HostAddr) -> Result<Presence> {
        let p = self
            .open(host)?
            .presence(vm)
            .map_err(|e| unreachable(host, e))?;
        Ok(match p {
            lv::Presence::Running => Presence::Running,
            lv::Presence::Busy => Presence::Busy,
            lv::Presence::NotRunning => Presence::NotRunning,
            lv::Presence::Absent => Presence::Absent,
        })
    }

    fn migrate(&self, req: &MigrationRequest) -> Result<()> {
        let dest = self.uri(&req.to)?;
        let src = self.open(&req.from)?;
        let opts = self.options();
        tracing::info!(vm = %req.vm, from = %src.uri(), to = %dest, flags = opts.flag_bits(),
            "libvirt migration");
        let vm = || req.vm.clone();
        src.migrate(&req.vm, &dest, &opts).map_err(|e| match e {
            LibvirtError::UnknownDomain(_) => AgentError::Refused {
                vm: vm(),
                message: format!("not defined on {}", req.from.name),
            },
            // Another job holds the domain: nothing started, nothing to verify or count.
            LibvirtError::MigrationRefused { why, .. } => AgentError::Refused {
                vm: vm(),
                message: why,
            },
            LibvirtError::MigrationAborted { why, .. } => AgentError::Aborted {
                vm: vm(),
                message: why,
            },
            LibvirtError::MigrationFailed { why, .. } => AgentError::Migration {
                vm: vm(),
                message: why,
            },
            // The source is connected already: only the destination can fail to connect.
            e @ LibvirtError::Connect { .. } => unreachable(&req.to, e),
            e => unreachable(&req.from, e),
        })
    }

    fn abort(&self, req: &MigrationRequest) -> Result<()> {
        match self.open(&req.from)?.abort_job(&req.vm) {
            Ok(()) | Err(LibvirtError::UnknownDomain(_)) => Ok(()),
            Err(LibvirtError::AbortFailed { why, .. }) => Err(AgentError::Migration {
                vm: req.vm.clone(),
                message: format!("abort: {why}"),
            }),
            Err(e) => Err(unreachable(&req.from, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_template_and_flags() {
        let mut cfg = AgentConfig::default();
        let x = LibvirtExecutor::new(&cfg);
        let h = HostAddr {
            name: "hv1".into(),
            ip: "6.6.6.6".into(),
        };
        // The view's IP attribute is never used: it is forgeable.
        assert_eq!(x.uri(&h).unwrap(), "qemu+tcp://hv1/system");
        assert_eq!(x.flag_bits(), 1 | 2 | 8 | 16);
        cfg.uri_template = "qemu+ssh://root@{host}/system".into();
        cfg.migration.tunnelled = true;
        cfg.migration.allow_unsafe = true;
        let x = LibvirtExecutor::new(&cfg);
        assert_eq!(x.uri(&h).unwrap(), "qemu+ssh://root@hv1/system");
        // A name that would inject URI parameters or a port gets no URI at all.
        for bad in ["evil?keyfile=/x", "hv1:16509", "a/b"] {
            let h = HostAddr {
                name: bad.into(),
                ip: String::new(),
            };
            assert!(x.uri(&h).is_err(), "{bad}");
            assert!(!x.reachable(&h), "{bad}");
        }
        assert_eq!(x.flag_bits(), 1 | 2 | 4 | 8 | 16 | 512);
    }

    #[test]
    fn test_driver_locates_and_refuses_to_migrate() {
        // libvirt's built-in test driver: no daemon needed, cannot migrate (its error text
        // must come back to the caller).
        let cfg = AgentConfig {
            trusted_hosts: vec!["a".into(), "b".into(), "dead".into()],
            host_uris: [
                ("a", "test:///default"),
                ("b", "test:///default"),
                ("dead", "qemu+tcp://127.0.0.1:1/system"),
            ]
            .into_iter()
            .map(|(h, u)| (h.to_string(), u.to_string()))
            .collect(),
            ..Default::default()
        };
        let x = LibvirtExecutor::new(&cfg);
        let h = HostAddr {
            name: "a".into(),
            ip: String::new(),
        };
        assert!(x.reachable(&h));
        assert_eq!(x.locate("test", &h).unwrap(), Presence::Running);
        assert_eq!(x.locate("nope", &h).unwrap(), Presence::Absent);
        let req = MigrationRequest {
            id: 1,
            vm: "test".into(),
            from: h.clone(),
            to: HostAddr {
                name: "b".into(),
                ip: String::new(),
            },
            timeout: std::time::Duration::from_secs(5),
        };
        let e = x.migrate(&req).unwrap_err();
        assert!(matches!(e, AgentError::Migration { .. }), "{e}");
        assert!(e.to_string().contains("not supported"), "{e}");
        let dead = HostAddr {
            name: "dead".into(),
            ip: String::new(),
        };
        assert!(!x.reachable(&dead));
        assert!(matches!(
            x.locate("test", &dead),
            Err(AgentError::Unreachable { host, .. }) if host == "dead"
        ));
    }

    #[test]
    fn gmond_metrics_errors_map_onto_agent_errors() {
        // The inventory gives each host its URI: "src" the test driver, "refused" a port
        // nothing listens on.
        let cfg = AgentConfig {
            trusted_hosts: vec!["src".into(), "refused".into()],
            host_uris: [
                ("src", "test:///default"),
                ("refused", "qemu+tcp://127.0.0.1:1/system"),
            ]
            .into_iter()
            .map(|(h, u)| (h.to_string(), u.to_string()))
            .collect(),
            ..Default::default()
        };
        let host = |name: &str| HostAddr {
            name: name.into(),
            ip: String::new(),
        };
        let refused = "refused";
        let req = |vm: &str, to: &str| MigrationRequest {
            id: 7,
            vm: vm.into(),
            from: host("src"),
            to: host(to),
            timeout: std::time::Duration::from_secs(5),
        };
        let x = LibvirtExecutor::new(&cfg);
        // Not on the source: refused before anything starts.
        let e = x.migrate(&req("nope", "src")).unwrap_err();
        assert!(
            matches!(&e, AgentError::Refused { vm, message }
                if vm == "nope" && message == "not defined on src"),
            "{e}"
        );
        // Client-managed with a destination that refuses connections: the destination is
        // the unreachable host.
        let mut direct = cfg.clone();
        direct.migration.p2p = false;
        let e = LibvirtExecutor::new(&direct)
            .migrate(&req("test", refused))
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Unreachable { host, .. } if host == refused),
            "{e}"
        );
        // The source unreachable: named as such.
        let e = x
            .migrate(&MigrationRequest {
                from: host(refused),
                ..req("test", "src")
            })
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Unreachable { host, .. } if host == refused),
            "{e}"
        );
        // Abort: nothing to abort when the domain is gone; libvirt's refusal otherwise.
        x.abort(&req("nope", "src")).unwrap();
        let e = x.abort(&req("test", "src")).unwrap_err();
        assert!(
            matches!(&e, AgentError::Migration { message, .. } if message.starts_with("abort: ")),
            "{e}"
        );
    }
}
