//! Store benchmark: durable creates (sequential and 32-way concurrent), gets, and a range read
//! of 10,000 keys, for the SQLite backend with the memory backend beside it for reference.
//!
//! Run: `cargo bench -p skiff-store --bench store-bench` (release profile). The database goes
//! to a temporary directory under `SKIFF_BENCH_DIR` (default: the system temp dir); put it on
//! the disk you care about, since durable writes are bound by that disk's fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::memory::MemoryStore;
use skiff_store::sqlite::{SqliteConfig, SqliteStore};
use skiff_store::Store;

const VALUE_BYTES: usize = 512;
const SEQUENTIAL_CREATES: usize = 2_000;
const CONCURRENT_WRITERS: usize = 32;
const CONCURRENT_CREATES: usize = 20_000;
const GETS: usize = 50_000;
const GET_TASKS: usize = 4;
const RANGE_KEYS: usize = 10_000;
const RANGE_RUNS: usize = 10;

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

struct Figures {
    seq_creates: f64,
    par_creates: f64,
    gets_1: f64,
    gets_n: f64,
    range_median: Duration,
    range_page_median: Duration,
}

async fn run(store: Arc<dyn Store>) -> Figures {
    let value = vec![b'x'; VALUE_BYTES];

    let start = Instant::now();
    for i in 0..SEQUENTIAL_CREATES {
        store
            .create(&format!("/bench/seq/{i:08}"), value.clone())
            .await
            .unwrap();
    }
    let seq_creates = per_sec(SEQUENTIAL_CREATES, start.elapsed());

    let start = Instant::now();
    let per_task = CONCURRENT_CREATES / CONCURRENT_WRITERS;
    let tasks: Vec<_> = (0..CONCURRENT_WRITERS)
        .map(|t| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    store
                        .create(&format!("/bench/par/{t:02}/{i:08}"), value.clone())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let par_creates = per_sec(per_task * CONCURRENT_WRITERS, start.elapsed());

    let start = Instant::now();
    for i in 0..GETS {
        let key = format!("/bench/seq/{:08}", (i * 7919) % SEQUENTIAL_CREATES);
        assert!(store.get(&key).await.unwrap().is_some());
    }
    let gets_1 = per_sec(GETS, start.elapsed());

    let start = Instant::now();
    let tasks: Vec<_> = (0..GET_TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..GETS / GET_TASKS {
                    let key = format!("/bench/seq/{:08}", (i * 7919 + t) % SEQUENTIAL_CREATES);
                    assert!(store.get(&key).await.unwrap().is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let gets_n = per_sec(GETS / GET_TASKS * GET_TASKS, start.elapsed());

    // 10,000 keys under their own prefix, each with one older version in history.
    let tasks: Vec<_> = (0..CONCURRENT_WRITERS)
        .map(|t| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                for i in (t..RANGE_KEYS).step_by(CONCURRENT_WRITERS) {
                    let key = format!("/bench/range/{i:08}");
                    let rev = store.create(&key, value.clone()).await.unwrap();
                    store.update(&key, value.clone(), rev).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..RANGE_RUNS {
        let start = Instant::now();
        let r = store.range("/bench/range/", None, 0, None).await.unwrap();
        times.push(start.elapsed());
        assert_eq!(r.kvs.len(), RANGE_KEYS);
    }
    times.sort();
    let range_median = times[RANGE_RUNS / 2];
    let mut times = Vec::new();
    for _ in 0..RANGE_RUNS {
        let start = Instant::now();
        let mut after: Option<String> = None;
        let mut n = 0;
        loop {
            let page = store
                .range("/bench/range/", after.as_deref(), 500, None)
                .await
                .unwrap();
            n += page.kvs.len();
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        times.push(start.elapsed());
        assert_eq!(n, RANGE_KEYS);
    }
    times.sort();
    let range_page_median = times[RANGE_RUNS / 2];

    Figures {
        seq_creates,
        par_creates,
        gets_1,
        gets_n,
        range_median,
        range_page_median,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("SKIFF_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).unwrap();
    let db = dir.path().join("bench.db");
    rt.block_on(async {
        let sqlite = Arc::new(
            SqliteStore::open(
                &db,
                SqliteConfig {
                    compaction_interval: None,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let s = run(sqlite.clone()).await;
        let stats = sqlite.commit_stats();
        let m = run(Arc::new(MemoryStore::new())).await;
        println!(
            "skiff-store benchmark ({VALUE_BYTES}-byte values, db in {})",
            base.display()
        );
        println!("{:<44} {:>14} {:>14}", "", "sqlite", "memory");
        println!(
            "{:<44} {:>14.0} {:>14.0}",
            format!("durable creates/s, sequential ({SEQUENTIAL_CREATES})"),
            s.seq_creates,
            m.seq_creates
        );
        println!(
            "{:<44} {:>14.0} {:>14.0}",
            format!("durable creates/s, {CONCURRENT_WRITERS}-way ({CONCURRENT_CREATES})"),
            s.par_creates,
            m.par_creates
        );
        println!(
            "{:<44} {:>14.0} {:>14.0}",
            "gets/s, 1 task", s.gets_1, m.gets_1
        );
        println!(
            "{:<44} {:>14.0} {:>14.0}",
            format!("gets/s, {GET_TASKS} tasks"),
            s.gets_n,
            m.gets_n
        );
        println!(
            "{:<44} {:>11.2} ms {:>11.2} ms",
            format!("range {RANGE_KEYS} keys, one read (median)"),
            s.range_median.as_secs_f64() * 1e3,
            m.range_median.as_secs_f64() * 1e3
        );
        println!(
            "{:<44} {:>11.2} ms {:>11.2} ms",
            format!("range {RANGE_KEYS} keys, pages of 500 (median)"),
            s.range_page_median.as_secs_f64() * 1e3,
            m.range_page_median.as_secs_f64() * 1e3
        );
        println!(
            "sqlite group commit: {} writes in {} transactions ({:.1} writes per fsync)",
            stats.writes,
            stats.transactions,
            stats.writes as f64 / stats.transactions.max(1) as f64
        );
    });
}
