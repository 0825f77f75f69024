//! A tenant's skill groups: where sessions queue and where agents transfer
//! them. An admin sets them (`PUT /api/admin/groups`, a `SkillGroupsSet`
//! event); a tenant that set none has the groups its agents name in their
//! skills. Transfers and moves go only to a group that exists; a transfer to
//! a group with nobody online is refused or queued, as the group says.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_engine::domain::tenant::TenantCommand;
use witness_schemas::{NobodyOnline, Role, SkillGroup, TenantId, UserId};

use crate::auth::Caller;
use crate::{ApiError, AppState, Body};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/groups", get(list)).route("/api/admin/groups", put(set))
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
    let directory = crate::accounts::directory(&state.store, tenant).await?;
    let queue = state.projector.queue(tenant).await?;
    let set_by_tenant = directory.groups.is_some();
    let defined = directory.groups.clone().unwrap_or_else(|| {
        let mut names: Vec<&String> = queue.agents.iter().flat_map(|a| &a.skill_groups).collect();
        names.extend(queue.waiting.iter().map(|w| &w.group));
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| SkillGroup { name: name.clone(), label: name.clone(), when_nobody_online: NobodyOnline::Queue })
            .collect()
    });
    let online: Vec<_> = queue.agents.iter().filter(|a| a.presence == "online").collect();
    let groups = defined
        .into_iter()
        .map(|g| GroupView {
            online: online.iter().filter(|a| a.skill_groups.contains(&g.name)).count(),
            waiting: queue.waiting.iter().filter(|w| w.group == g.name).count(),
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
    Ok(Groups { groups, set_by_tenant, agents_online })
}

impl Groups {
    /// The group named `name`, or 422 naming the groups there are.
    pub fn get(&self, name: &str) -> Result<&GroupView, ApiError> {
        self.groups.iter().find(|g| g.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
            let message = format!("no group `{name}`: the groups are {}", names.join(", "));
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
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
    crate::supervision::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(groups(&state, &caller.t).await?))
}
