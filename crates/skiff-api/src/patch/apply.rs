//! Server-side apply (`application/apply-patch+yaml`) and field ownership tracking.
//!
//! Ownership lives in `metadata.managedFields`. Every write updates it:
//! - [`apply`] merges the applied configuration into the live object honouring list types,
//!   removes fields this manager applied before but no longer does (unless someone else owns
//!   them), and refuses to change fields other managers own (409) unless forced, in which
//!   case ownership moves to the applier;
//! - [`record_update`] gives the writer of a create/update/patch ownership of every field it
//!   changed and takes it away from the previous owners, without conflicts.
//!
//! Simplifications against upstream: managed fields are not converted between API versions,
//! and maps/structs do not record their own existence (only leaves, list elements and set
//! members are owned), so `fieldsV1` of update entries lacks upstream's `.` on maps.

use serde_json::{Map, Value};

use super::fieldpath::{diff, element_key, leaves, Changes, FieldSet, Leaves, Path, PathElement};
use super::managed_fields::{
    cap_update_managers, now_rfc3339, read, write, ManagedEntry, OPERATION_APPLY, OPERATION_UPDATE,
};
use super::patch_meta::{patch_meta_for, FieldMeta, ListType, PatchMeta};

/// Manager that owns everything in an object that was never tracked before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How upstream names the owner: `"kubectl"` or `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field, rendered as upstream does: `.spec.replicas`.
    pub field: String,
}

impl Conflict {
    /// The `StatusCause.message` upstream sends for this conflict (reason
    /// `FieldManagerConflict`, field [`Conflict::field`]).
    pub fn message(&self) -> String {
        format!("conflict with {}", self.manager)
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; 409 with one cause per field. The message
    /// keeps upstream's capitalised wording because kubectl users match on it.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is malformed; 400.
    #[error("{0}")]
    BadRequest(String),
}

impl ApplyError {
    /// HTTP status for the `Status` object.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::BadRequest(_) => 400,
        }
    }

    /// `Status.reason` for the `Status` object.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::BadRequest(_) => "BadRequest",
        }
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut lines = Vec::new();
    let mut last: Option<&str> = None;
    for c in conflicts {
        if last != Some(c.manager.as_str()) {
            lines.push(format!("conflicts with {}:", c.manager));
            last = Some(&c.manager);
        }
        lines.push(format!("- {}", c.field));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Applies `applied` as manager `manager` on top of `live` (`None` when creating) and returns
/// the new object with its `managedFields` updated.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    meta: PatchMeta,
) -> Result<Value, ApplyError> {
    apply_at(live, applied, manager, force, meta, &now_rfc3339())
}

/// [`apply`] with an explicit `managedFields` timestamp, for deterministic callers and tests.
pub fn apply_at(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    meta: PatchMeta,
    now: &str,
) -> Result<Value, ApplyError> {
    let opts = ApplyOptions {
        force,
        now: Some(now.to_string()),
        ..ApplyOptions::default()
    };
    apply_with(live, applied, manager, meta, &opts)
}

/// Options of one apply request beyond the manager and the configuration.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Take ownership of conflicting fields instead of failing (`?force=true`).
    pub force: bool,
    /// Subresource the apply went through (`status`), recorded in the managed fields entry.
    pub subresource: Option<String>,
    /// Top-level fields the endpoint resets (upstream's `ResetFields`), e.g. `status` when
    /// applying to the main resource: they are dropped from the configuration, so they are
    /// neither merged nor owned.
    pub ignored_fields: Vec<String>,
    /// Timestamp for `managedFields[].time`; the current time when `None`.
    pub now: Option<String>,
}

/// [`apply`] with all options.
pub fn apply_with(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    meta: PatchMeta,
    opts: &ApplyOptions,
) -> Result<Value, ApplyError> {
    let now = opts.now.clone().unwrap_or_else(now_rfc3339);
    let now = now.as_str();
    let force = opts.force;
    let Value::Object(applied_map) = applied else {
        return Err(ApplyError::BadRequest(
            "apply patch must be a JSON or YAML object".into(),
        ));
    };
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let mut applied_map = strip_nulls(applied_map);
    for f in &opts.ignored_fields {
        applied_map.shift_remove(f);
    }
    let empty = Value::Object(Map::new());
    let live_obj = live.unwrap_or(&empty);

    let mut entries = read(live_obj);
    if live.is_some() && entries.is_empty() {
        entries.push(ManagedEntry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: OPERATION_UPDATE.into(),
            api_version: api_version_of(live_obj),
            time: Some(now.to_string()),
            subresource: None,
            fields: ownable(leaves(live_obj, &meta)).into_keys().collect(),
        });
    }
    let applied_value = Value::Object(applied_map.clone());
    let mut me = ManagedEntry {
        manager: manager.to_string(),
        operation: OPERATION_APPLY.into(),
        api_version: applied_map
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| api_version_of(live_obj)),
        time: Some(now.to_string()),
        subresource: opts.subresource.clone(),
        fields: ownable(leaves(&applied_value, &meta)).into_keys().collect(),
    };
    let previous = entries
        .iter()
        .position(|e| e.same_identity(&me))
        .map(|i| entries.remove(i));

    let mut live_clean = live_obj.clone();
    drop_managed_fields(&mut live_clean);
    let live_map = live_clean.as_object().cloned().unwrap_or_default();
    let mut merged = Value::Object(merge_object(&live_map, &applied_map, &meta));

    if let Some(prev) = &previous {
        let mut owned: FieldSet = me.fields.clone();
        for e in &entries {
            owned.extend(e.fields.iter().cloned());
        }
        for p in &prev.fields {
            let still_owned = owned.iter().any(|o| o.starts_with(p));
            if !still_owned {
                remove_path(&mut merged, &p.0, &meta);
            }
        }
    }

    let Changes { added, modified, removed } = owned_changes(&live_clean, &merged, &meta);
    let changed: FieldSet = added.union(&modified).cloned().collect();

    let mut conflicts = Vec::new();
    let mut sorted: Vec<&ManagedEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.manager, &a.operation, &a.api_version).cmp(&(&b.manager, &b.operation, &b.api_version))
    });
    for e in sorted {
        for p in e.fields.intersection(&changed) {
            conflicts.push(Conflict {
                manager: e.display(),
                field: p.to_string(),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }

    for e in &mut entries {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if let Some(prev) = previous {
        // A no-op apply keeps its old timestamp so the object stays byte-identical.
        if prev.fields == me.fields && merged == live_clean {
            me.time = prev.time;
        }
    }
    entries.push(me);
    cap_update_managers(&mut entries);
    write(&mut merged, entries);
    Ok(merged)
}

/// Records that `manager` wrote `new` over `old` (`None` on create) with a non-apply
/// operation (normally `"Update"`), updating `new`'s `metadata.managedFields`.
///
/// Patch metadata comes from `new`'s apiVersion and kind (deduced for custom resources).
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, operation: &str) {
    record_update_at(old, new, manager, operation, None, &now_rfc3339())
}

/// [`record_update`] with a subresource (`status`, `scale`) and an explicit timestamp.
pub fn record_update_at(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let api_version = api_version_of(new);
    let kind = new.get("kind").and_then(Value::as_str).unwrap_or_default();
    let meta = patch_meta_for(&api_version, kind).unwrap_or_else(PatchMeta::deduced);

    let sent = new.pointer("/metadata/managedFields").cloned();
    let old_managed = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    let mut entries = match &sent {
        // An explicitly empty list is how clients reset ownership tracking.
        Some(Value::Array(a)) if a.is_empty() => {
            write(new, Vec::new());
            return;
        }
        Some(Value::Array(_)) if sent != old_managed => read(new),
        _ => old.map(read).unwrap_or_default(),
    };

    let empty = Value::Object(Map::new());
    let Changes { added, modified, removed } = owned_changes(old.unwrap_or(&empty), new, &meta);

    let me_probe = ManagedEntry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: api_version.clone(),
        time: Some(now.to_string()),
        subresource: subresource.map(str::to_string),
        fields: FieldSet::new(),
    };
    let mut me = entries
        .iter()
        .position(|e| e.same_identity(&me_probe))
        .map(|i| entries.remove(i))
        .unwrap_or_else(|| me_probe.clone());
    for e in &mut entries {
        e.fields
            .retain(|p| !added.contains(p) && !modified.contains(p) && !removed.contains(p));
    }
    let before = me.fields.clone();
    me.fields.extend(added.iter().cloned());
    me.fields.extend(modified.iter().cloned());
    me.fields.retain(|p| !removed.contains(p));
    if me.fields != before || me.time.is_none() {
        me.time = Some(now.to_string());
    }
    entries.push(me);
    cap_update_managers(&mut entries);
    write(new, entries);
}

fn api_version_of(v: &Value) -> String {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn drop_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.shift_remove("managedFields");
    }
}

/// Drops the fields nobody owns (see [`is_ownable`]).
fn ownable(mut l: Leaves) -> Leaves {
    l.retain(|p, _| is_ownable(p));
    l
}

/// Whether anyone can own `p`: not identity, type or server-maintained metadata.
fn is_ownable(p: &Path) -> bool {
    const META: &[&str] = &[
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ];
    match p.0.as_slice() {
        [PathElement::Field(f), ..] if f == "apiVersion" || f == "kind" => false,
        [PathElement::Field(m), PathElement::Field(f), ..] if m == "metadata" => {
            !META.contains(&f.as_str())
        }
        _ => true,
    }
}

/// The ownable paths added, modified and removed going from `old` to `new`.
fn owned_changes(old: &Value, new: &Value, meta: &PatchMeta) -> Changes {
    let mut changes = diff(old, new, meta);
    for set in [&mut changes.added, &mut changes.modified, &mut changes.removed] {
        set.retain(is_ownable);
    }
    changes
}

fn strip_nulls(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), strip_value(v)))
        .collect()
}

fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_nulls(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_value).collect()),
        other => other.clone(),
    }
}

fn merge_object(
    live: &Map<String, Value>,
    applied: &Map<String, Value>,
    meta: &PatchMeta,
) -> Map<String, Value> {
    let mut out = live.clone();
    for (k, av) in applied {
        let merged = merge_field(live.get(k), av, &meta.field(k));
        out.insert(k.clone(), merged);
    }
    out
}

fn merge_field(live: Option<&Value>, applied: &Value, fm: &FieldMeta) -> Value {
    match (live, applied) {
        (Some(Value::Object(l)), Value::Object(a)) if !fm.atomic => {
            Value::Object(merge_object(l, a, &fm.meta))
        }
        (Some(Value::Array(l)), Value::Array(a)) => match &fm.list_type {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for e in a {
                    if !out.contains(e) {
                        out.push(e.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let names = keys.names();
                let (Some(lk), Some(ak)) = (
                    super::fieldpath::list_keys(l, &names),
                    super::fieldpath::list_keys(a, &names),
                ) else {
                    return applied.clone();
                };
                let mut out = l.clone();
                for (id, e) in ak.iter().zip(a) {
                    match lk.iter().position(|x| x == id) {
                        Some(i) => {
                            out[i] = match (&l[i], e) {
                                (Value::Object(lm), Value::Object(am)) => {
                                    Value::Object(merge_object(lm, am, &fm.meta))
                                }
                                _ => e.clone(),
                            }
                        }
                        None => out.push(e.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Removes the field at `path` from `v`; missing paths are ignored.
fn remove_path(v: &mut Value, path: &[PathElement], meta: &PatchMeta) {
    let [PathElement::Field(name), rest @ ..] = path else {
        return;
    };
    let Some(obj) = v.as_object_mut() else { return };
    let fm = meta.field(name);
    if rest.is_empty() {
        obj.shift_remove(name);
        return;
    }
    let Some(child) = obj.get_mut(name) else {
        return;
    };
    match (&rest[0], child) {
        (PathElement::Field(_), c @ Value::Object(_)) => remove_path(c, rest, &fm.meta),
        (elem, Value::Array(list)) => {
            let pos = list.iter().position(|e| match (elem, &fm.list_type) {
                (PathElement::Key(id), ListType::Map(keys)) => {
                    element_key(e, &keys.names()).as_deref() == Some(id.as_str())
                }
                (PathElement::Value(s), _) => &e.to_string() == s,
                _ => false,
            });
            let pos = match (elem, pos) {
                (PathElement::Index(i), _) if *i < list.len() => Some(*i),
                (_, p) => p,
            };
            let Some(i) = pos else { return };
            if rest.len() == 1 {
                list.remove(i);
            } else {
                remove_path(&mut list[i], &rest[1..], &fm.meta);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
