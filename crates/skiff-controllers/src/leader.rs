//! Leader election through a `coordination.k8s.io/v1` Lease, as kube-controller-manager and
//! kube-scheduler do: only the holder runs the work; it renews every `renew` and a challenger
//! takes over once the lease has not been renewed for `duration`. Writes are conditional on
//! the Lease's resourceVersion, so two servers can never both believe they lead.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Lease timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name in kube-system (e.g. `kube-controller-manager`).
    pub name: String,
    /// This candidate's identity.
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (and challengers retry).
    pub renew: Duration,
}

impl LeaseConfig {
    /// Upstream-like defaults (15 s lease, 2 s retry) for `name`.
    pub fn new(name: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let rand = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
        Self {
            name: name.to_string(),
            identity: format!("{}_{}", host.trim(), rand.trim()),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(2),
        }
    }
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Try once to acquire or renew; true when we hold the lease afterwards.
async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now_s = now();
    let spec = json!({
        "holderIdentity": cfg.identity,
        "leaseDurationSeconds": cfg.duration.as_secs(),
        "renewTime": now_s.to_string(),
    });
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": cfg.name, "namespace": "kube-system"},
                "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": cfg.duration.as_secs(), "acquireTime": now_s.to_string(), "renewTime": now_s.to_string(), "leaseTransitions": 0},
            }))
            .expect("valid lease");
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let s = lease.spec.clone().unwrap_or_default();
            let mine = s.holder_identity.as_deref() == Some(cfg.identity.as_str());
            let renewed = s.renew_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
            let valid_for = s.lease_duration_seconds.unwrap_or(15) as i64;
            let expired = now_s.as_second() - renewed > valid_for;
            if !mine && !expired {
                return Ok(false);
            }
            let mut spec_v = spec;
            if !mine {
                spec_v["acquireTime"] = json!(now_s.to_string());
                spec_v["leaseTransitions"] = json!(s.lease_transitions.unwrap_or(0) + 1);
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "taking over leadership");
            } else {
                spec_v["acquireTime"] = serde_json::to_value(&s.acquire_time).unwrap_or(json!(now_s.to_string()));
                spec_v["leaseTransitions"] = json!(s.lease_transitions.unwrap_or(0));
            }
            lease.spec = serde_json::from_value(spec_v).ok();
            // Conditional on the resourceVersion we read: a racing candidate gets 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Run `work` only while holding the lease: start it on acquiring, abort it on losing.
pub async fn run_elected<F, Fut>(client: kube::Client, cfg: LeaseConfig, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let mut running: Option<crate::AbortOnDrop> = None;
    let mut last_renewal = std::time::Instant::now();
    loop {
        let held = match try_acquire(&api, &cfg).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(lease = %cfg.name, error = %e, "lease request failed");
                // Keep working through brief API errors, but not past the lease duration.
                running.is_some() && last_renewal.elapsed() < cfg.duration
            }
        };
        match (held, running.is_some()) {
            (true, false) => {
                tracing::info!(lease = %cfg.name, "became leader");
                running = Some(crate::AbortOnDrop(tokio::spawn(work())));
                last_renewal = std::time::Instant::now();
            }
            (true, true) => last_renewal = std::time::Instant::now(),
            (false, true) => {
                tracing::warn!(lease = %cfg.name, "lost leadership; stopping");
                running = None;
            }
            (false, false) => {}
        }
        tokio::time::sleep(cfg.renew).await;
    }
}
