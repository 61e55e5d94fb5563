//! The image store proper: import commit, listing, removal, leases and garbage collection.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::archive::{self, Candidate};
use super::manifest::{normalize_reference, ImageConfig};
use super::unpack;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the digest of its config.
    pub id: Digest,
    /// Normalized references naming this image (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// The manifest blob.
    pub manifest: Digest,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Sum of the stored layer blob sizes.
    pub size: u64,
    /// When the image was first stored (RFC 3339).
    pub imported_at: String,
}

impl ImageRecord {
    /// The chain id of the top layer, which identifies the whole root filesystem.
    pub fn top_chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// A layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as stored (possibly compressed).
    pub digest: Digest,
    /// Media type of the blob.
    pub media_type: String,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Chain id, which names the snapshot directory.
    pub chain_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// Options for [`ImageStore::import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to give the image when the archive carries none (or to add to the ones it has).
    pub name: Option<String>,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshot directories deleted.
    pub snapshots: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    images: Vec<ImageRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    image: Digest,
    snapshots: Vec<Digest>,
}

/// The image store, rooted at `<root>/images`. Cheap to clone paths; every mutation takes the
/// store's file lock.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes a staging directory on every exit path of an import.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<root>/images`.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("images");
        for sub in ["blobs/sha256", "snapshots", "leases", "ingest", "empty"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).ctx("create store dir", &p)?;
        }
        Ok(Self { dir })
    }

    /// The store directory (`<root>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Path of the snapshot directory for a chain id.
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join("snapshots").join(chain_id.hex())
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open store lock", &path)?;
        f.lock().ctx("lock store", &path)?;
        Ok(f)
    }

    fn read_index(&self) -> Result<IndexFile> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Json {
                what: "image index",
                path,
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(e).ctx("read image index", &path),
        }
    }

    fn write_index(&self, index: &IndexFile) -> Result<()> {
        let path = self.dir.join("index.json");
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| Error::Json {
            what: "image index",
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Imports a docker-archive or OCI-archive tarball (optionally gzip-compressed), or an OCI
    /// layout directory. Every digest is verified and every layer unpacked before anything is
    /// committed, so a failed import leaves the store as it was.
    pub fn import(&self, source: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>> {
        let staging = Staging(self.dir.join("ingest").join(format!(
            "{}-{}-{}",
            std::process::id(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )));
        fs::create_dir_all(&staging.0).ctx("create staging dir", &staging.0)?;
        let layout = if source.is_dir() {
            source.to_path_buf()
        } else {
            let extract = staging.0.join("archive");
            archive::extract(source, &extract)?;
            extract
        };
        let mut candidates =
            archive::read_layout(&layout, &staging.0, &source.display().to_string())?;
        if candidates.is_empty() {
            return Err(Error::InvalidImage {
                source_name: source.display().to_string(),
                reason: "no linux image for this platform found".into(),
            });
        }
        if let Some(name) = &opts.name {
            for c in &mut candidates {
                c.names.push(name.clone());
            }
        }
        // Unpack every layer not yet in the store into staging; nothing is committed yet.
        let mut staged_snapshots: Vec<(PathBuf, Digest)> = Vec::new();
        for c in &candidates {
            for layer in &c.layers {
                let final_path = self.snapshot_path(&layer.record.chain_id);
                if final_path.exists()
                    || staged_snapshots
                        .iter()
                        .any(|(_, d)| d == &layer.record.chain_id)
                {
                    continue;
                }
                let dest = staging
                    .0
                    .join(format!("snap-{}", layer.record.chain_id.hex()));
                fs::create_dir_all(&dest).ctx("create snapshot", &dest)?;
                unpack::unpack_layer(&layer.path, layer.compression, &layer.record.diff_id, &dest)?;
                staged_snapshots.push((dest, layer.record.chain_id.clone()));
            }
        }
        let _lock = self.lock()?;
        let copy = source.is_dir();
        for c in &candidates {
            for (path, digest) in c.blobs() {
                self.commit_blob(path, digest, copy)?;
            }
        }
        for (path, chain) in &staged_snapshots {
            let dst = self.snapshot_path(chain);
            if !dst.exists() {
                fs::rename(path, &dst).ctx("commit snapshot", &dst)?;
            }
        }
        // A snapshot seen before taking the lock may have been collected since; unpack it
        // again, under the lock, rather than commit an image with a hole.
        for c in &candidates {
            for layer in &c.layers {
                let dst = self.snapshot_path(&layer.record.chain_id);
                if !dst.exists() {
                    let tmp = staging
                        .0
                        .join(format!("late-{}", layer.record.chain_id.hex()));
                    fs::create_dir_all(&tmp).ctx("create snapshot", &tmp)?;
                    let blob = self.blob_path(&layer.record.digest);
                    unpack::unpack_layer(&blob, layer.compression, &layer.record.diff_id, &tmp)?;
                    fs::rename(&tmp, &dst).ctx("commit snapshot", &dst)?;
                }
            }
        }
        let mut index = self.read_index()?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut out = Vec::new();
        for c in candidates {
            let names: Vec<String> = c.names.iter().map(|n| normalize_reference(n)).collect();
            for img in &mut index.images {
                img.names.retain(|n| !names.contains(n));
            }
            let record = match index.images.iter_mut().find(|i| i.id == c.config) {
                Some(existing) => {
                    for n in names {
                        if !existing.names.contains(&n) {
                            existing.names.push(n);
                        }
                    }
                    existing.clone()
                }
                None => {
                    let record = ImageRecord {
                        id: c.config.clone(),
                        names,
                        manifest: c.manifest.clone(),
                        size: c.layers.iter().map(|l| l.record.size).sum(),
                        layers: c.layers.iter().map(|l| l.record.clone()).collect(),
                        imported_at: now.clone(),
                    };
                    index.images.push(record.clone());
                    record
                }
            };
            out.push(record);
        }
        // Images that lost their last name to the new import stay, addressable by id, as
        // Docker's dangling images do; `rm` by id removes them.
        self.write_index(&index)?;
        tracing::info!(source = %source.display(), images = out.len(), "imported images");
        Ok(out)
    }

    /// Imports every tarball (`*.tar`, `*.tar.gz`, `*.tgz`) and OCI layout directory in
    /// `dir`, as the agent does at start with `<data-dir>/agent/images/`. A missing directory
    /// imports nothing; each entry reports its own result so that one bad file does not
    /// block the others.
    pub fn import_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<Vec<ImageRecord>>)> {
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".tar")
                    || name.ends_with(".tar.gz")
                    || name.ends_with(".tgz")
                    || p.join("index.json").is_file()
            })
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let r = self.import(&p, &ImportOptions::default());
                (p, r)
            })
            .collect()
    }

    fn commit_blob(&self, src: &Path, digest: &Digest, copy: bool) -> Result<()> {
        let dst = self.blob_path(digest);
        if dst.exists() {
            return Ok(());
        }
        let is_link = src
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if copy || is_link {
            let tmp = self.dir.join("blobs/sha256").join(format!(
                ".tmp-{}-{}",
                std::process::id(),
                digest.hex()
            ));
            fs::copy(src, &tmp).ctx("copy blob", &tmp)?;
            fs::rename(&tmp, &dst).ctx("commit blob", &dst)
        } else {
            fs::rename(src, &dst).ctx("commit blob", &dst)
        }
    }

    /// All stored images.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.read_index()?.images)
    }

    /// Finds an image by name (normalized as Docker does), full id, or id prefix of at least
    /// 12 hex digits.
    pub fn get(&self, reference: &str) -> Result<ImageRecord> {
        let index = self.read_index()?;
        find(&index, reference)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference.to_string()))
    }

    /// Reads an image's config blob.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig> {
        let path = self.blob_path(&image.id);
        let bytes = fs::read(&path).ctx("read image config", &path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "image config",
            path,
            source,
        })
    }

    /// The overlayfs lower directories for an image, top layer first.
    pub fn lower_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        if image.layers.is_empty() {
            return vec![self.dir.join("empty")];
        }
        image
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshot_path(&l.chain_id))
            .collect()
    }

    /// Records that `holder` (a container id) uses `image`'s snapshots, so that garbage
    /// collection and `rm` leave them alone.
    pub fn lease(&self, holder: &str, image: &ImageRecord) -> Result<()> {
        crate::error::validate_id(holder)?;
        let _lock = self.lock()?;
        let path = self.dir.join("leases").join(format!("{holder}.json"));
        let lease = Lease {
            image: image.id.clone(),
            snapshots: image.layers.iter().map(|l| l.chain_id.clone()).collect(),
        };
        let bytes = serde_json::to_vec(&lease).map_err(|source| Error::Json {
            what: "lease",
            path: path.clone(),
            source,
        })?;
        write_replace(&path, &bytes)
    }

    /// Drops `holder`'s lease. Missing leases are not an error.
    pub fn release(&self, holder: &str) -> Result<()> {
        crate::error::validate_id(holder)?;
        let _lock = self.lock()?;
        let path = self.dir.join("leases").join(format!("{holder}.json"));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove lease", &path),
            _ => Ok(()),
        }
    }

    /// Holders of leases (container ids), for reconciling after a crash.
    pub fn lease_holders(&self) -> Result<Vec<String>> {
        Ok(self.leases()?.into_iter().map(|(h, _)| h).collect())
    }

    fn leases(&self) -> Result<Vec<(String, Lease)>> {
        let dir = self.dir.join("leases");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx("list leases", &dir)? {
            let entry = entry.ctx("list leases", &dir)?;
            let path = entry.path();
            let Some(holder) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let bytes = fs::read(&path).ctx("read lease", &path)?;
            if let Ok(lease) = serde_json::from_slice::<Lease>(&bytes) {
                out.push((holder.to_string(), lease));
            }
        }
        Ok(out)
    }

    /// Removes an image by name or id and garbage-collects its content. Removing by name
    /// only drops that name while other names remain; removing by id drops all names.
    pub fn remove(&self, reference: &str) -> Result<ImageRecord> {
        let image = {
            let _lock = self.lock()?;
            let mut index = self.read_index()?;
            let image = find(&index, reference)
                .cloned()
                .ok_or_else(|| Error::ImageNotFound(reference.to_string()))?;
            let by_name = normalize_reference(reference);
            if image.names.contains(&by_name) && image.names.len() > 1 {
                if let Some(img) = index.images.iter_mut().find(|i| i.id == image.id) {
                    img.names.retain(|n| n != &by_name);
                }
                self.write_index(&index)?;
                return Ok(image);
            }
            if let Some((holder, _)) = self
                .leases()?
                .into_iter()
                .find(|(_, l)| l.image == image.id)
            {
                return Err(Error::ImageInUse {
                    image: reference.to_string(),
                    container: holder,
                });
            }
            index.images.retain(|i| i.id != image.id);
            self.write_index(&index)?;
            image
        };
        // The record is gone; leftover content is only garbage now, so a failed collection
        // is logged rather than reported as a failed removal.
        if let Err(e) = self.gc() {
            tracing::warn!(image = %image.id, error = %e, "gc after image removal failed");
        }
        Ok(image)
    }

    /// Deletes blobs and snapshots that no image or lease references, and stale staging
    /// directories of imports whose process is gone.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        let mut snaps: BTreeSet<String> = BTreeSet::new();
        for img in &index.images {
            blobs.insert(img.id.hex().to_string());
            blobs.insert(img.manifest.hex().to_string());
            for l in &img.layers {
                blobs.insert(l.digest.hex().to_string());
                snaps.insert(l.chain_id.hex().to_string());
            }
        }
        for (_, lease) in self.leases()? {
            snaps.extend(lease.snapshots.iter().map(|d| d.hex().to_string()));
        }
        let mut report = GcReport::default();
        let blob_dir = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).ctx("list blobs", &blob_dir)? {
            let entry = entry.ctx("list blobs", &blob_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                fs::remove_file(entry.path()).ctx("remove blob", entry.path())?;
                report.blobs += 1;
            }
        }
        let snap_dir = self.dir.join("snapshots");
        for entry in fs::read_dir(&snap_dir).ctx("list snapshots", &snap_dir)? {
            let entry = entry.ctx("list snapshots", &snap_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !snaps.contains(&name) {
                fs::remove_dir_all(entry.path()).ctx("remove snapshot", entry.path())?;
                report.snapshots += 1;
            }
        }
        for d in [self.dir.clone(), self.dir.join("leases"), blob_dir.clone()] {
            remove_stale_tmp(&d);
        }
        let ingest = self.dir.join("ingest");
        for entry in fs::read_dir(&ingest).ctx("list ingest", &ingest)? {
            let entry = entry.ctx("list ingest", &ingest)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: Option<i32> = name.split('-').next().and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(report)
    }
}

fn find<'a>(index: &'a IndexFile, reference: &str) -> Option<&'a ImageRecord> {
    let normalized = normalize_reference(reference);
    if let Some(img) = index
        .images
        .iter()
        .find(|i| i.names.iter().any(|n| n == &normalized))
    {
        return Some(img);
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches = index.images.iter().filter(|i| i.id.hex().starts_with(hex));
        let first = matches.next();
        if matches.next().is_none() {
            return first;
        }
    }
    None
}

/// Removes `*.tmp-<pid>*` files left by writers that died before renaming them.
fn remove_stale_tmp(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.split(".tmp-").nth(1) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !pid.is_empty() && !Path::new("/proc").join(&pid).exists() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes a file durably (fsync before rename) so that readers, and the store after a
/// power loss, see either the old or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace_inner(path, bytes, true)
}

/// Like [`write_atomic`] without the fsync: for state that only has to survive a restart
/// of the agent, not of the machine (after a power loss the containers it describes are
/// gone too), and that sits on the container start path where an fsync costs milliseconds.
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace_inner(path, bytes, false)
}

fn write_replace_inner(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).ctx("create", &tmp)?;
    f.write_all(bytes).ctx("write", &tmp)?;
    if durable {
        f.sync_all().ctx("sync", &tmp)?;
    }
    fs::rename(&tmp, path).ctx("rename", path)
}

impl Candidate {
    fn blobs(&self) -> impl Iterator<Item = (&Path, &Digest)> {
        [
            (self.manifest_path.as_path(), &self.manifest),
            (self.config_path.as_path(), &self.config),
        ]
        .into_iter()
        .chain(
            self.layers
                .iter()
                .map(|l| (l.path.as_path(), &l.record.digest)),
        )
    }
}
