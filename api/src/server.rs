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
//! Each request carries the client's address as
//! `axum::extract::ConnectInfo<SocketAddr>`, for the limits per address:
//! the peer's, or, when the peer is a trusted proxy ([`Front`]), the one
//! its `X-Forwarded-For` names.
//!
//! Over TLS ([`crate::tls`]) the handshake must finish within the header
//! timeout too, and every answer carries `Strict-Transport-Security`; so
//! does one a trusted proxy says came over HTTPS (`X-Forwarded-Proto`).

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

/// How connections reach the server: over TLS or not, and which peers are
/// reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are
/// believed (from anyone else they are ignored).
#[derive(Debug, Clone, Default)]
pub struct Front {
    pub tls: Option<Arc<crate::tls::Tls>>,
    pub trusted_proxies: Vec<Cidr>,
}

impl Front {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`, and whether it came over HTTPS: a trusted
    /// proxy's `X-Forwarded-For` is read from the right, past every trusted
    /// proxy, to the first address that is not one.
    fn client(&self, peer: SocketAddr, headers: &axum::http::HeaderMap) -> (SocketAddr, bool) {
        let tls = self.tls.is_some();
        if !self.trusts(peer.ip()) {
            return (peer, tls);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        let client = forwarded.iter().rev().find(|ip| !self.trusts(**ip)).or(forwarded.first());
        let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.trim() == "https");
        (client.map_or(peer, |ip| SocketAddr::new(*ip, 0)), tls || https)
    }
}

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is one
/// address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (address, bits) = s.split_once('/').unwrap_or((s, ""));
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("{s:?}: not an address range (10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() { max } else { bits.parse().map_err(|_| format!("{s:?}: bad prefix length"))? };
        if bits > max {
            return Err(format!("{s:?}: a prefix of at most {max} bits"));
        }
        Ok(Cidr { network, bits })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let prefix = |a: u128, b: u128, width: u32| {
            let bits = u32::from(self.bits);
            bits == 0 || (a ^ b) >> (width - bits) == 0
        };
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix(u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(n), u128::from(a), 128),
            _ => false,
        }
    }
}

/// A connection's bytes, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

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

/// Serves `router` on `listener` (as `front` says) until `shutdown`
/// completes, then lets the open requests finish (at most 10 s) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    front: Front,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let front = Arc::new(front);
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
        let request_front = front.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let (client, https) = request_front.client(peer, request.headers());
            request.extensions_mut().insert(ConnectInfo(client));
            request.extensions_mut().insert(request_slot.clone());
            let request = request.map(|body| axum::body::Body::new(IdleBody::new(body, body_idle)));
            let answer = router.clone().oneshot(request);
            async move {
                let mut response = answer.await?;
                if https {
                    response.headers_mut().insert(
                        axum::http::header::STRICT_TRANSPORT_SECURITY,
                        axum::http::HeaderValue::from_static("max-age=31536000"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        let (tls, handshake_timeout) = (front.tls.as_ref().map(|t| t.acceptor()), limits.header_timeout);
        tokio::spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
            };
            let connection = http.serve_connection(TokioIo::new(io), service).with_upgrades();
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

/// A plain-HTTP front that only sends browsers on to HTTPS: every request
/// gets a 308 to the same host and path on `https_port`. A request
/// without a usable `Host` gets 400.
pub fn redirect_to_https(https_port: u16) -> Router {
    use axum::http::{header, StatusCode, Uri};
    use axum::response::IntoResponse;
    Router::new().fallback(move |headers: axum::http::HeaderMap, uri: Uri| async move {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        // The host without its port (a bracketed IPv6 address keeps its brackets).
        let name = match host.rsplit_once(':') {
            Some((name, port))
                if !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && !port.contains(']') =>
            {
                name
            }
            _ => host,
        };
        let authority = if https_port == 443 { name.to_owned() } else { format!("{name}:{https_port}") };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        match Uri::builder().scheme("https").authority(authority).path_and_query(path).build() {
            Ok(to) if !name.is_empty() => {
                (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to.to_string())], "use HTTPS").into_response()
            }
            _ => (StatusCode::BAD_REQUEST, "a Host header naming this server is needed to send you to HTTPS")
                .into_response(),
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_their_addresses_and_no_others() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lan.contains("10.200.3.4".parse().unwrap()));
        assert!(lan.contains("::ffff:10.1.1.1".parse().unwrap()), "an IPv4-mapped address");
        assert!(!lan.contains("11.0.0.1".parse().unwrap()));
        assert!(!lan.contains("fd00::1".parse().unwrap()));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()) && !one.contains("192.168.1.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_are_believed_from_trusted_proxies_only() {
        let front = Front { tls: None, trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()] };
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.2".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let (client, https) = front.client(proxy, &headers);
        // The rightmost address that is not a trusted proxy: the one the
        // proxy saw; what the client wrote before it is not believed.
        assert_eq!((client.ip(), https), ("203.0.113.9".parse::<IpAddr>().unwrap(), true));
        let stranger: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        assert_eq!(front.client(stranger, &headers), (stranger, false), "anyone else's headers are ignored");
        assert_eq!(front.client(proxy, &axum::http::HeaderMap::new()), (proxy, false));
    }

    #[tokio::test]
    async fn the_plain_http_front_sends_every_path_to_https() {
        let get = |host: &'static str, path: &'static str, port: u16| async move {
            let request = axum::http::Request::get(path).header("host", host).body(axum::body::Body::empty()).unwrap();
            let response = redirect_to_https(port).oneshot(request).await.unwrap();
            (response.status().as_u16(), response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()))
        };
        assert_eq!(
            get("kefu.bank.example:80", "/agent?x=1", 443).await,
            (308, Some("https://kefu.bank.example/agent?x=1".into()))
        );
        assert_eq!(get("10.1.2.3:8080", "/", 8443).await, (308, Some("https://10.1.2.3:8443/".into())));
        assert_eq!(get("[fd00::1]:80", "/", 443).await, (308, Some("https://[fd00::1]/".into())));
        assert_eq!(get("", "/", 443).await.0, 400);
        assert_eq!(get("bad host", "/", 443).await.0, 400);
    }
}
