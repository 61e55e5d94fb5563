//! `unpack-bench --archive FILE [--dir D] [--rounds R] [--containerd BIN --ctr BIN]`:
//! throughput of getting an image archive (e.g. `mkimage --size-mb 100`) onto disk, per round:
//!
//! - skiff import: `ImageStore::import` into a fresh store (extract the archive, verify every
//!   digest, unpack every layer, commit), what `skiff image import` and the agent do;
//! - skiff unpack: `unpack_layer` alone on the stored layer blobs;
//! - tar -x: GNU tar extracting the same blobs, the baseline for unpacking alone;
//! - ctr import: containerd's `ctr images import` (content store + overlayfs unpack), when a
//!   containerd is given; the image is removed again (`ctr images rm --sync`) between rounds.
//!
//! MB/s are of uncompressed layer bytes (10^6 bytes). Everything lives under `--dir`
//! (default /var/tmp) in a directory of its own that is removed at the end; containerd's
//! root is under `$TMPDIR`. `--dir /dev/shm` with `TMPDIR=/dev/shm` takes the filesystem's
//! per-file cost out (tmpfs), leaving the unpackers' own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_runtime::image::unpack::unpack_layer;
use skiff_runtime::image::{ImageStore, ImportOptions};

use crate::compare::Containerd;
use crate::{flag, load_average};

pub fn main(args: &[String]) -> i32 {
    let Some(archive) = flag(args, "--archive").map(PathBuf::from) else {
        eprintln!("error: --archive is required");
        return 2;
    };
    let base = PathBuf::from(flag(args, "--dir").unwrap_or_else(|| "/var/tmp".into()))
        .join(format!("rtbench-unpack-{}", std::process::id()));
    let rounds: usize = flag(args, "--rounds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut containerd = match (flag(args, "--containerd"), flag(args, "--ctr")) {
        (Some(d), Some(c)) => match Containerd::start(Path::new(&d), Path::new(&c)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        _ => None,
    };
    let res = run(&archive, &base, rounds, containerd.as_mut());
    let _ = std::fs::remove_dir_all(&base);
    drop(containerd);
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run(
    archive: &Path,
    base: &Path,
    rounds: usize,
    mut containerd: Option<&mut Containerd>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let load = load_average();
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut bytes = 0u64;
    let mut layers = 0usize;
    for round in 0..rounds {
        let dir = base.join(format!("r{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| err(&e))?;

        let store = ImageStore::open(&dir.join("store")).map_err(|e| err(&e))?;
        // Each step starts with no dirty pages left by the one before.
        nix::unistd::sync();
        let t = Instant::now();
        let imgs = store
            .import(archive, &ImportOptions::default())
            .map_err(|e| err(&e))?;
        times[0].push(t.elapsed());
        let img = imgs.first().ok_or("archive holds no image")?;
        layers = img.layers.len();

        nix::unistd::sync();
        let t = Instant::now();
        bytes = 0;
        for (i, l) in img.layers.iter().enumerate() {
            let blob = store.blob_path(&l.digest);
            let dest = dir.join(format!("skiff-{i}"));
            std::fs::create_dir_all(&dest).map_err(|e| err(&e))?;
            let compression =
                skiff_runtime::image::unpack::sniff_compression(&blob).map_err(|e| err(&e))?;
            bytes += unpack_layer(&blob, compression, &l.diff_id, &dest).map_err(|e| err(&e))?;
        }
        times[1].push(t.elapsed());

        nix::unistd::sync();
        let t = Instant::now();
        for (i, l) in img.layers.iter().enumerate() {
            let dest = dir.join(format!("tar-{i}"));
            std::fs::create_dir_all(&dest).map_err(|e| err(&e))?;
            let st = Command::new("tar")
                .arg("-xf")
                .arg(store.blob_path(&l.digest))
                .arg("-C")
                .arg(&dest)
                .status()
                .map_err(|e| err(&e))?;
            if !st.success() {
                return Err(format!("tar -x: {st}"));
            }
        }
        times[2].push(t.elapsed());

        if let Some(c) = containerd.as_deref_mut() {
            nix::unistd::sync();
            let took = c.import(archive)?;
            times[3].push(took);
            c.ctr(&["images", "rm", "--sync", &c.image])?;
        }
        // Leave the disk as it was before the next round (and do not time the removal).
        let _ = std::fs::remove_dir_all(&dir);
    }
    let size = std::fs::metadata(archive).map_err(|e| err(&e))?.len();
    println!(
        "{}: {layers} layers, {:.1} MB uncompressed ({:.1} MB archive), {rounds} rounds, \
         load average {load} before, {} after",
        archive.display(),
        bytes as f64 / 1e6,
        size as f64 / 1e6,
        load_average()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10}  seconds per round",
        "what", "median s", "MB/s", "best MB/s"
    );
    for (name, v) in ["skiff import", "skiff unpack", "tar -x", "ctr import"]
        .iter()
        .zip(times.iter_mut())
    {
        if v.is_empty() {
            continue;
        }
        let each: Vec<String> = v
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        v.sort();
        let median = v[v.len() / 2];
        let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        println!(
            "{name:<14} {:>10.2} {:>10.0} {:>10.0}  {}",
            median.as_secs_f64(),
            mbps(median),
            mbps(v[0]),
            each.join(" ")
        );
    }
    Ok(())
}
