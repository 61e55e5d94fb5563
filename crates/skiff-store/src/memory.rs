//! In-memory backend for tests: full MVCC history in a `BTreeMap`, nothing durable.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::{
    EventKind, KeyValue, RangeResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
};

/// Capacity of the live event channel; a watcher that lags further is told to re-list.
const WATCH_CHANNEL: usize = 16 * 1024;

#[derive(Debug, Clone)]
struct Version {
    rev: Revision,
    create_rev: Revision,
    /// `None` marks a delete (tombstone).
    value: Option<Vec<u8>>,
}

#[derive(Default)]
struct State {
    rev: Revision,
    compacted: Revision,
    /// Every key's versions in revision order.
    keys: BTreeMap<String, Vec<Version>>,
    /// Every event after the compaction point, in revision order.
    log: Vec<WatchEvent>,
}

/// A store that lives in memory only.
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<std::sync::Arc<WatchEvent>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(WATCH_CHANNEL);
        Self { state: Mutex::new(State::default()), events }
    }

    fn latest(state: &State, key: &str) -> Option<KeyValue> {
        let v = state.keys.get(key)?.last()?;
        Some(KeyValue {
            key: key.to_string(),
            value: v.value.clone()?,
            create_revision: v.create_rev,
            mod_revision: v.rev,
        })
    }

    fn write(&self, state: &mut State, key: &str, value: Option<Vec<u8>>, prev: Option<KeyValue>) -> Revision {
        state.rev += 1;
        let rev = state.rev;
        let create_rev = match (&prev, &value) {
            (Some(p), Some(_)) => p.create_revision,
            (None, Some(_)) => rev,
            (Some(p), None) => p.create_revision,
            (None, None) => rev,
        };
        state.keys.entry(key.to_string()).or_default().push(Version { rev, create_rev, value: value.clone() });
        let event = match value {
            Some(v) => WatchEvent {
                kind: if prev.is_some() { EventKind::Update } else { EventKind::Create },
                kv: KeyValue { key: key.to_string(), value: v, create_revision: create_rev, mod_revision: rev },
                prev,
            },
            None => {
                let p = prev.expect("delete has a previous value");
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue { mod_revision: rev, ..p.clone() },
                    prev: Some(p),
                }
            }
        };
        state.log.push(event.clone());
        let _ = self.events.send(std::sync::Arc::new(event));
        rev
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.state.lock().unwrap().rev)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        let mut st = self.state.lock().unwrap();
        if Self::latest(&st, key).is_some() {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        Ok(self.write(&mut st, key, Some(value), None))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let mut st = self.state.lock().unwrap();
        let prev = Self::latest(&st, key).ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
        if prev.mod_revision != expected {
            return Err(StoreError::Conflict { key: key.to_string(), expected, current: prev.mod_revision });
        }
        Ok(self.write(&mut st, key, Some(value), Some(prev)))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let mut st = self.state.lock().unwrap();
        let prev = Self::latest(&st, key).ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
        if let Some(expected) = expected {
            if prev.mod_revision != expected {
                return Err(StoreError::Conflict { key: key.to_string(), expected, current: prev.mod_revision });
            }
        }
        let rev = self.write(&mut st, key, None, Some(prev.clone()));
        Ok((rev, prev))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(Self::latest(&self.state.lock().unwrap(), key))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult> {
        let st = self.state.lock().unwrap();
        let at = revision.unwrap_or(st.rev);
        if at > st.rev {
            return Err(StoreError::FutureRevision { requested: at, current: st.rev });
        }
        if at < st.compacted {
            return Err(StoreError::Compacted { requested: at, compacted: st.compacted });
        }
        let mut out = RangeResult { revision: at, ..Default::default() };
        // A `start_after` below the prefix must not start the scan outside it (the loop stops at
        // the first key without the prefix).
        let start = match start_after {
            Some(after) if after > prefix => after,
            _ => prefix,
        }
        .to_string();
        for (key, versions) in st.keys.range(start..) {
            if !key.starts_with(prefix) {
                break;
            }
            if Some(key.as_str()) == start_after {
                continue;
            }
            let Some(v) = versions.iter().rev().find(|v| v.rev <= at) else { continue };
            let Some(value) = &v.value else { continue };
            if limit > 0 && out.kvs.len() == limit {
                out.more = true;
                break;
            }
            out.kvs.push(KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: v.create_rev,
                mod_revision: v.rev,
            });
        }
        Ok(out)
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let st = self.state.lock().unwrap();
        Ok(st
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.last().is_some_and(|v| v.value.is_some()))
            .count() as u64)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let st = self.state.lock().unwrap();
        if after < st.compacted {
            return Err(StoreError::Compacted { requested: after, compacted: st.compacted });
        }
        // Subscribe while holding the lock so no event falls between backlog and live feed.
        let rx = self.events.subscribe();
        let backlog: Vec<WatchEvent> = st
            .log
            .iter()
            .filter(|e| e.kv.mod_revision > after && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        drop(st);
        Ok(crate::watch_stream(prefix.to_string(), after, backlog, rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        let revision = revision.min(st.rev);
        if revision <= st.compacted {
            return Ok(());
        }
        st.compacted = revision;
        for versions in st.keys.values_mut() {
            // Keep the newest version at or below the compaction point plus everything newer.
            let keep_from = versions.iter().rposition(|v| v.rev <= revision).unwrap_or(0);
            versions.drain(..keep_from);
        }
        st.keys.retain(|_, v| !(v.len() == 1 && v[0].value.is_none() && v[0].rev <= revision));
        st.log.retain(|e| e.kv.mod_revision > revision);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.state.lock().unwrap().compacted)
    }

    async fn snapshot(&self, _path: &std::path::Path) -> Result<()> {
        Err(StoreError::Backend("the memory store cannot snapshot".into()))
    }
}
