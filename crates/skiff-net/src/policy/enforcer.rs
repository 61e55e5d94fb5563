//! Keeps the kernel's policy table equal to the compiled [`Ruleset`].

use std::time::{Duration, Instant};

use crate::nft::{Backend, Family, Transaction};

use super::compile::{compile, TABLE};
use super::ruleset::Ruleset;
use super::{Error, PolicyInput};

/// What one [`PolicyEnforcer::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was (re)written rather than patched.
    pub full: bool,
    /// Operations in the applied transaction; 0 when nothing changed.
    pub ops: usize,
    /// Local pods isolated for ingress.
    pub ingress_isolated: usize,
    /// Local pods isolated for egress.
    pub egress_isolated: usize,
    /// Rules in the pod chains.
    pub rules: usize,
    /// Elements over all sets and maps.
    pub elements: usize,
    /// Time spent compiling and applying.
    pub elapsed: Duration,
}

/// Applies NetworkPolicy to this node's nftables through a [`Backend`], one atomic
/// transaction per sync.
pub struct PolicyEnforcer<B: Backend> {
    backend: B,
    /// What the kernel holds, as far as we know; `None` forces a full rewrite, which is how
    /// the first sync and any sync after a failure start from a known state.
    applied: Option<Ruleset>,
}

impl<B: Backend> PolicyEnforcer<B> {
    /// An enforcer that has not touched the kernel yet; the first sync replaces any table a
    /// previous run left behind.
    pub fn new(backend: B) -> Self {
        PolicyEnforcer {
            backend,
            applied: None,
        }
    }

    /// Compiles `input` and brings the table in line with it. Level-triggered: call it after
    /// any change of pods, namespaces or policies, or periodically.
    pub fn sync(&mut self, input: &PolicyInput) -> Result<SyncStats, Error> {
        let start = Instant::now();
        let desired = compile(input);
        let mut stats = self.apply(desired)?;
        stats.elapsed = start.elapsed();
        Ok(stats)
    }

    /// Brings the table in line with an already compiled ruleset.
    pub fn apply(&mut self, desired: Ruleset) -> Result<SyncStats, Error> {
        let start = Instant::now();
        let (tx, full) = match &self.applied {
            Some(old) if old.table == desired.table => (desired.update_transaction(old), false),
            _ => (desired.full_transaction(), true),
        };
        let stats = SyncStats {
            full,
            ops: tx.ops.len(),
            ingress_isolated: desired.ingress.len(),
            egress_isolated: desired.egress.len(),
            rules: desired.rule_count(),
            elements: desired.element_count(),
            elapsed: Duration::ZERO,
        };
        if !tx.is_empty() {
            if let Err(source) = self.backend.apply(&tx) {
                // The kernel rolled the batch back, but our idea of its state may be stale
                // (someone deleted the table, say): rewrite it whole next time.
                self.applied = None;
                return Err(Error::Nft {
                    context: format!(
                        "applying {} network policy table {}",
                        if full { "full" } else { "update of" },
                        desired.table
                    ),
                    source,
                });
            }
        }
        tracing::debug!(
            full,
            ops = stats.ops,
            ingress = stats.ingress_isolated,
            egress = stats.egress_isolated,
            "network policy synced"
        );
        self.applied = Some(desired);
        Ok(SyncStats {
            elapsed: start.elapsed(),
            ..stats
        })
    }

    /// Removes the policy table (every pod unisolated); fine to call when it does not exist.
    pub fn cleanup(&mut self) -> Result<(), Error> {
        let table = self
            .applied
            .take()
            .map(|r| r.table)
            .unwrap_or_else(|| TABLE.to_string());
        let mut tx = Transaction::new(Family::Ip, table);
        tx.delete_table_if_exists();
        self.backend.apply(&tx).map_err(|source| Error::Nft {
            context: "deleting the network policy table".into(),
            source,
        })
    }

    /// The backend (tests inspect recorded transactions through it).
    pub fn backend(&self) -> &B {
        &self.backend
    }
}
