//! The runtimes `bench --compare` measures side by side, each running one `/bin/true`
//! container to completion: skiff (`LocalRuntime` with its real shim), runc (`runc run` on a
//! bundle whose rootfs is the same image's snapshot) and containerd (`ctr run --rm` against a
//! containerd this program starts on a private root, state and socket, and stops again).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_runtime::image::ImageStore;
use skiff_runtime::runtime::{ContainerConfig, SeccompProfile};
use skiff_runtime::{LocalRuntime, Runtime};

/// One container run to completion.
pub struct Sample {
    /// Until `create` returned (skiff only: runc and ctr do create+start in one command).
    pub create: Option<Duration>,
    /// Until the container's process had exited.
    pub exit: Duration,
    /// Until the container was gone again (runc and ctr: when their command returned).
    pub done: Duration,
}

pub trait Runner: Sync {
    fn name(&self) -> &str;
    fn run(&self, id: &str) -> Result<Sample, String>;
}

pub struct Skiff<'a> {
    pub rt: &'a LocalRuntime,
    pub image: String,
    pub seccomp: SeccompProfile,
}

impl Runner for Skiff<'_> {
    fn name(&self) -> &str {
        "skiff"
    }

    fn run(&self, id: &str) -> Result<Sample, String> {
        let t = Instant::now();
        let c = ContainerConfig {
            id: id.to_string(),
            image: self.image.clone(),
            command: vec!["/bin/true".into()],
            seccomp: self.seccomp.clone(),
            ..Default::default()
        };
        self.rt.create_container(&c).map_err(|e| e.to_string())?;
        let create = t.elapsed();
        let result = self
            .rt
            .start_container(id)
            .and_then(|()| self.rt.wait_container(id, Some(Duration::from_secs(10))));
        let exit = t.elapsed();
        let removed = self.rt.remove_container(id);
        let done = t.elapsed();
        let st = result.map_err(|e| e.to_string())?;
        removed.map_err(|e| e.to_string())?;
        if st.exit_code != Some(0) {
            return Err(format!("{id}: {st:?}"));
        }
        Ok(Sample {
            create: Some(create),
            exit,
            done,
        })
    }
}

/// Runs `cmd` with no stdin/stdout, returning its stderr on failure.
fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn timed(cmd: &mut Command) -> Result<Sample, String> {
    let t = Instant::now();
    run_quiet(cmd)?;
    let d = t.elapsed();
    Ok(Sample {
        create: None,
        exit: d,
        done: d,
    })
}

/// Mount points at or under `dir`, deepest first, for cleaning up after a runtime.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

fn remove_tree(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `runc run` on a bundle in a temporary directory. The rootfs is the image's snapshot
/// itself (read-only), or a read-only overlay of its layers: unlike skiff and containerd,
/// runc gets no per-container writable overlay, which favours runc slightly.
pub struct Runc {
    bin: PathBuf,
    bundle: PathBuf,
}

impl Runc {
    pub fn new(bin: &Path, root: &Path, image: &str) -> Result<Self, String> {
        let store = ImageStore::open(root).map_err(|e| e.to_string())?;
        let img = store.get(image).map_err(|e| e.to_string())?;
        let lowers = store.lower_dirs(&img);
        let bundle = std::env::temp_dir().join(format!("rtbench-runc-{}", std::process::id()));
        std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
        let runc = Self {
            bin: bin.to_path_buf(),
            bundle: bundle.clone(),
        };
        let rootfs = if lowers.len() == 1 {
            lowers[0].clone()
        } else {
            let target = bundle.join("rootfs");
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            let lower = lowers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            nix::mount::mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                nix::mount::MsFlags::MS_RDONLY,
                Some(format!("lowerdir={lower}").as_str()),
            )
            .map_err(|e| format!("mount overlay: {e}"))?;
            target
        };
        run_quiet(Command::new(bin).arg("spec").arg("--bundle").arg(&bundle))?;
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json"))
            .map_err(|e| e.to_string())?;
        Ok(runc)
    }
}

impl Runner for Runc {
    fn name(&self) -> &str {
        "runc"
    }

    fn run(&self, id: &str) -> Result<Sample, String> {
        let r = timed(
            Command::new(&self.bin)
                .arg("run")
                .arg("--bundle")
                .arg(&self.bundle)
                .arg(id),
        );
        if r.is_err() {
            let _ = run_quiet(Command::new(&self.bin).args(["delete", "--force", id]));
        }
        r
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        remove_tree(&self.bundle);
    }
}

/// A containerd of our own (root, state, socket and config in a temporary directory) and the
/// image imported into it; stopped by pid and removed on drop.
pub struct Containerd {
    child: Child,
    dir: PathBuf,
    /// Paths outside `dir` that containerd and its shims create and leave (the shims' state
    /// under /run/containerd, the namespace's `default` cgroups) and that did not exist
    /// before: removed on drop, the cgroups only if empty.
    leftovers: Vec<PathBuf>,
    ctr: PathBuf,
    sock: PathBuf,
    pub image: String,
}

impl Containerd {
    pub fn start(containerd: &Path, ctr: &Path) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("rtbench-containerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut leftovers: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| rd.flatten().map(|e| e.path().join("default")).collect())
            .unwrap_or_default();
        leftovers.push("/sys/fs/cgroup/default".into());
        leftovers.push("/run/containerd".into());
        leftovers.retain(|p| !p.exists());
        let sock = dir.join("containerd.sock");
        let d = dir.display();
        // The CRI plugin is off: it would want CNI and is not what `ctr run` measures.
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.join("config.toml"), config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(containerd)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", containerd.display()))?;
        let me = Self {
            child,
            dir,
            leftovers,
            ctr: ctr.to_path_buf(),
            sock,
            image: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while me.ctr(&["version"]).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not come up; see {}",
                    me.dir.join("containerd.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    /// `ctr -a SOCK ARGS...`.
    pub fn ctr(&self, args: &[&str]) -> Result<(), String> {
        run_quiet(Command::new(&self.ctr).arg("-a").arg(&self.sock).args(args))
    }

    /// Imports (and unpacks) a docker-archive; the image to run is the first one listed.
    pub fn import(&mut self, archive: &Path) -> Result<Duration, String> {
        let t = Instant::now();
        self.ctr(&["images", "import", &archive.display().to_string()])?;
        let took = t.elapsed();
        let out = Command::new(&self.ctr)
            .arg("-a")
            .arg(&self.sock)
            .args(["images", "ls", "-q"])
            .output()
            .map_err(|e| e.to_string())?;
        self.image = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if self.image.is_empty() {
            return Err("no image after ctr images import".into());
        }
        Ok(took)
    }
}

impl Runner for Containerd {
    fn name(&self) -> &str {
        "ctr"
    }

    fn run(&self, id: &str) -> Result<Sample, String> {
        timed(Command::new(&self.ctr).arg("-a").arg(&self.sock).args([
            "run",
            "--rm",
            &self.image,
            id,
            "/bin/true",
        ]))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        remove_tree(&self.dir);
        for p in &self.leftovers {
            if p.starts_with("/sys/fs/cgroup") {
                let _ = std::fs::remove_dir(p);
            } else {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}
