//! Helpers shared by the e2e tests that drive the server with kube-rs.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use skiff_testkit::Cluster;

/// The `skiff` binary under test.
pub fn skiff_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_skiff"))
}

/// A kube-rs client from the cluster's admin kubeconfig (client certificate), talking to
/// `url` instead of the kubeconfig's server when given (e.g. through a test proxy).
pub async fn kube_client(cluster: &Cluster, url: Option<String>) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    if let Some(u) = url {
        cfg.cluster_url = u.parse()?;
    }
    Ok(kube::Client::try_from(cfg)?)
}

/// Poll `cond` every 20 ms until it holds, failing with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The HTTP status code of a kube-rs API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The busybox test image the node e2e tests import.
pub const IMAGE: &str = "skiff.test/busybox:1";

/// A server with its node agent (`extra` flags added), the busybox test image imported,
/// and the node Ready.
pub fn node_cluster(extra: &[&str]) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start_with_agent(skiff_binary(), extra)?;
    import_image_and_wait_ready(&cluster)?;
    Ok(cluster)
}

/// Imports the busybox test image into the cluster's (single) node.
pub fn import_image(cluster: &Cluster) -> anyhow::Result<()> {
    let archive = cluster.data_dir().join("busybox.tar");
    skiff_testkit::images::write_busybox_archive(&archive, IMAGE);
    cluster.import_image(&archive)?;
    Ok(())
}

/// Imports the busybox test image into the cluster's (single) node and waits for it to be Ready.
pub fn import_image_and_wait_ready(cluster: &Cluster) -> anyhow::Result<()> {
    import_image(cluster)?;
    cluster.eventually(Duration::from_secs(30), "the node to be Ready", || {
        cluster
            .ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}"])
            .is_ok_and(|s| s == "True")
    })
}
