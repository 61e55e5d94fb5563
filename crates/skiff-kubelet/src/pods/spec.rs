//! Translating a pod's container spec into the runtime's [`ContainerConfig`].

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use skiff_api::quantity::Quantity;
use skiff_runtime::runtime::{ContainerConfig, Mount, Resources, SeccompProfile, User};

use super::naming;

/// The default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// CPU shares for a CPU request in millicores, as the kubelet computes them (minimum 2;
/// no request gives 2 for best-effort containers).
pub fn cpu_shares(request_milli: Option<i64>) -> u64 {
    match request_milli {
        None | Some(0) => 2,
        Some(m) => ((m * 1024) / 1000).max(2) as u64,
    }
}

/// CFS quota in microseconds per 100 ms period for a CPU limit in millicores (minimum 1 ms).
pub fn cpu_quota(limit_milli: i64) -> i64 {
    (limit_milli * 100).max(1000)
}

fn quantity(c: &Container, which: &str, name: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let map = if which == "limits" { r.limits.as_ref()? } else { r.requests.as_ref()? };
    Quantity::parse(&map.get(name)?.0).ok()
}

/// Cgroup limits from the container's requests and limits.
pub fn resources(c: &Container) -> Resources {
    let cpu_request = quantity(c, "requests", "cpu").or_else(|| quantity(c, "limits", "cpu"));
    let cpu_limit = quantity(c, "limits", "cpu");
    Resources {
        cpu_shares: Some(cpu_shares(cpu_request.map(|q| q.milli_value()))),
        cpu_quota: cpu_limit.as_ref().map(|q| cpu_quota(q.milli_value())),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: quantity(c, "limits", "memory").map(|q| q.value()),
        pids_limit: None,
    }
}

fn effective_user(pod: &Pod, sc: Option<&SecurityContext>) -> Option<User> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let uid = sc.and_then(|s| s.run_as_user).or_else(|| psc.and_then(|p| p.run_as_user));
    let gid = sc.and_then(|s| s.run_as_group).or_else(|| psc.and_then(|p| p.run_as_group));
    let mut groups: Vec<u32> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = psc.and_then(|p| p.fs_group) {
        groups.push(fs as u32);
    }
    match uid {
        Some(uid) => Some(User { uid: uid as u32, gid: gid.map(|g| g as u32), additional_gids: groups }),
        // Without runAsUser the image's user applies; a group or supplementary groups
        // alone cannot be expressed yet, so they only apply together with a user.
        None => None,
    }
}

/// The container's seccomp profile: its own `securityContext.seccompProfile`, else the
/// pod's, else Unconfined (the kubelet's default while `seccompDefault` is off). Localhost
/// profiles are files under `seccomp_dir` (`<agent root>/seccomp`, the counterpart of
/// `/var/lib/kubelet/seccomp`); a path leaving that directory is refused.
pub fn seccomp_profile(pod: &Pod, sc: Option<&SecurityContext>, seccomp_dir: &Path) -> Result<SeccompProfile, String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let profile = sc.and_then(|s| s.seccomp_profile.as_ref()).or_else(|| psc.and_then(|p| p.seccomp_profile.as_ref()));
    let Some(profile) = profile else {
        return Ok(SeccompProfile::Unconfined);
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(SeccompProfile::RuntimeDefault),
        "Unconfined" => Ok(SeccompProfile::Unconfined),
        "Localhost" => {
            let rel = profile.localhost_profile.as_deref().unwrap_or_default();
            let descending = !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)));
            if !descending {
                return Err(format!("invalid localhostProfile {rel:?}: must be a relative path within the seccomp profile root"));
            }
            Ok(SeccompProfile::Localhost { path: seccomp_dir.join(rel) })
        }
        other => Err(format!("unsupported seccomp profile type {other:?}")),
    }
}

/// Everything the runtime needs to create attempt `attempt` of container `c` of `pod`
/// (`seccomp` from [`seccomp_profile`]).
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    image: &str,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
    seccomp: SeccompProfile,
) -> ContainerConfig {
    let meta = &pod.metadata;
    let uid = meta.uid.as_deref().unwrap_or_default();
    let ns = meta.namespace.as_deref().unwrap_or("default");
    let name = meta.name.as_deref().unwrap_or_default();
    let sc = c.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let expand = |list: &Option<Vec<String>>| -> Vec<String> {
        list.clone().unwrap_or_default().iter().map(|s| expand_vars(s, &env)).collect()
    };
    ContainerConfig {
        id: naming::container_id(uid, &c.name, attempt),
        sandbox_id: Some(naming::sandbox_id(uid)),
        image: image.to_string(),
        command: expand(&c.command),
        args: expand(&c.args),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user: effective_user(pod, sc),
        hostname: None,
        mounts,
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp,
        rlimits: Vec::new(),
        resources: resources(c),
        log_path: None,
        labels: naming::container_labels(uid, ns, name, &c.name, attempt),
        env,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
    }
}

/// Expands `$(VAR)` references in a command or argument from the container's environment
/// (the last definition of a name wins), with the kubelet's escaping rules.
pub fn expand_vars(input: &str, env: &[(String, String)]) -> String {
    crate::env::expand(input, |name| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_and_quota_follow_the_kubelet() {
        assert_eq!(cpu_shares(None), 2);
        assert_eq!(cpu_shares(Some(1)), 2);
        assert_eq!(cpu_shares(Some(250)), 256);
        assert_eq!(cpu_shares(Some(2000)), 2048);
        assert_eq!(cpu_quota(500), 50_000);
        assert_eq!(cpu_quota(1), 1000);
    }

    #[test]
    fn resources_come_from_requests_and_limits() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "64Mi"}}
        }))
        .unwrap();
        let r = resources(&c);
        assert_eq!(r.cpu_shares, Some(102));
        assert_eq!(r.cpu_quota, Some(100_000));
        assert_eq!(r.memory_limit, Some(64 * 1024 * 1024));
    }

    #[test]
    fn seccomp_profile_from_container_then_pod() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let sc = |v: serde_json::Value| -> SecurityContext { serde_json::from_value(v).unwrap() };
        let dir = Path::new("/agent/seccomp");
        let bare = pod(serde_json::json!({"spec": {"containers": []}}));
        assert_eq!(seccomp_profile(&bare, None, dir), Ok(SeccompProfile::Unconfined));
        let p = pod(serde_json::json!({"spec": {"containers": [], "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}));
        assert_eq!(seccomp_profile(&p, None, dir), Ok(SeccompProfile::RuntimeDefault));
        let own = sc(serde_json::json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"}}));
        assert_eq!(
            seccomp_profile(&p, Some(&own), dir),
            Ok(SeccompProfile::Localhost { path: "/agent/seccomp/profiles/a.json".into() })
        );
        let unconf = sc(serde_json::json!({"seccompProfile": {"type": "Unconfined"}}));
        assert_eq!(seccomp_profile(&p, Some(&unconf), dir), Ok(SeccompProfile::Unconfined));
        for bad in ["../x.json", "/etc/x.json", ""] {
            let s = sc(serde_json::json!({"seccompProfile": {"type": "Localhost", "localhostProfile": bad}}));
            assert!(seccomp_profile(&bare, Some(&s), dir).is_err(), "{bad}");
        }
    }

    #[test]
    fn stdin_and_tty_reach_the_runtime() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "uid": "u"}})).unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "stdin": true, "stdinOnce": true, "tty": true
        }))
        .unwrap();
        let cfg = container_config(&pod, &c, 0, "img", Vec::new(), Vec::new(), SeccompProfile::Unconfined);
        assert!(cfg.stdin && cfg.stdin_once && cfg.tty);
        let plain: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let cfg = container_config(&pod, &plain, 0, "img", Vec::new(), Vec::new(), SeccompProfile::Unconfined);
        assert!(!cfg.stdin && !cfg.stdin_once && !cfg.tty);
    }

    #[test]
    fn variables_expand_like_the_kubelet() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())];
        assert_eq!(expand_vars("x$(A)y$(B)", &env), "x1ytwo");
        assert_eq!(expand_vars("$$(A)", &env), "$(A)");
        assert_eq!(expand_vars("$(MISSING) $(A", &env), "$(MISSING) $(A");
        assert_eq!(expand_vars("café $", &env), "café $");
    }
}
