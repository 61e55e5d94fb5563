//! Volumes and storage: persistent volumes and claims (core group) and the
//! `storage.k8s.io` kinds (storage classes, CSI drivers and nodes, volume attachments,
//! CSI storage capacities, volume attributes classes).

use serde_json::{json, Value};

use crate::table::format::{deleting, list, name, st, Ctx};
use crate::table::{col, wide, Column, Printer, Row, RowFn, AGE, NAME};

static PV_COLUMNS: [Column; 11] = [
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

static PVC_COLUMNS: [Column; 9] = [
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

static STORAGE_CLASS_COLUMNS: [Column; 6] = [
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

static CSI_DRIVER_COLUMNS: [Column; 8] = [
    NAME,
    col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
    col("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
    col("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity."),
    col("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for."),
    col("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called."),
    col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
    AGE,
];

static CSI_NODE_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

static VOLUME_ATTACHMENT_COLUMNS: [Column; 6] = [
    NAME,
    Column {
        name: "Attacher",
        kind: "string",
        format: "name",
        description:
            "attacher indicates the name of the volume driver that MUST handle this request.",
        priority: 0,
    },
    col(
        "PV",
        "string",
        "persistentVolumeName represents the name of the persistent volume to attach.",
    ),
    col(
        "Node",
        "string",
        "nodeName represents the node that the volume should be attached to.",
    ),
    col(
        "Attached",
        "boolean",
        "attached indicates the volume is successfully attached.",
    ),
    AGE,
];

static CSI_STORAGE_CAPACITY_COLUMNS: [Column; 3] = [
    NAME,
    col("StorageClassName", "string", "storageClassName represents the name of the StorageClass that the reported capacity applies to."),
    col("Capacity", "string", "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields."),
];

static VOLUME_ATTRIBUTES_CLASS_COLUMNS: [Column; 3] = [
    NAME,
    col("DriverName", "string", "Name of the CSI driver"),
    AGE,
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Column], RowFn) = match (group, resource) {
        ("", "persistentvolumes") => (&PV_COLUMNS, pv_row),
        ("", "persistentvolumeclaims") => (&PVC_COLUMNS, pvc_row),
        ("storage.k8s.io", "storageclasses") => (&STORAGE_CLASS_COLUMNS, storage_class_row),
        ("storage.k8s.io", "csidrivers") => (&CSI_DRIVER_COLUMNS, csi_driver_row),
        ("storage.k8s.io", "csinodes") => (&CSI_NODE_COLUMNS, csi_node_row),
        ("storage.k8s.io", "volumeattachments") => {
            (&VOLUME_ATTACHMENT_COLUMNS, volume_attachment_row)
        }
        ("storage.k8s.io", "csistoragecapacities") => {
            (&CSI_STORAGE_CAPACITY_COLUMNS, csi_storage_capacity_row)
        }
        ("storage.k8s.io", "volumeattributesclasses") => (
            &VOLUME_ATTRIBUTES_CLASS_COLUMNS,
            volume_attributes_class_row,
        ),
        _ => return None,
    };
    Some(Printer { columns, row })
}

/// Upstream's `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP` in that fixed order.
fn access_modes(modes: &Value) -> String {
    let has = |m: &str| list(modes).iter().any(|v| st(v) == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The legacy storage-class annotation, which wins over `spec.storageClassName`.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The storage class of a PV or PVC: the beta annotation, else `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    match obj["metadata"]["annotations"][BETA_CLASS_ANNOTATION].as_str() {
        Some(c) => c,
        None => st(&obj["spec"]["storageClassName"]),
    }
}

/// `<unset>` for a missing optional string.
fn or_unset(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| "<unset>".to_string())
}

fn pv_row(pv: &Value, ctx: &Ctx) -> Row {
    let spec = &pv["spec"];
    let claim = if spec["claimRef"].is_object() {
        format!(
            "{}/{}",
            st(&spec["claimRef"]["namespace"]),
            st(&spec["claimRef"]["name"])
        )
    } else {
        String::new()
    };
    let phase = if deleting(pv) {
        "Terminating"
    } else {
        st(&pv["status"]["phase"])
    };
    // A missing storage quantity prints as Go's zero quantity.
    let capacity = spec["capacity"]["storage"].as_str().unwrap_or("0");
    vec![
        json!(name(pv)),
        json!(capacity),
        json!(access_modes(&spec["accessModes"])),
        json!(st(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(or_unset(&spec["volumeAttributesClassName"])),
        json!(st(&pv["status"]["reason"])),
        json!(ctx.age(pv)),
        json!(or_unset(&spec["volumeMode"])),
    ]
    .into()
}

fn pvc_row(pvc: &Value, ctx: &Ctx) -> Row {
    let spec = &pvc["spec"];
    let phase = if deleting(pvc) {
        "Terminating"
    } else {
        st(&pvc["status"]["phase"])
    };
    let volume = st(&spec["volumeName"]);
    // Capacity and modes describe the bound volume, so they stay empty until binding.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            pvc["status"]["capacity"]["storage"]
                .as_str()
                .unwrap_or("0")
                .to_string(),
            access_modes(&pvc["status"]["accessModes"]),
        )
    };
    vec![
        json!(name(pvc)),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(or_unset(&spec["volumeAttributesClassName"])),
        json!(ctx.age(pvc)),
        json!(or_unset(&spec["volumeMode"])),
    ]
    .into()
}

fn storage_class_row(sc: &Value, ctx: &Ctx) -> Row {
    let annotations = &sc["metadata"]["annotations"];
    let is_default = st(&annotations["storageclass.kubernetes.io/is-default-class"]) == "true"
        || st(&annotations["storageclass.beta.kubernetes.io/is-default-class"]) == "true";
    let mut display = name(sc).to_string();
    if is_default {
        display.push_str(" (default)");
    }
    let reclaim = sc["reclaimPolicy"].as_str().unwrap_or("Delete");
    let binding = sc["volumeBindingMode"].as_str().unwrap_or("Immediate");
    vec![
        json!(display),
        json!(st(&sc["provisioner"])),
        json!(reclaim),
        json!(binding),
        json!(sc["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        json!(ctx.age(sc)),
    ]
    .into()
}

fn csi_driver_row(d: &Value, ctx: &Ctx) -> Row {
    let spec = &d["spec"];
    let modes: Vec<&str> = list(&spec["volumeLifecycleModes"]).iter().map(st).collect();
    let modes = if modes.is_empty() {
        "<none>".to_string()
    } else {
        modes.join(",")
    };
    let tokens = if spec["tokenRequests"].is_array() {
        list(&spec["tokenRequests"])
            .iter()
            .map(|t| st(&t["audience"]))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "<unset>".to_string()
    };
    vec![
        json!(name(d)),
        json!(spec["attachRequired"].as_bool().unwrap_or(true)),
        json!(spec["podInfoOnMount"].as_bool().unwrap_or(false)),
        json!(spec["storageCapacity"].as_bool().unwrap_or(false)),
        json!(tokens),
        json!(spec["requiresRepublish"].as_bool().unwrap_or(false)),
        json!(modes),
        json!(ctx.age(d)),
    ]
    .into()
}

fn csi_node_row(n: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(n)),
        json!(list(&n["spec"]["drivers"]).len()),
        json!(ctx.age(n)),
    ]
    .into()
}

fn volume_attachment_row(va: &Value, ctx: &Ctx) -> Row {
    let spec = &va["spec"];
    vec![
        json!(name(va)),
        json!(st(&spec["attacher"])),
        json!(st(&spec["source"]["persistentVolumeName"])),
        json!(st(&spec["nodeName"])),
        json!(va["status"]["attached"].as_bool().unwrap_or(false)),
        json!(ctx.age(va)),
    ]
    .into()
}

fn csi_storage_capacity_row(c: &Value, _ctx: &Ctx) -> Row {
    let capacity = c["capacity"].as_str().unwrap_or("<unset>");
    vec![
        json!(name(c)),
        json!(st(&c["storageClassName"])),
        json!(capacity),
    ]
    .into()
}

fn volume_attributes_class_row(c: &Value, ctx: &Ctx) -> Row {
    let mut display = name(c).to_string();
    let annotations = &c["metadata"]["annotations"];
    if st(&annotations["volumeattributesclass.kubernetes.io/is-default-class"]) == "true" {
        display.push_str(" (default)");
    }
    vec![
        json!(display),
        json!(st(&c["driverName"])),
        json!(ctx.age(c)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{cells, names, one};

    #[test]
    fn persistent_volume() {
        let t = one(
            "",
            "persistentvolumes",
            json!({
                "metadata": {"name": "pv1"},
                "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"},
                         "storageClassName": "local-path", "volumeMode": "Filesystem"},
                "status": {"phase": "Bound"}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode"
            ]
        );
        let c = cells(&t);
        assert_eq!(
            c[1..9],
            [
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(c[10], "Filesystem");
    }

    #[test]
    fn persistent_volume_claim() {
        let t = one(
            "",
            "persistentvolumeclaims",
            json!({
                "metadata": {"name": "data", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
                "spec": {"volumeName": "pv1", "storageClassName": "new"},
                "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        assert_eq!(
            cells(&t)[1..7],
            [
                json!("Bound"),
                json!("pv1"),
                json!("1Gi"),
                json!("RWO"),
                json!("old"),
                json!("<unset>")
            ]
        );
        let t = one(
            "",
            "persistentvolumeclaims",
            json!({
                "metadata": {"name": "p", "deletionTimestamp": "2024-06-01T11:00:00Z"},
                "spec": {"storageClassName": "local-path"}, "status": {"phase": "Pending"}
            }),
        );
        assert_eq!(
            cells(&t)[1..6],
            [
                json!("Terminating"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path")
            ]
        );
    }

    #[test]
    fn storage_class() {
        let t = one(
            "storage.k8s.io",
            "storageclasses",
            json!({
                "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "skiff.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age"
            ]
        );
        assert_eq!(
            cells(&t)[..5],
            [
                json!("local-path (default)"),
                json!("skiff.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
    }

    #[test]
    fn csi_kinds() {
        let t = one(
            "storage.k8s.io",
            "csidrivers",
            json!({
                "metadata": {"name": "d"}, "spec": {"attachRequired": false, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
                                                  "volumeLifecycleModes": ["Persistent", "Ephemeral"]}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "AttachRequired",
                "PodInfoOnMount",
                "StorageCapacity",
                "TokenRequests",
                "RequiresRepublish",
                "Modes",
                "Age"
            ]
        );
        assert_eq!(
            cells(&t)[1..7],
            [
                json!(false),
                json!(false),
                json!(false),
                json!("a,b"),
                json!(false),
                json!("Persistent,Ephemeral")
            ]
        );
        let t = one(
            "storage.k8s.io",
            "csidrivers",
            json!({"metadata": {"name": "d"}, "spec": {}}),
        );
        assert_eq!(cells(&t)[1], true);
        assert_eq!(cells(&t)[4], "<unset>");
        assert_eq!(cells(&t)[6], "<none>");
        let t = one(
            "storage.k8s.io",
            "csinodes",
            json!({"metadata": {"name": "n"}, "spec": {"drivers": [{"name": "d"}]}}),
        );
        assert_eq!(cells(&t)[1], 1);
        let t = one(
            "storage.k8s.io",
            "volumeattachments",
            json!({
                "metadata": {"name": "va"}, "spec": {"attacher": "d", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}},
                "status": {"attached": true}
            }),
        );
        assert_eq!(
            names(&t),
            ["Name", "Attacher", "PV", "Node", "Attached", "Age"]
        );
        assert_eq!(
            cells(&t)[1..5],
            [json!("d"), json!("pv1"), json!("n1"), json!(true)]
        );
        let t = one(
            "storage.k8s.io",
            "csistoragecapacities",
            json!({"metadata": {"name": "c"}, "storageClassName": "s"}),
        );
        assert_eq!(cells(&t), vec![json!("c"), json!("s"), json!("<unset>")]);
    }
}
