//! Server-side printing: turns objects into `meta.k8s.io/v1` `Table` responses.
//!
//! `kubectl get` asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints
//! whatever columns the server returns, so the columns, priorities and cell values here follow
//! upstream's printers (Kubernetes 1.33, `pkg/printers/internalversion`) one kind at a time.
//! Like upstream's API server, rows are always generated in wide form (priority-1 columns
//! included); kubectl hides them unless `-o wide` is given.
//!
//! Kinds without a printer get upstream's default table (`Name`, `Created At`); custom
//! resources use [`custom_table`] with the CRD's `additionalPrinterColumns`.
//!
//! Everything here is pure: the caller passes the objects (already in the requested
//! version, as JSON) and the current time.

mod apps;
mod batch;
mod cluster;
mod core;
mod custom;
mod dra;
mod events;
mod format;
pub mod jsonpath;
mod networking;
mod pod;
mod rbac;
mod storage;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub use custom::{custom_table, PrinterColumn};
pub use format::human_duration;
use format::{rfc3339, Ctx};

/// What each row carries in `row.object`, from the `includeObject` parameter of the Accept
/// header (`application/json;as=Table;v=v1;g=meta.k8s.io;includeObject=Object`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// `row.object` is null.
    None,
    /// `row.object` is a `PartialObjectMetadata` holding the object's metadata. kubectl's
    /// default, and what upstream does when the parameter is absent.
    #[default]
    Metadata,
    /// `row.object` is the whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` parameter value; an empty value means the default
    /// (`Metadata`). Unknown values give `None` so the caller can answer 400 as upstream does.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "" | "Metadata" => Some(Self::Metadata),
            "None" => Some(Self::None),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Options of one Table conversion.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// What `row.object` holds.
    pub include_object: IncludeObject,
    /// `noHeaders` from `TableOptions`: when true `columnDefinitions` is null.
    pub no_headers: bool,
    /// The instant ages are computed against.
    pub now: DateTime<Utc>,
    /// `metadata.resourceVersion` of the list (or the single object).
    pub resource_version: String,
    /// `metadata.continue` of a paged list.
    pub continue_token: Option<String>,
    /// `metadata.remainingItemCount` of a paged list.
    pub remaining_item_count: Option<i64>,
}

impl TableOptions {
    /// Options with kubectl's defaults (metadata rows, headers) at time `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            include_object: IncludeObject::Metadata,
            no_headers: false,
            now,
            resource_version: String::new(),
            continue_token: None,
            remaining_item_count: None,
        }
    }
}

/// One column definition of a built-in printer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

/// Description of `metadata.name`, as upstream's `ObjectMeta` swagger doc has it.
pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// Description of `metadata.creationTimestamp`, as upstream's `ObjectMeta` swagger doc has it.
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `Name` column every printer starts with.
pub(crate) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};

/// The `Age` column.
pub(crate) const AGE: Column = col("Age", "string", AGE_DESC);

/// A priority-0 column.
pub(crate) const fn col(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

/// A priority-1 column, shown by kubectl only with `-o wide`.
pub(crate) const fn wide(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 1,
    }
}

/// The cells (and optional row conditions) a printer makes of one object.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub cells: Vec<Value>,
    pub conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Self {
        Self {
            cells,
            conditions: None,
        }
    }
}

/// The function a printer uses to make the row of one object.
pub(crate) type RowFn = fn(&Value, &Ctx) -> Row;

/// A built-in printer: its columns and the function making one row.
#[derive(Clone, Copy)]
pub(crate) struct Printer {
    pub columns: &'static [Column],
    pub row: RowFn,
}

/// Finds the printer for a group and plural resource name.
fn printer(group: &str, resource: &str) -> Option<Printer> {
    pod::printer(group, resource)
        .or_else(|| self::core::printer(group, resource))
        .or_else(|| events::printer(group, resource))
        .or_else(|| apps::printer(group, resource))
        .or_else(|| batch::printer(group, resource))
        .or_else(|| networking::printer(group, resource))
        .or_else(|| storage::printer(group, resource))
        .or_else(|| rbac::printer(group, resource))
        .or_else(|| cluster::printer(group, resource))
        .or_else(|| dra::printer(group, resource))
}

/// True when a built-in printer exists for the resource (otherwise [`table`] falls back to
/// upstream's default `Name`/`Created At` table).
pub fn has_printer(group: &str, resource: &str) -> bool {
    printer(group, resource).is_some()
}

/// Builds the `Table` for `objects` of a built-in (or aggregated, or unknown) resource:
/// `group` is the API group (`""` for core) and `resource` the plural name (`pods`). The
/// objects must be full JSON objects; a single-object GET passes a slice of one.
pub fn table(group: &str, resource: &str, objects: &[Value], opts: &TableOptions) -> Value {
    let ctx = Ctx { now: opts.now };
    match printer(group, resource) {
        Some(p) => {
            let columns: Vec<Value> = p.columns.iter().map(column_json).collect();
            let mut ordered: Vec<&Value> = objects.iter().collect();
            if (group, resource) == ("flowcontrol.apiserver.k8s.io", "flowschemas") {
                // Upstream prints flow schemas in the order the API server evaluates them.
                ordered.sort_by(|a, b| {
                    let key = |o: &Value| {
                        (
                            format::int(&o["spec"]["matchingPrecedence"]),
                            format::name(o).to_string(),
                        )
                    };
                    key(a).cmp(&key(b))
                });
            }
            let rows = ordered.into_iter().map(|o| ((p.row)(o, &ctx), o)).collect();
            assemble(columns, rows, opts)
        }
        None => default_table(objects, opts),
    }
}

/// Upstream's default table convertor (`rest.NewDefaultTableConvertor`): the name and the
/// creation time as an RFC 3339 date, which kubectl shows as `NAME` and `CREATED AT`.
fn default_table(objects: &[Value], opts: &TableOptions) -> Value {
    let columns = vec![
        column_json(&NAME),
        column_json(&col("Created At", "date", AGE_DESC)),
    ];
    let rows = objects
        .iter()
        .map(|o| {
            let created = format::parse_time(&o["metadata"]["creationTimestamp"])
                .map(|t| rfc3339(&t))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
            (Row::from(vec![json!(format::name(o)), json!(created)]), o)
        })
        .collect();
    assemble(columns, rows, opts)
}

/// The JSON form of a column definition (every field present, as upstream marshals it).
fn column_json(c: &Column) -> Value {
    json!({
        "name": c.name,
        "type": c.kind,
        "format": c.format,
        "description": c.description,
        "priority": c.priority,
    })
}

/// Wraps rows into the `Table` object, applying `noHeaders` and `includeObject`.
pub(crate) fn assemble(
    columns: Vec<Value>,
    rows: Vec<(Row, &Value)>,
    opts: &TableOptions,
) -> Value {
    let mut metadata = Map::new();
    if !opts.resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(opts.resource_version));
    }
    if let Some(c) = opts.continue_token.as_deref().filter(|c| !c.is_empty()) {
        metadata.insert("continue".into(), json!(c));
    }
    if let Some(n) = opts.remaining_item_count {
        metadata.insert("remainingItemCount".into(), json!(n));
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(row, obj)| {
            let mut r = Map::new();
            r.insert("cells".into(), Value::Array(row.cells));
            if let Some(c) = row.conditions {
                r.insert("conditions".into(), c);
            }
            r.insert("object".into(), row_object(obj, opts.include_object));
            Value::Object(r)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        // Upstream leaves the definitions nil (JSON null) when headers are not wanted.
        "columnDefinitions": if opts.no_headers { Value::Null } else { Value::Array(columns) },
        "rows": rows,
    })
}

/// What a row carries in `object` for the requested `includeObject`.
fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed "now" for tests: 2024-06-01T12:00:00Z.
    pub(crate) fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// `now()` minus `secs` seconds, as an RFC 3339 string.
    pub(crate) fn ago(secs: i64) -> String {
        rfc3339(&(now() - chrono::Duration::seconds(secs)))
    }

    /// Builds a table of one object with default options and returns it.
    pub(crate) fn one(group: &str, resource: &str, obj: Value) -> Value {
        table(group, resource, &[obj], &TableOptions::new(now()))
    }

    /// The column names of a table.
    pub(crate) fn names(t: &Value) -> Vec<String> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The cells of the first row.
    pub(crate) fn cells(t: &Value) -> Vec<Value> {
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    #[test]
    fn default_table_has_name_and_created_at() {
        let obj = json!({"metadata": {"name": "r1", "creationTimestamp": "2024-06-01T11:00:00Z", "uid": "u"}});
        let t = one("rbac.authorization.k8s.io", "roles", obj);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(names(&t), ["Name", "Created At"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(cells(&t), vec![json!("r1"), json!("2024-06-01T11:00:00Z")]);
        let o = &t["rows"][0]["object"];
        assert_eq!(o["kind"], "PartialObjectMetadata");
        assert_eq!(o["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(o["metadata"]["uid"], "u");
    }

    #[test]
    fn list_metadata_and_options() {
        let mut opts = TableOptions::new(now());
        opts.resource_version = "42".into();
        opts.continue_token = Some("abc".into());
        opts.remaining_item_count = Some(7);
        opts.no_headers = true;
        opts.include_object = IncludeObject::Object;
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}});
        let t = table("", "configmaps", std::slice::from_ref(&obj), &opts);
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "42", "continue": "abc", "remainingItemCount": 7})
        );
        assert!(t["columnDefinitions"].is_null());
        assert_eq!(t["rows"][0]["object"], obj);
        opts.include_object = IncludeObject::None;
        let t = table("", "configmaps", &[obj], &opts);
        assert!(t["rows"][0]["object"].is_null());
        let empty = table("", "configmaps", &[], &TableOptions::new(now()));
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(empty["metadata"], json!({}));
    }

    #[test]
    fn flow_schemas_are_ordered_by_precedence() {
        let fs =
            |n: &str, p: i64| json!({"metadata": {"name": n}, "spec": {"matchingPrecedence": p}});
        let t = table(
            "flowcontrol.apiserver.k8s.io",
            "flowschemas",
            &[
                fs("global-default", 9900),
                fs("exempt", 1),
                fs("catch-all", 10000),
                fs("b", 1),
            ],
            &TableOptions::new(now()),
        );
        let order: Vec<&str> = t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["cells"][0].as_str().unwrap())
            .collect();
        assert_eq!(order, ["b", "exempt", "global-default", "catch-all"]);
    }

    #[test]
    fn include_object_parse() {
        assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("None"), Some(IncludeObject::None));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }

    #[test]
    fn every_printer_row_matches_its_columns() {
        // An empty object exercises every printer's zero-value paths; cells must line up
        // with columns or kubectl mis-renders the table.
        let resources: &[(&str, &str)] = &[
            ("", "pods"),
            ("", "podtemplates"),
            ("", "nodes"),
            ("", "namespaces"),
            ("", "services"),
            ("", "endpoints"),
            ("", "configmaps"),
            ("", "secrets"),
            ("", "serviceaccounts"),
            ("", "events"),
            ("events.k8s.io", "events"),
            ("", "persistentvolumes"),
            ("", "persistentvolumeclaims"),
            ("", "replicationcontrollers"),
            ("", "resourcequotas"),
            ("", "componentstatuses"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "ingressclasses"),
            ("networking.k8s.io", "networkpolicies"),
            ("networking.k8s.io", "servicecidrs"),
            ("networking.k8s.io", "ipaddresses"),
            ("discovery.k8s.io", "endpointslices"),
            ("storage.k8s.io", "storageclasses"),
            ("storage.k8s.io", "csidrivers"),
            ("storage.k8s.io", "csinodes"),
            ("storage.k8s.io", "volumeattachments"),
            ("storage.k8s.io", "csistoragecapacities"),
            ("storage.k8s.io", "volumeattributesclasses"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("policy", "poddisruptionbudgets"),
            ("coordination.k8s.io", "leases"),
            ("scheduling.k8s.io", "priorityclasses"),
            ("node.k8s.io", "runtimeclasses"),
            ("certificates.k8s.io", "certificatesigningrequests"),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
            ),
            ("flowcontrol.apiserver.k8s.io", "flowschemas"),
            (
                "flowcontrol.apiserver.k8s.io",
                "prioritylevelconfigurations",
            ),
            ("apiregistration.k8s.io", "apiservices"),
            ("coordination.k8s.io", "leasecandidates"),
            ("certificates.k8s.io", "clustertrustbundles"),
            ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
            (
                "admissionregistration.k8s.io",
                "mutatingadmissionpolicybindings",
            ),
            ("resource.k8s.io", "deviceclasses"),
            ("resource.k8s.io", "resourceclaims"),
            ("resource.k8s.io", "resourceclaimtemplates"),
            ("resource.k8s.io", "resourceslices"),
        ];
        for (g, r) in resources {
            assert!(has_printer(g, r), "no printer for {g}/{r}");
            let t = one(g, r, json!({"metadata": {"name": "x"}}));
            assert_eq!(
                names(&t).len(),
                cells(&t).len(),
                "cells do not match columns for {g}/{r}"
            );
        }
    }
}
