//! The node agent role: the container runtime plus the kubelet for this machine, run by
//! `skiff server` (unless `--disable-agent`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use skiff_kubelet::{Config, Kubelet, NoPodNetwork};
use skiff_runtime::runtime::{LocalRuntime, LoopbackOnly, RuntimeConfig};

/// What the agent needs to know about its node and cluster.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Data directory (the agent keeps its state under `<data-dir>/agent`).
    pub data_dir: PathBuf,
    /// Node name.
    pub node_name: String,
    /// The node's address.
    pub node_ip: IpAddr,
    /// Whether this node also runs the control plane.
    pub control_plane: bool,
    /// Credentials for the API server.
    pub kubeconfig: PathBuf,
    /// Port of the agent's HTTPS server.
    pub kubelet_port: u16,
    /// Port of the agent's plain `/healthz` on localhost (0 = off).
    pub healthz_port: u16,
    /// The node's network services; `None` gives pods only loopback.
    pub network: Option<skiff_kubelet::network::NetworkOptions>,
    /// When container logs are rotated.
    pub log_rotation: skiff_kubelet::log_rotation::Policy,
    /// Serving certificate and key of the agent's HTTPS server and the CA whose client
    /// certificates it accepts (PEM), when the server issued them.
    pub serving: Option<(String, String, String)>,
    /// `--eviction-hard` as given (already checked); `None` keeps upstream's defaults.
    pub eviction_hard: Option<String>,
}

/// Imports the image tarballs found in `<data-dir>/agent/images/` (air-gap images, as k3s
/// does), so pods can use them without a registry.
fn import_seed_images(runtime: &LocalRuntime, data_dir: &std::path::Path) {
    let dir = data_dir.join("agent").join("images");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_archive = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz"));
        if !is_archive {
            continue;
        }
        match skiff_runtime::Runtime::import_image(runtime, &path, None) {
            Ok(images) => {
                for image in images {
                    tracing::info!(image = %image.names.join(","), file = %path.display(), "imported seed image");
                }
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not import seed image"),
        }
    }
}

/// Who wires the pods: skiff's bridge and VXLAN, CNI plugins, or nobody (loopback only).
enum PodNetworkKind {
    Builtin(Arc<skiff_kubelet::network::ClusterNetwork>),
    Cni(Arc<skiff_kubelet::network::CniNetwork>),
    Loopback,
}

impl PodNetworkKind {
    fn new(options: &AgentOptions) -> Self {
        match options.network.as_ref() {
            None => Self::Loopback,
            Some(n) => match &n.cni {
                // Attachments live with the rest of the agent's state, so a restart finds them.
                Some(cni) => Self::Cni(Arc::new(skiff_kubelet::network::CniNetwork::new(cni.clone(), options.data_dir.join("agent").join("cni")))),
                None => Self::Builtin(Arc::new(skiff_kubelet::network::ClusterNetwork::new())),
            },
        }
    }

    fn hook(&self) -> Arc<dyn skiff_runtime::runtime::NetworkHook> {
        match self {
            Self::Builtin(n) => n.clone(),
            Self::Cni(n) => n.clone(),
            Self::Loopback => Arc::new(LoopbackOnly),
        }
    }

    fn cni(&self) -> Option<Arc<skiff_kubelet::network::CniNetwork>> {
        match self {
            Self::Cni(n) => Some(n.clone()),
            _ => None,
        }
    }

    fn addresses(&self) -> Arc<dyn skiff_kubelet::PodAddresses> {
        match self {
            Self::Builtin(n) => n.clone(),
            Self::Cni(n) => n.clone(),
            Self::Loopback => Arc::new(NoPodNetwork),
        }
    }
}

/// Runs CNI DEL for attachments whose sandbox is gone (removed while the agent was down), so
/// their addresses go back to the plugin's IPAM. Done before any pod worker runs: a sandbox
/// being created has its attachment saved before the runtime lists it.
fn release_vanished_attachments(runtime: &LocalRuntime, cni: &skiff_kubelet::network::CniNetwork) {
    let sandboxes = match skiff_runtime::Runtime::list_sandboxes(runtime) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list sandboxes; CNI attachments are not garbage collected");
            return;
        }
    };
    let live: Vec<&str> = sandboxes.iter().map(|s| s.config.id.as_str()).collect();
    let released = cni.gc(&live);
    if !released.is_empty() {
        tracing::info!(sandboxes = ?released, "released CNI attachments of vanished sandboxes");
    }
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(options: AgentOptions, shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let root = skiff_runtime::cli::runtime_root(&options.data_dir);
    let data_dir = options.data_dir.clone();
    let pod_network = PodNetworkKind::new(&options);
    let hook = pod_network.hook();
    let cni = pod_network.cni();
    let runtime = tokio::task::spawn_blocking(move || -> anyhow::Result<LocalRuntime> {
        let mounted = skiff_runtime::cgroups::mount_missing_v1();
        if !mounted.is_empty() {
            tracing::info!(controllers = ?mounted, "mounted the cgroup v1 controllers the host had left unmounted");
        }
        match skiff_runtime::runtime::state_dir::ensure_tmpfs() {
            Ok(true) => tracing::info!(dir = skiff_runtime::runtime::state_dir::BASE, "mounted a tmpfs for container and sandbox state"),
            Ok(false) => {}
            Err(e) => tracing::warn!(dir = skiff_runtime::runtime::state_dir::BASE, error = %e, "container and sandbox state is not on a tmpfs"),
        }
        let config = RuntimeConfig::new(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
        let runtime = LocalRuntime::new(config, hook)
            .map_err(|e| anyhow::anyhow!("starting the container runtime in {}: {e}", root.display()))?;
        let report = runtime.recover().map_err(|e| anyhow::anyhow!("recovering containers: {e}"))?;
        tracing::info!(live = report.live.len(), exited = report.exited.len(), lost = report.lost.len(), cleaned = report.cleaned.len(), "container runtime recovered");
        import_seed_images(&runtime, &data_dir);
        if let Some(cni) = cni {
            release_vanished_attachments(&runtime, &cni);
        }
        Ok(runtime)
    })
    .await??;
    let client = skiff_controllers::client::from_kubeconfig(&options.kubeconfig)
        .await
        .context("connecting the node agent to the API server")?;
    let mut config = Config::new(options.node_name.clone(), options.node_ip, options.data_dir.join("agent"));
    config.control_plane = options.control_plane;
    config.kubelet_port = options.kubelet_port;
    config.healthz_port = options.healthz_port;
    config.log_rotation = options.log_rotation;
    config.manifests_dir = Some(options.data_dir.join("manifests"));
    if let Some(text) = &options.eviction_hard {
        config.eviction_hard = skiff_kubelet::eviction::parse_list(text).map_err(|e| anyhow::anyhow!("--eviction-hard: {e}"))?;
    }
    let mut kubelet = Kubelet::new(config, client, Arc::new(runtime), pod_network.addresses());
    // `PodNetworkKind::new` picked Loopback exactly when no network was asked for.
    match (pod_network, options.network.clone()) {
        (PodNetworkKind::Builtin(net), Some(network)) => {
            tokio::spawn(skiff_kubelet::network::run(kubelet.shared(), net, network));
        }
        (PodNetworkKind::Cni(net), Some(network)) => {
            tokio::spawn(skiff_kubelet::network::run_cni(kubelet.shared(), net, network));
        }
        _ => {}
    }
    if let Some((cert, key, ca)) = &options.serving {
        let tls = skiff_kubelet::streaming::tls_config(cert, key, ca).map_err(|e| anyhow::anyhow!("{e}"))?;
        kubelet = kubelet.with_streaming_tls(Arc::new(tls));
    }
    kubelet.run(shutdown).await.map_err(|e| anyhow::anyhow!("node agent: {e}"))
}

/// `skiff killall`: stops every container and sandbox of a node's data dir and unmounts
/// what the agent mounted under it (as k3s-killall.sh does). Run it after stopping the
/// server; the server leaves containers running on purpose so that restarts keep pods up.
pub fn killall(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use skiff_runtime::Runtime;
    let root = skiff_runtime::cli::runtime_root(data_dir);
    if root.exists() {
        let config = RuntimeConfig::new(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (cgroup_parent, state) = (config.cgroup_parent.clone(), config.state.clone());
        // Sandboxes wired by CNI plugins are unwired by them (addresses go back to the
        // plugin's IPAM); the saved attachments say with which plugins.
        let cni = skiff_kubelet::network::CniNetwork::for_cleanup(data_dir.join("agent").join("cni"));
        let hook: Arc<dyn skiff_runtime::runtime::NetworkHook> = if cni.has_attachments() { Arc::new(cni) } else { Arc::new(LoopbackOnly) };
        let runtime = LocalRuntime::new(config, hook).map_err(|e| anyhow::anyhow!("{e}"))?;
        for c in runtime.list_containers().unwrap_or_default() {
            if let Err(e) = runtime.remove_container(&c.config.id) {
                eprintln!("could not remove container {}: {e}", c.config.id);
            }
        }
        for s in runtime.list_sandboxes().unwrap_or_default() {
            if let Err(e) = runtime.remove_sandbox(&s.config.id) {
                eprintln!("could not remove sandbox {}: {e}", s.config.id);
            }
        }
        skiff_runtime::runtime::pins::stop_holder(&state);
        skiff_runtime::cgroups::remove(&cgroup_parent);
        unmount_under(&state);
        skiff_runtime::runtime::state_dir::remove_if_empty(&state);
    }
    unmount_under(&data_dir.join("agent"));
    Ok(())
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn unmount_under(dir: &std::path::Path) {
    let Ok(dir) = std::fs::canonicalize(dir) else { return };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The local address the kernel would use to reach `server` (a connected UDP socket sends
/// nothing but picks the route), the default node address of an agent.
fn local_address_towards(server: &str) -> Option<IpAddr> {
    let host = server.trim_start_matches("https://").trim_start_matches("http://");
    let addr: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host).ok()?.next()?;
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(addr).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// `skiff agent`: this machine as a node of a cluster, joined with a token (TLS bootstrap:
/// the node gets its own client and serving certificates through CSRs) or, for tests and
/// single-user setups, with a kubeconfig.
pub async fn run_agent(args: crate::cli::AgentArgs) -> anyhow::Result<()> {
    let node_name = args.node.node_name.clone().unwrap_or_else(skiff_kubelet::config::hostname);
    let (kubeconfig, server, serving) = match (&args.kubeconfig, &args.server, &args.token) {
        (Some(kubeconfig), _, _) => {
            let kc = kube::config::Kubeconfig::read_from(kubeconfig)
                .with_context(|| format!("reading {}", kubeconfig.display()))?;
            let server = kc.clusters.first().and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone()).unwrap_or_default();
            (kubeconfig.clone(), server, None)
        }
        (None, Some(server), Some(token)) => {
            let node_ip = args.node.node_ip.or_else(|| local_address_towards(server));
            let options = skiff_kubelet::bootstrap::JoinOptions {
                server: server.clone(),
                token: token.clone(),
                ca_pin: args.ca_pin.clone(),
                data_dir: args.data_dir.join("agent"),
                node_name: node_name.clone(),
                node_ips: node_ip.into_iter().collect(),
                ..Default::default()
            };
            let creds = skiff_kubelet::bootstrap::join(options)
                .await
                .map_err(|e| anyhow::anyhow!("joining {server}: {e}"))?;
            eprintln!("skiff agent: joined {server} as system:node:{node_name}");
            let serving = Some((creds.serving_cert_pem, creds.serving_key_pem, creds.ca_pem));
            (creds.kubeconfig_path, server.clone(), serving)
        }
        _ => anyhow::bail!("say how to reach the cluster: --server URL --token TOKEN (from `skiff token create`), or --kubeconfig FILE"),
    };
    let node_ip = match args.node.node_ip.or_else(|| local_address_towards(&server)) {
        Some(ip) => ip,
        None => anyhow::bail!("cannot tell this node's address from {server:?}: pass --node-ip"),
    };
    let options = AgentOptions {
        data_dir: args.data_dir.clone(),
        node_name,
        node_ip,
        control_plane: false,
        kubeconfig,
        kubelet_port: args.node.kubelet_port,
        healthz_port: args.node.kubelet_healthz_port,
        network: crate::server::network_options(&args.node),
        serving,
        log_rotation: args.node.log_rotation(),
        eviction_hard: args.node.eviction_hard.clone(),
    };
    eprintln!("skiff agent: node {} at {node_ip}, server {server}", options.node_name);
    crate::trim::start();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(options, rx));
    tokio::select! {
        _ = crate::server::shutdown_signal() => {}
        result = task => return result?.map_err(|e| e.context("node agent")),
    }
    let _ = tx.send(true);
    Ok(())
}
