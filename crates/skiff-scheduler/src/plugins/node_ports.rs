//! NodePorts: a hostPort may be used by one pod per node (per protocol and host IP).

use crate::framework::{CycleState, FilterPlugin, NodeInfo};
use crate::pod::Pod;

/// The plugin.
pub struct NodePorts;

fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), hp))
        })
        .collect()
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let wanted = host_ports(pod);
        if wanted.is_empty() {
            return Ok(());
        }
        let used: Vec<(String, String, i32)> = node.pods.iter().flat_map(|(p, _)| host_ports(p)).collect();
        for (proto, ip, port) in &wanted {
            if used.iter().any(|(p, i, n)| p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0")) {
                return Err("node(s) didn't have free ports for the requested pod ports".into());
            }
        }
        Ok(())
    }

    fn resolvable_by_preemption(&self, _reason: &str) -> bool {
        true
    }
}
