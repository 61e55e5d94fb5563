//! `subPath` and `subPathExpr`: mount a path inside a volume instead of the whole volume.
//!
//! The path must stay inside the volume: `..` and absolute paths are refused outright, and
//! the path is resolved component by component so that a symlink a container planted in a
//! shared volume (`data -> /etc`) cannot make the node agent bind-mount a host directory.
//! Missing directories are created with the volume root's mode, as kubelet does.
//!
//! Known gap (kubelet closes it by mounting through `/proc/self/fd`): a container that swaps
//! a checked directory for a symlink between this check and the container's mount could
//! still redirect the bind mount.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a subPath cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// `subPath: /etc`.
    #[error("error SubPath `{0}` must not be an absolute path")]
    Absolute(String),
    /// `subPath: ../x`.
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    Backsteps(String),
    /// A `$(VAR)` in `subPathExpr` the container's environment does not define (or defines
    /// empty).
    #[error("missing value for {0}")]
    MissingVars(String),
    /// The path leaves the volume through a symlink.
    #[error("subpath {sub:?} not within volume path {volume:?}")]
    Escape {
        /// The subPath.
        sub: String,
        /// The volume root.
        volume: PathBuf,
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

/// Refuse absolute paths and `..` components.
pub fn validate(sub: &str) -> Result<(), SubPathError> {
    if sub.starts_with('/') {
        return Err(SubPathError::Absolute(sub.to_string()));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(SubPathError::Backsteps(sub.to_string()));
    }
    Ok(())
}

/// Expand `$(VAR)` in a `subPathExpr` from the container's environment; unlike `env`
/// values, an undefined or empty variable is an error (upstream's rule).
pub fn expand_expr(expr: &str, env: &HashMap<String, String>) -> Result<String, SubPathError> {
    let mut missing = std::collections::BTreeSet::new();
    let out = crate::env::expand(expr, |k| match env.get(k) {
        Some(v) if !v.is_empty() => Some(v.clone()),
        _ => {
            missing.insert(k.to_string());
            Some(String::new())
        }
    });
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(SubPathError::MissingVars(missing.into_iter().collect::<Vec<_>>().join(", ")))
    }
}

/// The host path of `sub` inside the volume at `volume_root`, creating missing directories.
pub fn resolve(volume_root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    validate(sub)?;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| SubPathError::Io { op, path, source }
    };
    let root = fs::canonicalize(volume_root).map_err(io("resolving", volume_root))?;
    let mode = fs::metadata(&root).map_err(io("stat", &root))?.permissions().mode() & 0o7777;
    let escape = || SubPathError::Escape { sub: sub.to_string(), volume: root.clone() };
    let mut cur = root.clone();
    for comp in Path::new(sub).components() {
        let Component::Normal(name) = comp else { continue };
        let next = cur.join(name);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::canonicalize(&next).map_err(|e| match e.kind() {
                    // A dangling link: following it would create something outside our control.
                    io::ErrorKind::NotFound => escape(),
                    _ => SubPathError::Io { op: "resolving", path: next.clone(), source: e },
                })?;
                if !target.starts_with(&root) {
                    return Err(escape());
                }
                cur = target;
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(mode).create(&next).map_err(io("creating", &next))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(mode)).map_err(io("chmod", &next))?;
                cur = next;
            }
            Err(e) => return Err(io("stat", &next)(e)),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        fs::create_dir(&vol).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        assert_eq!(resolve(&vol, "../outside").unwrap_err().to_string(), "unable to provision SubPath `../outside`: must not contain '..'");
        assert!(matches!(resolve(&vol, "a/../../x"), Err(SubPathError::Backsteps(_))));
        assert_eq!(resolve(&vol, "/etc").unwrap_err().to_string(), "error SubPath `/etc` must not be an absolute path");
        std::os::unix::fs::symlink(&outside, vol.join("evil")).unwrap();
        assert!(matches!(resolve(&vol, "evil"), Err(SubPathError::Escape { .. })));
        assert!(matches!(resolve(&vol, "evil/deeper"), Err(SubPathError::Escape { .. })));
        assert!(!outside.join("deeper").exists(), "nothing created outside");
        std::os::unix::fs::symlink("/nonexistent/x", vol.join("dangling")).unwrap();
        assert!(matches!(resolve(&vol, "dangling"), Err(SubPathError::Escape { .. })));
    }

    #[test]
    fn creates_and_follows_inner_links() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o750)).unwrap();
        let p = resolve(&vol, "a/./b").unwrap();
        let root = fs::canonicalize(&vol).unwrap();
        assert_eq!(p, root.join("a/b"));
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o750, "volume root's mode");
        // Like a configMap volume: key -> ..data/key, ..data -> ..ts
        fs::create_dir(vol.join("..ts")).unwrap();
        fs::write(vol.join("..ts/key"), "v").unwrap();
        std::os::unix::fs::symlink("..ts", vol.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/key", vol.join("key")).unwrap();
        assert_eq!(resolve(&vol, "key").unwrap(), root.join("..ts/key"));
    }

    #[test]
    fn expands_expressions() {
        let env: HashMap<String, String> = [("POD", "web-1"), ("EMPTY", "")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(expand_expr("logs/$(POD)", &env).unwrap(), "logs/web-1");
        assert_eq!(expand_expr("$$(POD)", &env).unwrap(), "$(POD)");
        assert_eq!(expand_expr("$(NOPE)/$(EMPTY)", &env).unwrap_err().to_string(), "missing value for EMPTY, NOPE");
    }
}
