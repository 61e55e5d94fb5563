//! Test lab for the root integration tests: nodes and pods are network namespaces, nodes are
//! connected through an "underlay" namespace holding a bridge (192.168.77.0/24). Nothing in
//! the root namespace is touched; every namespace is deleted when the guard drops (also on
//! panic and on timeout). Uses the `ip` and `bridge` commands (iproute2) to build and inspect
//! the lab; the library itself never runs them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{run_in_netns, Backend, Error, Ipv4Cidr, NodePeer, PodNetwork, PodNetworkConfig};

pub const NS_PREFIX: &str = "skiffnet-test-";

/// Whether the lab can be built here (root and iproute2); says why not on stderr.
pub fn lab_available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("skipping: network namespace tests need root");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err()
        || Command::new("bridge").arg("-V").output().is_err()
    {
        eprintln!("skipping: network namespace tests need iproute2 (ip, bridge)");
        return false;
    }
    true
}

/// Runs `ip` with arguments; panics with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, returns (success, stdout+stderr).
pub fn try_cmd(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect("run command");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Namespaces of one test; deletes them all on cleanup.
pub struct Lab {
    pub tag: String,
    names: Mutex<Vec<String>>,
    pub state: tempfile::TempDir,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        reap_stale();
        Self {
            tag: format!("{NS_PREFIX}{}-{tag}", std::process::id()),
            names: Mutex::new(Vec::new()),
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Creates namespace `<tag>-<name>`; returns its path under /run/netns.
    pub fn netns(&self, name: &str) -> PathBuf {
        let full = format!("{}-{name}", self.tag);
        self.names.lock().unwrap().push(full.clone());
        ip(&["netns", "add", &full]);
        ip(&["-n", &full, "link", "set", "lo", "up"]);
        PathBuf::from(format!("/run/netns/{full}"))
    }

    pub fn ns_name(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    pub fn cleanup(&self) {
        for n in self.names.lock().unwrap().drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &n]).output();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Deletes namespaces left by earlier test processes that died (their pid is gone).
fn reap_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// Runs a test body with a deadline; the lab is cleaned up whatever happens.
pub fn with_lab(tag: &str, timeout: Duration, body: impl FnOnce(Arc<Lab>) + Send + 'static) {
    let lab = Arc::new(Lab::new(tag));
    struct Cleanup(Arc<Lab>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.cleanup();
        }
    }
    let _guard = Cleanup(lab.clone());
    let (tx, rx) = mpsc::channel();
    let lab2 = lab.clone();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(lab2)));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => {}
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("test {tag} timed out after {timeout:?}"),
    }
}

/// A node: its namespace, underlay address and pod network.
pub struct Node {
    pub ns: PathBuf,
    pub ns_name: String,
    pub ip: Ipv4Addr,
    pub cfg: PodNetworkConfig,
    pub net: Option<PodNetwork>,
}

impl Node {
    pub fn net(&self) -> &PodNetwork {
        self.net.as_ref().expect("pod network running")
    }

    pub fn peer(&self) -> NodePeer {
        NodePeer {
            name: self.ns_name.clone(),
            node_ip: self.ip,
            pod_cidr: self.cfg.pod_cidr,
        }
    }

    /// Simulates an agent restart: drop and re-create the pod network in the node namespace.
    pub fn restart(&mut self) {
        self.net = None;
        self.net = Some(start_net(&self.ns, self.cfg.clone()));
    }
}

pub fn start_net(ns: &Path, cfg: PodNetworkConfig) -> PodNetwork {
    run_in_netns(ns, move || PodNetwork::new(cfg)).expect("create pod network in node netns")
}

/// Builds `n` nodes (192.168.77.11.., pod CIDRs 10.42.1.0/24..) on an underlay bridge.
pub fn build_nodes(lab: &Lab, n: usize, backend: Backend) -> Vec<Node> {
    lab.netns("ul");
    let ul = lab.ns_name("ul");
    ip(&["-n", &ul, "link", "add", "ul0", "type", "bridge"]);
    ip(&["-n", &ul, "link", "set", "ul0", "up"]);
    let mut nodes = Vec::new();
    for i in 1..=n {
        let ns = lab.netns(&format!("n{i}"));
        let ns_name = lab.ns_name(&format!("n{i}"));
        let port = format!("p{i}");
        ip(&[
            "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "uplink", "netns",
            &ns_name,
        ]);
        ip(&["-n", &ul, "link", "set", &port, "master", "ul0", "up"]);
        let node_ip = Ipv4Addr::new(192, 168, 77, 10 + i as u8);
        ip(&[
            "-n",
            &ns_name,
            "addr",
            "add",
            &format!("{node_ip}/24"),
            "dev",
            "uplink",
        ]);
        ip(&["-n", &ns_name, "link", "set", "uplink", "up"]);
        let pod_cidr: Ipv4Cidr = format!("10.42.{i}.0/24").parse().unwrap();
        let mut cfg =
            PodNetworkConfig::new(pod_cidr, node_ip, lab.state.path().join(format!("n{i}")));
        cfg.backend = backend;
        let net = start_net(&ns, cfg.clone());
        nodes.push(Node {
            ns,
            ns_name,
            ip: node_ip,
            cfg,
            net: Some(net),
        });
    }
    nodes
}

/// Tells every node about every other node (each list includes the node itself, which the
/// pod network must skip).
pub fn mesh(nodes: &[Node]) {
    let peers: Vec<NodePeer> = nodes.iter().map(|n| n.peer()).collect();
    for n in nodes {
        n.net().set_peers(&peers).expect("set peers");
    }
}

fn test_err(what: &'static str, e: std::io::Error) -> Error {
    Error::Io {
        op: what,
        path: PathBuf::from("test"),
        source: e,
    }
}

/// Proves a TCP round trip from namespace `from` to `to_ip` served in namespace `to`: the
/// listener is bound inside `to`, the client connects from inside `from`, bytes go both ways.
pub fn tcp_check(from: &Path, to: &Path, to_ip: Ipv4Addr) -> Result<(), String> {
    let listener = run_in_netns(to, move || {
        TcpListener::bind((to_ip, 0)).map_err(|e| test_err("bind", e))
    })
    .map_err(|e| format!("listen on {to_ip}: {e}"))?;
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 4];
                    s.read_exact(&mut buf)
                        .map_err(|e| format!("server read: {e}"))?;
                    s.write_all(b"pong")
                        .map_err(|e| format!("server write: {e}"))?;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no connection accepted".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        }
    });
    let addr = SocketAddr::from((to_ip, port));
    let client = run_in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| test_err("connect", e))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"ping").map_err(|e| test_err("write", e))?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).map_err(|e| test_err("read", e))?;
        Ok(buf)
    });
    let server = server.join().unwrap();
    let buf = client.map_err(|e| format!("client to {addr}: {e}"))?;
    server?;
    if &buf != b"pong" {
        return Err(format!("bad reply {buf:?}"));
    }
    Ok(())
}

/// Tries to connect from `from` to `ip:port` and returns the error kind and elapsed time.
pub fn connect_error(from: &Path, ip: Ipv4Addr) -> (Option<std::io::Error>, Duration) {
    let start = Instant::now();
    let addr = SocketAddr::from((ip, 80));
    let r = run_in_netns(from, move || {
        Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).err())
    })
    .unwrap();
    (r, start.elapsed())
}

/// Pod namespace + attach.
pub fn add_pod(lab: &Lab, node: &Node, name: &str) -> (PathBuf, Ipv4Addr) {
    let ns = lab.netns(name);
    let ip = node.net().attach(name, &ns).expect("attach pod");
    (ns, ip)
}
