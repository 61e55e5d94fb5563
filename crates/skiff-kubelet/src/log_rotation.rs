//! Container log rotation (the kubelet's container log manager).
//!
//! Each running container's shim appends to one CRI log file. Every few seconds the agent
//! looks at the sizes; a file over [`Policy::max_size`] is renamed to
//! `<file>.<YYYYMMDD-hhmmss>` and the shim is told to reopen the original path (the runtime's
//! `reopen_log`), so no line is lost or split between files. At most [`Policy::max_files`]
//! files are kept per container, the current one included; the oldest rotated ones go.
//! Upstream's defaults (`containerLogMaxSize` 10Mi, `containerLogMaxFiles` 5) apply.
//! Rotated files live next to the current one, so removing the container removes them too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::Runtime;

/// When to rotate and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Rotate once the current file is larger than this many bytes.
    pub max_size: u64,
    /// Files kept per container, the current one included (at least 2).
    pub max_files: usize,
    /// How often sizes are checked.
    pub interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_size: 10 * 1024 * 1024, max_files: 5, interval: Duration::from_secs(10) }
    }
}

/// Checks and rotates forever (until the task is aborted).
pub async fn run(runtime: Arc<dyn Runtime>, policy: Policy) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut paths = LogPaths::default();
    loop {
        tick.tick().await;
        let rt = runtime.clone();
        // The paths go to the blocking pass and come back with its count.
        let pass = move || (rotate_all(rt.as_ref(), &policy, &mut paths), paths);
        let rotated = match tokio::task::spawn_blocking(pass).await {
            Ok((n, kept)) => {
                paths = kept;
                n
            }
            Err(_) => {
                paths = LogPaths::default();
                0
            }
        };
        if rotated > 0 {
            tracing::debug!(rotated, "container logs rotated");
        }
    }
}

/// Log paths of running containers, kept between passes: a container's log path never
/// changes, and reading every container's record each pass was most of a pass's cost.
#[derive(Debug, Default)]
pub struct LogPaths(HashMap<String, PathBuf>);

/// One pass over the running containers; returns how many logs were rotated.
pub fn rotate_all(runtime: &dyn Runtime, policy: &Policy, paths: &mut LogPaths) -> usize {
    let running = match runtime.running_container_ids() {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "log rotation: listing containers");
            return 0;
        }
    };
    paths.0.retain(|id, _| running.contains(id));
    let mut rotated = 0;
    for id in &running {
        if !paths.0.contains_key(id) {
            match runtime.log_path(id) {
                Ok(p) => {
                    paths.0.insert(id.clone(), p);
                }
                Err(_) => continue, // removed meanwhile
            }
        }
        let path = &paths.0[id];
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size <= policy.max_size {
            continue;
        }
        match rotate(runtime, id, path, policy.max_files) {
            Ok(()) => rotated += 1,
            Err(e) => tracing::warn!(container = %id, error = %e, "log rotation failed"),
        }
    }
    rotated
}

/// Rotates one container's log now, then prunes old files.
pub fn rotate(runtime: &dyn Runtime, id: &str, path: &Path, max_files: usize) -> std::io::Result<()> {
    let target = rotated_name(path, chrono::Utc::now());
    if target.exists() {
        // Already rotated within this second: the next pass will do it.
        return Ok(());
    }
    // Make room first, so there are never more than `max_files` files on disk.
    prune(path, max_files.max(2) - 2)?;
    std::fs::rename(path, &target)?;
    if let Err(e) = runtime.reopen_log(id) {
        // The shim still writes to the renamed file; put it back so the path stays current.
        let _ = std::fs::rename(&target, path);
        return Err(std::io::Error::other(format!("reopening the log of {id}: {e}")));
    }
    Ok(())
}

/// `<path>.<UTC timestamp>`, upstream's naming; the names sort by age.
fn rotated_name(path: &Path, now: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(now.format(".%Y%m%d-%H%M%S").to_string());
    path.with_file_name(name)
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && is_timestamp(&n[prefix.len()..])))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn is_timestamp(s: &str) -> bool {
    s.len() == 15 && s.bytes().enumerate().all(|(i, b)| if i == 8 { b == b'-' } else { b.is_ascii_digit() })
}

/// Deletes the oldest rotated files of `path` beyond `keep`.
fn prune(path: &Path, keep: usize) -> std::io::Result<()> {
    let files = rotated_files(path);
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::runtime::FakeRuntime;

    #[test]
    fn names_sort_by_time_and_are_recognised() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T09:08:07Z").unwrap().with_timezone(&chrono::Utc);
        let p = rotated_name(Path::new("/x/container.log"), t);
        assert_eq!(p, Path::new("/x/container.log.20261128-090807"));
        assert!(is_timestamp("20261128-090807"));
        assert!(!is_timestamp("20261128-0908071") && !is_timestamp("gz") && !is_timestamp("20261128_090807"));
    }

    #[test]
    fn prune_keeps_the_newest_rotated_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("container.log");
        std::fs::write(&log, "current").unwrap();
        for ts in ["20260101-000003", "20260101-000001", "20260101-000002"] {
            std::fs::write(dir.path().join(format!("container.log.{ts}")), ts).unwrap();
        }
        std::fs::write(dir.path().join("container.log.notes"), "not a rotation").unwrap();
        prune(&log, 2).unwrap();
        let left: Vec<String> =
            rotated_files(&log).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(left, ["container.log.20260101-000002", "container.log.20260101-000003"]);
        assert!(log.exists() && dir.path().join("container.log.notes").exists());
    }

    #[test]
    fn a_pass_rotates_running_containers_over_the_limit_and_forgets_stopped_ones() {
        use skiff_runtime::runtime::ContainerConfig;
        let dir = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::default();
        let image = rt.pull_image("busybox").unwrap();
        for (id, bytes) in [("big", 64), ("small", 8)] {
            let log = dir.path().join(format!("{id}.log"));
            std::fs::write(&log, vec![b'x'; bytes]).unwrap();
            let config = ContainerConfig { id: id.into(), image: image.id.clone(), log_path: Some(log), ..Default::default() };
            rt.create_container(&config).unwrap();
            rt.start_container(id).unwrap();
        }
        let policy = Policy { max_size: 32, max_files: 3, interval: Duration::from_secs(10) };
        let mut paths = LogPaths::default();
        assert_eq!(rotate_all(&rt, &policy, &mut paths), 1, "only the big log");
        assert_eq!(rotated_files(&dir.path().join("big.log")).len(), 1);
        assert!(rotated_files(&dir.path().join("small.log")).is_empty());
        assert_eq!(paths.0.len(), 2, "both paths kept for the next pass");
        // A second pass asks the runtime for no path again.
        let asked = |rt: &FakeRuntime| rt.calls().iter().filter(|c| c.starts_with("log_path")).count();
        let before = asked(&rt);
        rotate_all(&rt, &policy, &mut paths);
        assert_eq!(asked(&rt), before);
        rt.exit("small", 0, None);
        rotate_all(&rt, &policy, &mut paths);
        assert_eq!(paths.0.keys().collect::<Vec<_>>(), ["big"], "an exited container's path is dropped");
    }

    #[test]
    fn a_failed_reopen_puts_the_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("container.log");
        std::fs::write(&log, "data").unwrap();
        // The fake runtime knows no container "missing", so reopening fails.
        let rt = FakeRuntime::default();
        assert!(rotate(&rt, "missing", &log, 5).is_err());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "data");
        assert!(rotated_files(&log).is_empty());
    }
}
