//! Test images built offline from Debian's busybox-static: layers, image configs and
//! docker-archive tarballs that `skiff image import` and the runtime accept. Shared by the
//! runtime's integration tests and the node e2e tests.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The busybox applets linked into test images.
pub const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "cat", "echo", "nc", "httpd", "wget", "ls", "mkdir", "touch",
    "id", "hostname", "date", "dd", "head", "tail", "grep", "ps", "kill", "trap", "env", "pwd",
    "tty", "stty", "readlink", "tar", "xargs", "rm", "mv", "cp", "seq", "timeout", "nslookup",
    "test", "usleep",
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

/// The hex part of a `sha256:` digest.
pub fn hex(d: &str) -> &str {
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

/// Appends a file entry to a tar.
pub fn append<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data).unwrap();
}

/// Writes a busybox image (`sh` as command) as a docker archive at `path`, tagged `tag`.
pub fn write_busybox_archive(path: &Path, tag: &str) {
    write_docker_archive(path, tag, &[busybox_layer()], &["sh"]);
}
