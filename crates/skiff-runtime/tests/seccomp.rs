//! Seccomp profiles on real containers: RuntimeDefault, Unconfined and Localhost, for the
//! container's own process and for exec'd ones, with the capabilities lent for installing
//! the filter gone afterwards. Needs root.

mod common;

use std::time::Duration;

use common::*;
use skiff_runtime::runtime::{ContainerConfig, ExecRequest, SeccompProfile};
use skiff_runtime::Runtime;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// CAP_SYS_ADMIN's bit in the `Cap*` masks of /proc/<pid>/status.
const SYS_ADMIN_BIT: u64 = 1 << 21;

/// Runs a container to completion; returns its exit code and its output lines.
fn run(t: &TestRuntime, cfg: &ContainerConfig) -> (i32, String) {
    if let Err(e) = t.rt.create_container(cfg) {
        let log = std::fs::read_to_string(
            t.scratch
                .path(&format!("state/containers/{}/shim.log", cfg.id)),
        );
        panic!("{e}: {log:?}");
    }
    t.rt.start_container(&cfg.id).unwrap();
    let st = t.rt.wait_container(&cfg.id, WAIT).unwrap();
    let text = std::fs::read_to_string(t.rt.log_path(&cfg.id).unwrap()).unwrap();
    // CRI lines: "<time> <stream> <tag> <text>".
    let out: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    (st.exit_code.unwrap(), out.join("\n"))
}

/// The value of a `Key:\tvalue` line of a status dump.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
        .trim()
}

fn mask(out: &str, key: &str) -> u64 {
    u64::from_str_radix(field(out, key), 16).unwrap()
}

const PROBE: &str =
    "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd|CapInh|CapAmb):' /proc/self/status; \
    unshare -U true 2>&1; echo unshare=$?; ls / >/dev/null && echo ls=ok";

#[test]
fn runtime_default_filters_the_container_and_its_execs() {
    let t = TestRuntime::new("seccomp-default");
    let mut cfg = t.sh("rd", PROBE);
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    let (code, out) = run(&t, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    // User namespaces are refused by the filter (the kernel would allow them).
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(out.contains("ls=ok"), "{out}");
    // allowPrivilegeEscalation defaults to true: no no_new_privs was forced, and the
    // capabilities lent for installing the filter are gone from every set.
    assert_eq!(field(&out, "NoNewPrivs"), "0", "{out}");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(mask(&out, set) & SYS_ADMIN_BIT, 0, "{set} in {out}");
    }
    assert_ne!(mask(&out, "CapEff"), 0, "{out}");

    // A long-running container: exec'd processes get the same filter, with and without a
    // terminal, and ordinary commands work in them.
    let mut svc = t.sh("rd-svc", "while true; do sleep 1; done");
    svc.seccomp = SeccompProfile::RuntimeDefault;
    t.rt.create_container(&svc).unwrap();
    t.rt.start_container("rd-svc").unwrap();
    let exec = |cmd: &str| {
        t.rt.exec_sync(&ExecRequest {
            container_id: "rd-svc".into(),
            command: vec!["sh".into(), "-c".into(), cmd.into()],
            ..Default::default()
        })
        .unwrap()
    };
    let out = exec(PROBE);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(field(&text, "Seccomp"), "2", "{text}");
    assert!(
        text.contains("unshare=1") && text.contains("ls=ok"),
        "{text}"
    );
    assert_eq!(mask(&text, "CapBnd") & SYS_ADMIN_BIT, 0, "{text}");
    let out = exec("echo hi > /tmp/f && cat /tmp/f && ps | grep -c sleep");
    assert_eq!(out.exit_code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hi\n"));

    let child =
        t.rt.exec_command(&ExecRequest {
            container_id: "rd-svc".into(),
            command: vec!["sh".into(), "-c".into(), PROBE.into()],
            tty: Some((24, 80)),
            ..Default::default()
        })
        .unwrap()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(field(&text, "Seccomp"), "2", "{text}");
    assert!(text.contains("unshare=1"), "{text}");
    t.rt.stop_container("rd-svc", Duration::from_secs(1))
        .unwrap();
}

#[test]
fn unconfined_privileged_and_no_new_privs_variants() {
    let t = TestRuntime::new("seccomp-variants");
    // The default is Unconfined: no filter, and the kernel lets root make a user namespace.
    let (code, out) = run(&t, &t.sh("unconf", PROBE));
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");
    assert!(out.contains("unshare=0"), "{out}");

    // Privileged containers run unconfined whatever the profile says.
    let mut cfg = t.sh("priv", PROBE);
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    cfg.privileged = true;
    let (_, out) = run(&t, &cfg);
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");

    // With no_new_privs nothing is lent; with all capabilities dropped none come back.
    let mut cfg = t.sh("nnp", PROBE);
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    cfg.no_new_privileges = true;
    cfg.capabilities_drop = vec!["ALL".into()];
    let (code, out) = run(&t, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "NoNewPrivs"), "1", "{out}");
    assert_eq!(mask(&out, "CapBnd"), 0, "{out}");

    let mut cfg = t.sh("noprivs", PROBE);
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    cfg.capabilities_drop = vec!["ALL".into()];
    let (code, out) = run(&t, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "NoNewPrivs"), "0", "{out}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(mask(&out, set), 0, "{set} in {out}");
    }

    // A non-root user: the lent capabilities still let the filter in, then go.
    let mut cfg = t.sh("nobody", PROBE);
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    cfg.user = Some(skiff_runtime::runtime::User {
        uid: 65534,
        gid: Some(65534),
        additional_gids: vec![],
    });
    let (code, out) = run(&t, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(mask(&out, "CapBnd") & SYS_ADMIN_BIT, 0, "{out}");
    assert_eq!(mask(&out, "CapPrm") & SYS_ADMIN_BIT, 0, "{out}");

    // CAP_SYS_ADMIN granted on purpose opens the mount family, as upstream's default does.
    let mut cfg = t.sh("admin", "mount -t tmpfs none /tmp && echo mounted");
    cfg.seccomp = SeccompProfile::RuntimeDefault;
    cfg.capabilities_add = vec!["SYS_ADMIN".into()];
    let (code, out) = run(&t, &cfg);
    assert_eq!((code, out.as_str()), (0, "mounted"));
}

#[test]
fn localhost_profiles_apply_their_actions_and_a_missing_one_fails_creation() {
    let t = TestRuntime::new("seccomp-localhost");
    let dir = t.scratch.path("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let errno = dir.join("no-mkdir.json");
    std::fs::write(
        &errno,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_KILL"}]}"#,
    )
    .unwrap();
    let mut cfg = t.sh(
        "lh",
        "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo mkdir=$?; touch /tmp/y && echo touch=ok",
    );
    cfg.seccomp = SeccompProfile::Localhost {
        path: errno.clone(),
    };
    let (code, out) = run(&t, &cfg);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert!(
        out.contains("Permission denied") && out.contains("mkdir=1"),
        "{out}"
    );
    assert!(out.contains("touch=ok"), "{out}");
    // SCMP_ACT_KILL: the exec'd `chmod` dies of SIGSYS (31).
    let exec_kill = {
        let mut svc = t.sh("lh-svc", "while true; do sleep 1; done");
        svc.seccomp = SeccompProfile::Localhost { path: errno };
        t.rt.create_container(&svc).unwrap();
        t.rt.start_container("lh-svc").unwrap();
        let r =
            t.rt.exec_sync(&ExecRequest {
                container_id: "lh-svc".into(),
                command: ["busybox", "chmod", "600", "/etc/passwd"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            })
            .unwrap();
        t.rt.stop_container("lh-svc", Duration::from_secs(1))
            .unwrap();
        eprintln!(
            "chmod exec: {} {:?} {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        r.exit_code
    };
    assert_eq!(exec_kill, 128 + 31);

    let missing = dir.join("missing.json");
    let mut cfg = t.sh("lh-missing", "true");
    cfg.seccomp = SeccompProfile::Localhost {
        path: missing.clone(),
    };
    let err = t.rt.create_container(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "container lh-missing: cannot load seccomp profile {:?}: no such file or directory",
            missing.display().to_string()
        )
    );
    // Nothing of the failed container is left.
    assert!(t.rt.container_status("lh-missing").is_err());
    assert!(!t.scratch.path("root/containers/lh-missing").exists());
    assert!(!t.scratch.path("state/containers/lh-missing").exists());
}
