//! `batch` kinds: jobs and cron jobs.

use serde_json::{json, Value};

use crate::table::format::{
    bool_ptr, container_cells, deleting, format_label_selector, human_duration, int, list, name,
    parse_time, st, Ctx,
};
use crate::table::{col, wide, Column, Printer, Row, AGE, NAME};

static JOB_COLUMNS: [Column; 8] = [
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    wide(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    wide(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

static CRON_JOB_COLUMNS: [Column; 10] = [
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    wide("Containers", "string", "Names of each container in the template."),
    wide("Images", "string", "Images referenced by each container in the template."),
    wide("Selector", "string", "A label query over pods that should match the pod count."),
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("batch", "jobs") => Some(Printer {
            columns: &JOB_COLUMNS,
            row: job_row,
        }),
        ("batch", "cronjobs") => Some(Printer {
            columns: &CRON_JOB_COLUMNS,
            row: cron_job_row,
        }),
        _ => None,
    }
}

/// True when the job has condition `kind` and it is `True` (the first one of that type
/// decides, as upstream's `hasJobCondition` does).
fn has_condition(job: &Value, kind: &str) -> bool {
    list(&job["status"]["conditions"])
        .iter()
        .find(|c| st(&c["type"]) == kind)
        .is_some_and(|c| st(&c["status"]) == "True")
}

fn job_row(job: &Value, ctx: &Ctx) -> Row {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = if spec["completions"].is_number() {
        format!("{succeeded}/{}", int(&spec["completions"]))
    } else {
        let parallelism = int(&spec["parallelism"]);
        if parallelism > 1 {
            format!("{succeeded}/1 of {parallelism}")
        } else {
            format!("{succeeded}/1")
        }
    };
    let duration = match (
        parse_time(&status["startTime"]),
        parse_time(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => ctx.since_time(start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let state = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(&spec["template"]["spec"]);
    vec![
        json!(name(job)),
        json!(state),
        json!(completions),
        json!(duration),
        json!(ctx.age(job)),
        json!(names),
        json!(images),
        json!(format_label_selector(&spec["selector"])),
    ]
    .into()
}

fn cron_job_row(cj: &Value, ctx: &Ctx) -> Row {
    let spec = &cj["spec"];
    let last_schedule = if cj["status"]["lastScheduleTime"].is_null() {
        "<none>".to_string()
    } else {
        ctx.since(&cj["status"]["lastScheduleTime"])
    };
    let time_zone = match spec["timeZone"].as_str() {
        Some(tz) => tz.to_string(),
        None => "<none>".to_string(),
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = container_cells(&job_spec["template"]["spec"]);
    vec![
        json!(name(cj)),
        json!(st(&spec["schedule"])),
        json!(time_zone),
        json!(bool_ptr(&spec["suspend"])),
        json!(list(&cj["status"]["active"]).len()),
        json!(last_schedule),
        json!(ctx.age(cj)),
        json!(names),
        json!(images),
        json!(format_label_selector(&job_spec["selector"])),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, cells, names, one};

    #[test]
    fn job_columns_and_running() {
        let t = one(
            "batch",
            "jobs",
            json!({
                "metadata": {"name": "pi", "creationTimestamp": ago(90)},
                "spec": {"completions": 3, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                         "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
                "status": {"succeeded": 1, "startTime": ago(80)}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("pi"),
                json!("Running"),
                json!("1/3"),
                json!("80s"),
                json!("90s"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
    }

    #[test]
    fn job_states_and_completions() {
        let job = |spec: Value, status: Value| {
            cells(&one(
                "batch",
                "jobs",
                json!({"metadata": {"name": "j"}, "spec": spec, "status": status}),
            ))
        };
        let c = job(
            json!({"completions": 1}),
            json!({
                "succeeded": 1, "startTime": "2024-06-01T10:00:00Z", "completionTime": "2024-06-01T10:00:07Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]
            }),
        );
        assert_eq!(c[1], "Complete");
        assert_eq!(c[2], "1/1");
        assert_eq!(c[3], "7s");
        assert_eq!(job(json!({"parallelism": 4}), json!({}))[2], "0/1 of 4");
        assert_eq!(job(json!({}), json!({}))[2], "0/1");
        assert_eq!(job(json!({}), json!({}))[3], "");
        assert_eq!(
            job(
                json!({}),
                json!({"conditions": [{"type": "Failed", "status": "True"}]})
            )[1],
            "Failed"
        );
        assert_eq!(
            job(
                json!({}),
                json!({"conditions": [{"type": "Suspended", "status": "True"}]})
            )[1],
            "Suspended"
        );
        assert_eq!(
            job(
                json!({}),
                json!({"conditions": [{"type": "FailureTarget", "status": "True"}]})
            )[1],
            "FailureTarget"
        );
        assert_eq!(
            job(
                json!({}),
                json!({"conditions": [{"type": "Complete", "status": "False"}]})
            )[1],
            "Running"
        );
        let t = one(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j", "deletionTimestamp": ago(1)}}),
        );
        assert_eq!(cells(&t)[1], "Terminating");
    }

    #[test]
    fn cron_job() {
        let t = one(
            "batch",
            "cronjobs",
            json!({
                "metadata": {"name": "hello", "creationTimestamp": ago(3600)},
                "spec": {"schedule": "*/1 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "h", "image": "busybox"}]}}}}},
                "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(30)}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("hello"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("30s"),
                json!("60m"),
                json!("h"),
                json!("busybox"),
                json!("<none>")
            ]
        );
        let t = one(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "x"}, "spec": {"timeZone": "Etc/UTC"}}),
        );
        assert_eq!(cells(&t)[2], "Etc/UTC");
        assert_eq!(cells(&t)[3], "<unset>");
        assert_eq!(cells(&t)[5], "<none>");
    }
}
