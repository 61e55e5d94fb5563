//! Dynamic resource allocation (`resource.k8s.io`): device classes, resource claims, claim
//! templates and resource slices.

use serde_json::{json, Value};

use crate::table::format::{deleting, list, name, st, Ctx};
use crate::table::{col, Column, Printer, Row, RowFn, AGE, NAME};

static NAME_AGE_COLUMNS: [Column; 2] = [NAME, AGE];

static RESOURCE_CLAIM_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "State",
        "string",
        "A summary of the current state (allocated, pending, reserved, etc.).",
    ),
    AGE,
];

static RESOURCE_SLICE_COLUMNS: [Column; 5] = [
    NAME,
    col(
        "Node",
        "string",
        "NodeName identifies the node which provides the resources in this pool.",
    ),
    col(
        "Driver",
        "string",
        "Driver identifies the DRA driver providing the capacity information.",
    ),
    col("Pool", "string", "Name is used to identify the pool."),
    AGE,
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    if group != "resource.k8s.io" {
        return None;
    }
    let (columns, row): (&'static [Column], RowFn) = match resource {
        "deviceclasses" | "resourceclaimtemplates" => (&NAME_AGE_COLUMNS, name_age_row),
        "resourceclaims" => (&RESOURCE_CLAIM_COLUMNS, resource_claim_row),
        "resourceslices" => (&RESOURCE_SLICE_COLUMNS, resource_slice_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

fn name_age_row(obj: &Value, ctx: &Ctx) -> Row {
    vec![json!(name(obj)), json!(ctx.age(obj))].into()
}

/// The STATE cell: `deleted`, `pending`, `allocated`, `reserved`, comma-joined.
fn claim_state(claim: &Value) -> String {
    let mut states: Vec<&str> = Vec::new();
    let is_deleting = deleting(claim);
    if is_deleting {
        states.push("deleted");
    }
    let status = &claim["status"];
    if status["allocation"].is_null() {
        if !is_deleting {
            states.push("pending");
        }
    } else {
        states.push("allocated");
        if !list(&status["reservedFor"]).is_empty() {
            states.push("reserved");
        }
    }
    states.join(",")
}

fn resource_claim_row(claim: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(claim)),
        json!(claim_state(claim)),
        json!(ctx.age(claim)),
    ]
    .into()
}

fn resource_slice_row(slice: &Value, ctx: &Ctx) -> Row {
    let spec = &slice["spec"];
    vec![
        json!(name(slice)),
        json!(st(&spec["nodeName"])),
        json!(st(&spec["driver"])),
        json!(st(&spec["pool"]["name"])),
        json!(ctx.age(slice)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{cells, names, one};

    #[test]
    fn claims() {
        let claim = |status: Value, deleted: bool| {
            let mut c = json!({"metadata": {"name": "c"}, "status": status});
            if deleted {
                c["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:00:00Z");
            }
            cells(&one("resource.k8s.io", "resourceclaims", c))[1].clone()
        };
        assert_eq!(claim(json!({}), false), "pending");
        assert_eq!(claim(json!({}), true), "deleted");
        assert_eq!(claim(json!({"allocation": {}}), false), "allocated");
        assert_eq!(
            claim(
                json!({"allocation": {}, "reservedFor": [{"name": "p"}]}),
                true
            ),
            "deleted,allocated,reserved"
        );
    }

    #[test]
    fn slices_and_classes() {
        let t = one(
            "resource.k8s.io",
            "resourceslices",
            json!({"metadata": {"name": "s"}, "spec": {"nodeName": "n1", "driver": "gpu.example.com", "pool": {"name": "p"}}}),
        );
        assert_eq!(names(&t), ["Name", "Node", "Driver", "Pool", "Age"]);
        assert_eq!(
            cells(&t)[1..4],
            [json!("n1"), json!("gpu.example.com"), json!("p")]
        );
        let t = one(
            "resource.k8s.io",
            "deviceclasses",
            json!({"metadata": {"name": "gpu"}}),
        );
        assert_eq!(names(&t), ["Name", "Age"]);
    }
}
