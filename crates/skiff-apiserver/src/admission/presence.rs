//! Which namespaces hold ResourceQuotas or LimitRanges, so that admission can skip reading
//! them for the (usual) namespaces that have none.
//!
//! Without this, every namespaced create read the namespace's quotas (and every pod create
//! its limit ranges, twice) from the store: about 15% of the server's CPU for ConfigMap
//! creates, in namespaces that held no quota at all.
//!
//! Correctness rests on one rule: the index may say "maybe" for a namespace with none (the
//! caller then reads the store, as before), never "none" for a namespace with one. So:
//! - until the first list and watch are in place it answers "maybe" everywhere;
//! - a create through this server marks its namespace *before* the store write, so a quota
//!   acknowledged to a client is seen by every later admission on this server;
//! - creates through another server sharing the store (HA on etcd) arrive through the
//!   watch, within its latency (as upstream, whose admission reads informer caches);
//! - deletions come only from the watch; a missed one leaves a harmless "maybe".

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use skiff_api::ResourceInfo;
use skiff_store::EventKind;

use crate::Server;

/// The resources tracked: admission's per-namespace policy objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `resourcequotas`.
    Quota,
    /// `limitranges`.
    LimitRange,
}

impl Policy {
    const ALL: [Policy; 2] = [Policy::Quota, Policy::LimitRange];

    fn plural(self) -> &'static str {
        match self {
            Policy::Quota => "resourcequotas",
            Policy::LimitRange => "limitranges",
        }
    }

    /// The tracked policy a resource is, if any.
    pub fn of(info: &ResourceInfo) -> Option<Policy> {
        if !info.group.is_empty() {
            return None;
        }
        Policy::ALL.into_iter().find(|p| p.plural() == info.plural)
    }
}

#[derive(Default)]
struct State {
    /// The first list and watch are running.
    ready: bool,
    /// Names per policy and namespace.
    names: HashMap<(Policy, String), HashSet<String>>,
    /// Creates marked while a (re)list runs, kept when its result replaces `names`.
    marked_during_list: Option<Vec<(Policy, String, String)>>,
}

/// The index; cheap to query from every create.
#[derive(Default)]
pub struct PolicyPresence {
    state: Mutex<State>,
}

impl PolicyPresence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether namespace `ns` may hold a `policy` object (`false` only when it surely does not).
    pub fn may_have(&self, policy: Policy, ns: &str) -> bool {
        let s = self.lock();
        !s.ready || s.names.get(&(policy, ns.to_string())).is_some_and(|n| !n.is_empty())
    }

    /// Called before a create of `policy` object `ns/name` is written.
    pub fn mark(&self, policy: Policy, ns: &str, name: &str) {
        let mut s = self.lock();
        s.names.entry((policy, ns.to_string())).or_default().insert(name.to_string());
        if let Some(marked) = s.marked_during_list.as_mut() {
            marked.push((policy, ns.to_string(), name.to_string()));
        }
    }

    fn apply(&self, policy: Policy, ns: &str, name: &str, present: bool) {
        let mut s = self.lock();
        let key = (policy, ns.to_string());
        if present {
            s.names.entry(key).or_default().insert(name.to_string());
        } else if let Some(names) = s.names.get_mut(&key) {
            names.remove(name);
            if names.is_empty() {
                s.names.remove(&key);
            }
        }
    }

    /// Keep the index in step with the store until the server stops.
    pub async fn run(srv: Arc<Server>) {
        loop {
            if let Err(e) = follow(&srv).await {
                tracing::debug!(error = %e, "policy presence watch ended; listing again");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// `ns/name` of a namespaced key under `prefix`.
fn ns_name<'k>(key: &'k str, prefix: &str) -> Option<(&'k str, &'k str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

/// List every tracked object, then apply watch events until the watch fails.
async fn follow(srv: &Server) -> anyhow::Result<()> {
    let presence = &srv.policy_presence;
    presence.lock().marked_during_list = Some(Vec::new());
    let store = srv.objects.store();
    let rev = srv.objects.revision().await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut names: HashMap<(Policy, String), HashSet<String>> = HashMap::new();
    let mut streams = Vec::new();
    for policy in Policy::ALL {
        let prefix = srv.resources.find("", "v1", policy.plural()).expect("built in").info.key_prefix();
        for kv in store.range(&prefix, None, 0, Some(rev)).await?.kvs {
            if let Some((ns, name)) = ns_name(&kv.key, &prefix) {
                names.entry((policy, ns.to_string())).or_default().insert(name.to_string());
            }
        }
        // One watch per kind, from the list's revision: nothing between list and watch is lost.
        let events = store.watch(&prefix, rev).await?;
        streams.push(events.map(move |e| (policy, prefix.clone(), e)).boxed());
    }
    {
        let mut s = presence.lock();
        for (policy, ns, name) in s.marked_during_list.take().unwrap_or_default() {
            names.entry((policy, ns)).or_default().insert(name);
        }
        s.names = names;
        s.ready = true;
    }
    let mut events = futures::stream::select_all(streams);
    while let Some((policy, prefix, event)) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                presence.lock().ready = false;
                return Err(e.into());
            }
        };
        if let Some((ns, name)) = ns_name(&event.kv.key, &prefix) {
            presence.apply(policy, ns, name, event.kind != EventKind::Delete);
        }
    }
    presence.lock().ready = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_maybe_until_ready_and_after_marks() {
        let p = PolicyPresence::default();
        assert!(p.may_have(Policy::Quota, "a"), "not ready: maybe everywhere");
        p.lock().ready = true;
        assert!(!p.may_have(Policy::Quota, "a"));
        p.mark(Policy::Quota, "a", "q");
        assert!(p.may_have(Policy::Quota, "a"));
        assert!(!p.may_have(Policy::LimitRange, "a"), "kinds are apart");
        assert!(!p.may_have(Policy::Quota, "b"), "namespaces are apart");
        p.apply(Policy::Quota, "a", "q", false);
        assert!(!p.may_have(Policy::Quota, "a"), "deleted");
    }

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(ns_name("/registry/core/resourcequotas/ns1/q", "/registry/core/resourcequotas/"), Some(("ns1", "q")));
        assert_eq!(ns_name("/registry/core/limitranges/ns1/l", "/registry/core/resourcequotas/"), None);
    }
}
