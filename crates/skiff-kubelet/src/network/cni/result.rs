//! What plugins print: the ADD result (kept verbatim, as later plugins and DEL get it back as
//! `prevResult`) and, on failure, the error object (`code`, `msg`, `details`).

use std::net::IpAddr;

use serde_json::Value;

/// A plugin's ADD result, as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult(Value);

impl CniResult {
    /// Parses a plugin's stdout; it must be a JSON object.
    pub fn parse(stdout: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<Value>(stdout) {
            Ok(v @ Value::Object(_)) => Ok(Self(v)),
            Ok(_) => Err("not a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        }
    }

    /// Wraps a result read back from the state file.
    pub fn from_value(value: Value) -> Self {
        Self(value)
    }

    /// The result as printed.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The addresses with their prefix lengths: `ips[].address` (spec 0.3.0 to 1.x, where
    /// 0.3/0.4 add a `version` field that changes nothing here), or `ip4.ip` / `ip6.ip`
    /// (0.1/0.2). Unparsable entries are skipped.
    pub fn addresses(&self) -> Vec<(IpAddr, u8)> {
        let from = |v: &Value| v.as_str().and_then(parse_cidr);
        if let Some(ips) = self.0.get("ips").and_then(Value::as_array) {
            return ips.iter().filter_map(|ip| from(ip.get("address")?)).collect();
        }
        ["ip4", "ip6"].iter().filter_map(|k| from(self.0.get(*k)?.get("ip")?)).collect()
    }

    /// The pod IP: the first IPv4 address, else the first address, leaving out loopback
    /// (a `loopback` plugin at the head of a chain reports 127.0.0.1).
    pub fn pod_ip(&self) -> Option<IpAddr> {
        let ips: Vec<IpAddr> = self.addresses().into_iter().map(|(ip, _)| ip).filter(|ip| !ip.is_loopback()).collect();
        ips.iter().find(|ip| ip.is_ipv4()).or_else(|| ips.first()).copied()
    }
}

/// `10.88.0.5/24` as (address, prefix).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

/// The message for a failed plugin run: the spec's error object when the plugin printed one
/// (`code 7: no IP addresses available (range 10.88.0.0/24)`), else the exit status with
/// whatever it wrote to stderr or stdout.
pub fn failure_message(status: &str, stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(Value::Object(err)) = serde_json::from_slice::<Value>(stdout) {
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or_default();
        if !msg.is_empty() || err.contains_key("code") {
            let mut out = match err.get("code").and_then(Value::as_u64) {
                Some(code) => format!("code {code}: {msg}"),
                None => msg.to_string(),
            };
            if let Some(details) = err.get("details").and_then(Value::as_str).filter(|d| !d.is_empty()) {
                out.push_str(&format!(" ({details})"));
            }
            return out;
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let said = [text(stderr), text(stdout)].into_iter().find(|t| !t.is_empty());
    match said {
        Some(t) => format!("{status}: {}", tail(&t, 2000)),
        None => status.to_string(),
    }
}

/// The last `max` bytes of `text` (at a character boundary): a failing plugin's last words
/// are the ones that say why.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_0_0_result_gives_its_first_ipv4_address() {
        let r = CniResult::parse(
            br#"{"cniVersion": "1.0.0",
                 "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
                 "ips": [{"address": "fd00::5/64", "interface": 1},
                         {"address": "10.88.0.5/24", "gateway": "10.88.0.1", "interface": 1}],
                 "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}"#,
        )
        .unwrap();
        assert_eq!(r.addresses(), vec![("fd00::5".parse().unwrap(), 64), ("10.88.0.5".parse().unwrap(), 24)]);
        assert_eq!(r.pod_ip(), Some("10.88.0.5".parse().unwrap()));
    }

    #[test]
    fn a_0_4_0_result_with_versioned_ips_parses_the_same() {
        let r = CniResult::parse(
            br#"{"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.22.0.9/16", "gateway": "10.22.0.1", "interface": 0}]}"#,
        )
        .unwrap();
        assert_eq!(r.pod_ip(), Some("10.22.0.9".parse().unwrap()));
    }

    #[test]
    fn a_0_2_0_result_uses_ip4() {
        let r = CniResult::parse(br#"{"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24"}}"#).unwrap();
        assert_eq!(r.pod_ip(), Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn loopback_and_ipv6_only_results() {
        let lo = CniResult::parse(br#"{"cniVersion": "1.0.0", "ips": [{"address": "127.0.0.1/8"}]}"#).unwrap();
        assert_eq!(lo.pod_ip(), None);
        let v6 = CniResult::parse(br#"{"cniVersion": "1.0.0", "ips": [{"address": "127.0.0.1/8"}, {"address": "fd00::7/64"}]}"#).unwrap();
        assert_eq!(v6.pod_ip(), Some("fd00::7".parse().unwrap()));
        let none = CniResult::parse(br#"{"cniVersion": "1.0.0"}"#).unwrap();
        assert_eq!(none.pod_ip(), None);
        let bad = CniResult::parse(br#"{"ips": [{"address": "10.0.0.1"}, {"address": "10.0.0.2/33"}]}"#).unwrap();
        assert_eq!(bad.addresses(), vec![]);
    }

    #[test]
    fn non_objects_are_not_results() {
        assert!(CniResult::parse(b"").unwrap_err().contains("invalid JSON"));
        assert_eq!(CniResult::parse(b"[1]").unwrap_err(), "not a JSON object");
    }

    #[test]
    fn failure_messages_prefer_the_error_object() {
        let out = br#"{"cniVersion": "1.0.0", "code": 11, "msg": "failed to allocate", "details": "range 10.88.0.0/24 is full"}"#;
        assert_eq!(failure_message("exit status 1", out, b"noise"), "code 11: failed to allocate (range 10.88.0.0/24 is full)");
        assert_eq!(failure_message("exit status 1", br#"{"code": 4}"#, b""), "code 4: ");
        assert_eq!(failure_message("exit status 2", b"", b"panic: boom\n"), "exit status 2: panic: boom");
        assert_eq!(failure_message("exit status 2", b"plain words", b""), "exit status 2: plain words");
        assert_eq!(failure_message("killed by signal 9", b"", b""), "killed by signal 9");
    }
}
