//! The pod network: what flannel plus the `bridge`/`host-local` CNI plugins do for k3s, done
//! from Rust over rtnetlink.
//!
//! On each node: a bridge (`skiff0`) holding the `.1` gateway of the node's pod CIDR, one veth
//! pair per pod sandbox (host end on the bridge, `eth0` in the sandbox), addresses from a
//! file-backed IPAM, `unreachable` routes for the cluster and service CIDRs, and routes to the
//! other nodes' pod CIDRs over VXLAN (default) or directly (host-gw).
//!
//! The API is blocking; the node agent runs it inside `spawn_blocking`. A [`PodNetwork`] acts
//! on the network namespace of the thread that called [`PodNetwork::new`] (the netlink socket
//! stays bound to it), whichever thread calls its methods later. Pod namespaces are entered
//! only from short-lived threads spawned for that purpose (see [`run_in_netns`]).
//!
//! Not here: masquerading of traffic leaving the cluster, hostPort and network policy
//! (nftables, owned by the service proxy / policy modules).

#![forbid(unsafe_code)]

mod bridge;
mod cidr;
mod error;
mod ipam;
mod netns;
mod nl;
mod routes;
mod socket_pool;
mod veth;
mod vxlan;

#[cfg(test)]
mod lab;
#[cfg(test)]
mod netns_tests;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netlink_packet_route::link::InfoKind;

pub use cidr::{CidrParseError, Ipv4Cidr};
pub use error::{Error, Result};
pub use ipam::Ipam;
pub use netns::run_in_netns;
pub use nl::SKIFF_ROUTE_PROTO;
pub use routes::NodePeer;
pub use veth::{host_veth_name, HOST_VETH_PREFIX, POD_IFNAME};
pub use vxlan::{vtep_mac, VXLAN_OVERHEAD};

use nl::Netlink;
use socket_pool::SocketPool;
use veth::PodIface;
use vxlan::VxlanParams;

/// How pod traffic reaches other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// VXLAN overlay (flannel's default): works whenever nodes reach each other over IP.
    #[default]
    Vxlan,
    /// Plain routes via the peer's node IP: no encapsulation, but nodes must share an L2
    /// segment.
    HostGw,
}

/// Makes `ip` (as a /32) an address of link `link` in the caller's network namespace, for a
/// service that must answer on an address no pod network owns: the node-local cluster DNS
/// when a CNI plugin, not skiff, wires the pods (pods reach it through their gateway, and the
/// kernel delivers to any local address). An existing identical address is not an error.
pub fn add_link_address(link: &str, ip: Ipv4Addr) -> Result<()> {
    let mut nl = Netlink::open()?;
    let index = nl.link_by_name(link)?.ok_or_else(|| Error::NotFound { what: format!("link {link}") })?.index;
    if nl.addresses(index)?.iter().any(|(a, _)| *a == ip) {
        return Ok(());
    }
    nl.add_address(index, link, ip, 32)
}

/// Configuration of a node's pod network.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// Bridge name (`skiff0`), at most 15 characters.
    pub bridge: String,
    /// This node's pod CIDR (a /24 out of the cluster CIDR, from `Node.spec.podCIDR`).
    pub pod_cidr: Ipv4Cidr,
    /// Cluster CIDR (10.42.0.0/16); gets an `unreachable` route.
    pub cluster_cidr: Ipv4Cidr,
    /// Service CIDR (10.43.0.0/16); routed into the bridge (see [`PodNetwork::new`]).
    pub service_cidr: Ipv4Cidr,
    /// Directory for IPAM records (e.g. `/var/lib/skiff/net`); records go in `ipam/` below it.
    pub state_dir: PathBuf,
    /// Pod MTU; when `None`, the MTU of the interface holding `node_ip`, minus the VXLAN
    /// overhead with the VXLAN backend.
    pub mtu: Option<u32>,
    /// This node's address: VXLAN source address, and how the underlay interface is found.
    pub node_ip: Ipv4Addr,
    /// Inter-node transport.
    pub backend: Backend,
    /// VXLAN device name (`skiff.1`).
    pub vxlan_device: String,
    /// VXLAN network identifier (1).
    pub vxlan_vni: u32,
    /// VXLAN UDP port (8472, flannel's).
    pub vxlan_port: u16,
}

impl PodNetworkConfig {
    /// A configuration with k3s's defaults for everything except what is node-specific.
    pub fn new(pod_cidr: Ipv4Cidr, node_ip: Ipv4Addr, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            bridge: "skiff0".into(),
            pod_cidr,
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16).expect("valid"),
            service_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 43, 0, 0), 16).expect("valid"),
            state_dir: state_dir.into(),
            mtu: None,
            node_ip,
            backend: Backend::Vxlan,
            vxlan_device: "skiff.1".into(),
            vxlan_vni: 1,
            vxlan_port: 8472,
        }
    }

    fn validate(&self) -> Result<()> {
        for name in [&self.bridge, &self.vxlan_device] {
            if name.is_empty() || name.len() > 15 {
                return Err(Error::Config(format!(
                    "interface name {name:?} must be 1-15 bytes"
                )));
            }
        }
        if !self.cluster_cidr.contains_net(&self.pod_cidr) {
            return Err(Error::Config(format!(
                "pod cidr {} is not inside cluster cidr {}",
                self.pod_cidr, self.cluster_cidr
            )));
        }
        if self.pod_cidr.prefix_len() > 30 {
            return Err(Error::Config(format!(
                "pod cidr {} is too small",
                self.pod_cidr
            )));
        }
        if let Some(mtu) = self.mtu {
            if !(576..=65535).contains(&mtu) {
                return Err(Error::Config(format!("mtu {mtu} out of range 576-65535")));
            }
        }
        Ok(())
    }
}

/// A node's pod network, bound to the network namespace in which it was created.
#[derive(Debug)]
pub struct PodNetwork {
    cfg: PodNetworkConfig,
    /// For node-wide configuration (bridge, routes to peers, clean-up), one change at a time.
    nl: Mutex<Netlink>,
    /// For wiring and unwiring single pods, several at a time.
    pod_sockets: SocketPool,
    ipam: Ipam,
    mtu: u32,
    /// The bridge's index and when `ensure_bridge` last confirmed it (see [`Self::bridge`]).
    bridge_checked: Mutex<Option<(u32, Instant)>>,
}

/// How long a confirmed bridge is trusted before an attach checks it again. Checking it on
/// every attach (a lookup that decodes every bridge attribute, the address list, the
/// node-wide socket's lock) was ~5% of the agent's CPU in a burst of pods.
const BRIDGE_RECHECK: Duration = Duration::from_secs(10);

/// Pods wired at the same time; a burst gains nothing beyond a few on a small node, the
/// kernel serialising link changes anyway.
const POD_SOCKETS: usize = 4;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl PodNetwork {
    /// Sets up the node side in the calling thread's network namespace: bridge with the
    /// gateway address, `ip_forward=1`, `unreachable` routes for the cluster and service
    /// CIDRs and, with the VXLAN backend, the VXLAN device. Idempotent: calling it again (an
    /// agent restart) repairs what is missing and keeps existing pods and addresses.
    pub fn new(cfg: PodNetworkConfig) -> Result<Self> {
        cfg.validate()?;
        let mut nl = Netlink::open()?;
        let underlay = vxlan::underlay(&mut nl, cfg.node_ip)?;
        let vx_mtu = match (&cfg.backend, &underlay) {
            (Backend::Vxlan, Some(u)) => Some(u.mtu.saturating_sub(VXLAN_OVERHEAD)),
            (Backend::Vxlan, None) => {
                return Err(Error::NotFound {
                    what: format!("interface with node ip {} (vxlan underlay)", cfg.node_ip),
                })
            }
            (Backend::HostGw, _) => None,
        };
        let mtu = cfg
            .mtu
            .or(vx_mtu)
            .or(underlay.as_ref().map(|u| u.mtu))
            .unwrap_or(1500);

        enable_ip_forward()?;
        let gateway = cfg.pod_cidr.nth(1).expect("validated prefix");
        bridge::ensure_bridge(
            &mut nl,
            &cfg.bridge,
            gateway,
            cfg.pod_cidr,
            cfg.cluster_cidr,
            mtu,
        )?;
        match (&cfg.backend, &underlay) {
            (Backend::Vxlan, Some(u)) => {
                let params = vxlan_params(&cfg);
                let vx_mtu = vx_mtu.expect("set for vxlan");
                vxlan::ensure_vxlan(&mut nl, &params, cfg.node_ip, u.index, vx_mtu, cfg.pod_cidr)?;
            }
            _ => {
                // Switching to host-gw: the overlay device would otherwise linger with its FDB.
                if let Some(l) = nl.link_by_name(&cfg.vxlan_device)? {
                    if l.kind == Some(InfoKind::Vxlan) {
                        nl.delete_link(l.index, &cfg.vxlan_device)?;
                    }
                }
            }
        }
        routes::ensure_unreachable(&mut nl, &[cfg.cluster_cidr])?;
        // Service addresses route into the bridge rather than to `unreachable`: connections
        // the node itself opens to a ClusterIP need a route before nftables can DNAT them,
        // and whatever is not DNATed dies on the bridge instead of leaving the machine.
        let bridge_index = nl
            .link_by_name(&cfg.bridge)?
            .ok_or_else(|| Error::NotFound { what: format!("bridge {}", cfg.bridge) })?
            .index;
        routes::ensure_device_route(&mut nl, cfg.service_cidr, bridge_index)?;
        let ipam = Ipam::open(cfg.state_dir.join("ipam"), cfg.pod_cidr)?;
        tracing::info!(bridge = %cfg.bridge, pod_cidr = %cfg.pod_cidr, mtu, backend = ?cfg.backend, "pod network ready");
        Ok(Self {
            cfg,
            nl: Mutex::new(nl),
            pod_sockets: SocketPool::open(POD_SOCKETS)?,
            ipam,
            mtu,
            bridge_checked: Mutex::new(Some((bridge_index, Instant::now()))),
        })
    }

    /// Adds `ip/32` to the node bridge, making it a local address of the node that pods
    /// reach through their gateway (the node-local cluster DNS listens on 10.43.0.10 this
    /// way, as NodeLocal DNSCache does). Idempotent.
    pub fn add_local_address(&self, ip: Ipv4Addr) -> Result<()> {
        let mut nl = self.nl();
        let index = nl
            .link_by_name(&self.cfg.bridge)?
            .ok_or_else(|| Error::NotFound { what: format!("bridge {}", self.cfg.bridge) })?
            .index;
        if nl.addresses(index)?.iter().any(|(a, _)| *a == ip) {
            return Ok(());
        }
        nl.add_address(index, &self.cfg.bridge, ip, 32)
    }

    /// The configuration this network was built with.
    pub fn config(&self) -> &PodNetworkConfig {
        &self.cfg
    }

    /// The MTU given to pod interfaces.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The gateway (bridge) address pods route through.
    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    /// The bridge's index, re-ensured (created, addressed, brought up: heals a bridge
    /// deleted or changed behind our back) when `recheck` or when last confirmed more than
    /// [`BRIDGE_RECHECK`] ago; with whether it was confirmed just now.
    fn bridge(&self, recheck: bool) -> Result<(u32, bool)> {
        let mut checked = self.bridge_checked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((index, at)) = *checked {
            if !recheck && at.elapsed() < BRIDGE_RECHECK {
                return Ok((index, false));
            }
        }
        *checked = None;
        let br = bridge::ensure_bridge(
            &mut self.nl(),
            &self.cfg.bridge,
            self.gateway(),
            self.cfg.pod_cidr,
            self.cfg.cluster_cidr,
            self.mtu,
        )?;
        *checked = Some((br.index, Instant::now()));
        Ok((br.index, true))
    }

    fn nl(&self) -> MutexGuard<'_, Netlink> {
        // A panic while holding the socket cannot leave it in a state worse than a failed
        // request, so a poisoned lock is simply taken over.
        self.nl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wires the sandbox whose network namespace is the file `netns`: veth pair with `eth0`
    /// inside, an address from IPAM, default route via the gateway, `lo` up. Idempotent: the
    /// same sandbox id always gets the same address, and an already wired sandbox is left as is.
    pub fn attach(&self, sandbox_id: &str, netns: &Path) -> Result<Ipv4Addr> {
        let existed = self.ipam.lookup(sandbox_id)?.is_some();
        let ip = self.ipam.allocate(sandbox_id)?;
        let want = PodIface {
            ip,
            pod_cidr: self.cfg.pod_cidr,
            gateway: self.gateway(),
            mtu: self.mtu,
        };
        let res = self.bridge(false).and_then(|(index, fresh)| {
            match veth::attach(&mut self.pod_sockets.get(), index, sandbox_id, netns, want) {
                // The bridge may have gone behind our back since it was last confirmed
                // (plugging into a missing bridge fails): heal it and try once more.
                Err(e) if !fresh => {
                    tracing::debug!(sandbox = %sandbox_id, error = %e, "attach failed; checking the bridge");
                    let (index, _) = self.bridge(true)?;
                    veth::attach(&mut self.pod_sockets.get(), index, sandbox_id, netns, want)
                }
                r => r,
            }
        });
        match res {
            Ok(()) => {
                tracing::debug!(sandbox = %sandbox_id, %ip, "pod attached");
                Ok(ip)
            }
            Err(e) => {
                // Do not keep an address for a sandbox we failed to wire on its first attempt;
                // it may never come back to detach.
                if !existed {
                    let _ = self.ipam.release(sandbox_id);
                }
                Err(e)
            }
        }
    }

    /// Unwires a sandbox: deletes its host veth if present and releases its address.
    /// Idempotent.
    pub fn detach(&self, sandbox_id: &str) -> Result<()> {
        veth::detach(&mut self.pod_sockets.get(), sandbox_id)?;
        self.ipam.release(sandbox_id)?;
        Ok(())
    }

    /// The address allocated to a sandbox, if any.
    pub fn address_of(&self, sandbox_id: &str) -> Option<Ipv4Addr> {
        self.ipam.lookup(sandbox_id).ok().flatten()
    }

    /// After an agent restart: releases the addresses and deletes the veths of every sandbox
    /// not in `live_sandbox_ids`, and removes stray `skv*` veths. Returns the released ids.
    pub fn gc(&self, live_sandbox_ids: &[&str]) -> Result<Vec<String>> {
        let live: BTreeSet<&str> = live_sandbox_ids.iter().copied().collect();
        let mut released = BTreeSet::new();
        for owner in self.ipam.list()?.into_values() {
            if !live.contains(owner.as_str()) {
                self.detach(&owner)?;
                released.insert(owner);
            }
        }
        let live_veths: BTreeSet<String> = live.iter().map(|id| host_veth_name(id)).collect();
        let mut nl = self.nl();
        for link in nl.links()? {
            let ours = link.name.starts_with(HOST_VETH_PREFIX) && link.kind == Some(InfoKind::Veth);
            if ours && !live_veths.contains(&link.name) {
                tracing::info!(veth = %link.name, "removing stray pod veth");
                nl.delete_link(link.index, &link.name)?;
            }
        }
        Ok(released.into_iter().collect())
    }

    /// Programs routes (and, for VXLAN, neighbour and FDB entries) to the pod CIDRs of
    /// `peers`, and removes those of nodes no longer listed. The local node may be included;
    /// it is skipped.
    pub fn set_peers(&self, peers: &[NodePeer]) -> Result<()> {
        let mut nl = self.nl();
        let vx = match self.cfg.backend {
            Backend::Vxlan => Some(
                nl.link_by_name(&self.cfg.vxlan_device)?
                    .ok_or_else(|| Error::NotFound {
                        what: format!("vxlan device {}", self.cfg.vxlan_device),
                    })?
                    .index,
            ),
            Backend::HostGw => None,
        };
        routes::sync_peers(
            &mut nl,
            self.cfg.backend,
            self.cfg.cluster_cidr,
            self.cfg.pod_cidr,
            peers,
            vx,
        )
    }

    /// Removes the bridge, the VXLAN device and every route skiff installed in this namespace
    /// (for tests and uninstall). Pod veths lose their bridge; detach or gc removes them. IPAM
    /// records are kept.
    pub fn teardown(&self) -> Result<()> {
        let mut nl = self.nl();
        routes::remove_all(&mut nl)?;
        for name in [&self.cfg.vxlan_device, &self.cfg.bridge] {
            if let Some(l) = nl.link_by_name(name)? {
                nl.delete_link(l.index, name)?;
            }
        }
        Ok(())
    }
}

fn vxlan_params(cfg: &PodNetworkConfig) -> VxlanParams {
    VxlanParams {
        name: cfg.vxlan_device.clone(),
        vni: cfg.vxlan_vni,
        port: cfg.vxlan_port,
    }
}

/// Enables forwarding for the calling thread's network namespace (`/proc/sys/net` resolves
/// to the namespace of the thread that opens it), writing only when needed so that a
/// read-only `/proc/sys` with forwarding already on is not an error.
fn enable_ip_forward() -> Result<()> {
    let path = Path::new(IP_FORWARD);
    let io_err = |op, source: io::Error| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let cur = fs::read_to_string(path).map_err(|e| io_err("read", e))?;
    if cur.trim() != "1" {
        fs::write(path, "1").map_err(|e| io_err("enable ip forwarding", e))?;
    }
    Ok(())
}
