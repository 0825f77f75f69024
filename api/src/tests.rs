use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use witness_engine::{EventStore, ExpectedVersion};
use witness_schemas::*;

use super::*;

async fn store_with(n: usize) -> (tempfile::TempDir, EventStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
    let tenant: TenantId = "acme".parse().unwrap();
    let events: Vec<_> =
        examples::one_of_each().into_iter().take(n).map(|e| NewEvent::new(e, Actor::system())).collect();
    if !events.is_empty() {
        store.append(&tenant, &StreamId::session(SessionId::new()), ExpectedVersion::NO_STREAM, events).await.unwrap();
    }
    (dir, store)
}

async fn get(store: &EventStore, uri: &str) -> (StatusCode, serde_json::Value) {
    let response =
        app(AppState { store: store.clone() }).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn healthz_reports_backend_and_event_count() {
    let (_dir, store) = store_with(3).await;
    let (status, body) = get(&store, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "sqlite");
    assert_eq!(body["events"], 3);
}

#[tokio::test]
async fn events_page_through_the_log_with_next() {
    let (_dir, store) = store_with(5).await;
    let (status, first) = get(&store, "/api/events?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let positions: Vec<_> =
        first["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [1, 2]);
    assert!(first["events"][0]["payload"].is_object());
    let next = first["next"].as_str().unwrap();
    let (_, second) = get(&store, &format!("/api/events?from={next}&limit=10")).await;
    let positions: Vec<_> =
        second["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [3, 4, 5]);
}

#[tokio::test]
async fn bad_queries_get_a_json_error_naming_the_parameter() {
    let (_dir, store) = store_with(1).await;
    for (uri, word) in [
        ("/api/events?limit=0", "limit"),
        ("/api/events?limit=abc", "limit"),
        ("/api/events?limit=100000", "limit"),
        ("/api/events?from=yesterday", "from"),
    ] {
        let (status, body) = get(&store, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body["error"].as_str().unwrap().contains(word), "{uri}: {body}");
    }
    let (status, body) = get(&store, "/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no such route");
}
