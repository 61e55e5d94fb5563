//! create, update (PUT) and patch, sharing one optimistic-concurrency update loop.

use serde_json::Value;
use skiff_api::meta;
use skiff_api::status::ApiError;

use super::read::with_type;
use crate::admission;
use crate::http::{self, decode_body, Request, Response};
use crate::patching::{self, PatchType};
use crate::resources::Served;
use crate::Server;

/// Check that a body's apiVersion/kind (when set) are those of the endpoint.
pub fn check_type(served: &Served, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    let info = &served.info;
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != info.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let (g, _) = meta::split_api_version(av);
        if !av.is_empty() && g != info.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
    }
    Ok(())
}

fn check_namespace(obj: &Value, ns: Option<&str>) -> Result<(), ApiError> {
    if let (Some(body_ns), Some(url_ns)) = (meta::namespace(obj), ns) {
        if body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Under `fieldValidation=Strict`, refuse custom resources with fields their schema lacks.
pub fn strict_check(served: &Served, req: &Request, obj: &Value) -> Result<(), ApiError> {
    let fv = admission::FieldValidation::parse(req.query.get("fieldValidation"));
    if fv != admission::FieldValidation::Strict {
        return Ok(());
    }
    if served.custom.is_some() {
        let mut probe = obj.clone();
        return admission::custom_resource_with(served, &mut probe, fv);
    }
    let unknown = builtin_unknown_fields(obj);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(strict_decoding_error(&unknown))
}

/// Upstream's 400 for unknown fields under `fieldValidation=Strict`.
fn strict_decoding_error(unknown: &[String]) -> ApiError {
    let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    ApiError::bad_request(format!("strict decoding error: {}", list.join(", ")))
}

/// Field validation of a written object, as upstream's decoding does it: unknown fields are
/// refused under `Strict`, returned as `Warning` headers under `Warn`, and dropped from
/// built-in objects in every mode (one pass over the object; custom resources are pruned
/// against their schema later, by admission).
pub fn validate_fields(served: &Served, req: &Request, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    if served.custom.is_some() {
        strict_check(served, req, obj)?;
        return Ok(custom_unknown_field_warnings(served, req, obj));
    }
    let unknown = drop_builtin_unknown_fields(obj);
    match admission::FieldValidation::parse(req.query.get("fieldValidation")) {
        admission::FieldValidation::Strict if !unknown.is_empty() => Err(strict_decoding_error(&unknown)),
        admission::FieldValidation::Warn => Ok(warning_headers(unknown)),
        _ => Ok(Vec::new()),
    }
}

fn warning_headers(unknown: Vec<String>) -> Vec<String> {
    unknown.into_iter().map(|f| format!("299 - \"unknown field \\\"{f}\\\"\"")).collect()
}

/// The fields of a built-in object its kind does not have (`spec.foo`, `a.b[0].c`), which
/// upstream's typed decoding would drop.
fn builtin_unknown_fields(obj: &Value) -> Vec<String> {
    let mut probe = obj.clone();
    drop_builtin_unknown_fields(&mut probe)
}

/// Drops from a built-in object the fields its kind does not have (as upstream's typed
/// decoding does) and returns their paths. Kinds without a schema are left alone.
pub fn drop_builtin_unknown_fields(obj: &mut Value) -> Vec<String> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    match skiff_api::openapi::builtin_structural_schema(group, version, kind) {
        Some(schema) => skiff_api::crd_schema::prune_unknown_fields(obj, &schema),
        None => Vec::new(),
    }
}

/// Under `fieldValidation=Warn` (kubectl's `--validate=warn`, the server default), the
/// fields of a custom resource its schema lacks, as `Warning` headers for the response.
fn custom_unknown_field_warnings(served: &Served, req: &Request, obj: &Value) -> Vec<String> {
    let fv = admission::FieldValidation::parse(req.query.get("fieldValidation"));
    let Some(schema) = served.custom.as_ref().and_then(|c| c.schema.as_ref()) else { return Vec::new() };
    if fv != admission::FieldValidation::Warn {
        return Vec::new();
    }
    warning_headers(skiff_api::crd_schema::prune_unknown_fields(&mut obj.clone(), schema))
}

/// Add `Warning` headers to a response.
pub fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = w.parse() {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

fn dry_run(req: &Request) -> bool {
    req.query.get("dryRun").is_some_and(|v| v == "All")
}

/// POST: create an object.
pub async fn create(srv: &Server, req: &Request, served: &Served, ns: Option<&str>) -> Result<Response, ApiError> {
    let mut obj = decode_body(req)?;
    check_type(served, &obj)?;
    check_namespace(&obj, ns)?;
    let warnings = validate_fields(served, req, &mut obj)?;
    crate::bootstrap_token::stamp_csr_requester(served, req, &mut obj);
    node_restriction_create(served, req, &obj)?;
    let mgr = crate::ssa::manager_name(req.query.get("fieldManager"), req.header("user-agent"));
    let created = create_object(srv, served, &mut obj, ns, dry_run(req), Some(&mgr)).await?;
    Ok(with_warnings(http::json(201, &created), &warnings))
}

/// NodeRestriction: nodes create only their own mirror pods.
fn node_restriction_create(served: &Served, req: &Request, obj: &Value) -> Result<(), ApiError> {
    let (Some(user), true) = (req.user.as_ref(), served.info.group.is_empty() && served.info.plural == "pods") else { return Ok(()) };
    crate::node_authz::admit_pod_create(user, obj).map_err(|m| {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let mut e = ApiError::forbidden(format!("pods \"{name}\" is forbidden: {m}"));
        e.kind = Some("pods".into());
        e.name = Some(name.to_string());
        e
    })
}

/// Create `obj` (already decoded) through admission and the store.
pub async fn create_object(
    srv: &Server,
    served: &Served,
    obj: &mut Value,
    ns: Option<&str>,
    dry_run: bool,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    admission::prepare_create(srv, served, obj, ns).await?;
    if let Some(m) = manager {
        if obj.pointer("/metadata/managedFields").is_none() {
            crate::ssa::record_update(None, obj, m, None);
        }
    }
    let charges = admission::resource_quota::admit(srv, &served.info, obj, None, dry_run).await?;
    if dry_run {
        return Ok(obj.clone());
    }
    if let Some(policy) = admission::presence::Policy::of(&served.info) {
        // Before the write: admission must see the namespace's quota once it is acknowledged.
        srv.policy_presence.mark(policy, meta::namespace(obj).unwrap_or("default"), meta::name(obj));
    }
    let created = match srv.objects.create(&served.info, obj.clone()).await {
        Ok(c) => c,
        Err(e) => {
            charges.refund(srv).await;
            return Err(e);
        }
    };
    super::crd::after_write(srv, served, &created).await;
    Ok(with_type(served, created))
}

/// Kinds that PUT may create when missing, as upstream.
fn create_on_update(served: &Served) -> bool {
    matches!(
        (served.info.group.as_str(), served.info.kind.as_str()),
        ("", "Endpoints" | "Event") | ("coordination.k8s.io", "Lease") | ("discovery.k8s.io", "EndpointSlice") | ("events.k8s.io", "Event")
    )
}

/// PUT: replace an object.
pub async fn update(
    srv: &Server,
    req: &Request,
    served: &Served,
    ns: Option<&str>,
    name: &str,
) -> Result<Response, ApiError> {
    let mut obj = decode_body(req)?;
    check_type(served, &obj)?;
    check_namespace(&obj, ns)?;
    validate_fields(served, req, &mut obj)?;
    let body_name = meta::name(&obj).to_string();
    if body_name.is_empty() {
        meta::set_str(&mut obj, "name", name);
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let current = srv.objects.try_get(&served.info, ns, name).await?;
    let Some(current) = current else {
        if create_on_update(served) {
            let created = create_object(srv, served, &mut obj, ns, dry_run(req), None).await?;
            return Ok(http::json(201, &created));
        }
        return Err(ApiError::not_found(&served.info.group, &served.info.plural, name));
    };
    let wanted_rv = meta::resource_version(&obj).to_string();
    let mgr = crate::ssa::manager_name(req.query.get("fieldManager"), req.header("user-agent"));
    let updated = update_with(srv, served, ns, name, None, dry_run(req), Some(&mgr), |cur| {
        if !wanted_rv.is_empty() && wanted_rv != meta::resource_version(cur) {
            return Err(conflict(served, name));
        }
        Ok(obj.clone())
    })
    .await;
    let _ = current;
    Ok(http::json(200, &updated?))
}

/// The upstream optimistic-concurrency conflict.
pub fn conflict(served: &Served, name: &str) -> ApiError {
    ApiError::conflict(
        &served.info.group,
        &served.info.plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// Read-modify-write with retries on store conflicts: `f` maps the current object to the
/// desired one. Finalizer removal on a deleting object completes the delete.
#[allow(clippy::too_many_arguments)]
pub async fn update_with<F>(
    srv: &Server,
    served: &Served,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    dry_run: bool,
    manager: Option<&str>,
    mut f: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    for _ in 0..16 {
        let current = crate::convert::to_served(served, srv.objects.get(&served.info, ns, name).await?);
        let rv: i64 = meta::resource_version(&current).parse().unwrap_or(0);
        let mut new = f(&current)?;
        if meta::name(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&new)
            )));
        }
        admission::prepare_update(srv, served, &current, &mut new, subresource).await?;
        if let Some(m) = manager {
            crate::ssa::record_update(Some(&current), &mut new, m, subresource.filter(|s| *s == "status"));
        }
        // Nothing changed: upstream returns the object without writing (resourceVersion kept).
        if !dry_run && same_but_version(&new, &current) {
            return Ok(with_type(served, current));
        }
        // Quota applies to spec writes, not to subresources (status, binding, ...).
        let charges = match subresource {
            None => admission::resource_quota::admit(srv, &served.info, &new, Some(&current), dry_run).await?,
            Some(_) => Default::default(),
        };
        if dry_run {
            return Ok(with_type(served, new));
        }
        let namespace_pending = served.info.kind == "Namespace"
            && !served.info.custom
            && new.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !namespace_pending {
            charges.refund(srv).await;
            match srv.objects.delete(&served.info, ns, name, Some(rv)).await {
                Ok(gone) => {
                    super::crd::after_delete(srv, served, &gone).await;
                    return Ok(with_type(served, gone));
                }
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        match srv.objects.update(&served.info, new, rv).await {
            Ok(v) => {
                super::crd::after_write(srv, served, &v).await;
                return Ok(with_type(served, v));
            }
            Err(e) if e.code == 409 && e.reason == "Conflict" => {
                charges.refund(srv).await;
                continue;
            }
            Err(e) => {
                charges.refund(srv).await;
                return Err(e);
            }
        }
    }
    Err(conflict(served, name))
}

/// Whether two objects are equal apart from `kind`, `apiVersion` and
/// `metadata.resourceVersion`, which an update may or may not carry. Compared in place:
/// stripping them from clones cost two deep copies of the object on every write.
fn same_but_version(a: &Value, b: &Value) -> bool {
    use skiff_api::meta::same_except;
    same_except(a, b, &["kind", "apiVersion", "metadata"])
        && match (a.get("metadata"), b.get("metadata")) {
            (Some(am @ Value::Object(_)), Some(bm @ Value::Object(_))) => same_except(am, bm, &["resourceVersion"]),
            (am, bm) => am == bm,
        }
}

/// PATCH: JSON, merge, strategic merge, or server-side apply.
pub async fn patch(srv: &Server, req: &Request, served: &Served, ns: Option<&str>, name: &str) -> Result<Response, ApiError> {
    let pt = PatchType::from_content_type(req.header("content-type"))?;
    let patch = patching::parse(pt, &req.body)?;
    if pt == PatchType::Apply {
        return super::apply::apply(srv, req, served, ns, name, patch).await;
    }
    let mgr = crate::ssa::manager_name(req.query.get("fieldManager"), req.header("user-agent"));
    let warnings = std::sync::Mutex::new(Vec::new());
    let v = patch_object(srv, served, ns, name, None, pt, &patch, dry_run(req), Some(&mgr), &|new| {
        // Unknown fields can only come from the patch (stored objects have none): refused,
        // warned about or dropped as on create and update, judged on the patched object.
        *warnings.lock().unwrap() = validate_fields(served, req, new)?;
        Ok(())
    })
    .await?;
    let warnings = warnings.into_inner().unwrap();
    Ok(with_warnings(http::json(200, &v), &warnings))
}

/// Apply a patch to the object (or to its status for `subresource = Some("status")`).
#[allow(clippy::too_many_arguments)]
pub async fn patch_object(
    srv: &Server,
    served: &Served,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    pt: PatchType,
    patch: &Value,
    dry_run: bool,
    manager: Option<&str>,
    validate: &(dyn Fn(&mut Value) -> Result<(), ApiError> + Sync),
) -> Result<Value, ApiError> {
    // A resourceVersion inside a merge-style patch is a precondition.
    let wanted_rv = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
    update_with(srv, served, ns, name, subresource, dry_run, manager, |cur| {
        if let Some(rv) = &wanted_rv {
            if rv != meta::resource_version(cur) {
                return Err(conflict(served, name));
            }
        }
        let mut new = patching::apply_patch(served, pt, cur, patch)?;
        if !new.is_object() {
            return Err(ApiError::new(422, "Invalid", "the patch produced a value that is not an object"));
        }
        // The patch may not move the object.
        if meta::name(&new).is_empty() {
            meta::set_str(&mut new, "name", name);
        }
        validate(&mut new)?;
        Ok(new)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_but_version_ignores_only_kind_api_version_and_resource_version() {
        let a = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "5"}, "spec": {"x": 1}});
        assert!(same_but_version(&a, &json!({"metadata": {"name": "a"}, "spec": {"x": 1}})));
        assert!(same_but_version(&a, &json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9"}, "spec": {"x": 1}})));
        assert!(!same_but_version(&a, &json!({"metadata": {"name": "a"}, "spec": {"x": 2}})));
        assert!(!same_but_version(&a, &json!({"metadata": {"name": "a", "labels": {}}, "spec": {"x": 1}})));
        assert!(!same_but_version(&a, &json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}})));
        assert!(!same_but_version(&a, &json!({"metadata": {"name": "b", "resourceVersion": "5"}, "spec": {"x": 1}})));
        // resourceVersion is ignored only in metadata, kind/apiVersion only at the top.
        assert!(!same_but_version(&json!({"spec": {"kind": 1}}), &json!({"spec": {}})));
        assert!(!same_but_version(&json!({"spec": {"resourceVersion": 1}}), &json!({"spec": {}})));
    }
}
