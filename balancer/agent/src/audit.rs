//! The audit log: one JSON object per line, appended, never rewritten. Every decision (a plan's
//! move, recommended or started), every outcome, every observed gain, every change of leader and
//! every policy reload gets a record.
//!
//! Each line is synced to disk before the next action runs, so a crash loses at most the line
//! being written: a torn line (a prefix of a record) is ended at the next open and skipped by
//! the reader, while any other malformed line is still an error.

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
    /// The second half of a swap, held until its first half (`outcome`: `after VM`) ends; it
    /// is planned again then, and started or skipped like any move.
    Queued,
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
    /// A trusted NAME is reported from several addresses (`outcome` = `excluded`: neither
    /// source nor destination; `error` names it and the addresses), or no longer is
    /// (`resolved`).
    NameConflict,
    /// A VM or host left out of the view because a figure was outside
    /// `balancer::view::bounds` (`error` names it and the figure): only it is skipped, never
    /// the whole view. Written when it first appears.
    Implausible,
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

    /// Opens `path` for appending (created if missing). A last line torn by a crash is ended
    /// with a newline first, so the next record starts a line of its own.
    pub fn open(path: &Path) -> Result<AuditLog> {
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditLog::io(path, source))?;
        if ends_torn(&mut f).map_err(|e| AuditLog::io(path, e))? {
            tracing::warn!(path = %path.display(), "audit log ends in a torn line (a crash mid-write): ended");
            f.write_all(b"\n").map_err(|e| AuditLog::io(path, e))?;
            f.sync_data().map_err(|e| AuditLog::io(path, e))?;
        }
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
    /// (O_APPEND) never interleave within a line, then synced: when this returns, the record
    /// survives a crash.
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
            f.sync_data().map_err(|e| AuditLog::io(path, e))?;
        }
        Ok(())
    }
}

/// Whether a non-empty file does not end with a newline.
fn ends_torn(f: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Reads an audit log back (tests, tools). Torn lines (a record cut short by a crash: the
/// JSON ends early) are skipped; any other malformed line is an error with its line number.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    read_counting_torn(path).map(|(records, _)| records)
}

/// [`read`], also counting the torn lines skipped.
pub fn read_counting_torn(path: &Path) -> Result<(Vec<Record>, usize)> {
    let bytes = std::fs::read(path).map_err(|e| AuditLog::io(path, e))?;
    // A crash can cut a multi-byte character too: bytes, not text, are the truth here.
    let text = String::from_utf8_lossy(&bytes);
    let mut records = Vec::new();
    let mut torn = 0;
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(l) {
            Ok(r) => records.push(r),
            Err(e) if e.is_eof() && l.trim_start().starts_with('{') => {
                tracing::warn!(path = %path.display(), line = i + 1, "torn audit line skipped");
                torn += 1;
            }
            Err(e) => {
                return Err(AgentError::Config {
                    file: path.display().to_string(),
                    line: i + 1,
                    column: e.column(),
                    message: e.to_string(),
                })
            }
        }
    }
    Ok((records, torn))
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

    #[test]
    fn a_torn_last_line_is_skipped_and_ended_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let r = Record::new(10, "h1", Event::Start, "auto");
        log.write(&r).unwrap();
        drop(log);
        // A crash mid-write: half of the next record reached the disk.
        let line = serde_json::to_string(&Record::new(11, "h1", Event::Done, "auto")).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        drop(f);
        assert_eq!(read_counting_torn(&path).unwrap(), (vec![r.clone()], 1));
        // The restarted agent appends after it: the torn line stays torn (the log is never
        // rewritten) and every record around it reads back.
        let log = AuditLog::open(&path).unwrap();
        let r2 = Record::new(12, "h1", Event::Aborted, "auto");
        log.write(&r2).unwrap();
        assert_eq!(read_counting_torn(&path).unwrap(), (vec![r, r2], 1));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        // Garbage that is no record cut short is still refused, wherever it is.
        std::fs::write(&path, format!("{{\"time\":1,\"host\":\"h1\"]\n{line}\n")).unwrap();
        assert!(read(&path).is_err());
    }
}
