//! NodeRestriction for pods against a real `skiff server`: a node (joined through TLS
//! bootstrap, so it authenticates as `system:node:<name>`) may create only mirror pods bound
//! to itself and owned by its Node, and delete only pods bound to itself; the admin may do
//! anything.

mod common;

#[path = "../src/token.rs"]
#[allow(dead_code)]
mod token;

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_kubelet::bootstrap::{self, JoinOptions};
use skiff_testkit::Cluster;

async fn client_from(path: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn pod(name: &str, node: &str, mirror: bool, owner: Option<(&str, &str)>) -> Pod {
    let mut p = json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    });
    if mirror {
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "0123", "kubernetes.io/config.source": "file"});
    }
    if let Some((owner, uid)) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": owner, "uid": uid, "controller": true}]);
    }
    serde_json::from_value(p).unwrap()
}

fn forbidden_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => s.message,
        other => panic!("expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_create_only_their_own_mirror_pods() -> Result<()> {
    let cluster = Cluster::start(common::skiff_binary())?;
    let dir = tempfile::tempdir()?;
    let token = token::create_token(&cluster.kubeconfig(), Duration::from_secs(3600)).await?;
    let creds = bootstrap::join(JoinOptions {
        server: format!("https://127.0.0.1:{}", cluster.port),
        token,
        ca_pin: None,
        data_dir: dir.path().to_path_buf(),
        node_name: "nr-1".into(),
        node_ips: vec!["127.0.0.1".parse().unwrap()],
        discovery_timeout: Duration::from_secs(30),
        csr_timeout: Duration::from_secs(60),
    })
    .await?;
    let node_client = client_from(&creds.kubeconfig_path).await?;
    let admin = client_from(&cluster.kubeconfig()).await?;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "nr-1"}}))?;
    let node = Api::<Node>::all(node_client.clone()).create(&PostParams::default(), &node).await?;
    let uid = node.metadata.uid.clone().unwrap();
    let as_node: Api<Pod> = Api::namespaced(node_client, "default");
    let as_admin: Api<Pod> = Api::namespaced(admin, "default");
    let pp = PostParams::default();

    let m = forbidden_message(as_node.create(&pp, &pod("plain", "nr-1", false, Some(("nr-1", &uid)))).await.unwrap_err());
    assert_eq!(
        m,
        "pods \"plain\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"nr-1\" can only create mirror pods"
    );
    let m = forbidden_message(as_node.create(&pp, &pod("elsewhere", "nr-2", true, Some(("nr-1", &uid)))).await.unwrap_err());
    assert!(m.contains("can only create pods with spec.nodeName set to itself"), "{m}");
    let m = forbidden_message(as_node.create(&pp, &pod("unowned", "nr-1", true, None)).await.unwrap_err());
    assert!(m.contains("owner reference set to itself"), "{m}");

    let created = as_node.create(&pp, &pod("web-nr-1", "nr-1", true, Some(("nr-1", &uid)))).await?;
    assert!(
        created.spec.as_ref().unwrap().volumes.as_ref().is_none_or(|v| v.is_empty()),
        "a mirror pod gets no service account token volume"
    );

    // Deleting: own pods yes, other nodes' pods no; the admin anything.
    as_admin.create(&pp, &pod("other", "nr-2", false, None)).await?;
    let m = forbidden_message(as_node.delete("other", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(m, "pods \"other\" is forbidden: node \"nr-1\" can only delete pods with spec.nodeName set to itself");
    as_node.delete("web-nr-1", &DeleteParams::default()).await?;
    as_admin.create(&pp, &pod("admin-plain", "nr-1", false, None)).await?;
    as_admin.delete("other", &DeleteParams::default()).await?;
    Ok(())
}
