//! Pod volumes on the node, laid out as kubelet lays them out:
//! `<root>/<pod-uid>/volumes/<plugin>/<volume-name>` (root is `<data-dir>/agent/pods`), with
//! kubelet's plugin directory names (`kubernetes.io~empty-dir`, `kubernetes.io~secret`, ...).
//!
//! The pod worker calls [`VolumeManager::setup`] before creating containers,
//! [`VolumeManager::mounts_for`] per container, [`VolumeManager::refresh`] every 30-60 s
//! while the pod runs (ConfigMap/Secret/downward API updates and token rotation), and
//! [`VolumeManager::teardown`] once all containers are gone.
//!
//! Memory-backed volumes (emptyDir `Memory`, secret, projected, downwardAPI) are tmpfs mounts
//! on the host that containers bind-mount, so all containers of the pod share them and
//! secrets never touch the disk. hostPath and persistent volumes are bind-mounted from where
//! they are; teardown never deletes them.

pub mod atomic_writer;
pub mod configmap_secret;
pub mod downward;
pub mod emptydir;
mod error;
pub mod hostpath;
pub mod mount;
pub mod projected;
pub mod pvc;
pub mod quantity;
pub mod subpath;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_runtime::runtime::types::{Mount, MountKind};

pub use error::{Error, SetUpError};
pub use skiff_api::service_account::{inject_service_account_volume, service_account_volume};

use atomic_writer::{AtomicWriter, FileProjection};
use configmap_secret::DEFAULT_MODE;
use emptydir::DirUsage;
use mount::{HostMounter, Mounter};
use projected::TokenManager;

/// Mode of the directories holding API data (configMap, secret, ...): readable by any user
/// the container runs as; the files carry their own modes.
const DATA_DIR_MODE: u32 = 0o755;

/// What kind of volume a [`PodVolume`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// `emptyDir`; `memory` for `medium: Memory` (a tmpfs).
    EmptyDir {
        /// Backed by a tmpfs.
        memory: bool,
    },
    /// `hostPath`.
    HostPath,
    /// `configMap`.
    ConfigMap,
    /// `secret` (a tmpfs).
    Secret,
    /// `projected` (a tmpfs).
    Projected,
    /// `downwardAPI` (a tmpfs).
    DownwardApi,
    /// `persistentVolumeClaim` or generic `ephemeral`.
    PersistentVolumeClaim,
}

/// One volume, ready to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    /// Its kind.
    pub kind: VolumeKind,
    /// Host path to bind-mount.
    pub path: PathBuf,
    /// Always mounted read-only (API data volumes, read-only claims).
    pub read_only: bool,
}

/// The set-up volumes of one pod, by volume name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    /// Volumes by name.
    pub volumes: BTreeMap<String, PodVolume>,
}

/// Space an emptyDir uses, for eviction against its `sizeLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDirUsage {
    /// Volume name.
    pub volume: String,
    /// What it uses.
    pub usage: DirUsage,
    /// `sizeLimit` in bytes.
    pub size_limit: Option<u64>,
    /// Memory-backed (its usage counts against the pod's memory instead).
    pub memory: bool,
}

/// Sets up, refreshes and tears down the volumes of the pods on this node.
pub struct VolumeManager {
    root: PathBuf,
    client: kube::Client,
    node_name: String,
    mounter: Arc<dyn Mounter>,
    tokens: TokenManager,
    allocatable: RwLock<BTreeMap<String, Quantity>>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // kube::Client is not Debug.
        f.debug_struct("VolumeManager").field("root", &self.root).field("node_name", &self.node_name).finish_non_exhaustive()
    }
}

impl VolumeManager {
    /// A manager keeping pod directories under `root` (`<data-dir>/agent/pods`).
    pub fn new(root: impl Into<PathBuf>, client: kube::Client, node_name: impl Into<String>) -> Self {
        VolumeManager {
            root: root.into(),
            client,
            node_name: node_name.into(),
            mounter: Arc::new(HostMounter),
            tokens: TokenManager::default(),
            allocatable: RwLock::new(BTreeMap::new()),
        }
    }

    /// Use another mounter (tests without root).
    pub fn with_mounter(mut self, mounter: Arc<dyn Mounter>) -> Self {
        self.mounter = mounter;
        self
    }

    /// Use another token manager (tests give it a clock that runs ahead).
    pub fn with_token_manager(mut self, tokens: TokenManager) -> Self {
        self.tokens = tokens;
        self
    }

    /// Node allocatable, which stands in for unset limits in downward API volumes.
    pub fn set_node_allocatable(&self, allocatable: BTreeMap<String, Quantity>) {
        *self.allocatable.write().expect("allocatable lock") = allocatable;
    }

    /// The node this manager serves.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// `<root>/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join(pod_uid)
    }

    /// `<root>/<uid>/volumes/<plugin>/<name>`.
    pub fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_uid).join("volumes").join(plugin).join(name)
    }

    /// Set up every volume of `pod` (idempotent). All volumes are attempted; the error holds
    /// one FailedMount-style entry per failed volume ([`Error::failures`]).
    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes, Error> {
        let uid = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()).ok_or(Error::NoUid)?;
        let mut out = PodVolumes::default();
        let mut errors = Vec::new();
        for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.setup_volume(pod, uid, vol).await {
                Ok(v) => {
                    out.volumes.insert(vol.name.clone(), v);
                }
                Err(source) => errors.push(Error::SetUp { volume: vol.name.clone(), source }),
            }
        }
        match Error::combine(errors) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Re-read ConfigMaps, Secrets and downward API fields and rotate tokens; files change
    /// (atomically) only when their content does.
    pub async fn refresh(&self, pod: &Pod) -> Result<(), Error> {
        // Setting up is idempotent and only rewrites changed payloads, so a refresh is a
        // set-up of the volumes whose content comes from the API.
        let uid = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()).ok_or(Error::NoUid)?;
        let mut errors = Vec::new();
        for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let api_data = vol.config_map.is_some() || vol.secret.is_some() || vol.projected.is_some() || vol.downward_api.is_some();
            if api_data {
                if let Err(source) = self.setup_volume(pod, uid, vol).await {
                    errors.push(Error::SetUp { volume: vol.name.clone(), source });
                }
            }
        }
        Error::combine(errors).map_or(Ok(()), Err)
    }

    async fn setup_volume(&self, pod: &Pod, uid: &str, vol: &Volume) -> Result<PodVolume, SetUpError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let dir = |plugin: &str| self.volume_dir(uid, plugin, &vol.name);
        let allocatable = || self.allocatable.read().expect("allocatable lock").clone();
        let api_volume = |kind, path| Ok(PodVolume { kind, path, read_only: true });
        if let Some(src) = vol.empty_dir.as_ref() {
            let path = dir("kubernetes.io~empty-dir");
            emptydir::setup(&path, src, self.mounter.as_ref())?;
            let memory = src.medium.as_deref() == Some("Memory");
            Ok(PodVolume { kind: VolumeKind::EmptyDir { memory }, path, read_only: false })
        } else if let Some(src) = vol.host_path.as_ref() {
            hostpath::check(&src.path, src.type_.as_deref().unwrap_or(""))?;
            Ok(PodVolume { kind: VolumeKind::HostPath, path: PathBuf::from(&src.path), read_only: false })
        } else if let Some(src) = vol.config_map.as_ref() {
            let path = dir("kubernetes.io~configmap");
            let optional = src.optional == Some(true);
            let cm = configmap_secret::get_configmap(&self.client, ns, &src.name, optional).await?;
            let mode = src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
            let payload = configmap_secret::configmap_payload(src.items.as_deref().unwrap_or_default(), &cm, mode, optional)?;
            self.publish(&path, false, &payload)?;
            api_volume(VolumeKind::ConfigMap, path)
        } else if let Some(src) = vol.secret.as_ref() {
            let path = dir("kubernetes.io~secret");
            let optional = src.optional == Some(true);
            let name = src.secret_name.clone().unwrap_or_default();
            let secret = configmap_secret::get_secret(&self.client, ns, &name, optional).await?;
            let mode = src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
            let payload = configmap_secret::secret_payload(src.items.as_deref().unwrap_or_default(), &secret, mode, optional)?;
            self.publish(&path, true, &payload)?;
            api_volume(VolumeKind::Secret, path)
        } else if let Some(src) = vol.projected.as_ref() {
            let path = dir("kubernetes.io~projected");
            let payload = projected::payload(&self.client, &self.tokens, pod, src, &allocatable()).await?;
            self.publish(&path, true, &payload)?;
            api_volume(VolumeKind::Projected, path)
        } else if let Some(src) = vol.downward_api.as_ref() {
            let path = dir("kubernetes.io~downward-api");
            let mode = src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
            let payload = downward::collect_data(src.items.as_deref().unwrap_or_default(), pod, mode, &allocatable())?;
            self.publish(&path, true, &payload)?;
            api_volume(VolumeKind::DownwardApi, path)
        } else if let Some(src) = vol.persistent_volume_claim.as_ref() {
            let path = pvc::host_path(&self.client, ns, &src.claim_name).await?;
            Ok(PodVolume { kind: VolumeKind::PersistentVolumeClaim, path: path.into(), read_only: src.read_only == Some(true) })
        } else if vol.ephemeral.is_some() {
            // The ephemeral volume controller names the claim <pod>-<volume>.
            let claim = format!("{}-{}", pod.metadata.name.as_deref().unwrap_or(""), vol.name);
            let path = pvc::host_path(&self.client, ns, &claim).await?;
            Ok(PodVolume { kind: VolumeKind::PersistentVolumeClaim, path: path.into(), read_only: false })
        } else {
            Err(SetUpError::Unsupported(source_name(vol)))
        }
    }

    /// Create `dir` (a tmpfs when `memory`) and publish `payload` in it atomically.
    fn publish(&self, dir: &Path, memory: bool, payload: &BTreeMap<String, FileProjection>) -> Result<(), SetUpError> {
        emptydir::make_dir(dir, DATA_DIR_MODE)?;
        if memory && !self.mounter.is_mount_point(dir).map_err(error::io_err("checking mount", dir))? {
            self.mounter.mount_tmpfs(dir, None, DATA_DIR_MODE).map_err(error::io_err("mounting tmpfs on", dir))?;
        }
        let changed = AtomicWriter::new(dir).write(payload)?;
        if changed {
            tracing::debug!(dir = %dir.display(), files = payload.len(), "volume content updated");
        }
        Ok(())
    }

    /// The mounts of `container`: one bind mount per volumeMount, honouring `subPath`,
    /// `subPathExpr` (expanded from `env`, the container's environment) and `readOnly`.
    /// `/etc/hosts`, `/etc/resolv.conf` and the like are the sandbox's business.
    pub fn mounts_for(&self, pod: &Pod, container: &Container, vols: &PodVolumes, env: &[(String, String)]) -> Result<Vec<Mount>, Error> {
        // The pod is part of the signature for mount decisions that depend on it upstream
        // (mount propagation, SELinux labels), none of which skiff implements yet.
        let _ = pod;
        let env: HashMap<String, String> = env.iter().cloned().collect();
        let mut out = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let vol = vols.volumes.get(&vm.name).ok_or_else(|| Error::NoVolume { volume: vm.name.clone(), container: container.name.clone() })?;
            let sub_err = |source| Error::SubPath { mount: vm.name.clone(), container: container.name.clone(), source };
            let sub = match (vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()), vm.sub_path.as_deref()) {
                (Some(expr), _) => subpath::expand_expr(expr, &env).map_err(sub_err)?,
                (None, Some(s)) => s.to_string(),
                (None, None) => String::new(),
            };
            let source = if sub.is_empty() { vol.path.clone() } else { subpath::resolve(&vol.path, &sub).map_err(sub_err)? };
            out.push(Mount {
                destination: vm.mount_path.clone(),
                kind: MountKind::Bind { source },
                readonly: vm.read_only == Some(true) || vol.read_only,
            });
        }
        Ok(out)
    }

    /// Space used by the pod's emptyDir volumes (those not set up yet are skipped).
    pub fn empty_dir_usage(&self, pod: &Pod) -> Vec<EmptyDirUsage> {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(src) = vol.empty_dir.as_ref() else { continue };
            let path = self.volume_dir(uid, "kubernetes.io~empty-dir", &vol.name);
            if let Ok(usage) = emptydir::usage(&path) {
                out.push(EmptyDirUsage {
                    volume: vol.name.clone(),
                    usage,
                    size_limit: emptydir::size_limit(src).ok().flatten(),
                    memory: src.medium.as_deref() == Some("Memory"),
                });
            }
        }
        out
    }

    /// Unmount the pod's tmpfs volumes and delete `<root>/<uid>/volumes` (and the pod
    /// directory when nothing else is left in it). Symlinks are removed, never followed, and
    /// nothing on another filesystem is deleted, so hostPath and persistent volume contents
    /// are safe even if something was left mounted.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), Error> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Err(Error::NoUid);
        }
        self.tokens.forget_pod(pod_uid);
        let pod_dir = self.pod_dir(pod_uid);
        let vols = pod_dir.join("volumes");
        let teardown = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Teardown { path, source }
        };
        if fs::symlink_metadata(&vols).is_err() {
            let _ = fs::remove_dir(&pod_dir);
            return Ok(());
        }
        let mut errors = Vec::new();
        for plugin in read_dirs(&vols).map_err(teardown(&vols))? {
            for vol in read_dirs(&plugin).map_err(teardown(&plugin))? {
                match self.mounter.is_mount_point(&vol) {
                    Ok(true) => {
                        if let Err(e) = self.mounter.unmount(&vol) {
                            errors.push(teardown(&vol)(e));
                        }
                    }
                    Ok(false) => {}
                    Err(e) => errors.push(teardown(&vol)(e)),
                }
            }
        }
        if let Some(e) = Error::combine(errors) {
            return Err(e);
        }
        let dev = fs::symlink_metadata(&vols).map_err(teardown(&vols))?.dev();
        remove_tree(&vols, dev).map_err(teardown(&vols))?;
        // The pod worker may keep other things in the pod directory; leave them.
        let _ = fs::remove_dir(&pod_dir);
        Ok(())
    }
}

/// Subdirectories of `dir` (not symlinks).
fn read_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Delete `path` recursively without following symlinks and without entering directories
/// on another device than `dev` (a mount point that is still mounted).
fn remove_tree(path: &Path, dev: u64) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.dev() != dev {
        return Err(io::Error::other(format!("{} is on another filesystem (still mounted?); not deleting it", path.display())));
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path(), dev)?;
    }
    fs::remove_dir(path)
}

/// The name of a volume's source field (`nfs`, `csi`), for "not supported" errors.
fn source_name(vol: &Volume) -> String {
    serde_json::to_value(vol)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()))
        .unwrap_or_else(|| "<none>".into())
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod manager_tests;
