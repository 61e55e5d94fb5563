//! Helpers shared by the integration tests: test images built offline from Debian's
//! busybox-static, packed as docker archives, OCI layouts and OCI archives.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use skiff_testkit::images::*;

/// Options for [`write_oci_layout`].
#[derive(Default, Clone)]
pub struct OciOptions {
    /// Compress layers with gzip.
    pub gzip: bool,
    /// Compress layers with zstd (wins over `gzip`).
    pub zstd: bool,
    /// Wrap the manifest in an index with an arm64 decoy and the amd64 image.
    pub multi_platform: bool,
    /// Override the layer media type (to test rejection).
    pub layer_media_type: Option<String>,
}

/// Writes an OCI layout directory; returns the manifest digest.
pub fn write_oci_layout(
    dir: &Path,
    name: &str,
    layers: &[Vec<u8>],
    cmd: &[&str],
    opts: &OciOptions,
) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = digest(data);
        std::fs::write(blobs.join(hex(&d)), data).unwrap();
        d
    };
    let config = config_json(layers, cmd);
    let config_d = put(&config);
    let mut descs = Vec::new();
    for l in layers {
        let (data, mt) = if opts.zstd {
            (
                ruzstd::encoding::compress_to_vec(
                    &l[..],
                    ruzstd::encoding::CompressionLevel::Fastest,
                ),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else if opts.gzip {
            (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (l.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let mt = opts.layer_media_type.clone().unwrap_or(mt.to_string());
        let d = put(&data);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_d = put(&manifest);
    let top = if opts.multi_platform {
        let decoy = put(b"{\"not\":\"used\"}");
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": decoy, "size": 14,
                 "platform": {"architecture": "arm64", "os": "linux"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len(),
                 "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        }))
        .unwrap();
        let nd = put(&nested);
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd, "size": nested.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}})
    } else {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name}})
    };
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    manifest_d
}

/// Packs a directory into a tarball (an OCI archive when the directory is a layout).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A scratch directory under /var/tmp (not tmpfs, so overlayfs upper dirs work), removed on
/// drop after unmounting anything left under it.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates a fresh scratch directory for `test`.
    pub fn new(test: &str) -> Self {
        let p = PathBuf::from(format!(
            "/var/tmp/skiff-rt-test-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Unmount deepest first so nothing under the scratch dir stays busy.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = self.0.to_string_lossy().to_string();
            let mut points: Vec<String> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
                .filter(|p| p.starts_with(&prefix))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // A runtime's pin holder would leave by itself once the directory is gone; a test's
        // is stopped now.
        for dir in [self.0.clone(), self.0.join("state"), self.0.join("root")] {
            skiff_runtime::runtime::pins::stop_holder(&dir);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runtime rooted in a scratch directory, using the dev binary as the shim and its own
/// cgroup parent; removes its containers, sandboxes and cgroups on drop.
pub struct TestRuntime {
    pub rt: skiff_runtime::LocalRuntime,
    pub cgroup_parent: String,
    // Declared last so that it drops (unmounting and deleting) after the runtime cleanup.
    pub scratch: Scratch,
}

impl TestRuntime {
    /// A runtime with the busybox image imported as `busybox:test`.
    pub fn new(test: &str) -> Self {
        use skiff_runtime::runtime::LoopbackOnly;
        use skiff_runtime::shim::client::ShimProgram;
        let scratch = Scratch::new(test);
        let cgroup_parent = format!("/skiff-test-{test}-{}", std::process::id());
        let cfg = skiff_runtime::RuntimeConfig {
            root: scratch.path("root"),
            // Apart from the root, as the agent's (which is under /run/skiff).
            state: scratch.path("state"),
            shim: ShimProgram {
                program: env!("CARGO_BIN_EXE_skiff-runtime-dev").into(),
                prefix: vec!["shim".into()],
            },
            cgroup_parent: cgroup_parent.clone(),
        };
        let rt = skiff_runtime::LocalRuntime::new(cfg, std::sync::Arc::new(LoopbackOnly)).unwrap();
        write_docker_archive(
            &scratch.path("busybox.tar"),
            "busybox:test",
            &[busybox_layer()],
            &["sh"],
        );
        skiff_runtime::Runtime::import_image(&rt, &scratch.path("busybox.tar"), None).unwrap();
        Self {
            rt,
            cgroup_parent,
            scratch,
        }
    }

    /// A container config running `sh -c script` from the busybox image.
    pub fn sh(&self, id: &str, script: &str) -> skiff_runtime::runtime::ContainerConfig {
        skiff_runtime::runtime::ContainerConfig {
            id: id.into(),
            image: "busybox:test".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        }
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        use skiff_runtime::Runtime;
        if let Ok(cs) = self.rt.list_containers() {
            for c in cs {
                let _ = self.rt.remove_container(&c.config.id);
            }
        }
        if let Ok(ss) = self.rt.list_sandboxes() {
            for s in ss {
                let _ = self.rt.remove_sandbox(&s.config.id);
            }
        }
        skiff_runtime::cgroups::remove(&self.cgroup_parent);
    }
}
