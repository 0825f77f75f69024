//! Errors as the caller sees them: a status and `{"error": "...", "code":
//! "..."}`: `code` is stable, for programs; `error` is for people, in the
//! language the request asks for when the error is one of the catalog's
//! (`error.CODE` in `api/i18n/`, [`ApiError::coded`]; [`localize`] puts it
//! in the request's language), else in English. Internal details (SQL,
//! paths, stack) go to the log, never to the caller.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use witness_engine::domain::DomainError;
use witness_engine::executor::ExecuteError;
use witness_engine::StoreError;

use crate::i18n::{Asked, Lang};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Stable: what a program matches on. A catalog error's own
    /// ([`ApiError::coded`]), else its status's ([`status_code`]).
    code: &'static str,
    /// A catalog error's values, to write its text in another language.
    values: Vec<(&'static str, String)>,
    /// Values that are catalog keys themselves (a state, a kind of thing):
    /// written in the error's language too.
    keyed: Vec<(&'static str, &'static str)>,
    catalog: bool,
    /// Seconds after which trying again may succeed (`Retry-After`).
    retry_after: Option<u64>,
}

/// What a catalog error carries to [`localize`] in its response.
#[derive(Debug, Clone)]
struct Localizable {
    code: &'static str,
    values: Vec<(&'static str, String)>,
    keyed: Vec<(&'static str, &'static str)>,
}

/// The text of catalog error `code` in `lang`.
fn catalog_text(
    lang: Lang,
    code: &str,
    values: &[(&'static str, String)],
    keyed: &[(&'static str, &'static str)],
) -> String {
    let mut all = pairs(values);
    all.extend(keyed.iter().map(|(name, key)| (*name, lang.text(key))));
    lang.format(&format!("error.{code}"), &all)
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: status_code(status),
            values: vec![],
            keyed: vec![],
            catalog: false,
            retry_after: None,
        }
    }

    /// An error of the catalog: `error.CODE` there, each `{name}` one of
    /// `values`; English here, the request's language in the response.
    pub fn coded(status: StatusCode, code: &'static str, values: &[(&'static str, &dyn std::fmt::Display)]) -> Self {
        Self::coded_keyed(status, code, values, &[])
    }

    /// [`ApiError::coded`] with values that are catalog keys (`("state",
    /// "common.status_closed")`), each written in the error's language.
    pub fn coded_keyed(
        status: StatusCode,
        code: &'static str,
        values: &[(&'static str, &dyn std::fmt::Display)],
        keyed: &[(&'static str, &'static str)],
    ) -> Self {
        let values: Vec<(&'static str, String)> = values.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let message = catalog_text(Lang::En, code, &values, keyed);
        Self { status, message, code, values, keyed: keyed.to_vec(), catalog: true, retry_after: None }
    }

    /// 429: a limit was reached; the caller may try again after `seconds`.
    pub fn too_many(message: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
    }

    /// [`ApiError::too_many`] of the catalog.
    pub fn too_many_coded(code: &'static str, values: &[(&'static str, &dyn std::fmt::Display)], seconds: u64) -> Self {
        Self { retry_after: Some(seconds.max(1)), ..Self::coded(StatusCode::TOO_MANY_REQUESTS, code, values) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Also what another tenant's id gets: its existence is not confirmed.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Decodes a stream read from the store; a stored event that no longer
/// decodes is a server fault, logged, and `what` (e.g. "the session")
/// cannot be read.
pub(crate) fn decode_stream(
    events: &[witness_schemas::RecordedEvent],
    what: &str,
) -> Result<Vec<witness_schemas::Event>, ApiError> {
    events.iter().map(|e| e.decode()).collect::<Result<_, _>>().map_err(|e| {
        tracing::error!(error = %e, "{what}: stored event cannot be decoded");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} cannot be read"))
    })
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // Lost every retry to concurrent writers: the caller may try again.
            StoreError::Concurrency { .. } => Self::coded(StatusCode::CONFLICT, "changed_meanwhile", &[]),
            e @ (StoreError::InvalidEvent { .. } | StoreError::InvalidAppend(_)) => Self::bad_request(e.to_string()),
            // The API checks tenants before it writes; reaching this is a bug,
            // and the caller learns nothing about the other tenant.
            StoreError::WrongTenant { .. } => {
                tracing::error!("append to another tenant's stream refused by the store");
                Self::not_found("stream")
            }
            e => {
                tracing::error!(error = %e, "store error");
                Self::coded(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", &[])
            }
        }
    }
}

/// The catalog key of an aggregate's state as [`DomainError::NotAllowed`]
/// names it, if the catalog has one.
fn state_key(aggregate: &str, state: &str) -> Option<&'static str> {
    Some(match (aggregate, state) {
        ("session", "not started") => "common.status_not_started",
        ("session", "with the bot") => "common.status_with_bot",
        ("session", "queued") => "common.status_queued",
        ("session", "offered to an agent") => "common.status_offered",
        ("session", "assigned") => "common.status_assigned",
        ("session", "in a call") => "common.status_in_call",
        ("session", "in wrap-up") => "common.status_wrap_up",
        ("session", "closed") => "common.status_closed",
        ("ticket", "not created") => "common.ticket_not_created",
        ("ticket", "open") => "common.ticket_open",
        ("ticket", "inprogress") => "common.ticket_in_progress",
        ("ticket", "resolved") => "common.ticket_resolved",
        ("ticket", "closed") => "common.ticket_closed",
        _ => return None,
    })
}

/// The rules' refusals a person meets while working (a session that moved
/// on, an offer taken by someone else) are the catalog's, in the request's
/// language; the others (`Invalid`: a field's rule) are English for now.
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match &e {
            DomainError::NotAllowed { aggregate, command, state } => {
                let noun = match *aggregate {
                    "session" => Some("common.noun_session"),
                    "ticket" => Some("common.noun_ticket"),
                    _ => None,
                };
                if let (Some(noun), Some(state)) = (noun, state_key(aggregate, state)) {
                    let values: [(&'static str, &dyn std::fmt::Display); 1] = [("command", command)];
                    return Self::coded_keyed(
                        StatusCode::CONFLICT,
                        "not_allowed",
                        &values,
                        &[("what", noun), ("state", state)],
                    );
                }
                Self::new(StatusCode::CONFLICT, e.to_string())
            }
            DomainError::NotTheAssignedAgent { .. } => Self::coded(StatusCode::FORBIDDEN, "not_your_session", &[]),
            DomainError::UnknownOffer { .. } => Self::coded(StatusCode::CONFLICT, "offer_gone", &[]),
            DomainError::OfferExpired { .. } => Self::coded(StatusCode::CONFLICT, "offer_expired", &[]),
            DomainError::Invalid(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

impl From<ExecuteError> for ApiError {
    fn from(e: ExecuteError) -> Self {
        match e {
            ExecuteError::Domain(e) => e.into(),
            ExecuteError::Store(e) => e.into(),
            ExecuteError::Decode(e) => {
                tracing::error!(error = %e, "stored event cannot be decoded");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "a stored event cannot be read")
            }
        }
    }
}

impl From<witness_projections::ProjectionError> for ApiError {
    fn from(e: witness_projections::ProjectionError) -> Self {
        if let witness_projections::ProjectionError::Invalid(why) = e {
            return Self::bad_request(why);
        }
        tracing::error!(error = %e, "read model error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the read models are unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if self.catalog {
            response.extensions_mut().insert(Localizable { code: self.code, values: self.values, keyed: self.keyed });
        }
        response
    }
}

/// The machine code of an error that has none of its own: its status's.
pub fn status_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::INSUFFICIENT_STORAGE => "storage_full",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "server_error",
        _ => "error",
    }
}

fn pairs<'a>(values: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    values.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A middleware: a catalog error's text in the language the request asks
/// for (its `Accept-Language`; the pages send theirs), not English.
pub(crate) async fn localize(Asked(lang): Asked, request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<Localizable>().cloned() else { return response };
    if lang == Lang::En {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let text = catalog_text(lang, error.code, &error.values, &error.keyed);
    let body = serde_json::json!({ "error": text, "code": error.code }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A JSON request body whose rejection is a JSON error naming the problem
/// (axum's own is plain text): malformed JSON, a wrong or missing field,
/// or no `Content-Type: application/json`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::new(e.status(), e.body_text())),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}
