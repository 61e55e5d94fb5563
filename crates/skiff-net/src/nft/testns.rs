//! Test helpers: network namespaces that delete themselves, and commands run inside them.
//! Tests use the `ip` and `nft` tools to build topologies and to read rulesets back; the
//! code under test never does.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// True when tests that need root and network namespaces can run.
pub fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = Command::new("ip").arg("-V").output().is_ok()
        && Command::new("nft").arg("-v").output().is_ok();
    if !(root && tools) {
        eprintln!("skipping: needs root, `ip` and `nft`");
    }
    root && tools
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `skiffproxy-test-<pid>-<n>-<tag>`.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "skiffproxy-test-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Path for setns.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `nft -j list table ip <table>` parsed, or `None` when the table does not exist.
    pub fn nft_json(&self, table: &str) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "-j", "list", "table", "ip", table,
            ])
            .output()
            .expect("running nft");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("nft json"))
    }

    /// `nft list table ip <table>` as text (for assertions and failure messages).
    pub fn nft_text(&self, table: &str) -> String {
        self.exec(&["nft", "list", "table", "ip", table])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes its veth ends and nftables tables.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
