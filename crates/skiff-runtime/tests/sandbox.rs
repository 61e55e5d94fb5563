//! Pod sandboxes: shared namespaces held by bind mounts, containers talking over
//! localhost and sharing a directory, teardown. Needs root.

mod common;

use std::time::Duration;

use common::*;
use skiff_runtime::runtime::{ExecRequest, Mount, MountKind, Phase, SandboxConfig};
use skiff_runtime::Runtime;

fn mounted(path: &std::path::Path) -> bool {
    mounted_in("self", path)
}

/// Whether `path` is a mount point in the mount namespace of process `pid` ("self": ours).
fn mounted_in(pid: &str, path: &std::path::Path) -> bool {
    let p = path.to_string_lossy().to_string();
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Checks that the sandbox's namespaces are pinned in the pin holder's mount namespace and
/// not in ours; returns the holder's pid. `ns_dir` is the path through the holder's root.
fn pinned_apart(ns_dir: &std::path::Path, kinds: &[&str]) -> String {
    let s = ns_dir.to_string_lossy();
    let rest = s.strip_prefix("/proc/").expect("pins are reached through the holder's root");
    let (pid, inner) = rest.split_once("/root").unwrap();
    for k in kinds {
        let own_path = std::path::Path::new(inner).join(k);
        assert!(mounted_in(pid, &own_path), "{k} namespace not pinned in the holder");
        assert!(!mounted(&own_path), "{k} namespace pinned in the host's mount table");
        let fs = nix::sys::statfs::statfs(&ns_dir.join(k)).unwrap();
        assert_eq!(fs.filesystem_type().0 as i64, 0x6e73_6673, "{k} pin is not an nsfs file");
    }
    pid.to_string()
}

#[test]
fn two_containers_share_a_directory_and_localhost() {
    let t = TestRuntime::new("sandbox");
    let sb =
        t.rt.create_sandbox(&SandboxConfig {
            id: "pod1".into(),
            hostname: "pod-one".into(),
            shared_shm: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sb.netns_path(), Some(sb.ns_dir.join("net")));
    let holder = pinned_apart(&sb.ns_dir, &["net", "ipc", "uts"]);
    let host_dir = t.scratch.path("state/sandboxes/pod1");
    assert!(mounted(&host_dir.join("shm")), "a shared /dev/shm is a host mount");
    // Looked up by id alone, as a new pod worker does.
    assert_eq!(t.rt.sandbox("pod1").unwrap().map(|s| s.config.hostname), Some("pod-one".to_string()));
    assert!(t.rt.sandbox("pod2").unwrap().is_none());
    let shared = t.scratch.path("emptydir");
    std::fs::create_dir_all(&shared).unwrap();
    let vol = || {
        vec![Mount {
            destination: "/shared".into(),
            kind: MountKind::Bind {
                source: shared.clone(),
            },
            readonly: false,
        }]
    };

    let mut writer = t.sh(
        "writer",
        "i=0; while true; do i=$((i+1)); echo tick $i > /shared/index.html; sleep 1; done",
    );
    writer.sandbox_id = Some("pod1".into());
    writer.mounts = vol();
    let mut server = t.sh("server", "exec httpd -f -p 8080 -h /shared");
    server.sandbox_id = Some("pod1".into());
    server.mounts = vol();
    for c in [&writer, &server] {
        t.rt.create_container(c).unwrap();
        t.rt.start_container(&c.id).unwrap();
    }

    let exec = |id: &str, cmd: &str| {
        t.rt.exec_sync(&ExecRequest {
            container_id: id.into(),
            command: vec!["sh".into(), "-c".into(), cmd.into()],
            ..Default::default()
        })
        .unwrap()
    };
    // The writer fetches what the server serves from the file the writer keeps writing.
    let mut body = String::new();
    for _ in 0..50 {
        let out = exec("writer", "wget -q -O - http://127.0.0.1:8080/index.html");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.exit_code == 0 && body.starts_with("tick") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.starts_with("tick "), "got {body:?}");
    std::thread::sleep(Duration::from_millis(1200));
    let later = String::from_utf8_lossy(
        &exec("writer", "wget -q -O - http://127.0.0.1:8080/index.html").stdout,
    )
    .into_owned();
    assert_ne!(later, body, "the file should change every second");

    // Same network, IPC and UTS namespaces; the pod's hostname and hosts file.
    let ns = |id: &str| {
        String::from_utf8_lossy(
            &exec(
                id,
                "readlink /proc/self/ns/net /proc/self/ns/ipc /proc/self/ns/uts; hostname",
            )
            .stdout,
        )
        .into_owned()
    };
    assert_eq!(ns("writer"), ns("server"));
    assert!(ns("server").ends_with("pod-one\n"));
    assert!(String::from_utf8_lossy(&exec("server", "cat /etc/hosts").stdout).contains("pod-one"));
    // One /dev/shm for the pod.
    assert_eq!(exec("writer", "echo hi > /dev/shm/note").exit_code, 0);
    assert_eq!(
        String::from_utf8_lossy(&exec("server", "cat /dev/shm/note").stdout),
        "hi\n"
    );
    // The pod's localhost is not the host's.
    assert!(std::net::TcpStream::connect_timeout(
        &"127.0.0.1:8080".parse().unwrap(),
        Duration::from_millis(200)
    )
    .is_err());

    for c in ["writer", "server"] {
        let st = t.rt.stop_container(c, Duration::from_secs(1)).unwrap();
        assert_eq!(st.phase, Phase::Exited);
        t.rt.remove_container(c).unwrap();
    }
    t.rt.remove_sandbox("pod1").unwrap();
    // Removing the pins' files unmounted them in the holder's namespace.
    assert!(!mounted_in(&holder, &host_dir.join("ns/net")));
    assert!(!mounted(&host_dir.join("shm")));
    assert!(!host_dir.exists());
    assert!(!sb.ns_dir.exists());
    // Idempotent.
    t.rt.remove_sandbox("pod1").unwrap();
}

#[test]
fn sandbox_creation_failure_in_network_hook_leaves_nothing() {
    struct Failing;
    impl skiff_runtime::runtime::NetworkHook for Failing {
        fn setup(&self, _: &skiff_runtime::runtime::SandboxInfo) -> skiff_runtime::Result<()> {
            Err(skiff_runtime::Error::InvalidArgument(
                "no network today".into(),
            ))
        }
        fn teardown(&self, _: &skiff_runtime::runtime::SandboxInfo) -> skiff_runtime::Result<()> {
            Ok(())
        }
    }
    let s = Scratch::new("sandbox-fail");
    let cfg = skiff_runtime::RuntimeConfig {
        root: s.path("root"),
        state: s.path("root"),
        shim: skiff_runtime::shim::client::ShimProgram {
            program: env!("CARGO_BIN_EXE_skiff-runtime-dev").into(),
            prefix: vec!["shim".into()],
        },
        cgroup_parent: "/skiff-test-unused".into(),
    };
    let rt = skiff_runtime::LocalRuntime::new(cfg, std::sync::Arc::new(Failing)).unwrap();
    let err = rt
        .create_sandbox(&SandboxConfig {
            id: "p".into(),
            hostname: "p".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("no network today"));
    assert!(!s.path("root/sandboxes/p").exists());
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&s.path("root/sandboxes/p").display().to_string()));
}

#[test]
fn host_network_sandbox_shares_the_host_network_only() {
    let t = TestRuntime::new("hostnet");
    let sb =
        t.rt.create_sandbox(&SandboxConfig {
            id: "hn".into(),
            hostname: "hn-pod".into(),
            host_network: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sb.netns_path(), None);
    let mut c = t.sh(
        "hn-c",
        "readlink /proc/self/ns/net; hostname; ls /sys/class/net | grep -c .",
    );
    c.sandbox_id = Some("hn".into());
    t.rt.create_container(&c).unwrap();
    t.rt.start_container("hn-c").unwrap();
    let st =
        t.rt.wait_container("hn-c", Some(Duration::from_secs(20)))
            .unwrap();
    let log = std::fs::read_to_string(t.rt.log_path("hn-c").unwrap()).unwrap();
    assert_eq!(st.exit_code, Some(0), "{log}");
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap())
        .collect();
    assert_eq!(lines[0], host_net);
    assert_eq!(lines[1], "hn-pod");
    t.rt.remove_container("hn-c").unwrap();
    t.rt.remove_sandbox("hn").unwrap();
}

/// Runs `f` on a fresh thread that has joined the namespace pinned at `pin`.
fn in_namespace<T: Send + 'static>(pin: std::path::PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&pin).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::empty()).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn inode(path: impl AsRef<std::path::Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn sandbox_namespaces_are_new_pinned_and_leave_the_caller_alone() {
    let t = TestRuntime::new("pins");
    let before: Vec<u64> = ["net", "ipc", "uts"].iter().map(|k| inode(format!("/proc/thread-self/ns/{k}"))).collect();
    let a = t.rt.create_sandbox(&SandboxConfig { id: "nsa".into(), hostname: "ns-a".into(), ..Default::default() }).unwrap();
    let b = t.rt.create_sandbox(&SandboxConfig { id: "nsb".into(), hostname: "ns-b".into(), ..Default::default() }).unwrap();
    let after: Vec<u64> = ["net", "ipc", "uts"].iter().map(|k| inode(format!("/proc/thread-self/ns/{k}"))).collect();
    assert_eq!(before, after, "creating sandboxes moved the caller's thread");
    for (i, k) in ["net", "ipc", "uts"].iter().enumerate() {
        let (ia, ib) = (inode(a.ns_dir.join(k)), inode(b.ns_dir.join(k)));
        assert_ne!(ia, before[i], "{k} namespace of a sandbox is the caller's");
        assert_ne!(ia, ib, "two sandboxes share a {k} namespace");
    }
    let host = in_namespace(a.ns_dir.join("uts"), || nix::unistd::gethostname().unwrap());
    assert_eq!(host.to_str(), Some("ns-a"));
    // Loopback is up in the new network namespace: a connection to 127.0.0.1 works.
    let talked = in_namespace(b.ns_dir.join("net"), || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(talked, "loopback is down in the sandbox's network namespace");
    let holder = pinned_apart(&a.ns_dir, &["net", "ipc", "uts"]);
    assert_eq!(pinned_apart(&b.ns_dir, &["net", "ipc", "uts"]), holder, "one holder per runtime");
    // Without a shared /dev/shm nothing of the pod is mounted in the host's namespace.
    let host_a = t.scratch.path("state/sandboxes/nsa");
    assert!(!host_a.join("shm").exists());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!table.contains(&host_a.display().to_string()), "{table}");
    t.rt.remove_sandbox("nsa").unwrap();
    t.rt.remove_sandbox("nsb").unwrap();
    assert!(!mounted_in(&holder, &host_a.join("ns/net")));
    // The holder goes by itself once it has held no pin for a while (two checks 5 s apart).
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !std::path::Path::new(&format!("/proc/{holder}/cmdline")).exists()
            || std::fs::read(format!("/proc/{holder}/cmdline")).is_ok_and(|c| c.is_empty())
    });
    assert!(gone, "the pin holder {holder} outlived its last pin by 20 s");
}
