//! Hard eviction thresholds (`--eviction-hard`), what the node observes for each signal,
//! and which thresholds are crossed.

use std::fmt;

/// An eviction signal, named as upstream names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`: capacity minus working set.
    MemoryAvailable,
    /// `nodefs.available`: free space of the agent's filesystem.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `imagefs.available`: free space of the image store's filesystem.
    ImageFsAvailable,
    /// `imagefs.inodesFree`.
    ImageFsInodesFree,
    /// `pid.available`: `pid_max` minus the tasks running.
    PidAvailable,
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    /// The flag's name of the signal.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource the eviction message says the node was low on.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition the signal drives.
    pub fn condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "MemoryPressure",
            Signal::PidAvailable => "PIDPressure",
            _ => "DiskPressure",
        }
    }
}

/// A threshold's amount: an absolute quantity or a share of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Bytes (or inodes, or pids).
    Quantity(u64),
    /// Percent of capacity.
    Percent(f64),
}

/// `signal < amount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// Below this the node is under pressure.
    pub amount: Amount,
    /// The amount as written (`100Mi`, `10%`), for messages.
    pub text: String,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}<{}", self.signal.name(), self.text)
    }
}

impl Threshold {
    /// Upstream's default hard thresholds.
    pub fn defaults() -> Vec<Threshold> {
        parse_list("memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%")
            .expect("the default thresholds parse")
    }

    /// The amount in absolute terms for a resource of `capacity`.
    pub fn absolute(&self, capacity: u64) -> u64 {
        match self.amount {
            Amount::Quantity(q) => q,
            Amount::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

/// Parses `--eviction-hard`: `signal<quantity` pairs separated by commas. As upstream, a
/// flag that names some signals leaves the others without a threshold.
pub fn parse_list(text: &str) -> Result<Vec<Threshold>, String> {
    let mut out: Vec<Threshold> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item
            .split_once('<')
            .ok_or_else(|| format!("invalid eviction threshold {item:?}: expected signal<quantity"))?;
        let signal = Signal::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| format!("unsupported eviction signal {:?}", name.trim()))?;
        let value = value.trim();
        let amount = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| format!("invalid percentage {value:?} for {}", signal.name()))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("eviction percentage threshold {} must be >= 0% and <= 100%: {value}", signal.name()));
            }
            Amount::Percent(p)
        } else {
            let q = crate::volumes::quantity::Quantity::parse(value)
                .ok_or_else(|| format!("invalid quantity {value:?} for {}", signal.name()))?
                .value();
            if q < 0 {
                return Err(format!("eviction threshold {} must be positive: {value}", signal.name()));
            }
            Amount::Quantity(q.min(u64::MAX as i128) as u64)
        };
        if out.iter().any(|t| t.signal == signal) {
            return Err(format!("duplicate eviction threshold for {}", signal.name()));
        }
        out.push(Threshold { signal, amount, text: value.to_string() });
    }
    Ok(out)
}

/// One measurement: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Available now.
    pub available: u64,
    /// Total.
    pub capacity: u64,
}

/// Everything the node measured, by signal (a signal that could not be read is absent).
pub type Observations = std::collections::BTreeMap<Signal, Observation>;

/// Reads the node: memory from `/proc/meminfo`, space and inodes of `fs_root`'s filesystem
/// (node and image filesystems are the same one here), pids from the kernel.
pub fn observe(fs_root: &std::path::Path) -> Observations {
    use crate::stats::host;
    let mut out = Observations::new();
    if let Ok(m) = host::read_memory() {
        out.insert(Signal::MemoryAvailable, Observation { available: m.available(), capacity: m.total });
    }
    if let Ok(fs) = host::read_fs(fs_root) {
        let space = Observation { available: fs.available, capacity: fs.capacity };
        let inodes = Observation { available: fs.inodes_free, capacity: fs.inodes };
        out.insert(Signal::NodeFsAvailable, space);
        out.insert(Signal::ImageFsAvailable, space);
        out.insert(Signal::NodeFsInodesFree, inodes);
        out.insert(Signal::ImageFsInodesFree, inodes);
    }
    if let Ok((max, tasks)) = host::read_process_limits() {
        out.insert(Signal::PidAvailable, Observation { available: max.saturating_sub(tasks), capacity: max });
    }
    out
}

/// The thresholds `observed` crosses, with what was available.
pub fn crossed<'a>(thresholds: &'a [Threshold], observed: &Observations) -> Vec<(&'a Threshold, Observation)> {
    thresholds
        .iter()
        .filter_map(|t| {
            let o = observed.get(&t.signal)?;
            (o.available < t.absolute(o.capacity)).then_some((t, *o))
        })
        .collect()
}

/// A byte count the way upstream's quantities print it in eviction messages (`1234Ki`).
pub fn show_bytes(n: u64) -> String {
    if n > 0 && n.is_multiple_of(1024) {
        let mut v = n;
        for unit in ["Ki", "Mi", "Gi", "Ti"] {
            v /= 1024;
            if !v.is_multiple_of(1024) || unit == "Ti" {
                return format!("{v}{unit}");
            }
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_as_upstream_writes_it() {
        let t = parse_list("memory.available<1000Gi, nodefs.available<10%").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].signal, Signal::MemoryAvailable);
        assert_eq!(t[0].amount, Amount::Quantity(1000 * 1024 * 1024 * 1024));
        assert_eq!(t[1].amount, Amount::Percent(10.0));
        assert_eq!(t[1].to_string(), "nodefs.available<10%");
        assert!(parse_list("memory.free<1Gi").unwrap_err().contains("unsupported eviction signal"));
        assert!(parse_list("memory.available>1Gi").is_err());
        assert!(parse_list("nodefs.available<120%").is_err());
        assert!(parse_list("memory.available<x").is_err());
        assert!(parse_list("memory.available<1Gi,memory.available<2Gi").is_err());
        assert!(parse_list("").unwrap().is_empty());
        let d = Threshold::defaults();
        assert_eq!(d.iter().map(ToString::to_string).collect::<Vec<_>>(), [
            "memory.available<100Mi",
            "nodefs.available<10%",
            "imagefs.available<15%",
            "nodefs.inodesFree<5%"
        ]);
    }

    #[test]
    fn crossing_compares_against_capacity_shares() {
        let t = parse_list("memory.available<100Mi,nodefs.available<10%").unwrap();
        let mut o = Observations::new();
        o.insert(Signal::MemoryAvailable, Observation { available: 200 << 20, capacity: 1 << 30 });
        o.insert(Signal::NodeFsAvailable, Observation { available: 50, capacity: 1000 });
        let c = crossed(&t, &o);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0.signal, Signal::NodeFsAvailable);
        o.insert(Signal::MemoryAvailable, Observation { available: 99 << 20, capacity: 1 << 30 });
        assert_eq!(crossed(&t, &o).len(), 2);
    }

    #[test]
    fn bytes_print_like_quantities() {
        assert_eq!(show_bytes(100 << 20), "100Mi");
        assert_eq!(show_bytes(1536 * 1024), "1536Ki");
        assert_eq!(show_bytes(1000), "1000");
    }
}
