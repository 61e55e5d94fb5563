//! [`LocalRuntime`]: the real runtime, with containers on this machine.
//!
//! Layout under the runtime root, on disk: `images/` (the image store) and
//! `containers/<id>/` (the container's overlay `upper/` and `work/` dirs and by default its
//! `container.log`). Under the state directory, on a tmpfs ([`super::state_dir`]):
//! `containers/<id>/` (the container's record `container.json`, its bundle with the
//! overlayfs root at `bundle/rootfs`, mounted only in the shim's mount namespace, the
//! shim's `status.json`, `shim.sock`, `shim.log`),
//! `sandboxes/<id>/` and `libcontainer/` (libcontainer's own state). A container exists
//! while its state directory does; a writable layer without one (left by a reboot, which
//! empties the tmpfs) is removed by [`LocalRuntime::recover`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use serde::{Deserialize, Serialize};

use super::sandbox::{self, NetworkHook, NS_KINDS};
use super::state_dir;
use super::types::*;
use super::{AttachSession, ExecResizer, Runtime, StreamingExec};
use crate::cgroups;
use crate::error::{validate_id, Error, IoContext, Result, SysContext};
use crate::image::registry::RegistryAuth;
use crate::image::{ImageRecord, ImageStore, ImportOptions};
use crate::shim::client::{self, read_status, ShimProgram};
use crate::shim::{CreateArgs, ExecArgs, ShimCommand};
use crate::spec::{self, NamespaceSetup};

/// Configuration of a [`LocalRuntime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Root directory (`<data-dir>/agent/runtime` in skiff).
    pub root: PathBuf,
    /// Directory for state that does not outlive the machine (see the module docs); may be
    /// `root` itself (tests), must not be shared by two runtimes.
    pub state: PathBuf,
    /// How to start `skiff shim`.
    pub shim: ShimProgram,
    /// Parent cgroup of all containers (`/skiff`).
    pub cgroup_parent: String,
}

impl RuntimeConfig {
    /// Defaults for a root: the current executable as the shim, a state directory and a
    /// cgroup parent of its own, `/run/skiff/<tag>` and `/skiff/<tag>` (a hash of the root).
    /// Recovery reclaims every cgroup under the parent that it does not know, so two
    /// runtimes on one machine (several nodes of a test cluster, say) must never share one.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        let tag = state_dir::tag(&root);
        Ok(Self {
            state: state_dir::for_root(&root),
            root,
            shim: ShimProgram::current_exe()?,
            cgroup_parent: format!("/skiff/{tag}"),
        })
    }
}

/// What the agent records about a container, next to what the shim records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    config: ContainerConfig,
    image_id: String,
    cgroups_path: String,
    log_path: PathBuf,
    uid: u32,
    gid: Option<u32>,
}

/// What [`LocalRuntime::recover`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Containers whose shim is alive (created or running).
    pub live: Vec<String>,
    /// Containers that had exited, with their status on disk.
    pub exited: Vec<String>,
    /// Containers whose shim died without recording an exit; their processes were killed
    /// and they are now reported as exited with reason `Unknown`.
    pub lost: Vec<String>,
    /// Half-created containers and sandboxes that were removed.
    pub cleaned: Vec<String>,
}

/// The runtime on this machine.
pub struct LocalRuntime {
    cfg: RuntimeConfig,
    images: ImageStore,
    network: Arc<dyn NetworkHook>,
    running: super::running::RunningStatuses,
    zygote: std::sync::Mutex<ZygoteState>,
    pins: super::pins::PinHolder,
}

/// The shim zygote ([`crate::shim::Zygote`]): started on the first container create.
enum ZygoteState {
    /// Turned off (`SKIFF_SHIM_ZYGOTE=0`): shims are always executed.
    Off,
    /// Not started yet.
    Unstarted,
    Running(Arc<crate::shim::Zygote>),
    /// It failed to start or stopped serving at this time; shims are executed meanwhile.
    Failed(std::time::Instant),
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn info(r: &ImageRecord) -> ImageInfo {
    ImageInfo {
        id: r.id.to_string(),
        names: r.names.clone(),
        size: r.size,
    }
}

fn is_alive(pid: i32, id: &str) -> bool {
    super::liveness::shim_alive(pid, id)
}

/// SIGKILLs every process in a cgroup and waits briefly for it to empty.
fn kill_cgroup(cgroups_path: &str) {
    for pid in cgroups::pids(cgroups_path) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // Give the kernel a moment to empty the cgroup so that it can be removed.
    for _ in 0..50 {
        if cgroups::pids(cgroups_path).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl LocalRuntime {
    /// Opens the runtime at `cfg.root`, creating its directories.
    pub fn new(cfg: RuntimeConfig, network: Arc<dyn NetworkHook>) -> Result<Self> {
        for d in state_dir::SUBDIRS {
            let p = cfg.state.join(d);
            std::fs::create_dir_all(&p).ctx("create runtime state dir", &p)?;
        }
        let p = cfg.root.join("containers");
        std::fs::create_dir_all(&p).ctx("create runtime dir", &p)?;
        let images = ImageStore::open(&cfg.root)?;
        let pins = super::pins::PinHolder::new(cfg.shim.clone(), &cfg.state)?;
        Ok(Self {
            pins,
            cfg,
            images,
            network,
            running: Default::default(),
            zygote: std::sync::Mutex::new(if std::env::var_os("SKIFF_SHIM_ZYGOTE").is_some_and(|v| v == "0") {
                ZygoteState::Off
            } else {
                ZygoteState::Unstarted
            }),
        })
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The container's state: its record, bundle and shim files.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.state.join("containers").join(id)
    }

    /// The container's writable layer (and default log), on disk.
    fn layer_dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join("containers").join(id)
    }

    fn lc_root(&self) -> PathBuf {
        self.cfg.state.join("libcontainer")
    }

    fn record(&self, id: &str) -> Result<Record> {
        validate_id(id)?;
        let path = self.container_dir(id).join("container.json");
        let bytes = std::fs::read(&path).map_err(|_| Error::NotFound {
            kind: "container",
            id: id.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "container record",
            path,
            source,
        })
    }

    fn build(&self, dir: &Path, config: &ContainerConfig) -> Result<Record> {
        let seccomp = crate::seccomp::resolve(config, &spec::capabilities(config))?;
        let image = self.images.get(&config.image)?;
        self.images.lease(&config.id, &image)?;
        let image_cfg = self.images.config(&image)?;
        let layer = self.layer_dir(&config.id);
        let lowers = self.images.lower_dirs(&image);
        // Mounted by the shim, in its own mount namespace (see `rootfs.rs`).
        let rootfs = super::rootfs::prepare_overlay(&layer, &dir.join("bundle"), &lowers)?.rootfs;
        let process = spec::resolve_process(config, &image_cfg, &spec::ImageFiles(lowers))?;
        let mut ns = NamespaceSetup::default();
        if let Some(sid) = &config.sandbox_id {
            let sb = sandbox::load(&self.cfg.state, sid)?;
            ns.host_network = sb.config.host_network;
            for (kind, file) in NS_KINDS {
                let p = sb.ns_dir.join(file);
                if p.exists() {
                    ns.join.push((kind, p));
                }
            }
            ns.files = sandbox::pod_files(&self.cfg.state, sid);
            ns.shm = sandbox::shm_dir(&self.cfg.state, sid);
        }
        let cgroups_path = format!(
            "{}/{}",
            self.cfg.cgroup_parent.trim_end_matches('/'),
            config.id
        );
        let spec = spec::build_spec(
            config,
            &process,
            &rootfs,
            &ns,
            &cgroups_path,
            seccomp.as_ref(),
        )?;
        let spec_path = dir.join("bundle/config.json");
        std::fs::write(
            &spec_path,
            serde_json::to_vec_pretty(&spec).expect("json values serialize"),
        )
        .ctx("write spec", &spec_path)?;
        let log_path = config
            .log_path
            .clone()
            .unwrap_or_else(|| layer.join("container.log"));
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).ctx("create log dir", parent)?;
        }
        let record = Record {
            config: config.clone(),
            image_id: image.id.to_string(),
            cgroups_path,
            log_path,
            uid: process.user.uid,
            gid: Some(process.gid),
        };
        let path = dir.join("container.json");
        let bytes = serde_json::to_vec_pretty(&record).map_err(|source| Error::Json {
            what: "container record",
            path: path.clone(),
            source,
        })?;
        crate::image::write_replace(&path, &bytes)?;
        Ok(record)
    }

    /// Removes everything of a container but its shim; tolerant of partial state.
    fn cleanup(&self, id: &str, cgroups_path: Option<&str>) {
        let dir = self.container_dir(id);
        // Roots are mounted in their shims' namespaces; containers created by an agent of an
        // earlier version had theirs in the host's.
        let _ = umount2(&dir.join("bundle/rootfs"), MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(self.layer_dir(id));
        let _ = std::fs::remove_dir_all(self.lc_root().join(id));
        if let Some(cg) = cgroups_path {
            cgroups::remove(cg);
        }
        if let Err(e) = self.images.release(id) {
            tracing::warn!(container = %id, error = %e, "releasing image lease failed");
        }
    }

    fn status_of(&self, id: &str, record: &Record) -> ContainerStatus {
        self.status_in(&record.config.id, &self.container_dir(id))
    }

    /// The status the shim of container `id` (directory `dir`) recorded, `Unknown` when its
    /// shim is gone without recording an exit. Needs no container record: the agent asks this
    /// for every container every second, and parsing the record each time was most of that.
    fn status_in(&self, id: &str, dir: &Path) -> ContainerStatus {
        let mut status =
            read_status(dir).unwrap_or_else(|_| ContainerStatus::new(id, Phase::Unknown));
        if matches!(status.phase, Phase::Created | Phase::Running)
            && !status.shim_pid.is_some_and(|p| is_alive(p, id))
        {
            status.phase = Phase::Unknown;
        }
        status
    }

    /// Adopts what a previous run of the agent left: live shims keep serving their
    /// containers (nothing to do but report them), containers whose shim died are killed and
    /// marked exited, half-created containers and sandboxes are removed along with their
    /// in-flight shims, cgroups, libcontainer state and image leases, and stale image staging
    /// directories are collected.
    pub fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let shims = self.shim_processes();
        let cdir = self.cfg.state.join("containers");
        for entry in std::fs::read_dir(&cdir).ctx("list containers", &cdir)? {
            let entry = entry.ctx("list containers", &cdir)?;
            let id = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let status = read_status(&dir);
            let Ok(record) = self.record(&id) else {
                self.kill_shims(&shims, &id);
                self.cleanup(&id, None);
                report.cleaned.push(id);
                continue;
            };
            match status {
                Err(_) => {
                    // The shim never reported: creation was interrupted. Stop any shim still
                    // working on it before removing what it would use.
                    self.kill_shims(&shims, &id);
                    self.kill_orphans(&record);
                    self.cleanup(&id, Some(&record.cgroups_path));
                    report.cleaned.push(id);
                }
                Ok(s) if s.phase == Phase::Exited => report.exited.push(id),
                Ok(s) if s.shim_pid.is_some_and(|p| is_alive(p, &id)) => report.live.push(id),
                Ok(mut s) => {
                    self.kill_orphans(&record);
                    cgroups::remove(&record.cgroups_path);
                    let _ = std::fs::remove_dir_all(self.lc_root().join(&id));
                    s.phase = Phase::Exited;
                    s.exit_code.get_or_insert(137);
                    s.reason = Some("Unknown".into());
                    s.message = Some("the container's shim died; the container was killed".into());
                    s.finished_at
                        .get_or_insert_with(crate::shim::log::timestamp);
                    client::write_status(&dir, &s)?;
                    report.lost.push(id);
                }
            }
        }
        // Whatever is left without a container directory belongs to nothing.
        let known = |id: &str| self.container_dir(id).exists();
        for (_, id) in &shims {
            if !known(id) {
                self.kill_shims(&shims, id);
            }
        }
        for holder in self.images.lease_holders()? {
            if !known(&holder) {
                self.images.release(&holder)?;
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.lc_root()) {
            for e in rd.flatten() {
                if !known(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // Writable layers of containers whose state is gone (the machine rebooted): nothing
        // can run them again (the agent creates new containers), so their space goes back.
        if self.cfg.state != self.cfg.root {
            if let Ok(rd) = std::fs::read_dir(self.cfg.root.join("containers")) {
                for e in rd.flatten() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    if !known(&id) {
                        let _ = std::fs::remove_dir_all(e.path());
                        report.cleaned.push(id);
                    }
                }
            }
        }
        let parent = cgroups::dir(&self.cfg.cgroup_parent, "pids");
        if let Ok(rd) = std::fs::read_dir(&parent) {
            for e in rd.flatten().filter(|e| e.path().is_dir()) {
                let id = e.file_name().to_string_lossy().into_owned();
                if !known(&id) {
                    let path = format!("{}/{id}", self.cfg.cgroup_parent.trim_end_matches('/'));
                    kill_cgroup(&path);
                    cgroups::remove(&path);
                }
            }
        }
        let sdir = self.cfg.state.join("sandboxes");
        for entry in std::fs::read_dir(&sdir).ctx("list sandboxes", &sdir)? {
            let entry = entry.ctx("list sandboxes", &sdir)?;
            if !entry.path().join("sandbox.json").exists() {
                sandbox::teardown_dir(&entry.path());
                report
                    .cleaned
                    .push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        self.images.gc()?;
        Ok(report)
    }

    /// Shim processes (of any stage) working for this runtime root, as (pid, container id),
    /// found by their command lines.
    fn shim_processes(&self) -> Vec<(i32, String)> {
        let marker = format!("\0--lc-root\0{}\0", self.lc_root().display());
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&cmdline);
            if !text.contains(&marker) {
                continue;
            }
            let mut parts = text.split('\0');
            if parts.by_ref().any(|p| p == "--id") {
                if let Some(id) = parts.next() {
                    out.push((pid, id.to_string()));
                }
            }
        }
        out
    }

    /// Kills the shims of a container with their process groups (libcontainer's helper
    /// processes stay in the shim's group) and waits for them to be gone.
    fn kill_shims(&self, shims: &[(i32, String)], id: &str) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pids: Vec<i32> = shims
            .iter()
            .filter(|(_, i)| i == id)
            .map(|(p, _)| *p)
            .collect();
        for &p in &pids {
            let _ = kill(Pid::from_raw(-p), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        for _ in 0..100 {
            if pids.iter().all(|p| !is_alive(*p, id)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill_orphans(&self, record: &Record) {
        for pid in cgroups::pids(&record.cgroups_path) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Give the kernel a moment to empty the cgroup so that it can be removed.
        for _ in 0..50 {
            if cgroups::pids(&record.cgroups_path).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `shim create`: forked by the zygote when it serves, else executed.
    fn run_shim_create(&self, cmd: &ShimCommand, id: &str) -> Result<i32> {
        if let Some(zygote) = self.zygote() {
            match zygote.run(cmd) {
                Ok((out, err)) => return client::create_report(&out, &err, "forked by the zygote", id),
                Err(crate::shim::ZygoteError::NotSent(e)) => {
                    // The request never reached it: executing the shim instead is safe.
                    tracing::warn!(error = %e, "the shim zygote stopped serving; executing shims");
                    *self.zygote.lock().unwrap_or_else(|p| p.into_inner()) = ZygoteState::Failed(std::time::Instant::now());
                }
                Err(crate::shim::ZygoteError::Lost(e)) => return Err(e),
            }
        }
        self.cfg.shim.create(cmd, id)
    }

    /// The serving zygote, started when needed (and again a while after it failed).
    fn zygote(&self) -> Option<Arc<crate::shim::Zygote>> {
        let mut state = self.zygote.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            ZygoteState::Running(z) => return Some(z.clone()),
            ZygoteState::Off => return None,
            ZygoteState::Failed(at) if at.elapsed() < crate::shim::ZYGOTE_RESTART_BACKOFF => return None,
            _ => {}
        }
        match crate::shim::Zygote::start(&self.cfg.shim, &self.lc_root()) {
            Ok(z) => {
                let z = Arc::new(z);
                *state = ZygoteState::Running(z.clone());
                Some(z)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the shim zygote; executing shims");
                *state = ZygoteState::Failed(std::time::Instant::now());
                None
            }
        }
    }

    /// The command that runs `request` in its container with inherited stdio, for callers
    /// that stream (attach-style exec); [`Runtime::exec_sync`] captures output instead.
    pub fn exec_command(&self, request: &ExecRequest) -> Result<std::process::Command> {
        self.exec_shim_command(request, None)
    }

    fn exec_shim_command(
        &self,
        request: &ExecRequest,
        resize: Option<PathBuf>,
    ) -> Result<std::process::Command> {
        let record = self.record(&request.container_id)?;
        let cmd = ShimCommand::Exec(ExecArgs {
            id: request.container_id.clone(),
            lc_root: self.lc_root(),
            cwd: request.working_dir.clone(),
            env: request
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            uid: Some(record.uid),
            gid: record.gid,
            tty: request.tty,
            resize,
            command: request.command.clone(),
        });
        Ok(self.cfg.shim.command(&cmd))
    }

    /// [`Runtime::exec_streaming`]: with a tty, the exec shim reads sizes from a FIFO in
    /// the container's directory that the returned resizer writes to.
    fn exec_streaming_impl(&self, request: &ExecRequest) -> Result<StreamingExec> {
        use std::os::unix::fs::OpenOptionsExt;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if request.tty.is_none() {
            return Ok(StreamingExec {
                command: self.exec_shim_command(request, None)?,
                resize: None,
            });
        }
        self.record(&request.container_id)?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .container_dir(&request.container_id)
            .join(format!("exec-{}-{n}.resize", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .sys(|| format!("create resize fifo {}", path.display()))?;
        // Read-write: opening never waits for the shim, and sizes written before it starts
        // wait in the FIFO.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .ctx("open resize fifo", &path)?;
        let resizer = ExecResizer::new(fifo, path.clone());
        Ok(StreamingExec {
            command: self.exec_shim_command(request, Some(path))?,
            resize: Some(resizer),
        })
    }
}

impl Runtime for LocalRuntime {
    fn exec_command(&self, request: &ExecRequest) -> Result<std::process::Command> {
        LocalRuntime::exec_command(self, request)
    }

    fn exec_streaming(&self, request: &ExecRequest) -> Result<StreamingExec> {
        self.exec_streaming_impl(request)
    }

    fn attach(&self, request: &AttachRequest) -> Result<AttachSession> {
        let record = self.record(&request.container_id)?;
        let status = self.status_of(&request.container_id, &record);
        if !matches!(status.phase, Phase::Created | Phase::Running) {
            return Err(Error::InvalidState(format!(
                "container {} is not running",
                request.container_id
            )));
        }
        client::attach(&self.container_dir(&request.container_id), request)
    }

    fn import_image(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageInfo>> {
        let opts = ImportOptions {
            name: name.map(str::to_string),
        };
        Ok(self.images.import(path, &opts)?.iter().map(info).collect())
    }

    fn pull_image(&self, reference: &str) -> Result<ImageInfo> {
        self.pull_image_with(reference, None)
    }

    fn pull_image_with(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        use crate::image::registry::{self, RegistriesConfig, RegistryError};
        // Read per pull so that edits to registries.yaml apply without a restart.
        let config =
            RegistriesConfig::load(&registry::registries_yaml_for_runtime_root(&self.cfg.root))?;
        match registry::pull(&self.images, reference, &config, auth) {
            Ok(r) => Ok(info(&r)),
            // An air-gapped node (images imported from tarballs) cannot reach any registry;
            // the imported image then satisfies the pull, as it did before pulls existed.
            // Only an unreachable registry falls back: a refusal (401/403, 404) must not be
            // papered over by a local copy.
            Err(e @ RegistryError::Transport { .. }) => match self.images.get(reference) {
                Ok(r) => {
                    tracing::warn!(image = reference, error = %e, "registry unreachable; using the stored image");
                    Ok(info(&r))
                }
                Err(_) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.images.get(reference) {
            Ok(r) => Ok(Some(info(&r))),
            Err(Error::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.images.list()?.iter().map(info).collect())
    }

    fn remove_image(&self, reference: &str) -> Result<()> {
        self.images.remove(reference).map(|_| ())
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo> {
        sandbox::create(&self.cfg.state, self.network.as_ref(), &self.pins, config)
    }

    fn remove_sandbox(&self, id: &str) -> Result<()> {
        sandbox::remove(&self.cfg.state, self.network.as_ref(), id)
    }

    fn sandbox(&self, id: &str) -> Result<Option<SandboxInfo>> {
        validate_id(id)?;
        Ok(sandbox::load(&self.cfg.state, id).ok())
    }

    fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        let d = self.cfg.state.join("sandboxes");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&d).ctx("list sandboxes", &d)?.flatten() {
            if let Ok(s) = sandbox::load(&self.cfg.state, &e.file_name().to_string_lossy()) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn create_container(&self, config: &ContainerConfig) -> Result<ContainerStatus> {
        validate_id(&config.id)?;
        let dir = self.container_dir(&config.id);
        if let Err(e) = std::fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    kind: "container",
                    id: config.id.clone(),
                }
            } else {
                Error::Io {
                    what: "create container dir",
                    path: dir,
                    source: e,
                }
            });
        }
        let record = match self.build(&dir, config) {
            Ok(r) => r,
            Err(e) => {
                self.cleanup(&config.id, None);
                return Err(e);
            }
        };
        let cmd = ShimCommand::Create(CreateArgs {
            id: config.id.clone(),
            bundle: dir.join("bundle"),
            state_dir: dir.clone(),
            log_path: record.log_path.clone(),
            lc_root: self.lc_root(),
            cgroups_path: record.cgroups_path.clone(),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            terminal: config.tty,
        });
        if let Err(e) = self.run_shim_create(&cmd, &config.id) {
            self.cleanup(&config.id, Some(&record.cgroups_path));
            return Err(e);
        }
        read_status(&dir)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        self.record(id)?;
        client::request(
            &self.container_dir(id),
            id,
            "start",
            Some(Duration::from_secs(30)),
        )
        .map(|_| ())
    }

    fn stop_container(&self, id: &str, grace: Duration) -> Result<ContainerStatus> {
        self.running.forget(id);
        let record = self.record(id)?;
        let dir = self.container_dir(id);
        let status = self.status_of(id, &record);
        if matches!(status.phase, Phase::Created | Phase::Running) {
            let line = format!("stop {}", grace.as_secs());
            if let Err(e) = client::request(&dir, id, &line, Some(grace + Duration::from_secs(30)))
            {
                // The shim may have finished between our status read and the request.
                let now = self.status_of(id, &record);
                if matches!(now.phase, Phase::Created | Phase::Running) {
                    return Err(e);
                }
                return Ok(now);
            }
        }
        Ok(self.status_of(id, &record))
    }

    fn wait_container(&self, id: &str, timeout: Option<Duration>) -> Result<ContainerStatus> {
        let record = self.record(id)?;
        let dir = self.container_dir(id);
        if matches!(
            self.status_of(id, &record).phase,
            Phase::Created | Phase::Running
        ) {
            // The shim closes its socket as it exits, which also ends the wait.
            let _ = client::request(&dir, id, "wait", timeout);
        }
        Ok(self.status_of(id, &record))
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.running.forget(id);
        let Ok(record) = self.record(id) else {
            self.cleanup(id, None);
            return Ok(());
        };
        if matches!(
            self.status_of(id, &record).phase,
            Phase::Created | Phase::Running
        ) {
            self.stop_container(id, Duration::ZERO)?;
        }
        self.kill_orphans(&record);
        self.cleanup(id, Some(&record.cgroups_path));
        Ok(())
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        validate_id(id)?;
        if let Some(status) = self.running.get(id) {
            return Ok(status);
        }
        let dir = self.container_dir(id);
        if !dir.join("container.json").exists() {
            return Err(Error::NotFound { kind: "container", id: id.to_string() });
        }
        let status = self.status_in(id, &dir);
        self.running.remember(id, &status, |pid| is_alive(pid, id));
        Ok(status)
    }

    fn exit_fd(&self, id: &str) -> Option<std::os::fd::OwnedFd> {
        // Reading the status remembers a running container's shim (and its pidfd).
        if self.container_status(id).ok()?.phase != Phase::Running {
            return None;
        }
        self.running.exit_fd(id)
    }

    fn running_container_ids(&self) -> Result<Vec<String>> {
        let d = self.cfg.state.join("containers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&d).ctx("list containers", &d)?.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            // Remembered while the shim lives: one poll per running container.
            if self.container_status(&id).is_ok_and(|s| s.phase == Phase::Running) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        self.list_containers_with_prefix("")
    }

    fn list_containers_with_prefix(&self, prefix: &str) -> Result<Vec<ContainerInfo>> {
        let d = self.cfg.state.join("containers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&d).ctx("list containers", &d)?.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !id.starts_with(prefix) {
                continue;
            }
            if let Ok(record) = self.record(&id) {
                let status = self.status_of(&id, &record);
                out.push(ContainerInfo {
                    config: record.config,
                    status,
                    log_path: record.log_path,
                });
            }
        }
        Ok(out)
    }

    fn exec_sync(&self, request: &ExecRequest) -> Result<ExecOutput> {
        let record = self.record(&request.container_id)?;
        if self.status_of(&request.container_id, &record).phase != Phase::Running {
            return Err(Error::InvalidState(format!(
                "container {} is not running",
                request.container_id
            )));
        }
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        use std::process::Stdio;
        let program = &self.cfg.shim.program;
        let mut child = self
            .exec_command(request)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ctx("run exec shim", program)?;
        // Drain both pipes on threads so that a chatty process cannot block on a full pipe
        // while we wait for it.
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out_t = drain(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err_t = drain(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let deadline = request.timeout.map(|t| std::time::Instant::now() + t);
        let status = loop {
            if let Some(st) = child.try_wait().ctx("wait for exec shim", program)? {
                break st;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                // The shim kills the process in the container when asked to terminate.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = child.wait();
                return Err(Error::Timeout(format!(
                    "exec {:?} in container {} after {:?}",
                    request.command,
                    request.container_id,
                    request.timeout.unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
        })
    }

    fn log_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.record(id)?.log_path)
    }

    fn reopen_log(&self, id: &str) -> Result<()> {
        self.record(id)?;
        client::request(
            &self.container_dir(id),
            id,
            "reopen",
            Some(Duration::from_secs(10)),
        )
        .map(|_| ())
    }

    fn stats(&self, id: &str) -> Result<ContainerStats> {
        let record = self.record(id)?;
        cgroups::stats(&record.cgroups_path).ok_or_else(|| {
            Error::InvalidState(format!("container {id} has no cgroup (not running)"))
        })
    }
}
