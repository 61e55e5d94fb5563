//! `skiff image import|pull|ls|rm` as library functions over parsed arguments; the `skiff` binary
//! owns argument parsing and calls these.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::image::{ImageStore, ImportOptions};

/// Where the runtime keeps its state under a skiff data directory.
pub fn runtime_root(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("runtime")
}

/// `skiff image import FILE... [--name REF]`: imports each file and prints one line per image.
pub fn image_import(
    root: &Path,
    files: &[PathBuf],
    name: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let store = ImageStore::open(root)?;
    for f in files {
        for img in store.import(
            f,
            &ImportOptions {
                name: name.map(str::to_string),
            },
        )? {
            let names = if img.names.is_empty() {
                "<none>".to_string()
            } else {
                img.names.join(", ")
            };
            let _ = writeln!(out, "imported {} {names}", img.id.short());
        }
    }
    Ok(())
}

/// `skiff image pull REF`: pulls an image into the store under `root`, with the mirrors and
/// credentials of `registries_yaml` (`<data-dir>/registries.yaml`), and prints what it stored.
pub fn image_pull(
    root: &Path,
    registries_yaml: &Path,
    reference: &str,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::image::registry::{pull, RegistriesConfig};
    let store = ImageStore::open(root)?;
    let config = RegistriesConfig::load(registries_yaml)?;
    let img = pull(&store, reference, &config, None)?;
    let _ = writeln!(
        out,
        "pulled {} {} ({})",
        img.id.short(),
        img.names.join(", "),
        human_size(img.size)
    );
    Ok(())
}

/// `skiff image ls`: a table of images.
pub fn image_ls(root: &Path, out: &mut dyn Write) -> Result<()> {
    let store = ImageStore::open(root)?;
    let _ = writeln!(out, "{:<60} {:<14} {:>10}", "IMAGE", "ID", "SIZE");
    for img in store.list()? {
        let names = if img.names.is_empty() {
            vec!["<none>".to_string()]
        } else {
            img.names.clone()
        };
        for n in names {
            let _ = writeln!(
                out,
                "{:<60} {:<14} {:>10}",
                n,
                img.id.short(),
                human_size(img.size)
            );
        }
    }
    Ok(())
}

/// `skiff image rm REF...`: removes images by name or id and collects their content.
pub fn image_rm(root: &Path, refs: &[String], out: &mut dyn Write) -> Result<()> {
    let store = ImageStore::open(root)?;
    for r in refs {
        let img = store.remove(r)?;
        let _ = writeln!(out, "deleted {} ({r})", img.id.short());
    }
    Ok(())
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(999), "999B");
        assert_eq!(super::human_size(1_500_000), "1.5MB");
    }
}
