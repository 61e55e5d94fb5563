//! Reading and writing `metadata.managedFields`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::fieldpath::{from_fields_v1, to_fields_v1, FieldSet};

/// `operation` of entries written by server-side apply.
pub const OPERATION_APPLY: &str = "Apply";
/// `operation` of entries written by create, update and non-apply patches.
pub const OPERATION_UPDATE: &str = "Update";

/// One `managedFields` entry with its field set decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Name of the field manager (`kubectl`, `kube-controller-manager`, ...).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager used.
    pub api_version: String,
    /// RFC 3339 time of the manager's last change.
    pub time: Option<String>,
    /// Subresource written through (`status`, `scale`), if any.
    pub subresource: Option<String>,
    /// The fields this manager owns.
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Whether `other` is the same manager identity: upstream keys appliers by name and
    /// subresource, updaters additionally by apiVersion.
    pub fn same_identity(&self, other: &ManagedEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == OPERATION_APPLY || self.api_version == other.api_version)
    }

    /// How conflict messages name this manager: `"kubectl"` for appliers,
    /// `"kube-controller-manager" using apps/v1` for updaters.
    pub fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == OPERATION_UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<ManagedEntry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ManagedEntry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            fields: v.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
    }
}

/// The managed field entries of `obj` (empty when absent or unreadable).
pub fn read(obj: &Value) -> Vec<ManagedEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

/// Writes `entries` into `obj.metadata.managedFields`, dropping empty ones and ordering them
/// as upstream does (Apply before Update, then by time, manager, apiVersion).
pub fn write(obj: &mut Value, mut entries: Vec<ManagedEntry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(ManagedEntry::to_json).collect()),
        );
    }
}

/// Most `Update` entries kept per object; older ones are folded into [`ANCIENT_CHANGES`].
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// Manager name of the bucket that absorbs the oldest update entries.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Keeps the number of non-apply entries at [`MAX_UPDATE_MANAGERS`] by merging the oldest
/// ones, per apiVersion, into an `ancient-changes` entry, so objects written by many
/// different clients do not grow without bound.
pub fn cap_update_managers(entries: &mut Vec<ManagedEntry>) {
    let updaters = |entries: &[ManagedEntry]| {
        let mut idx: Vec<usize> = (0..entries.len())
            .filter(|i| entries[*i].operation != OPERATION_APPLY && !entries[*i].fields.is_empty())
            .collect();
        idx.sort_by(|a, b| {
            let (x, y) = (&entries[*a], &entries[*b]);
            x.time.cmp(&y.time).then_with(|| x.manager.cmp(&y.manager))
        });
        idx
    };
    let mut skip = 0;
    loop {
        let order = updaters(entries);
        if order.len() <= MAX_UPDATE_MANAGERS || skip >= order.len() {
            return;
        }
        let oldest = order[skip];
        let version = entries[oldest].api_version.clone();
        // Fold into an existing bucket of that version, or pair with the next-oldest entry of
        // that version; an entry with neither stays and the next-oldest is tried.
        let partner = order
            .iter()
            .copied()
            .filter(|i| *i != oldest && entries[*i].api_version == version)
            .find(|i| entries[*i].manager == ANCIENT_CHANGES)
            .or_else(|| {
                order
                    .iter()
                    .copied()
                    .find(|i| *i != oldest && entries[*i].api_version == version)
            });
        let Some(partner) = partner else {
            skip += 1;
            continue;
        };
        let absorbed = entries[oldest].clone();
        let bucket = &mut entries[partner];
        bucket.manager = ANCIENT_CHANGES.to_string();
        bucket.operation = OPERATION_UPDATE.to_string();
        bucket.subresource = None;
        bucket.fields.extend(absorbed.fields);
        bucket.time = bucket.time.clone().max(absorbed.time);
        entries.remove(oldest);
    }
}

/// The current time as `metav1.Time` renders it (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_rfc3339(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days: shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(now_rfc3339().len(), 20);
    }

    #[test]
    fn update_managers_are_capped() {
        use crate::patch::fieldpath::{Path, PathElement};
        let mut entries: Vec<ManagedEntry> = (0..12)
            .map(|i| ManagedEntry {
                manager: format!("m{i:02}"),
                operation: OPERATION_UPDATE.into(),
                api_version: "v1".into(),
                time: Some(format_rfc3339(1_000 + i)),
                subresource: None,
                fields: [Path(vec![PathElement::Field(format!("f{i}"))])].into(),
            })
            .collect();
        cap_update_managers(&mut entries);
        assert_eq!(entries.len(), MAX_UPDATE_MANAGERS);
        let bucket = entries
            .iter()
            .find(|e| e.manager == ANCIENT_CHANGES)
            .unwrap();
        assert_eq!(bucket.fields.len(), 3);
        assert!(!entries
            .iter()
            .any(|e| e.manager == "m00" || e.manager == "m01"));
    }

    #[test]
    fn entries_round_trip_and_sort() {
        let obj = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
             "time": "2024-01-02T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
             "time": "2024-01-03T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:a": {}}}}
        ]}});
        let entries = read(&obj);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].display(), "\"kubectl-edit\" using v1");
        assert_eq!(entries[1].display(), "\"kubectl\"");
        let mut out = json!({"metadata": {}});
        write(&mut out, entries);
        let mf = out["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf[0]["manager"], "kubectl");
        assert_eq!(mf[1]["manager"], "kubectl-edit");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
    }
}
