//! The pod phase from its container statuses, following the kubelet's rules.

use k8s_openapi::api::core::v1::ContainerStatus;

/// The phase of a pod whose init containers are all done, from its main containers'
/// statuses and `restartPolicy`.
///
/// A container waiting after having run before counts as stopped (it is restarting), one
/// waiting for its first start keeps the pod Pending.
pub fn main_phase(statuses: &[ContainerStatus], spec_containers: usize, restart_policy: &str) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    waiting += spec_containers.saturating_sub(statuses.len());
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded && statuses.iter().all(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some()) => {
                "Succeeded"
            }
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> ContainerStatus {
        let mut base = json!({"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let running = status(json!({"state": {"running": {}}}));
        let ok = status(json!({"state": {"terminated": {"exitCode": 0}}}));
        let failed = status(json!({"state": {"terminated": {"exitCode": 1}}}));
        let waiting = status(json!({"state": {"waiting": {"reason": "ContainerCreating"}}}));
        let crashloop = status(json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}));
        assert_eq!(main_phase(&[running.clone()], 1, "Always"), "Running");
        assert_eq!(main_phase(&[waiting.clone()], 1, "Always"), "Pending");
        assert_eq!(main_phase(&[running.clone()], 2, "Always"), "Pending");
        assert_eq!(main_phase(&[ok.clone()], 1, "Never"), "Succeeded");
        assert_eq!(main_phase(&[ok.clone()], 1, "OnFailure"), "Succeeded");
        assert_eq!(main_phase(&[ok.clone()], 1, "Always"), "Running");
        assert_eq!(main_phase(&[failed.clone()], 1, "Never"), "Failed");
        assert_eq!(main_phase(&[ok.clone(), failed.clone()], 2, "Never"), "Failed");
        assert_eq!(main_phase(&[failed], 1, "OnFailure"), "Running");
        assert_eq!(main_phase(&[crashloop.clone()], 1, "Always"), "Running");
        assert_eq!(main_phase(&[crashloop, running], 2, "Always"), "Running");
    }
}
