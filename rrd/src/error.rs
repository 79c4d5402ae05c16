//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong reading, creating or updating an RRD.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O failure, with the file it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes do not start with the `RRD\0` cookie.
    #[error("not an RRD file (bad cookie)")]
    NotRrd,
    /// The file is an RRD of a format version other than "0003".
    #[error("unsupported RRD format version {0:?} (only \"0003\" is supported)")]
    UnsupportedVersion(String),
    /// The float cookie is byte-swapped: the file was written on a machine of the other byte order.
    #[error("RRD was created on a machine with the other byte order")]
    ForeignByteOrder,
    /// The float cookie is not where the x86_64 layout puts it (e.g. a 32-bit layout).
    #[error("RRD was created on another architecture (float cookie mismatch)")]
    ForeignArchitecture,
    /// The file is shorter than its header says it must be.
    #[error("RRD is truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the header requires.
        needed: u64,
        /// Bytes actually present.
        got: u64,
    },
    /// A header field holds a value that no valid RRD has.
    #[error("corrupt RRD header: {0}")]
    Corrupt(String),
    /// The file uses a feature this crate does not implement (e.g. COMPUTE or HWPREDICT).
    #[error("unsupported RRD feature: {0}")]
    Unsupported(String),
    /// A DS or RRA definition, or another create argument, is malformed.
    #[error("invalid definition: {0}")]
    InvalidDefinition(String),
    /// An update string or value is malformed.
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    /// The update's time is not after the last update (rrdtool's "minimum one second step").
    #[error(
        "illegal attempt to update using time {time} when last update time is {last} (minimum one second step)"
    )]
    NotAfterLastUpdate {
        /// Seconds part of the rejected update time.
        time: i64,
        /// Seconds part of the RRD's last update.
        last: i64,
    },
    /// A fetch asked for a consolidation function no RRA provides.
    #[error("the RRD does not contain an RRA matching the chosen CF")]
    NoMatchingRra,
    /// A fetch or CLI argument is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another process (rrdtool, or another writer using this crate) holds the file's lock.
    #[error("{0}: could not lock RRD (another process is updating it)")]
    Locked(PathBuf),
    /// A file to be created already exists.
    #[error("{0}: file exists")]
    Exists(PathBuf),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
