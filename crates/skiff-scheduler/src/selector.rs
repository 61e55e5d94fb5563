//! Label selectors and namespace sets as the scheduler's plugins read them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::pod::Pod;

/// True when `labels` satisfy `sel` (an empty selector matches everything).
pub use skiff_api::selector::object_selector_matches as matches;

/// `sel` narrowed by `matchLabelKeys` (key In [the pod's value]) and `mismatchLabelKeys`
/// (key NotIn [the pod's value]); keys the pod lacks are ignored, as upstream does.
pub fn with_label_keys(sel: &LabelSelector, pod: &Pod, match_keys: &[String], mismatch_keys: &[String]) -> LabelSelector {
    if match_keys.is_empty() && mismatch_keys.is_empty() {
        return sel.clone();
    }
    let labels = pod.labels();
    let mut out = sel.clone();
    let exprs = out.match_expressions.get_or_insert_with(Vec::new);
    for (keys, op) in [(match_keys, "In"), (mismatch_keys, "NotIn")] {
        for k in keys {
            if let Some(v) = labels.get(k) {
                let req = LabelSelectorRequirement { key: k.clone(), operator: op.into(), values: Some(vec![v.clone()]) };
                if !exprs.contains(&req) {
                    exprs.push(req);
                }
            }
        }
    }
    out
}

/// The namespaces a term looks in: `None` means all of them.
pub type Namespaces = Option<Vec<String>>;

/// Upstream's rule for affinity terms: the listed namespaces plus those `namespaceSelector`
/// matches; an empty selector means every namespace; neither given means the pod's own.
pub fn term_namespaces(
    own: &str,
    listed: Option<&[String]>,
    selector: Option<&LabelSelector>,
    all: &std::collections::HashMap<String, BTreeMap<String, String>>,
) -> Namespaces {
    let listed = listed.unwrap_or_default();
    let mut out: Vec<String> = listed.to_vec();
    match selector {
        Some(s) if s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|m| m.is_empty()) => return None,
        Some(s) => out.extend(all.iter().filter(|(_, l)| matches(s, l)).map(|(n, _)| n.clone())),
        None if listed.is_empty() => out.push(own.to_string()),
        None => {}
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// True when namespace `ns` is in `set`.
pub fn in_namespaces(set: &Namespaces, ns: &str) -> bool {
    set.as_ref().is_none_or(|v| v.binary_search_by(|n| n.as_str().cmp(ns)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selector_operators() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(matches(&sel, &l(&[("app", "web"), ("tier", "a")])));
        assert!(!matches(&sel, &l(&[("app", "web"), ("tier", "c")])));
        assert!(!matches(&sel, &l(&[("app", "web"), ("tier", "a"), ("x", "1")])));
        assert!(matches(&LabelSelector::default(), &l(&[])));
    }

    #[test]
    fn namespaces_rule() {
        let mut all = std::collections::HashMap::new();
        all.insert("a".to_string(), l(&[("team", "x")]));
        all.insert("b".to_string(), l(&[]));
        assert_eq!(term_namespaces("own", None, None, &all), Some(vec!["own".to_string()]));
        assert_eq!(term_namespaces("own", None, Some(&LabelSelector::default()), &all), None);
        let sel = LabelSelector { match_labels: Some(l(&[("team", "x")])), ..Default::default() };
        assert_eq!(term_namespaces("own", Some(&["c".to_string()]), Some(&sel), &all), Some(vec!["a".to_string(), "c".to_string()]));
        assert!(in_namespaces(&Some(vec!["a".into(), "c".into()]), "c"));
        assert!(!in_namespaces(&Some(vec!["a".into()]), "b"));
    }
}
