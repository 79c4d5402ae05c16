//! Why collecting a Linux metric failed.

use std::path::PathBuf;

/// Failure to collect one metric.
///
/// Missing optional fields are not errors: like gmond, a `/proc/meminfo` key that the kernel
/// no longer provides (`MemShared`) reads as 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is not in [`catalogue()`](super::catalogue).
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
    /// A file was read but its contents do not have the expected shape.
    #[error("unexpected contents in {path}: {detail}")]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
}
