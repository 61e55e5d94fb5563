//! End-to-end: `skiff snapshot save` against a running server, then `restore` into its data
//! dir while stopped; the restarted server has exactly the snapshot's state.

use std::process::Command;

use skiff_testkit::Cluster;

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff")).args(args).output().unwrap()
}

#[test]
fn snapshot_save_while_running_and_restore() {
    let mut c = Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).unwrap();
    c.ok(&["create", "configmap", "before", "--from-literal=a=1"]).unwrap();
    let snap = tempfile_path("snap.db");
    let data = c.data_dir();
    let out = skiff(&["snapshot", "save", "--data-dir", data.to_str().unwrap(), snap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(snap.exists());
    c.ok(&["create", "configmap", "after", "--from-literal=a=2"]).unwrap();
    c.stop().unwrap();
    let out = skiff(&["snapshot", "restore", "--data-dir", data.to_str().unwrap(), snap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.restart().unwrap();
    let names = c.ok(&["get", "cm", "-o", "name"]).unwrap();
    assert!(names.contains("configmap/before"), "{names}");
    assert!(!names.contains("configmap/after"), "{names}");
    // Writes continue with revisions above the snapshot's.
    c.ok(&["create", "configmap", "later", "--from-literal=a=3"]).unwrap();
    // A garbage file is refused and leaves the store alone.
    c.stop().unwrap();
    let junk = tempfile_path("junk.db");
    std::fs::write(&junk, b"not a snapshot").unwrap();
    let out = skiff(&["snapshot", "restore", "--data-dir", data.to_str().unwrap(), junk.to_str().unwrap()]);
    assert!(!out.status.success());
    c.restart().unwrap();
    assert!(c.ok(&["get", "cm", "-o", "name"]).unwrap().contains("configmap/later"));
    let _ = std::fs::remove_file(snap);
    let _ = std::fs::remove_file(junk);
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("skiff-test-{}-{name}", std::process::id()))
}
