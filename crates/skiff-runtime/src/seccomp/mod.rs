//! Seccomp for containers without libseccomp: profiles are resolved when a container is
//! created (built-in `RuntimeDefault`, or an OCI-format `Localhost` file) and written into
//! the bundle's `config.json` as `linux.seccomp`; the shim compiles that to classic BPF
//! ([`bpf`]) and installs it in the container's process right before `exec`
//! (`shim::confine`), for the init process and for every exec'd process alike.
//!
//! libcontainer is built without its libseccomp feature, so it ignores `linux.seccomp`.
//! Installing a filter needs `no_new_privs` or CAP_SYS_ADMIN, and Kubernetes sets
//! `no_new_privs` only for `allowPrivilegeEscalation: false`. So when it is not set, the spec
//! grants CAP_SYS_ADMIN (and CAP_SETPCAP, to shrink the bounding set) for the moment of
//! installation; the shim drops them again before `exec`. The annotation
//! [`TEMPORARY_CAPS_ANNOTATION`] lists what to drop.

pub mod bpf;
mod default_profile;
#[cfg(target_arch = "x86_64")]
pub mod syscalls;

/// Non-x86_64 builds know no system call names, so every profile fails to compile there
/// rather than compiling to a filter with the wrong numbers.
#[cfg(not(target_arch = "x86_64"))]
pub mod syscalls {
    /// No table on this architecture.
    pub const SYSCALLS: &[(&str, i64)] = &[];
    /// Always `None` on this architecture.
    pub fn number(_name: &str) -> Option<u32> {
        None
    }
}

use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::Value;

pub use bpf::{compile, Filter};
pub use default_profile::runtime_default;

use crate::error::{Error, Result};
use crate::runtime::types::{ContainerConfig, SeccompProfile};

/// Annotation on the OCI spec naming the capabilities (comma-separated) that the spec
/// grants only so that the filter can be installed; the shim drops them before `exec`.
pub const TEMPORARY_CAPS_ANNOTATION: &str = "run.skiff.seccomp.temporary-capabilities";

/// The capabilities installing a filter needs without `no_new_privs`: CAP_SYS_ADMIN for
/// `seccomp(2)` itself, CAP_SETPCAP to take CAP_SYS_ADMIN out of the bounding set again.
pub const INSTALL_CAPABILITIES: &[&str] = &["CAP_SYS_ADMIN", "CAP_SETPCAP"];

/// The `linux.seccomp` document for a container, or `None` when it runs unconfined.
/// `caps` is the container's final capability set, which `RuntimeDefault` adapts to.
/// A Localhost profile that is missing, malformed or uncompilable is an error here, so that
/// creating the container fails with the reason.
pub fn resolve(cfg: &ContainerConfig, caps: &[String]) -> Result<Option<Value>> {
    if cfg.privileged {
        return Ok(None);
    }
    let err = |profile: &str, reason: String| Error::Seccomp {
        id: cfg.id.clone(),
        profile: profile.to_string(),
        reason,
    };
    let doc = match &cfg.seccomp {
        SeccompProfile::Unconfined => return Ok(None),
        SeccompProfile::RuntimeDefault => runtime_default(caps),
        SeccompProfile::Localhost { path } => {
            load_localhost(path).map_err(|reason| err(&path.display().to_string(), reason))?
        }
    };
    let name = match &cfg.seccomp {
        SeccompProfile::Localhost { path } => path.display().to_string(),
        _ => "RuntimeDefault".to_string(),
    };
    let typed: LinuxSeccomp =
        serde_json::from_value(doc.clone()).map_err(|e| err(&name, e.to_string()))?;
    compile(&typed).map_err(|e| err(&name, e.to_string()))?;
    Ok(Some(doc))
}

fn load_localhost(path: &Path) -> std::result::Result<Value, String> {
    if !path.is_absolute() {
        return Err("the path must be absolute".into());
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))
}

/// Installs a compiled filter on the calling thread.
#[allow(unsafe_code)]
pub fn install(filter: &Filter) -> std::io::Result<()> {
    // The kernel's `struct sock_fprog`: a length and a pointer to the instructions.
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const bpf::SockFilter,
    }
    let prog = SockFprog {
        len: filter.program.len() as u16,
        filter: filter.program.as_ptr(),
    };
    // SAFETY: `prog` points at `filter.program`, which outlives the call; the kernel copies
    // the instructions and verifies them before attaching the filter. `SockFilter` has the
    // layout of `struct sock_filter` (repr(C), u16/u8/u8/u32).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            filter.flags as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seccomp: SeccompProfile) -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            seccomp,
            ..Default::default()
        }
    }

    #[test]
    fn unconfined_and_privileged_get_no_filter() {
        assert_eq!(
            resolve(&cfg(SeccompProfile::Unconfined), &[]).unwrap(),
            None
        );
        let mut c = cfg(SeccompProfile::RuntimeDefault);
        c.privileged = true;
        assert_eq!(resolve(&c, &[]).unwrap(), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn localhost_profiles_load_or_fail_clearly() {
        let dir = std::env::temp_dir().join(format!("skiff-seccomp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let doc = resolve(&cfg(SeccompProfile::Localhost { path: good }), &[])
            .unwrap()
            .unwrap();
        assert_eq!(doc["defaultAction"], "SCMP_ACT_ALLOW");

        let missing = dir.join("missing.json");
        let e = resolve(
            &cfg(SeccompProfile::Localhost {
                path: missing.clone(),
            }),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "container c1: cannot load seccomp profile {:?}: no such file or directory",
                missing.display().to_string()
            )
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#).unwrap();
        let e = resolve(&cfg(SeccompProfile::Localhost { path: bad }), &[]).unwrap_err();
        assert!(e.to_string().contains("SCMP_ACT_MAYBE"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
