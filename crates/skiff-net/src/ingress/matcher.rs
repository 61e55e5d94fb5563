//! Host and path matching of networking.k8s.io/v1 Ingress rules (pure, no I/O).
//!
//! Hosts: exact names first, then `*.suffix` wildcards (the `*` stands for exactly one DNS
//! label), then rules without a host, then the default backend; a host whose paths do not match
//! falls through to the next level (Traefik's behaviour, where host-less rules are ordinary
//! routes of lower priority).
//! Paths within one level: longest path first, Exact before Prefix on equal length.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::rewrite::Rewrite;
use super::routes::Backend;

/// How a request path is compared with an Ingress path.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    /// `pathType: Exact`: the whole path, case-sensitive.
    Exact(String),
    /// `pathType: Prefix` (and ImplementationSpecific): element-wise prefix. Stored without a
    /// trailing slash, so `/` is the empty string and matches everything.
    Prefix(String),
    /// A regex path (`use-regex`, or regex characters with rewrite-target): anchored at the
    /// start, case-insensitive, as ingress-nginx's `~*` locations.
    Regex(Regex),
}

impl PathMatch {
    /// A Prefix matcher for an Ingress path; a trailing slash is ignored, as the spec says
    /// `/foo/` and `/foo` are the same prefix.
    pub(crate) fn prefix(path: &str) -> Self {
        PathMatch::Prefix(path.trim_end_matches('/').to_string())
    }

    /// True when `path` (the request's path, without query) matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                // Element-wise: `/foo/bar` matches `/foo/bar` and `/foo/bar/baz`, never
                // `/foo/barbaz`; the byte after the prefix must end an element.
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }

    /// Sort key: the length of the path as written (nginx orders locations by length too).
    fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) => p.len(),
            // Prefix paths lost their trailing slash; `/` counts as 1 so that it still sorts
            // after every longer path but not before an Exact `/`.
            PathMatch::Prefix(p) => p.len().max(1),
            PathMatch::Regex(re) => re.as_str().len().saturating_sub("(?i)^".len()),
        }
    }

    /// Exact paths win ties.
    fn is_exact(&self) -> bool {
        matches!(self, PathMatch::Exact(_))
    }
}

/// One Ingress path: how it matches and where it goes.
#[derive(Debug, Clone)]
pub(crate) struct PathRoute {
    pub(crate) matcher: PathMatch,
    pub(crate) backend: Arc<Backend>,
    pub(crate) rewrite: Option<Rewrite>,
    /// Plain HTTP requests get a 308 to https (TLS configured for the host, or forced).
    pub(crate) ssl_redirect: bool,
    /// `namespace/name` of the Ingress that defined it, for logs.
    pub(crate) source: Arc<str>,
}

/// The paths of one host, kept in match order.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostRoutes {
    paths: Vec<PathRoute>,
}

impl HostRoutes {
    pub(crate) fn push(&mut self, route: PathRoute) {
        self.paths.push(route);
    }

    /// Puts the paths in precedence order; called once when the snapshot is built.
    pub(crate) fn sort(&mut self) {
        // Stable sort: among equals, the older Ingress (pushed first) keeps priority.
        self.paths.sort_by(|a, b| {
            b.matcher
                .len()
                .cmp(&a.matcher.len())
                .then_with(|| b.matcher.is_exact().cmp(&a.matcher.is_exact()))
        });
    }

    fn find(&self, path: &str) -> Option<&PathRoute> {
        self.paths.iter().find(|r| r.matcher.matches(path))
    }

    pub(crate) fn len(&self) -> usize {
        self.paths.len()
    }

    pub(crate) fn for_each_backend(&self, f: &mut impl FnMut(&Backend)) {
        self.paths.iter().for_each(|p| f(&p.backend));
    }
}

/// What a request resolved to.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// A rule's path matched.
    Path(&'a PathRoute),
    /// Nothing matched, but an Ingress has a defaultBackend.
    Default(&'a Arc<Backend>),
    /// 404.
    NotFound,
}

/// All rules of all selected Ingresses, indexed for lookup.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    pub(crate) exact: HashMap<String, HostRoutes>,
    /// Keyed by the suffix after `*.`.
    pub(crate) wildcard: HashMap<String, HostRoutes>,
    /// Rules without a host.
    pub(crate) any: HostRoutes,
    pub(crate) default_backend: Option<Arc<Backend>>,
}

impl RouteTable {
    /// Resolves a request. `host` must be lowercase and without port.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        if let Some(r) = self.exact.get(host).and_then(|h| h.find(path)) {
            return Lookup::Path(r);
        }
        if let Some((_, suffix)) = host.split_once('.') {
            if let Some(r) = self.wildcard.get(suffix).and_then(|h| h.find(path)) {
                return Lookup::Path(r);
            }
        }
        if let Some(r) = self.any.find(path) {
            return Lookup::Path(r);
        }
        match &self.default_backend {
            Some(b) => Lookup::Default(b),
            None => Lookup::NotFound,
        }
    }

    pub(crate) fn sort(&mut self) {
        self.exact.values_mut().for_each(HostRoutes::sort);
        self.wildcard.values_mut().for_each(HostRoutes::sort);
        self.any.sort();
    }
}

/// Normalises a Host header or SNI name for lookup: port removed, lowercase, no trailing dot.
/// Borrowed when already normal, which is the common case.
pub(crate) fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets' content only.
        raw.split_once(']').map_or(raw, |(h, _)| &h[1..])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new(name.to_string(), Vec::new()))
    }

    fn route(m: PathMatch, b: &str) -> PathRoute {
        PathRoute {
            matcher: m,
            backend: backend(b),
            rewrite: None,
            ssl_redirect: false,
            source: Arc::from("ns/ing"),
        }
    }

    fn which(t: &RouteTable, host: &str, path: &str) -> String {
        match t.lookup(host, path) {
            Lookup::Path(r) => r.backend.name.clone(),
            Lookup::Default(b) => format!("default:{}", b.name),
            Lookup::NotFound => "404".into(),
        }
    }

    #[test]
    fn prefix_is_element_wise_as_the_spec_table_says() {
        let p = PathMatch::prefix("/aaa/bbb");
        assert!(p.matches("/aaa/bbb"));
        assert!(p.matches("/aaa/bbb/"));
        assert!(p.matches("/aaa/bbb/ccc"));
        assert!(!p.matches("/aaa/bbbxyz"));
        assert!(!p.matches("/aaa"));
        let p = PathMatch::prefix("/aaa/bbb/");
        assert!(p.matches("/aaa/bbb"));
        assert!(p.matches("/aaa/bbb/ccc"));
        let root = PathMatch::prefix("/");
        assert!(root.matches("/"));
        assert!(root.matches("/anything/at/all"));
        // Case-sensitive.
        assert!(!PathMatch::prefix("/Foo").matches("/foo"));
    }

    #[test]
    fn exact_needs_the_whole_path() {
        let e = PathMatch::Exact("/foo".into());
        assert!(e.matches("/foo"));
        assert!(!e.matches("/foo/"));
        assert!(!e.matches("/foo/bar"));
    }

    #[test]
    fn longest_wins_and_exact_beats_prefix() {
        let mut h = HostRoutes::default();
        h.push(route(PathMatch::prefix("/"), "root"));
        h.push(route(PathMatch::prefix("/foo"), "foo-prefix"));
        h.push(route(PathMatch::Exact("/foo".into()), "foo-exact"));
        h.push(route(PathMatch::prefix("/foo/bar"), "foobar"));
        h.push(route(PathMatch::Exact("/".into()), "root-exact"));
        let mut t = RouteTable::default();
        t.exact.insert("a.test".into(), h);
        t.sort();
        assert_eq!(which(&t, "a.test", "/foo"), "foo-exact");
        assert_eq!(which(&t, "a.test", "/foo/"), "foo-prefix");
        assert_eq!(which(&t, "a.test", "/foo/bar/x"), "foobar");
        assert_eq!(which(&t, "a.test", "/foobar"), "root");
        assert_eq!(which(&t, "a.test", "/"), "root-exact");
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let mut t = RouteTable::default();
        let mut h = HostRoutes::default();
        h.push(route(PathMatch::prefix("/"), "wild"));
        t.wildcard.insert("example.com".into(), h);
        let mut h = HostRoutes::default();
        h.push(route(PathMatch::prefix("/"), "exact"));
        t.exact.insert("www.example.com".into(), h);
        t.sort();
        assert_eq!(which(&t, "foo.example.com", "/"), "wild");
        assert_eq!(which(&t, "www.example.com", "/"), "exact");
        assert_eq!(which(&t, "example.com", "/"), "404");
        assert_eq!(which(&t, "a.b.example.com", "/"), "404");
    }

    #[test]
    fn falls_through_host_levels_then_default() {
        let mut t = RouteTable::default();
        let mut h = HostRoutes::default();
        h.push(route(PathMatch::prefix("/api"), "api"));
        t.exact.insert("a.test".into(), h);
        t.any.push(route(PathMatch::prefix("/static"), "static"));
        t.sort();
        assert_eq!(which(&t, "a.test", "/api/x"), "api");
        assert_eq!(which(&t, "a.test", "/static/x"), "static");
        assert_eq!(which(&t, "other.test", "/api"), "404");
        t.default_backend = Some(backend("dflt"));
        assert_eq!(which(&t, "other.test", "/api"), "default:dflt");
    }

    #[test]
    fn regex_paths_are_anchored_and_case_insensitive() {
        let re =
            PathMatch::Regex(super::super::rewrite::compile_path_regex("/app(/|$)(.*)").unwrap());
        assert!(re.matches("/app"));
        assert!(re.matches("/APP/x"));
        assert!(!re.matches("/x/app"));
        assert!(!re.matches("/apple"));
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("a.test."), "a.test");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert!(matches!(
            normalize_host("plain.test"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
