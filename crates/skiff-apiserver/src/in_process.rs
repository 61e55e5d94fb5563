//! An API client transport for components running inside the server's process (the
//! controller manager and the scheduler of `skiff server`): requests go straight to the
//! handlers, as an already authenticated user, without TLS, TCP or HTTP framing.
//!
//! Over loopback HTTPS every request and every watch event was encrypted by one side and
//! decrypted by the other, copied through the kernel twice and parsed as HTTP; each watch
//! held its own connection with TLS and HTTP buffers on both ends. kube-rs accepts any tower
//! service as its transport (`kube::Client::new`), so the same client code runs unchanged;
//! only the hop disappears. Components in other processes (`skiff agent`, kubectl) and the
//! server's own node agent still come over HTTPS.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use skiff_api::status::ApiError;

use crate::auth::User;
use crate::http::{self, Request};
use crate::Server;

/// The transport: every request is handled as `user`.
#[derive(Clone)]
pub struct InProcess {
    srv: Arc<Server>,
    user: User,
}

impl InProcess {
    /// Requests through this transport act as `user` (authorization still applies).
    pub fn new(srv: Arc<Server>, user: User) -> Self {
        Self { srv, user }
    }
}

/// What logs show as the peer of in-process requests.
const PEER: &str = "in-process";

impl<B> tower_service::Service<::http::Request<B>> for InProcess
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ::http::Request<B>) -> Self::Future {
        let srv = self.srv.clone();
        let user = self.user.clone();
        // Each request is its own task, as each HTTPS connection was: the handler's work
        // runs on any worker thread instead of inside the caller's task (the scheduler's
        // binding loop would otherwise do every binding's JSON and store work itself).
        let handled = tokio::spawn(async move {
            let start = Instant::now();
            let (parts, body) = req.into_parts();
            let body = match http::read_body(body).await {
                Ok(b) => b,
                Err(e) => return http::error(&e),
            };
            crate::server::dispatch(&srv, Request::from_parts(parts, body, Some(user)), start, &PEER).await
        });
        Box::pin(async move {
            Ok(handled.await.unwrap_or_else(|e| http::error(&ApiError::internal(format!("request handler failed: {e}")))))
        })
    }
}
