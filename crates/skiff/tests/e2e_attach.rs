//! `kubectl attach`, `kubectl run -i` and terminal resizes against real containers, with the
//! real kubectl: 1.33 (WebSocket v5) and 1.27 (SPDY) unless `KUBECTL_MINORS` says otherwise.
//!
//! Terminals: kubectl runs under `script`, which gives it a pty; the shell around it sets
//! the pty to 40x100, then to 50x120 when the test says so (kubectl sees SIGWINCH and sends
//! the new size). The process in the container prints `stty size` for every `size` line it
//! reads, so both sizes must show up in what kubectl prints.
//!
//! Needs root (namespaces, cgroups, mounts) and busybox-static (the test image).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use skiff_testkit::{kubectl_path, Cluster};

use common::IMAGE;

/// Prints the terminal size for `size`, exits for `quit`.
const SIZE_LOOP: &str =
    "while read line; do case $line in size) echo size $(stty size);; quit) exit 0;; esac; done";

fn node_cluster() -> Result<Cluster> {
    common::node_cluster(&[])
}

fn phase(cluster: &Cluster, name: &str) -> String {
    cluster.json(&["get", "pod", name]).unwrap_or(Value::Null)["status"]["phase"].as_str().unwrap_or_default().to_string()
}

/// Creates a Never-restarting pod whose one container runs `sh -c script`.
fn pod(cluster: &Cluster, name: &str, script: &str, stdin: bool, stdin_once: bool, tty: bool) -> Result<()> {
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": IMAGE, "command": ["sh", "-c", script],
            "stdin": stdin, "stdinOnce": stdin_once, "tty": tty,
        }]}
    });
    let out = cluster.kubectl_stdin(&["create", "-f", "-"], &manifest.to_string())?;
    anyhow::ensure!(out.status.success(), "create {name}: {}", String::from_utf8_lossy(&out.stderr));
    cluster.eventually(Duration::from_secs(60), &format!("{name} to run"), || phase(cluster, name) == "Running")
}

fn kubectl_bin(minor: u32) -> std::path::PathBuf {
    kubectl_path(minor).unwrap_or_else(|| panic!("kubectl 1.{minor} installed"))
}

/// Runs kubectl 1.`minor` with `input` on stdin (then closed), killing it after `timeout`.
fn kubectl_with_input(cluster: &Cluster, minor: u32, args: &[&str], input: &str, timeout: Duration) -> Result<Output> {
    let mut child = cluster
        .command(kubectl_bin(minor))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .arg("--cache-dir")
        .arg(cluster.kubectl_cache())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut w = child.stdin.take().expect("piped stdin");
    let input = input.to_string();
    std::thread::spawn(move || {
        let _ = w.write_all(input.as_bytes());
    });
    wait_with_timeout(child, timeout, args)
}

fn wait_with_timeout(child: Child, timeout: Duration, what: &[&str]) -> Result<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            let out = rx.recv()??;
            bail!(
                "{what:?} timed out; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }
    }
}

/// kubectl on a terminal (under `script`), with what it prints collected as it comes.
struct Terminal {
    child: Child,
    input: std::process::ChildStdin,
    output: Arc<Mutex<String>>,
    flag: std::path::PathBuf,
}

impl Terminal {
    /// Starts `kubectl ARGS` on a 40x100 terminal that becomes 50x120 on [`Terminal::resize`].
    fn start(cluster: &Cluster, minor: u32, args: &str, flag: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(flag);
        // Without job control a background job reads /dev/null unless told otherwise; it
        // stays in the terminal's foreground group, so it gets the SIGWINCH.
        let inner = format!(
            "stty rows 40 cols 100; {} --kubeconfig {} --cache-dir {} {args} < /dev/tty & \
             while [ ! -e {flag} ]; do sleep 0.1; done; stty rows 50 cols 120; wait",
            kubectl_bin(minor).display(),
            cluster.kubeconfig().display(),
            cluster.kubectl_cache().display(),
            flag = flag.display(),
        );
        let mut child = Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().expect("piped stdin");
        let output = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
            }
        });
        Ok(Self { child, input, output, flag: flag.to_path_buf() })
    }

    /// Types `line` (again every second) until `want` shows up in the output.
    fn ask_until(&mut self, line: &str, want: &str) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            self.input.write_all(format!("{line}\n").as_bytes())?;
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if self.output.lock().unwrap().contains(want) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        bail!("{want:?} never showed up; output {:?}", self.output.lock().unwrap())
    }

    fn resize(&self) -> Result<()> {
        std::fs::write(&self.flag, b"")?;
        Ok(())
    }

    /// Ends the session with `quit` and waits for kubectl (and `script`) to exit.
    fn quit(&mut self) -> Result<String> {
        self.input.write_all(b"quit\n")?;
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                let out = self.output.lock().unwrap().clone();
                anyhow::ensure!(st.success(), "kubectl under script exited with {st}; output {out:?}");
                return Ok(out);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("kubectl did not exit after quit; output {:?}", self.output.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // On a failed check: closing script's pty hangs up kubectl too.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The size printed first and after the resize, through `kubectl ARGS` on a terminal.
fn terminal_sizes(cluster: &Cluster, minor: u32, args: &str) -> Result<String> {
    let flag = cluster.data_dir().join(format!("resize-{minor}"));
    let mut term = Terminal::start(cluster, minor, args, &flag)?;
    term.ask_until("size", "size 40 100").context("initial size")?;
    term.resize()?;
    term.ask_until("size", "size 50 120").context("size after the resize")?;
    term.quit()
}

fn attach_checks(cluster: &Cluster, minor: u32) -> Result<()> {
    eprintln!("== kubectl 1.{minor}");
    // attach -i to a stdinOnce pod reading stdin: our EOF is its EOF.
    let reader = format!("reader-{minor}");
    pod(cluster, &reader, "echo ready; while read line; do echo got:$line; done; echo bye", true, true, false)?;
    let out = kubectl_with_input(cluster, minor, &["attach", "-i", &reader], "one\ntwo\n", Duration::from_secs(60))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "attach -i: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("got:one\ngot:two\nbye\n"), "attach -i output {stdout:?}");
    cluster.eventually(Duration::from_secs(30), "the reader to finish", || phase(cluster, &reader) == "Succeeded")?;
    let logs = cluster.ok(&["logs", &reader])?;
    assert_eq!(logs, "ready\ngot:one\ngot:two\nbye\n", "the log has everything, attached or not");

    // run -i --rm: stdin reaches the container, output comes back, the pod is deleted.
    let run = format!("run-{minor}");
    let out = kubectl_with_input(
        cluster,
        minor,
        &["run", &run, "-i", "--rm", "--restart=Never", &format!("--image={IMAGE}"), "--", "sh", "-c", "read x; echo got $x"],
        "hello\n",
        Duration::from_secs(90),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run -i: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("got hello\n"), "run -i output {stdout:?}");
    cluster.eventually(Duration::from_secs(30), "the run pod to be deleted", || {
        cluster.kubectl(&["get", "pod", &run]).is_ok_and(|o| !o.status.success())
    })?;

    // exec -it: the terminal's size, then its new size.
    let text = terminal_sizes(cluster, minor, &format!("exec -it web -- sh -c '{SIZE_LOOP}'"))?;
    assert!(text.contains("size 40 100") && text.contains("size 50 120"), "exec -it: {text:?}");

    // attach -it to a container on a terminal: the same, through the shim's terminal.
    let term = format!("term-{minor}");
    pod(cluster, &term, SIZE_LOOP, true, false, true)?;
    let text = terminal_sizes(cluster, minor, &format!("attach -it {term}"))?;
    assert!(text.contains("size 40 100") && text.contains("size 50 120"), "attach -it: {text:?}");
    cluster.eventually(Duration::from_secs(30), "the terminal pod to finish", || phase(cluster, &term) == "Succeeded")?;
    Ok(())
}

#[test]
fn attach_run_and_terminal_resizes() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    pod(&cluster, "web", "while true; do sleep 1; done", false, false, false)?;

    // attach without stdin streams live output until the container exits.
    pod(&cluster, "ticker", "sleep 3; for i in 1 2 3; do echo tick $i; sleep 0.5; done", false, false, false)?;
    let out = kubectl_with_input(&cluster, 33, &["attach", "ticker"], "", Duration::from_secs(60))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("tick 3\n"), "attach: {stdout:?} {}", String::from_utf8_lossy(&out.stderr));

    let minors: Vec<u32> = std::env::var("KUBECTL_MINORS")
        .map(|v| v.split(',').filter_map(|m| m.parse().ok()).collect())
        .unwrap_or_else(|_| vec![33, 27]);
    for minor in minors {
        attach_checks(&cluster, minor)?;
    }
    Ok(())
}
