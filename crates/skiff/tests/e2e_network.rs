//! Cluster networking across three nodes, each a network namespace with its own address on
//! a test LAN: a server (with its agent) on node 1 and `skiff agent`s on nodes 2 (joined
//! with a token: TLS bootstrap) and 3 (admin kubeconfig).
//! Pod to pod across nodes over VXLAN, a Service by ClusterIP and by DNS name, NodePort from
//! a node, Ingress by host and by path through any node and with TLS from a Secret, a
//! LoadBalancer Service on the node addresses, endpoints following readiness, headless and
//! StatefulSet names, a NetworkPolicy that blocks and then allows, an agent crash and
//! restart that keeps traffic flowing, and routes removed with a node.
//!
//! Needs root and busybox-static.

mod common;

use std::process::Child;
use std::time::Duration;

use anyhow::Result;
use skiff_testkit::netlab::NetLab;
use skiff_testkit::Cluster;

const IMAGE: &str = "skiff.test/busybox:1";

/// An agent process on a lab machine, killed (and its containers removed) on drop.
struct Agent {
    child: Child,
    data_dir: std::path::PathBuf,
}

impl Agent {
    /// SIGKILLs the agent, leaving its containers, routes and rules in place (a crash).
    fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new(common::skiff_binary())
            .args(["killall", "--data-dir"])
            .arg(&self.data_dir)
            .status();
    }
}

/// How an agent reaches the cluster: an admin kubeconfig, or a join token (TLS bootstrap).
enum Join<'a> {
    Kubeconfig(&'a std::path::Path),
    Token { server: String, token: String },
}

fn start_agent(lab: &NetLab, i: usize, join: Join<'_>, root: &std::path::Path) -> Result<Agent> {
    let data_dir = root.join(format!("agent{i}"));
    std::fs::create_dir_all(&data_dir)?;
    let archive = root.join("busybox.tar");
    let out = std::process::Command::new(common::skiff_binary())
        .args(["image", "import", "--data-dir"])
        .arg(&data_dir)
        .arg(&archive)
        .output()?;
    anyhow::ensure!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let node = format!("node{i}");
    let ip = lab.address(i);
    let mut args: Vec<String> = vec!["agent".into()];
    match join {
        Join::Kubeconfig(k) => args.extend(["--kubeconfig".into(), k.display().to_string()]),
        Join::Token { server, token } => args.extend(["--server".into(), server, "--token".into(), token]),
    }
    // A memory-only threshold no test machine crosses (as the testkit gives the server's agent):
    // upstream's default disk thresholds would taint these nodes on a CI disk that is over
    // 85% full, and the test is about the network, not eviction.
    let flags = ["--data-dir", data_dir.to_str().unwrap(), "--node-name", &node, "--node-ip", &ip, "--kubelet-healthz-port", "0"];
    for a in flags.into_iter().chain(["--eviction-hard", "memory.available<1Mi"]) {
        args.push(a.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = lab.spawn(i, common::skiff_binary().to_str().unwrap(), &args, &root.join(format!("agent{i}.log")))?;
    Ok(Agent { child, data_dir })
}

fn pod_manifest(name: &str, node: &str, labels: &str, command: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {labels}}},
            "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 1,
              "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", {command:?}],
                "ports": [{{"name": "http", "containerPort": 8080}}]}}]}}}}"#
    )
}

fn wget(cluster: &Cluster, from_pod: &str, url: &str) -> Option<String> {
    let out = cluster.kubectl(&["exec", from_pod, "--", "timeout", "5", "wget", "-q", "-O", "-", url]).ok()?;
    if !out.status.success() {
        eprintln!("wget {url} from {from_pod}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn pods_services_dns_and_policies_across_three_nodes() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let lab = NetLab::new(&format!("skn{}", std::process::id() % 10000), 3)?;
    let server_ip = lab.address(1);
    let cluster = Cluster::start_in_netns(
        common::skiff_binary(),
        lab.machine(1),
        &["--bind-address", "0.0.0.0", "--advertise-address", &server_ip, "--tls-san", &server_ip, "--node-name", "node1"],
    )?;
    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    skiff_testkit::images::write_busybox_archive(&root.join("busybox.tar"), IMAGE);
    cluster.import_image(&root.join("busybox.tar"))?;
    // Agents reach the server on its LAN address.
    let kubeconfig = root.join("agent.kubeconfig");
    let text = std::fs::read_to_string(cluster.kubeconfig())?;
    std::fs::write(&kubeconfig, text.replace("127.0.0.1", &server_ip))?;
    // Node 2 joins with a token (its own certificates through CSRs), node 3 with a kubeconfig.
    let out = cluster
        .command(common::skiff_binary())
        .args(["token", "create", "--data-dir"])
        .arg(cluster.data_dir())
        .output()?;
    anyhow::ensure!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let server = format!("https://{server_ip}:{}", cluster.port);
    let mut agent2 = start_agent(&lab, 2, Join::Token { server: server.clone(), token: token.clone() }, &root)?;
    let mut agent3 = Some(start_agent(&lab, 3, Join::Kubeconfig(&kubeconfig), &root)?);

    cluster.eventually(Duration::from_secs(60), "three Ready nodes with pod CIDRs", || {
        let out = cluster.ok(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
        out.is_ok_and(|o| o.lines().filter(|l| l.starts_with("10.42.") && l.ends_with("True")).count() == 3)
    })?;

    let serve = "echo $(hostname) > /var/www/index.html; exec httpd -f -p 8080 -h /var/www";
    for i in 1..=3 {
        let m = pod_manifest(&format!("web{i}"), &format!("node{i}"), r#"{"app": "web"}"#, serve);
        cluster.kubectl_stdin(&["apply", "-f", "-"], &m)?;
    }
    let m = pod_manifest("client", "node1", r#"{"role": "client"}"#, "sleep 3600");
    cluster.kubectl_stdin(&["apply", "-f", "-"], &m)?;
    cluster.eventually(Duration::from_secs(90), "all pods running with IPs", || {
        let out = cluster.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.status.phase} {.status.podIP}{\"\\n\"}{end}"]);
        out.is_ok_and(|o| o.lines().filter(|l| l.starts_with("Running 10.42.")).count() == 4)
    })?;

    // Pod to pod, same node and across nodes.
    for i in 1..=3 {
        let ip = cluster.ok(&["get", "pod", &format!("web{i}"), "-o", "jsonpath={.status.podIP}"])?;
        let body = wget(&cluster, "client", &format!("http://{ip}:8080/"));
        assert_eq!(body.as_deref().map(str::trim), Some(format!("web{i}").as_str()), "client -> web{i} at {ip}");
    }

    // The token-joined node serves logs and exec with its own serving certificate.
    cluster.eventually(Duration::from_secs(20), "exec into a pod on node 2", || {
        cluster.ok(&["exec", "web2", "--", "cat", "/var/www/index.html"]).is_ok_and(|o| o.trim() == "web2")
    })?;
    let csrs = cluster.ok(&["get", "csr", "-o", "jsonpath={.items[*].spec.signerName}"])?;
    assert!(csrs.contains("kubernetes.io/kube-apiserver-client-kubelet") && csrs.contains("kubernetes.io/kubelet-serving"), "{csrs}");

    // A Service by ClusterIP and by DNS name reaches the pods on every node.
    cluster.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"])?;
    cluster.eventually(Duration::from_secs(30), "the service to answer by name", || {
        wget(&cluster, "client", "http://web.default.svc.cluster.local/").is_some()
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        if let Some(b) = wget(&cluster, "client", "http://web/") {
            seen.insert(b.trim().to_string());
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "load balancing reached {seen:?}");
    let cluster_ip = cluster.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    assert!(wget(&cluster, "client", &format!("http://{cluster_ip}/")).is_some());
    // Pods reach the API server through the `kubernetes` Service. busybox's TLS client shares
    // no cipher suite with the server, so what shows the connection got there is the
    // server's TLS alert (without endpoints the proxy refused the connection instead).
    cluster.eventually(Duration::from_secs(20), "the API server through the kubernetes Service", || {
        let out = cluster.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-q", "-O", "-", "https://kubernetes.default.svc.cluster.local/livez"]);
        out.is_ok_and(|o| o.status.success() || String::from_utf8_lossy(&o.stderr).contains("TLS error from peer"))
    })?;

    // NodePort from a node's own network (host traffic on node 2 to node 3's address).
    let node_port = cluster.ok(&["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"])?;
    let out = lab.output(2, "busybox", &["timeout", "5", "busybox", "wget", "-q", "-O", "-", &format!("http://{}:{node_port}/", lab.address(3))])?;
    assert!(out.status.success(), "NodePort: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("web"));

    // Ingress: two hosts to two Services, served on every node's port 80.
    cluster.ok(&["label", "pod", "web2", "tier=two"])?;
    let only2 = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "only2"},
                    "spec": {"selector": {"tier": "two"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], only2)?;
    let ing = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "hosts"},
                  "spec": {"rules": [
                    {"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
                    {"host": "b.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "only2", "port": {"number": 80}}}}]}}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], ing)?;
    let via_ingress = |host: &str, node: usize| -> Option<String> {
        let url = format!("http://{}/", lab.address(node));
        let out = lab.output(3, "busybox", &["timeout", "5", "busybox", "wget", "-q", "-O", "-", "--header", &format!("Host: {host}"), &url]).ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    cluster.eventually(Duration::from_secs(30), "b.test to route to web2 through node 1's ingress", || {
        via_ingress("b.test", 1).as_deref() == Some("web2")
    })?;
    assert!(via_ingress("a.test", 2).is_some_and(|b| b.starts_with("web")), "a.test through node 2");
    cluster.eventually(Duration::from_secs(20), "the Ingress status to carry an address", || {
        cluster.ok(&["get", "ingress", "hosts", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).is_ok_and(|ip| !ip.is_empty())
    })?;

    // A LoadBalancer Service is published on the nodes' addresses and answers there.
    let lb = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                 "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 8081, "targetPort": 8080}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], lb)?;
    cluster.eventually(Duration::from_secs(30), "the LoadBalancer to get the node addresses", || {
        cluster.ok(&["get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]).is_ok_and(|ips| ips.split_whitespace().count() == 3)
    })?;
    cluster.eventually(Duration::from_secs(20), "the LoadBalancer address to answer", || {
        let url = format!("http://{}:8081/", lab.address(2));
        lab.output(3, "busybox", &["timeout", "5", "busybox", "wget", "-q", "-O", "-", &url]).is_ok_and(|o| o.status.success())
    })?;

    // A NetworkPolicy blocks, then allows.
    let deny = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-deny"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], deny)?;
    let web2 = cluster.ok(&["get", "pod", "web2", "-o", "jsonpath={.status.podIP}"])?;
    cluster.eventually(Duration::from_secs(20), "the policy to block", || {
        wget(&cluster, "client", &format!("http://{web2}:8080/")).is_none()
    })?;
    let allow = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-allow-client"},
                    "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "http"}]}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], allow)?;
    cluster.eventually(Duration::from_secs(20), "the policy to allow the client", || {
        wget(&cluster, "client", &format!("http://{web2}:8080/")).is_some()
    })?;
    cluster.ok(&["delete", "networkpolicy", "web-deny", "web-allow-client"])?;

    // The service proxy's status endpoints, as kube-proxy serves them.
    let healthz = lab.output(3, "curl", &["-sS", "--max-time", "5", "-w", " %{http_code}", &format!("http://{}:10256/healthz", lab.address(2))])?;
    let healthz = String::from_utf8_lossy(&healthz.stdout).into_owned();
    assert!(healthz.ends_with(" 200") && healthz.contains("\"lastUpdated\":\"20"), "{healthz}");
    let metrics = lab.output(1, "curl", &["-sS", "--max-time", "5", "http://127.0.0.1:10249/metrics"])?;
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let syncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_duration_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(syncs.is_some_and(|n| n > 0), "{metrics}");

    ingress_paths_and_tls(&cluster, &lab, &root)?;
    endpoints_follow_readiness(&cluster)?;
    if let Err(e) = headless_and_statefulset_names(&cluster) {
        dump_network_state(&cluster, &lab, &root);
        return Err(e);
    }

    // The agent of node 2 crashes: traffic to its pod keeps flowing (the kernel holds the
    // routes and rules), and once it is back nothing was restarted or rewired.
    let web2_ip = cluster.ok(&["get", "pod", "web2", "-o", "jsonpath={.status.podIP}"])?;
    agent2.crash();
    assert_eq!(wget(&cluster, "client", &format!("http://{web2_ip}:8080/")).as_deref().map(str::trim), Some("web2"));
    assert_eq!(wget(&cluster, "client", "http://only2/").as_deref().map(str::trim), Some("web2"), "Service while node 2's agent is down");
    let restarted = start_agent(&lab, 2, Join::Token { server, token }, &root)?;
    std::mem::forget(std::mem::replace(&mut agent2, restarted));
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(wget(&cluster, "client", &format!("http://{web2_ip}:8080/")).as_deref().map(str::trim), Some("web2"), "after the agent restart");
        assert_eq!(wget(&cluster, "client", "http://only2/").as_deref().map(str::trim), Some("web2"), "Service after the agent restart");
    }
    let from_node2 = cluster.ok(&["exec", "web2", "--", "timeout", "5", "wget", "-q", "-O", "-", "http://web1.default.pod.cluster.local:8080/"]);
    let web1_ip = cluster.ok(&["get", "pod", "web1", "-o", "jsonpath={.status.podIP}"])?;
    let from_node2 = from_node2.or_else(|_| cluster.ok(&["exec", "web2", "--", "timeout", "5", "wget", "-q", "-O", "-", &format!("http://{web1_ip}:8080/")]))?;
    assert_eq!(from_node2.trim(), "web1", "node 2 -> node 1 after the restart");
    let status = cluster.ok(&["get", "pod", "web2", "-o", "jsonpath={.status.podIP} {.status.containerStatuses[0].restartCount}"])?;
    assert_eq!(status, format!("{web2_ip} 0"), "web2 kept its address and was not restarted");

    // Removing node 3 removes the routes to its pods on the others.
    let cidr3 = cluster.ok(&["get", "node", "node3", "-o", "jsonpath={.spec.podCIDR}"])?;
    let routes = lab.output(1, "ip", &["route"])?;
    assert!(String::from_utf8_lossy(&routes.stdout).contains(&cidr3), "route to node3's pods missing");
    drop(agent3.take());
    cluster.ok(&["delete", "node", "node3"])?;
    cluster.eventually(Duration::from_secs(20), "node3's route to go", || {
        let routes = lab.output(1, "ip", &["route"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        !routes.contains(&cidr3)
    })?;
    Ok(())
}

/// An Ingress routing two paths of one host to two Services, over HTTP and over HTTPS with a
/// certificate from a TLS Secret, chosen by SNI and verified against its CA.
fn ingress_paths_and_tls(cluster: &Cluster, lab: &NetLab, root: &std::path::Path) -> Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ingress test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["c.test".to_string()])?.signed_by(&key, &issuer)?;
    let (crt_path, key_path, ca_path) = (root.join("c.test.crt"), root.join("c.test.key"), root.join("ingress-ca.crt"));
    std::fs::write(&crt_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    std::fs::write(&ca_path, ca.pem())?;
    cluster.ok(&["create", "secret", "tls", "c-test", "--cert", crt_path.to_str().unwrap(), "--key", key_path.to_str().unwrap()])?;
    let ing = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "paths"},
                  "spec": {"tls": [{"hosts": ["c.test"], "secretName": "c-test"}],
                           "rules": [{"host": "c.test", "http": {"paths": [
                    {"path": "/one", "pathType": "Exact", "backend": {"service": {"name": "only1", "port": {"number": 80}}}},
                    {"path": "/two", "pathType": "Prefix", "backend": {"service": {"name": "only2", "port": {"number": 80}}}}]}}]}}"#;
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], ing)?;
    anyhow::ensure!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    // busybox httpd serves files by path: give the backends a file for each route.
    // (Node 3 joined with a kubeconfig has no serving certificate, so no exec there.)
    cluster.ok(&["exec", "web1", "--", "sh", "-c", "cp /var/www/index.html /var/www/one"])?;
    cluster.ok(&["exec", "web2", "--", "sh", "-c", "mkdir -p /var/www/two && cp /var/www/index.html /var/www/two/x"])?;
    cluster.ok(&["label", "pod", "web1", "tier=one"])?;
    let only1 = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "only1"},
                    "spec": {"selector": {"tier": "one"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], only1)?;
    let fetch = |scheme: &str, path: &str| -> Option<String> {
        let port = if scheme == "https" { 443 } else { 80 };
        let url = format!("{scheme}://c.test{path}");
        let resolve = format!("c.test:{port}:{}", lab.address(1));
        let args = ["-sS", "--max-time", "5", "--fail", "--cacert", ca_path.to_str().unwrap(), "--resolve", &resolve, &url];
        let out = lab.output(3, "curl", &args).ok()?;
        if !out.status.success() {
            eprintln!("curl {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    cluster.eventually(Duration::from_secs(30), "https://c.test/two/x to reach web2", || {
        fetch("https", "/two/x").is_some_and(|b| b == "web2")
    })?;
    // Plain HTTP to a TLS host is redirected to HTTPS (ingress-nginx's ssl-redirect default).
    let resolve = format!("c.test:80:{}", lab.address(1));
    let out = lab.output(3, "curl", &["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve", &resolve, "http://c.test/two/x"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "308 https://c.test/two/x", "/two over HTTP");
    cluster.eventually(Duration::from_secs(20), "https://c.test/one to reach web1", || fetch("https", "/one").is_some_and(|b| b == "web1"))?;
    assert!(fetch("https", "/one/more").is_none(), "Exact /one must not match /one/more");
    Ok(())
}

/// A Service's endpoints follow the readiness of its pod: no endpoint (connections refused)
/// until the readiness probe passes, then traffic flows.
fn endpoints_follow_readiness(cluster: &Cluster) -> Result<()> {
    let pod = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "gated", "labels": {{"app": "gated"}}}},
            "spec": {{"nodeName": "node2", "terminationGracePeriodSeconds": 1,
              "containers": [{{"name": "c", "image": "{IMAGE}",
                "command": ["sh", "-c", "echo gated > /var/www/index.html; exec httpd -f -p 8080 -h /var/www"],
                "readinessProbe": {{"exec": {{"command": ["test", "-f", "/tmp/ready"]}}, "periodSeconds": 1}}}}]}}}}"#
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pod)?;
    let svc = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gated"},
                  "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], svc)?;
    cluster.eventually(Duration::from_secs(60), "the gated pod to run (not ready)", || {
        cluster.ok(&["get", "pod", "gated", "-o", "jsonpath={.status.phase}"]).is_ok_and(|p| p == "Running")
    })?;
    let ready_addresses = || cluster.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=gated", "-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}"]).unwrap_or_default();
    assert_eq!(ready_addresses(), "", "an unready pod must not be a ready endpoint");
    assert!(wget(cluster, "client", "http://gated/").is_none(), "the Service answered before its pod was ready");
    cluster.ok(&["exec", "gated", "--", "touch", "/tmp/ready"])?;
    let answered = cluster.eventually(Duration::from_secs(20), "the gated Service to answer once ready", || {
        wget(cluster, "client", "http://gated/").is_some_and(|b| b.trim() == "gated")
    });
    if answered.is_err() {
        eprintln!("gated pod status: {:?}", cluster.ok(&["get", "pod", "gated", "-o", "jsonpath={.status}"]));
        eprintln!("endpoint slices: {:?}", cluster.ok(&["get", "endpointslices", "-o", "yaml"]));
    }
    answered?;
    let ip = cluster.ok(&["get", "pod", "gated", "-o", "jsonpath={.status.podIP}"])?;
    assert_eq!(ready_addresses(), ip);
    // Unready again: the endpoint goes and connections are refused again.
    cluster.ok(&["exec", "gated", "--", "rm", "/tmp/ready"])?;
    cluster.eventually(Duration::from_secs(20), "the gated Service to stop answering", || wget(cluster, "client", "http://gated/").is_none())?;
    Ok(())
}

/// Prints what a failed cross-node step needs to be understood: where the pods run, what DNS
/// answers, whether the pod answers by address, each machine's routes, neighbours and VXLAN
/// forwarding entries, and the tails of the agents' logs.
fn dump_network_state(cluster: &Cluster, lab: &NetLab, root: &std::path::Path) {
    let show = |what: &str, out: Result<std::process::Output>| match out {
        Ok(o) => eprintln!("--- {what}:\n{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("--- {what}: {e}"),
    };
    show("pods", cluster.kubectl(&["get", "pods", "-o", "wide"]));
    show("endpointslices", cluster.kubectl(&["get", "endpointslices", "-o", "wide"]));
    show("nslookup sts-0.hl", cluster.kubectl(&["exec", "client", "--", "nslookup", "sts-0.hl.default.svc.cluster.local"]));
    show("nslookup web", cluster.kubectl(&["exec", "client", "--", "nslookup", "web.default.svc.cluster.local"]));
    show("node1 udp sockets", lab.output(1, "ss", &["-uanpe"]));
    // The client's own view: its neighbours (the gateway's MAC), routes, and whether the node
    // (gateway, DNS address) and a ClusterIP answer it at all.
    for cmd in [&["cat", "/proc/net/arp"][..], &["ip", "route"], &["ip", "link"], &["ping", "-c", "1", "-W", "2", "10.42.0.1"], &["ping", "-c", "1", "-W", "2", "10.43.0.10"]] {
        let mut args = vec!["exec", "client", "--"];
        args.extend_from_slice(cmd);
        show(&format!("client: {}", cmd.join(" ")), cluster.kubectl(&args));
    }
    show("node1 skiff0", lab.output(1, "ip", &["-s", "-d", "link", "show", "skiff0"]));
    show("node1 counters", lab.output(1, "nstat", &["-az", "Udp*", "Ip*InAddrErrors", "IpExtInNoRoutes", "IpInDiscards", "IcmpOutDestUnreachs"]));
    show("node1 conntrack to the DNS address", lab.output(1, "sh", &["-c", "grep 10.43.0.10 /proc/net/nf_conntrack | head -20"]));
    show("node1 nftables", lab.output(1, "nft", &["list", "ruleset"]));
    let log = cluster.log();
    let agent_lines: Vec<&str> = log.lines().filter(|l| l.contains("skiff_kubelet") || l.contains("skiff_net") || l.contains("ERROR") || l.contains("WARN")).collect();
    eprintln!("--- server log: {} lines; agent, network, warnings and errors:\n{}", log.lines().count(), agent_lines.join("\n"));
    // The server's threads (its agent serves node 1's DNS): a stuck runtime shows here.
    if let Some(pid) = cluster.pid() {
        let gdb = ["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt 12"];
        show("server threads", std::process::Command::new("gdb").args(gdb).output().map_err(Into::into));
    }
    for pod in ["sts-0", "sts-1"] {
        if let Ok(ip) = cluster.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]) {
            let url = format!("http://{ip}:8080/");
            show(&format!("wget {pod} by address {ip}"), cluster.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-q", "-O", "-", &url]));
        }
    }
    for i in 1..=3 {
        show(&format!("node{i} routes"), lab.output(i, "ip", &["route"]));
        show(&format!("node{i} neighbours"), lab.output(i, "ip", &["neigh"]));
        show(&format!("node{i} fdb"), lab.output(i, "bridge", &["fdb", "show"]));
        show(&format!("node{i} links"), lab.output(i, "ip", &["-br", "addr"]));
        let log = std::fs::read_to_string(root.join(format!("agent{i}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- agent{i}.log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
}

/// A headless Service and a StatefulSet: each replica by its stable name.
fn headless_and_statefulset_names(cluster: &Cluster) -> Result<()> {
    let manifests = format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
            {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "hl"}},
              "spec": {{"clusterIP": "None", "selector": {{"app": "sts"}}, "ports": [{{"port": 8080}}]}}}},
            {{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {{"name": "sts"}},
              "spec": {{"serviceName": "hl", "replicas": 2, "selector": {{"matchLabels": {{"app": "sts"}}}},
                "template": {{"metadata": {{"labels": {{"app": "sts"}}}},
                  "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "c", "image": "{IMAGE}",
                    "command": ["sh", "-c", "echo $(hostname) > /var/www/index.html; exec httpd -f -p 8080 -h /var/www"]}}]}}}}}}}}]}}"#
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests)?;
    anyhow::ensure!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    cluster.eventually(Duration::from_secs(90), "sts-1 to run", || {
        cluster.ok(&["get", "pod", "sts-1", "-o", "jsonpath={.status.phase}"]).is_ok_and(|p| p == "Running")
    })?;
    cluster.eventually(Duration::from_secs(20), "sts-0.hl to resolve and answer", || {
        wget(cluster, "client", "http://sts-0.hl:8080/").is_some_and(|b| b.trim() == "sts-0")
    })?;
    let full = wget(cluster, "client", "http://sts-1.hl.default.svc.cluster.local:8080/");
    assert_eq!(full.as_deref().map(str::trim), Some("sts-1"));
    // The headless name itself resolves to the pods (no virtual IP).
    let lookup = cluster.ok(&["exec", "client", "--", "nslookup", "hl.default.svc.cluster.local"])?;
    for pod in ["sts-0", "sts-1"] {
        let ip = cluster.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])?;
        assert!(lookup.contains(&ip), "{pod} ({ip}) missing from {lookup}");
    }
    Ok(())
}
