//! Tickets: opened from a session (the draft filled from its conversation),
//! then moved through open → in progress → resolved → closed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use witness_domain::ticket::{draft_from_session, Ticket, TicketCommand, TicketState};
use witness_domain::Decider;
use witness_engine::executor::execute;
use witness_schemas::*;

use crate::auth::{Caller, Claims};
use crate::fields::{Line, Note, LINE, NOTE};
use witness_app::session::load;

use crate::views::EventView;
use crate::{ApiError, AppState, Body};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tickets", post(create))
        .route("/api/tickets/{id}", get(show))
        .route("/api/tickets/{id}/status", post(change_status))
}

const STAFF: &[Role] = &[Role::Agent, Role::Supervisor];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTicket {
    session_id: String,
    /// Defaults to the draft from the session.
    #[serde(default)]
    title: Option<Line<LINE>>,
    #[serde(default)]
    description: Option<Note<NOTE>>,
    #[serde(default = "normal")]
    priority: TicketPriority,
}

fn normal() -> TicketPriority {
    TicketPriority::Normal
}

#[derive(Serialize)]
struct Created {
    ticket_id: TicketId,
    title: String,
    description: String,
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<NewTicket>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.require(STAFF)?;
    let session = load(&state.store, &caller, &req.session_id).await?;
    // The draft quotes the conversation: only for those who read it
    // unmasked (the session's agent). Anyone else writes their own.
    let (draft_title, draft_description) = if session.unmasked_for(&caller) {
        draft_from_session(&session.state)
    } else {
        let title = format!("[{}] follow-up", session.state.business_type);
        (title, "(the conversation is shown to the session's agent only)".to_owned())
    };
    let title = req.title.map_or(draft_title, Line::into_inner);
    let description = req.description.map_or(draft_description, Note::into_inner);
    let ticket_id = open(&state, &caller, session.id, title.clone(), description.clone(), req.priority).await?;
    Ok((StatusCode::CREATED, Json(Created { ticket_id, title, description })))
}

/// Opens a ticket on `session_id` as `caller` (an agent's, or a waiting
/// customer's message left for later).
pub(crate) async fn open(
    state: &AppState,
    caller: &Claims,
    session_id: SessionId,
    title: String,
    description: String,
    priority: TicketPriority,
) -> Result<TicketId, ApiError> {
    let ticket_id = TicketId::new();
    let command = TicketCommand::Create { ticket_id, session_id, title, description, priority };
    let stream = StreamId::ticket(ticket_id);
    execute::<Ticket>(&state.store, &caller.t, &stream, &caller.actor(), Utc::now(), command).await?;
    Ok(ticket_id)
}

async fn load_ticket(
    state: &AppState,
    caller: &Claims,
    id: &str,
) -> Result<(TicketId, Vec<RecordedEvent>, TicketState), ApiError> {
    let id: TicketId = id.parse().map_err(|_| ApiError::not_found(refusal!("no_ticket", "no such ticket")))?;
    let events = state.store.read_stream(&StreamId::ticket(id), 1).await?;
    if events.first().is_none_or(|e| e.tenant_id != caller.t) {
        return Err(ApiError::not_found(refusal!("no_ticket", "no such ticket")));
    }
    let decoded = witness_app::error::decode_stream(&events, "the ticket")?;
    Ok((id, events, Ticket::fold(&decoded)))
}

#[derive(Serialize)]
struct TicketView {
    ticket_id: TicketId,
    status: Option<TicketStatus>,
    events: Vec<EventView>,
}

async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<TicketView>, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor, Role::Compliance])?;
    let (ticket_id, events, ticket) = load_ticket(&state, &caller, &id).await?;
    // Tickets are team work: any agent may pick one up, so agents read them
    // whole; supervisors see them masked, as they see the audit trail.
    let unmasked = caller.r != Role::Supervisor;
    Ok(Json(TicketView {
        ticket_id,
        status: ticket.status,
        events: events.iter().map(|e| EventView::new(e, unmasked)).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: TicketStatus,
    #[serde(default)]
    note: Option<Note<NOTE>>,
}

async fn change_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(req): Body<StatusChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(STAFF)?;
    let (ticket_id, _, _) = load_ticket(&state, &caller, &id).await?;
    let command = TicketCommand::ChangeStatus { status: req.status, note: req.note.map(Note::into_inner) };
    let stream = StreamId::ticket(ticket_id);
    let done = execute::<Ticket>(&state.store, &caller.t, &stream, &caller.actor(), Utc::now(), command).await?;
    Ok(Json(serde_json::json!({ "version": done.last_version() })))
}
