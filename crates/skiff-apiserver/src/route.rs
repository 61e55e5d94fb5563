//! Turning a request path into what it addresses, the way upstream's RequestInfo does.

/// What a request path points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    ResourceList {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource, collection or subresource.
    Resource(ResourcePath),
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`
    OpenApiV3Index,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`
    OpenApiV3 {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/healthz`, `/livez`, `/readyz` (and their `/name` sub-checks).
    Health(String),
    /// `/version`
    Version,
    /// `/metrics`
    Metrics,
    /// `/skiff/v1/snapshot`: write a store snapshot (admin only).
    Snapshot,
    /// Anything else.
    Unknown,
}

/// The parts of a resource path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any (e.g. `status`).
    pub subresource: Option<String>,
    /// Legacy `/watch/` prefix used.
    pub watch_prefix: bool,
}

/// Subresources of a Namespace object that are not resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parse a request path (without query string).
pub fn parse(path: &str) -> Route {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::ResourceList { group: String::new(), version: v.to_string() },
        ["apis", g, v] => Route::ResourceList { group: g.to_string(), version: v.to_string() },
        ["api", v, rest @ ..] => resource(String::new(), v, rest),
        ["apis", g, v, rest @ ..] => resource(g.to_string(), v, rest),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3 { group: String::new(), version: v.to_string() },
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3 { group: g.to_string(), version: v.to_string() },
        [h @ ("healthz" | "livez" | "readyz"), ..] => Route::Health(h.to_string()),
        ["version"] => Route::Version,
        ["metrics"] => Route::Metrics,
        ["skiff", "v1", "snapshot"] => Route::Snapshot,
        _ => Route::Unknown,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Route {
    let mut rp = ResourcePath { group, version: version.to_string(), ..Default::default() };
    let mut parts: Vec<&str> = rest.to_vec();
    if parts.first() == Some(&"watch") {
        rp.watch_prefix = true;
        parts.remove(0);
    }
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            rp.namespace = Some(parts[1].to_string());
            parts.drain(..2);
        } else {
            // `/namespaces/{name}[/status]`: the Namespace object itself.
            rp.resource = "namespaces".into();
            rp.name = Some(parts[1].to_string());
            rp.subresource = parts.get(2).map(|s| s.to_string());
            return Route::Resource(rp);
        }
    }
    match parts.as_slice() {
        [r] => rp.resource = r.to_string(),
        [r, n] => {
            rp.resource = r.to_string();
            rp.name = Some(n.to_string());
        }
        [r, n, s, ..] => {
            rp.resource = r.to_string();
            rp.name = Some(n.to_string());
            rp.subresource = Some(s.to_string());
        }
        _ => return Route::Unknown,
    }
    Route::Resource(rp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths() {
        let r = res("/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!(r.group, "apps");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "deployments");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_objects_and_their_subresources() {
        let r = res("/api/v1/namespaces/team-a");
        assert_eq!((r.resource.as_str(), r.name.as_deref(), r.namespace), ("namespaces", Some("team-a"), None));
        let r = res("/api/v1/namespaces/team-a/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/namespaces/team-a/pods");
        assert_eq!((r.resource.as_str(), r.namespace.as_deref()), ("pods", Some("team-a")));
        let r = res("/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.name), ("namespaces", None));
    }

    #[test]
    fn discovery_and_misc() {
        assert_eq!(parse("/api"), Route::CoreVersions);
        assert_eq!(parse("/apis/"), Route::Groups);
        assert_eq!(parse("/apis/apps/v1"), Route::ResourceList { group: "apps".into(), version: "v1".into() });
        assert_eq!(parse("/openapi/v3/apis/apps/v1"), Route::OpenApiV3 { group: "apps".into(), version: "v1".into() });
        assert_eq!(parse("/readyz/ping"), Route::Health("readyz".into()));
        assert!(res("/api/v1/watch/namespaces/default/pods").watch_prefix);
    }
}
