//! SQL and the standard reports for analysts — supervisors, compliance
//! officers and admins — over their own tenant's data only, as of the last
//! `witness export`. See
//! `witness_projections::reports` for the tables and the bounds. Queries
//! run where [`AppState::reports`] says: `witness serve` runs each in a
//! worker process of its own, so that no query can take the server down.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use witness_projections::reports::{self, Answer, Format, ReportError, STANDARD};
use witness_schemas::Role;

use crate::auth::{Caller, Claims};
use crate::error::Body;
use crate::{ApiError, AppState};

/// The most rows an answer carries, and the default.
pub const MAX_ROWS: usize = 100_000;
const DEFAULT_ROWS: usize = 10_000;
/// How long a query may run, unless [`AppState::report_timeout`] says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Set on an answer that stopped at the row limit.
pub const TRUNCATED: &str = "x-witness-truncated";

const ANALYSTS: &[Role] = &[Role::Supervisor, Role::Compliance, Role::Admin];

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports", get(list))
        .route("/api/reports/sql", post(sql))
        .route("/api/reports/{name}", get(standard))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// json (default), csv or arrow.
    format: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct Options {
    format: Option<String>,
    limit: Option<String>,
}

fn format(text: Option<&str>) -> Result<Format, ApiError> {
    match text.unwrap_or("json") {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        "arrow" => Ok(Format::Arrow),
        other => Err(ApiError::bad_request(refusal!(
            "report_format",
            "`format` must be json, csv or arrow, got {got}",
            got = format!("{other:?}")
        ))),
    }
}

fn limit(n: Option<usize>) -> Result<usize, ApiError> {
    match n {
        None => Ok(DEFAULT_ROWS),
        Some(n) if (1..=MAX_ROWS).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(refusal!(
            "row_limit",
            "`limit` must be from 1 to {max}, got {got}",
            max = MAX_ROWS,
            got = n
        ))),
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NoExport(dir) => {
                tracing::warn!(dir = %dir.display(), "a report was asked for before any export");
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    refusal!("nothing_exported", "nothing has been exported for analysis yet"),
                )
            }
            // What DataFusion and the limits say is for the analyst who
            // wrote the SQL: given as it is, after a sentence of our own.
            ReportError::Query(e) => {
                ApiError::bad_request(refusal!("query_failed", "the query failed: {detail}", detail = e))
            }
            ReportError::Timeout(t) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                refusal!(
                    "report_timeout",
                    "the query ran longer than {seconds} s and was stopped",
                    seconds = t.as_secs()
                ),
            ),
            ReportError::Limit(why) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                refusal!("report_limit", "the query is past what a report may do: {detail}", detail = why),
            ),
            ReportError::Busy => ApiError::too_many(
                refusal!("reports_busy", "every report worker is busy; try again in a few seconds"),
                5,
            ),
            e @ ReportError::Worker(_) => {
                tracing::error!(error = %e, "running a report");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    refusal!("report_failed", "the report could not be run"),
                )
            }
            ReportError::UnknownReport(name) => {
                ApiError::not_found(refusal!("no_report", "no such report {name}", name = format!("{name:?}")))
            }
            e @ ReportError::Write(_) => {
                tracing::error!(error = %e, "writing a report");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    refusal!("answer_unwritable", "the answer could not be written"),
                )
            }
        }
    }
}

/// Runs `sql` over the caller's tenant's tables.
async fn query(state: &AppState, caller: &Claims, sql: &str, limit: usize) -> Result<Answer, ApiError> {
    caller.require(ANALYSTS)?;
    Ok(state.reports.sql(&state.export_dir, Some(&caller.t), sql, limit, state.report_timeout).await?)
}

fn respond(answer: &Answer, format: Format) -> Result<Response, ApiError> {
    let mut body = Vec::new();
    reports::write(answer, format, &mut body)?;
    let kind = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow | Format::Table => "application/vnd.apache.arrow.stream",
    };
    let truncated = if answer.truncated { "true" } else { "false" };
    Ok(([(header::CONTENT_TYPE, kind), (header::HeaderName::from_static(TRUNCATED), truncated)], body).into_response())
}

/// The standard reports' names and what each shows.
async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(ANALYSTS)?;
    let zone = tenant_zone(&state, &caller).await?;
    let reports =
        STANDARD.iter().map(|r| serde_json::json!({ "name": r.name, "about": r.about, "sql": r.sql_in(zone) }));
    Ok(Json(reports.collect()))
}

/// The caller's tenant's time zone, minutes east of UTC: what the standard
/// reports tell times in.
async fn tenant_zone(state: &AppState, caller: &Claims) -> Result<i32, ApiError> {
    Ok(witness_app::tenant::directory(&state.store, &caller.t).await?.utc_offset_minutes())
}

/// One read-only query.
async fn sql(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<SqlRequest>,
) -> Result<Response, ApiError> {
    let (format, limit) = (format(req.format.as_deref())?, limit(req.limit)?);
    let answer = query(&state, &caller, &req.sql, limit).await?;
    respond(&answer, format)
}

/// A standard report by name.
async fn standard(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    options: Result<Query<Options>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(options) = options.map_err(|e| ApiError::malformed(e.body_text()))?;
    let rows = match options.limit.as_deref() {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ApiError::bad_request(refusal!(
                "limit_not_number",
                "`limit`: not a number: {got}",
                got = format!("{text:?}")
            ))
        })?),
    };
    let (format, limit) = (format(options.format.as_deref())?, limit(rows)?);
    let Some(report) = STANDARD.iter().find(|r| r.name == name) else {
        caller.require(ANALYSTS)?;
        return Err(ApiError::not_found(refusal!("no_report", "no such report {name}", name = format!("{name:?}"))));
    };
    let sql = report.sql_in(tenant_zone(&state, &caller).await?);
    let answer = query(&state, &caller, &sql, limit).await?;
    respond(&answer, format)
}
