//! printf formatting of metric values with APR 1.7's semantics, as gmond prints VAL.
//!
//! gmond formats a numeric VAL with `apr_snprintf(sender's fmt, value)`. APR's formatter is
//! not glibc's: `%f`/`%e` digits come from a multiply-by-ten loop with half-up rounding on the
//! last digit (2.25 with `%.1f` gives "2.3"), negative zero loses its sign, NaN and infinities
//! print as "nan"/"inf" without sign, `%g` writes exponents without zero padding, the `0` flag
//! pads on the right of left-adjusted fields, and on x86_64 `%l...` means 64 bits while `%ll`
//! prints as a literal "%l". This module reproduces those results byte for byte.
//!
//! Where C would be undefined (a conversion whose type does not match the value, `*` widths,
//! several conversions for one value), we pick a deterministic answer instead of garbage:
//! integer conversions of floating values truncate toward zero (saturating), floating
//! conversions of integers convert exactly, `%s`/`%c` of a number print it in decimal or as its
//! low byte, `*` reads as 0, and every conversion consumes the same single value.

use crate::xdr::Value;

/// gmond formats VAL into a 1024-byte buffer: longer output is cut to 1023 bytes.
pub const VAL_BUFFER_LEN: usize = 1023;

/// APR's digit buffer size (NDIG): bounds digits produced by the float conversions.
const NDIG: usize = 80;
/// APR's default precision for `%f`, `%e` and `%g`.
const FLOAT_DIGITS: usize = 6;
/// APR's integer buffer size; precision of integer conversions is capped below it.
const NUM_BUF_SIZE: usize = 512;

/// Appends `value` formatted with `fmt` to `out`, as gmond 3.7.2 on x86_64 prints it.
/// String values are not formatted by gmond (it escapes them); here `%s` prints them as-is.
pub fn format_value(fmt: &[u8], value: &Value<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let arg = Arg::from(value);
    let mut i = 0;
    // APR stops writing when its buffer is full; stopping early also bounds the work.
    while i < fmt.len() && out.len() - start < VAL_BUFFER_LEN {
        if fmt[i] != b'%' {
            out.push(fmt[i]);
            i += 1;
            continue;
        }
        i += 1;
        i = conversion(fmt, i, &arg, out);
    }
    out.truncate(start + VAL_BUFFER_LEN.min(out.len() - start));
}

/// Convenience: the formatted value as a new byte vector.
pub fn format_to_vec(fmt: &[u8], value: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    format_value(fmt, value, &mut out);
    out
}

/// The single vararg gmond passes, as the C calling convention would present it.
enum Arg<'a> {
    /// An integer promoted to (unsigned) int, as the 64-bit register a `%l` conversion reads:
    /// the 32-bit value zero-extended (x86_64 writes 32-bit registers that way), so a negative
    /// int prints as `%lu` 4294967295, not 18446744073709551615 (verified against gmond).
    /// The second field is the value itself, for the deterministic stand-ins below.
    Int(u64, i64),
    /// A float promoted to double, or a double.
    Float(f64),
    Str(&'a [u8]),
}

impl<'a> From<&Value<'a>> for Arg<'a> {
    fn from(v: &Value<'a>) -> Self {
        match *v {
            Value::UShort(x) => Arg::Int(u64::from(x), i64::from(x)),
            Value::Short(x) => Arg::Int(u64::from(i32::from(x) as u32), i64::from(x)),
            Value::Int(x) => Arg::Int(u64::from(x as u32), i64::from(x)),
            Value::UInt(x) => Arg::Int(u64::from(x), i64::from(x)),
            Value::Float(x) => Arg::Float(f64::from(x)),
            Value::Double(x) => Arg::Float(x),
            Value::Str(s) => Arg::Str(s),
        }
    }
}

impl Arg<'_> {
    fn int_bits(&self) -> u64 {
        match *self {
            Arg::Int(b, _) => b,
            // Deterministic stand-in for C's undefined behaviour: truncate, saturating.
            Arg::Float(f) => (f as i64) as u64,
            Arg::Str(s) => std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(0) as u64,
        }
    }

    fn float(&self) -> f64 {
        match *self {
            Arg::Int(_, v) => v as f64,
            Arg::Float(f) => f,
            Arg::Str(s) => std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .unwrap_or(0.0),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Size {
    Int,
    Short,
    Quad,
}

/// Parses one conversion starting just after '%' and writes its output. Returns the index
/// after the conversion character.
fn conversion(fmt: &[u8], mut i: usize, arg: &Arg<'_>, out: &mut Vec<u8>) -> usize {
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let mut left = false;
    let mut print_sign = false;
    let mut print_blank = false;
    let mut alternate = false;
    let mut pad = b' ';
    let mut width: Option<usize> = None;
    let mut precision: Option<usize> = None;

    // APR skips flags, width and precision when a lowercase letter follows '%'.
    if !at(i).is_ascii_lowercase() {
        loop {
            match at(i) {
                b'-' => left = true,
                b'+' => print_sign = true,
                b'#' => alternate = true,
                b' ' => print_blank = true,
                b'0' => pad = b'0',
                _ => break,
            }
            i += 1;
        }
        if at(i).is_ascii_digit() {
            let (n, next) = decimal(fmt, i);
            width = Some(n);
            i = next;
        } else if at(i) == b'*' {
            width = Some(0);
            i += 1;
        }
        if at(i) == b'.' {
            i += 1;
            if at(i).is_ascii_digit() {
                let (n, next) = decimal(fmt, i);
                precision = Some(n);
                i = next;
            } else {
                if at(i) == b'*' {
                    i += 1;
                }
                precision = Some(0);
            }
        }
    }

    // x86_64 Linux: APR_INT64_T_FMT is "ld", so one 'l' selects 64 bits ("%lld" leaves the
    // second 'l' as the conversion character, which APR prints literally).
    let size = match at(i) {
        b'l' | b'q' => {
            i += 1;
            Size::Quad
        }
        b'h' => {
            i += 1;
            Size::Short
        }
        _ => Size::Int,
    };

    let conv = at(i);
    if conv == 0 {
        // A '%' (plus modifiers) at the very end prints nothing.
        return i;
    }
    i += 1;

    let mut s: Vec<u8> = Vec::new();
    let mut prefix: Option<u8> = None;
    let mut literal = false; // APR's char_buf/"bogus" outputs take no prefix
    let bits = arg.int_bits();
    match conv {
        b'u' => {
            let v = match size {
                Size::Quad => bits,
                Size::Short => u64::from(bits as u16),
                Size::Int => u64::from(bits as u32),
            };
            s = v.to_string().into_bytes();
            fix_precision(&mut s, precision);
        }
        b'd' | b'i' => {
            let v: i64 = match size {
                Size::Quad => bits as i64,
                Size::Short => i64::from(bits as i16),
                Size::Int => i64::from(bits as i32),
            };
            s = v.unsigned_abs().to_string().into_bytes();
            fix_precision(&mut s, precision);
            prefix = sign_prefix(v < 0, print_sign, print_blank);
        }
        b'o' | b'x' | b'X' => {
            let v = match size {
                Size::Quad => bits,
                Size::Short => u64::from(bits as u16),
                Size::Int => u64::from(bits as u32),
            };
            s = match conv {
                b'o' => format!("{v:o}"),
                b'x' => format!("{v:x}"),
                _ => format!("{v:X}"),
            }
            .into_bytes();
            fix_precision(&mut s, precision);
            if alternate {
                if conv == b'o' && s.first() != Some(&b'0') {
                    s.insert(0, b'0');
                } else if conv != b'o' && v != 0 {
                    s.splice(0..0, [b'0', conv]);
                }
            }
        }
        b's' => {
            match *arg {
                Arg::Str(text) => {
                    // C strings end at the first NUL.
                    let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
                    let n = precision.map_or(text.len(), |p| p.min(text.len()));
                    s.extend_from_slice(&text[..n]);
                }
                Arg::Int(_, v) => s = v.to_string().into_bytes(),
                Arg::Float(f) => {
                    let mut neg = false;
                    s = conv_fp(b'f', f, false, FLOAT_DIGITS, &mut neg);
                    if neg {
                        s.insert(0, b'-');
                    }
                }
            }
            pad = b' ';
        }
        b'f' | b'e' | b'E' => {
            let f = arg.float();
            if f.is_nan() {
                s.extend_from_slice(b"nan");
            } else if f.is_infinite() {
                s.extend_from_slice(b"inf");
            } else {
                let mut neg = false;
                s = conv_fp(
                    conv,
                    f,
                    alternate,
                    precision.unwrap_or(FLOAT_DIGITS),
                    &mut neg,
                );
                prefix = sign_prefix(neg, print_sign, print_blank);
            }
        }
        b'g' | b'G' => {
            let p = match precision {
                None => FLOAT_DIGITS,
                Some(0) => 1,
                Some(p) => p,
            };
            s = gcvt(arg.float(), p, alternate);
            if s.first() == Some(&b'-') {
                s.remove(0);
                prefix = Some(b'-');
            } else {
                prefix = sign_prefix(false, print_sign, print_blank);
            }
            if alternate && !s.contains(&b'.') {
                s.push(b'.');
            }
            if conv == b'G' {
                if let Some(e) = s.iter_mut().find(|c| **c == b'e') {
                    *e = b'E';
                }
            }
        }
        b'c' => {
            s.push(bits as u8);
            pad = b' ';
            literal = true;
        }
        b'%' => {
            s.push(b'%');
            pad = b' ';
            literal = true;
        }
        b'n' => return i,
        b'p' => {
            // APR's extension: "%pp" is a pointer in hex; other "%pX" forms need pointers to
            // APR structures we never have, so they print APR's own fallback text.
            let sub = at(i);
            if sub == 0 {
                return i;
            }
            i += 1;
            if sub == b'p' {
                s = format!("{bits:x}").into_bytes();
            } else {
                s.extend_from_slice(b"bogus %p");
                literal = true;
            }
            pad = b' ';
        }
        other => {
            s.extend_from_slice(&[b'%', other]);
            pad = b' ';
            literal = true;
        }
    }

    if let (Some(p), false) = (prefix, literal) {
        s.insert(0, p);
    }
    let mut body: &[u8] = &s;
    if let Some(w) = width {
        if !left && w > body.len() {
            let mut w = w;
            if pad == b'0' && prefix.is_some() && !literal {
                out.push(body[0]);
                body = &body[1..];
                w -= 1;
            }
            out.extend(std::iter::repeat_n(
                pad,
                (w - body.len()).min(VAL_BUFFER_LEN),
            ));
        }
    }
    out.extend_from_slice(body);
    if let Some(w) = width {
        if left && w > body.len() {
            out.extend(std::iter::repeat_n(
                pad,
                (w - body.len()).min(VAL_BUFFER_LEN),
            ));
        }
    }
    i
}

fn decimal(fmt: &[u8], mut i: usize) -> (usize, usize) {
    let mut n: usize = 0;
    while let Some(d) = fmt.get(i).filter(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(usize::from(d - b'0'));
        i += 1;
    }
    (n, i)
}

fn sign_prefix(negative: bool, print_sign: bool, print_blank: bool) -> Option<u8> {
    if negative {
        Some(b'-')
    } else if print_sign {
        Some(b'+')
    } else if print_blank {
        Some(b' ')
    } else {
        None
    }
}

/// Integer precision: left-pad with zeros to `precision` digits (capped like APR's buffer).
fn fix_precision(s: &mut Vec<u8>, precision: Option<usize>) {
    if let Some(p) = precision {
        let p = p.min(NUM_BUF_SIZE - 1);
        if s.len() < p {
            let zeros = p - s.len();
            s.splice(0..0, std::iter::repeat_n(b'0', zeros));
        }
    }
}

/// Splits into fractional and integral parts, like C's modf.
fn modf(x: f64) -> (f64, f64) {
    let int = x.trunc();
    let frac = if x.is_infinite() { 0.0 } else { x - int };
    (frac, int)
}

/// The digits of `arg` as APR's ecvt (`eflag`: `ndigits` significant digits) or fcvt
/// (`ndigits` after the point) produce them: returns (digits, decimal point position,
/// negative). Digits come from repeated multiplication by ten, then the digit after the last
/// kept one is rounded half up.
fn cvt(arg: f64, ndigits: usize, eflag: bool) -> (Vec<u8>, i32, bool) {
    let mut buf = [0u8; NDIG];
    let ndigits = ndigits.min(NDIG - 2) as isize;
    let mut r2: i32 = 0;
    let mut negative = false;
    let mut arg = arg;
    // `arg < 0` is false for -0.0 and NaN: neither gets a sign.
    if arg < 0.0 {
        negative = true;
        arg = -arg;
    }
    let (frac, mut fi) = modf(arg);
    arg = frac;
    let mut p: usize = 0;
    if fi != 0.0 {
        // Integer digits, least significant first, into the top of the buffer.
        let mut p1 = NDIG;
        while p1 > 0 && fi != 0.0 {
            let (fj, next) = modf(fi / 10.0);
            fi = next;
            p1 -= 1;
            // APR adds .03 to absorb the error of the division before truncating.
            buf[p1] = (((fj + 0.03) * 10.0) as i32).wrapping_add(i32::from(b'0')) as u8;
            r2 += 1;
        }
        while p1 < NDIG {
            buf[p] = buf[p1];
            p += 1;
            p1 += 1;
        }
    } else if arg > 0.0 {
        loop {
            let fj = arg * 10.0;
            if fj >= 1.0 {
                break;
            }
            arg = fj;
            r2 -= 1;
        }
    }
    let mut p1: isize = ndigits;
    if !eflag {
        p1 += r2 as isize;
    }
    if p1 < 0 {
        return (Vec::new(), -(ndigits as i32), negative);
    }
    let mut decpt = r2;
    let p1u = p1 as usize;
    while p <= p1u && p < NDIG {
        arg *= 10.0;
        let (f, d) = modf(arg);
        arg = f;
        buf[p] = (d as i32).wrapping_add(i32::from(b'0')) as u8;
        p += 1;
    }
    if p1u >= NDIG {
        let end = buf[..NDIG - 1]
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(NDIG - 1);
        return (buf[..end].to_vec(), decpt, negative);
    }
    let mut end = p1u;
    let mut q = p1u;
    buf[q] = buf[q].wrapping_add(5);
    while buf[q] > b'9' {
        buf[q] = b'0';
        if q > 0 {
            q -= 1;
            buf[q] = buf[q].wrapping_add(1);
        } else {
            buf[q] = b'1';
            decpt += 1;
            if !eflag {
                if end > 0 {
                    buf[end] = b'0';
                }
                end += 1;
            }
        }
    }
    (buf[..end.min(NDIG)].to_vec(), decpt, negative)
}

/// `%f`, `%e`, `%E` of a finite number: the digits and point (sign returned separately).
fn conv_fp(format: u8, num: f64, add_dp: bool, precision: usize, negative: &mut bool) -> Vec<u8> {
    let (digits, mut decpt, neg) = if format == b'f' {
        cvt(num, precision, false)
    } else {
        cvt(num, precision.saturating_add(1), true)
    };
    *negative = neg;
    let mut s = Vec::with_capacity(digits.len() + 8);
    let mut d = digits.iter().copied();
    if format == b'f' {
        if decpt <= 0 {
            s.push(b'0');
            if precision > 0 {
                s.push(b'.');
                while decpt < 0 {
                    s.push(b'0');
                    decpt += 1;
                }
            } else if add_dp {
                s.push(b'.');
            }
        } else {
            for _ in 0..decpt {
                // APR copies exactly decpt digit slots; fcvt always produced them.
                s.push(d.next().unwrap_or(b'0'));
            }
            if precision > 0 || add_dp {
                s.push(b'.');
            }
        }
    } else {
        s.push(d.next().unwrap_or(b'0'));
        if precision > 0 || add_dp {
            s.push(b'.');
        }
    }
    s.extend(d);
    if format != b'f' {
        s.push(format);
        let e = decpt - 1;
        if e != 0 {
            s.push(if e < 0 { b'-' } else { b'+' });
            let mag = e.unsigned_abs().to_string();
            if mag.len() == 1 {
                s.push(b'0');
            }
            s.extend_from_slice(mag.as_bytes());
        } else {
            s.extend_from_slice(b"+00");
        }
    }
    s
}

/// `%g`: APR's gcvt. Shortest of fixed and exponent notation, trailing zeros removed,
/// exponent printed with as many digits as it needs ("1.5e-5", "1e+100").
fn gcvt(number: f64, ndigit: usize, altform: bool) -> Vec<u8> {
    // APR's buffer holds NDIG digits; larger precisions would read past it.
    let mut ndigit = ndigit.min(NDIG - 2);
    let (digits, mut decpt, negative) = cvt(number, ndigit, true);
    let digit = |k: usize| digits.get(k).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(ndigit + 8);
    if negative {
        out.push(b'-');
    }
    let mut k = ndigit.saturating_sub(1);
    while k > 0 && digit(k) == b'0' {
        ndigit -= 1;
        k -= 1;
    }
    let nd = ndigit as i32;
    let mut next = 0usize;
    if (decpt >= 0 && decpt - nd > 4) || decpt < -3 {
        decpt -= 1;
        out.push(digit(next));
        next += 1;
        out.push(b'.');
        for _ in 1..ndigit {
            out.push(digit(next));
            next += 1;
        }
        out.push(b'e');
        if decpt < 0 {
            decpt = -decpt;
            out.push(b'-');
        } else {
            out.push(b'+');
        }
        if decpt / 100 > 0 {
            out.push((decpt / 100) as u8 + b'0');
        }
        if decpt / 10 > 0 {
            out.push(((decpt % 100) / 10) as u8 + b'0');
        }
        out.push((decpt % 10) as u8 + b'0');
    } else {
        if decpt <= 0 {
            if digit(0) != b'0' {
                out.push(b'.');
            }
            while decpt < 0 {
                decpt += 1;
                out.push(b'0');
            }
        }
        for i in 1..=nd {
            out.push(digit(next));
            next += 1;
            if i == decpt {
                out.push(b'.');
            }
        }
        if nd < decpt {
            out.resize(out.len() + (decpt - nd) as usize, b'0');
            out.push(b'.');
        }
    }
    if out.last() == Some(&b'.') && !altform {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, v: Value<'_>) -> String {
        String::from_utf8_lossy(&format_to_vec(fmt.as_bytes(), &v)).into_owned()
    }

    #[test]
    fn half_up_rounding() {
        assert_eq!(f("%.1f", Value::Double(2.25)), "2.3");
        assert_eq!(f("%.1f", Value::Double(-2.25)), "-2.3");
        assert_eq!(f("%.1f", Value::Double(0.05)), "0.1");
        assert_eq!(f("%.0f", Value::Double(0.5)), "1");
        assert_eq!(f("%.0f", Value::Double(2.5)), "3");
        // 9.995 is 9.99499.. in binary: the digit loop sees a 4.
        assert_eq!(f("%.2f", Value::Double(9.995)), "9.99");
    }

    #[test]
    fn special_values() {
        assert_eq!(f("%f", Value::Double(-0.0)), "0.000000");
        assert_eq!(f("%f", Value::Double(f64::NAN)), "nan");
        assert_eq!(f("%f", Value::Double(f64::NEG_INFINITY)), "inf");
        assert_eq!(f("%.2f", Value::Float(f32::INFINITY)), "inf");
        // APR's %g has no NaN/Inf check: its digit buffer fills up instead.
        assert_eq!(f("%g", Value::Double(f64::NAN)), "0.e+79");
        assert_eq!(f("%g", Value::Double(1e100)), "0.e+79");
    }

    #[test]
    fn g_exponents_are_not_padded() {
        assert_eq!(f("%g", Value::Double(1.2345e-5)), "1.2345e-5");
        assert_eq!(f("%g", Value::Double(100000.0)), "1.e+5");
        assert_eq!(f("%g", Value::Double(0.5)), ".5");
        assert_eq!(f("%G", Value::Double(1e-10)), "1.E-10");
        assert_eq!(f("%e", Value::Double(12345.678)), "1.234568e+04");
        assert_eq!(f("%E", Value::Double(0.0)), "0.000000E-01");
    }

    #[test]
    fn integer_conversions_and_modifiers() {
        assert_eq!(f("%hu", Value::Short(-2)), "65534");
        assert_eq!(f("%u", Value::Short(-2)), "4294967294");
        assert_eq!(f("%d", Value::UInt(u32::MAX)), "-1");
        assert_eq!(f("%lld", Value::UInt(7)), "%ld");
        assert_eq!(f("%hhu", Value::UInt(7)), "%hu");
        assert_eq!(f("%-08u|", Value::UInt(42)), "42000000|");
        assert_eq!(f("%05d", Value::Int(-42)), "-0042");
        assert_eq!(f("%#x", Value::UInt(255)), "0xff");
        assert_eq!(f("%%%u", Value::UInt(5)), "%5");
        assert_eq!(f("%k", Value::UInt(5)), "%k");
        assert_eq!(f("%", Value::UInt(5)), "");
    }

    #[test]
    fn mismatched_conversions_are_deterministic() {
        assert_eq!(f("%.1f", Value::UInt(u32::MAX)), "4294967295.0");
        assert_eq!(f("%.1f", Value::Short(-3)), "-3.0");
        assert_eq!(f("%u", Value::Double(41.9)), "41");
        assert_eq!(f("%s", Value::Int(-7)), "-7");
        assert_eq!(f("%s", Value::Float(1.5)), "1.500000");
        assert_eq!(f("%s", Value::Str(b"ab\0cd")), "ab");
    }

    #[test]
    fn output_is_capped_like_gmonds_buffer() {
        let out = format_to_vec(b"%2000u", &Value::UInt(1));
        assert_eq!(out.len(), VAL_BUFFER_LEN);
        // Found by the fuzzer: absurd widths and precisions are bounded, not allocated.
        for fmt in [
            &b"%.99999999999999999999999u"[..],
            b"%99999999999999999999999u",
            b"%-99999999999999999999999.99999999999999999999f",
            b"%.99999999999999999999999g",
            b"%.99999999999999999999999s",
            b"%.99999999999999999999999e",
            b"%.18446744073709551615E",
        ] {
            assert!(format_to_vec(fmt, &Value::Double(1.5)).len() <= VAL_BUFFER_LEN);
            assert!(format_to_vec(fmt, &Value::UInt(5)).len() <= VAL_BUFFER_LEN);
        }
        let many = b"%100u".repeat(300);
        assert_eq!(format_to_vec(&many, &Value::UInt(1)).len(), VAL_BUFFER_LEN);
    }

    #[test]
    fn leading_zero_decimals() {
        assert_eq!(f("%.3f", Value::Double(0.000_4)), "0.000");
        assert_eq!(f("%.3f", Value::Double(0.0125)), "0.013");
        assert_eq!(f("%f", Value::Double(0.0)), "0.000000");
    }
}
