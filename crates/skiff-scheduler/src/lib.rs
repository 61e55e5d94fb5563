//! skiff-scheduler: assigns pods to nodes, as kube-scheduler does, through the API.
//!
//! Shape: informer caches ([`cache`]); a batch takes every pending pod (`spec.nodeName`
//! empty, our scheduler name), highest priority first, and for each runs PreFilter, Filter
//! against (an adaptive share of) the nodes, Score on the survivors ([`core`], plugin
//! traits in [`framework`], one file per plugin under [`plugins`]), assumes the pod onto
//! the best node and binds it through `pods/binding` asynchronously. Pods that fit nowhere
//! get `PodScheduled=False/Unschedulable` and a FailedScheduling event, may preempt
//! lower-priority pods ([`preemption`]), and are retried when the cluster changes.
//! May call skiff-api (quantities, taints); talks to the API server over HTTP.
#![forbid(unsafe_code)]

pub mod cache;
pub mod core;
pub mod counts;
pub mod framework;
pub mod plugins;
pub mod pod;
pub mod preemption;
pub mod schedule;
pub mod selector;

pub use schedule::{run, run_with, Config};
