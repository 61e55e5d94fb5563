//! End-to-end with kube-rs against the real `skiff server`: a `watcher` on ConfigMaps that
//! survives a server restart and a compaction (410 Gone, then a re-list) and sees every change
//! in order, and typed CRUD on Deployments through `Api`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{api_code, kube_client, skiff_binary, wait_until};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use skiff_testkit::Cluster;

const NS: &str = "watched";

/// A TCP proxy between the watcher and the server, so the test can cut the watcher off while
/// the server keeps taking writes (and compacting).
struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    paused: bool,
    conns: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState {
            paused: false,
            conns: Vec::new(),
        }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else { return };
                let mut s = st.lock().unwrap();
                if s.paused {
                    continue; // dropping `down` closes the connection at once
                }
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                s.conns.retain(|c| !c.is_finished());
                s.conns.push(conn.abort_handle());
            }
        });
        Proxy { port, state, accept }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Cut every open connection and refuse new ones.
    fn pause(&self) {
        let mut s = self.state.lock().unwrap();
        s.paused = true;
        for c in s.conns.drain(..) {
            c.abort();
        }
    }

    fn resume(&self) {
        self.state.lock().unwrap().paused = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.pause();
        self.accept.abort();
    }
}

/// What the watcher reported, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Init,
    InitApply(String, u64, String),
    InitDone,
    Apply(String, u64, String),
    Delete(String, u64),
    Error(String),
}

/// The watcher's log and the view it builds from it (name -> (resourceVersion, data.v)).
#[derive(Default)]
struct WatchLog {
    events: Vec<Seen>,
    view: BTreeMap<String, (u64, String)>,
    buffer: BTreeMap<String, (u64, String)>,
}

impl WatchLog {
    fn inits(&self) -> usize {
        self.events.iter().filter(|e| **e == Seen::Init).count()
    }
}

fn rv_of(o: &impl ResourceExt) -> u64 {
    o.resource_version()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

fn value_of(cm: &ConfigMap) -> String {
    cm.data.as_ref().and_then(|d| d.get("v")).cloned().unwrap_or_default()
}

/// Run a kube-rs watcher on ConfigMaps in [`NS`], recording everything into `log`. Errors
/// (server gone, connection cut, 410) are recorded and the watcher polled again after a short
/// pause, as `default_backoff` would but faster.
fn spawn_watcher(client: kube::Client, log: Arc<Mutex<WatchLog>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ConfigMap> = Api::namespaced(client, NS);
        // Small pages, so every (re-)list is paginated with continue tokens.
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default().page_size(2).fields(NOT_ROOT_CA)));
        while let Some(ev) = stream.next().await {
            let failed = ev.is_err();
            record(&mut log.lock().unwrap(), ev);
            if failed {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// Leaves out the namespace's `kube-root-ca.crt`, which the controllers publish and the
/// writers here never touch.
const NOT_ROOT_CA: &str = "metadata.name!=kube-root-ca.crt";

fn record(l: &mut WatchLog, ev: Result<watcher::Event<ConfigMap>, watcher::Error>) {
    match ev {
        Ok(watcher::Event::Init) => {
            l.buffer.clear();
            l.events.push(Seen::Init);
        }
        Ok(watcher::Event::InitApply(cm)) => {
            let (n, rv, v) = (cm.name_any(), rv_of(&cm), value_of(&cm));
            l.buffer.insert(n.clone(), (rv, v.clone()));
            l.events.push(Seen::InitApply(n, rv, v));
        }
        Ok(watcher::Event::InitDone) => {
            l.view = std::mem::take(&mut l.buffer);
            l.events.push(Seen::InitDone);
        }
        Ok(watcher::Event::Apply(cm)) => {
            let (n, rv, v) = (cm.name_any(), rv_of(&cm), value_of(&cm));
            l.view.insert(n.clone(), (rv, v.clone()));
            l.events.push(Seen::Apply(n, rv, v));
        }
        Ok(watcher::Event::Delete(cm)) => {
            let (n, rv) = (cm.name_any(), rv_of(&cm));
            l.view.remove(&n);
            l.events.push(Seen::Delete(n, rv));
        }
        Err(e) => {
            let text = match &e {
                watcher::Error::WatchError(s) => format!("watch error {}: {}", s.code, s.message),
                other => other.to_string(),
            };
            l.events.push(Seen::Error(text));
        }
    }
}

/// One acknowledged write: `value` None is a delete.
#[derive(Debug, Clone)]
struct Write {
    name: String,
    rv: u64,
    value: Option<String>,
}

/// Writes ConfigMaps straight to the server (not through the proxy) and records each
/// acknowledged write.
struct Writer {
    api: Api<ConfigMap>,
    history: Vec<Write>,
}

impl Writer {
    async fn create(&mut self, name: &str, value: &str) {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"e2e": "watch"}},
            "data": {"v": value},
        }))
        .unwrap();
        let out = self
            .api
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        assert_eq!(value_of(&out), value);
        self.history.push(Write {
            name: name.into(),
            rv: rv_of(&out),
            value: Some(value.into()),
        });
    }

    async fn update(&mut self, name: &str, value: &str) {
        let p = Patch::Merge(json!({"data": {"v": value}}));
        let out = self
            .api
            .patch(name, &PatchParams::default(), &p)
            .await
            .unwrap_or_else(|e| panic!("patch {name}: {e}"));
        assert_eq!(value_of(&out), value);
        let rv = rv_of(&out);
        if let Some(prev) = self.history.iter().rev().find(|w| w.name == name) {
            assert!(rv > prev.rv, "{name}: update got resourceVersion {rv} <= previous {}", prev.rv);
        }
        self.history.push(Write {
            name: name.into(),
            rv,
            value: Some(value.into()),
        });
    }

    async fn delete(&mut self, name: &str) {
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        let prev = self.history.iter().rev().find(|w| w.name == name).map(|w| w.rv).unwrap_or(0);
        self.history.push(Write {
            name: name.into(),
            rv: prev,
            value: None,
        });
    }

    /// name -> (resourceVersion, data.v) as the server lists it now.
    async fn server_state(&self) -> BTreeMap<String, (u64, String)> {
        let list = self.api.list(&ListParams::default().fields(NOT_ROOT_CA)).await.expect("list configmaps");
        list.items.iter().map(|cm| (cm.name_any(), (rv_of(cm), value_of(cm)))).collect()
    }

    /// name -> (resourceVersion, value) from the acknowledged writes alone.
    fn expected_state(&self) -> BTreeMap<String, (u64, String)> {
        let mut m = BTreeMap::new();
        for w in &self.history {
            match &w.value {
                Some(v) => m.insert(w.name.clone(), (w.rv, v.clone())),
                None => m.remove(&w.name),
            };
        }
        m
    }
}

/// Wait until the watcher's view equals the server's list.
async fn wait_converged(log: &Arc<Mutex<WatchLog>>, w: &Writer, phase: &str) {
    let want = w.server_state().await;
    assert_eq!(
        want,
        w.expected_state(),
        "{phase}: server state differs from the acknowledged writes"
    );
    let start = std::time::Instant::now();
    loop {
        if log.lock().unwrap().view == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let l = log.lock().unwrap();
            panic!(
                "{phase}: watcher view never matched the server\nwatcher: {:?}\nserver:  {want:?}\nevents: {:?}",
                l.view, l.events
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every write in `writes` was delivered to the watcher as its own event (not only through a
/// re-list).
fn assert_all_observed(log: &WatchLog, writes: &[Write], phase: &str) {
    for (i, w) in writes.iter().enumerate() {
        let found = match &w.value {
            Some(v) => log.events.iter().any(|e| *e == Seen::Apply(w.name.clone(), w.rv, v.clone())),
            None => log
                .events
                .iter()
                .any(|e| matches!(e, Seen::Delete(n, rv) if *n == w.name && *rv > w.rv)),
        };
        assert!(
            found,
            "{phase}: write #{i} {w:?} not observed by the watcher; events: {:?}",
            log.events
        );
    }
}

/// Per object, what the watcher saw moves forward only, and every object it saw is one that
/// was written, with that write's value.
fn assert_in_order(log: &WatchLog, history: &[Write]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &log.events {
        let (name, rv, strict, value) = match e {
            Seen::InitApply(n, rv, v) => (n, *rv, false, Some(v)),
            Seen::Apply(n, rv, v) => (n, *rv, true, Some(v)),
            Seen::Delete(n, rv) => (n, *rv, true, None),
            _ => continue,
        };
        if let Some(&prev) = last.get(name.as_str()) {
            assert!(
                if strict { rv > prev } else { rv >= prev },
                "{name}: watcher saw resourceVersion {rv} after {prev} ({e:?}); events: {:?}",
                log.events
            );
        }
        last.insert(name, rv);
        if let Some(v) = value {
            assert!(
                history.iter().any(|w| w.name == *name && w.rv == rv && w.value.as_ref() == Some(v)),
                "watcher saw {e:?}, which matches no acknowledged write"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_survives_restart_and_compaction() {
    let mut c =
        tokio::task::block_in_place(|| Cluster::start_with(skiff_binary(), &["--compaction-interval", "1", "--compaction-retain", "5"]))
            .expect("server starts");
    let direct = kube_client(&c, None).await.unwrap();
    let proxy = Proxy::start(c.port).await;
    let via_proxy = kube_client(&c, Some(proxy.url())).await.unwrap();

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(direct.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let mut w = Writer {
        api: Api::namespaced(direct.clone(), NS),
        history: Vec::new(),
    };

    let log = Arc::new(Mutex::new(WatchLog::default()));
    let task = spawn_watcher(via_proxy, log.clone());
    wait_until(Duration::from_secs(10), "the initial list", || {
        log.lock().unwrap().events.contains(&Seen::InitDone)
    })
    .await;

    // Phase A: connected; every change must arrive as its own event.
    let a = w.history.len();
    for i in 0..5 {
        w.create(&format!("cm-{i}"), &format!("a{i}-0")).await;
    }
    for round in 1..=3 {
        for i in 0..5 {
            w.update(&format!("cm-{i}"), &format!("a{i}-{round}")).await;
        }
    }
    w.delete("cm-4").await;
    wait_converged(&log, &w, "phase A").await;
    assert_all_observed(&log.lock().unwrap(), &w.history[a..], "phase A");

    // Restart the server (SIGTERM, same data dir and port): the watcher reconnects by itself.
    tokio::task::block_in_place(|| c.restart()).expect("server restarts");
    // A marker write proves the watcher is back (by resuming or re-listing); from then on it is
    // connected and must see every change again.
    w.update("cm-0", "after-restart").await;
    wait_converged(&log, &w, "after restart").await;
    let b = w.history.len();
    for i in 5..8 {
        w.create(&format!("cm-{i}"), &format!("b{i}")).await;
    }
    w.update("cm-1", "b1-1").await;
    w.update("cm-2", "b2-1").await;
    w.update("cm-1", "b1-2").await;
    w.delete("cm-3").await;
    wait_converged(&log, &w, "phase B").await;
    assert_all_observed(&log.lock().unwrap(), &w.history[b..], "phase B");

    // Phase C: cut the watcher off, write far more than --compaction-retain revisions (with a
    // server restart in the middle), and wait until compaction has passed the watcher's
    // resourceVersion.
    let watcher_rv = log
        .lock()
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match e {
            Seen::Apply(_, rv, _) | Seen::InitApply(_, rv, _) | Seen::Delete(_, rv) => Some(*rv),
            _ => None,
        })
        .max()
        .unwrap();
    proxy.pause();
    let inits_before = log.lock().unwrap().inits();
    for round in 0..10 {
        w.update("cm-0", &format!("c0-{round}")).await;
    }
    w.create("cm-8", "c8").await;
    w.delete("cm-1").await;
    w.create("temp", "t0").await;
    w.update("temp", "t1").await;
    w.delete("temp").await;
    // The server also restarts while the watcher is away, and history keeps being compacted.
    tokio::task::block_in_place(|| c.restart()).expect("server restarts");
    for round in 0..5 {
        w.update("cm-5", &format!("c5-{round}")).await;
    }
    let start = std::time::Instant::now();
    loop {
        let mut s = w.api.watch(&WatchParams::default(), &watcher_rv.to_string()).await.unwrap().boxed();
        let first = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("watch answers");
        match first {
            Some(Ok(WatchEvent::Error(st))) if st.code == 410 => break,
            Some(Err(kube::Error::Api(st))) if st.code == 410 => break,
            other => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "compaction never passed revision {watcher_rv}: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    proxy.resume();
    wait_converged(&log, &w, "after compaction").await;
    {
        let l = log.lock().unwrap();
        assert!(
            l.inits() > inits_before,
            "the watcher should have re-listed after 410; events: {:?}",
            l.events
        );
        assert!(
            l.events.iter().any(|e| matches!(e, Seen::Error(t) if t.contains("410"))),
            "the watcher should have been told 410 Gone; events: {:?}",
            l.events
        );
    }

    // Phase D: connected again; every change arrives as its own event.
    let d = w.history.len();
    w.update("cm-0", "d0").await;
    w.update("cm-8", "d8").await;
    w.delete("cm-5").await;
    w.create("cm-9", "d9").await;
    w.update("cm-9", "d9-1").await;
    wait_converged(&log, &w, "phase D").await;

    let l = log.lock().unwrap();
    assert_all_observed(&l, &w.history[d..], "phase D");
    assert_in_order(&l, &w.history);
    let expected: BTreeMap<String, String> = w.expected_state().into_iter().map(|(n, (_, v))| (n, v)).collect();
    let seen: BTreeMap<String, String> = l.view.iter().map(|(n, (_, v))| (n.clone(), v.clone())).collect();
    assert_eq!(seen, expected, "final values");
    assert_eq!(
        expected.keys().cloned().collect::<Vec<_>>(),
        ["cm-0", "cm-2", "cm-6", "cm-7", "cm-8", "cm-9"],
        "final set of objects"
    );
    eprintln!(
        "watcher: {} events, {} lists, errors: {:?}",
        l.events.len(),
        l.inits(),
        l.events.iter().filter(|e| matches!(e, Seen::Error(_))).collect::<Vec<_>>()
    );
    drop(l);
    task.abort();
    drop(proxy);
    tokio::task::block_in_place(move || drop(c));
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }))
    .unwrap()
}

fn image(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_deployment_crud() {
    let c = tokio::task::block_in_place(|| Cluster::start(skiff_binary())).expect("server starts");
    let client = kube_client(&c, None).await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let created = deps.create(&PostParams::default(), &deployment("web", "nginx:1.25")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.revision_history_limit, Some(10), "defaulted");
    assert_eq!(spec.progress_deadline_seconds, Some(600), "defaulted");
    assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));

    let e = deps
        .create(&PostParams::default(), &deployment("web", "nginx:1.25"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some(409), "{e}");
    let kube::Error::Api(st) = &e else { unreachable!() };
    assert_eq!(st.reason, "AlreadyExists");

    let got = deps.get("web").await.unwrap();
    assert_eq!(got.spec, created.spec);
    // The deployment controller may already have written status, so only "not older".
    assert!(rv_of(&got) >= rv_of(&created));
    assert!(deps.get_opt("missing").await.unwrap().is_none());
    let e = deps.get("missing").await.unwrap_err();
    assert_eq!(api_code(&e), Some(404), "{e}");

    deps.create(&PostParams::default(), &deployment("api", "busybox")).await.unwrap();
    let all = deps.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.iter().map(|d| d.name_any()).collect::<Vec<_>>(), ["api", "web"]);
    assert!(all.metadata.resource_version.is_some_and(|rv| !rv.is_empty()));
    let sel = deps.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(sel.items.len(), 1);
    assert_eq!(sel.items[0].name_any(), "web");
    assert!(deps
        .list(&ListParams::default().labels("app in (nothing)"))
        .await
        .unwrap()
        .items
        .is_empty());
    let one = deps.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(one.items.len(), 1);
    let token = one
        .metadata
        .continue_
        .clone()
        .filter(|t| !t.is_empty())
        .expect("continue token with limit=1");
    let rest = deps.list(&ListParams::default().limit(1).continue_token(&token)).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].name_any(), one.items[0].name_any());

    // Strategic merge: containers merge by name, so the port survives an image change.
    let p = Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}));
    let d = deps.patch("web", &PatchParams::default(), &p).await.unwrap();
    assert_eq!(image(&d), "nginx:1.27");
    let ports = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .ports
        .clone()
        .unwrap();
    assert_eq!(ports[0].container_port, 80);
    assert_eq!(d.metadata.generation, Some(2));

    // Merge patch on spec bumps generation; on labels it does not.
    let d = deps
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!((d.spec.as_ref().unwrap().replicas, d.metadata.generation), (Some(3), Some(3)));
    let d = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(3));
    assert_eq!(d.labels().get("tier").map(String::as_str), Some("front"));

    // Replace: with a stale resourceVersion it is a conflict; with the current one it works.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().replicas = Some(9);
    let e = deps.replace("web", &PostParams::default(), &stale).await.unwrap_err();
    assert_eq!(api_code(&e), Some(409), "{e}");
    // The controller writes status concurrently, so read-modify-replace retries on 409 as
    // every client must.
    let mut attempts = 0;
    let d = loop {
        attempts += 1;
        let mut fresh = deps.get("web").await.unwrap();
        fresh.spec.as_mut().unwrap().replicas = Some(5);
        match deps.replace("web", &PostParams::default(), &fresh).await {
            Ok(d) => {
                assert!(rv_of(&d) > rv_of(&fresh));
                break d;
            }
            Err(e) if api_code(&e) == Some(409) && attempts < 20 => continue,
            Err(e) => panic!("replace with a fresh resourceVersion failed {attempts} times: {e}"),
        }
    };
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(5));

    // Server-side apply with a field manager.
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}},
    });
    let d = deps
        .patch("web", &PatchParams::apply("e2e-kube-rs").force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!((d.spec.as_ref().unwrap().replicas, image(&d)), (Some(6), "nginx:1.28".to_string()));
    assert!(
        d.managed_fields().iter().any(|m| m.manager.as_deref() == Some("e2e-kube-rs")),
        "{:?}",
        d.managed_fields()
    );

    // Delete, then it is gone.
    deps.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for_absent(&deps, "web").await;
    let e = deps.get("web").await.unwrap_err();
    assert_eq!(api_code(&e), Some(404), "{e}");
    let e = deps.delete("web", &DeleteParams::default()).await.unwrap_err();
    assert_eq!(api_code(&e), Some(404), "{e}");
    assert_eq!(deps.list(&ListParams::default()).await.unwrap().items.len(), 1);
    tokio::task::block_in_place(move || drop(c));
}

async fn wait_for_absent(api: &Api<Deployment>, name: &str) {
    for _ in 0..100 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} still present 5s after delete");
}

/// kube-rs's streaming-list mode (`sendInitialEvents=true`, initial events then a bookmark
/// annotated `k8s.io/initial-events-end`) and a `reflector` store fed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_and_reflector() {
    let c = tokio::task::block_in_place(|| Cluster::start(skiff_binary())).expect("server starts");
    let client = kube_client(&c, None).await.unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    let mut w = Writer { api: Api::namespaced(client.clone(), NS), history: Vec::new() };
    for i in 0..3 {
        w.create(&format!("pre-{i}"), &format!("p{i}")).await;
    }

    let log = Arc::new(Mutex::new(WatchLog::default()));
    let l2 = log.clone();
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let task = tokio::spawn(async move {
        let stream = kube::runtime::reflector(writer, watcher(api, watcher::Config::default().streaming_lists().fields(NOT_ROOT_CA)));
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let failed = ev.is_err();
            record(&mut l2.lock().unwrap(), ev);
            if failed {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    wait_until(Duration::from_secs(10), "the initial events", || log.lock().unwrap().events.contains(&Seen::InitDone)).await;
    {
        let l = log.lock().unwrap();
        let init: Vec<&Seen> = l.events.iter().take_while(|e| **e != Seen::InitDone).collect();
        assert_eq!(init.first(), Some(&&Seen::Init), "{:?}", l.events);
        let names: Vec<&str> = init
            .iter()
            .filter_map(|e| match e {
                Seen::InitApply(n, _, _) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["pre-0", "pre-1", "pre-2"], "{:?}", l.events);
        assert!(!l.events.iter().any(|e| matches!(e, Seen::Error(_))), "{:?}", l.events);
    }
    let cut = w.history.len();
    w.update("pre-0", "changed").await;
    w.create("post", "new").await;
    w.delete("pre-1").await;
    wait_converged(&log, &w, "streaming list").await;
    assert_all_observed(&log.lock().unwrap(), &w.history[cut..], "streaming list");
    assert_in_order(&log.lock().unwrap(), &w.history);
    let mut cached: Vec<(String, String)> = reader.state().iter().map(|cm| (cm.name_any(), value_of(cm))).collect();
    cached.sort();
    assert_eq!(
        cached,
        [("post".to_string(), "new".to_string()), ("pre-0".into(), "changed".into()), ("pre-2".into(), "p2".into())]
    );
    task.abort();
    tokio::task::block_in_place(move || drop(c));
}
