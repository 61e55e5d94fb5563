//! From a reference to the platform manifest: parsing `[registry/]repo[:tag][@digest]`,
//! fetching the manifest with the media types this runtime accepts, and following an index
//! (OCI index or Docker manifest list) down to linux/amd64.

use super::client::Session;
use super::RegistryError;
use crate::digest::Digest;
use crate::image::manifest::{
    layer_compression, normalize_reference, pick_platform, sniff_media_type, Index, Manifest,
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};

/// The `Accept` header of manifest requests: the four document types the store handles.
/// Without it registries answer with the legacy schema 1 or refuse OCI content.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A parsed image reference, with Docker's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host, `docker.io` or `host[:port]`.
    pub registry: String,
    /// Repository path, `library/nginx`.
    pub repository: String,
    /// Tag, absent when pulling by digest only.
    pub tag: Option<String>,
    /// Digest, when the reference pins one.
    pub digest: Option<Digest>,
    /// The name the image is stored under: [`normalize_reference`] of the input, so that
    /// looking the input up in the store finds the pulled image.
    pub name: String,
}

fn invalid(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// A repository path component: lowercase alphanumerics separated by `.`, `_`, `__` or
/// dashes, as the distribution spec's grammar allows.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| {
            x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

impl ImageReference {
    /// Parses a reference as Docker does: `nginx` is `docker.io/library/nginx:latest`,
    /// `reg:5000/app@sha256:...` pins a digest.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(invalid(input, "empty"));
        }
        let name = normalize_reference(input);
        let (name_tag, digest) = match name.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| invalid(input, e.to_string()))?),
            ),
            None => (name.as_str(), None),
        };
        let last_slash = name_tag.rfind('/').unwrap_or(0);
        let (path, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(name_tag[last_slash + i + 1..].to_string()),
            ),
            None => (name_tag, None),
        };
        let (registry, repository) = path
            .split_once('/')
            .ok_or_else(|| invalid(input, "no repository"))?;
        let mut registry = registry.to_string();
        let mut repository = repository.to_string();
        // `docker.io/nginx` and `index.docker.io/...` mean the official image on Docker Hub.
        if registry == "index.docker.io" {
            registry = "docker.io".into();
        }
        if registry == "docker.io" && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace()) {
            return Err(invalid(input, "bad registry host"));
        }
        if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(
                input,
                format!("repository component {bad:?} must be lowercase letters, digits and . _ -"),
            ));
        }
        if let Some(t) = tag.as_deref().filter(|t| !valid_tag(t)) {
            return Err(invalid(input, format!("bad tag {t:?}")));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
            name,
        })
    }

    /// What goes after `/manifests/`: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

/// The platform manifest a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Digest of the manifest's bytes.
    pub digest: Digest,
    /// `OCI_MANIFEST` or `DOCKER_MANIFEST`.
    pub media_type: String,
    /// The manifest's bytes, verified against `digest`.
    pub bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
}

/// Fetches the manifest for `reference`, following indexes to this node's platform, and
/// checks that the config and every layer have media types the store can unpack (so that
/// nothing is downloaded for an image that could not be stored).
pub fn resolve(
    session: &mut Session,
    reference: &ImageReference,
) -> Result<Resolved, RegistryError> {
    let registry = session.host().to_string();
    let name = session.reference().to_string();
    let invalid = |reason: String| RegistryError::InvalidManifest {
        registry: registry.clone(),
        reference: name.clone(),
        reason,
    };
    let unsupported = |what: String, media_type: &str| RegistryError::UnsupportedMediaType {
        registry: registry.clone(),
        reference: name.clone(),
        what,
        media_type: media_type.to_string(),
    };
    let mut target = reference.manifest_ref();
    let mut expected = reference.digest.clone();
    // Indexes may nest; a bounded walk keeps a malicious registry from looping us.
    for _ in 0..4 {
        let (bytes, content_type) = session.manifest(&target, MANIFEST_ACCEPT)?;
        let digest = Digest::of_bytes(&bytes);
        if let Some(want) = &expected {
            if &digest != want {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.clone(),
                    reference: name.clone(),
                    what: "manifest",
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        // Registries that serve OCI content as application/json are common; the
        // document's own mediaType (or its shape) decides then.
        let known = [
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            DOCKER_MANIFEST,
        ];
        let media_type = match content_type {
            Some(ct) if known.contains(&ct.as_str()) || ct.contains("manifest.v1") => ct,
            other => sniff_media_type(&bytes)
                .or(other)
                .unwrap_or_else(|| "(none)".into()),
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let index: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("index {digest}: {e}")))?;
                let (os, arch) = crate::image::manifest::host_platform();
                let pick = pick_platform(&index).ok_or_else(|| {
                    invalid(format!("index {digest} has no {os}/{arch} manifest"))
                })?;
                target = pick.digest.to_string();
                expected = Some(pick.digest.clone());
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
                if !matches!(
                    manifest.config.media_type.as_str(),
                    OCI_CONFIG | DOCKER_CONFIG
                ) {
                    return Err(unsupported(
                        format!("config of manifest {digest}"),
                        &manifest.config.media_type,
                    ));
                }
                for l in &manifest.layers {
                    if layer_compression(&l.media_type).is_err() {
                        return Err(unsupported(format!("layer {}", l.digest), &l.media_type));
                    }
                }
                return Ok(Resolved {
                    digest,
                    media_type,
                    bytes,
                    manifest,
                });
            }
            other => return Err(unsupported(format!("manifest {digest}"), other)),
        }
    }
    Err(invalid("indexes nested more than 4 deep".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_like_docker() {
        let r = ImageReference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/nginx", Some("latest"))
        );
        assert_eq!(r.name, "docker.io/library/nginx:latest");
        let r = ImageReference::parse("docker.io/nginx:1.25").unwrap();
        assert_eq!(r.repository, "library/nginx");
        let r = ImageReference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        let r = ImageReference::parse(&format!("quay.io/x:v@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.manifest_ref()), (Some("v"), d));
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in ["", "Nginx", "reg:5000/a@sha256:12", "a/b:-x", "a//b"] {
            assert!(ImageReference::parse(bad).is_err(), "{bad}");
        }
    }
}
