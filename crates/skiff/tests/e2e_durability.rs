//! End-to-end durability: SIGKILL the server in the middle of concurrent writes, restart it on
//! the same data dir, and check that every acknowledged write is there with its exact data and
//! that nothing is half-applied.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{kube_client, skiff_binary};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_testkit::Cluster;

const WRITERS: usize = 16;
const LABEL: &str = "e2e-durability";

/// The data of object (`writer`, `seq`) at `version`: deterministic, so any object read back
/// can be checked for completeness from its own fields, and large enough (up to ~4 KiB) that
/// a torn write would show.
fn data(writer: usize, seq: usize, version: usize) -> BTreeMap<String, String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ ((writer as u64) << 40 | (seq as u64) << 8 | version as u64);
    let len = 64 + (writer * 131 + seq * 17 + version * 7) % 4000;
    let payload: String = (0..len)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            char::from(b'a' + (h % 26) as u8)
        })
        .collect();
    BTreeMap::from([
        ("writer".to_string(), writer.to_string()),
        ("seq".to_string(), seq.to_string()),
        ("version".to_string(), version.to_string()),
        ("payload".to_string(), payload),
    ])
}

/// What a writer knows about one object: the state of its last acknowledged write (None =
/// absent) and, if a write was in flight when the server died, the state that write would
/// have produced.
#[derive(Debug, Clone, Default)]
struct Track {
    acked: Option<BTreeMap<String, String>>,
    pending: Option<Option<BTreeMap<String, String>>>,
}

#[derive(Default)]
struct WriterResult {
    objects: BTreeMap<String, Track>,
    acked_ops: usize,
    max_rv: u64,
    unexpected: Vec<String>,
}

enum Op {
    Create,
    Update(usize),
    Delete,
}

async fn writer(api: Api<ConfigMap>, t: usize, killed: Arc<AtomicBool>, acked: Arc<AtomicUsize>) -> WriterResult {
    let mut r = WriterResult::default();
    let mut versions: BTreeMap<usize, usize> = BTreeMap::new();
    'outer: for i in 0.. {
        let mut ops = vec![(i, Op::Create)];
        if i % 2 == 1 {
            ops.push((i - 1, Op::Update(1)));
        }
        if i >= 3 && i % 3 == 0 {
            ops.push((i - 3, Op::Delete));
        }
        for (seq, op) in ops {
            if killed.load(Ordering::SeqCst) {
                break 'outer;
            }
            let name = format!("w{t:02}-{seq:05}");
            let target = match op {
                Op::Create | Op::Update(_) => {
                    let v = match op {
                        Op::Update(v) => v,
                        _ => 0,
                    };
                    Some(data(t, seq, v))
                }
                Op::Delete => None,
            };
            r.objects.entry(name.clone()).or_default().pending = Some(target.clone());
            let res = match op {
                Op::Create => {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "metadata": {"name": name, "labels": {LABEL: "yes"}},
                        "data": target.clone().unwrap(),
                    }))
                    .unwrap();
                    api.create(&PostParams::default(), &cm).await.map(Some)
                }
                Op::Update(_) => {
                    let p = Patch::Merge(json!({"data": target.clone().unwrap()}));
                    api.patch(&name, &PatchParams::default(), &p).await.map(Some)
                }
                Op::Delete => api.delete(&name, &DeleteParams::default()).await.map(|_| None),
            };
            match res {
                Ok(obj) => {
                    if let Some(obj) = &obj {
                        let got: BTreeMap<String, String> = obj.data.clone().unwrap_or_default();
                        if Some(&got) != target.as_ref() {
                            r.unexpected.push(format!("{name}: acknowledged write returned other data"));
                        }
                        r.max_rv = r.max_rv.max(obj.resource_version().unwrap().parse().unwrap());
                    }
                    let tr = r.objects.get_mut(&name).unwrap();
                    tr.acked = target;
                    tr.pending = None;
                    if let Op::Update(v) = op {
                        versions.insert(seq, v);
                    }
                    r.acked_ops += 1;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    // Once the server is being killed, a failed write is ambiguous (it may or may
                    // not have been applied) and this writer stops; before that, any failure is a
                    // bug.
                    if !killed.load(Ordering::SeqCst) {
                        r.unexpected.push(format!("{name}: write failed while the server was up: {e}"));
                    }
                    break 'outer;
                }
            }
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_writes_loses_no_acknowledged_write() {
    let mut c = tokio::task::block_in_place(|| Cluster::start(skiff_binary())).expect("server starts");
    let client = kube_client(&c, None).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    let killed = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..WRITERS).map(|t| tokio::spawn(writer(api.clone(), t, killed.clone(), acked.clone()))).collect();

    // Let the writers get going (2000 acknowledged writes or 3 s), then crash the server.
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < 2000 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| c.kill()).expect("SIGKILL");
    let write_time = start.elapsed();

    let mut results = Vec::new();
    for t in tasks {
        results.push(tokio::time::timeout(Duration::from_secs(20), t).await.expect("writer stops after the crash").unwrap());
    }
    let unexpected: Vec<_> = results.iter().flat_map(|r| r.unexpected.iter()).collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let total_acked: usize = results.iter().map(|r| r.acked_ops).sum();
    let in_flight = results.iter().flat_map(|r| r.objects.values()).filter(|t| t.pending.is_some()).count();
    assert!(total_acked >= 50, "too few writes before the crash to prove anything: {total_acked}");
    eprintln!("{total_acked} acknowledged writes from {WRITERS} writers in {write_time:?}, {in_flight} in flight at SIGKILL");

    tokio::task::block_in_place(|| c.restart()).expect("server restarts after SIGKILL");
    let client = kube_client(&c, None).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let listed = api.list(&ListParams::default().labels(&format!("{LABEL}=yes"))).await.expect("list after restart");
    let present: BTreeMap<String, ConfigMap> = listed.items.into_iter().map(|cm| (cm.name_any(), cm)).collect();

    // Every object present is complete: its data is exactly what some write of it produced.
    for (name, cm) in &present {
        let d = cm.data.clone().unwrap_or_default();
        let field = |k: &str| d.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| panic!("{name}: field {k} missing in {d:?}"));
        assert_eq!(d, data(field("writer"), field("seq"), field("version")), "{name} is not a complete write");
        assert!(cm.metadata.uid.is_some() && cm.metadata.creation_timestamp.is_some(), "{name}: metadata incomplete");
        assert!(cm.resource_version().unwrap().parse::<u64>().is_ok());
    }
    // Every acknowledged write is there; an unacknowledged one is either there whole or absent.
    let mut known = 0;
    for r in &results {
        for (name, track) in &r.objects {
            known += 1;
            let actual = present.get(name).map(|cm| cm.data.clone().unwrap_or_default());
            let ok = actual == track.acked || track.pending.as_ref().is_some_and(|p| *p == actual);
            assert!(
                ok,
                "{name}: after restart {} but the last acknowledged write left it {}{}",
                describe(&actual),
                describe(&track.acked),
                track.pending.as_ref().map(|p| format!(" (in flight: {})", describe(p))).unwrap_or_default()
            );
        }
    }
    for name in present.keys() {
        assert!(results.iter().any(|r| r.objects.contains_key(name)), "{name} was never written");
    }
    let landed = results
        .iter()
        .flat_map(|r| r.objects.iter())
        .filter(|(name, t)| t.pending.as_ref().is_some_and(|p| *p != t.acked && *p == present.get(*name).map(|cm| cm.data.clone().unwrap_or_default())))
        .count();
    eprintln!("{known} objects tracked, {} present after restart, {landed} of {in_flight} in-flight writes landed", present.len());

    // The server is healthy and revisions move on from where they were.
    let out = tokio::task::block_in_place(|| c.ok(&["get", "cm", "-l", &format!("{LABEL}=yes"), "-o", "json"])).unwrap();
    let v: Value = serde_json::from_str(&out).expect("kubectl get cm -o json parses");
    assert_eq!(v["items"].as_array().unwrap().len(), present.len());
    let table = tokio::task::block_in_place(|| c.ok(&["get", "cm"])).unwrap();
    assert!(table.starts_with("NAME") && table.contains("DATA"), "{table}");
    let max_rv = results.iter().map(|r| r.max_rv).max().unwrap();
    let after: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after-crash"}, "data": {"k": "v"}})).unwrap();
    let after = api.create(&PostParams::default(), &after).await.expect("writes work after the crash");
    let rv: u64 = after.resource_version().unwrap().parse().unwrap();
    assert!(rv > max_rv, "revision after restart {rv} <= highest acknowledged {max_rv}");
    tokio::task::block_in_place(move || drop(c));
}

fn describe(d: &Option<BTreeMap<String, String>>) -> String {
    match d {
        None => "absent".into(),
        Some(d) => format!("at version {}", d.get("version").map(String::as_str).unwrap_or("?")),
    }
}
