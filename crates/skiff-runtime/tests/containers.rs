//! Container lifecycle through the shim: exit codes, logs, stop with grace, OOM kills,
//! confinement, exec, stats and recovery. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::*;
use skiff_runtime::runtime::{ExecRequest, Mount, MountKind, Phase, Resources};
use skiff_runtime::Runtime;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn log_lines(t: &TestRuntime, id: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(t.rt.log_path(id).unwrap()).unwrap();
    text.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap().to_string();
            (
                ts,
                it.next().unwrap().to_string(),
                format!("{} {}", it.next().unwrap(), it.next().unwrap_or("")),
            )
        })
        .collect()
}

#[test]
fn exit_code_times_and_cri_logs() {
    let t = TestRuntime::new("exit-logs");
    let cfg = t.sh("c1", "echo hello; echo oops >&2; printf partial; exit 7");
    let created = t.rt.create_container(&cfg).unwrap();
    assert_eq!(created.phase, Phase::Created);
    assert!(created.pid.is_some());
    t.rt.start_container("c1").unwrap();
    let st = t.rt.wait_container("c1", WAIT).unwrap();
    assert_eq!(st.phase, Phase::Exited);
    assert_eq!(st.exit_code, Some(7));
    assert_eq!(st.reason.as_deref(), Some("Error"));
    assert!(st.started_at.is_some() && st.finished_at.is_some());
    let lines = log_lines(&t, "c1");
    let mut body: Vec<(String, String)> = lines
        .iter()
        .map(|(_, s, b)| (s.clone(), b.clone()))
        .collect();
    body.sort();
    assert_eq!(
        body,
        vec![
            ("stderr".into(), "F oops".into()),
            ("stdout".into(), "F hello".into()),
            ("stdout".into(), "F partial".into()),
        ]
    );
    for (ts, _, _) in &lines {
        assert!(
            ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
    // The shim cleaned up its cgroup and libcontainer state after the exit.
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory{}/c1", t.cgroup_parent)).exists()
    );
    t.rt.remove_container("c1").unwrap();
    assert!(t.rt.container_status("c1").is_err());
}

#[test]
fn zero_exit_is_completed_and_env_cwd_hostname_apply() {
    let t = TestRuntime::new("env");
    let mut cfg = t.sh("c2", "echo $FROM_IMAGE $MINE $(pwd) $(hostname) $(id -u)");
    cfg.env = vec![("MINE".into(), "x".into())];
    cfg.working_dir = Some("/tmp".into());
    cfg.hostname = Some("box".into());
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("c2").unwrap();
    let st = t.rt.wait_container("c2", WAIT).unwrap();
    assert_eq!(
        (st.exit_code, st.reason.as_deref()),
        (Some(0), Some("Completed"))
    );
    let lines = log_lines(&t, "c2");
    assert_eq!(lines[0].2, "F 1 x /tmp box 0");
}

#[test]
fn sigterm_ignoring_container_is_killed_after_grace() {
    let t = TestRuntime::new("grace");
    // The shell is pid 1 and traps TERM to nothing; only SIGKILL ends it.
    t.rt.create_container(&t.sh(
        "stubborn",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    ))
    .unwrap();
    t.rt.start_container("stubborn").unwrap();
    let began = Instant::now();
    let st =
        t.rt.stop_container("stubborn", Duration::from_secs(2))
            .unwrap();
    let took = began.elapsed();
    assert_eq!(st.phase, Phase::Exited);
    assert_eq!(st.exit_code, Some(137), "{st:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A container that handles TERM exits at once with its own code.
    t.rt.create_container(&t.sh(
        "polite",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ))
    .unwrap();
    t.rt.start_container("polite").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let st =
        t.rt.stop_container("polite", Duration::from_secs(10))
            .unwrap();
    assert_eq!(st.exit_code, Some(0), "{st:?}");
    assert!(began.elapsed() < Duration::from_secs(3));
}

#[test]
fn memory_limit_is_oom_killed() {
    let t = TestRuntime::new("oom");
    let mut cfg = t.sh(
        "hog",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived",
    );
    cfg.command = vec![
        "dd".into(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=128M".into(),
        "count=1".into(),
    ];
    cfg.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Default::default()
    };
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("hog").unwrap();
    let st = t.rt.wait_container("hog", WAIT).unwrap();
    assert_eq!(st.reason.as_deref(), Some("OOMKilled"), "{st:?}");
    assert_eq!(st.exit_code, Some(137));
}

#[test]
fn confinement_readonly_rootfs_mounts_caps_and_limits() {
    let t = TestRuntime::new("confine");
    let host_dir = t.scratch.path("hostdir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("in"), "from host").unwrap();
    let script = "
        touch /rootfile 2>/dev/null && echo rootfs-writable || echo rootfs-readonly
        cat /data/in; echo
        echo out > /data/out
        touch /scratch/x && echo tmpfs-ok
        grep CapEff /proc/self/status
        cat /proc/kcore >/dev/null 2>&1 && echo kcore-readable || echo kcore-masked
        grep NoNewPrivs /proc/self/status
        ulimit -n
    ";
    let mut cfg = t.sh("conf", script);
    cfg.readonly_rootfs = true;
    cfg.no_new_privileges = true;
    cfg.capabilities_drop = vec!["ALL".into()];
    cfg.capabilities_add = vec!["NET_BIND_SERVICE".into()];
    cfg.rlimits = vec![skiff_runtime::runtime::Rlimit {
        kind: "RLIMIT_NOFILE".into(),
        soft: 321,
        hard: 321,
    }];
    cfg.mounts = vec![
        Mount {
            destination: "/data".into(),
            kind: MountKind::Bind {
                source: host_dir.clone(),
            },
            readonly: false,
        },
        Mount {
            destination: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
            readonly: false,
        },
    ];
    cfg.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        pids_limit: Some(64),
        memory_limit: Some(64 << 20),
        ..Default::default()
    };
    t.rt.create_container(&cfg).unwrap();
    // Limits are in the cgroup before the process starts.
    let cg = |ctl: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{ctl}{}/conf/{file}",
            t.cgroup_parent
        ))
        .unwrap_or_default()
        .trim()
        .to_string()
    };
    if skiff_runtime::cgroups::layout() == skiff_runtime::cgroups::Layout::V1 {
        assert_eq!(cg("cpu", "cpu.shares"), "512");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("pids", "pids.max"), "64");
        assert_eq!(
            cg("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
    }
    t.rt.start_container("conf").unwrap();
    let st = t.rt.wait_container("conf", WAIT).unwrap();
    let out: Vec<String> = log_lines(&t, "conf").into_iter().map(|l| l.2).collect();
    assert_eq!(st.exit_code, Some(0), "{st:?} {out:?}");
    assert_eq!(out[0], "F rootfs-readonly");
    assert_eq!(out[1], "F from host");
    assert_eq!(out[2], "F tmpfs-ok");
    // Only CAP_NET_BIND_SERVICE (bit 10).
    assert_eq!(out[3], "F CapEff:\t0000000000000400");
    assert_eq!(out[4], "F kcore-masked");
    assert_eq!(out[5], "F NoNewPrivs:\t1");
    assert_eq!(out[6], "F 321");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out")).unwrap(),
        "out\n"
    );
}

#[test]
fn exec_exit_code_and_stats() {
    let t = TestRuntime::new("exec");
    t.rt.create_container(&t.sh(
        "svc",
        "echo started > /tmp/marker; while true; do sleep 1; done",
    ))
    .unwrap();
    t.rt.start_container("svc").unwrap();
    let exec = |cmd: &[&str]| {
        t.rt.exec_sync(&ExecRequest {
            container_id: "svc".into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec![("E".into(), "v".into())],
            ..Default::default()
        })
        .unwrap()
    };
    let mut out = exec(&["cat", "/tmp/marker"]);
    for _ in 0..50 {
        if out.exit_code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        out = exec(&["cat", "/tmp/marker"]);
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert_eq!(exec(&["sh", "-c", "exit 3"]).exit_code, 3);
    assert_eq!(
        String::from_utf8_lossy(&exec(&["sh", "-c", "echo $E"]).stdout),
        "v\n"
    );
    // With a terminal: the process sees a tty of the requested size and reads our stdin.
    let mut cmd =
        t.rt.exec_command(&ExecRequest {
            container_id: "svc".into(),
            // The size is applied right after the process starts (with a SIGWINCH), so poll.
            command: vec![
                "sh".into(),
                "-c".into(),
                "tty; i=0; while [ $i -lt 50 ]; do s=$(stty size 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; i=$((i+1)); sleep 0.1; done; echo size $s; read x; echo got $x; exit 5".into(),
            ],
            tty: Some((30, 100)),
            ..Default::default()
        })
        .unwrap();
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("/dev/pts/0\n"), "{text:?}");
    assert!(text.contains("size 30 100\n"), "{text:?}");
    assert!(text.contains("got hello"), "{text:?}");

    // A timed-out exec fails and leaves no process behind in the container.
    let began = Instant::now();
    let err =
        t.rt.exec_sync(&ExecRequest {
            container_id: "svc".into(),
            command: vec!["sh".into(), "-c".into(), "sleep 30".into()],
            timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, skiff_runtime::Error::Timeout(_)), "{err}");
    assert!(began.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let ps = String::from_utf8_lossy(&exec(&["ps"]).stdout).into_owned();
    assert!(!ps.contains("sleep 30"), "{ps}");

    let stats = t.rt.stats("svc").unwrap();
    assert!(stats.pids >= 1, "{stats:?}");
    assert!(
        stats.memory_usage_bytes > 0 && stats.cpu_usage_ns > 0,
        "{stats:?}"
    );
    let st = t.rt.stop_container("svc", Duration::from_secs(1)).unwrap();
    assert_eq!(st.exit_code, Some(137));
}

#[test]
fn recovery_reattaches_live_shims_and_reports_lost_ones() {
    let t = TestRuntime::new("recover");
    t.rt.create_container(&t.sh("live", "echo before; while true; do sleep 1; done"))
        .unwrap();
    t.rt.start_container("live").unwrap();
    t.rt.create_container(&t.sh("done", "exit 4")).unwrap();
    t.rt.start_container("done").unwrap();
    t.rt.wait_container("done", WAIT).unwrap();
    t.rt.create_container(&t.sh("orphan", "while true; do sleep 1; done"))
        .unwrap();
    t.rt.start_container("orphan").unwrap();
    let orphan_shim = t.rt.container_status("orphan").unwrap().shim_pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(orphan_shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A half-created container: a directory with no record.
    std::fs::create_dir_all(t.scratch.path("state/containers/halfway")).unwrap();
    // A writable layer whose state is gone (a reboot emptied the state tmpfs).
    std::fs::create_dir_all(t.scratch.path("root/containers/rebooted/upper/etc")).unwrap();

    // A new runtime instance over the same root stands in for a restarted agent.
    let cfg = skiff_runtime::RuntimeConfig {
        root: t.scratch.path("root"),
        state: t.scratch.path("state"),
        shim: skiff_runtime::shim::client::ShimProgram {
            program: env!("CARGO_BIN_EXE_skiff-runtime-dev").into(),
            prefix: vec!["shim".into()],
        },
        cgroup_parent: t.cgroup_parent.clone(),
    };
    let rt2 = skiff_runtime::LocalRuntime::new(
        cfg,
        std::sync::Arc::new(skiff_runtime::runtime::LoopbackOnly),
    )
    .unwrap();
    let report = rt2.recover().unwrap();
    assert_eq!(report.live, vec!["live".to_string()]);
    assert_eq!(report.exited, vec!["done".to_string()]);
    assert_eq!(report.lost, vec!["orphan".to_string()]);
    assert_eq!(report.cleaned, vec!["halfway".to_string(), "rebooted".to_string()]);
    assert!(!t.scratch.path("root/containers/rebooted").exists());
    assert!(t.scratch.path("root/containers/live/upper").exists(), "live layers stay");
    assert_eq!(rt2.container_status("done").unwrap().exit_code, Some(4));
    let lost = rt2.container_status("orphan").unwrap();
    assert_eq!(
        (lost.phase, lost.reason.as_deref()),
        (Phase::Exited, Some("Unknown"))
    );
    // The live container is still controllable through the new instance, and its log
    // survived the "restart".
    let st = rt2.stop_container("live", Duration::from_secs(1)).unwrap();
    assert_eq!(st.phase, Phase::Exited);
    let lines = log_lines(&t, "live");
    assert_eq!(lines[0].2, "F before");
}

#[test]
fn run_as_user_group_and_supplementary_groups() {
    let t = TestRuntime::new("user");
    let mut cfg = t.sh("u", "echo $(id -u) $(id -g) $(id -G)");
    cfg.user = Some(skiff_runtime::runtime::User {
        uid: 1000,
        gid: Some(3000),
        additional_gids: vec![4000],
    });
    t.rt.create_container(&cfg).unwrap();
    t.rt.start_container("u").unwrap();
    let st = t.rt.wait_container("u", WAIT).unwrap();
    assert_eq!(st.exit_code, Some(0), "{st:?}");
    assert_eq!(log_lines(&t, "u")[0].2, "F 1000 3000 3000 4000");
}

#[test]
fn removing_a_created_container_kills_its_waiting_init() {
    let t = TestRuntime::new("rm-created");
    let st = t.rt.create_container(&t.sh("never", "echo never")).unwrap();
    let pid = st.pid.unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    t.rt.remove_container("never").unwrap();
    assert!(t.rt.container_status("never").is_err());
    assert!(!t.scratch.path("root/containers/never").exists());
    assert!(!t.scratch.path("state/containers/never").exists());
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids{}/never", t.cgroup_parent)).exists()
    );
}

#[test]
fn concurrent_creates_from_a_threaded_driver() {
    let t = TestRuntime::new("concurrent");
    std::thread::scope(|s| {
        for i in 0..10 {
            let t = &t;
            s.spawn(move || {
                let id = format!("c{i}");
                t.rt.create_container(&t.sh(&id, &format!("exit {i}")))
                    .unwrap();
                t.rt.start_container(&id).unwrap();
                let st = t.rt.wait_container(&id, WAIT).unwrap();
                assert_eq!(st.exit_code, Some(i), "{st:?}");
                t.rt.remove_container(&id).unwrap();
            });
        }
    });
    assert!(t.rt.list_containers().unwrap().is_empty());
}

#[test]
fn log_rotation_by_rename_and_reopen() {
    let t = TestRuntime::new("rotate");
    t.rt.create_container(&t.sh(
        "chatty",
        "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done",
    ))
    .unwrap();
    t.rt.start_container("chatty").unwrap();
    let path = t.rt.log_path("chatty").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    t.rt.reopen_log("chatty").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    t.rt.stop_container("chatty", Duration::ZERO).unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(old.contains("stdout F line 1\n"), "{old}");
    assert!(
        !new.is_empty() && !new.contains("stdout F line 1\n"),
        "{new}"
    );
    // No line lost or duplicated across the two files.
    let n = |s: &str| {
        s.lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    let all: Vec<u32> = n(&old).into_iter().chain(n(&new)).collect();
    assert_eq!(all, (1..=all.len() as u32).collect::<Vec<_>>());
}

#[test]
fn driver_killed_during_20_concurrent_creations_leaks_nothing() {
    let t = TestRuntime::new("crash");
    let root = t.scratch.path("root");
    let state = t.scratch.path("state");
    for delay_ms in [150u64, 400] {
        let mut driver = std::process::Command::new(env!("CARGO_BIN_EXE_skiff-runtime-dev"))
            .args([
                "create-many",
                "--root",
                root.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--image",
                "busybox:test",
                "--cgroup-parent",
                &t.cgroup_parent,
                "-n",
                "20",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        driver.kill().unwrap();
        driver.wait().unwrap();

        let report = t.rt.recover().unwrap();
        // Every container is accounted for exactly once, and every listed one can be removed.
        let listed = t.rt.list_containers().unwrap();
        assert_eq!(
            listed.len(),
            report.live.len() + report.exited.len() + report.lost.len(),
            "{report:?}"
        );
        for c in listed {
            t.rt.remove_container(&c.config.id).unwrap();
        }
        let lc_root = state.join("libcontainer").display().to_string();
        // No shim or container process of this root survives.
        std::thread::sleep(Duration::from_millis(100));
        let survivors: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&lc_root) && !c.contains("create-many"))
            .collect();
        assert!(survivors.is_empty(), "{survivors:?}");
        for dir in [root.join("containers"), state.join("containers")] {
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
            assert!(left.is_empty(), "{left:?} {report:?}");
        }
        let lc_left: Vec<_> = std::fs::read_dir(state.join("libcontainer"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(lc_left.is_empty(), "{lc_left:?} {report:?}");
        assert_eq!(
            std::fs::read_dir(root.join("images/leases"))
                .unwrap()
                .count(),
            0
        );
        let cg = std::path::PathBuf::from(format!("/sys/fs/cgroup/pids{}", t.cgroup_parent));
        if cg.exists() {
            let left: Vec<_> = std::fs::read_dir(&cg)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&root.join("containers").display().to_string()));
    }
}

/// A shim idles for its container's whole life, one per container: it must not keep what it
/// needed to create the container (libcontainer state, the spec, buffers). Measured ~0.6 MiB
/// of private anonymous memory with this (release) dev binary; the bound is generous. The
/// `skiff` binary's own allocator choice is checked in crates/skiff/tests/shim_memory.rs.
#[test]
fn idle_shim_keeps_little_private_memory() {
    let t = TestRuntime::new("shim-mem");
    let st = t.rt.create_container(&t.sh("idle", "sleep 3600")).unwrap();
    t.rt.start_container("idle").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let shim = st.shim_pid.unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{shim}/smaps_rollup")).unwrap();
    let anon_kib: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        anon_kib <= 4 * 1024,
        "shim holds {anon_kib} KiB anonymous:\n{rollup}"
    );
    t.rt.remove_container("idle").unwrap();
}

/// Statuses of running containers are remembered while their shim lives (the node agent
/// polls every container each second); an exit, or a shim's death, must still show at once.
#[test]
fn polled_status_follows_exits_and_shim_deaths() {
    let t = TestRuntime::new("polled");
    t.rt.create_container(&t.sh("ends", "sleep 1; exit 5")).unwrap();
    t.rt.start_container("ends").unwrap();
    t.rt.create_container(&t.sh("killed", "while true; do sleep 1; done")).unwrap();
    t.rt.start_container("killed").unwrap();
    assert_eq!(t.rt.container_status("ends").unwrap().phase, Phase::Running);
    let killed = t.rt.container_status("killed").unwrap();
    assert_eq!(killed.phase, Phase::Running);
    assert_eq!(t.rt.container_status("killed").unwrap().phase, Phase::Running, "second read, remembered");

    let deadline = Instant::now() + Duration::from_secs(20);
    let ended = loop {
        let st = t.rt.container_status("ends").unwrap();
        if st.phase != Phase::Running || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((ended.phase, ended.exit_code), (Phase::Exited, Some(5)));

    // The shim dies without recording anything: the container is no longer Running.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed.shim_pid.unwrap()), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.rt.container_status("killed").unwrap().phase == Phase::Running {
        assert!(Instant::now() < deadline, "a dead shim's container still reads Running");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.rt.remove_container("ends").unwrap();
    t.rt.remove_container("killed").unwrap();
}

/// The node agent sleeps on a running container's exit descriptor instead of polling: it
/// must become readable when the container exits, with the exit already recorded, and
/// stay quiet while the container runs.
#[test]
fn exit_fd_wakes_on_exit_with_the_status_recorded() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let t = TestRuntime::new("exitfd");
    t.rt.create_container(&t.sh("ends", "sleep 1; exit 3")).unwrap();
    assert!(t.rt.exit_fd("ends").is_none(), "a created container has none yet");
    t.rt.start_container("ends").unwrap();
    let fd = t.rt.exit_fd("ends").expect("a running container has one");
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "not readable while it runs");
    let started = Instant::now();
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(20_000u16)).unwrap(), 1, "readable once it exited");
    assert!(started.elapsed() >= Duration::from_millis(500), "woke before the exit");
    let st = t.rt.container_status("ends").unwrap();
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(3)));
    assert!(t.rt.exit_fd("ends").is_none(), "an exited container has none");
    t.rt.remove_container("ends").unwrap();
}

/// A pod's containers are found by id prefix without reading the others' records.
#[test]
fn containers_are_listed_by_id_prefix() {
    let t = TestRuntime::new("prefix");
    for id in ["podaaaa-web-0", "podaaaa-web-1", "podbbbb-web-0"] {
        t.rt.create_container(&t.sh(id, "true")).unwrap();
    }
    let mut ids: Vec<String> =
        t.rt.list_containers_with_prefix("podaaaa-").unwrap().into_iter().map(|c| c.config.id).collect();
    ids.sort();
    assert_eq!(ids, ["podaaaa-web-0", "podaaaa-web-1"]);
    assert_eq!(t.rt.list_containers_with_prefix("").unwrap().len(), 3, "an empty prefix lists all");
    assert!(t.rt.list_containers_with_prefix("nothing-").unwrap().is_empty());
    for id in ["podaaaa-web-0", "podaaaa-web-1", "podbbbb-web-0"] {
        t.rt.remove_container(id).unwrap();
    }
}

/// The rootfs overlay is mounted by the container's shim in a mount namespace of its own,
/// not in the host's (where every container create would copy and read it), with paths
/// relative to the container's directory so that its line stays short; the container sees
/// the image through it and writes to its own upper layer.
#[test]
fn rootfs_overlay_is_the_shims_own_with_short_relative_options() {
    let t = TestRuntime::new("rootfs");
    let mut cfg = t.sh("rel", "cat /etc/passwd | head -n1; echo changed > /etc/hostname-copy; cat /etc/hostname-copy");
    cfg.hostname = Some("rel".into());
    t.rt.create_container(&cfg).unwrap();
    let overlay_line = |table: &str| {
        table.lines().find(|l| l.contains("/containers/rel/bundle/rootfs ") && l.contains(" overlay ")).map(str::to_string)
    };
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(overlay_line(&host), None, "the root is mounted in the host's namespace");
    let shim = t.rt.container_status("rel").unwrap().shim_pid.expect("a created container has a shim");
    let line = overlay_line(&std::fs::read_to_string(format!("/proc/{shim}/mountinfo")).unwrap())
        .expect("rootfs overlay mounted in the shim's namespace");
    assert!(line.contains("lowerdir=../../images/") && line.contains(",upperdir=upper,workdir=work"), "{line}");
    t.rt.start_container("rel").unwrap();
    let st = t.rt.wait_container("rel", WAIT).unwrap();
    assert_eq!(st.exit_code, Some(0), "{:?}", log_lines(&t, "rel"));
    let lines = log_lines(&t, "rel");
    assert!(lines[0].2.starts_with("F root:"), "{lines:?}");
    assert_eq!(lines[1].2, "F changed", "the container writes to its own upper layer");
    let upper = t.scratch.path("root/containers/rel/upper/etc/hostname-copy");
    assert_eq!(std::fs::read_to_string(upper).unwrap(), "changed\n");
    t.rt.remove_container("rel").unwrap();
}

/// Shims are forked by the runtime's zygote, not executed, yet look exactly like executed
/// ones where the runtime recognises them: by their command lines. The zygote goes away
/// with the runtime.
#[test]
fn shims_forked_by_the_zygote_carry_their_command_lines() {
    let cmdline = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).into_owned()).unwrap_or_default();
    let children = |parent: u32| -> Vec<i32> {
        let mut out = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{parent}/task")).unwrap().flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
        out
    };
    let t = TestRuntime::new("zygote");
    let own = format!("\0shim\0zygote\0--lc-root\0{}\0--room\0", t.scratch.path("state/libcontainer").display());
    let zygotes = || -> Vec<i32> { children(std::process::id()).into_iter().filter(|p| cmdline(*p).contains(&own)).collect() };
    assert!(zygotes().is_empty(), "started on the first create");
    t.rt.create_container(&t.sh("zy", "sleep 30")).unwrap();
    t.rt.start_container("zy").unwrap();
    let st = t.rt.container_status("zy").unwrap();
    assert_eq!(st.phase, Phase::Running);
    let shim = st.shim_pid.unwrap();
    let line = cmdline(shim);
    assert!(line.contains("\0shim\0create\0--id\0zy\0"), "shim command line: {line:?}");
    assert!(line.contains(&format!("\0--lc-root\0{}\0", t.scratch.path("state/libcontainer").display())), "{line:?}");
    let new = zygotes();
    assert_eq!(new.len(), 1, "one zygote started for the runtime");
    // The zygote's child is the shim itself (it supervises in place, no second fork), in a
    // session of its own so that signals to the zygote's group do not reach it.
    let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let fields: Vec<i32> = stat.rsplit_once(')').unwrap().1.split_whitespace().skip(1).take(3).map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], new[0], "the shim is the zygote's child");
    assert_eq!(fields[2], shim, "the shim leads its own session");
    let st = t.rt.stop_container("zy", Duration::from_secs(1)).unwrap();
    assert_eq!(st.phase, Phase::Exited);
    drop(t);
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !std::path::Path::new(&format!("/proc/{}", new[0])).exists() || cmdline(new[0]).is_empty()
    });
    assert!(gone, "the zygote exits with its runtime");
    let status = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap_or_default();
    assert!(status.is_empty() || status.contains(") Z "), "the shim ended with its container: {status}");
}
