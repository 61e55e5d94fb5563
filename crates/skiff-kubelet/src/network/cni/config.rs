//! The network configuration a CNI-mode node uses: the first file of the configuration
//! directory, in file-name order, among `*.conflist` (a plugin chain), `*.conf` and `*.json`
//! (one plugin, wrapped as a chain of one), as libcni's loaders and containerd choose it. A
//! broken first file is an error rather than skipped, so a typo does not silently select
//! another network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;

/// A network configuration list: the plugins run in order for ADD, reversed for DEL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigList {
    /// The spec version every plugin of the list is called with.
    pub cni_version: String,
    /// The network name.
    pub name: String,
    /// Each plugin's configuration (an object with at least `type`).
    pub plugins: Vec<Map<String, Value>>,
}

const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// The candidate configuration files of `dir`, in the order they are considered.
fn candidates(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CniError::Io { what: "reading CNI configuration directory", path: dir.to_path_buf(), source }),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTENSIONS.contains(&x)))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads the network configuration of `dir` (see the module comment for which file).
pub fn load_dir(dir: &Path) -> Result<(NetworkConfigList, PathBuf), CniError> {
    let first = candidates(dir)?.into_iter().next().ok_or_else(|| CniError::NoConfig { dir: dir.to_path_buf() })?;
    let list = load_file(&first)?;
    Ok((list, first))
}

/// Loads one configuration file; `.conflist` files are lists, others single plugins.
pub fn load_file(path: &Path) -> Result<NetworkConfigList, CniError> {
    let bytes = std::fs::read(path).map_err(|source| CniError::Io { what: "reading CNI configuration", path: path.to_path_buf(), source })?;
    let is_list = path.extension().and_then(|x| x.to_str()) == Some("conflist");
    parse(&bytes, is_list).map_err(|reason| CniError::InvalidConfig { path: path.to_path_buf(), reason })
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{key:?} is empty")),
        Some(_) => Err(format!("{key:?} is not a string")),
        None => Err(format!("missing {key:?}")),
    }
}

/// A plugin `type` names an executable in the plugin directories, so it must be a plain
/// file name: anything with a path separator could run an arbitrary program.
fn check_plugin(index: usize, plugin: &Map<String, Value>) -> Result<(), String> {
    let kind = string_field(plugin, "type").map_err(|e| format!("plugin {index}: {e}"))?;
    if kind.contains('/') || kind == "." || kind == ".." {
        return Err(format!("plugin {index}: type {kind:?} is not a plain executable name"));
    }
    Ok(())
}

/// Parses a configuration list (`is_list`) or a single plugin configuration.
pub fn parse(bytes: &[u8], is_list: bool) -> Result<NetworkConfigList, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else { return Err("not a JSON object".into()) };
    let cni_version = string_field(&obj, "cniVersion")?;
    let name = string_field(&obj, "name")?;
    let plugins = if is_list {
        let Some(plugins) = obj.get("plugins") else { return Err("missing \"plugins\"".into()) };
        let Value::Array(items) = plugins else { return Err("\"plugins\" is not a list".into()) };
        if items.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        items
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::Object(m) => Ok(m.clone()),
                _ => Err(format!("plugin {i} is not an object")),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![obj]
    };
    for (i, p) in plugins.iter().enumerate() {
        check_plugin(i, p)?;
    }
    Ok(NetworkConfigList { cni_version, name, plugins })
}

impl NetworkConfigList {
    /// The `type` of plugin `index` (checked when loaded).
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index].get("type").and_then(Value::as_str).unwrap_or_default()
    }

    /// What plugin `index` reads on stdin: its own configuration with the list's `name` and
    /// `cniVersion` and, in a chain, the previous result, as the spec's "network
    /// configuration derivation" says.
    pub fn plugin_input(&self, index: usize, prev_result: Option<&Value>) -> Vec<u8> {
        let mut conf = self.plugins[index].clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        match prev_result {
            Some(r) => conf.insert("prevResult".into(), r.clone()),
            None => conf.remove("prevResult"),
        };
        serde_json::to_vec(&Value::Object(conf)).expect("a JSON map serializes")
    }

    /// Whether DEL gets the cached ADD result as `prevResult` (spec 0.4.0 and later; older
    /// plugins did not expect one).
    pub fn del_takes_prev_result(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }
}

/// Compares a dotted spec version with `min`; unparsable versions count as current ones.
fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next().unwrap_or(Ok(0))) {
        (Some(Ok(a)), Some(Ok(b)), Ok(c)) => (a, b, c) >= min,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(version_at_least("0.10.0", (0, 4, 0)));
        assert!(version_at_least("1.1", (0, 4, 0)));
    }
}
