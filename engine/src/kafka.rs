//! Kafka distribution: the outbox relay (store → topic) and the feed that
//! reads it back (topic → events), both on librdkafka.
//!
//! The relay reads the global log from its checkpoint, produces every event
//! to the topic keyed by its stream id (so a stream's events stay in order
//! in one partition), with headers `event_id`, `event_type`, `tenant`,
//! `position`, and the whole envelope as JSON in the value — any Kafka
//! client can read it. The producer is idempotent with `acks=all`; the
//! relay's checkpoint moves only after the broker has acknowledged every
//! event of a batch. A relay that dies between the acknowledgement and the
//! checkpoint re-sends that batch on restart, so readers deduplicate by
//! position (see [`KafkaFeed`] and the projections' checkpoints).
//!
//! Events go out **as stored**: the personal fields of session events
//! encrypted with their session's key (`crate::shred`), each envelope
//! exactly what its hash covers. Erasing a session's key therefore reaches
//! the topic's copies too, and any consumer can check the hashes. The
//! [`KafkaFeed`] decrypts with the keys in the store, as a read from the
//! store does; a consumer without the store sees `enc:v1:…` in those fields.
//!
//! The projection consumers rely on the topic holding the log in global
//! order, so [`create_topic`] makes it with one partition. More partitions
//! would need per-partition checkpoints in the read models (not done yet).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use witness_schemas::metrics::Counter;
use witness_schemas::RecordedEvent;

use crate::{EventStore, StoreError};

/// Kafka errors this process met (`/metrics` shows them).
#[derive(Debug)]
pub struct KafkaErrors {
    /// Relay batches that failed (each retried after a second).
    pub relay: Counter,
    /// Consumption errors waited out (brokers unreachable, a transport failure).
    pub consumer: Counter,
}

pub static ERRORS: KafkaErrors = KafkaErrors { relay: Counter::new(), consumer: Counter::new() };

/// The default topic.
pub const DEFAULT_TOPIC: &str = "witness.events";

/// The relay's name in `subscription_checkpoints`.
pub const RELAY_CHECKPOINT: &str = "kafka-relay";

/// Events produced per batch (and per checkpoint). Each batch ends waiting
/// for its acknowledgements (and the producer's 5 ms linger), so a larger
/// batch spends less of its time waiting: 5,000 relayed about 1.1× as many
/// events per second as 1,000 (BENCHMARKS.md); a crash re-sends at most one
/// batch, which consumers drop by position.
pub const RELAY_BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka message at offset {offset} is not a Witness event: {message}")]
    BadMessage { offset: i64, message: String },
}

/// A librdkafka client configuration for `brokers`. `WITNESS_KAFKA_DEBUG`
/// passes librdkafka's `debug` setting through (e.g. `cgrp,fetch`).
fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    if let Ok(debug) = std::env::var("WITNESS_KAFKA_DEBUG") {
        c.set("debug", debug);
    }
    c
}

/// Creates the topic (one partition; see the module docs) if it is missing.
pub async fn create_topic(brokers: &str, topic: &str) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, ?code, "creating the topic failed");
                return Err(rdkafka::error::KafkaError::AdminOp(code).into());
            }
        }
    }
    Ok(())
}

/// Store → topic. See the module docs.
pub struct OutboxRelay {
    store: EventStore,
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay").field("topic", &self.topic).finish()
    }
}

impl OutboxRelay {
    pub fn new(store: EventStore, brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        let producer: FutureProducer = config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Keep retrying through a broker outage rather than failing the batch.
            .set("message.timeout.ms", "300000")
            .create()?;
        Ok(Self { store, producer, topic: topic.to_owned() })
    }

    /// Produces everything after the checkpoint, batch by batch, moving the
    /// checkpoint after each acknowledged batch. Returns how many were sent.
    pub async fn relay_available(&self) -> Result<u64, KafkaError> {
        let mut cursor = self.store.subscription_checkpoint(RELAY_CHECKPOINT).await?;
        let mut sent = 0;
        loop {
            let batch = self.store.read_all_stored(cursor, RELAY_BATCH).await?;
            let Some(last) = batch.last().map(RecordedEvent::cursor) else { return Ok(sent) };
            self.produce(&batch).await?;
            self.store.save_subscription_checkpoint(RELAY_CHECKPOINT, last).await?;
            cursor = last;
            sent += batch.len() as u64;
        }
    }

    async fn produce(&self, batch: &[RecordedEvent]) -> Result<(), KafkaError> {
        // Enqueue the whole batch in log order (the idempotent producer keeps
        // that order through retries), then wait for every acknowledgement.
        let mut deliveries = Vec::with_capacity(batch.len());
        for e in batch {
            let value = serde_json::to_vec(e).expect("events serialize");
            let key = e.stream_id.to_string();
            let position = e.position.to_string();
            let event_id = e.event_id.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: "event_id", value: Some(event_id.as_bytes()) })
                .insert(Header { key: "event_type", value: Some(e.event_type.as_bytes()) })
                .insert(Header { key: "tenant", value: Some(e.tenant_id.as_str().as_bytes()) })
                .insert(Header { key: "position", value: Some(position.as_bytes()) });
            let mut record = FutureRecord::to(&self.topic).key(&key).payload(&value).headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_cancelled) => return Err(rdkafka::error::KafkaError::Canceled.into()),
            }
        }
        Ok(())
    }

    /// Relays until the task is dropped, waking on local appends and
    /// polling for others' every 100 ms; a failed batch is retried after 1 s.
    pub async fn run(&self) {
        let mut changes = self.store.changes();
        loop {
            match self.relay_available().await {
                Ok(_) => {
                    let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
                }
                Err(e) => {
                    ERRORS.relay.add(1);
                    tracing::warn!(error = %e, "relay batch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Topic → events, as a member of a consumer group. Offsets are committed
/// after the caller has made a batch durable ([`KafkaFeed::commit`]); what
/// is redelivered after a crash is deduplicated by the caller's checkpoint.
pub struct KafkaFeed {
    consumer: StreamConsumer,
    /// Holds the keys the events' personal fields are decrypted with.
    store: EventStore,
}

impl std::fmt::Debug for KafkaFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFeed").finish_non_exhaustive()
    }
}

impl KafkaFeed {
    /// A consumer of `topic` in `group`; `store` is the store the relay
    /// reads (its keys decrypt the events).
    pub fn new(store: EventStore, brokers: &str, topic: &str, group: &str) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = config(brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[topic])?;
        Ok(Self { consumer, store })
    }

    /// The next events, readable (personal fields decrypted): waits for
    /// one, then takes what else arrives within `linger` (at most `max`).
    pub async fn next_batch(&self, max: usize, linger: Duration) -> Result<Vec<RecordedEvent>, KafkaError> {
        let mut out = Vec::new();
        while out.is_empty() {
            if let Some(m) = self.recv().await? {
                out.push(m);
            }
        }
        let deadline = tokio::time::Instant::now() + linger;
        while out.len() < max {
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(message) => out.extend(message?),
                Err(_) => break,
            }
        }
        self.store.decrypt(&mut out).await?;
        Ok(out)
    }

    /// One message, or `None` for a consumption error librdkafka recovers
    /// from by itself (all brokers down while one restarts, a transport
    /// failure): those are logged and waited out, not returned.
    async fn recv(&self) -> Result<Option<RecordedEvent>, KafkaError> {
        match self.consumer.recv().await {
            Ok(m) => decode(&m).map(Some),
            Err(rdkafka::error::KafkaError::MessageConsumption(code)) => {
                ERRORS.consumer.add(1);
                tracing::warn!(?code, "kafka consumer: waiting for the brokers");
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Commits the offsets of everything returned so far.
    pub fn commit(&self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Async) {
            // Nothing consumed since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => Ok(other?),
        }
    }
}

fn decode(m: &rdkafka::message::BorrowedMessage<'_>) -> Result<RecordedEvent, KafkaError> {
    let bad = |message: String| KafkaError::BadMessage { offset: m.offset(), message };
    let payload = m.payload().ok_or_else(|| bad("empty message".into()))?;
    let event: RecordedEvent = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    // The header must agree with the envelope: a cheap guard against a
    // topic shared with something else.
    let header_id =
        m.headers().and_then(|h| h.iter().find(|h| h.key == "event_id").and_then(|h| h.value.map(|v| v.to_vec())));
    if header_id.as_deref() != Some(event.event_id.to_string().as_bytes()) {
        return Err(bad("event_id header does not match the envelope".into()));
    }
    Ok(event)
}
