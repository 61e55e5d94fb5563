//! Helpers shared by the kubectl e2e test files (each test file is its own crate and uses a
//! subset, hence the `dead_code` allowance). Kept apart from `common`, which serves the kube-rs tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_testkit::{kubectl_path, Cluster};

/// Start `skiff server` (the binary under test) on a fresh data dir.
pub fn cluster() -> Cluster {
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

/// A scratch directory inside the cluster's temp dir (removed with the cluster).
pub fn scratch(c: &Cluster, name: &str) -> PathBuf {
    let dir = c.data_dir().parent().unwrap().join("scratch").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write `content` to `dir/name` and return the path as a string.
pub fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

/// Run `kubectl` (1.`minor`) with the cluster's kubeconfig and extra environment variables.
pub fn kubectl_env(c: &Cluster, minor: u32, env: &[(&str, &str)], args: &[&str]) -> Output {
    let bin = kubectl_path(minor).unwrap_or_else(|| panic!("kubectl 1.{minor} installed"));
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(c.kubeconfig()).args(args).stdin(Stdio::null());
    // `kubectl edit` writes its buffers to $TMPDIR and keeps a copy when the server refuses
    // the edit: inside the cluster's data dir, they go when the test's cluster does.
    if let Some(dir) = std::path::Path::new(&c.kubeconfig()).parent() {
        cmd.env("TMPDIR", dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Pipe `stdin` to `kubectl args` (1.33); panic with stderr unless it succeeds; return stdout.
pub fn ok_stdin(c: &Cluster, args: &[&str], stdin: &str) -> String {
    let out = c.kubectl_stdin(args, stdin).unwrap();
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pipe `stdin` to `kubectl args` expecting failure; return stderr.
pub fn fails_stdin(c: &Cluster, args: &[&str], stdin: &str) -> String {
    let out = c.kubectl_stdin(args, stdin).unwrap();
    assert!(!out.status.success(), "kubectl {args:?} unexpectedly succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Poll `f` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kubectl get ... -o json`, or `None` when the object is not found.
pub fn get_opt(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json", "--ignore-not-found"]);
    let out = c.ok(&a).unwrap();
    if out.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&out).unwrap())
    }
}

/// A kubectl running in the background (e.g. `get -w`, `wait`), its output going to a file.
/// Killed on drop; every run is also bounded by `--request-timeout` / `--timeout` by callers.
pub struct Background {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    pub fn start(c: &Cluster, minor: u32, name: &str, args: &[&str]) -> Background {
        let dir = scratch(c, "bg");
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let bin = kubectl_path(minor).unwrap_or_else(|| panic!("kubectl 1.{minor} installed"));
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Background { child: Some(child), out, err }
    }

    /// Output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Wait until stdout satisfies `pred` (bounded), returning it.
    pub fn wait_output(&self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.stdout();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; stdout:\n{s}\nstderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until stderr satisfies `pred` (bounded). With `-v=6`, kubectl logs each response
    /// there, which tells when its watch is established (`watch=true`).
    pub fn wait_stderr(&self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !pred(&self.stderr()) {
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the kubectl (started with `-v=6`) has its watch open.
    pub fn wait_watching(&self, timeout: Duration) {
        self.wait_stderr(timeout, "the watch to be established", |s| s.lines().any(|l| l.contains("watch=true") && l.contains("200 OK")));
    }

    /// Wait (bounded) for the process to exit; return whether it succeeded.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s.success();
            }
            if start.elapsed() > timeout {
                panic!("background kubectl did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait().unwrap()), Some(None))
    }

    /// Kill the process and return its output.
    pub fn kill(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdout()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The older bundled kubectl used for compatibility checks.
pub fn older_minor() -> u32 {
    [30, 31].into_iter().find(|m| kubectl_path(*m).is_some()).expect("kubectl 1.30 or 1.31 installed")
}

/// Run kubectl 1.`minor` with `stdin` piped in.
pub fn kubectl_version_stdin(c: &Cluster, minor: u32, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let bin = kubectl_path(minor).unwrap_or_else(|| panic!("kubectl 1.{minor} installed"));
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `s` with every `HEARTBEAT` replaced by the current time: node heartbeats must be fresh, or
/// skiff's node lifecycle controller marks the node Unknown and taints it unreachable.
pub fn heartbeat(s: &str) -> String {
    s.replace("HEARTBEAT", &now_rfc3339())
}
