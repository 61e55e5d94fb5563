//! Text forms of the apimachinery types whose JSON is not their protobuf
//! structure: `metav1.Time` / `MicroTime` (RFC 3339 in UTC) and
//! `metav1.Duration` (Go's `time.Duration` string), plus JSON numbers for
//! doubles the way Go prints them.

use serde_json::{Number, Value};

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
/// Works in 400-year eras so that it is exact for any `i64` day count in range.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) -> days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats a Unix time as RFC 3339 in UTC, with `micros` fractional digits
/// when given (MicroTime) or none (Time). `None` when the year is outside
/// 0..=9999, which Go's JSON encoder refuses too.
pub(crate) fn format_time(seconds: i64, nanos: i32, micros: bool) -> Option<String> {
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let secs_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if micros {
        let micro = nanos.clamp(0, 999_999_999) / 1000;
        out.push_str(&format!(".{micro:06}"));
    }
    out.push('Z');
    Some(out)
}

/// Parses RFC 3339 (any offset, optional fraction) into Unix (seconds, nanos).
pub(crate) fn parse_time(text: &str) -> Option<(i64, i32)> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = text.get(start..pos)?;
        if digits.is_empty() {
            return None;
        }
        let mut padded: String = digits.chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
    }
    let offset = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let minutes = num(pos + 1..pos + 3)? * 60 + num(pos + 4..pos + 6)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
    Some((seconds, nanos as i32))
}

/// Formats nanoseconds as Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    // Below one second Go switches to the largest unit that keeps a non-zero integer part.
    if u < 1_000_000_000 {
        let (div, digits, unit) = if u < 1_000 {
            (1, 0, "ns")
        } else if u < 1_000_000 {
            (1_000, 3, "µs")
        } else {
            (1_000_000, 6, "ms")
        };
        return format!("{sign}{}{unit}", with_fraction(u / div, u % div, digits));
    }
    let total_secs = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, total_secs / 60 % 60, total_secs % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&with_fraction(s, frac, 9));
    out.push('s');
    out
}

/// `whole.fraction` with the fraction's `digits` digits, trailing zeros (and a bare dot) dropped.
fn with_fraction(whole: u64, fraction: u64, digits: usize) -> String {
    if fraction == 0 || digits == 0 {
        return whole.to_string();
    }
    let frac = format!("{fraction:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Parses Go's duration syntax (`1h30m`, `1.5s`, `300ms`, `-2m`) into nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

/// A double as Go's JSON encoder prints it: integral values without `.0`,
/// non-finite values (which Go refuses) as `null`.
pub(crate) fn double_value(value: f64) -> Value {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        return Value::Number(Number::from(value as i64));
    }
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(format_time(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_700_000_000, 5_000, false).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_time(1_700_000_000, 123_456_789, true).unwrap(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            format_time(951_782_400, 0, false).unwrap(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            format_time(-62_135_596_800, 0, false).unwrap(),
            "0001-01-01T00:00:00Z"
        );
        assert!(format_time(i64::MAX, 0, false).is_none());
        assert!(format_time(i64::MIN, 0, false).is_none());
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some((951_782_400, 0)));
        assert_eq!(parse_time("not a time at all!!"), None);
        assert_eq!(parse_time("2023-11-14T22:13:20"), None);
    }

    #[test]
    fn durations_match_go() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_duration(90_500_000_000), "1m30.5s");
        assert_eq!(format_duration(1_500_000), "1.5ms");
        assert_eq!(format_duration(1_500), "1.5µs");
        assert_eq!(format_duration(12), "12ns");
        assert_eq!(format_duration(-5_000_000_000), "-5s");
        assert_eq!(format_duration(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(parse_duration("1h0m0s"), Some(3_600_000_000_000));
        assert_eq!(parse_duration("1m30.5s"), Some(90_500_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("-2m"), Some(-120_000_000_000));
        assert_eq!(parse_duration("5 minutes"), None);
    }

    #[test]
    fn doubles_print_like_go() {
        assert_eq!(double_value(3.0).to_string(), "3");
        assert_eq!(double_value(0.5).to_string(), "0.5");
        assert_eq!(double_value(f64::NAN), Value::Null);
    }
}
