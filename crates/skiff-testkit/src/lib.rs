//! skiff-testkit: start the real `skiff` binary on a temporary data dir and drive it with the
//! real clients installed on the machine (kubectl 1.27-1.33), for end-to-end tests.
//!
//! Every server started here is stopped (SIGTERM, then SIGKILL) when its [`Cluster`] is
//! dropped, and its data dir removed, so tests leave nothing behind.

pub mod fake_node;
pub mod images;
pub mod netlab;

pub use fake_node::FakeNode;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Directory holding the bundled kubectl clients (`kubectl.1.NN`).
pub fn kubectl_dir() -> PathBuf {
    std::env::var_os("SKIFF_TEST_KUBECTL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/google-cloud-sdk/bin"))
}

/// Path of kubectl minor version `minor` (e.g. 33), if installed.
pub fn kubectl_path(minor: u32) -> Option<PathBuf> {
    let p = kubectl_dir().join(format!("kubectl.1.{minor}"));
    p.exists().then_some(p)
}

/// A running `skiff server` on a temporary data dir.
pub struct Cluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Runs a node agent (real containers) instead of `--disable-agent`.
    agent: bool,
    /// Network namespace (`ip netns` name) the server and kubectl run in.
    netns: Option<String>,
    /// Port the API server listens on.
    pub port: u16,
}

/// Unless a test sets its own, a memory-only eviction threshold no test machine crosses:
/// upstream's default disk thresholds (10% / 15% free) would make test pods fail with
/// `Evicted` whenever the machine's disk runs fuller than that, whatever the test is about.
fn relaxed_eviction(extra: &[&str]) -> Vec<String> {
    if extra.contains(&"--eviction-hard") {
        return Vec::new();
    }
    vec!["--eviction-hard".into(), "memory.available<1Mi".into()]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Start `skiff server` (binary at `binary`) with a memory-free durable SQLite store.
    pub fn start(binary: &Path) -> Result<Self> {
        Self::start_with(binary, &[])
    }

    /// Start with extra server arguments.
    pub fn start_with(binary: &Path, extra: &[&str]) -> Result<Self> {
        let mut c = Self::unstarted(binary, extra, false, None)?;
        // `free_port` releases the port it found, so a test starting at the same moment can
        // take it first; the server then exits at once. Another port fixes that.
        for _ in 0..3 {
            match c.spawn() {
                Err(e) if format!("{e:#}").contains("in use") => {
                    c.child = None;
                    c.port = free_port();
                }
                r => return r.map(|()| c),
            }
        }
        c.spawn()?;
        Ok(c)
    }

    /// A cluster on a fresh temp dir, not yet running.
    fn unstarted(binary: &Path, extra: &[&str], agent: bool, netns: Option<&str>) -> Result<Self> {
        Ok(Cluster {
            binary: binary.to_path_buf(),
            dir: tempfile::Builder::new().prefix("skiff-e2e-").tempdir()?,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            agent,
            netns: netns.map(str::to_string),
            port: free_port(),
        })
    }

    /// Start a server that also runs its node agent, so pods run as real containers.
    /// Dropping the cluster stops the server and then removes every container it started
    /// (`skiff killall`).
    pub fn start_with_agent(binary: &Path, extra: &[&str]) -> Result<Self> {
        let mut c = Self::unstarted(binary, extra, true, None)?;
        c.extra_args.extend(["--kubelet-port".to_string(), free_port().to_string(), "--kubelet-healthz-port".into(), "0".into()]);
        // No built-in pod network unless the test asks for one, or for CNI mode (which the
        // CLI keeps apart from any --flannel-backend).
        if !extra.contains(&"--flannel-backend") && !extra.contains(&"--cni-conf-dir") {
            c.extra_args.extend(["--flannel-backend".to_string(), "none".into()]);
        }
        c.extra_args.extend(relaxed_eviction(extra));
        c.spawn()?;
        Ok(c)
    }

    /// Start a server with its node agent inside network namespace `netns` (made with `ip
    /// netns add`), reachable from other namespaces on its addresses; kubectl runs there too.
    /// Networking is on unless `extra` says otherwise.
    pub fn start_in_netns(binary: &Path, netns: &str, extra: &[&str]) -> Result<Self> {
        let mut c = Self::unstarted(binary, extra, true, Some(netns))?;
        c.extra_args.extend(["--kubelet-port".to_string(), "10250".into(), "--kubelet-healthz-port".into(), "0".into()]);
        c.extra_args.extend(relaxed_eviction(extra));
        c.spawn()?;
        Ok(c)
    }

    /// A command for `program`, entering the cluster's network namespace when it has one
    /// (only the network namespace: mounts and cgroups stay the host's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Imports a docker/OCI archive into the node's image store while it runs.
    pub fn import_image(&self, archive: &Path) -> Result<String> {
        let out = Command::new(&self.binary)
            .args(["image", "import", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .arg(archive)
            .output()?;
        if !out.status.success() {
            bail!("skiff image import failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log"))?;
        let bind: &[&str] = if self.extra_args.iter().any(|a| a == "--bind-address") { &[] } else { &["--bind-address", "127.0.0.1"] };
        let child = self
            .command(&self.binary)
            .args(["server", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--port", &self.port.to_string()])
            .args(bind)
            .args(if self.agent { &[][..] } else { &["--disable-agent"][..] })
            .args(["--controller-manager-port", "0", "--scheduler-port", "0"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff server")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    /// Wait until `/readyz` answers through kubectl.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("skiff server exited with {status}; log:\n{}", self.log());
                }
            }
            if self.kubeconfig().exists() {
                if let Ok(out) = self.kubectl(&["get", "--raw", "/readyz"]) {
                    if out.status.success() {
                        return Ok(());
                    }
                }
            }
            if start.elapsed() > timeout {
                bail!("skiff server not ready after {timeout:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// kubectl's discovery cache for this cluster. kubectl keys its cache by host and port,
    /// and test servers reuse ports, so a shared cache would show one cluster's resources
    /// (CRDs, say) to another.
    pub fn kubectl_cache(&self) -> PathBuf {
        self.dir.path().join("kubectl-cache")
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    /// PID of the server process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Register a fake node (Node object, Lease heartbeat, fake kubelet) with this cluster.
    pub fn fake_node(&self, name: &str) -> Result<FakeNode> {
        FakeNode::start(&self.kubeconfig(), name)
    }

    /// Register a fake node with the given CPU and memory.
    pub fn fake_node_sized(&self, name: &str, cpu: &str, memory: &str) -> Result<FakeNode> {
        FakeNode::start_with(&self.kubeconfig(), name, fake_node::Capacity { cpu: cpu.into(), memory: memory.into() })
    }

    /// Poll `check` every 50 ms until it returns true or `timeout` passes.
    pub fn eventually(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("timed out after {timeout:?} waiting for {what}; server log tail:\n{}", tail(&self.log(), 40))
    }

    /// Run kubectl 1.33 with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_version(33, args)
    }

    /// Run kubectl of minor version `minor`.
    pub fn kubectl_version(&self, minor: u32, args: &[&str]) -> Result<Output> {
        let bin = kubectl_path(minor).with_context(|| format!("kubectl 1.{minor} is not installed in {}", kubectl_dir().display()))?;
        Ok(self
            .command(bin)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.kubectl_cache())
            .args(args)
            .stdin(Stdio::null())
            .output()?)
    }

    /// Run kubectl with `stdin` as input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        use std::io::Write;
        let bin = kubectl_path(33).context("kubectl 1.33 is not installed")?;
        let mut child = self
            .command(bin)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.kubectl_cache())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Run kubectl and return stdout, failing with stderr when it exits non-zero.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run kubectl expecting failure; return stderr.
    pub fn fails(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if out.status.success() {
            bail!("kubectl {} unexpectedly succeeded: {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Run kubectl `get ... -o json` and parse it.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.ok(&a)?)?)
    }

    /// Stop with SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        signal(child.id(), "TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                bail!("server did not exit within 15s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill with SIGKILL (a crash).
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Start again on the same data dir and port.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let mut exited = false;
            for _ in 0..250 {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.agent {
            let _ = Command::new(&self.binary)
                .args(["killall", "--data-dir"])
                .arg(self.dir.path().join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
