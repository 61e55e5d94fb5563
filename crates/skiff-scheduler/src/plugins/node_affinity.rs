//! NodeAffinity: `nodeSelector` and required node affinity terms filter; preferred terms
//! score by weight.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin};
use crate::pod::Pod;

/// The plugin.
pub struct NodeAffinity;

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>, node_name: &str, field: bool) -> bool {
    let value: Option<&str> = if field { (r.key == "metadata.name").then_some(node_name) } else { labels.get(&r.key).map(String::as_str) };
    let vals = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| vals.iter().any(|x| x == v)),
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
    let l = node.labels();
    let name = node.name();
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, l, name, false)) && fields.iter().all(|r| requirement_matches(r, l, name, true))
}

fn required(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::NodeSelector> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
}

/// Whether the pod limits its nodes at all (nodeSelector or required node affinity).
pub fn restricts(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_selector.as_ref()).is_some_and(|s| !s.is_empty()) || required(pod).is_some()
}

/// The pod's nodeSelector and required node affinity both accept the node.
pub fn matches_node(pod: &Pod, node: &NodeInfo) -> bool {
    let l = node.labels();
    if let Some(sel) = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref()) {
        if !sel.iter().all(|(k, v)| l.get(k) == Some(v)) {
            return false;
        }
    }
    required(pod).is_none_or(|req| req.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        if matches_node(pod, node) {
            Ok(())
        } else {
            Err("node(s) didn't match Pod's node affinity/selector".into())
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
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
