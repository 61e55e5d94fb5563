//! Schema, connection settings and the `meta` table of the SQLite backend.
//!
//! The `kv` table is an MVCC log: one row per revision. A write inserts a row; nothing is
//! updated in place. A delete inserts a tombstone (`deleted = 1`) that carries the value and
//! `create_revision` the key had, so a watch backlog can rebuild the delete event from one row.
//! `prev_revision` points at the row this write replaced (0 when there was none), which gives
//! watch events their `prev` value.
//!
//! Keys are stored as BLOBs so that comparisons are plain byte comparisons: a prefix range is
//! then `key >= prefix AND key < prefix || x'ff'` (0xff never occurs in UTF-8), served by the
//! `(key, revision, deleted)` index, which also answers "latest row of a key" with one seek.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Revision, StoreError};

/// `PRAGMA application_id` of a skiff store ("skif"), so foreign SQLite files are refused.
pub(super) const APPLICATION_ID: i32 = 0x736b_6966;

/// On-disk format version kept in `meta`; bump with a migration when the schema changes.
pub(super) const FORMAT: i64 = 1;

/// How long a connection waits for SQLite's own locks (checkpoints, snapshots) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const DDL: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    revision INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_revision ON kv (key, revision, deleted);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// The writer's page cache as `PRAGMA cache_size` takes it: negative means KiB, so 512 KiB.
///
/// Why not SQLite's default of 2 MB: it is held for the server's whole life, and a heap
/// profile of an idle server holding 10,000 pods had it as the largest single allocation site
/// left (2.0 of 23 MB live). The writer appends to the `kv` table and inserts into its key
/// index; what it reuses between commits is the two B-trees' interior pages (a few dozen)
/// and the pages last appended to, which 512 KiB (128 pages) holds; the leaves it misses are
/// in the kernel's page cache. Figures: docs/benchmarks.md (session 19).
const WRITER_CACHE_SIZE: i64 = -512;

/// A backend error with the database path and the operation that failed.
pub(super) fn backend(path: &Path, what: &str, err: impl Display) -> StoreError {
    StoreError::Backend(format!("sqlite {}: {what}: {err}", path.display()))
}

/// Exclusive upper bound of the keys under `prefix` (see the module docs).
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xff);
    end
}

/// Decode a key column; keys are written from `&str`, so a failure means corruption.
pub(super) fn key_from(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Read one `meta` value.
pub(super) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<Revision> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
}

fn common_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL makes every WAL commit fsync before it returns: the acknowledgement contract.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Open the writer connection: create or validate the schema, switch to WAL, and return the
/// connection with the stored revision and compaction point.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, Revision, Revision), StoreError> {
    let conn = Connection::open(path).map_err(|e| backend(path, "open", e))?;
    let setup = || -> rusqlite::Result<Result<(Revision, Revision), String>> {
        common_pragmas(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(Err(format!(
                "cannot switch to wal journal mode (got {mode})"
            )));
        }
        conn.pragma_update(None, "cache_size", WRITER_CACHE_SIZE)?;
        // Checkpoints reuse the WAL from its start but never shrink it; cap what a burst of
        // writes leaves on disk.
        let _: i64 = conn.query_row("PRAGMA journal_size_limit = 67108864", [], |r| r.get(0))?;
        let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if app != APPLICATION_ID && !(app == 0 && tables == 0) {
            return Ok(Err(
                "not a skiff store (foreign application id or tables)".into()
            ));
        }
        let tx = conn.unchecked_transaction()?;
        if app == 0 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        tx.execute_batch(DDL)?;
        let format: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE name = 'format'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match format {
            None => {
                tx.execute(
                    "INSERT INTO meta (name, value) VALUES ('format', ?1)",
                    [FORMAT],
                )?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Ok(Err(format!(
                    "unsupported store format {other} (this build reads {FORMAT})"
                )))
            }
        }
        let revision = meta(&tx, "revision")?;
        let compacted = meta(&tx, "compacted")?;
        tx.commit()?;
        Ok(Ok((revision, compacted)))
    };
    match setup() {
        Ok(Ok((revision, compacted))) => Ok((conn, revision, compacted)),
        Ok(Err(why)) => Err(backend(path, "open", why)),
        Err(e) => Err(backend(path, "initialise schema", e)),
    }
}

/// How much of the database file a reader maps instead of reading pages with `pread`.
///
/// Why: a reader's page cache is emptied whenever another connection has written since its
/// last read, which under any write load is every read, so a list of 500 pods copied ~2 MB
/// out of the kernel's page cache each time. Read through the map, pages are not copied.
/// `skiff-bench --quick` (docs/benchmarks.md): mixed-load p99 50-53 ms -> 42-44 ms, 9% more
/// calls served. The mapped pages count in the server's RSS as shared file pages (the page
/// cache's own); the trim hands them back when idle.
pub(super) const READER_MMAP_BYTES: i64 = 1 << 30;

/// Open a reader connection; `query_only` guards against a read path ever writing.
/// `mapped`: read the file through a map of [`READER_MMAP_BYTES`] (for scans; see
/// `SqliteStore::get` for why point reads do not).
pub(super) fn open_reader(path: &Path, mapped: bool) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| backend(path, "open reader", e))?;
    let map = if mapped { READER_MMAP_BYTES } else { 0 };
    common_pragmas(&conn)
        .and_then(|_| conn.pragma_update(None, "query_only", true))
        .and_then(|_| conn.query_row(&format!("PRAGMA mmap_size = {map}"), [], |_| Ok(())))
        .map_err(|e| backend(path, "configure reader", e))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_map_the_database_and_stay_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (_writer, _, _) = open_writer(&path).unwrap();
        for (mapped, expected) in [(true, READER_MMAP_BYTES), (false, 0)] {
            let reader = open_reader(&path, mapped).unwrap();
            let size: i64 = reader.query_row("PRAGMA mmap_size", [], |r| r.get(0)).unwrap();
            assert_eq!(size, expected);
            assert!(reader.execute("DELETE FROM kv", []).is_err(), "a reader refuses writes");
        }
    }
}
