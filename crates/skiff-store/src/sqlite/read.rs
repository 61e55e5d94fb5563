//! Read queries of the SQLite backend. Each runs inside one read transaction on a reader
//! connection, so everything it returns is consistent at one revision.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::{key_from, meta, prefix_end};
use crate::{EventKind, KeyValue, RangeResult, Revision, StoreError, WatchEvent};

/// Why a read failed: a contract error for the caller, or SQLite itself.
pub(super) enum ReadError {
    /// Contract error (`Compacted`, `FutureRevision`) returned as is.
    Store(StoreError),
    /// SQLite failed; the caller adds the path and operation.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

type ReadResult<T> = Result<T, ReadError>;

fn kv_from(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_from(row.get(0)?)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// Latest live value of `key`.
pub(super) fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    let mut stmt = conn.prepare_cached(
        "SELECT value, create_revision, revision, deleted FROM kv
         WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
    )?;
    let row = stmt
        .query_row([key.as_bytes()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .optional()?;
    Ok(
        row.and_then(|(value, create_revision, mod_revision, deleted)| {
            (!deleted).then(|| KeyValue {
                key: key.to_string(),
                value,
                create_revision,
                mod_revision,
            })
        }),
    )
}

// The versions of the keys in a range, from the `(key, revision, deleted)` index alone (no
// table reads), in key then revision order; the last version of each key at or below the read
// revision is the one a read sees. Why not one query that keeps "rows whose revision is their
// key's newest" with a correlated `MAX(revision)` subquery: that costs an index seek for every
// version walked, and `skiff-bench` profiles had it as the largest single cost of a 500-pod
// page. Walking in key order means no sort and the walk stops once the page is full, so a
// page costs what it returns (plus history not yet compacted), not what remains of the prefix.
// Two variants keep the lower bound a plain index range.
const VERSIONS_FROM_PREFIX: &str = "
SELECT key, revision, deleted FROM kv
WHERE key >= ?1 AND key < ?2 AND revision <= ?3
ORDER BY key, revision";

const VERSIONS_AFTER_KEY: &str = "
SELECT key, revision, deleted FROM kv
WHERE key > ?1 AND key < ?2 AND revision <= ?3
ORDER BY key, revision";

/// The value of the row written at `revision` (a rowid seek).
const ROW_AT: &str = "SELECT value, create_revision FROM kv WHERE revision = ?1";

/// Keys under `prefix` after `start_after`, as of `revision` (None = latest).
pub(super) fn range(
    conn: &mut Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<Revision>,
) -> ReadResult<RangeResult> {
    let tx = conn.transaction()?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    let at = revision.unwrap_or(current);
    if at > current {
        return Err(ReadError::Store(StoreError::FutureRevision {
            requested: at,
            current,
        }));
    }
    if at < compacted {
        return Err(ReadError::Store(StoreError::Compacted {
            requested: at,
            compacted,
        }));
    }
    let end = prefix_end(prefix);
    let (sql, low) = match start_after {
        Some(after) if after >= prefix => (VERSIONS_AFTER_KEY, after.as_bytes()),
        _ => (VERSIONS_FROM_PREFIX, prefix.as_bytes()),
    };
    // One key past the limit tells whether there is more.
    let wanted = if limit == 0 { usize::MAX } else { limit + 1 };
    let mut kvs = Vec::new();
    {
        let mut versions = tx.prepare_cached(sql)?;
        let mut row_at = tx.prepare_cached(ROW_AT)?;
        let mut rows = versions.query(params![low, end, at])?;
        // The newest version seen so far of the key being walked: (key, revision, deleted).
        let mut newest: Option<(Vec<u8>, Revision, bool)> = None;
        while kvs.len() < wanted {
            let row = rows.next()?;
            let version = match row {
                Some(row) => {
                    let key = row.get_ref(0)?.as_blob().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
                    })?;
                    Some((key, row.get::<_, Revision>(1)?, row.get::<_, bool>(2)?))
                }
                None => None,
            };
            // A later version of the key being walked replaces the one seen.
            if let (Some((k, r, d)), Some((key, rev, deleted))) = (&mut newest, version) {
                if k.as_slice() == key {
                    (*r, *d) = (rev, deleted);
                    continue;
                }
            }
            // Another key (or the end): the walked key's newest version is final.
            if let Some((key, rev, false)) = newest.take() {
                let (value, create_revision) =
                    row_at.query_row([rev], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))?;
                kvs.push(KeyValue { key: key_from(key)?, value, create_revision, mod_revision: rev });
            }
            match version {
                Some((key, rev, deleted)) => newest = Some((key.to_vec(), rev, deleted)),
                None => break,
            }
        }
    }
    let more = limit > 0 && kvs.len() > limit;
    kvs.truncate(if limit == 0 { kvs.len() } else { limit });
    tx.finish()?;
    Ok(RangeResult {
        kvs,
        more,
        revision: at,
    })
}

/// Number of live keys under `prefix`, answered from the covering index alone.
pub(super) fn count(conn: &Connection, prefix: &str) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM (SELECT MAX(revision), deleted AS d FROM kv
         WHERE key >= ?1 AND key < ?2 GROUP BY key) WHERE d = 0",
    )?;
    let n: i64 = stmt.query_row(params![prefix.as_bytes(), prefix_end(prefix)], |r| r.get(0))?;
    Ok(n as u64)
}

/// One page of a watch backlog.
pub(super) struct BacklogPage {
    /// Committed changes under the prefix, in revision order.
    pub(super) events: Vec<WatchEvent>,
    /// The store revision the page was read at.
    pub(super) revision: Revision,
    /// True when the page reaches `revision`: nothing more to replay from history.
    pub(super) complete: bool,
}

/// At most `limit` committed changes under `prefix` after `after`.
pub(super) fn backlog(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> ReadResult<BacklogPage> {
    let tx = conn.transaction()?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    if after < compacted {
        return Err(ReadError::Store(StoreError::Compacted {
            requested: after,
            compacted,
        }));
    }
    let events = {
        // `+e.key` keeps the planner on the revision order (a watch usually resumes from a
        // recent revision) instead of scanning the whole prefix and sorting it.
        let mut stmt = tx.prepare_cached(
            "SELECT e.key, e.value, e.create_revision, e.revision, e.deleted,
                    p.value, p.create_revision, p.revision
             FROM kv AS e LEFT JOIN kv AS p ON p.revision = e.prev_revision AND e.prev_revision > 0
             WHERE e.revision > ?1 AND +e.key >= ?2 AND +e.key < ?3
             ORDER BY e.revision
             LIMIT ?4",
        )?;
        let args = params![after, prefix.as_bytes(), prefix_end(prefix), limit as i64];
        let rows = stmt.query_map(args, |r| {
            let kv = kv_from(r)?;
            let deleted: bool = r.get(4)?;
            let prev_value: Option<Vec<u8>> = r.get(5)?;
            let prev = match prev_value {
                Some(value) => Some(KeyValue {
                    key: kv.key.clone(),
                    value,
                    create_revision: r.get(6)?,
                    mod_revision: r.get(7)?,
                }),
                None => None,
            };
            let kind = match (deleted, &prev) {
                (true, _) => EventKind::Delete,
                (false, Some(_)) => EventKind::Update,
                (false, None) => EventKind::Create,
            };
            Ok(WatchEvent { kind, kv, prev })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.finish()?;
    let complete = events.len() < limit;
    Ok(BacklogPage {
        events,
        revision: current,
        complete,
    })
}
