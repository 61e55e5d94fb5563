//! Image store: content-addressed blobs, image metadata and unpacked layer snapshots.
//!
//! Layout under `<root>/images/`:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layers, named by the digest of their bytes,
//!   which is verified before a blob is stored;
//! - `snapshots/<chain-id hex>/`: one directory per unpacked layer, keyed by the layer's chain
//!   id and used as a read-only overlayfs lower;
//! - `index.json`: the image records (names, manifest, config, layers);
//! - `leases/<holder>.json`: snapshots in use by a container, kept by garbage collection;
//! - `ingest/`: staging for imports in progress;
//! - `lock`: an advisory file lock taken for every change, so that several processes (the
//!   node agent and `skiff image import`) can use one store.

mod archive;
pub mod manifest;
pub mod registry;
mod store;
pub mod unpack;

pub(crate) use store::write_replace;
pub use store::{GcReport, ImageRecord, ImageStore, ImportOptions, LayerRecord};
