//! Reading image archives and layouts: docker-archive (`docker save`), OCI archives and OCI
//! layout directories, into verified [`Candidate`]s ready to commit.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::manifest::{
    layer_compression, pick_platform, sniff_media_type, Compression, ImageConfig, Index, Manifest,
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use super::store::LayerRecord;
use super::unpack::sniff_compression;
use crate::digest::{digest_file, Digest};
use crate::error::{Error, IoContext, Result};

/// A layer blob found in an archive, verified against its descriptor.
#[derive(Debug)]
pub(super) struct StagedLayer {
    /// Where the blob is now.
    pub path: PathBuf,
    /// How to decompress it.
    pub compression: Compression,
    /// The record to store.
    pub record: LayerRecord,
}

/// One image found in an archive, all of its blobs verified.
#[derive(Debug)]
pub(super) struct Candidate {
    /// Names from the archive (not yet normalized).
    pub names: Vec<String>,
    /// Manifest digest and where its bytes are.
    pub manifest: Digest,
    pub manifest_path: PathBuf,
    /// Config digest (the image id) and where its bytes are.
    pub config: Digest,
    pub config_path: PathBuf,
    /// Layers, base first.
    pub layers: Vec<StagedLayer>,
}

/// Extracts a (possibly gzip-compressed) tarball into `dest`.
pub(super) fn extract(archive: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).ctx("create dir", dest)?;
    let file = File::open(archive).ctx("open image archive", archive)?;
    let reader: Box<dyn Read> = match sniff_compression(archive)? {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        _ => Box::new(BufReader::new(file)),
    };
    let mut tar = tar::Archive::new(reader);
    tar.unpack(dest).map_err(|e| Error::InvalidImage {
        source_name: archive.display().to_string(),
        reason: format!("cannot read archive: {e}"),
    })
}

fn invalid(source_name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidImage {
        source_name: source_name.to_string(),
        reason: reason.into(),
    }
}

/// Reads an extracted archive or layout directory. OCI layouts (`index.json`) are preferred
/// over Docker's `manifest.json` when both are present, as in archives from Docker 25+.
pub(super) fn read_layout(
    layout: &Path,
    staging: &Path,
    source_name: &str,
) -> Result<Vec<Candidate>> {
    if layout.join("index.json").is_file() {
        read_oci(layout, source_name)
    } else if layout.join("manifest.json").is_file() {
        read_docker(layout, staging, source_name)
    } else {
        Err(invalid(
            source_name,
            "neither index.json (OCI) nor manifest.json (docker-archive) found",
        ))
    }
}

fn verified_blob(layout: &Path, digest: &Digest, size: u64, source_name: &str) -> Result<PathBuf> {
    let path = layout.join("blobs/sha256").join(digest.hex());
    if !path.is_file() {
        return Err(invalid(source_name, format!("blob {digest} is missing")));
    }
    let (actual, len) = digest_file(&path)?;
    if &actual != digest {
        return Err(Error::DigestMismatch {
            what: format!("blob in {source_name}"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    if size != 0 && len != size {
        return Err(invalid(
            source_name,
            format!("blob {digest} has {len} bytes, descriptor says {size}"),
        ));
    }
    Ok(path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<T> {
    let bytes = fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_oci(layout: &Path, source_name: &str) -> Result<Vec<Candidate>> {
    let index: Index = read_json(&layout.join("index.json"), "oci index")?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            // A bare tag ("latest") does not name an image by itself.
            .filter(|n| n.contains(':') || n.contains('/'))
            .cloned();
        let mut digest = desc.digest.clone();
        let mut size = desc.size;
        let mut media_type = desc.media_type.clone();
        // Follow nested indexes down to this platform's manifest.
        for _ in 0..4 {
            let path = verified_blob(layout, &digest, size, source_name)?;
            let bytes = fs::read(&path).ctx("read", &path)?;
            if media_type.is_empty() {
                media_type = sniff_media_type(&bytes).unwrap_or_default();
            }
            match media_type.as_str() {
                OCI_INDEX | DOCKER_MANIFEST_LIST => {
                    let nested: Index =
                        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                            what: "index",
                            path: path.clone(),
                            source,
                        })?;
                    let Some(d) = pick_platform(&nested) else {
                        return Err(invalid(
                            source_name,
                            format!("index {digest} has no linux/amd64 manifest"),
                        ));
                    };
                    digest = d.digest.clone();
                    size = d.size;
                    media_type = d.media_type.clone();
                }
                OCI_MANIFEST | DOCKER_MANIFEST => {
                    let manifest: Manifest =
                        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                            what: "manifest",
                            path: path.clone(),
                            source,
                        })?;
                    out.push(candidate_from_manifest(
                        layout,
                        source_name,
                        name.clone(),
                        digest.clone(),
                        path,
                        &manifest,
                    )?);
                    break;
                }
                other => {
                    return Err(Error::UnsupportedMediaType {
                        media_type: other.to_string(),
                        what: format!("manifest {digest} in {source_name}"),
                    })
                }
            }
        }
    }
    Ok(out)
}

fn candidate_from_manifest(
    layout: &Path,
    source_name: &str,
    name: Option<String>,
    manifest_digest: Digest,
    manifest_path: PathBuf,
    manifest: &Manifest,
) -> Result<Candidate> {
    if !matches!(
        manifest.config.media_type.as_str(),
        OCI_CONFIG | DOCKER_CONFIG
    ) {
        return Err(Error::UnsupportedMediaType {
            media_type: manifest.config.media_type.clone(),
            what: format!("config of manifest {manifest_digest}"),
        });
    }
    let config_path = verified_blob(
        layout,
        &manifest.config.digest,
        manifest.config.size,
        source_name,
    )?;
    let config: ImageConfig = read_json(&config_path, "image config")?;
    check_config(&config, manifest.layers.len(), source_name)?;
    let mut layers = Vec::new();
    let mut chain: Option<Digest> = None;
    for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let compression = layer_compression(&desc.media_type)?;
        let path = verified_blob(layout, &desc.digest, desc.size, source_name)?;
        let chain_id = Digest::chain(chain.as_ref(), diff_id);
        chain = Some(chain_id.clone());
        layers.push(StagedLayer {
            path,
            compression,
            record: LayerRecord {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                diff_id: diff_id.clone(),
                chain_id,
                size: desc.size,
            },
        });
    }
    Ok(Candidate {
        names: name.into_iter().collect(),
        manifest: manifest_digest,
        manifest_path,
        config: manifest.config.digest.clone(),
        config_path,
        layers,
    })
}

fn check_config(config: &ImageConfig, layers: usize, source_name: &str) -> Result<()> {
    if !config.os.is_empty() && config.os != "linux" {
        return Err(invalid(
            source_name,
            format!("image is for os {:?}, not linux", config.os),
        ));
    }
    if config.rootfs.diff_ids.len() != layers {
        return Err(invalid(
            source_name,
            format!(
                "config lists {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                layers
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn inside(layout: &Path, rel: &str, source_name: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid(
            source_name,
            format!("path {rel:?} escapes the archive"),
        ));
    }
    let full = layout.join(p);
    if !full.is_file() {
        return Err(invalid(
            source_name,
            format!("{rel} is missing (truncated archive?)"),
        ));
    }
    Ok(full)
}

fn read_docker(layout: &Path, staging: &Path, source_name: &str) -> Result<Vec<Candidate>> {
    let entries: Vec<DockerEntry> = read_json(&layout.join("manifest.json"), "docker manifest")?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let config_path = inside(layout, &entry.config, source_name)?;
        let (config_digest, config_size) = digest_file(&config_path)?;
        // Docker names config files after their digest; a mismatch means corruption.
        if let Some(stem) = Path::new(&entry.config)
            .file_stem()
            .and_then(|s| s.to_str())
        {
            if stem.len() == 64 && stem != config_digest.hex() {
                return Err(Error::DigestMismatch {
                    what: format!("config {} in {source_name}", entry.config),
                    expected: format!("sha256:{stem}"),
                    actual: config_digest.to_string(),
                });
            }
        }
        let config: ImageConfig = read_json(&config_path, "image config")?;
        check_config(&config, entry.layers.len(), source_name)?;
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        let mut chain: Option<Digest> = None;
        for (rel, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let path = inside(layout, rel, source_name)?;
            let (digest, size) = digest_file(&path)?;
            let compression = sniff_compression(&path)?;
            let media_type = match compression {
                Compression::None => "application/vnd.oci.image.layer.v1.tar",
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            // Uncompressed layers are named by their diff id, so check it now rather than
            // after unpacking.
            if compression == Compression::None && &digest != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("layer {rel} in {source_name}"),
                    expected: diff_id.to_string(),
                    actual: digest.to_string(),
                });
            }
            let chain_id = Digest::chain(chain.as_ref(), diff_id);
            chain = Some(chain_id.clone());
            descriptors.push(serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": size,
            }));
            layers.push(StagedLayer {
                path,
                compression,
                record: LayerRecord {
                    digest,
                    media_type: media_type.to_string(),
                    diff_id: diff_id.clone(),
                    chain_id,
                    size,
                },
            });
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": descriptors,
        });
        let bytes = serde_json::to_vec(&manifest).expect("json values serialize");
        let manifest_digest = Digest::of_bytes(&bytes);
        let manifest_path = staging.join(format!("manifest-{i}.json"));
        fs::write(&manifest_path, &bytes).ctx("write manifest", &manifest_path)?;
        out.push(Candidate {
            names: entry.repo_tags.clone().unwrap_or_default(),
            manifest: manifest_digest,
            manifest_path,
            config: config_digest,
            config_path,
            layers,
        });
    }
    Ok(out)
}
