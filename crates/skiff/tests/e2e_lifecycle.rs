//! End-to-end, real kubectl: status through the status subresource and `wait --for=condition`,
//! finalizers and `wait --for=delete`, `auth can-i` / `whoami`, and deletion with each cascade
//! mode and of whole namespaces (these need the garbage collector and namespace controller).

mod kubectl_common;

use std::time::Duration;

use kubectl_common::{cluster, fails_stdin, get_opt, heartbeat, ok_stdin, poll, Background};
use skiff_testkit::Cluster;

const T: Duration = Duration::from_secs(10);

const WIDGET_CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"widgets","singular":"widget","kind":"Widget"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}},"subresources":{"status":{}}}]}}"#;

const AVAILABLE: &str = r#"{"status":{"readyReplicas":2,"conditions":[{"type":"Available","status":"True","reason":"SetByTest","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;

/// `kubectl wait --for=condition` on status written through the status subresource. Kinds that
/// skiff's controllers reconcile (Deployments) get their status from the controllers, so the
/// waits run on kinds nobody else writes (a custom resource, Nodes); the Deployment part checks
/// the subresource split itself.
#[test]
fn wait_for_condition_set_through_status_subresource() {
    let c = cluster();
    ok_stdin(&c, &["apply", "-f", "-"], WIDGET_CRD);
    c.ok(&["wait", "crd/widgets.example.com", "--for=condition=Established", "--timeout=10s"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":1}}"#);
    // Not available yet: a short wait times out.
    let e = c.fails(&["wait", "widget/w", "--for=condition=Available", "--timeout=1s"]).unwrap();
    assert!(e.contains("timed out waiting for the condition"), "{e}");
    // Status sent to the main resource is dropped.
    c.ok(&["patch", "widget", "w", "--type=merge", "-p", AVAILABLE]).unwrap();
    assert!(c.json(&["get", "widget", "w"]).unwrap().get("status").is_none(), "status written through the main resource");

    // A waiter that is already watching sees the status change.
    let mut waiter = Background::start(&c, 33, "wait-available", &["wait", "widget/w", "--for=condition=Available", "--timeout=10s", "-v=6"]);
    waiter.wait_watching(T);
    c.ok(&["patch", "widget", "w", "--subresource=status", "--type=merge", "-p", AVAILABLE]).unwrap();
    assert!(waiter.wait_exit(Duration::from_secs(12)), "wait failed: {}", waiter.stderr());
    assert_eq!(waiter.stdout().trim(), "widget.example.com/w condition met");
    let w = c.json(&["get", "widget", "w"]).unwrap();
    assert_eq!(w["metadata"]["generation"], 1, "status writes do not bump generation");
    // Already met: returns at once. Other condition forms and jsonpath.
    c.ok(&["wait", "widget/w", "--for=condition=Available=True", "--timeout=2s"]).unwrap();
    c.ok(&["wait", "widget/w", "--for=jsonpath={.status.readyReplicas}=2", "--timeout=2s"]).unwrap();
    let e = c.fails(&["wait", "widget/w", "--for=condition=Available=False", "--timeout=1s"]).unwrap();
    assert!(e.contains("timed out"), "{e}");
    // The status subresource ignores spec changes.
    c.ok(&["patch", "widget", "w", "--subresource=status", "--type=merge", "-p", r#"{"spec":{"size":9}}"#]).unwrap();
    assert_eq!(c.json(&["get", "widget", "w"]).unwrap()["spec"]["size"], 1);

    // Several nodes by label, their Ready condition set by the test.
    for n in ["n1", "n2"] {
        ok_stdin(&c, &["create", "-f", "-"], &format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{n}","labels":{{"grp":"w"}}}}}}"#));
    }
    let mut waiter = Background::start(&c, 33, "wait-nodes", &["wait", "node", "-l", "grp=w", "--for=condition=Ready", "--timeout=10s", "-v=6"]);
    waiter.wait_watching(T);
    for n in ["n1", "n2"] {
        c.ok(&["patch", "node", n, "--subresource=status", "--type=merge", "-p", &heartbeat(r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok","lastHeartbeatTime":"HEARTBEAT","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#)]).unwrap();
    }
    assert!(waiter.wait_exit(Duration::from_secs(12)), "{}", waiter.stderr());
    let out = waiter.stdout();
    assert!(out.contains("node/n1 condition met") && out.contains("node/n2 condition met"), "{out}");

    // Deployments: status only through the subresource, spec only through the main resource.
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]).unwrap();
    c.ok(&["patch", "deploy", "web", "--type=merge", "-p", AVAILABLE]).unwrap();
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    let set_by_test = |d: &serde_json::Value| d["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "SetByTest"));
    assert!(!set_by_test(&d), "status written through the main resource: {}", d["status"]);
    c.ok(&["patch", "deploy", "web", "--subresource=status", "--type=merge", "-p", r#"{"spec":{"replicas":9}}"#]).unwrap();
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
}

fn add_finalizer(c: &Cluster, what: &[&str]) {
    let mut args = vec!["patch"];
    args.extend_from_slice(what);
    args.extend(["--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold"]}}"#]);
    c.ok(&args).unwrap();
}

fn remove_finalizers(c: &Cluster, what: &[&str]) {
    let mut args = vec!["patch"];
    args.extend_from_slice(what);
    args.extend(["--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    c.ok(&args).unwrap();
}

#[test]
fn delete_with_finalizer_keeps_object_until_removed() {
    let c = cluster();
    c.ok(&["create", "configmap", "held", "--from-literal=a=1"]).unwrap();
    add_finalizer(&c, &["cm", "held"]);
    let out = c.ok(&["delete", "cm", "held", "--wait=false"]).unwrap();
    assert_eq!(out.trim(), "configmap \"held\" deleted");
    let cm = c.json(&["get", "cm", "held"]).unwrap();
    let ts = cm["metadata"]["deletionTimestamp"].as_str().expect("deletionTimestamp set").to_string();
    assert_eq!(cm["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(cm["metadata"]["finalizers"][0], "example.com/hold");
    // Still listed, still updatable.
    assert!(c.ok(&["get", "cm", "-o", "name"]).unwrap().contains("configmap/held"));
    c.ok(&["patch", "cm", "held", "--type=merge", "-p", r#"{"data":{"b":"2"}}"#]).unwrap();
    // Deleting again changes nothing.
    c.ok(&["delete", "cm", "held", "--wait=false"]).unwrap();
    assert_eq!(c.json(&["get", "cm", "held"]).unwrap()["metadata"]["deletionTimestamp"], ts.as_str());
    // No new finalizers on an object being deleted.
    let e = c.fails(&["patch", "cm", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#]).unwrap();
    assert!(e.contains("Forbidden") && e.contains("no new finalizers can be added if the object is being deleted"), "{e}");
    // `delete --wait` (the default) waits for the finalizer; bounded with --timeout.
    let e = c.fails(&["delete", "cm", "held", "--timeout=1s"]).unwrap();
    assert!(e.contains("timed out"), "{e}");
    // Removing the finalizer finishes the deletion.
    remove_finalizers(&c, &["cm", "held"]);
    assert!(get_opt(&c, &["cm", "held"]).is_none(), "gone once the last finalizer is removed");

    // Two finalizers: removing one is not enough.
    c.ok(&["create", "configmap", "two", "--from-literal=a=1"]).unwrap();
    c.ok(&["patch", "cm", "two", "--type=merge", "-p", r#"{"metadata":{"finalizers":["a.example.com/x","b.example.com/y"]}}"#]).unwrap();
    c.ok(&["delete", "cm", "two", "--wait=false"]).unwrap();
    c.ok(&["patch", "cm", "two", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#]).unwrap();
    let cm = get_opt(&c, &["cm", "two"]).expect("still there with one finalizer");
    assert_eq!(cm["metadata"]["finalizers"], serde_json::json!(["b.example.com/y"]));
    c.ok(&["patch", "cm", "two", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#]).unwrap();
    assert!(get_opt(&c, &["cm", "two"]).is_none());

    // The name is free again.
    c.ok(&["create", "configmap", "held", "--from-literal=a=2"]).unwrap();
    assert!(c.json(&["get", "cm", "held"]).unwrap()["metadata"].get("deletionTimestamp").is_none());
}

#[test]
fn wait_for_delete() {
    let c = cluster();
    c.ok(&["create", "deployment", "web", "--image=nginx"]).unwrap();
    add_finalizer(&c, &["deploy", "web"]);
    c.ok(&["delete", "deploy", "web", "--wait=false"]).unwrap();
    let e = c.fails(&["wait", "deploy/web", "--for=delete", "--timeout=1s"]).unwrap();
    assert!(e.contains("timed out waiting for the condition"), "{e}");
    let mut waiter = Background::start(&c, 33, "wait-delete", &["wait", "deploy/web", "--for=delete", "--timeout=10s", "-v=6"]);
    // Make sure the waiter is watching before the finalizer goes (it prints nothing until done).
    waiter.wait_watching(T);
    assert!(waiter.running(), "wait returned early: {} {}", waiter.stdout(), waiter.stderr());
    remove_finalizers(&c, &["deploy", "web"]);
    assert!(waiter.wait_exit(Duration::from_secs(12)), "{}", waiter.stderr());
    assert_eq!(waiter.stdout().trim(), "deployment.apps/web condition met");
    // Waiting for the deletion of something already gone succeeds at once.
    c.ok(&["wait", "deploy/web", "--for=delete", "--timeout=2s"]).unwrap();
    // By label across several objects.
    for n in ["a", "b"] {
        c.ok(&["create", "configmap", n, "--from-literal=k=v"]).unwrap();
        c.ok(&["label", "cm", n, "batch=1"]).unwrap();
        add_finalizer(&c, &["cm", n]);
    }
    c.ok(&["delete", "cm", "-l", "batch=1", "--wait=false"]).unwrap();
    let mut waiter = Background::start(&c, 33, "wait-delete-l", &["wait", "cm", "-l", "batch=1", "--for=delete", "--timeout=10s", "-v=6"]);
    waiter.wait_watching(T);
    remove_finalizers(&c, &["cm", "a"]);
    remove_finalizers(&c, &["cm", "b"]);
    assert!(waiter.wait_exit(Duration::from_secs(12)), "{}", waiter.stderr());
}

#[test]
fn auth_can_i_and_whoami() {
    let c = cluster();
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods"]).unwrap().trim(), "yes");
    assert_eq!(c.ok(&["auth", "can-i", "delete", "deployments.apps", "-n", "kube-system"]).unwrap().trim(), "yes");
    assert_eq!(c.ok(&["auth", "can-i", "*", "*", "--all-namespaces"]).unwrap().trim(), "yes");
    assert_eq!(c.ok(&["auth", "can-i", "get", "/healthz"]).unwrap().trim(), "yes");
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods", "--subresource=exec"]).unwrap().trim(), "yes");
    let list = c.ok(&["auth", "can-i", "--list"]).unwrap();
    assert!(list.contains("*.*") && list.contains("[*]"), "{list}");
    let who = c.ok(&["auth", "whoami"]).unwrap();
    assert!(who.contains("Username") && who.contains("system:admin") && who.contains("system:masters"), "{who}");
    let who: serde_json::Value = serde_json::from_str(&c.ok(&["auth", "whoami", "-o", "json"]).unwrap()).unwrap();
    assert_eq!(who["kind"], "SelfSubjectReview");
    assert_eq!(who["status"]["userInfo"]["username"], "system:admin");
    assert!(who["status"]["userInfo"]["groups"].as_array().unwrap().iter().any(|g| g == "system:authenticated"));
    // The same through the older client.
    let old = kubectl_common::older_minor();
    let out = c.kubectl_version(old, &["auth", "can-i", "create", "pods"]).unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "yes", "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.kubectl_version(old, &["auth", "whoami"]).unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("system:admin"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn create_token_for_a_service_account() {
    let c = cluster();
    c.ok(&["create", "serviceaccount", "bot"]).unwrap();
    let token = c.ok(&["create", "token", "bot", "--duration=10m"]).unwrap();
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    // The token alone (a kubeconfig without the admin's client certificate) authenticates as
    // the service account.
    let server = c.ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]).unwrap();
    let kc = kubectl_common::scratch(&c, "token").join("kubeconfig");
    let kc = kc.to_str().unwrap();
    let ca = c.data_dir().join("tls").join("ca.crt");
    let ca_flag = format!("--certificate-authority={}", ca.display());
    for args in [
        vec!["config", "set-cluster", "skiff", &format!("--server={server}"), &ca_flag, "--embed-certs"],
        vec!["config", "set-credentials", "bot", &format!("--token={token}")],
        vec!["config", "set-context", "bot", "--cluster=skiff", "--user=bot"],
        vec!["config", "use-context", "bot"],
    ] {
        let mut a: Vec<&str> = vec!["--kubeconfig", kc];
        a.extend(args.iter().copied());
        c.ok(&a).unwrap();
    }
    let who = c.ok(&["--kubeconfig", kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]).unwrap();
    assert_eq!(who, "system:serviceaccount:default:bot");
    // A token for a service account that does not exist is refused.
    let e = c.fails(&["create", "token", "nobody"]).unwrap();
    assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
}

/// A child ConfigMap owned by `owner` (ConfigMaps stand in for any kind: the garbage collector
/// works on owner references, whatever the kinds).
fn owned(c: &Cluster, owner: &str, child: &str, block: bool) {
    let uid = c.ok(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]).unwrap();
    ok_stdin(
        c,
        &["create", "-f", "-"],
        &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{child}","ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"{owner}","uid":"{uid}","blockOwnerDeletion":{block}}}]}}}}"#),
    );
}

#[test]
fn cascade_background_deletes_dependents() {
    let c = cluster();
    c.ok(&["create", "configmap", "owner", "--from-literal=a=1"]).unwrap();
    owned(&c, "owner", "child-1", false);
    owned(&c, "owner", "child-2", false);
    owned(&c, "child-1", "grandchild", false);
    c.ok(&["create", "configmap", "bystander", "--from-literal=a=1"]).unwrap();
    c.ok(&["delete", "cm", "owner", "--cascade=background"]).unwrap();
    assert!(get_opt(&c, &["cm", "owner"]).is_none(), "background: the owner goes at once");
    poll(T, "dependents collected", || (get_opt(&c, &["cm", "child-1"]).is_none() && get_opt(&c, &["cm", "child-2"]).is_none() && get_opt(&c, &["cm", "grandchild"]).is_none()).then_some(()));
    assert!(get_opt(&c, &["cm", "bystander"]).is_some());

    // The real thing: a Deployment's ReplicaSet (created here by hand, owned by it).
    c.ok(&["create", "deployment", "web", "--image=nginx"]).unwrap();
    let uid = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], &format!(r#"{{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{{"name":"web-1","labels":{{"app":"web"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"{uid}","controller":true,"blockOwnerDeletion":true}}]}},"spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"web"}}}},"template":{{"metadata":{{"labels":{{"app":"web"}}}},"spec":{{"containers":[{{"name":"c","image":"nginx"}}]}}}}}}}}"#));
    c.ok(&["delete", "deploy", "web"]).unwrap();
    poll(T, "replicaset collected", || get_opt(&c, &["rs", "web-1"]).is_none().then_some(()));
}

/// The garbage collector watches a custom kind as soon as its CRD is established: discovery
/// reruns on CRD changes (its periodic rerun is every 30 s, longer than this test waits).
#[test]
fn custom_resources_are_collected_right_after_their_crd_appears() {
    let c = cluster();
    ok_stdin(&c, &["apply", "-f", "-"], WIDGET_CRD);
    c.ok(&["wait", "crd/widgets.example.com", "--for=condition=Established", "--timeout=10s"]).unwrap();
    c.ok(&["create", "configmap", "owner", "--from-literal=a=1"]).unwrap();
    let uid = c.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], &format!(r#"{{"apiVersion":"example.com/v1","kind":"Widget","metadata":{{"name":"w","ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":"{uid}"}}]}}}}"#));
    c.ok(&["delete", "cm", "owner"]).unwrap();
    poll(T, "owned widget collected", || get_opt(&c, &["widget", "w"]).is_none().then_some(()));
}

#[test]
fn cascade_foreground_waits_for_dependents() {
    let c = cluster();
    c.ok(&["create", "configmap", "owner", "--from-literal=a=1"]).unwrap();
    owned(&c, "owner", "child", true);
    add_finalizer(&c, &["cm", "child"]);
    c.ok(&["delete", "cm", "owner", "--cascade=foreground", "--wait=false"]).unwrap();
    // The owner stays, marked, while a blocking dependent exists.
    let o = poll(T, "owner marked for foreground deletion", || {
        get_opt(&c, &["cm", "owner"]).filter(|o| o["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion")))
    });
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    let child = poll(T, "child deletion started", || get_opt(&c, &["cm", "child"]).filter(|ch| ch["metadata"]["deletionTimestamp"].is_string()));
    assert_eq!(child["metadata"]["finalizers"][0], "example.com/hold");
    assert!(get_opt(&c, &["cm", "owner"]).is_some(), "owner waits for its blocking dependent");
    // Once the dependent is gone, the owner goes too.
    remove_finalizers(&c, &["cm", "child"]);
    poll(T, "owner deleted after its dependents", || (get_opt(&c, &["cm", "child"]).is_none() && get_opt(&c, &["cm", "owner"]).is_none()).then_some(()));
    // `kubectl delete --cascade=foreground` with the default --wait returns once all is gone.
    c.ok(&["create", "configmap", "o2", "--from-literal=a=1"]).unwrap();
    owned(&c, "o2", "c2", true);
    c.ok(&["delete", "cm", "o2", "--cascade=foreground", "--timeout=10s"]).unwrap();
    assert!(get_opt(&c, &["cm", "o2"]).is_none() && get_opt(&c, &["cm", "c2"]).is_none());
}

#[test]
fn cascade_orphan_keeps_dependents() {
    let c = cluster();
    c.ok(&["create", "configmap", "owner", "--from-literal=a=1"]).unwrap();
    owned(&c, "owner", "child", true);
    c.ok(&["create", "configmap", "other-owner", "--from-literal=a=1"]).unwrap();
    // A child with two owners keeps the reference to the one that stays.
    let (u1, u2) = (c.ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]).unwrap(), c.ok(&["get", "cm", "other-owner", "-o", "jsonpath={.metadata.uid}"]).unwrap());
    ok_stdin(&c, &["create", "-f", "-"], &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"shared","ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":"{u1}"}},{{"apiVersion":"v1","kind":"ConfigMap","name":"other-owner","uid":"{u2}"}}]}}}}"#));
    c.ok(&["delete", "cm", "owner", "--cascade=orphan"]).unwrap();
    poll(T, "owner gone", || get_opt(&c, &["cm", "owner"]).is_none().then_some(()));
    let child = poll(T, "child orphaned", || get_opt(&c, &["cm", "child"]).filter(|ch| ch["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty())));
    assert!(child["metadata"].get("deletionTimestamp").is_none(), "{child}");
    let shared = poll(T, "shared child keeps its other owner", || {
        get_opt(&c, &["cm", "shared"]).filter(|s| s["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.len() == 1))
    });
    assert_eq!(shared["metadata"]["ownerReferences"][0]["name"], "other-owner");
    // Deleting the remaining owner in the background now collects the shared child.
    c.ok(&["delete", "cm", "other-owner"]).unwrap();
    poll(T, "shared child collected", || get_opt(&c, &["cm", "shared"]).is_none().then_some(()));
    assert!(get_opt(&c, &["cm", "child"]).is_some(), "the orphan survives");
}

#[test]
fn namespace_deletion_empties_it() {
    let c = cluster();
    c.ok(&["create", "namespace", "doomed"]).unwrap();
    let ns = c.json(&["get", "ns", "doomed"]).unwrap();
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    c.ok(&["create", "deployment", "web", "--image=nginx", "-n", "doomed"]).unwrap();
    c.ok(&["create", "configmap", "cfg", "-n", "doomed", "--from-literal=a=1"]).unwrap();
    c.ok(&["create", "secret", "generic", "s", "-n", "doomed", "--from-literal=a=1"]).unwrap();
    c.ok(&["create", "configmap", "held", "-n", "doomed", "--from-literal=a=1"]).unwrap();
    add_finalizer(&c, &["cm", "held", "-n", "doomed"]);
    c.ok(&["create", "configmap", "safe", "--from-literal=a=1"]).unwrap();

    c.ok(&["delete", "namespace", "doomed", "--wait=false"]).unwrap();
    // Terminating while something inside is held.
    let ns = poll(T, "namespace terminating", || get_opt(&c, &["ns", "doomed"]).filter(|n| n["status"]["phase"] == "Terminating"));
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let table = c.ok(&["get", "ns", "doomed"]).unwrap();
    assert!(table.contains("Terminating"), "{table}");
    // New objects are refused in a terminating namespace.
    let e = fails_stdin(&c, &["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late","namespace":"doomed"}}"#);
    assert!(e.contains("Error from server (Forbidden)") && e.contains("unable to create new content in namespace doomed because it is being terminated"), "{e}");
    poll(T, "namespace contents deleted", || {
        (c.ok(&["get", "deploy,secret", "-n", "doomed", "-o", "name"]).unwrap().trim().is_empty() && get_opt(&c, &["cm", "cfg", "-n", "doomed"]).is_none()).then_some(())
    });
    assert!(get_opt(&c, &["ns", "doomed"]).is_some(), "the namespace waits for the held object");
    remove_finalizers(&c, &["cm", "held", "-n", "doomed"]);
    poll(T, "namespace gone", || get_opt(&c, &["ns", "doomed"]).is_none().then_some(()));
    assert!(get_opt(&c, &["cm", "safe"]).is_some(), "other namespaces untouched");
    // The name can be reused, empty.
    c.ok(&["create", "namespace", "doomed"]).unwrap();
    assert!(c.ok(&["get", "cm", "-n", "doomed", "-o", "name"]).unwrap().lines().all(|l| l == "configmap/kube-root-ca.crt"));
    // `kubectl delete ns` with --wait (default) returns once the namespace is gone.
    c.ok(&["create", "configmap", "x", "-n", "doomed", "--from-literal=a=1"]).unwrap();
    c.ok(&["delete", "namespace", "doomed", "--timeout=10s"]).unwrap();
    assert!(get_opt(&c, &["ns", "doomed"]).is_none());
}

#[test]
fn system_namespaces_cannot_be_deleted() {
    let c = cluster();
    for ns in ["default", "kube-system", "kube-public"] {
        let e = c.fails(&["delete", "namespace", ns, "--wait=false"]).unwrap();
        assert!(e.contains("Forbidden") && e.contains("may not be deleted"), "{ns}: {e}");
    }
}
