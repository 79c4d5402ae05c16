//! rrdtool's text output: C `printf("%0.10e")` numbers, `info` and `fetch` listings.

use crate::rrd::{Fetched, InfoValue};
use std::fmt::Write;

/// Formats like C's `printf("%.{prec}e", v)` with glibc: `1.5000000000e+00`, `-nan`, `inf`.
pub fn c_exp(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    let s = format!("{v:.prec$e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mant}e{sign}{:02}", e.abs())
        }
        None => s,
    }
}

/// `rrdtool info` text for the given fields, starting with `filename = "..."`.
pub fn info_text(filename: &str, fields: &[(String, InfoValue)]) -> String {
    let mut out = format!("filename = \"{filename}\"\n");
    for (k, v) in fields {
        let _ = match v {
            InfoValue::Val(x) if x.is_nan() => writeln!(out, "{k} = NaN"),
            InfoValue::Val(x) => writeln!(out, "{k} = {}", c_exp(*x, 10)),
            InfoValue::Cnt(c) => writeln!(out, "{k} = {c}"),
            InfoValue::Str(s) => writeln!(out, "{k} = \"{s}\""),
        };
    }
    out
}

/// `rrdtool fetch` text: a header line of names, a blank line, then `time: values`.
pub fn fetch_text(f: &Fetched) -> String {
    let mut out = String::from("           ");
    for n in &f.ds_names {
        let _ = write!(out, "{n:>20}");
    }
    out.push_str("\n\n");
    for (t, row) in f.times().zip(&f.rows) {
        let _ = write!(out, "{t:>10}:");
        for v in row {
            let _ = write!(out, " {}", c_exp(*v, 10));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_exp_matches_glibc() {
        assert_eq!(c_exp(5.0, 10), "5.0000000000e+00");
        assert_eq!(c_exp(-1.25e-7, 10), "-1.2500000000e-07");
        assert_eq!(c_exp(1e300, 10), "1.0000000000e+300");
        assert_eq!(c_exp(0.0, 10), "0.0000000000e+00");
        assert_eq!(c_exp(crate::format::DNAN, 10), "-nan");
        assert_eq!(c_exp(f64::NEG_INFINITY, 10), "-inf");
    }
}
