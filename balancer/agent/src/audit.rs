//! The audit log: one JSON object per line, appended, never rewritten. Every decision (a plan's
//! move, recommended or started), every outcome, every observed gain, every change of leader and
//! every policy reload gets a record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use balancer::plan::{Prediction, Reason};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Kinds of audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A planned move in recommend mode: nothing was done.
    Recommend,
    /// A planned move that the agent refused to start (`outcome` says why).
    Skipped,
    /// A migration was started.
    Start,
    /// A migration finished and was verified (running on the destination, gone from the source).
    Done,
    /// A migration failed; the VM stays on its source (`error` has the hypervisor's text).
    Failed,
    /// A migration was aborted (timeout, lost lead, stop).
    Aborted,
    /// The outcome could not be established (hypervisor unreachable afterwards).
    Unknown,
    /// Gain measured `observe_after_s` after a finished migration.
    Observed,
    /// This host became leader, or stopped being leader.
    Leader,
    /// The leader lost sight of a strict majority of the inventory (`outcome` = `lost`, it
    /// recommends only; `error` says how many hosts it sees) or regained it (`regained`).
    Quorum,
    /// A new policy was loaded.
    Reload,
    /// A new policy was rejected; the old one is kept.
    ReloadRejected,
}

/// Loads measured from the view after a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Source CPU utilisation when planned.
    pub src_before: f64,
    /// Source CPU utilisation now.
    pub src_after: f64,
    /// Destination CPU utilisation when planned.
    pub dst_before: f64,
    /// Destination CPU utilisation now.
    pub dst_after: f64,
    /// Cluster imbalance (stddev of host CPU utilisation) when planned.
    pub imbalance_before: f64,
    /// Cluster imbalance now.
    pub imbalance_after: f64,
    /// Observed gain: `imbalance_before - imbalance_after`.
    pub gain: f64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Epoch seconds (view time) of the record.
    pub time: u64,
    /// Host whose agent wrote it.
    pub host: String,
    /// What happened.
    pub event: Event,
    /// Agent mode at the time.
    pub mode: String,
    /// Policy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Migration id (unique per agent run), linking start, outcome and observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Source host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Destination host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The policy's reason for the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The policy's prediction, including its gain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Prediction>,
    /// Short outcome or refusal text (`verified`, `budget`, `cooldown`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Hypervisor or parser error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Measured effect (event `observed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// Seconds the migration took (outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
}

impl Record {
    /// A record with only the common fields set.
    pub fn new(time: u64, host: &str, event: Event, mode: &str) -> Record {
        Record {
            time,
            host: host.to_string(),
            event,
            mode: mode.to_string(),
            policy: None,
            id: None,
            vm: None,
            from: None,
            to: None,
            reason: None,
            predicted: None,
            outcome: None,
            error: None,
            observed: None,
            seconds: None,
        }
    }
}

/// Where audit records go: a file (appended), memory (tests, the demo), or both.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
    memory: Option<Arc<Mutex<Vec<Record>>>>,
}

impl AuditLog {
    /// A log that only traces records (no file).
    pub fn none() -> AuditLog {
        AuditLog::default()
    }

    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> Result<AuditLog> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditLog::io(path, source))?;
        Ok(AuditLog {
            file: Some((path.to_path_buf(), Arc::new(Mutex::new(f)))),
            memory: None,
        })
    }

    /// Also keeps every record in memory; returns the shared list.
    pub fn with_memory(mut self) -> (AuditLog, Arc<Mutex<Vec<Record>>>) {
        let mem = Arc::new(Mutex::new(Vec::new()));
        self.memory = Some(mem.clone());
        (self, mem)
    }

    fn io(path: &Path, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Appends a record: one line written with a single `write_all`, so concurrent writers
    /// (O_APPEND) never interleave within a line.
    pub fn write(&self, rec: &Record) -> Result<()> {
        tracing::info!(
            target: "balancer_agent::audit",
            event = ?rec.event,
            vm = rec.vm.as_deref().unwrap_or(""),
            from = rec.from.as_deref().unwrap_or(""),
            to = rec.to.as_deref().unwrap_or(""),
            outcome = rec.outcome.as_deref().unwrap_or(""),
            error = rec.error.as_deref().unwrap_or(""),
            "audit"
        );
        if let Some(mem) = &self.memory {
            mem.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(rec.clone());
        }
        if let Some((path, f)) = &self.file {
            let mut line = serde_json::to_vec(rec)
                .map_err(|e| AuditLog::io(path, std::io::Error::other(e.to_string())))?;
            line.push(b'\n');
            let mut f = f.lock().unwrap_or_else(PoisonError::into_inner);
            f.write_all(&line).map_err(|e| AuditLog::io(path, e))?;
            f.flush().map_err(|e| AuditLog::io(path, e))?;
        }
        Ok(())
    }
}

/// Reads an audit log back (tests, tools); malformed lines are errors with their line number.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| AuditLog::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| AgentError::Config {
                file: path.display().to_string(),
                line: i + 1,
                column: e.column(),
                message: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let mut r = Record::new(10, "h1", Event::Start, "auto");
        r.vm = Some("web".into());
        r.reason = Some(Reason::Pinning);
        log.write(&r).unwrap();
        // Reopening appends, it never truncates.
        let log2 = AuditLog::open(&path).unwrap();
        log2.write(&Record::new(11, "h1", Event::Done, "auto"))
            .unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], r);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"time":10,"host":"h1","event":"start","mode":"auto","vm":"web","reason":{"kind":"pinning"}}"#), "{text}");
        std::fs::write(&path, "{\"time\":1}\nnot json\n").unwrap();
        assert!(read(&path).is_err());
    }
}
