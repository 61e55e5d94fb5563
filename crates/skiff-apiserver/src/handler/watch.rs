//! watch: a stream of `{"type":..., "object":...}` lines from a store revision, with initial
//! events, bookmarks, selector transitions (an object leaving the selection is DELETED), 410
//! for compacted revisions, Table rendering, and `timeoutSeconds`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json, Value};
use skiff_api::status::ApiError;
use skiff_store::{EventKind, StoreError};

use super::read::{partial_metadata, rendering, with_type, Rendering};
use super::watch_cache::{event_line, Rendered};
use crate::filter::Filter;
use crate::http::{Query, Request, Response};
use crate::resources::Served;
use crate::Server;

/// How often bookmarks are sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Everything the streaming task needs, detached from the request.
struct WatchJob {
    served: Served,
    filter: Filter,
    render: Rendering,
    include: skiff_api::table::IncludeObject,
    bookmarks: bool,
    first_table: bool,
}

impl WatchJob {
    fn render_object(&mut self, obj: Value) -> Value {
        let obj = with_type(&self.served, obj);
        match self.render {
            Rendering::Object => obj,
            Rendering::Metadata => partial_metadata(&obj),
            Rendering::Table => {
                let rv = skiff_api::meta::resource_version(&obj).to_string();
                let mut t = crate::tables::render_with(&self.served, &[obj], self.include, rv, None);
                if !self.first_table {
                    t["columnDefinitions"] = json!([]);
                }
                self.first_table = false;
                t
            }
        }
    }

    /// The line for a live event, from the shared rendering when the client wants plain
    /// objects (the common case: no per-watcher serialisation at all).
    fn live_line(&mut self, kind: &str, rendered: &Rendered) -> Bytes {
        match self.render {
            Rendering::Object => event_line(kind, &rendered.json),
            Rendering::Metadata => rendered.metadata_json().map(|m| event_line(kind, m)).unwrap_or_default(),
            Rendering::Table => match rendered.object() {
                Some(o) => self.line(kind, o.clone()),
                None => Bytes::new(),
            },
        }
    }

    fn line(&mut self, kind: &str, obj: Value) -> Bytes {
        let object = self.render_object(obj);
        let mut b = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        b.push(b'\n');
        Bytes::from(b)
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.served.info.kind, "apiVersion": self.served.info.api_version(), "metadata": meta});
        let mut b = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap();
        b.push(b'\n');
        Bytes::from(b)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

/// WATCH a collection (or one object when `name` is given).
pub async fn watch(
    srv: &Server,
    req: &Request,
    served: &Served,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Response, ApiError> {
    let mut filter = Filter::from_query(&served.info, &req.query)?;
    if let Some(n) = name {
        let q = Query(vec![("fieldSelector".into(), format!("metadata.name={n}"))]);
        let by_name = Filter::from_query(&served.info, &q)?;
        let base = filter.clone();
        filter = base.and(by_name);
    }
    let rv = req.query.non_empty("resourceVersion");
    let send_initial = req.query.get("sendInitialEvents").map(|v| v == "true");
    let initial = match (send_initial, rv) {
        (Some(v), _) => v,
        (None, None) | (None, Some("0")) => true,
        _ => false,
    };
    let timeout = req
        .query
        .non_empty("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let mut job = WatchJob {
        served: served.clone(),
        filter,
        render: rendering(req),
        include: skiff_api::table::IncludeObject::parse(req.query.get("includeObject").unwrap_or("")).unwrap_or_default(),
        bookmarks: req.query.flag("allowWatchBookmarks"),
        first_table: true,
    };
    let prefix = served.info.list_prefix(ns);
    let store = srv.objects.store().clone();
    let cache = srv.watch_events.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);

    // Initial state: a consistent list, then the watch continues from its revision.
    let mut backlog: Vec<Bytes> = Vec::new();
    let start_rev = if initial {
        let page = srv
            .objects
            .list(&served.info, ns, 0, None, None, &|o| job.filter.matches(&crate::convert::to_served(&job.served, o.clone())))
            .await?;
        for obj in page.items {
            let l = job.line("ADDED", obj);
            backlog.push(l);
        }
        if send_initial == Some(true) {
            backlog.push(job.bookmark(page.revision, true));
        }
        page.revision
    } else {
        let n: i64 = rv.unwrap_or("0").parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {}", rv.unwrap_or(""))))?;
        n
    };
    let stream = store.watch(&prefix, start_rev).await;
    srv.metrics.open_watches.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        for b in backlog {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(StoreError::Compacted { requested, compacted }) => {
                let e = ApiError::gone(format!("too old resource version: {requested} ({compacted})"));
                let _ = tx.send(error_line(&e)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(error_line(&ApiError::internal(e.to_string()))).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        let mut last_rev = start_rev;
        let view_paths = job.filter.view_paths();
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {
                    if job.bookmarks && tx.send(job.bookmark(last_rev, false)).await.is_err() {
                        return;
                    }
                }
                ev = stream.next() => {
                    let Some(ev) = ev else { return };
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            let _ = tx.send(error_line(&ApiError::gone(e.to_string()))).await;
                            return;
                        }
                    };
                    last_rev = ev.kv.mod_revision;
                    let Some(new) = cache.rendered(&job.served, &ev.kv) else { continue };
                    let new_match = job.filter.is_empty() || new.matches(&job.filter, &view_paths);
                    // Without selectors the previous value only tells whether there was one;
                    // decoding it is needed only to see whether it matched.
                    let old_match = match &ev.prev {
                        None => false,
                        Some(_) if job.filter.is_empty() => true,
                        Some(p) => cache.rendered(&job.served, p).is_some_and(|r| r.matches(&job.filter, &view_paths)),
                    };
                    let kind = match ev.kind {
                        EventKind::Create if new_match => "ADDED",
                        EventKind::Update if new_match && old_match => "MODIFIED",
                        EventKind::Update if new_match => "ADDED",
                        EventKind::Update if old_match => "DELETED",
                        EventKind::Delete if new_match => "DELETED",
                        _ => continue,
                    };
                    let line = job.live_line(kind, &new);
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let gauge = GaugeGuard(srv.metrics.clone());
    let body = StreamBody::new(futures::stream::unfold((rx, gauge), |(mut rx, g)| async move {
        let first = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(coalesce(first, &mut rx))), (rx, g)))
    }));
    Ok(crate::http::with_body(200, "application/json", BodyExt::boxed(body)))
}

/// How many bytes of queued events one body frame carries at most (a little more: the last
/// event is never split).
const FRAME_BYTES: usize = 64 * 1024;

/// `first` plus the events already queued behind it, as one frame: a burst of events then
/// costs one TLS record and one write instead of one each (with bindings echoing to every
/// pod watcher, per-event writes were a tenth of the server's CPU).
fn coalesce(first: Bytes, rx: &mut tokio::sync::mpsc::Receiver<Bytes>) -> Bytes {
    let mut joined: Option<Vec<u8>> = None;
    while joined.as_ref().map_or(first.len(), Vec::len) < FRAME_BYTES {
        let Ok(next) = rx.try_recv() else { break };
        joined.get_or_insert_with(|| first.to_vec()).extend_from_slice(&next);
    }
    joined.map(Bytes::from).unwrap_or(first)
}

/// Decrements the open-watch gauge when the response body is dropped.
struct GaugeGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_events_go_out_in_one_frame_of_bounded_size() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let alone = coalesce(Bytes::from_static(b"a\n"), &mut rx);
        assert_eq!(&alone[..], b"a\n");
        for line in [&b"b\n"[..], b"c\n"] {
            tx.send(Bytes::copy_from_slice(line)).await.unwrap();
        }
        assert_eq!(&coalesce(Bytes::from_static(b"a\n"), &mut rx)[..], b"a\nb\nc\n");
        let big = Bytes::from(vec![b'x'; FRAME_BYTES / 2]);
        for _ in 0..3 {
            tx.send(big.clone()).await.unwrap();
        }
        let frame = coalesce(big.clone(), &mut rx);
        assert_eq!(frame.len(), 2 * big.len(), "a frame stops once it reaches FRAME_BYTES");
        assert_eq!(coalesce(rx.recv().await.unwrap(), &mut rx).len(), 2 * big.len());
        assert!(rx.try_recv().is_err(), "every queued event went out exactly once");
    }
}
