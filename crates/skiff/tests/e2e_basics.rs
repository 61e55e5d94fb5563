//! End-to-end: the real `skiff server` driven by the real kubectl (1.33 and an older client).

use serde_json::Value;
use skiff_testkit::{kubectl_path, Cluster};

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

#[test]
fn namespaces_deployments_output_formats_and_restart() {
    let mut c = cluster();
    c.ok(&["create", "namespace", "team-a"]).unwrap();
    let out = c.ok(&["get", "namespaces"]).unwrap();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "team-a"] {
        assert!(out.contains(ns), "{ns} missing from:\n{out}");
    }
    c.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3", "-n", "team-a"]).unwrap();
    let d = c.json(&["get", "deployment", "web", "-n", "team-a"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let wide = c.ok(&["get", "deploy", "-n", "team-a", "-o", "wide"]).unwrap();
    assert!(wide.contains("CONTAINERS") && wide.contains("nginx:1.25") && wide.contains("app=web"), "{wide}");
    assert_eq!(c.ok(&["get", "deploy", "-n", "team-a", "-o", "name"]).unwrap().trim(), "deployment.apps/web");
    let jp = c.ok(&["get", "deploy", "web", "-n", "team-a", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).unwrap();
    assert_eq!(jp, "nginx:1.25");
    let yaml = c.ok(&["get", "deploy", "web", "-n", "team-a", "-o", "yaml"]).unwrap();
    assert!(yaml.contains("kind: Deployment") && yaml.contains("replicas: 3"), "{yaml}");
    // Generation moves with spec changes only.
    c.ok(&["label", "deploy", "web", "-n", "team-a", "tier=front"]).unwrap();
    assert_eq!(c.json(&["get", "deploy", "web", "-n", "team-a"]).unwrap()["metadata"]["generation"], 1);
    c.ok(&["scale", "deploy", "web", "-n", "team-a", "--replicas=5"]).unwrap();
    let d = c.json(&["get", "deploy", "web", "-n", "team-a"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    let rv_before: i64 = d["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();

    let status = c.stop().unwrap();
    assert!(status.success(), "SIGTERM exit: {status}");
    c.restart().unwrap();
    let d = c.json(&["get", "deploy", "web", "-n", "team-a"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    c.ok(&["create", "configmap", "after-restart", "-n", "team-a", "--from-literal=k=v"]).unwrap();
    let cm = c.json(&["get", "cm", "after-restart", "-n", "team-a"]).unwrap();
    let rv_after: i64 = cm["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv_after > rv_before, "revisions continue after restart: {rv_after} <= {rv_before}");
}

#[test]
fn older_kubectl_works_too() {
    let c = cluster();
    let minor = [31, 30].into_iter().find(|m| kubectl_path(*m).is_some()).expect("kubectl 1.30 or 1.31 installed");
    let run = |args: &[&str]| {
        let out = c.kubectl_version(minor, args).unwrap();
        assert!(out.status.success(), "kubectl 1.{minor} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["create", "deployment", "old", "--image=busybox"]);
    run(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    let out = run(&["get", "deploy,cm"]);
    assert!(out.contains("deployment.apps/old") && out.contains("configmap/cfg"), "{out}");
    let out = run(&["get", "all"]);
    assert!(out.contains("service/kubernetes") && out.contains("deployment.apps/old"), "{out}");
    run(&["delete", "deployment", "old"]);
    assert!(!run(&["get", "deploy"]).contains("old"));
}

#[test]
fn api_resources_and_discovery() {
    let c = cluster();
    let out = c.ok(&["api-resources"]).unwrap();
    for line in ["deployments ", "deploy", "horizontalpodautoscalers", "customresourcedefinitions", "certificatesigningrequests", "leases", "endpointslices", "networkpolicies"] {
        assert!(out.contains(line), "{line} missing");
    }
    let ns = c.ok(&["api-resources", "--namespaced=false", "-o", "name"]).unwrap();
    assert!(ns.contains("nodes") && ns.contains("namespaces") && !ns.lines().any(|l| l == "pods"), "{ns}");
    let versions = c.ok(&["api-versions"]).unwrap();
    for gv in ["apps/v1", "autoscaling/v2", "autoscaling/v1", "batch/v1", "policy/v1", "v1", "rbac.authorization.k8s.io/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} missing: {versions}");
    }
    let v: Value = serde_json::from_str(&c.ok(&["version", "-o", "json"]).unwrap()).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
}

#[test]
fn errors_are_upstream_shaped() {
    let c = cluster();
    let e = c.fails(&["get", "deployment", "nope"]).unwrap();
    assert!(e.contains("Error from server (NotFound): deployments.apps \"nope\" not found"), "{e}");
    c.ok(&["create", "configmap", "dup", "--from-literal=a=1"]).unwrap();
    let e = c.fails(&["create", "configmap", "dup", "--from-literal=a=1"]).unwrap();
    assert!(e.contains("configmaps \"dup\" already exists"), "{e}");
    let e = c.fails(&["create", "namespace", "Bad_Name"]).unwrap();
    assert!(e.contains("Invalid") && e.contains("RFC 1123"), "{e}");
    let e = c.fails(&["get", "pods", "-n", "missing-ns", "x"]).unwrap();
    assert!(e.contains("NotFound"), "{e}");
    let e = c.fails(&["get", "--raw", "/apis/apps/v1/nosuchthing"]).unwrap();
    assert!(e.contains("NotFound") || e.contains("not find"), "{e}");
    // Selector mismatch is refused with a field cause.
    let bad = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"bad"},"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"y"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], bad).unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("selector") && e.contains("does not match template"), "{e}");
}

#[test]
fn labels_annotations_patches_and_selectors() {
    let c = cluster();
    c.ok(&["create", "configmap", "a", "--from-literal=x=1"]).unwrap();
    c.ok(&["create", "configmap", "b", "--from-literal=x=2"]).unwrap();
    c.ok(&["label", "cm", "a", "env=prod", "tier=db"]).unwrap();
    c.ok(&["label", "cm", "b", "env=dev"]).unwrap();
    c.ok(&["annotate", "cm", "a", "owner=alice"]).unwrap();
    assert_eq!(c.ok(&["get", "cm", "-l", "env=prod", "-o", "name"]).unwrap().trim(), "configmap/a");
    assert_eq!(c.ok(&["get", "cm", "-l", "env in (dev,test)", "-o", "name"]).unwrap().trim(), "configmap/b");
    assert_eq!(c.ok(&["get", "cm", "-l", "env,!tier", "-o", "name"]).unwrap().trim(), "configmap/b");
    assert_eq!(c.ok(&["get", "cm", "--field-selector", "metadata.name=a", "-o", "name"]).unwrap().trim(), "configmap/a");
    let shown = c.ok(&["get", "cm", "a", "--show-labels"]).unwrap();
    assert!(shown.contains("env=prod,tier=db"), "{shown}");
    c.ok(&["patch", "cm", "a", "--type=merge", "-p", r#"{"data":{"y":"merge"}}"#]).unwrap();
    c.ok(&["patch", "cm", "a", "--type=json", "-p", r#"[{"op":"replace","path":"/data/x","value":"json"}]"#]).unwrap();
    c.ok(&["patch", "cm", "a", "-p", r#"{"data":{"z":"strategic"}}"#]).unwrap();
    let cm = c.json(&["get", "cm", "a"]).unwrap();
    assert_eq!(cm["data"]["x"], "json");
    assert_eq!(cm["data"]["y"], "merge");
    assert_eq!(cm["data"]["z"], "strategic");
    assert_eq!(cm["metadata"]["annotations"]["owner"], "alice");
    let e = c.fails(&["patch", "cm", "a", "--type=json", "-p", r#"[{"op":"test","path":"/data/x","value":"nope"}]"#]).unwrap();
    assert!(e.contains("test failed"), "{e}");
    let e = c.fails(&["get", "cm", "--field-selector", "spec.foo=bar"]).unwrap();
    assert!(e.contains("\"spec.foo\" is not a known field selector"), "{e}");
}

#[test]
fn chunked_lists_are_consistent() {
    let c = cluster();
    for i in 0..25 {
        c.ok(&["create", "configmap", &format!("cm-{i:02}"), "--from-literal=a=b"]).unwrap();
    }
    let out = c.ok(&["get", "cm", "--chunk-size=4", "-o", "name"]).unwrap();
    let names: Vec<&str> = out.lines().filter(|l| l.starts_with("configmap/cm-")).collect();
    assert_eq!(names.len(), 25, "{out}");
    let raw: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=10"]).unwrap()).unwrap();
    assert_eq!(raw["items"].as_array().unwrap().len(), 10);
    let token = raw["metadata"]["continue"].as_str().unwrap().to_string();
    // Changes after the first page do not show in later pages of the same list.
    c.ok(&["create", "configmap", "cm-zz-late", "--from-literal=a=b"]).unwrap();
    let ours = |v: &Value| v["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("cm-"));
    let mut seen = raw["items"].as_array().unwrap().iter().filter(|i| ours(i)).count();
    let mut token = Some(token);
    while let Some(t) = token {
        let page: Value = serde_json::from_str(&c.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={t}")]).unwrap()).unwrap();
        for item in page["items"].as_array().unwrap() {
            assert_ne!(item["metadata"]["name"], "cm-zz-late");
            if ours(item) {
                seen += 1;
            }
        }
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 25, "the late configmap must not appear in a list begun before it");
}

/// Unpaged lists longer than one store batch (500) are streamed batch by batch; the body must
/// still be one valid list with every item once, in key order, plain and label-selected.
#[test]
fn long_unpaged_lists_stream_every_item_once() {
    let c = cluster();
    c.ok(&["create", "namespace", "many"]).unwrap();
    let n = 1100;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let half = if i % 2 == 0 { "a" } else { "b" };
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i:04}"), "labels": {"half": half}}, "data": {"i": i.to_string()}})
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let out = c.kubectl_stdin(&["create", "-n", "many", "-f", "-"], &list).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // (The namespace also holds the kube-root-ca.crt ConfigMap the controllers publish.)
    let names = |v: &Value| -> Vec<String> {
        let names = v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string());
        names.filter(|n| n.starts_with("cm-")).collect()
    };
    let all: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/many/configmaps"]).unwrap()).unwrap();
    assert_eq!(all["kind"], "ConfigMapList");
    assert!(all["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()));
    assert!(all["metadata"].get("continue").is_none());
    let want: Vec<String> = (0..n).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names(&all), want);
    for item in all["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "ConfigMap");
        assert!(item["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()), "{item}");
    }
    let half: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/many/configmaps?labelSelector=half%3Da"]).unwrap()).unwrap();
    let want_half: Vec<String> = (0..n).step_by(2).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names(&half), want_half);
    let none: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/many/configmaps?labelSelector=half%3Dz"]).unwrap()).unwrap();
    assert_eq!(none["items"], serde_json::json!([]));
}

#[test]
fn versions_sharing_storage_convert() {
    let c = cluster();
    let ev = r#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e1","namespace":"default"},"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"skiff-test","reportingInstance":"t1","action":"Testing","reason":"Tested","note":"hello from events/v1","type":"Normal","regarding":{"kind":"ConfigMap","name":"cfg","namespace":"default"}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], ev).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same event through core/v1, found by core's field selector.
    let core: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dcfg"]).unwrap()).unwrap();
    let items = core["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{core}");
    assert_eq!(items[0]["message"], "hello from events/v1");
    assert_eq!(items[0]["involvedObject"]["kind"], "ConfigMap");
    assert_eq!(items[0]["source"]["component"], "skiff-test");
    let hpa = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"web"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,"maxReplicas":4,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}}]}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], hpa).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v1: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web"]).unwrap()).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    let table = c.ok(&["get", "hpa"]).unwrap();
    assert!(table.contains("Deployment/web") && table.contains("4"), "{table}");
}

#[test]
fn service_accounts_tokens_and_root_ca() {
    let c = cluster();
    c.ok(&["create", "namespace", "apps"]).unwrap();
    c.eventually(std::time::Duration::from_secs(20), "default service account and root CA", || {
        c.ok(&["get", "sa", "default", "-n", "apps"]).is_ok() && c.ok(&["get", "cm", "kube-root-ca.crt", "-n", "apps"]).is_ok()
    })
    .unwrap();
    let cm = c.json(&["get", "cm", "kube-root-ca.crt", "-n", "apps"]).unwrap();
    assert!(cm["data"]["ca.crt"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    // Deleted defaults come back.
    c.ok(&["delete", "sa", "default", "-n", "apps"]).unwrap();
    c.eventually(std::time::Duration::from_secs(20), "default service account recreated", || c.ok(&["get", "sa", "default", "-n", "apps"]).is_ok()).unwrap();
    // kubectl create token (protobuf TokenRequest on 1.33), then the token authenticates.
    c.ok(&["create", "serviceaccount", "builder", "-n", "apps"]).unwrap();
    let token = c.ok(&["create", "token", "builder", "-n", "apps", "--duration=15m"]).unwrap();
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // A client with only the token (no client certificate).
    let server = format!("https://127.0.0.1:{}", c.port);
    let ca = c.data_dir().join("tls").join("ca.crt");
    let as_token = |t: &str, args: &[&str]| {
        std::process::Command::new(skiff_testkit::kubectl_path(33).unwrap())
            .args(["--kubeconfig", "/dev/null", "--server", &server, "--certificate-authority", ca.to_str().unwrap(), "--token", t])
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_token(token, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:serviceaccount:apps:builder");
    // Not an admin: denied with upstream's wording, and can-i says so truthfully.
    let out = as_token(token, &["get", "pods", "-n", "apps"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("forbidden") && e.contains("system:serviceaccount:apps:builder") && e.contains("cannot list resource \"pods\""), "{e}");
    let out = as_token(token, &["auth", "can-i", "list", "pods", "-n", "apps"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let out = as_token("not-a-token", &["get", "ns"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("Unauthorized") || e.contains("provide credentials"), "{e}");
}

/// The `kubernetes` Service has an EndpointSlice (what the service proxy and DNS read) as
/// well as Endpoints, both at the server's address and port, and both are put back on the
/// next start when someone changed them.
#[test]
fn kubernetes_service_endpoints_and_slice_follow_the_server() {
    let mut c = cluster();
    let port = c.port.to_string();
    let endpoints = |c: &Cluster| c.ok(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}"]).unwrap();
    let slice = |c: &Cluster| {
        c.ok(&["get", "endpointslice", "kubernetes", "-o", "jsonpath={.metadata.labels.kubernetes\\.io/service-name} {.addressType} {.endpoints[0].addresses[0]}:{.ports[0].port} {.endpoints[0].conditions.ready}"])
            .unwrap()
    };
    assert_eq!(endpoints(&c), format!("127.0.0.1:{port}"));
    assert_eq!(slice(&c), format!("kubernetes IPv4 127.0.0.1:{port} true"));
    c.ok(&["patch", "endpointslice", "kubernetes", "--type=json", "-p", r#"[{"op": "replace", "path": "/ports/0/port", "value": 1}]"#]).unwrap();
    c.ok(&["patch", "endpoints", "kubernetes", "--type=json", "-p", r#"[{"op": "replace", "path": "/subsets/0/ports/0/port", "value": 1}]"#]).unwrap();
    assert!(slice(&c).ends_with(":1 true"));
    assert!(endpoints(&c).ends_with(":1"));
    c.restart().unwrap();
    assert_eq!(endpoints(&c), format!("127.0.0.1:{port}"));
    assert_eq!(slice(&c), format!("kubernetes IPv4 127.0.0.1:{port} true"));
}
