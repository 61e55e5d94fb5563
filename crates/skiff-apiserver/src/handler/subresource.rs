//! Subresources: status, scale, pods/binding, pods/eviction, namespaces/finalize,
//! certificatesigningrequests/approval. The streaming subresources of pods (log, exec,
//! attach, portforward) and nodes/proxy go to the node's kubelet (`proxy`); other proxy
//! subresources answer 503.

use serde_json::{json, Value};
use skiff_api::meta;
use skiff_api::status::ApiError;

use super::read::{render_one, with_type};
use super::write::{check_type, update_with};
use crate::http::{self, decode_body, Request, Response};
use crate::patching::{self, PatchType};
use crate::resources::Served;
use crate::route::ResourcePath;
use crate::Server;

/// Dispatch a subresource request.
pub async fn handle(
    srv: &Server,
    req: &Request,
    served: &Served,
    rp: &ResourcePath,
    sub: &str,
    verb: &str,
) -> Result<Response, ApiError> {
    let ns = rp.namespace.as_deref();
    let name = rp.name.as_deref().unwrap_or_default();
    let dry = req.query.get("dryRun") == Some("All");
    let mgr = crate::ssa::manager_name(req.query.get("fieldManager"), req.header("user-agent"));
    match (sub, verb) {
        ("status" | "approval" | "finalize" | "ephemeralcontainers" | "resize", "get") => {
            let obj = with_type(served, srv.objects.get(&served.info, ns, name).await?);
            Ok(render_one(req, served, obj))
        }
        ("status" | "approval" | "finalize" | "ephemeralcontainers" | "resize", "update") => {
            let body = decode_body(req)?;
            check_type(served, &body)?;
            let sub_mode = sub_write_mode(sub);
            let v = update_with(srv, served, ns, name, sub_mode, dry, Some(&mgr), |cur| Ok(merge_sub(sub, cur, &body))).await?;
            Ok(http::json(200, &v))
        }
        ("status" | "approval" | "finalize" | "ephemeralcontainers" | "resize", "patch") => {
            let pt = PatchType::from_content_type(req.header("content-type"))?;
            let patch = patching::parse(pt, &req.body)?;
            if pt == PatchType::Apply {
                return super::apply::apply_sub(srv, req, served, ns, name, sub, patch).await;
            }
            let sub_mode = sub_write_mode(sub);
            // A resourceVersion inside a merge-style patch is a precondition, as on the
            // main resource (the quota controller relies on it).
            let wanted_rv = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            let v = update_with(srv, served, ns, name, sub_mode, dry, Some(&mgr), |cur| {
                if wanted_rv.as_deref().is_some_and(|rv| rv != meta::resource_version(cur)) {
                    return Err(super::write::conflict(served, name));
                }
                let patched = patching::apply_patch(served, pt, cur, &patch)?;
                Ok(merge_sub(sub, cur, &patched))
            })
            .await?;
            Ok(http::json(200, &v))
        }
        ("scale", "get") => {
            let obj = srv.objects.get(&served.info, ns, name).await?;
            Ok(http::json(200, &to_scale(served, &obj)))
        }
        ("scale", "update" | "patch") => {
            let (pt, body) = if verb == "patch" {
                let pt = PatchType::from_content_type(req.header("content-type"))?;
                (Some(pt), patching::parse(pt, &req.body)?)
            } else {
                (None, decode_body(req)?)
            };
            let wanted_rv = body.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            let v = update_with(srv, served, ns, name, None, dry, Some(&mgr), |cur| {
                if let Some(rv) = &wanted_rv {
                    if rv != meta::resource_version(cur) {
                        return Err(super::write::conflict(served, name));
                    }
                }
                let scale = to_scale(served, cur);
                let new_scale = match pt {
                    Some(PatchType::Apply) | None => body.clone(),
                    Some(pt) => {
                        let scale_served = scale_served();
                        patching::apply_patch(&scale_served, pt, &scale, &body)?
                    }
                };
                let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid("autoscaling", "Scale", name, vec![skiff_api::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                        field: "spec.replicas".into(),
                    }]));
                }
                let mut next = cur.clone();
                set_path(&mut next, &spec_replicas_path(served), json!(replicas));
                Ok(next)
            })
            .await?;
            Ok(http::json(200, &to_scale(served, &v)))
        }
        ("binding", "create") => {
            let body = decode_body(req)?;
            let node = body.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
            if node.is_empty() {
                return Err(ApiError::new(422, "Invalid", "target.name: Required value"));
            }
            // No managedFields entry, as upstream: its binding writes storage directly,
            // bypassing the field manager (and that bookkeeping was a sixth of the server's
            // CPU while binding thousands of pods).
            update_with(srv, served, ns, name, Some("binding"), dry, None, |cur| {
                if cur.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                    return Err(ApiError::conflict("", "pods", name, &format!(
                        "pod {name} is already assigned to node \"{}\"",
                        cur.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("")
                    )));
                }
                let mut next = cur.clone();
                next["spec"]["nodeName"] = json!(node);
                // As upstream's binding: the pod is now scheduled (replacing an earlier
                // Unschedulable condition).
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
                if !next["status"].is_object() {
                    next["status"] = json!({});
                }
                let conditions = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let mut kept: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
                kept.insert(0, scheduled);
                next["status"]["conditions"] = Value::Array(kept);
                Ok(next)
            })
            .await?;
            Ok(http::json(201, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
        }
        ("eviction", "create") => {
            let body = decode_body(req)?;
            let mut opts = super::delete::DeleteOptions::default();
            if let Some(d) = body.get("deleteOptions") {
                opts.grace = d.get("gracePeriodSeconds").and_then(Value::as_i64);
            }
            opts.dry_run = dry;
            super::eviction::admit(srv, served, ns, name, dry).await?;
            super::delete::delete_object(srv, served, ns, name, &opts).await?;
            Ok(http::json(201, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
        }
        ("log" | "exec" | "attach" | "portforward", _) if served.info.plural == "pods" => {
            super::proxy::pod(srv, req, ns.unwrap_or_default(), name, sub).await
        }
        ("proxy", _) if served.info.plural == "nodes" => super::proxy::node(srv, req, name).await,
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => Err(ApiError::unavailable(format!(
            "{sub} is not available: no node agent serves this {}",
            served.info.singular
        ))),
        ("token", "create") => {
            let body = decode_body(req)?;
            let sa = srv.objects.get(&served.info, ns, name).await?;
            let audiences: Vec<String> = body
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let seconds = body.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(3600);
            if seconds < 600 {
                return Err(ApiError::invalid("authentication.k8s.io", "TokenRequest", name, vec![skiff_api::Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
                    field: "spec.expirationSeconds".into(),
                }]));
            }
            let bound = body.pointer("/spec/boundObjectRef").cloned().filter(|b| b.is_object());
            let ns_name = ns.unwrap_or("default");
            let (token, exp) = srv
                .sa_tokens
                .issue(ns_name, name, meta::uid(&sa), &audiences, seconds, bound.clone())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let exp_ts = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let aud = if audiences.is_empty() { vec![crate::sa_token::ISSUER.to_string()] } else { audiences };
            let mut spec = json!({"audiences": aud, "expirationSeconds": seconds});
            if let Some(b) = bound {
                spec["boundObjectRef"] = b;
            }
            Ok(http::json(201, &json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns_name, "creationTimestamp": meta::now_rfc3339()},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": exp_ts},
            })))
        }
        _ => Err(ApiError::method_not_allowed(format!("{verb} is not supported on {}/{sub}", served.info.plural))),
    }
}

/// Which admission mode a subresource write uses.
fn sub_write_mode(sub: &str) -> Option<&'static str> {
    match sub {
        // merge_sub already limited an approval write to status.conditions; admission must
        // keep that status instead of restoring the old one as for spec writes.
        "status" | "approval" => Some("status"),
        _ => Some("other"),
    }
}

/// The object after writing subresource `sub` from `desired`: only the subresource's part
/// of `desired` is taken.
fn merge_sub(sub: &str, cur: &Value, desired: &Value) -> Value {
    let mut next = cur.clone();
    match sub {
        "status" => {
            next["status"] = desired.get("status").cloned().unwrap_or(json!({}));
            // Controllers may also touch labels/annotations through status writes upstream? No:
            // status writes ignore metadata except what the store keeps.
        }
        "approval" => {
            let conds = desired.pointer("/status/conditions").cloned().unwrap_or(json!([]));
            next["status"]["conditions"] = conds;
        }
        "finalize" => {
            next["spec"]["finalizers"] = desired.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
        }
        "ephemeralcontainers" => {
            next["spec"]["ephemeralContainers"] = desired.pointer("/spec/ephemeralContainers").cloned().unwrap_or(json!([]));
        }
        "resize" => {
            next["spec"]["containers"] = desired.pointer("/spec/containers").cloned().unwrap_or(json!([]));
        }
        _ => {}
    }
    next
}

fn scale_served() -> Served {
    Served {
        info: skiff_api::registry::builtin_resources()
            .into_iter()
            .find(|r| r.kind == "Deployment")
            .map(|mut r| {
                r.group = "autoscaling".into();
                r.kind = "Scale".into();
                r.custom = true; // no strategic merge metadata needed for Scale
                r
            })
            .expect("deployments are built in"),
        custom: None,
    }
}

fn spec_replicas_path(served: &Served) -> String {
    served
        .custom
        .as_ref()
        .and_then(|c| c.scale.as_ref())
        .and_then(|s| s.get("specReplicasPath"))
        .and_then(Value::as_str)
        .unwrap_or(".spec.replicas")
        .to_string()
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for p in path.trim_start_matches('.').split('.') {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = v;
    for p in &parts[..parts.len() - 1] {
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
    cur[parts[parts.len() - 1]] = value;
}

/// The autoscaling/v1 Scale view of a scalable object.
pub fn to_scale(served: &Served, obj: &Value) -> Value {
    let (status_path, selector_path) = match served.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(s) => (
            s.get("statusReplicasPath").and_then(Value::as_str).unwrap_or(".status.replicas").to_string(),
            s.get("labelSelectorPath").and_then(Value::as_str).map(str::to_string),
        ),
        None => (".status.replicas".to_string(), None),
    };
    let replicas = get_path(obj, &spec_replicas_path(served)).cloned().unwrap_or(json!(0));
    let status_replicas = get_path(obj, &status_path).cloned().unwrap_or(json!(0));
    let selector = match selector_path {
        Some(p) => get_path(obj, &p).and_then(Value::as_str).map(str::to_string),
        None => obj.pointer("/spec/selector").map(selector_string),
    };
    let mut status = json!({"replicas": status_replicas});
    if let Some(s) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta::name(obj),
            "namespace": meta::namespace(obj),
            "uid": meta::uid(obj),
            "resourceVersion": meta::resource_version(obj),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// A LabelSelector object (or a plain map for ReplicationControllers) as a selector string,
/// in upstream's form (skiff-api's selector does the formatting).
fn selector_string(sel: &Value) -> String {
    let object = if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
        sel.clone()
    } else {
        json!({"matchLabels": sel})
    };
    skiff_api::selector::LabelSelector::from_json(&object).map(|s| s.to_string()).unwrap_or_default()
}
