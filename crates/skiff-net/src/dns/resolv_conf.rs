//! resolv.conf in both directions: reading the node's to find upstream resolvers, and writing a
//! pod's the way kubelet composes it (`pkg/kubelet/network/dns`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use k8s_openapi::api::core::v1::PodDNSConfig;

/// At most this many nameservers reach a pod (glibc reads no more: `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains reach a pod (Kubernetes validation limit).
pub const MAX_SEARCH_PATHS: usize = 32;
/// The search line is cut to this many characters (Kubernetes validation limit).
pub const MAX_SEARCH_LINE_CHARS: usize = 2048;
/// Search domains longer than this are dropped: some glibc versions abort on them.
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// Where node resolvers are looked for, in order. systemd-resolved's stub file lists only
/// 127.0.0.53, which would loop back into a pod's own network namespace, so its full list is the
/// fallback (what k3s does too).
pub const NODE_RESOLV_CONF_PATHS: [&str; 2] =
    ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// The parts of a resolv.conf that kubelet reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` entries, in order.
    pub nameservers: Vec<String>,
    /// The last `search` line's domains, without trailing dots.
    pub searches: Vec<String>,
    /// `options`, merged across lines by option name.
    pub options: Vec<String>,
}

/// Parses resolv.conf text as kubelet does: later `search` lines replace earlier ones, `options`
/// accumulate with later values winning, `#` and `;` start comments.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
            Some("search") => {
                conf.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                for opt in fields {
                    merge_option(&mut conf.options, opt.to_string());
                }
            }
            _ => {}
        }
    }
    conf
}

/// Adds `opt`, replacing an option of the same name (the part before `:`) in place.
fn merge_option(options: &mut Vec<String>, opt: String) {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_string();
    let key = name(&opt);
    match options.iter_mut().find(|o| name(o) == key) {
        Some(existing) => *existing = opt,
        None => options.push(opt),
    }
}

/// Upstream resolvers (port 53) from resolv.conf text, leaving out loopback addresses: the
/// cluster DNS forwarding to 127.0.0.53 or to itself would loop or reach nothing. Scoped IPv6
/// addresses (`fe80::1%eth0`) are skipped too, having no portable meaning here.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for ns in parse_resolv_conf(text).nameservers {
        let Ok(ip) = ns.parse::<IpAddr>() else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Upstreams from the first of `paths` that names any usable one; empty when none does.
pub fn upstreams_from_files<P: AsRef<Path>>(paths: &[P]) -> Vec<SocketAddr> {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| upstreams_from_resolv_conf(&text))
        .find(|u| !u.is_empty())
        .unwrap_or_default()
}

/// Drops repeats, keeping the first occurrence.
fn dedup_keep_order(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Applies kubelet's limits to the search list: 32 domains, no domain over 253 characters, a
/// search line of at most 2048 characters (cut from the end).
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        searches.pop();
    }
    searches
}

/// The lines of a pod's /etc/resolv.conf, composed as kubelet does.
///
/// - `ClusterFirst` (the default, also for an unknown or missing policy): the cluster DNS, the
///   search list `ns.svc.<domain> svc.<domain> <domain>` followed by the host's search domains,
///   and `options ndots:5`. For a `hostNetwork` pod it means `Default` instead.
/// - `ClusterFirstWithHostNet`: as `ClusterFirst`, also for `hostNetwork` pods.
/// - `Default`: the host's resolv.conf (`host_resolv_conf`, the text of kubelet's
///   `--resolv-conf` file).
/// - `None`: only what `dns_config` says.
///
/// `dns_config` is then merged in (nameservers and searches appended without repeats, options
/// by name), and the limits applied: 3 nameservers, 32 search domains.
pub fn pod_resolv_conf(
    dns_policy: Option<&str>,
    host_network: bool,
    dns_config: Option<&PodDNSConfig>,
    namespace: &str,
    cluster_dns: Ipv4Addr,
    domain: &str,
    host_resolv_conf: &str,
) -> Vec<String> {
    let host = parse_resolv_conf(host_resolv_conf);
    let domain = domain.trim_matches('.');
    let cluster = match dns_policy.unwrap_or("ClusterFirst") {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        _ => Some(!host_network),
    };
    let mut conf = match cluster {
        None => ResolvConf::default(),
        Some(false) => host,
        Some(true) => {
            let mut searches = if domain.is_empty() {
                Vec::new()
            } else {
                vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ]
            };
            searches.extend(host.searches);
            ResolvConf {
                nameservers: vec![cluster_dns.to_string()],
                searches: dedup_keep_order(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(extra) = dns_config {
        conf.nameservers
            .extend(extra.nameservers.iter().flatten().cloned());
        conf.nameservers = dedup_keep_order(conf.nameservers);
        conf.searches.extend(
            extra
                .searches
                .iter()
                .flatten()
                .map(|s| s.trim_end_matches('.').to_string()),
        );
        conf.searches = dedup_keep_order(conf.searches);
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let merged = match opt.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            merge_option(&mut conf.options, merged);
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    let searches = fit_searches(conf.searches);

    let mut lines: Vec<String> = conf
        .nameservers
        .iter()
        .map(|n| format!("nameserver {n}"))
        .collect();
    if !searches.is_empty() {
        lines.push(format!("search {}", searches.join(" ")));
    }
    if !conf.options.is_empty() {
        lines.push(format!("options {}", conf.options.join(" ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n; comment\n\
                        search example.com. corp.example.com\noptions edns0 timeout:2\noptions timeout:3\n";
    const DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

    #[test]
    fn parses_like_kubelet() {
        let c = parse_resolv_conf(HOST);
        assert_eq!(c.nameservers, ["127.0.0.53", "192.0.2.1"]);
        assert_eq!(c.searches, ["example.com", "corp.example.com"]);
        assert_eq!(c.options, ["edns0", "timeout:3"]);
    }

    #[test]
    fn upstreams_skip_loopback() {
        let text =
            "nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n\
                    nameserver fe80::1%eth0\nnameserver 192.0.2.1\nnameserver bogus\n";
        let want: Vec<SocketAddr> = vec![
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        assert_eq!(upstreams_from_resolv_conf(text), want);
        assert!(upstreams_from_resolv_conf("nameserver 127.0.0.1\n").is_empty());
    }

    #[test]
    fn upstreams_fall_back_to_second_file() {
        let dir = std::env::temp_dir().join(format!("skiff-dns-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = dir.join("stub");
        let full = dir.join("full");
        std::fs::write(&stub, "nameserver 127.0.0.53\n").unwrap();
        std::fs::write(&full, "nameserver 198.51.100.7\n").unwrap();
        let got = upstreams_from_files(&[&stub, &dir.join("missing"), &full]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got, vec!["198.51.100.7:53".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn cluster_first() {
        let lines = pod_resolv_conf(None, false, None, "shop", DNS, "cluster.local", HOST);
        assert_eq!(
            lines,
            [
                "nameserver 10.43.0.10",
                "search shop.svc.cluster.local svc.cluster.local cluster.local example.com corp.example.com",
                "options ndots:5",
            ]
        );
    }

    #[test]
    fn host_network_policies() {
        let host_lines = pod_resolv_conf(
            Some("ClusterFirst"),
            true,
            None,
            "a",
            DNS,
            "cluster.local",
            HOST,
        );
        assert_eq!(
            host_lines,
            [
                "nameserver 127.0.0.53",
                "nameserver 192.0.2.1",
                "search example.com corp.example.com",
                "options edns0 timeout:3"
            ]
        );
        let with = pod_resolv_conf(
            Some("ClusterFirstWithHostNet"),
            true,
            None,
            "a",
            DNS,
            "cluster.local",
            HOST,
        );
        assert_eq!(with[0], "nameserver 10.43.0.10");
        let default = pod_resolv_conf(
            Some("Default"),
            false,
            None,
            "a",
            DNS,
            "cluster.local",
            HOST,
        );
        assert_eq!(default, host_lines);
    }

    #[test]
    fn none_uses_only_dns_config_and_merges() {
        assert!(
            pod_resolv_conf(Some("None"), false, None, "a", DNS, "cluster.local", HOST).is_empty()
        );
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["192.0.2.9".into(), "192.0.2.9".into()]),
            searches: Some(vec!["my.dns.search.suffix".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let none = pod_resolv_conf(
            Some("None"),
            false,
            Some(&cfg),
            "a",
            DNS,
            "cluster.local",
            HOST,
        );
        assert_eq!(
            none,
            [
                "nameserver 192.0.2.9",
                "search my.dns.search.suffix",
                "options ndots:2 edns0"
            ]
        );
        let merged = pod_resolv_conf(
            Some("ClusterFirst"),
            false,
            Some(&cfg),
            "a",
            DNS,
            "cluster.local",
            "",
        );
        assert_eq!(
            merged,
            [
                "nameserver 10.43.0.10",
                "nameserver 192.0.2.9",
                "search a.svc.cluster.local svc.cluster.local cluster.local my.dns.search.suffix",
                "options ndots:2 edns0",
            ]
        );
    }

    #[test]
    fn limits() {
        let servers: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
        let searches: Vec<String> = (0..40).map(|i| format!("s{i}.example")).collect();
        let cfg = PodDNSConfig {
            nameservers: Some(servers),
            searches: Some(searches),
            options: None,
        };
        let lines = pod_resolv_conf(
            Some("ClusterFirst"),
            false,
            Some(&cfg),
            "a",
            DNS,
            "cluster.local",
            "",
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("nameserver")).count(),
            3
        );
        let search = lines.iter().find(|l| l.starts_with("search ")).unwrap();
        assert_eq!(search.split_whitespace().count() - 1, MAX_SEARCH_PATHS);
        assert!(search.ends_with(" s28.example"), "{search}");

        let long: Vec<String> = (0..30)
            .map(|i| format!("{i:02}{}", "x".repeat(100)))
            .collect();
        let fitted = fit_searches(long);
        assert!(fitted.join(" ").len() <= MAX_SEARCH_LINE_CHARS);
        assert_eq!(fitted.len(), 19);
    }
}
