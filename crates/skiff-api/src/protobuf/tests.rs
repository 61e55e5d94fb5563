//! Decoding objects built with the `k8s-pb` structs and encoded by prost, as
//! an independent encoder, and hostile input.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

use super::schema::FieldType;
use super::{decode, encode, is_known_kind, is_protobuf_content_type, ProtobufError, MAGIC};

/// Wraps `message` the way client-go does: magic + runtime.Unknown.
pub(super) fn envelope(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// ObjectMeta as Go writes it: every non-pointer string, even empty.
fn object_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity { string: s(v) }))
        .collect()
}

fn int_or_string_int(value: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: s(""),
    }
}

fn int_or_string_str(value: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(value),
    }
}

#[test]
fn deployment_with_containers_ports_and_resources() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: labels.clone(),
            ..object_meta("web", "prod")
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..object_meta("", "")
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("nginx"),
                        image: s("nginx:1.25"),
                        command: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                        ports: vec![core::ContainerPort {
                            name: s("http"),
                            host_port: Some(0),
                            container_port: Some(8080),
                            protocol: s("TCP"),
                            host_ip: s(""),
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: quantities(&[("memory", "128Mi"), ("cpu", "500m")]),
                            requests: quantities(&[("cpu", "250m")]),
                            ..Default::default()
                        }),
                        env: vec![core::EnvVar {
                            name: s("MODE"),
                            value: s("prod"),
                            value_from: None,
                        }],
                        stdin: Some(false),
                        tty: Some(false),
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(0),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(int_or_string_int(1)),
                    max_surge: Some(int_or_string_str("25%")),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let got = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    let expected = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.25",
                        "command": ["nginx", "-g", "daemon off;"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                            "requests": {"cpu": "250m"}
                        }
                    }],
                    "terminationGracePeriodSeconds": 0
                }
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}
            }
        },
        "status": {}
    });
    assert_eq!(got, expected);
    // Field by field, for readable failures on the parts that matter most.
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert_eq!(got["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    // Map keys come out sorted, as Go prints them.
    let limits: Vec<&String> = got["spec"]["template"]["spec"]["containers"][0]["resources"]
        ["limits"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(limits, ["cpu", "memory"]);
    // kind and apiVersion lead, like upstream's JSON.
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys[..2], ["kind", "apiVersion"]);
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: Some(object_meta("creds", "default")),
        immutable: None,
        data: [
            ("bin".to_string(), vec![0u8, 1, 2, 0xff]),
            ("user".to_string(), b"admin".to_vec()),
        ]
        .into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    let got = decode(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        got,
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "creds", "namespace": "default", "creationTimestamp": null},
            "data": {"bin": "AAEC/w==", "user": "YWRtaW4="},
            "type": "Opaque"
        })
    );
}

#[test]
fn namespace_drops_go_zero_values() {
    let namespace = core::Namespace {
        metadata: Some(object_meta("x", "")),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    let got = decode(&envelope("v1", "Namespace", &namespace)).unwrap();
    assert_eq!(
        got,
        json!({
            "kind": "Namespace", "apiVersion": "v1",
            // A zero time prints as null, as Go prints it.
            "metadata": {"name": "x", "creationTimestamp": null},
            "spec": {}, "status": {}
        })
    );
}

#[test]
fn service_target_ports_are_int_or_string() {
    let service = core::Service {
        metadata: Some(object_meta("svc", "default")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("web"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(int_or_string_int(8080)),
                    node_port: Some(0),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("metrics"),
                    protocol: s("TCP"),
                    port: Some(9090),
                    target_port: Some(int_or_string_str("metrics")),
                    node_port: Some(30090),
                    ..Default::default()
                },
            ],
            selector: [
                ("tier".to_string(), "b".to_string()),
                ("app".to_string(), "a".to_string()),
            ]
            .into(),
            cluster_ip: s(""),
            r#type: s("NodePort"),
            allocate_load_balancer_node_ports: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let got = decode(&envelope("v1", "Service", &service)).unwrap();
    let spec = &got["spec"];
    assert_eq!(
        spec["ports"][0],
        json!({"name": "web", "protocol": "TCP", "port": 80, "targetPort": 8080})
    );
    assert_eq!(
        spec["ports"][1],
        json!({"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics", "nodePort": 30090})
    );
    assert_eq!(spec["selector"], json!({"app": "a", "tier": "b"}));
    assert_eq!(spec["type"], "NodePort");
    assert!(
        spec.get("clusterIP").is_none(),
        "empty omitempty string is dropped"
    );
    // A pointer field set to false is kept: it differs from unset (default true).
    assert_eq!(spec["allocateLoadBalancerNodePorts"], false);
}

#[test]
fn self_subject_access_review() {
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(object_meta("", "")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("kube-system"),
                verb: s("list"),
                group: s("apps"),
                version: s(""),
                resource: s("deployments"),
                subresource: s(""),
                name: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: s(""),
            evaluation_error: s(""),
        }),
    };
    let got = decode(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &review,
    ))
    .unwrap();
    assert_eq!(
        got,
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {
                "namespace": "kube-system", "verb": "list", "group": "apps", "resource": "deployments"
            }},
            // `allowed` has no omitempty in Go, so its false is printed.
            "status": {"allowed": false}
        })
    );
}

#[test]
fn times_and_pointer_zeros() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-1"),
                uid: s("u-1"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            ..object_meta("p", "default")
        }),
        spec: Some(core::PodSpec {
            // Documented as "nil: the default grace period": zero is kept.
            termination_grace_period_seconds: Some(0),
            // Documented default true: false is kept.
            enable_service_links: Some(false),
            // Documented default false: false means the same as unset, dropped.
            host_network: Some(false),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            start_time: Some(meta::Time {
                seconds: Some(1_700_000_001),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
    };
    let got = decode(&envelope("v1", "Pod", &pod)).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(
        got["metadata"]["ownerReferences"][0],
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-1", "controller": true})
    );
    assert_eq!(
        got["spec"],
        json!({"terminationGracePeriodSeconds": 0, "enableServiceLinks": false})
    );
    assert_eq!(got["status"]["startTime"], "2023-11-14T22:13:21Z");
}

#[test]
fn eviction_scale_token_request_and_csr_approval() {
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(object_meta("web-1", "default")),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    let got = decode(&envelope("policy/v1", "Eviction", &eviction)).unwrap();
    assert_eq!(got["deleteOptions"], json!({"gracePeriodSeconds": 0}));

    let scale = |replicas| k8s_pb::api::autoscaling::v1::Scale {
        metadata: Some(object_meta("web", "default")),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec {
            replicas: Some(replicas),
        }),
        status: None,
    };
    let got = decode(&envelope("autoscaling/v1", "Scale", &scale(5))).unwrap();
    assert_eq!(got["spec"], json!({"replicas": 5}));
    // ScaleSpec.replicas is a plain `int32` with omitempty in Go, so Go's JSON
    // for zero replicas is `{}` too: readers must take a missing value as 0.
    let got = decode(&envelope("autoscaling/v1", "Scale", &scale(0))).unwrap();
    assert_eq!(got["spec"], json!({}));

    let request = k8s_pb::api::authentication::v1::TokenRequest {
        metadata: Some(object_meta("", "")),
        spec: Some(k8s_pb::api::authentication::v1::TokenRequestSpec {
            audiences: vec!["api".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        status: None,
    };
    let got = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &request,
    ))
    .unwrap();
    assert_eq!(
        got["spec"],
        json!({"audiences": ["api"], "expirationSeconds": 3600})
    );

    use k8s_pb::api::certificates::v1 as certs;
    let csr = certs::CertificateSigningRequest {
        metadata: Some(object_meta("csr1", "")),
        spec: Some(certs::CertificateSigningRequestSpec {
            request: Some(b"-----BEGIN CERTIFICATE REQUEST-----".to_vec()),
            signer_name: s("kubernetes.io/kube-apiserver-client"),
            usages: vec!["client auth".into()],
            extra: [(
                "scopes".to_string(),
                certs::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: Some(certs::CertificateSigningRequestStatus {
            conditions: vec![certs::CertificateSigningRequestCondition {
                r#type: s("Approved"),
                status: s("True"),
                reason: s("KubectlApprove"),
                message: s("approved"),
                last_update_time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                last_transition_time: Some(meta::Time::default()),
            }],
            certificate: None,
        }),
    };
    let got = decode(&envelope(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &csr,
    ))
    .unwrap();
    assert_eq!(
        got["spec"]["request"],
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0="
    );
    assert_eq!(got["spec"]["extra"], json!({"scopes": ["a", "b"]}));
    assert_eq!(
        got["status"]["conditions"][0],
        json!({
            "type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "approved",
            "lastUpdateTime": "2023-11-14T22:13:20Z", "lastTransitionTime": null
        })
    );
}

#[test]
fn inlined_structs_and_raw_extensions() {
    let pod = core::Pod {
        metadata: Some(object_meta("p", "")),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("settings"),
                        }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("c"),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: Some(int_or_string_str("http")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&envelope("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        got["spec"]["volumes"][0],
        json!({"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}})
    );
    assert_eq!(
        got["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10})
    );

    let revision = apps::ControllerRevision {
        metadata: Some(object_meta("rev", "default")),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"x":[1,2]}}"#.to_vec()),
        }),
        revision: Some(2),
    };
    let got = decode(&envelope("apps/v1", "ControllerRevision", &revision)).unwrap();
    assert_eq!(got["data"], json!({"spec": {"x": [1, 2]}}));
    assert_eq!(got["revision"], 2);
}

#[test]
fn custom_resource_definition_schema() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string_prop = ext::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    let root = ext::JsonSchemaProps {
        r#type: s("object"),
        properties: [
            (
                "tags".to_string(),
                ext::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string_prop.clone())),
                        j_son_schemas: vec![],
                    })),
                    max_items: Some(0),
                    ..Default::default()
                },
            ),
            (
                "size".to_string(),
                ext::JsonSchemaProps {
                    r#type: s("integer"),
                    default: Some(ext::Json {
                        raw: Some(b"3".to_vec()),
                    }),
                    maximum: Some(10.0),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(object_meta("widgets.example.com", "")),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(root),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ))
    .unwrap();
    let schema = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        *schema,
        json!({
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 3, "maximum": 10},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 0}
            },
            "additionalProperties": false,
            "x-kubernetes-preserve-unknown-fields": true
        })
    );
    assert_eq!(
        got["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget"})
    );
}

#[test]
fn envelope_errors_are_clear() {
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::BadMagic));
    assert_eq!(decode(b""), Err(ProtobufError::BadMagic));
    let unknown = envelope("example.com/v1", "Widget", &core::Namespace::default());
    assert_eq!(
        decode(&unknown),
        Err(ProtobufError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    let err = decode(&unknown).unwrap_err().to_string();
    assert_eq!(
        err,
        "no protobuf type is known for kind \"Widget\" in apiVersion \"example.com/v1\""
    );
    let gzip = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(vec![]),
        content_encoding: s("gzip"),
        content_type: s(""),
    };
    let mut body = MAGIC.to_vec();
    body.extend(gzip.encode_to_vec());
    assert_eq!(
        decode(&body),
        Err(ProtobufError::UnsupportedEncoding("gzip".into()))
    );
    // Truncation names the place.
    let full = envelope(
        "v1",
        "Namespace",
        &core::Namespace {
            metadata: Some(object_meta("x", "")),
            ..Default::default()
        },
    );
    let err = decode(&full[..full.len() - 3]).unwrap_err();
    assert!(matches!(err, ProtobufError::Malformed { .. }), "{err}");
    assert!(
        err.to_string().starts_with("malformed protobuf at "),
        "{err}"
    );
}

#[test]
fn wrong_wire_type_is_rejected() {
    // Namespace field 1 (metadata) sent as a varint.
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(vec![0x08, 0x01]),
        content_encoding: None,
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    let err = decode(&body).unwrap_err().to_string();
    assert_eq!(
        err,
        "malformed protobuf at metadata: wire type 0 where a length-delimited value was expected"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let mut props = ext::JsonSchemaProps::default();
    for _ in 0..150 {
        props = ext::JsonSchemaProps {
            not: Some(Box::new(props)),
            ..Default::default()
        };
    }
    let crd = ext::CustomResourceDefinition {
        spec: Some(ext::CustomResourceDefinitionSpec {
            versions: vec![ext::CustomResourceDefinitionVersion {
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(props),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("nesting deeper than"), "{err}");
}

/// A small deterministic generator, so the fuzz test needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web", "prod")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("c"),
                        image: s("i"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let valid = envelope("apps/v1", "Deployment", &deployment);
    // Every truncation of a valid body.
    for end in 0..valid.len() {
        let _ = decode(&valid[..end]);
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        // Random flips of a valid body.
        let mut body = valid.clone();
        for _ in 0..(rng.next() % 4 + 1) {
            let i = 4 + (rng.next() as usize) % (body.len() - 4);
            body[i] = rng.next() as u8;
        }
        let _ = decode(&body);
        // Pure noise behind the magic bytes, including inside a known kind.
        let len = (rng.next() % 64) as usize;
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut body = MAGIC.to_vec();
        body.extend(&noise);
        let _ = decode(&body);
        let _ = decode(&envelope_raw("apps/v1", "Deployment", noise));
    }
}

fn envelope_raw(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn encode_round_trips_and_prost_reads_it() {
    let object = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "labels": {"b": "2", "a": "1"}, "creationTimestamp": "2023-11-14T22:13:20Z"},
        "spec": {
            "replicas": 0,
            "template": {"spec": {
                "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                "resources": {"limits": {"cpu": "1"}}}],
                "volumes": [{"name": "v", "secret": {"secretName": "s", "defaultMode": 256}}]
            }},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
        }
    });
    let body = encode(&object).unwrap();
    let unknown = Unknown::decode(&body[4..]).unwrap();
    assert_eq!(unknown.type_meta.unwrap().kind.unwrap(), "Deployment");
    let deployment = apps::Deployment::decode(unknown.raw.unwrap().as_slice()).unwrap();
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        deployment
            .metadata
            .as_ref()
            .unwrap()
            .creation_timestamp
            .unwrap()
            .seconds,
        Some(1_700_000_000)
    );
    let mut back = decode(&body).unwrap();
    // Labels come back sorted; everything else as given.
    back["metadata"]["labels"] = json!({"b": "2", "a": "1"});
    assert_eq!(back, object);
    let err = encode(&json!({"kind": "Pod", "apiVersion": "v1", "spec": {"containers": "x"}}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot encode spec.containers as protobuf: expected an array"
    );
}

#[test]
fn content_types_and_kinds() {
    assert!(is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf"
    ));
    assert!(is_protobuf_content_type(
        " Application/VND.Kubernetes.Protobuf ; stream=watch"
    ));
    assert!(!is_protobuf_content_type("application/json"));
    assert!(!is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf2"
    ));
    for (api_version, kind) in [
        ("v1", "Namespace"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "Eviction"),
        ("autoscaling/v1", "Scale"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("networking.k8s.io/v1", "Ingress"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io/v1", "APIService"),
        ("apps/v1", "DeploymentList"),
        ("policy/v1", "DeleteOptions"),
        ("v1", "Status"),
    ] {
        assert!(is_known_kind(api_version, kind), "{api_version} {kind}");
    }
    assert!(!is_known_kind("v1", "Deployment"));
}

#[test]
fn schema_table_is_complete() {
    let schema = super::schema::Schema::get();
    let text = include_str!("schema.txt");
    let field_lines = text.lines().filter(|l| l.starts_with("F ")).count();
    let fields: usize = schema.messages.iter().map(|m| m.fields.len()).sum();
    assert_eq!(fields, field_lines, "every field line parses and resolves");
    assert_eq!(
        schema.messages.len(),
        text.lines().filter(|l| l.starts_with("M ")).count()
    );
    assert!(schema.message_index("meta.v1.ObjectMeta").is_some());
    let kind_lines = text.lines().filter(|l| l.starts_with("K ")).count();
    assert!(kind_lines > 300, "{kind_lines}");
    let value: Value = decode(&envelope("v1", "ConfigMap", &core::ConfigMap::default())).unwrap();
    assert_eq!(value, json!({"kind": "ConfigMap", "apiVersion": "v1"}));
}

#[test]
fn every_kind_round_trips_through_encode() {
    let schema = super::schema::Schema::get();
    let mut count = 0;
    for (api_version, kind) in schema.kind_names() {
        let api_version = if api_version == "*" {
            "v1"
        } else {
            api_version
        };
        let index = schema.kind(api_version, kind).unwrap();
        let metadata_type = schema.messages[index]
            .fields
            .iter()
            .find(|f| f.json == "metadata")
            .map(|f| f.ty);
        let metadata = match metadata_type {
            Some(FieldType::Message(meta))
                if schema.messages[meta].name == "meta.v1.ObjectMeta" =>
            {
                json!({"name": "n", "labels": {"a": "b"}, "creationTimestamp": "2024-01-02T03:04:05Z"})
            }
            Some(FieldType::Message(_)) => json!({"resourceVersion": "7", "continue": "c"}),
            _ => Value::Null,
        };
        let mut object = json!({"kind": kind, "apiVersion": api_version});
        if !metadata.is_null() {
            object["metadata"] = metadata;
        }
        let body = encode(&object).unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        let back = decode(&body).unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        assert_eq!(back, object, "{api_version} {kind}");
        count += 1;
    }
    assert!(count > 300, "{count}");
}
