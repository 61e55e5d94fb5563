//! pods/eviction honouring PodDisruptionBudgets: before an evicted pod is deleted, the one
//! budget selecting it must allow a disruption; the allowance is taken by decrementing
//! `status.disruptionsAllowed` (a compare-and-swap on the budget, retried on conflict) and
//! the pod is recorded in `status.disruptedPods` so the disruption controller does not count
//! it healthy again before it is gone.

use serde_json::{json, Value};
use skiff_api::selector::LabelSelector;
use skiff_api::status::{ApiError, Cause};

use super::write::update_with;
use crate::resources::Served;
use crate::Server;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(cause: String) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATION);
    e.causes.push(Cause { reason: "DisruptionBudget".into(), message: cause, field: String::new() });
    e
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Take one disruption from the budget covering pod `name`, or refuse with upstream's 429.
/// Terminal pods and pods without a budget pass; a pod under several budgets is refused as
/// upstream does. With `dry_run` nothing is written.
pub async fn admit(srv: &Server, pods: &Served, ns: Option<&str>, name: &str, dry_run: bool) -> Result<(), ApiError> {
    let pod = srv.objects.get(&pods.info, ns, name).await?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Ok(());
    }
    let Some(pdbs) = srv.resources.find("policy", "v1", "poddisruptionbudgets") else { return Ok(()) };
    let page = srv.objects.list(&pdbs.info, ns, 0, None, None, &|_| true).await?;
    let matching: Vec<&Value> = page
        .items
        .iter()
        .filter(|b| {
            let sel = b.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
            LabelSelector::from_json(&sel).is_ok_and(|s| s.matches_object(&pod))
        })
        .collect();
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => skiff_api::meta::name(one).to_string(),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let ready = is_ready(&pod);
    let now = skiff_api::meta::now_rfc3339();
    update_with(srv, &pdbs, ns, &budget, Some("status"), dry_run, Some("eviction"), |cur| {
        let generation = int(cur, "/metadata/generation");
        if int(cur, "/status/observedGeneration") < generation {
            return Err(too_many_requests(format!("The disruption budget {budget} is still being processed by the server.")));
        }
        let healthy = int(cur, "/status/currentHealthy");
        let desired = int(cur, "/status/desiredHealthy");
        let always = cur.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow");
        // An unready pod does not count toward the budget: it may go whenever the budget
        // is met (IfHealthyBudget) or always (AlwaysAllow), without using an allowance.
        if !ready {
            if always || healthy >= desired {
                return Ok(cur.clone());
            }
            return Err(too_many_requests(format!("The disruption budget {budget} needs {desired} healthy pods and has {healthy} currently")));
        }
        let allowed = int(cur, "/status/disruptionsAllowed");
        if allowed < 0 {
            return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
        }
        if allowed == 0 {
            return Err(too_many_requests(format!("The disruption budget {budget} needs {desired} healthy pods and has {healthy} currently")));
        }
        let mut next = cur.clone();
        next["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !next["status"]["disruptedPods"].is_object() {
            next["status"]["disruptedPods"] = json!({});
        }
        next["status"]["disruptedPods"][name] = json!(now);
        Ok(next)
    })
    .await?;
    Ok(())
}
