//! Layer unpacking into overlayfs-ready snapshot directories.
//!
//! Each layer is unpacked on its own into an empty directory that later serves as one
//! read-only overlayfs lower. OCI whiteouts are therefore translated into overlayfs' own
//! representation instead of being applied: `.wh.NAME` becomes a 0:0 character device and
//! `.wh..wh..opq` becomes the `trusted.overlay.opaque` xattr on its directory.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::manifest::Compression;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result, SysContext};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Detects compression from the first bytes of a blob; archives do not always label it.
pub fn sniff_compression(path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).ctx("open layer", path)?;
    let n = f.read(&mut magic).ctx("read layer", path)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// Unpacks the layer blob at `blob` into the empty directory `dest` and checks that the
/// uncompressed stream hashes to `diff_id`. Returns the uncompressed size.
pub fn unpack_layer(
    blob: &Path,
    compression: Compression,
    diff_id: &Digest,
    dest: &Path,
) -> Result<u64> {
    let file = File::open(blob).ctx("open layer", blob)?;
    let buffered = BufReader::with_capacity(1 << 16, file);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ruzstd::decoding::StreamingDecoder::new(buffered).map_err(
            |e| Error::InvalidImage {
                source_name: blob.display().to_string(),
                reason: format!("bad zstd layer: {e}"),
            },
        )?),
    };
    let mut hashing = HashingReader::new(decompressed);
    apply_tar(&mut hashing, dest).map_err(|e| match e {
        Error::Io { source, .. } if is_corrupt(&source) => Error::InvalidImage {
            source_name: blob.display().to_string(),
            reason: format!("corrupt or truncated layer: {source}"),
        },
        other => other,
    })?;
    let (actual, size) = hashing.finish().map_err(|source| Error::InvalidImage {
        source_name: blob.display().to_string(),
        reason: format!("corrupt or truncated layer: {source}"),
    })?;
    if &actual != diff_id {
        return Err(Error::DigestMismatch {
            what: format!("uncompressed layer {}", blob.display()),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(size)
}

fn is_corrupt(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::Other
    )
}

fn apply_tar(reader: &mut dyn Read, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().ctx("read layer entries", dest)? {
        let mut entry = entry.ctx("read layer entry", dest)?;
        let path = entry.path().ctx("read entry path", dest)?.into_owned();
        let Some(rel) = sanitize(&path) else {
            continue;
        };
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == OPAQUE_MARKER {
            let dir = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&dir).ctx("create dir", &dir)?;
            xattr::set(&dir, "trusted.overlay.opaque", b"y").ctx("mark opaque", &dir)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent).ctx("create dir", &parent)?;
            let target = parent.join(hidden);
            remove_any(&target)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .sys(|| format!("create whiteout {}", target.display()))?;
            continue;
        }
        // A later entry in the same layer may replace an earlier one of another type.
        if entry.header().entry_type().is_dir() {
            let target = dest.join(&rel);
            if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                remove_any(&target)?;
            }
        }
        entry
            .unpack_in(dest)
            .map_err(|e| std::io::Error::new(e.kind(), error_chain(&e)))
            .ctx("unpack entry", dest.join(&rel))?;
    }
    Ok(())
}

/// Renders an error with its sources; the tar crate hides the cause behind its own message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Strips leading `/` and `./`; returns `None` for entries that would escape the layer.
fn sanitize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn remove_any(path: &Path) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).ctx("remove", path),
        Ok(_) => std::fs::remove_file(path).ctx("remove", path),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_escapes() {
        assert_eq!(sanitize(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(sanitize(Path::new("../a")), None);
        assert_eq!(sanitize(Path::new("./")), None);
    }
}
