//! Distributed mode against a real Kafka-protocol broker (tansu, started
//! here by the test on loopback): the outbox relay carries a scripted day to
//! the topic while the broker is killed and restarted mid-way; the read
//! models fed from the topic must end identical to the ones fed straight
//! from the store — nothing lost, nothing doubled — and a plain Kafka client
//! (kcat) must read and decode the events, their personal fields encrypted.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::DateTime;
use common::*;
use witness_engine::kafka::{create_topic, KafkaFeed, OutboxRelay};
use witness_engine::EventStore;
use witness_projections::{models, Projector};
use witness_workload::{run_day, DayPlan};

struct Broker {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Broker {
    /// A broker on `port` keeping its topics in `dir/tansu.db`, so that they
    /// survive a restart (tansu resolves the sqlite URL against its working
    /// directory).
    fn start(port: u16, dir: &std::path::Path) -> Broker {
        let tansu = std::env::var("WITNESS_TEST_TANSU")
            .expect("WITNESS_TEST_TANSU is not set: run the tests with scripts/test.sh, which installs tansu");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu)
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child: Some(child), port, dir: dir.to_owned() }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let dir = self.dir.clone();
        *self = Broker::start(self.port, &dir);
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_models_fed_through_kafka_survive_a_broker_restart_and_match_the_embedded_ones() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(free_port(), dir.path());
    let brokers = broker.address();
    let topic = "witness.events.test";
    create_topic(&brokers, topic).await.unwrap();

    let source = sqlite().await;
    // The Kafka-fed read models live in a database of their own.
    let kafka_url = format!("sqlite://{}/kafka-fed.db", dir.path().display());
    EventStore::connect(&kafka_url).await.unwrap(); // creates the tables
    let fed = Projector::connect(&kafka_url, models::all()).await.unwrap();

    let relay = OutboxRelay::new(source.store.clone(), &brokers, topic).unwrap();
    let relay_task = tokio::spawn(async move { relay.run().await });
    let feed = KafkaFeed::new(source.store.clone(), &brokers, topic, "witness-projections-test").unwrap();
    let (reached_tx, reached) = tokio::sync::watch::channel(witness_schemas::Cursor::START);
    let consumer = tokio::spawn(async move {
        fed.run_kafka(&feed, |c| {
            let _ = reached_tx.send(c);
        })
        .await
    });

    let plan = DayPlan {
        tenant: tenant(),
        sessions: 80,
        agents: 8,
        seed: 11,
        start: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        language: witness_workload::Language::Chinese,
    };
    let store = source.store.clone();
    let day = tokio::spawn(async move { run_day(&store, &plan, |_| {}).await.unwrap() });
    // Kill the broker once a third of the day is in the store, bring it back.
    while source.store.count().await.unwrap() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    let report = day.await.unwrap();
    let head = source.store.read_all(witness_schemas::Cursor::START, 1_000_000).await.unwrap();
    let last = head.last().unwrap().cursor();
    assert_eq!(head.len() as u64, report.events);

    let mut reached = reached;
    let deadline = Instant::now() + Duration::from_secs(120);
    while *reached.borrow() < last {
        assert!(!consumer.is_finished(), "the Kafka-fed projector stopped: {:?}", consumer.await);
        assert!(Instant::now() < deadline, "the Kafka-fed read models stalled at {}", *reached.borrow());
        let _ = tokio::time::timeout(Duration::from_secs(1), reached.changed()).await;
    }
    // Wait for both to be dropped while the broker still runs: an rdkafka
    // consumer dropped after the broker is gone blocks in its close, and
    // the test then hung at runtime shutdown.
    relay_task.abort();
    consumer.abort();
    let _ = relay_task.await;
    let _ = consumer.await;
    // The broker's absence was met and counted (`/metrics`'
    // witness_kafka_errors_total).
    let errors = &witness_engine::kafka::ERRORS;
    assert!(errors.consumer.get() + errors.relay.get() > 0, "{errors:?}");

    let embedded = Projector::connect(&source.url, models::all()).await.unwrap();
    embedded.catch_up(&source.store, |_| {}).await.unwrap();
    let fed = Projector::connect(&kafka_url, models::all()).await.unwrap();
    for table in embedded.tables() {
        assert_eq!(fed.dump(table).await.unwrap(), embedded.dump(table).await.unwrap(), "{table} differs");
    }
    assert_eq!(fed.dump("audit_trail").await.unwrap().len() as u64, report.events);
    // The fed audit trail, in its own database, shows the events from the store.
    let role = witness_schemas::Role::Compliance;
    let fed_trail = fed.audit(&source.store, &tenant(), role, 0, 100_000).await.unwrap();
    assert_eq!(fed_trail, embedded.audit(&source.store, &tenant(), role, 0, 100_000).await.unwrap());
    assert_eq!(fed_trail.len() as u64, report.events);

    // A plain Kafka client reads the topic and every message decodes as JSON.
    let out = Command::new("kcat")
        .args(["-b", &brokers, "-t", topic, "-C", "-e", "-o", "beginning", "-q", "-f", "%k\t%s\n"])
        .output()
        .expect("kcat (installed by scripts/test.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut positions = std::collections::BTreeSet::new();
    let mut texts = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (key, value) = line.split_once('\t').unwrap();
        let event: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(event["stream_id"], key);
        assert!(event["payload"].is_object() && event["event_type"].is_string());
        positions.insert(event["position"].as_u64().unwrap());
        // Personal fields travel as stored, encrypted with the session's key
        // (the fed read models above were built from them decrypted).
        if event["event_type"] == "CustomerMessage" {
            if let Some(text) = event["payload"]["content"]["text"].as_str() {
                assert!(text.starts_with(witness_engine::shred::ENCRYPTED), "a message in clear on the topic: {text}");
                texts += 1;
            }
        }
    }
    assert!(texts > 0, "the day's customers wrote text messages");
    // Every event is there (the relay may have sent a batch twice around the restart).
    assert_eq!(positions.len() as u64, report.events);
}
