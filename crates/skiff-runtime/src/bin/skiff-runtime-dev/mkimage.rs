//! `mkimage`: docker-archives for benchmarks. The base is static busybox (Debian's
//! busybox-static) so that `/bin/true` and `/bin/sh` run; `--size-mb N` adds layers of
//! incompressible file data (90%) and many small files (10%) for unpack throughput, and
//! `--gzip` stores the layers gzip-compressed as registries serve them.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::flag;

/// Big-file layers in a `--size-mb` image; one more layer holds the small files.
const DATA_LAYERS: u64 = 4;
const BIG_FILE: u64 = 4 << 20;

pub fn main(args: &[String]) -> i32 {
    let out = PathBuf::from(flag(args, "--out").unwrap_or_else(|| "busybox.tar".into()));
    let tag = flag(args, "--tag").unwrap_or_else(|| "bench:1".into());
    let size_mb: u64 = flag(args, "--size-mb")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let gzip = args.iter().any(|a| a == "--gzip");
    let busybox = match std::fs::read("/bin/busybox") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: read /bin/busybox (apt-get install busybox-static): {e}");
            return 1;
        }
    };
    let mut layers = vec![base_layer(&busybox)];
    if size_mb > 0 {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let bytes = size_mb * 1_000_000;
        let big = bytes * 9 / 10;
        for l in 0..DATA_LAYERS {
            layers.push(big_files_layer(&mut rng, l, big / DATA_LAYERS));
        }
        layers.push(small_files_layer(&mut rng, bytes - big));
    }
    match write_archive(&out, &tag, &layers, gzip) {
        Ok(size) => {
            let raw: usize = layers.iter().map(Vec::len).sum();
            println!(
                "wrote {} ({} layers, {:.1} MB of layer tar, {:.1} MB on disk)",
                out.display(),
                layers.len(),
                raw as f64 / 1e6,
                size as f64 / 1e6
            );
            0
        }
        Err(e) => {
            eprintln!("error: write {}: {e}", out.display());
            1
        }
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    b.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0),
        path,
        std::io::empty(),
    )
    .expect("tar to memory");
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
        path,
        data,
    )
    .expect("tar to memory");
}

fn base_layer(busybox: &[u8]) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        dir(&mut layer, d);
    }
    layer
        .append_data(
            &mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64),
            "bin/busybox",
            busybox,
        )
        .expect("tar to memory");
    for applet in ["sh", "true", "sleep", "echo", "cat"] {
        layer
            .append_link(
                &mut header(tar::EntryType::Symlink, 0o777, 0),
                format!("bin/{applet}"),
                "busybox",
            )
            .expect("tar to memory");
    }
    layer.into_inner().expect("tar to memory")
}

/// Incompressible data, so that gzip layers cost what real binaries' layers roughly cost and
/// no filesystem or page-cache shortcut applies.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
    fn below(&mut self, n: u64) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b) % n
    }
}

fn big_files_layer(rng: &mut XorShift, index: u64, bytes: u64) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::with_capacity(bytes as usize + (1 << 20)));
    let top = format!("data{index}");
    dir(&mut layer, &top);
    let mut left = bytes;
    let mut buf = vec![0u8; BIG_FILE as usize];
    for i in 0.. {
        if left == 0 {
            break;
        }
        let n = left.min(BIG_FILE) as usize;
        rng.fill(&mut buf[..n]);
        file(&mut layer, &format!("{top}/blob{i}.bin"), &buf[..n]);
        left -= n as u64;
    }
    layer.into_inner().expect("tar to memory")
}

/// Files of 512 B to 4 KiB in 100 directories: per-file costs (create, metadata, xattrs)
/// rather than bandwidth.
fn small_files_layer(rng: &mut XorShift, bytes: u64) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    dir(&mut layer, "small");
    for d in 0..100 {
        dir(&mut layer, &format!("small/d{d:02}"));
    }
    let mut left = bytes;
    let mut buf = [0u8; 4096];
    let mut i = 0;
    while left > 0 {
        let n = (512 + rng.below(4096 - 512 + 1)).min(left) as usize;
        rng.fill(&mut buf[..n]);
        file(
            &mut layer,
            &format!("small/d{:02}/f{i}", i % 100),
            &buf[..n],
        );
        left -= n as u64;
        i += 1;
    }
    layer.into_inner().expect("tar to memory")
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes a docker-archive (`docker save` layout) and returns its size.
fn write_archive(out: &Path, tag: &str, layers: &[Vec<u8>], gzip: bool) -> std::io::Result<u64> {
    let diff_ids: Vec<String> = layers.iter().map(|l| hex(l)).collect();
    let blobs: Vec<Vec<u8>> = if gzip {
        layers
            .iter()
            .map(|l| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(l)?;
                enc.finish()
            })
            .collect::<std::io::Result<_>>()?
    } else {
        layers.to_vec()
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers",
                   "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
    }))
    .expect("json");
    let config_name = format!("{}.json", hex(&config));
    let layer_names: Vec<String> = diff_ids.iter().map(|d| format!("{d}/layer.tar")).collect();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [tag], "Layers": layer_names}
    ]))
    .expect("json");
    let mut archive = tar::Builder::new(std::fs::File::create(out)?);
    let mut entries: Vec<(String, &[u8])> = layer_names
        .iter()
        .cloned()
        .zip(blobs.iter().map(Vec::as_slice))
        .collect();
    entries.push((config_name, &config));
    entries.push(("manifest.json".into(), &manifest));
    for (name, data) in entries {
        archive.append_data(
            &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
            name,
            data,
        )?;
    }
    archive.into_inner()?.sync_all()?;
    Ok(std::fs::metadata(out)?.len())
}
