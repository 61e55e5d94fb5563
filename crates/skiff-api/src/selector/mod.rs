//! Label and field selectors: parsing the `labelSelector` / `fieldSelector` query strings the
//! way upstream does, converting `metav1.LabelSelector` objects, and matching objects.
//!
//! Error messages follow upstream wording because the API server returns them verbatim in
//! 400 responses and clients (and their users) recognise them.

mod field;
mod label;
mod view;

pub use field::{
    field_paths_for, field_value, field_value_for, normalize_field, supported_fields, FieldOperator,
    FieldRequirement, FieldSelector,
};
pub use label::{LabelSelector, LabelSource, Operator, Requirement};
pub use view::{parse_view, ViewPaths};

/// True when `labels` satisfy a typed `metav1.LabelSelector` (the form workloads, PDBs,
/// affinity terms and PVC selectors carry): every `matchLabels` pair and every
/// `matchExpressions` requirement. The empty selector matches everything; an unknown
/// operator matches nothing.
pub fn object_selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let vals = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| vals.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !vals.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

/// Why a selector could not be parsed or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string or object is malformed; the message is upstream's.
    #[error("{0}")]
    Label(String),
    /// A field selector string is malformed; the message is upstream's.
    #[error("{0}")]
    Field(String),
    /// The field selector names a field the resource does not index (kinds with their own
    /// field list).
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// Like [`SelectorError::FieldNotSupported`], in the wording of kinds that name
    /// themselves (batch/v1 Job).
    #[error("field label {} not supported for {kind}", go_quote(.field))]
    FieldNotSupportedFor {
        /// The rejected field.
        field: String,
        /// The kind that rejected it.
        kind: &'static str,
    },
    /// The field selector names a field on a kind that indexes only metadata (every apps
    /// kind, ConfigMaps, custom resources).
    #[error("{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"", go_quote(.0))]
    FieldNotKnown(String),
}

/// Go's `%q` rendering of a string, used where upstream messages quote values.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Joins messages the way upstream's `utilerrors.Aggregate` prints them: one message alone,
/// several (deduplicated) inside brackets.
pub(crate) fn aggregate(msgs: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in msgs {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_aggregate() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("é"), "\"é\"");
        assert_eq!(aggregate(&["x".into()]), "x");
        assert_eq!(aggregate(&["x".into(), "y".into(), "x".into()]), "[x, y]");
    }
}
