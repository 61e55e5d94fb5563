//! NetworkPolicy enforcement (networking.k8s.io/v1) in nftables, one table per node.
//!
//! [`compile()`] turns the cluster's pods, namespaces and NetworkPolicies into a [`Ruleset`] for
//! the pods of this node; [`PolicyEnforcer`] applies it through a [`Backend`](nft::Backend),
//! the first time as a whole table and afterwards as a diff, always in one atomic
//! [`Transaction`](nft::Transaction).
//!
//! The table `ip skiff-policy` has two base chains:
//!
//! ```text
//! forward (filter, priority 0): ct state established,related accept
//!                               ip saddr vmap @egress-pods   (egress-<ip>: allowed = return)
//!                               ip daddr vmap @ingress-pods  (ingress-<ip>: allowed = accept)
//! input   (filter, priority 0): ct state established,related accept
//!                               ip daddr @node-ips accept
//!                               ip saddr vmap @egress-pods
//! ```
//!
//! One regular chain per isolated local pod and direction holds that pod's allow rules and
//! ends in `drop`. Peers chosen by pod/namespace selectors live in one address set per policy
//! rule (`in_<ns>_<policy>_<n>`, `out_...`), so pods coming and going only add and remove set
//! elements; egress named ports, which resolve per destination pod, use a set of
//! `daddr . l4proto . dport` keys (`outport_...`).
//!
//! Why `forward` and `input` in the `ip` family: the service proxy DNATs in prerouting and
//! output, so `forward` sees post-DNAT pod addresses; traffic from a pod to an address served
//! by the node itself (the built-in cluster DNS at 10.43.0.10) is delivered locally and only
//! passes `input`, where egress policy is applied too. Pods on the same node talk over the
//! bridge without routing; with br_netfilter and `net.bridge.bridge-nf-call-iptables=1` the
//! kernel passes bridged IPv4 through the `ip` hooks, conntrack included (see
//! [`enable_bridge_netfilter`]). A `bridge` family table would need `nf_conntrack_bridge` for
//! `ct state` and could not see service DNAT, so it is not used.
//!
//! Traffic originated by the node itself (kubelet probes) passes `output`, which is not hooked:
//! upstream says traffic to and from a pod's own node is always allowed.
//!
//! IPv4 only, like the pod network. Under isolation, protocols other than TCP, UDP and SCTP
//! (ICMP) pass only through rules without `ports`, as in most upstream implementations.
//! Addresses are trusted as sent: a pod that spoofs its source address is not caught here.
//!
//! Calls only [`crate::nft`]; the node agent feeds it API objects.

mod compile;
mod enforcer;
mod ruleset;
mod select;

#[cfg(test)]
mod tests_compile;
#[cfg(test)]
mod tests_netns;
#[cfg(test)]
mod tests_select;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::nft;

pub use compile::{compile, TABLE};
pub use enforcer::{PolicyEnforcer, SyncStats};
pub use ruleset::Ruleset;
pub use select::{policy_types, selector_matches, PolicyTypes};

/// Errors of NetworkPolicy enforcement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Programming nftables failed.
    #[error("{context}: {source}")]
    Nft {
        /// What the enforcer was doing.
        context: String,
        /// The nftables error.
        #[source]
        source: nft::Error,
    },
    /// The bridge netfilter sysctl could not be set.
    #[error("setting {path} (is br_netfilter loaded? try `modprobe br_netfilter`): {source}")]
    BridgeNetfilter {
        /// The sysctl file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Transport protocol of a policy port or a container port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default in the API).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API spelling; `None` (field absent) means TCP, unknown names give `None`.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }

    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => nft::expr::proto::TCP,
            Protocol::Udp => nft::expr::proto::UDP,
            Protocol::Sctp => nft::expr::proto::SCTP,
        }
    }
}

/// A named container port, which policies can refer to by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name (`containerPort.name`).
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

/// What policy enforcement needs to know about one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod IP (IPv4; the pod network is IPv4-only).
    pub ip: Ipv4Addr,
    /// Labels, for pod selectors.
    pub labels: BTreeMap<String, String>,
    /// Named container ports, for policy ports given by name.
    pub named_ports: Vec<NamedPort>,
    /// Host end of the pod's veth, when the pod is on this node. Informational for now:
    /// with br_netfilter the `ip` hooks see the bridge, not the veth, as the device, so
    /// matching is by address.
    pub host_veth: Option<String>,
}

impl PolicyPod {
    /// Builds the policy view of an API pod; `None` when it has no IPv4 pod IP yet (such a pod
    /// can neither send nor receive on the pod network). Named ports come from all containers,
    /// init containers included (sidecars serve ports too).
    pub fn from_pod(pod: &Pod, host_veth: Option<String>) -> Option<PolicyPod> {
        let status = pod.status.as_ref()?;
        let ip = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref())
            .find_map(|s| s.parse::<Ipv4Addr>().ok())?;
        let spec = pod.spec.as_ref();
        let containers = spec
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .into_iter()
            .flatten();
        let named_ports = containers
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone()?,
                    protocol: Protocol::parse(p.protocol.as_deref())?,
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        Some(PolicyPod {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            named_ports,
            host_veth,
        })
    }
}

/// Everything [`compile()`] reads: the cluster as this node sees it.
#[derive(Clone, Debug, Default)]
pub struct PolicyInput {
    /// Every pod of the cluster that has an IP (peers may be on any node). The node agent may
    /// add a stand-in for the built-in cluster DNS (namespace `kube-system`, label
    /// `k8s-app=kube-dns`, the DNS address, named ports `dns`/`dns-tcp`) so that the usual
    /// "allow egress to kube-dns pods" policies cover it.
    pub pods: Vec<PolicyPod>,
    /// Namespace name to labels. `kubernetes.io/metadata.name` is implied, as the API server
    /// always sets it; namespaces missing here have only that label.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Every NetworkPolicy of the cluster.
    pub policies: Vec<NetworkPolicy>,
    /// `(namespace, name)` of the pods running on this node: only these are enforced
    /// (ingress: traffic to them; egress: traffic from them).
    pub local_pods: BTreeSet<(String, String)>,
    /// This node's own addresses: traffic from local pods to them is always allowed, as
    /// upstream allows traffic between a pod and its node. Leave the cluster DNS address out
    /// so that DNS stays subject to egress policy.
    pub node_ips: Vec<Ipv4Addr>,
}

const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Sets `net.bridge.bridge-nf-call-iptables=1` in the network namespace at `netns` (or the
/// caller's), so that IPv4 frames bridged between pods of one node pass the `ip` family
/// hooks and policy applies to them. The sysctl exists only while br_netfilter is loaded;
/// it is per network namespace.
pub fn enable_bridge_netfilter(netns: Option<&Path>) -> Result<(), Error> {
    let path = PathBuf::from(BRIDGE_NF_CALL_IPTABLES);
    // /proc/sys/net resolves against the network namespace of the thread that opens it.
    let write = || Ok(std::fs::write(BRIDGE_NF_CALL_IPTABLES, "1"));
    let result = match netns {
        Some(ns) => nft::in_netns(ns, write),
        None => write(),
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::BridgeNetfilter { path, source }),
        Err(e) => Err(Error::Nft {
            context: "entering the node network namespace".into(),
            source: e,
        }),
    }
}
