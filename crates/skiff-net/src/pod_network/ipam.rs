//! Host-local IP address management for one node's pod CIDR.
//!
//! One file per allocation, named by the address and containing the sandbox id, like the CNI
//! `host-local` plugin. The file system is the source of truth so that an agent restart (or two
//! agents racing by mistake) can never hand one address to two sandboxes: an address is claimed
//! by hard-linking a fully written temporary file to its final name, which fails atomically with
//! `EEXIST` when another claim won, and never leaves a half-written record behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};

/// File remembering the last address handed out, so allocation continues after it instead of
/// immediately reusing a just-released address (stale ARP/conntrack entries elsewhere would
/// still point at the old pod).
const LAST_RESERVED: &str = "last_reserved_ip";
const TMP_PREFIX: &str = ".tmp-";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Address allocator persisted in a directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
    /// Serialises allocations inside this process; cross-process safety comes from the
    /// atomic link, this only avoids pointless races between our own threads.
    lock: Mutex<()>,
}

impl Ipam {
    /// Opens (creating if needed) the allocation directory for `cidr`, removing temporary
    /// files left by a crash in the middle of a claim.
    pub fn open(dir: impl Into<PathBuf>, cidr: Ipv4Cidr) -> Result<Self> {
        let dir = dir.into();
        if cidr.prefix_len() > 30 {
            return Err(Error::Config(format!(
                "pod cidr {cidr} is too small for pods"
            )));
        }
        fs::create_dir_all(&dir).map_err(|e| io_err("create ipam dir", &dir, e))?;
        for entry in fs::read_dir(&dir).map_err(|e| io_err("read ipam dir", &dir, e))? {
            let entry = entry.map_err(|e| io_err("read ipam dir", &dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            cidr,
            lock: Mutex::new(()),
        })
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gateway address (`.1`), which is never handed to a pod.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.nth(1).expect("prefix checked in open")
    }

    /// Returns the sandbox's address, allocating one if it has none yet.
    pub fn allocate(&self, sandbox: &str) -> Result<Ipv4Addr> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = self.lookup_unlocked(sandbox)? {
            return Ok(ip);
        }
        let size = self.cidr.size();
        // Usable indices are 2..size-1: .0 is the network (and the VXLAN device's address),
        // .1 the bridge gateway, the last one the broadcast address.
        let usable = size - 3;
        let start = self
            .read_last_reserved()
            .and_then(|ip| self.cidr.index_of(ip))
            .filter(|i| (2..size - 1).contains(i))
            .map(|i| i - 2 + 1)
            .unwrap_or(0);
        for step in 0..usable {
            let idx = 2 + (start + step) % usable;
            let ip = self.cidr.nth(idx).expect("index inside prefix");
            if self.try_claim(ip, sandbox)? {
                self.write_last_reserved(ip);
                return Ok(ip);
            }
        }
        Err(Error::Exhausted {
            cidr: self.cidr.to_string(),
            sandbox: sandbox.to_string(),
        })
    }

    /// The sandbox's address inside the current pod CIDR, if it has one.
    pub fn lookup(&self, sandbox: &str) -> Result<Option<Ipv4Addr>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.lookup_unlocked(sandbox)
    }

    /// Releases every address recorded for the sandbox; returns what was released.
    pub fn release(&self, sandbox: &str) -> Result<Vec<Ipv4Addr>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut released = Vec::new();
        for (ip, owner) in self.list()? {
            if owner == sandbox {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => released.push(ip),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("release address", &path, e)),
                }
            }
        }
        if !released.is_empty() {
            sync_dir(&self.dir);
        }
        Ok(released)
    }

    /// Every record (address -> sandbox id), including addresses outside the current pod CIDR
    /// (left over from a previous CIDR) so that garbage collection can remove them too.
    pub fn list(&self) -> Result<BTreeMap<Ipv4Addr, String>> {
        let mut out = BTreeMap::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err("read ipam dir", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("read ipam dir", &self.dir, e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(owner) => {
                    out.insert(ip, owner.trim_end().to_string());
                }
                // Released concurrently by another thread or process.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read address record", &entry.path(), e)),
            }
        }
        Ok(out)
    }

    fn lookup_unlocked(&self, sandbox: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|(ip, owner)| owner == sandbox && self.cidr.contains(*ip))
            .map(|(ip, _)| ip))
    }

    /// Claims `ip` for `sandbox`; `Ok(false)` when someone else holds it.
    fn try_claim(&self, ip: Ipv4Addr, sandbox: &str) -> Result<bool> {
        let target = self.dir.join(ip.to_string());
        if target.exists() {
            return Ok(false);
        }
        let tmp = self.dir.join(format!(
            "{TMP_PREFIX}{ip}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(sandbox.as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write address record", &tmp, e));
        }
        let res = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match res {
            Ok(()) => {
                sync_dir(&self.dir);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("claim address", &target, e)),
        }
    }

    fn read_last_reserved(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Best effort: losing this hint only changes which free address comes next.
    fn write_last_reserved(&self, ip: Ipv4Addr) {
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}last-{}", std::process::id()));
        if fs::write(&tmp, ip.to_string()).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(LAST_RESERVED));
        }
    }
}

/// Makes the creation/removal of a record durable; failures are ignored because the record
/// itself was already written and fsynced, only its directory entry may be lost on power cut.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_skipping_network_gateway_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.3.0/29")).unwrap();
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(ipam.allocate(&format!("sb{i}")).unwrap());
        }
        let expected: Vec<Ipv4Addr> = (2..7).map(|i| Ipv4Addr::new(10, 42, 3, i)).collect();
        assert_eq!(got, expected);
        assert!(matches!(
            ipam.allocate("sb-extra"),
            Err(Error::Exhausted { .. })
        ));
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 42, 3, 1));
    }

    #[test]
    fn same_sandbox_same_address_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = {
            let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
            let a = ipam.allocate("pod-a").unwrap();
            assert_eq!(ipam.allocate("pod-a").unwrap(), a);
            ipam.allocate("pod-b").unwrap();
            a
        };
        // A new instance (agent restart) sees the same records.
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        assert_eq!(ipam.lookup("pod-a").unwrap(), Some(a));
        assert_eq!(ipam.allocate("pod-a").unwrap(), a);
        let c = ipam.allocate("pod-c").unwrap();
        assert_ne!(c, a);
        assert_eq!(ipam.list().unwrap().len(), 3);
    }

    #[test]
    fn release_frees_and_does_not_reuse_immediately() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(ipam.release("a").unwrap(), vec![a]);
        assert_eq!(ipam.release("a").unwrap(), Vec::<Ipv4Addr>::new());
        assert_eq!(ipam.lookup("a").unwrap(), None);
        let c = ipam.allocate("c").unwrap();
        assert_ne!(c, a, "a just-released address must not be reused first");
        assert_ne!(c, b);
    }

    #[test]
    fn wraps_around_to_released_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.3.0/29")).unwrap();
        for i in 0..5 {
            ipam.allocate(&format!("sb{i}")).unwrap();
        }
        ipam.release("sb1").unwrap();
        assert_eq!(ipam.allocate("new").unwrap(), Ipv4Addr::new(10, 42, 3, 3));
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        // Two instances on one directory stand for two racing processes.
        let a = std::sync::Arc::new(Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap());
        let b = std::sync::Arc::new(Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap());
        let mut handles = Vec::new();
        for t in 0..4 {
            let ipam = if t % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(std::thread::spawn(move || {
                (0..30)
                    .map(|i| ipam.allocate(&format!("t{t}-{i}")).unwrap())
                    .collect::<Vec<_>>()
            }));
        }
        let mut all: Vec<Ipv4Addr> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an address was handed out twice");
        assert_eq!(a.list().unwrap().len(), 120);
    }

    #[test]
    fn ignores_foreign_files_and_cleans_tmp() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmp-10.42.1.2-1-1"), "half").unwrap();
        fs::write(dir.path().join("README"), "x").unwrap();
        // A record from a previous pod CIDR: listed (for gc) but not returned by lookup.
        fs::write(dir.path().join("10.42.9.5"), "old").unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        assert!(!dir.path().join(".tmp-10.42.1.2-1-1").exists());
        assert_eq!(ipam.lookup("old").unwrap(), None);
        assert_eq!(ipam.list().unwrap().len(), 1);
        assert_eq!(ipam.allocate("x").unwrap(), Ipv4Addr::new(10, 42, 1, 2));
        assert_eq!(
            ipam.release("old").unwrap(),
            vec![Ipv4Addr::new(10, 42, 9, 5)]
        );
    }

    #[test]
    fn rejects_tiny_cidr() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Ipam::open(dir.path(), cidr("10.42.1.0/31")).is_err());
    }
}
