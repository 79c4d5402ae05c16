//! [`Executor`] over libvirt through `gmond-metrics`' `LibvirtControl`: live migration with
//! `virDomainMigrateToURI3` (p2p) or `virDomainMigrate3` (client-managed), abort with
//! `virDomainAbortJob`, one connection per call to each host's URI from the template
//! (`{host}`, `{ip}`).
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
    template: String,
    flags: MigrationFlags,
}

impl LibvirtExecutor {
    /// An executor with the config's URI template and migration flags.
    pub fn new(cfg: &AgentConfig) -> LibvirtExecutor {
        LibvirtExecutor {
            template: cfg.uri_template.clone(),
            flags: cfg.migration.clone(),
        }
    }

    /// The URI of `h`.
    pub fn uri(&self, h: &HostAddr) -> String {
        self.template
            .replace("{host}", &h.name)
            .replace("{ip}", if h.ip.is_empty() { &h.name } else { &h.ip })
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
            bandwidth_mib_s: f.bandwidth_mib_s,
            max_downtime_ms: f.max_downtime_ms,
        }
    }

    /// The libvirt flag word for the configured flags.
    pub fn flag_bits(&self) -> u32 {
        self.options().flag_bits()
    }

    fn open(&self, h: &HostAddr) -> Result<LibvirtControl> {
        LibvirtControl::open(&self.uri(h)).map_err(|e| unreachable(h, e))
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
        match LibvirtControl::probe(&self.uri(host)) {
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
        let src = self.open(&req.from)?;
        let dest = self.uri(&req.to);
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
            ip: "10.78.0.1".into(),
        };
        assert_eq!(x.uri(&h), "qemu+tcp://10.78.0.1/system");
        assert_eq!(x.flag_bits(), 1 | 2 | 8 | 16);
        cfg.uri_template = "qemu+ssh://root@{host}/system".into();
        cfg.migration.tunnelled = true;
        cfg.migration.allow_unsafe = true;
        let x = LibvirtExecutor::new(&cfg);
        assert_eq!(x.uri(&h), "qemu+ssh://root@hv1/system");
        assert_eq!(x.flag_bits(), 1 | 2 | 4 | 8 | 16 | 512);
    }

    #[test]
    fn test_driver_locates_and_refuses_to_migrate() {
        // libvirt's built-in test driver: no daemon needed, cannot migrate (its error text
        // must come back to the caller).
        let cfg = AgentConfig {
            uri_template: "test:///default?{host}".into(),
            ..Default::default()
        };
        let x = LibvirtExecutor {
            template: "test:///default".into(),
            ..LibvirtExecutor::new(&cfg)
        };
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
        let bad = LibvirtExecutor {
            template: "qemu+tcp://127.0.0.1:1/system".into(),
            ..x
        };
        assert!(!bad.reachable(&h));
        assert!(matches!(
            bad.locate("test", &h),
            Err(AgentError::Unreachable { host, .. }) if host == "a"
        ));
    }

    #[test]
    fn gmond_metrics_errors_map_onto_agent_errors() {
        // The host NAME is the whole URI, so source and destination can differ.
        let cfg = AgentConfig {
            uri_template: "{host}".into(),
            ..Default::default()
        };
        let host = |uri: &str| HostAddr {
            name: uri.into(),
            ip: String::new(),
        };
        let refused = "qemu+tcp://127.0.0.1:1/system";
        let req = |vm: &str, to: &str| MigrationRequest {
            id: 7,
            vm: vm.into(),
            from: host("test:///default"),
            to: host(to),
            timeout: std::time::Duration::from_secs(5),
        };
        let x = LibvirtExecutor::new(&cfg);
        // Not on the source: refused before anything starts.
        let e = x.migrate(&req("nope", "test:///default")).unwrap_err();
        assert!(
            matches!(&e, AgentError::Refused { vm, message }
                if vm == "nope" && message == "not defined on test:///default"),
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
                ..req("test", "test:///default")
            })
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Unreachable { host, .. } if host == refused),
            "{e}"
        );
        // Abort: nothing to abort when the domain is gone; libvirt's refusal otherwise.
        x.abort(&req("nope", "test:///default")).unwrap();
        let e = x.abort(&req("test", "test:///default")).unwrap_err();
        assert!(
            matches!(&e, AgentError::Migration { message, .. } if message.starts_with("abort: ")),
            "{e}"
        );
    }
}
