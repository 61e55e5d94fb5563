//! skiff-runtime: the node's container runtime (the containerd + runc counterpart).
//!
//! Owns the image store ([`image`]: import, verification, unpack into overlayfs snapshots,
//! GC), pod sandboxes (namespaces pinned by bind mounts), containers run by one
//! single-threaded `skiff shim` process each ([`shim`], which drives youki's
//! `libcontainer`), seccomp profiles compiled to BPF without libseccomp ([`seccomp`]),
//! CRI-format container logs, exec and cgroup stats. The node agent uses it
//! through the [`Runtime`] trait; the `skiff` binary wires `skiff shim` to [`shim::main`] and
//! `skiff image` to [`cli`]. It calls no other skiff crate.

#![warn(missing_docs)]
// Only forking the shim and one interface ioctl need `unsafe`; each such function opts in.
#![deny(unsafe_code)]

pub mod cgroups;
pub mod cli;
pub mod digest;
pub mod error;
pub mod image;
pub mod resident;
pub mod runtime;
pub mod seccomp;
pub mod shim;
pub mod spec;

pub use error::{Error, Result};
pub use runtime::{FakeRuntime, LocalRuntime, Runtime, RuntimeConfig};
