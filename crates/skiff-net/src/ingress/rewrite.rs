//! nginx's `rewrite-target` annotation for the common cases.
//!
//! ingress-nginx turns `rewrite-target: /$2` on path `/something(/|$)(.*)` into
//! `rewrite (?i)/something(/|$)(.*) /$2 break;`: the whole request path is replaced by the
//! target with `$N` filled from the path regex's captures, and the query string is kept.

use regex::Regex;

/// Characters that may appear in a path without making it a regex; the same set ingress-nginx
/// uses to decide whether a path is "plain".
fn is_plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')
}

/// True when `path` contains anything beyond the plain path characters, so that it only makes
/// sense as a regular expression.
pub(crate) fn has_regex_chars(path: &str) -> bool {
    !path.chars().all(is_plain_char)
}

/// Compiles an Ingress path as nginx would for a `~*` location: anchored at the start,
/// case-insensitive.
pub(crate) fn compile_path_regex(path: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("(?i)^{path}"))
}

/// A compiled rewrite: the regex whose captures feed `$N`, and the target template.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    regex: Regex,
    target: String,
}

impl Rewrite {
    /// A rewrite for `path`; `regex` is true when the path is matched as a regex, otherwise it is
    /// taken literally (then only `$0` is meaningful).
    pub(crate) fn new(path: &str, regex: bool, target: &str) -> Result<Self, regex::Error> {
        let regex = if regex {
            compile_path_regex(path)?
        } else {
            Regex::new(&format!("^{}", regex::escape(path)))?
        };
        Ok(Rewrite {
            regex,
            target: target.to_string(),
        })
    }

    /// The new path-and-query for a request `path` with optional `query`.
    ///
    /// When the path does not match the rewrite's regex (it matched the location through other
    /// rules, e.g. a Prefix with a trailing slash), the target is used without captures, which
    /// is what nginx's `rewrite ... break` leaves to the location as well: unmatched groups
    /// expand to nothing.
    pub(crate) fn apply(&self, path: &str, query: Option<&str>) -> String {
        let caps = self.regex.captures(path);
        let mut out = String::with_capacity(self.target.len() + path.len());
        let bytes = self.target.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                if let Some((group, used)) = parse_group(&self.target[i + 1..]) {
                    if let Some(m) = caps.as_ref().and_then(|c| c.get(group)) {
                        out.push_str(m.as_str());
                    }
                    i += 1 + used;
                    continue;
                }
            }
            // The target is a String, so copying char by char keeps UTF-8 intact.
            let ch = self.target[i..].chars().next().unwrap_or('$');
            out.push(ch);
            i += ch.len_utf8();
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            // nginx appends the original arguments; with `?` already in the target it joins them.
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        out
    }
}

/// Parses `N` or `{N}` after a `$`; returns the group number and how many bytes it used.
fn parse_group(s: &str) -> Option<(usize, usize)> {
    if let Some(rest) = s.strip_prefix('{') {
        let end = rest.find('}')?;
        let n = rest[..end].parse().ok()?;
        return Some((n, end + 2));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    Some((s[..digits].parse().ok()?, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_detection_matches_ingress_nginx_plain_set() {
        assert!(!has_regex_chars("/api/v1.2/some_thing-x~"));
        assert!(has_regex_chars("/something(/|$)(.*)"));
        assert!(has_regex_chars("/foo/.*"));
        assert!(has_regex_chars("/a+b"));
    }

    #[test]
    fn capture_groups_fill_the_target() {
        let rw = Rewrite::new("/something(/|$)(.*)", true, "/$2").unwrap();
        assert_eq!(rw.apply("/something", None), "/");
        assert_eq!(rw.apply("/something/", None), "/");
        assert_eq!(rw.apply("/something/new", None), "/new");
        assert_eq!(rw.apply("/something/a/b", Some("x=1")), "/a/b?x=1");
        // Case-insensitive like nginx's `~*` locations.
        assert_eq!(rw.apply("/SOMETHING/x", None), "/x");
    }

    #[test]
    fn braces_and_literal_dollars() {
        let rw = Rewrite::new("/app(/|$)(.*)", true, "/v2/${2}").unwrap();
        assert_eq!(rw.apply("/app/list", None), "/v2/list");
        let rw = Rewrite::new("/p", false, "/cost$").unwrap();
        assert_eq!(rw.apply("/p", None), "/cost$");
    }

    #[test]
    fn plain_target_replaces_the_whole_path_and_keeps_query() {
        let rw = Rewrite::new("/foo", false, "/").unwrap();
        assert_eq!(rw.apply("/foo/bar/baz", Some("a=b")), "/?a=b");
        let rw = Rewrite::new("/foo", false, "/x?y=1").unwrap();
        assert_eq!(rw.apply("/foo", Some("a=b")), "/x?y=1&a=b");
        // A target without a leading slash still yields an origin-form path.
        let rw = Rewrite::new("/foo(.*)", true, "$1").unwrap();
        assert_eq!(rw.apply("/foo", None), "/");
        assert_eq!(rw.apply("/foo/z", None), "/z");
    }
}
