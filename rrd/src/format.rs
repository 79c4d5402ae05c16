//! rrdtool 1.x file layout (version "0003", native byte order, x86_64 C struct layout):
//! parsing and serialising the header, and the typed definitions it holds.

use crate::error::{Error, Result};

/// `stat_head_t`: cookie[4], version[5], 7 pad, float_cookie, ds_cnt, rra_cnt, pdp_step, par[10].
pub(crate) const STAT_HEAD_LEN: usize = 128;
/// `ds_def_t`: ds_nam[20], dst[20], par[10].
pub(crate) const DS_DEF_LEN: usize = 120;
/// `rra_def_t`: cf_nam[20], 4 pad, row_cnt, pdp_cnt, par[10].
pub(crate) const RRA_DEF_LEN: usize = 120;
/// `live_head_t`: last_up, last_up_usec.
pub(crate) const LIVE_HEAD_LEN: usize = 16;
/// `pdp_prep_t`: last_ds[30], 2 pad, scratch[10].
pub(crate) const PDP_PREP_LEN: usize = 112;
/// `cdp_prep_t`: scratch[10].
pub(crate) const CDP_PREP_LEN: usize = 80;
/// `rra_ptr_t`: cur_row.
pub(crate) const RRA_PTR_LEN: usize = 8;

/// The magic double rrdtool stores to detect foreign float formats and byte orders.
pub const FLOAT_COOKIE: f64 = 8.642135E130;
/// The only format version this crate reads and writes.
pub const VERSION: &str = "0003";
/// Length of `last_ds` including its terminating NUL.
pub(crate) const LAST_DS_LEN: usize = 30;

/// rrdtool's DNAN: the x86 "default NaN" (sign bit set), so files stay byte-identical.
pub(crate) const DNAN: f64 = f64::from_bits(0xfff8_0000_0000_0000);

// Bounds on counts read from untrusted headers, checked before anything is allocated.
const MAX_DS: u64 = 1 << 16;
const MAX_RRA: u64 = 1 << 16;

/// Largest time, and largest archive span in seconds, we accept; keeps all time
/// arithmetic far from overflow (2^52 s is over 100 million years).
pub(crate) const MAX_TIME: u64 = 1 << 52;

/// Seconds covered by an RRA, if within [`MAX_TIME`].
pub(crate) fn span(step: u64, r: &RraDef) -> Option<u64> {
    step.checked_mul(r.pdp_per_row)?
        .checked_mul(r.rows)
        .filter(|&s| s <= MAX_TIME)
}

/// Indices into `pdp_prep_t::scratch`.
pub(crate) const PDP_UNKN_SEC_CNT: usize = 0;
pub(crate) const PDP_VAL: usize = 1;
/// Indices into `cdp_prep_t::scratch`.
pub(crate) const CDP_VAL: usize = 0;
pub(crate) const CDP_UNKN_PDP_CNT: usize = 1;
pub(crate) const CDP_PRIMARY_VAL: usize = 8;
pub(crate) const CDP_SECONDARY_VAL: usize = 9;

/// Data source type (rrdtool's `DST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsType {
    /// The value itself is the rate.
    Gauge,
    /// A monotonically increasing counter; wraps at 2^32 or 2^64 are corrected.
    Counter,
    /// Like COUNTER but may decrease; no wrap correction.
    Derive,
    /// A counter reset on every read: the value divided by the interval is the rate.
    Absolute,
}

impl DsType {
    /// rrdtool's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            DsType::Gauge => "GAUGE",
            DsType::Counter => "COUNTER",
            DsType::Derive => "DERIVE",
            DsType::Absolute => "ABSOLUTE",
        }
    }

    /// Parses rrdtool's name for a type.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "GAUGE" => Ok(DsType::Gauge),
            "COUNTER" => Ok(DsType::Counter),
            "DERIVE" => Ok(DsType::Derive),
            "ABSOLUTE" => Ok(DsType::Absolute),
            "COMPUTE" | "DCOUNTER" | "DDERIVE" => {
                Err(Error::Unsupported(format!("data source type {s}")))
            }
            _ => Err(Error::InvalidDefinition(format!(
                "unknown data source type {s:?}"
            ))),
        }
    }
}

/// Consolidation function of an RRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Mean of the primary data points.
    Average,
    /// Smallest primary data point.
    Min,
    /// Largest primary data point.
    Max,
    /// Last primary data point.
    Last,
}

impl Cf {
    /// rrdtool's name for the function.
    pub fn as_str(self) -> &'static str {
        match self {
            Cf::Average => "AVERAGE",
            Cf::Min => "MIN",
            Cf::Max => "MAX",
            Cf::Last => "LAST",
        }
    }

    /// Parses rrdtool's name for a consolidation function.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "AVERAGE" => Ok(Cf::Average),
            "MIN" => Ok(Cf::Min),
            "MAX" => Ok(Cf::Max),
            "LAST" => Ok(Cf::Last),
            "HWPREDICT" | "MHWPREDICT" | "SEASONAL" | "DEVSEASONAL" | "DEVPREDICT" | "FAILURES" => {
                Err(Error::Unsupported(format!("consolidation function {s}")))
            }
            _ => Err(Error::InvalidDefinition(format!(
                "unknown consolidation function {s:?}"
            ))),
        }
    }
}

/// A data source definition (`DS:name:TYPE:heartbeat:min:max`).
#[derive(Debug, Clone, PartialEq)]
pub struct DsDef {
    /// 1-19 characters of `[-a-zA-Z0-9_]`.
    pub name: String,
    /// How readings become rates.
    pub kind: DsType,
    /// Longest gap in seconds between updates before the interval counts as unknown.
    pub heartbeat: u64,
    /// Rates below this become unknown; NaN means no limit.
    pub min: f64,
    /// Rates above this become unknown; NaN means no limit.
    pub max: f64,
}

impl DsDef {
    /// A definition without min/max limits.
    pub fn new(name: &str, kind: DsType, heartbeat: u64) -> Self {
        DsDef {
            name: name.to_string(),
            kind,
            heartbeat,
            min: f64::NAN,
            max: f64::NAN,
        }
    }

    /// Parses rrdtool's `DS:name:TYPE:heartbeat:min:max` syntax.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::InvalidDefinition(format!("bad DS definition {s:?}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 || parts[0] != "DS" {
            return Err(bad());
        }
        let kind = DsType::parse(parts[2])?;
        let heartbeat: u64 = parts[3].parse().map_err(|_| bad())?;
        let limit = |p: &str| -> Result<f64> {
            if p == "U" {
                Ok(f64::NAN)
            } else {
                crate::engine::parse_double(p.as_bytes()).map_err(|_| bad())
            }
        };
        let def = DsDef {
            name: parts[1].to_string(),
            kind,
            heartbeat,
            min: limit(parts[4])?,
            max: limit(parts[5])?,
        };
        def.validate()?;
        Ok(def)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 19
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::InvalidDefinition(format!(
                "invalid DS name {n:?} (1-19 of [-a-zA-Z0-9_])"
            )));
        }
        if self.heartbeat == 0 {
            return Err(Error::InvalidDefinition(format!(
                "DS {n}: heartbeat must be > 0"
            )));
        }
        if !self.min.is_nan() && !self.max.is_nan() && self.min >= self.max {
            return Err(Error::InvalidDefinition(format!(
                "DS {n}: min must be less than max"
            )));
        }
        Ok(())
    }
}

/// A round-robin archive definition (`RRA:CF:xff:steps:rows`).
#[derive(Debug, Clone, PartialEq)]
pub struct RraDef {
    /// How primary data points are combined.
    pub cf: Cf,
    /// The fraction of a row's PDPs that may be unknown with the row still known, in [0, 1).
    pub xff: f64,
    /// PDPs per row.
    pub pdp_per_row: u64,
    /// Number of rows kept.
    pub rows: u64,
}

impl RraDef {
    /// A definition from its parts.
    pub fn new(cf: Cf, xff: f64, pdp_per_row: u64, rows: u64) -> Self {
        RraDef {
            cf,
            xff,
            pdp_per_row,
            rows,
        }
    }

    /// Parses rrdtool's `RRA:CF:xff:steps:rows` syntax.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::InvalidDefinition(format!("bad RRA definition {s:?}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 5 || parts[0] != "RRA" {
            return Err(bad());
        }
        let def = RraDef {
            cf: Cf::parse(parts[1])?,
            xff: crate::engine::parse_double(parts[2].as_bytes()).map_err(|_| bad())?,
            pdp_per_row: parts[3].parse().map_err(|_| bad())?,
            rows: parts[4].parse().map_err(|_| bad())?,
        };
        def.validate()?;
        Ok(def)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.xff) {
            return Err(Error::InvalidDefinition(
                "RRA xff must be in [0, 1)".to_string(),
            ));
        }
        if self.pdp_per_row == 0 || self.rows == 0 {
            return Err(Error::InvalidDefinition(
                "RRA steps and rows must be > 0".to_string(),
            ));
        }
        Ok(())
    }
}

/// `pdp_prep_t`: the primary data point being built for one DS.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PdpPrep {
    pub last_ds: [u8; LAST_DS_LEN],
    pub pad: [u8; 2],
    pub scratch: [u64; 10],
}

impl PdpPrep {
    pub fn last_ds_str(&self) -> String {
        let end = self
            .last_ds
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LAST_DS_LEN);
        String::from_utf8_lossy(&self.last_ds[..end]).into_owned()
    }

    /// Stores like `strncpy(last_ds, s, 29); last_ds[29] = 0`.
    pub fn set_last_ds(&mut self, s: &[u8]) {
        self.last_ds = [0; LAST_DS_LEN];
        let n = s
            .iter()
            .take(LAST_DS_LEN - 1)
            .position(|&b| b == 0)
            .unwrap_or(s.len().min(LAST_DS_LEN - 1));
        self.last_ds[..n].copy_from_slice(&s[..n]);
    }

    pub fn val(&self) -> f64 {
        f64::from_bits(self.scratch[PDP_VAL])
    }
    pub fn set_val(&mut self, v: f64) {
        self.scratch[PDP_VAL] = v.to_bits();
    }
}

/// `cdp_prep_t`: the consolidated data point being built for one RRA and DS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CdpPrep {
    pub scratch: [u64; 10],
}

impl CdpPrep {
    pub fn get(&self, i: usize) -> f64 {
        f64::from_bits(self.scratch[i])
    }
    pub fn set(&mut self, i: usize, v: f64) {
        self.scratch[i] = v.to_bits();
    }
}

/// The whole header: static definitions (kept byte-exact) and the live state.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// Bytes of stat_head, ds_def and rra_def exactly as read, written back unchanged.
    pub static_bytes: Vec<u8>,
    pub step: u64,
    pub ds: Vec<DsDef>,
    pub rra: Vec<RraDef>,
    pub last_up: i64,
    pub last_up_usec: i64,
    pub pdp: Vec<PdpPrep>,
    /// Index `rra * ds_cnt + ds`.
    pub cdp: Vec<CdpPrep>,
    pub cur_row: Vec<u64>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Byte length of the header for the given counts, or None on overflow.
pub(crate) fn header_len(ds_cnt: u64, rra_cnt: u64) -> Option<u64> {
    let ds = ds_cnt;
    let rra = rra_cnt;
    (STAT_HEAD_LEN as u64)
        .checked_add(ds.checked_mul(DS_DEF_LEN as u64)?)?
        .checked_add(rra.checked_mul(RRA_DEF_LEN as u64)?)?
        .checked_add(LIVE_HEAD_LEN as u64)?
        .checked_add(ds.checked_mul(PDP_PREP_LEN as u64)?)?
        .checked_add(rra.checked_mul(ds)?.checked_mul(CDP_PREP_LEN as u64)?)?
        .checked_add(rra.checked_mul(RRA_PTR_LEN as u64)?)
}

impl Header {
    /// Offset of live_head: everything before it never changes after create.
    pub fn live_offset(&self) -> usize {
        self.static_bytes.len()
    }

    pub fn header_len(&self) -> usize {
        self.static_bytes.len()
            + LIVE_HEAD_LEN
            + self.ds.len() * PDP_PREP_LEN
            + self.cdp.len() * CDP_PREP_LEN
            + self.rra.len() * RRA_PTR_LEN
    }

    pub fn total_rows(&self) -> u64 {
        self.rra.iter().map(|r| r.rows).sum()
    }

    /// Offset of the first value of RRA `rra`.
    pub fn rra_offset(&self, rra: usize) -> u64 {
        let before: u64 = self.rra[..rra].iter().map(|r| r.rows).sum();
        self.header_len() as u64 + before * self.ds.len() as u64 * 8
    }

    /// Length of the whole rrdtool file (header and values).
    pub fn file_len(&self) -> u64 {
        self.header_len() as u64 + self.total_rows() * self.ds.len() as u64 * 8
    }

    /// Parses a header from the start of `b` and checks that all values are present too.
    pub fn parse(b: &[u8]) -> Result<Header> {
        let h = Self::parse_prefix(b)?;
        if h.file_len() > b.len() as u64 {
            return Err(Error::Truncated {
                needed: h.file_len(),
                got: b.len() as u64,
            });
        }
        Ok(h)
    }

    /// Parses a header from the start of `b`, which need not hold the values.
    pub fn parse_prefix(b: &[u8]) -> Result<Header> {
        let got = b.len() as u64;
        let need = |n: u64| -> Result<()> {
            if got < n {
                Err(Error::Truncated { needed: n, got })
            } else {
                Ok(())
            }
        };
        need(4)?;
        if &b[..4] != b"RRD\0" {
            return Err(Error::NotRrd);
        }
        need(STAT_HEAD_LEN as u64)?;
        let version = &b[4..9];
        if version != b"0003\0" {
            return Err(Error::UnsupportedVersion(cstr(version)));
        }
        let cookie = f64::from_bits(u64_at(b, 16));
        if cookie != FLOAT_COOKIE {
            if f64::from_bits(u64_at(b, 16).swap_bytes()) == FLOAT_COOKIE {
                return Err(Error::ForeignByteOrder);
            }
            return Err(Error::ForeignArchitecture);
        }
        let ds_cnt = u64_at(b, 24);
        let rra_cnt = u64_at(b, 32);
        let step = u64_at(b, 40);
        if ds_cnt == 0 || ds_cnt > MAX_DS {
            return Err(Error::Corrupt(format!("ds_cnt {ds_cnt}")));
        }
        if rra_cnt == 0 || rra_cnt > MAX_RRA {
            return Err(Error::Corrupt(format!("rra_cnt {rra_cnt}")));
        }
        if step == 0 {
            return Err(Error::Corrupt("pdp_step 0".to_string()));
        }
        let hlen = header_len(ds_cnt, rra_cnt)
            .ok_or_else(|| Error::Corrupt("header size overflows".to_string()))?;
        need(hlen)?;
        let (ds_cnt, rra_cnt) = (ds_cnt as usize, rra_cnt as usize);

        let mut off = STAT_HEAD_LEN;
        let mut ds = Vec::with_capacity(ds_cnt);
        for _ in 0..ds_cnt {
            let name = cstr(&b[off..off + 20]);
            let kind = DsType::parse(&cstr(&b[off + 20..off + 40])).map_err(|e| match e {
                Error::InvalidDefinition(m) => Error::Corrupt(m),
                e => e,
            })?;
            let d = DsDef {
                name,
                kind,
                heartbeat: u64_at(b, off + 40),
                min: f64::from_bits(u64_at(b, off + 48)),
                max: f64::from_bits(u64_at(b, off + 56)),
            };
            ds.push(d);
            off += DS_DEF_LEN;
        }
        let mut rra = Vec::with_capacity(rra_cnt);
        for _ in 0..rra_cnt {
            let cf = Cf::parse(&cstr(&b[off..off + 20])).map_err(|e| match e {
                Error::InvalidDefinition(m) => Error::Corrupt(m),
                e => e,
            })?;
            let r = RraDef {
                cf,
                rows: u64_at(b, off + 24),
                pdp_per_row: u64_at(b, off + 32),
                xff: f64::from_bits(u64_at(b, off + 40)),
            };
            if r.rows == 0 || r.pdp_per_row == 0 {
                return Err(Error::Corrupt("RRA with 0 rows or 0 steps".to_string()));
            }
            if span(step, &r).is_none() {
                return Err(Error::Corrupt("RRA spans too much time".to_string()));
            }
            rra.push(r);
            off += RRA_DEF_LEN;
        }
        let static_bytes = b[..off].to_vec();
        let last_up = u64_at(b, off) as i64;
        let last_up_usec = u64_at(b, off + 8) as i64;
        if last_up < 0 || last_up as u64 > MAX_TIME || !(0..1_000_000).contains(&last_up_usec) {
            return Err(Error::Corrupt(format!(
                "last update {last_up}.{last_up_usec:06}"
            )));
        }
        off += LIVE_HEAD_LEN;
        let mut pdp = Vec::with_capacity(ds_cnt);
        for _ in 0..ds_cnt {
            let mut last_ds = [0u8; LAST_DS_LEN];
            last_ds.copy_from_slice(&b[off..off + LAST_DS_LEN]);
            let pad = [b[off + 30], b[off + 31]];
            let mut scratch = [0u64; 10];
            for (i, s) in scratch.iter_mut().enumerate() {
                *s = u64_at(b, off + 32 + 8 * i);
            }
            pdp.push(PdpPrep {
                last_ds,
                pad,
                scratch,
            });
            off += PDP_PREP_LEN;
        }
        let mut cdp = Vec::with_capacity(ds_cnt * rra_cnt);
        for _ in 0..ds_cnt * rra_cnt {
            let mut scratch = [0u64; 10];
            for (i, s) in scratch.iter_mut().enumerate() {
                *s = u64_at(b, off + 8 * i);
            }
            cdp.push(CdpPrep { scratch });
            off += CDP_PREP_LEN;
        }
        let mut cur_row = Vec::with_capacity(rra_cnt);
        for r in &rra {
            let c = u64_at(b, off);
            if c >= r.rows {
                return Err(Error::Corrupt(format!(
                    "cur_row {c} outside RRA of {} rows",
                    r.rows
                )));
            }
            cur_row.push(c);
            off += RRA_PTR_LEN;
        }
        let h = Header {
            static_bytes,
            step,
            ds,
            rra,
            last_up,
            last_up_usec,
            pdp,
            cdp,
            cur_row,
        };
        // file_len() may then be computed without overflow.
        h.rra
            .iter()
            .try_fold(0u64, |acc, r| acc.checked_add(r.rows))
            .and_then(|rows| rows.checked_mul(ds_cnt as u64))
            .and_then(|v| v.checked_mul(8))
            .and_then(|v| v.checked_add(hlen))
            .filter(|&v| v <= i64::MAX as u64)
            .ok_or_else(|| Error::Corrupt("row counts overflow".to_string()))?;
        Ok(h)
    }

    /// Builds the static part for a new file.
    pub fn new_static(step: u64, ds: &[DsDef], rra: &[RraDef]) -> Vec<u8> {
        let mut b = Vec::with_capacity(STAT_HEAD_LEN + 120 * (ds.len() + rra.len()));
        b.extend_from_slice(b"RRD\0");
        b.extend_from_slice(b"0003\0");
        b.extend_from_slice(&[0u8; 7]);
        b.extend_from_slice(&FLOAT_COOKIE.to_ne_bytes());
        b.extend_from_slice(&(ds.len() as u64).to_ne_bytes());
        b.extend_from_slice(&(rra.len() as u64).to_ne_bytes());
        b.extend_from_slice(&step.to_ne_bytes());
        b.extend_from_slice(&[0u8; 80]);
        let fixed = |s: &str, n: usize| -> Vec<u8> {
            let mut v = vec![0u8; n];
            let bytes = s.as_bytes();
            let k = bytes.len().min(n - 1);
            v[..k].copy_from_slice(&bytes[..k]);
            v
        };
        for d in ds {
            b.extend_from_slice(&fixed(&d.name, 20));
            b.extend_from_slice(&fixed(d.kind.as_str(), 20));
            b.extend_from_slice(&d.heartbeat.to_ne_bytes());
            b.extend_from_slice(&rrd_nan(d.min).to_ne_bytes());
            b.extend_from_slice(&rrd_nan(d.max).to_ne_bytes());
            b.extend_from_slice(&[0u8; 56]);
        }
        for r in rra {
            b.extend_from_slice(&fixed(r.cf.as_str(), 24));
            b.extend_from_slice(&r.rows.to_ne_bytes());
            b.extend_from_slice(&r.pdp_per_row.to_ne_bytes());
            b.extend_from_slice(&r.xff.to_ne_bytes());
            b.extend_from_slice(&[0u8; 72]);
        }
        b
    }

    /// The live part (live_head .. end of rra_ptr), the only header bytes an update changes.
    pub fn live_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.header_len() - self.static_bytes.len());
        b.extend_from_slice(&self.last_up.to_ne_bytes());
        b.extend_from_slice(&self.last_up_usec.to_ne_bytes());
        for p in &self.pdp {
            b.extend_from_slice(&p.last_ds);
            b.extend_from_slice(&p.pad);
            for s in p.scratch {
                b.extend_from_slice(&s.to_ne_bytes());
            }
        }
        for c in &self.cdp {
            for s in c.scratch {
                b.extend_from_slice(&s.to_ne_bytes());
            }
        }
        for r in &self.cur_row {
            b.extend_from_slice(&r.to_ne_bytes());
        }
        b
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.static_bytes.clone();
        b.extend_from_slice(&self.live_bytes());
        b
    }
}

/// rrdtool stores "no limit" as its DNAN; keep any NaN the caller passes in that form.
fn rrd_nan(v: f64) -> f64 {
    if v.is_nan() {
        DNAN
    } else {
        v
    }
}
