//! Events, from the core group and from `events.k8s.io` (whose field names differ but which
//! upstream prints with the same printer).

use serde_json::{json, Value};

use crate::table::format::{int, name, parse_time, st, Ctx};
use crate::table::{col, wide, Column, Printer, Row, NAME_DESC};

static EVENT_COLUMNS: [Column; 10] = [
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("", "events") => Some(Printer {
            columns: &EVENT_COLUMNS,
            row: core_event_row,
        }),
        ("events.k8s.io", "events") => Some(Printer {
            columns: &EVENT_COLUMNS,
            row: new_event_row,
        }),
        _ => None,
    }
}

/// The fields of an event the printer needs, whichever API group it was read from.
struct EventView<'a> {
    first: &'a Value,
    last: &'a Value,
    event_time: &'a Value,
    count: i64,
    series: &'a Value,
    kind: &'a str,
    object_name: &'a str,
    field_path: &'a str,
    kind_type: &'a str,
    reason: &'a str,
    message: &'a str,
    component: &'a str,
    host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
}

fn core_event_row(ev: &Value, ctx: &Ctx) -> Row {
    event_row(
        ev,
        &EventView {
            first: &ev["firstTimestamp"],
            last: &ev["lastTimestamp"],
            event_time: &ev["eventTime"],
            count: int(&ev["count"]),
            series: &ev["series"],
            kind: st(&ev["involvedObject"]["kind"]),
            object_name: st(&ev["involvedObject"]["name"]),
            field_path: st(&ev["involvedObject"]["fieldPath"]),
            kind_type: st(&ev["type"]),
            reason: st(&ev["reason"]),
            message: st(&ev["message"]),
            component: st(&ev["source"]["component"]),
            host: st(&ev["source"]["host"]),
            // core/v1 serialises ReportingController as `reportingComponent`.
            reporting_controller: st(&ev["reportingComponent"]),
            reporting_instance: st(&ev["reportingInstance"]),
        },
        ctx,
    )
}

fn new_event_row(ev: &Value, ctx: &Ctx) -> Row {
    event_row(
        ev,
        &EventView {
            first: &ev["deprecatedFirstTimestamp"],
            last: &ev["deprecatedLastTimestamp"],
            event_time: &ev["eventTime"],
            count: int(&ev["deprecatedCount"]),
            series: &ev["series"],
            kind: st(&ev["regarding"]["kind"]),
            object_name: st(&ev["regarding"]["name"]),
            field_path: st(&ev["regarding"]["fieldPath"]),
            kind_type: st(&ev["type"]),
            reason: st(&ev["reason"]),
            message: st(&ev["note"]),
            component: st(&ev["deprecatedSource"]["component"]),
            host: st(&ev["deprecatedSource"]["host"]),
            reporting_controller: st(&ev["reportingController"]),
            reporting_instance: st(&ev["reportingInstance"]),
        },
        ctx,
    )
}

fn event_row(ev: &Value, v: &EventView<'_>, ctx: &Ctx) -> Row {
    let first = if parse_time(v.first).is_some() {
        ctx.since(v.first)
    } else {
        ctx.since(v.event_time)
    };
    let mut last = if parse_time(v.last).is_some() {
        ctx.since(v.last)
    } else {
        first.clone()
    };
    let mut count = v.count;
    if v.series.is_object() {
        last = ctx.since(&v.series["lastObservedTime"]);
        count = int(&v.series["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let target = if v.object_name.is_empty() {
        v.kind.to_lowercase()
    } else {
        format!("{}/{}", v.kind.to_lowercase(), v.object_name)
    };
    let component = if v.component.is_empty() {
        v.reporting_controller
    } else {
        v.component
    };
    let host = if v.host.is_empty() {
        v.reporting_instance
    } else {
        v.host
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(v.kind_type),
        json!(v.reason),
        json!(target),
        json!(v.field_path),
        json!(source),
        json!(v.message.trim()),
        json!(first),
        json!(count),
        json!(name(ev)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, cells, names, one};

    #[test]
    fn core_event() {
        let t = one(
            "",
            "events",
            json!({
                "metadata": {"name": "p.123"},
                "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
                "reason": "Pulled", "message": " Pulled image \n", "type": "Normal",
                "source": {"component": "kubelet", "host": "n1"},
                "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 3
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/p"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("Pulled image"),
                json!("10m"),
                json!(3),
                json!("p.123")
            ]
        );
    }

    #[test]
    fn new_api_event() {
        let t = one(
            "events.k8s.io",
            "events",
            json!({
                "metadata": {"name": "e1"},
                "regarding": {"kind": "Node", "name": ""},
                "reason": "Starting", "note": "started", "type": "Normal",
                "reportingController": "skiff-kubelet", "reportingInstance": "n1",
                "eventTime": ago(5)
            }),
        );
        let c = cells(&t);
        assert_eq!(c[0], "5s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "skiff-kubelet, n1");
        assert_eq!(c[6], "started");
        assert_eq!(c[7], "5s");
        assert_eq!(c[8], 1);
        let t = one(
            "",
            "events",
            json!({"metadata": {"name": "e2"}, "series": {"count": 7, "lastObservedTime": ago(2)}, "eventTime": ago(100)}),
        );
        let c = cells(&t);
        assert_eq!(c[0], "2s");
        assert_eq!(c[7], "100s");
        assert_eq!(c[8], 7);
        let t = one("", "events", json!({"metadata": {"name": "e3"}}));
        assert_eq!(cells(&t)[0], "<unknown>");
    }
}
