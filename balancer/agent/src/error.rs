//! The agent's error enum.

/// Errors of the balancer agent library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent config file is invalid; `line`/`column` are 1-based (0 when unknown).
    #[error("{file}:{line}:{column}: {message}")]
    Config {
        /// File name (or `<text>` for in-memory text).
        file: String,
        /// Line, 1-based.
        line: usize,
        /// Column, 1-based.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A policy file or name was rejected by the balancer crate.
    #[error("policy: {0}")]
    Policy(String),
    /// The cluster view could not be read or parsed.
    #[error("view: {0}")]
    View(String),
    /// A host's hypervisor could not be reached (connect failed, daemon gone).
    #[error("host {host}: unreachable: {message}")]
    Unreachable {
        /// Ganglia host name.
        host: String,
        /// Backend text (libvirt's error message).
        message: String,
    },
    /// A migration was refused before it started (VM not on the source, job already running).
    #[error("migration of {vm} refused: {message}")]
    Refused {
        /// VM name.
        vm: String,
        /// Why.
        message: String,
    },
    /// A migration failed; the text is the hypervisor's own (libvirt's error).
    #[error("migration of {vm} failed: {message}")]
    Migration {
        /// VM name.
        vm: String,
        /// Backend text.
        message: String,
    },
    /// The migration was aborted (timeout, shutdown, lost lead).
    #[error("migration of {vm} aborted: {message}")]
    Aborted {
        /// VM name.
        vm: String,
        /// Why it was aborted.
        message: String,
    },
    /// The state file cannot be used (does not parse, another version or another host's).
    #[error("state file {path}: {message}")]
    State {
        /// File path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file (audit log, config) failed.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, AgentError>;
