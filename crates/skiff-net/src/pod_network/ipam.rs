//! Host-local IP address management for one node's pod CIDR.
//!
//! One file per allocation, named by the address and containing the sandbox id, like the CNI
//! `host-local` plugin. The file system is the source of truth so that an agent restart (or two
//! agents racing by mistake) can never hand one address to two sandboxes: an address is claimed
//! by hard-linking a fully written temporary file to its final name, which fails atomically with
//! `EEXIST` when another claim won, and never leaves a half-written record behind.
//!
//! Next to the records, `sandboxes/<sandbox id>` names the sandbox's addresses, so that looking
//! a sandbox up (on every attach and release) reads one file instead of every record: a burst
//! of 100 pods used to read 100 records per pod. The index is only a pointer; an address
//! belongs to a sandbox when its record says so, and `open` rebuilds the index from the
//! records (data dirs from before the index, or a crash between claiming and indexing).
//!
//! Nothing here is fsynced, as with `host-local`: the records describe network namespaces,
//! which do not outlive the machine, and the page cache outlives any crash of the agent. After
//! a power cut the records of the vanished sandboxes are garbage collected like any others.

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
/// Directory of the per-sandbox index files.
const INDEX_DIR: &str = "sandboxes";

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
    /// files left by a crash in the middle of a claim and rebuilding the sandbox index.
    pub fn open(dir: impl Into<PathBuf>, cidr: Ipv4Cidr) -> Result<Self> {
        let dir = dir.into();
        if cidr.prefix_len() > 30 {
            return Err(Error::Config(format!(
                "pod cidr {cidr} is too small for pods"
            )));
        }
        let index = dir.join(INDEX_DIR);
        fs::create_dir_all(&index).map_err(|e| io_err("create ipam dir", &index, e))?;
        for d in [&dir, &index] {
            for entry in fs::read_dir(d).map_err(|e| io_err("read ipam dir", d, e))? {
                let entry = entry.map_err(|e| io_err("read ipam dir", d, e))?;
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let ipam = Self {
            dir,
            cidr,
            lock: Mutex::new(()),
        };
        ipam.rebuild_index()?;
        Ok(ipam)
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
        check_sandbox_id(sandbox)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let owned = self.owned_unlocked(sandbox)?;
        if let Some(ip) = owned.iter().copied().find(|ip| self.cidr.contains(*ip)) {
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
                let mut all = owned;
                all.push(ip);
                self.write_index(sandbox, &all)?;
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
        check_sandbox_id(sandbox)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .owned_unlocked(sandbox)?
            .into_iter()
            .find(|ip| self.cidr.contains(*ip)))
    }

    /// Releases every address recorded for the sandbox; returns what was released.
    pub fn release(&self, sandbox: &str) -> Result<Vec<Ipv4Addr>> {
        check_sandbox_id(sandbox)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut released = Vec::new();
        for ip in self.owned_unlocked(sandbox)? {
            let path = self.dir.join(ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("release address", &path, e)),
            }
        }
        let index = self.index_path(sandbox);
        match fs::remove_file(&index) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove address index", &index, e)),
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
            if let Some(owner) = self.read_record(ip)? {
                out.insert(ip, owner);
            }
        }
        Ok(out)
    }

    /// The addresses whose records name `sandbox`, found through its index file. Addresses
    /// the index names but whose records belong to someone else (a release and a new claim
    /// since) are skipped.
    fn owned_unlocked(&self, sandbox: &str) -> Result<Vec<Ipv4Addr>> {
        let index = self.index_path(sandbox);
        let text = match fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read address index", &index, e)),
        };
        let mut owned = Vec::new();
        for ip in text.lines().filter_map(|l| l.trim().parse::<Ipv4Addr>().ok()) {
            if self.read_record(ip)?.as_deref() == Some(sandbox) {
                owned.push(ip);
            }
        }
        Ok(owned)
    }

    /// The sandbox id in the record of `ip`, `None` when the address is free.
    fn read_record(&self, ip: Ipv4Addr) -> Result<Option<String>> {
        let path = self.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(owner) => Ok(Some(owner.trim_end().to_string())),
            // Released concurrently by another thread or process.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read address record", &path, e)),
        }
    }

    /// Makes the index agree with the records: every owner gets a file naming exactly its
    /// addresses, and index files of sandboxes without records go.
    fn rebuild_index(&self) -> Result<()> {
        let mut by_owner: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for (ip, owner) in self.list()? {
            by_owner.entry(owner).or_default().push(ip);
        }
        let index_dir = self.dir.join(INDEX_DIR);
        for entry in fs::read_dir(&index_dir).map_err(|e| io_err("read ipam dir", &index_dir, e))? {
            let entry = entry.map_err(|e| io_err("read ipam dir", &index_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !by_owner.contains_key(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
        for (owner, ips) in &by_owner {
            // Records with ids that cannot name a file (written by hand) stay unindexed;
            // garbage collection still sees them through `list`.
            if check_sandbox_id(owner).is_err() {
                continue;
            }
            let want = index_text(ips);
            if fs::read_to_string(self.index_path(owner)).ok().as_deref() != Some(want.as_str()) {
                self.write_index(owner, ips)?;
            }
        }
        Ok(())
    }

    fn index_path(&self, sandbox: &str) -> PathBuf {
        self.dir.join(INDEX_DIR).join(sandbox)
    }

    /// Replaces the sandbox's index file atomically (write, then rename over).
    fn write_index(&self, sandbox: &str, ips: &[Ipv4Addr]) -> Result<()> {
        let tmp = self.dir.join(INDEX_DIR).join(format!(
            "{TMP_PREFIX}{sandbox}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let path = self.index_path(sandbox);
        fs::write(&tmp, index_text(ips))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                io_err("write address index", &path, e)
            })
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
            f.write_all(sandbox.as_bytes())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write address record", &tmp, e));
        }
        let res = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match res {
            Ok(()) => Ok(true),
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

fn index_text(ips: &[Ipv4Addr]) -> String {
    ips.iter().map(|ip| format!("{ip}\n")).collect()
}

/// Sandbox ids name index files, so they must be plain file names.
fn check_sandbox_id(sandbox: &str) -> Result<()> {
    let plain = !sandbox.is_empty()
        && sandbox != "."
        && sandbox != ".."
        && !sandbox.starts_with(TMP_PREFIX)
        && !sandbox.contains(['/', '\0', '\n']);
    if plain {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "sandbox id {sandbox:?} cannot name an address record"
        )))
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
    fn index_is_rebuilt_from_the_records_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
            (ipam.allocate("pod-a").unwrap(), ipam.allocate("pod-b").unwrap())
        };
        // A data dir from before the index (or a crash between claim and index): pod-a's
        // index is gone, and a stray index names a sandbox that holds nothing.
        fs::remove_file(dir.path().join(INDEX_DIR).join("pod-a")).unwrap();
        fs::write(dir.path().join(INDEX_DIR).join("ghost"), format!("{b}\n")).unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        assert_eq!(ipam.lookup("pod-a").unwrap(), Some(a));
        assert_eq!(ipam.allocate("pod-a").unwrap(), a, "no second address for pod-a");
        assert!(!dir.path().join(INDEX_DIR).join("ghost").exists());
        assert_eq!(ipam.lookup("ghost").unwrap(), None);
        assert_eq!(ipam.release("pod-a").unwrap(), vec![a]);
        assert!(!dir.path().join(INDEX_DIR).join("pod-a").exists());
    }

    #[test]
    fn an_index_naming_someone_elses_address_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        let b = ipam.allocate("pod-b").unwrap();
        // Written behind the allocator's back after open: pod-a claims pod-b's address.
        fs::write(dir.path().join(INDEX_DIR).join("pod-a"), format!("{b}\n")).unwrap();
        assert_eq!(ipam.lookup("pod-a").unwrap(), None);
        assert_eq!(ipam.release("pod-a").unwrap(), Vec::<Ipv4Addr>::new());
        assert_eq!(ipam.lookup("pod-b").unwrap(), Some(b), "pod-b keeps its address");
        let a = ipam.allocate("pod-a").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn sandbox_ids_that_are_not_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.1.0/24")).unwrap();
        for bad in ["", "..", "a/b", ".tmp-x"] {
            assert!(matches!(ipam.allocate(bad), Err(Error::Config(_))), "{bad:?}");
        }
        assert!(ipam.list().unwrap().is_empty());
    }

    #[test]
    fn rejects_tiny_cidr() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Ipam::open(dir.path(), cidr("10.42.1.0/31")).is_err());
    }
}
