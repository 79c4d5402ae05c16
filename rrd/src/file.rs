//! An RRD file on disk, updated in place through the redo journal (see the crate doc).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::engine::Timestamp;
use crate::error::{Error, Result};
use crate::format::{self, Cf, Header, DNAN, STAT_HEAD_LEN};
use crate::journal::{self, Journal};
use crate::rrd::{Fetched, InfoValue, Layout, Rrd, Update};

/// How hard a commit pushes data to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// No fsync: safe against the process dying (kill -9, panic, OOM), like rrdtool itself,
    /// which never syncs. The default.
    #[default]
    None,
    /// fdatasync after the journal and after the in-place writes: also safe against power loss.
    Full,
}

/// An open RRD file for updates. Holds the header in memory; values stay on disk.
#[derive(Debug)]
pub struct RrdFile {
    path: PathBuf,
    file: File,
    header: Header,
    sync: Sync,
}

impl RrdFile {
    /// Creates (or replaces, like `rrdtool create`) a file: written to a temporary file in
    /// the same directory, synced, then renamed over `path`, so no reader sees half a file.
    pub fn create(path: impl AsRef<Path>, layout: &Layout) -> Result<Self> {
        let path = path.as_ref();
        let rrd = Rrd::create(layout)?;
        write_atomically(path, &rrd.to_bytes())?;
        tracing::debug!(path = %path.display(), "rrd created");
        Self::open(path)
    }

    /// Like [`RrdFile::create`] but fails with [`Error::Exists`] if `path` exists.
    pub fn create_new(path: impl AsRef<Path>, layout: &Layout) -> Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            return Err(Error::Exists(path.to_path_buf()));
        }
        Self::create(path, layout)
    }

    /// Opens an existing file for reading and updating; rolls an interrupted update forward.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let (header, len) = read_header_len(&path, &file)?;
        let mut f = RrdFile {
            path,
            file,
            header,
            sync: Sync::None,
        };
        f.recover(len)?;
        Ok(f)
    }

    /// Chooses the durability of later commits.
    pub fn set_sync(&mut self, sync: Sync) {
        self.sync = sync;
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes rrdtool's lock: a non-blocking POSIX write lock on the whole file.
    fn lock(&self) -> Result<()> {
        use rustix::fs::{fcntl_lock, FlockOperation};
        match fcntl_lock(&self.file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                Err(Error::Locked(self.path.clone()))
            }
            Err(e) => Err(Error::io(&self.path, e.into())),
        }
    }

    fn unlock(&self) {
        use rustix::fs::{fcntl_lock, FlockOperation};
        // Closing the file releases the lock too; a failure here leaves nothing to undo.
        let _ = fcntl_lock(&self.file, FlockOperation::NonBlockingUnlock);
    }

    /// The journal after the data area, if it is a commit cut short on the current header.
    fn pending_journal(&self, len: Option<u64>) -> Result<Option<Journal>> {
        let io = |e| Error::io(&self.path, e);
        let len = match len {
            Some(l) => l,
            None => self.file.metadata().map_err(io)?.len(),
        };
        let end = self.header.file_len();
        if len <= end {
            return Ok(None);
        }
        let tail_len = (len - end).min(journal::MAX_RECORD + 32) as usize;
        let mut tail = vec![0u8; tail_len];
        self.file.read_exact_at(&mut tail, end).map_err(io)?;
        Ok(Journal::parse(&tail)
            .filter(|j| j.applies_to(self.header.live_offset() as u64, &self.header.live_bytes())))
    }

    /// At open: rolls an interrupted commit forward, taking the lock only if there is one.
    fn recover(&mut self, len: u64) -> Result<()> {
        if self.pending_journal(Some(len))?.is_none() {
            return Ok(());
        }
        self.lock()?;
        let r = self.recover_locked();
        self.unlock();
        r
    }

    /// Re-reads the header and rolls a pending commit forward; the caller holds the lock.
    fn recover_locked(&mut self) -> Result<()> {
        self.header = read_header(&self.path, &self.file)?;
        let Some(j) = self.pending_journal(None)? else {
            return Ok(());
        };
        tracing::warn!(path = %self.path.display(), "rolling interrupted rrd update forward");
        let end = self.header.file_len();
        for (off, bytes) in &j.regions {
            if off.saturating_add(bytes.len() as u64) > end {
                return Err(Error::Corrupt(
                    "journal region outside the file".to_string(),
                ));
            }
            self.file
                .write_all_at(bytes, *off)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.header = read_header(&self.path, &self.file)?;
        Ok(())
    }

    /// Applies one update and commits it.
    pub fn update(&mut self, u: &Update) -> Result<()> {
        self.update_many(std::slice::from_ref(u))
    }

    /// Applies updates in order and commits them as one unit. Like `rrdtool update` with
    /// several arguments, it stops at the first bad one: the updates before it are kept
    /// (committed) and the error is returned. Holds rrdtool's lock while it works
    /// ([`Error::Locked`] if another process holds it) and starts from the file's current
    /// state, so updates by rrdtool or another handle since `open` are not lost.
    pub fn update_many(&mut self, updates: &[Update]) -> Result<()> {
        self.lock()?;
        let r = self.update_many_locked(updates);
        self.unlock();
        r
    }

    fn update_many_locked(&mut self, updates: &[Update]) -> Result<()> {
        let live_now = self.header.live_bytes();
        let mut on_disk = vec![0u8; live_now.len()];
        self.file
            .read_exact_at(&mut on_disk, self.header.live_offset() as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        if on_disk != live_now {
            self.recover_locked()?;
        }
        let old_live = self.header.live_bytes();
        let mut header = self.header.clone();
        let mut rows: BTreeMap<(usize, u64), Vec<f64>> = BTreeMap::new();
        let mut failure = None;
        let mut applied = 0usize;
        for u in updates {
            let vals: Vec<&[u8]> = u.values.iter().map(|s| s.as_bytes()).collect();
            let r = header.apply(u.time, &vals, &u.exact, &mut |rra, row, v| {
                rows.insert((rra, row), v.to_vec());
            });
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
            applied += 1;
        }
        if applied > 0 {
            self.commit(&old_live, header, rows)?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Journal first, then the rows, then the live header in one write.
    fn commit(
        &mut self,
        old_live: &[u8],
        header: Header,
        rows: BTreeMap<(usize, u64), Vec<f64>>,
    ) -> Result<()> {
        let rra_offsets: Vec<u64> = (0..header.rra.len())
            .map(|r| header.rra_offset(r))
            .collect();
        let ds_cnt = header.ds.len() as u64;
        let mut regions: Vec<(u64, Vec<u8>)> = Vec::with_capacity(rows.len() + 1);
        for ((rra, row), vals) in rows {
            let off = rra_offsets[rra] + row * ds_cnt * 8;
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_ne_bytes()).collect();
            // Merge with the previous region when contiguous: fewer writes on gap fills.
            match regions.last_mut() {
                Some((o, b)) if *o + b.len() as u64 == off => b.extend_from_slice(&bytes),
                _ => regions.push((off, bytes)),
            }
        }
        regions.push((header.live_offset() as u64, header.live_bytes()));
        let j = Journal {
            old_live: old_live.to_vec(),
            regions,
        };
        let end = header.file_len();
        let record = j.encode();
        tracing::trace!(
            path = %self.path.display(),
            regions = j.regions.len(),
            record_bytes = record.len(),
            "rrd commit"
        );
        let io = |e| Error::io(&self.path, e);
        self.file.write_all_at(&record, end).map_err(io)?;
        if self.sync == Sync::Full {
            self.file.sync_data().map_err(io)?;
        }
        for (off, bytes) in &j.regions {
            self.file.write_all_at(bytes, *off).map_err(io)?;
        }
        if self.sync == Sync::Full {
            self.file.sync_data().map_err(io)?;
        }
        self.header = header;
        Ok(())
    }

    /// Data source definitions.
    pub fn ds(&self) -> &[crate::format::DsDef] {
        &self.header.ds
    }

    /// Archive definitions.
    pub fn rra(&self) -> &[crate::format::RraDef] {
        &self.header.rra
    }

    /// Base step in seconds.
    pub fn step(&self) -> u64 {
        self.header.step
    }

    /// Time of the last update.
    pub fn last_update(&self) -> Timestamp {
        Timestamp {
            secs: self.header.last_up,
            usec: self.header.last_up_usec,
        }
    }

    /// `rrdtool info` fields (without `filename`).
    pub fn info(&self) -> Vec<(String, InfoValue)> {
        self.header.info()
    }

    /// Fetches rows like `rrdtool fetch`, reading only the chosen archive.
    pub fn fetch(&self, cf: Cf, start: i64, end: i64, resolution: u64) -> Result<Fetched> {
        let plan = self.header.plan_fetch(cf, start, end, resolution)?;
        let ds_cnt = self.header.ds.len();
        let base = self.header.rra_offset(plan.rra);
        let len = self.header.rra[plan.rra].rows as usize * ds_cnt * 8;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, base)
            .map_err(|e| Error::io(&self.path, e))?;
        let val = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            f64::from_ne_bytes(a)
        };
        let rows = plan
            .rows
            .iter()
            .map(|r| match r {
                Some(row) => (0..ds_cnt)
                    .map(|d| val(*row as usize * ds_cnt + d))
                    .collect(),
                None => vec![DNAN; ds_cnt],
            })
            .collect();
        Ok(Fetched {
            start: plan.start,
            end: plan.end,
            step: plan.step,
            ds_names: self.header.ds.iter().map(|d| d.name.clone()).collect(),
            rows,
        })
    }

    /// Reads the whole file into memory.
    pub fn load(&self) -> Result<Rrd> {
        let b = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        Rrd::from_bytes(&b)
    }
}

fn read_header(path: &Path, file: &File) -> Result<Header> {
    read_header_len(path, file).map(|(h, _)| h)
}

/// The header and the file's length.
fn read_header_len(path: &Path, file: &File) -> Result<(Header, u64)> {
    let io = |e| Error::io(path, e);
    let len = file.metadata().map_err(io)?.len();
    // One read usually covers the whole header (under 1 KB for a few DS and RRAs).
    let mut head = vec![0u8; FIRST_READ.min(len) as usize];
    file.read_exact_at(&mut head, 0).map_err(io)?;
    // Parse the fixed part first (cookie, version, counts) to learn the header size.
    match Header::parse_prefix(&head) {
        Err(Error::Truncated { .. }) if head.len() >= STAT_HEAD_LEN => {}
        Err(e) => return Err(e),
        Ok(h) => return check_len(h, len).map(|h| (h, len)),
    }
    let count = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&head[at..at + 8]);
        u64::from_ne_bytes(a)
    };
    let hlen = format::header_len(count(24), count(32))
        .ok_or_else(|| Error::Corrupt("header size overflows".to_string()))?;
    if hlen > len {
        return Err(Error::Truncated {
            needed: hlen,
            got: len,
        });
    }
    let mut buf = vec![0u8; hlen as usize];
    file.read_exact_at(&mut buf, 0).map_err(io)?;
    check_len(Header::parse_prefix(&buf)?, len).map(|h| (h, len))
}

/// Bytes read at first when opening: the usual header fits.
const FIRST_READ: u64 = 4096;

fn check_len(h: Header, len: u64) -> Result<Header> {
    if h.file_len() > len {
        return Err(Error::Truncated {
            needed: h.file_len(),
            got: len,
        });
    }
    Ok(h)
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |e| Error::io(&tmp, e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
