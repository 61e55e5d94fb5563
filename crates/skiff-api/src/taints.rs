//! Taint and toleration matching, shared by the scheduler (TaintToleration), the DaemonSet
//! controller and taint-based eviction, so all three read a toleration the same way.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// True when `t` tolerates `taint`: an empty effect matches every effect; `Exists` with an
/// empty key matches every taint; `Equal` (the default) needs key and value to match.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
        _ => t.key.as_deref() == Some(taint.key.as_str()) && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(str::to_string), effect: effect.into(), time_added: None }
    }

    #[test]
    fn matching_rules() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        let exists_all = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert!(tolerates(&exists_all, &t));
        let equal = Toleration { key: Some("dedicated".into()), value: Some("gpu".into()), ..Default::default() };
        assert!(tolerates(&equal, &t));
        let wrong_value = Toleration { key: Some("dedicated".into()), value: Some("cpu".into()), ..Default::default() };
        assert!(!tolerates(&wrong_value, &t));
        let wrong_effect = Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), effect: Some("NoExecute".into()), ..Default::default() };
        assert!(!tolerates(&wrong_effect, &t));
    }
}
