//! The downward API: pod fields and container resources as text, shared by `downwardAPI`
//! volumes, `projected` volumes and environment variables (`fieldRef`, `resourceFieldRef`).
//!
//! Formatting follows upstream's `fieldpath` and `resource` helpers byte for byte, because
//! programs parse these files (labels are `key="value"` lines with Go's `%q` quoting).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::atomic_writer::FileProjection;
use super::quantity::{ceil_ratio, Quantity};

/// Why a downward API value could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// A field path the downward API does not serve.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    /// `metadata.name['x']` and the like.
    #[error("fieldPath {0:?} does not support subscript")]
    NoSubscript(String),
    /// A resource name other than `limits.*`/`requests.*` of cpu, memory, ephemeral-storage.
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    /// `resourceFieldRef.containerName` names no container of the pod.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A quantity (limit, request, divisor) that does not parse, or a zero divisor.
    #[error("invalid quantity {0:?}")]
    BadQuantity(String),
}

/// The value of a metadata field path (`metadata.name`, `metadata.namespace`, `metadata.uid`,
/// `metadata.labels`, `metadata.annotations`, `metadata.labels['k']`,
/// `metadata.annotations['k']`), as upstream's `ExtractFieldPathAsString`.
pub fn metadata_field(pod: &Pod, path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    let empty = BTreeMap::new();
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => Ok(meta.annotations.as_ref().unwrap_or(&empty).get(key).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(meta.labels.as_ref().unwrap_or(&empty).get(key).cloned().unwrap_or_default()),
            _ => Err(DownwardError::NoSubscript(path.to_string())),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref().unwrap_or(&empty))),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref().unwrap_or(&empty))),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(DownwardError::UnsupportedField(path.to_string())),
    }
}

/// `metadata.labels['app']` -> (`metadata.labels`, `app`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// Labels or annotations as sorted `key="value"` lines without a trailing newline.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// Go's `strconv.Quote`: double quotes, backslash escapes, `\uXXXX` for unprintable runes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            // Go's IsPrint: graphic characters and the ASCII space only.
            c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The value of `limits.cpu`, `requests.memory` and the like for `container`, divided by the
/// selector's divisor and rounded up. Limits the container does not set are the node's
/// allocatable amount, as upstream's `MergeContainerResourceLimits` makes them.
pub fn resource_value(
    sel: &ResourceFieldSelector,
    container: &Container,
    allocatable: &BTreeMap<String, K8sQuantity>,
) -> Result<String, DownwardError> {
    let divisor = match sel.divisor.as_ref().map(|d| d.0.as_str()) {
        None | Some("") => Quantity::parse("1").expect("1 parses"),
        Some(d) => {
            let q = Quantity::parse(d).ok_or_else(|| DownwardError::BadQuantity(d.to_string()))?;
            if q.is_zero() {
                // Upstream treats the zero quantity as "unset".
                Quantity::parse("1").expect("1 parses")
            } else {
                q
            }
        }
    };
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| DownwardError::UnsupportedResource(sel.resource.clone()))?;
    let is_huge = resource.starts_with("hugepages-");
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") && !is_huge {
        return Err(DownwardError::UnsupportedResource(sel.resource.clone()));
    }
    let res = container.resources.as_ref();
    let amount = match kind {
        "limits" => res
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(resource))
            .or_else(|| (!is_huge).then(|| allocatable.get(resource)).flatten()),
        "requests" => res.and_then(|r| r.requests.as_ref()).and_then(|l| l.get(resource)),
        _ => return Err(DownwardError::UnsupportedResource(sel.resource.clone())),
    };
    let amount = match amount {
        Some(q) => Quantity::parse(&q.0).ok_or_else(|| DownwardError::BadQuantity(q.0.clone()))?,
        None => Quantity::parse("0").expect("0 parses"),
    };
    let v = if resource == "cpu" {
        ceil_ratio(amount.milli_value(), divisor.milli_value())
    } else {
        ceil_ratio(amount.value(), divisor.value())
    }
    .ok_or_else(|| DownwardError::BadQuantity(sel.divisor.as_ref().map(|d| d.0.clone()).unwrap_or_default()))?;
    Ok(v.to_string())
}

/// The container of `pod` named `name`, among app containers then init containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// The files of a downward API item list, as upstream's `downwardapi.CollectData`: every item
/// is tried; the first failure is returned after all were looked at.
pub fn collect_data(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    default_mode: u32,
    allocatable: &BTreeMap<String, K8sQuantity>,
) -> Result<BTreeMap<String, FileProjection>, DownwardError> {
    let mut out = BTreeMap::new();
    let mut first_err = None;
    for item in items {
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        let data = if let Some(f) = item.field_ref.as_ref() {
            metadata_field(pod, &f.field_path)
        } else if let Some(r) = item.resource_field_ref.as_ref() {
            let name = r.container_name.clone().unwrap_or_default();
            find_container(pod, &name).ok_or(DownwardError::ContainerNotFound(name)).and_then(|c| resource_value(r, c, allocatable))
        } else {
            Ok(String::new())
        };
        match data {
            Ok(d) => {
                out.insert(clean_path(&item.path), FileProjection { data: d.into_bytes(), mode });
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// `filepath.Clean` for the relative paths of volume items (`a//b/./c` -> `a/b/c`); `..` is
/// kept so that the atomic writer rejects it.
pub fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                "labels": {"app": "web", "tier": "a \"quoted\"\nline"},
                "annotations": {"note": "héllo\u{a0}"}},
            "spec": {"containers": [{"name": "c", "resources": {
                "limits": {"memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}}}],
                "initContainers": [{"name": "init"}]}
        }))
        .unwrap()
    }

    fn alloc() -> BTreeMap<String, K8sQuantity> {
        [("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "50Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
            .collect()
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: None,
            resource: resource.into(),
            divisor: divisor.map(|d| K8sQuantity(d.into())),
        }
    }

    #[test]
    fn metadata_fields() {
        let p = pod();
        assert_eq!(metadata_field(&p, "metadata.name").unwrap(), "web");
        assert_eq!(metadata_field(&p, "metadata.namespace").unwrap(), "prod");
        assert_eq!(metadata_field(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(metadata_field(&p, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(metadata_field(&p, "metadata.labels['missing']").unwrap(), "");
        assert_eq!(metadata_field(&p, "metadata.labels").unwrap(), "app=\"web\"\ntier=\"a \\\"quoted\\\"\\nline\"");
        assert_eq!(metadata_field(&p, "metadata.annotations").unwrap(), "note=\"héllo\\u00a0\"");
        assert_eq!(
            metadata_field(&p, "metadata.name['x']").unwrap_err().to_string(),
            "fieldPath \"metadata.name['x']\" does not support subscript"
        );
        assert_eq!(metadata_field(&p, "spec.nodeName").unwrap_err().to_string(), "unsupported fieldPath: spec.nodeName");
    }

    #[test]
    fn resource_values_with_divisors() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let a = alloc();
        assert_eq!(resource_value(&sel("requests.cpu", None), c, &a).unwrap(), "1", "250m rounds up to 1 core");
        assert_eq!(resource_value(&sel("requests.cpu", Some("1m")), c, &a).unwrap(), "250");
        assert_eq!(resource_value(&sel("requests.cpu", Some("100m")), c, &a).unwrap(), "3");
        assert_eq!(resource_value(&sel("limits.cpu", None), c, &a).unwrap(), "4", "unset limit is node allocatable");
        assert_eq!(resource_value(&sel("limits.memory", Some("1Mi")), c, &a).unwrap(), "64");
        assert_eq!(resource_value(&sel("limits.memory", None), c, &a).unwrap(), (64u64 << 20).to_string());
        assert_eq!(resource_value(&sel("requests.memory", Some("1M")), c, &a).unwrap(), "34", "33554432 / 1e6 rounds up");
        assert_eq!(resource_value(&sel("limits.ephemeral-storage", Some("1Gi")), c, &a).unwrap(), "50");
        assert_eq!(resource_value(&sel("requests.ephemeral-storage", None), c, &a).unwrap(), "0");
        assert_eq!(
            resource_value(&sel("limits.gpu", None), c, &a).unwrap_err().to_string(),
            "unsupported container resource : limits.gpu"
        );
    }

    #[test]
    fn collect_data_uses_modes_and_reports_errors() {
        let p = pod();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "./sub//name", "mode": 0o600, "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        ]))
        .unwrap();
        let data = collect_data(&items, &p, 0o644, &alloc()).unwrap();
        assert_eq!(data["sub/name"].data, b"web");
        assert_eq!(data["sub/name"].mode, 0o600);
        assert_eq!(data["labels"].mode, 0o644);
        assert_eq!(data["mem"].data, b"64");
        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
        ]))
        .unwrap();
        assert_eq!(collect_data(&bad, &p, 0o644, &alloc()).unwrap_err(), DownwardError::ContainerNotFound("nope".into()));
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("日本"), "\"日本\"");
    }
}
