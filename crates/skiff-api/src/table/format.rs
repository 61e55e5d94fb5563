//! Cell formatting shared by every printer: durations, timestamps, label maps, label
//! selectors, container lists and small JSON accessors.
//!
//! The printers read objects as untyped JSON (the API server stores and serves JSON), so the
//! accessors here treat a missing or mistyped field the way a Go zero value would be treated
//! by the upstream printers: empty string, zero, empty list.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

/// Formats a duration the way upstream's `duration.HumanDuration` does: two or three
/// significant figures (`5s`, `3m2s`, `10m`, `5h3m`, `2d3h`, `400d`, `3y20d`), `0s` for up to
/// one second in the future (tolerated clock skew) and `<invalid>` beyond that.
pub fn human_duration(d: Duration) -> String {
    // Go truncates toward zero when it converts seconds to an int; `num_seconds` does too.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{}h", hours / 24, h);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{}d", hours / 24 / 365, dy);
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp (`metav1.Time` or `metav1.MicroTime`). Empty, null, unparsable
/// and Go's zero time all come back as `None`, which upstream prints as `<unknown>`.
pub(crate) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if s.is_empty() {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    // Go's zero time (0001-01-01T00:00:00Z) is how an unset time round-trips.
    if t.timestamp() == -62_135_596_800 {
        return None;
    }
    Some(t)
}

/// Formats a timestamp as `metav1.Time` marshals it: RFC 3339, UTC, whole seconds.
pub(crate) fn rfc3339(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Per-request context handed to every row function.
pub(crate) struct Ctx {
    /// The instant ages are measured against.
    pub now: DateTime<Utc>,
}

impl Ctx {
    /// Upstream's `translateTimestampSince`: human duration since `ts`, `<unknown>` when unset.
    pub fn since(&self, ts: &Value) -> String {
        match parse_time(ts) {
            Some(t) => human_duration(self.now - t),
            None => "<unknown>".to_string(),
        }
    }

    /// Human duration since an already parsed instant.
    pub fn since_time(&self, t: DateTime<Utc>) -> String {
        human_duration(self.now - t)
    }

    /// The AGE cell of an object: time since `metadata.creationTimestamp`.
    pub fn age(&self, obj: &Value) -> String {
        self.since(&obj["metadata"]["creationTimestamp"])
    }
}

/// The string at `v`, or `""` (Go's zero value) when absent or not a string.
pub(crate) fn st(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The integer at `v`, or 0 when absent. Floats are truncated as a Go int conversion would.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        _ => 0,
    }
}

/// The array at `v`, or an empty slice when absent.
pub(crate) fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The number of entries of the object at `v` (0 when absent).
pub(crate) fn map_len(v: &Value) -> usize {
    v.as_object().map(Map::len).unwrap_or(0)
}

/// `metadata.name` of an object.
pub(crate) fn name(obj: &Value) -> &str {
    st(&obj["metadata"]["name"])
}

/// True when `metadata.deletionTimestamp` is set.
pub(crate) fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// Renders an `IntOrString` (`2` or `"50%"`) as its string form.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Upstream's `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
pub(crate) fn format_labels(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, &str)> = map.iter().map(|(k, v)| (k, st(v))).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let s = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// Renders a `metav1.LabelSelector` the way upstream's `labels.Selector.String()` does after
/// `LabelSelectorAsSelector`: requirements sorted by key, values of set operators sorted.
/// Nil and empty selectors both give `""`; an unknown operator gives `None` (upstream's error).
pub(crate) fn selector_string(sel: &Value) -> Option<String> {
    if !sel.is_object() {
        return Some(String::new());
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", st(v))));
        }
    }
    for e in list(&sel["matchExpressions"]) {
        let key = st(&e["key"]);
        let mut values: Vec<&str> = list(&e["values"]).iter().map(st).collect();
        values.sort_unstable();
        let s = match st(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), s));
    }
    // Upstream sorts requirements by key only; a stable sort keeps input order for ties.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Upstream's `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty
/// and `<error>` when the selector cannot be converted.
pub(crate) fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// Upstream's `layoutContainerCells`: container names and images, each comma-joined.
pub(crate) fn container_cells(pod_spec: &Value) -> (String, String) {
    let containers = list(&pod_spec["containers"]);
    let names = containers
        .iter()
        .map(|c| st(&c["name"]))
        .collect::<Vec<_>>()
        .join(",");
    let images = containers
        .iter()
        .map(|c| st(&c["image"]))
        .collect::<Vec<_>>()
        .join(",");
    (names, images)
}

/// Joins up to `max` items and appends ` + N more...` for the rest, as several upstream
/// printers do; `empty` is returned when there is nothing to show.
pub(crate) fn list_with_more(items: &[String], max: usize, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let shown = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else {
        shown
    }
}

/// Upstream's `printBoolPtr`: `True`/`False`, `<unset>` when nil.
pub(crate) fn bool_ptr(v: &Value) -> String {
    match v.as_bool() {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

/// The condition of `kind` in a `conditions` list, if present.
pub(crate) fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    list(conditions).iter().find(|c| st(&c["type"]) == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hd(secs: i64) -> String {
        human_duration(Duration::seconds(secs))
    }

    #[test]
    fn human_duration_boundaries() {
        assert_eq!(hd(-3), "<invalid>");
        assert_eq!(hd(-2), "<invalid>");
        assert_eq!(human_duration(Duration::milliseconds(-1999)), "0s");
        assert_eq!(hd(-1), "0s");
        assert_eq!(hd(0), "0s");
        assert_eq!(hd(5), "5s");
        assert_eq!(hd(119), "119s");
        assert_eq!(hd(120), "2m");
        assert_eq!(hd(182), "3m2s");
        assert_eq!(hd(599), "9m59s");
        assert_eq!(hd(600), "10m");
        assert_eq!(hd(3 * 3600 - 1), "179m");
        assert_eq!(hd(3 * 3600), "3h");
        assert_eq!(hd(5 * 3600 + 3 * 60 + 7), "5h3m");
        assert_eq!(hd(8 * 3600 - 1), "7h59m");
        assert_eq!(hd(8 * 3600), "8h");
        assert_eq!(hd(47 * 3600 + 3599), "47h");
        assert_eq!(hd(48 * 3600), "2d");
        assert_eq!(hd(51 * 3600), "2d3h");
        assert_eq!(hd(8 * 86400 - 1), "7d23h");
        assert_eq!(hd(8 * 86400), "8d");
        assert_eq!(hd(400 * 86400), "400d");
        assert_eq!(hd(2 * 365 * 86400 - 1), "729d");
        assert_eq!(hd(2 * 365 * 86400), "2y");
        assert_eq!(hd(3 * 365 * 86400 + 20 * 86400), "3y20d");
        assert_eq!(hd(8 * 365 * 86400), "8y");
        assert_eq!(hd(20 * 365 * 86400 + 100 * 86400), "20y");
    }

    #[test]
    fn timestamps() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ctx = Ctx { now };
        assert_eq!(ctx.since(&json!("2024-01-01T00:00:00Z")), "10m");
        assert_eq!(ctx.since(&json!("2024-01-01T00:09:59.5Z")), "0s");
        assert_eq!(ctx.since(&Value::Null), "<unknown>");
        assert_eq!(ctx.since(&json!("0001-01-01T00:00:00Z")), "<unknown>");
        assert_eq!(ctx.since(&json!("2024-01-01T01:00:00Z")), "<invalid>");
        assert_eq!(rfc3339(&now), "2024-01-01T00:10:00Z");
    }

    #[test]
    fn labels_and_selectors() {
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
        let sel = json!({
            "matchLabels": {"z": "1", "app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "old", "operator": "DoesNotExist"}
            ]
        });
        assert_eq!(
            selector_string(&sel).unwrap(),
            "app=web,env notin (prod),gpu,!old,tier in (a,b),z=1"
        );
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})),
            "<error>"
        );
    }

    #[test]
    fn small_helpers() {
        let spec =
            json!({"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]});
        assert_eq!(
            container_cells(&spec),
            ("a,b".to_string(), "x:1,y".to_string())
        );
        let items: Vec<String> = ["1", "2", "3", "4", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_with_more(&items, 3, "<unset>"), "1,2,3 + 2 more...");
        assert_eq!(list_with_more(&[], 3, "<unset>"), "<unset>");
        assert_eq!(bool_ptr(&json!(false)), "False");
        assert_eq!(bool_ptr(&Value::Null), "<unset>");
        assert_eq!(int_or_string(&json!(2)), "2");
        assert_eq!(int_or_string(&json!("50%")), "50%");
        assert_eq!(int(&json!(3.9)), 3);
    }
}
