//! An in-memory [`Runtime`] for unit tests of the node agent: no processes, no mounts.
//! Tests drive container exits with [`FakeRuntime::exit`] and inspect calls with
//! [`FakeRuntime::calls`]. Attach sessions behave like `cat` on a terminal: stdin comes
//! back on stdout, and resizes are recorded ([`FakeRuntime::resizes`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::types::*;
use super::{AttachSession, Runtime, SessionControl};
use crate::error::{Error, Result};
use crate::image::manifest::normalize_reference;

#[derive(Debug, Default)]
struct State {
    images: BTreeMap<String, ImageInfo>,
    sandboxes: BTreeMap<String, SandboxInfo>,
    containers: BTreeMap<String, ContainerInfo>,
    exec_results: BTreeMap<String, ExecOutput>,
    calls: Vec<String>,
    /// The fake's ends of open attach sessions, by container; closed when it exits.
    sessions: BTreeMap<String, Vec<UnixStream>>,
    resizes: Arc<Mutex<Vec<(String, u16, u16)>>>,
}

/// A fake runtime: images appear when pulled, containers run until told to exit.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn now() -> String {
    crate::shim::log::timestamp()
}

impl FakeRuntime {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call made so far, as `"method id"` strings.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("fake runtime lock").calls.clone()
    }

    /// Terminal sizes sent to attach sessions, as (container, rows, columns).
    pub fn resizes(&self) -> Vec<(String, u16, u16)> {
        let st = self.state.lock().expect("fake runtime lock");
        let r = st.resizes.lock().expect("fake resizes lock").clone();
        r
    }

    /// Makes a running container exit with `code` (reason `Completed`, `Error` or the given one).
    pub fn exit(&self, id: &str, code: i32, reason: Option<&str>) {
        let mut st = self.state.lock().expect("fake runtime lock");
        for s in st.sessions.remove(id).unwrap_or_default() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(c) = st.containers.get_mut(id) {
            c.status.phase = Phase::Exited;
            c.status.exit_code = Some(code);
            c.status.finished_at = Some(now());
            c.status.reason = Some(
                reason
                    .unwrap_or(if code == 0 { "Completed" } else { "Error" })
                    .to_string(),
            );
        }
    }

    /// Sets what exec in `container_id` returns.
    pub fn set_exec_result(&self, container_id: &str, output: ExecOutput) {
        self.state
            .lock()
            .expect("fake runtime lock")
            .exec_results
            .insert(container_id.to_string(), output);
    }

    fn with<T>(&self, call: String, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut st = self.state.lock().expect("fake runtime lock");
        st.calls.push(call);
        f(&mut st)
    }
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

impl Runtime for FakeRuntime {
    fn import_image(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageInfo>> {
        let name = name
            .map(normalize_reference)
            .unwrap_or_else(|| path.display().to_string());
        self.with(format!("import_image {name}"), |st| {
            let info = ImageInfo {
                id: format!("sha256:{:064x}", st.images.len() + 1),
                names: vec![name.clone()],
                size: 1,
            };
            st.images.insert(name, info.clone());
            Ok(vec![info])
        })
    }

    fn pull_image(&self, reference: &str) -> Result<ImageInfo> {
        let name = normalize_reference(reference);
        self.with(format!("pull_image {name}"), |st| {
            let n = st.images.len() + 1;
            Ok(st
                .images
                .entry(name.clone())
                .or_insert_with(|| ImageInfo {
                    id: format!("sha256:{n:064x}"),
                    names: vec![name.clone()],
                    size: 1,
                })
                .clone())
        })
    }

    fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let name = normalize_reference(reference);
        self.with(format!("image_status {name}"), |st| {
            Ok(st.images.get(&name).cloned())
        })
    }

    fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.with("list_images".into(), |st| {
            Ok(st.images.values().cloned().collect())
        })
    }

    fn remove_image(&self, reference: &str) -> Result<()> {
        let name = normalize_reference(reference);
        self.with(format!("remove_image {name}"), |st| {
            st.images
                .remove(&name)
                .map(|_| ())
                .ok_or(Error::ImageNotFound(name))
        })
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo> {
        self.with(format!("create_sandbox {}", config.id), |st| {
            if st.sandboxes.contains_key(&config.id) {
                return Err(Error::AlreadyExists {
                    kind: "sandbox",
                    id: config.id.clone(),
                });
            }
            let info = SandboxInfo {
                config: config.clone(),
                ns_dir: PathBuf::from("/fake/ns").join(&config.id),
                created_at: now(),
            };
            st.sandboxes.insert(config.id.clone(), info.clone());
            Ok(info)
        })
    }

    fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.with(format!("remove_sandbox {id}"), |st| {
            st.sandboxes.remove(id);
            Ok(())
        })
    }

    fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        self.with("list_sandboxes".into(), |st| {
            Ok(st.sandboxes.values().cloned().collect())
        })
    }

    fn create_container(&self, config: &ContainerConfig) -> Result<ContainerStatus> {
        self.with(format!("create_container {}", config.id), |st| {
            if st.containers.contains_key(&config.id) {
                return Err(Error::AlreadyExists {
                    kind: "container",
                    id: config.id.clone(),
                });
            }
            // The agent creates containers from the image id it resolved, as the real
            // runtime accepts; names work too.
            let known = st.images.contains_key(&normalize_reference(&config.image))
                || st.images.values().any(|i| i.id == config.image);
            if !known {
                return Err(Error::ImageNotFound(config.image.clone()));
            }
            if let Some(s) = &config.sandbox_id {
                if !st.sandboxes.contains_key(s) {
                    return Err(not_found("sandbox", s));
                }
            }
            let mut status = ContainerStatus::new(&config.id, Phase::Created);
            status.created_at = Some(now());
            let log_path = config
                .log_path
                .clone()
                .unwrap_or_else(|| PathBuf::from("/fake/logs").join(&config.id));
            st.containers.insert(
                config.id.clone(),
                ContainerInfo {
                    config: config.clone(),
                    status: status.clone(),
                    log_path,
                },
            );
            Ok(status)
        })
    }

    fn start_container(&self, id: &str) -> Result<()> {
        self.with(format!("start_container {id}"), |st| {
            let c = st
                .containers
                .get_mut(id)
                .ok_or_else(|| not_found("container", id))?;
            if c.status.phase != Phase::Created {
                return Err(Error::InvalidState(format!(
                    "container {id} is {:?}, not created",
                    c.status.phase
                )));
            }
            c.status.phase = Phase::Running;
            c.status.pid = Some(4242);
            c.status.started_at = Some(now());
            Ok(())
        })
    }

    fn stop_container(&self, id: &str, _grace: Duration) -> Result<ContainerStatus> {
        self.with(format!("stop_container {id}"), |st| {
            let c = st
                .containers
                .get_mut(id)
                .ok_or_else(|| not_found("container", id))?;
            if c.status.phase != Phase::Exited {
                c.status.phase = Phase::Exited;
                c.status.exit_code = Some(143);
                c.status.reason = Some("Error".into());
                c.status.finished_at = Some(now());
            }
            Ok(c.status.clone())
        })
    }

    fn wait_container(&self, id: &str, _timeout: Option<Duration>) -> Result<ContainerStatus> {
        self.with(format!("wait_container {id}"), |st| {
            st.containers
                .get(id)
                .map(|c| c.status.clone())
                .ok_or_else(|| not_found("container", id))
        })
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        self.with(format!("remove_container {id}"), |st| {
            st.containers.remove(id);
            Ok(())
        })
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.with(format!("container_status {id}"), |st| {
            st.containers
                .get(id)
                .map(|c| c.status.clone())
                .ok_or_else(|| not_found("container", id))
        })
    }

    fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        self.with("list_containers".into(), |st| {
            Ok(st.containers.values().cloned().collect())
        })
    }

    fn exec_sync(&self, request: &ExecRequest) -> Result<ExecOutput> {
        self.with(format!("exec_sync {}", request.container_id), |st| {
            let c = st
                .containers
                .get(&request.container_id)
                .ok_or_else(|| not_found("container", &request.container_id))?;
            if c.status.phase != Phase::Running {
                return Err(Error::InvalidState(format!(
                    "container {} is not running",
                    request.container_id
                )));
            }
            Ok(st
                .exec_results
                .get(&request.container_id)
                .cloned()
                .unwrap_or_default())
        })
    }

    fn attach(&self, request: &AttachRequest) -> Result<AttachSession> {
        let id = request.container_id.clone();
        self.with(format!("attach {id}"), |st| {
            let c = st
                .containers
                .get(&id)
                .ok_or_else(|| not_found("container", &id))?;
            if c.status.phase != Phase::Running {
                return Err(Error::InvalidState(format!(
                    "container {id} is not running"
                )));
            }
            let tty = c.config.tty;
            let io = |e: std::io::Error| Error::Io {
                what: "fake attach",
                path: PathBuf::from(&id),
                source: e,
            };
            let pipe = || -> Result<(File, File)> {
                let (r, w) = nix::unistd::pipe().map_err(|e| io(e.into()))?;
                Ok((File::from(r), File::from(w)))
            };
            let (in_r, in_w) = pipe()?;
            let (out_r, mut out_w) = pipe()?;
            let (ours, theirs) = UnixStream::pair().map_err(io)?;
            // `cat`: stdin comes back on stdout until stdin closes.
            std::thread::spawn(move || {
                let mut in_r = in_r;
                let mut buf = [0u8; 4096];
                while let Ok(n) = in_r.read(&mut buf) {
                    if n == 0 || out_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            let resizes = st.resizes.clone();
            let reader = theirs.try_clone().map_err(io)?;
            let who = id.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(reader)
                    .lines()
                    .map_while(|l| l.ok())
                {
                    let mut w = line
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|x| x.parse().ok());
                    if let (Some(r), Some(c)) = (w.next(), w.next()) {
                        resizes
                            .lock()
                            .expect("fake resizes lock")
                            .push((who.clone(), r, c));
                    }
                }
            });
            st.sessions.entry(id.clone()).or_default().push(theirs);
            Ok(AttachSession {
                stdin: request.stdin.then_some(in_w),
                stdout: request.stdout.then_some(out_r),
                stderr: None,
                tty,
                control: SessionControl::new(ours),
            })
        })
    }

    fn log_path(&self, id: &str) -> Result<PathBuf> {
        self.with(format!("log_path {id}"), |st| {
            st.containers
                .get(id)
                .map(|c| c.log_path.clone())
                .ok_or_else(|| not_found("container", id))
        })
    }

    fn reopen_log(&self, id: &str) -> Result<()> {
        self.with(format!("reopen_log {id}"), |st| {
            st.containers
                .get(id)
                .map(|_| ())
                .ok_or_else(|| not_found("container", id))
        })
    }

    fn stats(&self, id: &str) -> Result<ContainerStats> {
        self.with(format!("stats {id}"), |st| {
            st.containers
                .get(id)
                .map(|_| ContainerStats::default())
                .ok_or_else(|| not_found("container", id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let rt = FakeRuntime::new();
        rt.pull_image("busybox").unwrap();
        rt.create_sandbox(&SandboxConfig {
            id: "p".into(),
            hostname: "p".into(),
            ..Default::default()
        })
        .unwrap();
        let cfg = ContainerConfig {
            id: "c".into(),
            sandbox_id: Some("p".into()),
            image: "busybox".into(),
            ..Default::default()
        };
        assert_eq!(rt.create_container(&cfg).unwrap().phase, Phase::Created);
        rt.start_container("c").unwrap();
        assert_eq!(rt.container_status("c").unwrap().phase, Phase::Running);
        let session = rt
            .attach(&AttachRequest {
                container_id: "c".into(),
                stdin: true,
                stdout: true,
                stderr: false,
            })
            .unwrap();
        session.control.resize(30, 100).unwrap();
        let mut stdin = session.stdin.unwrap();
        stdin.write_all(b"echo\n").unwrap();
        drop(stdin);
        let mut out = String::new();
        session.stdout.unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "echo\n");
        for _ in 0..200 {
            if !rt.resizes().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let waiter = session.control.try_clone().unwrap();
        let waited = std::thread::spawn(move || waiter.wait());
        rt.exit("c", 3, None);
        waited.join().unwrap();
        assert_eq!(rt.resizes(), vec![("c".to_string(), 30, 100)]);
        assert!(rt
            .attach(&AttachRequest {
                container_id: "c".into(),
                ..Default::default()
            })
            .is_err());
        let s = rt.container_status("c").unwrap();
        assert_eq!(
            (s.phase, s.exit_code, s.reason.as_deref()),
            (Phase::Exited, Some(3), Some("Error"))
        );
        rt.remove_container("c").unwrap();
        assert!(rt.container_status("c").is_err());
        assert!(rt.calls().contains(&"start_container c".to_string()));
    }
}
