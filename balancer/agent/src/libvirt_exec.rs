//! [`Executor`] over libvirt (the `virt` crate): live migration with `virDomainMigrateToURI3`
//! (p2p) or `virDomainMigrate3` (client-managed), abort with `virDomainAbortJob`, one
//! connection per call to each host's URI from the template (`{host}`, `{ip}`).
//!
//! Every call blocks. `virt` 0.5's `Drop` for `Connect` and `Domain` panics when libvirt fails
//! to free the object (a daemon that went away); objects are released through
//! `release`, which contains that panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use crate::config::{AgentConfig, MigrationFlags};
use crate::error::{AgentError, Result};
use crate::executor::{Executor, HostAddr, MigrationRequest, Presence};

/// The libvirt executor.
#[derive(Debug, Clone)]
pub struct LibvirtExecutor {
    template: String,
    flags: MigrationFlags,
}

/// Drops a libvirt object where `virt`'s Drop would panic if the C free failed.
fn release<T>(v: T) {
    if catch_unwind(AssertUnwindSafe(move || drop(v))).is_err() {
        tracing::warn!("libvirt refused to free an object");
    }
}

fn is_code(e: &VirtError, code: ErrorNumber) -> bool {
    e.code().is_known_and(|c| c == code)
}

impl LibvirtExecutor {
    /// An executor with the config's URI template and migration flags.
    pub fn new(cfg: &AgentConfig) -> LibvirtExecutor {
        // Otherwise libvirt prints every error, expected ones included, to stderr.
        virt::error::clear_error_callback();
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

    /// The libvirt flag word for the configured flags.
    pub fn flag_bits(&self) -> u32 {
        let f = &self.flags;
        let mut bits = 0;
        for (on, bit) in [
            (f.live, sys::VIR_MIGRATE_LIVE),
            (f.p2p, sys::VIR_MIGRATE_PEER2PEER),
            (f.tunnelled, sys::VIR_MIGRATE_TUNNELLED),
            (f.persistent, sys::VIR_MIGRATE_PERSIST_DEST),
            (f.undefine_source, sys::VIR_MIGRATE_UNDEFINE_SOURCE),
            (f.allow_unsafe, sys::VIR_MIGRATE_UNSAFE),
        ] {
            if on {
                bits |= bit;
            }
        }
        bits
    }

    fn connect(&self, h: &HostAddr) -> Result<Connect> {
        let uri = self.uri(h);
        Connect::open(Some(&uri)).map_err(|e| AgentError::Unreachable {
            host: h.name.clone(),
            message: format!("{uri}: {e}"),
        })
    }

    fn domain(&self, conn: &Connect, vm: &str, host: &HostAddr) -> Result<Option<Domain>> {
        match conn.lookup_domain_by_name(vm) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_code(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(AgentError::Unreachable {
                host: host.name.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn presence(dom: &Domain, host: &HostAddr) -> Result<Presence> {
        let info = dom.info().map_err(|e| AgentError::Unreachable {
            host: host.name.clone(),
            message: e.to_string(),
        })?;
        // Drivers without job info (the test driver) have no jobs to report.
        let job = dom
            .job_info()
            .map(|j| j.r#type != sys::VIR_DOMAIN_JOB_NONE as i32)
            .unwrap_or(false);
        if job {
            return Ok(Presence::Busy);
        }
        Ok(if info.state.is(virt::domain::DomainState::Running) {
            Presence::Running
        } else {
            Presence::NotRunning
        })
    }

    fn run_migration(&self, req: &MigrationRequest, dom: &Domain) -> Result<()> {
        let fail = |e: VirtError| {
            // Another job holds the domain (a concurrent migration by another agent): nothing
            // was started, so nothing must be verified or counted against the destination.
            if is_code(&e, ErrorNumber::OperationInvalid)
                || (is_code(&e, ErrorNumber::OperationTimeout)
                    && e.message().contains("state change lock"))
            {
                AgentError::Refused {
                    vm: req.vm.clone(),
                    message: e.to_string(),
                }
            } else if is_code(&e, ErrorNumber::OperationAborted) {
                AgentError::Aborted {
                    vm: req.vm.clone(),
                    message: e.to_string(),
                }
            } else {
                AgentError::Migration {
                    vm: req.vm.clone(),
                    message: e.to_string(),
                }
            }
        };
        let params = MigrateParameters {
            bandwidth: (self.flags.bandwidth_mib_s > 0).then_some(self.flags.bandwidth_mib_s),
            ..Default::default()
        };
        let bits = self.flag_bits();
        let dest = self.uri(&req.to);
        tracing::info!(vm = %req.vm, from = %self.uri(&req.from), to = %dest, flags = bits, "libvirt migration");
        if self.flags.p2p {
            dom.migrate_to_uri3(Some(&dest), params, bits).map_err(fail)
        } else {
            let dconn = self.connect(&req.to)?;
            let r = dom.migrate3(&dconn, params, bits);
            let out = match r {
                Ok(d) => {
                    release(d);
                    Ok(())
                }
                Err(e) => Err(fail(e)),
            };
            release(dconn);
            out
        }
    }
}

impl Executor for LibvirtExecutor {
    fn name(&self) -> &str {
        "libvirt"
    }

    fn reachable(&self, host: &HostAddr) -> bool {
        match self.connect(host) {
            Ok(c) => {
                release(c);
                true
            }
            Err(e) => {
                tracing::debug!(host = %host.name, error = %e, "membership probe failed");
                false
            }
        }
    }

    fn locate(&self, vm: &str, host: &HostAddr) -> Result<Presence> {
        let conn = self.connect(host)?;
        let out = match self.domain(&conn, vm, host) {
            Ok(Some(d)) => {
                let p = LibvirtExecutor::presence(&d, host);
                release(d);
                p
            }
            Ok(None) => Ok(Presence::Absent),
            Err(e) => Err(e),
        };
        release(conn);
        out
    }

    fn migrate(&self, req: &MigrationRequest) -> Result<()> {
        let conn = self.connect(&req.from)?;
        let dom = match self.domain(&conn, &req.vm, &req.from) {
            Ok(Some(d)) => d,
            Ok(None) => {
                release(conn);
                return Err(AgentError::Refused {
                    vm: req.vm.clone(),
                    message: format!("not defined on {}", req.from.name),
                });
            }
            Err(e) => {
                release(conn);
                return Err(e);
            }
        };
        if self.flags.max_downtime_ms > 0 {
            if let Err(e) = dom.migrate_set_max_downtime(self.flags.max_downtime_ms, 0) {
                tracing::warn!(vm = %req.vm, error = %e, "max downtime not set");
            }
        }
        let out = self.run_migration(req, &dom);
        release(dom);
        release(conn);
        out
    }

    fn abort(&self, req: &MigrationRequest) -> Result<()> {
        let conn = self.connect(&req.from)?;
        let out = match self.domain(&conn, &req.vm, &req.from) {
            Ok(Some(d)) => {
                let r = abort_job(&d).map_err(|e| AgentError::Migration {
                    vm: req.vm.clone(),
                    message: format!("abort: {e}"),
                });
                release(d);
                r
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        release(conn);
        out
    }
}

/// `virDomainAbortJob`, which `virt` 0.5 does not wrap.
#[allow(unsafe_code)]
fn abort_job(dom: &Domain) -> std::result::Result<(), VirtError> {
    // SAFETY: `dom` owns a live reference to the domain for the whole call (it is borrowed, so
    // it cannot be dropped meanwhile); virDomainAbortJob only reads the pointer and is
    // thread-safe in libvirt, which is why it may run while migrate blocks on another thread.
    let rc = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if rc < 0 {
        Err(VirtError::last_error())
    } else {
        Ok(())
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
    }
}
