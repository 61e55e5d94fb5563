//! Seccomp profiles end to end with the real kubectl and real containers: a pod-level
//! RuntimeDefault profile filters the container and `kubectl exec` processes, a container's
//! own profile (Unconfined, Localhost) wins over the pod's, and a missing Localhost profile
//! leaves the container waiting with CreateContainerError.
//!
//! Needs root (namespaces, cgroups, mounts) and busybox-static (the test image).

mod common;

use std::time::Duration;

use anyhow::Result;
use skiff_testkit::Cluster;

const IMAGE: &str = "skiff.test/busybox:1";

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<()> {
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], manifest)?;
    anyhow::ensure!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A pod with the pod-level `seccompProfile` `pod_profile` (JSON or empty) and one container
/// running `script` with `container_profile`.
fn pod(name: &str, pod_profile: &str, container_profile: &str, script: &str) -> String {
    let psc = if pod_profile.is_empty() {
        String::new()
    } else {
        format!(r#""securityContext": {{"seccompProfile": {pod_profile}}},"#)
    };
    let csc = if container_profile.is_empty() {
        String::new()
    } else {
        format!(r#""securityContext": {{"seccompProfile": {container_profile}}},"#)
    };
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{{psc} "terminationGracePeriodSeconds": 1,
              "containers": [{{"name": "c", "image": "{IMAGE}", {csc} "command": ["sh", "-c", "{script}"]}}]}}}}"#
    )
}

/// `Seccomp:` of a process in the pod, through `kubectl exec`.
fn seccomp_mode(cluster: &Cluster, pod: &str, pid: &str) -> Result<String> {
    let out = cluster.ok(&[
        "exec",
        pod,
        "--",
        "grep",
        "Seccomp:",
        &format!("/proc/{pid}/status"),
    ])?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

#[test]
fn seccomp_profiles_from_the_pod_spec() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = Cluster::start_with_agent(common::skiff_binary(), &[])?;
    let archive = cluster.data_dir().join("busybox.tar");
    skiff_testkit::images::write_busybox_archive(&archive, IMAGE);
    cluster.import_image(&archive)?;
    // Localhost profiles live under the agent's root, as under /var/lib/kubelet/seccomp.
    let profiles = cluster.data_dir().join("agent/seccomp/profiles");
    std::fs::create_dir_all(&profiles)?;
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )?;

    let rd = r#"{"type": "RuntimeDefault"}"#;
    apply(&cluster, &pod("rd", rd, "", "sleep 3600"))?;
    apply(
        &cluster,
        &pod("uc", rd, r#"{"type": "Unconfined"}"#, "sleep 3600"),
    )?;
    apply(
        &cluster,
        &pod(
            "lh",
            "",
            r#"{"type": "Localhost", "localhostProfile": "profiles/no-mkdir.json"}"#,
            "sleep 3600",
        ),
    )?;
    apply(
        &cluster,
        &pod(
            "missing",
            "",
            r#"{"type": "Localhost", "localhostProfile": "profiles/nope.json"}"#,
            "sleep 3600",
        ),
    )?;
    cluster.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/rd",
        "pod/uc",
        "pod/lh",
        "--timeout=90s",
    ])?;

    // The API keeps the field as written.
    assert_eq!(
        cluster.ok(&[
            "get",
            "pod",
            "rd",
            "-o",
            "jsonpath={.spec.securityContext.seccompProfile.type}"
        ])?,
        "RuntimeDefault"
    );
    // RuntimeDefault: the container's process and exec'd processes are filtered; ordinary
    // commands work, a user namespace is refused.
    assert_eq!(seccomp_mode(&cluster, "rd", "1")?, "2");
    assert_eq!(seccomp_mode(&cluster, "rd", "self")?, "2");
    let out = cluster.kubectl(&[
        "exec",
        "rd",
        "--",
        "sh",
        "-c",
        "ls / >/dev/null && echo ls-ok; unshare -U true; echo rc=$?",
    ])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ls-ok") && text.contains("rc=1") && text.contains("Operation not permitted"),
        "{text}"
    );

    // The container's Unconfined wins over the pod's RuntimeDefault.
    assert_eq!(seccomp_mode(&cluster, "uc", "1")?, "0");
    let out = cluster.ok(&[
        "exec",
        "uc",
        "--",
        "sh",
        "-c",
        "unshare -U true; echo rc=$?",
    ])?;
    assert!(out.contains("rc=0"), "{out}");

    // Localhost: the profile's own rules.
    assert_eq!(seccomp_mode(&cluster, "lh", "1")?, "2");
    let out = cluster.kubectl(&["exec", "lh", "--", "sh", "-c", "mkdir /tmp/d; echo rc=$?"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Operation not permitted") && text.contains("rc=1"),
        "{text}"
    );

    // A missing Localhost profile: the container never gets created.
    let mut waiting = String::new();
    cluster.eventually(Duration::from_secs(60), "CreateContainerError for the missing profile", || {
        waiting = cluster
            .ok(&["get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}"])
            .unwrap_or_default();
        waiting.starts_with("CreateContainerError|")
    })?;
    assert!(
        waiting.contains("cannot load seccomp profile") && waiting.contains("nope.json"),
        "{waiting}"
    );
    let events = cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    assert!(events.contains("nope.json"), "{events}");

    // The API server refuses malformed profiles with upstream's field errors.
    let out = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod(
            "bad",
            r#"{"type": "Localhost"}"#,
            r#"{"type": "Localhost", "localhostProfile": "../x.json"}"#,
            "true",
        ),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost"),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: "../x.json": must not contain '..'"#),
        "{err}"
    );

    cluster.ok(&[
        "delete",
        "pod",
        "rd",
        "uc",
        "lh",
        "missing",
        "--wait=true",
        "--timeout=60s",
    ])?;
    Ok(())
}
