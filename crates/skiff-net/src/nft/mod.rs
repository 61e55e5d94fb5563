//! Programming nftables from Rust, without the `nft` binary or C libraries.
//!
//! [`model`] is a small typed model of the kernel's objects (tables, chains, rules of
//! expressions, sets and verdict maps); [`expr`] builds rule pieces the way nft spells them;
//! [`wire`] encodes a [`Transaction`] into one nfnetlink batch, which the kernel applies
//! atomically; [`NetlinkBackend`] sends it. The [`Backend`] trait is the seam that lets callers
//! (the service proxy) be tested without root through [`RecordingBackend`].
//!
//! This module calls only the kernel (netlink, `/proc/sys`); it does not depend on other
//! skiff crates.

pub mod expr;
pub mod model;
mod netlink;
pub mod wire;

#[cfg(test)]
pub(crate) mod testns;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use model::{
    BaseChain, Chain, ChainType, Elem, Expr, Family, Hook, Op, Reg, Rule, Set, Transaction, Verdict,
};
pub use netlink::{in_netns, NetlinkBackend};

/// Errors from programming nftables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel rejected one message of a batch (the whole batch was rolled back).
    #[error("nf_tables rejected {op}: {source}")]
    Kernel {
        /// The operation that failed, or `commit`.
        op: String,
        /// The kernel's errno.
        #[source]
        source: std::io::Error,
    },
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Joining a network namespace failed.
    #[error("entering network namespace {path}: {source}")]
    Netns {
        /// Namespace path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel did not answer a batch in time.
    #[error("timed out waiting for the nf_tables answer")]
    Timeout,
}

impl Error {
    /// True when the kernel said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kernel { source, .. } if source.raw_os_error() == Some(2))
    }
}

/// Something that can apply nftables transactions: the kernel, or a recorder in tests.
pub trait Backend: Send {
    /// Applies every operation of `tx` atomically, or none of them.
    fn apply(&mut self, tx: &Transaction) -> Result<(), Error>;

    /// Sets `net.ipv4.conf.all.route_localnet=1` in the backend's network namespace, which
    /// NodePorts on 127.0.0.1 need (the kernel otherwise drops routed packets from 127/8).
    fn enable_route_localnet(&mut self) -> Result<(), Error>;
}

/// A [`Backend`] that records transactions instead of applying them; clones share the record.
#[derive(Clone, Default)]
pub struct RecordingBackend {
    /// Every transaction applied so far.
    pub applied: Arc<Mutex<Vec<Transaction>>>,
    /// Whether `enable_route_localnet` was called.
    pub route_localnet: Arc<Mutex<bool>>,
}

impl Backend for RecordingBackend {
    fn apply(&mut self, tx: &Transaction) -> Result<(), Error> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx.clone());
        Ok(())
    }

    fn enable_route_localnet(&mut self) -> Result<(), Error> {
        *self
            .route_localnet
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        Ok(())
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn apply(&mut self, tx: &Transaction) -> Result<(), Error> {
        (**self).apply(tx)
    }

    fn enable_route_localnet(&mut self) -> Result<(), Error> {
        (**self).enable_route_localnet()
    }
}
