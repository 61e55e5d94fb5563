//! CNI mode without root: fake plugins (shell scripts) that record their environment and
//! stdin and print canned results, to check order, parameters, chaining, DEL and errors.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_runtime::runtime::{NetworkHook, SandboxConfig, SandboxInfo};

use super::*;

/// A scratch node: configuration, plugin and state directories and the plugins' call log.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for sub in ["conf", "bin", "calls", "state", "ns"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        Self { _dir: dir, root }
    }

    fn conf(&self) -> PathBuf {
        self.root.join("conf")
    }

    fn write_conf(&self, file: &str, body: &str) {
        std::fs::write(self.conf().join(file), body).unwrap();
    }

    /// A plugin that logs `name CMD|id|netns|ifname|path|args`, saves its stdin as
    /// `calls/<name>.<CMD>.json` and prints `result` on ADD; `fail_on` makes it exit 1 on
    /// that command after printing `error`.
    fn plugin(&self, name: &str, result: &str, fail_on: Option<(&str, &str)>) {
        let log = self.root.join("calls.log");
        let calls = self.root.join("calls");
        let (fail_cmd, fail_out) = fail_on.unwrap_or(("NONE", ""));
        let script = format!(
            "#!/bin/sh\n\
             printf '%s %s|%s|%s|%s|%s|%s\\n' {name} \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_NETNS\" \"$CNI_IFNAME\" \"$CNI_PATH\" \"$CNI_ARGS\" >> {log}\n\
             cat > {calls}/{name}.$CNI_COMMAND.json\n\
             if [ \"$CNI_COMMAND\" = {fail_cmd} ]; then\ncat <<'JSON'\n{fail_out}\nJSON\nexit 1\nfi\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then\ncat <<'JSON'\n{result}\nJSON\nfi\n",
            log = log.display(),
            calls = calls.display(),
        );
        self.script(name, &script);
    }

    fn script(&self, name: &str, text: &str) {
        let path = self.root.join("bin").join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn network(&self) -> CniNetwork {
        let config = CniConfig { conf_dir: self.conf(), bin_dirs: vec![self.root.join("nowhere"), self.root.join("bin")] };
        CniNetwork::new(config, self.root.join("state"))
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("calls.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.root.join("calls.log"));
    }

    fn stdin(&self, plugin: &str, cmd: &str) -> Value {
        let text = std::fs::read_to_string(self.root.join("calls").join(format!("{plugin}.{cmd}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// A pod sandbox whose namespace file exists (plugins only get its path).
    fn sandbox(&self, id: &str) -> SandboxInfo {
        let ns_dir = self.root.join("ns").join(id);
        std::fs::create_dir_all(&ns_dir).unwrap();
        std::fs::write(ns_dir.join("net"), "").unwrap();
        SandboxInfo {
            config: SandboxConfig {
                id: id.into(),
                hostname: "web".into(),
                labels: naming::sandbox_labels("uid-1", "shop", "web"),
                ..Default::default()
            },
            ns_dir,
            created_at: String::new(),
        }
    }
}

const FIRST_RESULT: &str = r#"{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "x"}], "ips": [{"address": "10.88.0.7/24", "gateway": "10.88.0.1", "interface": 0}]}"#;
const SECOND_RESULT: &str = r#"{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "x"}], "ips": [{"address": "10.88.0.7/24", "gateway": "10.88.0.1", "interface": 0}], "dns": {"nameservers": ["10.43.0.10"]}}"#;

fn chain_lab() -> Lab {
    let lab = Lab::new();
    lab.plugin("first", FIRST_RESULT, None);
    lab.plugin("second", SECOND_RESULT, None);
    lab.write_conf(
        "10-test.conflist",
        r#"{"cniVersion": "1.0.0", "name": "testnet",
            "plugins": [{"type": "first", "bridge": "tb0", "ipam": {"type": "host-local"}},
                        {"type": "second", "capabilities": {"portMappings": true}}]}"#,
    );
    lab
}

/// The two-plugin chain with sandbox `sb1` attached through it.
fn attached_chain() -> (Lab, CniNetwork, SandboxInfo) {
    let lab = chain_lab();
    let net = lab.network();
    let sandbox = lab.sandbox("sb1");
    net.setup(&sandbox).unwrap();
    (lab, net, sandbox)
}

// ---- configuration ----

#[test]
fn the_first_file_by_name_is_loaded_and_single_plugins_are_wrapped() {
    let lab = Lab::new();
    lab.write_conf("00-notes.txt", "not a config");
    lab.write_conf("20-b.conflist", r#"{"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "bridge"}]}"#);
    lab.write_conf("10-a.conf", r#"{"cniVersion": "0.4.0", "name": "a", "type": "ptp", "ipam": {"type": "host-local"}}"#);
    let (list, file) = config::load_dir(&lab.conf()).unwrap();
    assert_eq!(file.file_name().unwrap(), "10-a.conf");
    assert_eq!(list.name, "a");
    assert_eq!(list.cni_version, "0.4.0");
    assert_eq!(list.plugins.len(), 1);
    assert_eq!(list.plugin_type(0), "ptp");
    std::fs::remove_file(lab.conf().join("10-a.conf")).unwrap();
    let (list, _) = config::load_dir(&lab.conf()).unwrap();
    assert_eq!((list.name.as_str(), list.plugin_type(0)), ("b", "bridge"));
}

#[test]
fn missing_or_broken_configurations_are_clear_errors() {
    let lab = Lab::new();
    let err = config::load_dir(&lab.conf()).unwrap_err().to_string();
    assert!(err.starts_with("no CNI network configuration") && err.contains("conf"), "{err}");
    let err = config::load_dir(&lab.root.join("absent")).unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err}");

    let cases = [
        ("{not json", "invalid JSON"),
        (r#"[1, 2]"#, "not a JSON object"),
        (r#"{"name": "n", "plugins": [{"type": "bridge"}]}"#, "missing \"cniVersion\""),
        (r#"{"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}"#, "missing \"name\""),
        (r#"{"cniVersion": "1.0.0", "name": "n"}"#, "missing \"plugins\""),
        (r#"{"cniVersion": "1.0.0", "name": "n", "plugins": []}"#, "\"plugins\" is empty"),
        (r#"{"cniVersion": "1.0.0", "name": "n", "plugins": {"type": "x"}}"#, "\"plugins\" is not a list"),
        (r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"ipam": {}}]}"#, "plugin 0: missing \"type\""),
        (r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}, {"type": "../../bin/sh"}]}"#, "plugin 1: type"),
        (r#"{"cniVersion": 1, "name": "n", "plugins": [{"type": "bridge"}]}"#, "\"cniVersion\" is not a string"),
    ];
    for (body, want) in cases {
        lab.write_conf("10-x.conflist", body);
        let err = config::load_dir(&lab.conf()).unwrap_err().to_string();
        assert!(err.contains("10-x.conflist") && err.contains(want), "{body}: {err}");
    }
    std::fs::remove_file(lab.conf().join("10-x.conflist")).unwrap();
    lab.write_conf("10-x.conf", r#"{"cniVersion": "1.0.0", "name": "n"}"#);
    let err = config::load_dir(&lab.conf()).unwrap_err().to_string();
    assert!(err.contains("plugin 0: missing \"type\""), "{err}");
}

#[test]
fn the_network_is_ready_only_with_a_configuration_that_loads() {
    let lab = Lab::new();
    let not_ready = |net: &CniNetwork| net.network_ready().expect_err("not ready");
    // No directory at all (nothing installed yet), then an empty one.
    let missing = CniNetwork::new(CniConfig { conf_dir: lab.root.join("absent"), bin_dirs: vec![] }, lab.root.join("state"));
    let why = not_ready(&missing);
    assert!(why.starts_with("Network plugin returns error: cni plugin not initialized: no CNI network configuration"), "{why}");
    assert!(why.contains(&lab.root.join("absent").display().to_string()), "{why}");
    let net = lab.network();
    let why = not_ready(&net);
    assert!(why.contains("cni plugin not initialized: no CNI network configuration"), "{why}");
    // Files that are not configurations do not count; a broken first one is reported.
    lab.write_conf("05-readme.txt", "{}");
    assert!(not_ready(&net).contains("no CNI network configuration"));
    lab.write_conf("10-test.conflist", r#"{"cniVersion": "1.0.0", "name": "testnet", "plugins": []}"#);
    let why = not_ready(&net);
    assert!(why.contains("cni plugin not initialized") && why.contains("10-test.conflist") && why.contains("\"plugins\" is empty"), "{why}");
    lab.write_conf("10-test.conflist", "{\"cniVersion\": ");
    assert!(not_ready(&net).contains("invalid JSON"));
    // A valid list makes it ready, at once (no caching); removing it makes it not ready again.
    lab.write_conf("10-test.conflist", r#"{"cniVersion": "1.0.0", "name": "testnet", "plugins": [{"type": "bridge"}]}"#);
    assert_eq!(net.network_ready(), Ok(()));
    assert_eq!(missing.network_ready().map_err(|_| ()), Err(()), "another directory is unaffected");
    std::fs::remove_file(lab.conf().join("10-test.conflist")).unwrap();
    assert!(not_ready(&net).contains("no CNI network configuration"));
}

#[test]
fn plugin_input_injects_name_version_and_prev_result() {
    let list = config::parse(br#"{"cniVersion": "0.4.0", "name": "net", "plugins": [{"type": "a", "name": "ignored", "x": 1}]}"#, true).unwrap();
    let first: Value = serde_json::from_slice(&list.plugin_input(0, None)).unwrap();
    assert_eq!(first, json!({"type": "a", "name": "net", "cniVersion": "0.4.0", "x": 1}));
    let prev = json!({"cniVersion": "0.4.0", "ips": []});
    let chained: Value = serde_json::from_slice(&list.plugin_input(0, Some(&prev))).unwrap();
    assert_eq!(chained["prevResult"], prev);
}

// ---- ADD and DEL ----

#[test]
fn add_runs_the_chain_in_order_with_the_cni_environment_and_chained_results() {
    let (lab, net, sandbox) = attached_chain();

    let netns = sandbox.netns_path().unwrap().display().to_string();
    let path = format!("{}:{}", lab.root.join("nowhere").display(), lab.root.join("bin").display());
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1";
    assert_eq!(
        lab.log(),
        vec![format!("first ADD|sb1|{netns}|eth0|{path}|{args}"), format!("second ADD|sb1|{netns}|eth0|{path}|{args}")]
    );
    let first_in = lab.stdin("first", "ADD");
    assert_eq!(first_in, json!({"type": "first", "bridge": "tb0", "ipam": {"type": "host-local"}, "name": "testnet", "cniVersion": "1.0.0"}));
    let second_in = lab.stdin("second", "ADD");
    assert_eq!(second_in["prevResult"], serde_json::from_str::<Value>(FIRST_RESULT).unwrap());
    assert_eq!(second_in["name"], "testnet");
    assert_eq!(second_in["capabilities"], json!({"portMappings": true}));

    assert_eq!(net.pod_ip(&sandbox), Some("10.88.0.7".parse().unwrap()));
    let saved = StateDir::new(lab.root.join("state")).load("sb1").unwrap().unwrap();
    assert_eq!(saved.result, Some(serde_json::from_str::<Value>(SECOND_RESULT).unwrap()));
    assert_eq!(saved.netns, netns);
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_and_is_idempotent() {
    let (lab, net, sandbox) = attached_chain();
    lab.clear_log();

    net.teardown(&sandbox).unwrap();
    let log = lab.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("second DEL|sb1|") && log[1].starts_with("first DEL|sb1|"), "{log:?}");
    let cached: Value = serde_json::from_str(SECOND_RESULT).unwrap();
    assert_eq!(lab.stdin("first", "DEL")["prevResult"], cached);
    assert_eq!(lab.stdin("second", "DEL")["prevResult"], cached);
    assert_eq!(net.pod_ip(&sandbox), None);
    assert!(StateDir::new(lab.root.join("state")).ids().is_empty());

    // Again, and for a sandbox never set up: nothing to run, no error.
    lab.clear_log();
    net.teardown(&sandbox).unwrap();
    net.teardown(&lab.sandbox("never")).unwrap();
    assert!(lab.log().is_empty());
}

#[test]
fn an_agent_restart_keeps_the_ip_and_del_uses_the_config_add_used() {
    let lab = chain_lab();
    let sandbox = lab.sandbox("sb1");
    lab.network().setup(&sandbox).unwrap();

    // The configuration changes while the pod runs; a new agent process starts.
    lab.plugin("other", FIRST_RESULT, None);
    lab.write_conf("10-test.conflist", r#"{"cniVersion": "1.0.0", "name": "new", "plugins": [{"type": "other"}]}"#);
    let net = lab.network();
    assert_eq!(net.pod_ip(&sandbox), Some("10.88.0.7".parse().unwrap()));
    lab.clear_log();
    // The namespace is gone too (a reboot): DEL still runs, with an empty CNI_NETNS.
    std::fs::remove_file(sandbox.netns_path().unwrap()).unwrap();
    net.teardown(&sandbox).unwrap();
    let log = lab.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("second DEL|sb1||eth0|") && log[1].starts_with("first DEL|sb1||eth0|"), "{log:?}");
    assert_eq!(lab.stdin("first", "DEL")["name"], "testnet");
}

#[test]
fn pre_0_4_0_del_gets_no_prev_result() {
    let lab = Lab::new();
    lab.plugin("old", r#"{"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.9.0.2/16"}]}"#, None);
    lab.write_conf("old.conf", r#"{"cniVersion": "0.3.1", "name": "oldnet", "type": "old"}"#);
    let net = lab.network();
    let sandbox = lab.sandbox("sb1");
    net.setup(&sandbox).unwrap();
    assert_eq!(net.pod_ip(&sandbox), Some("10.9.0.2".parse().unwrap()));
    net.teardown(&sandbox).unwrap();
    let input = lab.stdin("old", "DEL");
    assert!(input.get("prevResult").is_none(), "{input}");
    assert_eq!(input["cniVersion"], "0.3.1");
}

#[test]
fn a_plugin_error_result_names_the_plugin_and_the_failed_add_is_undone() {
    let lab = chain_lab();
    let error = r#"{"cniVersion": "1.0.0", "code": 11, "msg": "failed to allocate for range 0", "details": "no IP addresses available in range set 10.88.0.1-10.88.0.254"}"#;
    lab.plugin("second", SECOND_RESULT, Some(("ADD", error)));
    let net = lab.network();
    let sandbox = lab.sandbox("sb1");
    let err = net.setup(&sandbox).unwrap_err().to_string();
    assert!(
        err.contains("CNI plugin second ADD failed: code 11: failed to allocate for range 0 (no IP addresses available in range set 10.88.0.1-10.88.0.254)"),
        "{err}"
    );
    assert_eq!(net.pod_ip(&sandbox), None);
    // The runtime tears a failed sandbox down: DEL undoes the plugins that ran, in reverse.
    lab.clear_log();
    net.teardown(&sandbox).unwrap();
    let log = lab.log();
    assert!(log.len() == 2 && log[0].starts_with("second DEL") && log[1].starts_with("first DEL"), "{log:?}");
    assert!(lab.stdin("first", "DEL").get("prevResult").is_none());
}

#[test]
fn a_failing_del_keeps_the_attachment_for_the_next_teardown() {
    let (lab, net, sandbox) = attached_chain();
    lab.plugin("second", SECOND_RESULT, Some(("DEL", "")));
    lab.clear_log();
    let err = net.teardown(&sandbox).unwrap_err().to_string();
    assert!(err.contains("CNI plugin second DEL failed: exit status 1"), "{err}");
    // The other plugin still ran.
    assert_eq!(lab.log().len(), 2);
    assert_eq!(StateDir::new(lab.root.join("state")).ids(), vec!["sb1".to_string()]);
    lab.plugin("second", SECOND_RESULT, None);
    net.teardown(&sandbox).unwrap();
    assert!(StateDir::new(lab.root.join("state")).ids().is_empty());
}

#[test]
fn missing_plugins_bad_results_and_crashes_are_clear_errors() {
    let lab = chain_lab();
    std::fs::remove_file(lab.root.join("bin").join("second")).unwrap();
    let net = lab.network();
    let err = net.setup(&lab.sandbox("sb1")).unwrap_err().to_string();
    assert!(err.contains("CNI plugin \"second\" not found in ") && err.contains("/bin"), "{err}");

    lab.script("second", "#!/bin/sh\ncat >/dev/null\necho 'not json'\n");
    let err = net.setup(&lab.sandbox("sb2")).unwrap_err().to_string();
    assert!(err.contains("CNI plugin second ADD printed an unusable result: invalid JSON"), "{err}");

    lab.script("second", "#!/bin/sh\ncat >/dev/null\necho 'panic: nil map' >&2\nexit 2\n");
    let err = net.setup(&lab.sandbox("sb3")).unwrap_err().to_string();
    assert!(err.contains("CNI plugin second ADD failed: exit status 2: panic: nil map"), "{err}");
}

#[test]
fn a_hung_plugin_is_killed_after_the_time_limit() {
    let lab = chain_lab();
    lab.script("second", "#!/bin/sh\nsleep 30 &\nwait\n");
    let net = lab.network().with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = net.setup(&lab.sandbox("sb1")).unwrap_err().to_string();
    assert!(err.contains("CNI plugin second ADD did not finish within 300ms and was killed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn host_network_sandboxes_are_left_alone() {
    let lab = chain_lab();
    let net = lab.network();
    let mut sandbox = lab.sandbox("sb1");
    sandbox.config.host_network = true;
    net.setup(&sandbox).unwrap();
    net.teardown(&sandbox).unwrap();
    assert!(lab.log().is_empty());
    assert_eq!(net.pod_ip(&sandbox), None);
}

#[test]
fn gc_releases_attachments_of_vanished_sandboxes() {
    let lab = chain_lab();
    let net = lab.network();
    for id in ["keep", "gone"] {
        net.setup(&lab.sandbox(id)).unwrap();
    }
    lab.clear_log();
    assert_eq!(net.gc(&["keep"]), vec!["gone".to_string()]);
    let log = lab.log();
    assert!(log.len() == 2 && log.iter().all(|l| l.contains(" DEL|gone|")), "{log:?}");
    assert_eq!(StateDir::new(lab.root.join("state")).ids(), vec!["keep".to_string()]);
}

#[test]
fn bin_dirs_are_a_cni_path() {
    let c = CniConfig::new("/etc/cni/net.d", "/opt/cni/bin::/usr/lib/cni");
    assert_eq!(c.bin_dirs, vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
    assert_eq!(exec::cni_path(&c.bin_dirs), "/opt/cni/bin:/usr/lib/cni");
}

#[test]
fn an_unreadable_attachment_does_not_block_teardown() {
    let lab = chain_lab();
    std::fs::write(lab.root.join("state").join("sb1.json"), "{truncated").unwrap();
    let net = lab.network();
    let sandbox = lab.sandbox("sb1");
    assert_eq!(net.pod_ip(&sandbox), None);
    net.teardown(&sandbox).unwrap();
    assert!(lab.log().is_empty());
    assert!(StateDir::new(lab.root.join("state")).ids().is_empty());
}
