//! Attach sessions and terminal resizes through the shim: stdin pipes with and without
//! `stdinOnce`, live stdout/stderr, a container on a terminal resized from an attach
//! session opened by a second runtime instance (an agent restart), and exec resizes.
//! Needs root.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use skiff_runtime::runtime::{AttachRequest, ExecRequest, LoopbackOnly, Phase};
use skiff_runtime::shim::client::ShimProgram;
use skiff_runtime::{LocalRuntime, Runtime, RuntimeConfig};

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn all(id: &str) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        stdin: true,
        stdout: true,
        stderr: true,
    }
}

/// Reads from `r` on a thread until `want` shows up (or 20 s pass); returns what was read.
fn read_until(r: impl Read + Send + 'static, want: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = r;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(want) {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    rx
}

fn got(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("output within 20 s")
}

fn log_text(t: &TestRuntime, id: &str) -> String {
    std::fs::read_to_string(t.rt.log_path(id).unwrap()).unwrap()
}

#[test]
fn stdin_once_pipes_and_live_output() {
    let t = TestRuntime::new("attach-pipes");
    let mut cfg = t.sh(
        "once",
        "echo before; while read line; do echo out:$line; echo err:$line >&2; done; echo eof",
    );
    cfg.stdin = true;
    cfg.stdin_once = true;
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("once").unwrap();
    // Attach only once "before" is out (the shell may start after our attach otherwise, and
    // then "before" would be live output, not history).
    let deadline = std::time::Instant::now() + WAIT.unwrap();
    while !log_text(&t, "once").contains("stdout F before") {
        assert!(std::time::Instant::now() < deadline, "the container never printed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = t.rt.attach(&all("once")).unwrap();
    assert!(!s.tty);
    let mut stdin = s.stdin.unwrap();
    let mut out = BufReader::new(s.stdout.unwrap());
    let mut err = BufReader::new(s.stderr.unwrap());
    stdin.write_all(b"a\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line, "out:a\n",
        "output printed before the attach is not replayed"
    );
    line.clear();
    err.read_line(&mut line).unwrap();
    assert_eq!(line, "err:a\n");
    // Closing our stdin is the container's EOF: the first session took the only writer.
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "eof\n");
    s.control.wait();
    let st = t.rt.wait_container("once", WAIT).unwrap();
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(0)));
    let log = log_text(&t, "once");
    for want in [
        "stdout F before",
        "stdout F out:a",
        "stderr F err:a",
        "stdout F eof",
    ] {
        assert!(log.contains(want), "{want:?} in {log}");
    }
    // An exited container cannot be attached to.
    let e = t.rt.attach(&all("once")).unwrap_err();
    assert!(e.to_string().contains("not running"), "{e}");
}

#[test]
fn stdin_stays_open_across_sessions_without_stdin_once() {
    let t = TestRuntime::new("attach-reuse");
    let mut cfg = t.sh("keep", "while read line; do echo out:$line; done; echo eof");
    cfg.stdin = true;
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("keep").unwrap();
    for word in ["one", "two"] {
        let s = t.rt.attach(&all("keep")).unwrap();
        s.stdin
            .as_ref()
            .unwrap()
            .write_all(format!("{word}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        BufReader::new(s.stdout.as_ref().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, format!("out:{word}\n"));
        s.control.end();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        t.rt.container_status("keep").unwrap().phase,
        Phase::Running,
        "stdin is still open"
    );
    // A container without stdin gives no stdin, only output.
    let mut cfg = t.sh("nostdin", "while true; do echo tick; sleep 0.2; done");
    cfg.stdin = false;
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("nostdin").unwrap();
    let s = t.rt.attach(&all("nostdin")).unwrap();
    assert!(s.stdin.is_none());
    let rx = read_until(s.stdout.unwrap(), "tick\n");
    assert!(got(&rx).contains("tick\n"));
    let st =
        t.rt.stop_container("nostdin", Duration::from_secs(1))
            .unwrap();
    assert_eq!(st.phase, Phase::Exited);
    s.control.wait();
}

#[test]
fn terminal_container_is_resized_through_a_restarted_runtime() {
    let t = TestRuntime::new("attach-tty");
    let mut cfg = t.sh(
        "term",
        "test -t 0 && echo is-a-tty; echo TERM=$TERM; while read line; do [ \"$line\" = size ] && echo size $(stty size); done",
    );
    cfg.stdin = true;
    cfg.tty = true;
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("term").unwrap();
    // A second runtime over the same root stands for a restarted agent: the shim holds the
    // terminal, so a new process can attach.
    let again = LocalRuntime::new(
        RuntimeConfig {
            root: t.scratch.path("root"),
            state: t.scratch.path("state"),
            shim: ShimProgram {
                program: env!("CARGO_BIN_EXE_skiff-runtime-dev").into(),
                prefix: vec!["shim".into()],
            },
            cgroup_parent: t.cgroup_parent.clone(),
        },
        std::sync::Arc::new(LoopbackOnly),
    )
    .unwrap();
    let s = again
        .attach(&AttachRequest {
            container_id: "term".into(),
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .unwrap();
    assert!(s.tty);
    assert!(s.stderr.is_none(), "a terminal merges stderr into stdout");
    s.control.resize(33, 111).unwrap();
    let rx = read_until(s.stdout.unwrap(), "size 33 111");
    // The resize is applied before the line is read: both go through the shim in order.
    std::thread::sleep(Duration::from_millis(100));
    s.stdin.as_ref().unwrap().write_all(b"size\n").unwrap();
    let text = got(&rx).replace('\r', "");
    assert!(text.contains("size 33 111"), "{text:?}");
    s.control.resize(20, 60).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let s2 = t.rt.attach(&all("term")).unwrap();
    let rx = read_until(s2.stdout.unwrap(), "size 20 60");
    s2.stdin.as_ref().unwrap().write_all(b"size\n").unwrap();
    assert!(got(&rx).contains("size 20 60"));
    let st = t.rt.stop_container("term", Duration::from_secs(1)).unwrap();
    assert_eq!(st.phase, Phase::Exited);
    let log = log_text(&t, "term");
    for want in [
        "stdout F is-a-tty",
        "stdout F TERM=xterm",
        "stdout F size 33 111",
    ] {
        assert!(log.contains(want), "{want:?} in {log:?}");
    }
    assert!(
        !log.contains('\r'),
        "terminal line ends are logged without CR: {log:?}"
    );
}

#[test]
fn exec_terminal_follows_resizes() {
    let t = TestRuntime::new("exec-resize");
    t.rt.create_container(&t.sh("svc", "while true; do sleep 1; done"))
        .unwrap();
    t.rt.start_container("svc").unwrap();
    let exec = t
        .rt
        .exec_streaming(&ExecRequest {
            container_id: "svc".into(),
            command: vec![
                "sh".into(),
                "-c".into(),
                // The first size arrives right after the process starts, so poll for it.
                "i=0; while [ $i -lt 50 ]; do s=$(stty size); [ \"$s\" = '40 120' ] && break; i=$((i+1)); sleep 0.1; done; echo first $s; read x; echo second $(stty size)".into(),
            ],
            tty: Some((24, 80)),
            ..Default::default()
        })
        .unwrap();
    let resize = exec.resize.expect("a tty exec can be resized");
    // Sent before the exec starts: it wins over the size on the command line.
    resize.resize(40, 120).unwrap();
    let mut command = exec.command;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = read_until(child.stdout.take().unwrap(), "second");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    resize.resize(50, 132).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stdin.write_all(b"\n").unwrap();
    let text = got(&rx).replace('\r', "");
    assert!(text.contains("first 40 120\n"), "{text:?}");
    assert!(text.contains("second 50 132"), "{text:?}");
    assert!(child.wait().unwrap().success());
    drop(resize);
    let leftovers: Vec<_> = std::fs::read_dir(t.scratch.path("state/containers/svc"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".resize"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the resize fifo is removed: {leftovers:?}"
    );
}
