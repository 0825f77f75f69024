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
use witness_engine::domain::session::Session;
use witness_engine::executor::{execute, ExecuteError};
use witness_engine::routing::{Router, RouterConfig};
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
}

/// An event as the hub hands it out, with its WebSocket frame written at
/// most once per masking however many connections send it.
#[derive(Debug)]
pub struct Published {
    pub event: RecordedEvent,
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

    fn frame(&self, unmasked: bool) -> axum::extract::ws::Utf8Bytes {
        self.frames[unmasked as usize]
            .get_or_init(|| {
                let view = crate::sessions::EventView::new(&self.event, unmasked);
                serde_json::json!({ "type": "event", "event": view }).to_string().into()
            })
            .clone()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self { tx: broadcast::channel(HUB_CAPACITY).0 }
    }
}

impl Hub {
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
                let (session, command) = action.into_command(now);
                let stream = StreamId::session(session);
                match execute::<Session>(&store, tenant, &stream, &Actor::system(), now, command).await {
                    Ok(_) => {}
                    // The session moved on (accepted, ended) since the router
                    // last heard of it; its events are on their way here.
                    Err(ExecuteError::Domain(e)) => tracing::debug!(%session, error = %e, "routing action refused"),
                    Err(e) => tracing::warn!(%session, error = %e, "routing action failed"),
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

/// `GET /api/ws?token=TOKEN[&session=ID]`: the caller's tenant's new events,
/// as JSON text frames (`{"type":"event","event":{…}}`), from the moment of
/// connecting. A customer must name their session and gets its events only;
/// an agent gets every session's and agent's events, personal fields masked
/// but for the sessions offered or assigned to them since connecting (the
/// workbench loads the others through `GET /api/sessions/{id}`); supervisors,
/// compliance and admins get everything, masked by their role. A client that
/// falls more than a few thousand events behind gets `{"type":"lagged"}`.
pub(crate) async fn ws(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    upgrade: Result<axum::extract::ws::WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<axum::response::Response, crate::ApiError> {
    let session = match (caller.r, q.get("session")) {
        (witness_schemas::Role::Customer, None) => {
            return Err(crate::ApiError::bad_request("a customer's WebSocket names its session: `?session=ID`"))
        }
        (_, Some(id)) => Some(crate::sessions::load(&state, &caller, id).await?.id),
        (_, None) => None,
    };
    let upgrade =
        upgrade.map_err(|e| crate::ApiError::bad_request(format!("not a WebSocket request: {}", e.body_text())))?;
    crate::supervision::record_view(&state, &caller, "live_feed", session, 0).await?;
    let feed = state.hub.subscribe();
    Ok(upgrade.on_upgrade(move |socket| push(state, socket, feed, caller, session)))
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

async fn push(
    state: crate::AppState,
    mut socket: axum::extract::ws::WebSocket,
    mut feed: broadcast::Receiver<Arc<Published>>,
    caller: crate::auth::Claims,
    session: Option<witness_schemas::SessionId>,
) {
    use axum::extract::ws::Message;
    let mut filter = Filter { caller, session: session.map(StreamId::session), mine: Default::default() };
    let hello = serde_json::json!({ "type": "hello" }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut signaling = crate::calls::Signaling::new();
    loop {
        tokio::select! {
            received = feed.recv() => {
                let frame = match received {
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
