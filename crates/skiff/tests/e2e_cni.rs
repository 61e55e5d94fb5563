//! CNI mode: a node whose pods are wired by Debian's containernetworking-plugins (`bridge`
//! with `host-local` IPAM, then `loopback`) instead of skiff's own bridge. Until the
//! configuration appears the node is NotReady (NetworkReady=false, as upstream's kubelet
//! reports it) and tainted `not-ready`: a pod that tolerates the taint (as a network add-on's
//! do) is scheduled and its sandbox fails and is retried, one that does not stays Pending.
//! Once the configuration is written the node turns Ready within seconds and both pods get
//! addresses from the CNI subnet and reach each other; a Service by name works and a NetworkPolicy
//! blocks (skiff's proxy, DNS and policy enforcement still run); a restart keeps the
//! addresses; deleting the pods, or `skiff killall`, gives them back to host-local.
//!
//! The node runs in a network namespace of its own (a one-machine [`NetLab`]), so the CNI
//! bridge, the DNS address and the nftables rules never touch the host's network; the
//! bridge is deleted explicitly as well. Needs root, busybox-static and
//! containernetworking-plugins (`/usr/lib/cni/bridge`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use skiff_testkit::netlab::NetLab;
use skiff_testkit::Cluster;

use common::IMAGE;

const PLUGINS: &str = "/usr/lib/cni";
const BRIDGE: &str = "skiffcni0";
const SUBNET_PREFIX: &str = "10.88.0.";
const NETWORK: &str = "skiff-e2e";

/// Deletes the CNI bridge in the lab machine when the test ends, pass or fail.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["-n", &self.0, "link", "del", BRIDGE]).output();
    }
}

fn conflist(ipam_dir: &Path, with_loopback: bool) -> String {
    let loopback = if with_loopback { r#", {"type": "loopback"}"# } else { "" };
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "{NETWORK}", "plugins": [
            {{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
              "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.88.0.0/24"}}]],
                        "routes": [{{"dst": "0.0.0.0/0"}}], "dataDir": "{}"}}}}{loopback}]}}"#,
        ipam_dir.display()
    )
}

/// The addresses host-local holds for network [`NETWORK`] (one file per address).
fn reserved(ipam_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(ipam_dir.join(NETWORK)) else { return Vec::new() };
    let mut ips: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(SUBNET_PREFIX))
        .collect();
    ips.sort();
    ips
}

fn pod_manifest(name: &str, labels: &str, command: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {labels}}},
            "spec": {{"terminationGracePeriodSeconds": 1,
              "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", {command:?}]}}]}}}}"#
    )
}

/// `manifest` with a toleration for the `not-ready` taint, as a network add-on's pods have.
fn tolerating_not_ready(manifest: &str) -> String {
    let mut pod: serde_json::Value = serde_json::from_str(manifest).expect("a JSON pod");
    pod["spec"]["tolerations"] = serde_json::json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]);
    pod.to_string()
}

/// Status, reason and message of the node's Ready condition, or `None` before it has one.
fn node_ready(cluster: &Cluster) -> Option<(String, String, String)> {
    let path = "jsonpath={range .status.conditions[?(@.type==\"Ready\")]}{.status}|{.reason}|{.message}{end}";
    let out = cluster.ok(&["get", "node", "cni1", "-o", path]).ok()?;
    let mut parts = out.splitn(3, '|').map(str::to_string);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn node_taints(cluster: &Cluster) -> String {
    cluster.ok(&["get", "node", "cni1", "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}"]).unwrap_or_default()
}

fn wget(cluster: &Cluster, from_pod: &str, url: &str) -> Option<String> {
    let out = cluster.kubectl(&["exec", from_pod, "--", "timeout", "5", "wget", "-q", "-O", "-", url]).ok()?;
    if !out.status.success() {
        eprintln!("wget {url} from {from_pod}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pod_ip(cluster: &Cluster, name: &str) -> String {
    cluster.ok(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]).unwrap_or_default()
}

#[test]
fn pods_wired_by_cni_plugins_reach_each_other_and_release_addresses() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    for plugin in ["bridge", "host-local"] {
        if !Path::new(PLUGINS).join(plugin).exists() {
            eprintln!("skipping: {PLUGINS}/{plugin} is missing (apt-get install containernetworking-plugins)");
            return Ok(());
        }
    }
    let scratch = tempfile::Builder::new().prefix("skiff-cni-").tempdir()?;
    let conf_dir = scratch.path().join("net.d");
    let ipam_dir: PathBuf = scratch.path().join("ipam");
    std::fs::create_dir_all(&conf_dir)?;
    let with_loopback = Path::new(PLUGINS).join("loopback").exists();

    // Dropped in reverse: the cluster (and its containers) first, then the bridge, then the
    // namespaces.
    let lab = NetLab::new(&format!("skc{}", std::process::id() % 10000), 1)?;
    let _bridge = BridgeGuard(lab.machine(1).to_string());
    let ip = lab.address(1);
    let mut cluster = Cluster::start_in_netns(
        common::skiff_binary(),
        lab.machine(1),
        &["--bind-address", "0.0.0.0", "--advertise-address", &ip, "--tls-san", &ip, "--node-name", "cni1", "--cni-conf-dir", conf_dir.to_str().unwrap()],
    )?;
    common::import_image(&cluster)?;

    // No configuration yet (an add-on would write it once its own pod runs): the node is
    // NotReady as a kubelet whose runtime reports NetworkReady=false, and gets tainted.
    cluster.eventually(Duration::from_secs(30), "the node to report its Ready condition", || node_ready(&cluster).is_some())?;
    let (status, reason, message) = node_ready(&cluster).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "KubeletNotReady"), "{message}");
    assert!(
        message.starts_with("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady")
            && message.contains("cni plugin not initialized")
            && message.contains("no CNI network configuration"),
        "{message}"
    );
    cluster.eventually(Duration::from_secs(20), "the not-ready taint", || node_taints(&cluster).contains("node.kubernetes.io/not-ready:NoSchedule"))?;

    // A pod that tolerates the taint is scheduled, and its sandbox fails to get a network,
    // saying why, and is retried; one that does not stays Pending.
    let serve = "mkdir -p /var/www; echo $(hostname) > /var/www/index.html; exec httpd -f -p 8080 -h /var/www";
    cluster.kubectl_stdin(&["apply", "-f", "-"], &tolerating_not_ready(&pod_manifest("web", r#"{"app": "web"}"#, serve)))?;
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pod_manifest("client", r#"{"role": "client"}"#, "sleep 3600"))?;
    cluster.eventually(Duration::from_secs(30), "a FailedCreatePodSandBox event naming the missing configuration", || {
        cluster
            .ok(&["get", "events", "--field-selector", "reason=FailedCreatePodSandBox", "-o", "jsonpath={.items[*].message}"])
            .is_ok_and(|m| m.contains("no CNI network configuration"))
    })?;
    assert!(pod_ip(&cluster, "web").is_empty());
    cluster.eventually(Duration::from_secs(20), "the client unschedulable for the not-ready taint", || {
        cluster
            .ok(&["get", "pod", "client", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"])
            .is_ok_and(|m| m.contains("node.kubernetes.io/not-ready"))
    })?;
    assert_eq!(cluster.ok(&["get", "pod", "client", "-o", "jsonpath={.spec.nodeName}"])?, "");
    assert_eq!(node_ready(&cluster).map(|r| r.0).as_deref(), Some("False"));

    // The configuration appears: the node turns Ready within seconds (not at its next 10 s
    // heartbeat), loses the taint, and both pods run.
    std::fs::write(conf_dir.join("10-skiff-e2e.conflist"), conflist(&ipam_dir, with_loopback))?;
    cluster.eventually(Duration::from_secs(5), "the node Ready within seconds of the configuration", || {
        node_ready(&cluster).is_some_and(|(status, reason, _)| status == "True" && reason == "KubeletReady")
    })?;
    cluster.eventually(Duration::from_secs(20), "the not-ready taint to go", || !node_taints(&cluster).contains("not-ready"))?;
    let running = cluster.eventually(Duration::from_secs(90), "both pods Running with CNI addresses", || {
        let out = cluster.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.status.phase} {.status.podIP}{\"\\n\"}{end}"]);
        out.is_ok_and(|o| o.lines().filter(|l| l.starts_with(&format!("Running {SUBNET_PREFIX}"))).count() == 2)
    });
    if running.is_err() {
        eprintln!("{}", cluster.ok(&["get", "pods", "-o", "yaml"]).unwrap_or_default());
        eprintln!("{}", cluster.log());
    }
    running?;
    let (web_ip, client_ip) = (pod_ip(&cluster, "web"), pod_ip(&cluster, "client"));
    assert_ne!(web_ip, client_ip);
    eprintln!("CNI addresses: web {web_ip}, client {client_ip}");
    assert_eq!(reserved(&ipam_dir), {
        let mut v = vec![web_ip.clone(), client_ip.clone()];
        v.sort();
        v
    });
    // The pod's interface is the plugin's, with the address the pod status reports.
    let addrs = cluster.ok(&["exec", "web", "--", "busybox", "ip", "addr", "show", "dev", "eth0"])?;
    assert!(addrs.contains(&format!("inet {web_ip}/24")), "{addrs}");
    let link = lab.output(1, "ip", &["-o", "link", "show", BRIDGE])?;
    assert!(link.status.success(), "the bridge plugin made {BRIDGE}: {}", String::from_utf8_lossy(&link.stderr));

    // Pod to pod over the CNI bridge.
    let body = wget(&cluster, "client", &format!("http://{web_ip}:8080/"));
    assert_eq!(body.as_deref().map(str::trim), Some("web"), "client -> web at {web_ip}");

    // skiff's service proxy and DNS keep working on top of the CNI network.
    cluster.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"])?;
    cluster.eventually(Duration::from_secs(30), "the Service to answer by name", || {
        wget(&cluster, "client", "http://web.default.svc.cluster.local/").is_some_and(|b| b.trim() == "web")
    })?;

    // So does NetworkPolicy enforcement (br_netfilter sees the CNI bridge as it sees skiff's).
    let deny = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-deny"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], deny)?;
    cluster.eventually(Duration::from_secs(20), "the policy to block", || wget(&cluster, "client", &format!("http://{web_ip}:8080/")).is_none())?;
    cluster.ok(&["delete", "networkpolicy", "web-deny"])?;
    cluster.eventually(Duration::from_secs(20), "traffic to flow again", || wget(&cluster, "client", &format!("http://{web_ip}:8080/")).is_some())?;

    // A restart of the server and its agent keeps the pods, their addresses and their wiring.
    cluster.restart()?;
    cluster.eventually(Duration::from_secs(60), "the pods Running with the same addresses after a restart", || {
        pod_ip(&cluster, "web") == web_ip
            && pod_ip(&cluster, "client") == client_ip
            && cluster.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]).is_ok_and(|p| p == "Running Running")
    })?;
    let body = wget(&cluster, "client", &format!("http://{web_ip}:8080/"));
    assert_eq!(body.as_deref().map(str::trim), Some("web"), "client -> web at {web_ip} after the restart");
    assert_eq!(reserved(&ipam_dir).len(), 2);

    // Deleting the pods runs DEL: host-local gives the addresses back, the agent forgets them.
    cluster.ok(&["delete", "pod", "web", "client", "--wait=true", "--timeout=60s"])?;
    cluster.eventually(Duration::from_secs(30), "host-local to release both addresses", || reserved(&ipam_dir).is_empty())?;
    let state = cluster.data_dir().join("agent").join("cni");
    let left: Vec<_> = std::fs::read_dir(&state).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "CNI attachments left in {}: {left:?}", state.display());

    // `skiff killall` (run when the test cluster drops) unwires what is still running.
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pod_manifest("leftover", r#"{"app": "leftover"}"#, "sleep 3600"))?;
    cluster.eventually(Duration::from_secs(60), "the leftover pod to run", || pod_ip(&cluster, "leftover").starts_with(SUBNET_PREFIX))?;
    assert_eq!(reserved(&ipam_dir).len(), 1);
    drop(cluster);
    assert_eq!(reserved(&ipam_dir), Vec::<String>::new(), "skiff killall left an address reserved");
    Ok(())
}
