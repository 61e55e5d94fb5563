//! The pod network as the runtime and the pod workers see it: a hook that wires each
//! sandbox into the node bridge once the node's pod CIDR is known, and the address lookup.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use skiff_net::pod_network::PodNetwork;
use skiff_runtime::runtime::{NetworkHook, SandboxInfo};

use crate::PodAddresses;

/// The node's pod network, set once the node has a pod CIDR. Until then sandboxes fail to
/// get a network and the pod worker retries, as a kubelet does while its CNI is not ready.
#[derive(Default)]
pub struct ClusterNetwork {
    inner: OnceLock<Arc<PodNetwork>>,
}

impl ClusterNetwork {
    /// A network that is not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the network ready (first call wins).
    pub fn set(&self, network: Arc<PodNetwork>) {
        let _ = self.inner.set(network);
    }

    /// The pod network, once ready.
    pub fn get(&self) -> Option<&Arc<PodNetwork>> {
        self.inner.get()
    }
}

fn not_ready() -> skiff_runtime::Error {
    skiff_runtime::Error::InvalidState("network is not ready: the node has no pod CIDR yet".into())
}

impl NetworkHook for ClusterNetwork {
    fn setup(&self, sandbox: &SandboxInfo) -> skiff_runtime::Result<()> {
        let Some(netns) = sandbox.netns_path() else { return Ok(()) }; // hostNetwork
        let network = self.get().ok_or_else(not_ready)?;
        network
            .attach(&sandbox.config.id, &netns)
            .map(|_| ())
            .map_err(|e| skiff_runtime::Error::InvalidState(format!("pod network: {e}")))
    }

    fn teardown(&self, sandbox: &SandboxInfo) -> skiff_runtime::Result<()> {
        if sandbox.netns_path().is_none() {
            return Ok(());
        }
        match self.get() {
            Some(network) => network
                .detach(&sandbox.config.id)
                .map_err(|e| skiff_runtime::Error::InvalidState(format!("pod network: {e}"))),
            None => Ok(()),
        }
    }
}

impl PodAddresses for ClusterNetwork {
    fn pod_ip(&self, sandbox: &SandboxInfo) -> Option<IpAddr> {
        self.get()?.address_of(&sandbox.config.id).map(IpAddr::V4)
    }
}
