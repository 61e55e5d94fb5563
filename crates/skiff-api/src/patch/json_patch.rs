//! RFC 6902 JSON Patch (`application/json-patch+json`).
//!
//! Operations apply in order to a working copy; the first failing operation aborts the whole
//! patch so the stored object is never half-patched.

use serde_json::Value;

use super::PatchError;

/// Upstream's cap on operations per JSON patch, which bounds the work one request can cause.
pub const MAX_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON Patch document to `doc` and returns the patched copy.
///
/// `patch` must be an array of operation objects (`add`, `remove`, `replace`, `move`, `copy`,
/// `test`). A malformed patch is a [`PatchError::BadRequest`]; an operation that does not apply
/// (missing path, failed test, index out of range) is a [`PatchError::Invalid`]; more than
/// [`MAX_OPERATIONS`] operations is [`PatchError::TooManyOperations`].
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::bad("json patch must be an array of operations"))?;
    let ops = ops.iter().map(Op::decode).collect::<Result<Vec<_>, _>>()?;
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_OPERATIONS,
            got: ops.len(),
        });
    }
    let mut out = doc.clone();
    for op in &ops {
        op.apply(&mut out)?;
    }
    Ok(out)
}

/// One decoded operation; decoding everything first means a malformed operation late in the
/// list is reported as 400 even when an earlier one would have failed to apply.
enum Op {
    Add(Vec<String>, Value),
    Remove(Vec<String>),
    Replace(Vec<String>, Value),
    Move(Vec<String>, Vec<String>),
    Copy(Vec<String>, Vec<String>),
    Test(Vec<String>, Value),
}

impl Op {
    fn decode(raw: &Value) -> Result<Op, PatchError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| PatchError::bad("json patch operation must be an object"))?;
        let kind = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::bad("json patch operation is missing \"op\""))?;
        let pointer = |field: &str| -> Result<Vec<String>, PatchError> {
            let p = obj.get(field).and_then(Value::as_str).ok_or_else(|| {
                PatchError::bad(format!("{kind} operation is missing \"{field}\""))
            })?;
            parse_pointer(p)
        };
        // `value: null` is a legitimate value, so presence is what matters here.
        let value = || -> Result<Value, PatchError> {
            obj.get("value")
                .cloned()
                .ok_or_else(|| PatchError::bad(format!("{kind} operation is missing \"value\"")))
        };
        Ok(match kind {
            "add" => Op::Add(pointer("path")?, value()?),
            "remove" => Op::Remove(pointer("path")?),
            "replace" => Op::Replace(pointer("path")?, value()?),
            "move" => Op::Move(pointer("from")?, pointer("path")?),
            "copy" => Op::Copy(pointer("from")?, pointer("path")?),
            "test" => Op::Test(pointer("path")?, value()?),
            other => return Err(PatchError::bad(format!("unexpected kind: {other}"))),
        })
    }

    fn apply(&self, doc: &mut Value) -> Result<(), PatchError> {
        match self {
            Op::Add(path, v) => add(doc, path, v.clone(), "add"),
            Op::Remove(path) => remove(doc, path, "remove").map(|_| ()),
            Op::Replace(path, v) => {
                let target = get_mut(doc, path).ok_or_else(|| {
                    PatchError::invalid(format!(
                        "replace operation does not apply: doc is missing key: {}",
                        render(path)
                    ))
                })?;
                *target = v.clone();
                Ok(())
            }
            Op::Move(from, path) => {
                if path.len() > from.len() && path[..from.len()] == from[..] {
                    return Err(PatchError::invalid(format!(
                        "move operation does not apply: cannot move {} into its own child {}",
                        render(from),
                        render(path)
                    )));
                }
                let v = remove(doc, from, "move")?;
                add(doc, path, v, "move")
            }
            Op::Copy(from, path) => {
                let v = get_mut(doc, from).map(|v| v.clone()).ok_or_else(|| {
                    PatchError::invalid(format!(
                        "copy operation does not apply: doc is missing from path: {}",
                        render(from)
                    ))
                })?;
                add(doc, path, v, "copy")
            }
            Op::Test(path, v) => match get_mut(doc, path) {
                Some(cur) if json_equal(cur, v) => Ok(()),
                _ => Err(PatchError::invalid(format!(
                    "testing value {} failed: test failed",
                    render(path)
                ))),
            },
        }
    }
}

/// Splits a JSON pointer into unescaped reference tokens (`~1` is `/`, `~0` is `~`).
pub(crate) fn parse_pointer(p: &str) -> Result<Vec<String>, PatchError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p.strip_prefix('/').ok_or_else(|| {
        PatchError::bad(format!(
            "json pointer {p:?} must be empty or start with \"/\""
        ))
    })?;
    rest.split('/')
        .map(|tok| {
            // Decoding `~1` before `~0` would turn `~01` into `/` instead of `~1`.
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(PatchError::bad(format!(
                            "json pointer {p:?} has an invalid escape"
                        )))
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

fn render(path: &[String]) -> String {
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Parses an array index token; RFC 6901 forbids leading zeros and signs.
fn index(tok: &str) -> Option<usize> {
    if tok.is_empty() || (tok.len() > 1 && tok.starts_with('0')) {
        return None;
    }
    if !tok.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tok.parse().ok()
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(tok)?,
            Value::Array(a) => a.get_mut(index(tok)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn missing(op: &str, path: &[String]) -> PatchError {
    PatchError::invalid(format!(
        "{op} operation does not apply: doc is missing path: \"{}\": missing value",
        render(path)
    ))
}

fn add(doc: &mut Value, path: &[String], v: Value, op: &str) -> Result<(), PatchError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = v;
        return Ok(());
    };
    let container = get_mut(doc, parent).ok_or_else(|| missing(op, path))?;
    match container {
        Value::Object(m) => {
            m.insert(last.clone(), v);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(last).filter(|i| *i <= a.len()).ok_or_else(|| {
                    PatchError::invalid(format!(
                        "{op} operation does not apply: index out of range: {}",
                        render(path)
                    ))
                })?
            };
            a.insert(i, v);
            Ok(())
        }
        _ => Err(missing(op, path)),
    }
}

fn remove(doc: &mut Value, path: &[String], op: &str) -> Result<Value, PatchError> {
    let Some((last, parent)) = path.split_last() else {
        return Ok(std::mem::take(doc));
    };
    let container = get_mut(doc, parent).ok_or_else(|| missing(op, path))?;
    match container {
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| missing(op, path)),
        Value::Array(a) => {
            let i = index(last)
                .filter(|i| *i < a.len())
                .ok_or_else(|| missing(op, path))?;
            Ok(a.remove(i))
        }
        _ => Err(missing(op, path)),
    }
}

/// Deep equality where numbers compare by value, so `1` equals `1.0` as in Go's decoder.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc6902_operations() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/e", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": [9, 2, 3]}, "c": "y", "e": "y"}));
    }

    #[test]
    fn pointer_escaping() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1", "m~n": "2"}}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "remove", "path": "/metadata/annotations/a~1b"},
                {"op": "replace", "path": "/metadata/annotations/m~0n", "value": "3"},
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"annotations": {"m~n": "3"}}}));
        assert_eq!(parse_pointer("/~01").unwrap(), vec!["~1".to_string()]);
        assert!(parse_pointer("a").is_err());
    }

    #[test]
    fn failures_are_reported_with_status() {
        let doc = json!({"a": 1});
        let err = json_patch(&doc, &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(err.status_code(), 422);
        assert_eq!(err.to_string(), "testing value /a failed: test failed");
        let err = json_patch(&doc, &json!([{"op": "remove", "path": "/zz"}])).unwrap_err();
        assert_eq!(err.status_code(), 422);
        let err =
            json_patch(&doc, &json!([{"op": "replace", "path": "/zz", "value": 1}])).unwrap_err();
        assert!(err.to_string().contains("missing key"));
        let err =
            json_patch(&doc, &json!([{"op": "add", "path": "/x/y", "value": 1}])).unwrap_err();
        assert_eq!(err.status_code(), 422);
        let err = json_patch(&doc, &json!({"op": "add"})).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(&doc, &json!([{"op": "frob", "path": "/a"}])).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = json_patch(
            &json!({"a": [1]}),
            &json!([{"op": "add", "path": "/a/01", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn operation_cap() {
        let ops: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let err = json_patch(&json!({}), &Value::Array(ops)).unwrap_err();
        assert_eq!(err.status_code(), 413);
        assert_eq!(
            err.to_string(),
            "the allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }

    #[test]
    fn failed_patch_leaves_no_partial_result() {
        let doc = json!({"a": 1});
        assert!(json_patch(
            &doc,
            &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/nope"}])
        )
        .is_err());
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn move_into_child_and_numbers() {
        let doc = json!({"a": {"b": 1}});
        assert!(json_patch(&doc, &json!([{"op": "move", "from": "/a", "path": "/a/c"}])).is_err());
        let ok = json_patch(
            &json!({"n": 1}),
            &json!([{"op": "test", "path": "/n", "value": 1.0}]),
        );
        assert!(ok.is_ok());
        let out = json_patch(&doc, &json!([{"op": "add", "path": "", "value": [1]}])).unwrap();
        assert_eq!(out, json!([1]));
    }
}
