//! The PriorityClasses Priority admission reads on every pod create, kept from a store watch
//! (upstream's admission plugin reads an informer's lister the same way).
//!
//! Without it each pod create listed and decoded every PriorityClass from the store: about a
//! tenth of the server's CPU while a burst of pods was created. Until the first list and
//! watch are in place, and again after the watch fails, [`PriorityClasses::snapshot`] answers
//! `None` and the caller reads the store. A class written moments ago may not be here yet;
//! a pod naming a class the cache lacks is checked against the store before it is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::Value;
use skiff_store::EventKind;

use crate::Server;

#[derive(Default)]
struct State {
    ready: bool,
    /// Decoded classes by store key.
    by_key: BTreeMap<String, Arc<Value>>,
}

/// The cache; cheap to read from every pod create.
#[derive(Default)]
pub struct PriorityClasses {
    state: Mutex<State>,
}

impl PriorityClasses {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every class, or `None` when the cache is not following the store.
    pub fn snapshot(&self) -> Option<Vec<Arc<Value>>> {
        let s = self.lock();
        s.ready.then(|| s.by_key.values().cloned().collect())
    }

    fn apply(&self, key: &str, value: Option<Value>) {
        let mut s = self.lock();
        match value {
            Some(v) => {
                s.by_key.insert(key.to_string(), Arc::new(v));
            }
            None => {
                s.by_key.remove(key);
            }
        }
    }

    /// Keep the cache in step with the store until the server stops.
    pub async fn run(srv: Arc<Server>) {
        loop {
            if let Err(e) = follow(&srv).await {
                tracing::debug!(error = %e, "priority class watch ended; listing again");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// List the classes, then apply watch events from the list's revision until the watch fails.
async fn follow(srv: &Server) -> anyhow::Result<()> {
    let cache = &srv.priority_classes;
    let Some(served) = srv.resources.find("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    let prefix = served.info.key_prefix();
    let store = srv.objects.store();
    let rev = srv.objects.revision().await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut by_key = BTreeMap::new();
    for kv in store.range(&prefix, None, 0, Some(rev)).await?.kvs {
        let v = crate::objects::decode(&kv).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        by_key.insert(kv.key.clone(), Arc::new(v));
    }
    let mut events = store.watch(&prefix, rev).await?;
    {
        let mut s = cache.lock();
        s.by_key = by_key;
        s.ready = true;
    }
    let result = async {
        while let Some(event) = events.next().await {
            let event = event?;
            let value = match event.kind {
                EventKind::Delete => None,
                _ => Some(crate::objects::decode(&event.kv).map_err(|e| anyhow::anyhow!("{}", e.message))?),
            };
            cache.apply(&event.kv.key, value);
        }
        anyhow::Ok(())
    }
    .await;
    cache.lock().ready = false;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_while_following() {
        let c = PriorityClasses::default();
        c.apply("/k/a", Some(serde_json::json!({"value": 1})));
        assert!(c.snapshot().is_none(), "not ready: the caller must read the store");
        c.lock().ready = true;
        assert_eq!(c.snapshot().unwrap().len(), 1);
        c.apply("/k/b", Some(serde_json::json!({"value": 2})));
        c.apply("/k/a", None);
        let got = c.snapshot().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["value"], 2);
    }
}
