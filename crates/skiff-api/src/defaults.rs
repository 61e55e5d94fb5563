//! Defaulting as upstream does it for the common kinds, applied on create and update so that
//! what clients read back (and diff against in `kubectl apply`) matches upstream.

use serde_json::{json, Map, Value};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

/// Set `key` in `m` when absent.
fn def(m: &mut Map<String, Value>, key: &str, value: Value) {
    m.entry(key.to_string()).or_insert(value);
}

/// Child object `key` of `m`, created empty when absent.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().unwrap()
}

/// Apply upstream defaults for `group`/`kind` to `o` in place.
pub fn apply(group: &str, kind: &str, o: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = o.get_mut("spec") {
                pod_spec(spec);
                requests_from_limits(spec);
            }
        }
        ("", "LimitRange") => {
            if let Some(Value::Array(items)) = o.pointer_mut("/spec/limits") {
                for item in items.iter_mut().filter_map(obj) {
                    limit_range_item(item);
                }
            }
        }
        ("", "PodTemplate") => {
            if let Some(spec) = o.pointer_mut("/template/spec") {
                pod_spec(spec);
            }
        }
        ("apps", "Deployment") => workload(o, |spec| {
            def(spec, "replicas", json!(1));
            def(spec, "revisionHistoryLimit", json!(10));
            def(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            def(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate");
                def(ru, "maxUnavailable", json!("25%"));
                def(ru, "maxSurge", json!("25%"));
            }
        }),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => workload(o, |spec| {
            def(spec, "replicas", json!(1));
        }),
        ("apps", "StatefulSet") => workload(o, |spec| {
            def(spec, "replicas", json!(1));
            def(spec, "podManagementPolicy", json!("OrderedReady"));
            def(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            def(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                def(child(strategy, "rollingUpdate"), "partition", json!(0));
            }
            def(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            if let Some(Value::Array(claims)) = spec.get_mut("volumeClaimTemplates") {
                for c in claims {
                    if let Some(cs) = c.get_mut("spec").and_then(Value::as_object_mut) {
                        def(cs, "volumeMode", json!("Filesystem"));
                    }
                    if let Some(m) = c.as_object_mut() {
                        def(m, "apiVersion", json!("v1"));
                        def(m, "kind", json!("PersistentVolumeClaim"));
                    }
                }
            }
        }),
        ("apps", "DaemonSet") => workload(o, |spec| {
            def(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            def(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate");
                def(ru, "maxUnavailable", json!(1));
                def(ru, "maxSurge", json!(0));
            }
        }),
        ("batch", "Job") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                def(spec, "concurrencyPolicy", json!("Allow"));
                def(spec, "suspend", json!(false));
                def(spec, "successfulJobsHistoryLimit", json!(3));
                def(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(js) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")).and_then(obj) {
                    job_spec(js);
                }
            }
        }
        ("", "Service") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                def(spec, "type", json!("ClusterIP"));
                def(spec, "sessionAffinity", json!("None"));
                let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
                if ty != "ExternalName" {
                    def(spec, "internalTrafficPolicy", json!("Cluster"));
                }
                if ty == "NodePort" || ty == "LoadBalancer" {
                    def(spec, "externalTrafficPolicy", json!("Cluster"));
                }
                if ty == "LoadBalancer" {
                    def(spec, "allocateLoadBalancerNodePorts", json!(true));
                }
                if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(obj) {
                        def(p, "protocol", json!("TCP"));
                        if !p.contains_key("targetPort") {
                            if let Some(port) = p.get("port").cloned() {
                                p.insert("targetPort".into(), port);
                            }
                        }
                    }
                }
            }
        }
        ("", "Namespace") => {
            let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(m) = o.get_mut("metadata").and_then(obj) {
                child(m, "labels").insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        ("", "Secret") => {
            if let Some(m) = obj(o) {
                def(m, "type", json!("Opaque"));
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                def(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                def(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                def(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            if let Some(m) = obj(o) {
                def(m, "reclaimPolicy", json!("Delete"));
                def(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                def(spec, "minReplicas", json!(1));
            }
        }
        ("policy", "PodDisruptionBudget") | ("networking.k8s.io", "Ingress") => {}
        ("networking.k8s.io", "NetworkPolicy") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                if !spec.contains_key("policyTypes") {
                    let mut types = vec![json!("Ingress")];
                    if spec.contains_key("egress") {
                        types.push(json!("Egress"));
                    }
                    spec.insert("policyTypes".into(), Value::Array(types));
                }
            }
        }
        _ => {}
    }
}

fn workload(o: &mut Value, f: impl FnOnce(&mut Map<String, Value>)) {
    if let Some(spec) = o.get_mut("spec").and_then(obj) {
        f(spec);
        if let Some(ps) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
            pod_spec(ps);
        }
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    def(spec, "parallelism", json!(1));
    def(spec, "completions", json!(1));
    def(spec, "backoffLimit", json!(6));
    def(spec, "completionMode", json!("NonIndexed"));
    def(spec, "suspend", json!(false));
    def(spec, "manualSelector", json!(false));
    def(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(ps) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(ps);
    }
    if let Some(ps) = spec.get_mut("template").and_then(|t| t.get_mut("spec")).and_then(obj) {
        // Jobs default restartPolicy to what their template says; upstream requires Never/OnFailure.
        let _ = ps;
    }
}

/// Pod spec defaults (also used inside workload templates).
pub fn pod_spec(spec: &mut Value) {
    let Some(s) = obj(spec) else { return };
    def(s, "restartPolicy", json!("Always"));
    def(s, "terminationGracePeriodSeconds", json!(30));
    def(s, "dnsPolicy", json!("ClusterFirst"));
    def(s, "securityContext", json!({}));
    def(s, "schedulerName", json!("default-scheduler"));
    def(s, "enableServiceLinks", json!(true));
    if s.contains_key("serviceAccountName") || s.contains_key("serviceAccount") {
        let sa = s.get("serviceAccountName").or_else(|| s.get("serviceAccount")).cloned().unwrap_or(json!("default"));
        s.insert("serviceAccountName".into(), sa.clone());
        s.insert("serviceAccount".into(), sa);
    }
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut().filter_map(obj) {
                container(c);
            }
        }
    }
    if let Some(Value::Array(vols)) = s.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(obj) {
            for src in ["configMap", "secret", "downwardAPI", "projected"] {
                if let Some(m) = v.get_mut(src).and_then(obj) {
                    def(m, "defaultMode", json!(420));
                }
            }
            if let Some(ed) = v.get_mut("emptyDir") {
                if ed.is_null() {
                    *ed = json!({});
                }
            }
            if let Some(hp) = v.get_mut("hostPath").and_then(obj) {
                def(hp, "type", json!(""));
            }
        }
    }
}

/// Pods (not templates): a resource with a limit but no request requests its limit.
fn requests_from_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else { continue };
        for r in cs.iter_mut().filter_map(|c| c.get_mut("resources")).filter_map(obj) {
            let Some(limits) = r.get("limits").and_then(Value::as_object).cloned() else { continue };
            let requests = child(r, "requests");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// Container LimitRange items: `default` falls back to `max`, `defaultRequest` to `default`
/// and then to `min` (upstream's SetDefaults_LimitRangeItem).
fn limit_range_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
    let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
    let default = child(item, "default");
    for (k, v) in max {
        default.entry(k).or_insert(v);
    }
    let default = default.clone();
    let default_request = child(item, "defaultRequest");
    for (k, v) in default.into_iter().chain(min) {
        default_request.entry(k).or_insert(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    let latest = {
        let last = image.rsplit('/').next().unwrap_or("");
        !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    def(c, "imagePullPolicy", json!(if latest { "Always" } else { "IfNotPresent" }));
    def(c, "terminationMessagePath", json!("/dev/termination-log"));
    def(c, "terminationMessagePolicy", json!("File"));
    def(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(obj) {
            def(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(obj) {
            def(p, "timeoutSeconds", json!(1));
            def(p, "periodSeconds", json!(10));
            def(p, "successThreshold", json!(1));
            def(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(obj) {
                def(h, "path", json!("/"));
                def(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// QoS class of a pod as upstream computes it: Guaranteed, Burstable or BestEffort.
pub fn pod_qos(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let has = |m: Option<&Map<String, Value>>, k: &str| m.is_some_and(|m| m.contains_key(k));
        if has(req, "cpu") || has(req, "memory") || has(lim, "cpu") || has(lim, "memory") {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(r));
            let q = req.and_then(|m| m.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_upstream() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        apply("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn pod_requests_default_to_limits_and_limit_ranges_fill_defaults() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}}]}});
        apply("", "Pod", &mut p);
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "1", "memory": "1Mi"}));
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "4Mi"}}, {"type": "Pod", "max": {"cpu": "4"}}]}});
        apply("", "LimitRange", &mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(lr["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "2", "memory": "4Mi"}));
        assert!(lr["spec"]["limits"][1].get("default").is_none());
    }

    #[test]
    fn image_pull_policy_depends_on_tag() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "registry:5000/nginx:1.25"}, {"name": "b", "image": "nginx:latest"}]}});
        apply("", "Pod", &mut p);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(p["spec"]["containers"][1]["imagePullPolicy"], "Always");
    }

    #[test]
    fn qos_classes() {
        assert_eq!(pod_qos(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        assert_eq!(pod_qos(&json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})), "Guaranteed");
        assert_eq!(pod_qos(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})), "Burstable");
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "Service", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
