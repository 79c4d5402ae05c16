//! A [`TrendStore`] in RRD files (through the project's `rrd` crate), so load history survives
//! a restart of the balancer and can be graphed with rrdtool like any Ganglia metric.
//!
//! One file per series key (`host_cpu/node1` -> `DIR/host_cpu__node1.rrd`), one GAUGE data
//! source `value`, and a LAST archive with one row per step: a sample appended at a multiple
//! of the step reads back exactly. Samples at other times are consolidated to the step as
//! rrdtool does; samples not after the file's last update are skipped (a repeated round).

use crate::error::{BalancerError, Result};
use crate::trends::TrendStore;
use rrd::{Cf, Layout, RrdFile, Update, Value};
use std::path::{Path, PathBuf};

/// RRD-backed trend history under one directory.
#[derive(Debug, Clone)]
pub struct RrdStore {
    dir: PathBuf,
    step: u64,
    rows: u64,
}

impl RrdStore {
    /// History in `dir` with one sample every `step` seconds, keeping `rows` samples per
    /// series (the directory is created if needed).
    pub fn new(dir: impl Into<PathBuf>, step: u64, rows: u64) -> Result<RrdStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| BalancerError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(RrdStore {
            dir,
            step: step.max(1),
            rows: rows.max(2),
        })
    }

    /// The file of a series. Keys come from host and VM names seen on the network, so every
    /// character that could leave the directory or confuse rrdtool becomes '_'.
    pub fn path(&self, key: &str) -> PathBuf {
        let safe: String = key
            .replace('/', "__")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = if safe.starts_with('.') {
            format!("_{safe}")
        } else {
            safe
        };
        self.dir.join(format!("{safe}.rrd"))
    }

    fn err(path: &Path, e: rrd::Error) -> BalancerError {
        BalancerError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl TrendStore for RrdStore {
    fn append(&mut self, key: &str, t: u64, value: f64) -> Result<()> {
        let path = self.path(key);
        let mut file = if path.exists() {
            RrdFile::open(&path).map_err(|e| Self::err(&path, e))?
        } else {
            // Start one step back: the first sample then covers a whole step (a step more than
            // half unknown would consolidate to unknown and lose it).
            let layout = Layout::from_specs(
                self.step,
                t as i64 - self.step as i64,
                &[
                    format!("DS:value:GAUGE:{}:U:U", 2 * self.step),
                    format!("RRA:LAST:0.5:1:{}", self.rows),
                ],
            )
            .map_err(|e| Self::err(&path, e))?;
            RrdFile::create_new(&path, &layout).map_err(|e| Self::err(&path, e))?
        };
        match file.update(&Update::new(t as i64, &[Value::Float(value)])) {
            Ok(()) => Ok(()),
            // The same round seen twice: keep the first.
            Err(rrd::Error::NotAfterLastUpdate { .. }) => Ok(()),
            Err(e) => Err(Self::err(&path, e)),
        }
    }

    fn recent(&self, key: &str, n: usize) -> Result<Vec<(u64, f64)>> {
        let path = self.path(key);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let file = RrdFile::open(&path).map_err(|e| Self::err(&path, e))?;
        let last = file.last_update().secs;
        let span = self.step as i64 * n as i64;
        let f = file
            .fetch(Cf::Last, last - span, last, self.step)
            .map_err(|e| Self::err(&path, e))?;
        let mut out: Vec<(u64, f64)> = f
            .times()
            .zip(&f.rows)
            .filter_map(|(t, row)| {
                let v = *row.first()?;
                (!v.is_nan() && t <= last).then_some((t as u64, v))
            })
            .collect();
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_at_step_boundaries_read_back_exactly_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RrdStore::new(dir.path(), 60, 100).unwrap();
        for (i, v) in [0.25, 0.5, 0.75, 1.0].iter().enumerate() {
            s.append("vm_cpu/web1", 6000 + 60 * i as u64, *v).unwrap();
        }
        // A repeated round is skipped, not an error.
        s.append("vm_cpu/web1", 6180, 0.9).unwrap();
        let again = RrdStore::new(dir.path(), 60, 100).unwrap();
        assert_eq!(
            again.recent("vm_cpu/web1", 3).unwrap(),
            vec![(6060, 0.5), (6120, 0.75), (6180, 1.0)]
        );
        assert_eq!(again.recent("vm_cpu/web1", 10).unwrap().len(), 4);
        assert!(again.recent("vm_cpu/unknown", 3).unwrap().is_empty());
    }

    #[test]
    fn hostile_keys_stay_in_the_directory() {
        let s = RrdStore::new(std::env::temp_dir(), 60, 10).unwrap();
        for key in ["vm_cpu/../../etc/x", "host_cpu/a b:c", "vm_cpu/.hidden"] {
            let p = s.path(key);
            assert_eq!(p.parent(), Some(std::env::temp_dir().as_path()), "{key}");
            assert!(!p.file_name().unwrap().to_string_lossy().starts_with('.'));
        }
    }
}
