//! Controlling domains through libvirt, for the balancer agent: probe a URI, tell where a domain
//! stands, live-migrate it, abort its job. A safe API over `virt`; the one unsafe call
//! (`virDomainAbortJob`) is in `ffi.rs`.
//!
//! Every call BLOCKS (a migration for as long as it runs). [`LibvirtControl::abort_job`] is
//! meant to be called on another connection, from another thread, while
//! [`LibvirtControl::migrate`] blocks: libvirt then fails the migration as aborted.
//!
//! Errors: connecting fails with [`Error::Connect`]; a domain that does not exist is
//! [`Presence::Absent`] or [`Error::UnknownDomain`]; a migration that another job prevented
//! from starting (libvirt's "operation invalid", or a timeout on the domain's state change
//! lock) is [`Error::MigrationRefused`], an aborted one [`Error::MigrationAborted`], any other
//! failure [`Error::MigrationFailed`], all with libvirt's own text.

use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use super::{ffi, is_code, is_no_domain, open_connection, release};
use crate::Error;

/// Where a domain stands on one host, as the balancer agent needs it before and after a
/// migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Defined and running, no job in progress.
    Running,
    /// Defined, and a job (a migration) is in progress.
    Busy,
    /// Defined but not running (paused, shut off, crashed).
    NotRunning,
    /// Not defined on this host.
    Absent,
}

/// How to live-migrate: the `VIR_MIGRATE_*` flags and the tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOptions {
    /// `VIR_MIGRATE_LIVE`: keep the guest running while its memory is copied.
    pub live: bool,
    /// `VIR_MIGRATE_PEER2PEER`: the source libvirtd talks to the destination
    /// (`virDomainMigrateToURI3`); otherwise this process connects to both
    /// (`virDomainMigrate3`).
    pub p2p: bool,
    /// `VIR_MIGRATE_TUNNELLED`: data through the libvirtd connection (needs `p2p`).
    pub tunnelled: bool,
    /// `VIR_MIGRATE_PERSIST_DEST`: define the domain on the destination.
    pub persist_dest: bool,
    /// `VIR_MIGRATE_UNDEFINE_SOURCE`: undefine it on the source once migrated.
    pub undefine_source: bool,
    /// `VIR_MIGRATE_UNSAFE`: migrate even without shared-storage cache guarantees.
    pub allow_unsafe: bool,
    /// `VIR_MIGRATE_TLS`: QEMU's migration stream over TLS with libvirt's certificates (the
    /// migration fails rather than fall back to plain text).
    pub tls: bool,
    /// Bandwidth limit, MiB/s; 0 = libvirt's default (unlimited).
    pub bandwidth_mib_s: u64,
    /// Maximum downtime, ms; 0 = libvirt's default.
    pub max_downtime_ms: u64,
}

impl MigrateOptions {
    /// The libvirt flag word.
    pub fn flag_bits(&self) -> u32 {
        [
            (self.live, sys::VIR_MIGRATE_LIVE),
            (self.p2p, sys::VIR_MIGRATE_PEER2PEER),
            (self.tunnelled, sys::VIR_MIGRATE_TUNNELLED),
            (self.persist_dest, sys::VIR_MIGRATE_PERSIST_DEST),
            (self.undefine_source, sys::VIR_MIGRATE_UNDEFINE_SOURCE),
            (self.allow_unsafe, sys::VIR_MIGRATE_UNSAFE),
            (self.tls, sys::VIR_MIGRATE_TLS),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// One read-write connection to a host's libvirt, for control. Opened per operation by the
/// agent, so a daemon restart between operations costs nothing.
pub struct LibvirtControl {
    conn: Option<Connect>,
    uri: String,
}

impl std::fmt::Debug for LibvirtControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtControl")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Drop for LibvirtControl {
    fn drop(&mut self) {
        release(self.conn.take());
    }
}

impl LibvirtControl {
    /// Opens a read-write connection to `uri`.
    pub fn open(uri: &str) -> Result<Self, Error> {
        Ok(LibvirtControl {
            conn: Some(open_connection(uri, false)?),
            uri: uri.to_owned(),
        })
    }

    /// Whether `uri` accepts a read-write connection (opened and closed at once): the
    /// agent's membership test.
    pub fn probe(uri: &str) -> Result<(), Error> {
        Self::open(uri).map(release)
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Where `vm` stands on this host. Drivers without job information (libvirt's test
    /// driver) report no job.
    pub fn presence(&self, vm: &str) -> Result<Presence, Error> {
        let found = self.with_domain(vm, |dom| {
            let info = dom.info().map_err(|e| backend(vm, "info", e))?;
            let job = dom
                .job_info()
                .is_ok_and(|j| j.r#type != sys::VIR_DOMAIN_JOB_NONE as i32);
            Ok(if job {
                Presence::Busy
            } else if info.state.to_raw() == sys::VIR_DOMAIN_RUNNING {
                Presence::Running
            } else {
                Presence::NotRunning
            })
        })?;
        Ok(found.unwrap_or(Presence::Absent))
    }

    /// Live-migrates `vm` from this host to `dest_uri`, blocking until it completed or
    /// failed. With `p2p` the source libvirtd connects to `dest_uri`; otherwise this
    /// process does, and a failure to connect is [`Error::Connect`] for `dest_uri`. A
    /// maximum downtime that libvirt refuses is logged and the migration runs without it.
    pub fn migrate(&self, vm: &str, dest_uri: &str, opts: &MigrateOptions) -> Result<(), Error> {
        self.with_domain(vm, |dom| self.migrate_domain(vm, dom, dest_uri, opts))?
            .ok_or_else(|| Error::UnknownDomain(vm.to_owned()))
    }

    /// Aborts the current job of `vm` (`virDomainAbortJob`); [`Error::UnknownDomain`] when
    /// the domain is not on this host, [`Error::AbortFailed`] when libvirt refuses (no job,
    /// or the driver cannot abort).
    pub fn abort_job(&self, vm: &str) -> Result<(), Error> {
        self.with_domain(vm, |dom| {
            ffi::abort_job(dom).map_err(|e| Error::AbortFailed {
                domain: vm.to_owned(),
                why: e.to_string(),
            })
        })?
        .ok_or_else(|| Error::UnknownDomain(vm.to_owned()))
    }

    fn conn(&self) -> Result<&Connect, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::HostDown(self.uri.clone()))
    }

    /// Looks `vm` up and runs `f` on it, releasing the domain however `f` ends; `None` when
    /// no such domain is defined.
    fn with_domain<T>(
        &self,
        vm: &str,
        f: impl FnOnce(&Domain) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let dom = match self.conn()?.lookup_domain_by_name(vm) {
            Ok(d) => d,
            Err(e) if is_no_domain(&e) => return Ok(None),
            Err(e) => return Err(backend(vm, "lookup", e)),
        };
        let out = f(&dom);
        release(dom);
        out.map(Some)
    }

    fn migrate_domain(
        &self,
        vm: &str,
        dom: &Domain,
        dest_uri: &str,
        opts: &MigrateOptions,
    ) -> Result<(), Error> {
        if opts.max_downtime_ms > 0 {
            if let Err(e) = dom.migrate_set_max_downtime(opts.max_downtime_ms, 0) {
                tracing::warn!(target: "gmond_metrics::libvirt", vm, error = %e,
                    "max downtime not set");
            }
        }
        let params = MigrateParameters {
            bandwidth: (opts.bandwidth_mib_s > 0).then_some(opts.bandwidth_mib_s),
            ..Default::default()
        };
        let bits = opts.flag_bits();
        tracing::debug!(target: "gmond_metrics::libvirt", vm, from = %self.uri, to = dest_uri,
            flags = bits, "migrating");
        if opts.p2p {
            return dom
                .migrate_to_uri3(Some(dest_uri), params, bits)
                .map_err(|e| migration_error(vm, &e));
        }
        // Dropped (through its own release) when this returns.
        let dest = LibvirtControl::open(dest_uri)?;
        match dom.migrate3(dest.conn()?, params, bits) {
            Ok(moved) => {
                release(moved);
                Ok(())
            }
            Err(e) => Err(migration_error(vm, &e)),
        }
    }
}

fn backend(vm: &str, what: &str, e: VirtError) -> Error {
    Error::Backend(format!("{what} {vm}: {e}"))
}

/// How a failed migration call is reported (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MigrationFailure {
    Refused,
    Aborted,
    Failed,
}

/// Another job holding the domain (a concurrent migration by another agent) means nothing
/// was started, so nothing must be verified or counted against the destination.
fn classify(is: impl Fn(ErrorNumber) -> bool, message: &str) -> MigrationFailure {
    if is(ErrorNumber::OperationInvalid)
        || (is(ErrorNumber::OperationTimeout) && message.contains("state change lock"))
    {
        MigrationFailure::Refused
    } else if is(ErrorNumber::OperationAborted) {
        MigrationFailure::Aborted
    } else {
        MigrationFailure::Failed
    }
}

fn migration_error(vm: &str, e: &VirtError) -> Error {
    let domain = vm.to_owned();
    let why = e.to_string();
    match classify(|c| is_code(e, c), e.message()) {
        MigrationFailure::Refused => Error::MigrationRefused { domain, why },
        MigrationFailure::Aborted => Error::MigrationAborted { domain, why },
        MigrationFailure::Failed => Error::MigrationFailed { domain, why },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_word() {
        let mut o = MigrateOptions {
            live: true,
            p2p: true,
            tunnelled: false,
            persist_dest: true,
            undefine_source: true,
            allow_unsafe: false,
            tls: false,
            bandwidth_mib_s: 0,
            max_downtime_ms: 0,
        };
        assert_eq!(o.flag_bits(), 1 | 2 | 8 | 16);
        o.tunnelled = true;
        o.allow_unsafe = true;
        assert_eq!(o.flag_bits(), 1 | 2 | 4 | 8 | 16 | 512);
        o.tls = true;
        assert_eq!(o.flag_bits(), 1 | 2 | 4 | 8 | 16 | 512 | 65536);
        o.tls = false;
        o = MigrateOptions {
            live: false,
            p2p: false,
            tunnelled: false,
            persist_dest: false,
            undefine_source: false,
            allow_unsafe: false,
            ..o
        };
        assert_eq!(o.flag_bits(), 0);
    }

    #[test]
    fn failures_classified_by_code_and_text() {
        let code = |want: ErrorNumber| move |c: ErrorNumber| c == want;
        use MigrationFailure::*;
        assert_eq!(
            classify(code(ErrorNumber::OperationInvalid), "domain is not running"),
            Refused
        );
        assert_eq!(
            classify(
                code(ErrorNumber::OperationTimeout),
                "Timed out during operation: cannot acquire state change lock (held by \
                 monitor=remoteDispatchDomainMigratePerform3Params)"
            ),
            Refused
        );
        // Any other timeout is a failed migration: it may have started.
        assert_eq!(
            classify(code(ErrorNumber::OperationTimeout), "migration timed out"),
            Failed
        );
        assert_eq!(
            classify(
                code(ErrorNumber::OperationAborted),
                "migration job: canceled by client"
            ),
            Aborted
        );
        assert_eq!(
            classify(
                code(ErrorNumber::NoSupport),
                "this function is not supported"
            ),
            Failed
        );
        assert_eq!(classify(|_| false, "unknown code"), Failed);
    }
}
