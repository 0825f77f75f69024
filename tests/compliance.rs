//! Compliance over a real store and real files. Retention and legal holds:
//! what is past its tenant's retention is deleted with a `MediaDeleted`
//! event, what a legal hold covers is kept until the hold is released, an
//! attachment goes only when every session that sent it has expired, and
//! the hash chain and `verify --recordings` stay whole throughout; past the
//! messages' retention a session's key is erased and its personal fields
//! read `[erased]` everywhere, the chain unchanged. Review
//! packages: written, then checked offline, and any change to them found.

mod common;

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use common::*;
use sha2::Digest;
use witness_app::retention::sweep;
use witness_app::uploads::UploadStore;
use witness_domain::session::{Session, SessionCommand};
use witness_domain::tenant::{Tenant, TenantCommand};
use witness_engine::executor::execute;
use witness_engine::EventStore;
use witness_projections::Projector;
use witness_replay::verify::{verify_recordings, verify_store};
use witness_schemas::*;

/// A PNG, different for each `seed` (so that each is its own upload).
fn png(seed: u8) -> Vec<u8> {
    let mut image = image::RgbImage::new(4, 4);
    image.pixels_mut().for_each(|p| *p = image::Rgb([seed, 0, 255 - seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

struct World {
    t: TestStore,
    dir: tempfile::TempDir,
    uploads: UploadStore,
}

impl World {
    /// The read models of the world's store (a reader; the tables are the store's).
    async fn projector(&self) -> Projector {
        Projector::connect(&self.t.url, vec![]).await.unwrap()
    }

    fn recordings(&self) -> std::path::PathBuf {
        self.dir.path().join("recordings")
    }

    async fn tenant(&self, command: TenantCommand) {
        let stream = StreamId::tenant(&tenant());
        execute::<Tenant>(
            &self.t.store,
            &tenant(),
            &stream,
            &Actor::new(ActorKind::Compliance, "c1"),
            Utc::now(),
            command,
        )
        .await
        .unwrap();
    }

    /// A session that started at `at`, sent the image `image`, was answered
    /// by an agent in a recorded call (one real segment file) and ended ten
    /// minutes later. Returns its id and its segment's path.
    async fn recorded_session(&self, at: DateTime<Utc>, image: &[u8]) -> (SessionId, String) {
        let store = &self.t.store;
        let id = SessionId::new();
        let agent = UserId::new();
        let (offer_id, call_id, recording_id) = (OfferId::new(), CallId::new(), RecordingId::new());
        let (hash, media_type) = self.uploads.put(&tenant(), image.to_vec().into()).await.unwrap();
        let attachment =
            Attachment { sha256: hash, file_name: "bill.png".into(), media_type: media_type.into(), bytes: 0 };
        let file = format!("{recording_id}/customer-audio/00000.webm");
        let bytes = format!("audio of {id}").into_bytes();
        let path = self.recordings().join(&file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let segment = RecordingSegmentClosed {
            recording_id,
            track_id: "customer-audio".into(),
            segment_index: 0,
            file: file.clone(),
            bytes: bytes.len() as u64,
            duration_ms: 10_000,
            sha256: Sha256Hex::try_from(hex::encode(sha2::Sha256::digest(&bytes))).unwrap(),
        };
        let commands = [
            SessionCommand::Start {
                session_id: id,
                channel: Channel::Web,
                business_type: "cards".into(),
                customer_ref: "visitor-1".into(),
                locale: None,
            },
            SessionCommand::CustomerSays {
                message_id: MessageId::new(),
                content: MessageContent::Image { attachment, caption: None },
            },
            SessionCommand::RequestHuman {
                group: "cards".into(),
                reason: "asked".into(),
                context_summary: "a bill".into(),
                priority: 0,
            },
            SessionCommand::Offer { offer_id, agent_id: agent, expires_at: at + Duration::seconds(20) },
            SessionCommand::AcceptOffer { offer_id, agent_id: agent, at },
            SessionCommand::StartCall { agent_id: agent, call_id, kind: CallKind::Audio },
            SessionCommand::StartRecording { recording_id, reason: RecordingReason::OnDemand },
            SessionCommand::CloseSegment { segment },
            SessionCommand::StopRecording { recording_id },
            SessionCommand::EndCall { call_id, reason: None },
            SessionCommand::End { ended_by: EndedBy::Agent, reason: EndReason::Resolved },
        ];
        let stream = StreamId::session(id);
        for (i, command) in commands.into_iter().enumerate() {
            let when = at + Duration::minutes(i as i64);
            execute::<Session>(store, &tenant(), &stream, &Actor::system(), when, command).await.unwrap();
        }
        (id, file)
    }
}

async fn deletions(store: &EventStore, id: SessionId) -> Vec<MediaDeleted> {
    let events = store.read_stream(&StreamId::session(id), 1).await.unwrap();
    events
        .iter()
        .filter_map(|e| match e.decode().unwrap() {
            Event::MediaDeleted(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

#[tokio::test]
async fn expired_media_is_deleted_with_an_event_and_held_media_is_kept_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let w = World { t: sqlite().await, uploads: UploadStore::new(dir.path().join("uploads"), 1 << 20), dir };
    let store = &w.t.store;
    w.tenant(TenantCommand::Create { name: "Acme".into() }).await;
    let now = Utc::now();
    let long_ago = now - Duration::days(100);
    // Two old sessions share an image with a recent one; a third old one is held.
    let shared = png(1);
    let (old, old_file) = w.recorded_session(long_ago, &shared).await;
    let (alone, alone_file) = w.recorded_session(long_ago, &png(2)).await;
    let (held, held_file) = w.recorded_session(long_ago, &png(3)).await;
    let (recent, recent_file) = w.recorded_session(now - Duration::days(1), &shared).await;
    let alone_image = hex::encode(sha2::Sha256::digest(png(2)));
    let shared_image = hex::encode(sha2::Sha256::digest(&shared));
    let recordings = w.recordings();

    // Without a policy nothing goes.
    let report = sweep(store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert!(report.deleted.is_empty());
    w.tenant(TenantCommand::SetRetention { class: DataClass::Recordings, days: Some(30) }).await;
    w.tenant(TenantCommand::SetRetention { class: DataClass::Attachments, days: Some(30) }).await;
    w.tenant(TenantCommand::PlaceLegalHold { session_id: Some(held), reason: "case 7".into() }).await;

    // A dry run says what would go and deletes nothing.
    let before = store.count().await.unwrap();
    let dry = sweep(store, &w.projector().await, &recordings, &w.uploads, now, true).await.unwrap();
    assert_eq!(dry.deleted.len(), 3, "{:?}", dry.deleted);
    assert_eq!(store.count().await.unwrap(), before);
    assert!(exists(&recordings, &old_file) && w.uploads.has(&tenant(), &alone_image));

    let report = sweep(store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert_eq!(report.held_sessions, 1);
    // The two unheld old sessions lose their recordings; the image only one of them sent goes too.
    assert!(!exists(&recordings, &old_file) && !exists(&recordings, &alone_file));
    assert!(exists(&recordings, &held_file) && exists(&recordings, &recent_file));
    assert!(!w.uploads.has(&tenant(), &alone_image), "expired and sent by no one else");
    assert!(w.uploads.has(&tenant(), &shared_image), "the recent session still uses it");
    let old_deleted = deletions(store, old).await;
    assert_eq!(old_deleted.len(), 1);
    assert_eq!((old_deleted[0].class, old_deleted[0].file.as_str()), (DataClass::Recordings, old_file.as_str()));
    assert_eq!(old_deleted[0].reason, "retention: 30 days");
    let alone_deleted: Vec<_> = deletions(store, alone).await.into_iter().map(|d| d.class).collect();
    assert_eq!(alone_deleted, vec![DataClass::Recordings, DataClass::Attachments]);
    assert!(deletions(store, held).await.is_empty() && deletions(store, recent).await.is_empty());

    // The chain is whole, and the deleted files count as deleted, not missing.
    let chain = verify_store(store, None, |_| {}).await.unwrap();
    assert!(chain.is_ok(), "{:?}", chain.first_problem());
    let files = verify_recordings(store, &recordings, |_| {}).await.unwrap();
    assert!(files.is_ok(), "{:?}", files.problems);
    assert_eq!((files.segments, files.intact, files.deleted), (4, 2, 2));
    // A second sweep finds nothing more to do.
    let again = sweep(store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert!(again.deleted.is_empty() && again.retried == 0);

    // Released, the held session's recording goes at the next sweep.
    w.tenant(TenantCommand::ReleaseLegalHold { session_id: Some(held), reason: "case closed".into() }).await;
    let report = sweep(store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert_eq!(report.deleted.len(), 2, "{:?}", report.deleted);
    assert!(!exists(&recordings, &held_file));

    // A tenant-wide hold keeps everything, even once the recent session expires.
    w.tenant(TenantCommand::PlaceLegalHold { session_id: None, reason: "regulator inquiry".into() }).await;
    let later = now + Duration::days(40);
    let report = sweep(store, &w.projector().await, &recordings, &w.uploads, later, false).await.unwrap();
    assert!(report.deleted.is_empty() && report.held_sessions > 0, "{report:?}");
    assert!(exists(&recordings, &recent_file) && w.uploads.has(&tenant(), &shared_image));
    w.tenant(TenantCommand::ReleaseLegalHold { session_id: None, reason: "closed".into() }).await;
    sweep(store, &w.projector().await, &recordings, &w.uploads, later, false).await.unwrap();
    assert!(!exists(&recordings, &recent_file) && !w.uploads.has(&tenant(), &shared_image));
    // The shared image's deletion is on both sessions that sent it.
    for id in [old, recent] {
        assert!(deletions(store, id).await.iter().any(|d| d.class == DataClass::Attachments && d.file == shared_image));
    }
    let files = verify_recordings(store, &recordings, |_| {}).await.unwrap();
    assert_eq!((files.intact, files.deleted, files.problems.len()), (0, 4, 0));
    assert!(verify_store(store, None, |_| {}).await.unwrap().is_ok());
}

/// A deletion recorded but not carried out (the file came back, or its
/// removal failed) is carried out by the next sweep.
#[tokio::test]
async fn a_recorded_deletion_whose_file_is_still_there_is_finished_by_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let w = World { t: sqlite().await, uploads: UploadStore::new(dir.path().join("uploads"), 1 << 20), dir };
    w.tenant(TenantCommand::Create { name: "Acme".into() }).await;
    let now = Utc::now();
    let (_, file) = w.recorded_session(now - Duration::days(10), &png(9)).await;
    w.tenant(TenantCommand::SetRetention { class: DataClass::Recordings, days: Some(5) }).await;
    let recordings = w.recordings();
    sweep(&w.t.store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert!(!exists(&recordings, &file));
    std::fs::write(recordings.join(&file), b"restored from a backup").unwrap();
    let report = sweep(&w.t.store, &w.projector().await, &recordings, &w.uploads, now, false).await.unwrap();
    assert_eq!((report.deleted.len(), report.retried), (0, 1));
    assert!(!exists(&recordings, &file));
}

/// A review package verifies with the instance's key, and any change — to a
/// recording, to the timeline, or the key itself — is found and named.
#[tokio::test]
async fn a_review_package_verifies_offline_and_every_change_to_it_is_found() {
    use witness_engine::CheckpointSigner;
    use witness_replay::package::{verify_package, write_package};
    let dir = tempfile::tempdir().unwrap();
    let w = World { t: sqlite().await, uploads: UploadStore::new(dir.path().join("uploads"), 1 << 20), dir };
    w.tenant(TenantCommand::Create { name: "Acme".into() }).await;
    let (session, file) = w.recorded_session(Utc::now() - Duration::hours(1), &png(4)).await;
    let signer = CheckpointSigner::load_or_create(&w.dir.path().join("keys/signing.key")).unwrap();
    let review = serde_json::json!({ "verdict": [true, null] });
    let package =
        write_package(&w.t.store, &w.recordings(), &tenant(), session, &review, &signer, vec![]).await.unwrap();

    let report = verify_package(package.as_slice(), &signer.verifying_key()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.files, report.recordings, report.session_id), (4, 1, session.to_string()));
    assert_eq!(report.events, w.t.store.read_stream(&StreamId::session(session), 1).await.unwrap().len());

    // Another tenant's session is not packaged.
    let other: TenantId = "globex".parse().unwrap();
    assert!(write_package(&w.t.store, &w.recordings(), &other, session, &review, &signer, vec![]).await.is_err());

    let changed = |from: &[u8], to: &[u8]| {
        let at = package.windows(from.len()).position(|w| w == from).expect("the bytes to change are in the package");
        let mut copy = package.clone();
        copy[at..at + to.len()].copy_from_slice(to);
        verify_package(copy.as_slice(), &signer.verifying_key()).unwrap().problems
    };
    // One byte of the recording.
    let audio = format!("audio of {session}");
    let problems = changed(audio.as_bytes(), b"AUDIO");
    let name = format!("recordings/{file}");
    assert!(problems.iter().any(|p| p.starts_with(&name) && p.contains("altered")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with(&name) && p.contains("not the file the log recorded")),
        "{problems:?}"
    );
    // The timeline holds the events as stored (the customer's reference
    // encrypted), the conversation the same events readable.
    let count = |what: &[u8]| package.windows(what.len()).filter(|w| *w == what).count();
    assert_eq!(count(b"visitor-1"), 1, "only in conversation.json");
    let problems = changed(b"visitor-1", b"visitor-2");
    assert_eq!(problems, vec!["conversation.json: altered (its size or SHA-256 is not the listed one)".to_owned()]);
    // The business type, first in the timeline: the file, the event's hash,
    // and the conversation no longer matching it.
    let problems = changed(b"\"cards\"", b"\"carts\"");
    assert!(problems.iter().any(|p| p.starts_with("timeline.json: altered")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("does not hash to its hash")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("conversation.json: the event at position")), "{problems:?}");
    // Another key.
    let stranger = CheckpointSigner::load_or_create(&w.dir.path().join("keys/other.key")).unwrap();
    let report = verify_package(package.as_slice(), &stranger.verifying_key()).unwrap();
    assert_eq!(report.problems, vec!["manifest.json: the signature does not verify with this public key".to_owned()]);
    // Not a package at all.
    assert!(verify_package(&b"not a tar"[..], &signer.verifying_key()).is_err());
}

/// A session that began at `at`: the customer (`customer_ref`) writes
/// `text`, asks for a person, gives up waiting.
async fn chatted_session(store: &EventStore, at: DateTime<Utc>, customer_ref: &str, text: &str) -> SessionId {
    let id = SessionId::new();
    let commands = [
        SessionCommand::Start {
            session_id: id,
            channel: Channel::Web,
            business_type: "cards".into(),
            customer_ref: customer_ref.into(),
            locale: None,
        },
        SessionCommand::CustomerSays {
            message_id: MessageId::new(),
            content: MessageContent::Text { text: text.into() },
        },
        SessionCommand::RequestHuman {
            group: "cards".into(),
            reason: "asked".into(),
            context_summary: format!("customer: {text}"),
            priority: 0,
        },
        SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::Abandoned },
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let when = at + Duration::minutes(i as i64);
        execute::<Session>(store, &tenant(), &StreamId::session(id), &Actor::system(), when, command).await.unwrap();
    }
    id
}

/// Every detail of the tenant's audit trail, as compliance reads it.
async fn trail(projector: &Projector, store: &EventStore) -> String {
    let rows = projector.audit(store, &tenant(), Role::Compliance, 0, 10_000).await.unwrap();
    rows.iter().map(|r| r.detail.to_string()).collect::<Vec<_>>().join("\n")
}

/// Every personal value of `id`'s events as read, and as stored.
async fn personal_values(store: &EventStore, id: SessionId) -> (String, String) {
    let read = store.read_stream(&StreamId::session(id), 1).await.unwrap();
    let stored = store.read_stream_stored(&StreamId::session(id), 1).await.unwrap();
    let payloads = |events: &[RecordedEvent]| events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>().join("\n");
    (payloads(&read), payloads(&stored))
}

async fn messages_are_erased_with_their_key_past_retention(t: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let w = World { t, uploads: UploadStore::new(dir.path().join("uploads"), 1 << 20), dir };
    let store = &w.t.store;
    w.tenant(TenantCommand::Create { name: "Acme".into() }).await;
    let now = Utc::now();
    let old = chatted_session(store, now - Duration::days(100), "visitor-77", "my card 4242 is blocked").await;
    let held = chatted_session(store, now - Duration::days(100), "visitor-88", "card 5555 stolen").await;
    let recent = chatted_session(store, now - Duration::days(1), "visitor-99", "card 6666 lost").await;
    let projector = Projector::connect(&w.t.url, witness_projections::models::all()).await.unwrap();
    projector.catch_up(store, |_| {}).await.unwrap();

    // Stored encrypted, read in clear.
    let (read, stored) = personal_values(store, old).await;
    assert!(read.contains("my card 4242 is blocked") && read.contains("visitor-77"), "{read}");
    assert!(!stored.contains("4242") && !stored.contains("visitor-77"), "{stored}");
    assert!(stored.contains("enc:v1:"), "{stored}");
    let audit = trail(&projector, store).await;
    assert!(audit.contains("4242") && audit.contains("visitor-77"), "the audit trail shows what the log holds");

    // Without a messages policy, or under a hold, nothing goes.
    let report = sweep(store, &projector, &w.recordings(), &w.uploads, now, false).await.unwrap();
    assert!(report.deleted.is_empty());
    w.tenant(TenantCommand::SetRetention { class: DataClass::Messages, days: Some(30) }).await;
    w.tenant(TenantCommand::PlaceLegalHold { session_id: Some(held), reason: "case 9".into() }).await;
    let before = store.count().await.unwrap();
    let dry = sweep(store, &projector, &w.recordings(), &w.uploads, now, true).await.unwrap();
    assert_eq!(dry.deleted.iter().map(|d| (d.session_id, d.class)).collect::<Vec<_>>(), [(old, DataClass::Messages)]);
    assert_eq!(store.count().await.unwrap(), before, "a dry run writes nothing");
    assert!(personal_values(store, old).await.0.contains("4242"), "a dry run erases nothing");

    let report = sweep(store, &projector, &w.recordings(), &w.uploads, now, false).await.unwrap();
    assert_eq!(
        report.deleted.iter().map(|d| (d.session_id, d.class)).collect::<Vec<_>>(),
        [(old, DataClass::Messages)]
    );
    assert_eq!(report.held_sessions, 1);
    let events = store.read_stream(&StreamId::session(old), 1).await.unwrap();
    let erased: Vec<PersonalDataErased> = events
        .iter()
        .filter_map(|e| match e.decode().unwrap() {
            Event::PersonalDataErased(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(erased, [PersonalDataErased { class: DataClass::Messages, reason: "retention: 30 days".into() }]);
    let Event::CustomerMessage(m) = events[1].decode().unwrap() else { panic!("{:?}", events[1]) };
    assert_eq!(m.content, MessageContent::Text { text: "[erased]".into() });
    let Event::SessionStarted(started) = events[0].decode().unwrap() else { panic!() };
    assert_eq!(started.customer_ref, "[erased]");
    let (read, _) = personal_values(store, old).await;
    assert!(!read.contains("4242") && !read.contains("visitor-77"), "{read}");
    // The held and the recent sessions read as before.
    assert!(personal_values(store, held).await.0.contains("card 5555 stolen"));
    assert!(personal_values(store, recent).await.0.contains("card 6666 lost"));

    // The read models no longer hold it; the others' rows are untouched.
    projector.catch_up(store, |_| {}).await.unwrap();
    let sessions = projector.dump("sessions").await.unwrap().join("\n");
    assert!(!sessions.contains("visitor-77") && sessions.contains("visitor-88"), "{sessions}");
    let audit = trail(&projector, store).await;
    assert!(!audit.contains("4242") && !audit.contains("visitor-77"), "{audit}");
    assert!(audit.contains("visitor-88") && audit.contains("5555") && audit.contains("[erased]"), "{audit}");

    // The log, its hashes and checkpoints are whole.
    let verified = verify_store(store, None, |_| {}).await.unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    // Personal data written to the session afterwards is not kept.
    let rate = SessionCommand::Rate { rating: Rating::try_from(2).unwrap(), comment: Some("call 13800138000".into()) };
    execute::<Session>(store, &tenant(), &StreamId::session(old), &Actor::system(), now, rate).await.unwrap();
    let (read, stored) = personal_values(store, old).await;
    assert!(!read.contains("13800138000") && !stored.contains("13800138000"), "{stored}");
    // Erasure happens once.
    let again = sweep(store, &projector, &w.recordings(), &w.uploads, now, false).await.unwrap();
    assert!(again.deleted.is_empty(), "{:?}", again.deleted);

    // A session written before keys existed (its customer's reference in
    // clear, as an old store holds it) is reported, and nothing is claimed.
    let legacy = chatted_session(store, now - Duration::days(100), "visitor-55", "card 7777").await;
    let first = store.read_stream_stored(&StreamId::session(legacy), 1).await.unwrap()[0].clone();
    let clear = first.payload.replace(&started_ref(&first.payload), "\"customer_ref\":\"visitor-55\"");
    raw_sql(&w.t.url, &format!("UPDATE events SET payload = '{clear}' WHERE position = {}", first.position)).await;
    let before = store.count().await.unwrap();
    let report = sweep(store, &projector, &w.recordings(), &w.uploads, now, false).await.unwrap();
    assert_eq!((report.deleted.len(), report.not_erasable), (0, vec![legacy]));
    assert_eq!(store.count().await.unwrap(), before, "no PersonalDataErased for it");
    assert!(personal_values(store, legacy).await.0.contains("card 7777"), "its key is kept");
}

/// The `"customer_ref":"…"` member of a stored SessionStarted payload.
fn started_ref(payload: &str) -> String {
    let at = payload.find("\"customer_ref\":\"").unwrap();
    let end = payload[at + 16..].find('"').unwrap() + at + 17;
    payload[at..end].to_owned()
}

#[tokio::test]
async fn messages_are_erased_with_their_key_past_retention_on_sqlite() {
    messages_are_erased_with_their_key_past_retention(sqlite().await).await;
}

#[tokio::test]
async fn messages_are_erased_with_their_key_past_retention_on_postgres() {
    messages_are_erased_with_their_key_past_retention(postgres().await).await;
}
