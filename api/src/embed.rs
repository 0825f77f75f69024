//! Other web sites embedding the customer page (issue 30): the tenant's
//! admin lists the sites allowed (`PUT /api/admin/embed-origins`, an
//! `EmbedOriginsSet` event); `/widget.js` on such a site adds a 联系客服
//! button that opens the customer page in a frame.
//!
//! What the list allows, and everything else is refused:
//!
//! - the customer page (`/?tenant=T`) may be framed by T's sites
//!   (`Content-Security-Policy: frame-ancestors`), by no one else;
//! - a browser on one of T's sites may call the API (CORS) when the URL
//!   names the tenant (`?tenant=T`, so that a preflight, which carries no
//!   token or body, can be judged too) and its token is one of T's. Any
//!   other request that carries another site's `Origin` is refused (403,
//!   `origin_not_allowed`) before it reaches a route, so it writes nothing.
//!
//! Apps and mini-programs that are not browsers send no `Origin` and are
//! judged by their token alone.

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_schemas::TenantId;

use crate::i18n::Lang;
use crate::{ApiError, AppState};

const WIDGET_JS: &str = include_str!("../web/widget.js");

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/widget", get(widget)).route(
        "/widget.js",
        get(|| async {
            let headers = [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=300"),
                // Loaded by other sites' pages, also those that isolate
                // themselves (`Cross-Origin-Embedder-Policy`).
                (header::HeaderName::from_static("cross-origin-resource-policy"), "cross-origin"),
            ];
            (headers, WIDGET_JS)
        }),
    )
}

/// The web sites a response allows to frame it (the customer page's
/// tenant's): [`crate::security_headers`] writes them into its CSP.
#[derive(Debug, Clone)]
pub(crate) struct FrameAncestors(pub Vec<String>);

/// Put on a request from another site that its tenant lists: the tenant
/// the URL names, which the caller's token must be of.
#[derive(Debug, Clone)]
pub(crate) struct CrossOrigin(pub TenantId);

/// The request's `Origin` when it names another site than the `Host` it
/// was sent to, lower case; `None` for same-site requests and for clients
/// that send no `Origin` (apps, curl).
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null").to_ascii_lowercase();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same = origin.split_once("://").zip(host).is_some_and(|((_, o), h)| o.eq_ignore_ascii_case(h));
    (!same).then_some(origin)
}

/// The layer that answers or refuses requests from other web sites (see
/// the module's documentation).
pub(crate) async fn cross_origin(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(origin) = foreign_origin(request.headers()) else { return next.run(request).await };
    let tenant: Option<TenantId> = crate::query_value(request.uri().query(), "tenant").and_then(|t| t.parse().ok());
    let listed = match &tenant {
        Some(tenant) => witness_app::tenant::directory(&state.store, tenant)
            .await
            .is_ok_and(|known| known.embed_origins.contains(&origin)),
        None => false,
    };
    let (Some(tenant), true) = (tenant, listed) else {
        let origin: &dyn std::fmt::Display = &origin;
        return ApiError::new(
            StatusCode::FORBIDDEN,
            refusal!(
                "origin_not_allowed",
                "the web site {origin} may not use this service: the tenant's admin lists the sites that may embed it",
                origin = origin
            ),
        )
        .into_response();
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    request.extensions_mut().insert(CrossOrigin(tenant));
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, accept-language"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Ok(origin) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Refuses (403) a caller of another tenant than the one a request from
/// another site named (its site is listed by that tenant, not by theirs).
pub(crate) fn same_tenant(cross: Option<&CrossOrigin>, tenant: &TenantId) -> Result<(), ApiError> {
    match cross {
        Some(CrossOrigin(named)) if named != tenant => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            refusal!("site_other_tenant", "this web site may only act for the tenant that lists it (`?tenant=`)"),
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct WidgetQuery {
    tenant: String,
    lang: Option<String>,
}

/// What the widget shows, in the page's language.
#[derive(Serialize)]
struct Widget {
    lang: &'static str,
    /// The button: 联系客服.
    open: &'static str,
    close: &'static str,
    /// The frame's title, for screen readers.
    title: &'static str,
    /// The badge's label; `{n}` is the count.
    unread: &'static str,
}

/// `GET /api/widget?tenant=T&lang=L` (anyone; from another site only one
/// that T lists): the widget's texts, in `lang` (the host page's), else T's
/// language. A site that may not embed T gets 403 and shows no button.
async fn widget(
    State(state): State<AppState>,
    query: Result<Query<WidgetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Widget>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let tenant: TenantId =
        q.tenant.parse().map_err(|_| ApiError::not_found(refusal!("no_tenant", "no such tenant")))?;
    let known = witness_app::tenant::directory(&state.store, &tenant).await?;
    if !known.exists() {
        return Err(ApiError::not_found(refusal!("no_tenant", "no such tenant")));
    }
    let lang = q.lang.as_deref().and_then(Lang::from_tag).unwrap_or_else(|| Lang::of_tenant(&known));
    Ok(Json(Widget {
        lang: lang.tag(),
        open: lang.text("widget.open"),
        close: lang.text("widget.close"),
        title: lang.text("widget.title"),
        unread: lang.text("widget.unread"),
    }))
}
