//! Files the agent must never leave half-written (credentials, CNI attachments): written to a
//! temporary sibling, synced, then renamed over the target, so after a crash the file holds
//! either its old or its new contents.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path`: hidden (`.<name>.tmp`), so directory scans that look for
/// a suffix such as `.json` skip it.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` with `contents` (created with `mode`). The error names the file that failed.
pub(crate) fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = temporary(path);
    let _ = std::fs::remove_file(&tmp);
    let on_tmp = |e| (tmp.clone(), e);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(on_tmp)?;
    f.write_all(contents).map_err(on_tmp)?;
    f.sync_all().map_err(on_tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| (path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        super::write(&path, b"one", 0o600).unwrap();
        super::write(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }
}
