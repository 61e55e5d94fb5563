//! Helpers shared by the integration tests: test images built offline from Debian's
//! busybox-static, packed as docker archives, OCI layouts and OCI archives.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The busybox applets linked into test images.
pub const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "cat", "echo", "nc", "httpd", "wget", "ls", "mkdir", "touch",
    "id", "hostname", "date", "dd", "head", "tail", "grep", "ps", "kill", "trap", "env", "pwd",
    "tty", "stty", "readlink",
];

/// A layer under construction.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Adds a directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .unwrap();
        self
    }

    /// Adds a regular file.
    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    /// Adds a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    /// The tar bytes.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// A root filesystem layer with static busybox and its applets.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("install busybox-static (apt-get install busybox-static)");
    let mut l = Layer::new();
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "var/www", "shared",
    ] {
        l = l.dir(d, if d == "tmp" { 0o1777 } else { 0o755 });
    }
    l = l.file("bin/busybox", 0o755, &busybox);
    for a in APPLETS {
        l = l.symlink(&format!("bin/{a}"), "busybox");
    }
    l.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    .finish()
}

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

/// Gzip-compresses bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Image config JSON for uncompressed layers.
pub fn config_json(layers: &[Vec<u8>], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin", "FROM_IMAGE=1"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
    }))
    .unwrap()
}

/// Writes a docker-archive tarball (`docker save` format) with uncompressed layers.
pub fn write_docker_archive(path: &Path, tag: &str, layers: &[Vec<u8>], cmd: &[&str]) {
    let config = config_json(layers, cmd);
    let config_name = format!("{}.json", hex(&digest(&config)));
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut layer_names = Vec::new();
    for l in layers {
        let name = format!("{}/layer.tar", hex(&digest(l)));
        append(&mut b, &name, l);
        layer_names.push(name);
    }
    append(&mut b, &config_name, &config);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [tag], "Layers": layer_names}
    ]))
    .unwrap();
    append(&mut b, "manifest.json", &manifest);
    b.finish().unwrap();
}

fn append<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data).unwrap();
}

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
