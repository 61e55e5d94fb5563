//! delete and deletecollection: preconditions, graceful deletion of pods bound to nodes,
//! finalizers (`orphan`, `foregroundDeletion` from the propagation policy) and namespaces
//! that finish deleting once emptied by the namespace controller.

use serde_json::{json, Value};
use skiff_api::meta;
use skiff_api::status::ApiError;

use super::read::with_type;
use crate::filter::Filter;
use crate::http::{self, Request, Response};
use crate::resources::Served;
use crate::Server;

/// Parsed DeleteOptions (body or query).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `propagationPolicy` (Orphan, Background, Foreground).
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: [All]`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From the request body (DeleteOptions JSON) and query parameters.
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let mut o = DeleteOptions::default();
        if !req.body.is_empty() {
            let b: Value = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.grace = b.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.propagation = b.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
            if b.get("orphanDependents") == Some(&json!(true)) {
                o.propagation = Some("Orphan".into());
            }
            o.uid = b.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
            o.resource_version = b.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
            o.dry_run = b.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
        }
        if let Some(g) = req.query.non_empty("gracePeriodSeconds") {
            o.grace = Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?);
        }
        if let Some(p) = req.query.non_empty("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if req.query.flag("orphanDependents") {
            o.propagation = Some("Orphan".into());
        }
        if req.query.get("dryRun") == Some("All") {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::new(422, "Invalid", format!("propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\"")));
            }
        }
        Ok(o)
    }
}

/// DELETE one object.
pub async fn delete(srv: &Server, req: &Request, served: &Served, ns: Option<&str>, name: &str) -> Result<Response, ApiError> {
    let opts = DeleteOptions::from_request(req)?;
    // NodeRestriction: a node deletes only pods bound to itself.
    if let Some(user) = req.user.as_ref().filter(|u| crate::node_authz::node_name(u).is_some()) {
        if served.info.group.is_empty() && served.info.plural == "pods" {
            let current = srv.objects.get(&served.info, ns, name).await?;
            if let Err(m) = crate::node_authz::admit_pod_delete(user, &current) {
                let mut e = ApiError::forbidden(format!("pods \"{name}\" is forbidden: {m}"));
                e.kind = Some("pods".into());
                e.name = Some(name.to_string());
                return Err(e);
            }
        }
    }
    let (code, v) = delete_object(srv, served, ns, name, &opts).await?;
    Ok(http::json(code, &v))
}

/// Delete with options; returns the HTTP code and the object (last state, or still
/// present with deletionTimestamp when finalizers or a grace period keep it).
pub async fn delete_object(
    srv: &Server,
    served: &Served,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(u16, Value), ApiError> {
    let info = &served.info;
    if info.group.is_empty() && info.kind == "Namespace" && matches!(name, "default" | "kube-system" | "kube-public") {
        let mut e = ApiError::forbidden(format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"));
        e.kind = Some("namespaces".into());
        e.name = Some(name.to_string());
        return Err(e);
    }
    for _ in 0..16 {
        let current = srv.objects.get(info, ns, name).await?;
        if let Some(uid) = &opts.uid {
            if uid != meta::uid(&current) {
                return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&current)
                )));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if rv != meta::resource_version(&current) {
                return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&current)
                )));
            }
        }
        let rv: i64 = meta::resource_version(&current).parse().unwrap_or(0);
        let mut finalizers = meta::finalizers(&current);
        let propagation = opts.propagation.clone().unwrap_or_else(|| default_propagation(served).to_string());
        let extra = match propagation.as_str() {
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            _ => None,
        };
        let already = meta::is_deleting(&current);
        if let Some(f) = extra {
            if !already && !finalizers.iter().any(|x| x == f) && has_dependents_semantics(served) {
                finalizers.push(f.to_string());
            }
        }
        let grace = pod_grace(served, &current, opts.grace);
        let namespace_finalizers = info.kind == "Namespace" && !info.custom
            && current.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if finalizers.is_empty() && grace == 0 && !namespace_finalizers {
            if opts.dry_run {
                return Ok((200, with_type(served, current)));
            }
            match srv.objects.delete(info, ns, name, Some(rv)).await {
                Ok(gone) => {
                    super::crd::after_delete(srv, served, &gone).await;
                    return Ok((200, with_type(served, gone)));
                }
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        if already && grace == 0 && finalizers == meta::finalizers(&current) {
            // Nothing more to do until finalizers are removed.
            return Ok((200, with_type(served, current)));
        }
        let mut updated = current.clone();
        {
            let m = meta::metadata_mut(&mut updated);
            if !already || grace == 0 {
                let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                m.insert("deletionTimestamp".into(), json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), json!(finalizers));
            }
        }
        if info.kind == "Namespace" && !info.custom {
            updated["status"] = json!({"phase": "Terminating"});
        }
        if opts.dry_run {
            return Ok((200, with_type(served, updated)));
        }
        match srv.objects.update(info, updated, rv).await {
            Ok(v) => return Ok((200, with_type(served, v))),
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(super::write::conflict(served, name))
}

/// Upstream's default propagation: Orphan for the legacy-defaulted kinds, Background otherwise.
fn default_propagation(served: &Served) -> &'static str {
    match (served.info.group.as_str(), served.info.kind.as_str()) {
        ("batch", "Job") | ("", "ReplicationController") => "Orphan",
        _ => "Background",
    }
}

/// Orphan/foreground finalizers matter only for objects that can own others; adding them to
/// everything is what upstream does, so keep it general.
fn has_dependents_semantics(_served: &Served) -> bool {
    true
}

/// Grace period for a pod bound to a node (0 = delete now).
fn pod_grace(served: &Served, pod: &Value, requested: Option<i64>) -> i64 {
    if served.info.kind != "Pod" || !served.info.group.is_empty() {
        return 0;
    }
    let bound = pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let g = requested
        .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30);
    // An already-deleting pod keeps its shorter grace period.
    let current = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    match current {
        Some(c) if c <= g && meta::is_deleting(pod) => if g == 0 { 0 } else { c },
        _ => g.max(0),
    }
}

/// DELETE a collection (with selectors).
pub async fn delete_collection(srv: &Server, req: &Request, served: &Served, ns: Option<&str>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(&served.info, &req.query)?;
    let opts = DeleteOptions::from_request(req)?;
    let page = srv.objects.list(&served.info, ns, 0, None, None, &|o| filter.matches(o)).await?;
    let mut items = Vec::new();
    for obj in page.items {
        match delete_object(srv, served, meta::namespace(&obj), meta::name(&obj), &opts).await {
            Ok((_, v)) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = srv.objects.revision().await?;
    Ok(http::json(200, &json!({
        "kind": format!("{}List", served.info.kind),
        "apiVersion": served.info.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })))
}
