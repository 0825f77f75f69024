//! PostgreSQL under concurrent writers: while 8 writers append 10,000 events
//! to distinct streams in transactions of varying size, two subscribers read
//! from position 0. Each must see every event exactly once, both in the same
//! order, and that order must be the one `read_all` gives afterwards.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use witness_engine::ExpectedVersion;
use witness_schemas::*;

const WRITERS: usize = 8;
const PER_WRITER: usize = 1_250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_see_every_event_once_in_one_order_under_concurrent_writers() {
    let t = postgres().await;
    let store = t.store.clone();
    let total = WRITERS * PER_WRITER;

    let subscriber = |store: witness_engine::EventStore| {
        tokio::spawn(async move {
            let mut feed = store.subscribe(Cursor::START);
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                let e = tokio::time::timeout(Duration::from_secs(60), feed.next()).await.expect("stalled").unwrap();
                seen.push(e);
            }
            seen
        })
    };
    let early = subscriber(store.clone());

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let session = SessionId::new();
                let stream = StreamId::session(session);
                let mut version = 0;
                let mut written = 0;
                let mut batch_size = 1 + w % 5;
                while written < PER_WRITER {
                    let n = batch_size.min(PER_WRITER - written);
                    let events: Vec<_> = (0..n)
                        .map(|i| if version + (i as u64) == 0 { started(session) } else { message("concurrent") })
                        .collect();
                    let r = store.append(&tenant(), &stream, ExpectedVersion::Exact(version), events).await.unwrap();
                    version = r.last_version();
                    written += n;
                    batch_size = batch_size % 7 + 1;
                }
            })
        })
        .collect();
    // A second subscriber joins half-way through the writing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = subscriber(store.clone());
    for w in writers {
        w.await.unwrap();
    }
    let early = early.await.unwrap();
    let late = late.await.unwrap();

    let ids: HashSet<_> = early.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), total, "an event was delivered twice");
    assert_eq!(store.count().await.unwrap(), total as u64);
    assert_eq!(early, late, "two subscribers saw different orders");

    let mut replay = Vec::new();
    let mut cursor = Cursor::START;
    loop {
        let page = store.read_all(cursor, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        replay.extend(page);
    }
    assert_eq!(replay, early, "read_all afterwards gives another order");

    // Within each stream the order is the version order, with no gap.
    let mut versions = std::collections::HashMap::new();
    for e in &early {
        let v = versions.entry(e.stream_id.clone()).or_insert(0u64);
        assert_eq!(e.stream_version, *v + 1, "{} out of order", e.stream_id);
        *v = e.stream_version;
    }
    assert!(early.windows(2).all(|w| w[0].cursor() < w[1].cursor()));
}
