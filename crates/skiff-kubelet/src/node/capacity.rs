//! The node's capacity and allocatable resources, read from the machine.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Resources of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Logical CPUs.
    pub cpus: u64,
    /// Memory in bytes (`MemTotal`).
    pub memory_bytes: u64,
    /// Size of the filesystem holding the agent's state, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// Maximum pods.
    pub pods: u32,
}

impl Capacity {
    /// Reads the machine's resources; `root` picks the filesystem for ephemeral storage.
    pub fn read(root: &Path, pods: u32) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo_total(&t))
            .unwrap_or(0);
        let mut probe = root.to_path_buf();
        while !probe.exists() && probe.pop() {}
        let ephemeral_storage_bytes = nix::sys::statvfs::statvfs(&probe)
            .map(|s| s.blocks() as u64 * s.fragment_size() as u64)
            .unwrap_or(0);
        Self { cpus, memory_bytes, ephemeral_storage_bytes, pods }
    }

    /// `status.capacity`.
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            ("memory".to_string(), Quantity(format!("{}Ki", self.memory_bytes / 1024))),
            ("ephemeral-storage".to_string(), Quantity(format!("{}Ki", self.ephemeral_storage_bytes / 1024))),
            ("pods".to_string(), Quantity(self.pods.to_string())),
            ("hugepages-2Mi".to_string(), Quantity("0".into())),
        ])
    }

    /// `status.allocatable`: capacity minus the hard eviction thresholds for memory and the
    /// node filesystem, as the kubelet computes it (100Mi and 10% with its defaults).
    pub fn allocatable(&self, eviction: &[crate::eviction::Threshold]) -> BTreeMap<String, Quantity> {
        use crate::eviction::Signal;
        let held = |signal: Signal, capacity: u64| {
            eviction.iter().find(|t| t.signal == signal).map(|t| t.absolute(capacity)).unwrap_or(0)
        };
        let memory = self.memory_bytes.saturating_sub(held(Signal::MemoryAvailable, self.memory_bytes));
        let storage = self
            .ephemeral_storage_bytes
            .saturating_sub(held(Signal::NodeFsAvailable, self.ephemeral_storage_bytes));
        let mut a = self.capacity();
        a.insert("memory".into(), Quantity(format!("{}Ki", memory / 1024)));
        a.insert("ephemeral-storage".into(), Quantity(storage.to_string()));
        a
    }
}

fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_parsed_in_bytes() {
        let text = "MemTotal:       24596348 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24596348 * 1024));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn allocatable_holds_back_eviction_thresholds() {
        let c = Capacity { cpus: 2, memory_bytes: 1024 * 1024 * 1024, ephemeral_storage_bytes: 1000, pods: 110 };
        let a = c.allocatable(&crate::eviction::Threshold::defaults());
        assert_eq!(a["memory"].0, format!("{}Ki", (1024 - 100) * 1024));
        assert_eq!(a["ephemeral-storage"].0, "900");
        assert_eq!(c.capacity()["cpu"].0, "2");
        assert_eq!(a["pods"].0, "110");
        let none = c.allocatable(&[]);
        assert_eq!(none["memory"].0, "1048576Ki");
        let huge = c.allocatable(&crate::eviction::parse_list("memory.available<1000Gi").unwrap());
        assert_eq!(huge["memory"].0, "0Ki", "never below zero");
        assert_eq!(huge["ephemeral-storage"].0, "1000", "only the thresholds given count");
    }
}
