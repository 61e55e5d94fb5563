//! Cluster-level and control-plane kinds: horizontal pod autoscalers, pod disruption
//! budgets, leases, priority and runtime classes, certificate signing requests, admission
//! configuration, API priority and fairness, and aggregated API services.

use serde_json::{json, Value};

use crate::table::format::{
    condition, human_duration, int, int_or_string, list, name, selector_string, st, Ctx,
};
use crate::table::{col, Column, Printer, Row, RowFn, AGE, NAME};

static HPA_COLUMNS: [Column; 7] = [
    NAME,
    col("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
    col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count."),
    col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
    col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
    col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
    AGE,
];

static PDB_COLUMNS: [Column; 5] = [
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

static LEASE_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

static PRIORITY_CLASS_COLUMNS: [Column; 5] = [
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

static RUNTIME_CLASS_COLUMNS: [Column; 3] = [
    NAME,
    col("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
    AGE,
];

static CSR_COLUMNS: [Column; 6] = [
    NAME,
    AGE,
    col(
        "SignerName",
        "string",
        "signerName indicates the requested signer, and is a qualified name.",
    ),
    col(
        "Requestor",
        "string",
        "username contains the name of the user that created the CertificateSigningRequest.",
    ),
    col(
        "RequestedDuration",
        "string",
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col("Condition", "string", "conditions applied to the request."),
];

static WEBHOOK_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

static VALIDATING_POLICY_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

static MUTATING_POLICY_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Mutations",
        "integer",
        "Mutation indicates the number of mutations rules defined in this configuration",
    ),
    col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

static POLICY_BINDING_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
    ),
    AGE,
];

static FLOW_SCHEMA_COLUMNS: [Column; 6] = [
    NAME,
    col("PriorityLevel", "string", "`name` is the name of the priority level configuration being referenced Required."),
    col("MatchingPrecedence", "string", "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request."),
    col("DistinguisherMethod", "string", "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema."),
    AGE,
    col("MissingPL", "string", "references a broken or non-existent PriorityLevelConfiguration"),
];

static PRIORITY_LEVEL_COLUMNS: [Column; 7] = [
    NAME,
    col("Type", "string", "`type` indicates whether this priority level is subject to limitation on request execution."),
    col("NominalConcurrencyShares", "string", "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level."),
    col("Queues", "string", "`queues` is the number of queues for this priority level."),
    col("HandSize", "string", "`handSize` is a small positive number that configures the shuffle sharding of requests into queues."),
    col("QueueLengthLimit", "string", "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time."),
    AGE,
];

static LEASE_CANDIDATE_COLUMNS: [Column; 5] = [
    NAME,
    col(
        "LeaseName",
        "string",
        "LeaseName is the name of the lease for which this candidate is contending.",
    ),
    col(
        "BinaryVersion",
        "string",
        "BinaryVersion is the binary version.",
    ),
    col(
        "EmulationVersion",
        "string",
        "EmulationVersion is the emulation version.",
    ),
    AGE,
];

static CLUSTER_TRUST_BUNDLE_COLUMNS: [Column; 2] = [
    NAME,
    col(
        "SignerName",
        "string",
        "signerName indicates the associated signer, if any.",
    ),
];

static API_SERVICE_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Column], RowFn) = match (group, resource) {
        ("autoscaling", "horizontalpodautoscalers") => (&HPA_COLUMNS, hpa_row),
        ("policy", "poddisruptionbudgets") => (&PDB_COLUMNS, pdb_row),
        ("coordination.k8s.io", "leases") => (&LEASE_COLUMNS, lease_row),
        ("coordination.k8s.io", "leasecandidates") => {
            (&LEASE_CANDIDATE_COLUMNS, lease_candidate_row)
        }
        ("certificates.k8s.io", "clustertrustbundles") => {
            (&CLUSTER_TRUST_BUNDLE_COLUMNS, cluster_trust_bundle_row)
        }
        ("scheduling.k8s.io", "priorityclasses") => (&PRIORITY_CLASS_COLUMNS, priority_class_row),
        ("node.k8s.io", "runtimeclasses") => (&RUNTIME_CLASS_COLUMNS, runtime_class_row),
        ("certificates.k8s.io", "certificatesigningrequests") => (&CSR_COLUMNS, csr_row),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations",
        ) => (&WEBHOOK_COLUMNS, webhook_row),
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            (&VALIDATING_POLICY_COLUMNS, validating_policy_row)
        }
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies") => {
            (&MUTATING_POLICY_COLUMNS, mutating_policy_row)
        }
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings" | "mutatingadmissionpolicybindings",
        ) => (&POLICY_BINDING_COLUMNS, policy_binding_row),
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => (&FLOW_SCHEMA_COLUMNS, flow_schema_row),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            (&PRIORITY_LEVEL_COLUMNS, priority_level_row)
        }
        ("apiregistration.k8s.io", "apiservices") => (&API_SERVICE_COLUMNS, api_service_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

/// A quantity as stored (already canonical), `<unknown>` when the status lacks it.
fn qty(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// One TARGETS entry of an `autoscaling/v2` metric spec and its matching status.
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    // Status entries are matched by position and only count when they describe the same type.
    let cur = |key: &str| status.map(|s| &s[key]).filter(|v| v.is_object());
    match st(&spec["type"]) {
        "External" | "Object" => {
            let key = if st(&spec["type"]) == "External" {
                "external"
            } else {
                "object"
            };
            let target = &spec[key]["target"];
            let current = cur(key);
            if !target["averageValue"].is_null() {
                let c = current
                    .map(|c| &c["current"]["averageValue"])
                    .filter(|v| !v.is_null())
                    .map(qty)
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{c}/{} (avg)", qty(&target["averageValue"]))
            } else {
                let c = current
                    .map(|c| qty(&c["current"]["value"]))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{c}/{}", qty(&target["value"]))
            }
        }
        "Pods" => {
            let c = cur("pods")
                .map(|c| qty(&c["current"]["averageValue"]))
                .unwrap_or_else(|| "<unknown>".into());
            format!("{c}/{}", qty(&spec["pods"]["target"]["averageValue"]))
        }
        "Resource" | "ContainerResource" => {
            let key = if st(&spec["type"]) == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &spec[key];
            let target = &src["target"];
            let current = cur(key);
            if !target["averageValue"].is_null() {
                let c = current
                    .map(|c| qty(&c["current"]["averageValue"]))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{}: {c}/{}", st(&src["name"]), qty(&target["averageValue"]))
            } else {
                let c = current
                    .map(|c| &c["current"]["averageUtilization"])
                    .filter(|v| v.is_number())
                    .map(|v| format!("{}%", int(v)))
                    .unwrap_or_else(|| "<unknown>".into());
                let t = if target["averageUtilization"].is_number() {
                    format!("{}%", int(&target["averageUtilization"]))
                } else {
                    "<auto>".to_string()
                };
                format!("{}: {c}/{t}", st(&src["name"]))
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

/// The TARGETS cell: at most two metrics, then ` + N more...`.
fn hpa_targets(hpa: &Value) -> String {
    let spec = &hpa["spec"];
    let status = &hpa["status"];
    let mut entries: Vec<String> = if spec["metrics"].is_array() {
        let statuses = list(&status["currentMetrics"]);
        list(&spec["metrics"])
            .iter()
            .enumerate()
            .map(|(i, m)| hpa_metric(m, statuses.get(i)))
            .collect()
    } else if spec["targetCPUUtilizationPercentage"].is_number() {
        // autoscaling/v1 carries a single CPU utilisation target.
        let current = if status["currentCPUUtilizationPercentage"].is_number() {
            format!("{}%", int(&status["currentCPUUtilizationPercentage"]))
        } else {
            "<unknown>".to_string()
        };
        vec![format!(
            "cpu: {current}/{}%",
            int(&spec["targetCPUUtilizationPercentage"])
        )]
    } else {
        Vec::new()
    };
    if entries.is_empty() {
        return "<none>".to_string();
    }
    let count = entries.len();
    entries.truncate(2);
    let joined = entries.join(", ");
    if count > 2 {
        format!("{joined} + {} more...", count - 2)
    } else {
        joined
    }
}

fn hpa_row(hpa: &Value, ctx: &Ctx) -> Row {
    let spec = &hpa["spec"];
    let reference = format!(
        "{}/{}",
        st(&spec["scaleTargetRef"]["kind"]),
        st(&spec["scaleTargetRef"]["name"])
    );
    let min = if spec["minReplicas"].is_number() {
        int(&spec["minReplicas"]).to_string()
    } else {
        "<unset>".to_string()
    };
    vec![
        json!(name(hpa)),
        json!(reference),
        json!(hpa_targets(hpa)),
        json!(min),
        json!(int(&spec["maxReplicas"])),
        json!(int(&hpa["status"]["currentReplicas"])),
        json!(ctx.age(hpa)),
    ]
    .into()
}

fn pdb_row(pdb: &Value, ctx: &Ctx) -> Row {
    let spec = &pdb["spec"];
    let or_na = |v: &Value| {
        if v.is_null() {
            "N/A".to_string()
        } else {
            int_or_string(v)
        }
    };
    vec![
        json!(name(pdb)),
        json!(or_na(&spec["minAvailable"])),
        json!(or_na(&spec["maxUnavailable"])),
        json!(int(&pdb["status"]["disruptionsAllowed"])),
        json!(ctx.age(pdb)),
    ]
    .into()
}

fn lease_row(l: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(l)),
        json!(st(&l["spec"]["holderIdentity"])),
        json!(ctx.age(l)),
    ]
    .into()
}

fn lease_candidate_row(l: &Value, ctx: &Ctx) -> Row {
    let spec = &l["spec"];
    vec![
        json!(name(l)),
        json!(st(&spec["leaseName"])),
        json!(st(&spec["binaryVersion"])),
        json!(st(&spec["emulationVersion"])),
        json!(ctx.age(l)),
    ]
    .into()
}

fn cluster_trust_bundle_row(b: &Value, _ctx: &Ctx) -> Row {
    let signer = match st(&b["spec"]["signerName"]) {
        "" => "<none>",
        s => s,
    };
    vec![json!(name(b)), json!(signer)].into()
}

fn priority_class_row(pc: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(pc)),
        json!(int(&pc["value"])),
        json!(pc["globalDefault"].as_bool().unwrap_or(false)),
        json!(ctx.age(pc)),
        json!(st(&pc["preemptionPolicy"])),
    ]
    .into()
}

fn runtime_class_row(rc: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(rc)),
        json!(st(&rc["handler"])),
        json!(ctx.age(rc)),
    ]
    .into()
}

/// The CONDITION cell of a CSR: `Denied`/`Approved`/`Pending`, then `,Failed`, `,Issued`.
fn csr_status(csr: &Value) -> String {
    let conditions = &csr["status"]["conditions"];
    let has = |t: &str| condition(conditions, t).is_some();
    let mut s = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        s.push_str(",Failed");
    }
    if !st(&csr["status"]["certificate"]).is_empty() {
        s.push_str(",Issued");
    }
    s
}

fn csr_row(csr: &Value, ctx: &Ctx) -> Row {
    let spec = &csr["spec"];
    let signer = match st(&spec["signerName"]) {
        "" => "<none>",
        s => s,
    };
    let duration = if spec["expirationSeconds"].is_number() {
        human_duration(chrono::Duration::seconds(int(&spec["expirationSeconds"])))
    } else {
        "<none>".to_string()
    };
    vec![
        json!(name(csr)),
        json!(ctx.age(csr)),
        json!(signer),
        json!(st(&spec["username"])),
        json!(duration),
        json!(csr_status(csr)),
    ]
    .into()
}

fn webhook_row(w: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(w)),
        json!(list(&w["webhooks"]).len()),
        json!(ctx.age(w)),
    ]
    .into()
}

/// `apiVersion/kind` of a policy's `paramKind`, `<unset>` when absent.
fn param_kind(policy: &Value) -> String {
    let pk = &policy["spec"]["paramKind"];
    if pk.is_object() {
        format!("{}/{}", st(&pk["apiVersion"]), st(&pk["kind"]))
    } else {
        "<unset>".to_string()
    }
}

fn validating_policy_row(p: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(p)),
        json!(list(&p["spec"]["validations"]).len()),
        json!(param_kind(p)),
        json!(ctx.age(p)),
    ]
    .into()
}

fn mutating_policy_row(p: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(p)),
        json!(list(&p["spec"]["mutations"]).len()),
        json!(param_kind(p)),
        json!(ctx.age(p)),
    ]
    .into()
}

fn policy_binding_row(b: &Value, ctx: &Ctx) -> Row {
    let pr = &b["spec"]["paramRef"];
    let param = if !pr.is_object() {
        "<unset>".to_string()
    } else if !st(&pr["name"]).is_empty() {
        // Without a namespace the param could be cluster-scoped or in any namespace.
        match st(&pr["namespace"]) {
            "" => format!("*/{}", st(&pr["name"])),
            ns => format!("{ns}/{}", st(&pr["name"])),
        }
    } else if pr["selector"].is_object() {
        selector_string(&pr["selector"]).unwrap_or_default()
    } else {
        "<unset>".to_string()
    };
    vec![
        json!(name(b)),
        json!(st(&b["spec"]["policyName"])),
        json!(param),
        json!(ctx.age(b)),
    ]
    .into()
}

fn flow_schema_row(fs: &Value, ctx: &Ctx) -> Row {
    let spec = &fs["spec"];
    let distinguisher = if spec["distinguisherMethod"].is_object() {
        st(&spec["distinguisherMethod"]["type"]).to_string()
    } else {
        "<none>".to_string()
    };
    let missing = condition(&fs["status"]["conditions"], "Dangling")
        .map(|c| st(&c["status"]).to_string())
        .unwrap_or_else(|| "?".to_string());
    vec![
        json!(name(fs)),
        json!(st(&spec["priorityLevelConfiguration"]["name"])),
        json!(int(&spec["matchingPrecedence"])),
        json!(distinguisher),
        json!(ctx.age(fs)),
        json!(missing),
    ]
    .into()
}

fn priority_level_row(pl: &Value, ctx: &Ctx) -> Row {
    let spec = &pl["spec"];
    let limited = &spec["limited"];
    let none = || json!("<none>");
    let (ncs, queues, hand, qlen) = if limited.is_object() {
        let q = &limited["limitResponse"]["queuing"];
        if q.is_object() {
            (
                json!(int(&limited["nominalConcurrencyShares"])),
                json!(int(&q["queues"])),
                json!(int(&q["handSize"])),
                json!(int(&q["queueLengthLimit"])),
            )
        } else {
            (
                json!(int(&limited["nominalConcurrencyShares"])),
                none(),
                none(),
                none(),
            )
        }
    } else {
        (none(), none(), none(), none())
    };
    vec![
        json!(name(pl)),
        json!(st(&spec["type"])),
        ncs,
        queues,
        hand,
        qlen,
        json!(ctx.age(pl)),
    ]
    .into()
}

fn api_service_row(a: &Value, ctx: &Ctx) -> Row {
    let svc = &a["spec"]["service"];
    let service = if svc.is_object() {
        format!("{}/{}", st(&svc["namespace"]), st(&svc["name"]))
    } else {
        "Local".to_string()
    };
    let available = match condition(&a["status"]["conditions"], "Available") {
        None => "Unknown".to_string(),
        Some(c) if st(&c["status"]) == "True" => "True".to_string(),
        Some(c) if !st(&c["reason"]).is_empty() => {
            format!("{} ({})", st(&c["status"]), st(&c["reason"]))
        }
        Some(c) => st(&c["status"]).to_string(),
    };
    vec![
        json!(name(a)),
        json!(service),
        json!(available),
        json!(ctx.age(a)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{cells, names, one};

    #[test]
    fn hpa_v2() {
        let t = one(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
                    ]
                },
                "status": {"currentReplicas": 2, "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35, "averageValue": "100m"}}}
                ]}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
        assert_eq!(
            cells(&t)[..6],
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 35%/80%, memory: <unknown>/100Mi + 1 more..."),
                json!("1"),
                json!(10),
                json!(2)
            ]
        );
    }

    #[test]
    fn hpa_v1_and_empty() {
        let t = one(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({
                "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}
            }),
        );
        assert_eq!(
            cells(&t)[2..4],
            [json!("cpu: <unknown>/50%"), json!("<unset>")]
        );
        let t = one(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({"metadata": {"name": "x"}, "spec": {"metrics": []}}),
        );
        assert_eq!(cells(&t)[2], "<none>");
        let m = json!({"type": "External", "external": {"target": {"value": "5"}}});
        assert_eq!(
            hpa_metric(&m, Some(&json!({"external": {"current": {"value": "3"}}}))),
            "3/5"
        );
        let m = json!({"type": "Resource", "resource": {"name": "cpu", "target": {}}});
        assert_eq!(hpa_metric(&m, None), "cpu: <unknown>/<auto>");
    }

    #[test]
    fn pdb() {
        let t = one(
            "policy",
            "poddisruptionbudgets",
            json!({
                "metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        assert_eq!(cells(&t)[1..4], [json!("50%"), json!("N/A"), json!(1)]);
    }

    #[test]
    fn small_kinds() {
        let t = one(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "n1"}}),
        );
        assert_eq!(names(&t), ["Name", "Holder", "Age"]);
        assert_eq!(cells(&t)[1], "n1");
        let t = one(
            "scheduling.k8s.io",
            "priorityclasses",
            json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"}),
        );
        assert_eq!(
            names(&t),
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        assert_eq!(cells(&t)[1..3], [json!(2000001000), json!(false)]);
        assert_eq!(cells(&t)[4], "PreemptLowerPriority");
        let t = one(
            "node.k8s.io",
            "runtimeclasses",
            json!({"metadata": {"name": "r"}, "handler": "runc"}),
        );
        assert_eq!(cells(&t)[1], "runc");
        let t = one(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            json!({"metadata": {"name": "w"}, "webhooks": [{}, {}]}),
        );
        assert_eq!(names(&t), ["Name", "Webhooks", "Age"]);
        assert_eq!(cells(&t)[1], 2);
        let t = one(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            json!({"metadata": {"name": "v"}, "spec": {"validations": [{}], "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}}),
        );
        assert_eq!(cells(&t)[1..3], [json!(1), json!("v1/ConfigMap")]);
        let t = one(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
            json!({"metadata": {"name": "b"}, "spec": {"policyName": "v", "paramRef": {"name": "cfg"}}}),
        );
        assert_eq!(cells(&t)[1..3], [json!("v"), json!("*/cfg")]);
    }

    #[test]
    fn candidates_and_trust_bundles() {
        let t = one(
            "coordination.k8s.io",
            "leasecandidates",
            json!({
                "metadata": {"name": "c"}, "spec": {"leaseName": "kube-scheduler", "binaryVersion": "1.33.0", "emulationVersion": "1.33"}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "LeaseName",
                "BinaryVersion",
                "EmulationVersion",
                "Age"
            ]
        );
        assert_eq!(
            cells(&t)[1..4],
            [json!("kube-scheduler"), json!("1.33.0"), json!("1.33")]
        );
        let t = one(
            "certificates.k8s.io",
            "clustertrustbundles",
            json!({"metadata": {"name": "b"}, "spec": {}}),
        );
        assert_eq!(cells(&t), vec![json!("b"), json!("<none>")]);
    }

    #[test]
    fn csr() {
        let t = one(
            "certificates.k8s.io",
            "certificatesigningrequests",
            json!({
                "metadata": {"name": "csr-1"},
                "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:n1", "expirationSeconds": 86400},
                "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Age",
                "SignerName",
                "Requestor",
                "RequestedDuration",
                "Condition"
            ]
        );
        assert_eq!(
            cells(&t)[2..6],
            [
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let t = one(
            "certificates.k8s.io",
            "certificatesigningrequests",
            json!({"metadata": {"name": "c"}}),
        );
        assert_eq!(cells(&t)[4..6], [json!("<none>"), json!("Pending")]);
    }

    #[test]
    fn flowcontrol_and_apiservices() {
        let t = one(
            "flowcontrol.apiserver.k8s.io",
            "flowschemas",
            json!({
                "metadata": {"name": "exempt"},
                "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1},
                "status": {"conditions": [{"type": "Dangling", "status": "False"}]}
            }),
        );
        assert_eq!(
            cells(&t)[1..4],
            [json!("exempt"), json!(1), json!("<none>")]
        );
        assert_eq!(cells(&t)[5], "False");
        let t = one(
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
            json!({
                "metadata": {"name": "workload-low"},
                "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 100, "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}
            }),
        );
        assert_eq!(
            cells(&t)[1..6],
            [
                json!("Limited"),
                json!(100),
                json!(128),
                json!(6),
                json!(50)
            ]
        );
        let t = one(
            "apiregistration.k8s.io",
            "apiservices",
            json!({
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
                "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}
            }),
        );
        assert_eq!(names(&t), ["Name", "Service", "Available", "Age"]);
        assert_eq!(
            cells(&t)[1..3],
            [
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)")
            ]
        );
        let t = one(
            "apiregistration.k8s.io",
            "apiservices",
            json!({"metadata": {"name": "v1."}, "status": {"conditions": [{"type": "Available", "status": "True"}]}}),
        );
        assert_eq!(cells(&t)[1..3], [json!("Local"), json!("True")]);
    }
}
