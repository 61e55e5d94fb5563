//! SQLite-only behaviour: group commit, restart, background compaction, snapshot and restore,
//! and the file lock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_store::sqlite::{check_integrity, restore, SqliteConfig, SqliteStore};
use skiff_store::{EventKind, Store, StoreError};

fn manual() -> SqliteConfig {
    SqliteConfig {
        compaction_interval: None,
        ..Default::default()
    }
}

fn rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_32_writers() {
    const WRITERS: usize = 32;
    const PER_WRITER: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap());
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_WRITER {
                let key = format!("/g/{t:02}/{i:03}");
                let value = format!("value-{t}-{i}").into_bytes();
                let rev = store.create(&key, value.clone()).await.unwrap();
                acked.push((key, value, rev));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let revs: BTreeSet<_> = acked.iter().map(|(_, _, r)| *r).collect();
    assert_eq!(revs.len(), WRITERS * PER_WRITER, "one revision per write");
    assert_eq!(
        revs.iter().copied().collect::<Vec<_>>(),
        (1..=(WRITERS * PER_WRITER) as i64).collect::<Vec<_>>()
    );
    for (key, value, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .expect("acknowledged key present");
        assert_eq!((&kv.value, kv.mod_revision), (value, *rev));
    }
    let stats = store.commit_stats();
    assert_eq!(stats.writes, (WRITERS * PER_WRITER) as u64);
    assert!(
        stats.transactions < stats.writes,
        "concurrent writes share commits: {} transactions for {} writes",
        stats.transactions,
        stats.writes
    );
    // And they are on disk, not just in this process.
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap();
    assert_eq!(
        reopened.count("/g/").await.unwrap(),
        (WRITERS * PER_WRITER) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_condition_does_not_fail_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap());
    let base = store.create("/race", b"0".to_vec()).await.unwrap();
    // 32 updates racing on one expected revision, plus 32 unrelated creates in the same
    // batches: exactly one update wins, every create succeeds.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.update("/race", format!("{i}").into_bytes(), base).await
        }));
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create(&format!("/side/{i}"), Vec::new()).await
        }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { expected, .. }) if expected == base => conflicts += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(store.count("/side/").await.unwrap(), 32);
    // 32 creates + 1 update succeeded.
    assert_eq!((wins, conflicts), (33, 31));
    assert_eq!(store.current_revision().await.unwrap(), base + 33);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_revisions_compaction_and_watch_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (point, last) = {
        let store = SqliteStore::open(&db, manual()).unwrap();
        let r = store.create("/r/a", b"1".to_vec()).await.unwrap();
        let r = store.update("/r/a", b"2".to_vec(), r).await.unwrap();
        let point = store.create("/r/b", b"b".to_vec()).await.unwrap();
        store.compact(point).await.unwrap();
        let r = store.update("/r/a", b"3".to_vec(), r).await.unwrap();
        store.delete("/r/b", None).await.unwrap();
        let last = store.create("/r/c", b"c".to_vec()).await.unwrap();
        assert!(last > r);
        (point, last)
    };
    let store = SqliteStore::open(&db, manual()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.compacted_revision().await.unwrap(), point);
    assert!(matches!(
        store.range("/r/", None, 0, Some(point - 1)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.watch("/r/", point - 1).await,
        Err(StoreError::Compacted { .. })
    ));
    let at_point = store.range("/r/", None, 0, Some(point)).await.unwrap();
    assert_eq!(
        at_point
            .kvs
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        [b"2".to_vec(), b"b".to_vec()]
    );

    // Watch from the compaction point replays the writes made before the restart, then
    // continues live with the next revision.
    let mut w = store.watch("/r/", point).await.unwrap();
    let next = store.create("/r/d", b"d".to_vec()).await.unwrap();
    assert_eq!(next, last + 1);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let e = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push((e.kind, e.kv.key, e.kv.mod_revision));
    }
    assert_eq!(
        kinds,
        [
            (EventKind::Update, "/r/a".to_string(), point + 1),
            (EventKind::Delete, "/r/b".to_string(), point + 2),
            (EventKind::Create, "/r/c".to_string(), last),
            (EventKind::Create, "/r/d".to_string(), next),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_removes_history_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let store = SqliteStore::open(&db, manual()).unwrap();
    let mut rev = store.create("/x/hot", b"0".to_vec()).await.unwrap();
    for i in 1..=20 {
        rev = store
            .update("/x/hot", format!("{i}").into_bytes(), rev)
            .await
            .unwrap();
    }
    store.create("/x/tmp", Vec::new()).await.unwrap();
    let (point, _) = store.delete("/x/tmp", None).await.unwrap();
    assert_eq!(rows(&db), 23);
    store.compact(point).await.unwrap();
    // Only the hot key's latest row survives; the deleted key leaves nothing behind.
    assert_eq!(rows(&db), 1);
    assert_eq!(store.get("/x/hot").await.unwrap().unwrap().value, b"20");
    check_integrity(&db).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_compactor_keeps_bounded_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let config = SqliteConfig {
        compaction_interval: Some(Duration::from_millis(50)),
        compaction_retain: 10,
        ..Default::default()
    };
    let store = SqliteStore::open(&db, config).unwrap();
    let mut rev = store.create("/b/k", b"0".to_vec()).await.unwrap();
    for i in 1..50 {
        rev = store
            .update("/b/k", format!("{i}").into_bytes(), rev)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.unwrap() < rev - 10 {
        assert!(
            Instant::now() < deadline,
            "background compaction did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.compacted_revision().await.unwrap(), rev - 10);
    // Let the chunked delete finish, then the kept history is exactly the retained window.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&db) > 11 {
        assert!(Instant::now() < deadline, "history rows were not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows(&db), 11);
    assert_eq!(
        store
            .range("/b/", None, 0, Some(rev - 10))
            .await
            .unwrap()
            .kvs[0]
            .value,
        b"39"
    );
    assert!(matches!(
        store.range("/b/", None, 0, Some(rev - 11)).await,
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let snap = dir.path().join("snap.db");
    let store = SqliteStore::open(&db, manual()).unwrap();
    for i in 0..100 {
        store
            .create(&format!("/s/{i:03}"), format!("v{i}").into_bytes())
            .await
            .unwrap();
    }
    let (del, _) = store.delete("/s/050", None).await.unwrap();
    store.compact(del - 10).await.unwrap();
    store.snapshot(&snap).await.unwrap();
    let at_snapshot = store.range("/s/", None, 0, None).await.unwrap();
    // Changes after the snapshot must disappear on restore.
    store.create("/s/after", b"x".to_vec()).await.unwrap();
    store
        .update("/s/000", b"changed".to_vec(), 1)
        .await
        .unwrap();
    // Snapshots are one file, and verify on their own.
    assert!(!dir.path().join("snap.db-wal").exists());
    check_integrity(&snap).unwrap();
    // Taking another snapshot over an existing file replaces it.
    store.snapshot(&dir.path().join("snap2.db")).await.unwrap();
    store.snapshot(&dir.path().join("snap2.db")).await.unwrap();

    match restore(&snap, &db) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("restore over an open store must fail, got {other:?}"),
    }
    drop(store);
    restore(&snap, &db).unwrap();
    let store = SqliteStore::open(&db, manual()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), del);
    assert_eq!(store.compacted_revision().await.unwrap(), del - 10);
    let restored = store.range("/s/", None, 0, None).await.unwrap();
    assert_eq!(restored.kvs, at_snapshot.kvs);
    assert_eq!(store.get("/s/after").await.unwrap(), None);
    // The restored store accepts writes at the next revision.
    assert_eq!(store.create("/s/new", Vec::new()).await.unwrap(), del + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_refuses_invalid_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&db, manual()).unwrap();
        store.create("/keep", b"me".to_vec()).await.unwrap();
    }
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    assert!(restore(&garbage, &db).is_err());
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(restore(&foreign, &db).is_err());
    assert!(restore(&dir.path().join("missing.db"), &db).is_err());
    // A truncated snapshot fails the integrity check.
    let snap = dir.path().join("snap.db");
    {
        let store = SqliteStore::open(&db, manual()).unwrap();
        for i in 0..200 {
            store
                .create(&format!("/t/{i}"), vec![7; 200])
                .await
                .unwrap();
        }
        store.snapshot(&snap).await.unwrap();
    }
    let bytes = std::fs::read(&snap).unwrap();
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(restore(&truncated, &db).is_err());
    // The database was left alone by every refused restore.
    let store = SqliteStore::open(&db, manual()).unwrap();
    assert_eq!(store.get("/keep").await.unwrap().unwrap().value, b"me");
    assert_eq!(store.count("/t/").await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_open_is_refused_and_foreign_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let store = SqliteStore::open(&db, manual()).unwrap();
    match SqliteStore::open(&db, manual()) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("second open must fail, got {other:?}"),
    }
    drop(store);
    SqliteStore::open(&db, manual()).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    assert!(SqliteStore::open(&foreign, manual()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_watch_releases_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap();
    let handle = tokio::runtime::Handle::current();
    let before = handle.metrics().num_alive_tasks();
    let watches: Vec<_> = futures::future::join_all((0..20).map(|_| store.watch("/quiet/", 0)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(handle.metrics().num_alive_tasks() >= before + 20);
    drop(watches);
    // No event ever arrives under /quiet/: the tasks must end because their consumer left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.metrics().num_alive_tasks() > before {
        assert!(
            Instant::now() < deadline,
            "watch tasks outlived their streams"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_backlog_replays_in_order_then_goes_live() {
    const KEYS: i64 = 2_500;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap());
    let mut acked = Vec::new();
    for i in 0..KEYS {
        acked.push(
            store
                .create(&format!("/l/{i:05}"), Vec::new())
                .await
                .unwrap(),
        );
        if i % 3 == 0 {
            store
                .create(&format!("/noise/{i}"), Vec::new())
                .await
                .unwrap();
        }
    }
    let mut w = store.watch("/l/", 0).await.unwrap();
    let mut got = Vec::new();
    while got.len() < acked.len() {
        let e = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(e.kv.mod_revision);
    }
    assert_eq!(got, acked);
    let live = store.create("/l/live", Vec::new()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.kv.mod_revision, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_during_replay_ends_the_watch_with_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db"), manual()).unwrap());
    for i in 0..2_500 {
        store
            .create(&format!("/l/{i:05}"), Vec::new())
            .await
            .unwrap();
    }
    let mut w = store.watch("/l/", 0).await.unwrap();
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    let mut replayed = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
        {
            Some(Ok(_)) => replayed += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error after {replayed} events"),
        }
    };
    assert!(matches!(end, StoreError::Compacted { .. }), "{end:?}");
    assert!(replayed > 0 && replayed < 2_500, "{replayed}");
    assert!(w.next().await.is_none(), "an error ends the stream");
}
