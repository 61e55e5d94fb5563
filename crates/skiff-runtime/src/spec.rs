//! OCI runtime spec generation: merges the image config with the container config as
//! Kubernetes does and adds the confinement defaults every container gets.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::image::manifest::ImageConfig;
use crate::runtime::types::{ContainerConfig, MountKind, User};

/// The capabilities a non-privileged container gets by default (the set Docker and
/// containerd grant).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths hidden from non-privileged containers because they leak host information.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in non-privileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The process a container runs, after merging image and container config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProcess {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Identity.
    pub user: User,
    /// The primary group: the user's own, else the image's `/etc/passwd` entry, else 0.
    pub gid: u32,
}

/// The image's own files, read from its layers (topmost first) before any container root is
/// mounted: a container's root is mounted only inside its shim's mount namespace (see
/// `runtime/rootfs.rs`), so the agent looks names up (`/etc/passwd`, `/etc/group`) here.
#[derive(Debug, Clone, Default)]
pub struct ImageFiles(pub Vec<PathBuf>);

impl ImageFiles {
    /// The text of the image's regular file at `rel` (relative to its root): the topmost
    /// layer that has the path decides; an overlay whiteout there (a 0:0 character device)
    /// means the file was deleted. Symbolic links are not followed: one could point out of
    /// the image into the host's file system.
    pub fn read(&self, rel: &str) -> Option<String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        for layer in &self.0 {
            let path = layer.join(rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                return None;
            }
            return kind.is_file().then(|| std::fs::read_to_string(&path).ok()).flatten();
        }
        None
    }
}

/// Applies Kubernetes' rules: `command` replaces the entrypoint and drops the image cmd,
/// `args` replaces the cmd; env entries override the image's by name.
pub fn resolve_process(
    cfg: &ContainerConfig,
    image: &ImageConfig,
    files: &ImageFiles,
) -> Result<ResolvedProcess> {
    let defaults = image.config.clone().unwrap_or_default();
    let entrypoint = defaults.entrypoint.unwrap_or_default();
    let cmd = defaults.cmd.unwrap_or_default();
    let args = match (cfg.command.is_empty(), cfg.args.is_empty()) {
        (false, true) => cfg.command.clone(),
        (false, false) => cfg.command.iter().chain(&cfg.args).cloned().collect(),
        (true, false) => entrypoint.iter().chain(&cfg.args).cloned().collect(),
        (true, true) => entrypoint.iter().chain(&cmd).cloned().collect(),
    };
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {}: no command given and the image has no entrypoint or cmd",
            cfg.id
        )));
    }
    let mut env: Vec<String> = defaults.env.unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    for (k, v) in &cfg.env {
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
    }
    // A terminal needs a type; containerd and Docker set xterm unless one is given.
    if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = cfg
        .working_dir
        .clone()
        .or(defaults.working_dir.filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let user = match &cfg.user {
        Some(u) => u.clone(),
        None => match defaults.user.as_deref() {
            None | Some("") => User::default(),
            Some(spec) => parse_image_user(spec, files)?,
        },
    };
    let gid = primary_gid(&user, files);
    Ok(ResolvedProcess {
        args,
        env,
        cwd,
        user,
        gid,
    })
}

/// Parses an image `USER` (`uid`, `uid:gid`, `name`, `name:group`), looking names up in the
/// image's own `/etc/passwd` and `/etc/group`.
fn parse_image_user(spec: &str, files: &ImageFiles) -> Result<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str, field: usize| -> Option<u32> {
        let text = files.read(file)?;
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name))
            .and_then(|f| f.get(field)?.parse().ok())
    };
    let uid = u
        .parse()
        .ok()
        .or_else(|| lookup("etc/passwd", u, 2))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "image user {u:?} not found in the image's /etc/passwd"
            ))
        })?;
    let gid = match g {
        Some(g) => Some(
            g.parse()
                .ok()
                .or_else(|| lookup("etc/group", g, 2))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "image group {g:?} not found in the image's /etc/group"
                    ))
                })?,
        ),
        None => None,
    };
    Ok(User {
        uid,
        gid,
        additional_gids: Vec::new(),
    })
}

/// The user's primary group: the configured one, else the image's `/etc/passwd` entry, else 0.
pub fn primary_gid(user: &User, files: &ImageFiles) -> u32 {
    user.gid.unwrap_or_else(|| {
        files
            .read("etc/passwd")
            .and_then(|t| {
                t.lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(user.uid))
                    .and_then(|f| f.get(3)?.parse().ok())
            })
            .unwrap_or(0)
    })
}

fn normalize_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// "All capabilities" as containerd means it for privileged containers: all those this
/// process may hold (its bounding set), since asking for one beyond it fails the container.
fn all_current_capabilities() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).ok();
    ALL_CAPABILITIES
        .iter()
        .filter(|name| match (&bounding, name.parse::<caps::Capability>()) {
            (Some(set), Ok(cap)) => set.contains(&cap),
            _ => true,
        })
        .map(|s| s.to_string())
        .collect()
}

/// The effective capability set after add/drop (`ALL` is understood in both).
pub fn capabilities(cfg: &ContainerConfig) -> Vec<String> {
    if cfg.privileged {
        return all_current_capabilities();
    }
    let drop: Vec<String> = cfg
        .capabilities_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect();
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in &cfg.capabilities_add {
        let add = normalize_cap(add);
        if add == "CAP_ALL" {
            return all_current_capabilities();
        }
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

/// Where a container's namespaces and pod files come from.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSetup {
    /// Join these (`network`, `ipc`, `uts`) by path instead of creating new ones.
    pub join: Vec<(&'static str, PathBuf)>,
    /// Files to bind into the container: (host path, container path), such as
    /// `/etc/hosts` and `/etc/resolv.conf` from the sandbox.
    pub files: Vec<(PathBuf, String)>,
    /// The container shares the host network (no network namespace, `/sys` bound).
    pub host_network: bool,
    /// The pod's `/dev/shm`, bound instead of a private tmpfs.
    pub shm: Option<PathBuf>,
}

/// Builds the OCI runtime spec (`config.json`) for a container whose root filesystem is
/// mounted at `rootfs`; `seccomp` is its resolved `linux.seccomp` profile, if any.
pub fn build_spec(
    cfg: &ContainerConfig,
    process: &ResolvedProcess,
    rootfs: &Path,
    ns: &NamespaceSetup,
    cgroups_path: &str,
    seccomp: Option<&Value>,
) -> Result<Value> {
    let mut caps = capabilities(cfg);
    // Without no_new_privs, the shim needs these to install the filter; it drops them
    // before exec (see `crate::seccomp`).
    let temporary: Vec<&str> = match seccomp {
        Some(_) if !cfg.no_new_privileges => crate::seccomp::INSTALL_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| !caps.iter().any(|have| have == c))
            .collect(),
        _ => Vec::new(),
    };
    caps.extend(temporary.iter().map(|c| c.to_string()));
    let gid = process.gid;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    mounts.push(match &ns.shm {
        Some(dir) => json!({"destination": "/dev/shm", "type": "bind", "source": dir, "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]}),
        None => json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    });
    if ns.host_network {
        // sysfs can only be mounted by the owner of the network namespace, so a container on
        // the host network gets the host's /sys bound read-only instead.
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}));
    } else {
        mounts.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    }
    for (src, dst) in &ns.files {
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    for m in &cfg.mounts {
        let ro = if m.readonly { "ro" } else { "rw" };
        mounts.push(match &m.kind {
            MountKind::Bind { source } => {
                json!({"destination": m.destination, "type": "bind", "source": source, "options": ["rbind", "rprivate", ro]})
            }
            MountKind::Tmpfs { size } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string(), "mode=1777".to_string(), ro.to_string()];
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
        });
    }
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    for kind in ["network", "ipc", "uts"] {
        if kind == "network" && ns.host_network {
            continue;
        }
        match ns.join.iter().find(|(k, _)| *k == kind) {
            Some((_, path)) => namespaces.push(json!({"type": kind, "path": path})),
            None => namespaces.push(json!({"type": kind})),
        }
    }
    let mut resources = json!({
        "devices": [{"allow": cfg.privileged, "access": "rwm"}],
    });
    let r = &cfg.resources;
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = r.cpu_quota {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(r.cpu_period.unwrap_or(100_000)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(m) = r.memory_limit {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(p) = r.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let hostname = cfg.hostname.clone().unwrap_or_else(|| cfg.id.clone());
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": resources,
    });
    if !cfg.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(profile) = seccomp {
        linux["seccomp"] = profile.clone();
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": cfg.tty,
            "user": {"uid": process.user.uid, "gid": gid, "additionalGids": process.user.additional_gids},
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": cfg.rlimits.iter().map(|l| json!({"type": l.kind, "soft": l.soft, "hard": l.hard})).collect::<Vec<_>>(),
            "noNewPrivileges": cfg.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": cfg.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if !temporary.is_empty() {
        spec["annotations"] =
            json!({ crate::seccomp::TEMPORARY_CAPS_ANNOTATION: temporary.join(",") });
    }
    // The uts namespace is the sandbox's when joined; its hostname was set there.
    if !ns.join.iter().any(|(k, _)| *k == "uts") {
        spec["hostname"] = json!(hostname);
    }
    // Round-trip through the typed spec so that a malformed document fails here, with the
    // container named, rather than deep inside the shim.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()).map_err(|e| {
        Error::InvalidArgument(format!(
            "container {}: generated spec is invalid: {e}",
            cfg.id
        ))
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{ProcessDefaults, RootFs};

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            config: Some(ProcessDefaults {
                entrypoint: Some(entrypoint.iter().map(|s| s.to_string()).collect()),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
                working_dir: Some("/work".into()),
                user: None,
            }),
            rootfs: RootFs::default(),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_files_come_from_the_topmost_layer_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let (top, middle, bottom) = (dir.path().join("top"), dir.path().join("middle"), dir.path().join("bottom"));
        for d in [&top, &middle, &bottom] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
        }
        std::fs::write(bottom.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(middle.join("etc/passwd"), "app:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        std::fs::write(bottom.join("etc/group"), "app:x:1001:\n").unwrap();
        let files = ImageFiles(vec![top.clone(), middle.clone(), bottom.clone()]);
        assert!(files.read("etc/passwd").unwrap().starts_with("app:"), "middle hides bottom");
        assert_eq!(files.read("etc/group").as_deref(), Some("app:x:1001:\n"));
        let user = parse_image_user("app", &files).unwrap();
        assert_eq!((user.uid, primary_gid(&user, &files)), (1000, 1001));
        // A whiteout in the top layer deletes the file; a symlink is not followed.
        nix::sys::stat::mknod(&top.join("etc/passwd"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap();
        assert_eq!(files.read("etc/passwd"), None);
        std::os::unix::fs::symlink("/etc/hostname", top.join("etc/group")).unwrap();
        assert_eq!(files.read("etc/group"), None);
        assert!(parse_image_user("app", &files).is_err(), "the name is gone with the file");
    }

    #[test]
    fn command_and_args_merge_like_kubernetes() {
        let img = image(&["/ep"], &["c1"]);
        let mut cfg = ContainerConfig {
            id: "c".into(),
            ..Default::default()
        };
        let p = |cfg: &ContainerConfig| {
            resolve_process(cfg, &img, &ImageFiles::default())
                .unwrap()
                .args
        };
        assert_eq!(p(&cfg), v(&["/ep", "c1"]));
        cfg.args = v(&["a1"]);
        assert_eq!(p(&cfg), v(&["/ep", "a1"]));
        cfg.command = v(&["/cmd"]);
        assert_eq!(p(&cfg), v(&["/cmd", "a1"]));
        cfg.args.clear();
        assert_eq!(p(&cfg), v(&["/cmd"]));
    }

    #[test]
    fn env_overrides_and_workdir() {
        let img = image(&[], &["sh"]);
        let cfg = ContainerConfig {
            id: "c".into(),
            env: vec![("A".into(), "ctr".into()), ("B".into(), "1".into())],
            ..Default::default()
        };
        let p = resolve_process(&cfg, &img, &ImageFiles::default()).unwrap();
        assert_eq!(p.env, v(&["PATH=/bin", "A=ctr", "B=1"]));
        assert_eq!(p.cwd, "/work");
    }

    #[test]
    fn capabilities_add_and_drop() {
        let mut cfg = ContainerConfig {
            capabilities_drop: v(&["net_raw"]),
            capabilities_add: v(&["NET_ADMIN"]),
            ..Default::default()
        };
        let caps = capabilities(&cfg);
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        cfg.capabilities_drop = v(&["ALL"]);
        assert_eq!(capabilities(&cfg), v(&["CAP_NET_ADMIN"]));
    }

    #[test]
    fn spec_is_valid_oci_and_joins_sandbox_namespaces() {
        let cfg = ContainerConfig {
            id: "c1".into(),
            readonly_rootfs: true,
            resources: crate::runtime::types::Resources {
                memory_limit: Some(1 << 24),
                cpu_quota: Some(50_000),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = resolve_process(&cfg, &image(&[], &["sh"]), &ImageFiles::default()).unwrap();
        let ns = NamespaceSetup {
            join: vec![("network", "/x/net".into())],
            ..Default::default()
        };
        let spec = build_spec(&cfg, &p, Path::new("/r"), &ns, "/skiff/c1", None).unwrap();
        let nss = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(nss
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/x/net"));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 1 << 24);
        assert_eq!(spec["root"]["readonly"], true);
        assert!(spec["linux"].get("seccomp").is_none());
    }

    #[test]
    fn seccomp_borrows_install_capabilities_unless_no_new_privs() {
        let mut cfg = ContainerConfig {
            id: "c1".into(),
            capabilities_drop: v(&["ALL"]),
            capabilities_add: v(&["CHOWN"]),
            ..Default::default()
        };
        let p = resolve_process(&cfg, &image(&[], &["sh"]), &ImageFiles::default()).unwrap();
        let profile = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        let ns = NamespaceSetup::default();
        let spec = build_spec(&cfg, &p, Path::new("/r"), &ns, "/c", Some(&profile)).unwrap();
        assert_eq!(spec["linux"]["seccomp"], profile);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"],
            json!(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SETPCAP"])
        );
        assert_eq!(
            spec["annotations"][crate::seccomp::TEMPORARY_CAPS_ANNOTATION],
            "CAP_SYS_ADMIN,CAP_SETPCAP"
        );
        cfg.no_new_privileges = true;
        let spec = build_spec(&cfg, &p, Path::new("/r"), &ns, "/c", Some(&profile)).unwrap();
        assert_eq!(
            spec["process"]["capabilities"]["bounding"],
            json!(["CAP_CHOWN"])
        );
        assert!(spec.get("annotations").is_none());
    }
}
