//! Snapshots, restore, integrity checks and the process lock that guards a database file.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema::{backend, meta, APPLICATION_ID, FORMAT};
use crate::{Result, StoreError};

/// An exclusive advisory lock on `<db>.lock`, held while a store has the database open (and by
/// `restore`), so a second process cannot open the same file and a restore cannot replace a
/// database under a running store. The kernel drops it when the process dies.
pub(super) struct DbLock {
    _file: File,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

impl DbLock {
    /// Take the lock of the database at `db`, failing at once when someone holds it.
    pub(super) fn acquire(db: &Path) -> Result<Self> {
        let path = sibling(db, ".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| backend(&path, "open lock file", e))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs4::TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
                "sqlite {}: database is in use by another store (lock {} is held); stop it first",
                db.display(),
                path.display()
            ))),
            Err(fs4::TryLockError::Error(e)) => Err(backend(&path, "lock", e)),
        }
    }
}

/// Flush a directory entry change (rename, create) to disk.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Copy the database behind `conn` into one self-contained file at `target` (replaced
/// atomically when it exists). `VACUUM INTO` reads in one transaction, so the copy is
/// consistent at one revision without blocking the writer.
pub(super) fn vacuum_into(conn: &Connection, db: &Path, target: &Path) -> Result<()> {
    let tmp = sibling(target, &format!(".tmp-{}", std::process::id()));
    let tmp_str = tmp
        .to_str()
        .ok_or_else(|| backend(target, "snapshot", "path is not valid utf-8"))?;
    let _ = fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        // Readers run `query_only`, which SQLite applies to VACUUM INTO's target as well; lift
        // it for this statement only (the source is still only read).
        conn.pragma_update(None, "query_only", false)
            .map_err(|e| backend(db, "snapshot", e))?;
        let vacuumed = conn.execute("VACUUM INTO ?1", [tmp_str]);
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| backend(db, "snapshot", e))?;
        vacuumed.map_err(|e| backend(db, "vacuum into snapshot", e))?;
        {
            // A rollback-journal file needs no -wal/-shm companions: one file is the snapshot.
            let copy = Connection::open(&tmp).map_err(|e| backend(&tmp, "open snapshot", e))?;
            let _: String = copy
                .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
                .map_err(|e| backend(&tmp, "set snapshot journal mode", e))?;
        }
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| backend(&tmp, "sync snapshot", e))?;
        fs::rename(&tmp, target).map_err(|e| backend(target, "move snapshot into place", e))?;
        sync_dir(target).map_err(|e| backend(target, "sync snapshot directory", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Check that `path` is an intact skiff store: SQLite's `integrity_check` passes and the file
/// carries the skiff application id, a supported format and the bookkeeping rows.
pub fn check_integrity(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(backend(path, "check", "no such file"));
    }
    // Read-write (without create) so a WAL database can set up its shared memory; nothing is
    // written. Fall back to read-only for files we may not write.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY))
        .map_err(|e| backend(path, "open for check", e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| backend(path, "check", e))?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| backend(path, "check: not a database", e))?;
    if app != APPLICATION_ID {
        return Err(backend(
            path,
            "check",
            "not a skiff store (wrong application id)",
        ));
    }
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| backend(path, "integrity check", e))?;
    if problems != ["ok"] {
        return Err(backend(path, "integrity check", problems.join("; ")));
    }
    let format = meta(&conn, "format").map_err(|e| backend(path, "check format", e))?;
    if format != FORMAT {
        return Err(backend(
            path,
            "check",
            format!("unsupported store format {format}"),
        ));
    }
    let revision = meta(&conn, "revision").map_err(|e| backend(path, "check revision", e))?;
    let compacted =
        meta(&conn, "compacted").map_err(|e| backend(path, "check compaction point", e))?;
    let newest: Option<i64> = conn
        .query_row("SELECT MAX(revision) FROM kv", [], |r| r.get(0))
        .map_err(|e| backend(path, "check history", e))?;
    if compacted > revision || newest.is_some_and(|n| n > revision) {
        return Err(backend(
            path,
            "check",
            format!("inconsistent revisions (current {revision}, compacted {compacted}, newest row {newest:?})"),
        ));
    }
    Ok(())
}

/// Replace the database at `db_path` with the snapshot at `snapshot`.
///
/// The snapshot is verified first ([`check_integrity`]); the restore is refused while a store
/// has `db_path` open. The old database and its WAL are replaced, never merged: the restored
/// store resumes at the snapshot's revision and compaction point.
pub fn restore(snapshot: &Path, db_path: &Path) -> Result<()> {
    let wal = sibling(snapshot, "-wal");
    if wal.metadata().is_ok_and(|m| m.len() > 0) {
        return Err(backend(
            snapshot,
            "restore",
            "this is a live database with a write-ahead log, not a snapshot; take one with snapshot()",
        ));
    }
    check_integrity(snapshot)?;
    let _lock = DbLock::acquire(db_path)?;
    let tmp = sibling(db_path, ".restoring");
    fs::copy(snapshot, &tmp).map_err(|e| backend(&tmp, "copy snapshot", e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| backend(&tmp, "sync restored copy", e))?;
    // The old WAL belongs to the old database: replaying it over the snapshot would corrupt it.
    for suffix in ["-wal", "-shm"] {
        let p = sibling(db_path, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(backend(&p, "remove old write-ahead log", e)),
        }
    }
    fs::rename(&tmp, db_path)
        .map_err(|e| backend(db_path, "move restored database into place", e))?;
    sync_dir(db_path).map_err(|e| backend(db_path, "sync database directory", e))?;
    check_integrity(db_path)?;
    tracing::info!(snapshot = %snapshot.display(), db = %db_path.display(), "store restored");
    Ok(())
}
