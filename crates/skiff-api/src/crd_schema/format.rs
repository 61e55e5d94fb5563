//! String `format`s that upstream checks on custom resources.
//!
//! Upstream strips every format outside a fixed list before validating (so `int32`,
//! `int64`, `double`, ... constrain nothing) and checks the rest with go-openapi's `strfmt`
//! registry. The checks here follow those definitions, a little leniently where upstream
//! defers to Go parsers (URIs, e-mail addresses, durations).

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;

/// Formats upstream keeps (names compared without `-`, as go-openapi normalizes them).
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// Whether upstream validates this format (others are ignored).
pub(super) fn is_supported(format: &str) -> bool {
    !format.is_empty() && SUPPORTED.contains(&normalize(format).as_str())
}

/// Whether `s` is valid for a supported `format` (unsupported formats accept anything).
pub(super) fn is_valid(format: &str, s: &str) -> bool {
    match normalize(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_uri(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => s.parse::<IpAddr>().is_ok() && s.contains('.'),
        "ipv6" => s.parse::<IpAddr>().is_ok() && s.contains(':'),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => uuid_re(0).is_match(s),
        "uuid3" => uuid_re(3).is_match(s),
        "uuid4" => uuid_re(4).is_match(s),
        "uuid5" => uuid_re(5).is_match(s),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => cached(&SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$").is_match(s),
        "hexcolor" => cached(&HEX_COLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$").is_match(s),
        "rgbcolor" => is_rgb_color(s),
        "byte" => is_base64(s),
        "date" => is_date(s),
        "duration" => is_duration(s),
        "datetime" => is_date_time(s),
        _ => true,
    }
}

static SSN: OnceLock<Regex> = OnceLock::new();
static HEX_COLOR: OnceLock<Regex> = OnceLock::new();
static UUIDS: [OnceLock<Regex>; 4] = [
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
];

/// Compiles a fixed, known-good pattern once.
fn cached(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in regex: {e}")))
}

/// strfmt's UUID patterns: hex digits in 8-4-4-4-12 groups, hyphens optional, any case;
/// versions 3, 4 and 5 pin the version nibble (and 4/5 the variant).
fn uuid_re(version: u8) -> &'static Regex {
    let (slot, pattern) = match version {
        3 => (
            1,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
        ),
        4 => (
            2,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
        ),
        5 => (
            3,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
        ),
        _ => (
            0,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
        ),
    };
    cached(&UUIDS[slot], pattern)
}

/// Go's `url.ParseRequestURI`: an absolute URI (`scheme:...`) or an absolute path, without
/// spaces or control characters.
fn is_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// `local@domain` (optionally inside `Name <...>`), as `net/mail.ParseAddress` accepts.
fn is_email(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => &inner[i + 1..],
        _ => s,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !addr.chars().any(char::is_whitespace)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// RFC 1034 host names: dot-separated labels of letters, digits and inner hyphens, each at
/// most 63 characters, 255 in all (strfmt also allows non-ASCII letters).
fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    s.split('.').all(|label| {
        let ok_char = |c: char| c.is_alphanumeric() || c == '-';
        !label.is_empty()
            && label.chars().count() <= 63
            && label.chars().all(ok_char)
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx...`/`xx-xx...`, or dotted groups of
/// four hex digits.
fn is_mac(s: &str) -> bool {
    let octets_ok = |n: usize| n == 6 || n == 8 || n == 20;
    for sep in [':', '-'] {
        if s.contains(sep) {
            let groups: Vec<&str> = s.split(sep).collect();
            return octets_ok(groups.len())
                && groups
                    .iter()
                    .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let groups: Vec<&str> = s.split('.').collect();
    octets_ok(groups.len() * 2)
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// ISBN digits with `-` and spaces removed.
fn isbn_digits(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != '-' && *c != ' ').collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10 {
        return false;
    }
    let mut sum = 0;
    for (i, c) in d.iter().enumerate() {
        let v = match c {
            '0'..='9' => *c as u32 - '0' as u32,
            'X' | 'x' if i == 9 => 10,
            _ => return false,
        };
        sum += v * (10 - i as u32);
    }
    sum % 11 == 0
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 || !d.iter().all(char::is_ascii_digit) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, c)| (*c as u32 - '0' as u32) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

static CREDIT_CARD: OnceLock<Regex> = OnceLock::new();

/// strfmt's card-number pattern, applied to the digits only.
fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    cached(
        &CREDIT_CARD,
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})$",
    )
    .is_match(&digits)
}

static RGB_COLOR: OnceLock<Regex> = OnceLock::new();

fn is_rgb_color(s: &str) -> bool {
    cached(
        &RGB_COLOR,
        r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
    )
    .is_match(s)
}

/// Standard base64 with padding (Go's `base64.StdEncoding`, which skips CR and LF).
fn is_base64(s: &str) -> bool {
    let b: Vec<u8> = s.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return false;
    }
    b[..b.len() - pad]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD` with a real day of the month (Go's `time.Parse("2006-01-02")`).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (
        parse_digits(&s[0..4]),
        parse_digits(&s[5..7]),
        parse_digits(&s[8..10]),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 date-times and the variants strfmt also accepts: `T`/`t`/space separator,
/// seconds and fraction optional, zone `Z` or `±hh:mm` (or none, for local time).
fn is_date_time(s: &str) -> bool {
    if s.len() < 16 || !s.is_char_boundary(10) || !is_date(&s[..10]) {
        return false;
    }
    let sep = s.as_bytes()[10];
    if !matches!(sep, b'T' | b't' | b' ') {
        return false;
    }
    let rest = &s[11..];
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let zone_ok = match zone {
        "" | "Z" | "z" => true,
        z => {
            let b = z.as_bytes();
            b.len() == 6
                && b[3] == b':'
                && parse_digits(&z[1..3]).is_some_and(|h| h < 24)
                && parse_digits(&z[4..6]).is_some_and(|m| m < 60)
        }
    };
    let (clock, frac) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let clock_ok = match parts.as_slice() {
        [h, m] | [h, m, _] if h.len() == 2 && m.len() == 2 => {
            parse_digits(h).is_some_and(|h| h < 24)
                && parse_digits(m).is_some_and(|m| m < 60)
                && parts
                    .get(2)
                    .is_none_or(|s| s.len() == 2 && parse_digits(s).is_some_and(|s| s < 61))
        }
        _ => false,
    };
    let frac_ok = frac.is_none_or(|f| parse_digits(f).is_some() && parts.len() == 3);
    zone_ok && clock_ok && frac_ok
}

/// Go durations (`1h30m`, `-1.5s`, `300ms`) and strfmt's `<number> <unit>` form (`3 days`).
fn is_duration(s: &str) -> bool {
    is_go_duration(s) || is_unit_duration(s)
}

fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_len],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

fn is_unit_duration(s: &str) -> bool {
    let num_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if num_len == 0 {
        return false;
    }
    let unit = s[num_len..].trim_start();
    matches!(
        unit,
        "ns" | "nanosecond"
            | "nanoseconds"
            | "us"
            | "µs"
            | "microsecond"
            | "microseconds"
            | "ms"
            | "millisecond"
            | "milliseconds"
            | "s"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "m"
            | "min"
            | "mins"
            | "minute"
            | "minutes"
            | "h"
            | "hr"
            | "hrs"
            | "hour"
            | "hours"
            | "d"
            | "day"
            | "days"
            | "w"
            | "wk"
            | "wks"
            | "week"
            | "weeks"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strfmt_formats_are_supported() {
        assert!(is_supported("date-time"));
        assert!(is_supported("datetime"));
        assert!(is_supported("uuid"));
        assert!(!is_supported("int32"));
        assert!(!is_supported("int-or-string"));
        assert!(!is_supported(""));
        assert!(is_valid("int64", "anything"));
    }

    #[test]
    fn dates_and_times() {
        assert!(is_valid("date", "2024-02-29"));
        assert!(!is_valid("date", "2023-02-29"));
        assert!(!is_valid("date", "2023-13-01"));
        assert!(!is_valid("date", "20230101"));
        for ok in [
            "2024-01-02T15:04:05Z",
            "2024-01-02T15:04:05.123456789+01:00",
            "2024-01-02t15:04:05z",
            "2024-01-02T15:04",
            "2024-01-02 15:04:05",
        ] {
            assert!(is_valid("date-time", ok), "{ok}");
        }
        for bad in [
            "2024-01-02",
            "2024-01-02T25:00:00Z",
            "yesterday",
            "2024-01-02T15:04:05+0100",
        ] {
            assert!(!is_valid("date-time", bad), "{bad}");
        }
    }

    #[test]
    fn network_formats() {
        assert!(is_valid("ipv4", "10.0.0.1"));
        assert!(!is_valid("ipv4", "::1"));
        assert!(!is_valid("ipv4", "10.0.0.256"));
        assert!(is_valid("ipv6", "fe80::1"));
        assert!(!is_valid("ipv6", "10.0.0.1"));
        assert!(is_valid("cidr", "10.42.0.0/16"));
        assert!(!is_valid("cidr", "10.42.0.0/33"));
        assert!(is_valid("mac", "00:1a:2B:3c:4d:5e"));
        assert!(is_valid("mac", "0000.5e00.5301"));
        assert!(!is_valid("mac", "00:1a:2b"));
        assert!(is_valid("hostname", "api.example.com"));
        assert!(!is_valid("hostname", "-bad.example.com"));
        assert!(is_valid("uri", "https://example.com/x?y=1"));
        assert!(is_valid("uri", "/relative/path"));
        assert!(!is_valid("uri", "example.com"));
        assert!(is_valid("email", "a@example.com"));
        assert!(!is_valid("email", "not-an-email"));
    }

    #[test]
    fn identifiers_and_encodings() {
        assert!(is_valid("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_valid("uuid", "123E4567E89B12D3A456426614174000"));
        assert!(!is_valid("uuid", "123e4567"));
        assert!(is_valid("uuid4", "f47ac10b-58cc-4372-a567-0e02b2c3d479"));
        assert!(!is_valid("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_valid("byte", "aGVsbG8="));
        assert!(is_valid("byte", ""));
        assert!(!is_valid("byte", "aGVsbG8"));
        assert!(!is_valid("byte", "a$b="));
        assert!(is_valid("bsonobjectid", "507f1f77bcf86cd799439011"));
        assert!(is_valid("isbn10", "0321751043"));
        assert!(is_valid("isbn13", "978-0321751041"));
        assert!(!is_valid("isbn", "1234567890"));
        assert!(is_valid("creditcard", "4111 1111 1111 1111"));
        assert!(is_valid("ssn", "123-45-6789"));
        assert!(is_valid("hexcolor", "#fFf"));
        assert!(is_valid("rgbcolor", "rgb(255, 0, 10)"));
        assert!(!is_valid("rgbcolor", "rgb(256,0,0)"));
        assert!(is_valid("password", "anything"));
    }

    #[test]
    fn durations() {
        for ok in ["1h30m", "-1.5h", "300ms", "0", "3 days", "10s", "2 weeks"] {
            assert!(is_valid("duration", ok), "{ok}");
        }
        for bad in ["", "1x", "h", "1.2.3s", "five minutes"] {
            assert!(!is_valid("duration", bad), "{bad}");
        }
    }
}
