//! The thin IO shell around the deciders: load a stream, fold it, decide,
//! append with the version that was read. When another writer got in
//! between (`Concurrency`), reload and decide again: the decider then sees
//! the new history and may refuse.

use chrono::{DateTime, Utc};
use witness_schemas::{Actor, Event, NewEvent, StreamId, TenantId};

use crate::domain::{Decider, DomainError};
use crate::{AppendResult, EventStore, ExpectedVersion, StoreError};

/// How often a command is tried before a lost race is reported. Races are
/// real: a browser fetching ten recording segments at once appends ten
/// `RecordingAccessed` events to one stream.
const ATTEMPTS: usize = 12;

/// A random pause before trying again, growing with the attempt (up to a
/// few milliseconds), so racing writers stop colliding in lockstep.
fn backoff(attempt: usize) -> std::time::Duration {
    use rand_core::RngCore;
    let spread = 1_000 * attempt as u64; // microseconds
    std::time::Duration::from_micros(rand_core::OsRng.next_u64() % spread.max(1))
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event cannot be decoded: {0}")]
    Decode(#[from] witness_schemas::SchemaError),
}

/// Runs `command` against `stream` with decider `D`, appending what it
/// decides as `actor`, occurring at `at`. Returns what was appended (no
/// events: an empty result, nothing written).
pub async fn execute<D: Decider>(
    store: &EventStore,
    tenant: &TenantId,
    stream: &StreamId,
    actor: &Actor,
    at: DateTime<Utc>,
    command: D::Command,
) -> Result<AppendResult, ExecuteError>
where
    D::Command: Clone,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let history = store.read_stream(stream, 1).await?;
        let version = history.last().map_or(0, |e| e.stream_version);
        let events: Vec<Event> = history.iter().map(|e| e.decode()).collect::<Result<_, _>>()?;
        let decided = D::decide(&D::fold(&events), command.clone())?;
        if decided.is_empty() {
            return Ok(AppendResult { events: vec![], deduplicated: false });
        }
        let new: Vec<NewEvent> = decided.into_iter().map(|e| NewEvent::new(e, actor.clone()).at(at)).collect();
        match store.append(tenant, stream, ExpectedVersion::Exact(version), new).await {
            Err(StoreError::Concurrency { .. }) if attempt < ATTEMPTS => tokio::time::sleep(backoff(attempt)).await,
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use witness_schemas::*;

    use super::*;
    use crate::domain::session::{Session, SessionCommand};

    #[tokio::test]
    async fn of_two_racing_commands_the_loser_is_decided_again_on_the_new_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
        let tenant: TenantId = "acme".parse().unwrap();
        let session = SessionId::new();
        let stream = StreamId::session(session);
        let (agent, offer) = (UserId::new(), OfferId::new());
        let now = now();
        for command in [
            SessionCommand::Start {
                session_id: session,
                channel: Channel::Web,
                business_type: "cards".into(),
                customer_ref: "v".into(),
                locale: None,
            },
            SessionCommand::RequestHuman {
                group: "cards".into(),
                reason: "-".into(),
                context_summary: "-".into(),
                priority: 0,
            },
            SessionCommand::Offer { offer_id: offer, agent_id: agent, expires_at: now + Duration::seconds(20) },
        ] {
            execute::<Session>(&store, &tenant, &stream, &Actor::system(), now, command).await.unwrap();
        }
        let actor = Actor::new(ActorKind::Agent, agent.to_string());
        let accept = execute::<Session>(
            &store,
            &tenant,
            &stream,
            &actor,
            now,
            SessionCommand::AcceptOffer { offer_id: offer, agent_id: agent, at: now + Duration::seconds(1) },
        );
        let decline = execute::<Session>(
            &store,
            &tenant,
            &stream,
            &actor,
            now,
            SessionCommand::DeclineOffer { offer_id: offer, agent_id: agent, reason: None },
        );
        let (accept, decline) = tokio::join!(accept, decline);
        // Exactly one wins; the other is refused by the decider, not by the store.
        assert!(accept.is_ok() != decline.is_ok(), "{accept:?} {decline:?}");
        let loser = accept.err().or(decline.err()).unwrap();
        assert!(matches!(loser, ExecuteError::Domain(_)), "{loser:?}");
        let types: Vec<String> =
            store.read_stream(&stream, 1).await.unwrap().into_iter().map(|e| e.event_type).collect();
        assert!(types.len() == 5 || types.len() == 6, "{types:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_writers_racing_on_one_stream_all_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
        let tenant: TenantId = "acme".parse().unwrap();
        let session = SessionId::new();
        let stream = StreamId::session(session);
        let start = SessionCommand::Start {
            session_id: session,
            channel: Channel::Web,
            business_type: "cards".into(),
            customer_ref: "v".into(),
            locale: None,
        };
        execute::<Session>(&store, &tenant, &stream, &Actor::system(), now(), start).await.unwrap();
        // Sixteen messages at once on one stream (as sixteen range requests
        // of one recording append sixteen accesses): none may be lost to
        // the race.
        let writers = (0..16).map(|i| {
            let (store, tenant, stream) = (store.clone(), tenant.clone(), stream.clone());
            tokio::spawn(async move {
                let says = SessionCommand::CustomerSays {
                    message_id: MessageId::new(),
                    content: MessageContent::Text { text: format!("message {i}") },
                };
                execute::<Session>(&store, &tenant, &stream, &Actor::system(), now(), says).await
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap().expect("every racing writer succeeds");
        }
        assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 17);
    }
}
