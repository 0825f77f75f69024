//! Serving the API on a TCP listener with the bounds a server on an open
//! network needs (issue 27, M6): `axum::serve` waits for ever on a client
//! that sends half a request, or nothing at all.
//!
//! - A request's head must arrive within [`Limits::header_timeout`], and
//!   a kept-alive connection with no next request is closed after the same
//!   time (hyper's header-read timer runs while it waits for a head).
//! - A request body that sends nothing for [`Limits::body_idle_timeout`]
//!   fails (the route answers 400 and the connection closes), so a
//!   `Content-Length` that is never sent is not waited on.
//! - At most [`Limits::max_connections`] connections are open at once, and
//!   [`Limits::max_connections_per_address`] from one address; a
//!   connection past either is closed as soon as it is accepted.
//!
//! An upgraded connection (a WebSocket) keeps its place under the caps
//! until the socket closes ([`Slot`]); [`crate::live`] pings it and closes
//! it when its token expires.
//!
//! Each request carries the peer's address as
//! `axum::extract::ConnectInfo<SocketAddr>`, for the limits per address.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The bounds on connections; see the module docs.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            // Generous: a company's customers may share one NAT address.
            // Behind a reverse proxy every connection comes from the proxy:
            // raise it there.
            max_connections_per_address: 512,
        }
    }
}

/// Open connections per address, counted down when a [`Counted`] drops.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

struct Counted {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn enter(table: &Arc<PerAddress>, ip: IpAddr, limit: usize) -> Option<Counted> {
        let mut open = table.0.lock().expect("connections per address");
        let n = open.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Counted { table: table.clone(), ip })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().expect("connections per address");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's place under the caps, released when the last holder
/// drops it: the connection's task, and a WebSocket's handler after an
/// upgrade (it takes it from the request's extensions).
#[derive(Clone)]
pub struct Slot {
    _held: Arc<(tokio::sync::OwnedSemaphorePermit, Counted)>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// open requests finish (at most 10 s) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection refused: too many open");
            continue;
        };
        let Some(counted) = PerAddress::enter(&per_address, peer.ip(), limits.max_connections_per_address) else {
            tracing::warn!(limit = limits.max_connections_per_address, "connection refused: too many from one address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot { _held: Arc::new((permit, counted)) };
        let (router, body_idle, mut stopping) = (router.clone(), limits.body_idle_timeout, stopping.clone());
        let request_slot = slot.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(request_slot.clone());
            let request = request.map(|body| axum::body::Body::new(IdleBody::new(body, body_idle)));
            router.clone().oneshot(request)
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        tokio::spawn(async move {
            let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(connection);
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let stopped = tokio::select! {
                _ = connection.as_mut() => false,
                () = stop => true,
            };
            if stopped {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            drop(slot);
        });
    }
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), total.acquire_many(all)).await;
    Ok(())
}

/// Waited too long for the next part of a request body.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving for {0:?}")]
pub struct BodyTimeout(Duration);

/// A request body that fails when nothing arrives for a while.
struct IdleBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleBody {
    fn new(inner: hyper::body::Incoming, idle: Duration) -> Self {
        Self { inner, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.as_mut().reset(tokio::time::Instant::now() + this.idle);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.idle).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The caller's address, where the server recorded it (`None` when the
/// router is driven directly, as tests do).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}
