//! Kubelet's atomic writer: publish a set of files so that readers see either the old set or
//! the new one, never a mix or a half-written file.
//!
//! Layout of a target directory:
//!
//! ```text
//! <target>/..2026_11_28_15_04_05.123456789/   the real files of one version
//! <target>/..data -> ..2026_11_28_15_04_05.123456789
//! <target>/key    -> ..data/key              one symlink per top-level path
//! ```
//!
//! A new version is written to a fresh timestamped directory; then a `..data_tmp` symlink to
//! it is renamed over `..data` (rename is atomic), so every path lookup through `..data` sees
//! one complete version. Only then are user-visible links added or removed and the old
//! version deleted. Containers that see a `subPath` of such a volume are pinned to one
//! version (that is upstream's behaviour too).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the symlink that points at the current version.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// File contents.
    pub data: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
}

/// Why a payload could not be published.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A payload path that would escape the directory or clash with internal names.
    #[error("invalid path: {reason}: {path:?}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { op, path, source }
}

/// Check a payload path as upstream's `validatePath` does: relative, no `..` component, not
/// starting with `..` (those names are the writer's own), bounded lengths.
pub fn validate_path(path: &str) -> Result<(), WriteError> {
    let bad = |reason| Err(WriteError::InvalidPath { path: path.to_string(), reason });
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.starts_with('/') {
        return bad("must be relative path");
    }
    if path.len() > MAX_PATH {
        return bad("must be less than or equal to 4096 characters");
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return bad("must not contain '..'");
        }
        if item.len() > MAX_NAME {
            return bad("filenames must be less than or equal to 255 characters");
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return bad("must not start with '..'");
    }
    Ok(())
}

/// Publishes payloads into one target directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target: PathBuf,
}

impl AtomicWriter {
    /// A writer for `target`, which must exist.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        AtomicWriter { target: target.into() }
    }

    /// Publish `payload` (relative path -> file). Returns whether anything changed on disk;
    /// an identical payload leaves the current version in place, so readers and inotify
    /// watchers see no churn.
    pub fn write(&self, payload: &BTreeMap<String, FileProjection>) -> Result<bool, WriteError> {
        let mut clean = BTreeMap::new();
        for (p, f) in payload {
            let c = super::downward::clean_path(p);
            validate_path(&c)?;
            clean.insert(c, f);
        }
        let data_link = self.target.join(DATA_DIR);
        let old_ts = fs::read_link(&data_link).ok().map(|t| self.target.join(t));
        let old_paths = match &old_ts {
            Some(dir) => walk_relative(dir).map_err(io_err("reading", dir))?,
            None => BTreeSet::new(),
        };
        let mut new_paths = BTreeSet::new();
        for p in clean.keys() {
            let mut acc = String::new();
            for part in p.split('/') {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                new_paths.insert(acc.clone());
            }
        }
        let to_remove: BTreeSet<&String> = old_paths.difference(&new_paths).collect();
        let changed = match &old_ts {
            None => true,
            Some(dir) => !to_remove.is_empty() || clean.iter().any(|(p, f)| file_differs(&dir.join(p), f)),
        };
        if changed {
            let ts = self.new_ts_dir()?;
            for (p, f) in &clean {
                write_file(&ts.join(p), f)?;
            }
            let tmp = self.target.join(DATA_DIR_TMP);
            let _ = fs::remove_file(&tmp);
            let name = ts.file_name().expect("timestamped dir has a name");
            std::os::unix::fs::symlink(name, &tmp).map_err(io_err("linking", &tmp))?;
            fs::rename(&tmp, &data_link).map_err(io_err("renaming", &tmp))?;
        }
        self.create_visible(&clean)?;
        if changed {
            for p in to_remove.iter().filter(|p| !p.contains('/')) {
                let visible = self.target.join(p);
                // Only symlinks are ours to remove at the top level.
                if fs::symlink_metadata(&visible).is_ok_and(|m| m.file_type().is_symlink()) {
                    fs::remove_file(&visible).map_err(io_err("removing", &visible))?;
                }
            }
            if let Some(old) = old_ts {
                fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
            }
        }
        Ok(changed)
    }

    /// `key -> ..data/key` for every top-level name of the payload.
    fn create_visible(&self, payload: &BTreeMap<String, &FileProjection>) -> Result<(), WriteError> {
        let tops: BTreeSet<&str> = payload.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
        for top in tops {
            let visible = self.target.join(top);
            if fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new(DATA_DIR).join(top), &visible).map_err(io_err("linking", &visible))?;
            }
        }
        Ok(())
    }

    /// `..<UTC timestamp>.<nanoseconds>`, unique within the target.
    fn new_ts_dir(&self) -> Result<PathBuf, WriteError> {
        let now = chrono::Utc::now();
        let base = now.format("..%Y_%m_%d_%H_%M_%S").to_string();
        let mut n = now.timestamp_subsec_nanos();
        loop {
            let dir = self.target.join(format!("{base}.{n:09}"));
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => {
                    // The umask may have narrowed the mode.
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &dir))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n = n.wrapping_add(1),
                Err(e) => return Err(io_err("creating", &dir)(e)),
            }
        }
    }
}

fn file_differs(path: &Path, f: &FileProjection) -> bool {
    let same_mode = fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == f.mode & 0o7777);
    !same_mode || fs::read(path).map_or(true, |d| d != f.data)
}

fn write_file(path: &Path, f: &FileProjection) -> Result<(), WriteError> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(io_err("creating", parent))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(f.mode & 0o7777)
        .open(path)
        .map_err(io_err("creating", path))?;
    file.write_all(&f.data).map_err(io_err("writing", path))?;
    // Set exactly the requested bits: the umask applies at creation.
    file.set_permissions(fs::Permissions::from_mode(f.mode & 0o7777)).map_err(io_err("chmod", path))?;
    Ok(())
}

/// Every file and directory below `dir`, as relative paths (symlinks are not followed).
fn walk_relative(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        for entry in fs::read_dir(&abs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), r.clone()));
            }
            out.insert(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn payload(items: &[(&str, &[u8], u32)]) -> BTreeMap<String, FileProjection> {
        items.iter().map(|(p, d, m)| (p.to_string(), FileProjection { data: d.to_vec(), mode: *m })).collect()
    }

    #[test]
    fn layout_modes_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        assert!(w.write(&payload(&[("a", b"1", 0o644), ("sub/b", b"2", 0o600)])).unwrap());
        let t = dir.path();
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(t.join("sub")).unwrap(), Path::new("..data/sub"));
        assert!(fs::read_link(t.join("..data")).unwrap().to_string_lossy().starts_with("..20"));
        assert_eq!(fs::read(t.join("sub/b")).unwrap(), b"2");
        assert_eq!(fs::metadata(t.join("sub/b")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(t.join("a")).unwrap().permissions().mode() & 0o777, 0o644);
        let first = fs::read_link(t.join("..data")).unwrap();

        assert!(!w.write(&payload(&[("a", b"1", 0o644), ("sub/b", b"2", 0o600)])).unwrap(), "same payload, no change");
        assert_eq!(fs::read_link(t.join("..data")).unwrap(), first);
        assert!(w.write(&payload(&[("a", b"1", 0o640), ("sub/b", b"2", 0o600)])).unwrap(), "a mode change is a change");

        assert!(w.write(&payload(&[("c", b"3", 0o644)])).unwrap());
        assert!(fs::symlink_metadata(t.join("a")).is_err(), "removed key's link is gone");
        assert!(fs::symlink_metadata(t.join("sub")).is_err());
        assert_eq!(fs::read(t.join("c")).unwrap(), b"3");
        let entries: Vec<String> = fs::read_dir(t).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(entries.iter().filter(|e| e.starts_with("..20")).count(), 1, "old versions deleted: {entries:?}");
    }

    #[test]
    fn rejects_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        for bad in ["../x", "a/../../x", "/etc/passwd", "..data", "..foo/x", ""] {
            let e = w.write(&payload(&[(bad, b"x", 0o644)]));
            assert!(matches!(e, Err(WriteError::InvalidPath { .. })), "{bad:?} -> {e:?}");
        }
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
        assert!(validate_path("..").is_err());
        assert!(validate_path("a/..b").is_ok(), "a name merely starting with dots deeper down is fine");
    }

    /// Readers racing with the writer only ever see complete versions, and a version seen
    /// through `..data` is consistent across files.
    #[test]
    fn readers_never_see_partial_state() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        let w = AtomicWriter::new(&target);
        let version = |n: u8| {
            let big = vec![b'0' + n; 256 * 1024];
            payload(&[("a", &big, 0o644), ("b", &big, 0o644), ("nested/c", &big, 0o644)])
        };
        w.write(&version(0)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, target) = (stop.clone(), target.clone());
            std::thread::spawn(move || {
                let (mut consistent, mut single) = (0u32, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    // A single file through its user-visible link: complete or absent.
                    if let Ok(d) = fs::read(target.join("nested/c")) {
                        assert_eq!(d.len(), 256 * 1024, "partial file");
                        assert!(d.iter().all(|b| *b == d[0]), "mixed file");
                        single += 1;
                    }
                    // All files of one resolved version agree.
                    if let Ok(ts) = fs::read_link(target.join("..data")) {
                        let ts = target.join(ts);
                        if let (Ok(a), Ok(b), Ok(c)) = (fs::read(ts.join("a")), fs::read(ts.join("b")), fs::read(ts.join("nested/c"))) {
                            assert!(a == b && b == c, "inconsistent version");
                            consistent += 1;
                        }
                    }
                }
                (consistent, single)
            })
        };
        for i in 1..=60u8 {
            w.write(&version(i % 10)).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let (consistent, single) = reader.join().unwrap();
        assert!(consistent > 0 && single > 0, "reader made progress: {consistent} {single}");
    }
}
