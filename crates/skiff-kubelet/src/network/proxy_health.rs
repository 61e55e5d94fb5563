//! kube-proxy's status endpoints for the node's service proxy: `/healthz` and `/livez` on
//! :10256 (what external load balancers and `externalTrafficPolicy: Local` health checks
//! probe) and Prometheus `/metrics` on 127.0.0.1:10249, with upstream's names.
//!
//! The proxy is healthy when every change it has been told about was programmed within
//! [`HEALTH_TIMEOUT`] (upstream: the same idea, with a timeout from its sync period).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a change may wait to be programmed before the proxy reports itself unhealthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bounds of the sync duration histogram, in seconds (upstream's: 1 ms doubling).
const BUCKETS: [f64; 15] = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];

/// What the proxy loop reports and the endpoints serve.
#[derive(Default)]
pub struct ProxyHealth {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// A change waiting to be programmed, since when (monotonic and wall clock).
    pending: Option<(Instant, SystemTime)>,
    last_queued: Option<SystemTime>,
    last_synced: Option<SystemTime>,
    syncs: u64,
    failures: u64,
    bucket_counts: [u64; BUCKETS.len()],
    duration_sum: f64,
}

impl ProxyHealth {
    /// A change arrived that the next sync will program.
    pub fn queued(&self) {
        let mut i = self.inner.lock().expect("proxy health lock");
        let now = SystemTime::now();
        i.last_queued = Some(now);
        i.pending.get_or_insert((Instant::now(), now));
    }

    /// A sync finished after `took`; `ok` says whether the rules are now programmed.
    pub fn synced(&self, ok: bool, took: Duration) {
        let mut i = self.inner.lock().expect("proxy health lock");
        let secs = took.as_secs_f64();
        i.syncs += 1;
        i.duration_sum += secs;
        for (n, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                i.bucket_counts[n] += 1;
            }
        }
        if ok {
            i.pending = None;
            i.last_synced = Some(SystemTime::now());
        } else {
            i.failures += 1;
        }
    }

    /// Whether no change has waited longer than `timeout`, and rules were programmed once.
    pub fn healthy(&self, timeout: Duration) -> bool {
        let i = self.inner.lock().expect("proxy health lock");
        i.last_synced.is_some() && i.pending.is_none_or(|(since, _)| since.elapsed() <= timeout)
    }

    /// The `/healthz` answer: status code and upstream's JSON body.
    pub fn healthz(&self) -> (u16, String) {
        let healthy = self.healthy(HEALTH_TIMEOUT);
        let last = self.inner.lock().expect("proxy health lock").last_synced;
        let body = serde_json::json!({
            "lastUpdated": last.map(rfc3339).unwrap_or_default(),
            "currentTime": rfc3339(SystemTime::now()),
            "nodeEligible": true,
        });
        (if healthy { 200 } else { 503 }, body.to_string())
    }

    /// Prometheus text exposition of the proxy's metrics.
    pub fn metrics(&self) -> String {
        let i = self.inner.lock().expect("proxy health lock");
        let mut out = String::new();
        out.push_str("# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds\n");
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram\n");
        for (n, le) in BUCKETS.iter().enumerate() {
            out.push_str(&format!("kubeproxy_sync_proxy_rules_duration_seconds_bucket{{le=\"{le}\"}} {}\n", i.bucket_counts[n]));
        }
        out.push_str(&format!("kubeproxy_sync_proxy_rules_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", i.syncs));
        out.push_str(&format!("kubeproxy_sync_proxy_rules_duration_seconds_sum {}\n", i.duration_sum));
        out.push_str(&format!("kubeproxy_sync_proxy_rules_duration_seconds_count {}\n", i.syncs));
        let gauge = |out: &mut String, name: &str, help: &str, t: Option<SystemTime>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n", t.map(unix_seconds).unwrap_or(0.0)));
        };
        gauge(&mut out, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced", i.last_synced);
        gauge(&mut out, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued", i.last_queued);
        out.push_str("# HELP kubeproxy_sync_proxy_rules_nftables_sync_failures_total Number of failed nftables syncs\n");
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_nftables_sync_failures_total counter\n");
        out.push_str(&format!("kubeproxy_sync_proxy_rules_nftables_sync_failures_total {}\n", i.failures));
        out
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// `/healthz` and `/livez` (port 10256).
    Health,
    /// `/metrics` (port 10249), plus `/healthz` as upstream serves there too.
    Metrics,
}

/// Serves `which` on `addr` until the task is dropped.
pub async fn serve(health: std::sync::Arc<ProxyHealth>, addr: std::net::SocketAddr, which: Endpoints) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "service proxy status port unavailable");
            return;
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let health = health.clone();
        tokio::spawn(async move {
            let Some(path) = read_request_path(&mut stream).await else { return };
            let (code, content_type, body) = match (which, path.as_str()) {
                (_, "/healthz") | (Endpoints::Health, "/livez") => {
                    let (code, body) = health.healthz();
                    (code, "application/json", body)
                }
                (Endpoints::Metrics, "/metrics") => (200, "text/plain; version=0.0.4", health.metrics()),
                _ => (404, "text/plain", "404 page not found\n".to_string()),
            };
            let reason = match code {
                200 => "OK",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let head = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// The path of a GET request (query dropped), reading at most 8 KiB of head within 5 s.
async fn read_request_path(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok()??;
    let line = String::from_utf8_lossy(&head).lines().next()?.to_string();
    let target = line.split_whitespace().nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_until_first_sync_and_while_a_change_waits_too_long() {
        let h = ProxyHealth::default();
        assert!(!h.healthy(HEALTH_TIMEOUT), "never synced");
        h.queued();
        h.synced(true, Duration::from_millis(3));
        assert!(h.healthy(HEALTH_TIMEOUT));
        h.queued();
        assert!(h.healthy(HEALTH_TIMEOUT), "a fresh change is fine");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.healthy(Duration::from_millis(1)));
        h.synced(false, Duration::from_millis(2));
        assert!(!h.healthy(Duration::from_millis(1)), "a failed sync leaves the change pending");
        h.synced(true, Duration::from_millis(2));
        assert!(h.healthy(Duration::from_millis(1)));
        let (code, body) = h.healthz();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["lastUpdated"].as_str().is_some_and(|s| s.ends_with('Z')), "{body}");
        assert_eq!(v["nodeEligible"], true);
    }

    #[test]
    fn metrics_count_syncs_into_buckets() {
        let h = ProxyHealth::default();
        h.synced(true, Duration::from_millis(3));
        h.synced(false, Duration::from_millis(300));
        let m = h.metrics();
        assert!(m.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0\n"), "{m}");
        assert!(m.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n"), "{m}");
        assert!(m.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.512\"} 2\n"), "{m}");
        assert!(m.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 2\n"), "{m}");
        assert!(m.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1\n"), "{m}");
        assert!(!m.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n"), "{m}");
    }
}
