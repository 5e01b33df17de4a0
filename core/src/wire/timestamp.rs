//! RFC 3339 timestamps as Go's `time.Time` writes and reads them in JSON (`CreateTime`,
//! `ExpirationTime`), to and from unix milliseconds in UTC.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats unix seconds (before 1970 too) as RFC 3339 in UTC to the second
/// (`2024-01-02T03:04:05Z`), as Go prints times in x509 errors.
pub fn format_secs(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Formats unix ms as Go's RFC3339Nano in UTC (`2024-01-02T03:04:05.123Z`, trailing zeros of
/// the fraction dropped).
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let frac = ms % 1000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60);
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm` offset, optional fraction) into unix ms.
/// Times before 1970 are refused (no token expires then).
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("parsing time {s:?} as RFC 3339 failed");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let digits = |t: &&str| t.bytes().all(|b| b.is_ascii_digit());
    let num = |r: std::ops::Range<usize>| s.get(r).filter(digits).and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad);
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let f = &r[..digits];
        let padded: String = f.chars().chain(std::iter::repeat('0')).take(3).collect();
        frac_ms = padded.parse::<i64>().map_err(|_| bad())?;
        rest = &r[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && o.get(3..4) == Some(":") => {
            let part =
                |r: std::ops::Range<usize>| o.get(r).filter(digits).and_then(|t| t.parse::<u8>().ok()).ok_or_else(bad);
            let v = i64::from(part(1..3)?) * 3600 + i64::from(part(4..6)?) * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    u64::try_from(secs * 1000 + frac_ms).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0, 1_000, 1_700_000_000_123, 1_700_000_000_100, 4_102_444_800_000] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms), "{}", format_ms(ms));
        }
        assert_eq!(format_ms(1_700_000_000_100), "2023-11-14T22:13:20.1Z");
        assert_eq!(parse_ms("2023-11-14T23:13:20.1+01:00"), Ok(1_700_000_000_100));
        assert_eq!(parse_ms("2023-11-14T22:13:20.123456789Z"), Ok(1_700_000_000_123));
        assert!(parse_ms("yesterday").is_err());
        assert!(parse_ms("2023-13-14T22:13:20Z").is_err());
        // Never a panic, whatever the bytes.
        for s in [
            "2023-11-14T22:13:20+0\u{e9}00",
            "2023-11-14T22:13:20.\u{e9}Z",
            "2023-11-14T22:13:+5Z",
            "-001-11-14T22:13:20Z",
        ] {
            assert!(parse_ms(s).is_err(), "{s}");
        }
    }
}
