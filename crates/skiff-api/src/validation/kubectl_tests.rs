//! Objects as kubectl and the API server produce them must validate cleanly: a false
//! rejection breaks ordinary workflows, so these are checked end to end through
//! [`validate`] and [`validate_update`].

use serde_json::{json, Value};

use super::{validate, validate_update};

fn assert_valid(group: &str, kind: &str, obj: Value) {
    let errs = validate(group, kind, &obj);
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(msgs.is_empty(), "{kind} rejected: {msgs:#?}");
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": null, "labels": {"app": name}})
}

/// A pod spec after server defaulting and scheduling, including the service account
/// token volume the admission plugin injects.
fn defaulted_pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
            "livenessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "periodSeconds": 10,
                "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-abcde", "readOnly": true}]
        }],
        "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "nodeName": "node-1",
        "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always",
        "schedulerName": "default-scheduler", "securityContext": {}, "serviceAccount": "default",
        "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
        "tolerations": [
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
        ],
        "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
        ]}}]
    })
}

#[test]
fn kubectl_created_objects_are_valid() {
    assert_valid(
        "",
        "Pod",
        json!({"metadata": meta("nginx"), "spec": {"containers": [{"image": "nginx", "name": "nginx", "resources": {}}],
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}, "status": {}}),
    );
    assert_valid(
        "",
        "Pod",
        json!({"metadata": meta("nginx"), "spec": defaulted_pod_spec()}),
    );
    assert_valid(
        "apps",
        "Deployment",
        json!({"metadata": meta("nginx"), "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "nginx"}}, "strategy": {},
        "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "nginx"}},
            "spec": {"containers": [{"image": "nginx", "name": "nginx", "resources": {}}]}}}, "status": {}}),
    );
    assert_valid(
        "apps",
        "Deployment",
        json!({"metadata": meta("nginx"), "spec": {"replicas": 3, "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600, "selector": {"matchLabels": {"app": "nginx"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": defaulted_pod_spec()}}}),
    );
    assert_valid(
        "apps",
        "StatefulSet",
        json!({"metadata": meta("db"), "spec": {"serviceName": "db", "replicas": 1,
        "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres",
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    );
    assert_valid(
        "apps",
        "DaemonSet",
        json!({"metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"hostNetwork": true,
            "containers": [{"name": "a", "image": "agent", "ports": [{"containerPort": 9100, "hostPort": 9100, "protocol": "TCP"}]}]}}}}),
    );
    assert_valid(
        "",
        "Service",
        json!({"metadata": meta("nginx"), "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "selector": {"app": "nginx"}}}),
    );
    assert_valid(
        "",
        "Service",
        json!({"metadata": meta("nginx"), "spec": {"type": "NodePort", "clusterIP": "10.43.12.7",
        "clusterIPs": ["10.43.12.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080},
                  {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443, "nodePort": 30443}],
        "selector": {"app": "nginx"}}}),
    );
    assert_valid(
        "batch",
        "Job",
        json!({"metadata": meta("pi"), "spec": {"template": {"metadata": {},
        "spec": {"containers": [{"image": "perl", "name": "pi", "resources": {}}], "restartPolicy": "Never"}}}}),
    );
    assert_valid(
        "batch",
        "Job",
        json!({"metadata": meta("pi"), "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1,
        "completionMode": "NonIndexed", "suspend": false, "manualSelector": false,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "0b5d7f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}},
        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "0b5d7f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "batch.kubernetes.io/job-name": "pi", "controller-uid": "0b5d7f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "job-name": "pi"}},
            "spec": {"containers": [{"image": "perl", "name": "pi"}], "restartPolicy": "OnFailure"}}}}),
    );
    assert_valid(
        "batch",
        "CronJob",
        json!({"metadata": meta("hello"), "spec": {"schedule": "*/1 * * * *",
        "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1, "suspend": false,
        "jobTemplate": {"metadata": {"creationTimestamp": null, "name": "hello"}, "spec": {"template": {"metadata": {},
            "spec": {"containers": [{"image": "busybox", "name": "hello", "resources": {}}], "restartPolicy": "OnFailure"}}}}}}),
    );
    assert_valid(
        "",
        "ConfigMap",
        json!({"metadata": meta("cfg"), "data": {"app.properties": "a=b", "KEY_1": "v"}}),
    );
    assert_valid(
        "",
        "Secret",
        json!({"metadata": meta("s"), "type": "Opaque", "data": {"password": "cGFzcw=="}}),
    );
    assert_valid(
        "",
        "Secret",
        json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eA=="}}),
    );
    assert_valid(
        "",
        "Secret",
        json!({"metadata": meta("reg"), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}),
    );
    assert_valid(
        "",
        "Namespace",
        json!({"metadata": {"name": "dev"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    );
    assert_valid(
        "",
        "Node",
        json!({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1",
        "node-role.kubernetes.io/control-plane": ""}}, "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"],
        "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
    );
    assert_valid(
        "",
        "PersistentVolumeClaim",
        json!({"metadata": meta("data"), "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path", "volumeMode": "Filesystem"}}),
    );
    assert_valid(
        "networking.k8s.io",
        "Ingress",
        json!({"metadata": meta("simple"), "spec": {"ingressClassName": "skiff",
        "rules": [{"host": "foo.com", "http": {"paths": [{"backend": {"service": {"name": "svc1", "port": {"number": 8080}}},
            "path": "/bar", "pathType": "Exact"}]}}],
        "tls": [{"hosts": ["foo.com", "*.foo.com"], "secretName": "tls"}]}}),
    );
    assert_valid(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"metadata": meta("nginx"), "spec": {"maxReplicas": 5, "minReplicas": 1,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx"},
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
    );
    assert_valid(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"kind": "RoleBinding", "metadata": meta("bob-admin"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
    );
    assert_valid(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        json!({"metadata": {"name": "system:skiff:reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    );
    assert_valid(
        "storage.k8s.io",
        "StorageClass",
        json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
    );
    assert_valid(
        "example.com",
        "Widget",
        json!({"metadata": meta("w"), "spec": {"size": 3}}),
    );
}

#[test]
fn routine_updates_are_valid() {
    let old = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5", "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(5);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    new["metadata"]["generation"] = json!(2);
    let errs = validate_update("apps", "Deployment", &old, &new);
    assert!(errs.is_empty(), "{errs:?}");

    let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": defaulted_pod_spec()});
    let mut labelled = pod.clone();
    labelled["metadata"]["labels"] = json!({"tier": "web"});
    labelled["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert!(validate_update("", "Pod", &pod, &labelled).is_empty());
}
