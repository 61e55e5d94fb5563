//! Response bodies: the upstream's body streamed through, or a small local one.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::pool::{Pool, Sender};

/// Where an upstream connection goes once its response has been read completely.
struct Return {
    pool: Arc<Pool>,
    addr: SocketAddr,
    tx: Sender,
}

/// The body of a proxied response.
pub(crate) enum ResponseBody {
    /// Streamed from an endpoint; the connection returns to the pool at end of stream, and is
    /// dropped (closed) if the client goes away first, because its state is then unknown.
    Upstream {
        inner: Incoming,
        ret: Option<Box<ReturnSlot>>,
    },
    /// Generated here (errors, redirects); `None` once sent.
    Local(Option<Bytes>),
}

/// Boxed so that the common `Local` variant stays small.
pub(crate) struct ReturnSlot(Return);

impl ResponseBody {
    /// A body that hands `tx` back to `pool` when `inner` ends.
    pub(crate) fn upstream(inner: Incoming, pool: Arc<Pool>, addr: SocketAddr, tx: Sender) -> Self {
        let slot = ReturnSlot(Return { pool, addr, tx });
        if inner.is_end_stream() {
            // Nothing to read (204, 304, HEAD, empty): the connection is free right away.
            slot.0.pool.put(slot.0.addr, slot.0.tx);
            return ResponseBody::Upstream { inner, ret: None };
        }
        ResponseBody::Upstream {
            inner,
            ret: Some(Box::new(slot)),
        }
    }

    /// An upstream body whose connection must not be reused.
    pub(crate) fn upstream_unpooled(inner: Incoming) -> Self {
        ResponseBody::Upstream { inner, ret: None }
    }

    pub(crate) fn local(text: &'static str) -> Self {
        ResponseBody::Local(Some(Bytes::from_static(text.as_bytes())))
    }

    pub(crate) fn empty() -> Self {
        ResponseBody::Local(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream { inner, ret } => {
                let res = std::task::ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &res {
                    Some(Ok(_)) if !inner.is_end_stream() => {}
                    Some(Err(_)) => *ret = None,
                    // End of stream, seen either with the last frame or as `None`.
                    _ => {
                        if let Some(slot) = ret.take() {
                            let Return { pool, addr, tx } = slot.0;
                            pool.put(addr, tx);
                        }
                    }
                }
                Poll::Ready(res)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(b) => b.is_none(),
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Local(None) => SizeHint::with_exact(0),
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
