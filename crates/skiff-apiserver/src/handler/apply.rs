//! Server-side apply (`application/apply-patch+yaml`): field managers, ownership and
//! conflicts, through skiff-api's patch::apply.

use serde_json::Value;
use skiff_api::meta;
use skiff_api::status::ApiError;

use crate::http::{self, Request, Response};
use crate::resources::Served;
use crate::Server;

fn manager(req: &Request) -> Result<String, ApiError> {
    req.query
        .non_empty("fieldManager")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set"))
}

/// Apply `patch` to the object `name`, creating it when missing.
pub async fn apply(
    srv: &Server,
    req: &Request,
    served: &Served,
    ns: Option<&str>,
    name: &str,
    patch: Value,
) -> Result<Response, ApiError> {
    let mgr = manager(req)?;
    let force = req.query.flag("force");
    let dry = req.query.get("dryRun") == Some("All");
    super::write::check_type(served, &patch)?;
    super::write::strict_check(served, req, &patch)?;
    if meta::name(&patch) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(&patch)
        )));
    }
    let existing = srv.objects.try_get(&served.info, ns, name).await?;
    if existing.is_none() {
        let mut obj = crate::ssa::apply(served, None, &patch, &mgr, force, None)?;
        let created = super::write::create_object(srv, served, &mut obj, ns, dry, None).await?;
        return Ok(http::json(201, &created));
    }
    let v = super::write::update_with(srv, served, ns, name, None, dry, None, |cur| {
        crate::ssa::apply(served, Some(cur), &patch, &mgr, force, None)
    })
    .await?;
    Ok(http::json(200, &v))
}

/// Apply to a subresource (status): the applied status replaces the owned status fields.
pub async fn apply_sub(
    srv: &Server,
    req: &Request,
    served: &Served,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    patch: Value,
) -> Result<Response, ApiError> {
    let mgr = manager(req)?;
    let force = req.query.flag("force");
    let dry = req.query.get("dryRun") == Some("All");
    let mode = if sub == "status" { Some("status") } else { Some("other") };
    let v = super::write::update_with(srv, served, ns, name, mode, dry, None, |cur| {
        crate::ssa::apply(served, Some(cur), &patch, &mgr, force, Some(sub))
    })
    .await?;
    Ok(http::json(200, &v))
}
