//! The balancer's error enum.

/// Errors of the balancer library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BalancerError {
    /// A snapshot refers to something inconsistent (unknown host, duplicate name).
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
    /// A Ganglia XML document could not be read.
    #[error("xml feed: {0}")]
    Xml(#[from] ganglia_wire::Error),
    /// A policy or scenario configuration is invalid (TOML error or value out of range).
    #[error("invalid config: {0}")]
    Config(String),
    /// A scenario name or file could not be resolved.
    #[error("scenario: {0}")]
    Scenario(String),
    /// The simulated hypervisor refused an operation.
    #[error("hypervisor: {0}")]
    Hypervisor(#[from] gmond_metrics::Error),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// JSON encoding or decoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BalancerError {
    /// A [`BalancerError::Config`] with this message (range checks of config sections).
    pub fn config(message: impl Into<String>) -> Self {
        BalancerError::Config(message.into())
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, BalancerError>;
