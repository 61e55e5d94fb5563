//! Pods bound to this node: a manager that watches them and one worker per pod that makes
//! the runtime match the spec and reports status.

pub mod backoff;
pub mod manager;
pub mod naming;
pub mod phase;
pub mod spec;
mod containers;
mod exits;
mod probing;
mod status;
mod worker;

pub use worker::PodWorker;
pub(crate) use containers::blocking as containers_blocking;
