//! The `Store` contract, run against every backend: each case is a function over a fresh
//! store, instantiated once per backend by the `conformance!` macro at the bottom.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skiff_store::memory::MemoryStore;
use skiff_store::sqlite::{SqliteConfig, SqliteStore};
use skiff_store::{EventKind, Store, StoreError, WatchEvent, WatchStream};

/// A store under test plus whatever must outlive it (the SQLite temp dir).
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig {
        compaction_interval: None,
        ..Default::default()
    };
    let store = SqliteStore::open(&dir.path().join("store.db"), config).expect("open sqlite store");
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// Next event of a watch, failing the test instead of hanging when none comes.
async fn next_event(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event within 10s")
        .expect("watch stream still open")
        .expect("watch event is not an error")
}

async fn create_get_already_exists(s: Arc<dyn Store>) {
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert_eq!(s.get("/a").await.unwrap(), None);
    let rev = s.create("/a", b"one".to_vec()).await.unwrap();
    assert_eq!(rev, 1);
    let kv = s.get("/a").await.unwrap().expect("created key");
    assert_eq!(
        (
            kv.key.as_str(),
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision
        ),
        ("/a", &b"one"[..], 1, 1)
    );
    match s.create("/a", b"two".to_vec()).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A failed write must not consume a revision or change the value.
    assert_eq!(s.current_revision().await.unwrap(), 1);
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, b"one");
    assert_eq!(s.create("/b", Vec::new()).await.unwrap(), 2);
    assert_eq!(s.get("/b").await.unwrap().unwrap().value, b"");
}

async fn update_conditional(s: Arc<dyn Store>) {
    match s.update("/missing", b"x".to_vec(), 1).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/missing"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let r1 = s.create("/k", b"v1".to_vec()).await.unwrap();
    s.create("/other", b"o".to_vec()).await.unwrap();
    match s.update("/k", b"v2".to_vec(), r1 + 5).await {
        Err(StoreError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!((key.as_str(), expected, current), ("/k", r1 + 5, r1));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let r2 = s.update("/k", b"v2".to_vec(), r1).await.unwrap();
    assert_eq!(r2, 3);
    let kv = s.get("/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"v2"[..], r1, r2)
    );
    // The old revision is stale now.
    assert!(
        matches!(s.update("/k", b"v3".to_vec(), r1).await, Err(StoreError::Conflict { current, .. }) if current == r2)
    );
}

async fn delete_conditional(s: Arc<dyn Store>) {
    assert!(matches!(
        s.delete("/d", None).await,
        Err(StoreError::NotFound { .. })
    ));
    let r1 = s.create("/d", b"v".to_vec()).await.unwrap();
    assert!(matches!(
        s.delete("/d", Some(r1 + 1)).await,
        Err(StoreError::Conflict { expected, current, .. }) if expected == r1 + 1 && current == r1
    ));
    let (rd, prev) = s.delete("/d", Some(r1)).await.unwrap();
    assert_eq!(rd, r1 + 1);
    assert_eq!(
        (
            prev.value.as_slice(),
            prev.mod_revision,
            prev.create_revision
        ),
        (&b"v"[..], r1, r1)
    );
    assert_eq!(s.get("/d").await.unwrap(), None);
    assert!(matches!(
        s.delete("/d", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update("/d", b"x".to_vec(), rd).await,
        Err(StoreError::NotFound { .. })
    ));
    // Re-creating starts a new life: new create_revision.
    let r3 = s.create("/d", b"again".to_vec()).await.unwrap();
    let kv = s.get("/d").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r3, r3));
    // Unconditional delete works too.
    let (_, prev) = s.delete("/d", None).await.unwrap();
    assert_eq!(prev.value, b"again");
}

async fn range_paging(s: Arc<dyn Store>) {
    for i in 0..25 {
        s.create(&format!("/p/{i:03}"), format!("v{i}").into_bytes())
            .await
            .unwrap();
    }
    // Neighbours that share bytes with the prefix but are not under it.
    s.create("/p", b"parent".to_vec()).await.unwrap();
    s.create("/p0", b"sibling".to_vec()).await.unwrap();
    s.create("/q/1", b"q".to_vec()).await.unwrap();

    let all = s.range("/p/", None, 0, None).await.unwrap();
    assert_eq!(all.kvs.len(), 25);
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await.unwrap());
    let expected: Vec<String> = (0..25).map(|i| format!("/p/{i:03}")).collect();
    assert_eq!(
        all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(all.kvs[7].value, b"v7");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .range("/p/", after.as_deref(), 10, Some(all.revision))
            .await
            .unwrap();
        pages += 1;
        assert!(page.kvs.len() <= 10);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        assert_eq!(page.kvs.len(), 10, "a page with more after it is full");
        after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // Exactly `limit` remaining keys: no more.
    let tail = s.range("/p/", Some("/p/014"), 10, None).await.unwrap();
    assert_eq!(tail.kvs.len(), 10);
    assert!(!tail.more);
    assert_eq!(tail.kvs[0].key, "/p/015");
    // start_after before the prefix starts at the prefix.
    let first = s.range("/p/", Some("/a"), 1, None).await.unwrap();
    assert_eq!(first.kvs[0].key, "/p/000");
    assert!(first.more);
    // Empty prefix sees everything.
    assert_eq!(s.range("", None, 0, None).await.unwrap().kvs.len(), 28);

    assert_eq!(s.count("/p/").await.unwrap(), 25);
    s.delete("/p/003", None).await.unwrap();
    s.delete("/p/020", None).await.unwrap();
    assert_eq!(s.count("/p/").await.unwrap(), 23);
    assert_eq!(s.count("/p").await.unwrap(), 25);
    let latest = s.range("/p/", None, 0, None).await.unwrap();
    assert_eq!(latest.kvs.len(), 23);
    assert!(latest
        .kvs
        .iter()
        .all(|kv| kv.key != "/p/003" && kv.key != "/p/020"));
}

async fn range_at_old_revision(s: Arc<dyn Store>) {
    let r1 = s.create("/h/a", b"a1".to_vec()).await.unwrap();
    let r2 = s.create("/h/b", b"b1".to_vec()).await.unwrap();
    let r3 = s.update("/h/a", b"a2".to_vec(), r1).await.unwrap();
    let (r4, _) = s.delete("/h/b", None).await.unwrap();
    let r5 = s.create("/h/c", b"c1".to_vec()).await.unwrap();

    let at = |rev| {
        let s = s.clone();
        async move {
            let r = s.range("/h/", None, 0, Some(rev)).await.unwrap();
            assert_eq!(r.revision, rev);
            r.kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value, kv.mod_revision))
                .collect::<Vec<_>>()
        }
    };
    let kv = |k: &str, v: &str, r| (k.to_string(), v.as_bytes().to_vec(), r);
    assert_eq!(at(r1).await, vec![kv("/h/a", "a1", r1)]);
    assert_eq!(
        at(r2).await,
        vec![kv("/h/a", "a1", r1), kv("/h/b", "b1", r2)]
    );
    assert_eq!(
        at(r3).await,
        vec![kv("/h/a", "a2", r3), kv("/h/b", "b1", r2)]
    );
    assert_eq!(at(r4).await, vec![kv("/h/a", "a2", r3)]);
    assert_eq!(
        at(r5).await,
        vec![kv("/h/a", "a2", r3), kv("/h/c", "c1", r5)]
    );
    assert_eq!(s.range("/h/", None, 0, Some(0)).await.unwrap().kvs.len(), 0);
    // Paging at an old revision.
    let page = s.range("/h/", None, 1, Some(r2)).await.unwrap();
    assert_eq!(page.kvs.len(), 1);
    assert!(page.more);
    match s.range("/h/", None, 0, Some(r5 + 1)).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (r5 + 1, r5))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// Keys with several versions, tombstones and re-creation: a page holds only live keys, each
/// at its newest version at the read revision, and a deleted key never takes a page's slot.
async fn range_versions_and_tombstones(s: Arc<dyn Store>) {
    let a1 = s.create("/v/a", b"a1".to_vec()).await.unwrap();
    let b1 = s.create("/v/b", b"b1".to_vec()).await.unwrap();
    let c1 = s.create("/v/c", b"c1".to_vec()).await.unwrap();
    let a2 = s.update("/v/a", b"a2".to_vec(), a1).await.unwrap();
    let a3 = s.update("/v/a", b"a3".to_vec(), a2).await.unwrap();
    let (_, _) = s.delete("/v/b", None).await.unwrap();
    let b2 = s.create("/v/b", b"b2".to_vec()).await.unwrap();
    let (_, _) = s.delete("/v/c", None).await.unwrap();
    let d1 = s.create("/v/d", b"d1".to_vec()).await.unwrap();

    let now = s.range("/v/", None, 0, None).await.unwrap();
    let got: Vec<_> = now
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone(), kv.create_revision, kv.mod_revision))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/v/a", b"a3".to_vec(), a1, a3),
            ("/v/b", b"b2".to_vec(), b2, b2),
            ("/v/d", b"d1".to_vec(), d1, d1),
        ]
    );
    // The deleted /v/c between /v/b and /v/d does not fill the second slot of a page.
    let page = s.range("/v/", Some("/v/a"), 2, None).await.unwrap();
    let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, vec!["/v/b", "/v/d"]);
    assert!(!page.more);
    let page = s.range("/v/", None, 2, None).await.unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more);
    // At c1, /v/c was live and /v/a still at its first version.
    let then = s.range("/v/", None, 0, Some(c1)).await.unwrap();
    let got: Vec<_> = then.kvs.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
    assert_eq!(got, vec![("/v/a", a1), ("/v/b", b1), ("/v/c", c1)]);
}

async fn compaction(s: Arc<dyn Store>) {
    let keep = s.create("/c/untouched", b"old".to_vec()).await.unwrap();
    let r = s.create("/c/a", b"1".to_vec()).await.unwrap();
    let r = s.update("/c/a", b"2".to_vec(), r).await.unwrap();
    s.create("/c/gone", b"x".to_vec()).await.unwrap();
    s.delete("/c/gone", None).await.unwrap();
    let point = s.update("/c/a", b"3".to_vec(), r).await.unwrap();
    let after1 = s.update("/c/a", b"4".to_vec(), point).await.unwrap();
    let after2 = s.create("/c/new", b"n".to_vec()).await.unwrap();
    let before = s.range("/c/", None, 0, Some(point)).await.unwrap().kvs;

    s.compact(point).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), point);
    match s.range("/c/", None, 0, Some(point - 1)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (point - 1, point)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(
        s.watch("/c/", point - 1).await,
        Err(StoreError::Compacted { .. })
    ));
    // The compaction point itself and everything after stay readable and identical.
    assert_eq!(
        s.range("/c/", None, 0, Some(point)).await.unwrap().kvs,
        before
    );
    let latest = s.range("/c/", None, 0, None).await.unwrap().kvs;
    let keys: Vec<_> = latest.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/c/a", "/c/new", "/c/untouched"]);
    let untouched = s.get("/c/untouched").await.unwrap().unwrap();
    assert_eq!(
        (untouched.value.as_slice(), untouched.mod_revision),
        (&b"old"[..], keep)
    );
    assert_eq!(s.get("/c/gone").await.unwrap(), None);
    assert_eq!(s.count("/c/").await.unwrap(), 3);
    // Events after the point still replay, with their previous values.
    let mut w = s.watch("/c/", point).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.value.as_slice()),
        (EventKind::Update, after1, &b"4"[..])
    );
    assert_eq!(e.prev.expect("update has prev").value, b"3");
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.kv.mod_revision), (EventKind::Create, after2));
    // Compacting to an older point is a no-op; beyond the current revision clamps.
    s.compact(point - 2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), point);
    let current = s.current_revision().await.unwrap();
    s.compact(current + 100).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), current);
    assert_eq!(s.range("/c/", None, 0, None).await.unwrap().kvs, latest);
    // Writes continue after compaction.
    let next = s.create("/c/later", b"l".to_vec()).await.unwrap();
    assert_eq!(next, current + 1);
}

async fn watch_event_contents(s: Arc<dyn Store>) {
    let mut w = s.watch("/w/", 0).await.unwrap();
    let r1 = s.create("/w/a", b"1".to_vec()).await.unwrap();
    s.create("/elsewhere", b"x".to_vec()).await.unwrap();
    let r2 = s.update("/w/a", b"2".to_vec(), r1).await.unwrap();
    let (r3, _) = s.delete("/w/a", Some(r2)).await.unwrap();
    let r4 = s.create("/w/a", b"3".to_vec()).await.unwrap();

    let e = next_event(&mut w).await;
    assert_eq!(
        (
            e.kind,
            e.kv.mod_revision,
            e.kv.create_revision,
            e.prev.clone()
        ),
        (EventKind::Create, r1, r1, None)
    );
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.create_revision),
        (EventKind::Update, r2, r1)
    );
    let prev = e.prev.unwrap();
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], r1));
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.value.as_slice()),
        (EventKind::Delete, r3, &b"2"[..])
    );
    assert_eq!(e.prev.unwrap().mod_revision, r2);
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.create_revision, e.prev),
        (EventKind::Create, r4, r4, None)
    );

    // The same history replayed from the log must be identical to the live one.
    let mut replay = s.watch("/w/", 0).await.unwrap();
    let mut live = s.watch("/w/", r2).await.unwrap();
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(next_event(&mut replay).await);
    }
    assert_eq!(
        replayed
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect::<Vec<_>>(),
        [r1, r2, r3, r4]
    );
    assert_eq!(next_event(&mut live).await, replayed[2]);
    assert_eq!(next_event(&mut live).await, replayed[3]);
}

async fn watch_concurrent_writers(s: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let mut from_start = s.watch("/cw/", 0).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..PER_WRITER {
                let key = format!("/cw/{t}/{}", i % 10);
                let rev = match s.get(&key).await.unwrap() {
                    Some(kv) => s
                        .update(&key, format!("{i}").into_bytes(), kv.mod_revision)
                        .await
                        .unwrap(),
                    None => s.create(&key, format!("{i}").into_bytes()).await.unwrap(),
                };
                revs.push(rev);
                // Noise outside the watched prefix.
                if i % 4 == 0 {
                    let other = format!("/other/{t}/{i}");
                    s.create(&other, Vec::new()).await.unwrap();
                }
            }
            revs
        }));
    }
    // A watcher that joins mid-way must switch from backlog to live without a gap.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mid_point = s.current_revision().await.unwrap();
    let mut from_mid = s.watch("/cw/", mid_point).await.unwrap();

    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(
        acked.len(),
        WRITERS * PER_WRITER,
        "every write has its own revision"
    );

    let mut got = Vec::new();
    while got.len() < acked.len() {
        got.push(next_event(&mut from_start).await.kv.mod_revision);
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "revisions strictly increase"
    );
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        acked,
        "no gap, no stray event"
    );

    let want_mid: Vec<_> = acked.iter().copied().filter(|r| *r > mid_point).collect();
    let mut got_mid = Vec::new();
    while got_mid.len() < want_mid.len() {
        got_mid.push(next_event(&mut from_mid).await.kv.mod_revision);
    }
    assert_eq!(got_mid, want_mid);
    // Nothing else is pending on either stream.
    for w in [&mut from_start, &mut from_mid] {
        assert!(tokio::time::timeout(Duration::from_millis(100), w.next())
            .await
            .is_err());
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn create_get_already_exists() {
                let f = super::$backend();
                super::create_get_already_exists(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn update_conditional() {
                let f = super::$backend();
                super::update_conditional(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delete_conditional() {
                let f = super::$backend();
                super::delete_conditional(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn range_paging() {
                let f = super::$backend();
                super::range_paging(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn range_at_old_revision() {
                let f = super::$backend();
                super::range_at_old_revision(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn range_versions_and_tombstones() {
                let f = super::$backend();
                super::range_versions_and_tombstones(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn compaction() {
                let f = super::$backend();
                super::compaction(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_event_contents() {
                let f = super::$backend();
                super::watch_event_contents(f.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_concurrent_writers() {
                let f = super::$backend();
                super::watch_concurrent_writers(f.store.clone()).await;
            }
        }
    };
}

conformance!(memory);
conformance!(sqlite);
