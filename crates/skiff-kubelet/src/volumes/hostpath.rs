//! `hostPath` volumes (and hostPath-backed persistent volumes): check or create the host
//! path according to its `type`, as upstream's `checkType` does. The volume is the host path
//! itself; nothing is created under the pod's directory and nothing is ever deleted.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::error::{io_err, SetUpError};

/// Check `path` against hostPath type `kind` (`""`, `DirectoryOrCreate`, `Directory`,
/// `FileOrCreate`, `File`, `Socket`, `CharDevice`, `BlockDevice`), creating it for the
/// `...OrCreate` types.
pub fn check(path: &str, kind: &str) -> Result<(), SetUpError> {
    let p = Path::new(path);
    // Follow symlinks: a link to a directory satisfies `Directory`, as os.Stat does upstream.
    let meta = fs::metadata(p).ok();
    let fail = |what| Err(SetUpError::HostPathType { path: path.to_string(), what });
    match kind {
        // No check upstream; the container runtime then creates a missing source directory
        // (containerd and docker do), which the bind mount here needs as well.
        "" => {
            if meta.is_none() && fs::symlink_metadata(p).is_err() {
                mkdir(p)?;
            }
            Ok(())
        }
        "DirectoryOrCreate" if meta.is_none() => mkdir(p),
        "DirectoryOrCreate" | "Directory" => match meta {
            Some(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "FileOrCreate" if meta.is_none() => {
            if let Some(parent) = p.parent() {
                mkdir(parent)?;
            }
            fs::OpenOptions::new().create(true).append(true).mode(0o644).open(p).map_err(io_err("creating", p))?;
            Ok(())
        }
        "FileOrCreate" | "File" => match meta {
            Some(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match meta {
            Some(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match meta {
            Some(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match meta {
            Some(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(SetUpError::InvalidHostPathType(other.to_string())),
    }
}

fn mkdir(p: &Path) -> Result<(), SetUpError> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(p).map_err(io_err("creating", p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn every_type() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let missing = d.join("missing");
        assert_eq!(
            check(&s(&missing), "Directory").unwrap_err().to_string(),
            format!("hostPath type check failed: {} is not a directory", missing.display())
        );
        assert!(!missing.exists(), "Directory never creates");
        check(&s(&d.join("made/deep")), "DirectoryOrCreate").unwrap();
        assert!(d.join("made/deep").is_dir());
        assert_eq!(fs::metadata(d.join("made/deep")).unwrap().permissions().mode() & 0o700, 0o700);
        check(&s(&d.join("made/deep")), "Directory").unwrap();
        check(&s(&d.join("plain")), "").unwrap();
        assert!(d.join("plain").is_dir(), "untyped missing path becomes a directory");

        check(&s(&d.join("f/file.txt")), "FileOrCreate").unwrap();
        assert!(d.join("f/file.txt").is_file());
        check(&s(&d.join("f/file.txt")), "File").unwrap();
        assert!(check(&s(&d.join("f")), "File").is_err());
        assert!(check(&s(&d.join("f/file.txt")), "Directory").is_err());
        assert!(check(&s(&d.join("f/file.txt")), "DirectoryOrCreate").is_err(), "exists but is a file");
        assert!(check(&s(&d.join("nope")), "File").is_err());

        let sock = d.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check(&s(&sock), "Socket").unwrap();
        assert_eq!(
            check(&s(&d.join("f/file.txt")), "Socket").unwrap_err().to_string(),
            format!("hostPath type check failed: {}/f/file.txt is not a socket file", d.display())
        );
        check("/dev/null", "CharDevice").unwrap();
        assert!(check("/dev/null", "BlockDevice").is_err());
        assert!(check(&s(&sock), "CharDevice").is_err());
        assert_eq!(check("/tmp", "Weird").unwrap_err().to_string(), "Weird is an invalid volume type");
    }
}
