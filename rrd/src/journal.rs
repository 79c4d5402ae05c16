//! The redo journal kept after the rrdtool data area: a checksummed list of the byte ranges
//! an update is about to write, so an update cut short can be rolled forward.

/// Marks a journal record; rrdtool ignores everything after its data area.
const MAGIC: &[u8; 8] = b"RRDRSJ01";
/// Upper bound on a record we are willing to read back (bounded before allocating).
pub(crate) const MAX_RECORD: u64 = 64 << 20;

/// FNV-1a, 64 bit: cheap, and enough to tell a torn or stale record from a whole one.
pub(crate) fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chunks {
        for &b in *c {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Journal {
    /// The live header the update started from.
    pub old_live: Vec<u8>,
    /// (file offset, bytes) to write; the last one is the new live header.
    pub regions: Vec<(u64, Vec<u8>)>,
}

fn rd(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

impl Journal {
    /// Serialises: magic, body length, body (old hash, region count, regions), checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.old_live.len() as u64).to_ne_bytes());
        body.extend_from_slice(&self.old_live);
        body.extend_from_slice(&(self.regions.len() as u64).to_ne_bytes());
        for (off, bytes) in &self.regions {
            body.extend_from_slice(&off.to_ne_bytes());
            body.extend_from_slice(&(bytes.len() as u64).to_ne_bytes());
            body.extend_from_slice(bytes);
        }
        let mut out = Vec::with_capacity(body.len() + 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u64).to_ne_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&fnv1a(&[&body]).to_ne_bytes());
        out
    }

    /// Reads a record from the bytes after the data area; None if absent, torn or corrupt.
    pub fn parse(b: &[u8]) -> Option<Journal> {
        if b.get(..8)? != MAGIC {
            return None;
        }
        let len = rd(b, 8)?;
        if len > MAX_RECORD {
            return None;
        }
        let body = b.get(16..16 + len as usize)?;
        if rd(b, 16 + len as usize)? != fnv1a(&[body]) {
            return None;
        }
        let old_len = rd(body, 0)? as usize;
        let old_live = body.get(8..8usize.checked_add(old_len)?)?.to_vec();
        let n = rd(body, 8 + old_len)?;
        let mut off = 16 + old_len;
        let mut regions = Vec::new();
        for _ in 0..n {
            let at = rd(body, off)?;
            let l = rd(body, off + 8)? as usize;
            let bytes = body.get(off + 16..(off + 16).checked_add(l)?)?;
            regions.push((at, bytes.to_vec()));
            off += 16 + l;
        }
        Some(Journal { old_live, regions })
    }

    /// Whether this record is an update that was cut short: the file's live header (at
    /// `live_offset`) is not yet the new one, and each byte is the old or the new one (a
    /// header write torn at a page boundary by a kill). Anything else, e.g. a later update
    /// by rrdtool, means the record is stale.
    pub fn applies_to(&self, live_offset: u64, live: &[u8]) -> bool {
        let Some((off, new)) = self.regions.last() else {
            return false;
        };
        // A page-torn write leaves each aligned 8-byte field wholly old or new, so the time
        // (first 16 bytes) must be one of the two; a later writer's time is neither.
        let time_ok =
            |l: &[u8]| l.get(..16) == self.old_live.get(..16) || l.get(..16) == new.get(..16);
        *off == live_offset
            && live.len() == new.len()
            && live.len() == self.old_live.len()
            && live != &new[..]
            && time_ok(live)
            && live
                .iter()
                .zip(new)
                .zip(&self.old_live)
                .all(|((c, n), o)| c == n || c == o)
    }

    /// Applies the record to a whole-file image (regions outside it are ignored).
    pub fn apply_to(&self, image: &mut [u8]) {
        for (off, bytes) in &self.regions {
            let start = *off as usize;
            if let Some(dst) = image.get_mut(start..start.saturating_add(bytes.len())) {
                dst.copy_from_slice(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_torn_records() {
        let old: Vec<u8> = [[1u8; 16], [1u8; 16]].concat();
        let new: Vec<u8> = [[2u8; 16], [2u8; 16]].concat();
        let j = Journal {
            old_live: old.clone(),
            regions: vec![(100, vec![1, 2, 3]), (7, vec![9; 20]), (50, new.clone())],
        };
        let b = j.encode();
        assert_eq!(Journal::parse(&b), Some(j.clone()));
        assert!(j.applies_to(50, &old));
        let torn: Vec<u8> = [[2u8; 16], [1u8; 16]].concat();
        assert!(j.applies_to(50, &torn));
        assert!(!j.applies_to(50, &new), "already applied");
        let mut later = old.clone();
        later[0] = 3;
        assert!(!j.applies_to(50, &later), "stale: another writer's time");
        let mut mixed_time = old.clone();
        mixed_time[0] = 2;
        assert!(!j.applies_to(50, &mixed_time), "a time is never torn");
        assert!(!j.applies_to(51, &old));
        for cut in 0..b.len() {
            assert_eq!(Journal::parse(&b[..cut]), None, "cut at {cut}");
        }
        let mut flipped = b.clone();
        flipped[30] ^= 1;
        assert_eq!(Journal::parse(&flipped), None);
    }
}
