//! The `server` and `up` roles: open the store, build the API server, run until a signal.

use std::sync::Arc;

use anyhow::Context;
use skiff_apiserver::{ApiServer, Config};
use skiff_store::Store;

use crate::cli::{ServerArgs, SnapshotAction};

fn store_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("db").join("state.db")
}

async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    match args.store.as_str() {
        "memory" => Ok(Arc::new(skiff_store::memory::MemoryStore::new())),
        "sqlite" => {
            let path = store_path(&args.data_dir);
            std::fs::create_dir_all(path.parent().unwrap())
                .with_context(|| format!("creating {}", path.parent().unwrap().display()))?;
            let config = skiff_store::sqlite::SqliteConfig {
                compaction_interval: Some(std::time::Duration::from_secs(args.compaction_interval.max(1))),
                compaction_retain: args.compaction_retain,
                ..Default::default()
            };
            let store = skiff_store::sqlite::SqliteStore::open(&path, config)
                .with_context(|| format!("opening the store at {}", path.display()))?;
            Ok(Arc::new(store))
        }
        other => anyhow::bail!("unknown store backend {other:?}: use `sqlite` or `memory`"),
    }
}

/// Wait for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}

/// `skiff server`
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = open_store(&args).await?;
    let advertise = args.advertise_address.unwrap_or_else(|| {
        if args.bind_address.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { args.bind_address }
    });
    let config = Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.port,
        advertise_address: advertise,
        tls_sans: args.tls_san.clone(),
        write_kubeconfig: args.write_kubeconfig.clone(),
        default_toleration_seconds: args.default_unreachable_toleration_seconds,
        ..Config::default()
    };
    let api = ApiServer::build(config, store).await.context("starting the API server")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let addr = api.local_addr();
    let acceptor = skiff_apiserver::server::health_acceptor(&api.state().pki)?;
    let bind = args.bind_address;
    for (port, component, disabled) in [
        (args.controller_manager_port, "kube-controller-manager", args.disable_controller_manager),
        (args.scheduler_port, "kube-scheduler", args.disable_scheduler),
    ] {
        if port != 0 && !disabled {
            tokio::spawn(crate::health::serve(std::net::SocketAddr::new(bind, port), acceptor.clone(), component));
        }
    }
    let node_name = args.node.node_name.clone().unwrap_or_else(skiff_kubelet::config::hostname);
    let pki = &api.state().pki;
    let serving = pki
        .issue_kubelet_serving_cert(&node_name, &[advertise])
        .map(|pair| (pair.cert_pem, pair.key_pem, pki.ca.cert_pem.clone()))
        .map_err(|e| tracing::warn!(error = %e, "could not issue the kubelet serving certificate"))
        .ok();
    let state = api.state();
    let task = tokio::spawn(api.run(rx.clone()));
    let agent_shutdown = rx.clone();
    // The controller manager and the scheduler run in this process: their API client hands
    // requests straight to the handlers (as the admin kubeconfig's user, which they used over
    // HTTPS before) instead of looping through TLS and TCP.
    let admin = skiff_apiserver::auth::User::new("system:admin", &["system:masters".to_string()]);
    let in_process = kube::Client::new(skiff_apiserver::in_process::InProcess::new(state, admin), "default");
    let mut controllers = skiff_controllers::Config::new(args.data_dir.join("kubeconfig.yaml"));
    controllers.client = Some(in_process.clone());
    controllers.node_timings.grace = std::time::Duration::from_secs(args.node_monitor_grace_period.max(1));
    if !args.disable_controller_manager {
        spawn_component("skiff-controllers", move || async move {
            if let Err(e) = skiff_controllers::run(controllers, rx).await {
                tracing::error!(error = %format!("{e:#}"), "controller manager stopped");
            }
        })?;
    }
    if !args.disable_scheduler {
        spawn_component("skiff-scheduler", move || async move {
            let c = in_process.clone();
            let lease = skiff_controllers::leader::LeaseConfig::new("kube-scheduler");
            skiff_controllers::leader::run_elected(in_process, lease, move || skiff_scheduler::run(c.clone())).await
        })?;
    }
    let agent_task = (!args.disable_agent).then(|| {
        let options = crate::agent::AgentOptions {
            data_dir: args.data_dir.clone(),
            node_name,
            healthz_port: args.node.kubelet_healthz_port,
            network: network_options(&args.node),
            serving,
            node_ip: args.node.node_ip.unwrap_or(advertise),
            control_plane: true,
            kubeconfig: args.data_dir.join("kubeconfig.yaml"),
            kubelet_port: args.node.kubelet_port,
            log_rotation: args.node.log_rotation(),
            eviction_hard: args.node.eviction_hard.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::agent::run(options, agent_shutdown).await {
                tracing::error!(error = %format!("{e:#}"), "node agent stopped");
            }
        })
    });
    tracing::info!(%addr, ms = started.elapsed().as_millis() as u64, kubeconfig = %args.data_dir.join("kubeconfig.yaml").display(), "skiff server ready");
    crate::trim::start();
    shutdown_signal().await;
    let _ = tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    if let Some(agent) = agent_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), agent).await;
    }
    Ok(())
}

/// Runs a control-plane component (the controller manager, the scheduler) on a thread of
/// its own with a single-threaded runtime, for the process's lifetime.
///
/// Why not tasks on the server's runtime: the allocator (mimalloc) serves each thread from
/// pages of its own, and the components' caches (every pod, every object's owners) are
/// long-lived while the API server's request buffers are not. Allocated by the same worker
/// threads, the two interleave, and after a burst each page freed of requests is still held
/// by a few cached objects: holding 10,000 pods, the server's heap was twice its live data.
/// Each component's cache now fills pages of its own thread.
fn spawn_component<F, Fut>(name: &'static str, component: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let runtime = crate::build_runtime(tokio::runtime::Builder::new_current_thread())
        .with_context(|| format!("starting the {name} runtime"))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(component()))
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// The node's network services from the server flags (`None` with `--flannel-backend none`;
/// CNI mode with `--cni-conf-dir`, which the CLI keeps apart from `--flannel-backend`).
pub fn network_options(args: &crate::cli::NodeArgs) -> Option<skiff_kubelet::network::NetworkOptions> {
    let cni = args.cni_conf_dir.as_ref().map(|dir| skiff_kubelet::network::cni::CniConfig::new(dir, &args.cni_bin_dir));
    let backend = match args.flannel_backend.as_str() {
        "none" if cni.is_none() => return None,
        "host-gw" => skiff_net::pod_network::Backend::HostGw,
        _ => skiff_net::pod_network::Backend::Vxlan,
    };
    Some(skiff_kubelet::network::NetworkOptions {
        backend,
        proxy: !args.disable_kube_proxy,
        dns: !args.disable_dns,
        policy: !args.disable_network_policy,
        ingress: !args.disable_ingress,
        proxy_healthz_port: args.kube_proxy_healthz_port,
        proxy_metrics_port: args.kube_proxy_metrics_port,
        cni,
    })
}

/// `skiff up`: the whole cluster on this machine. For now: the control plane.
pub async fn up(args: ServerArgs) -> anyhow::Result<()> {
    eprintln!("skiff up: starting the control plane (data in {})", args.data_dir.display());
    eprintln!("  kubeconfig: {}", args.data_dir.join("kubeconfig.yaml").display());
    eprintln!("  try: kubectl --kubeconfig {} get namespaces", args.data_dir.join("kubeconfig.yaml").display());
    run(args).await
}

/// `skiff snapshot save|restore`
pub async fn snapshot(action: SnapshotAction) -> anyhow::Result<()> {
    match action {
        SnapshotAction::Save { data_dir, file } => {
            let file = std::path::absolute(&file).with_context(|| format!("resolving {}", file.display()))?;
            // A running server holds the store: ask it for a consistent snapshot.
            let kubeconfig = data_dir.join("kubeconfig.yaml");
            if kubeconfig.exists() {
                if let Ok(client) = skiff_controllers::client::from_kubeconfig(&kubeconfig).await {
                    let encoded: String = file
                        .display()
                        .to_string()
                        .bytes()
                        .map(|b| match b {
                            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => (b as char).to_string(),
                            _ => format!("%{b:02X}"),
                        })
                        .collect();
                    let uri = format!("/skiff/v1/snapshot?path={encoded}");
                    let req = http::Request::post(uri).body(Vec::new())?;
                    match client.request_text(req).await {
                        Ok(body) => {
                            eprintln!("snapshot written by the running server to {} ({body})", file.display());
                            return Ok(());
                        }
                        Err(kube::Error::Api(e)) => anyhow::bail!("the server refused the snapshot: {}", e.message),
                        Err(_) => {} // not running: open the store directly below
                    }
                }
            }
            let path = store_path(&data_dir);
            anyhow::ensure!(path.exists(), "no store at {} (is --data-dir right?)", path.display());
            let store = skiff_store::sqlite::SqliteStore::open(&path, Default::default())?;
            store.snapshot(&file).await.with_context(|| format!("writing snapshot {}", file.display()))?;
            eprintln!("snapshot written to {}", file.display());
            Ok(())
        }
        SnapshotAction::Restore { data_dir, file } => {
            let path = store_path(&data_dir);
            std::fs::create_dir_all(path.parent().unwrap())?;
            skiff_store::sqlite::restore(&file, &path).with_context(|| format!("restoring {}", file.display()))?;
            eprintln!("restored {} into {}; start the server to use it", file.display(), path.display());
            Ok(())
        }
    }
}
