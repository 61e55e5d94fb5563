//! Request dispatch: health and version (anonymous), discovery, OpenAPI, and resource verbs.

pub mod apply;
pub mod crd;
pub mod delete;
pub mod discovery;
pub mod eviction;
pub mod metrics_api;
pub mod openapi;
pub mod proxy;
pub mod read;
pub mod review;
pub mod subresource;
pub mod watch;
pub mod watch_cache;
pub mod write;

use ::http::Method;
use serde_json::json;
use skiff_api::status::ApiError;

use crate::http::{self, Request, Response};
use crate::resources::Served;
use crate::route::{self, ResourcePath, Route};
use crate::Server;

/// Handle one request.
pub async fn handle(srv: &Server, req: Request) -> Response {
    match route::parse(&req.path) {
        Route::Health(kind) => health(&kind, &req),
        Route::Version => http::json(200, &version()),
        _ if req.user.is_none() && !crate::bootstrap_token::is_public_cluster_info(&req) => http::error(&ApiError::unauthorized()),
        Route::Metrics => http::raw(200, "text/plain; version=0.0.4", srv.metrics.render()),
        Route::Snapshot => snapshot(srv, &req).await,
        Route::CoreVersions => discovery::core_versions(srv, &req),
        Route::Groups => discovery::groups(srv, &req),
        Route::Group(g) => discovery::group(srv, &g),
        Route::ResourceList { group, version } => discovery::resource_list(srv, &group, &version),
        Route::OpenApiV2 => openapi::v2(srv, &req),
        Route::OpenApiV3Index => openapi::v3_index(srv),
        Route::OpenApiV3 { group, version } => openapi::v3(srv, &group, &version),
        Route::Resource(rp) if rp.group == metrics_api::GROUP => match metrics_api::handle(srv, &req, &rp).await {
            Ok(r) => r,
            Err(e) => http::error(&e),
        },
        Route::Resource(rp) => match resource(srv, &req, rp).await {
            Ok(r) => r,
            Err(e) => http::error(&e),
        },
        Route::Unknown => http::error(&ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    }
}

/// Label for the request metrics: the resource plural (or the first path segment).
pub fn metric_resource(path: &str) -> String {
    match route::parse(path) {
        Route::Resource(rp) => match rp.subresource {
            Some(s) => format!("{}/{}", rp.resource, s),
            None => rp.resource,
        },
        _ => path.split('/').find(|s| !s.is_empty()).unwrap_or("").to_string(),
    }
}

/// POST `/skiff/v1/snapshot?path=FILE`: a consistent snapshot of the live store, written by
/// the server to FILE on its own machine (what `skiff snapshot save` uses while it runs).
async fn snapshot(srv: &Server, req: &Request) -> Response {
    if !req.user.as_ref().is_some_and(|u| u.is_admin()) {
        return http::error(&ApiError::forbidden("snapshots need system:masters"));
    }
    if req.method != Method::POST {
        return http::error(&ApiError::method_not_allowed("use POST"));
    }
    let Some(path) = req.query.non_empty("path") else {
        return http::error(&ApiError::bad_request("the path query parameter is required"));
    };
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return http::error(&ApiError::bad_request("path must be absolute"));
    }
    let rev = srv.objects.revision().await.unwrap_or(0);
    match srv.objects.store().snapshot(&path).await {
        Ok(()) => {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            tracing::info!(path = %path.display(), revision = rev, bytes = size, "store snapshot written");
            http::json(200, &json!({"path": path, "revision": rev, "bytes": size}))
        }
        Err(e) => http::error(&ApiError::internal(format!("snapshot: {e}"))),
    }
}

fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+skiff-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// Checks reported by `/healthz?verbose` and friends.
const CHECKS: &[&str] = &["ping", "log", "etcd", "poststarthook/start-apiextensions-controllers", "poststarthook/bootstrap-controller"];

fn health(kind: &str, req: &Request) -> Response {
    if req.query.get("verbose").is_some() {
        let mut out = String::new();
        for c in CHECKS {
            out.push_str(&format!("[+]{c} ok\n"));
        }
        out.push_str(&format!("{kind} check passed\n"));
        return http::text(200, out);
    }
    http::text(200, "ok")
}

/// The verb a request on a resource path performs.
pub fn verb(req: &Request, rp: &ResourcePath) -> &'static str {
    match (&req.method, rp.name.is_some()) {
        (&Method::GET, _) if rp.watch_prefix || req.query.flag("watch") => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

async fn resource(srv: &Server, req: &Request, rp: ResourcePath) -> Result<Response, ApiError> {
    let served = srv
        .resources
        .find(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))?;
    let verb = verb(req, &rp);
    authorize(req, &served, &rp, verb)?;
    if rp.namespace.is_some() && !served.info.namespaced() {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    if let Some(sub) = rp.subresource.clone() {
        if !served.info.has_subresource(&sub) {
            return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        return subresource::handle(srv, req, &served, &rp, &sub, verb).await;
    }
    if !served.info.has_verb(verb) {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on resources of kind \"{}\"",
            verb_title(verb),
            served.info.group_resource()
        )));
    }
    let ns = rp.namespace.as_deref();
    let name = rp.name.as_deref();
    match verb {
        "get" => read::get(srv, req, &served, ns, name.unwrap_or_default()).await,
        "list" => read::list(srv, req, &served, ns).await,
        "watch" => watch::watch(srv, req, &served, ns, name).await,
        "create" => {
            if is_review(&served) {
                return review::create(srv, req, &served, ns).await;
            }
            write::create(srv, req, &served, ns).await
        }
        "update" => write::update(srv, req, &served, ns, name.unwrap_or_default()).await,
        "patch" => write::patch(srv, req, &served, ns, name.unwrap_or_default()).await,
        "delete" => delete::delete(srv, req, &served, ns, name.unwrap_or_default()).await,
        "deletecollection" => delete::delete_collection(srv, req, &served, ns).await,
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

/// Until RBAC is enforced: members of `system:masters` may do everything; every other
/// authenticated user may only ask about themselves (self reviews), as upstream's
/// `system:basic-user` allows. Discovery and OpenAPI are open to all authenticated users.
fn authorize(req: &Request, served: &Served, rp: &ResourcePath, verb: &str) -> Result<(), ApiError> {
    if req.user.is_none() && crate::bootstrap_token::is_public_cluster_info(req) {
        return Ok(());
    }
    let Some(user) = req.user.as_ref() else { return Err(ApiError::unauthorized()) };
    if user.is_admin() {
        return Ok(());
    }
    let self_review = matches!(served.info.plural.as_str(), "selfsubjectaccessreviews" | "selfsubjectrulesreviews" | "selfsubjectreviews");
    if self_review {
        return Ok(());
    }
    let resource = match &rp.subresource {
        Some(s) => format!("{}/{s}", served.info.plural),
        None => served.info.plural.clone(),
    };
    if crate::node_authz::allows(user, &served.info.group, &resource, verb) {
        return Ok(());
    }
    let mut msg = format!(
        "{} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\"",
        match &rp.name {
            Some(n) => format!("{} \"{n}\"", served.info.group_resource()),
            None => served.info.group_resource(),
        },
        user.name,
        served.info.group
    );
    match &rp.namespace {
        Some(ns) => msg.push_str(&format!(" in the namespace \"{ns}\"")),
        None => msg.push_str(" at the cluster scope"),
    }
    let mut e = ApiError::forbidden(msg);
    e.group = Some(served.info.group.clone());
    e.kind = Some(served.info.plural.clone());
    e.name = rp.name.clone();
    Err(e)
}

fn is_review(served: &Served) -> bool {
    matches!(served.info.group.as_str(), "authorization.k8s.io" | "authentication.k8s.io")
}

fn verb_title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}
