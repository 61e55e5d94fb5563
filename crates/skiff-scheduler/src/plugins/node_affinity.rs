//! NodeAffinity: `nodeSelector` and required node affinity terms filter; preferred terms
//! score by weight.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::framework::{FilterPlugin, NodeInfo, ScorePlugin};

/// The plugin.
pub struct NodeAffinity;

fn labels(node: &NodeInfo) -> BTreeMap<String, String> {
    node.node.metadata.labels.clone().unwrap_or_default()
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>, node_name: &str, field: bool) -> bool {
    let value = if field { (r.key == "metadata.name").then(|| node_name.to_string()) } else { labels.get(&r.key).cloned() };
    let vals = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.contains(&v)),
        "NotIn" => !value.is_some_and(|v| vals.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(x)) = (value.and_then(|v| v.parse::<i64>().ok()), vals.first().and_then(|x| x.parse::<i64>().ok())) else { return false };
            if r.operator == "Gt" { v > x } else { v < x }
        }
        _ => false,
    }
}

/// True when the node satisfies the term (all its expressions and fields).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let l = labels(node);
    let name = node.name();
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, &l, &name, false)) && fields.iter().all(|r| requirement_matches(r, &l, &name, true))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let Some(spec) = pod.spec.as_ref() else { return Ok(()) };
        let l = labels(node);
        if let Some(sel) = &spec.node_selector {
            if !sel.iter().all(|(k, v)| l.get(k) == Some(v)) {
                return Err("node(s) didn't match Pod's node affinity/selector".into());
            }
        }
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
        if let Some(req) = required {
            if !req.node_selector_terms.iter().any(|t| term_matches(t, node)) {
                return Err("node(s) didn't match Pod's node affinity/selector".into());
            }
        }
        Ok(())
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, pod: &Pod, node: &NodeInfo) -> i64 {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref());
        let Some(prefs) = preferred else { return 0 };
        let total: i64 = prefs.iter().map(|p| p.weight as i64).sum();
        if total == 0 {
            return 0;
        }
        let got: i64 = prefs.iter().filter(|p| term_matches(&p.preference, node)).map(|p| p.weight as i64).sum();
        got * 100 / total
    }
}
