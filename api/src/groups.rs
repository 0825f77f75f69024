//! A tenant's skill groups: where sessions queue and where agents transfer
//! them. An admin sets them (`PUT /api/admin/groups`, a `SkillGroupsSet`
//! event); a tenant that set none has the groups its agents name in their
//! skills. Transfers and moves go only to a group that exists; a transfer to
//! a group with nobody online is refused or queued, as the group says.

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_domain::tenant::TenantCommand;
use witness_schemas::{NobodyOnline, Role, SkillGroup, TenantId, UserId};

use crate::auth::Caller;
use crate::{ApiError, AppState, Body};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/groups", get(list))
        .route("/api/admin/groups", put(set))
        .route("/api/sessions/{id}/wait", get(wait))
        .route("/api/sessions/{id}/leave-message", post(leave_message))
}

/// A group as people choose one: how many of its agents are online, how
/// many sessions wait in it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupView {
    pub name: String,
    pub label: String,
    pub when_nobody_online: NobodyOnline,
    /// Agents online who list it in their skills.
    pub online: usize,
    pub waiting: usize,
    /// Open now (always, without hours).
    pub open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<witness_schemas::BusinessHours>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_after_secs: Option<u32>,
}

/// An agent who is online, for a transfer to a named person.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OnlineAgent {
    pub agent_id: String,
    pub display_name: String,
    pub login: String,
    pub skill_groups: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Groups {
    pub groups: Vec<GroupView>,
    /// False while the tenant has set none (the groups are then those its
    /// agents name).
    pub set_by_tenant: bool,
    pub agents_online: Vec<OnlineAgent>,
}

/// The tenant's groups now, with who is online in each.
pub(crate) async fn groups(state: &AppState, tenant: &TenantId) -> Result<Groups, ApiError> {
    Ok(with_queue(state, tenant).await?.0)
}

/// [`groups`], and the queues they were counted from.
async fn with_queue(state: &AppState, tenant: &TenantId) -> Result<(Groups, witness_projections::QueueView), ApiError> {
    let directory = witness_app::tenant::directory(&state.store, tenant).await?;
    let queue = state.projector.queue(tenant).await?;
    let set_by_tenant = directory.groups.is_some();
    let defined = directory.groups.clone().unwrap_or_else(|| {
        let mut names: Vec<&String> = queue.agents.iter().flat_map(|a| &a.skill_groups).collect();
        names.extend(queue.waiting.iter().map(|w| &w.group));
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| SkillGroup {
                name: name.clone(),
                label: name.clone(),
                when_nobody_online: NobodyOnline::Queue,
                hours: None,
                message_after_secs: None,
            })
            .collect()
    });
    let online: Vec<_> = queue.agents.iter().filter(|a| a.presence == "online").collect();
    let groups = defined
        .into_iter()
        .map(|g| GroupView {
            online: online.iter().filter(|a| a.skill_groups.contains(&g.name)).count(),
            waiting: queue.waiting.iter().filter(|w| w.group == g.name).count(),
            open: g.hours.as_ref().is_none_or(|h| h.is_open(chrono::Utc::now())),
            hours: g.hours,
            message_after_secs: g.message_after_secs,
            name: g.name,
            label: g.label,
            when_nobody_online: g.when_nobody_online,
        })
        .collect();
    let agents_online = online
        .iter()
        .filter_map(|a| {
            let id = a.agent_id.parse::<UserId>().ok()?;
            let user = directory.users.values().find(|u| u.user_id == id)?;
            Some(OnlineAgent {
                agent_id: a.agent_id.clone(),
                display_name: user.display_name.clone(),
                login: user.login.clone(),
                skill_groups: a.skill_groups.clone(),
            })
        })
        .collect();
    Ok((Groups { groups, set_by_tenant, agents_online }, queue))
}

impl Groups {
    /// The group named `name`, or 422 naming the groups there are.
    pub fn get(&self, name: &str) -> Result<&GroupView, ApiError> {
        self.groups.iter().find(|g| g.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
            let refusal = refusal!(
                "no_group",
                "no group `{name}`: the groups are {groups}",
                name = name,
                groups = names.join(", ")
            );
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, refusal)
        })
    }
}

/// `GET /api/groups` (agents, supervisors, admins).
async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Groups>, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    Ok(Json(groups(&state, &caller.t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetGroups {
    groups: Vec<SkillGroup>,
}

/// `PUT /api/admin/groups {groups: [{name, label, when_nobody_online}]}`
/// (admins): all the tenant's groups.
async fn set(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetGroups>,
) -> Result<Json<Groups>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetGroups(body.groups);
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(groups(&state, &caller.t).await?))
}

/// How many recent waits an estimate rests on.
const ESTIMATE_FROM: usize = 20;

/// What a waiting customer is told.
#[derive(Debug, Serialize)]
struct WaitView {
    /// Whether the session waits in a queue now.
    queued: bool,
    group: String,
    label: String,
    /// 1 for the next to be served.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
    waiting: usize,
    agents_online: usize,
    open: bool,
    /// The median wait of the group's last 20 assigned sessions times the
    /// position; none while nobody is online, out of hours, or without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_wait_secs: Option<u64>,
    /// Why the customer may rather leave a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<String>,
    can_leave_message: bool,
}

/// `GET /api/sessions/{id}/wait`: the customer's place in the queue, with
/// whether anyone is there to serve them (the customer, and staff).
async fn wait(
    State(state): State<AppState>,
    Caller(caller): Caller,
    crate::i18n::Asked(lang): crate::i18n::Asked,
    Path(id): Path<String>,
) -> Result<Json<WaitView>, ApiError> {
    let s = witness_app::session::load(&state.store, &caller, &id).await?;
    use witness_domain::session::SessionStatus;
    let queued = matches!(s.state.status(), SessionStatus::Queued | SessionStatus::Offered);
    let name = s.state.group.clone().unwrap_or_else(|| s.state.business_type.clone());
    let (all, queue) = with_queue(&state, &caller.t).await?;
    let group = all.groups.iter().find(|g| g.name == name);
    let mut line: Vec<_> = queue.waiting.iter().filter(|w| w.group == name).collect();
    line.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.queued_at.cmp(&b.queued_at)));
    let position = line.iter().position(|w| w.session_id == s.id.to_string()).map(|p| p + 1);
    let label = group.map_or(name.clone(), |g| g.label.clone());
    let (online, open) = group.map_or((0, true), |g| (g.online, g.open));
    let since = line
        .iter()
        .find(|w| w.session_id == s.id.to_string())
        .and_then(|w| chrono::DateTime::parse_from_rfc3339(&w.queued_at).ok());
    let waited = since.map_or(0, |t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64);
    let estimated_wait_secs = match position {
        Some(p) if online > 0 && open => {
            let mut waits = state.projector.recent_waits(&caller.t, &name, ESTIMATE_FROM).await?;
            waits.sort_unstable();
            waits.get(waits.len() / 2).map(|median| *median as u64 * p as u64)
        }
        _ => None,
    };
    let notice = if !queued {
        None
    } else if !open {
        group.and_then(|g| g.hours.as_ref()).map(|h| h.closed_message.clone())
    } else if online == 0 {
        Some(lang.format("server.nobody_available", &[("group", &label)]))
    } else {
        let after = group.and_then(|g| g.message_after_secs);
        after.filter(|after| waited >= u64::from(*after)).map(|_| lang.text("server.sorry_for_the_wait").to_owned())
    };
    Ok(Json(WaitView {
        queued,
        group: name,
        label,
        position,
        waiting: line.len(),
        agents_online: online,
        open,
        estimated_wait_secs,
        can_leave_message: notice.is_some(),
        notice,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeftMessage {
    text: crate::fields::Note<2000>,
}

#[derive(Serialize)]
struct Left {
    ticket_id: witness_schemas::TicketId,
}

/// `POST /api/sessions/{id}/leave-message {text}` (the waiting customer):
/// a ticket holding the message, for the group to answer later, and the
/// session ends (reason `left_message`).
async fn leave_message(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<LeftMessage>,
) -> Result<(StatusCode, Json<Left>), ApiError> {
    caller.require(&[Role::Customer])?;
    let s = witness_app::session::load(&state.store, &caller, &id).await?;
    use witness_domain::session::{SessionCommand, SessionStatus};
    if !matches!(s.state.status(), SessionStatus::Queued | SessionStatus::Offered) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("message_while_waiting", "a message is left while waiting for a person"),
        ));
    }
    let text = body.text.into_inner();
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(refusal!("empty_message", "`text`: the message is empty")));
    }
    let group = s.state.group.clone().unwrap_or_else(|| s.state.business_type.clone());
    // The session ends first: if it was taken meanwhile, no ticket is made.
    let end = SessionCommand::End {
        ended_by: witness_schemas::EndedBy::Customer,
        reason: witness_schemas::EndReason::LeftMessage,
    };
    witness_app::session::run(&state.store, &caller, s.id, end).await?;
    let title = format!("[{group}] message left while waiting");
    let priority = witness_schemas::TicketPriority::Normal;
    let ticket_id = crate::tickets::open(&state, &caller, s.id, title, text, priority).await?;
    Ok((StatusCode::CREATED, Json(Left { ticket_id })))
}
