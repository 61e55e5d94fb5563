//! Root integration tests: policy is programmed into a private "node" network namespace whose
//! bridge connects three "pod" namespaces; an "ext" namespace stands for the world outside
//! the cluster, and the node serves a stand-in cluster DNS on 10.43.0.10. Nothing touches the
//! root namespace; every namespace is deleted on drop, and every network operation has a
//! timeout.
//!
//! ```text
//!  ext 192.168.77.2 ── en 192.168.77.1 [node: br0 10.42.0.1, lo 10.43.0.10]
//!                                        ├─ A 10.42.0.10 role=frontend (web=9090)
//!                                        ├─ B 10.42.0.11 role=backend (http=8080)
//!                                        └─ C 10.42.0.12 role=other
//! Servers: ext :8080, node :53, every pod :8080 and :9090.
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use super::tests_select::{labels, np, pod};
use super::*;
use crate::nft::testns::{can_run, Netns};
use crate::nft::{in_netns, NetlinkBackend};

const NS: &str = "policy-test";
const A: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 11);
const C: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 12);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 42, 0, 1);
const EXT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound for a whole test; each step checks it.
const TEST_BUDGET: Duration = Duration::from_secs(90);

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> crate::nft::Error + '_ {
    move |source| crate::nft::Error::Io {
        context: context.into(),
        source,
    }
}

/// Echo servers (one line in, the same line out) on some ports of one namespace.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn start(ns: &Netns, ports: &[u16]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in ports {
            let listener = in_netns(&ns.path(), move || {
                let l = TcpListener::bind(("0.0.0.0", port)).map_err(io_err("bind"))?;
                l.set_nonblocking(true).map_err(io_err("nonblocking"))?;
                Ok(l)
            })
            .expect("server listener");
            let flag = stop.clone();
            threads.push(std::thread::spawn(move || serve(listener, flag)));
        }
        Servers { stop, threads }
    }
}

fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let flag = stop.clone();
        std::thread::spawn(move || {
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut w = match s.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while !flag.load(Ordering::Relaxed) {
                match r.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if w.write_all(line.as_bytes()).is_err() {
                            return;
                        }
                        line.clear();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends one line over `s` and expects it back.
fn echo(s: &mut TcpStream, msg: &str) -> Result<(), String> {
    s.write_all(format!("{msg}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    BufReader::new(&*s)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    (line.trim_end() == msg)
        .then_some(())
        .ok_or_else(|| format!("echoed {line:?}"))
}

/// Opens a connection from inside `ns`; the socket stays in that namespace.
fn open(ns: &Netns, to: Ipv4Addr, port: u16) -> Result<TcpStream, String> {
    in_netns(&ns.path(), move || {
        Ok(
            TcpStream::connect_timeout(&SocketAddr::from((to, port)), IO_TIMEOUT)
                .and_then(|s| s.set_read_timeout(Some(IO_TIMEOUT)).map(|()| s))
                .map_err(|e| format!("connect {to}:{port}: {e}")),
        )
    })
    .expect("thread in netns")
}

/// True when a new connection from `ns` to `to:port` works end to end.
fn reach(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    open(ns, to, port)
        .and_then(|mut s| echo(&mut s, "hello"))
        .is_ok()
}

/// Node, pods, outside host and their servers; fields drop in order (servers first).
struct Topology {
    _servers: Vec<Servers>,
    node: Netns,
    _ext: Netns,
    pods: Vec<Netns>,
    started: Instant,
}

impl Topology {
    fn new() -> Topology {
        let node = Netns::new("pnode");
        let ext = Netns::new("pext");
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        node.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        node.exec(&["ip", "addr", "add", "10.42.0.1/24", "dev", "br0"]);
        node.exec(&["ip", "link", "set", "br0", "up"]);
        // A locally served cluster address, like the built-in DNS.
        node.exec(&["ip", "addr", "add", "10.43.0.10/32", "dev", "lo"]);
        node.exec(&[
            "ip", "link", "add", "en", "type", "veth", "peer", "name", "eth0", "netns", &ext.name,
        ]);
        node.exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "en"]);
        node.exec(&["ip", "link", "set", "en", "up"]);
        ext.exec(&["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        ext.exec(&["ip", "link", "set", "eth0", "up"]);
        ext.exec(&["ip", "route", "add", "default", "via", "192.168.77.1"]);
        let mut servers = vec![Servers::start(&ext, &[8080]), Servers::start(&node, &[53])];
        let mut pods = Vec::new();
        for (i, ip) in [A, B, C].into_iter().enumerate() {
            let p = Netns::new(&format!("ppod{i}"));
            let host_end = format!("vpod{i}");
            node.exec(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
                &p.name,
            ]);
            node.exec(&["ip", "link", "set", &host_end, "master", "br0", "up"]);
            p.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            p.exec(&["ip", "link", "set", "eth0", "up"]);
            p.exec(&["ip", "route", "add", "default", "via", "10.42.0.1"]);
            servers.push(Servers::start(&p, &[8080, 9090]));
            pods.push(p);
        }
        Topology {
            _servers: servers,
            node,
            _ext: ext,
            pods,
            started: Instant::now(),
        }
    }

    fn a(&self) -> &Netns {
        &self.pods[0]
    }
    fn b(&self) -> &Netns {
        &self.pods[1]
    }
    fn c(&self) -> &Netns {
        &self.pods[2]
    }

    fn enforcer(&self) -> PolicyEnforcer<NetlinkBackend> {
        PolicyEnforcer::new(NetlinkBackend::in_netns(&self.node.path()).expect("nft socket"))
    }

    /// Fails the test once it has run longer than its budget.
    fn step(&self, what: &str) {
        let t = self.started.elapsed();
        assert!(
            t < TEST_BUDGET,
            "over the time budget ({t:?}) before: {what}"
        );
    }

    fn bridge_nf(&self) -> String {
        self.node
            .exec(&["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"])
            .trim()
            .to_string()
    }
}

fn input(policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>) -> PolicyInput {
    let mut b = pod(NS, "b", B.octets(), &[("role", "backend")]);
    b.named_ports.push(NamedPort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 8080,
    });
    b.host_veth = Some("vpod1".into());
    let mut a = pod(NS, "a", A.octets(), &[("role", "frontend")]);
    a.named_ports.push(NamedPort {
        name: "web".into(),
        protocol: Protocol::Tcp,
        port: 9090,
    });
    PolicyInput {
        pods: vec![a, b, pod(NS, "c", C.octets(), &[("role", "other")])],
        namespaces: [(NS.to_string(), labels(&[("test", "policy")]))].into(),
        policies,
        local_pods: ["a", "b", "c"]
            .iter()
            .map(|n| (NS.to_string(), n.to_string()))
            .collect(),
        node_ips: vec![NODE, Ipv4Addr::new(192, 168, 77, 1)],
    }
}

fn on_backend(
    name: &str,
    extra: serde_json::Value,
) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    let mut spec = json!({"podSelector": {"matchLabels": {"role": "backend"}}});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    np(NS, name, spec)
}

#[test]
fn ingress_policy_blocks_allows_and_keeps_established() {
    if !can_run() {
        return;
    }
    let t = Topology::new();
    enable_bridge_netfilter(Some(&t.node.path())).expect("bridge netfilter");
    assert_eq!(t.bridge_nf(), "1");
    let mut enf = t.enforcer();

    t.step("default allow");
    assert!(enf.sync(&input(vec![])).expect("sync").full);
    assert!(
        reach(t.a(), B, 8080) && reach(t.c(), B, 9090),
        "no policy: all allowed"
    );
    let mut established = open(t.a(), B, 8080).expect("long-lived connection");
    echo(&mut established, "before").expect("echo before policy");

    t.step("deny all ingress");
    let deny = on_backend("deny-all", json!({"policyTypes": ["Ingress"]}));
    enf.sync(&input(vec![deny.clone()])).expect("sync");
    assert!(!reach(t.a(), B, 8080), "deny-all lets frontend in");
    assert!(!reach(t.c(), B, 9090), "deny-all lets other in");
    assert!(
        reach(t.b(), A, 8080),
        "ingress isolation must not block B's egress"
    );
    assert!(reach(&t.node, B, 8080), "the pod's node is always allowed");
    echo(&mut established, "after").expect("established connection survives the policy");

    t.step("allow frontend");
    let frontend = on_backend(
        "allow-frontend",
        json!({"ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]}),
    );
    enf.sync(&input(vec![deny.clone(), frontend]))
        .expect("sync");
    let listed = t.node.nft_text(TABLE);
    assert!(
        listed.contains("ip saddr @in_policy-test_allow-frontend_0 accept"),
        "{listed}"
    );
    assert!(
        reach(t.a(), B, 8080) && reach(t.a(), B, 9090),
        "frontend blocked"
    );
    assert!(!reach(t.c(), B, 8080), "other let in");

    t.step("named port");
    let named = on_backend(
        "allow-frontend",
        json!({"ingress": [{
            "from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
            "ports": [{"port": "http"}]}]}),
    );
    let s = enf.sync(&input(vec![deny.clone(), named])).expect("sync");
    assert!(!s.full, "updates are incremental");
    assert!(reach(t.a(), B, 8080), "named port http blocked");
    assert!(!reach(t.a(), B, 9090), "port 9090 not named but allowed");
    assert!(!reach(t.c(), B, 8080), "other let in on the named port");

    t.step("remove policies");
    enf.sync(&input(vec![])).expect("sync");
    assert!(
        reach(t.c(), B, 8080) && reach(t.a(), B, 9090),
        "access not restored"
    );

    t.step("restarted enforcer");
    let mut again = t.enforcer();
    let s = again
        .sync(&input(vec![deny]))
        .expect("sync over an existing table");
    assert!(s.full, "a new enforcer rewrites the table");
    assert!(
        !reach(t.c(), B, 8080),
        "deny-all not enforced after restart"
    );
    again.cleanup().expect("cleanup");
    assert!(t.node.nft_json(TABLE).is_none(), "table left behind");
}

#[test]
fn egress_policy_blocks_then_allows_cidr_and_dns() {
    if !can_run() {
        return;
    }
    let t = Topology::new();
    enable_bridge_netfilter(Some(&t.node.path())).expect("bridge netfilter");
    let mut enf = t.enforcer();

    t.step("default allow");
    enf.sync(&input(vec![])).expect("sync");
    assert!(reach(t.b(), EXT, 8080) && reach(t.b(), A, 8080) && reach(t.b(), DNS, 53));

    t.step("deny all egress");
    let deny = on_backend("deny-egress", json!({"policyTypes": ["Egress"]}));
    enf.sync(&input(vec![deny.clone()])).expect("sync");
    assert!(!reach(t.b(), EXT, 8080), "egress to the outside allowed");
    assert!(
        !reach(t.b(), A, 8080),
        "egress to a pod on the bridge allowed"
    );
    assert!(!reach(t.b(), DNS, 53), "cluster DNS escapes egress policy");
    assert!(reach(t.b(), NODE, 53), "the pod's node is always allowed");
    assert!(
        reach(t.a(), B, 8080),
        "replies of allowed ingress must pass"
    );

    t.step("CIDR with an exception");
    let except = on_backend(
        "allow-ext",
        json!({"policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock":
            {"cidr": "192.168.0.0/16", "except": ["192.168.77.0/24"]}}]}]}),
    );
    enf.sync(&input(vec![deny.clone(), except])).expect("sync");
    assert!(
        !reach(t.b(), EXT, 8080),
        "egress to an excepted CIDR allowed"
    );

    t.step("allow a CIDR and a port range");
    let cidr = on_backend(
        "allow-ext",
        json!({"policyTypes": ["Egress"], "egress": [{
            "to": [{"ipBlock": {"cidr": "192.168.77.0/24"}}],
            "ports": [{"port": 8000, "endPort": 8100}]}]}),
    );
    enf.sync(&input(vec![deny.clone(), cidr.clone()]))
        .expect("sync");
    assert!(
        reach(t.b(), EXT, 8080),
        "egress to the allowed CIDR blocked"
    );
    assert!(!reach(t.b(), A, 8080), "egress outside the CIDR allowed");
    assert!(!reach(t.b(), DNS, 53));

    t.step("named port of the destination");
    let web = on_backend(
        "allow-web",
        json!({"policyTypes": ["Egress"], "egress": [{
            "to": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
            "ports": [{"port": "web"}]}]}),
    );
    enf.sync(&input(vec![deny.clone(), cidr.clone(), web.clone()]))
        .expect("sync");
    assert!(reach(t.b(), A, 9090), "egress to the named port blocked");
    assert!(!reach(t.b(), A, 8080), "egress to another port allowed");
    assert!(
        !reach(t.b(), C, 9090),
        "egress to a pod without the named port allowed"
    );

    t.step("allow DNS");
    let dns = on_backend(
        "allow-dns",
        json!({"policyTypes": ["Egress"], "egress": [{"ports": [
            {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
    );
    enf.sync(&input(vec![deny, cidr, web, dns])).expect("sync");
    assert!(reach(t.b(), DNS, 53), "DNS blocked although allowed");
    assert!(!reach(t.b(), A, 8080));

    t.step("remove policies");
    enf.sync(&input(vec![])).expect("sync");
    assert!(
        reach(t.b(), A, 8080) && reach(t.b(), EXT, 8080),
        "access not restored"
    );
    enf.cleanup().expect("cleanup");
}

#[test]
fn bridged_traffic_needs_bridge_netfilter() {
    if !can_run() {
        return;
    }
    let t = Topology::new();
    // Without br_netfilter's call into the ip hooks, frames between pods on one bridge never
    // meet the forward chain: the policy is silently bypassed.
    t.node
        .exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
    let mut enf = t.enforcer();
    let deny = on_backend("deny-all", json!({}));
    enf.sync(&input(vec![deny])).expect("sync");
    t.step("bypassed");
    assert!(
        reach(t.a(), B, 8080),
        "expected the bridge to bypass the ip hooks"
    );
    enable_bridge_netfilter(Some(&t.node.path())).expect("bridge netfilter");
    assert_eq!(t.bridge_nf(), "1");
    t.step("enforced");
    assert!(
        !reach(t.a(), B, 8080),
        "deny-all not enforced on the bridge"
    );
    enf.cleanup().expect("cleanup");
}
