//! The thin IO shell around the deciders: load a stream, fold it, decide,
//! append with the version that was read. When another writer got in
//! between (`Concurrency`), reload and decide again: the decider then sees
//! the new history and may refuse.
//!
//! A stream's folded state is kept between commands ([`StateCache`], in the
//! store): a command reads only the events after the version it holds.
//! The log is append-only and versions have no gaps, so a kept state plus
//! the events after it is exactly the fold of the whole stream, whoever
//! wrote them (this process or another). Reading and decrypting a
//! session's whole history for every chat message was half the server's
//! CPU under load (BENCHMARKS.md, "Chat messages over HTTP").

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use witness_schemas::{Actor, NewEvent, RecordedEvent, StreamId, StreamKind, TenantId};

use crate::{AppendResult, EventStore, ExpectedVersion, StoreError};
use witness_domain::{Decider, DomainError};

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
pub async fn execute<D: Decider + 'static>(
    store: &EventStore,
    tenant: &TenantId,
    stream: &StreamId,
    actor: &Actor,
    at: DateTime<Utc>,
    command: D::Command,
) -> Result<AppendResult, ExecuteError>
where
    D::Command: Clone,
    D::State: Send,
{
    let states = store.states();
    let mut folded = states.take::<D>(stream).unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        folded = catch_up::<D>(store, stream, folded).await?;
        let decided = match D::decide(&folded.state, command.clone()) {
            Ok(decided) => decided,
            Err(refused) => {
                states.put::<D>(stream, folded);
                return Err(refused.into());
            }
        };
        if decided.is_empty() {
            states.put::<D>(stream, folded);
            return Ok(AppendResult { events: vec![], deduplicated: false });
        }
        let new: Vec<NewEvent> = decided.into_iter().map(|e| NewEvent::new(e, actor.clone()).at(at)).collect();
        match store.append(tenant, stream, ExpectedVersion::Exact(folded.version), new).await {
            // Another writer got in: read what it wrote, decide again.
            Err(StoreError::Concurrency { .. }) if attempt < ATTEMPTS => tokio::time::sleep(backoff(attempt)).await,
            Ok(appended) if !appended.deduplicated => {
                // The events as a read would give them (decoded from their
                // JSON, as the fold of a read does).
                if let Ok(folded) = folded.evolve::<D>(&appended.events) {
                    states.put::<D>(stream, folded);
                }
                return Ok(appended);
            }
            // A retry of an earlier append, or a failure: the stream is read
            // afresh next time.
            other => return Ok(other?),
        }
    }
}

/// A stream's current state by decider `D`.
#[derive(Debug, Clone, Default)]
pub struct Folded<S> {
    /// The stream's tenant (`None` while the stream is empty).
    pub tenant: Option<TenantId>,
    /// The stream's version: the number of events folded.
    pub version: u64,
    pub state: S,
}

impl<S> Folded<S> {
    fn evolve<D: Decider<State = S>>(mut self, events: &[RecordedEvent]) -> Result<Self, ExecuteError> {
        for e in events {
            self.state = D::evolve(self.state, &e.decode()?);
            self.version = e.stream_version;
            if self.tenant.is_none() {
                self.tenant = Some(e.tenant_id.clone());
            }
        }
        Ok(self)
    }
}

/// `stream`'s current state by `D`: the kept state brought up to date (or
/// the whole stream folded), and kept again for the next command. For a
/// route that checks a command against the state before running it.
pub async fn current<D: Decider + 'static>(
    store: &EventStore,
    stream: &StreamId,
) -> Result<Folded<D::State>, ExecuteError>
where
    D::State: Send,
{
    let folded = catch_up::<D>(store, stream, store.states().take::<D>(stream).unwrap_or_default()).await?;
    store.states().put::<D>(stream, folded.clone());
    Ok(folded)
}

/// `folded` with the events written after it.
async fn catch_up<D: Decider>(
    store: &EventStore,
    stream: &StreamId,
    folded: Folded<D::State>,
) -> Result<Folded<D::State>, ExecuteError> {
    let newer = store.read_stream(stream, folded.version + 1).await?;
    folded.evolve::<D>(&newer)
}

/// How long a kept state is used after it was last: it may hold personal
/// data (a session's recent messages) that an erasure on another node
/// (`EventStore::erase_subject`) should not outlive by much. As long as
/// the store's cache of subjects' keys keeps a key.
const KEEP: Duration = Duration::from_secs(60);

/// How many streams' states are kept at most.
const MAX_KEPT: usize = 10_000;

/// Deciders' states kept between commands, per stream: the stream's version
/// and the fold of its events up to it. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct StateCache {
    kept: Mutex<HashMap<(TypeId, StreamId), Kept>>,
}

#[derive(Debug)]
struct Kept {
    /// A `Folded<D::State>`.
    folded: Box<dyn Any + Send>,
    used: Instant,
}

impl StateCache {
    /// Takes the kept state out (a command racing on the same stream reads
    /// the stream from the start; the one that finishes last puts its state
    /// back).
    fn take<D: Decider + 'static>(&self, stream: &StreamId) -> Option<Folded<D::State>>
    where
        D::State: Send,
    {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).remove(&(TypeId::of::<D>(), stream.clone()))?;
        if kept.used.elapsed() >= KEEP {
            return None;
        }
        Some(*kept.folded.downcast::<Folded<D::State>>().expect("kept under its decider's type"))
    }

    fn put<D: Decider + 'static>(&self, stream: &StreamId, folded: Folded<D::State>)
    where
        D::State: Send,
    {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, k| k.used.elapsed() < KEEP);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert((TypeId::of::<D>(), stream.clone()), Kept { folded: Box::new(folded), used: Instant::now() });
    }

    /// Forgets what is kept of a session (its key was erased: the state
    /// may hold its personal data in the clear).
    pub(crate) fn forget_session(&self, session: &str) {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, s), _| !(s.kind == StreamKind::Session && s.id == session));
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use witness_schemas::*;

    use super::*;
    use witness_domain::session::{Session, SessionCommand};

    #[tokio::test]
    async fn of_two_racing_commands_the_loser_is_decided_again_on_the_new_history() {
        let (_dir, store, tenant, session, stream) = fixture().await;
        let (agent, offer) = (UserId::new(), OfferId::new());
        let now = now();
        for command in [
            start(session),
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

    /// A store in a temporary directory, a tenant and a session stream.
    async fn fixture() -> (tempfile::TempDir, EventStore, TenantId, SessionId, StreamId) {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
        let session = SessionId::new();
        (dir, store, "acme".parse().unwrap(), session, StreamId::session(session))
    }

    fn start(session: SessionId) -> SessionCommand {
        SessionCommand::Start {
            session_id: session,
            channel: Channel::Web,
            business_type: "cards".into(),
            customer_ref: "v".into(),
            locale: None,
        }
    }

    fn says(text: &str) -> SessionCommand {
        SessionCommand::CustomerSays {
            message_id: MessageId::new(),
            content: MessageContent::Text { text: text.into() },
        }
    }

    /// The state kept after each command is the fold of everything the
    /// stream holds, including what another process wrote in between (a
    /// second store on the same file has a cache of its own).
    #[tokio::test]
    async fn a_kept_state_takes_in_what_other_writers_appended() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let (store, other) = (EventStore::connect(&url).await.unwrap(), EventStore::connect(&url).await.unwrap());
        let tenant: TenantId = "acme".parse().unwrap();
        let session = SessionId::new();
        let stream = StreamId::session(session);
        let system = Actor::system();
        execute::<Session>(&store, &tenant, &stream, &system, now(), start(session)).await.unwrap();
        execute::<Session>(&store, &tenant, &stream, &system, now(), says("one")).await.unwrap();
        let kept = |store: &EventStore| {
            let folded = store.states().take::<Session>(&stream).expect("a state is kept");
            store.states().put::<Session>(&stream, folded.clone());
            folded
        };
        assert_eq!(kept(&store).version, 2);

        // Another process ends the session behind this one's back.
        let end = SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::BotResolved };
        execute::<Session>(&other, &tenant, &stream, &system, now(), end).await.unwrap();
        // This process's next message is decided on the whole stream: refused.
        let refused = execute::<Session>(&store, &tenant, &stream, &system, now(), says("two")).await;
        assert!(matches!(refused, Err(ExecuteError::Domain(_))), "{refused:?}");
        let events: Vec<Event> =
            store.read_stream(&stream, 1).await.unwrap().iter().map(|e| e.decode().unwrap()).collect();
        assert_eq!(events.len(), 3, "nothing written for the refused message");
        let folded = kept(&store);
        assert_eq!((folded.version, &folded.state), (3, &Session::fold(&events)));
        assert_eq!(folded.tenant, Some(tenant));
    }

    /// Erasing a session's key forgets its kept state, which holds its
    /// recent messages in the clear.
    #[tokio::test]
    async fn erasing_a_session_forgets_its_kept_state() {
        let (_dir, store, tenant, session, stream) = fixture().await;
        let system = Actor::system();
        execute::<Session>(&store, &tenant, &stream, &system, now(), start(session)).await.unwrap();
        execute::<Session>(&store, &tenant, &stream, &system, now(), says("my card is 4111")).await.unwrap();
        let folded = store.states().take::<Session>(&stream).unwrap();
        assert_eq!(folded.state.recent.back().unwrap().text, "my card is 4111");
        store.states().put::<Session>(&stream, folded);

        store.erase_subject(&tenant, &session.to_string()).await.unwrap();
        assert!(store.states().take::<Session>(&stream).is_none());
        // The next command folds the stream as it reads now.
        execute::<Session>(&store, &tenant, &stream, &system, now(), says("later")).await.unwrap();
        let state = store.states().take::<Session>(&stream).unwrap().state;
        let texts: Vec<&str> = state.recent.iter().map(|m| m.text.as_str()).collect();
        assert!(!texts.iter().any(|t| t.contains("4111")), "{texts:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_writers_racing_on_one_stream_all_get_through() {
        let (_dir, store, tenant, session, stream) = fixture().await;
        execute::<Session>(&store, &tenant, &stream, &Actor::system(), now(), start(session)).await.unwrap();
        // Sixteen messages at once on one stream (as sixteen range requests
        // of one recording append sixteen accesses): none may be lost to
        // the race.
        let writers = (0..16).map(|i| {
            let (store, tenant, stream) = (store.clone(), tenant.clone(), stream.clone());
            tokio::spawn(async move {
                execute::<Session>(&store, &tenant, &stream, &Actor::system(), now(), says(&format!("message {i}")))
                    .await
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap().expect("every racing writer succeeds");
        }
        assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 17);
    }
}
