//! Errors as the caller sees them: a status and `{"error": "...", "code":
//! "..."}`. `code` is stable, for programs; `error` is for people, in the
//! language the request asks for. Every error is a [`Refusal`], made with
//! `refusal!("code", "English text with {name}", name = …)` where it is
//! refused: English is written there, and the other languages' catalogs
//! translate `error.CODE` (`api/i18n/`; a test checks that each code has
//! its translation, with the same names). [`localize`] puts the text in the
//! request's language. Internal details (SQL, paths, stack) go to the log,
//! never to the caller.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use witness_domain::{DomainError, Refusal};
use witness_engine::executor::ExecuteError;
use witness_engine::StoreError;

use crate::i18n::{Asked, Lang};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    refusal: Refusal,
    /// Values that are catalog keys themselves (a state, a kind of thing):
    /// written in the error's language too.
    keyed: Vec<(&'static str, &'static str)>,
    /// Seconds after which trying again may succeed (`Retry-After`).
    retry_after: Option<u64>,
}

/// What an error carries to [`localize`] in its response.
#[derive(Debug, Clone)]
struct Localizable {
    refusal: Refusal,
    keyed: Vec<(&'static str, &'static str)>,
}

impl Localizable {
    /// The text in `lang`: the catalog's translation of its code, else
    /// (English, or a code the catalog lacks) the English it was made with.
    fn text(&self, lang: Lang) -> String {
        let (template, names) = match lang.translation(&format!("error.{}", self.refusal.code)) {
            Some(template) => (template, lang),
            None => (self.refusal.template, Lang::En),
        };
        // Values that are catalog keys first, in this language (the
        // refusal's own values for them are their English).
        let template = self
            .keyed
            .iter()
            .fold(template.to_owned(), |text, (name, key)| text.replace(&format!("{{{name}}}"), names.text(key)));
        self.refusal.fill(&template)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, refusal: Refusal) -> Self {
        Self { status, refusal, keyed: vec![], retry_after: None }
    }

    /// 429: a limit was reached; the caller may try again after `seconds`.
    pub fn too_many(refusal: Refusal, seconds: u64) -> Self {
        Self { retry_after: Some(seconds.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, refusal) }
    }

    pub fn bad_request(refusal: Refusal) -> Self {
        Self::new(StatusCode::BAD_REQUEST, refusal)
    }

    /// Also what another tenant's id gets: its existence is not confirmed.
    pub fn not_found(refusal: Refusal) -> Self {
        Self::new(StatusCode::NOT_FOUND, refusal)
    }

    /// 400 for a query string or body that does not parse, with what the
    /// parser said (technical, English: a program's mistake, not a person's).
    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        witness_app::Error::malformed(detail).into()
    }

    /// A body that could not be read: too large (413), or else `status`
    /// with what the reader said.
    pub fn unread_body(status: StatusCode, detail: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(status, refusal!("body_too_large", "the request body is too large"))
            }
            _ => Self { status, ..Self::malformed(detail) },
        }
    }

    /// 500: a stored event no longer decodes (a server fault, logged by
    /// the caller).
    pub fn event_unreadable() -> Self {
        witness_app::Error::event_unreadable().into()
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.refusal.code
    }

    /// The English text.
    pub fn message(&self) -> String {
        self.text_in(Lang::En)
    }

    /// The text in `lang` (what [`localize`] puts in a response).
    pub fn text_in(&self, lang: Lang) -> String {
        self.localizable().text(lang)
    }

    fn localizable(&self) -> Localizable {
        Localizable { refusal: self.refusal.clone(), keyed: self.keyed.clone() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

/// A use case's refusal, with the status that says its kind.
impl From<witness_app::Error> for ApiError {
    fn from(e: witness_app::Error) -> Self {
        use witness_app::Kind;
        let status = match e.kind {
            Kind::Malformed => StatusCode::BAD_REQUEST,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::TooMany => StatusCode::TOO_MANY_REQUESTS,
            Kind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, refusal: e.refusal, keyed: e.keyed, retry_after: e.retry_after }
    }
}

/// The store's, the deciders' and the read models' errors, as the
/// application layer words them (`witness_app::error`).
macro_rules! through_the_application {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                witness_app::Error::from(e).into()
            }
        }
    )*};
}
through_the_application!(StoreError, DomainError, ExecuteError, witness_projections::ProjectionError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let localizable = self.localizable();
        let body = serde_json::json!({ "error": localizable.text(Lang::En), "code": self.refusal.code });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response.extensions_mut().insert(localizable);
        response
    }
}

/// A middleware: an error's text in the language the request asks for (its
/// `Accept-Language`; the pages send theirs), not English.
pub(crate) async fn localize(Asked(lang): Asked, request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<Localizable>().cloned() else { return response };
    if lang == Lang::En {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = serde_json::json!({ "error": error.text(lang), "code": error.refusal.code }).to_string();
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
                refusal!("not_json", "send the body as JSON with `Content-Type: application/json`"),
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::unread_body(e.status(), e.body_text())),
            Err(JsonRejection::JsonDataError(e)) => Err(field_problem(&e).map_or_else(
                || ApiError::malformed(e.body_text()),
                |refusal| ApiError::new(StatusCode::BAD_REQUEST, refusal),
            )),
            Err(e) => Err(ApiError::malformed(e.body_text())),
        }
    }
}

/// A body's field that failed its bounds ([`crate::fields`]), found in the
/// chain of serde's error, which names the field's path.
fn field_problem(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return crate::fields::from_serde(&e.path().to_string(), &e.inner().to_string());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::i18n::tests::names;

    /// Every `refusal!("code", "English")` in the domain's, the engine's, the application layer's and the API's
    /// sources, read from the text of the sources: (code, English).
    fn refusals_in_sources() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
        let mut files = vec![];
        let mut dirs =
            vec![root.join("domain/src"), root.join("engine/src"), root.join("app/src"), root.join("api/src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut found = vec![];
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for (i, _) in source.match_indices("refusal!(") {
                let line = &source[source[..i].rfind('\n').map_or(0, |n| n + 1)..i];
                if line.trim_start().starts_with("//") || line.contains("macro_rules") {
                    continue; // documentation, not a refusal
                }
                let mut rest = source[i + "refusal!(".len()..].trim_start();
                let mut literal = || -> Option<String> {
                    let body = rest.strip_prefix('"')?;
                    let (mut text, mut chars) = (String::new(), body.char_indices());
                    while let Some((at, c)) = chars.next() {
                        match c {
                            '"' => {
                                rest = body[at + 1..].trim_start().strip_prefix(',').unwrap_or("").trim_start();
                                return Some(text);
                            }
                            '\\' => match chars.next()?.1 {
                                '\n' => {
                                    // A continued line: its leading white space is not in the text.
                                    while chars.clone().next().is_some_and(|(_, c)| c.is_whitespace()) {
                                        chars.next();
                                    }
                                }
                                'n' => text.push('\n'),
                                other => text.push(other),
                            },
                            c => text.push(c),
                        }
                    }
                    None
                };
                let (Some(code), Some(english)) = (literal(), literal()) else { continue };
                found.push((code, english));
            }
        }
        found
    }

    /// Each refusal's code is translated in every catalog but English's,
    /// with the same `{name}`s as its English; each code means one text;
    /// no translation is left for a code no longer made.
    #[test]
    fn every_refusal_is_translated_with_the_same_names() {
        let found = refusals_in_sources();
        assert!(found.len() > 150, "the scan found {} refusals", found.len());
        let mut by_code: BTreeMap<&str, &str> = BTreeMap::new();
        for (code, english) in &found {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "code {code:?}");
            if let Some(other) = by_code.insert(code, english) {
                assert_eq!(names(other), names(english), "{code} names different values in different places");
            }
        }
        let mut untranslated = vec![];
        for (code, english) in &by_code {
            for lang in Lang::ALL.into_iter().filter(|l| *l != Lang::En) {
                match lang.translation(&format!("error.{code}")) {
                    None => untranslated.push(format!("{} error.{code}: {english}", lang.tag())),
                    Some(text) => assert_eq!(names(text), names(english), "{} error.{code}", lang.tag()),
                }
            }
        }
        assert!(untranslated.is_empty(), "{} untranslated:\n{}", untranslated.len(), untranslated.join("\n"));
        for lang in Lang::ALL {
            for key in lang.keys().filter_map(|k| k.strip_prefix("error.")) {
                assert!(lang != Lang::En, "English errors are written where they are made, not in en.json: {key}");
                assert!(by_code.contains_key(key), "{} error.{key}: no refusal has this code", lang.tag());
            }
        }
    }

    #[test]
    fn an_error_reads_in_the_requests_language_with_its_code() {
        let error = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            refusal!("file_too_large", "a file may be at most {mib} MiB", mib = 20),
        );
        let l = error.localizable();
        assert_eq!(l.text(Lang::En), "a file may be at most 20 MiB");
        let zh = l.text(Lang::ZhCn);
        assert!(zh.contains("20") && !zh.contains("file"), "{zh}");
        // A state named in the error's language too.
        let refused: ApiError =
            DomainError::NotAllowed { aggregate: "session", command: "AcceptOffer", state: "closed".into() }.into();
        assert_eq!(refused.code(), "not_allowed");
        assert_eq!(refused.message(), "AcceptOffer is not allowed while the session is closed");
        let zh = refused.localizable().text(Lang::ZhCn);
        assert!(zh.contains(Lang::ZhCn.text("common.status_closed")) && !zh.contains("closed"), "{zh}");
    }
}
