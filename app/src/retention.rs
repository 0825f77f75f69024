//! Retention and legal holds: deleting what a tenant's policy no longer
//! keeps, and nothing a legal hold covers.
//!
//! A tenant sets how many days after a session ends each class of data is
//! kept (`RetentionSet`; none: forever). [`sweep`] walks the log, and for
//! each ended session older than that which no legal hold covers (neither
//! one on the session nor one on the whole tenant) deletes its recording
//! files (segments and composites) and its attachments (files sent in
//! messages, and the ID photos and video frames of face verifications) — an attachment only
//! once every session that sent it is past retention and unheld, since the
//! upload store keeps one file per content. Each deletion is first
//! recorded as a `MediaDeleted` event on the session stream, then the file
//! is removed; a file whose deletion is recorded but which is still there
//! (the removal failed) is removed again by the next sweep. The events that
//! named the files stay, so the hash chain stays whole and `witness verify
//! --recordings` counts those files as deleted, not missing.
//!
//! Messages: a session's personal fields (messages' text, captions, file
//! names, the customer's reference, comments) are stored encrypted with a
//! key of its own (`witness_engine::shred`). Past the `messages` retention
//! the sweep erases that key — the values read `[erased]` from then on, the
//! log and its hashes unchanged — rewrites what the read models copied
//! (timeline, audit trail, the session's customer reference), then records
//! `PersonalDataErased` on the session. Each step is safe to repeat, so a
//! sweep interrupted between them is finished by the next. Sessions written
//! before keys existed hold those fields in clear and are not erasable: the
//! sweep reports them (`not_erasable`) and records nothing for them.
//! Copies outside the store are not reached: Kafka topics (set their
//! retention no longer than the messages'), exports and backups.
//!
//! The sweep reads the whole log each time: fine for the sizes measured
//! here; a read model of expiring files would be the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use witness_domain::refusal;
use witness_domain::session::{Session, SessionCommand};
use witness_engine::executor::execute;
use witness_engine::shred;
use witness_engine::EventStore;
use witness_projections::Projector;
use witness_replay::verify::{recording_file, recording_path};
use witness_schemas::*;

use crate::uploads::UploadStore;
use crate::{tenant, Error, Kind};

/// One file deleted (or, in a dry run, to be deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deleted {
    pub tenant: String,
    pub session_id: SessionId,
    pub class: DataClass,
    pub file: String,
}

/// What a sweep did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SweepReport {
    pub deleted: Vec<Deleted>,
    /// Ended sessions past a retention period that a legal hold kept.
    pub held_sessions: usize,
    /// Files recorded as deleted earlier that were still there, removed now.
    pub retried: usize,
    /// Sessions past the messages' retention whose events were written
    /// before per-session keys, with personal fields in clear: not erasable.
    pub not_erasable: Vec<SessionId>,
    /// Uploads that no event ever referenced, older than [`ORPHAN_AGE`]:
    /// removed (issue 27, M3: uploaded files never sent were kept for ever).
    pub orphans: usize,
}

/// How long an upload that no message names is kept: time enough to send
/// it, not to use the server as free storage.
pub const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Default)]
struct SessionFiles {
    ended_at: Option<DateTime<Utc>>,
    /// Recording files (path under the recordings directory, SHA-256).
    recordings: Vec<(String, Sha256Hex)>,
    attachments: BTreeSet<String>,
    /// `file` of every MediaDeleted.
    deleted: BTreeSet<String>,
    /// PersonalDataErased recorded.
    erased: bool,
}

/// Deletes what retention no longer keeps as of `now` (see the module
/// docs); with `dry_run`, only says what it would delete.
pub async fn sweep(
    store: &EventStore,
    projector: &Projector,
    recordings: &Path,
    uploads: &UploadStore,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<SweepReport, Error> {
    let mut sessions: BTreeMap<(TenantId, SessionId), SessionFiles> = BTreeMap::new();
    let mut cursor = Cursor::START;
    loop {
        let page = store.read_all(cursor, 5_000).await?;
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        for e in page.iter().filter(|e| e.stream_id.kind == StreamKind::Session) {
            let Ok(id) = e.stream_id.id.parse::<SessionId>() else { continue };
            let relevant = matches!(
                e.event_type.as_str(),
                "SessionEnded"
                    | "RecordingSegmentClosed"
                    | "RecordingComposited"
                    | "CustomerMessage"
                    | "AgentMessage"
                    | "BotMessage"
                    | "FaceVerificationRequested"
                    | "FaceVerificationCompleted"
                    | "MediaDeleted"
                    | "PersonalDataErased"
            );
            if !relevant {
                continue;
            }
            let s = sessions.entry((e.tenant_id.clone(), id)).or_default();
            match e.decode().map_err(|err| {
                tracing::error!(position = e.position, error = %err, "retention: undecodable event");
                Error::event_unreadable()
            })? {
                Event::SessionEnded(_) => s.ended_at = Some(e.occurred_at),
                Event::CustomerMessage(CustomerMessage { content, .. })
                | Event::AgentMessage(AgentMessage { content, .. })
                | Event::BotMessage(BotMessage { content, .. }) => {
                    s.attachments.extend(content.attachments().iter().map(|a| a.sha256.as_str().to_owned()))
                }
                // ID photos and the frames of face verifications are
                // images of the session like those sent in messages.
                Event::FaceVerificationRequested(r) => s
                    .attachments
                    .extend([Some(r.id_photo_sha256), r.frame_sha256].into_iter().flatten().map(String::from)),
                Event::FaceVerificationCompleted(c) => {
                    s.attachments.extend(c.frame_sha256s.into_iter().map(String::from))
                }
                Event::MediaDeleted(d) => _ = s.deleted.insert(d.file),
                Event::PersonalDataErased(_) => s.erased = true,
                other => {
                    if let Some((file, _, sha256)) = recording_file(&other) {
                        s.recordings.push((file.to_owned(), sha256.clone()));
                    }
                }
            }
        }
    }

    let mut report = SweepReport::default();
    // Uploads nothing in the log names, left long enough: never evidence.
    let mut referenced: BTreeMap<TenantId, BTreeSet<String>> = BTreeMap::new();
    for ((tenant, _), s) in &sessions {
        referenced.entry(tenant.clone()).or_default().extend(s.attachments.iter().cloned());
    }
    let orphans_before = std::time::SystemTime::from(now) - ORPHAN_AGE;
    report.orphans = uploads.remove_orphans(&referenced, orphans_before, dry_run).map_err(removal)?;
    let tenants: BTreeSet<TenantId> = sessions.keys().map(|(t, _)| t.clone()).collect();
    for tenant in tenants {
        let policy = tenant::directory(store, &tenant).await?;
        let of_tenant = || sessions.iter().filter(|((t, _), _)| *t == tenant);
        // Deletions recorded earlier whose removal did not happen.
        for ((_, _), s) in of_tenant() {
            for (file, _) in s.recordings.iter().filter(|(f, _)| s.deleted.contains(f)) {
                if let Some(path) = recording_path(recordings, file).filter(|p| p.exists()) {
                    if !dry_run {
                        std::fs::remove_file(&path).map_err(removal)?;
                    }
                    report.retried += 1;
                }
            }
        }
        // Attachments: one file per content, shared by every session that sent it.
        let mut senders: BTreeMap<&str, Vec<(&SessionId, &SessionFiles)>> = BTreeMap::new();
        for ((_, id), s) in of_tenant() {
            for hash in &s.attachments {
                senders.entry(hash.as_str()).or_default().push((id, s));
            }
        }
        // (Only if every sender's deletion is recorded: content sent again
        // since is a new file of a live session.)
        for (hash, users) in &senders {
            if users.iter().all(|(_, s)| s.deleted.contains(*hash)) && uploads.has(&tenant, hash) {
                if !dry_run {
                    uploads.remove(&tenant, hash).map_err(removal)?;
                }
                report.retried += 1;
            }
        }
        if policy.retention.is_empty() {
            continue;
        }
        let held = |id: &SessionId| policy.holds.contains_key(&None) || policy.holds.contains_key(&Some(*id));
        let expired = |class: DataClass, s: &SessionFiles| match (policy.retention.get(&class), s.ended_at) {
            (Some(days), Some(ended)) => ended + Duration::days(*days as i64) <= now,
            _ => false,
        };
        let reason = |class: DataClass| format!("retention: {} days", policy.retention[&class]);
        let mut kept_by_hold = BTreeSet::new();

        // Recordings: the session's own files.
        for ((_, id), s) in of_tenant().filter(|(_, s)| expired(DataClass::Recordings, s)) {
            if held(id) {
                kept_by_hold.insert(*id);
                continue;
            }
            for (file, sha256) in s.recordings.iter().filter(|(f, _)| !s.deleted.contains(f)) {
                let Some(path) = recording_path(recordings, file) else { continue };
                if !path.exists() {
                    continue;
                }
                let deleted = MediaDeleted {
                    class: DataClass::Recordings,
                    file: file.clone(),
                    sha256: sha256.clone(),
                    reason: reason(DataClass::Recordings),
                };
                if !dry_run {
                    record(store, &tenant, *id, SessionCommand::RecordDeletion { deleted }, now).await?;
                    std::fs::remove_file(&path).map_err(removal)?;
                }
                report.deleted.push(Deleted {
                    tenant: tenant.to_string(),
                    session_id: *id,
                    class: DataClass::Recordings,
                    file: file.clone(),
                });
            }
        }

        for (hash, users) in senders {
            if !users.iter().all(|(_, s)| expired(DataClass::Attachments, s)) {
                continue;
            }
            if let Some((id, _)) = users.iter().find(|(id, _)| held(id)) {
                kept_by_hold.insert(**id);
                continue;
            }
            if !uploads.has(&tenant, hash) {
                continue;
            }
            let sha256 = Sha256Hex::try_from(hash.to_owned()).expect("attachments name a SHA-256");
            for (id, _) in users.iter().filter(|(_, s)| !s.deleted.contains(hash)) {
                let deleted = MediaDeleted {
                    class: DataClass::Attachments,
                    file: hash.to_owned(),
                    sha256: sha256.clone(),
                    reason: reason(DataClass::Attachments),
                };
                if !dry_run {
                    record(store, &tenant, **id, SessionCommand::RecordDeletion { deleted }, now).await?;
                }
                report.deleted.push(Deleted {
                    tenant: tenant.to_string(),
                    session_id: **id,
                    class: DataClass::Attachments,
                    file: hash.to_owned(),
                });
            }
            if !dry_run {
                uploads.remove(&tenant, hash).map_err(removal)?;
            }
        }

        // Messages and the session's other personal fields: its key.
        for ((_, id), _) in of_tenant().filter(|(_, s)| !s.erased && expired(DataClass::Messages, s)) {
            if held(id) {
                kept_by_hold.insert(*id);
                continue;
            }
            let stream = StreamId::session(*id);
            if store.read_stream_stored(&stream, 1).await?.iter().any(|e| shred::has_clear_personal(&e.payload)) {
                tracing::warn!(session = %id, "retention: written before per-session keys; its messages cannot be erased");
                report.not_erasable.push(*id);
                continue;
            }
            if !dry_run {
                let subject = id.to_string();
                store.erase_subject(&tenant, &subject).await?;
                let events = store.read_stream(&stream, 1).await?;
                projector.erase_session(&events).await.map_err(|e| {
                    tracing::error!(error = %e, "retention: rewriting the read models");
                    Error::new(
                        Kind::Unavailable,
                        refusal!("read_models_unwritable", "the read models cannot be written"),
                    )
                })?;
                let erased = PersonalDataErased { class: DataClass::Messages, reason: reason(DataClass::Messages) };
                record(store, &tenant, *id, SessionCommand::RecordErasure { erased }, now).await?;
            }
            report.deleted.push(Deleted {
                tenant: tenant.to_string(),
                session_id: *id,
                class: DataClass::Messages,
                file: "personal data".into(),
            });
        }
        report.held_sessions += kept_by_hold.len();
    }
    Ok(report)
}

/// Records what the sweep did on session `id`, as the system.
async fn record(
    store: &EventStore,
    tenant: &TenantId,
    id: SessionId,
    command: SessionCommand,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    execute::<Session>(store, tenant, &StreamId::session(id), &Actor::system(), now, command).await?;
    Ok(())
}

fn removal(e: std::io::Error) -> Error {
    tracing::error!(error = %e, "retention: removing a file failed");
    Error::new(Kind::Internal, refusal!("file_not_removed", "a file could not be removed; the next sweep retries"))
}
