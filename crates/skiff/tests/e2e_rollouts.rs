//! End-to-end: the controller acceptance cases that need to watch every step, driven with the
//! real kubectl against `skiff server` and fake nodes: a rolling update that never exceeds
//! maxUnavailable or maxSurge (checked on every pod event by a kube-rs watcher), Recreate
//! (no new pod while an old one exists), a Job retried with back-off up to its backoffLimit,
//! and the scheduler's answers to nodeSelector and to a pod no node can hold.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{kube_client, skiff_binary};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use skiff_testkit::Cluster;

fn create(c: &Cluster, manifest: &str) {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], manifest).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A pod as the watcher tracks it: its image, whether it is terminating, whether it is Ready.
#[derive(Clone, Debug)]
struct Seen {
    image: String,
    terminating: bool,
    ready: bool,
}

impl Seen {
    fn of(p: &Pod) -> Self {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Seen {
            image: p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default(),
            terminating: p.metadata.deletion_timestamp.is_some(),
            ready,
        }
    }
}

/// Every state of the pod set the watch went through, after each event (in the order the
/// server produced them: one watch stream is ordered by resourceVersion).
type History = Arc<Mutex<Vec<BTreeMap<String, Seen>>>>;

/// Watches the pods labelled `app=NAME` and records each state of the set.
fn record(client: kube::Client, app: &str) -> (History, tokio::task::JoinHandle<()>) {
    let history: History = Default::default();
    let h = history.clone();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let cfg = watcher::Config::default().labels(&format!("app={app}"));
    let task = tokio::spawn(async move {
        let mut pods: BTreeMap<String, Seen> = BTreeMap::new();
        let mut init: Option<BTreeMap<String, Seen>> = None;
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            match ev {
                watcher::Event::Init => init = Some(BTreeMap::new()),
                watcher::Event::InitApply(p) => {
                    if let Some(i) = init.as_mut() {
                        i.insert(p.metadata.name.clone().unwrap_or_default(), Seen::of(&p));
                    }
                }
                watcher::Event::InitDone => pods = init.take().unwrap_or_default(),
                watcher::Event::Apply(p) => {
                    pods.insert(p.metadata.name.clone().unwrap_or_default(), Seen::of(&p));
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.metadata.name.clone().unwrap_or_default());
                }
            }
            if init.is_none() {
                h.lock().unwrap().push(pods.clone());
            }
        }
    });
    (history, task)
}

fn available(state: &BTreeMap<String, Seen>) -> usize {
    state.values().filter(|s| s.ready && !s.terminating).count()
}

fn live(state: &BTreeMap<String, Seen>) -> usize {
    state.values().filter(|s| !s.terminating).count()
}

fn all_on(c: &Cluster, app: &str, image: &str, replicas: usize) -> bool {
    let pods = c.json(&["get", "pods", "-l", &format!("app={app}")]).unwrap();
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    items.len() == replicas
        && items.iter().all(|p| {
            p["spec"]["containers"][0]["image"] == image && p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
}

/// Waits until the 4 pods of Deployment `app` all run `image`.
async fn wait_all_on(c: &Arc<Cluster>, app: &'static str, image: &'static str) {
    let c = c.clone();
    tokio::task::spawn_blocking(move || c.eventually(Duration::from_secs(60), image, || all_on(&c, app, image, 4)).unwrap()).await.unwrap();
}

/// Every state the pods of Deployment `app` (container `web`) went through while `kubectl set
/// image` moved it to `image`, until its 4 pods all ran that.
async fn states_during_rollout(c: &Arc<Cluster>, client: &kube::Client, app: &'static str, image: &'static str) -> Vec<BTreeMap<String, Seen>> {
    let (history, watch) = record(client.clone(), app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || c2.ok(&["set", "image", &format!("deployment/{app}"), &format!("web={image}")]).unwrap()).await.unwrap();
    wait_all_on(c, app, image).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.abort();
    let states = std::mem::take(&mut *history.lock().unwrap());
    states
}

/// A 4-replica Deployment whose pods take 300 ms to terminate on the fake nodes.
fn deployment(name: &str, image: &str, strategy: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},"spec":{{"replicas":4,
        "strategy":{strategy},
        "selector":{{"matchLabels":{{"app":"{name}"}}}},"template":{{"metadata":{{"labels":{{"app":"{name}"}},
        "annotations":{{"{}":"300"}}}},
        "spec":{{"containers":[{{"name":"web","image":"{image}"}}]}}}}}}}}"#,
        skiff_testkit::fake_node::TERMINATING_MS
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_respect_max_unavailable_and_max_surge_at_every_step() {
    let c = Cluster::start(skiff_binary()).expect("server starts");
    let _nodes = (c.fake_node("roll-1").unwrap(), c.fake_node("roll-2").unwrap());
    let client = kube_client(&c, None).await.unwrap();
    let c = Arc::new(c);

    // maxUnavailable 1, maxSurge 0: the rollout must go through 3 available and never below,
    // and never run a fifth pod.
    let strategy = r#"{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}}"#;
    create(&c, &deployment("roll", "nginx:1.25", strategy));
    wait_all_on(&c, "roll", "nginx:1.25").await;
    let states = states_during_rollout(&c, &client, "roll", "nginx:1.26").await;
    assert!(states.len() > 8, "too few pod events seen: {}", states.len());
    let min_available = states.iter().map(available).min().unwrap();
    let max_live = states.iter().map(live).max().unwrap();
    let bad = states.iter().find(|s| available(s) < 3 || live(s) > 4);
    assert!(bad.is_none(), "maxUnavailable 1 / maxSurge 0 broken at {bad:#?}");
    assert_eq!(min_available, 3, "the rollout never used its unavailability budget");
    assert_eq!(max_live, 4);
    assert!(states.last().unwrap().values().all(|s| s.image == "nginx:1.26"));

    // maxSurge 1, maxUnavailable 0: never below 4 available, never more than 5 pods.
    let strategy = r#"{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":1}}"#;
    create(&c, &deployment("roll", "nginx:1.26", strategy));
    let states = states_during_rollout(&c, &client, "roll", "nginx:1.27").await;
    let bad = states.iter().find(|s| available(s) < 4 || live(s) > 5);
    assert!(bad.is_none(), "maxUnavailable 0 / maxSurge 1 broken at {bad:#?}");
    assert_eq!(states.iter().map(live).max().unwrap(), 5, "the rollout never surged");
    let status = tokio::task::spawn_blocking(move || c.ok(&["rollout", "status", "deployment/roll", "--timeout=30s"]).unwrap()).await.unwrap();
    assert!(status.contains("successfully rolled out"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let c = Cluster::start(skiff_binary()).expect("server starts");
    let _nodes = (c.fake_node("re-1").unwrap(), c.fake_node("re-2").unwrap());
    let client = kube_client(&c, None).await.unwrap();
    let c = Arc::new(c);
    create(&c, &deployment("re", "nginx:1.25", r#"{"type":"Recreate"}"#));
    wait_all_on(&c, "re", "nginx:1.25").await;
    let states = states_during_rollout(&c, &client, "re", "nginx:1.26").await;
    let mixed = states.iter().find(|s| {
        s.values().any(|p| p.image == "nginx:1.25") && s.values().any(|p| p.image == "nginx:1.26")
    });
    assert!(mixed.is_none(), "old and new pods existed together: {mixed:#?}");
    assert!(states.iter().any(|s| s.is_empty()), "the set never emptied between old and new");
}

/// Jobs on one fake node that fails the first attempts on request: completions 2,
/// parallelism 1, backoffLimit 4 with two failed attempts completes (2 succeeded, 2 failed,
/// the retries spaced by the 10 s / 20 s back-off); a job failing every attempt stops at its
/// backoffLimit with BackoffLimitExceeded.
#[test]
fn jobs_retry_with_backoff_up_to_their_backoff_limit() {
    let c = Cluster::start(skiff_binary()).expect("server starts");
    let _n = c.fake_node("jobs-1").unwrap();
    let job = |name: &str, backoff: u32, fail_first: u32| {
        format!(
            r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"name":"{name}"}},"spec":{{"completions":2,"parallelism":1,"backoffLimit":{backoff},
            "template":{{"metadata":{{"annotations":{{"{}":"{fail_first}"}}}},"spec":{{"restartPolicy":"Never","containers":[{{"name":"w","image":"busybox","command":["sh","-c","exit 0"]}}]}}}}}}}}"#,
            skiff_testkit::fake_node::FAIL_FIRST
        )
    };
    create(&c, &job("retried", 4, 2));
    create(&c, &job("doomed", 1, 99));
    c.ok(&["wait", "--for=condition=failed", "job/doomed", "--timeout=60s"]).unwrap();
    let doomed = c.json(&["get", "job", "doomed"]).unwrap();
    assert_eq!(doomed["status"]["failed"], 2, "{doomed}");
    let reason = doomed["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").unwrap()["reason"].clone();
    assert_eq!(reason, "BackoffLimitExceeded", "{doomed}");

    c.ok(&["wait", "--for=condition=complete", "job/retried", "--timeout=90s"]).unwrap();
    let retried = c.json(&["get", "job", "retried"]).unwrap();
    assert_eq!((retried["status"]["succeeded"].as_i64(), retried["status"]["failed"].as_i64()), (Some(2), Some(2)), "{retried}");
    // Never more than one attempt at a time, and the retries waited out the back-off.
    let pods = c.json(&["get", "pods", "-l", "job-name=retried"]).unwrap();
    let mut runs: Vec<(i64, i64, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = |s: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap().timestamp();
            let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
            (t(&p["metadata"]["creationTimestamp"]), t(&term["finishedAt"]), p["status"]["phase"].as_str().unwrap().to_string())
        })
        .collect();
    runs.sort();
    assert_eq!(runs.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), ["Failed", "Failed", "Succeeded", "Succeeded"], "{runs:?}");
    for w in runs.windows(2) {
        assert!(w[1].0 >= w[0].1, "attempts overlapped (parallelism 1): {runs:?}");
    }
    assert!(runs[1].0 - runs[0].1 >= 9, "first retry before the 10 s back-off: {runs:?}");
    assert!(runs[2].0 - runs[1].1 >= 19, "second retry before the 20 s back-off: {runs:?}");
}

/// nodeSelector `disktype: ssd` picks the labelled node; a selector no node matches and a
/// 4-CPU/8-GiB pod on 2-CPU/4-GiB nodes stay Pending with upstream's FailedScheduling reasons.
#[test]
fn node_selector_and_oversized_pods() {
    let c = Cluster::start(skiff_binary()).expect("server starts");
    let _nodes = (c.fake_node_sized("small-1", "2", "4Gi").unwrap(), c.fake_node_sized("small-2", "2", "4Gi").unwrap());
    c.ok(&["label", "node", "small-2", "disktype=ssd"]).unwrap();
    let pod = |name: &str, extra: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{{extra}"containers":[{{"name":"c","image":"busybox"}}]}}}}"#)
    };
    for i in 0..3 {
        create(&c, &pod(&format!("ssd-{i}"), r#""nodeSelector":{"disktype":"ssd"},"#));
    }
    create(&c, &pod("nvme", r#""nodeSelector":{"disktype":"nvme"},"#));
    let big = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},"spec":{"containers":[{"name":"c","image":"busybox",
        "resources":{"requests":{"cpu":"4","memory":"8Gi"}}}]}}"#;
    create(&c, big);
    c.eventually(Duration::from_secs(30), "ssd pods running", || {
        (0..3).all(|i| c.json(&["get", "pod", &format!("ssd-{i}")]).unwrap()["status"]["phase"] == "Running")
    })
    .unwrap();
    for i in 0..3 {
        assert_eq!(c.json(&["get", "pod", &format!("ssd-{i}")]).unwrap()["spec"]["nodeName"], "small-2");
    }
    let event = |pod: &str| {
        let events = c.json(&["get", "events", "--field-selector", &format!("involvedObject.name={pod},reason=FailedScheduling")]).unwrap();
        events["items"].as_array().and_then(|a| a.last()).map(|e| e["message"].as_str().unwrap_or("").to_string())
    };
    c.eventually(Duration::from_secs(20), "FailedScheduling events", || event("nvme").is_some() && event("big").is_some()).unwrap();
    // Upstream adds why preemption would not help either.
    let (nvme, big) = (event("nvme").unwrap(), event("big").unwrap());
    assert!(nvme.starts_with("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption:"), "{nvme}");
    assert!(big.starts_with("0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory. preemption:"), "{big}");
    for name in ["nvme", "big"] {
        let p = c.json(&["get", "pod", name]).unwrap();
        assert_eq!(p["status"]["phase"], "Pending", "{p}");
        assert!(p["spec"]["nodeName"].is_null(), "{p}");
    }
    let described = c.ok(&["describe", "pod", "big"]).unwrap();
    assert!(described.contains("FailedScheduling") && described.contains("Insufficient memory"), "{described}");
}
