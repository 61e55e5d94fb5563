//! Workload validation: Deployment, ReplicaSet, ReplicationController, StatefulSet,
//! DaemonSet (apps), Job and CronJob (batch).

use serde_json::{json, Value};

use super::meta::{meta_of, selector_is_empty, validate_label_selector, validate_labels};
use super::pod::validate_pod_template;
use super::{
    child, get_arr, get_i64, get_str, nonnegative, render_label_selector, str_or_empty, FieldError,
};
use crate::selector::LabelSelector;

fn spec_of(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&Value::Null)
}

/// `metav1.LabelSelector` checks shared by the apps kinds: required, valid, non-empty.
fn check_selector(spec: &Value, kind_word: &str, errs: &mut Vec<FieldError>) {
    match spec.get("selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, "spec.selector"));
            if selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    render_label_selector(sel),
                    format!("empty selector is invalid for {kind_word}"),
                ));
            }
        }
    }
}

/// Template checks for controllers that keep pods running (`ValidatePodTemplateSpecForReplicaSet`).
fn check_running_template(
    spec: &Value,
    kind: &str,
    selector: &LabelSelector,
    errs: &mut Vec<FieldError>,
) {
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    check_template_labels(template, selector, errs);
    errs.extend(validate_pod_template(template, "spec.template"));
    check_always_restart(template, kind, errs);
}

fn check_always_restart(template: &Value, kind: &str, errs: &mut Vec<FieldError>) {
    let tspec = template.get("spec").unwrap_or(&Value::Null);
    // Absent means defaulted to Always.
    if let Some(rp) = get_str(tspec, "restartPolicy").filter(|rp| *rp != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
    if tspec
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn check_template_labels(template: &Value, selector: &LabelSelector, errs: &mut Vec<FieldError>) {
    if !selector.is_empty() && !selector.matches_object(template) {
        let labels = meta_of(template)
            .get("labels")
            .cloned()
            .unwrap_or(json!({}));
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        ));
    }
}

/// Converts `spec.selector`, reporting a selector that cannot be converted.
fn selector_of(spec: &Value, errs: &mut Vec<FieldError>, detail: &str) -> Option<LabelSelector> {
    let sel = spec.get("selector").unwrap_or(&Value::Null);
    match LabelSelector::from_json(sel) {
        Ok(s) => Some(s),
        Err(_) => {
            errs.push(FieldError::invalid(
                "spec.selector",
                render_label_selector(sel),
                detail,
            ));
            None
        }
    }
}

/// IntOrString fields such as `maxUnavailable`: a non-negative integer or a percentage.
fn int_or_percent(errs: &mut Vec<FieldError>, v: Option<&Value>, path: &str) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(FieldError::invalid(
                    path,
                    n,
                    "must be greater than or equal to 0",
                ));
            }
            Some(n)
        }
        Some(Value::String(s)) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits {
                Some(d) => {
                    let pct: i64 = d.parse().unwrap_or(i64::MAX);
                    Some(pct)
                }
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        s,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
        _ => None,
    }
}

fn check_max_unavailable_surge(ru: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mu_path = child(path, "maxUnavailable");
    let mu = int_or_percent(errs, ru.get("maxUnavailable"), &mu_path);
    let ms = int_or_percent(errs, ru.get("maxSurge"), &child(path, "maxSurge"));
    if mu == Some(0) && ms.unwrap_or(0) == 0 && ru.get("maxSurge").is_some() {
        errs.push(FieldError::invalid(
            &mu_path,
            ru.get("maxUnavailable").unwrap_or(&Value::Null),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some(Value::String(s)) = ru.get("maxUnavailable") {
        if mu.is_some_and(|p| p > 100) {
            errs.push(FieldError::invalid(
                &mu_path,
                s,
                "must not be greater than 100%",
            ));
        }
    }
}

/// DaemonSets surge or make pods unavailable, exactly one of the two (defaults: one
/// unavailable, no surge).
fn check_daemon_rolling_update(ru: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mu_path = child(path, "maxUnavailable");
    let ms_path = child(path, "maxSurge");
    let mu = int_or_percent(errs, ru.get("maxUnavailable"), &mu_path);
    let ms = int_or_percent(errs, ru.get("maxSurge"), &ms_path);
    for (k, p, v) in [("maxUnavailable", &mu_path, mu), ("maxSurge", &ms_path, ms)] {
        if let (Some(Value::String(s)), Some(pct)) = (ru.get(k), v) {
            if pct > 100 {
                errs.push(FieldError::invalid(p, s, "must not be greater than 100%"));
            }
        }
    }
    let has_unavailable = mu.unwrap_or(if ru.get("maxUnavailable").is_some() {
        0
    } else {
        1
    }) != 0;
    let has_surge = ms.unwrap_or(0) != 0;
    match (has_unavailable, has_surge) {
        (true, true) => errs.push(FieldError::invalid(
            &ms_path,
            ru.get("maxSurge").unwrap_or(&Value::Null),
            "may not be set when maxUnavailable is non-zero",
        )),
        (false, false) => errs.push(FieldError::required(
            &mu_path,
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
}

/// apps/v1 Deployment.
pub(crate) fn validate_deployment(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    nonnegative(&mut errs, spec, "replicas", "spec");
    check_selector(spec, "deployment", &mut errs);
    if let Some(sel) = selector_of(spec, &mut errs, "invalid label selector") {
        check_running_template(spec, "ReplicaSet", &sel, &mut errs);
    }
    if let Some(strategy) = spec.get("strategy").filter(|s| !s.is_null()) {
        match get_str(strategy, "type").unwrap_or("RollingUpdate") {
            "Recreate" => {
                if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                    check_max_unavailable_surge(ru, "spec.strategy.rollingUpdate", &mut errs);
                }
            }
            _ => errs.push(FieldError::not_supported(
                "spec.strategy",
                strategy,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    nonnegative(&mut errs, spec, "minReadySeconds", "spec");
    nonnegative(&mut errs, spec, "revisionHistoryLimit", "spec");
    if let Some(pds) = get_i64(spec, "progressDeadlineSeconds") {
        nonnegative(&mut errs, spec, "progressDeadlineSeconds", "spec");
        if pds <= get_i64(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// apps/v1 ReplicaSet. Upstream's message says "deployment" here too.
pub(crate) fn validate_replica_set(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    nonnegative(&mut errs, spec, "replicas", "spec");
    nonnegative(&mut errs, spec, "minReadySeconds", "spec");
    check_selector(spec, "deployment", &mut errs);
    if let Some(sel) = selector_of(spec, &mut errs, "invalid label selector") {
        check_running_template(spec, "ReplicaSet", &sel, &mut errs);
    }
    errs
}

/// core/v1 ReplicationController, whose selector is a plain map.
pub(crate) fn validate_replication_controller(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    nonnegative(&mut errs, spec, "replicas", "spec");
    nonnegative(&mut errs, spec, "minReadySeconds", "spec");
    let selector_map = spec
        .get("selector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if selector_map.is_empty() {
        errs.push(FieldError::required("spec.selector", ""));
    }
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"));
    let map = selector_map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let sel = LabelSelector::from_map(&map).unwrap_or_default();
    check_running_template(spec, "ReplicationController", &sel, &mut errs);
    errs
}

/// apps/v1 StatefulSet. Volume mounts may refer to `volumeClaimTemplates`, so those count as
/// volumes when the template is checked.
pub(crate) fn validate_stateful_set(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    if let Some(p) = get_str(spec, "podManagementPolicy") {
        if p != "OrderedReady" && p != "Parallel" {
            errs.push(FieldError::invalid(
                "spec.podManagementPolicy",
                p,
                "must be 'OrderedReady' or 'Parallel'",
            ));
        }
    }
    if let Some(us) = spec.get("updateStrategy").filter(|u| !u.is_null()) {
        let has_ru = us.get("rollingUpdate").is_some_and(|r| !r.is_null());
        match get_str(us, "type").unwrap_or("RollingUpdate") {
            "OnDelete" if has_ru => errs.push(FieldError::invalid(
                "spec.updateStrategy.rollingUpdate",
                &us["rollingUpdate"],
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            "OnDelete" => {}
            "RollingUpdate" => {
                if has_ru {
                    nonnegative(
                        &mut errs,
                        &us["rollingUpdate"],
                        "partition",
                        "spec.updateStrategy.rollingUpdate",
                    );
                }
            }
            _ => errs.push(FieldError::invalid(
                "spec.updateStrategy",
                us,
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
    }
    if let Some(policy) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|p| !p.is_null())
    {
        for k in ["whenDeleted", "whenScaled"] {
            if let Some(v) = get_str(policy, k).filter(|v| *v != "Retain" && *v != "Delete") {
                errs.push(FieldError::not_supported(
                    child("spec.persistentVolumeClaimRetentionPolicy", k),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    if let Some(ordinals) = spec.get("ordinals").filter(|o| !o.is_null()) {
        nonnegative(&mut errs, ordinals, "start", "spec.ordinals");
    }
    nonnegative(&mut errs, spec, "replicas", "spec");
    nonnegative(&mut errs, spec, "minReadySeconds", "spec");
    check_selector(spec, "statefulset", &mut errs);
    let Some(sel) = selector_of(spec, &mut errs, "") else {
        return errs;
    };
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return errs;
    };
    check_template_labels(template, &sel, &mut errs);
    let mut template = template.clone();
    let claims: Vec<Value> = get_arr(spec, "volumeClaimTemplates")
        .iter()
        .map(|c| {
            let name = str_or_empty(meta_of(c), "name");
            json!({"name": name, "persistentVolumeClaim": {"claimName": name}})
        })
        .collect();
    if !claims.is_empty() {
        if let Some(tspec) = template.get_mut("spec").and_then(Value::as_object_mut) {
            let vols = tspec.entry("volumes").or_insert_with(|| json!([]));
            if let Some(arr) = vols.as_array_mut() {
                arr.extend(claims);
            }
        }
    }
    errs.extend(validate_pod_template(&template, "spec.template"));
    check_always_restart(&template, "StatefulSet", &mut errs);
    errs
}

/// apps/v1 DaemonSet: a null selector matches nothing and so fails the template match.
pub(crate) fn validate_daemon_set(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    let sel_value = spec.get("selector").unwrap_or(&Value::Null);
    errs.extend(validate_label_selector(sel_value, "spec.selector"));
    let template = spec.get("template").unwrap_or(&Value::Null);
    if let Ok(sel) = LabelSelector::from_json(sel_value) {
        if !sel.matches_object(template) {
            let labels = meta_of(template)
                .get("labels")
                .cloned()
                .unwrap_or(json!({}));
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                &labels,
                "`selector` does not match template `labels`",
            ));
        }
    }
    if !sel_value.is_null() && selector_is_empty(sel_value) {
        errs.push(FieldError::invalid(
            "spec.selector",
            render_label_selector(sel_value),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template(template, "spec.template"));
    check_always_restart(template, "DaemonSet", &mut errs);
    nonnegative(&mut errs, spec, "minReadySeconds", "spec");
    nonnegative(&mut errs, spec, "templateGeneration", "spec");
    if let Some(us) = spec.get("updateStrategy").filter(|u| !u.is_null()) {
        match get_str(us, "type").unwrap_or("RollingUpdate") {
            "OnDelete" => {}
            "RollingUpdate" => {
                if let Some(ru) = us.get("rollingUpdate").filter(|r| !r.is_null()) {
                    check_daemon_rolling_update(ru, "spec.updateStrategy.rollingUpdate", &mut errs);
                }
            }
            other => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                other,
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    errs
}

/// Job spec checks shared by Job and CronJob's job template, rooted at `path`.
fn validate_job_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for k in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(errs, spec, k, path);
    }
    if let Some(mode) = get_str(spec, "completionMode") {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                child(path, "completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if spec.get("completions").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    child(path, "completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = get_i64(spec, "parallelism").filter(|p| *p > 100_000) {
                errs.push(FieldError::invalid(
                    child(path, "parallelism"),
                    p,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    errs.extend(validate_pod_template(template, &child(path, "template")));
    // Pod templates default restartPolicy to Always, which Jobs reject.
    let rp = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if rp != "OnFailure" && rp != "Never" {
        errs.push(FieldError::not_supported(
            child(path, "template.spec.restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        ));
    }
}

/// batch/v1 Job. The selector is generated by the API server unless `manualSelector` is
/// set, so it is only checked when present.
pub(crate) fn validate_job(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        errs.extend(validate_label_selector(sel, "spec.selector"));
        if let Ok(s) = LabelSelector::from_json(sel) {
            let template = spec.get("template").unwrap_or(&Value::Null);
            if !s.matches_object(template) {
                let labels = meta_of(template)
                    .get("labels")
                    .cloned()
                    .unwrap_or(json!({}));
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    &labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    } else if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    validate_job_spec(spec, "spec", &mut errs);
    errs
}

/// batch/v1 CronJob: name length, schedule syntax, time zone, policy and the job template.
pub(crate) fn validate_cron_job(obj: &Value) -> Vec<FieldError> {
    let spec = spec_of(obj);
    let mut errs = Vec::new();
    let name = str_or_empty(meta_of(obj), "name");
    // Job names get an 11-character suffix and must stay DNS-1035 labels.
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    match get_str(spec, "schedule").unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        s if s.contains("TZ") => errs.push(FieldError::invalid(
            "spec.schedule",
            s,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        )),
        s => {
            if let Err(e) = super::cron::parse_schedule(s) {
                errs.push(FieldError::invalid("spec.schedule", s, e));
            }
        }
    }
    if let Some(tz) = get_str(spec, "timeZone") {
        if tz.is_empty() {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                tz,
                "timeZone must be nil or non-empty string",
            ));
        } else if tz.eq_ignore_ascii_case("local") {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                tz,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ));
        } else if tz.contains(' ') || tz.starts_with('/') || tz.contains("..") {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                tz,
                "unknown time zone ".to_string() + tz,
            ));
        }
    }
    super::pod::enum_field(
        &mut errs,
        spec,
        "concurrencyPolicy",
        "spec",
        &["Allow", "Forbid", "Replace"],
    );
    for k in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(&mut errs, spec, k, "spec");
    }
    let jt = spec.get("jobTemplate").unwrap_or(&Value::Null);
    errs.extend(super::meta::validate_template_meta(
        meta_of(jt),
        "spec.jobTemplate.metadata",
    ));
    let jspec = jt.get("spec").unwrap_or(&Value::Null);
    if let Some(sel) = jspec.get("selector").filter(|s| !s.is_null()) {
        errs.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            sel,
            "`selector` will be auto-generated",
        ));
    }
    if jspec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        ));
    }
    validate_job_spec(jspec, "spec.jobTemplate.spec", &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    fn deployment(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    }

    #[test]
    fn deployment_ok_and_mismatch() {
        let ok = deployment(
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
        );
        assert!(validate_deployment(&ok).is_empty());
        let bad = deployment(
            json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "db"}))}),
        );
        let e = strs(validate_deployment(&bad));
        assert!(e.contains(
            &"spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string()
        ));
        assert!(e.contains(&"spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`".to_string()));
    }

    #[test]
    fn deployment_selector_rules() {
        let e = strs(validate_deployment(&deployment(
            json!({"template": template(json!({"app": "web"}))}),
        )));
        assert!(e.contains(&"spec.selector: Required value".to_string()));
        let e = strs(validate_deployment(&deployment(
            json!({"selector": {}, "template": template(json!({"app": "web"}))}),
        )));
        assert!(e
            .iter()
            .any(|m| m.ends_with("empty selector is invalid for deployment")));
        let e = strs(validate_deployment(&deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "Recreate", "rollingUpdate": {}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
        }))));
        assert!(e.contains(&"spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'".to_string()));
        assert!(e.contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string()));
        let e = strs(validate_deployment(&deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            "template": template(json!({"app": "web"}))
        }))));
        assert_eq!(e, ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]);
    }

    #[test]
    fn stateful_set_claims_count_as_volumes() {
        let sts = deployment(json!({
            "selector": {"matchLabels": {"app": "db"}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                {"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
            ]}}
        }));
        assert_eq!(strs(validate_stateful_set(&sts)), Vec::<String>::new());
        let e = strs(validate_stateful_set(&deployment(
            json!({"selector": {}, "podManagementPolicy": "Random", "template": template(json!({}))}),
        )));
        assert!(e.contains(&"spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'".to_string()));
        assert!(e
            .iter()
            .any(|m| m.ends_with("empty selector is invalid for statefulset")));
    }

    #[test]
    fn daemon_set_and_replica_set() {
        let e = strs(validate_daemon_set(&deployment(
            json!({"template": template(json!({"app": "x"}))}),
        )));
        assert!(e
            .iter()
            .any(|m| m.ends_with("`selector` does not match template `labels`")));
        let e = strs(validate_replica_set(&deployment(
            json!({"selector": {}, "template": template(json!({}))}),
        )));
        assert!(e
            .iter()
            .any(|m| m.ends_with("empty selector is invalid for deployment")));
        let ds = |ru: Value| {
            deployment(
                json!({"selector": {"matchLabels": {"a": "b"}}, "template": template(json!({"a": "b"})),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}),
            )
        };
        assert!(validate_daemon_set(&ds(json!({"maxUnavailable": 1, "maxSurge": 0}))).is_empty());
        assert_eq!(
            strs(validate_daemon_set(&ds(json!({"maxUnavailable": 0, "maxSurge": 0})))),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        assert_eq!(
            strs(validate_daemon_set(&ds(json!({"maxUnavailable": "10%", "maxSurge": 1})))),
            ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
        );
        let rc = deployment(
            json!({"selector": {"app": "a"}, "template": template(json!({"app": "a"}))}),
        );
        assert!(validate_replication_controller(&rc).is_empty());
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let job = deployment(json!({"template": template(json!({}))}));
        let e = strs(validate_job(&job));
        assert_eq!(e, ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]);
        let job = deployment(
            json!({"completionMode": "Indexed", "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}),
        );
        assert_eq!(
            strs(validate_job(&job)),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
        let cj = deployment(
            json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}}}),
        );
        assert!(validate_cron_job(&cj).is_empty());
        let cj = json!({"metadata": {"name": "x".repeat(53)}, "spec": {"schedule": "bad", "concurrencyPolicy": "Sometimes", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}});
        let e = strs(validate_cron_job(&cj));
        assert!(e
            .iter()
            .any(|m| m.ends_with("must be no more than 52 characters")));
        assert!(e.contains(
            &"spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
                .to_string()
        ));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.concurrencyPolicy: Unsupported value: \"Sometimes\"")));
    }
}
