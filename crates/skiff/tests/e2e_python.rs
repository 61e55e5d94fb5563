//! End-to-end with the official Python `kubernetes` client (from PyPI; `scripts/test.sh`
//! installs it): list namespaces, create a ConfigMap, watch with `timeout_seconds` and see ADDED
//! (and MODIFIED/DELETED). The client side is `tests/python/kubernetes_client.py`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_testkit::Cluster;

/// Python interpreters to try, in order: `SKIFF_TEST_PYTHON`, the venv `scripts/test.sh`
/// makes when the system pip refuses to install, then `python3`.
fn candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("SKIFF_TEST_PYTHON") {
        c.push(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    c.push(target.join("pyvenv/bin/python"));
    c.push(PathBuf::from("python3"));
    c
}

/// The first interpreter that can import `kubernetes`, or why none can.
fn python_with_client() -> Result<PathBuf, String> {
    let mut why = Vec::new();
    for p in candidates() {
        match Command::new(&p).args(["-c", "import kubernetes"]).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => return Ok(p),
            Ok(o) => why.push(format!("{}: {}", p.display(), String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or("import failed"))),
            Err(e) => why.push(format!("{}: {e}", p.display())),
        }
    }
    Err(why.join("; "))
}

#[test]
fn python_client_lists_creates_and_watches() {
    let python = match python_with_client() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED python_client_lists_creates_and_watches: the Python `kubernetes` module cannot be imported ({why}); `bash scripts/test.sh` installs it");
            return;
        }
    };
    let c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kubernetes_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(c.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    // Bounded: the script's own watches time out within 10 s.
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("python client hung; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("script prints JSON");
    eprintln!("python kubernetes client {}", r["client_version"]);

    assert_eq!(r["server_minor"], "33");
    let nss: Vec<&str> = r["namespaces"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(nss.contains(&ns), "{ns} missing from {nss:?}");
    }

    let created = &r["created"];
    assert_eq!(created["name"], "py-cm");
    assert_eq!(created["data"]["greeting"], "hello");
    assert!(created["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // The watch from before the create saw it as ADDED, with the created resourceVersion.
    let seen = r["watch_from_list_rv"].as_array().unwrap();
    let added = seen.iter().find(|e| e["name"] == "py-cm").unwrap_or_else(|| panic!("py-cm not seen: {seen:?}"));
    assert_eq!(added["type"], "ADDED", "{seen:?}");
    assert_eq!(added["rv"], created["rv"]);
    assert_eq!(added["data"]["greeting"], "hello");

    // The live watch saw the other thread's create, change and delete, in order.
    let live = r["live_watch"].as_array().unwrap();
    let types: Vec<&str> = live.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{live:?}");
    assert!(live.iter().all(|e| e["name"] == "py-live"));
    assert_eq!(live[0]["data"]["n"], "1");
    assert_eq!(live[1]["data"]["n"], "2");
    let rvs: Vec<u64> = live.iter().map(|e| e["rv"].as_str().unwrap().parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "resourceVersions increase: {rvs:?}");

    // timeout_seconds ends a quiet watch on time.
    assert_eq!(r["quiet_watch"]["events"], 0);
    let secs = r["quiet_watch"]["seconds"].as_f64().unwrap();
    assert!((0.5..5.0).contains(&secs), "quiet watch with timeout_seconds=1 took {secs}s");

    assert_eq!(r["conflict"]["status"], 409);
    assert_eq!(r["conflict"]["reason"], "AlreadyExists");
    assert_eq!(r["listed"], serde_json::json!(["py-cm"]));
    // The script deleted what it created.
    let left = c.ok(&["get", "cm", "-l", "from in (python,python-live)", "-o", "name"]).unwrap();
    assert_eq!(left.trim(), "", "left behind: {left}");
}
