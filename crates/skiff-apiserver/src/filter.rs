//! Label and field selectors from list/watch query parameters, turned into a predicate on
//! objects (parsing and matching are skiff-api's selector module).

use serde_json::Value;
use skiff_api::selector::{FieldSelector, LabelSelector, ViewPaths};
use skiff_api::status::ApiError;
use skiff_api::ResourceInfo;

use crate::http::Query;

/// A compiled `labelSelector` + `fieldSelector`.
#[derive(Debug, Clone)]
pub struct Filter {
    group: String,
    resource: String,
    labels: Vec<LabelSelector>,
    fields: Vec<FieldSelector>,
}

impl Filter {
    /// Build from the query; 400 for malformed selectors or unsupported fields.
    pub fn from_query(info: &ResourceInfo, q: &Query) -> Result<Self, ApiError> {
        let mut f = Filter { group: info.group.clone(), resource: info.plural.clone(), labels: vec![], fields: vec![] };
        if let Some(ls) = q.non_empty("labelSelector") {
            f.labels.push(LabelSelector::parse(ls).map_err(|e| ApiError::bad_request(e.to_string()))?);
        }
        if let Some(fs) = q.non_empty("fieldSelector") {
            let parsed = FieldSelector::parse(fs).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let checked = if info.custom {
                parsed.validate_fields(&["metadata.name", "metadata.namespace"]).map_err(|e| ApiError::bad_request(e.to_string()))?;
                parsed
            } else {
                parsed.validate_for(&info.group, &info.plural).map_err(|e| ApiError::bad_request(e.to_string()))?
            };
            f.fields.push(checked);
        }
        Ok(f)
    }

    /// Both filters at once.
    pub fn and(mut self, other: Filter) -> Filter {
        self.labels.extend(other.labels);
        self.fields.extend(other.fields);
        self
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.iter().all(LabelSelector::is_empty) && self.fields.iter().all(FieldSelector::is_empty)
    }

    /// The object paths matching reads: a [`skiff_api::selector::parse_view`] of them
    /// matches exactly as the whole object does.
    pub fn view_paths(&self) -> ViewPaths {
        let mut paths = ViewPaths::default();
        if !self.labels.is_empty() {
            paths.add("metadata.labels");
        }
        for f in &self.fields {
            f.add_view_paths_for(&self.group, &self.resource, &mut paths);
        }
        paths
    }

    /// True when `obj` matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.iter().all(|l| l.matches_object(obj))
            && self.fields.iter().all(|f| f.matches_object_for(&self.group, &self.resource, obj))
    }
}
