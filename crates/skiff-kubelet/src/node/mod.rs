//! The node's registration, status and Lease heartbeat.
//!
//! The Node object carries labels, addresses, capacity/allocatable, conditions and node
//! info; the Lease in `kube-node-lease` is renewed every 10 s and is what the node lifecycle
//! controller watches. If someone deletes the Node, the next heartbeat registers it again.

mod capacity;

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{Error, Result, Shared};

pub use capacity::Capacity;

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The labels the agent puts on its Node.
pub fn node_labels(shared: &Shared) -> BTreeMap<String, String> {
    let c = &shared.config;
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), c.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
    ]);
    if c.control_plane {
        labels.insert("node-role.kubernetes.io/control-plane".into(), "true".into());
        labels.insert("node-role.kubernetes.io/master".into(), "true".into());
    }
    labels.extend(c.labels.clone());
    labels
}

/// The architecture as Go (and so Kubernetes) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Ready, unless the pod network is not (a CNI node without a configuration yet): then
/// False with the reason and message upstream's kubelet gives for NetworkReady=false.
fn ready_condition(network: &dyn crate::PodAddresses, now: &Time) -> NodeCondition {
    match network.network_ready() {
        Ok(()) => condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now),
        Err(why) => {
            let message = format!("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:{why}");
            condition("Ready", "False", "KubeletNotReady", &message, now)
        }
    }
}

/// The status the agent reports; `previous` keeps transition times of unchanged conditions.
pub fn node_status(shared: &Shared, previous: Option<&NodeStatus>) -> NodeStatus {
    let c = &shared.config;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let cap = Capacity::read(&c.root, c.max_pods);
    let pressure = shared.eviction.conditions();
    let mut conditions = vec![
        if pressure.contains("MemoryPressure") {
            condition("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available", &now)
        } else {
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &now)
        },
        if pressure.contains("DiskPressure") {
            condition("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure", &now)
        } else {
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &now)
        },
        if pressure.contains("PIDPressure") {
            condition("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available", &now)
        } else {
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", &now)
        },
        ready_condition(shared.addresses.as_ref(), &now),
    ];
    if let Some(prev) = previous.and_then(|p| p.conditions.as_ref()) {
        for cond in &mut conditions {
            if let Some(old) = prev.iter().find(|o| o.type_ == cond.type_ && o.status == cond.status) {
                cond.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: c.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: c.node_name.clone() },
        ]),
        capacity: Some(cap.capacity()),
        allocatable: Some(cap.allocatable(&c.eviction_hard)),
        conditions: Some(conditions),
        images: Some(node_images(shared.runtime.as_ref())),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: c.kubelet_port as i32 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().into(),
            container_runtime_version: concat!("skiff://", env!("CARGO_PKG_VERSION")).into(),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: concat!("v1.33.0+skiff-", env!("CARGO_PKG_VERSION")).into(),
            machine_id: std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().into(),
            operating_system: "linux".into(),
            os_image: os,
            system_uuid: std::fs::read_to_string("/sys/class/dmi/id/product_uuid").unwrap_or_default().trim().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Most images a Node lists (upstream's `nodeStatusMaxImages`).
const MAX_NODE_IMAGES: usize = 50;

/// The node's images, largest first, as the scheduler's ImageLocality scoring reads them.
fn node_images(runtime: &dyn skiff_runtime::Runtime) -> Vec<k8s_openapi::api::core::v1::ContainerImage> {
    let mut images = match runtime.list_images() {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(error = %e, "listing images for the node status");
            return Vec::new();
        }
    };
    images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    images
        .into_iter()
        .filter(|i| !i.names.is_empty())
        .take(MAX_NODE_IMAGES)
        .map(|i| k8s_openapi::api::core::v1::ContainerImage {
            names: Some(i.names.into_iter().chain(std::iter::once(i.id)).collect()),
            size_bytes: i64::try_from(i.size).ok(),
        })
        .collect()
}

/// Creates the Node (or refreshes its labels and status if it exists) and its Lease.
pub async fn register(shared: &Shared) -> Result<Node> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let name = &shared.config.node_name;
    let node = match api.get_opt(name).await.map_err(api_err(format!("reading node {name}")))? {
        Some(existing) => {
            let patch = json!({"metadata": {"labels": node_labels(shared)}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("updating node {name}")))?;
            existing
        }
        None => {
            let node = Node {
                metadata: ObjectMeta { name: Some(name.clone()), labels: Some(node_labels(shared)), ..Default::default() },
                ..Default::default()
            };
            let created = api
                .create(&PostParams::default(), &node)
                .await
                .map_err(api_err(format!("creating node {name}")))?;
            shared.events.node(crate::events::Kind::Normal, "RegisteredNode", format!("Node {name} event: Registered Node {name} in Controller"));
            created
        }
    };
    let node = report_status(shared, &node).await?;
    renew_lease(shared, &node).await?;
    Ok(node)
}

/// Writes the Node status now (pressure changed, say), not at the next heartbeat.
pub async fn report_now(shared: &Shared) -> Result<()> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let node = api.get(&shared.config.node_name).await.map_err(api_err("reading node"))?;
    report_status(shared, &node).await.map(|_| ())
}

async fn report_status(shared: &Shared, node: &Node) -> Result<Node> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let status = node_status(shared, node.status.as_ref());
    let patch = json!({"status": status});
    api.patch_status(&shared.config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err("reporting node status"))
}

async fn renew_lease(shared: &Shared, node: &Node) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let name = &shared.config.node_name;
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(shared.config.lease_duration_seconds),
        renew_time: Some(now),
        ..Default::default()
    };
    match api.get_opt(name).await.map_err(api_err("reading node lease"))? {
        Some(_) => {
            let patch = json!({"spec": spec});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err("renewing node lease"))?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: node.metadata.uid.clone().map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map_err(api_err("creating node lease"))?;
        }
    }
    Ok(())
}

fn ready_is_true(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Renews the Lease every `lease_interval`, rewrites the Node status when it changed (the
/// node lifecycle controller marked it Unknown, say) or every `status_report_interval`, and
/// registers the Node again if it was deleted.
pub async fn heartbeat(shared: std::sync::Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut last_report = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(shared.config.lease_interval).await;
        let result: Result<()> = async {
            match api.get(&shared.config.node_name).await {
                Ok(node) => {
                    if !ready_is_true(&node) || last_report.elapsed() >= shared.config.status_report_interval {
                        report_status(&shared, &node).await?;
                        last_report = tokio::time::Instant::now();
                    }
                    renew_lease(&shared, &node).await
                }
                Err(e) if is_not_found(&e) => {
                    tracing::warn!(node = %shared.config.node_name, "node object was deleted; registering again");
                    register(&shared).await.map(|_| ())
                }
                Err(e) => Err(api_err("reading node")(e)),
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

/// Writes the Node status as soon as the pod network turns ready or not ready, instead of at
/// the next heartbeat: checked every second while not ready (a network add-on is about to
/// write its CNI configuration), every 5 s while ready. `reported` is the readiness read
/// before the node was registered (so before its first status was built).
pub async fn watch_network(shared: std::sync::Arc<Shared>, mut reported: bool) {
    loop {
        let period = if reported { NETWORK_CHECK_READY } else { NETWORK_CHECK_NOT_READY };
        tokio::time::sleep(period).await;
        let ready = shared.addresses.network_ready();
        if ready.is_ok() == reported {
            continue;
        }
        match report_now(&shared).await {
            Ok(()) => {
                reported = ready.is_ok();
                match ready {
                    Ok(()) => tracing::info!(node = %shared.config.node_name, "pod network ready; node reported Ready"),
                    Err(why) => tracing::warn!(node = %shared.config.node_name, reason = %why, "pod network not ready; node reported NotReady"),
                }
            }
            // Tried again at the next check.
            Err(e) => tracing::warn!(error = %e, "reporting the node's network readiness failed"),
        }
    }
}

const NETWORK_CHECK_NOT_READY: std::time::Duration = std::time::Duration::from_secs(1);
const NETWORK_CHECK_READY: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers `ok` to every request on 127.0.0.1:`port` (the kubelet's `/healthz`, which
/// upstream serves on localhost only).
pub async fn serve_healthz(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(port, error = %e, "kubelet healthz port unavailable");
            return;
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::runtime::FakeRuntime;
    use skiff_runtime::Runtime as _;

    #[test]
    fn node_images_list_names_and_id() {
        let rt = FakeRuntime::new();
        rt.pull_image("busybox").unwrap();
        rt.pull_image("registry.test/app:2").unwrap();
        let images = node_images(&rt);
        assert_eq!(images.len(), 2);
        for i in &images {
            let names = i.names.as_ref().unwrap();
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(names[1].starts_with("sha256:"), "{names:?}");
            assert_eq!(i.size_bytes, Some(1));
        }
        assert!(images.iter().any(|i| i.names.as_ref().unwrap()[0] == "docker.io/library/busybox:latest"), "{images:?}");
    }

    /// A pod network whose readiness the test sets.
    struct Network(Result<(), String>);

    impl crate::PodAddresses for Network {
        fn pod_ip(&self, _: &skiff_runtime::runtime::SandboxInfo) -> Option<std::net::IpAddr> {
            None
        }
        fn network_ready(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[test]
    fn ready_follows_the_pod_network() {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let ready = ready_condition(&crate::NoPodNetwork, &now);
        assert_eq!((ready.type_.as_str(), ready.status.as_str(), ready.reason.as_deref()), ("Ready", "True", Some("KubeletReady")));
        let ready = ready_condition(&Network(Ok(())), &now);
        assert_eq!(ready.status, "True");
        let not_ready = ready_condition(&Network(Err("Network plugin returns error: cni plugin not initialized".into())), &now);
        assert_eq!((not_ready.status.as_str(), not_ready.reason.as_deref()), ("False", Some("KubeletNotReady")));
        assert_eq!(
            not_ready.message.as_deref(),
            Some("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized")
        );
    }
}
