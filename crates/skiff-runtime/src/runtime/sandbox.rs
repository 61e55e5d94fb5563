//! Pod sandboxes on the agent side: pod files, the namespace helper, the network hook and
//! teardown.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

use super::types::{SandboxConfig, SandboxInfo};
use crate::error::{Error, IoContext, Result, SysContext};

/// Where the pod network plugs in: called after the sandbox's namespaces exist and before
/// they are torn down. The network namespace file is `sandbox.ns_dir.join("net")`.
pub trait NetworkHook: Send + Sync {
    /// Connects the sandbox (veth, address, routes). An error fails the sandbox creation.
    fn setup(&self, sandbox: &SandboxInfo) -> Result<()>;
    /// Disconnects it. Must be idempotent.
    fn teardown(&self, sandbox: &SandboxInfo) -> Result<()>;
}

/// A network hook that does nothing: pods get only their loopback interface.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackOnly;

impl NetworkHook for LoopbackOnly {
    fn setup(&self, _: &SandboxInfo) -> Result<()> {
        Ok(())
    }
    fn teardown(&self, _: &SandboxInfo) -> Result<()> {
        Ok(())
    }
}

pub(super) const NS_KINDS: &[(&str, &str)] = &[("network", "net"), ("ipc", "ipc"), ("uts", "uts")];

pub(super) fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("sandboxes").join(id)
}

pub(super) fn load(root: &Path, id: &str) -> Result<SandboxInfo> {
    let path = dir(root, id).join("sandbox.json");
    let bytes = std::fs::read(&path).map_err(|_| Error::NotFound {
        kind: "sandbox",
        id: id.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "sandbox",
        path,
        source,
    })
}

pub(super) fn create(
    root: &Path,
    net: &dyn NetworkHook,
    pins: &super::pins::PinHolder,
    config: &SandboxConfig,
) -> Result<SandboxInfo> {
    crate::error::validate_id(&config.id)?;
    let d = dir(root, &config.id);
    std::fs::create_dir_all(root.join("sandboxes")).ctx("create dir", root.join("sandboxes"))?;
    if let Err(e) = std::fs::create_dir(&d) {
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::AlreadyExists {
                kind: "sandbox",
                id: config.id.clone(),
            }
        } else {
            Error::Io {
                what: "create sandbox dir",
                path: d,
                source: e,
            }
        });
    }
    let mut info = SandboxInfo {
        config: config.clone(),
        ns_dir: d.join("ns"),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    let result = (|| {
        write_pod_files(&d, config)?;
        info.ns_dir = pins.pin(&info.ns_dir, &config.hostname, config.host_network)?;
        if config.shared_shm {
            mount_shm(&d.join("shm"))?;
        }
        net.setup(&info)?;
        let path = d.join("sandbox.json");
        let bytes = serde_json::to_vec_pretty(&info).map_err(|source| Error::Json {
            what: "sandbox",
            path: path.clone(),
            source,
        })?;
        // Not fsynced: a sandbox's namespaces do not outlive the machine, and the page cache
        // outlives any crash of the agent.
        crate::image::write_replace(&path, &bytes)
    })();
    match result {
        Ok(()) => Ok(info),
        Err(e) => {
            let _ = net.teardown(&info);
            teardown_dir(&d);
            Err(e)
        }
    }
}

/// The pod's one `/dev/shm` (see [`SandboxConfig::shared_shm`]), as the shared IPC namespace
/// implies.
fn mount_shm(shm: &Path) -> Result<()> {
    std::fs::create_dir_all(shm).ctx("create pod shm", shm)?;
    nix::mount::mount(
        Some("shm"),
        shm,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .sys(|| format!("mount pod shm at {}", shm.display()))
}

fn write_pod_files(d: &Path, config: &SandboxConfig) -> Result<()> {
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        config.hostname
    );
    for (ip, names) in &config.hosts {
        hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    let resolv = if config.dns.is_empty() {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        config.dns.join("\n") + "\n"
    };
    for (name, content) in [
        ("hosts", hosts),
        ("resolv.conf", resolv),
        ("hostname", format!("{}\n", config.hostname)),
    ] {
        let p = d.join(name);
        std::fs::write(&p, content).ctx("write pod file", &p)?;
    }
    Ok(())
}

/// Removes the sandbox directory, which unpins its namespaces (removing a pin's file
/// detaches the mount on it in the pin holder's namespace; the unmounts are for pins an agent
/// of an earlier version made in the host's); tolerant of partial state.
pub(super) fn teardown_dir(d: &Path) {
    for (_, file) in NS_KINDS {
        let p = d.join("ns").join(file);
        let _ = umount2(&p, MntFlags::MNT_DETACH);
    }
    let _ = umount2(&d.join("shm"), MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(d);
}

pub(super) fn remove(root: &Path, net: &dyn NetworkHook, id: &str) -> Result<()> {
    crate::error::validate_id(id)?;
    let d = dir(root, id);
    if let Ok(info) = load(root, id) {
        net.teardown(&info)?;
    }
    teardown_dir(&d);
    Ok(())
}

/// The pod's shared `/dev/shm` directory, if it has one.
pub(super) fn shm_dir(root: &Path, id: &str) -> Option<PathBuf> {
    Some(dir(root, id).join("shm")).filter(|d| d.is_dir())
}

/// The files a container of this sandbox gets bound: (host path, container path).
pub(super) fn pod_files(root: &Path, id: &str) -> Vec<(PathBuf, String)> {
    let d = dir(root, id);
    vec![
        (d.join("hosts"), "/etc/hosts".into()),
        (d.join("resolv.conf"), "/etc/resolv.conf".into()),
        (d.join("hostname"), "/etc/hostname".into()),
    ]
}
