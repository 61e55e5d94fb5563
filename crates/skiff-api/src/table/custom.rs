//! Tables for custom resources, from a CRD version's `additionalPrinterColumns`, following
//! upstream's CRD table convertor: `Name` first, then the CRD's columns; a version without
//! columns gets a single `Age` column.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::table::format::{human_duration, name, parse_time};
use crate::table::jsonpath::JsonPath;
use crate::table::{assemble, Row, TableOptions, AGE_DESC, NAME_DESC};

/// One entry of a CRD version's `additionalPrinterColumns`; deserialises straight from the
/// CRD's JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: `integer`, `number`, `string`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Optional OpenAPI format (`name` marks the name column).
    #[serde(default)]
    pub format: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// 0 for default columns, higher for `-o wide` ones.
    #[serde(default)]
    pub priority: i32,
    /// Simple JSONPath evaluated against each object, e.g. `.spec.replicas`.
    pub json_path: String,
}

/// The column upstream serves when a CRD version declares none.
fn default_columns() -> Vec<PrinterColumn> {
    vec![PrinterColumn {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description: AGE_DESC.into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// Builds the `Table` for custom resources using a CRD version's printer columns.
pub fn custom_table(columns: &[PrinterColumn], objects: &[Value], opts: &TableOptions) -> Value {
    let defaulted;
    let columns = if columns.is_empty() {
        defaulted = default_columns();
        &defaulted[..]
    } else {
        columns
    };
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0,
    })];
    for c in columns {
        let description = if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        };
        defs.push(json!({
            "name": c.name, "type": c.kind, "format": c.format,
            "description": description, "priority": c.priority,
        }));
    }
    // A path that does not parse yields empty cells; CRD validation rejects such paths.
    let paths: Vec<Option<JsonPath>> = columns
        .iter()
        .map(|c| JsonPath::parse(&c.json_path).ok())
        .collect();
    let rows = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(name(obj))];
            for (c, path) in columns.iter().zip(&paths) {
                // Upstream uses only the first match of each column's path.
                let value = path.as_ref().and_then(|p| p.find(obj).into_iter().next());
                cells.push(match value {
                    Some(v) => cell(&c.kind, v, opts),
                    None => Value::Null,
                });
            }
            (Row::from(cells), obj)
        })
        .collect();
    assemble(defs, rows, opts)
}

/// Converts a selected value into a cell of the column's type, as upstream's
/// `cellForJSONValue` does; a value of the wrong type gives an empty (null) cell.
fn cell(kind: &str, v: &Value, opts: &TableOptions) -> Value {
    match kind {
        "string" => match v {
            Value::Null => Value::Null,
            _ => Value::String(text(v)),
        },
        "integer" => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => json!(i),
                None => n.as_f64().map(|f| json!(f as i64)).unwrap_or(Value::Null),
            },
            _ => Value::Null,
        },
        "number" => match v {
            // Go marshals a float64 holding an integer without a fraction; keep that form.
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
                _ => Value::Number(n.clone()),
            },
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => json!(b),
            _ => Value::Null,
        },
        "date" => match v {
            Value::String(s) => {
                // Upstream's query-parameter parsing reads both as the zero time.
                if s.is_empty() || s == "null" {
                    return json!("<unknown>");
                }
                if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    return json!("<invalid>");
                }
                match parse_time(v) {
                    Some(t) => json!(human_duration(opts.now - t)),
                    None => json!("<unknown>"),
                }
            }
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// How a JSONPath result prints as text: strings bare, scalars in Go's `%v` form, maps and
/// lists as compact JSON with sorted keys (Go marshals maps sorted).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::Null => "null".to_string(),
        Value::Array(_) | Value::Object(_) => sorted(v).to_string(),
    }
}

/// Go's `%v` for a float64: shortest representation, exponent form outside [1e-4, 1e21).
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{f}")
}

/// A copy of `v` with every object's keys in sorted order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, now};

    fn column(name: &str, kind: &str, path: &str) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            kind: kind.into(),
            json_path: path.into(),
            ..Default::default()
        }
    }

    fn object() -> Value {
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "creationTimestamp": ago(3600), "labels": {"tier": "gold"}},
            "spec": {"replicas": 3, "ratio": 0.25, "size": 2.0, "enabled": true, "tags": {"b": 1, "a": 2}, "when": ago(30), "bad": "yesterday"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    #[test]
    fn columns_and_cells() {
        let cols = vec![
            column("Replicas", "integer", ".spec.replicas"),
            column(
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
            ),
            column("Tier", "string", ".metadata.labels.tier"),
            column("Ratio", "number", ".spec.ratio"),
            column("Enabled", "boolean", ".spec.enabled"),
            column("Tags", "string", ".spec.tags"),
            column("When", "date", ".spec.when"),
            column("Bad", "date", ".spec.bad"),
            column("Missing", "string", ".spec.nothing"),
            column("Mistyped", "integer", ".metadata.name"),
            column("Count", "string", ".spec.replicas"),
            PrinterColumn {
                priority: 1,
                description: "extra".into(),
                ..column("Size", "integer", ".spec.size")
            },
        ];
        let t = custom_table(&cols, &[object()], &TableOptions::new(now()));
        let defs = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(defs.len(), 13);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(
            defs[1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(defs[12]["priority"], 1);
        assert_eq!(defs[12]["description"], "extra");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "w1",
                3,
                "True",
                "gold",
                0.25,
                true,
                "{\"a\":2,\"b\":1}",
                "30s",
                "<invalid>",
                null,
                null,
                "3",
                2
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn default_age_column() {
        let t = custom_table(&[], &[object()], &TableOptions::new(now()));
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Age"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["w1", "60m"]));
    }

    #[test]
    fn deserialises_from_crd_json() {
        let c: PrinterColumn = serde_json::from_value(json!({
            "name": "Status", "type": "string", "jsonPath": ".status.phase", "priority": 1
        }))
        .unwrap();
        assert_eq!(c.kind, "string");
        assert_eq!(c.json_path, ".status.phase");
        assert_eq!(c.priority, 1);
    }

    #[test]
    fn go_float_format() {
        assert_eq!(go_float(0.25), "0.25");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-07");
        assert_eq!(text(&json!(2.5)), "2.5");
        assert_eq!(text(&json!([1, "a"])), "[1,\"a\"]");
    }
}
