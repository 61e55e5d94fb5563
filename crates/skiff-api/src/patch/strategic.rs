//! Strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! Follows upstream's `strategicpatch` semantics as the API server runs them (parallel
//! deletion lists merged, unmatched nulls ignored):
//! - maps merge recursively, `null` deletes a key;
//! - lists with `patchStrategy: merge` merge element-wise by their merge key, or as a set when
//!   they hold primitives; every other list is replaced;
//! - directives: `$patch: replace|delete` in maps, `$patch: replace|delete` elements in merging
//!   lists, `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`.
//!
//! One deliberate difference: upstream copies patch values verbatim into places where the
//! original had nothing and relies on decoding into Go structs to drop leftover directive keys.
//! skiff stores JSON as is, so such values are merged into an empty value instead, which
//! processes (and removes) their directives.

use serde_json::{Map, Value};

use super::json_patch::json_equal;
use super::patch_meta::{FieldMeta, PatchMeta, PatchStrategy};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies a strategic merge patch to `doc` using the patch metadata of its kind.
///
/// Both `doc` and `patch` must be JSON objects. Errors carry upstream's classification:
/// malformed directives are [`PatchError::BadRequest`], lists of lists
/// [`PatchError::Invalid`], and the failures upstream leaves unclassified (a merging-list
/// element without its merge key, an unknown `$patch` value) [`PatchError::Internal`].
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    meta: PatchMeta,
) -> Result<Value, PatchError> {
    let original = doc
        .as_object()
        .ok_or_else(|| PatchError::bad("invalid JSON document"))?;
    let patch = patch
        .as_object()
        .ok_or_else(|| PatchError::bad("strategic merge patch must be a JSON object"))?;
    merge_map(original.clone(), patch.clone(), &meta).map(Value::Object)
}

fn err_bad_patch_type(directive: &Value, m: &Map<String, Value>) -> PatchError {
    let d = directive
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| directive.to_string());
    PatchError::internal(format!(
        "unknown patch type: {d} in map: {}",
        Value::Object(m.clone())
    ))
}

fn err_no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::internal(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(m.clone())
    ))
}

fn err_retain_keys() -> PatchError {
    PatchError::bad("invalid patch format of retainKeys")
}

fn err_set_element_order() -> PatchError {
    PatchError::bad("invalid patch format of setElementOrder list")
}

fn err_primitive_list() -> PatchError {
    PatchError::bad("invalid patch format of primitive list")
}

/// Strips `prefix/` from a directive key; the prefix must be followed by exactly one `/`.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = key.split_once('/')?;
    (head == prefix).then_some(rest)
}

/// Merges `patch` into `original`, the heart of strategic merge patch.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    meta: &PatchMeta,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // Only the directive keys need processing; there is nothing to merge with.
                merge_map(Map::new(), patch, meta)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(err_bad_patch_type(directive, &patch)),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, meta)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field =
                directive_field(&key, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(err_primitive_list)?;
            (field.to_string(), true)
        } else if key.starts_with('$') {
            // Unknown directives would be dropped by upstream's typed decoding.
            continue;
        } else {
            (key, false)
        };

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let field = meta.field(&key);
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list {
                let fresh = fresh_value(patch_value, &field)?;
                original.insert(key, fresh);
            }
            continue;
        };

        let merged = match (std::mem::take(current), patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if field.strategy == PatchStrategy::Replace {
                    Value::Object(merge_map(Map::new(), p, &field.meta)?)
                } else {
                    Value::Object(merge_map(o, p, &field.meta)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                Value::Array(merge_list_field(o, p, &field, is_delete_list)?)
            }
            (_, p) => fresh_value(p, &field)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// The value a patch puts where the original had nothing (or something of another type).
fn fresh_value(patch_value: Value, field: &FieldMeta) -> Result<Value, PatchError> {
    match patch_value {
        Value::Object(p) => Ok(Value::Object(merge_map(Map::new(), p, &field.meta)?)),
        Value::Array(p) if field.strategy.merges_lists() => {
            Ok(Value::Array(merge_list_field(Vec::new(), p, field, false)?))
        }
        other => Ok(other),
    }
}

fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &FieldMeta,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    // A deletion list only makes sense for a merging list of primitives; honouring it for
    // any list is kinder than upstream, which would replace the list with the deletion list.
    if field.strategy.merges_lists() || is_delete_list {
        merge_slice(
            original,
            patch,
            field.merge_key,
            &field.meta,
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

/// JSON kinds of list elements, the stand-in for Go's reflect kinds upstream compares.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
    Array,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Object(_) => Kind::Object,
        Value::Array(_) => Kind::Array,
    }
}

/// The common element kind of the given lists; mixing kinds or nesting lists is rejected.
fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
    let mut found: Option<Kind> = None;
    for list in lists {
        for v in list.iter() {
            let k = kind(v);
            if k == Kind::Array {
                return Err(PatchError::invalid("lists of lists are not supported"));
            }
            match found {
                None => found = Some(k),
                Some(prev) if prev != k => {
                    return Err(PatchError::internal(format!(
                        "list element types are not identical: {}",
                        Value::Array(lists.iter().flat_map(|l| l.iter().cloned()).collect())
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&str>,
    meta: &PatchMeta,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let Some(k) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };

    if k != Kind::Object {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.iter().any(|d| json_equal(v, d)))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|m| json_equal(m, v)) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(in_patch, server_only, &patch, &original, None);
    }

    let key = merge_key
        .ok_or_else(|| PatchError::internal("cannot merge lists without merge key for type map"))?;
    let (original, patch) = merge_special_elements(original, patch, key)?;
    let merged = merge_plain_elements(original.clone(), &patch, key, meta)?;
    let (in_patch, server_only) = partition(merged, &patch, Some(key))?;
    normalize_element_order(in_patch, server_only, &patch, &original, Some(key))
}

/// Handles `$patch` elements: deletions remove matching originals, `replace` makes the
/// patch's plain elements the whole list.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            plain.push(v);
            continue;
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let kv = m.get(key).ok_or_else(|| err_no_merge_key(m, key))?;
                original.retain(|o| !o.get(key).is_some_and(|ov| json_equal(ov, kv)));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::internal(
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            _ => return Err(err_bad_patch_type(directive, m)),
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn merge_plain_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    meta: &PatchMeta,
) -> Result<Vec<Value>, PatchError> {
    for v in patch {
        let Value::Object(p) = v else { continue };
        let kv = p.get(key).ok_or_else(|| err_no_merge_key(p, key))?;
        let pos = original
            .iter()
            .position(|o| o.get(key).is_some_and(|ov| json_equal(ov, kv)));
        match pos {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut original[i]) else {
                    return Err(PatchError::internal(format!(
                        "value for key {i} is not a map"
                    )));
                };
                original[i] = Value::Object(merge_map(o, p.clone(), meta)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), p.clone(), meta)?)),
        }
    }
    // Original elements are not cleaned: they came from storage, never carry directives.
    Ok(original)
}

/// The identity of a list element for ordering: its merge key value, or itself.
fn ident<'a>(v: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn position_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = ident(item, key)?;
    list.iter()
        .position(|v| ident(v, key).is_some_and(|other| json_equal(other, id)))
}

fn is_delete_element(v: &Value) -> bool {
    v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// Splits `merged` into the elements that appear in `by` and the ones that do not.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_by = Vec::new();
    let mut others = Vec::new();
    for v in merged {
        if let Some(k) = key {
            if let Value::Object(m) = &v {
                if !m.contains_key(k) {
                    return Err(err_no_merge_key(m, k));
                }
            }
        }
        if position_in(by, &v, key).is_some() {
            in_by.push(v);
        } else {
            others.push(v);
        }
    }
    Ok((in_by, others))
}

/// Stable-sorts `items` by their position in `order`; deletion directives go last.
fn sort_by_order(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let (mut keep, deletes): (Vec<Value>, Vec<Value>) = if key.is_some() {
        items.into_iter().partition(|v| !is_delete_element(v))
    } else {
        (items, Vec::new())
    };
    keep.sort_by_key(|v| position_in(order, v, key).unwrap_or(usize::MAX));
    keep.extend(deletes);
    keep
}

/// Orders the merged list: patch items in patch order, server-only items in live order,
/// interleaved by their live positions (upstream's `normalizeElementOrder`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let right = sort_by_order(patch_items, patch_order, key);
    let left = sort_by_order(server_only, server_order, key);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position_in(server_order, l, key),
                    position_in(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    // A new patch item (not live) goes before the remaining live-only items.
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Validates `$retainKeys` and drops every original key it does not list.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(err_retain_keys());
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(err_retain_keys());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>` directive together with the patch's list for
/// that field, and removes both from the patch.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    meta: &PatchMeta,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let order = patch.shift_remove(&directive_key).unwrap_or_default();
        let Value::Array(order) = order else {
            return Err(err_set_element_order());
        };
        let field_name = directive_field(&directive_key, SET_ELEMENT_ORDER)
            .ok_or_else(err_set_element_order)?
            .to_string();
        let field = meta.field(&field_name);
        let live = match original.get(&field_name) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(err_set_element_order()),
        };
        let patch_list = match patch.shift_remove(&field_name) {
            None => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => return Err(err_set_element_order()),
        };
        validate_set_order(
            patch_list.as_deref().unwrap_or(&[]),
            &order,
            field.merge_key,
        )?;

        let merged = match (live.clone(), patch_list) {
            (None, None) => continue,
            (Some(l), None) => l,
            (None, Some(p)) => merge_list_field(Vec::new(), p, &field, false)?,
            (Some(l), Some(p)) => merge_list_field(l, p, &field, false)?,
        };
        if merged.is_empty() {
            original.insert(field_name, Value::Array(merged));
            continue;
        }
        let key = field.merge_key.filter(|_| kind(&merged[0]) == Kind::Object);
        let (in_order, server_only) = partition(merged, &order, key)?;
        let live = live.unwrap_or_default();
        let ordered = normalize_element_order(in_order, server_only, &order, &live, key)?;
        original.insert(field_name, Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list in the same
/// relative order (deletions excepted).
fn validate_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| !(merge_key.is_some() && is_delete_element(v)))
        .collect();
    let same = |a: &Value, b: &Value| -> Result<bool, PatchError> {
        match merge_key {
            None => Ok(json_equal(a, b)),
            Some(k) => {
                let av = a.get(k).ok_or_else(|| no_key(a, k))?;
                let bv = b.get(k).ok_or_else(|| no_key(b, k))?;
                Ok(json_equal(av, bv))
            }
        }
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < items.len() && oi < order.len() {
        if items[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if same(items[pi], &order[oi])? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < items.len() {
        return Err(PatchError::internal(format!(
            "the order in patch list: {} doesn't match $setElementOrder list: {}",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn no_key(v: &Value, key: &str) -> PatchError {
    match v {
        Value::Object(m) => err_no_merge_key(m, key),
        other => PatchError::internal(format!("expected a map, got {other}")),
    }
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
