//! What every controller shares: the reconcile error type, the context handed to reconcile
//! functions, and the error policy (log, retry after a second). Each controller module keeps
//! only its own `run` (what it watches) and `reconcile` (what it does).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("api: {0}")]
    Kube(#[from] kube::Error),
}

/// The context of controllers that need only the API client.
pub struct Ctx {
    /// API client.
    pub client: kube::Client,
}

/// Retry a failed reconcile after a second; level-triggered reconciles make that safe.
pub fn error_policy<K, C>(obj: Arc<K>, e: &Error, _ctx: Arc<C>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    tracing::debug!(kind = %K::kind(&()), name = ?obj.meta().name, error = %e, "reconcile failed");
    Action::requeue(Duration::from_secs(1))
}
