//! InterPodAffinity: required pod affinity and anti-affinity filter (including the symmetric
//! rule: placed pods' required anti-affinity against the incoming pod); preferred terms, and
//! placed pods' terms that name the incoming pod, score.
//!
//! PreFilter resolves each term once (namespaces, namespaceSelector, matchLabelKeys) and
//! takes per-topology-value counts from the batch's [`crate::counts::CountCache`], so Filter
//! is a few hash lookups per node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::counts::{pod_matches, Counts};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Snapshot};
use crate::pod::Pod;
use crate::selector::{term_namespaces, with_label_keys, Namespaces};

/// The plugin.
pub struct InterPodAffinity;

/// Filter reasons, worded as upstream.
pub const AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// See [`AFFINITY_NOT_MATCH`].
pub const ANTI_AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
/// See [`AFFINITY_NOT_MATCH`].
pub const EXISTING_ANTI_AFFINITY_NOT_MATCH: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's hardPodAffinityWeight: how much a placed pod's *required* affinity to the
/// incoming pod counts in scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// One term, resolved against its owner pod.
#[derive(Debug, Clone)]
pub struct Term {
    /// Namespaces the term looks in.
    pub namespaces: Namespaces,
    /// Selector (with matchLabelKeys merged); `None` matches nothing, as upstream.
    pub selector: Option<LabelSelector>,
    /// Topology key.
    pub topology_key: String,
    /// Weight (preferred terms; 1 for required ones).
    pub weight: i64,
}

impl Term {
    fn matches(&self, pod: &Pod) -> bool {
        self.selector.as_ref().is_some_and(|s| pod_matches(pod, &self.namespaces, s))
    }
}

/// A pod's four lists of terms.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    /// requiredDuringScheduling pod affinity.
    pub affinity: Vec<Term>,
    /// requiredDuringScheduling pod anti-affinity.
    pub anti: Vec<Term>,
    /// preferredDuringScheduling pod affinity.
    pub pref_affinity: Vec<Term>,
    /// preferredDuringScheduling pod anti-affinity.
    pub pref_anti: Vec<Term>,
}

impl Terms {
    fn is_empty(&self) -> bool {
        self.affinity.is_empty() && self.anti.is_empty() && self.pref_affinity.is_empty() && self.pref_anti.is_empty()
    }
}

/// Whether a pod carries any pod affinity or anti-affinity.
pub fn has_terms(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn resolve_term(pod: &Pod, t: &PodAffinityTerm, weight: i64, namespaces: &HashMap<String, std::collections::BTreeMap<String, String>>) -> Term {
    let own = pod.metadata.namespace.as_deref().unwrap_or("default");
    Term {
        namespaces: term_namespaces(own, t.namespaces.as_deref(), t.namespace_selector.as_ref(), namespaces),
        selector: t.label_selector.as_ref().map(|s| {
            with_label_keys(s, pod, t.match_label_keys.as_deref().unwrap_or_default(), t.mismatch_label_keys.as_deref().unwrap_or_default())
        }),
        topology_key: t.topology_key.clone(),
        weight,
    }
}

/// Resolve all of `pod`'s terms.
pub fn resolve(pod: &Pod, namespaces: &HashMap<String, std::collections::BTreeMap<String, String>>) -> Terms {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else { return Terms::default() };
    let required = |terms: &Option<Vec<PodAffinityTerm>>| terms.iter().flatten().map(|t| resolve_term(pod, t, 1, namespaces)).collect();
    let preferred = |terms: &Option<Vec<WeightedPodAffinityTerm>>| {
        terms.iter().flatten().map(|w| resolve_term(pod, &w.pod_affinity_term, w.weight as i64, namespaces)).collect()
    };
    let mut out = Terms::default();
    if let Some(pa) = &a.pod_affinity {
        out.affinity = required(&pa.required_during_scheduling_ignored_during_execution);
        out.pref_affinity = preferred(&pa.preferred_during_scheduling_ignored_during_execution);
    }
    if let Some(pa) = &a.pod_anti_affinity {
        out.anti = required(&pa.required_during_scheduling_ignored_during_execution);
        out.pref_anti = preferred(&pa.preferred_during_scheduling_ignored_during_execution);
    }
    out
}

/// What PreFilter worked out for one pod.
#[derive(Debug, Default)]
pub struct PreFilterState {
    affinity: Vec<(Term, Option<Arc<Counts>>)>,
    anti: Vec<(Term, Option<Arc<Counts>>)>,
    /// (topology key, value) pairs where a placed pod's required anti-affinity forbids the pod.
    existing_anti: HashMap<String, HashSet<String>>,
    /// No pod anywhere matches the required affinity terms, but the pod matches them itself:
    /// the first pod of a group may go anywhere (upstream's special case).
    first_of_group: bool,
}

fn counted(snap: &Snapshot, terms: &[Term]) -> Vec<(Term, Option<Arc<Counts>>)> {
    terms.iter().map(|t| (t.clone(), t.selector.as_ref().map(|s| snap.counts.get(&snap.nodes, &snap.domains, &t.namespaces, s, &t.topology_key)))).collect()
}

fn has_pods_in_domain(node: &NodeInfo, counts: &Option<Arc<Counts>>) -> bool {
    counts.as_ref().is_some_and(|c| c.in_domain_of(node.index) > 0)
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &Pod, snap: &Snapshot, state: &mut CycleState) -> Result<(), String> {
        let terms = if has_terms(pod) { resolve(pod, &snap.namespaces) } else { Terms::default() };
        let mut existing_anti: HashMap<String, HashSet<String>> = HashMap::new();
        for group in &snap.with_affinity.groups {
            for t in group.terms.anti.iter().filter(|t| t.matches(pod)) {
                for &i in group.per_node.keys() {
                    if let Some(v) = snap.nodes[i].labels().get(&t.topology_key) {
                        existing_anti.entry(t.topology_key.clone()).or_default().insert(v.clone());
                    }
                }
            }
        }
        if terms.affinity.is_empty() && terms.anti.is_empty() && existing_anti.is_empty() {
            state.affinity = None;
            return Ok(());
        }
        let affinity = counted(snap, &terms.affinity);
        let first_of_group = !affinity.is_empty()
            && affinity.iter().all(|(_, c)| c.as_ref().is_none_or(|c| c.total == 0))
            && terms.affinity.iter().all(|t| t.matches(pod));
        state.affinity = Some(Arc::new(PreFilterState { affinity, anti: counted(snap, &terms.anti), existing_anti, first_of_group }));
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let Some(s) = state.affinity.as_deref() else { return Ok(()) };
        let labels = node.labels();
        if !s.first_of_group && !s.affinity.iter().all(|(_, c)| has_pods_in_domain(node, c)) {
            return Err(AFFINITY_NOT_MATCH.into());
        }
        if s.anti.iter().any(|(_, c)| has_pods_in_domain(node, c)) {
            return Err(ANTI_AFFINITY_NOT_MATCH.into());
        }
        if s.existing_anti.iter().any(|(k, vals)| labels.get(k).is_some_and(|v| vals.contains(v))) {
            return Err(EXISTING_ANTI_AFFINITY_NOT_MATCH.into());
        }
        Ok(())
    }

    fn resolvable_by_preemption(&self, reason: &str) -> bool {
        // Evicting pods cannot create the pods an affinity term asks for.
        reason != AFFINITY_NOT_MATCH
    }
}

/// Score per (topology key, value), summed over terms.
#[derive(Debug, Default)]
pub struct ScoreState {
    by_key: HashMap<String, HashMap<String, i64>>,
}

impl ScoreState {
    fn add(&mut self, key: &str, value: &str, w: i64) {
        // Looked up before inserting: this runs per node and term, and allocating the key
        // and value strings each time showed in profiles.
        let values = match self.by_key.get_mut(key) {
            Some(values) => values,
            None => self.by_key.entry(key.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(total) => *total += w,
            None => {
                values.insert(value.to_string(), w);
            }
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_score(&self, pod: &Pod, snap: &Snapshot, _feasible: &[usize], state: &mut CycleState) {
        let terms = if has_terms(pod) { resolve(pod, &snap.namespaces) } else { Terms::default() };
        if terms.pref_affinity.is_empty() && terms.pref_anti.is_empty() && snap.with_affinity.is_empty() {
            state.affinity_score = None;
            return;
        }
        let mut s = ScoreState::default();
        for (list, sign) in [(&terms.pref_affinity, 1), (&terms.pref_anti, -1)] {
            for (t, c) in counted(snap, list) {
                for (v, n) in c.iter().flat_map(|c| c.per_value()) {
                    if n > 0 {
                        s.add(&t.topology_key, v, sign * t.weight * n as i64);
                    }
                }
            }
        }
        // Each distinct set of placed terms is matched against the pod once, then counted
        // for every node holding pods with it (replicas share their terms: matching every
        // placed pod's terms one by one made this O(placed pods) per pod).
        for group in &snap.with_affinity.groups {
            let their = &group.terms;
            let lists: [(&Vec<Term>, i64); 3] = [(&their.affinity, HARD_POD_AFFINITY_WEIGHT), (&their.pref_affinity, 1), (&their.pref_anti, -1)];
            for (list, sign) in lists {
                for t in list.iter().filter(|t| t.matches(pod)) {
                    for (&i, &placed) in &group.per_node {
                        if let Some(v) = snap.nodes[i].labels().get(&t.topology_key) {
                            s.add(&t.topology_key, v, sign * t.weight * placed);
                        }
                    }
                }
            }
        }
        state.affinity_score = if s.by_key.is_empty() { None } else { Some(Arc::new(s)) };
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.affinity_score.as_deref() else { return 0 };
        let labels = node.labels();
        s.by_key.iter().filter_map(|(k, vals)| labels.get(k).and_then(|v| vals.get(v))).sum()
    }

    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.affinity_score.is_none() {
            return;
        }
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = if max > min { (*s - min) * 100 / (max - min) } else { 0 };
        }
    }
}

/// Resolved terms of a placed pod, kept in the snapshot for the symmetric checks.
pub type Resolved = Arc<Terms>;

/// Placed pods' terms, grouped: one entry per distinct set of terms (all replicas of a
/// workload share one), with how many pods carrying it sit on each node.
#[derive(Default)]
pub struct PlacedTerms {
    /// The groups.
    pub groups: Vec<PlacedGroup>,
    /// Group position by the terms' rendering.
    index: HashMap<String, usize>,
}

/// One set of terms and where pods carrying it are placed.
pub struct PlacedGroup {
    /// The terms.
    pub terms: Resolved,
    /// Pods carrying them, per node index.
    pub per_node: HashMap<usize, i64>,
}

impl PlacedTerms {
    /// Account a pod with `terms` placed on node `node`.
    pub fn add(&mut self, node: usize, terms: Resolved) {
        let key = format!("{terms:?}");
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => {
                self.groups.push(PlacedGroup { terms, per_node: HashMap::new() });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        *self.groups[at].per_node.entry(node).or_default() += 1;
    }

    /// Whether no placed pod carries terms.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Resolve a placed pod's terms for [`Snapshot::with_affinity`]; `None` when it has none.
pub fn resolve_placed(pod: &Pod, namespaces: &HashMap<String, std::collections::BTreeMap<String, String>>) -> Option<Resolved> {
    if !has_terms(pod) {
        return None;
    }
    let t = resolve(pod, namespaces);
    (!t.is_empty()).then(|| Arc::new(t))
}
