//! Cron schedules for the CronJob controller: the standard five fields (minute, hour, day of
//! month, month, day of week) with `*`, `?`, lists, ranges, steps (`*/n`, `a-b/n`, `a/n`),
//! month and weekday names, and the `@yearly`/`@monthly`/`@weekly`/`@daily`/`@hourly`
//! macros; plus [`Schedule::next_after`], which finds the next firing time in a time zone.
//!
//! Day matching follows the classic cron rule (as robfig/cron, which upstream uses): when
//! both day fields are restricted a day matches either; when one of them is a bare `*` both
//! must match.

use k8s_openapi::jiff::civil::{date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

/// Why a schedule or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The schedule does not have five fields (or a known macro).
    #[error("expected 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    /// One field could not be parsed.
    #[error("invalid {field} field {value:?}")]
    Field {
        /// Which field (minute, hour, ...).
        field: &'static str,
        /// Its text.
        value: String,
    },
    /// The time zone is unknown.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed schedule. Each field is a bit set of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month or day-of-week was a bare `*`/`?`: both day fields must then match.
    day_star: bool,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { name: "hour", min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
// 7 is accepted as Sunday, as most crons do.
const DOW: Bounds = Bounds { name: "day of week", min: 0, max: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Bounds {
    fn value(&self, s: &str) -> Option<u32> {
        if let Ok(v) = s.parse::<u32>() {
            return (self.min..=self.max).contains(&v).then_some(v);
        }
        let lower = s.to_ascii_lowercase();
        let i = self.names.iter().position(|n| *n == lower)? as u32;
        Some(if self.min == 1 { i + 1 } else { i })
    }

    /// The bit set of one field, and whether it was a bare star.
    fn parse(&self, field: &str) -> Result<(u64, bool), Error> {
        let bad = || Error::Field { field: self.name, value: field.to_string() };
        let mut bits = 0u64;
        let mut star = false;
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?)),
                None => (part, None),
            };
            let (lo, hi) = if range == "*" || range == "?" {
                if step.is_none_or(|s| s == 1) {
                    star = true;
                }
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a).ok_or_else(bad)?, self.value(b).ok_or_else(bad)?)
            } else {
                let v = self.value(range).ok_or_else(bad)?;
                // `a/n` means from a to the maximum in steps of n.
                (v, if step.is_some() { self.max } else { v })
            };
            if lo > hi {
                return Err(bad());
            }
            let step = step.unwrap_or(1);
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let expanded = match s.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(Error::FieldCount(fields.len(), s.to_string()));
        }
        let (minutes, _) = MINUTE.parse(fields[0])?;
        let (hours, _) = HOUR.parse(fields[1])?;
        let (days, dom_star) = DOM.parse(fields[2])?;
        let (months, _) = MONTH.parse(fields[3])?;
        let (mut weekdays, dow_star) = DOW.parse(fields[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Schedule { minutes, hours, days, months, weekdays, day_star: dom_star || dow_star })
    }
}

fn has(bits: u64, v: impl Into<i64>) -> bool {
    let v = v.into();
    (0..64).contains(&v) && bits & (1 << v) != 0
}

impl Schedule {
    fn day_matches(&self, d: k8s_openapi::jiff::civil::Date) -> bool {
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().to_sunday_zero_offset());
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first firing time strictly after `t`, with the fields read as wall-clock time in
    /// `tz`; None when nothing matches within five years (e.g. `0 0 30 2 *`).
    ///
    /// Wall-clock times skipped by a DST change fire at the shifted (later) instant and
    /// repeated ones fire once, at the first occurrence.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = t.to_zoned(tz.clone()).datetime();
        let mut y = local.year();
        let (mut mo, mut d, mut h, mut mi) = (local.month(), local.day(), local.hour(), local.minute() + 1);
        let limit = y + 5;
        // Each step moves to the start of the next candidate unit, so the loop visits at most
        // a few thousand positions even for sparse schedules.
        loop {
            if mi > 59 {
                mi = 0;
                h += 1;
            }
            if h > 23 {
                h = 0;
                d += 1;
            }
            if mo > 12 {
                mo = 1;
                y += 1;
            }
            if y > limit {
                return None;
            }
            let month_start = date(y, mo, 1);
            if d > month_start.days_in_month() {
                d = 1;
                mo += 1;
                continue;
            }
            if !has(self.months, mo) {
                mo += 1;
                (d, h, mi) = (1, 0, 0);
                continue;
            }
            let day = date(y, mo, d);
            if !self.day_matches(day) {
                d += 1;
                (h, mi) = (0, 0);
                continue;
            }
            if !has(self.hours, h) {
                h += 1;
                mi = 0;
                continue;
            }
            if !has(self.minutes, mi) {
                mi += 1;
                continue;
            }
            let candidate: DateTime = day.at(h, mi, 0, 0);
            if let Ok(z) = tz.to_ambiguous_zoned(candidate).compatible() {
                let ts = z.timestamp();
                if ts > t {
                    return Some(ts);
                }
            }
            mi += 1;
        }
    }
}

/// Resolve a CronJob `timeZone`: None, `UTC`, `Etc/UTC`, fixed offsets like `+05:30` or
/// `UTC-3`, and IANA names read from the system zoneinfo directory through `load`.
pub fn time_zone(name: Option<&str>, load: impl Fn(&str) -> Option<Vec<u8>>) -> Result<TimeZone, Error> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(TimeZone::UTC) };
    let bad = || Error::TimeZone(name.to_string());
    if matches!(name, "UTC" | "Etc/UTC" | "Etc/GMT" | "GMT" | "Z") {
        return Ok(TimeZone::UTC);
    }
    let offset = name.strip_prefix("UTC").or_else(|| name.strip_prefix("GMT")).unwrap_or(name);
    if let Some(sign) = offset.chars().next().filter(|c| *c == '+' || *c == '-') {
        let rest = &offset[1..];
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 14 || m > 59 {
            return Err(bad());
        }
        let secs = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
        let off = k8s_openapi::jiff::tz::Offset::from_seconds(secs).map_err(|_| bad())?;
        return Ok(TimeZone::fixed(off));
    }
    // Refuse anything that could escape the zoneinfo directory.
    if name.starts_with('/') || name.split('/').any(|p| p == ".." || p == "." || p.is_empty()) {
        return Err(bad());
    }
    let data = load(name).ok_or_else(bad)?;
    TimeZone::tzif(name, &data).map_err(|_| bad())
}

/// Read a time zone from the system zoneinfo directory (`/usr/share/zoneinfo`).
pub fn system_zoneinfo(name: &str) -> Option<Vec<u8>> {
    std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(sched: &str, after: &str) -> String {
        let s: Schedule = sched.parse().unwrap();
        s.next_after(ts(after), &TimeZone::UTC).map(|t| t.to_string()).unwrap_or_default()
    }

    #[test]
    fn every_minute_is_strictly_after() {
        assert_eq!(next("* * * * *", "2024-01-01T10:00:00Z"), "2024-01-01T10:01:00Z");
        assert_eq!(next("* * * * *", "2024-01-01T10:00:30Z"), "2024-01-01T10:01:00Z");
        assert_eq!(next("*/1 * * * *", "2024-12-31T23:59:00Z"), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(next("*/15 * * * *", "2024-01-01T10:16:00Z"), "2024-01-01T10:30:00Z");
        assert_eq!(next("5/20 * * * *", "2024-01-01T10:26:00Z"), "2024-01-01T10:45:00Z");
        assert_eq!(next("0 9-17/4 * * *", "2024-01-01T13:00:00Z"), "2024-01-01T17:00:00Z");
        assert_eq!(next("10,40 3 * * *", "2024-01-01T03:11:00Z"), "2024-01-01T03:40:00Z");
        assert_eq!(next("10,40 3 * * *", "2024-01-01T03:41:00Z"), "2024-01-02T03:10:00Z");
    }

    #[test]
    fn macros_and_names() {
        assert_eq!(next("@hourly", "2024-01-01T10:00:00Z"), "2024-01-01T11:00:00Z");
        assert_eq!(next("@daily", "2024-01-01T10:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@midnight", "2024-01-01T00:00:00Z"), "2024-01-02T00:00:00Z");
        // 2024-01-01 is a Monday.
        assert_eq!(next("@weekly", "2024-01-01T10:00:00Z"), "2024-01-07T00:00:00Z");
        assert_eq!(next("@monthly", "2024-01-15T00:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2024-01-15T00:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("0 12 * JAN-mar MON-FRI", "2024-03-29T13:00:00Z"), "2025-01-01T12:00:00Z");
        assert_eq!(next("0 0 * * sat,SUN", "2024-01-01T00:00:00Z"), "2024-01-06T00:00:00Z");
        assert_eq!(next("0 0 * * 7", "2024-01-01T00:00:00Z"), "2024-01-07T00:00:00Z");
    }

    #[test]
    fn day_fields_or_when_both_restricted() {
        // The 13th or any Friday: 2024-09-06 is a Friday before the 13th.
        assert_eq!(next("0 0 13 * 5", "2024-09-01T00:00:00Z"), "2024-09-06T00:00:00Z");
        // With a star in day-of-week only the 13th counts.
        assert_eq!(next("0 0 13 * *", "2024-09-01T00:00:00Z"), "2024-09-13T00:00:00Z");
        // Leap days.
        assert_eq!(next("0 0 29 2 *", "2025-01-01T00:00:00Z"), "2028-02-29T00:00:00Z");
        assert_eq!(next("0 0 30 2 *", "2025-01-01T00:00:00Z"), "");
        assert_eq!(next("0 0 31 * *", "2024-04-01T00:00:00Z"), "2024-05-31T00:00:00Z");
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        for bad in ["", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "5-1 * * * *", "x * * * *", "@every 5m"] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn time_zones() {
        let none = |_: &str| None;
        assert_eq!(time_zone(None, none).unwrap(), TimeZone::UTC);
        assert_eq!(time_zone(Some("Etc/UTC"), none).unwrap(), TimeZone::UTC);
        let plus = time_zone(Some("+05:30"), none).unwrap();
        let s: Schedule = "0 9 * * *".parse().unwrap();
        assert_eq!(s.next_after(ts("2024-01-01T00:00:00Z"), &plus).unwrap().to_string(), "2024-01-01T03:30:00Z");
        let minus = time_zone(Some("UTC-3"), none).unwrap();
        assert_eq!(s.next_after(ts("2024-01-01T00:00:00Z"), &minus).unwrap().to_string(), "2024-01-01T12:00:00Z");
        assert!(time_zone(Some("Mars/Olympus"), none).is_err());
        assert!(time_zone(Some("../../etc/passwd"), |_| Some(vec![])).is_err());
        // IANA zones come from the system database when it is installed.
        if let Ok(ny) = time_zone(Some("America/New_York"), system_zoneinfo) {
            // 2024-03-10 02:30 does not exist in New York: it fires at 03:30 EDT (07:30Z).
            let s: Schedule = "30 2 * * *".parse().unwrap();
            assert_eq!(s.next_after(ts("2024-03-10T05:00:00Z"), &ny).unwrap().to_string(), "2024-03-10T07:30:00Z");
            assert_eq!(s.next_after(ts("2024-01-10T05:00:00Z"), &ny).unwrap().to_string(), "2024-01-10T07:30:00Z");
        }
    }
}
