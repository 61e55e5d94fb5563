//! End-to-end, real kubectl: `get` variants (all, -A, -l, --show-labels, field selectors),
//! `describe` with events, `explain` and `edit`.

mod kubectl_common;

use kubectl_common::{cluster, heartbeat, kubectl_env, ok_stdin};

/// `describe` output with every run of spaces collapsed, so checks do not depend on column
/// alignment (which kubectl computes per section).
fn norm(s: &str) -> String {
    s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

/// Rows of a table as whitespace-split columns, header excluded.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[test]
fn get_all_all_namespaces_labels_and_show_labels() {
    let c = cluster();
    c.ok(&["create", "namespace", "team-a"]).unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx", "-n", "team-a"]).unwrap();
    c.ok(&["create", "deployment", "api", "--image=nginx"]).unwrap();
    c.ok(&["create", "service", "clusterip", "api", "--tcp=80:80"]).unwrap();
    c.ok(&["create", "job", "once", "--image=busybox"]).unwrap();
    c.ok(&["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *"]).unwrap();
    c.ok(&["create", "configmap", "not-in-all", "--from-literal=a=b"]).unwrap();

    let all = c.ok(&["get", "all"]).unwrap();
    for k in ["service/kubernetes", "service/api", "deployment.apps/api", "job.batch/once", "cronjob.batch/tick"] {
        assert!(all.contains(k), "{k} missing from get all:\n{all}");
    }
    assert!(!all.contains("configmap") && !all.contains("deployment.apps/web"), "{all}");
    let all_a = c.ok(&["get", "all", "-A"]).unwrap();
    assert!(all_a.contains("NAMESPACE") && all_a.contains("deployment.apps/web") && all_a.contains("deployment.apps/api"), "{all_a}");
    // (The deployment's ReplicaSet and pods appear too once the controllers have run.)
    let all_n = c.ok(&["get", "all", "-n", "team-a", "-o", "name"]).unwrap();
    assert!(all_n.lines().any(|l| l == "deployment.apps/web"), "{all_n}");
    assert!(all_n.lines().all(|l| l.starts_with("deployment.apps/web") || l.starts_with("replicaset.apps/web-") || l.starts_with("pod/web-")), "{all_n}");

    // -A on a namespaced kind shows the namespace column.
    let deps = c.ok(&["get", "deploy", "-A"]).unwrap();
    let r = rows(&deps);
    assert!(deps.starts_with("NAMESPACE"), "{deps}");
    assert!(r.iter().any(|r| r[0] == "team-a" && r[1] == "web") && r.iter().any(|r| r[0] == "default" && r[1] == "api"), "{deps}");
    let ns = c.ok(&["get", "ns", "-A", "-o", "name"]).unwrap();
    assert!(ns.contains("namespace/team-a") && ns.contains("namespace/kube-system"), "{ns}");

    // Labels: -l in its forms, --show-labels, -L.
    c.ok(&["label", "deploy", "api", "tier=back", "env=prod"]).unwrap();
    c.ok(&["label", "deploy", "web", "-n", "team-a", "tier=front", "env=dev"]).unwrap();
    assert_eq!(c.ok(&["get", "deploy", "-A", "-l", "tier=front", "-o", "name"]).unwrap().trim(), "deployment.apps/web");
    assert_eq!(c.ok(&["get", "deploy", "-A", "-l", "env notin (dev)", "-o", "name"]).unwrap().trim(), "deployment.apps/api");
    assert_eq!(c.ok(&["get", "deploy", "-A", "-l", "tier,env!=prod", "-o", "name"]).unwrap().trim(), "deployment.apps/web");
    let none = c.kubectl(&["get", "deploy", "-l", "tier=nope"]).unwrap();
    assert!(none.status.success() && String::from_utf8_lossy(&none.stderr).contains("No resources found in default namespace."));
    let shown = c.ok(&["get", "deploy", "api", "--show-labels"]).unwrap();
    assert!(shown.lines().next().unwrap().trim_end().ends_with("LABELS"), "{shown}");
    assert!(shown.contains("app=api,env=prod,tier=back"), "{shown}");
    let cols = c.ok(&["get", "deploy", "-A", "-L", "tier"]).unwrap();
    assert!(cols.lines().next().unwrap().contains("TIER") && cols.contains("front") && cols.contains("back"), "{cols}");
    // Labels on all: `get all -l`.
    let all_l = c.ok(&["get", "all", "-A", "-l", "tier=back", "-o", "name"]).unwrap();
    assert_eq!(all_l.trim(), "deployment.apps/api");
    // Removing a label.
    c.ok(&["label", "deploy", "api", "tier-"]).unwrap();
    assert!(c.ok(&["get", "deploy", "-l", "tier", "-o", "name"]).unwrap().trim().is_empty());
}

#[test]
fn field_selectors() {
    let c = cluster();
    c.ok(&["create", "namespace", "other"]).unwrap();
    for (name, ns) in [("x", "default"), ("y", "default"), ("x", "other")] {
        c.ok(&["create", "configmap", name, "-n", ns, "--from-literal=a=b"]).unwrap();
    }
    assert_eq!(c.ok(&["get", "cm", "--field-selector", "metadata.name=x", "-o", "name"]).unwrap().trim(), "configmap/x");
    let both = c.ok(&["get", "cm", "-A", "--field-selector", "metadata.name=x", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}"]).unwrap();
    assert_eq!(both.trim(), "default/x other/x");
    let not_x = c.ok(&["get", "cm", "--field-selector", "metadata.name!=x", "-o", "name"]).unwrap();
    assert!(not_x.contains("configmap/y") && !not_x.contains("configmap/x"), "{not_x}");
    let in_other = c.ok(&["get", "cm", "-A", "--field-selector", "metadata.namespace=other,metadata.name!=kube-root-ca.crt", "-o", "name"]).unwrap();
    assert_eq!(in_other.trim(), "configmap/x");
    let combined = c.ok(&["get", "cm", "-A", "--field-selector", "metadata.name=x,metadata.namespace!=other", "-o", "jsonpath={.items[*].metadata.namespace}"]).unwrap();
    assert_eq!(combined, "default");

    // Per-kind fields: pods by spec.nodeName and status.phase; events by involvedObject.
    let pod = |name: &str, node: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}]}}}}"#)
    };
    ok_stdin(&c, &["create", "-f", "-"], &pod("on-a", "node-a"));
    ok_stdin(&c, &["create", "-f", "-"], &pod("on-b", "node-b"));
    assert_eq!(c.ok(&["get", "pods", "--field-selector", "spec.nodeName=node-a", "-o", "name"]).unwrap().trim(), "pod/on-a");
    c.ok(&["patch", "pod", "on-b", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]).unwrap();
    assert_eq!(c.ok(&["get", "pods", "--field-selector", "status.phase=Running", "-o", "name"]).unwrap().trim(), "pod/on-b");
    assert_eq!(c.ok(&["get", "pods", "--field-selector", "status.phase!=Running", "-o", "name"]).unwrap().trim(), "pod/on-a");
    ok_stdin(&c, &["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e1"},"involvedObject":{"kind":"Pod","name":"on-a","namespace":"default"},"reason":"Testing","message":"hello","type":"Normal"}"#);
    ok_stdin(&c, &["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e2"},"involvedObject":{"kind":"Pod","name":"on-b","namespace":"default"},"reason":"Other","message":"bye","type":"Warning"}"#);
    assert_eq!(c.ok(&["get", "events", "--field-selector", "involvedObject.name=on-a", "-o", "name"]).unwrap().trim(), "event/e1");
    assert_eq!(c.ok(&["get", "events", "--field-selector", "type=Warning", "-o", "name"]).unwrap().trim(), "event/e2");
    assert_eq!(c.ok(&["get", "events", "--field-selector", "reason=Testing,involvedObject.kind=Pod", "-o", "name"]).unwrap().trim(), "event/e1");
    // Field and label selectors together.
    c.ok(&["label", "cm", "y", "k=v"]).unwrap();
    assert_eq!(c.ok(&["get", "cm", "-l", "k=v", "--field-selector", "metadata.name=y", "-o", "name"]).unwrap().trim(), "configmap/y");
    assert!(c.ok(&["get", "cm", "-l", "k=v", "--field-selector", "metadata.name=x", "-o", "name"]).unwrap().trim().is_empty());
    let e = c.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]).unwrap();
    assert!(e.contains("field label not supported"), "{e}");
}

#[allow(clippy::too_many_arguments)]
fn event(name: &str, kind: &str, api_version: &str, obj: &str, uid: &str, reason: &str, message: &str, type_: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Event
metadata:
  name: {name}
  namespace: default
involvedObject:
  apiVersion: {api_version}
  kind: {kind}
  name: {obj}
  namespace: default
  uid: {uid}
reason: {reason}
message: {message}
type: {type_}
source:
  component: e2e-test
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 3
"#
    )
}

#[test]
fn describe_deployment_shows_its_events() {
    let c = cluster();
    c.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"]).unwrap();
    c.ok(&["set", "env", "deployment/web", "MODE=prod"]).unwrap();
    let uid = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], &event("web.1", "Deployment", "apps/v1", "web", &uid, "ScalingReplicaSet", "Scaled up replica set web-abc to 2", "Normal"));
    ok_stdin(&c, &["create", "-f", "-"], &event("web.2", "Deployment", "apps/v1", "web", &uid, "Unhealthy", "Something went wrong", "Warning"));
    // An event about another object must not show.
    ok_stdin(&c, &["create", "-f", "-"], &event("other.1", "Deployment", "apps/v1", "other", "00000000-0000-0000-0000-000000000000", "Elsewhere", "Not about web", "Normal"));

    let out = norm(&c.ok(&["describe", "deployment", "web"]).unwrap());
    for want in ["Name: web", "Namespace: default", "Selector: app=web", "Replicas: 2 desired", "StrategyType: RollingUpdate", "Image: nginx:1.25", "Port: 80/TCP", "MODE: prod", "Events:"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let events = &out[out.find("Events:").unwrap()..];
    assert!(events.contains("ScalingReplicaSet") && events.contains("Scaled up replica set web-abc to 2") && events.contains("e2e-test"), "{events}");
    assert!(events.contains("Warning") && events.contains("Unhealthy"), "{events}");
    assert!(!events.contains("Elsewhere"), "{events}");
    // `get events` table shows the object column.
    let ev = c.ok(&["get", "events"]).unwrap();
    assert!(ev.contains("deployment/web") && ev.contains("ScalingReplicaSet"), "{ev}");
    // `describe deploy` with a label selector and no name.
    let by_label = norm(&c.ok(&["describe", "deploy", "-l", "app=web"]).unwrap());
    assert!(by_label.contains("Name: web"), "{by_label}");
}

#[test]
fn describe_pod_and_node() {
    let c = cluster();
    ok_stdin(&c, &["create", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels:\n    kubernetes.io/hostname: worker-1\n");
    c.ok(&["patch", "node", "worker-1", "--subresource=status", "--type=merge", "-p", &heartbeat(r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"addresses":[{"type":"InternalIP","address":"192.0.2.10"}],"nodeInfo":{"kubeletVersion":"v1.33.0","osImage":"Debian","kernelVersion":"6.1","containerRuntimeVersion":"skiff://0.1","architecture":"amd64","operatingSystem":"linux","machineID":"m","systemUUID":"s","bootID":"b","kubeProxyVersion":"v1.33.0"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"HEARTBEAT","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#)]).unwrap();
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","labels":{"app":"p"}},"spec":{"nodeName":"worker-1","containers":[{"name":"main","image":"busybox:1.36","command":["sleep","3600"],"resources":{"requests":{"cpu":"250m","memory":"64Mi"},"limits":{"memory":"128Mi"}}}]}}"#;
    ok_stdin(&c, &["create", "-f", "-"], pod);
    let uid = c.ok(&["get", "pod", "p1", "-o", "jsonpath={.metadata.uid}"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], &event("p1.1", "Pod", "v1", "p1", &uid, "Pulled", "Container image already present", "Normal"));

    let out = norm(&c.ok(&["describe", "pod", "p1"]).unwrap());
    for want in ["Name: p1", "Node: worker-1", "Labels: app=p", "Status: Pending", "main:", "Image: busybox:1.36", "Command:\nsleep\n3600", "Limits:\nmemory: 128Mi", "Requests:\ncpu: 250m\nmemory: 64Mi", "QoS Class: Burstable", "Events:", "Normal Pulled", "e2e-test Container image already present"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }

    let out = norm(&c.ok(&["describe", "node", "worker-1"]).unwrap());
    for want in ["Name: worker-1", "kubernetes.io/hostname=worker-1", "Taints: <none>", "Unschedulable: false", "Ready True", "KubeletReady", "InternalIP: 192.0.2.10", "Kubelet Version: v1.33.0", "Non-terminated Pods: (1 in total)", "default p1 250m (6%)"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let nodes = c.ok(&["get", "nodes", "-o", "wide"]).unwrap();
    let r = rows(&nodes);
    assert_eq!(r[0][0..2], ["worker-1".to_string(), "Ready".to_string()], "{nodes}");
    assert!(nodes.contains("192.0.2.10") && nodes.contains("v1.33.0") && nodes.contains("Debian"), "{nodes}");
    let pods = c.ok(&["get", "pods", "-o", "wide"]).unwrap();
    assert!(pods.contains("worker-1") && pods.contains("Pending"), "{pods}");
}

#[test]
fn explain_fields() {
    let c = cluster();
    let out = c.ok(&["explain", "deployment.spec.replicas"]).unwrap();
    assert!(out.contains("KIND:       Deployment") && out.contains("GROUP:      apps") && out.contains("FIELD: replicas <integer>"), "{out}");
    assert!(out.contains("Number of desired pods"), "{out}");
    let out = c.ok(&["explain", "pods.spec.containers"]).unwrap();
    assert!(out.contains("KIND:       Pod") && out.contains("FIELD: containers <[]Container>"), "{out}");
    for f in ["args\t<[]string>", "image\t<string>", "name\t<string> -required-", "ports\t<[]ContainerPort>", "resources\t<ResourceRequirements>"] {
        assert!(out.contains(f), "{f:?} missing from:\n{out}");
    }
    let out = c.ok(&["explain", "cronjobs.spec.jobTemplate.spec.template.spec.restartPolicy"]).unwrap();
    assert!(out.contains("FIELD: restartPolicy <string>"), "{out}");
    let out = c.ok(&["explain", "svc", "--recursive"]).unwrap();
    assert!(out.contains("KIND:       Service") && out.contains("nodePort\t<integer>"), "{out}");
    let out = c.ok(&["explain", "hpa.spec.metrics", "--api-version=autoscaling/v2"]).unwrap();
    assert!(out.contains("VERSION:    v2") && out.contains("FIELD: metrics <[]MetricSpec>"), "{out}");
    let e = c.fails(&["explain", "deployment.spec.nosuchfield"]).unwrap();
    assert!(e.contains("nosuchfield"), "{e}");
}

#[test]
fn edit_with_kube_editor() {
    let c = cluster();
    c.ok(&["create", "configmap", "cfg", "--from-literal=greeting=hello"]).unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2"]).unwrap();
    let out = kubectl_env(&c, 33, &[("KUBE_EDITOR", "sed -i s/greeting:\\ hello/greeting:\\ bonjour/")], &["edit", "cm", "cfg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/cfg edited");
    assert_eq!(c.json(&["get", "cm", "cfg"]).unwrap()["data"]["greeting"], "bonjour");

    let out = kubectl_env(&c, 33, &[("KUBE_EDITOR", "sed -i -e s/replicas:\\ 2/replicas:\\ 4/ -e s/nginx:1.25/nginx:1.26/")], &["edit", "deploy", "web"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(d["metadata"]["generation"], 2);

    // An edit the server refuses fails and changes nothing.
    let out = kubectl_env(&c, 33, &[("KUBE_EDITOR", "sed -i s/replicas:\\ 4/replicas:\\ -1/")], &["edit", "deploy", "web"]);
    assert!(!out.status.success(), "negative replicas accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deployments.apps \"web\" is invalid"), "{err}");
    assert_eq!(c.json(&["get", "deploy", "web"]).unwrap()["spec"]["replicas"], 4);
    // An editor that changes nothing: "Edit cancelled".
    let out = kubectl_env(&c, 33, &[("KUBE_EDITOR", "true")], &["edit", "cm", "cfg"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Edit cancelled"), "{}", String::from_utf8_lossy(&out.stderr));
    // JSON output mode of edit works as well.
    let out = kubectl_env(&c, 33, &[("KUBE_EDITOR", "sed -i s/bonjour/hola/")], &["edit", "cm", "cfg", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.json(&["get", "cm", "cfg"]).unwrap()["data"]["greeting"], "hola");
}
