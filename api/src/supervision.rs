//! What supervisors and compliance officers read: live queues, the audit
//! trail, and the raw event log — always only their own tenant's.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_projections::dashboard::DayKpis;
use witness_projections::{AuditRow, QueueView, SessionQuery, SessionRow};
use witness_schemas::{Cursor, Role};

use crate::auth::{Caller, Claims};
use crate::cursor::{self, Paging};
use crate::views::EventView;
use crate::{ApiError, AppState};

/// The most rows one page returns.
pub const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/queue", get(queue))
        .route("/api/dashboard", get(dashboard))
        .route("/api/audit", get(audit))
        .route("/api/audit/export", get(audit_export))
        .route("/api/events", get(events))
}

async fn queue(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<QueueView>, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor])?;
    Ok(Json(named_queue(&state, &caller.t).await?))
}

/// The queues now, each agent with their name (display name and login).
async fn named_queue(state: &AppState, tenant: &witness_schemas::TenantId) -> Result<QueueView, ApiError> {
    let mut queue = state.projector.queue(tenant).await?;
    let directory = witness_app::tenant::directory(&state.store, tenant).await?;
    for agent in &mut queue.agents {
        let id = agent.agent_id.parse::<witness_schemas::UserId>().ok();
        agent.name = id.and_then(|id| directory.user(id)).map(|u| u.name_and_login());
    }
    Ok(queue)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardQuery {
    day: Option<String>,
    offset: Option<String>,
}

#[derive(Serialize)]
struct Dashboard {
    kpis: DayKpis,
    queue: QueueView,
}

/// `GET /api/dashboard?day=YYYY-MM-DD&offset=MINUTES`: the supervisor
/// dashboard's figures — a local day's KPIs (today by default; `offset` is
/// the local clock's minutes east of UTC, default 0) and the queues now —
/// from the read models. The page fetches it again as the WebSocket feed
/// brings new events.
async fn dashboard(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<DashboardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Dashboard>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance, Role::Admin])?;
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let offset = match q.offset.as_deref().filter(|o| !o.is_empty()) {
        None => 0,
        Some(text) => text.parse::<i32>().map_err(|_| {
            ApiError::bad_request(refusal!(
                "offset_minutes",
                "`offset`: minutes east of UTC, like 480, got {got}",
                got = format!("{text:?}")
            ))
        })?,
    };
    let max = witness_projections::dashboard::MAX_OFFSET_MINUTES;
    if offset.abs() > max {
        return Err(ApiError::bad_request(refusal!(
            "offset_range",
            "`offset`: within ±{max} minutes of UTC, got {got}",
            max = max,
            got = offset
        )));
    }
    let day = match q.day.as_deref().filter(|d| !d.is_empty()) {
        None => (chrono::Utc::now() + chrono::Duration::minutes(offset as i64)).date_naive(),
        Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(refusal!(
                "day_format",
                "`day`: a date like 2026-11-27, got {got}",
                got = format!("{text:?}")
            ))
        })?,
    };
    let kpis = state.projector.day_kpis(&caller.t, day, offset).await?;
    let queue = named_queue(&state, &caller.t).await?;
    Ok(Json(Dashboard { kpis, queue }))
}

/// Query strings are taken as text and parsed here, so that a bad value
/// gets a JSON error naming it rather than axum's plain-text rejection.
#[derive(Deserialize)]
struct Page {
    from: Option<String>,
    limit: Option<String>,
}

type PageQuery = Result<Query<Page>, axum::extract::rejection::QueryRejection>;

fn limit(page: &Page) -> Result<usize, ApiError> {
    match page.limit.as_deref() {
        None => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(refusal!(
                "page_limit",
                "`limit` must be an integer from 1 to {max}, got {got}",
                max = MAX_PAGE,
                got = format!("{text:?}")
            ))),
        },
    }
}

#[derive(Serialize)]
struct AuditPage {
    rows: Vec<AuditRow>,
    /// Pass as `from` for the next page (sealed: see [`crate::cursor`]).
    next: String,
}

/// Where a page starts: `from` as the previous page's `next` gave it (a
/// cursor sealed for this caller's tenant and `paging`, of `N` numbers),
/// or the start (`None`).
fn page_start<const N: usize>(
    state: &AppState,
    caller: &Claims,
    paging: Paging,
    page: &Page,
) -> Result<Option<[u64; N]>, ApiError> {
    match page.from.as_deref() {
        None | Some("") | Some("0") => Ok(None),
        Some(text) => {
            let numbers = cursor::open(&state.keys, paging, &caller.t, text).and_then(|n| n.try_into().ok());
            numbers.map(Some).ok_or_else(|| {
                ApiError::bad_request(refusal!(
                    "bad_cursor",
                    "`from`: not a cursor this server gave you; pass the previous page's `next`, or nothing to start"
                ))
            })
        }
    }
}

/// The audit trail, masked for supervisors; compliance sees it whole.
async fn audit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: PageQuery,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance])?;
    let Query(page) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let from = page_start(&state, &caller, Paging::Audit, &page)?.map_or(0, |[position]| position);
    let rows = state.projector.audit(&state.store, &caller.t, caller.r, from, limit(&page)?).await?;
    record_view(&state, &caller, "audit_trail", None, rows.len()).await?;
    let last = rows.last().map_or(from, |r| r.position);
    Ok(Json(AuditPage { next: cursor::seal(&state.keys, Paging::Audit, &caller.t, &[last]), rows }))
}

/// Records that `caller` read personal data unmasked through `view`, if
/// their role is one that reads it everywhere (compliance, admin) and the
/// view showed something: in the tenant's access log, before the data is
/// sent, so that a view the log cannot show is never served.
pub(crate) async fn record_view(
    state: &AppState,
    caller: &crate::auth::Claims,
    view: &str,
    session_id: Option<witness_schemas::SessionId>,
    items: usize,
) -> Result<(), ApiError> {
    if !caller.r.sees_personal_data() || (items == 0 && view != "live_feed") {
        return Ok(());
    }
    let event = witness_schemas::PersonalDataViewed { view: view.to_owned(), session_id, items: items as u64 };
    Ok(witness_app::audit::log_access(&state.store, &caller.t, &caller.actor(), event.into()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditExportQuery {
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// An RFC 3339 time or a day (its midnight UTC), for `name`.
fn time_param(name: &str, text: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            witness_projections::audit::parse_time(t).map_err(|_| {
                ApiError::bad_request(refusal!(
                    "time_or_day",
                    "`{field}`: {got} is neither an RFC 3339 time (2026-11-24T09:00:00Z) nor a day (2026-11-24)",
                    field = name,
                    got = format!("{t:?}")
                ))
            })
        })
        .transpose()
}

/// A temporary directory for one audit export, removed with what is in it.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET /api/audit/export?format=jsonl|csv|parquet&from=&to=`: the tenant's
/// events in that range as one file (see `witness_projections::audit`),
/// personal fields masked for supervisors and whole for compliance. Each
/// export is an `AuditExported` event in the tenant's access log, recorded before
/// the first byte is sent; the file's SHA-256 is in `x-witness-sha256`.
async fn audit_export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<AuditExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    use witness_projections::audit::{export_audit, AuditFormat, AuditQuery};
    caller.require(&[Role::Supervisor, Role::Compliance])?;
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let format: AuditFormat = q.format.as_deref().unwrap_or("jsonl").parse().map_err(|_: String| {
        ApiError::bad_request(refusal!("export_format", "`format`: one of jsonl, csv or parquet"))
    })?;
    let query = AuditQuery {
        tenant: Some(caller.t.clone()),
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
        unmasked: caller.r.sees_personal_data(),
    };
    let scratch = Scratch(std::env::temp_dir().join(format!("witness-audit-{}", uuid::Uuid::new_v4())));
    let pending = export_audit(&state.store, &scratch.0, &query, format, |_| {}).await.map_err(|e| match e {
        // A range that ends before it starts, refused before anything is written.
        witness_projections::export::ExportError::Invalid(_) => ApiError::bad_request(refusal!(
            "range_backwards",
            "the range ends ({to}) before it starts ({from})",
            to = q.to.as_deref().unwrap_or_default(),
            from = q.from.as_deref().unwrap_or_default()
        )),
        e => {
            tracing::error!(error = %e, "audit export failed");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                refusal!("export_failed", "the audit export could not be written"),
            )
        }
    })?;
    witness_app::audit::record_export(&state.store, &caller.t, &caller.actor(), &pending.manifest).await?;
    let file = tokio::fs::File::open(&pending.tmp).await.map_err(|e| {
        tracing::error!(error = %e, "audit export vanished");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            refusal!("export_unreadable", "the audit export could not be read"),
        )
    })?;
    let headers = [
        (header::CONTENT_TYPE, format.content_type().to_owned()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", pending.manifest.file)),
        (header::HeaderName::from_static("x-witness-sha256"), pending.manifest.sha256.clone()),
        (header::HeaderName::from_static("x-witness-events"), pending.manifest.events.to_string()),
    ];
    // The file and its directory live as long as the body is being sent.
    Ok((headers, crate::streaming::body(file, u64::MAX, (pending, scratch))).into_response())
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<EventView>,
    /// Pass as `from` for the next page (sealed: see [`crate::cursor`]).
    /// A page shorter than `limit` is the last one for now.
    next: String,
}

/// The tenant's events straight from the log, in the log's order.
async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: PageQuery,
) -> Result<Json<EventsPage>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance, Role::Admin])?;
    let Query(page) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let from = page_start(&state, &caller, Paging::Events, &page)?
        .map_or(Cursor::START, |[commit, position]| Cursor { commit, position });
    let ours = state.store.read_tenant(&caller.t, from, limit(&page)?).await?;
    let last = ours.last().map_or(from, |e| e.cursor());
    let next = cursor::seal(&state.keys, Paging::Events, &caller.t, &[last.commit, last.position]);
    let unmasked = caller.r.sees_personal_data();
    // The access log's own events (who viewed what) hold no customer's
    // data: a page of them alone is not a view to record, or reading the
    // log to its end would append to it for ever.
    let personal = ours.iter().filter(|e| e.stream_id.kind != witness_schemas::StreamKind::Access).count();
    record_view(&state, &caller, "event_log", None, personal).await?;
    let events: Vec<EventView> = ours.iter().map(|e| EventView::new(e, unmasked)).collect();
    Ok(Json(EventsPage { events, next }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    agent: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

/// `GET /api/sessions?agent=&outcome=&since=&until=&limit=`: the tenant's
/// sessions from the `sessions` read model, newest first. (Routed beside
/// `POST /api/sessions` in [`crate::sessions`].)
pub(crate) async fn find_sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<Search>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SessionRow>>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance, Role::Admin])?;
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let time = |name: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        match v.filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| Some(witness_engine::chain::time_text(&d.with_timezone(&chrono::Utc))))
                .map_err(|_| {
                    ApiError::bad_request(refusal!(
                        "time_format",
                        "`{field}`: an RFC 3339 time, like 2026-11-25T09:00:00Z",
                        field = name
                    ))
                }),
        }
    };
    let page = Page { from: None, limit: q.limit };
    let query = SessionQuery {
        agent: q.agent.filter(|a| !a.is_empty()),
        outcome: q.outcome.filter(|o| !o.is_empty()),
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        limit: limit(&page)?,
    };
    Ok(Json(state.projector.find_sessions(&caller.t, &query).await?))
}
