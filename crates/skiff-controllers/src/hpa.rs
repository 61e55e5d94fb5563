//! HorizontalPodAutoscaler (autoscaling/v2) controller for Resource metrics (cpu and memory,
//! Utilization of pod requests or AverageValue): desired = ceil(current * usage / target)
//! outside a 10% tolerance, then stabilization windows and scaling policies from
//! `behavior` (upstream defaults: scale up by max(100%, 4 pods) per 15 s at once, scale
//! down by 100% per 15 s after a 300 s window), then min/max replicas. The result is
//! written to the target's scale subresource, so any kind with `/scale` can be autoscaled.
//!
//! Metrics come through [`MetricsSource`]; [`PodMetricsSource`] reads
//! `metrics.k8s.io/v1beta1` PodMetrics, which the API server serves from the kubelets' usage.
//! As a test seam, pods carrying the annotations `skiff.dev/fake-cpu-usage` /
//! `skiff.dev/fake-memory-usage` (whole-pod usage as a quantity, e.g. `250m`, `64Mi`) are
//! measured by those instead, so tests on fake nodes can drive the autoscaler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::pods::is_ready;
use crate::volume::quantity_bytes;
use crate::runtime::Error;

/// Annotation with a pod's fake CPU usage, read when the metrics API is absent.
pub const FAKE_CPU: &str = "skiff.dev/fake-cpu-usage";
/// Annotation with a pod's fake memory usage, read when the metrics API is absent.
pub const FAKE_MEMORY: &str = "skiff.dev/fake-memory-usage";
/// Changes within this fraction of the target are ignored.
pub const TOLERANCE: f64 = 0.1;
/// How often every autoscaler is re-evaluated (upstream's sync period).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// Per-pod usage of one resource (cpu in cores, memory in bytes), by pod name.
pub type PodUsage = BTreeMap<String, f64>;

/// Where pod usage comes from: the metrics API in production, fakes in tests.
pub trait MetricsSource: Send + Sync {
    /// Usage of `resource` (`cpu` or `memory`) of each pod in `pods` (namespace `ns`) that
    /// has a measurement; pods without one are left out.
    fn usage<'a>(&'a self, ns: &'a str, selector: &'a str, pods: &'a [Pod], resource: &'a str) -> BoxFuture<'a, Result<PodUsage, Error>>;
}

/// `metrics.k8s.io/v1beta1` PodMetrics, or the fake-usage annotations when the pods carry them.
pub struct PodMetricsSource {
    client: kube::Client,
}

impl PodMetricsSource {
    /// A source reading through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

/// Usage from the `skiff.dev/fake-*-usage` annotations only.
pub fn annotation_usage(pods: &[Pod], resource: &str) -> PodUsage {
    let key = if resource == "memory" { FAKE_MEMORY } else { FAKE_CPU };
    pods.iter().filter_map(|p| Some((p.name_any(), quantity_bytes(p.annotations().get(key)?)?))).collect()
}

impl MetricsSource for PodMetricsSource {
    fn usage<'a>(&'a self, ns: &'a str, selector: &'a str, pods: &'a [Pod], resource: &'a str) -> BoxFuture<'a, Result<PodUsage, Error>> {
        Box::pin(async move {
            let fake = annotation_usage(pods, resource);
            if !fake.is_empty() {
                return Ok(fake);
            }
            let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"), "pods");
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            match api.list(&ListParams::default().labels(selector)).await {
                Ok(list) => Ok(list
                    .items
                    .iter()
                    .map(|m| {
                        let total = m.data["containers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c["usage"][resource].as_str().and_then(quantity_bytes))
                            .sum();
                        (m.name_any(), total)
                    })
                    .collect()),
                // No usage: the autoscaler reports FailedGetResourceMetric and keeps the scale.
                Err(e) => {
                    tracing::debug!(namespace = ns, error = %e, "hpa: reading metrics.k8s.io failed");
                    Ok(PodUsage::new())
                }
            }
        })
    }
}

struct History {
    /// Unstabilized recommendations, for the stabilization windows.
    recommendations: Vec<(Instant, i32)>,
    /// Replica changes made, for the policies' periods.
    scale_events: Vec<(Instant, i32)>,
}

struct Ctx {
    client: kube::Client,
    metrics: Arc<dyn MetricsSource>,
    history: Mutex<HashMap<String, History>>,
}

/// Run until aborted, reading metrics from `metrics`.
pub async fn run(client: kube::Client, metrics: Arc<dyn MetricsSource>, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone(), metrics, history: Mutex::new(HashMap::new()) });
    let controller = Controller::new(Api::<HorizontalPodAutoscaler>::all(client.clone()), watcher::Config::default());
    let hpas = controller.store();
    controller
        // Pods changing (and their fake usage) re-evaluate the namespace's autoscalers sooner
        // than the sync period.
        .watches_shared_stream(pods, move |pod: Arc<Pod>| {
            let ns = pod.namespace();
            hpas.state().into_iter().filter(|h| h.namespace() == ns).map(|h| ObjectRef::from_obj(h.as_ref())).collect::<Vec<_>>()
        })
        .run(reconcile, |_, e, _| {
            tracing::debug!(error = %e, "hpa reconcile failed");
            Action::requeue(Duration::from_secs(2))
        }, ctx)
        .for_each(|_| async {})
        .await;
}

/// Sum of the pods' container requests for `resource`; None when a container lacks one.
fn pod_request(p: &Pod, resource: &str) -> Option<f64> {
    let containers = &p.spec.as_ref()?.containers;
    containers.iter().map(|c| c.resources.as_ref()?.requests.as_ref()?.get(resource).and_then(|q| quantity_bytes(&q.0))).sum()
}

/// One metric's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Replicas this metric asks for.
    pub replicas: i32,
    /// Current average utilization (percent of requests), for Utilization targets.
    pub utilization: Option<i32>,
    /// Current average usage per pod.
    pub average: f64,
}

/// Replicas for a resource metric, as upstream's replica calculator: ready pods with
/// usage count as measured; on a scale up, unready and unmeasured pods count as using
/// nothing; on a scale down, unmeasured pods count as using the target; within the
/// tolerance nothing changes. `requests` is None for AverageValue targets.
pub fn evaluate(current: i32, ready_usage: &[(f64, f64)], unready: usize, missing_requests: &[f64], target: f64, utilization_target: bool) -> Option<Evaluation> {
    if ready_usage.is_empty() {
        return None;
    }
    let ratio_of = |usage: &[(f64, f64)]| -> f64 {
        let used: f64 = usage.iter().map(|u| u.0).sum();
        if utilization_target {
            let req: f64 = usage.iter().map(|u| u.1).sum();
            if req <= 0.0 {
                return 0.0;
            }
            used / req * 100.0 / target
        } else {
            used / usage.len() as f64 / target
        }
    };
    let used: f64 = ready_usage.iter().map(|u| u.0).sum();
    let average = used / ready_usage.len() as f64;
    let utilization = utilization_target.then(|| {
        let req: f64 = ready_usage.iter().map(|u| u.1).sum();
        if req > 0.0 { (used / req * 100.0).round() as i32 } else { 0 }
    });
    let ratio = ratio_of(ready_usage);
    if unready == 0 && missing_requests.is_empty() {
        if (ratio - 1.0).abs() <= TOLERANCE {
            return Some(Evaluation { replicas: current, utilization, average });
        }
        return Some(Evaluation { replicas: (ratio * ready_usage.len() as f64).ceil() as i32, utilization, average });
    }
    let mut all: Vec<(f64, f64)> = ready_usage.to_vec();
    if ratio > 1.0 {
        // Scaling up: pods not yet measured or not ready might use nothing.
        for r in missing_requests {
            all.push((0.0, *r));
        }
        let unready_req = if utilization_target { ready_usage.iter().map(|u| u.1).sum::<f64>() / ready_usage.len() as f64 } else { 0.0 };
        for _ in 0..unready {
            all.push((0.0, unready_req));
        }
    } else {
        // Scaling down: an unmeasured pod might be using exactly the target.
        for r in missing_requests {
            let use_at_target = if utilization_target { r * target / 100.0 } else { target };
            all.push((use_at_target, *r));
        }
    }
    let new_ratio = ratio_of(&all);
    if (new_ratio - 1.0).abs() <= TOLERANCE || (new_ratio > 1.0) != (ratio > 1.0) {
        return Some(Evaluation { replicas: current, utilization, average });
    }
    let replicas = (new_ratio * all.len() as f64).ceil() as i32;
    // Never move against the measured direction.
    let replicas = if ratio > 1.0 { replicas.max(current) } else { replicas.min(current) };
    Some(Evaluation { replicas, utilization, average })
}

/// Upstream's default scaling rules for one direction.
fn default_rules(up: bool) -> HPAScalingRules {
    let v = if up {
        json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]})
    } else {
        json!({"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]})
    };
    serde_json::from_value(v).expect("static rules")
}

/// The rules in effect for a direction: the user's, with upstream defaults for what is unset.
fn rules(hpa: &HorizontalPodAutoscaler, up: bool) -> HPAScalingRules {
    let b = hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
    let given = if up { b.and_then(|b| b.scale_up.clone()) } else { b.and_then(|b| b.scale_down.clone()) };
    let def = default_rules(up);
    match given {
        None => def,
        Some(g) => HPAScalingRules {
            policies: g.policies.or(def.policies),
            select_policy: g.select_policy.or(def.select_policy),
            stabilization_window_seconds: g.stabilization_window_seconds.or(def.stabilization_window_seconds),
            tolerance: g.tolerance,
        },
    }
}

/// The stabilized recommendation: a scale up takes the lowest and a scale down the highest
/// recommendation seen within its window (upstream's stabilizeRecommendationWithBehaviors).
pub fn stabilize(current: i32, desired: i32, history: &[(Instant, i32)], now: Instant, up_window: u64, down_window: u64) -> i32 {
    let (mut up, mut down) = (desired, desired);
    for (t, r) in history {
        let age = now.saturating_duration_since(*t).as_secs_f64();
        if age < up_window as f64 {
            up = up.min(*r);
        }
        if age < down_window as f64 {
            down = down.max(*r);
        }
    }
    current.max(up).min(down)
}

/// The furthest a direction's policies let replicas move from `current` now, given the
/// changes already made within each policy's period.
pub fn policy_limit(current: i32, rules: &HPAScalingRules, events: &[(Instant, i32)], now: Instant, up: bool) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let mut limits = Vec::new();
    for p in rules.policies.iter().flatten() {
        let moved: i32 = events
            .iter()
            .filter(|(t, change)| now.saturating_duration_since(*t).as_secs() < p.period_seconds as u64 && (*change > 0) == up)
            .map(|(_, c)| c.abs())
            .sum();
        let start = if up { current - moved } else { current + moved };
        let limit = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i32,
            (_, false) => (start as f64 * (1.0 - p.value as f64 / 100.0)).floor() as i32,
        };
        limits.push(limit);
    }
    let most = if up { limits.iter().max() } else { limits.iter().min() };
    let least = if up { limits.iter().min() } else { limits.iter().max() };
    let chosen = if select == "Min" { least } else { most };
    chosen.copied().unwrap_or(if up { i32::MAX } else { 0 })
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason, "message": message})
}

/// Carry lastTransitionTime over from the old conditions when a status did not change.
fn with_transition_times(conds: Vec<Value>, old: &[Value]) -> Vec<Value> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    conds
        .into_iter()
        .map(|mut c| {
            let prev = old.iter().find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
            c["lastTransitionTime"] = prev.map(|o| o["lastTransitionTime"].clone()).unwrap_or(json!(now));
            c
        })
        .collect()
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("lastScaleTime");
    }
    v
}

async fn write_status(api: &Api<HorizontalPodAutoscaler>, hpa: &HorizontalPodAutoscaler, mut status: Value) -> Result<(), Error> {
    let old = serde_json::to_value(hpa.status.clone().unwrap_or_default()).unwrap_or_default();
    let old_conds: Vec<Value> = old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let conds: Vec<Value> = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    status["conditions"] = json!(with_transition_times(conds, &old_conds));
    if status.get("lastScaleTime").is_none() {
        if let Some(t) = old.get("lastScaleTime") {
            status["lastScaleTime"] = t.clone();
        }
    }
    if strip_times(&status) == strip_times(&old) && status.get("lastScaleTime") == old.get("lastScaleTime") {
        return Ok(());
    }
    // Replace the whole status: a merge patch would leave stale conditions behind.
    let mut next = hpa.clone();
    next.status = serde_json::from_value(status).ok();
    api.replace_status(&hpa.name_any(), &Default::default(), &next).await?;
    Ok(())
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let key = format!("{ns}/{name}");
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = hpa.spec.clone().unwrap_or_default();
    let generation = hpa.metadata.generation;
    let target = &spec.scale_target_ref;
    let (group, version) = match target.api_version.as_deref().unwrap_or("v1").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), target.api_version.clone().unwrap_or_else(|| "v1".into())),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
    let scale = match kube::discovery::pinned_kind(&ctx.client, &gvk).await {
        Ok((ar, _)) => {
            let dynamic: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
            dynamic.get_scale(&target.name).await.map(|s| (dynamic, s))
        }
        Err(e) => Err(e),
    };
    let (dynamic, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("the HPA controller was unable to get the target's current scale: {e}");
            let status = json!({"observedGeneration": generation, "currentReplicas": hpa.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0), "desiredReplicas": 0,
                "conditions": [condition("AbleToScale", false, "FailedGetScale", &msg)]});
            write_status(&api, &hpa, status).await?;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    if current == 0 && min > 0 {
        let status = json!({"observedGeneration": generation, "currentReplicas": 0, "desiredReplicas": 0, "conditions": [
            condition("AbleToScale", true, "SucceededGetScale", "the HPA controller was able to get the target's current scale"),
            condition("ScalingActive", false, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero"),
        ]});
        write_status(&api, &hpa, status).await?;
        return Ok(Action::requeue(SYNC_PERIOD));
    }
    let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    let pods: Vec<Pod> = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect();

    let mut proposals: Vec<(i32, String)> = Vec::new();
    let mut current_metrics: Vec<Value> = Vec::new();
    let mut failure: Option<(String, String)> = None;
    for m in spec.metrics.iter().flatten() {
        match resource_metric(&ctx, &ns, &selector, &pods, m, current).await? {
            Ok((replicas, cm, what)) => {
                proposals.push((replicas, what));
                current_metrics.push(cm);
            }
            Err(fail) => failure = Some(fail),
        }
    }
    let mut conditions = vec![];
    let Some((proposed, what)) = proposals.into_iter().max_by_key(|p| p.0) else {
        let (reason, msg) = failure.unwrap_or_else(|| ("InvalidMetricSourceType".into(), "no supported metrics are configured".into()));
        conditions.push(condition("AbleToScale", true, "SucceededGetScale", "the HPA controller was able to get the target's current scale"));
        conditions.push(condition("ScalingActive", false, &reason, &msg));
        let status = json!({"observedGeneration": generation, "currentReplicas": current, "desiredReplicas": current, "currentMetrics": current_metrics, "conditions": conditions});
        write_status(&api, &hpa, status).await?;
        return Ok(Action::requeue(SYNC_PERIOD));
    };

    // Behavior: stabilization, then policies, then bounds.
    let now = Instant::now();
    let up_rules = rules(&hpa, true);
    let down_rules = rules(&hpa, false);
    let up_window = up_rules.stabilization_window_seconds.unwrap_or(0).max(0) as u64;
    let down_window = down_rules.stabilization_window_seconds.unwrap_or(300).max(0) as u64;
    let (stabilized, up_limit, down_limit) = {
        let mut hist = ctx.history.lock().expect("history lock");
        let h = hist.entry(key.clone()).or_insert_with(|| History { recommendations: vec![], scale_events: vec![] });
        let keep = Duration::from_secs(up_window.max(down_window).max(600));
        h.recommendations.retain(|(t, _)| now.saturating_duration_since(*t) < keep);
        h.scale_events.retain(|(t, _)| now.saturating_duration_since(*t) < keep);
        let stabilized = stabilize(current, proposed, &h.recommendations, now, up_window, down_window);
        h.recommendations.push((now, proposed));
        (stabilized, policy_limit(current, &up_rules, &h.scale_events, now, true), policy_limit(current, &down_rules, &h.scale_events, now, false))
    };
    let (mut desired, mut limited) = (stabilized, None);
    if desired > up_limit {
        desired = up_limit;
        limited = Some(("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"));
    }
    if desired < down_limit {
        desired = down_limit;
        limited = Some(("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"));
    }
    if desired > max {
        desired = max;
        limited = Some(("TooManyReplicas", "the desired replica count is more than the maximum replica count"));
    } else if desired < min {
        desired = min;
        limited = Some(("TooFewReplicas", "the desired replica count is less than the minimum replica count"));
    }

    let mut status = json!({"observedGeneration": generation, "currentReplicas": current, "desiredReplicas": desired, "currentMetrics": current_metrics});
    if desired != current {
        let patch = json!({"spec": {"replicas": desired}});
        if let Err(e) = dynamic.patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            let msg = format!("the HPA controller was unable to update the target scale: {e}");
            status["conditions"] = json!([condition("AbleToScale", false, "FailedUpdateScale", &msg)]);
            write_status(&api, &hpa, status).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        if let Some(h) = ctx.history.lock().expect("history lock").get_mut(&key) {
            h.scale_events.push((now, desired - current));
        }
        tracing::info!(hpa = %key, from = current, to = desired, "rescaled");
        status["lastScaleTime"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
        conditions.push(condition("AbleToScale", true, "SucceededRescale", &format!("the HPA controller was able to update the target scale to {desired}")));
    } else {
        conditions.push(condition("AbleToScale", true, "ReadyForNewScale", "recommended size matches current size"));
    }
    conditions.push(condition("ScalingActive", true, "ValidMetricFound", &format!("the HPA was able to successfully calculate a replica count from {what}")));
    conditions.push(match limited {
        Some((reason, msg)) => condition("ScalingLimited", true, reason, msg),
        None => condition("ScalingLimited", false, "DesiredWithinRange", "the desired count is within the acceptable range"),
    });
    status["conditions"] = json!(conditions);
    write_status(&api, &hpa, status).await?;
    Ok(Action::requeue(SYNC_PERIOD))
}

type MetricOutcome = Result<(i32, Value, String), (String, String)>;

/// Evaluate one metric: Ok((replicas, currentMetrics entry, description)) or
/// Err((reason, message)) for the ScalingActive condition.
async fn resource_metric(ctx: &Ctx, ns: &str, selector: &str, pods: &[Pod], m: &MetricSpec, current: i32) -> Result<MetricOutcome, Error> {
    let Some(res) = m.resource.as_ref().filter(|_| m.type_ == "Resource") else {
        return Ok(Err(("InvalidMetricSourceType".into(), format!("the HPA does not support metric source type {}", m.type_))));
    };
    let resource = res.name.as_str();
    let usage = ctx.metrics.usage(ns, selector, pods, resource).await?;
    let utilization_target = res.target.type_ == "Utilization";
    let target = if utilization_target {
        res.target.average_utilization.unwrap_or(80) as f64
    } else {
        match res.target.average_value.as_ref().and_then(|q| quantity_bytes(&q.0)) {
            Some(v) if v > 0.0 => v,
            _ => return Ok(Err(("FailedGetResourceMetric".into(), format!("invalid {resource} target")))),
        }
    };
    let mut ready_usage = Vec::new();
    let mut missing = Vec::new();
    let mut unready = 0;
    for p in pods {
        let request = pod_request(p, resource);
        if utilization_target && request.is_none() {
            return Ok(Err(("FailedGetResourceMetric".into(), format!("the HPA was unable to compute the replica count: failed to get {resource} utilization: missing request for {resource} in pod {}", p.name_any()))));
        }
        let request = request.unwrap_or(0.0);
        match usage.get(&p.name_any()) {
            // Unready pods' CPU is not trusted (start-up bursts), as upstream.
            Some(_) if resource == "cpu" && !is_ready(p) => unready += 1,
            Some(u) => ready_usage.push((*u, request)),
            None => missing.push(request),
        }
    }
    let Some(ev) = evaluate(current, &ready_usage, unready, &missing, target, utilization_target) else {
        return Ok(Err(("FailedGetResourceMetric".into(), format!("the HPA was unable to compute the replica count: unable to get metrics for resource {resource}: no metrics returned from resource metrics API"))));
    };
    let average = if resource == "cpu" { format!("{}m", (ev.average * 1000.0).round() as i64) } else { format!("{}", ev.average.round() as i64) };
    let mut cur = json!({"averageValue": average});
    if let Some(u) = ev.utilization {
        cur["averageUtilization"] = json!(u);
    }
    let what = if utilization_target { format!("{resource} resource utilization (percentage of request)") } else { format!("{resource} resource") };
    Ok(Ok((ev.replicas, json!({"type": "Resource", "resource": {"name": resource, "current": cur}}), what)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_scales_proportionally_outside_tolerance() {
        // 2 pods at 90% of requests, target 50%: ceil(2 * 90 / 50) = 4.
        let e = evaluate(2, &[(0.09, 0.1), (0.09, 0.1)], 0, &[], 50.0, true).unwrap();
        assert_eq!((e.replicas, e.utilization), (4, Some(90)));
        // 54% against 50% is within the 10% tolerance.
        assert_eq!(evaluate(2, &[(0.054, 0.1), (0.054, 0.1)], 0, &[], 50.0, true).unwrap().replicas, 2);
        // 5 pods at 10%: ceil(5 * 10 / 50) = 1.
        assert_eq!(evaluate(5, &[(0.01, 0.1); 5], 0, &[], 50.0, true).unwrap().replicas, 1);
    }

    #[test]
    fn average_value_and_missing_pods() {
        // 3 pods averaging 300m against 100m: 9 replicas.
        assert_eq!(evaluate(3, &[(0.3, 0.0); 3], 0, &[], 0.1, false).unwrap().replicas, 9);
        // Scaling up with a pod not yet measured: it counts as idle, dampening the step.
        let e = evaluate(2, &[(0.1, 0.1)], 0, &[0.1], 50.0, true).unwrap();
        assert_eq!(e.replicas, 2, "(100% + 0%) / 2 = 50% is on target");
    }

    #[test]
    fn stabilization_windows_hold_the_extremes() {
        let now = Instant::now();
        let hist = vec![(now - Duration::from_secs(10), 5), (now - Duration::from_secs(400), 9)];
        assert_eq!(stabilize(5, 2, &hist, now, 0, 300), 5, "a recent 5 keeps a scale down at 5");
        assert_eq!(stabilize(5, 2, &hist, now, 0, 0), 2, "no window scales down at once");
        assert_eq!(stabilize(2, 6, &hist, now, 60, 0), 5, "a scale-up window takes the lowest");
    }

    #[test]
    fn policies_limit_the_rate() {
        let now = Instant::now();
        let up = default_rules(true);
        assert_eq!(policy_limit(2, &up, &[], now, true), 6, "max(2 + 4 pods, 2 * 200%)");
        assert_eq!(policy_limit(10, &up, &[], now, true), 20);
        assert_eq!(policy_limit(4, &up, &[(now, 2)], now, true), 6, "the period started at 2");
        let down = default_rules(false);
        assert_eq!(policy_limit(5, &down, &[], now, false), 0);
        let pods_down: HPAScalingRules = serde_json::from_value(json!({"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]})).unwrap();
        assert_eq!(policy_limit(5, &pods_down, &[(now, -1)], now, false), 5);
        assert_eq!(policy_limit(5, &pods_down, &[], now, false), 4);
    }
}
