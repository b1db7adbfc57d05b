//! Low-level formatting: numbers, JSON strings, percent-encoding, dates and times,
//! simulated reports and their attachments, quantities and QC results.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::rng::Rng;
use crate::{DAY, HOUR, MIN, SEC};

const POW10: [u64; 8] = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000];

/// Pushes ASCII bytes (digits and punctuation written by this module).
#[inline]
fn push_ascii(buf: &mut String, bytes: &[u8]) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        buf.push_str(s);
    }
}

#[inline]
pub(crate) fn push_u64(buf: &mut String, n: u64) {
    push_padded(buf, n, 1);
}

/// `n` in decimal, left-padded with zeros to at least `width` (<= 20) digits.
#[inline]
pub(crate) fn push_padded(buf: &mut String, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[d..d + 2]);
    }
    if n >= 10 {
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[n as usize * 2..n as usize * 2 + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    let start = i.min(tmp.len().saturating_sub(width));
    push_ascii(buf, &tmp[start..]);
}

const DIGITS2: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
fn put_2(out: &mut [u8], n: u32) {
    let d = (n % 100) as usize * 2;
    out[..2].copy_from_slice(&DIGITS2[d..d + 2]);
}

#[inline]
fn push_2(buf: &mut String, n: u32) {
    let mut t = [0u8; 2];
    put_2(&mut t, n);
    push_ascii(buf, &t);
}

/// A finite `v` with exactly `dec` (<= 7) decimals.
pub(crate) fn push_fixed(buf: &mut String, v: f64, dec: u32) {
    let p = POW10[dec as usize];
    // Round half away from zero (the cast truncates; saturates on overflow).
    let a = (v.abs() * p as f64 + 0.5) as u64;
    if v < 0.0 && a != 0 {
        buf.push('-');
    }
    push_u64(buf, a / p);
    if dec > 0 {
        buf.push('.');
        push_padded(buf, a % p, dec as usize);
    }
}

/// A JSON string literal, escaped.
pub(crate) fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    if !s.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        buf.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => buf.push_str("\\\""),
                '\\' => buf.push_str("\\\\"),
                '\n' => buf.push_str("\\n"),
                '\r' => buf.push_str("\\r"),
                '\t' => buf.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(buf, "\\u{:04x}", c as u32);
                }
                c => buf.push(c),
            }
        }
    }
    buf.push('"');
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for Digital Link paths).
pub(crate) fn push_pct(buf: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            buf.push(b as char);
        } else {
            let _ = write!(buf, "%{b:02X}");
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of the local date into `out[..10]`.
#[inline]
fn put_date(out: &mut [u8], local_ms: i64) {
    let (y, m, d) = civil_from_days(local_ms.div_euclid(DAY));
    let y = y.clamp(0, 9999) as u32;
    put_2(&mut out[0..], y / 100);
    put_2(&mut out[2..], y);
    out[4] = b'-';
    put_2(&mut out[5..], m);
    out[7] = b'-';
    put_2(&mut out[8..], d);
}

pub(crate) fn push_date(buf: &mut String, unix_ms: i64, tz: i32) {
    let mut t = [0u8; 10];
    put_date(&mut t, unix_ms + i64::from(tz) * MIN);
    push_ascii(buf, &t);
}

pub(crate) fn push_yymmdd(buf: &mut String, unix_ms: i64, tz: i32) {
    let local = unix_ms + i64::from(tz) * MIN;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY));
    push_2(buf, (y.rem_euclid(100)) as u32);
    push_2(buf, m);
    push_2(buf, d);
}

/// RFC 3339 with the given UTC offset in minutes (`Z` for 0), milliseconds unless `secs`.
pub(crate) fn push_time(buf: &mut String, unix_ms: i64, tz: i32, secs: bool) {
    let local = unix_ms + i64::from(tz) * MIN;
    let mut t = [0u8; 29];
    put_date(&mut t, local);
    let ms = local.rem_euclid(DAY);
    t[10] = b'T';
    put_2(&mut t[11..], (ms / HOUR) as u32);
    t[13] = b':';
    put_2(&mut t[14..], (ms / MIN % 60) as u32);
    t[16] = b':';
    put_2(&mut t[17..], (ms / SEC % 60) as u32);
    let mut n = 19;
    if !secs {
        let f = (ms % SEC) as u32;
        t[19] = b'.';
        t[20] = b'0' + (f / 100) as u8;
        put_2(&mut t[21..], f);
        n = 23;
    }
    if tz == 0 {
        t[n] = b'Z';
        n += 1;
    } else {
        t[n] = if tz < 0 { b'-' } else { b'+' };
        put_2(&mut t[n + 1..], tz.unsigned_abs() / 60);
        t[n + 3] = b':';
        put_2(&mut t[n + 4..], tz.unsigned_abs() % 60);
        n += 6;
    }
    push_ascii(buf, &t[..n]);
}

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// `[{"name":..,"sha256":..,"media_type":..,"size":..}]` for a simulated report.
pub(crate) fn attachment(
    out: &mut String,
    name: &str,
    report: &str,
    media_type: &str,
    upper: bool,
) {
    let digest = Sha256::digest(report.as_bytes());
    out.clear();
    out.push_str("[{\"name\":");
    push_json_str(out, name);
    out.push_str(",\"sha256\":\"");
    for b in digest.iter() {
        let (hi, lo) = (HEX[(b >> 4) as usize], HEX[(b & 15) as usize]);
        let (hi, lo) = if upper {
            (hi.to_ascii_uppercase(), lo.to_ascii_uppercase())
        } else {
            (hi, lo)
        };
        out.push(hi as char);
        out.push(lo as char);
    }
    out.push_str("\",\"media_type\":\"");
    out.push_str(media_type);
    out.push_str("\",\"size\":");
    push_u64(out, report.len() as u64);
    out.push_str("}]");
}

/// The text of a simulated PDF report (hashed into an attachment).
pub(crate) fn report(
    out: &mut String,
    title: &str,
    code: &str,
    time: i64,
    result: &str,
    body: &str,
) {
    out.clear();
    out.push_str("%PDF-1.7\n% simulated report\n");
    out.push_str(title);
    out.push_str("\nobject: ");
    out.push_str(code);
    out.push_str("\ntime: ");
    push_time(out, time, 0, false);
    out.push_str("\nresult: ");
    out.push_str(result);
    out.push('\n');
    out.push_str(body);
    out.push_str("\n%%EOF\n");
}

pub(crate) fn quantity(out: &mut String, value: i64, unit: &str) {
    out.clear();
    out.push_str("{\"value\":");
    push_u64(out, value.max(0) as u64);
    out.push_str(",\"unit\":\"");
    out.push_str(unit);
    out.push_str("\"}");
}

pub(crate) fn person(out: &mut String, prefix: &str, code: &str, n: i64) {
    out.clear();
    out.push_str(prefix);
    out.push('-');
    out.push_str(code);
    out.push('-');
    push_padded(out, n as u64, 3);
}

pub(crate) fn qc_result(rng: &mut Rng, fail: f64, conditional: f64) -> &'static str {
    let u = rng.unit();
    if u < fail {
        "\"fail\""
    } else if u < fail + conditional {
        "\"conditional\""
    } else {
        "\"pass\""
    }
}
