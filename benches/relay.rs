//! Outbox relay throughput: 200,000 events from a SQLite store to a tansu
//! broker on loopback (memory storage), checkpoint after each acknowledged
//! batch. Baseline in the same run: the same messages, pre-serialised,
//! produced by a bare idempotent `acks=all` producer (no store reads, no
//! checkpoints) to another topic of the same broker.
//!
//!   WITNESS_TEST_TANSU=~/.cargo/bin/tansu cargo bench --bench relay   (scripts/bench.sh sets it)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use witness_engine::kafka::{create_topic, OutboxRelay, RELAY_BATCH};
use witness_engine::{EventStore, ExpectedVersion};
use witness_schemas::*;

const EVENTS: usize = 200_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("relay bench: run with `cargo bench --bench relay`");
        return;
    }
    let Ok(tansu) = std::env::var("WITNESS_TEST_TANSU") else {
        println!("relay bench skipped: set WITNESS_TEST_TANSU (scripts/bench.sh does)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let brokers = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(&format!("sqlite://{}/relay.db", dir.path().display())).await.unwrap();
        let tenant: TenantId = "bench".parse().unwrap();
        for b in 0..EVENTS / 1000 {
            let events = (0..1000)
                .map(|i| {
                    let text = format!("Question {}: how do I raise the limit on my card?", b * 1000 + i);
                    NewEvent::new(
                        CustomerMessage { message_id: MessageId::new(), content: MessageContent::Text { text } },
                        Actor::new(ActorKind::Customer, "visitor-7f3a"),
                    )
                })
                .collect();
            let stream = StreamId::session(SessionId::new());
            store.append(&tenant, &stream, ExpectedVersion::NO_STREAM, events).await.unwrap();
        }
        create_topic(&brokers, "relay.bench").await.unwrap();
        create_topic(&brokers, "relay.baseline").await.unwrap();

        let relay = OutboxRelay::new(store.clone(), &brokers, "relay.bench").unwrap();
        let t = Instant::now();
        let sent = relay.relay_available().await.unwrap();
        let relay_rate = sent as f64 / t.elapsed().as_secs_f64();
        assert_eq!(sent as usize, EVENTS);

        let all = store.read_all(Cursor::START, EVENTS).await.unwrap();
        let messages: Vec<(String, Vec<u8>)> =
            all.iter().map(|e| (e.stream_id.to_string(), serde_json::to_vec(e).unwrap())).collect();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let t = Instant::now();
        for chunk in messages.chunks(RELAY_BATCH) {
            let mut deliveries = Vec::new();
            for (key, value) in chunk {
                let mut record = FutureRecord::to("relay.baseline").key(key).payload(value);
                loop {
                    match producer.send_result(record) {
                        Ok(d) => break deliveries.push(d),
                        Err((_, back)) => {
                            record = back;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
            for d in deliveries {
                d.await.unwrap().unwrap();
            }
        }
        let base_rate = messages.len() as f64 / t.elapsed().as_secs_f64();
        println!("| measure ({EVENTS} events) | events/s |");
        println!("|---|---|");
        println!("| outbox relay: read, produce, await acks, checkpoint per {RELAY_BATCH} | {relay_rate:.0} |");
        println!("| baseline: bare producer, same messages, same batches | {base_rate:.0} |");
        println!("| ratio | {:.2} |", relay_rate / base_rate);
    });
    broker.kill().unwrap();
    broker.wait().unwrap();
}
