//! Watch events rendered once for every watcher.
//!
//! Each watch stream receives its own copy of every stored change under its prefix. Decoding
//! the stored JSON, converting it to the served version and serialising it again used to happen
//! once per watcher: with the controllers, the schedulers and the node agents all watching pods,
//! one binding was parsed and encoded ten or more times, and that JSON work was most of the API
//! server's CPU under load. This cache keeps the rendered form of recent events keyed by the
//! stored key, its revision and the served version, so the first watcher does the work and the
//! others copy bytes. The JSON is spliced from the stored bytes (`raw_list`), and the parsed
//! object is made only for watchers with selectors or Table renderings; metadata-only watchers
//! get the `metadata` object cut from the JSON.
//!
//! Entries also expire after `MAX_AGE`: a rendered pod is several kilobytes, and an idle
//! server should not keep the last few thousand of them alive.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use skiff_api::selector::ViewPaths;
use skiff_store::KeyValue;

use crate::filter::Filter;
use crate::resources::Served;

/// How many rendered events are kept. Watchers read the live feed within moments of each
/// other, so a short window serves nearly every lookup; a miss only costs a decode.
const CAPACITY: usize = 4096;

/// How long a rendered event stays cached. Watchers of one event read it within milliseconds
/// of each other unless they are far behind, and those decode again. (5 s kept thousands of
/// pods alive after a burst of creates, with their parsed forms.)
const MAX_AGE: Duration = Duration::from_secs(2);

/// One stored value as served: its JSON with `kind`/`apiVersion`/`resourceVersion` set.
pub struct Rendered {
    /// The served object's JSON.
    pub json: Bytes,
    object: OnceLock<Option<Value>>,
    metadata: OnceLock<Option<Bytes>>,
    /// Sparse decodings (`parse_view`) for selector matching, one per distinct set of paths
    /// (every node agent's `spec.nodeName` watch shares one).
    views: Mutex<Vec<(ViewPaths, Option<Arc<Value>>)>>,
}

impl Rendered {
    /// The object as `PartialObjectMetadata` JSON (for metadata-only watchers such as the
    /// garbage collector's), cut from `json` on first use without parsing the object.
    pub fn metadata_json(&self) -> Option<&Bytes> {
        self.metadata.get_or_init(|| crate::raw_list::partial_metadata_json(&self.json).map(Bytes::from)).as_ref()
    }

    /// The served object (for non-JSON renderings), parsed on first use.
    pub fn object(&self) -> Option<&Value> {
        self.object.get_or_init(|| serde_json::from_slice(&self.json).ok()).as_ref()
    }

    /// Whether the object matches `filter`, whose `view_paths()` are `paths`. Only those
    /// paths are decoded (a label selector needs `metadata.labels`, not the whole pod:
    /// parsing every watched pod into a `Value` was a tenth of the server's CPU while
    /// binding thousands of pods), once per event for all watchers reading the same paths.
    pub fn matches(&self, filter: &Filter, paths: &ViewPaths) -> bool {
        if let Some(Some(whole)) = self.object.get() {
            return filter.matches(whole);
        }
        let known = self.views.lock().unwrap().iter().find(|(p, _)| p == paths).map(|(_, v)| v.clone());
        let view = match known {
            Some(v) => v,
            None => {
                let v = skiff_api::selector::parse_view(&self.json, paths).ok().map(Arc::new);
                self.views.lock().unwrap().push((paths.clone(), v.clone()));
                v
            }
        };
        view.is_some_and(|v| filter.matches(&v))
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    key: String,
    revision: i64,
    api_version: String,
}

/// A bounded first-in-first-out map of rendered events.
#[derive(Default)]
pub struct EventCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<CacheKey, Arc<Rendered>>,
    order: VecDeque<(CacheKey, Instant)>,
}

impl Entries {
    /// Drop entries beyond the capacity or older than `max_age` (oldest first).
    fn trim(&mut self, max_age: Duration) {
        while let Some((key, at)) = self.order.front() {
            if self.order.len() <= CAPACITY && at.elapsed() < max_age {
                break;
            }
            self.map.remove(key);
            self.order.pop_front();
        }
    }
}

impl EventCache {
    /// The rendered form of `kv` for `served`, computed on the first request. None when the
    /// stored bytes do not decode (the watcher skips such an event, as before).
    pub fn rendered(&self, served: &Served, kv: &KeyValue) -> Option<Arc<Rendered>> {
        let key = CacheKey { key: kv.key.clone(), revision: kv.mod_revision, api_version: served.info.api_version() };
        if let Some(hit) = self.inner.lock().unwrap().map.get(&key) {
            return Some(hit.clone());
        }
        // Rendered outside the lock: two watchers racing on a miss both render, which is
        // cheaper than making every watcher wait behind one decode.
        let mut json = Vec::with_capacity(kv.value.len() + 32);
        crate::raw_list::write_item(&mut json, served, &served.info.api_version(), kv).ok()?;
        let rendered = Arc::new(Rendered { json: Bytes::from(json), object: OnceLock::new(), metadata: OnceLock::new(), views: Mutex::default() });
        let mut entries = self.inner.lock().unwrap();
        if entries.map.insert(key.clone(), rendered.clone()).is_none() {
            entries.order.push_back((key, Instant::now()));
        }
        entries.trim(MAX_AGE);
        Some(rendered)
    }

    /// Drop entries older than `max_age` (the server calls this periodically, so that an idle
    /// server holds none).
    pub fn expire(&self, max_age: Duration) {
        self.inner.lock().unwrap().trim(max_age);
    }

    /// Expire entries every few seconds, forever.
    pub async fn expire_periodically(self: Arc<Self>) {
        loop {
            tokio::time::sleep(MAX_AGE / 2).await;
            self.expire(MAX_AGE);
        }
    }

    /// Number of events held (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One watch line, `{"type":KIND,"object":OBJECT}\n`, built from already-serialised JSON.
pub fn event_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object_json.len() + kind.len() + 24);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object_json);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Served {
        crate::resources::Resources::new().find("", "v1", "pods").expect("pods are served")
    }

    fn kv(name: &str, rev: i64, label: &str) -> KeyValue {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": label}}});
        KeyValue { key: format!("/registry/pods/default/{name}"), value: serde_json::to_vec(&obj).unwrap(), create_revision: 1, mod_revision: rev }
    }

    #[test]
    fn renders_once_per_revision_and_sets_resource_version() {
        let cache = EventCache::default();
        let served = pods();
        let a = cache.rendered(&served, &kv("web", 5, "a")).unwrap();
        let b = cache.rendered(&served, &kv("web", 5, "a")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "a second watcher must reuse the first rendering");
        let obj = a.object().unwrap();
        assert_eq!(obj["metadata"]["resourceVersion"], "5");
        assert_eq!(obj["kind"], "Pod");
        let parsed: Value = serde_json::from_slice(&a.json).unwrap();
        assert_eq!(&parsed, obj);
        let c = cache.rendered(&served, &kv("web", 6, "b")).unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "a new revision is a new rendering");
        assert_eq!(c.object().unwrap()["metadata"]["labels"]["app"], "b");
    }

    #[test]
    fn matches_selectors_from_a_shared_sparse_view() {
        let cache = EventCache::default();
        let served = pods();
        let filter = |selector: &str| {
            let q = crate::http::Query(vec![("labelSelector".into(), selector.into())]);
            Filter::from_query(&served.info, &q).unwrap()
        };
        let (is_a, is_b) = (filter("app=a"), filter("app in (b,c)"));
        let paths = is_a.view_paths();
        assert_eq!(paths, is_b.view_paths());
        let r = cache.rendered(&served, &kv("web", 5, "a")).unwrap();
        assert!(r.matches(&is_a, &paths));
        assert!(!r.matches(&is_b, &paths));
        assert_eq!(r.views.lock().unwrap().len(), 1, "watchers reading the same paths share one decoding");
        assert!(r.object.get().is_none(), "matching must not decode the whole object");
        let other = cache.rendered(&served, &kv("web", 6, "c")).unwrap();
        assert!(!other.matches(&is_a, &paths) && other.matches(&is_b, &paths));
    }

    #[test]
    fn stays_bounded_and_skips_undecodable_values() {
        let cache = EventCache::default();
        let served = pods();
        for rev in 0..(CAPACITY as i64 + 100) {
            cache.rendered(&served, &kv("p", rev + 1, "x")).unwrap();
        }
        assert_eq!(cache.len(), CAPACITY);
        let bad = KeyValue { key: "/registry/pods/default/bad".into(), value: b"{not json".to_vec(), create_revision: 1, mod_revision: 1 };
        assert!(cache.rendered(&served, &bad).is_none());
    }

    #[test]
    fn expires_entries_by_age() {
        let cache = EventCache::default();
        let served = pods();
        cache.rendered(&served, &kv("p", 1, "x")).unwrap();
        cache.expire(Duration::from_secs(60));
        assert_eq!(cache.len(), 1);
        cache.expire(Duration::ZERO);
        assert!(cache.is_empty());
    }

    #[test]
    fn event_line_is_the_json_a_serializer_would_write() {
        let obj = serde_json::json!({"kind": "Pod", "metadata": {"name": "a\"b"}});
        let line = event_line("MODIFIED", &serde_json::to_vec(&obj).unwrap());
        assert!(line.ends_with(b"\n"));
        let parsed: Value = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed, serde_json::json!({"type": "MODIFIED", "object": obj}));
    }
}
