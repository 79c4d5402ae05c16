//! The in-memory archive: a parsed header plus all values; create, update, fetch, info.

use crate::engine::Timestamp;
use crate::error::{Error, Result};
use crate::format::{
    Cf, DsDef, Header, PdpPrep, RraDef, CDP_UNKN_PDP_CNT, CDP_VAL, DNAN, PDP_UNKN_SEC_CNT,
};
use crate::journal;

/// What `create` needs: base step, start time, data sources and archives.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Seconds per primary data point.
    pub step: u64,
    /// The initial `last_update`; the first update must be later.
    pub start: i64,
    /// Data sources, in file order.
    pub ds: Vec<DsDef>,
    /// Archives, in file order.
    pub rra: Vec<RraDef>,
}

impl Layout {
    /// An empty layout; add data sources and archives with [`Layout::ds`] and [`Layout::rra`].
    pub fn new(step: u64, start: i64) -> Self {
        Layout {
            step,
            start,
            ds: Vec::new(),
            rra: Vec::new(),
        }
    }

    /// Adds a data source.
    pub fn ds(mut self, d: DsDef) -> Self {
        self.ds.push(d);
        self
    }

    /// Adds an archive.
    pub fn rra(mut self, r: RraDef) -> Self {
        self.rra.push(r);
        self
    }

    /// Builds a layout from rrdtool-style `DS:...` and `RRA:...` strings.
    pub fn from_specs<S: AsRef<str>>(step: u64, start: i64, specs: &[S]) -> Result<Self> {
        let mut l = Layout::new(step, start);
        for s in specs {
            let s = s.as_ref();
            if s.starts_with("DS:") {
                l.ds.push(DsDef::parse(s)?);
            } else if s.starts_with("RRA:") {
                l.rra.push(RraDef::parse(s)?);
            } else {
                return Err(Error::InvalidDefinition(format!(
                    "can't parse argument {s:?}"
                )));
            }
        }
        Ok(l)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.step == 0 {
            return Err(Error::InvalidDefinition("step must be > 0".to_string()));
        }
        if self.start < 0 {
            return Err(Error::InvalidDefinition("start must be >= 0".to_string()));
        }
        if self.ds.is_empty() {
            return Err(Error::InvalidDefinition(
                "you must define at least one Data Source".to_string(),
            ));
        }
        if self.rra.is_empty() {
            return Err(Error::InvalidDefinition(
                "you must define at least one Round Robin Archive".to_string(),
            ));
        }
        for (i, d) in self.ds.iter().enumerate() {
            d.validate()?;
            if self.ds[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::InvalidDefinition(format!(
                    "duplicate DS name {}",
                    d.name
                )));
            }
        }
        for r in &self.rra {
            r.validate()?;
            if crate::format::span(self.step, r).is_none() {
                return Err(Error::InvalidDefinition(
                    "step * steps * rows is too large".to_string(),
                ));
            }
        }
        if self.start as u64 > crate::format::MAX_TIME {
            return Err(Error::InvalidDefinition("start is too large".to_string()));
        }
        Ok(())
    }

    /// The header of a fresh file, initialised the way `rrdtool create` does
    /// (except `cur_row`, which rrdtool randomises and we set to the last row).
    pub(crate) fn header(&self) -> Result<Header> {
        self.validate()?;
        let last_up = self.start;
        let unkn_sec = (last_up as u64) % self.step;
        let mut pdp = Vec::with_capacity(self.ds.len());
        for _ in &self.ds {
            let mut p = PdpPrep {
                last_ds: [0; 30],
                pad: [0; 2],
                scratch: [0; 10],
            };
            p.set_last_ds(b"U");
            p.set_val(DNAN);
            p.scratch[PDP_UNKN_SEC_CNT] = unkn_sec;
            pdp.push(p);
        }
        let mut cdp = Vec::with_capacity(self.ds.len() * self.rra.len());
        for r in &self.rra {
            for _ in &self.ds {
                let mut c = crate::format::CdpPrep { scratch: [0; 10] };
                c.set(CDP_VAL, DNAN);
                c.scratch[CDP_UNKN_PDP_CNT] =
                    ((last_up as u64 - unkn_sec) % (self.step * r.pdp_per_row)) / self.step;
                cdp.push(c);
            }
        }
        Ok(Header {
            static_bytes: Header::new_static(self.step, &self.ds, &self.rra),
            step: self.step,
            ds: self.ds.clone(),
            rra: self.rra.clone(),
            last_up,
            last_up_usec: 0,
            pdp,
            cdp,
            cur_row: self.rra.iter().map(|r| r.rows - 1).collect(),
        })
    }
}

/// One update: a time and one reading per data source, as rrdtool's `T:V[:V...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// When the readings were taken.
    pub time: Timestamp,
    /// One reading per DS in file order, as text (`U` for unknown), like rrdtool keeps them.
    pub values: Vec<String>,
    /// Float readings given as numbers ([`Update::new`]): used as they are for GAUGE and
    /// ABSOLUTE instead of re-parsing the text, whose rrdtool-style parse may round.
    pub(crate) exact: Vec<Option<f64>>,
}

/// A typed reading, turned into rrdtool's text form by [`Update::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// `U`.
    Unknown,
    /// A floating point reading (GAUGE, ABSOLUTE).
    Float(f64),
    /// An integer reading (any type; COUNTER and DERIVE need integers).
    Int(i64),
    /// An unsigned integer reading, e.g. a 64-bit counter.
    UInt(u64),
}

impl Value {
    fn text(self) -> String {
        match self {
            Value::Unknown => "U".to_string(),
            Value::Float(f) if f.is_nan() => "U".to_string(),
            Value::Float(f) => {
                let a = f.abs();
                if a == 0.0 || (1e-5..1e16).contains(&a) || !f.is_finite() {
                    format!("{f}")
                } else {
                    format!("{f:e}")
                }
            }
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
        }
    }
}

impl Update {
    /// An update at whole second `secs`.
    pub fn new(secs: i64, values: &[Value]) -> Self {
        Update {
            time: Timestamp::from_secs(secs),
            values: values.iter().map(|v| v.text()).collect(),
            exact: values
                .iter()
                .map(|v| match v {
                    Value::Float(f) if !f.is_nan() => Some(*f),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Parses rrdtool's `T:V[:V...]`, where T is seconds (fractions allowed), `N` for now, or
    /// a negative offset from now.
    pub fn parse(s: &str) -> Result<Self> {
        let (t, rest) = s.split_once(':').ok_or_else(|| {
            Error::InvalidUpdate(format!(
                "expected timestamp not found in data source from {s}"
            ))
        })?;
        let time = parse_time(t)?;
        Ok(Update {
            time,
            values: rest.split(':').map(str::to_string).collect(),
            exact: Vec::new(),
        })
    }
}

/// rrdtool's `--template ds1:ds2:...`: which data source each value of an update string is
/// for; data sources left out get `U`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// For each value position, the DS index it feeds.
    idx: Vec<usize>,
    ds_cnt: usize,
}

impl Template {
    /// Resolves `ds1:ds2:...` against the file's data sources.
    pub fn new(template: &str, ds: &[DsDef]) -> Result<Self> {
        let mut idx = Vec::new();
        for name in template.split(':') {
            if idx.len() >= ds.len() {
                return Err(Error::InvalidUpdate(
                    "template contains more DS definitions than RRD".to_string(),
                ));
            }
            let i = ds
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| Error::InvalidUpdate(format!("unknown DS name '{name}'")))?;
            idx.push(i);
        }
        Ok(Template {
            idx,
            ds_cnt: ds.len(),
        })
    }

    /// Parses `T:V[:V...]` with one value per template entry, into a full update.
    pub fn parse(&self, s: &str) -> Result<Update> {
        let u = Update::parse(s)?;
        if u.values.len() != self.idx.len() {
            return Err(Error::InvalidUpdate(format!(
                "expected {} data source readings (got {}) from {s}",
                self.idx.len(),
                u.values.len()
            )));
        }
        let mut values = vec!["U".to_string(); self.ds_cnt];
        for (v, &i) in u.values.into_iter().zip(&self.idx) {
            values[i] = v;
        }
        Ok(Update {
            time: u.time,
            values,
            exact: Vec::new(),
        })
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: d.as_secs() as i64,
        usec: i64::from(d.subsec_micros()),
    }
}

fn parse_time(t: &str) -> Result<Timestamp> {
    if t == "N" {
        return Ok(now());
    }
    let mut tmp = crate::engine::parse_double(t.as_bytes())
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| Error::InvalidUpdate(format!("cannot parse time {t:?}")))?;
    if tmp < 0.0 {
        let n = now();
        tmp += n.secs as f64 + n.usec as f64 * 1e-6;
    }
    let secs = tmp.floor();
    Ok(Timestamp {
        secs: secs as i64,
        usec: ((tmp - secs) * 1e6) as i64,
    })
}

/// The result of a fetch: rows for times `start + step`, `start + 2*step` .. `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Start, aligned down to `step` (exclusive: the first row is at `start + step`).
    pub start: i64,
    /// Time of the last row.
    pub end: i64,
    /// Seconds per row of the chosen archive.
    pub step: u64,
    /// Data source names.
    pub ds_names: Vec<String>,
    /// One row per step; one value per DS; NaN for unknown.
    pub rows: Vec<Vec<f64>>,
}

impl Fetched {
    /// Timestamps of the rows.
    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (1..=self.rows.len() as i64).map(move |i| self.start + i * self.step as i64)
    }
}

/// Fetch times beyond this are refused, so the window arithmetic cannot overflow.
const TIME_LIMIT: i64 = 1 << 60;
/// Bound on the rows one fetch returns (it allocates them).
const MAX_FETCH_ROWS: i64 = 50_000_000;

/// The archive choice and row window of a fetch, before values are read.
pub(crate) struct FetchPlan {
    pub rra: usize,
    pub start: i64,
    pub end: i64,
    pub step: u64,
    /// For each output row: the RRA row index holding it, or None (outside the archive).
    pub rows: Vec<Option<u64>>,
}

impl Header {
    /// rrdtool's `rrd_fetch_fn`: picks the archive and the rows to read.
    pub(crate) fn plan_fetch(
        &self,
        cf: Cf,
        start: i64,
        end: i64,
        resolution: u64,
    ) -> Result<FetchPlan> {
        if end < start {
            return Err(Error::InvalidArgument(format!(
                "start ({start}) should be less than end ({end})"
            )));
        }
        if start.abs() > TIME_LIMIT || end.abs() > TIME_LIMIT {
            return Err(Error::InvalidArgument(format!(
                "fetch times must be within +-{TIME_LIMIT}"
            )));
        }
        let resolution = resolution.clamp(1, TIME_LIMIT as u64);
        let mut best_full: Option<(usize, i64)> = None;
        let mut best_part: Option<(usize, i64, i64)> = None;
        for (i, r) in self.rra.iter().enumerate() {
            if r.cf != cf && r.pdp_per_row != 1 {
                continue;
            }
            let rstep = (r.pdp_per_row * self.step) as i64;
            let cal_end = self.last_up - self.last_up % rstep;
            let cal_start = cal_end - (r.pdp_per_row * r.rows * self.step) as i64;
            let full_match = end - start;
            let diff = (resolution as i64 - rstep).abs();
            if cal_start <= start {
                if !matches!(best_full, Some((_, d)) if diff >= d) {
                    best_full = Some((i, diff));
                }
            } else {
                let mut m = full_match;
                if cal_start > start {
                    m -= cal_start - start;
                }
                if !matches!(best_part, Some((_, bm, bd)) if !(bm < m || (bm == m && diff < bd))) {
                    best_part = Some((i, m, diff));
                }
            }
        }
        let chosen = match (best_full, best_part) {
            (Some((i, _)), _) => i,
            (None, Some((i, _, _))) => i,
            (None, None) => return Err(Error::NoMatchingRra),
        };
        let r = &self.rra[chosen];
        let step = self.step * r.pdp_per_row;
        let st = step as i64;
        let start = start - start.rem_euclid(st);
        let end = end + (st - end.rem_euclid(st));
        let rra_end = self.last_up - self.last_up.rem_euclid(st);
        let rra_start = rra_end - st * (r.rows as i64 - 1);
        // C's truncating division, as rrdtool does (all operands are multiples of st here).
        let start_offset = (start + st - rra_start) / st;
        let end_offset = (rra_end - end) / st;
        let cur = self.cur_row[chosen] as i64;
        let rows_i = r.rows as i64;
        if (end - start) / st > MAX_FETCH_ROWS {
            return Err(Error::InvalidArgument(format!(
                "fetch of more than {MAX_FETCH_ROWS} rows"
            )));
        }
        let mut rows = Vec::new();
        let mut i = start_offset;
        while i < rows_i - end_offset {
            if i < 0 || i >= rows_i {
                rows.push(None);
            } else {
                rows.push(Some(((cur + 1 + i) % rows_i) as u64));
            }
            i += 1;
        }
        Ok(FetchPlan {
            rra: chosen,
            start,
            end,
            step,
            rows,
        })
    }
}

/// A whole RRD in memory: header and every value. (No `PartialEq`: values hold NaNs;
/// compare [`Rrd::to_bytes`] instead.)
#[derive(Debug, Clone)]
pub struct Rrd {
    pub(crate) header: Header,
    /// All values, RRA after RRA, row-major (row, DS).
    pub(crate) values: Vec<f64>,
}

impl Rrd {
    /// A new, empty archive (all values unknown).
    pub fn create(layout: &Layout) -> Result<Self> {
        let header = layout.header()?;
        let n = (header.total_rows() as usize)
            .checked_mul(header.ds.len())
            .ok_or_else(|| Error::InvalidDefinition("too many rows".to_string()))?;
        Ok(Rrd {
            header,
            values: vec![DNAN; n],
        })
    }

    /// Parses a complete rrdtool file image. Trailing bytes beyond the values are allowed
    /// (rrdtool allows them too); a crash journal found there is applied, as on open.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let header = Header::parse(b)?;
        let data_start = header.header_len();
        let end = header.file_len() as usize;
        let mut image = b[..end].to_vec();
        if let Some(j) = journal::Journal::parse(&b[end..]) {
            let live = header.live_offset();
            if j.applies_to(live as u64, &image[live..data_start]) {
                j.apply_to(&mut image);
            }
        }
        let header = Header::parse(&image)?;
        let values = image[data_start..end]
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_ne_bytes(a)
            })
            .collect();
        Ok(Rrd { header, values })
    }

    /// The rrdtool file image (no journal).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.header.to_bytes();
        b.reserve(self.values.len() * 8);
        for v in &self.values {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Applies one update. On error nothing changes.
    pub fn update(&mut self, u: &Update) -> Result<()> {
        let vals: Vec<&[u8]> = u.values.iter().map(|s| s.as_bytes()).collect();
        let ds_cnt = self.header.ds.len();
        let offsets: Vec<usize> = (0..self.header.rra.len())
            .map(|r| {
                self.header.rra[..r]
                    .iter()
                    .map(|x| x.rows as usize)
                    .sum::<usize>()
                    * ds_cnt
            })
            .collect();
        let values = &mut self.values;
        self.header
            .apply(u.time, &vals, &u.exact, &mut |rra, row, vals| {
                let at = offsets[rra] + row as usize * ds_cnt;
                values[at..at + ds_cnt].copy_from_slice(vals);
            })
    }

    /// Fetches consolidated rows like `rrdtool fetch FILE CF --start S --end E --resolution R`.
    pub fn fetch(&self, cf: Cf, start: i64, end: i64, resolution: u64) -> Result<Fetched> {
        let plan = self.header.plan_fetch(cf, start, end, resolution)?;
        let ds_cnt = self.header.ds.len();
        let base: usize = self.header.rra[..plan.rra]
            .iter()
            .map(|x| x.rows as usize)
            .sum::<usize>()
            * ds_cnt;
        let rows = plan
            .rows
            .iter()
            .map(|r| match r {
                Some(row) => {
                    let at = base + *row as usize * ds_cnt;
                    self.values[at..at + ds_cnt].to_vec()
                }
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

    /// `rrdtool info` fields, in rrdtool's order (without `filename`).
    pub fn info(&self) -> Vec<(String, InfoValue)> {
        self.header.info()
    }

    /// Time of the last update.
    pub fn last_update(&self) -> Timestamp {
        Timestamp {
            secs: self.header.last_up,
            usec: self.header.last_up_usec,
        }
    }

    /// Base step in seconds.
    pub fn step(&self) -> u64 {
        self.header.step
    }

    /// Data source definitions.
    pub fn ds(&self) -> &[DsDef] {
        &self.header.ds
    }

    /// Archive definitions.
    pub fn rra(&self) -> &[RraDef] {
        &self.header.rra
    }

    /// Index of the most recently written row of each RRA.
    pub fn cur_rows(&self) -> &[u64] {
        &self.header.cur_row
    }

    /// Values of one RRA, oldest row first, each row one value per DS.
    pub fn rra_rows(&self, rra: usize) -> Vec<Vec<f64>> {
        let ds_cnt = self.header.ds.len();
        let Some(def) = self.header.rra.get(rra) else {
            return Vec::new();
        };
        let base: usize = self.header.rra[..rra]
            .iter()
            .map(|x| x.rows as usize)
            .sum::<usize>()
            * ds_cnt;
        (1..=def.rows)
            .map(|k| {
                let row = ((self.header.cur_row[rra] + k) % def.rows) as usize;
                let at = base + row * ds_cnt;
                self.values[at..at + ds_cnt].to_vec()
            })
            .collect()
    }
}

/// One `rrdtool info` value.
#[derive(Debug, Clone, PartialEq)]
pub enum InfoValue {
    /// A number printed as `%0.10e` (or `NaN`).
    Val(f64),
    /// A count printed as `%lu`.
    Cnt(u64),
    /// A string printed quoted.
    Str(String),
}

impl Header {
    pub(crate) fn info(&self) -> Vec<(String, InfoValue)> {
        use InfoValue::*;
        let mut v = vec![
            (
                "rrd_version".to_string(),
                Str(crate::format::VERSION.to_string()),
            ),
            ("step".to_string(), Cnt(self.step)),
            ("last_update".to_string(), Cnt(self.last_up as u64)),
            ("header_size".to_string(), Cnt(self.header_len() as u64)),
        ];
        for (i, d) in self.ds.iter().enumerate() {
            let k = |f: &str| format!("ds[{}].{f}", d.name);
            let p = &self.pdp[i];
            v.push((k("index"), Cnt(i as u64)));
            v.push((k("type"), Str(d.kind.as_str().to_string())));
            v.push((k("minimal_heartbeat"), Cnt(d.heartbeat)));
            v.push((k("min"), Val(d.min)));
            v.push((k("max"), Val(d.max)));
            v.push((k("last_ds"), Str(p.last_ds_str())));
            v.push((k("value"), Val(p.val())));
            v.push((k("unknown_sec"), Cnt(p.scratch[PDP_UNKN_SEC_CNT])));
        }
        for (i, r) in self.rra.iter().enumerate() {
            v.push((format!("rra[{i}].cf"), Str(r.cf.as_str().to_string())));
            v.push((format!("rra[{i}].rows"), Cnt(r.rows)));
            v.push((format!("rra[{i}].cur_row"), Cnt(self.cur_row[i])));
            v.push((format!("rra[{i}].pdp_per_row"), Cnt(r.pdp_per_row)));
            v.push((format!("rra[{i}].xff"), Val(r.xff)));
            for d in 0..self.ds.len() {
                let c = &self.cdp[i * self.ds.len() + d];
                v.push((format!("rra[{i}].cdp_prep[{d}].value"), Val(c.get(CDP_VAL))));
                v.push((
                    format!("rra[{i}].cdp_prep[{d}].unknown_datapoints"),
                    Cnt(c.scratch[CDP_UNKN_PDP_CNT]),
                ));
            }
        }
        v
    }
}
