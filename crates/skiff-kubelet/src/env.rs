//! A container's environment, computed as kubelet's `makeEnvironmentVariables` does:
//!
//! 1. service variables (`FOO_SERVICE_HOST`, docker-link `FOO_PORT_80_TCP...`) for the
//!    services of the pod's namespace when `enableServiceLinks` (default true), and for
//!    `default/kubernetes` always;
//! 2. `envFrom` (ConfigMaps and Secrets, with prefix; keys that are not valid variable names
//!    are skipped);
//! 3. `env`, in order: `value` with `$(VAR)` expansion against the variables defined so far
//!    and the service variables, or `valueFrom` (fieldRef, resourceFieldRef,
//!    configMapKeyRef, secretKeyRef).
//!
//! Variables from 2 and 3 come first in declaration order; service variables not overridden
//! follow. Error texts are kubelet's CreateContainerConfigError messages.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use crate::volumes::downward::{self, DownwardError};

/// Why a container's environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced, non-optional object is missing: `configmap "x" not found`.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `configmap` or `secret`, as kubelet prints it.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// A non-optional key is missing: `couldn't find key y in ConfigMap ns/x`.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// The key.
        key: String,
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// Pod namespace.
        namespace: String,
        /// Object name.
        name: String,
    },
    /// A fieldRef or resourceFieldRef could not be evaluated.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// Reading a ConfigMap or Secret failed for another reason than absence.
    #[error("{what}: {source}")]
    Api {
        /// What was requested.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Facts about the pod and node that are not in the pod object yet when its first container
/// starts.
#[derive(Debug, Clone, Copy)]
pub struct EnvContext<'a> {
    /// All services the node knows (any namespace; only the pod's own and
    /// `default/kubernetes` are used).
    pub services: &'a [Service],
    /// The pod's IPs from its sandbox; `status.podIPs` when empty.
    pub pod_ips: &'a [String],
    /// The node's IPs; `status.hostIPs` when empty.
    pub host_ips: &'a [String],
    /// Node allocatable, standing in for unset limits in `resourceFieldRef`.
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
}

/// ConfigMaps and Secrets a container references, fetched once per pod sync; `None` records
/// that the object does not exist.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// ConfigMaps by name.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets by name.
    pub secrets: HashMap<String, Option<Secret>>,
}

impl EnvSources {
    /// Fetch every ConfigMap and Secret that `containers` reference and `self` lacks.
    pub async fn fetch(&mut self, client: &kube::Client, namespace: &str, containers: &[&Container]) -> Result<(), EnvError> {
        let (mut cms, mut secrets) = (Vec::new(), Vec::new());
        for c in containers {
            for ef in c.env_from.iter().flatten() {
                cms.extend(ef.config_map_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(ef.secret_ref.as_ref().map(|r| r.name.clone()));
            }
            for vf in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
                cms.extend(vf.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(vf.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        for name in cms {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.config_maps.entry(name) {
                let name = slot.key();
                let got = cm_api.get_opt(name).await.map_err(|source| EnvError::Api { what: format!("getting configmap {namespace}/{name}"), source })?;
                slot.insert(got);
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in secrets {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.secrets.entry(name) {
                let name = slot.key();
                let got = secret_api.get_opt(name).await.map_err(|source| EnvError::Api { what: format!("getting secret {namespace}/{name}"), source })?;
                slot.insert(got);
            }
        }
        Ok(())
    }
}

/// The environment of `container` in `pod`, fetching referenced ConfigMaps and Secrets.
pub async fn container_env(client: &kube::Client, pod: &Pod, container: &Container, ctx: &EnvContext<'_>) -> Result<Vec<(String, String)>, EnvError> {
    let mut sources = EnvSources::default();
    sources.fetch(client, pod.metadata.namespace.as_deref().unwrap_or("default"), &[container]).await?;
    resolve_env(pod, container, ctx, &sources)
}

/// An insertion-ordered map: variables keep the position of their first definition.
#[derive(Default)]
struct Ordered {
    items: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Ordered {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.items[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.items.len());
                self.items.push((k, v));
            }
        }
    }
    fn get(&self, k: &str) -> Option<&String> {
        self.index.get(k).map(|&i| &self.items[i].1)
    }
}

/// The environment of `container`, from already fetched sources (no I/O).
pub fn resolve_env(pod: &Pod, container: &Container, ctx: &EnvContext<'_>, sources: &EnvSources) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = pod.spec.as_ref();
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let service_vars = service_env(&ns, links, ctx.services);
    let mut vars = Ordered::default();

    for ef in container.env_from.iter().flatten() {
        let prefix = ef.prefix.as_deref().unwrap_or("");
        let (data, kind, name): (Vec<(String, String)>, &str, &str) = if let Some(r) = ef.config_map_ref.as_ref() {
            match sources.config_maps.get(&r.name).and_then(Option::as_ref) {
                Some(cm) => (cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(), "configMap", &r.name),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::NotFound { kind: "configmap", name: r.name.clone() }),
            }
        } else if let Some(r) = ef.secret_ref.as_ref() {
            match sources.secrets.get(&r.name).and_then(Option::as_ref) {
                Some(s) => (secret_strings(s), "secret", &r.name),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::NotFound { kind: "secret", name: r.name.clone() }),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                vars.set(k, v);
            } else {
                invalid.push(k);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            // Upstream records this as an InvalidEnvironmentVariableNames event.
            tracing::warn!(pod = %format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or("")),
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.", invalid.join(", "));
        }
    }

    for ev in container.env.iter().flatten() {
        let value = match (ev.value.as_deref(), ev.value_from.as_ref()) {
            (Some(v), _) if !v.is_empty() => expand(v, |k| vars.get(k).or_else(|| service_vars.get(k)).cloned()),
            (_, Some(vf)) => {
                if let Some(f) = vf.field_ref.as_ref() {
                    pod_field(pod, &f.field_path, ctx)?
                } else if let Some(r) = vf.resource_field_ref.as_ref() {
                    let c = match r.container_name.as_deref() {
                        None | Some("") => container,
                        Some(n) => downward::find_container(pod, n).ok_or_else(|| DownwardError::ContainerNotFound(n.to_string()))?,
                    };
                    downward::resource_value(r, c, ctx.node_allocatable)?
                } else if let Some(r) = vf.config_map_key_ref.as_ref() {
                    let optional = r.optional == Some(true);
                    let Some(cm) = sources.config_maps.get(&r.name).and_then(Option::as_ref) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::NotFound { kind: "configmap", name: r.name.clone() });
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => return Err(EnvError::MissingKey { key: r.key.clone(), kind: "ConfigMap", namespace: ns, name: r.name.clone() }),
                    }
                } else if let Some(r) = vf.secret_key_ref.as_ref() {
                    let optional = r.optional == Some(true);
                    let Some(s) = sources.secrets.get(&r.name).and_then(Option::as_ref) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::NotFound { kind: "secret", name: r.name.clone() });
                    };
                    match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => return Err(EnvError::MissingKey { key: r.key.clone(), kind: "Secret", namespace: ns, name: r.name.clone() }),
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        vars.set(ev.name.clone(), value);
    }

    let mut out = vars.items;
    let defined: std::collections::HashSet<String> = out.iter().map(|(k, _)| k.clone()).collect();
    out.extend(service_vars.into_iter().filter(|(k, _)| !defined.contains(k)));
    Ok(out)
}

/// Secret data as strings (env values are text; invalid UTF-8 is replaced).
fn secret_strings(s: &Secret) -> Vec<(String, String)> {
    s.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect()
}

/// A `fieldRef` value for env: the metadata fields plus node, service account and IPs.
pub fn pod_field(pod: &Pod, path: &str, ctx: &EnvContext<'_>) -> Result<String, DownwardError> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let pod_ips: Vec<String> = if ctx.pod_ips.is_empty() {
        status.and_then(|s| s.pod_ips.as_ref()).map(|v| v.iter().map(|i| i.ip.clone()).collect()).unwrap_or_else(|| status.and_then(|s| s.pod_ip.clone()).into_iter().collect())
    } else {
        ctx.pod_ips.to_vec()
    };
    let host_ips: Vec<String> = if ctx.host_ips.is_empty() {
        status.and_then(|s| s.host_ips.as_ref()).map(|v| v.iter().map(|i| i.ip.clone()).collect()).unwrap_or_else(|| status.and_then(|s| s.host_ip.clone()).into_iter().collect())
    } else {
        ctx.host_ips.to_vec()
    };
    match path {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Ok(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()),
        "status.podIP" => Ok(pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips.join(",")),
        "status.hostIP" => Ok(host_ips.first().cloned().unwrap_or_default()),
        "status.hostIPs" => Ok(host_ips.join(",")),
        _ => downward::metadata_field(pod, path),
    }
}

/// Service variables for a pod in `namespace`: its namespace's services when `links`, and
/// `default/kubernetes` always (a same-named service of the pod's namespace wins, as
/// upstream). Headless and ExternalName services have no variables.
pub fn service_env(namespace: &str, links: bool, services: &[Service]) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or("");
        if svc_ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if svc_ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    let mut out = BTreeMap::new();
    for (name, svc) in chosen {
        let spec = svc.spec.as_ref().expect("checked above");
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(&name);
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(format!("{prefix}_SERVICE_PORT_{}", env_name(n)), p.port.to_string());
            }
        }
        // Docker link variables.
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let url = format!("{}://{host}:{}", proto.to_lowercase(), p.port);
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.insert(format!("{pp}_PROTO"), proto.to_lowercase());
            out.insert(format!("{pp}_PORT"), p.port.to_string());
            out.insert(format!("{pp}_ADDR"), ip.clone());
            out.insert(pp, url);
        }
    }
    out
}

/// `my-svc` -> `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// Upstream's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Kubernetes variable expansion: `$(VAR)` becomes `mapping(VAR)`, or stays as written when
/// the mapping has no value; `$$` is a literal `$`; any other `$` is kept; an unterminated
/// `$(` is kept.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < b.len() {
        if b[cursor] == b'$' && cursor + 1 < b.len() {
            out.extend_from_slice(&b[checkpoint..cursor]);
            let rest = &b[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&c| c == b')') {
                    Some(close) => {
                        // Split only at ASCII bytes, so the name is valid UTF-8.
                        let name = std::str::from_utf8(&rest[1..close]).expect("utf-8 slice");
                        match mapping(name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                c => {
                    out.push(b'$');
                    out.push(c);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&b[checkpoint.min(b.len())..]);
    String::from_utf8(out).expect("only whole UTF-8 sequences were copied")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn exp(s: &str) -> String {
        let m = map(&[("A", "x"), ("EMPTY", "")]);
        expand(s, |k| m.get(k).cloned())
    }

    #[test]
    fn expansion_rules() {
        assert_eq!(exp("$(A)"), "x");
        assert_eq!(exp("pre-$(A)-post"), "pre-x-post");
        assert_eq!(exp("$(B)"), "$(B)", "undefined stays as written");
        assert_eq!(exp("$(EMPTY)|"), "|");
        assert_eq!(exp("$$(A)"), "$(A)", "escaped");
        assert_eq!(exp("$$$(A)"), "$x");
        assert_eq!(exp("$$"), "$");
        assert_eq!(exp("a$b"), "a$b");
        assert_eq!(exp("$(A"), "$(A", "unterminated");
        assert_eq!(exp("end$"), "end$");
        assert_eq!(exp("$()"), "$()");
        assert_eq!(exp("é$(A)ü$é"), "éxü$é");
        assert_eq!(exp("$(A)$(A)"), "xx");
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}})).unwrap()
    }

    fn services() -> Vec<Service> {
        vec![
            svc("default", "kubernetes", "10.43.0.1", json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            svc("app", "my-db", "10.43.0.7", json!([{"name": "pg", "port": 5432}, {"name": "metrics-http", "port": 9187, "protocol": "UDP"}])),
            svc("app", "headless", "None", json!([{"port": 80}])),
            svc("other", "elsewhere", "10.43.0.9", json!([{"port": 80}])),
        ]
    }

    #[test]
    fn service_variables() {
        let env = service_env("app", true, &services());
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(env["MY_DB_SERVICE_HOST"], "10.43.0.7");
        assert_eq!(env["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(env["MY_DB_SERVICE_PORT_PG"], "5432");
        assert_eq!(env["MY_DB_SERVICE_PORT_METRICS_HTTP"], "9187");
        assert_eq!(env["MY_DB_PORT"], "tcp://10.43.0.7:5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP"], "tcp://10.43.0.7:5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP_PROTO"], "tcp");
        assert_eq!(env["MY_DB_PORT_5432_TCP_PORT"], "5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP_ADDR"], "10.43.0.7");
        assert_eq!(env["MY_DB_PORT_9187_UDP"], "udp://10.43.0.7:9187");
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE")), "{env:?}");

        let no_links = service_env("app", false, &services());
        assert!(no_links.keys().all(|k| k.starts_with("KUBERNETES_")), "{no_links:?}");
        assert_eq!(no_links["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        let v6 = service_env("x", true, &[svc("x", "v6", "fd00::1", json!([{"port": 80}]))]);
        assert_eq!(v6["V6_PORT"], "tcp://[fd00::1]:80");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "app", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa1", "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}}}]},
            "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}], "hostIP": "192.168.1.2"}
        }))
        .unwrap()
    }

    fn sources() -> EnvSources {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"MODE": "prod", "bad key": "x", "1NUM": "y"}})).unwrap();
        let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "sec"}, "data": {"PASSWORD": "czNjcjN0"}})).unwrap();
        EnvSources {
            config_maps: [("cfg".to_string(), Some(cm)), ("gone".to_string(), None)].into_iter().collect(),
            secrets: [("sec".to_string(), Some(sec)), ("gone".to_string(), None)].into_iter().collect(),
        }
    }

    fn env_of(container: serde_json::Value, ctx_ips: &[String]) -> Result<Vec<(String, String)>, EnvError> {
        let p = pod();
        let c: Container = serde_json::from_value(container).unwrap();
        let alloc: BTreeMap<String, Quantity> = [("cpu".to_string(), Quantity("2".into())), ("memory".to_string(), Quantity("4Gi".into()))].into_iter().collect();
        let svcs = services();
        let ctx = EnvContext { services: &svcs, pod_ips: ctx_ips, host_ips: &[], node_allocatable: &alloc };
        resolve_env(&p, &c, &ctx, &sources())
    }

    #[test]
    fn full_environment_in_order() {
        let env = env_of(json!({"name": "c",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}},
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec"}},
                        {"configMapRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "FIRST", "value": "$(LATER)-$(CFG_MODE)-$(MY_DB_SERVICE_HOST)-$$(CFG_MODE)"},
                {"name": "LATER", "value": "l"},
                {"name": "SECOND", "value": "$(LATER)"},
                {"name": "CFG_MODE", "value": "overridden"},
                {"name": "EMPTY"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
                {"name": "OPT2", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
            ]}), &["10.42.0.9".to_string(), "fd00::9".to_string()])
        .unwrap();
        let m: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(m.len(), env.len(), "no duplicates");
        assert_eq!(m["FIRST"], "$(LATER)-prod-10.43.0.7-$(CFG_MODE)", "later vars are not visible; services are");
        assert_eq!(m["SECOND"], "l");
        assert_eq!(m["CFG_MODE"], "overridden");
        assert_eq!(m["PASSWORD"], "s3cr3t");
        assert_eq!(m["CFG_1NUM"], "y", "the prefix makes a digit-leading key valid");
        assert!(!m.contains_key("CFG_bad key"), "invalid names skipped");
        assert_eq!(m["EMPTY"], "");
        assert_eq!(m["NODE"], "n1");
        assert_eq!(m["SA"], "sa1");
        assert_eq!(m["IP"], "10.42.0.9", "sandbox IPs win over status");
        assert_eq!(m["IPS"], "10.42.0.9,fd00::9");
        assert_eq!(m["HOST"], "192.168.1.2");
        assert_eq!(m["APP"], "web");
        assert_eq!(m["CPU_M"], "250");
        assert_eq!(m["CPU_LIMIT"], "2", "node allocatable");
        assert_eq!(m["MEM_MI"], "128");
        assert_eq!(m["MODE"], "prod");
        assert!(!m.contains_key("OPT") && !m.contains_key("OPT2"));
        assert_eq!(m["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        let pos = |k: &str| env.iter().position(|(n, _)| n == k).unwrap();
        assert!(pos("CFG_MODE") < pos("PASSWORD") && pos("PASSWORD") < pos("FIRST") && pos("FIRST") < pos("LATER"));
        assert!(pos("PW") < pos("KUBERNETES_SERVICE_HOST"), "service vars last");
    }

    #[test]
    fn kubelet_error_texts() {
        let err = |env: serde_json::Value| env_of(json!({"name": "c", "env": env}), &[]).unwrap_err().to_string();
        let err_from = |ef: serde_json::Value| env_of(json!({"name": "c", "envFrom": ef}), &[]).unwrap_err().to_string();
        assert_eq!(err(json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}])), "configmap \"gone\" not found");
        assert_eq!(err(json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "y"}}}])), "couldn't find key y in ConfigMap app/cfg");
        assert_eq!(err(json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}])), "secret \"gone\" not found");
        assert_eq!(err(json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "y"}}}])), "couldn't find key y in Secret app/sec");
        assert_eq!(err_from(json!([{"configMapRef": {"name": "gone"}}])), "configmap \"gone\" not found");
        assert_eq!(err_from(json!([{"secretRef": {"name": "gone"}}])), "secret \"gone\" not found");
        assert_eq!(err(json!([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}])), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "a_b", "-x", ".dot", "_1", "A-B.C"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "a b", "a=b", "é"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
