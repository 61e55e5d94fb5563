//! Container log rotation with a real container and the real kubectl: a chatty container's
//! log is rotated at the configured size, only the configured number of files is kept, and
//! `kubectl logs -f` started before the rotations sees every line exactly once, in order.
//!
//! Needs root (namespaces, cgroups, mounts) and busybox-static (the test image).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Result;
use skiff_testkit::Cluster;

const IMAGE: &str = "skiff.test/busybox:1";

/// The `container.log` files (current and rotated) of every container under `dir`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("container.log")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn logs_rotate_at_the_size_limit_and_follow_keeps_every_line() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return Ok(());
    }
    let flags = ["--container-log-max-size", "8Ki", "--container-log-max-files", "3", "--container-log-monitor-interval", "1"];
    let cluster = Cluster::start_with_agent(common::skiff_binary(), &flags)?;
    let archive = cluster.data_dir().join("busybox.tar");
    skiff_testkit::images::write_busybox_archive(&archive, IMAGE);
    cluster.import_image(&archive)?;

    // About 100 bytes a line, 400 lines a second at most: several 8 KiB rotations a second
    // would be too fast to be sure of; usleep keeps it near 20 KB/s.
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "chatty"}},
            "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c",
              "i=0; while [ $i -lt 1500 ]; do i=$((i+1)); echo \"line $i ..........................................................................\"; usleep 4000; done; sleep 3600"]}}],
              "terminationGracePeriodSeconds": 1}}}}"#
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    anyhow::ensure!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    cluster.eventually(Duration::from_secs(60), "the pod to run", || {
        cluster.ok(&["get", "pod", "chatty", "-o", "jsonpath={.status.phase}"]).is_ok_and(|p| p == "Running")
    })?;

    // Follow from the start, before any rotation has happened (the first rotation needs 8 KiB).
    let mut follow = cluster
        .command(skiff_testkit::kubectl_path(33).expect("kubectl 1.33"))
        .args(["--kubeconfig", cluster.kubeconfig().to_str().unwrap(), "logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 8192];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !all.contains("line 1500 ") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        all
    });

    let runtime_dir = cluster.data_dir().join("agent").join("runtime");
    let mut most_rotated = 0;
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(60) {
        let files = log_files(&runtime_dir);
        let rotated = files.iter().filter(|p| !p.ends_with("container.log")).count();
        most_rotated = most_rotated.max(rotated);
        assert!(files.len() <= 3, "more than 3 log files kept: {files:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let followed = reader.join().unwrap();
    assert!(most_rotated >= 1, "the log was never rotated");

    // Every line once, in order, across the rotations.
    let numbers: Vec<u32> = followed
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.split_whitespace().next()?.parse().ok())
        .collect();
    let expected: Vec<u32> = (1..=1500).collect();
    assert_eq!(numbers.len(), 1500, "followed {} lines; first gap near {:?}", numbers.len(), numbers.windows(2).find(|w| w[1] != w[0] + 1));
    assert_eq!(numbers, expected);

    // The current file is small again: it was rotated, not just left to grow.
    let current = log_files(&runtime_dir).into_iter().find(|p| p.ends_with("container.log")).expect("current log");
    let size = std::fs::metadata(&current)?.len();
    assert!(size < 150_000, "current log is {size} bytes");
    // A plain `kubectl logs` reads the current file only, as upstream: the newest lines, in
    // order, ending with the last one (or nothing, right after a rotation).
    let plain = cluster.ok(&["logs", "chatty"])?;
    let tail: Vec<u32> =
        plain.lines().filter_map(|l| l.strip_prefix("line ")?.split_whitespace().next()?.parse().ok()).collect();
    assert!(tail.len() < 1500, "kubectl logs printed the rotated files too ({} lines)", tail.len());
    assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{plain}");
    assert!(tail.last().is_none_or(|l| *l == 1500), "{plain}");
    Ok(())
}
