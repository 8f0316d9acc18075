//! The outbox relay against a bare librdkafka producer, in one sitting, on
//! one broker:
//!
//! 1. **bare**: the `rdkafka` producer alone (idempotent, `acks=all`, the
//!    relay's settings) sends N envelopes of a typical size and waits for
//!    every acknowledgement;
//! 2. **drain**: N committed outbox rows (written through units of work,
//!    1,000 per transaction) are published by c360's stamper and relay until
//!    the broker acknowledged the last one;
//! 3. **latency**: single-event transactions at a fixed rate, each timed from
//!    its commit returning to a consumer receiving it from the broker.
//!
//! Run: `bench/relay.sh` (starts a private tansu), or
//! `cargo bench -p c360-server --bench relay -- --brokers 127.0.0.1:9092
//! --admin-url postgres://root@127.0.0.1/postgres [--rows 100000] [--rate 1000] [--seconds 10]`.
//! It creates (and drops first) the database `c360_relay_bench`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use c360_server::{
    cache::ProfileCache,
    config::{KafkaArgs, KafkaSecurity},
    domain::{
        ProfileId, TenantId,
        events::{CustomerProfileUpdated, DomainEvent, EventPayload, PROFILE_UPDATED_SUBJECT},
    },
    metrics::OutboxMetrics,
    outbox::{Relay, RelayConfig, Stamper, kafka::KafkaSink, sink::EventSink},
    store::{SqliteDurability, Store, outbox},
};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use sea_orm::{ConnectionTrait, Database};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct Args {
    brokers: String,
    admin_url: String,
    rows: usize,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        brokers: "127.0.0.1:9092".into(),
        admin_url: "postgres://root@127.0.0.1/postgres".into(),
        rows: 100_000,
        rate: 1_000,
        seconds: 10,
    };
    let raw: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < raw.len() {
        let value = raw.get(i + 1).cloned().unwrap_or_default();
        match raw[i].as_str() {
            "--brokers" => args.brokers = value,
            "--admin-url" => args.admin_url = value,
            "--rows" => args.rows = value.parse().expect("--rows N"),
            "--rate" => args.rate = value.parse().expect("--rate N"),
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            // `cargo bench` passes `--bench`; anything else is ignored too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    args
}

/// A typical `CustomerProfileUpdatedEvent` about one of 10,000 customers.
fn event(tenant: &TenantId, customers: &[ProfileId], n: usize) -> DomainEvent {
    let customer = customers[n % customers.len()];
    let body = CustomerProfileUpdated {
        customer_id: customer.to_string(),
        changed_fields: vec!["segment", "addresses"],
        status: "ACTIVE",
        version: n as i64 + 2,
        updated_by: "bench-service".into(),
    };
    DomainEvent::new(tenant.clone(), customer, chrono::Utc::now(), EventPayload::ProfileUpdated(body))
}

fn kafka_args(brokers: &str) -> KafkaArgs {
    KafkaArgs {
        kafka_brokers: Some(brokers.to_owned()),
        kafka_security_protocol: KafkaSecurity::Plaintext,
        kafka_ssl_ca_file: None,
        kafka_ssl_cert_file: None,
        kafka_ssl_key_file: None,
        kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
        kafka_sasl_username: None,
        kafka_sasl_password_file: None,
        kafka_replication_factor: -1,
        kafka_message_timeout: Duration::from_secs(60),
        kafka_options: Vec::new(),
    }
}

async fn bare(brokers: &str, envelopes: &[(String, Vec<u8>)]) -> f64 {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin");
    let topic = NewTopic::new("bench.bare", 6, TopicReplication::Fixed(-1));
    let _ = admin.create_topics(&[topic], &AdminOptions::new()).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(envelopes.len());
    for (key, value) in envelopes {
        let mut record = FutureRecord::to("bench.bare").key(key.as_str()).payload(value.as_slice());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("acknowledged");
    }
    envelopes.len() as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let admin = Database::connect(&args.admin_url).await?;
    admin.execute_unprepared("DROP DATABASE IF EXISTS c360_relay_bench WITH (FORCE)").await?;
    admin.execute_unprepared("CREATE DATABASE c360_relay_bench").await?;
    let url = match args.admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/c360_relay_bench"),
        None => anyhow::bail!("--admin-url must name a database"),
    };
    let store = Store::connect(&url, 16, SqliteDurability::Full, ProfileCache::none()).await?;
    store.migrate().await?;
    let tenant = TenantId::parse("bench").map_err(anyhow::Error::msg)?;
    let customers: Vec<ProfileId> = (0..10_000).map(|_| ProfileId::generate()).collect();

    // 1. The bare producer.
    let envelopes: Vec<(String, Vec<u8>)> = (0..args.rows)
        .map(|n| {
            let event = event(&tenant, &customers, n);
            (event.aggregate_id.to_string(), event.envelope().to_string().into_bytes())
        })
        .collect();
    let size = envelopes.iter().map(|(_, v)| v.len()).sum::<usize>() / envelopes.len().max(1);
    let bare_rate = bare(&args.brokers, &envelopes).await;
    println!("bare rdkafka producer: {} messages of ~{size} bytes, {bare_rate:.0} msg/s", args.rows);

    // 2. The backlog, committed, then drained.
    for chunk in (0..args.rows).collect::<Vec<_>>().chunks(1_000) {
        let mut work = store.begin().await?;
        for n in chunk {
            work.record(event(&tenant, &customers, *n));
        }
        work.commit().await?;
    }
    while outbox::stamp(store.db(), 5_000).await?.count == 5_000 {}
    let sink = KafkaSink::new(&kafka_args(&args.brokers))?;
    sink.prepare().await.map_err(anyhow::Error::msg)?;
    let metrics = OutboxMetrics::default();
    let (stamped_tx, stamped_rx) = watch::channel(0);
    let stop = CancellationToken::new();
    let relay = Relay::new(store.db().clone(), sink, RelayConfig::default(), stamped_rx, metrics.clone());
    let started = Instant::now();
    let relay = tokio::spawn(relay.run(stop.clone()));
    while metrics.published.get() < args.rows as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_rate = args.rows as f64 / started.elapsed().as_secs_f64();
    println!(
        "c360 relay drain: {} committed rows in {:.2} s, {drain_rate:.0} msg/s = {:.0}% of the bare producer",
        args.rows,
        started.elapsed().as_secs_f64(),
        100.0 * drain_rate / bare_rate
    );

    // 3. Commit-to-consumer latency at a fixed write rate.
    let stamper =
        Stamper::new(store.db().clone(), store.outbox_written(), stamped_tx, Duration::from_secs(86_400), true);
    let stamper = tokio::spawn(stamper.run(stop.clone()));
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let consuming = CancellationToken::new();
    let consumer = {
        let (brokers, received, consuming) = (args.brokers.clone(), received.clone(), consuming.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "c360-relay-bench")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "5")
                .create()
                .expect("consumer");
            let mut assignment = rdkafka::TopicPartitionList::new();
            for partition in 0..6 {
                assignment
                    .add_partition_offset(PROFILE_UPDATED_SUBJECT, partition, rdkafka::Offset::End)
                    .expect("assign");
            }
            consumer.assign(&assignment).expect("assign");
            while !consuming.is_cancelled() {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    let at = Instant::now();
                    if let Some(Ok(value)) = message.payload_view::<str>()
                        && let Ok(envelope) = serde_json::from_str::<serde_json::Value>(value)
                        && let Some(id) = envelope["eventId"].as_str()
                    {
                        received.lock().expect("lock").insert(id.to_owned(), at);
                    }
                }
            }
        })
    };
    // Let the consumer find the end of each partition first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = args.rate * args.seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..total as usize {
        ticks.tick().await;
        let (store, committed, tenant, customers) =
            (store.clone(), committed.clone(), tenant.clone(), customers.clone());
        writers.spawn(async move {
            let event = event(&tenant, &customers, n);
            let id = event.event_id.to_string();
            let mut work = store.begin().await.expect("begin");
            work.record(event);
            work.commit().await.expect("commit");
            committed.lock().expect("lock").insert(id, Instant::now());
        });
    }
    while writers.join_next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().expect("lock").len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consuming.cancel();
    consumer.await?;
    let (committed, received) = (committed.lock().expect("lock").clone(), received.lock().expect("lock").clone());
    let mut latencies: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| received.get(id).map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "commit-to-consumer at {} writes/s for {} s: {} of {} received, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.rate,
        args.seconds,
        latencies.len(),
        total,
        pick(0.5).copied().unwrap_or(f64::NAN),
        pick(0.99).copied().unwrap_or(f64::NAN),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    stop.cancel();
    let _ = relay.await;
    let _ = stamper.await;
    store.close().await?;
    Ok(())
}
