//! skiff-store: the revisioned key-value store that only the API server talks to.
//!
//! The contract mirrors what the Kubernetes API server needs from etcd (and what kine
//! provides on top of SQL): every write gets a global, strictly increasing revision; an
//! object's `resourceVersion` is the revision of its last write; updates and deletes are
//! conditional on an expected revision; range reads are consistent at one revision and
//! page; watches deliver every change after a revision, in order, or report that the
//! revision has been compacted. A write is acknowledged only once it is durable.
//!
//! Backends: [`memory::MemoryStore`] (tests) and [`sqlite::SqliteStore`] (embedded default).
//! This crate may call no other skiff crate.
#![forbid(unsafe_code)]

pub mod memory;
pub mod sqlite;

use std::pin::Pin;

use futures::Stream;

/// A global store revision. Revision 0 means "nothing written yet".
pub type Revision = i64;

/// One stored key and its latest (or historical) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key, e.g. `/registry/pods/default/web-1`.
    pub key: String,
    /// Serialized object (JSON bytes in practice; the store does not look inside).
    pub value: Vec<u8>,
    /// Revision of the write that created this key (the first write after its last delete).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A key was created.
    Create,
    /// An existing key was overwritten.
    Update,
    /// A key was deleted; the event's `kv` holds the value it had before deletion and
    /// `kv.mod_revision` is the revision of the delete itself.
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Kind of change.
    pub kind: EventKind,
    /// The new value (for Delete: the last value, with `mod_revision` = delete revision).
    pub kv: KeyValue,
    /// The value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

/// Result of a range read.
#[derive(Debug, Clone, Default)]
pub struct RangeResult {
    /// Keys in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// True when more keys matched than `limit` allowed.
    pub more: bool,
    /// The revision at which the read was consistent.
    pub revision: Revision,
}

/// Errors of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Conditional write whose expected revision is not the key's current one.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict {
        /// The key.
        key: String,
        /// Revision the caller expected.
        expected: Revision,
        /// Revision the key has.
        current: Revision,
    },
    /// A read or watch at a revision older than the compaction point.
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted {
        /// Revision asked for.
        requested: Revision,
        /// Compaction point: revisions at or below it are gone.
        compacted: Revision,
    },
    /// A read at a revision newer than the store's current one.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// Revision asked for.
        requested: Revision,
        /// Current store revision.
        current: Revision,
    },
    /// The backend failed (I/O, corruption, closed).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Shorthand result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of watch events, in revision order. Dropping it cancels the watch. An `Err` item
/// ends the stream (e.g. the watcher fell too far behind and must re-list).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// The revisioned KV contract (see the crate docs).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Create `key`; fails with `AlreadyExists` when it exists. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;

    /// Overwrite `key` if its `mod_revision` equals `expected` (`NotFound` / `Conflict`
    /// otherwise). Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Delete `key`, conditionally on its `mod_revision` when `expected` is given. Returns the
    /// delete's revision and the value that was deleted.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Latest value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix` and strictly greater than `start_after` (when given), in key
    /// order, at most `limit` of them (0 = no limit), as of `revision` (None = latest).
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult>;

    /// Number of live keys under `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Every change to keys under `prefix` with a revision strictly greater than `after`.
    /// Fails with `Compacted` when `after` is older than the compaction point.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Drop history at or below `revision` (latest values are always kept).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The compaction point: revisions at or below it may no longer be read or watched.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Write a consistent snapshot of the whole store to one file at `path`.
    async fn snapshot(&self, path: &std::path::Path) -> Result<()>;
}

/// True when `key` lies under `prefix`.
pub fn has_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

/// Build a watch stream from a backlog (events already committed) followed by the live feed,
/// skipping live events already covered by the backlog and events outside `prefix`.
pub(crate) fn watch_stream(
    prefix: String,
    after: Revision,
    backlog: Vec<WatchEvent>,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<WatchEvent>>,
) -> WatchStream {
    // Live events at or below both the backlog's end and `after` were already covered (or
    // were never wanted); taking the max keeps that true when the backlog is empty.
    let last = backlog.last().map(|e| e.kv.mod_revision).unwrap_or(after).max(after);
    let stream = async_stream_lite(move |tx| async move {
        for e in backlog {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        forward_live(&prefix, last, rx, &tx).await;
    });
    Box::pin(stream)
}

/// Forward live events under `prefix` newer than `last` from `rx` to `tx` until either side
/// closes; a watcher that lagged behind the channel gets an error and the end of its stream.
pub(crate) async fn forward_live(
    prefix: &str,
    mut last: Revision,
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<WatchEvent>>,
    tx: &tokio::sync::mpsc::Sender<Result<WatchEvent>>,
) {
    loop {
        // Waiting on `closed()` too ends the task as soon as the consumer drops the
        // stream, instead of at the next matching event (which may never come).
        let received = tokio::select! {
            _ = tx.closed() => return,
            r = rx.recv() => r,
        };
        match received {
            Ok(e) => {
                if e.kv.mod_revision <= last || !e.kv.key.starts_with(prefix) {
                    continue;
                }
                last = e.kv.mod_revision;
                // The feed shares one copy of each event among all watchers; only the ones
                // under this watcher's prefix are copied out.
                if tx.send(Ok(WatchEvent::clone(&e))).await.is_err() {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let _ = tx
                    .send(Err(StoreError::Backend(format!("watcher fell behind by {n} events"))))
                    .await;
                return;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Run `f` as a task feeding a channel and expose the channel as a stream; the task ends when
/// the stream is dropped (its sends fail).
pub(crate) fn async_stream_lite<F, Fut>(f: F) -> impl futures::Stream<Item = Result<WatchEvent>> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchEvent>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
