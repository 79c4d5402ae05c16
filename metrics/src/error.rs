//! The crate's one error enum: Linux collection, the hypervisor layer (simulated and libvirt)
//! and libvirt control (presence, live migration, job abort).

use std::path::PathBuf;

/// Everything that can go wrong in `gmond-metrics`.
///
/// Missing optional fields are not errors: like gmond, a `/proc/meminfo` key that the kernel
/// no longer provides (`MemShared`) reads as 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not in the Linux [`catalogue()`](crate::linux::catalogue).
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    /// A file under the collector's root could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file under the collector's root was read but does not have the expected shape.
    #[error("unexpected contents in {path}: {detail}")]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// Text handed to one of the pure parsers (`linux::procfs`, PlanetLab traces) does not
    /// have the expected shape; the caller knows which file it came from.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What the text was meant to be (`/proc/stat`, `CPU list`, ...).
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The named host is not known to this hypervisor connection.
    #[error("unknown host {0:?}")]
    UnknownHost(String),
    /// The named domain does not exist.
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// The host is down or unreachable (reconnect backoff in progress).
    #[error("host {0:?} is down")]
    HostDown(String),
    /// Opening a libvirt connection failed.
    #[error("connect {uri}: {message}")]
    Connect {
        /// The URI that was opened.
        uri: String,
        /// libvirt's error text.
        message: String,
    },
    /// A migration was refused before it started: the domain is already migrating or another
    /// job holds it, or source equals destination.
    #[error("migration of {domain:?} refused: {why}")]
    MigrationRefused {
        /// Domain name.
        domain: String,
        /// Human-readable cause.
        why: String,
    },
    /// A migration was aborted (`virDomainAbortJob` from another thread, or the hypervisor).
    #[error("migration of {domain:?} aborted: {why}")]
    MigrationAborted {
        /// Domain name.
        domain: String,
        /// The hypervisor's text.
        why: String,
    },
    /// A migration failed for any other reason; the text is the hypervisor's own.
    #[error("migration of {domain:?} failed: {why}")]
    MigrationFailed {
        /// Domain name.
        domain: String,
        /// The hypervisor's text.
        why: String,
    },
    /// Aborting a domain's job failed.
    #[error("abort of the job of {domain:?} failed: {why}")]
    AbortFailed {
        /// Domain name.
        domain: String,
        /// The hypervisor's text.
        why: String,
    },
    /// The destination lacks memory for the domain.
    #[error("host {host:?} lacks memory for {domain:?}")]
    InsufficientMemory {
        /// Destination host.
        host: String,
        /// Domain name.
        domain: String,
    },
    /// A trace file could not be read or parsed.
    #[error("trace {path}: {why}")]
    Trace {
        /// File path.
        path: String,
        /// Cause.
        why: String,
    },
    /// Time went backwards (the simulation only moves forward).
    #[error("time went backwards: now {now_ms} ms < {last_ms} ms")]
    TimeBackwards {
        /// The time passed in.
        now_ms: u64,
        /// The last time seen.
        last_ms: u64,
    },
    /// The backend failed (libvirt error text on an open connection).
    #[error("backend: {0}")]
    Backend(String),
}

impl Error {
    /// What a [`Error::Malformed`] says was wrong, or the whole message of any other variant:
    /// the detail a caller puts under its own file name.
    pub fn detail(self) -> String {
        match self {
            Error::Malformed { detail, .. } => detail,
            other => other.to_string(),
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
