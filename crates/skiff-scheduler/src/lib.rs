//! skiff-scheduler: assigns pods to nodes, as kube-scheduler does, through the API.
//!
//! Shape: informer caches of nodes and pods ([`cache`]); a cycle takes every pending pod
//! (`spec.nodeName` empty, our scheduler name), runs the Filter plugins against every node,
//! Score plugins on the survivors, and binds to the best node through `pods/binding`
//! ([`framework`], one file per plugin under [`plugins`]). Pods that fit nowhere get the
//! `PodScheduled=False/Unschedulable` condition and are retried when the cluster changes.
//! May call skiff-api (quantities, selectors); talks to the API server over HTTP.
#![forbid(unsafe_code)]

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod schedule;

pub use schedule::run;
