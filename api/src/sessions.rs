//! Sessions over HTTP: a customer starts one and chats (with the bot, then
//! an agent), asks for a human, ends and rates it; agents set their
//! presence, accept or decline offers, talk, transfer, end and wrap up.
//!
//! Every route loads the session's stream and checks it belongs to the
//! caller's tenant (and, for a customer, that it is theirs) before anything
//! is decided; otherwise the answer is 404, whether the session exists
//! elsewhere or not.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use witness_domain::agent::{Agent, AgentCommand};
use witness_domain::session::{Session, SessionCommand, SessionState, SessionStatus};
use witness_engine::executor::execute;
use witness_schemas::*;

use crate::auth::{Caller, Claims};
use crate::bot::{self, BotReply};
use crate::fields::{Line, Note, LINE, NOTE};
use crate::i18n::Lang;
use crate::views::{Done, EventView};
use crate::{ApiError, AppState, Body};
use witness_app::session::{load, run, Loaded};

/// The longest text message, in characters.
pub const MAX_TEXT: usize = 4_000;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(start).get(crate::supervision::find_sessions))
        .route("/api/sessions/{id}", get(show))
        .route("/api/sessions/{id}/messages", post(message))
        .route("/api/sessions/{id}/human", post(human))
        .route("/api/sessions/{id}/accept", post(accept))
        .route("/api/sessions/{id}/decline", post(decline))
        .route("/api/sessions/{id}/pick", post(pick))
        .route("/api/sessions/{id}/assign", post(assign))
        .route("/api/sessions/{id}/requeue", post(requeue))
        .route("/api/sessions/{id}/transfer", post(transfer))
        .route("/api/sessions/{id}/end", post(end))
        .route("/api/sessions/{id}/wrap-up", post(wrap_up))
        .route("/api/sessions/{id}/rating", post(rate))
        .route("/api/agent/presence", put(presence))
}

/// [`run`] for a command that assigns the session to an agent: when it
/// does, how long the session waited in its queue is counted for
/// `/metrics`.
async fn assign_timed(
    state: &AppState,
    caller: &Claims,
    id: SessionId,
    command: SessionCommand,
) -> Result<u64, ApiError> {
    let done = witness_app::session::appended(&state.store, caller, id, command).await?;
    if done.events.iter().any(|e| e.event_type == "AgentAssigned") {
        if let Ok(Some(queued)) = state.projector.queued_at(&caller.t, &id.to_string()).await {
            state.metrics.queue_wait.observe((Utc::now() - queued).to_std().unwrap_or_default());
        }
    }
    Ok(done.last_version())
}

// ------------------------------------------------------------------ customer

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    #[serde(default = "general")]
    business_type: String,
    #[serde(default)]
    locale: Option<String>,
}

fn general() -> String {
    "general".into()
}

#[derive(Serialize)]
struct Started {
    session_id: SessionId,
}

async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<StartRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    caller.require(&[Role::Customer])?;
    let business_type = req.business_type.trim().to_owned();
    if business_type.is_empty()
        || business_type.len() > 64
        || !business_type.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::bad_request(refusal!(
            "business_type_format",
            "`business_type`: 1 to 64 of a-z, 0-9, _ and -"
        )));
    }
    if let Some(locale) = &req.locale {
        crate::fields::locale(locale)?;
    }
    let session_id = SessionId::new();
    let command = SessionCommand::Start {
        session_id,
        channel: caller.c.unwrap_or(Channel::Web),
        business_type,
        customer_ref: caller.s.clone(),
        locale: req.locale,
    };
    run(&state.store, &caller, session_id, command).await?;
    Ok((StatusCode::CREATED, Json(Started { session_id })))
}

#[derive(Serialize)]
struct SessionView {
    session_id: SessionId,
    status: String,
    business_type: String,
    channel: Option<Channel>,
    agent_id: Option<UserId>,
    /// The assigned agent as the customer sees them: display name and
    /// login (their work number).
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<AgentName>,
    open_offer: Option<OfferId>,
    masked: bool,
    /// Staff only: the name and login of every user the events name (as
    /// actor or `agent_id`), by user id, so a timeline says who.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    people: BTreeMap<UserId, String>,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct AgentName {
    display_name: String,
    work_number: String,
}

async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let s = load(&state.store, &caller, &id).await?;
    let events = s.events(&state.store).await?;
    let unmasked = s.unmasked_for(&caller);
    if unmasked {
        crate::supervision::record_view(&state, &caller, "session", Some(s.id), events.len()).await?;
    }
    let staff = caller.r != Role::Customer;
    let directory = match (s.state.agent(), staff) {
        (None, false) => None,
        _ => Some(witness_app::tenant::directory(&state.store, &caller.t).await?),
    };
    let agent = s
        .state
        .agent()
        .and_then(|id| directory.as_ref()?.user(id))
        .map(|u| AgentName { display_name: u.display_name.clone(), work_number: u.login.clone() });
    let events: Vec<EventView> = events.iter().map(|e| EventView::new(e, unmasked)).collect();
    let mut people = BTreeMap::new();
    if let (Some(directory), true) = (&directory, staff) {
        for e in &events {
            let named = [e.actor.id.as_deref(), e.payload.get("agent_id").and_then(|a| a.as_str())];
            for id in named.into_iter().flatten().filter_map(|id| id.parse::<UserId>().ok()) {
                if let Some(u) = directory.user(id) {
                    people.entry(id).or_insert_with(|| u.name_and_login());
                }
            }
        }
    }
    Ok(Json(SessionView {
        agent,
        session_id: s.id,
        status: s.state.status().to_string(),
        business_type: s.state.business_type.clone(),
        channel: s.state.channel,
        agent_id: s.state.agent(),
        open_offer: s.state.offer().filter(|_| unmasked).map(|o| o.offer_id),
        masked: !unmasked,
        people,
        events,
    }))
}

fn check_content(content: &MessageContent) -> Result<(), ApiError> {
    let (what, text) = match content {
        MessageContent::Text { text } => ("text", text.as_str()),
        MessageContent::RichText { markdown, .. } => ("markdown", markdown.as_str()),
        MessageContent::Image { caption, .. } => ("caption", caption.as_deref().unwrap_or("-")),
        MessageContent::File { .. } => ("file", "-"),
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(refusal!("field_empty", "`{field}` is empty", field = what)));
    }
    crate::fields::note(what, text, MAX_TEXT)
}

#[derive(Serialize)]
struct Sent {
    message_id: MessageId,
    version: u64,
    /// What the bot did about it, when the session is with the bot.
    #[serde(skip_serializing_if = "Option::is_none")]
    bot: Option<&'static str>,
}

async fn message(
    State(state): State<AppState>,
    Caller(caller): Caller,
    crate::i18n::Asked(lang): crate::i18n::Asked,
    Path(id): Path<String>,
    Body(mut content): Body<MessageContent>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    check_content(&content)?;
    let s = load(&state.store, &caller, &id).await?;
    crate::uploads::complete(&state, &caller, s.id, &mut content).await?;
    let message_id = MessageId::new();
    // What the bot reads, if the session is with the bot.
    let for_bot = match &content {
        MessageContent::Text { text } | MessageContent::RichText { markdown: text, .. }
            if caller.r == Role::Customer && s.state.status() == SessionStatus::WithBot =>
        {
            Some(text.clone())
        }
        _ => None,
    };
    let command = match caller.r {
        Role::Customer => SessionCommand::CustomerSays { message_id, content },
        Role::Agent => {
            let me = caller.user_id()?;
            if s.state.agent() != Some(me) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    refusal!("agent_speaks", "only the session's agent speaks in it"),
                ));
            }
            SessionCommand::AgentSays { agent_id: me, message_id, content }
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                refusal!("parties_send", "only the customer and the session's agent send messages"),
            ))
        }
    };
    let mut version = run(&state.store, &caller, s.id, command).await?;
    let mut bot = None;
    if let Some(text) = for_bot {
        match bot_turn(&state, &caller, &s, &text, lang).await? {
            Some((v, what)) => {
                version = v;
                bot = Some(what);
            }
            // Handed to a person (or ended) while the bot read it: the
            // message stands, for them; the bot says nothing.
            None => bot = Some("handed_over"),
        }
    }
    Ok((StatusCode::CREATED, Json(Sent { message_id, version, bot })))
}

/// The bot's answer to a customer's message, appended as the bot; `None`
/// if the session left the bot meanwhile (the customer asked for a person
/// in another request: a 409 here once lost the message's answer and told
/// the customer their message failed).
pub(crate) async fn bot_turn(
    state: &AppState,
    caller: &Claims,
    session: &Loaded,
    text: &str,
    lang: Lang,
) -> Result<Option<(u64, &'static str)>, ApiError> {
    let id = session.id;
    let bot_actor = Actor::new(ActorKind::Bot, "kb");
    let stream = StreamId::session(id);
    let best = state.kb.search(&state.store, &caller.t, text, 1).await?.into_iter().next();
    let best = best.map(|h| (h.id, h.answer, h.confidence));
    let (command, what) = match bot::reply(text, best, state.bot_threshold, lang) {
        // The session as loaded before this message serves: the handoff's
        // summary skips messages that ask for a human, as this one does.
        BotReply::Handoff => {
            let staff = crate::i18n::tenant_lang(state, &caller.t).await?;
            (handoff(&session.state, "server.handoff_asked", staff), "handoff")
        }
        BotReply::Answer { text, faq_id, score } => (
            SessionCommand::BotAnswers {
                message_id: MessageId::new(),
                content: MessageContent::Text { text },
                faq_id: Some(faq_id),
                score: Some(score),
            },
            "answered",
        ),
        BotReply::NotSure { text } => (
            SessionCommand::BotAnswers {
                message_id: MessageId::new(),
                content: MessageContent::Text { text },
                faq_id: None,
                score: None,
            },
            "not_sure",
        ),
    };
    match execute::<Session>(&state.store, &caller.t, &stream, &bot_actor, Utc::now(), command).await {
        Ok(done) => Ok(Some((done.last_version(), what))),
        Err(witness_engine::executor::ExecuteError::Domain(witness_domain::DomainError::NotAllowed { .. })) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The handover to a human: to the session's business group, with the
/// bot's summary of the conversation (the recent messages go along), in
/// `lang` (the tenant's: its staff read it), `reason` a catalog key.
fn handoff(session: &SessionState, reason: &str, lang: Lang) -> SessionCommand {
    // The customer's last question, not their "转人工".
    let last = session
        .recent
        .iter()
        .rev()
        .find(|m| m.from == witness_domain::session::Speaker::Customer && !bot::asks_for_human(&m.text));
    let business = session.business_type.as_str();
    let summary = match last {
        Some(m) => lang.format("server.summary_last_asked", &[("business", business), ("text", &m.text)]),
        None => lang.format("server.summary_at_once", &[("business", business)]),
    };
    SessionCommand::RequestHuman {
        group: session.business_type.clone(),
        reason: lang.text(reason).to_owned(),
        context_summary: summary.chars().take(500).collect(),
        priority: 0,
    }
}

async fn human(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Customer])?;
    let s = load(&state.store, &caller, &id).await?;
    let staff = crate::i18n::tenant_lang(&state, &caller.t).await?;
    let version = run(&state.store, &caller, s.id, handoff(&s.state, "server.handoff_button", staff)).await?;
    Ok(Json(Done::new(version)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rate {
    rating: u8,
    #[serde(default)]
    comment: Option<Note<MAX_TEXT>>,
}

async fn rate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<Rate>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Customer])?;
    let rating = Rating::try_from(req.rating)
        .map_err(|_| ApiError::bad_request(refusal!("rating_range", "`rating`: an integer from 1 to 5")))?;
    let s = load(&state.store, &caller, &id).await?;
    let comment = req.comment.map(Note::into_inner);
    let version = run(&state.store, &caller, s.id, SessionCommand::Rate { rating, comment }).await?;
    Ok(Json(Done::new(version)))
}

async fn end(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    let ended_by = match caller.r {
        Role::Customer => EndedBy::Customer,
        Role::Agent => EndedBy::Agent,
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                refusal!("parties_end", "only the customer or the session's agent ends it"),
            ))
        }
    };
    let s = load(&state.store, &caller, &id).await?;
    if caller.r == Role::Agent && s.state.agent() != Some(caller.user_id()?) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, refusal!("agent_ends", "only the session's agent ends it")));
    }
    // The decider turns a customer leaving the queue into `abandoned`.
    let reason = if s.state.status() == SessionStatus::WithBot { EndReason::BotResolved } else { EndReason::Resolved };
    let version = run(&state.store, &caller, s.id, SessionCommand::End { ended_by, reason }).await?;
    if s.state.call().is_some() {
        crate::calls::hang_up_room(&state, s.id, s.state.recording()).await;
    }
    Ok(Json(Done::new(version)))
}

// --------------------------------------------------------------------- agent

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferAnswer {
    offer_id: OfferId,
    #[serde(default)]
    reason: Option<Line<LINE>>,
}

async fn accept(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<OfferAnswer>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    let s = load(&state.store, &caller, &id).await?;
    let command = SessionCommand::AcceptOffer { offer_id: req.offer_id, agent_id: caller.user_id()?, at: Utc::now() };
    Ok(Json(Done::new(assign_timed(&state, &caller, s.id, command).await?)))
}

async fn decline(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<OfferAnswer>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    let s = load(&state.store, &caller, &id).await?;
    let command = SessionCommand::DeclineOffer {
        offer_id: req.offer_id,
        agent_id: caller.user_id()?,
        reason: req.reason.map(Line::into_inner),
    };
    Ok(Json(Done::new(run(&state.store, &caller, s.id, command).await?)))
}

/// Refuses (404, as for any other tenant's) a named agent who is not an
/// agent of the caller's tenant.
async fn tenant_agent(state: &AppState, caller: &Claims, agent_id: UserId) -> Result<(), ApiError> {
    let dir = witness_app::tenant::directory(&state.store, &caller.t).await?;
    if dir.user(agent_id).is_none_or(|u| u.role != Role::Agent) {
        return Err(ApiError::not_found(refusal!("no_agent", "no such agent")));
    }
    Ok(())
}

/// `POST /api/sessions/{id}/pick` (agents): takes a waiting session from
/// the queue: assigned to the caller at once, unless another agent's offer
/// is open on it (409) or someone has it already.
async fn pick(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    let s = load(&state.store, &caller, &id).await?;
    let command = SessionCommand::Assign { offer_id: OfferId::new(), agent_id: caller.user_id()?, at: Utc::now() };
    Ok(Json(Done::new(assign_timed(&state, &caller, s.id, command).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRequest {
    agent_id: UserId,
}

/// `POST /api/sessions/{id}/assign {agent_id}` (supervisors): gives a
/// waiting session to one of the tenant's agents who is not offline.
async fn assign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<AssignRequest>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Supervisor])?;
    tenant_agent(&state, &caller, req.agent_id).await?;
    let agent = witness_engine::executor::current::<Agent>(&state.store, &StreamId::agent(req.agent_id)).await?;
    if agent.state.presence.is_none_or(|p| p == Presence::Offline) {
        return Err(ApiError::new(StatusCode::CONFLICT, refusal!("agent_offline", "that agent is offline")));
    }
    let s = load(&state.store, &caller, &id).await?;
    let command = SessionCommand::Assign { offer_id: OfferId::new(), agent_id: req.agent_id, at: Utc::now() };
    Ok(Json(Done::new(assign_timed(&state, &caller, s.id, command).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequeueRequest {
    group: Line<64>,
}

/// `POST /api/sessions/{id}/requeue {group}` (supervisors): moves a waiting
/// session to another group's queue, ahead of those who have not waited.
async fn requeue(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<RequeueRequest>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Supervisor])?;
    let s = load(&state.store, &caller, &id).await?;
    crate::groups::groups(&state, &caller.t).await?.get(&req.group)?;
    let command = SessionCommand::Requeue { group: req.group.into_inner() };
    Ok(Json(Done::new(run(&state.store, &caller, s.id, command).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    to: TransferTarget,
    reason: Line<LINE>,
    #[serde(default)]
    context_summary: Option<Note<NOTE>>,
}

async fn transfer(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<TransferRequest>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    if let TransferTarget::Group { group } = &req.to {
        crate::fields::line("to.group", group, 64)?;
    }
    let s = load(&state.store, &caller, &id).await?;
    if let TransferTarget::Group { group } = &req.to {
        let all = crate::groups::groups(&state, &caller.t).await?;
        let target = all.get(group)?;
        let me = caller.user_id()?.to_string();
        let others = all.agents_online.iter().filter(|a| a.agent_id != me && a.skill_groups.contains(group)).count();
        if others == 0 && target.when_nobody_online == NobodyOnline::Refuse {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                refusal!(
                    "group_offline",
                    "nobody in {group} is online: the transfer is refused and the customer stays with you",
                    group = target.label
                ),
            ));
        }
    }
    if let TransferTarget::Agent { agent_id } = &req.to {
        tenant_agent(&state, &caller, *agent_id).await?;
    }
    let command = SessionCommand::Transfer {
        agent_id: caller.user_id()?,
        to: req.to,
        reason: req.reason.into_inner(),
        context_summary: req.context_summary.map(Note::into_inner).unwrap_or_default(),
    };
    let version = run(&state.store, &caller, s.id, command).await?;
    // A transfer ends the call; the next agent starts a new one.
    if s.state.call().is_some() {
        crate::calls::hang_up_room(&state, s.id, s.state.recording()).await;
    }
    Ok(Json(Done::new(version)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapUp {
    disposition: Line<LINE>,
    #[serde(default)]
    notes: Option<Note<NOTE>>,
}

async fn wrap_up(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<WrapUp>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    let s = load(&state.store, &caller, &id).await?;
    crate::dispositions::check(&state, &caller.t, &req.disposition).await?;
    let command = SessionCommand::CompleteWrapUp {
        agent_id: caller.user_id()?,
        disposition: req.disposition.into_inner(),
        notes: req.notes.map(Note::into_inner),
    };
    Ok(Json(Done::new(run(&state.store, &caller, s.id, command).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceRequest {
    presence: Presence,
    #[serde(default = "one")]
    capacity: u32,
    #[serde(default)]
    skill_groups: Vec<Line<64>>,
}

fn one() -> u32 {
    1
}

async fn presence(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<PresenceRequest>,
) -> Result<Json<Done>, ApiError> {
    caller.require(&[Role::Agent])?;
    if req.skill_groups.len() > 32 {
        return Err(ApiError::bad_request(refusal!("skill_group_count", "`skill_groups`: at most 32")));
    }
    let agent_id = caller.user_id()?;
    let command = AgentCommand::SetPresence {
        agent_id,
        presence: req.presence,
        capacity: req.capacity,
        skill_groups: req.skill_groups.into_iter().map(Line::into_inner).collect(),
    };
    let stream = StreamId::agent(agent_id);
    let done = execute::<Agent>(&state.store, &caller.t, &stream, &caller.actor(), Utc::now(), command).await?;
    Ok(Json(Done::new(done.last_version())))
}
