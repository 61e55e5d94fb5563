//! The resources this server serves right now: the built-ins plus those of established
//! CustomResourceDefinitions, looked up by group/version/plural for routing and by group for
//! discovery.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use skiff_api::registry::{builtin_resources, GROUP_ORDER};
use skiff_api::{ResourceInfo, Scope};

/// A custom resource's extra serving data (schema, printer columns) from its CRD version.
#[derive(Debug, Clone, Default)]
pub struct CustomVersion {
    /// `openAPIV3Schema` of this version.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// `subresources.scale` (spec/status replicas paths).
    pub scale: Option<Value>,
}

/// A served resource with any custom-resource data.
#[derive(Debug, Clone)]
pub struct Served {
    /// Addressing and capabilities.
    pub info: ResourceInfo,
    /// Present for custom resources.
    pub custom: Option<CustomVersion>,
}

/// Thread-safe table of served resources.
#[derive(Clone)]
pub struct Resources {
    inner: Arc<RwLock<Table>>,
}

#[derive(Default)]
struct Table {
    builtin: Vec<Served>,
    /// CRD name -> its served versions.
    custom: BTreeMap<String, Vec<Served>>,
}

impl Default for Resources {
    fn default() -> Self {
        Self::new()
    }
}

impl Resources {
    /// The built-in resources only.
    pub fn new() -> Self {
        let builtin = builtin_resources().into_iter().map(|info| Served { info, custom: None }).collect();
        Self { inner: Arc::new(RwLock::new(Table { builtin, custom: BTreeMap::new() })) }
    }

    /// Find by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Served> {
        let t = self.inner.read().unwrap();
        t.builtin
            .iter()
            .chain(t.custom.values().flatten())
            .find(|s| s.info.group == group && s.info.version == version && s.info.plural == plural)
            .cloned()
    }

    /// Find the preferred version of a group/plural (used by the garbage collector and CRD code).
    pub fn find_preferred(&self, group: &str, plural: &str) -> Option<Served> {
        let t = self.inner.read().unwrap();
        t.builtin
            .iter()
            .chain(t.custom.values().flatten())
            .find(|s| s.info.group == group && s.info.plural == plural && s.info.version == s.info.storage_version)
            .cloned()
    }

    /// Find by apiVersion and kind.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<Served> {
        let (group, version) = skiff_api::meta::split_api_version(api_version);
        let t = self.inner.read().unwrap();
        t.builtin
            .iter()
            .chain(t.custom.values().flatten())
            .find(|s| s.info.group == group && s.info.version == version && s.info.kind == kind)
            .cloned()
    }

    /// All served resources, in discovery order: groups as upstream orders them, then custom
    /// groups alphabetically.
    pub fn all(&self) -> Vec<Served> {
        let t = self.inner.read().unwrap();
        let mut out: Vec<Served> = t.builtin.clone();
        out.extend(t.custom.values().flatten().cloned());
        out
    }

    /// Group names in discovery order.
    pub fn groups(&self) -> Vec<String> {
        let all = self.all();
        let mut groups: Vec<String> = GROUP_ORDER
            .iter()
            .filter(|g| all.iter().any(|s| s.info.group == **g))
            .map(|g| g.to_string())
            .collect();
        let mut custom: Vec<String> = all
            .iter()
            .map(|s| s.info.group.clone())
            .filter(|g| !GROUP_ORDER.contains(&g.as_str()))
            .collect();
        custom.sort();
        custom.dedup();
        groups.extend(custom);
        groups
    }

    /// Versions of `group`, preferred first.
    pub fn versions(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self.all();
        // Preferred (storage) versions first.
        for s in all.iter().filter(|s| s.info.group == group && s.info.version == s.info.storage_version) {
            if !out.contains(&s.info.version) {
                out.push(s.info.version.clone());
            }
        }
        for s in all.iter().filter(|s| s.info.group == group) {
            if !out.contains(&s.info.version) {
                out.push(s.info.version.clone());
            }
        }
        out
    }

    /// Resources of one group-version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Served> {
        self.all().into_iter().filter(|s| s.info.group == group && s.info.version == version).collect()
    }

    /// Replace the served versions of the CRD `name` (empty removes it).
    pub fn set_custom(&self, crd_name: &str, served: Vec<Served>) {
        let mut t = self.inner.write().unwrap();
        if served.is_empty() {
            t.custom.remove(crd_name);
        } else {
            t.custom.insert(crd_name.to_string(), served);
        }
    }

    /// Build the served entries for a CRD object (only versions with `served: true`).
    pub fn from_crd(crd: &Value) -> Vec<Served> {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let strs = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
        };
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let singular = names["singular"].as_str().map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
        let scope = if spec["scope"] == "Cluster" { Scope::Cluster } else { Scope::Namespaced };
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let storage = versions
            .iter()
            .find(|v| v["storage"] == true)
            .and_then(|v| v["name"].as_str())
            .unwrap_or("v1")
            .to_string();
        versions
            .iter()
            .filter(|v| v["served"] != false)
            .map(|v| {
                let mut subresources = Vec::new();
                if v.pointer("/subresources/status").is_some() {
                    subresources.push("status".to_string());
                }
                if v.pointer("/subresources/scale").is_some() {
                    subresources.push("scale".to_string());
                }
                Served {
                    info: ResourceInfo {
                        group: group.clone(),
                        version: v["name"].as_str().unwrap_or_default().to_string(),
                        kind: kind.clone(),
                        plural: plural.clone(),
                        singular: singular.clone(),
                        scope,
                        short_names: strs(&names["shortNames"]),
                        categories: strs(&names["categories"]),
                        verbs: skiff_api::registry::CRUD.iter().map(|s| s.to_string()).collect(),
                        subresources,
                        storage_version: storage.clone(),
                        custom: true,
                    },
                    custom: Some(CustomVersion {
                        schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                        printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                        scale: v.pointer("/subresources/scale").cloned(),
                    }),
                }
            })
            .collect()
    }
}
