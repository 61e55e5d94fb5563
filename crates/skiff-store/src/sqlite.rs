//! SQLite backend (the embedded default): an MVCC log in one SQLite file in WAL mode.
//!
//! Writes go to one writer thread that group-commits them (see `writer`): every write is
//! acknowledged only after the transaction carrying it is committed with `synchronous = FULL`,
//! i.e. fsynced. Reads use a small pool of separate connections, so they see the last
//! committed state and never wait for the writer. Watches replay history from the `kv` table
//! and then follow a live feed that the writer fills after each commit.
//!
//! Only one store may have a database file open at a time (an advisory lock on
//! `<db>.lock`); [`restore`] refuses to replace a database that is open.

mod read;
mod schema;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot, Semaphore};

pub use snapshot::{check_integrity, restore};

use read::{BacklogPage, ReadError};
use schema::backend;
use snapshot::DbLock;
use writer::{Applied, Command, Op, Shared, Writer, WriterConfig};

use crate::{KeyValue, RangeResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream};

/// Capacity of the live event channel; a watcher that lags further is told to re-list.
const WATCH_CHANNEL: usize = 16 * 1024;

/// Events per watch backlog read.
const BACKLOG_PAGE: usize = 1024;

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// How often the background compactor runs; `None` disables it (history grows until
    /// [`Store::compact`] is called). Default: 5 minutes.
    pub compaction_interval: Option<Duration>,
    /// How many of the newest revisions the background compactor keeps readable and
    /// watchable. Default: 10,000 (what a watcher may replay after a disconnect).
    pub compaction_retain: Revision,
    /// Reader connections, i.e. reads that run at the same time. Default: 4.
    pub readers: usize,
    /// Most writes committed in one transaction; bounds the latency one commit adds to the
    /// requests queued behind it. Default: 1,024.
    pub max_batch: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            compaction_interval: Some(Duration::from_secs(5 * 60)),
            compaction_retain: 10_000,
            readers: 4,
            max_batch: 1024,
        }
    }
}

/// Counters of the group commit, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Write transactions committed.
    pub transactions: u64,
    /// Write requests processed, whether their condition held or not.
    pub writes: u64,
}

/// Idle reader connections.
#[derive(Default)]
struct IdleConns(Mutex<Vec<Connection>>);

impl IdleConns {
    /// An idle connection, if one is free.
    fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Return a connection taken with [`IdleConns::take`] (or opened anew).
    fn give_back(&self, conn: Connection) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }
}

/// Reader connections, opened up front and reopened when a read panicked with one.
struct ReaderPool {
    idle: IdleConns,
    permits: Semaphore,
}

struct Inner {
    path: PathBuf,
    readers: ReaderPool,
    /// Idle connections for point reads, which read the file without a map; opened as
    /// needed (there are as many as point reads ever ran at once, i.e. about one per thread).
    point_readers: IdleConns,
    events: broadcast::Sender<std::sync::Arc<WatchEvent>>,
    shared: Arc<Shared>,
    /// Held until the last connection is gone (the writer and any watch still replaying).
    _lock: DbLock,
}

/// The embedded store: one SQLite file, group-committed durable writes, pooled reads.
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// `None` only while dropping: closing the channel stops the writer.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path` and start its writer thread, which also
    /// runs the background compactor configured in `config`. Fails when another store holds
    /// the file or the file is not a skiff store.
    pub fn open(path: &Path, config: SqliteConfig) -> Result<Self> {
        if config.readers == 0 || config.max_batch == 0 || config.compaction_retain < 0 {
            return Err(backend(
                path,
                "open",
                "readers and max_batch must be positive, retain not negative",
            ));
        }
        let lock = DbLock::acquire(path)?;
        let (conn, revision, compacted) = schema::open_writer(path)?;
        let conns = (0..config.readers)
            .map(|_| schema::open_reader(path, true))
            .collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared::default());
        shared.revision.store(revision, Ordering::Release);
        shared.compacted.store(compacted, Ordering::Release);
        let (events, _) = broadcast::channel(WATCH_CHANNEL);
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            conn,
            path.to_path_buf(),
            rx,
            events.clone(),
            shared.clone(),
            WriterConfig {
                max_batch: config.max_batch,
                compaction_interval: config.compaction_interval,
                compaction_retain: config.compaction_retain,
            },
            revision,
            compacted,
        );
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| backend(path, "start writer thread", e))?;
        tracing::info!(path = %path.display(), revision, compacted, "sqlite store open");
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                readers: ReaderPool {
                    idle: IdleConns(Mutex::new(conns)),
                    permits: Semaphore::new(config.readers),
                },
                point_readers: IdleConns::default(),
                events,
                shared,
                _lock: lock,
            }),
            commands: Some(tx),
            writer: Some(handle),
        })
    }

    /// The database file this store serves.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Group-commit counters since open.
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            transactions: self.inner.shared.transactions.load(Ordering::Relaxed),
            writes: self.inner.shared.writes.load(Ordering::Relaxed),
        }
    }

    fn closed(&self) -> StoreError {
        backend(&self.inner.path, "write", "store is closed")
    }

    async fn submit(&self, op: Op) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or_else(|| self.closed())?;
        commands
            .send(Command::Write { op, reply })
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Run `f` on a pooled reader connection on the blocking thread pool.
    async fn read<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ReadError> + Send + 'static,
    {
        read_with(self.inner.clone(), what, f).await
    }
}

/// [`SqliteStore::read`] without the store, for tasks that outlive the call (watch backlogs).
async fn read_with<T, F>(inner: Arc<Inner>, what: &'static str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, ReadError> + Send + 'static,
{
    let _permit = inner
        .readers
        .permits
        .acquire()
        .await
        .map_err(|e| backend(&inner.path, what, e))?;
    let task_inner = inner.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let inner = task_inner;
        let mut conn = match inner.readers.idle.take() {
            Some(c) => c,
            None => schema::open_reader(&inner.path, true).map_err(ReadError::Store)?,
        };
        let result = f(&mut conn);
        inner.readers.idle.give_back(conn);
        result
    })
    .await
    .map_err(|e| backend(&inner.path, what, e))?;
    joined.map_err(|e| match e {
        ReadError::Store(e) => e,
        ReadError::Sql(e) => backend(&inner.path, what, e),
    })
}

/// Read one backlog page of a watch.
async fn backlog_page(inner: Arc<Inner>, prefix: String, after: Revision) -> Result<BacklogPage> {
    read_with(inner, "watch backlog", move |conn| {
        read::backlog(conn, &prefix, after, BACKLOG_PAGE)
    })
    .await
}

/// A watch over a paged backlog: pages are read as the consumer takes events, so replaying a
/// long history holds one page in memory. A page that finds its start compacted away ends the
/// stream with `Compacted`.
fn paged_watch(
    inner: Arc<Inner>,
    prefix: String,
    after: Revision,
    first: BacklogPage,
    rx: broadcast::Receiver<std::sync::Arc<WatchEvent>>,
) -> WatchStream {
    let stream = crate::async_stream_lite(move |tx| async move {
        let mut page = first;
        let mut last = after;
        loop {
            for e in page.events {
                last = e.kv.mod_revision;
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if page.complete {
                // History is replayed up to the page's read revision; everything newer was
                // published after the subscription, so it is waiting in `rx`.
                last = last.max(page.revision);
                break;
            }
            page = match backlog_page(inner.clone(), prefix.clone(), last).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
        }
        // Only the replay needs the database.
        drop(inner);
        crate::forward_live(&prefix, last, rx, &tx).await;
    });
    Box::pin(stream)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its batch and close the database; waiting
        // for it means the file is released when drop returns (a reopen sees everything).
        self.commands.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.revision.load(Ordering::Acquire))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        match self
            .submit(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            Applied::Written(rev) | Applied::Deleted(rev, _) => Ok(rev),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        match self
            .submit(Op::Update {
                key: key.to_string(),
                value,
                expected,
            })
            .await?
        {
            Applied::Written(rev) | Applied::Deleted(rev, _) => Ok(rev),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .submit(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
        {
            Applied::Deleted(rev, kv) => Ok((rev, kv)),
            Applied::Written(_) => Err(backend(
                &self.inner.path,
                "delete",
                "writer answered a delete with a write",
            )),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        // A point read takes microseconds, so it runs right here: handing it to the blocking
        // pool (a thread wake-up each way) cost more than the read (every update's
        // read-modify-write starts with one).
        //
        // Not through a map: in WAL mode SQLite unmaps a connection's whole map whenever
        // another connection wrote since its last read, so under writes each mapped point
        // read paid an munmap (with its TLB shootdown) and fresh page faults for the three or
        // four pages it needed: 4.5% of the server's CPU under 32-way pod creates, more than
        // copying those pages with `pread`. Scans (lists, watch backlogs) keep the map.
        let conn = match self.inner.point_readers.take() {
            Some(c) => c,
            None => schema::open_reader(&self.inner.path, false)?,
        };
        let got = read::get(&conn, key);
        self.inner.point_readers.give_back(conn);
        got.map_err(|e| backend(&self.inner.path, "get", e))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.read("range", move |conn| {
            read::range(conn, &prefix, start_after.as_deref(), limit, revision)
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_string();
        self.read("count", move |conn| Ok(read::count(conn, &prefix)?))
            .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading the backlog: anything committed after the backlog's read
        // snapshot was published after this point, so it is in the live feed (no gap), and
        // live events at or below the snapshot revision are skipped (no duplicate).
        let rx = self.inner.events.subscribe();
        // The first page is read here so that a compacted `after` fails the call itself.
        let first = backlog_page(self.inner.clone(), prefix.to_string(), after).await?;
        Ok(paged_watch(
            self.inner.clone(),
            prefix.to_string(),
            after,
            first,
            rx,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or_else(|| self.closed())?;
        commands
            .send(Command::Compact { revision, reply })
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.compacted.load(Ordering::Acquire))
    }

    async fn snapshot(&self, path: &Path) -> Result<()> {
        let target = path.to_path_buf();
        let db = self.inner.path.clone();
        self.read("snapshot", move |conn| {
            snapshot::vacuum_into(conn, &db, &target).map_err(ReadError::Store)
        })
        .await
    }
}
