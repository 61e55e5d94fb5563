//! CNI mode: pods wired by standard CNI plugins (Debian's containernetworking-plugins, or
//! those a Flannel, Calico or Cilium install drops in) instead of skiff's own bridge, as the
//! kubelet and containerd do it. ADD runs the configured chain in order, each plugin getting
//! the previous one's result; DEL runs it in reverse with the cached result; the attachment
//! is kept on disk so pod IPs and DEL survive an agent restart.
//!
//! The configuration is read again for every ADD: network add-ons write it from their own
//! (host-network) pods after the agent started, and until then sandboxes fail to get a
//! network and pod workers retry, as with a kubelet whose CNI is not ready. Until then the
//! node also reports Ready=False ([`PodAddresses::network_ready`]).

mod config;
mod error;
mod exec;
mod result;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use skiff_runtime::runtime::{NetworkHook, SandboxInfo};

pub use config::NetworkConfigList;
pub use error::CniError;
pub use result::CniResult;
pub use state::{Attachment, StateDir};

use crate::pods::naming;
use crate::PodAddresses;

/// The interface every pod gets, as the kubelet names it.
pub const POD_IFNAME: &str = "eth0";

/// Where Debian's containernetworking-plugins installs the plugins.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/cni";

/// How long one plugin may run (the CRI runtimes allow minutes; a minute is plenty for the
/// standard plugins and bounds a hung one).
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the CNI configuration and plugins are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The configuration directory (first `*.conflist` / `*.conf` / `*.json` by name).
    pub conf_dir: PathBuf,
    /// The plugin directories, searched in order.
    pub bin_dirs: Vec<PathBuf>,
}

impl CniConfig {
    /// `bin_dirs` given as CNI_PATH is (`:`-separated; empty parts ignored).
    pub fn new(conf_dir: impl Into<PathBuf>, bin_dirs: &str) -> Self {
        let bin_dirs = bin_dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect();
        Self { conf_dir: conf_dir.into(), bin_dirs }
    }
}

/// The CNI-backed pod network: the runtime's network hook and the agent's pod IP lookup.
pub struct CniNetwork {
    config: CniConfig,
    state: StateDir,
    timeout: Duration,
    /// Pod IPs by sandbox id, filled by ADD or from the state files after a restart.
    ips: Mutex<HashMap<String, Option<IpAddr>>>,
}

/// CNI_ARGS for a sandbox: the pod's identity as the kubelet passes it (plugins such as
/// Calico and Cilium look the pod up by it), with `IgnoreUnknown` so plugins that know none
/// of these keys accept them.
pub fn cni_args(sandbox: &SandboxInfo) -> String {
    let label = |k: &str| sandbox.config.labels.get(k).cloned().unwrap_or_default();
    let mut args = vec!["IgnoreUnknown=1".to_string()];
    for (key, value) in [
        ("K8S_POD_NAMESPACE", label(naming::POD_NAMESPACE)),
        ("K8S_POD_NAME", label(naming::POD_NAME)),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox.config.id.clone()),
        ("K8S_POD_UID", label(naming::POD_UID)),
    ] {
        if !value.is_empty() {
            args.push(format!("{key}={value}"));
        }
    }
    args.join(";")
}

impl CniNetwork {
    /// A network using `config`, keeping attachments in `state_dir`.
    pub fn new(config: CniConfig, state_dir: impl Into<PathBuf>) -> Self {
        Self { config, state: StateDir::new(state_dir), timeout: PLUGIN_TIMEOUT, ips: Mutex::default() }
    }

    /// Overrides the per-plugin time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A network that only undoes attachments saved in `state_dir` (by their own plugin
    /// directories), for `skiff killall`.
    pub fn for_cleanup(state_dir: impl Into<PathBuf>) -> Self {
        Self::new(CniConfig { conf_dir: PathBuf::new(), bin_dirs: vec![PathBuf::from(DEFAULT_BIN_DIR)] }, state_dir)
    }

    /// Whether any attachment is saved.
    pub fn has_attachments(&self) -> bool {
        !self.state.ids().is_empty()
    }

    /// The configuration and plugin directories.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    fn remember(&self, id: &str, ip: Option<IpAddr>) {
        self.ips.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), ip);
    }

    fn forget(&self, id: &str) {
        self.ips.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Runs one plugin of `list`; the parsed result for ADD.
    fn call(&self, at: &Attachment, index: usize, inv: &exec::Invocation<'_>, prev: Option<&Value>) -> Result<Option<CniResult>, CniError> {
        let cmd = inv.command;
        let list = &at.config;
        let bin_dirs = if at.bin_dirs.is_empty() { &self.config.bin_dirs } else { &at.bin_dirs };
        let kind = list.plugin_type(index);
        let failed = |message: String| CniError::PluginFailed { plugin: kind.to_string(), command: cmd.name(), message };
        let program = exec::find_plugin(bin_dirs, kind)?;
        let input = list.plugin_input(index, prev);
        let outcome = exec::run(&program, bin_dirs, inv, &input, self.timeout)
            .map_err(|e| failed(format!("running {}: {e}", program.display())))?
            .ok_or_else(|| CniError::Timeout { plugin: kind.to_string(), command: cmd.name(), limit: self.timeout })?;
        if !outcome.status.success() {
            return Err(failed(result::failure_message(&outcome.status_text(), &outcome.stdout, &outcome.stderr)));
        }
        match cmd {
            exec::Command::Del => Ok(None),
            exec::Command::Add => CniResult::parse(&outcome.stdout)
                .map(Some)
                .map_err(|reason| CniError::BadResult { plugin: kind.to_string(), command: cmd.name(), reason }),
        }
    }

    /// CNI ADD of sandbox `id` with namespace `netns`: the whole chain, then the result saved.
    pub fn add(&self, id: &str, netns: &str, args: &str) -> Result<CniResult, CniError> {
        let (config, source) = config::load_dir(&self.config.conf_dir)?;
        let mut attachment = Attachment {
            config,
            source,
            bin_dirs: self.config.bin_dirs.clone(),
            netns: netns.to_string(),
            ifname: POD_IFNAME.into(),
            args: args.to_string(),
            result: None,
        };
        // Saved first: if a plugin fails half-way, the teardown that follows undoes the
        // plugins that did run with this very chain.
        self.state.save(id, &attachment)?;
        let inv = exec::Invocation { command: exec::Command::Add, container_id: id, netns, ifname: POD_IFNAME, args };
        let mut prev: Option<CniResult> = None;
        for index in 0..attachment.config.plugins.len() {
            prev = self.call(&attachment, index, &inv, prev.as_ref().map(CniResult::value))?;
        }
        let result = prev.expect("a configuration list has at least one plugin");
        attachment.result = Some(result.value().clone());
        self.state.save(id, &attachment)?;
        self.remember(id, result.pod_ip());
        tracing::debug!(sandbox = %id, network = %attachment.config.name, ip = ?result.pod_ip(), "CNI ADD done");
        Ok(result)
    }

    /// CNI DEL of sandbox `id` with the chain and result of its ADD, in reverse order. No
    /// attachment means nothing to undo. Every plugin is called even when one fails; then
    /// the attachment is kept so that the next teardown tries again, and the first error is
    /// returned.
    pub fn del(&self, id: &str) -> Result<(), CniError> {
        let attachment = match self.state.load(id) {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.forget(id);
                return Ok(());
            }
            // Unreadable JSON can never be undone with its own chain, and keeping it would
            // fail the sandbox's removal forever: dropped, with a warning.
            Err(e @ CniError::State { .. }) => {
                tracing::warn!(sandbox = %id, error = %e, "dropping an unreadable CNI attachment without DEL");
                self.state.remove(id)?;
                self.forget(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // A namespace that is gone (the node rebooted) is passed as empty: plugins then
        // release what they hold outside it (addresses, host links) and skip the rest.
        let netns = if std::path::Path::new(&attachment.netns).exists() { attachment.netns.as_str() } else { "" };
        let inv = exec::Invocation { command: exec::Command::Del, container_id: id, netns, ifname: &attachment.ifname, args: &attachment.args };
        let prev = attachment.result.as_ref().filter(|_| attachment.config.del_takes_prev_result());
        let mut first_error = None;
        for index in (0..attachment.config.plugins.len()).rev() {
            if let Err(e) = self.call(&attachment, index, &inv, prev) {
                tracing::warn!(sandbox = %id, error = %e, "CNI DEL failed");
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.state.remove(id)?;
        self.forget(id);
        Ok(())
    }

    /// The pod IP of sandbox `id`, from memory or its saved attachment.
    pub fn address_of(&self, id: &str) -> Option<IpAddr> {
        if let Some(ip) = self.ips.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return *ip;
        }
        let attachment = self.state.load(id).ok()??;
        // An attachment without a result is an ADD in progress (or one that failed): no IP
        // yet, and nothing worth remembering.
        let ip = CniResult::from_value(attachment.result?).pod_ip();
        self.remember(id, ip);
        ip
    }

    /// Runs DEL for attachments whose sandbox is gone (`live` are the sandboxes that
    /// exist), as after an agent restart that missed a removal; the ids it cleaned.
    pub fn gc(&self, live: &[&str]) -> Vec<String> {
        let mut cleaned = Vec::new();
        for id in self.state.ids() {
            if live.contains(&id.as_str()) {
                continue;
            }
            match self.del(&id) {
                Ok(()) => cleaned.push(id),
                Err(e) => tracing::warn!(sandbox = %id, error = %e, "could not release the CNI attachment of a vanished sandbox"),
            }
        }
        cleaned
    }
}

fn runtime_error(e: CniError) -> skiff_runtime::Error {
    skiff_runtime::Error::InvalidState(format!("pod network (CNI): {e}"))
}

impl NetworkHook for CniNetwork {
    fn setup(&self, sandbox: &SandboxInfo) -> skiff_runtime::Result<()> {
        let Some(netns) = sandbox.netns_path() else { return Ok(()) }; // hostNetwork
        self.add(&sandbox.config.id, &netns.to_string_lossy(), &cni_args(sandbox)).map(|_| ()).map_err(runtime_error)
    }

    fn teardown(&self, sandbox: &SandboxInfo) -> skiff_runtime::Result<()> {
        self.del(&sandbox.config.id).map_err(runtime_error)
    }
}

impl PodAddresses for CniNetwork {
    fn pod_ip(&self, sandbox: &SandboxInfo) -> Option<IpAddr> {
        if sandbox.config.host_network {
            return None;
        }
        self.address_of(&sandbox.config.id)
    }

    /// Ready once the configuration directory holds a configuration that loads, as
    /// containerd's CNI status says (`cni plugin not initialized` until then). The file is
    /// read and parsed every time: it is small, and a rewritten one must count at once.
    fn network_ready(&self) -> Result<(), String> {
        config::load_dir(&self.config.conf_dir)
            .map(|_| ())
            .map_err(|e| format!("Network plugin returns error: cni plugin not initialized: {e}"))
    }
}
