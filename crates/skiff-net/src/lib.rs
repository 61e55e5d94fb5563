//! skiff-net: cluster networking (the CNI + kube-proxy + CoreDNS + ingress counterpart).
//!
//! - [`pod_network`]: the node bridge, one veth per pod, IPAM from the node's pod CIDR,
//!   routes between nodes (VXLAN or direct), all through rtnetlink.
//! - [`ingress`]: the built-in Ingress controller (HTTP/1.1, HTTP/2, TLS with SNI).
//! - [`conntrack`]: deleting stale UDP flows when Service backends change (ctnetlink).
//! - [`nft`]: nftables programmed through nf_tables netlink (no `nft` binary needed).
//! - [`dns`]: the cluster DNS server (Services, headless endpoints, SRV, PTR, forwarding).
//! - [`policy`]: NetworkPolicy enforced in its own nftables table.
//! - [`proxy`]: Services as nftables rules (ClusterIP, NodePort, LoadBalancer, affinity,
//!   traffic policies, hostPort, masquerade).
//!
//! It calls no other skiff crate; the node agent feeds it API objects.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Unit tests (and the ingress benchmark among them) run on the allocator the shipped binary
/// uses (see `skiff`'s `alloc.rs`), so that measured costs are those of production.
#[cfg(test)]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod conntrack;
pub mod dns;
pub mod ingress;
pub mod nft;
pub mod pod_network;
pub mod policy;
pub mod proxy;
