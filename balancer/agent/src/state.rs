//! The agent's state file: what must survive a crash or a restart (budget use, cooldowns,
//! destination exclusions, the moves it advertises, and migrations in flight), written
//! atomically (temp file, fsync, rename, fsync of the directory) so a reader finds the old
//! file or the new one, never a mix.
//!
//! At start the agent reconciles the in-flight migrations found here with the hypervisor
//! ([`crate::core::AgentCore::restore`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use balancer::plan::Move;
use balancer::planner::MigrationRecord;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::executor::HostAddr;

/// Format version written; a file of another version is refused (not guessed at).
pub const VERSION: u32 = 1;

/// Largest state file read, bytes: the budget, cooldowns and exclusions of one agent are a
/// few kilobytes; anything far larger is not ours.
pub const MAX_BYTES: u64 = 16 << 20;

/// One migration in flight when the state was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedMigration {
    /// Migration id (audit records link by it).
    pub id: u64,
    /// The planned move (for the outcome's audit record).
    pub mv: Move,
    /// Source host.
    pub from: HostAddr,
    /// Destination host.
    pub to: HostAddr,
    /// When it was handed out (its timeout counts from here).
    pub started: u64,
    /// When it passed the pre-check and used budget; `None`: still in its pre-check.
    pub booked: Option<u64>,
    /// Why an abort was decided, if one was.
    pub abort_why: Option<String>,
    /// Cluster imbalance when planned (for the observed gain).
    pub imbalance_before: f64,
}

/// Everything the agent persists. Times are the agent's epoch seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// [`VERSION`].
    pub version: u32,
    /// The host whose agent wrote it (a file copied from another host is refused).
    pub host: String,
    /// The next migration id: ids stay unique across restarts.
    pub next_id: u64,
    /// Migrations counted against the budget: (start, VM), own and advertised by others.
    pub budget_starts: Vec<(u64, String)>,
    /// Moves this agent started and advertises.
    pub own_moves: Vec<MigrationRecord>,
    /// VM -> end of its failure cooldown.
    pub vm_cooldown: BTreeMap<String, u64>,
    /// Destination -> recent failure times.
    pub dest_failures: BTreeMap<String, Vec<u64>>,
    /// Destination -> end of its exclusion.
    pub dest_excluded: BTreeMap<String, u64>,
    /// Migrations in flight.
    pub inflight: Vec<PersistedMigration>,
}

impl PersistedState {
    /// An empty state for `host`.
    pub fn empty(host: &str) -> PersistedState {
        PersistedState {
            version: VERSION,
            host: host.to_string(),
            next_id: 1,
            budget_starts: Vec::new(),
            own_moves: Vec::new(),
            vm_cooldown: BTreeMap::new(),
            dest_failures: BTreeMap::new(),
            dest_excluded: BTreeMap::new(),
            inflight: Vec::new(),
        }
    }
}

fn err(path: &Path, message: String) -> AgentError {
    AgentError::State {
        path: path.display().to_string(),
        message,
    }
}

fn io(path: &Path, e: std::io::Error) -> AgentError {
    AgentError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// The temp file beside `path` that [`save`] writes first.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `state` to `path` atomically: a crash at any point leaves the previous file or the
/// new one whole.
pub fn save(path: &Path, state: &PersistedState) -> Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(|e| err(path, e.to_string()))?;
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&text).map_err(|e| io(&tmp, e))?;
        f.write_all(b"\n").map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    // The rename itself is durable only once the directory is.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// Reads the state file of `host` (`None`: any host, for an agent whose name is only a
/// guess); `Ok(None)` when there is none. A file that does not parse, is of another version
/// or another host is an error: starting without it could spend a budget twice or leave a
/// migration unreconciled, so the operator decides.
pub fn load(path: &Path, host: Option<&str>) -> Result<Option<PersistedState>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    if meta.len() > MAX_BYTES {
        return Err(err(
            path,
            format!("{} bytes, more than {MAX_BYTES}", meta.len()),
        ));
    }
    let text = std::fs::read(path).map_err(|e| io(path, e))?;
    let state: PersistedState = serde_json::from_slice(&text).map_err(|e| {
        err(
            path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    if state.version != VERSION {
        return Err(err(
            path,
            format!("version {} (this agent reads {VERSION})", state.version),
        ));
    }
    if let Some(host) = host.filter(|h| *h != state.host) {
        return Err(err(
            path,
            format!("written by host {:?}, this agent is {host:?}", state.host),
        ));
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_loads_back_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        assert!(load(&path, Some("h1")).unwrap().is_none());
        let mut s = PersistedState::empty("h1");
        s.next_id = 7;
        s.budget_starts.push((100, "web".into()));
        s.vm_cooldown.insert("db".into(), 200);
        save(&path, &s).unwrap();
        s.next_id = 8;
        save(&path, &s).unwrap();
        assert_eq!(load(&path, Some("h1")).unwrap(), Some(s));
        assert!(!temp_path(&path).exists());
        // Another host's file, another version, or garbage: refused with the reason.
        let e = load(&path, Some("h2")).unwrap_err().to_string();
        assert!(e.contains("written by host \"h1\""), "{e}");
        std::fs::write(&path, "{\"version\":1,").unwrap();
        let e = load(&path, Some("h1")).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let mut v2 = PersistedState::empty("h1");
        v2.version = 2;
        std::fs::write(&path, serde_json::to_vec(&v2).unwrap()).unwrap();
        assert!(load(&path, Some("h1"))
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }

    #[test]
    fn a_crash_before_the_rename_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        let s = PersistedState::empty("h1");
        save(&path, &s).unwrap();
        // A crash mid-write leaves a torn temp file; the state file is untouched.
        std::fs::write(temp_path(&path), "{\"version\":1,\"ho").unwrap();
        assert_eq!(load(&path, Some("h1")).unwrap(), Some(s.clone()));
        // The next save replaces the torn temp file.
        save(&path, &s).unwrap();
        assert!(!temp_path(&path).exists());
    }
}
