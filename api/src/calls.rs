//! Audio and video calls: starting and ending them (REST), their signaling
//! (over the caller's `/api/ws` socket), and writing what the media server
//! sees into the session's record.
//!
//! A call's room in the SFU is named by its session id; the customer joins
//! as participant `customer`, the agent by their user id. Signaling messages
//! a client sends on its WebSocket (each names its session):
//!
//! | `type` | fields | answer |
//! |---|---|---|
//! | `media.join` | | `media.joined` with `ice_servers` |
//! | `media.publish` | `sdp` (offer), `screens` (track ids that are screen shares) | `media.answer` with `sdp` |
//! | `media.answer` | `sdp` (answer to the server's `media.offer`) | — |
//! | `media.candidate` | `target` (`publisher`/`subscriber`), `candidate` | — |
//! | `media.device` | `device` (`mic`/`camera`), `enabled`, `blocked` (refused by the browser) | — (a `MediaStateChanged` event) |
//! | `media.leave` | | `media.left` |
//!
//! The server sends `media.offer` (with `sdp`) whenever what the client
//! receives changes, `media.left` when it was removed, and `media.error` (with
//! `message`) for a refused message; a refused message changes nothing.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use witness_domain::session::{CallFact, SessionCommand, SessionStatus};
use witness_media::server::{IceCandidateInit, MediaError, MediaServer, Signal};
use witness_schemas::{CallId, CallKind, MediaDevice, ParticipantRole, RecordingId, RecordingReason, Role, SessionId};

use crate::auth::{Caller, Claims};
use crate::i18n::Lang;
use witness_app::session::{load, run};

use crate::views::Done;
use crate::{ApiError, AppState, Body};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/call", post(start))
        .route("/api/sessions/{id}/call/end", post(end))
        .route("/api/sessions/{id}/recording", post(recording))
        .route("/api/admin/recording-policy", axum::routing::get(policy).put(set_policy))
        .route("/api/call-options", axum::routing::get(options))
        .route("/api/admin/call-options", axum::routing::put(set_options))
}

#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallOptions {
    /// The beauty filter (美颜) is offered in calls.
    beauty_filter: bool,
}

/// `GET /api/call-options` (anyone signed in, customers too): what the
/// tenant's calls offer.
async fn options(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<CallOptions>, ApiError> {
    let known = witness_app::tenant::directory(&state.store, &caller.t).await?;
    Ok(Json(CallOptions { beauty_filter: known.beauty_filter }))
}

/// `PUT /api/admin/call-options {beauty_filter}` (admins).
async fn set_options(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<CallOptions>,
) -> Result<Json<CallOptions>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = witness_domain::tenant::TenantCommand::SetCallOptions { beauty_filter: body.beauty_filter };
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartCall {
    kind: CallKind,
}

/// The customer or the session's agent starts a call (the session must be
/// assigned and not already in one).
async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<StartCall>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let s = load(&state.store, &caller, &id).await?;
    participant(&caller, &s.state)?;
    let Some(agent_id) = s.state.agent() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("no_agent_yet", "no agent has taken this session yet"),
        ));
    };
    let call_id = CallId::new();
    let mut version =
        run(&state.store, &caller, s.id, SessionCommand::StartCall { agent_id, call_id, kind: body.kind }).await?;
    if records_calls(&state, &caller.t).await? {
        version = start_recording(&state, &caller, s.id, RecordingReason::TenantPolicy).await?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "call_id": call_id, "version": version }))))
}

/// The tenant's policy, or the server's default (`serve --record-calls`).
async fn records_calls(state: &AppState, tenant: &witness_schemas::TenantId) -> Result<bool, ApiError> {
    Ok(witness_app::tenant::directory(&state.store, tenant).await?.record_calls.unwrap_or(state.record_calls))
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    record_calls: bool,
}

/// The tenant's recording policy (admins).
async fn policy(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Policy>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(Policy { record_calls: records_calls(&state, &caller.t).await? }))
}

/// Sets whether the tenant's calls are recorded from their start (admins);
/// a `RecordingPolicySet` event on the tenant stream.
async fn set_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Policy>,
) -> Result<Json<Policy>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = witness_domain::tenant::TenantCommand::SetRecordingPolicy { record_calls: body.record_calls };
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(body))
}

async fn start_recording(
    state: &AppState,
    caller: &Claims,
    session: SessionId,
    reason: RecordingReason,
) -> Result<u64, ApiError> {
    let recording_id = RecordingId::new();
    let version = run(&state.store, caller, session, SessionCommand::StartRecording { recording_id, reason }).await?;
    if let Err(e) = state.media.start_recording(&session.to_string(), &recording_id.to_string()) {
        // The record says it started; say it stopped too, and why the caller got an error.
        let _ = run(&state.store, caller, session, SessionCommand::StopRecording { recording_id }).await;
        return Err(media_error(e));
    }
    Ok(version)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingSwitch {
    record: bool,
}

/// The session's agent starts or stops recording the call on demand.
async fn recording(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<RecordingSwitch>,
) -> Result<Json<Done>, ApiError> {
    let s = load(&state.store, &caller, &id).await?;
    if participant(&caller, &s.state)?.1 != ParticipantRole::Agent {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            refusal!("agent_records", "only the session's agent starts or stops a recording"),
        ));
    }
    if s.state.status() != SessionStatus::InCall {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("no_call_to_record", "the session has no call to record"),
        ));
    }
    let version = match (body.record, s.state.recording()) {
        (true, None) => start_recording(&state, &caller, s.id, RecordingReason::OnDemand).await?,
        (false, Some(recording_id)) => {
            state.media.stop_recording(&s.id.to_string()).await;
            let version = run(&state.store, &caller, s.id, SessionCommand::StopRecording { recording_id }).await?;
            tokio::spawn(crate::recordings::render_composite(state.clone(), s.id, recording_id));
            version
        }
        (true, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                refusal!("already_recording", "the call is already being recorded"),
            ))
        }
        (false, None) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                refusal!("not_recording", "the call is not being recorded"),
            ))
        }
    };
    Ok(Json(Done::new(version)))
}

/// Takes everyone out of the session's call room and finishes its
/// recording (its last segments are written before this returns); the
/// caller then records the call's end.
pub(crate) async fn hang_up_room(state: &AppState, session: SessionId, recording: Option<RecordingId>) {
    let room = session.to_string();
    state.media.close_room(&room, "call ended").await;
    state.media.stop_recording(&room).await;
    // The dual recording is rendered after the call, off the call's path.
    if let Some(recording) = recording {
        tokio::spawn(crate::recordings::render_composite(state.clone(), session, recording));
    }
}

/// Either side ends the call: everyone leaves the room, then `CallEnded`.
async fn end(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    let s = load(&state.store, &caller, &id).await?;
    participant(&caller, &s.state)?;
    let Some(call_id) = s.state.call().map(|c| c.call_id) else {
        return Err(ApiError::new(StatusCode::CONFLICT, refusal!("no_call", "this session has no call")));
    };
    hang_up_room(&state, s.id, s.state.recording()).await;
    let reason = Some(format!("ended by the {}", if caller.r == Role::Customer { "customer" } else { "agent" }));
    let version = run(&state.store, &caller, s.id, SessionCommand::EndCall { call_id, reason }).await?;
    Ok(Json(Done::new(version)))
}

/// The caller's participant id and role in the session's call: the customer
/// whose session it is, or the agent it is assigned to.
fn participant(
    caller: &Claims,
    session: &witness_domain::session::SessionState,
) -> Result<(String, ParticipantRole), ApiError> {
    match caller.r {
        Role::Customer => Ok(("customer".to_owned(), ParticipantRole::Customer)),
        Role::Agent if session.agent().is_some_and(|a| caller.user_id().is_ok_and(|me| me == a)) => {
            Ok((caller.s.clone(), ParticipantRole::Agent))
        }
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            refusal!("call_parties", "only the customer and the session's agent take part in its call"),
        )),
    }
}

/// A signaling message from a client.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", deny_unknown_fields)]
pub(crate) enum ClientSignal {
    #[serde(rename = "media.join")]
    Join { session: String },
    #[serde(rename = "media.publish")]
    Publish {
        session: String,
        sdp: String,
        #[serde(default)]
        screens: Vec<String>,
    },
    #[serde(rename = "media.answer")]
    Answer { session: String, sdp: String },
    #[serde(rename = "media.candidate")]
    Candidate { session: String, target: Target, candidate: IceCandidateInit },
    #[serde(rename = "media.device")]
    Device {
        session: String,
        device: MediaDevice,
        enabled: bool,
        /// Off because the browser was refused the device.
        #[serde(default)]
        blocked: bool,
    },
    #[serde(rename = "media.leave")]
    Leave { session: String },
}

#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    Publisher,
    Subscriber,
}

/// The calls one WebSocket connection joined, and the channel the media
/// server's signals for them arrive on.
#[derive(Debug)]
pub(crate) struct Signaling {
    joined: HashSet<(SessionId, String)>,
    signals_tx: mpsc::UnboundedSender<(SessionId, Signal)>,
    pub(crate) signals: mpsc::UnboundedReceiver<(SessionId, Signal)>,
    lang: Lang,
}

impl Signaling {
    /// Signaling whose refusals (`media.error`) are written in `lang`.
    pub(crate) fn new(lang: Lang) -> Self {
        let (signals_tx, signals) = mpsc::unbounded_channel();
        Signaling { joined: HashSet::new(), signals_tx, signals, lang }
    }

    /// A `media.error` frame for `e`, in the socket's language.
    fn refused(&self, session: Option<&str>, e: &ApiError) -> String {
        json!({ "type": "media.error", "session": session, "code": e.code(), "message": e.text_in(self.lang) })
            .to_string()
    }

    /// Handles one text frame; returns the frames to answer with.
    pub(crate) async fn handle(&mut self, state: &AppState, caller: &Claims, text: &str) -> Option<String> {
        let message: ClientSignal = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return Some(self.refused(None, &ApiError::malformed(e))),
        };
        let session = match &message {
            ClientSignal::Join { session }
            | ClientSignal::Publish { session, .. }
            | ClientSignal::Answer { session, .. }
            | ClientSignal::Candidate { session, .. }
            | ClientSignal::Device { session, .. }
            | ClientSignal::Leave { session } => session.clone(),
        };
        match self.apply(state, caller, message).await {
            Ok(reply) => reply,
            Err(e) => Some(self.refused(Some(&session), &e)),
        }
    }

    async fn apply(
        &mut self,
        state: &AppState,
        caller: &Claims,
        message: ClientSignal,
    ) -> Result<Option<String>, ApiError> {
        let media = &state.media;
        match message {
            ClientSignal::Join { session } => {
                let s = load(&state.store, caller, &session).await?;
                let (participant, role) = participant(caller, &s.state)?;
                if s.state.status() != SessionStatus::InCall {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        refusal!("no_call_to_join", "the session has no call to join"),
                    ));
                }
                let (tx, mut rx) = mpsc::unbounded_channel();
                media.join(&s.id.to_string(), &participant, role, tx).await.map_err(media_error)?;
                self.joined.insert((s.id, participant));
                let out = self.signals_tx.clone();
                let id = s.id;
                tokio::spawn(async move {
                    while let Some(signal) = rx.recv().await {
                        if out.send((id, signal)).is_err() {
                            return;
                        }
                    }
                });
                Ok(Some(
                    json!({ "type": "media.joined", "session": s.id, "ice_servers": media.ice_servers() }).to_string(),
                ))
            }
            ClientSignal::Publish { session, sdp, screens } => {
                let (id, participant) = self.member(&session, caller)?;
                let answer = media.publish(&id.to_string(), &participant, &sdp, screens).await.map_err(media_error)?;
                Ok(Some(json!({ "type": "media.answer", "session": id, "sdp": answer }).to_string()))
            }
            ClientSignal::Answer { session, sdp } => {
                let (id, participant) = self.member(&session, caller)?;
                media.subscriber_answer(&id.to_string(), &participant, &sdp).await.map_err(media_error)?;
                Ok(None)
            }
            ClientSignal::Candidate { session, target, candidate } => {
                let (id, participant) = self.member(&session, caller)?;
                media
                    .add_candidate(&id.to_string(), &participant, target == Target::Subscriber, candidate)
                    .await
                    .map_err(media_error)?;
                Ok(None)
            }
            ClientSignal::Device { session, device, enabled, blocked } => {
                let (id, participant) = self.member(&session, caller)?;
                let fact = CallFact::MediaStateChanged {
                    participant_id: participant,
                    device,
                    enabled,
                    blocked: blocked && !enabled,
                };
                run(&state.store, caller, id, SessionCommand::CallMedia { fact }).await?;
                Ok(None)
            }
            ClientSignal::Leave { session } => {
                let (id, participant) = self.member(&session, caller)?;
                self.joined.remove(&(id, participant.clone()));
                media.leave(&id.to_string(), &participant, Some("hung up".into())).await.map_err(media_error)?;
                Ok(Some(json!({ "type": "media.left", "session": id, "reason": "hung up" }).to_string()))
            }
        }
    }

    /// The call this connection joined for `session`.
    fn member(&self, session: &str, caller: &Claims) -> Result<(SessionId, String), ApiError> {
        let id: SessionId =
            session.parse().map_err(|_| ApiError::not_found(refusal!("no_session", "no such session")))?;
        self.joined
            .iter()
            .find(|(s, p)| *s == id && (caller.r == Role::Customer || *p == caller.s))
            .cloned()
            .ok_or_else(|| {
                ApiError::new(StatusCode::CONFLICT, refusal!("join_first", "join the call first (`media.join`)"))
            })
    }

    /// A signal from the media server as a frame for the client.
    pub(crate) fn frame(&mut self, session: SessionId, signal: Signal) -> String {
        match signal {
            Signal::Offer { sdp } => json!({ "type": "media.offer", "session": session, "sdp": sdp }),
            Signal::Left { reason } => {
                self.joined.retain(|(s, _)| *s != session);
                json!({ "type": "media.left", "session": session, "reason": reason })
            }
        }
        .to_string()
    }

    /// The connection closed: leave every call it joined.
    pub(crate) async fn hang_up(self, media: &MediaServer) {
        for (session, participant) in self.joined {
            let _ = media.leave(&session.to_string(), &participant, Some("connection closed".into())).await;
        }
    }
}

fn media_error(e: MediaError) -> ApiError {
    // What the SFU said is technical (an SDP's fault, a port range): given
    // as it is, beside a sentence a person can read.
    let (status, refusal) = match &e {
        MediaError::InvalidSdp(_) | MediaError::WebRtc(_) => {
            (StatusCode::BAD_REQUEST, refusal!("media_refused", "the call's media was refused: {detail}", detail = e))
        }
        MediaError::NotJoined => (StatusCode::CONFLICT, refusal!("join_first", "join the call first (`media.join`)")),
        MediaError::AlreadyJoined => (StatusCode::CONFLICT, refusal!("already_joined", "already in this call")),
        MediaError::Sfu(_) => {
            (StatusCode::CONFLICT, refusal!("media_conflict", "the call cannot do that now: {detail}", detail = e))
        }
        MediaError::NoPort(..) | MediaError::Recording(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            refusal!("media_unavailable", "the media server cannot do that now: {detail}", detail = e),
        ),
    };
    ApiError::new(status, refusal)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::ClientSignal;

    /// The JSON Schema block of `docs/integration.md` whose `$id` is `id`.
    fn documented(id: &str) -> Value {
        let doc = include_str!("../../docs/integration.md");
        doc.split("```json")
            .skip(1)
            .filter_map(|block| serde_json::from_str::<Value>(block.split("```").next()?).ok())
            .find(|schema| schema["$id"] == id)
            .unwrap_or_else(|| panic!("no schema {id} in docs/integration.md"))
    }

    /// A value of `schema` with its required fields only.
    fn minimal(schema: &Value) -> Value {
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(options) = schema.get("enum") {
            return options[0].clone();
        }
        match schema["type"].as_str() {
            Some("object") => {
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                let fields = required.iter().map(|name| {
                    let name = name.as_str().unwrap();
                    (name.to_owned(), minimal(&schema["properties"][name]))
                });
                Value::Object(fields.collect())
            }
            Some("string") if schema["format"] == "uuid" => json!("01a251f1-a5bc-7567-b34a-ed0e42198622"),
            Some("string") => json!("v=0"),
            Some("boolean") => json!(true),
            Some("integer") => json!(0),
            Some("array") => json!([]),
            other => panic!("a schema of {other:?}"),
        }
    }

    /// The integration guide's schema of what clients send (the one a
    /// team outside writes its app from) and `ClientSignal` agree: every
    /// message the schema describes is taken, with no more fields than
    /// it allows, and every message the server takes is described.
    #[test]
    fn the_documented_signaling_schema_is_what_the_server_takes() {
        let schema = documented("witness:media-client");
        let mut types = vec![];
        for variant in schema["oneOf"].as_array().unwrap() {
            let message = minimal(variant);
            types.push(message["type"].as_str().unwrap().to_owned());
            let taken: Result<ClientSignal, _> = serde_json::from_value(message.clone());
            assert!(taken.is_ok(), "{message}: {taken:?}");
            assert_eq!(variant["additionalProperties"], false, "{message}: the server refuses unknown fields");
            let mut extra = message.clone();
            extra["surprise"] = json!(1);
            assert!(serde_json::from_value::<ClientSignal>(extra).is_err(), "{message} with an unknown field");
            // Every optional field the schema lists is one the server knows.
            let mut full = message.clone();
            for (name, property) in variant["properties"].as_object().unwrap() {
                if full.get(name).is_none() {
                    full[name] = property.get("default").cloned().unwrap_or_else(|| minimal(property));
                }
            }
            assert!(serde_json::from_value::<ClientSignal>(full.clone()).is_ok(), "{full}");
        }
        types.sort();
        let served = ["media.answer", "media.candidate", "media.device", "media.join", "media.leave", "media.publish"];
        assert_eq!(types, served);
        let server = documented("witness:media-server");
        let mut sent: Vec<String> = server["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| match &v["properties"]["type"] {
                t if t.get("const").is_some() => vec![t["const"].as_str().unwrap().to_owned()],
                t => t["enum"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect(),
            })
            .collect();
        sent.sort();
        assert_eq!(sent, ["media.answer", "media.error", "media.joined", "media.left", "media.offer"]);
    }
}
