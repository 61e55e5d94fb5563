//! A whole pull: endpoints in order, download into a staging OCI layout, import.
//!
//! Pulls of one reference into one store are serialized within the process, and the second
//! one finds the first one's image (same manifest) and downloads nothing; blobs another
//! image already stored are hard-linked rather than fetched. Across processes the store's
//! own file lock makes concurrent imports safe; each process stages in its own directory
//! under `ingest/`, named after its pid so that garbage collection can remove what a dead
//! puller left.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::auth::RegistryAuth;
use super::client::{write_file, Client, Session};
use super::config::{Endpoint, RegistriesConfig};
use super::resolve::{resolve, ImageReference};
use super::RegistryError;
use crate::digest::Digest;
use crate::image::{ImageRecord, ImageStore, ImportOptions};

type LockMap = Mutex<HashMap<String, Weak<Mutex<()>>>>;

/// Per-reference locks; weak so that the map only holds references being pulled.
fn reference_lock(key: String) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<LockMap> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(Mutex::new(()));
    map.insert(key, Arc::downgrade(&lock));
    lock
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// A staging OCI layout under the store's `ingest/`, removed on drop whatever happens.
struct Staging(PathBuf);

impl Staging {
    fn new(store: &ImageStore) -> Result<Self, RegistryError> {
        // `<pid>-` first: the store's GC parses it to spot stagings of dead processes.
        let dir = store.dir().join("ingest").join(format!(
            "{}-pull-{}-{}",
            std::process::id(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|source| RegistryError::Io {
            what: "create staging dir",
            path: blobs.clone(),
            source,
        })?;
        Ok(Self(dir))
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        self.0.join("blobs/sha256").join(digest.hex())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Pulls `reference` into `store` and returns the stored image.
///
/// Endpoints come from `config` (mirrors first, then the registry). `auth`, typically from
/// an imagePullSecret, is used for the registry's own endpoint and wins over
/// `registries.yaml` there; mirrors only get the credentials `registries.yaml` gives them.
/// A reference pinned by digest that is already stored is returned without network access.
/// Nothing is stored unless every blob verified and the store accepted the image.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    config: &RegistriesConfig,
    auth: Option<&RegistryAuth>,
) -> Result<ImageRecord, RegistryError> {
    let reference = ImageReference::parse(reference)?;
    let lock = reference_lock(format!("{}\0{}", store.dir().display(), reference.name));
    let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if reference.digest.is_some() {
        if let Ok(found) = store.get(&reference.name) {
            return Ok(found);
        }
    }
    let staging = Staging::new(store)?;
    let mut client = Client::new(config);
    let mut last = None;
    for endpoint in config.endpoints(&reference.registry) {
        let host = endpoint.host.clone();
        let creds = if endpoint.mirror {
            config.credentials(&endpoint.host, &reference.registry)?
        } else {
            match auth {
                Some(a) => Some(a.clone()),
                None => config.credentials(&endpoint.host, &reference.registry)?,
            }
        };
        match pull_from(&mut client, store, &reference, endpoint, creds, &staging) {
            Ok(record) => return Ok(record),
            // The store refusing the image does not depend on where it came from.
            Err(e @ RegistryError::Store { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(image = %reference.name, endpoint = %host, error = %e, "pull from endpoint failed");
                last = Some(e);
            }
        }
    }
    Err(last.expect("endpoints always include the registry itself"))
}

fn pull_from(
    client: &mut Client<'_>,
    store: &ImageStore,
    reference: &ImageReference,
    endpoint: Endpoint,
    creds: Option<RegistryAuth>,
    staging: &Staging,
) -> Result<ImageRecord, RegistryError> {
    let mut session = Session::open(
        client,
        endpoint,
        &reference.registry,
        &reference.repository,
        &reference.name,
        creds,
    )?;
    let resolved = resolve(&mut session, reference)?;
    // Same manifest already stored under this name (a concurrent pull that held the lock
    // before us, or a re-pull of an unchanged tag): nothing to download.
    if let Ok(existing) = store.get(&reference.name) {
        if existing.manifest == resolved.digest {
            return Ok(existing);
        }
    }
    write_file(&staging.blob(&resolved.digest), &resolved.bytes)?;
    let m = &resolved.manifest;
    let blobs = std::iter::once((&m.config, "config")).chain(m.layers.iter().map(|l| (l, "layer")));
    let mut fetched = 0u64;
    for (desc, what) in blobs {
        let dest = staging.blob(&desc.digest);
        // Already staged by an earlier endpoint attempt, or shared with a stored image.
        if dest.exists() || fs::hard_link(store.blob_path(&desc.digest), &dest).is_ok() {
            continue;
        }
        session.blob(&desc.digest, desc.size, what, &dest)?;
        fetched += desc.size;
    }
    write_layout(
        &staging.0,
        &resolved.digest,
        &resolved.media_type,
        resolved.bytes.len(),
    )?;
    let mut records = store
        .import(
            &staging.0,
            &ImportOptions {
                name: Some(reference.name.clone()),
            },
        )
        .map_err(|source| RegistryError::Store {
            reference: reference.name.clone(),
            source,
        })?;
    tracing::info!(image = %reference.name, manifest = %resolved.digest, endpoint = %session.host(), bytes = fetched, "pulled image");
    records.pop().ok_or_else(|| RegistryError::InvalidManifest {
        registry: session.host().to_string(),
        reference: reference.name.clone(),
        reason: "the store found no image in the pulled manifest".into(),
    })
}

/// `index.json` and `oci-layout` pointing at the platform manifest, so that the staging
/// directory is an OCI layout the store's importer reads like any other.
fn write_layout(
    dir: &Path,
    manifest: &Digest,
    media_type: &str,
    size: usize,
) -> Result<(), RegistryError> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": manifest, "size": size}],
    });
    write_file(
        &dir.join("index.json"),
        &serde_json::to_vec(&index).expect("json values serialize"),
    )?;
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}
