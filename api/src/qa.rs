//! QA over HTTP: a tenant's evaluation form and automatic rules (admins),
//! a session's rule findings and evaluations (supervisors, compliance,
//! admins), and scoring a session against the form (supervisors): a
//! `QaEvaluated` event on the session, which the `qa` read model and the
//! `qa-scores` report count.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use witness_domain::qa::QaFinding;
use witness_domain::session::{Session, SessionCommand};
use witness_domain::tenant::TenantCommand;
use witness_engine::executor::execute;
use witness_schemas::*;

use crate::auth::Caller;
use crate::error::Body;
use crate::{ApiError, AppState};
use witness_app::tenant::on_tenant_stream;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/qa-form", get(form).put(set_form))
        .route("/api/admin/qa-rules", get(rules).put(set_rules))
        .route("/api/sessions/{id}/qa", get(show).post(evaluate))
        .route("/api/qa/queue", get(queue))
}

/// `GET /api/qa/queue` (supervisors): ended sessions an agent handled that
/// nobody has evaluated yet, most recently ended first (at most 200).
async fn queue(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<witness_projections::SessionRow>>, ApiError> {
    caller.require(&[Role::Supervisor])?;
    Ok(Json(state.projector.qa_queue(&caller.t, 200).await?))
}

#[derive(serde::Serialize)]
struct SessionQa {
    form: Vec<QaCriterion>,
    rules: Option<QaRulesSet>,
    findings: Vec<QaFinding>,
    evaluations: Vec<QaEvaluated>,
}

/// `GET /api/sessions/{id}/qa`: the tenant's form and rules, the rules'
/// findings over the session, and its evaluations so far.
async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionQa>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance, Role::Admin])?;
    let events = witness_app::session::load(&state.store, &caller, &id).await?.events(&state.store).await?;
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let findings = tenant.qa_rules.as_ref().map(|r| witness_domain::qa::check(r, &events)).unwrap_or_default();
    let evaluations = events
        .iter()
        .filter(|e| e.event_type == "QaEvaluated")
        .filter_map(|e| match e.decode() {
            Ok(Event::QaEvaluated(q)) => Some(q),
            _ => None,
        })
        .collect();
    Ok(Json(SessionQa { form: tenant.qa_form, rules: tenant.qa_rules, findings, evaluations }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Score {
    criterion: crate::fields::Line<{ crate::fields::LINE }>,
    score: f64,
    comment: Option<crate::fields::Note<{ crate::fields::NOTE }>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Evaluation {
    scores: Vec<Score>,
}

/// `POST /api/sessions/{id}/qa` `{scores: [{criterion, score, comment?}]}`
/// (supervisors): every criterion of the tenant's form scored once, from 0
/// to its maximum; the session must have ended.
async fn evaluate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<Evaluation>,
) -> Result<Json<QaEvaluated>, ApiError> {
    caller.require(&[Role::Supervisor])?;
    let session = witness_app::session::load(&state.store, &caller, &id).await?;
    let form = witness_app::tenant::directory(&state.store, &caller.t).await?.qa_form;
    if form.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            refusal!("no_qa_form", "the tenant has no QA form: an admin sets one first"),
        ));
    }
    let mut criteria = Vec::with_capacity(form.len());
    for c in &form {
        let mut given = body.scores.iter().filter(|s| *s.criterion == *c.name);
        let (Some(s), None) = (given.next(), given.next()) else {
            return Err(ApiError::bad_request(refusal!(
                "score_once",
                "score criterion {name} exactly once",
                name = format!("{:?}", c.name)
            )));
        };
        if !(s.score.is_finite() && (0.0..=c.max_score).contains(&s.score)) {
            return Err(ApiError::bad_request(refusal!(
                "score_range",
                "{name}: a score from 0 to {max}",
                name = format!("{:?}", c.name),
                max = c.max_score
            )));
        }
        criteria.push(QaCriterionScore {
            criterion: c.name.clone(),
            weight: c.weight,
            score: s.score,
            comment: s.comment.as_deref().filter(|c| !c.trim().is_empty()).map(str::to_owned),
        });
    }
    if let Some(extra) = body.scores.iter().find(|s| !form.iter().any(|c| *c.name == *s.criterion)) {
        return Err(ApiError::bad_request(refusal!(
            "not_a_criterion",
            "{name} is not a criterion of the form",
            name = format!("{:?}", extra.criterion)
        )));
    }
    let evaluation = QaEvaluated {
        evaluation_id: EvaluationId::new(),
        session_id: session.id,
        evaluator_id: caller.user_id()?,
        total_score: criteria.iter().map(|c| c.weight * c.score).sum(),
        max_score: form.iter().map(|c| c.weight * c.max_score).sum(),
        criteria,
    };
    let stream = StreamId::session(session.id);
    let command = SessionCommand::Evaluate { evaluation: evaluation.clone() };
    execute::<Session>(&state.store, &caller.t, &stream, &caller.actor(), Utc::now(), command).await?;
    Ok(Json(evaluation))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Form {
    criteria: Vec<QaCriterion>,
}

/// `GET /api/admin/qa-form`: the tenant's evaluation form (empty: none set).
async fn form(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Vec<QaCriterion>>, ApiError> {
    caller.require(&[Role::Admin, Role::Supervisor, Role::Compliance])?;
    Ok(Json(witness_app::tenant::directory(&state.store, &caller.t).await?.qa_form))
}

/// `GET /api/admin/qa-rules`: the tenant's automatic QA rules (null: none set).
async fn rules(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Option<QaRulesSet>>, ApiError> {
    caller.require(&[Role::Admin, Role::Supervisor, Role::Compliance])?;
    Ok(Json(witness_app::tenant::directory(&state.store, &caller.t).await?.qa_rules))
}

/// `PUT /api/admin/qa-form` `{criteria: [{name, weight, max_score}]}` (admins).
async fn set_form(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Form>,
) -> Result<Json<Vec<QaCriterion>>, ApiError> {
    caller.require(&[Role::Admin])?;
    on_tenant_stream(&state.store, &caller.t, &caller.actor(), TenantCommand::SetQaForm { criteria: body.criteria })
        .await?;
    Ok(Json(witness_app::tenant::directory(&state.store, &caller.t).await?.qa_form))
}

/// `PUT /api/admin/qa-rules` `{greeting_within_secs?, forbidden_words?, response_sla_secs?, silence_secs?}` (admins).
async fn set_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(rules): Body<QaRulesSet>,
) -> Result<Json<Option<QaRulesSet>>, ApiError> {
    caller.require(&[Role::Admin])?;
    on_tenant_stream(&state.store, &caller.t, &caller.actor(), TenantCommand::SetQaRules(rules)).await?;
    Ok(Json(witness_app::tenant::directory(&state.store, &caller.t).await?.qa_rules))
}
