//! The outbox relay against a real Kafka-protocol broker (tansu): every
//! committed event arrives once, keyed by customer, in each customer's order,
//! through two relays, a broker outage and a refused event.

use std::{collections::HashMap, time::Duration};

use c360_proto::v1 as pb;
use c360_tests::{PrivateKafka, Received, TENANT, TestApp, TestDb, consume, partitions};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{create, outbox, person, set_segment};

const CREATED: &str = "crm.customer360.profile.created";
const UPDATED: &str = "crm.customer360.profile.updated";
const CONSENT: &str = "crm.customer360.consent.updated";
const ALL_TOPICS: [&str; 6] = [
    CREATED,
    UPDATED,
    "crm.customer360.profile.merged",
    CONSENT,
    "crm.customer360.profile.unmerged",
    "crm.customer360.profile.erased",
];

async fn app_with(kafka: &PrivateKafka, flags: &[&str]) -> TestApp {
    let brokers = kafka.brokers();
    let mut all = vec!["--kafka-brokers", brokers.as_str(), "--relay-lease", "3s"];
    all.extend_from_slice(flags);
    TestApp::spawn_with(TestDb::postgres().await, &all).await
}

/// How many outbox rows there are.
async fn committed(db: &DatabaseConnection) -> usize {
    outbox(db).await.len()
}

/// eventId → how often it arrived.
fn arrivals(received: &[Received]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for message in received {
        *seen.entry(message.value["eventId"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    seen
}

/// Asserts that each customer's events arrived (first deliveries) in the
/// order they were committed: the order of their outbox rows.
fn assert_customer_order(committed: &[serde_json::Value], received: &[Received]) {
    let committed_order: Vec<String> =
        committed.iter().map(|e| e["eventId"].as_str().unwrap_or_default().to_owned()).collect();
    let rank: HashMap<&str, usize> = committed_order.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut by_key_topic: HashMap<(String, String), Vec<usize>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut sorted = received.to_vec();
    sorted.sort_by_key(|m| (m.topic.clone(), m.partition, m.offset));
    for message in &sorted {
        let id = message.value["eventId"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id.clone()) {
            continue;
        }
        let at = *rank.get(id.as_str()).unwrap_or_else(|| panic!("{id} was never committed"));
        by_key_topic.entry((message.key.clone(), message.topic.clone())).or_default().push(at);
    }
    for ((key, topic), ranks) in by_key_topic {
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "customer {key} on {topic}: arrival order {ranks:?}");
    }
}

#[tokio::test]
async fn every_event_arrives_once_keyed_by_customer_with_headers_on_the_seed_topics() {
    let kafka = PrivateKafka::start().await;
    let app = app_with(&kafka, &[]).await;
    let mut client = app.agent();
    let ada = client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner();
    client.update_profile(set_segment(&ada.id, "VIP", "")).await.expect("update");
    let mut consents = app.consents(TENANT, &[c360_server::auth::Role::Agent]);
    consents
        .set_consent(pb::SetConsentRequest {
            profile_id: ada.id.clone(),
            purpose: pb::ConsentPurpose::EmailMarketing as i32,
            status: pb::ConsentStatus::Granted as i32,
            source: "signup-form".into(),
            ..Default::default()
        })
        .await
        .expect("consent");

    let received = consume(&kafka.brokers(), &ALL_TOPICS, 3, Duration::from_secs(1), Duration::from_secs(60)).await;
    assert_eq!(partitions(&kafka.brokers(), &ALL_TOPICS), [6, 6, 6, 3, 6, 6], "seed 004's partition counts");
    let db = app.db.connect().await;
    let envelopes = outbox(&db).await;
    assert_eq!(received.len(), 3, "{received:#?}");
    for message in &received {
        let envelope = envelopes
            .iter()
            .find(|e| e["eventId"] == message.value["eventId"])
            .unwrap_or_else(|| panic!("{:?} not in the outbox", message.value));
        assert_eq!(&message.value, envelope, "the value is the stored envelope");
        let topic = match envelope["eventType"].as_str() {
            Some("CustomerProfileCreatedEvent") => CREATED,
            Some("CustomerProfileUpdatedEvent") => UPDATED,
            _ => CONSENT,
        };
        assert_eq!(message.topic, topic);
        assert_eq!(message.key, ada.id, "keyed by customer id");
        let header = |name: &str| message.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("eventType").as_deref(), envelope["eventType"].as_str());
        assert_eq!(header("eventId").as_deref(), envelope["eventId"].as_str());
        assert_eq!(header("tenantId").as_deref(), Some(TENANT));
    }
    eventually!(app.metric("c360_outbox_published_total").await >= 3.0);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_and_concurrent_writers_keep_each_customers_order_without_duplicates() {
    let kafka = PrivateKafka::start().await;
    let first = app_with(&kafka, &[]).await;
    let second = first.sibling(&[]).await;
    // Both relays publish: the lanes are shared once each saw the other.
    eventually!(
        first.metric("c360_outbox_lanes_held").await == 8.0 && second.metric("c360_outbox_lanes_held").await == 8.0
    );

    let mut ids = Vec::new();
    for i in 0..12 {
        let email = format!("writer{i}@example.com");
        let created = first.agent().create_profile(create(person("W", "Riter", &email))).await.expect("create");
        ids.push(created.into_inner().id);
    }
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut client = if w % 2 == 0 { first.agent() } else { second.agent() };
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..25 {
                let id = &ids[(w * 7 + round * 5) % ids.len()];
                client.update_profile(set_segment(id, &format!("S{w}-{round}"), "")).await.expect("update");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let db = first.db.connect().await;
    let expected = committed(&db).await;
    let received =
        consume(&kafka.brokers(), &[CREATED, UPDATED], expected, Duration::from_secs(2), Duration::from_secs(90)).await;
    let seen = arrivals(&received);
    let committed_ids: std::collections::HashSet<String> =
        outbox(&db).await.iter().map(|e| e["eventId"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(
        seen.keys().cloned().collect::<std::collections::HashSet<_>>(),
        committed_ids,
        "exactly the committed events"
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "no event arrived twice");
    assert_customer_order(&outbox(&db).await, &received);
    // Versions within one customer rise in arrival order too.
    let mut last_version: HashMap<String, i64> = HashMap::new();
    let mut updates: Vec<&Received> = received.iter().filter(|m| m.topic == UPDATED).collect();
    updates.sort_by_key(|m| (m.partition, m.offset));
    for message in updates {
        let version = message.value["payload"]["version"].as_i64().expect("version");
        let previous = last_version.insert(message.key.clone(), version).unwrap_or(0);
        assert!(version > previous, "customer {}: version {version} after {previous}", message.key);
    }
    let published =
        first.metric("c360_outbox_published_total").await + second.metric("c360_outbox_published_total").await;
    assert!(first.metric("c360_outbox_published_total").await > 0.0, "the first relay published");
    let lanes = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT lane, owner, published_pos FROM outbox_lanes ORDER BY lane",
        ))
        .await
        .expect("lanes");
    let lanes: Vec<(i16, Option<String>, i64)> = lanes
        .iter()
        .map(|r| {
            (
                r.try_get("", "lane").expect("lane"),
                r.try_get("", "owner").expect("owner"),
                r.try_get("", "published_pos").expect("pos"),
            )
        })
        .collect();
    let per_lane = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT lane, COUNT(*) AS n FROM outbox GROUP BY lane ORDER BY lane",
        ))
        .await
        .expect("per lane");
    let per_lane: Vec<(i16, i64)> =
        per_lane.iter().map(|r| (r.try_get("", "lane").expect("lane"), r.try_get("", "n").expect("n"))).collect();
    assert!(
        second.metric("c360_outbox_published_total").await > 0.0,
        "the second relay published: {lanes:?} {per_lane:?}"
    );
    assert_eq!(published as usize, expected);
    drop(second);
    first.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_succeed_while_the_broker_is_frozen_and_the_relay_catches_up() {
    let kafka = PrivateKafka::start().await;
    let app = app_with(&kafka, &["--outbox-retention", "4s"]).await;
    let mut client = app.agent();
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = client.create_profile(create(person("Before", "Outage", &format!("b{i}@example.com")))).await;
        ids.push(created.expect("create").into_inner().id);
    }
    let db = app.db.connect().await;
    eventually!(app.metric("c360_outbox_published_total").await >= 5.0);
    // Published, these may be pruned after the retention: keep them for the
    // order check.
    let mut committed_events = outbox(&db).await;

    kafka.pause().await;
    for round in 0..4 {
        for id in &ids {
            client.update_profile(set_segment(id, &format!("R{round}"), "")).await.expect("write during the outage");
        }
        let created = client.create_profile(create(person("During", "Outage", &format!("d{round}@example.com")))).await;
        created.expect("create during the outage");
    }
    assert!(c360_tests::http_get(app.http_addr, "/readyz").await.starts_with("HTTP/1.1 200"), "still ready");
    // Past the retention (4 s), unpublished events stay.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(app.metric("c360_outbox_lag_seconds").await >= 1.0, "the lag shows the outage");
    assert_eq!(unpublished(&db).await, 24, "events wait in the outbox, past their retention but unpublished");
    for envelope in outbox(&db).await {
        if !committed_events.iter().any(|e| e["eventId"] == envelope["eventId"]) {
            committed_events.push(envelope);
        }
    }
    assert_eq!(committed_events.len(), 5 + 24);
    kafka.resume().await;

    let expected = 5 + 24;
    let received =
        consume(&kafka.brokers(), &[CREATED, UPDATED], expected, Duration::from_secs(2), Duration::from_secs(120))
            .await;
    let seen = arrivals(&received);
    assert_eq!(seen.len(), expected, "every committed event arrived");
    assert_eq!(seen.values().map(|n| n - 1).sum::<usize>(), 0, "no duplicates after a pause");
    assert_customer_order(&committed_events, &received);
    eventually!(app.metric("c360_outbox_lag_seconds").await == 0.0);
    // Published and past the retention: pruned.
    eventually!(committed(&db).await == 0);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_larger_than_a_round_with_idle_lanes_drains_completely() {
    let kafka = PrivateKafka::start().await;
    // Rounds of 5 events, three customers: most of the 16 lanes never see an
    // event, and must not hold the others back.
    let app = app_with(&kafka, &["--relay-batch", "5"]).await;
    let mut client = app.agent();
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = client.create_profile(create(person("Few", "Lanes", &format!("f{i}@example.com")))).await;
        ids.push(created.expect("create").into_inner().id);
    }
    for round in 0..10 {
        for id in &ids {
            client.update_profile(set_segment(id, &format!("S{round}"), "")).await.expect("update");
        }
    }
    let db = app.db.connect().await;
    let expected = committed(&db).await;
    assert_eq!(expected, 33);
    let received =
        consume(&kafka.brokers(), &[CREATED, UPDATED], expected, Duration::from_secs(1), Duration::from_secs(60)).await;
    assert_eq!(arrivals(&received).len(), expected, "every event, round after round");
    assert_customer_order(&outbox(&db).await, &received);
    eventually!(app.metric("c360_outbox_lag_seconds").await == 0.0);
    app.stop().await.expect("stop");
}

/// Rows above their lane's acknowledged position.
async fn unpublished(db: &DatabaseConnection) -> i64 {
    let sql = "SELECT COUNT(*) AS n FROM outbox o JOIN outbox_lanes l ON l.lane = o.lane \
               WHERE o.pos IS NULL OR o.pos > l.published_pos";
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("count");
    row.expect("row").try_get("", "n").expect("n")
}

async fn outbox_cli(db: &TestDb, args: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    let mut all = vec!["c360", "outbox"];
    all.extend_from_slice(args);
    all.extend(["--database-url", &db.url]);
    let cli = c360_server::cli::Cli::try_parse_from(all)?;
    let mut out = Vec::new();
    cli.run_to(&mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_event_is_parked_and_holds_back_only_its_customer_until_an_operator_acts() {
    let kafka = PrivateKafka::start().await;
    // The broker's client refuses messages over 1,000 bytes.
    let app = app_with(&kafka, &["--kafka-option", "message.max.bytes=1000"]).await;
    let mut client = app.agent();
    let wide = "山".repeat(200);
    let big = client.create_profile(create(person(&wide, &wide, "big@example.com"))).await.expect("create");
    let big = big.into_inner();
    let small = client.create_profile(create(person("Small", "One", "small@example.com"))).await.expect("create");
    let small = small.into_inner();
    client.update_profile(set_segment(&big.id, "A", "")).await.expect("update behind the refused event");
    client.update_profile(set_segment(&small.id, "A", "")).await.expect("update of another customer");
    client.update_profile(set_segment(&big.id, "B", "")).await.expect("update behind the refused event");

    eventually!(app.metric("c360_outbox_parked").await == 1.0);
    let received =
        consume(&kafka.brokers(), &[CREATED, UPDATED], 2, Duration::from_secs(1), Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2, "the other customer's events flow");
    assert!(received.iter().all(|m| m.key == small.id));

    let listed = outbox_cli(&app.db, &["list"]).await.expect("list");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].contains("CustomerProfileCreatedEvent") && lines[0].contains("refused"), "{listed}");
    assert!(lines[0].to_lowercase().contains("size"), "the reason names the size: {listed}");
    let refused: i64 = lines[0].split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("seq");
    assert!(lines[1..].iter().all(|l| l.contains(&format!("waits for {refused}")) && l.contains(&big.id)));

    // Retried unchanged, it is refused again and stays parked.
    outbox_cli(&app.db, &["retry", &refused.to_string()]).await.expect("retry");
    eventually!(!outbox_cli(&app.db, &["list"]).await.expect("list").contains("retry requested"));
    assert_eq!(outbox_cli(&app.db, &["list"]).await.expect("list").lines().count(), 3);
    outbox_cli(&app.db, &["skip", "12345678"]).await.expect_err("no such parked event");
    let held: &str = lines[1].split_whitespace().nth(1).expect("held seq");
    outbox_cli(&app.db, &["retry", held]).await.expect_err("a held event is not retried alone");
    outbox_cli(&app.db, &["skip", held]).await.expect_err("nor skipped alone");

    // Skipped: the held events follow, in order; the refused one never does.
    outbox_cli(&app.db, &["skip", &refused.to_string()]).await.expect("skip");
    eventually!(app.metric("c360_outbox_parked").await == 0.0);
    let received =
        consume(&kafka.brokers(), &[CREATED, UPDATED], 4, Duration::from_secs(1), Duration::from_secs(60)).await;
    let big_events: Vec<&Received> = received.iter().filter(|m| m.key == big.id).collect();
    assert_eq!(big_events.len(), 2, "{received:#?}");
    let versions: Vec<i64> = big_events.iter().map(|m| m.value["payload"]["version"].as_i64().unwrap_or(0)).collect();
    assert!(versions[0] < versions[1], "held events in order: {versions:?}");
    assert_eq!(outbox_cli(&app.db, &["list"]).await.expect("list").trim(), "no parked events");
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn without_a_broker_rows_are_kept_for_the_retention_then_pruned() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--outbox-retention", "3s"]).await;
    let mut client = app.agent();
    client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let db = app.db.connect().await;
    assert_eq!(committed(&db).await, 1, "kept at first");
    eventually!(committed(&db).await == 0);
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT pruned_through FROM outbox_state"))
        .await
        .expect("state")
        .expect("row");
    let pruned: i64 = row.try_get("", "pruned_through").expect("pruned_through");
    assert!(pruned >= 1, "the pruned position is recorded");
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_that_loses_its_broker_lets_its_lanes_go_to_one_that_has_it() {
    let reachable = PrivateKafka::start().await;
    let lost = PrivateKafka::start().await;
    let first = app_with(&reachable, &[]).await;
    // Same database, another broker (as if its network to Kafka broke).
    let lost_brokers = lost.brokers();
    let second = first.sibling(&["--kafka-brokers", &lost_brokers]).await;
    eventually!(
        first.metric("c360_outbox_lanes_held").await == 8.0 && second.metric("c360_outbox_lanes_held").await == 8.0
    );
    lost.pause().await;
    let mut client = first.agent();
    for i in 0..24 {
        client.create_profile(create(person("Lane", "Move", &format!("m{i}@example.com")))).await.expect("create");
    }
    // Three leases (3 s each) without progress, then the lease lapses and
    // the first relay takes every lane: all events reach the reachable broker.
    let received = consume(&reachable.brokers(), &[CREATED], 24, Duration::from_secs(1), Duration::from_secs(60)).await;
    assert_eq!(arrivals(&received).len(), 24, "every event, the cut-off instance's lanes included");
    eventually!(first.metric("c360_outbox_lanes_held").await == 16.0);
    lost.resume().await;
    drop(second);
    first.stop().await.expect("stop");
}

#[tokio::test]
async fn the_embedded_default_relays_too() {
    let kafka = PrivateKafka::start().await;
    let brokers = kafka.brokers();
    let app = TestApp::spawn_with(TestDb::sqlite(), &["--kafka-brokers", &brokers]).await;
    let mut client = app.agent();
    let ada = client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner();
    client.update_profile(set_segment(&ada.id, "VIP", "")).await.expect("update");
    let received = consume(&brokers, &[CREATED, UPDATED], 2, Duration::from_secs(1), Duration::from_secs(60)).await;
    assert_eq!(arrivals(&received).len(), 2);
    assert!(received.iter().all(|m| m.key == ada.id));
    assert_customer_order(&outbox(&app.db.connect().await).await, &received);
    app.stop().await.expect("stop");
}

/// The relay speaks TLS to the broker (tansu behind a TLS proxy; the broker
/// is reachable no other way): events are acknowledged through it, and a
/// broker whose certificate the relay's CA did not sign gets nothing.
#[tokio::test]
async fn the_relay_publishes_over_tls_and_verifies_the_broker() {
    use c360_tests::tls::{TestCa, TlsKafka};
    let ca = TestCa::new("c360 test CA");
    let kafka = TlsKafka::start(&ca).await;
    let brokers = kafka.brokers();
    let stranger = TestCa::new("another CA");
    let mut apps = Vec::new();
    for trusted in [&ca, &stranger] {
        let ca_file = trusted.cert.to_str().expect("utf-8 path");
        let flags = ["--kafka-brokers", &brokers, "--kafka-security-protocol", "ssl", "--kafka-ssl-ca-file", ca_file];
        let app = TestApp::spawn_with(TestDb::postgres().await, &flags).await;
        app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
        apps.push(app);
    }
    let (verified, refused) = (&apps[0], &apps[1]);
    eventually!(verified.metric("c360_outbox_published_total").await >= 1.0);
    let db = verified.db.connect().await;
    eventually!(unpublished(&db).await == 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refused.metric("c360_outbox_published_total").await, 0.0, "an unknown CA's broker gets nothing");
    assert!(unpublished(&refused.db.connect().await).await > 0, "its event waits in the outbox");
    for app in apps {
        app.stop().await.expect("stop");
    }
}
