//! Reading static pods from the manifests directory: every regular, non-hidden file holds
//! one or more Pod documents (YAML or JSON). Each pod gets what upstream's file source gives
//! it: a UID hashed from its content, node and file (so an edited manifest is a new pod), the
//! name `<name>-<nodeName>`, the config annotations, `spec.nodeName`, a toleration of every
//! NoExecute taint, and the API's defaults.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{CONFIG_HASH, CONFIG_SOURCE};

/// A manifest that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("static pod manifest {path}: {detail}")]
pub struct ManifestError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub detail: String,
}

/// Reads the manifests directory again and again, remembering which files were broken so
/// that each problem is logged once, not on every scan.
#[derive(Debug)]
pub struct Source {
    dir: PathBuf,
    node_name: String,
    reported: HashMap<PathBuf, String>,
}

impl Source {
    /// A source for `dir` on node `node_name`.
    pub fn new(dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        Self { dir: dir.into(), node_name: node_name.into(), reported: HashMap::new() }
    }

    /// The static pods the directory holds now, by UID. A missing directory holds none.
    pub fn scan(&mut self) -> BTreeMap<String, Pod> {
        let (pods, errors) = read_dir(&self.dir, &self.node_name);
        let mut still_broken = HashMap::new();
        for e in errors {
            if self.reported.get(&e.path) != Some(&e.detail) {
                tracing::warn!(error = %e, "ignoring static pod manifest");
            }
            still_broken.insert(e.path, e.detail);
        }
        self.reported = still_broken;
        pods
    }
}

/// Every static pod in `dir` (by UID) and the problems found on the way.
pub fn read_dir(dir: &Path, node_name: &str) -> (BTreeMap<String, Pod>, Vec<ManifestError>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (pods, errors) };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut names: HashMap<(String, String), PathBuf> = HashMap::new();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ManifestError { path, detail: e.to_string() });
                continue;
            }
        };
        match parse(&text, &path, node_name) {
            Ok(found) => {
                for pod in found {
                    let key = (
                        pod.metadata.namespace.clone().unwrap_or_default(),
                        pod.metadata.name.clone().unwrap_or_default(),
                    );
                    if let Some(first) = names.get(&key) {
                        errors.push(ManifestError {
                            path: path.clone(),
                            detail: format!("pod {}/{} is already defined in {}", key.0, key.1, first.display()),
                        });
                        continue;
                    }
                    names.insert(key, path.clone());
                    pods.insert(pod.metadata.uid.clone().unwrap_or_default(), pod);
                }
            }
            Err(detail) => errors.push(ManifestError { path, detail }),
        }
    }
    (pods, errors)
}

/// The pods of one manifest file (several YAML documents allowed; JSON is YAML too).
pub fn parse(text: &str, path: &Path, node_name: &str) -> Result<Vec<Pod>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| format!("invalid YAML or JSON: {e}"))?;
        if value.is_null() {
            continue;
        }
        out.push(static_pod(value, path, node_name)?);
    }
    Ok(out)
}

/// Turns one decoded document into the static pod the agent runs.
pub fn static_pod(mut value: Value, path: &Path, node_name: &str) -> Result<Pod, String> {
    if !value.is_object() {
        return Err("a manifest document must be an object".into());
    }
    match (value.get("apiVersion").and_then(Value::as_str), value.get("kind").and_then(Value::as_str)) {
        (Some("v1") | None, Some("Pod")) => {}
        (_, Some("Pod")) => return Err("apiVersion must be v1".into()),
        (_, Some(kind)) => return Err(format!("kind {kind:?} is not Pod (only pods may be static)")),
        (_, None) => return Err("kind is missing (it must be Pod)".into()),
    }
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        return Err("metadata.name: Required value: name is required".into());
    }
    if value.pointer("/spec/containers").and_then(Value::as_array).is_none_or(|c| c.is_empty()) {
        return Err("spec.containers: Required value".into());
    }
    let uid = content_hash(&value, path, node_name);
    let meta = value["metadata"].as_object_mut().ok_or("metadata must be an object")?;
    meta.insert("name".into(), json!(format!("{name}-{node_name}")));
    if meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty) {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    for field in ["resourceVersion", "creationTimestamp", "deletionTimestamp", "generateName", "selfLink"] {
        meta.remove(field);
    }
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[CONFIG_HASH] = json!(uid);
    annotations[CONFIG_SOURCE] = json!("file");
    let spec = &mut value["spec"];
    spec["nodeName"] = json!(node_name);
    // Static pods stay on their node whatever its taints, as upstream's file source ensures.
    let tolerations = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates_all = tolerations.iter().any(|t| t.get("operator").and_then(Value::as_str) == Some("Exists") && t.get("key").is_none() && t.get("effect").and_then(Value::as_str) == Some("NoExecute"));
    if !tolerates_all {
        let mut all = tolerations;
        all.push(json!({"operator": "Exists", "effect": "NoExecute"}));
        spec["tolerations"] = json!(all);
    }
    if let Some(v) = value.as_object_mut() {
        v.remove("status");
        v.insert("apiVersion".into(), json!("v1"));
    }
    skiff_api::defaults::apply("", "Pod", &mut value);
    serde_json::from_value(value).map_err(|e| format!("not a valid Pod: {e}"))
}

/// A 32-hex-digit UID from the pod as written, the node and the file, as upstream hashes
/// them: an edited manifest becomes a new pod.
fn content_hash(value: &Value, path: &Path, node_name: &str) -> String {
    let mut h = Sha256::new();
    h.update(node_name.as_bytes());
    h.update(serde_json::to_vec(value).unwrap_or_default());
    h.update(path.to_string_lossy().as_bytes());
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: busybox\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"db\", \"namespace\": \"kube-system\"}, \"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"busybox\"}]}}\n";

    #[test]
    fn documents_become_static_pods() {
        let pods = parse(YAML, Path::new("/m/web.yaml"), "n1").unwrap();
        assert_eq!(pods.len(), 2);
        let web = &pods[0];
        assert_eq!(web.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(web.metadata.namespace.as_deref(), Some("default"));
        let uid = web.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let ann = web.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[CONFIG_SOURCE], "file");
        assert_eq!(ann[CONFIG_HASH], uid);
        let spec = web.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "API defaults applied");
        assert!(spec.tolerations.as_ref().unwrap().iter().any(|t| t.operator.as_deref() == Some("Exists") && t.effect.as_deref() == Some("NoExecute")));
        assert_eq!(pods[1].metadata.name.as_deref(), Some("db-n1"));
        assert_eq!(pods[1].metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn the_uid_follows_the_content() {
        let a = parse(YAML, Path::new("/m/a.yaml"), "n1").unwrap();
        let again = parse(YAML, Path::new("/m/a.yaml"), "n1").unwrap();
        assert_eq!(a[0].metadata.uid, again[0].metadata.uid);
        let edited = parse(&YAML.replace("app: web", "app: web2"), Path::new("/m/a.yaml"), "n1").unwrap();
        assert_ne!(a[0].metadata.uid, edited[0].metadata.uid);
        let other_node = parse(YAML, Path::new("/m/a.yaml"), "n2").unwrap();
        assert_ne!(a[0].metadata.uid, other_node[0].metadata.uid);
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        let p = Path::new("/m/x");
        assert!(parse("kind: Deployment\nmetadata: {name: x}\n", p, "n").unwrap_err().contains("not Pod"));
        assert!(parse("kind: Pod\nmetadata: {}\nspec: {containers: [{name: c}]}\n", p, "n").unwrap_err().contains("name is required"));
        assert!(parse("kind: Pod\nmetadata: {name: x}\nspec: {}\n", p, "n").unwrap_err().contains("containers"));
        assert!(parse("{{{", p, "n").unwrap_err().contains("invalid"));
    }

    #[test]
    fn a_directory_is_scanned_skipping_hidden_files_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), YAML).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), YAML.replace("web", "hidden")).unwrap();
        std::fs::write(dir.path().join("b.json"), YAML).unwrap();
        std::fs::write(dir.path().join("c.yaml"), "kind: Service\n").unwrap();
        let (pods, errors) = read_dir(dir.path(), "n1");
        let mut names: Vec<_> = pods.values().map(|p| p.metadata.name.clone().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["db-n1", "web-n1"]);
        assert_eq!(errors.len(), 3, "{errors:?}"); // b.json's two duplicates and c.yaml
        let (none, errs) = read_dir(&dir.path().join("missing"), "n1");
        assert!(none.is_empty() && errs.is_empty());
    }
}
