//! Durability across a process crash: a child process (this test binary re-run with an
//! environment variable) writes concurrently and prints every acknowledged write; the parent
//! SIGKILLs it mid-flight, then checks that every acknowledged write is in the reopened
//! database with its exact value and that the file passes an integrity check.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_store::sqlite::{check_integrity, SqliteConfig, SqliteStore};
use skiff_store::Store;

/// Set in the child to the database path; its presence turns the test into the writer.
const CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD_DB";
const WRITERS: usize = 16;
/// Acknowledgements the parent waits for before killing the child.
const KILL_AFTER: usize = 600;

fn value_for(task: usize, i: usize) -> Vec<u8> {
    format!("{task}-{i}-").repeat(12).into_bytes()
}

/// The child: write until killed, printing `C key rev` after each acknowledged create and
/// `U task n rev` after each acknowledged counter update.
fn child(db: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = SqliteConfig {
            compaction_interval: None,
            ..Default::default()
        };
        let store = std::sync::Arc::new(SqliteStore::open(db, config).unwrap());
        let mut tasks = Vec::new();
        for t in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let counter = format!("/crash/counter/{t}");
                let mut counter_rev = store.create(&counter, b"0".to_vec()).await.unwrap();
                writeln!(std::io::stdout().lock(), "U {t} 0 {counter_rev}").unwrap();
                // Bounded so an orphaned child cannot write forever.
                for i in 0..100_000 {
                    let key = format!("/crash/{t:02}/{i:06}");
                    let rev = store.create(&key, value_for(t, i)).await.unwrap();
                    writeln!(std::io::stdout().lock(), "C {key} {rev}").unwrap();
                    let n = i + 1;
                    counter_rev = store
                        .update(&counter, n.to_string().into_bytes(), counter_rev)
                        .await
                        .unwrap();
                    writeln!(std::io::stdout().lock(), "U {t} {n} {counter_rev}").unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Kills the child if the parent fails before doing so.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&db));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let spawned = Command::new(exe)
        .args([
            "--exact",
            "acknowledged_writes_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(spawned);
    let stdout = child.0.stdout.take().unwrap();

    let mut creates: BTreeMap<String, i64> = BTreeMap::new();
    // Per task: highest acknowledged counter value and its revision.
    let mut counters: BTreeMap<usize, (usize, i64)> = BTreeMap::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["C", key, rev] => {
                creates.insert(key.to_string(), rev.parse().unwrap());
            }
            ["U", t, n, rev] => {
                let entry = counters.entry(t.parse().unwrap()).or_insert((0, 0));
                let (n, rev): (usize, i64) = (n.parse().unwrap(), rev.parse().unwrap());
                if n >= entry.0 {
                    *entry = (n, rev);
                }
            }
            _ => continue,
        }
        // Lines already in the pipe after the kill were acknowledged before it: keep reading.
        if !killed && creates.len() >= KILL_AFTER {
            child.0.kill().unwrap();
            killed = true;
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    assert!(killed, "child ended before it was killed");
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "child died of SIGKILL, not on its own: {status:?}"
    );
    assert!(creates.len() >= KILL_AFTER);

    check_integrity(&db).expect("database intact after crash");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db, SqliteConfig::default()).unwrap();
        let max_acked = creates
            .values()
            .chain(counters.values().map(|(_, r)| r))
            .copied()
            .max()
            .unwrap();
        assert!(store.current_revision().await.unwrap() >= max_acked);
        for (key, rev) in &creates {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} lost"));
            let (t, i) = key.trim_start_matches("/crash/").split_once('/').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(kv.mod_revision, *rev, "{key}");
            assert_eq!(kv.value, value_for(t, i), "{key}");
        }
        for (t, (n, rev)) in &counters {
            let kv = store
                .get(&format!("/crash/counter/{t}"))
                .await
                .unwrap()
                .unwrap();
            let stored: usize = String::from_utf8(kv.value).unwrap().parse().unwrap();
            // The acknowledged value, or the one in flight when the child died.
            assert!(
                (stored == *n && kv.mod_revision == *rev)
                    || (stored == n + 1 && kv.mod_revision > *rev),
                "counter {t}: acknowledged {n}@{rev}, stored {stored}@{}",
                kv.mod_revision
            );
        }
        eprintln!(
            "crash test: {} creates and {} counters acknowledged before SIGKILL, all present",
            creates.len(),
            counters.len()
        );
    });
}
