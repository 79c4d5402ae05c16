//! The update algorithm: readings -> primary data points (PDP) -> consolidated rows (CDP),
//! following rrdtool 1.7.2's `rrd_update.c` step by step, including its float operation
//! order, so that files updated here hold the same bits as files updated by rrdtool.

use crate::error::{Error, Result};
use crate::format::{
    Cf, DsType, Header, CDP_PRIMARY_VAL, CDP_SECONDARY_VAL, CDP_UNKN_PDP_CNT, CDP_VAL, DNAN,
    PDP_UNKN_SEC_CNT,
};

/// A point in time with microseconds, as rrdtool keeps `last_up`/`last_up_usec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Microseconds, 0..1_000_000.
    pub usec: i64,
}

impl Timestamp {
    /// A whole-second time.
    pub fn from_secs(secs: i64) -> Self {
        Timestamp { secs, usec: 0 }
    }
}

/// Receives each row an update writes: (rra index, row index, one value per DS).
pub(crate) type RowSink<'a> = dyn FnMut(usize, u64, &[f64]) + 'a;

/// Parsed numeric form of one reading, or why it has none.
enum Reading {
    Unknown,
    Text,
    Float(f64),
}

impl Header {
    /// Applies one update (already split into one string per DS; `exact` optionally holds
    /// float readings to use instead of parsing their text). Validates everything before
    /// changing anything, so an error leaves the header untouched.
    pub(crate) fn apply(
        &mut self,
        t: Timestamp,
        vals: &[&[u8]],
        exact: &[Option<f64>],
        sink: &mut RowSink<'_>,
    ) -> Result<()> {
        if vals.len() != self.ds.len() {
            return Err(Error::InvalidUpdate(format!(
                "expected {} data source readings (got {})",
                self.ds.len(),
                vals.len()
            )));
        }
        if t.secs < self.last_up || (t.secs == self.last_up && t.usec <= self.last_up_usec) {
            return Err(Error::NotAfterLastUpdate {
                time: t.secs,
                last: self.last_up,
            });
        }
        if t.secs < 0 || t.secs as u64 > crate::format::MAX_TIME {
            return Err(Error::InvalidUpdate(format!(
                "time {} out of range",
                t.secs
            )));
        }
        let mut interval =
            (t.secs - self.last_up) as f64 + ((t.usec - self.last_up_usec) as f64) / 1e6;

        // Validate and parse first (rrdtool mutates as it goes; we do not).
        let mut readings = Vec::with_capacity(vals.len());
        for (i, (d, v)) in self.ds.iter().zip(vals).enumerate() {
            let used = v.first() != Some(&b'U') && (d.heartbeat as f64) >= interval;
            if !used {
                readings.push(Reading::Unknown);
                continue;
            }
            match d.kind {
                DsType::Counter | DsType::Derive => {
                    for (i, &c) in v.iter().enumerate() {
                        if i == 0 && d.kind == DsType::Derive && c == b'-' {
                            continue;
                        }
                        if !c.is_ascii_digit() {
                            return Err(Error::InvalidUpdate(format!(
                                "not a simple {} integer: '{}'",
                                if d.kind == DsType::Derive {
                                    "signed"
                                } else {
                                    "unsigned"
                                },
                                String::from_utf8_lossy(v)
                            )));
                        }
                    }
                    readings.push(Reading::Text);
                }
                DsType::Gauge | DsType::Absolute => {
                    let x = match exact.get(i) {
                        Some(Some(x)) => *x,
                        _ => parse_double(v)?,
                    };
                    readings.push(Reading::Float(x));
                }
            }
        }

        let mut pdp_new = vec![0.0f64; self.ds.len()];
        for (i, reading) in readings.iter().enumerate() {
            let d = &self.ds[i];
            if (d.heartbeat as f64) < interval {
                self.pdp[i].set_last_ds(b"U");
            }
            let mut rate = f64::NAN;
            match reading {
                Reading::Unknown => pdp_new[i] = DNAN,
                Reading::Text => {
                    if self.pdp[i].last_ds[0] != b'U' {
                        let mut diff = rrd_diff(vals[i], &self.pdp[i].last_ds);
                        if d.kind == DsType::Counter {
                            if diff < 0.0 {
                                diff += 4294967295.0;
                            }
                            if diff < 0.0 {
                                diff += 18446744069414584320.0;
                            }
                        }
                        pdp_new[i] = diff;
                        rate = diff / interval;
                    } else {
                        pdp_new[i] = DNAN;
                    }
                }
                Reading::Float(v) => {
                    if d.kind == DsType::Absolute {
                        pdp_new[i] = *v;
                        rate = *v / interval;
                    } else {
                        pdp_new[i] = *v * interval;
                        rate = *v;
                    }
                }
            }
            if !rate.is_nan()
                && ((!d.max.is_nan() && rate > d.max) || (!d.min.is_nan() && rate < d.min))
            {
                pdp_new[i] = DNAN;
            }
            self.pdp[i].set_last_ds(vals[i]);
        }

        // calculate_elapsed_steps
        let step = self.step;
        let last_up = self.last_up as u64;
        let cur = t.secs as u64;
        let proc_pdp_st = last_up - last_up % step;
        let occu_pdp_age = cur % step;
        let occu_pdp_st = cur - occu_pdp_age;
        let (mut pre_int, post_int) = if occu_pdp_st > proc_pdp_st {
            (
                (occu_pdp_st as i64 - self.last_up) as f64 - (self.last_up_usec as f64) / 1e6,
                occu_pdp_age as f64 + (t.usec as f64) / 1e6,
            )
        } else {
            (interval, 0.0)
        };
        let mut proc_pdp_cnt = proc_pdp_st / step;
        let mut elapsed = (occu_pdp_st - proc_pdp_st) / step;

        if elapsed == 0 {
            self.simple_update(interval, &pdp_new);
        } else {
            if elapsed > 1 {
                let sec_open_pdp = (pre_int as u64) % step;
                if sec_open_pdp > 0 {
                    let mut open_new = vec![0.0; pdp_new.len()];
                    for (o, n) in open_new.iter_mut().zip(pdp_new.iter_mut()) {
                        if !n.is_nan() && interval > 0.0 {
                            *o = *n * sec_open_pdp as f64 / interval;
                            *n -= *o;
                        } else {
                            *o = DNAN;
                        }
                    }
                    let sec = sec_open_pdp as f64;
                    let pdp_temp = self.process_all_pdp_st(sec, sec, 0.0, 1, &open_new);
                    self.consolidate(1, proc_pdp_cnt, &pdp_temp, sink);
                    interval -= sec;
                    pre_int -= sec;
                    elapsed -= 1;
                    proc_pdp_cnt += 1;
                }
            }
            let pdp_temp = self.process_all_pdp_st(interval, pre_int, post_int, elapsed, &pdp_new);
            self.consolidate(elapsed, proc_pdp_cnt, &pdp_temp, sink);
        }
        self.last_up = t.secs;
        self.last_up_usec = t.usec;
        Ok(())
    }

    fn simple_update(&mut self, interval: f64, pdp_new: &[f64]) {
        for (p, &n) in self.pdp.iter_mut().zip(pdp_new) {
            if n.is_nan() {
                let u = p.scratch[PDP_UNKN_SEC_CNT];
                p.scratch[PDP_UNKN_SEC_CNT] = (u as f64 + interval.floor()) as u64;
            } else if p.val().is_nan() {
                p.set_val(n);
            } else {
                p.set_val(p.val() + n);
            }
        }
    }

    fn process_all_pdp_st(
        &mut self,
        interval: f64,
        pre_int: f64,
        post_int: f64,
        elapsed: u64,
        pdp_new: &[f64],
    ) -> Vec<f64> {
        let diff_pdp_st = elapsed.wrapping_mul(self.step);
        let mut pdp_temp = vec![0.0; pdp_new.len()];
        for (i, &n) in pdp_new.iter().enumerate() {
            let mrhb = self.ds[i].heartbeat;
            let p = &mut self.pdp[i];
            let mut pre_unknown = 0.0;
            if n.is_nan() {
                pre_unknown = pre_int;
            } else {
                if p.val().is_nan() {
                    p.set_val(0.0);
                }
                p.set_val(p.val() + n / interval * pre_int);
            }
            let unkn = p.scratch[PDP_UNKN_SEC_CNT];
            pdp_temp[i] =
                if interval > mrhb as f64 || (self.step as f64 / 2.0) < (unkn as i32) as f64 {
                    DNAN
                } else {
                    p.val() / (diff_pdp_st.wrapping_sub(unkn) as f64 - pre_unknown)
                };
            if n.is_nan() {
                p.scratch[PDP_UNKN_SEC_CNT] = post_int.floor() as u64;
                p.set_val(DNAN);
            } else {
                p.scratch[PDP_UNKN_SEC_CNT] = 0;
                p.set_val(n / interval * post_int);
            }
        }
        pdp_temp
    }

    /// update_all_cdp_prep + the 1-PDP-per-row bookkeeping + write_to_rras.
    fn consolidate(
        &mut self,
        elapsed: u64,
        proc_pdp_cnt: u64,
        pdp_temp: &[f64],
        sink: &mut RowSink<'_>,
    ) {
        let ds_cnt = self.ds.len();
        let mut row = vec![0.0; ds_cnt];
        for r in 0..self.rra.len() {
            let def = self.rra[r].clone();
            let pdp_cnt = def.pdp_per_row;
            let start_pdp_offset = pdp_cnt - proc_pdp_cnt % pdp_cnt;
            let step_cnt = if start_pdp_offset <= elapsed {
                ((elapsed - start_pdp_offset) / pdp_cnt + 1).min(def.rows)
            } else {
                0
            };
            for (d, &temp) in pdp_temp.iter().enumerate() {
                let c = &mut self.cdp[r * ds_cnt + d];
                if pdp_cnt > 1 {
                    update_cdp(
                        c,
                        def.cf,
                        temp,
                        step_cnt,
                        elapsed,
                        start_pdp_offset,
                        pdp_cnt,
                        def.xff,
                    );
                } else {
                    // reset_cdp for gaps > 2 PDPs, update_aberrant_CF for 1 or 2.
                    c.set(CDP_PRIMARY_VAL, temp);
                    if elapsed >= 2 {
                        c.set(CDP_SECONDARY_VAL, temp);
                    }
                }
            }
            for k in 0..step_cnt {
                let cur = &mut self.cur_row[r];
                *cur += 1;
                if *cur >= def.rows {
                    *cur = 0;
                }
                let idx = if k == 0 {
                    CDP_PRIMARY_VAL
                } else {
                    CDP_SECONDARY_VAL
                };
                for (d, v) in row.iter_mut().enumerate() {
                    *v = self.cdp[r * ds_cnt + d].get(idx);
                }
                sink(r, *cur, &row);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn update_cdp(
    c: &mut crate::format::CdpPrep,
    cf: Cf,
    temp: f64,
    step_cnt: u64,
    elapsed: u64,
    start_pdp_offset: u64,
    pdp_cnt: u64,
    xff: f64,
) {
    if step_cnt > 0 {
        if temp.is_nan() {
            c.scratch[CDP_UNKN_PDP_CNT] =
                c.scratch[CDP_UNKN_PDP_CNT].wrapping_add(start_pdp_offset);
            c.set(CDP_SECONDARY_VAL, DNAN);
        } else {
            c.set(CDP_SECONDARY_VAL, temp);
        }
        let unkn = c.scratch[CDP_UNKN_PDP_CNT];
        if unkn as f64 > pdp_cnt as f64 * xff {
            c.set(CDP_PRIMARY_VAL, DNAN);
        } else {
            let cdp_val = c.get(CDP_VAL);
            let primary = match cf {
                Cf::Average => {
                    let cum = if cdp_val.is_nan() { 0.0 } else { cdp_val };
                    let cur = if temp.is_nan() { 0.0 } else { temp };
                    (cum + cur * start_pdp_offset as f64) / (pdp_cnt.wrapping_sub(unkn) as f64)
                }
                Cf::Max => {
                    let cum = if cdp_val.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        cdp_val
                    };
                    let cur = if temp.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        temp
                    };
                    if cur > cum {
                        cur
                    } else {
                        cum
                    }
                }
                Cf::Min => {
                    let cum = if cdp_val.is_nan() {
                        f64::INFINITY
                    } else {
                        cdp_val
                    };
                    let cur = if temp.is_nan() { f64::INFINITY } else { temp };
                    if cur < cum {
                        cur
                    } else {
                        cum
                    }
                }
                Cf::Last => temp,
            };
            c.set(CDP_PRIMARY_VAL, primary);
        }
        let into = (elapsed - start_pdp_offset) % pdp_cnt;
        let carry = if into == 0 || temp.is_nan() {
            match cf {
                Cf::Max => f64::NEG_INFINITY,
                Cf::Min => f64::INFINITY,
                Cf::Average => 0.0,
                Cf::Last => DNAN,
            }
        } else {
            match cf {
                Cf::Average => temp * into as f64,
                _ => temp,
            }
        };
        c.set(CDP_VAL, carry);
        c.scratch[CDP_UNKN_PDP_CNT] = if temp.is_nan() { into } else { 0 };
    } else if temp.is_nan() {
        c.scratch[CDP_UNKN_PDP_CNT] = c.scratch[CDP_UNKN_PDP_CNT].wrapping_add(elapsed);
    } else {
        let cdp_val = c.get(CDP_VAL);
        let v = if cdp_val.is_nan() {
            if cf == Cf::Average {
                temp * elapsed as f64
            } else {
                temp
            }
        } else {
            match cf {
                Cf::Average => cdp_val + temp * elapsed as f64,
                Cf::Min => {
                    if temp < cdp_val {
                        temp
                    } else {
                        cdp_val
                    }
                }
                Cf::Max => {
                    if temp > cdp_val {
                        temp
                    } else {
                        cdp_val
                    }
                }
                Cf::Last => temp,
            }
        };
        c.set(CDP_VAL, v);
    }
}

/// rrdtool's own `rrd_strtod` (not C's strtod: it accumulates digits in a double and scales
/// by repeated squaring, so its rounding differs from a correctly rounded parse and must be
/// copied to get the same bits). Returns the value and the bytes consumed, or None when no
/// number was converted.
fn rrd_strtod(s: &[u8]) -> Option<(f64, usize)> {
    let mut p = 0;
    while p < s.len() && matches!(s[p], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        p += 1;
    }
    let mut negative = false;
    match s.get(p) {
        Some(b'-') => {
            negative = true;
            p += 1;
        }
        Some(b'+') => p += 1,
        _ => {}
    }
    let mut number = 0.0f64;
    let mut exponent: i64 = 0;
    let mut num_digits = 0;
    while p < s.len() && s[p].is_ascii_digit() {
        number = number * 10.0 + f64::from(s[p] - b'0');
        p += 1;
        num_digits += 1;
    }
    if s.get(p) == Some(&b'.') {
        p += 1;
        let mut num_decimals = 0;
        while p < s.len() && s[p].is_ascii_digit() {
            number = number * 10.0 + f64::from(s[p] - b'0');
            p += 1;
            num_digits += 1;
            num_decimals += 1;
        }
        exponent -= num_decimals;
    }
    if num_digits == 0 {
        return None;
    }
    if negative {
        number = -number;
    }
    if matches!(s.get(p), Some(b'e') | Some(b'E')) {
        p += 1;
        let mut neg = false;
        match s.get(p) {
            Some(b'-') => {
                neg = true;
                p += 1;
            }
            Some(b'+') => p += 1,
            _ => {}
        }
        let mut n: i64 = 0;
        while p < s.len() && s[p].is_ascii_digit() {
            n = n.saturating_mul(10).saturating_add(i64::from(s[p] - b'0'));
            p += 1;
        }
        // Saturating: a huge written exponent plus the fraction's digits must not wrap back
        // into range (found by the fuzzer once overflow checks were on).
        exponent = if neg {
            exponent.saturating_sub(n)
        } else {
            exponent.saturating_add(n)
        };
    }
    // DBL_MIN_EXP / DBL_MAX_EXP; rrdtool then leaves endptr unset: no conversion.
    if !(-1021..=1024).contains(&exponent) {
        return None;
    }
    let mut p10 = 10.0f64;
    let mut n = exponent.abs();
    while n != 0 {
        if n & 1 == 1 {
            if exponent < 0 {
                number /= p10;
            } else {
                number *= p10;
            }
        }
        n >>= 1;
        p10 *= p10;
    }
    Some((number, p))
}

/// rrdtool's `rrd_strtodbl`: the whole string must be a number, or start with
/// nan/-nan/inf/-inf when no digits were found.
pub(crate) fn parse_double(v: &[u8]) -> Result<f64> {
    let bad = || {
        Error::InvalidUpdate(format!(
            "Cannot convert '{}' to float",
            String::from_utf8_lossy(v)
        ))
    };
    match rrd_strtod(v) {
        Some((x, used)) if used == v.len() => Ok(x),
        Some(_) => Err(bad()),
        None => {
            let low = v.to_ascii_lowercase();
            if low.starts_with(b"-nan") {
                Ok(DNAN)
            } else if low.starts_with(b"nan") {
                Ok(-DNAN)
            } else if low.starts_with(b"inf") {
                Ok(f64::INFINITY)
            } else if low.starts_with(b"-inf") {
                Ok(f64::NEG_INFINITY)
            } else {
                Err(bad())
            }
        }
    }
}

/// rrdtool's `rrd_diff`: the exact difference of two decimal integer strings, turned into a
/// double by `rrd_strtod` of its digits. Mismatched signs, missing digits or more than 30
/// digits give NaN.
pub(crate) fn rrd_diff(a: &[u8], b: &[u8]) -> f64 {
    fn digits(s: &[u8]) -> (bool, &[u8]) {
        let mut neg = false;
        let mut i = 0;
        while i < s.len() && !s[i].is_ascii_digit() && s[i] != 0 {
            if s[i] == b'-' {
                neg = true;
            }
            i += 1;
        }
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        (neg, &s[start..i])
    }
    let (a_neg, a) = digits(a);
    let (b_neg, b) = digits(b);
    if a.is_empty() || b.is_empty() || a_neg != b_neg || a.len().max(b.len()) > 30 {
        return DNAN;
    }
    let val = |d: &[u8]| {
        d.iter()
            .fold(0u128, |acc, &c| acc * 10 + u128::from(c - b'0'))
    };
    let (x, y) = (val(a), val(b));
    let (mag, negative) = if x >= y {
        (x - y, false)
    } else {
        (y - x, true)
    };
    // Accumulate the digits of |a-b| the way rrd_strtod does.
    let text = mag.to_string();
    let mut r = text
        .bytes()
        .fold(0.0f64, |acc, c| acc * 10.0 + f64::from(c - b'0'));
    if negative {
        r = -r;
    }
    if a_neg {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzer find: fraction digits lower the exponent, and a written exponent of
    /// i64::MAX then overflowed; both extremes are simply out of range, as in rrdtool.
    #[test]
    fn huge_exponents_are_out_of_range_not_an_overflow() {
        assert_eq!(rrd_strtod(b"0.08E-99999999999999999999999"), None);
        assert_eq!(rrd_strtod(b"8E+99999999999999999999999"), None);
        assert!(parse_double(b"0.08E-99999999999999999999999").is_err());
    }

    #[test]
    fn rrd_diff_matches_big_integer_subtraction() {
        assert_eq!(rrd_diff(b"10", b"3"), 7.0);
        assert_eq!(rrd_diff(b"3", b"10"), -7.0);
        assert_eq!(rrd_diff(b"-5", b"-3"), -2.0);
        assert!(rrd_diff(b"-5", b"3").is_nan());
        assert!(rrd_diff(b"", b"3").is_nan());
        assert_eq!(
            rrd_diff(b"18446744073709551615", b"18446744073709551000"),
            615.0
        );
        assert!(rrd_diff(&[b'1'; 31], b"1").is_nan());
    }

    #[test]
    fn parse_double_rejects_trailing_garbage() {
        assert_eq!(parse_double(b" 1.5").unwrap(), 1.5);
        assert_eq!(parse_double(b"1e").unwrap(), 1.0);
        assert!(parse_double(b"nan").unwrap().is_nan());
        assert_eq!(parse_double(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_double(b"1e2000").is_err());
        assert!(parse_double(b"1.5x").is_err());
        assert!(parse_double(b"").is_err());
        assert!(parse_double(b"abc").is_err());
    }
}
