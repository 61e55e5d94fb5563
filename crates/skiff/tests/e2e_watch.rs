//! End-to-end, real kubectl: `get -w` in a background child sees additions, modifications and
//! deletions in order. Every background kubectl is bounded by `--request-timeout` and killed
//! when the test ends.

mod kubectl_common;

use std::time::Duration;

use kubectl_common::{cluster, poll, Background};

const T: Duration = Duration::from_secs(10);

/// Lines of `EVENT NAME ...` watch output for objects called `name`, as (event, name).
fn events_for<'a>(out: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let ev = it.next()?;
            let n = it.next()?;
            (n == name).then_some((ev, n))
        })
        .collect()
}

#[test]
fn get_watch_configmaps_sees_added_modified_deleted() {
    let c = cluster();
    c.ok(&["create", "configmap", "before", "--from-literal=a=1"]).unwrap();
    let mut w = Background::start(&c, 33, "watch-cm", &["get", "cm", "-w", "--output-watch-events", "--request-timeout=20s"]);
    // The initial list arrives first, as ADDED.
    w.wait_output(T, "the initial list", |s| s.lines().any(|l| l.starts_with("ADDED") && l.contains("before")));

    c.ok(&["create", "configmap", "wx", "--from-literal=a=1"]).unwrap();
    c.ok(&["patch", "cm", "wx", "-p", r#"{"data":{"b":"2"}}"#]).unwrap();
    c.ok(&["label", "cm", "wx", "step=3"]).unwrap();
    c.ok(&["delete", "cm", "wx"]).unwrap();
    let out = w.wait_output(T, "the DELETED event of wx", |s| s.lines().any(|l| l.starts_with("DELETED") && l.contains("wx")));
    let evs: Vec<&str> = events_for(&out, "wx").into_iter().map(|(e, _)| e).collect();
    assert_eq!(evs, ["ADDED", "MODIFIED", "MODIFIED", "DELETED"], "{out}");
    // DATA column follows the object: 1 key when added, 2 after the patch.
    let data: Vec<&str> = out.lines().filter(|l| l.split_whitespace().nth(1) == Some("wx")).map(|l| l.split_whitespace().nth(2).unwrap()).collect();
    assert_eq!(data, ["1", "2", "2", "2"], "{out}");
    assert!(w.running(), "the watch stays open: {}", w.stderr());
    w.kill();
}

#[test]
fn get_watch_plain_output_and_selectors() {
    let c = cluster();
    c.ok(&["create", "namespace", "other"]).unwrap();
    // A named watch needs its object to exist (kubectl gets it first, like upstream).
    c.ok(&["create", "configmap", "target", "--from-literal=a=1"]).unwrap();
    // Plain `-w` prints the table and then one row per change.
    let plain = Background::start(&c, 33, "plain", &["get", "cm", "-w", "--request-timeout=20s"]);
    // A label-selected watch only sees matching objects; -A sees every namespace; -o name.
    let labelled = Background::start(&c, 33, "labelled", &["get", "cm", "-A", "-w", "-l", "watch=me", "-o", "name", "--request-timeout=20s"]);
    // A watch on one object by name (a field selector under the hood).
    let single = Background::start(&c, 33, "single", &["get", "cm", "target", "-w", "--output-watch-events", "--request-timeout=20s"]);
    // Watch-only: no initial list.
    let only = Background::start(&c, 33, "only", &["get", "cm", "--watch-only", "--output-watch-events", "--request-timeout=20s"]);
    // Barrier: touch a sentinel until every watch has reported it, so that all four are
    // established before the changes under test (the watch-only one sees no initial list).
    c.ok(&["create", "configmap", "sentinel", "--from-literal=a=1"]).unwrap();
    c.ok(&["label", "cm", "sentinel", "watch=me"]).unwrap();
    single.wait_output(T, "single: initial ADDED", |s| s.contains("ADDED"));
    let mut n = 0;
    poll(T, "every watch to see the sentinel", || {
        n += 1;
        c.ok(&["annotate", "--overwrite", "cm", "sentinel", &format!("tick={n}")]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        (plain.stdout().contains("sentinel") && labelled.stdout().contains("configmap/sentinel") && only.stdout().contains("sentinel")).then_some(())
    });

    c.ok(&["create", "configmap", "quiet", "--from-literal=a=1"]).unwrap();
    c.ok(&["create", "configmap", "far", "-n", "other", "--from-literal=a=1"]).unwrap();
    c.ok(&["label", "cm", "far", "-n", "other", "watch=me"]).unwrap();
    c.ok(&["patch", "cm", "target", "-p", r#"{"data":{"b":"2"}}"#]).unwrap();
    c.ok(&["delete", "cm", "target"]).unwrap();
    c.ok(&["create", "configmap", "last", "--from-literal=a=1"]).unwrap();
    c.ok(&["label", "cm", "last", "watch=me"]).unwrap();

    let out = plain.wait_output(T, "plain: last", |s| s.contains("last"));
    assert!(out.starts_with("NAME") && out.contains("DATA"), "{out}");
    let names: Vec<&str> = out.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    let target_rows = names.iter().filter(|n| **n == "target").count();
    assert_eq!(target_rows, 3, "added, modified, deleted: {out}");
    assert!(!names.contains(&"far"), "other namespace leaked into a namespaced watch: {out}");

    let out = labelled.wait_output(T, "labelled: last", |s| s.contains("configmap/last"));
    assert!(out.contains("configmap/far"), "the -A watch sees other namespaces: {out}");
    assert!(!out.contains("configmap/quiet") && !out.contains("configmap/target"), "unlabelled objects leaked: {out}");

    let out = single.wait_output(T, "single: DELETED", |s| s.contains("DELETED"));
    assert!(out.starts_with("EVENT"), "{out}");
    let evs: Vec<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).filter(|e| *e != "EVENT").collect();
    assert_eq!(evs, ["ADDED", "MODIFIED", "DELETED"], "{out}");
    assert!(!out.contains("quiet") && !out.contains("last"), "{out}");

    let out = only.wait_output(T, "watch-only: last", |s| s.contains("last"));
    let first = out.lines().find(|l| !l.starts_with("EVENT")).unwrap();
    assert!(first.contains("sentinel"), "watch-only starts with changes, not the list: {out}");
    assert!(!out.contains("ADDED      target"), "{out}");
    assert_eq!(events_for(&out, "target").len(), 2, "modified + deleted: {out}");
}

#[test]
fn watch_other_kinds_and_resource_versions() {
    let c = cluster();
    // Deployments (apps group) and a cluster-scoped kind (namespaces).
    let deps = Background::start(&c, 33, "deploy", &["get", "deploy", "-w", "--output-watch-events", "--request-timeout=20s"]);
    let nss = Background::start(&c, 33, "ns", &["get", "ns", "-w", "--output-watch-events", "--request-timeout=20s"]);
    nss.wait_output(T, "namespace list", |s| s.contains("kube-system"));
    deps.wait_output(T, "deployment watch header or empty list", |_| true);
    c.ok(&["create", "namespace", "fresh"]).unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx"]).unwrap();
    c.ok(&["scale", "deployment", "web", "--replicas=3"]).unwrap();
    let out = nss.wait_output(T, "namespace ADDED", |s| s.lines().any(|l| l.starts_with("ADDED") && l.contains("fresh")));
    assert!(out.contains("Active"), "{out}");
    let out = deps.wait_output(T, "deployment scaled", |s| s.lines().any(|l| l.starts_with("MODIFIED") && l.contains("web")));
    assert!(events_for(&out, "web").first() == Some(&("ADDED", "web")), "{out}");

    // A raw watch from a resourceVersion replays what happened after it, in order.
    let list: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]).unwrap()).unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    c.ok(&["create", "configmap", "r1", "--from-literal=a=1"]).unwrap();
    c.ok(&["create", "configmap", "r2", "--from-literal=a=1"]).unwrap();
    c.ok(&["delete", "configmap", "r1"]).unwrap();
    let raw = Background::start(&c, 33, "raw", &["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=10")]);
    let out = raw.wait_output(T, "replayed events", |s| s.lines().count() >= 3);
    let evs: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["type"].as_str().unwrap().to_string(), v["object"]["metadata"]["name"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [("ADDED", "r1"), ("ADDED", "r2"), ("DELETED", "r1")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(evs[..3], want[..], "{out}");
}
