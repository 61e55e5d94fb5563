//! End-to-end: the real `skiff server` proxies logs, exec and port-forward to the streaming
//! server (run here with a host-process backend), driven by the real kubectl, old (SPDY) and
//! new (WebSocket).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use skiff_testkit::{kubectl_path, Cluster};
use skiff_kubelet::streaming::{self, local::LocalBackend};

fn skiff_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// A kubelet serving certificate for 127.0.0.1 signed by the cluster CA.
fn serving_cert(data_dir: &Path) -> (String, String, String) {
    let ca_pem = std::fs::read_to_string(data_dir.join("tls/ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(data_dir.join("tls/ca.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap()).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["n1".to_string()]).unwrap();
    p.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    p.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem(), ca_pem)
}

struct Env {
    cluster: Cluster,
    backend: Arc<LocalBackend>,
    log: PathBuf,
    _logs: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    shutdown: tokio::sync::watch::Sender<bool>,
}

const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02.000000002Z stderr F two\n\
2024-01-01T00:00:03.000000003Z stdout P thr\n\
2024-01-01T00:00:04.000000004Z stdout F ee\n";

fn setup() -> Env {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let cluster = Cluster::start(&skiff_binary()).expect("server starts");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let backend = Arc::new(LocalBackend::new(logs.path()));
    let log = backend.log_path("default", "web", "app", false);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, LOG).unwrap();
    // An echo server standing in for the pod's port 80.
    let echo = StdListener::bind("127.0.0.1:0").unwrap();
    backend.ports.lock().unwrap().insert(80, echo.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for conn in echo.incoming() {
            let Ok(mut c) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&[b"echo:", &buf[..n]].concat()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (cert, key, ca) = serving_cert(&cluster.data_dir());
    let tls = Arc::new(streaming::tls_config(&cert, &key, &ca).unwrap());
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(streaming::serve(listener, tls, backend.clone(), rx));

    let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    apply(&cluster, &node.to_string());
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "n1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    cluster.ok(&["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", &status.to_string()]).unwrap();
    let pod = |name: &str, node: Option<&str>| {
        let mut p = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = n.into();
        }
        apply(&cluster, &p.to_string());
    };
    pod("web", Some("n1"));
    // kubectl port-forward refuses pods that are not Running.
    cluster.ok(&["patch", "pod", "web", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]).unwrap();
    pod("unbound", None);
    Env { cluster, backend, log, _logs: logs, _rt: rt, shutdown }
}

fn apply(c: &Cluster, json: &str) {
    let out = c.kubectl_stdin(&["create", "-f", "-"], json).unwrap();
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn kubectl(env: &Env, minor: u32, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let bin = kubectl_path(minor).unwrap_or_else(|| panic!("kubectl 1.{minor} installed"));
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // Feed stdin from a thread: kubectl's output must be drained at the same time.
        let mut w = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    wait_with_timeout(child, Duration::from_secs(30), args)
}

fn short(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 1500 { format!("{}...", &s[..1500]) } else { s.into_owned() }
}

fn wait_with_timeout(child: std::process::Child, timeout: Duration, what: &[&str]) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().unwrap().unwrap();
            panic!("kubectl {what:?} timed out; stdout {:?} stderr {:?}", short(&out.stdout), short(&out.stderr));
        }
    }
}

fn ok(env: &Env, minor: u32, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(env, minor, args, stdin);
    assert!(out.status.success(), "kubectl 1.{minor} {args:?} failed ({:?}): {}", out.status, short(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn logs_checks(env: &Env, minor: u32) {
    assert_eq!(ok(env, minor, &["logs", "web"], None), "one\ntwo\nthree\n");
    assert_eq!(ok(env, minor, &["logs", "web", "--tail=1"], None), "three\n");
    assert_eq!(ok(env, minor, &["logs", "web", "-c", "app", "--tail=2", "--timestamps"], None),
        "2024-01-01T00:00:02.000000002Z two\n2024-01-01T00:00:03.000000003Z three\n");
    assert_eq!(ok(env, minor, &["logs", "web", "--limit-bytes=6"], None), "one\ntw");
    let out = kubectl(env, minor, &["logs", "unbound"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not have a host assigned"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(env, minor, &["logs", "web", "-c", "nope"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod web"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn follow_check(env: &Env, minor: u32) {
    let bin = kubectl_path(minor).unwrap();
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(["logs", "-f", "web", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "three\n");
    let marker = format!("followed-{minor}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&env.log).unwrap();
    writeln!(f, "2024-01-01T00:00:05.000000000Z stdout F {marker}").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), marker, "a line appended while following arrives");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::write(&env.log, LOG).unwrap();
}

fn exec_checks(env: &Env, minor: u32) {
    assert_eq!(ok(env, minor, &["exec", "web", "--", "echo", "hi"], None), "hi\n");
    let out = kubectl(env, minor, &["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!(out.status.code(), Some(3), "exit code propagates: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("err\n"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ok(env, minor, &["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z"], Some("hello stdin\n")), "HELLO STDIN\n");
    let big: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let got = ok(env, minor, &["exec", "-i", "web", "--", "cat"], Some(&big));
    assert!(got == big, "large stdin round-trips: got {} of {} bytes", got.len(), big.len());
    // `kubectl cp` is tar over exec, both ways (the "container" is this host, in a temp dir).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.txt");
    std::fs::write(&src, format!("copied by 1.{minor}\n")).unwrap();
    let remote = format!("web:{}", dir.path().join("in-pod.txt").display());
    ok(env, minor, &["cp", src.to_str().unwrap(), &remote], None);
    assert_eq!(std::fs::read_to_string(dir.path().join("in-pod.txt")).unwrap(), format!("copied by 1.{minor}\n"));
    let back = dir.path().join("back.txt");
    ok(env, minor, &["cp", &remote, back.to_str().unwrap()], None);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), format!("copied by 1.{minor}\n"));
    let out = kubectl(env, minor, &["exec", "unbound", "--", "true"], None);
    assert!(!out.status.success());
    let out = kubectl(env, minor, &["exec", "web", "--", "/nonexistent/cmd"], None);
    assert!(!out.status.success());
    assert!(short(&out.stderr).contains("/nonexistent/cmd"), "start failure is reported: {}", short(&out.stderr));
}

/// `exec -it` through a real terminal: kubectl runs under `script`, which gives it a pty of
/// 40x100; the process must see a tty of that size (sent on the resize channel).
fn tty_check(env: &Env, minor: u32) {
    let bin = kubectl_path(minor).unwrap();
    let inner = format!(
        "stty cols 100 rows 40; {} --kubeconfig {} exec -it web -- sh -c 'sleep 0.5; test -t 0 && echo TTY-OK; stty size'",
        bin.display(),
        env.cluster.kubeconfig().display()
    );
    let child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(30), &["exec", "-it"]);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("TTY-OK\n40 100\n"), "kubectl 1.{minor} exec -it output {text:?} stderr {:?}", short(&out.stderr));
}

fn port_forward_check(env: &Env, minor: u32) {
    let bin = kubectl_path(minor).unwrap();
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(["port-forward", "pod/web", ":80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "Forwarding from 127.0.0.1:NNNNN -> 80"
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("unexpected port-forward output {line:?}, stderr {err:?}")
        });
    for round in 0..3 {
        let mut c = StdStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg = format!("ping {round} via 1.{minor}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut buf = vec![0u8; 256];
        let n = c.read(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("echo:{msg}"));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kubectl_streams_through_the_api_server() {
    let env = setup();
    let raw = ok(&env, 33, &["get", "--raw", "/api/v1/nodes/n1/proxy/healthz"], None);
    assert_eq!(raw, "ok");
    let minors: Vec<u32> = std::env::var("KUBECTL_MINORS")
        .map(|v| v.split(',').filter_map(|m| m.parse().ok()).collect())
        .unwrap_or_else(|_| vec![33, 27]);
    for &minor in &minors {
        eprintln!("== kubectl 1.{minor}");
        logs_checks(&env, minor);
        follow_check(&env, minor);
        exec_checks(&env, minor);
        tty_check(&env, minor);
        port_forward_check(&env, minor);
    }
    // A finished container ends `logs -f` by itself.
    let mut f = std::fs::OpenOptions::new().append(true).open(&env.log).unwrap();
    writeln!(f, "2024-01-01T00:00:06.000000000Z stdout F last words").unwrap();
    env.backend.stopped.lock().unwrap().push(("default".into(), "web".into(), "app".into()));
    let out = ok(&env, 33, &["logs", "-f", "web", "--tail=1"], None);
    assert_eq!(out, "last words\n");
}
