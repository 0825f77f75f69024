//! The event store: one API over SQLite and PostgreSQL.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;
use witness_schemas::{validate_new, Cursor, NewEvent, RecordedEvent, StreamId, TenantId, UserId};

use crate::chain::{event_hash, GENESIS};
use crate::checkpoint::Checkpoint;
use crate::shred::{self, KeyCache, KeyState};
use crate::subscription::Subscription;
use crate::{postgres, sqlite, StoreError};

/// The most events one append may carry.
pub const MAX_BATCH: usize = 1_000;

/// The default store of `witness` commands: a SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/witness.db";

/// What the writer believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version is (no concurrency check).
    Any,
    /// The stream's last version must be exactly this (0: the stream must not exist yet).
    Exact(u64),
}

impl ExpectedVersion {
    pub const NO_STREAM: ExpectedVersion = ExpectedVersion::Exact(0);
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Exact(v) => v.fmt(f),
        }
    }
}

/// What an append stored (or, for a retried batch, had already stored).
#[derive(Debug, Clone)]
pub struct AppendResult {
    pub events: Vec<RecordedEvent>,
    /// True when every event id was already stored and nothing was written.
    pub deduplicated: bool,
}

impl AppendResult {
    /// The stream version after the append: the `ExpectedVersion` of the next one.
    pub fn last_version(&self) -> u64 {
        self.events.last().map_or(0, |e| e.stream_version)
    }

    pub fn last_cursor(&self) -> Cursor {
        self.events.last().map_or(Cursor::START, |e| e.cursor())
    }
}

/// The last event of a stream, as an append needs it.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub version: u64,
    pub hash: [u8; 32],
    pub tenant: String,
}

/// An event checked against the schema registry, with its canonical payload
/// text, waiting for its place in the log.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub new: NewEvent,
    pub payload: String,
}

/// Validates a batch before any database work: a refused batch writes nothing.
pub(crate) fn prepare(events: Vec<NewEvent>) -> Result<Vec<Prepared>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidAppend("an append needs at least one event".into()));
    }
    if events.len() > MAX_BATCH {
        return Err(StoreError::InvalidAppend(format!("{} events in one append; at most {MAX_BATCH}", events.len())));
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .into_iter()
        .enumerate()
        .map(|(index, mut new)| {
            if !seen.insert(new.event_id) {
                return Err(StoreError::InvalidAppend(format!("event id {} appears twice in the batch", new.event_id)));
            }
            let typed = validate_new(&new.event_type, new.schema_version, &new.payload)
                .map_err(|source| StoreError::InvalidEvent { index, event_type: new.event_type.clone(), source })?;
            // Re-serialising the typed payload makes the stored text
            // canonical: fields in declaration order, defaults explicit,
            // no insignificant whitespace.
            let payload = typed.payload_json();
            new.occurred_at = chrono::SubsecRound::trunc_subsecs(new.occurred_at, 6);
            Ok(Prepared { new, payload })
        })
        .collect()
}

/// Gives each prepared event its place (version, position) and chains the hashes.
pub(crate) fn seal(
    prepared: &[Prepared],
    tenant: &TenantId,
    stream: &StreamId,
    head: Option<&Head>,
    positions: &[(u64, u64)],
) -> Vec<RecordedEvent> {
    let recorded_at = witness_schemas::now();
    let mut prev_hash = head.map_or(GENESIS, |h| h.hash);
    let mut version = head.map_or(0, |h| h.version);
    prepared
        .iter()
        .zip(positions)
        .map(|(p, &(position, commit))| {
            version += 1;
            let mut e = RecordedEvent {
                position,
                commit,
                event_id: p.new.event_id,
                tenant_id: tenant.clone(),
                stream_id: stream.clone(),
                stream_version: version,
                event_type: p.new.event_type.clone(),
                schema_version: p.new.schema_version,
                occurred_at: p.new.occurred_at,
                recorded_at,
                actor: p.new.actor.clone(),
                correlation_id: p.new.correlation_id,
                causation_id: p.new.causation_id,
                payload: p.payload.clone(),
                prev_hash,
                hash: [0; 32],
            };
            e.hash = event_hash(&e);
            prev_hash = e.hash;
            e
        })
        .collect()
}

/// Checks the stream head against the writer's expectation and tenant.
pub(crate) fn check_head(
    head: Option<&Head>,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> Result<(), StoreError> {
    if let Some(h) = head {
        if h.tenant != tenant.as_str() {
            return Err(StoreError::WrongTenant { stream: stream.clone(), tenant: tenant.clone() });
        }
    }
    let actual = head.map_or(0, |h| h.version);
    match expected {
        ExpectedVersion::Exact(v) if v != actual => {
            Err(StoreError::Concurrency { stream: stream.clone(), expected, actual })
        }
        _ => Ok(()),
    }
}

/// After a refused append: if every event id of the batch is already stored
/// in this stream, the append is a retry and returns what was stored.
pub(crate) fn as_retry(
    stored: Vec<RecordedEvent>,
    prepared: &[Prepared],
    stream: &StreamId,
) -> Result<Option<AppendResult>, StoreError> {
    if stored.is_empty() {
        return Ok(None);
    }
    if stored.len() != prepared.len() || stored.iter().any(|e| &e.stream_id != stream) {
        return Err(StoreError::IdempotencyConflict { event_id: stored[0].event_id });
    }
    let mut events = stored;
    events.sort_by_key(|e| e.stream_version);
    Ok(Some(AppendResult { events, deduplicated: true }))
}

pub(crate) fn event_ids(prepared: &[Prepared]) -> Vec<Uuid> {
    prepared.iter().map(|p| p.new.event_id).collect()
}

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::SqliteBackend),
    Postgres(postgres::PgBackend),
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    /// Bumped after every local append, so that local subscribers wake at once
    /// instead of waiting for their next poll.
    appended: watch::Sender<u64>,
    /// Sessions' keys for their personal fields ([`crate::shred`]).
    keys: KeyCache,
    /// Deciders' states between commands ([`crate::executor`]).
    states: crate::executor::StateCache,
    /// How long each append took in the database (retries included), and
    /// how many events were written: for `/metrics`.
    append_latency: witness_schemas::metrics::Histogram,
    appended_events: witness_schemas::metrics::Counter,
}

/// The event store. Cheap to clone; all clones share one connection pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), witness_engine::StoreError> {
/// use witness_engine::{EventStore, ExpectedVersion};
/// use witness_schemas::*;
///
/// let store = EventStore::connect("sqlite://data/witness.db").await?;
/// let session = SessionId::new();
/// let started = SessionStarted {
///     session_id: session,
///     channel: Channel::Web,
///     business_type: "general".into(),
///     customer_ref: "visitor-1".into(),
///     locale: None,
/// };
/// let tenant: TenantId = "demo".parse().unwrap();
/// let result = store
///     .append(&tenant, &StreamId::session(session), ExpectedVersion::NO_STREAM,
///             vec![NewEvent::new(started, Actor::new(ActorKind::Customer, "visitor-1"))])
///     .await?;
/// assert_eq!(result.last_version(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

impl EventStore {
    /// Opens (creating if needed) the store at `url` and applies migrations.
    /// `sqlite://PATH` (parent folders are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::SqliteBackend::connect(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::PgBackend::connect(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                appended: watch::Sender::new(0),
                keys: KeyCache::default(),
                states: Default::default(),
                append_latency: Default::default(),
                appended_events: Default::default(),
            }),
        })
    }

    /// The appends' latencies (in the database, successful ones) and the
    /// events this process wrote.
    pub fn append_metrics(&self) -> (&witness_schemas::metrics::Histogram, u64) {
        (&self.inner.append_latency, self.inner.appended_events.get())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Appends `events` to `stream` of `tenant` if the stream is at `expected`.
    ///
    /// All or nothing. A batch whose event ids are all stored already is a
    /// retry: nothing is written and the stored events are returned
    /// (`deduplicated`), whatever `expected` says.
    pub async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut prepared = prepare(events)?;
        // The payloads as written, for the result: what was just sealed
        // need not be decrypted again.
        let mut written = Vec::new();
        if let Some(subject) = shred::subject(stream) {
            let key = self.subject_key(tenant, subject, true).await?;
            for p in &mut prepared {
                if let Some(sealed) = shred::seal(&p.payload, tenant.as_str(), subject, &key) {
                    written.push(Some(std::mem::replace(&mut p.payload, sealed)));
                } else {
                    written.push(None);
                }
            }
        }
        let prepared = Arc::new(prepared);
        let mut attempts = 0;
        let began = std::time::Instant::now();
        let result = loop {
            let attempt = match &self.inner.backend {
                Backend::Sqlite(b) => b.append(tenant, stream, expected, &prepared).await,
                Backend::Postgres(b) => b.append(tenant, stream, expected, &prepared).await,
            };
            attempts += 1;
            match attempt {
                // `Any` promises no check, so losing a race for the next
                // version (PostgreSQL writers run concurrently) is retried.
                Err(StoreError::Concurrency { .. }) if expected == ExpectedVersion::Any && attempts < 10 => continue,
                other => break other?,
            }
        };
        self.inner.append_latency.observe(began.elapsed());
        if !result.deduplicated {
            self.inner.appended.send_modify(|n| *n += 1);
            self.inner.appended_events.add(result.events.len() as u64);
        }
        let mut result = result;
        if result.deduplicated {
            // A retry: the stored events, sealed when first written.
            self.decrypt(&mut result.events).await?;
        } else {
            // Sealed from `prepared`, one event each, in order.
            for (e, plain) in result.events.iter_mut().zip(written) {
                if let Some(plain) = plain {
                    e.payload = plain;
                }
            }
        }
        Ok(result)
    }

    /// A subject's key, through the cache.
    async fn subject_key(&self, tenant: &TenantId, subject: &str, create: bool) -> Result<KeyState, StoreError> {
        if let Some(key) = self.inner.keys.get(tenant.as_str(), subject) {
            if !key.is_missing() || !create {
                return Ok(key);
            }
        }
        let key = match &self.inner.backend {
            Backend::Sqlite(b) => b.subject_key(tenant.as_str(), subject, create).await?,
            Backend::Postgres(b) => b.subject_key(tenant.as_str(), subject, create).await?,
        };
        self.inner.keys.put(tenant.as_str(), subject, key.clone());
        Ok(key)
    }

    /// Decrypts the personal fields of events read as stored, in place
    /// ([`crate::shred`]): what [`Self::read_stream`] does after
    /// [`Self::read_stream_stored`], for callers that need both forms of
    /// one read.
    pub async fn decrypt(&self, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
        for e in events.iter_mut().filter(|e| shred::is_sealed(&e.payload)) {
            let Some(subject) = shred::subject(&e.stream_id) else { continue };
            let key = self.subject_key(&e.tenant_id, subject, false).await?;
            if let Some(opened) = shred::open(&e.payload, e.tenant_id.as_str(), subject, &key) {
                e.payload = opened;
            }
        }
        Ok(())
    }

    /// Erases `tenant`'s session `subject`'s key: the personal fields of
    /// its events read [`shred::ERASED`] from now on (on other nodes within
    /// a minute), and any written later are not kept. `true` if a key was
    /// erased now, `false` if it was already.
    pub async fn erase_subject(&self, tenant: &TenantId, subject: &str) -> Result<bool, StoreError> {
        let at = crate::chain::time_text(&witness_schemas::now());
        let erased = match &self.inner.backend {
            Backend::Sqlite(b) => b.erase_subject_key(tenant.as_str(), subject, &at).await?,
            Backend::Postgres(b) => b.erase_subject_key(tenant.as_str(), subject, &at).await?,
        };
        self.inner.keys.put(tenant.as_str(), subject, KeyState::Erased);
        self.inner.states.forget_session(subject);
        Ok(erased)
    }

    pub(crate) fn states(&self) -> &crate::executor::StateCache {
        &self.inner.states
    }

    /// Events of `stream` with `stream_version >= from_version`, in order.
    pub async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.read_stream_stored(stream, from_version).await?;
        self.decrypt(&mut events).await?;
        Ok(events)
    }

    /// [`Self::read_stream`] as stored: personal fields still encrypted,
    /// each event exactly what its hash covers. For verification and
    /// review packages.
    pub async fn read_stream_stored(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.read_stream(stream, from_version).await,
            Backend::Postgres(b) => b.read_stream(stream, from_version).await,
        }
    }

    /// Up to `limit` events after `after`, in global order. Never skips: an
    /// event is returned only once every event before it in that order is
    /// committed and visible.
    pub async fn read_all(&self, after: Cursor, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.read_all_stored(after, limit).await?;
        self.decrypt(&mut events).await?;
        Ok(events)
    }

    /// [`Self::read_all`] as stored: personal fields still encrypted. What
    /// the Kafka relay sends, so that erasing a key reaches the topic too.
    pub async fn read_all_stored(&self, after: Cursor, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.read_all(after, limit).await,
            Backend::Postgres(b) => b.read_all(after, limit).await,
        }
    }

    /// [`Self::read_all`] for one tenant: up to `limit` of `tenant`'s events
    /// after `after`, decrypted, never skipping. What a tenant's staff page
    /// through (`GET /api/events`), so that a page's length tells nothing
    /// of other tenants' events.
    pub async fn read_tenant(
        &self,
        tenant: &TenantId,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = match &self.inner.backend {
            Backend::Sqlite(b) => b.read_tenant(tenant.as_str(), after, limit).await?,
            Backend::Postgres(b) => b.read_tenant(tenant.as_str(), after, limit).await?,
        };
        self.decrypt(&mut events).await?;
        Ok(events)
    }

    /// The events at `positions` that exist, in position order, decrypted as
    /// [`Self::read_all`] does. For read models that index the log instead
    /// of copying it (the audit trail).
    pub async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = match &self.inner.backend {
            Backend::Sqlite(b) => b.read_positions(positions).await?,
            Backend::Postgres(b) => b.read_positions(positions).await?,
        };
        self.decrypt(&mut events).await?;
        Ok(events)
    }

    /// Up to `limit` committed events with `position > after`, in position
    /// order, as stored (personal fields encrypted). For verification, which
    /// must see every row, including ones whose global order is not settled
    /// yet, and the bytes each hash covers.
    pub async fn scan_positions(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.scan_positions(after, limit).await,
            Backend::Postgres(b) => b.scan_positions(after, limit).await,
        }
    }

    /// Every event after `after` as it is committed: first the stored ones
    /// (catch-up), then new ones as they arrive (live).
    pub fn subscribe(&self, after: Cursor) -> Subscription {
        Subscription::new(self.clone(), after, self.inner.appended.subscribe())
    }

    /// Changes whenever this process appends: a cheap wake-up for pollers
    /// (appends by other processes are only seen by reading).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.checkpoints().await,
            Backend::Postgres(b) => b.checkpoints().await,
        }
    }

    pub(crate) async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.insert_checkpoint(cp).await,
            Backend::Postgres(b) => b.insert_checkpoint(cp).await,
        }
    }

    /// The saved position of the named log consumer (`Cursor::START` if none).
    pub async fn subscription_checkpoint(&self, name: &str) -> Result<Cursor, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.subscription_checkpoint(name).await,
            Backend::Postgres(b) => b.subscription_checkpoint(name).await,
        }
    }

    /// Saves the position of the named log consumer.
    pub async fn save_subscription_checkpoint(&self, name: &str, at: Cursor) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.save_subscription_checkpoint(name, at).await,
            Backend::Postgres(b) => b.save_subscription_checkpoint(name, at).await,
        }
    }

    /// The stored password hash of a user (a PHC string), if any.
    pub async fn credential(&self, user: UserId) -> Result<Option<String>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.credential(&user.to_string()).await,
            Backend::Postgres(b) => b.credential(&user.to_string()).await,
        }
    }

    /// Sets (or replaces) a user's password hash. Not an event: see
    /// `migrations/*/0004_credentials.sql`.
    pub async fn save_credential(&self, user: UserId, hash: &str) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.save_credential(&user.to_string(), hash).await,
            Backend::Postgres(b) => b.save_credential(&user.to_string(), hash).await,
        }
    }

    /// How many events are stored.
    pub async fn count(&self) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.count().await,
            Backend::Postgres(b) => b.count().await,
        }
    }

    /// A consistent copy of the embedded store as of one moment, written to
    /// `out` (a new file), while appends go on. PostgreSQL has its own
    /// tools (`pg_dump`, `pg_basebackup`): refused there.
    /// Returns the copy's last event position.
    pub async fn backup_to(&self, out: &std::path::Path) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.backup_to(out).await,
            Backend::Postgres(_) => Err(StoreError::NotOnThisBackend(
                "witness backup copies the embedded SQLite store; back up PostgreSQL with pg_dump or \
                 pg_basebackup (README, Deploying)"
                    .into(),
            )),
        }
    }

    /// The last event's position, 0 in an empty store. Cheap (the primary
    /// key's end): what readiness checks compare lags against.
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.last_position().await,
            Backend::Postgres(b) => b.last_position().await,
        }
    }

    /// How many schema migrations the database has applied, and how many
    /// this build of Witness knows.
    pub async fn migrations(&self) -> Result<(usize, usize), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.migrations().await,
            Backend::Postgres(b) => b.migrations().await,
        }
    }

    /// Where the subscription `name` (the Kafka relay: `kafka-relay`) has
    /// got to, as a position.
    pub async fn subscription_position(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.subscription_checkpoint(name).await?.position)
    }
}
