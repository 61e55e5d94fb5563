//! The single writer thread: group commit and compaction.
//!
//! Every write request goes through one channel to one thread that owns the only writing
//! connection. The thread takes whatever is queued (up to a batch limit), applies each request
//! in turn inside one transaction — each gets its own revision and its own conditional check,
//! and a failed check only fails that request — then commits once. With `synchronous = FULL`
//! the commit is one fsync of the WAL however many writes it carries; only after it returns are
//! events published and callers answered. Under load, requests that arrive while a commit is
//! syncing form the next batch, so throughput grows with concurrency instead of being capped
//! at one fsync per write.
//!
//! Compaction runs on the same thread, in bounded chunks interleaved with write batches, so it
//! never holds the write lock for long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::schema::backend;
use crate::{EventKind, KeyValue, Result, Revision, StoreError, WatchEvent};

/// Revisions examined per compaction transaction; bounds how long one chunk holds the writer.
const COMPACT_CHUNK: Revision = 5_000;

/// A write as asked by a caller.
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What a successful write returns to its caller.
pub(super) enum Applied {
    Written(Revision),
    Deleted(Revision, KeyValue),
}

/// A message to the writer thread.
pub(super) enum Command {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<Applied>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// State the writer shares with readers of cheap figures.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) revision: AtomicI64,
    pub(super) compacted: AtomicI64,
    pub(super) transactions: AtomicU64,
    pub(super) writes: AtomicU64,
}

/// Writer settings taken from the store config.
pub(super) struct WriterConfig {
    pub(super) max_batch: usize,
    pub(super) compaction_interval: Option<Duration>,
    pub(super) compaction_retain: Revision,
}

struct CompactJob {
    point: Revision,
    /// Rows with revisions at or below this were already examined against `point`.
    done: Revision,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) rx: Receiver<Command>,
    pub(super) events: broadcast::Sender<std::sync::Arc<WatchEvent>>,
    pub(super) shared: Arc<Shared>,
    pub(super) config: WriterConfig,
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
    job: Option<CompactJob>,
}

type Reply = oneshot::Sender<Result<Applied>>;

/// Live row of a key as seen by a conditional check.
struct Current {
    revision: Revision,
    create_revision: Revision,
    value: Vec<u8>,
}

impl Writer {
    /// A writer over an opened connection at the given stored state.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: Connection,
        path: PathBuf,
        rx: Receiver<Command>,
        events: broadcast::Sender<std::sync::Arc<WatchEvent>>,
        shared: Arc<Shared>,
        config: WriterConfig,
        revision: Revision,
        compacted: Revision,
    ) -> Self {
        Self {
            conn,
            path,
            rx,
            events,
            shared,
            config,
            revision,
            compacted,
            job: None,
        }
    }

    /// Serve commands until every sender is gone.
    pub(super) fn run(mut self) {
        let mut next_tick = self.config.compaction_interval.map(|i| Instant::now() + i);
        loop {
            // With compaction pending, only peek so the next chunk runs when writes are idle.
            let first = if self.job.is_some() {
                match self.rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else if let Some(tick) = next_tick {
                match self
                    .rx
                    .recv_timeout(tick.saturating_duration_since(Instant::now()))
                {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            };

            let mut writes: Vec<(Op, Reply)> = Vec::new();
            let mut compacts = Vec::new();
            let mut next = first;
            while let Some(c) = next.take() {
                match c {
                    Command::Write { op, reply } => writes.push((op, reply)),
                    Command::Compact { revision, reply } => compacts.push((revision, reply)),
                }
                // Everything already queued joins this commit.
                if writes.len() + compacts.len() < self.config.max_batch {
                    next = self.rx.try_recv().ok();
                }
            }
            if !writes.is_empty() {
                self.commit_batch(writes);
            }
            for (revision, reply) in compacts {
                self.request_compaction(revision, Some(reply));
            }
            if let (Some(tick), Some(interval)) = (next_tick, self.config.compaction_interval) {
                if Instant::now() >= tick {
                    next_tick = Some(Instant::now() + interval);
                    let target = self.revision - self.config.compaction_retain;
                    if target > self.compacted {
                        tracing::debug!(target, "scheduled compaction");
                        self.request_compaction(target, None);
                    }
                }
            }
            if self.job.is_some() {
                self.compact_chunk();
            }
        }
        tracing::debug!(path = %self.path.display(), "store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<(Op, Reply)>) {
        let start = self.revision;
        let result = apply_batch(&mut self.conn, batch.iter().map(|(op, _)| op), start);
        match result {
            Ok((outcomes, revision)) => {
                if revision != self.revision {
                    self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                }
                self.revision = revision;
                self.shared.revision.store(revision, Ordering::Release);
                self.shared
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                // Committed and synced: now the world may see it, events first so a caller that
                // watches right after its ack never finds its own event missing.
                let mut answers = Vec::with_capacity(batch.len());
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    match outcome {
                        Ok((applied, event)) => {
                            let _ = self.events.send(std::sync::Arc::new(event));
                            answers.push((reply, Ok(applied)));
                        }
                        Err(e) => answers.push((reply, Err(e))),
                    }
                }
                for (reply, answer) in answers {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "write batch failed");
                let msg = format!("sqlite {}: commit write batch: {e}", self.path.display());
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Backend(msg.clone())));
                }
            }
        }
    }

    fn request_compaction(
        &mut self,
        revision: Revision,
        reply: Option<oneshot::Sender<Result<()>>>,
    ) {
        let revision = revision.min(self.revision);
        if revision > self.compacted {
            // Record the point first: from this commit on, reads below it fail cleanly instead
            // of seeing half-removed history.
            let stored = self.conn.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [revision],
            );
            if let Err(e) = stored {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(backend(&self.path, "record compaction point", e)));
                }
                return;
            }
            self.compacted = revision;
            self.shared.compacted.store(revision, Ordering::Release);
            // Rows examined against an older point may be superseded under the new one.
            let waiters = self.job.take().map(|j| j.waiters).unwrap_or_default();
            self.job = Some(CompactJob {
                point: revision,
                done: 0,
                waiters,
            });
        }
        match (reply, &mut self.job) {
            (Some(reply), Some(job)) => job.waiters.push(reply),
            (Some(reply), None) => {
                let _ = reply.send(Ok(()));
            }
            (None, _) => {}
        }
    }

    fn compact_chunk(&mut self) {
        let Some(job) = self.job.as_mut() else { return };
        if job.done == 0 {
            // Skip the empty revision space below the oldest surviving row.
            match self
                .conn
                .query_row("SELECT MIN(revision) FROM kv", [], |r| {
                    r.get::<_, Option<i64>>(0)
                }) {
                Ok(min) => job.done = min.unwrap_or(job.point + 1).saturating_sub(1).max(0),
                Err(e) => return self.fail_compaction(e),
            }
        }
        let hi = (job.done + COMPACT_CHUNK).min(job.point);
        // A row at or below the point goes when it is a tombstone (the key is absent from the
        // point on, and no later event refers back to it) or when a newer row of the same key is
        // also at or below the point (reads at the point see that one instead). What survives is
        // each key's newest row at or below the point: range at the point and `prev` of later
        // events still resolve.
        let deleted = self.conn.execute(
            "DELETE FROM kv WHERE revision > ?1 AND revision <= ?2 AND (deleted = 1 OR EXISTS (
                 SELECT 1 FROM kv AS newer WHERE newer.key = kv.key
                 AND newer.revision > kv.revision AND newer.revision <= ?3))",
            params![job.done, hi, job.point],
        );
        match deleted {
            Ok(n) => {
                tracing::trace!(from = job.done, to = hi, removed = n, "compaction chunk");
                job.done = hi;
                if hi >= job.point {
                    let job = self.job.take().expect("job is present");
                    tracing::debug!(point = job.point, "compaction finished");
                    for w in job.waiters {
                        let _ = w.send(Ok(()));
                    }
                }
            }
            Err(e) => self.fail_compaction(e),
        }
    }

    fn fail_compaction(&mut self, e: rusqlite::Error) {
        tracing::error!(path = %self.path.display(), error = %e, "compaction failed");
        if let Some(job) = self.job.take() {
            for w in job.waiters {
                let _ = w.send(Err(backend(&self.path, "compact", &e)));
            }
        }
    }
}

type Outcome = Result<(Applied, WatchEvent)>;

/// Apply `ops` in one transaction starting after revision `start`. A failed condition only
/// fails its own op; an SQLite error aborts (rolls back) the whole batch.
fn apply_batch<'a>(
    conn: &mut Connection,
    ops: impl Iterator<Item = &'a Op>,
    start: Revision,
) -> rusqlite::Result<(Vec<Outcome>, Revision)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut revision = start;
    let mut outcomes = Vec::new();
    for op in ops {
        outcomes.push(apply(&tx, op, &mut revision)?);
    }
    if revision != start {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'revision'",
            [revision],
        )?;
        tx.commit()?;
    } else {
        // Every condition failed: nothing to make durable.
        tx.rollback()?;
    }
    Ok((outcomes, revision))
}

fn live(tx: &Connection, key: &str) -> rusqlite::Result<Option<Current>> {
    let mut stmt = tx.prepare_cached(
        "SELECT revision, create_revision, value, deleted FROM kv
         WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
    )?;
    let row = stmt
        .query_row([key.as_bytes()], |r| {
            Ok((
                Current {
                    revision: r.get(0)?,
                    create_revision: r.get(1)?,
                    value: r.get(2)?,
                },
                r.get::<_, bool>(3)?,
            ))
        })
        .optional()?;
    Ok(row.and_then(|(c, deleted)| (!deleted).then_some(c)))
}

fn exists(tx: &Connection, key: &str) -> rusqlite::Result<bool> {
    // Answered from the index alone: creates never read the old value.
    let mut stmt =
        tx.prepare_cached("SELECT deleted FROM kv WHERE key = ?1 ORDER BY revision DESC LIMIT 1")?;
    let deleted: Option<bool> = stmt.query_row([key.as_bytes()], |r| r.get(0)).optional()?;
    Ok(deleted == Some(false))
}

fn insert(
    tx: &Connection,
    revision: Revision,
    key: &str,
    value: &[u8],
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO kv (revision, key, value, create_revision, prev_revision, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![
        revision,
        key.as_bytes(),
        value,
        create_revision,
        prev_revision,
        deleted
    ])?;
    Ok(())
}

fn apply(tx: &Connection, op: &Op, revision: &mut Revision) -> rusqlite::Result<Outcome> {
    let kv_of = |key: &str, c: Current| KeyValue {
        key: key.to_string(),
        value: c.value,
        create_revision: c.create_revision,
        mod_revision: c.revision,
    };
    match op {
        Op::Create { key, value } => {
            if exists(tx, key)? {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            let rev = *revision + 1;
            insert(tx, rev, key, value, rev, 0, false)?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            Ok(Ok((
                Applied::Written(rev),
                WatchEvent {
                    kind: EventKind::Create,
                    kv,
                    prev: None,
                },
            )))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some(cur) = live(tx, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if cur.revision != *expected {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: cur.revision,
                }));
            }
            let rev = *revision + 1;
            insert(
                tx,
                rev,
                key,
                value,
                cur.create_revision,
                cur.revision,
                false,
            )?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: cur.create_revision,
                mod_revision: rev,
            };
            let prev = kv_of(key, cur);
            Ok(Ok((
                Applied::Written(rev),
                WatchEvent {
                    kind: EventKind::Update,
                    kv,
                    prev: Some(prev),
                },
            )))
        }
        Op::Delete { key, expected } => {
            let Some(cur) = live(tx, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if let Some(expected) = expected {
                if cur.revision != *expected {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: cur.revision,
                    }));
                }
            }
            let rev = *revision + 1;
            insert(
                tx,
                rev,
                key,
                &cur.value,
                cur.create_revision,
                cur.revision,
                true,
            )?;
            *revision = rev;
            let prev = kv_of(key, cur);
            let kv = KeyValue {
                mod_revision: rev,
                ..prev.clone()
            };
            Ok(Ok((
                Applied::Deleted(rev, prev.clone()),
                WatchEvent {
                    kind: EventKind::Delete,
                    kv,
                    prev: Some(prev),
                },
            )))
        }
    }
}
