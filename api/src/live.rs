//! What happens without a request: the live routing process, and the feed
//! of new events that WebSocket clients receive.
//!
//! [`run`] follows the log: every event goes to the [`Hub`] (which the
//! WebSocket connections listen to) and to its tenant's [`Router`]. Once it
//! has caught up with the log, it asks each router what to do now — offer
//! a waiting session, expire an offer, withdraw an offline agent's offers —
//! and carries that out as session commands. It then waits for the next
//! append or the next offer deadline.
//!
//! Every `witness serve` node runs one. With several nodes they may race
//! to offer the same session; the session decider accepts one offer and
//! refuses the rest, so the race costs a refused command, not a wrong state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast;
use witness_domain::routing::{Router, RouterConfig, RoutingCommand};
use witness_domain::session::Session;
use witness_engine::executor::{execute, ExecuteError};
use witness_engine::EventStore;
use witness_schemas::{Actor, Cursor, RecordedEvent, StreamId, TenantId};

/// How many events a slow WebSocket client may fall behind before it is
/// told it lagged (and should reload).
const HUB_CAPACITY: usize = 4096;
/// How often the log is read when nothing in this process appended (other
/// nodes' appends are seen this way).
const POLL: Duration = Duration::from_millis(200);

/// New events, in log order, for whoever listens.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Published>>,
    /// Live WebSockets open now, for `/metrics`.
    sockets: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one open WebSocket while it lives.
struct OpenSocket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An event as the hub hands it out, with its WebSocket frame written at
/// most once per masking however many connections send it.
#[derive(Debug)]
pub struct Published {
    pub event: RecordedEvent,
    /// Masked and unmasked: see [`crate::views::EventView`].
    frames: [std::sync::OnceLock<axum::extract::ws::Utf8Bytes>; 2],
    offered_to: std::sync::OnceLock<Option<witness_schemas::UserId>>,
}

impl Published {
    /// The agent an `AgentOffered` or `AgentAssigned` event names, decoded
    /// once however many connections ask.
    fn offered_to(&self) -> Option<witness_schemas::UserId> {
        use witness_schemas::Event;
        *self.offered_to.get_or_init(|| match self.event.event_type.as_str() {
            "AgentOffered" | "AgentAssigned" => match self.event.decode() {
                Ok(Event::AgentOffered(o)) => Some(o.agent_id),
                Ok(Event::AgentAssigned(a)) => Some(a.agent_id),
                _ => None,
            },
            _ => None,
        })
    }

    /// The revocation this event is, if it is one.
    fn revocation(&self) -> Option<witness_schemas::UserTokensRevoked> {
        match self.event.event_type.as_str() {
            "UserTokensRevoked" => match self.event.decode() {
                Ok(witness_schemas::Event::UserTokensRevoked(r)) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether this event revokes the token `caller` holds.
    fn revokes(&self, caller: &crate::auth::Claims) -> bool {
        self.event.tenant_id == caller.t
            && self.revocation().is_some_and(|r| {
                caller.user_id().is_ok_and(|me| me == r.user_id) && caller.i <= r.before.timestamp_millis()
            })
    }

    fn frame(&self, unmasked: bool) -> axum::extract::ws::Utf8Bytes {
        self.frames[unmasked as usize]
            .get_or_init(|| {
                let view = crate::views::EventView::new(&self.event, unmasked);
                serde_json::json!({ "type": "event", "event": view }).to_string().into()
            })
            .clone()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self { tx: broadcast::channel(HUB_CAPACITY).0, sockets: Default::default() }
    }
}

impl Hub {
    /// Live WebSockets open now.
    pub fn sockets(&self) -> usize {
        self.sockets.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn socket_opened(&self) -> OpenSocket {
        self.sockets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenSocket(self.sockets.clone())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    fn publish(&self, event: RecordedEvent) {
        // No listener is not an error.
        let published = Published { event, frames: Default::default(), offered_to: Default::default() };
        let _ = self.tx.send(Arc::new(published));
    }
}

/// Follows the log from the start (the routers need the whole history of
/// waiting sessions and agents) until the task is dropped.
pub async fn run(store: EventStore, hub: Hub, config: RouterConfig) {
    let mut routers: HashMap<TenantId, Router> = HashMap::new();
    let mut cursor = Cursor::START;
    let mut changes = store.changes();
    loop {
        changes.borrow_and_update();
        // Catch up.
        loop {
            let page = match store.read_all(cursor, 1000).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "live feed: reading the log failed; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let Some(last) = page.last().map(RecordedEvent::cursor) else { break };
            for recorded in page {
                match recorded.decode() {
                    Ok(event) => routers
                        .entry(recorded.tenant_id.clone())
                        .or_insert_with(|| Router::new(config.clone()))
                        .apply(&recorded.stream_id, &event, recorded.occurred_at),
                    Err(e) => tracing::error!(position = recorded.position, error = %e, "undecodable event skipped"),
                }
                hub.publish(recorded);
            }
            cursor = last;
        }
        // Act on what is due now.
        let now = Utc::now();
        for (tenant, router) in routers.iter_mut() {
            for action in router.decide(now) {
                let (stream, done) = match action.into_command(now) {
                    RoutingCommand::Session(session, command) => {
                        let stream = StreamId::session(session);
                        (
                            stream.clone(),
                            execute::<Session>(&store, tenant, &stream, &Actor::system(), now, command).await,
                        )
                    }
                    RoutingCommand::Agent(agent, command) => {
                        let stream = StreamId::agent(agent);
                        let done = execute::<witness_domain::agent::Agent>(
                            &store,
                            tenant,
                            &stream,
                            &Actor::system(),
                            now,
                            command,
                        )
                        .await;
                        (stream, done)
                    }
                };
                match done {
                    Ok(_) => {}
                    // The session moved on (accepted, ended) since the router
                    // last heard of it; its events are on their way here.
                    Err(ExecuteError::Domain(e)) => tracing::debug!(%stream, error = %e, "routing action refused"),
                    Err(e) => tracing::warn!(%stream, error = %e, "routing action failed"),
                }
            }
        }
        // Wait for an append, a deadline, or the poll interval.
        let deadline = routers.values().filter_map(Router::next_deadline).min();
        let wait = deadline.map_or(POLL, |d| (d - Utc::now()).to_std().unwrap_or_default().min(POLL));
        let _ = tokio::time::timeout(wait, changes.changed()).await;
    }
}

// ----------------------------------------------------------------- WebSocket

/// `GET /api/ws[?session=ID]`: the caller's tenant's new events,
/// as JSON text frames (`{"type":"event","event":{…}}`), from the moment of
/// connecting. A customer must name their session and gets its events only;
/// an agent gets every session's and agent's events, personal fields masked
/// but for the sessions offered or assigned to them since connecting (the
/// workbench loads the others through `GET /api/sessions/{id}`); supervisors,
/// compliance and admins get everything, masked by their role. A client that
/// falls more than a few thousand events behind gets `{"type":"lagged"}`.
///
/// The token is the socket's first message, `{"type":"auth","token":…}`,
/// within [`AUTH_WITHIN`] (a token in the URL would be kept by browser
/// history and proxy logs); the server answers `{"type":"hello"}`, or
/// closes the socket with 4000 + the HTTP status it would have answered
/// (4401 a bad token, 4403, 4404 …) and the reason. A browser's handshake
/// must come from this server's own origin, or from a web site the tenant
/// named in the URL lists (`?tenant=`, [`crate::embed`]), or it is refused
/// (403) before the upgrade; the token must then be that tenant's.
///
/// The server pings every [`PING_EVERY`], and closes the socket (code 4001,
/// "token expired") when the token it was opened with expires: a socket
/// may not outlive the right to read what it carries.
pub(crate) async fn ws(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    slot: Option<axum::Extension<crate::server::Slot>>,
    cross: Option<axum::Extension<crate::embed::CrossOrigin>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    crate::i18n::Asked(asked): crate::i18n::Asked,
    upgrade: Result<axum::extract::ws::WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<axum::response::Response, crate::ApiError> {
    let upgrade =
        upgrade.map_err(|e| crate::ApiError::malformed(format!("not a WebSocket request: {}", e.body_text())))?;
    let session = q.get("session").cloned();
    // What the socket's refusals are written in: the page's language
    // (`?lang=`: a browser's WebSocket sends the browser's, not the page's).
    let lang = q.get("lang").and_then(|tag| crate::i18n::Lang::from_tag(tag)).unwrap_or(asked);
    Ok(upgrade.on_upgrade(move |mut socket| async move {
        // The socket counts under the connection caps while it is open.
        let _slot = slot;
        let _open = state.hub.socket_opened();
        let authenticated =
            authenticate(&state, &mut socket, session.as_deref()).await.and_then(|(caller, session)| {
                crate::embed::same_tenant(cross.as_deref(), &caller.t)?;
                Ok((caller, session))
            });
        match authenticated {
            Ok((caller, session)) => {
                let feed = state.hub.subscribe();
                push(state, socket, feed, caller, session, lang).await
            }
            Err(e) => {
                let reason = e.message().chars().take(100).collect::<String>();
                close(&mut socket, 4000 + e.status().as_u16(), &reason).await;
            }
        }
    }))
}

/// Closes `socket` with `code` and `reason`.
async fn close(socket: &mut axum::extract::ws::WebSocket, code: u16, reason: &str) {
    let frame = axum::extract::ws::CloseFrame { code, reason: reason.into() };
    let _ = socket.send(axum::extract::ws::Message::Close(Some(frame))).await;
}

/// How long a new socket has to send its token.
pub const AUTH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the socket's first message, the token, and checks the caller may
/// follow `session` (a customer must name theirs).
async fn authenticate(
    state: &crate::AppState,
    socket: &mut axum::extract::ws::WebSocket,
    session: Option<&str>,
) -> Result<(crate::auth::Claims, Option<witness_schemas::SessionId>), crate::ApiError> {
    use axum::extract::ws::Message;
    #[derive(serde::Deserialize)]
    struct Auth {
        #[serde(rename = "type")]
        kind: String,
        token: String,
    }
    let unauthorized = |refusal| crate::ApiError::new(axum::http::StatusCode::UNAUTHORIZED, refusal);
    let auth_first = || {
        unauthorized(refusal!(
            "socket_auth_first",
            "the first message is {message}",
            message = r#"{"type":"auth","token":…}"#
        ))
    };
    let first = match tokio::time::timeout(AUTH_WITHIN, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(_) => return Err(auth_first()),
        Err(_) => {
            let seconds = AUTH_WITHIN.as_secs();
            return Err(unauthorized(refusal!("socket_auth_late", "no token within {seconds} s", seconds = seconds)));
        }
    };
    let auth: Auth = serde_json::from_str(&first).ok().filter(|a: &Auth| a.kind == "auth").ok_or_else(auth_first)?;
    let caller = state.keys.verify(&auth.token, chrono::Utc::now())?;
    state.revocations.check(&state.store, &caller).await?;
    let session = match (caller.r, session) {
        (witness_schemas::Role::Customer, None) => {
            return Err(crate::ApiError::bad_request(refusal!(
                "socket_needs_session",
                "a customer's WebSocket names its session: `?session=ID`"
            )))
        }
        (_, Some(id)) => Some(witness_app::session::load(&state.store, &caller, id).await?.id),
        (_, None) => None,
    };
    crate::supervision::record_view(state, &caller, "live_feed", session, 0).await?;
    Ok((caller, session))
}

/// Which of the tenant's events one connection sees, and how.
struct Filter {
    caller: crate::auth::Claims,
    session: Option<StreamId>,
    /// Session streams an agent was offered or assigned while connected.
    mine: std::collections::HashSet<StreamId>,
}

impl Filter {
    /// `None`: not for this connection; `Some(unmasked)` otherwise.
    fn admit(&mut self, published: &Published) -> Option<bool> {
        let e = &published.event;
        use witness_schemas::{Role, StreamKind};
        if e.tenant_id != self.caller.t {
            return None;
        }
        if let Some(session) = &self.session {
            return (&e.stream_id == session).then_some(true);
        }
        match self.caller.r {
            Role::Customer => None,
            Role::Agent => {
                // Directory and access log are not an agent's business.
                if matches!(e.stream_id.kind, StreamKind::Tenant | StreamKind::Access) {
                    return None;
                }
                if let (Some(to), Ok(me)) = (published.offered_to(), self.caller.user_id()) {
                    if to == me {
                        self.mine.insert(e.stream_id.clone());
                    }
                }
                Some(self.mine.contains(&e.stream_id))
            }
            r => Some(r.sees_personal_data()),
        }
    }
}

/// Keeps `revocations` up to date with every `UserTokensRevoked` the feed
/// brings, written on this node or another.
pub(crate) async fn follow_revocations(hub: Hub, revocations: Arc<crate::auth::Revocations>) {
    let mut feed = hub.subscribe();
    loop {
        match feed.recv().await {
            Ok(published) => {
                if let Some(revoked) = published.revocation() {
                    revocations.note(&revoked);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => revocations.forget(),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// How often the server pings an open WebSocket (keeps NATs and proxies
/// from dropping a quiet one, and finds dead peers).
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(25);
/// The close code sent when the socket's token expires.
pub const CLOSE_EXPIRED: u16 = 4001;

async fn push(
    state: crate::AppState,
    mut socket: axum::extract::ws::WebSocket,
    mut feed: broadcast::Receiver<Arc<Published>>,
    caller: crate::auth::Claims,
    session: Option<witness_schemas::SessionId>,
    lang: crate::i18n::Lang,
) {
    use axum::extract::ws::Message;
    let mut filter = Filter { caller, session: session.map(StreamId::session), mine: Default::default() };
    let hello = serde_json::json!({ "type": "hello" }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut signaling = crate::calls::Signaling::new(lang);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let left = (filter.caller.e - chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = tokio::time::sleep(std::time::Duration::from_secs(left));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            () = &mut expiry => {
                close(&mut socket, CLOSE_EXPIRED, "token expired").await;
                break;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            received = feed.recv() => {
                let frame = match received {
                    Ok(published) if published.revokes(&filter.caller) => {
                        close(&mut socket, CLOSE_EXPIRED, "signed out").await;
                        break;
                    }
                    Ok(published) => match filter.admit(&published) {
                        Some(unmasked) => published.frame(unmasked),
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        serde_json::json!({ "type": "lagged", "missed": n }).to_string().into()
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if socket.send(Message::Text(frame)).await.is_err() {
                    break;
                }
            }
            Some((session, signal)) = signaling.signals.recv() => {
                let frame = signaling.frame(session, signal);
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = signaling.handle(&state, &filter.caller, &text).await {
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    signaling.hang_up(&state.media).await;
}
