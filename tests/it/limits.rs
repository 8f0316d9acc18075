//! Load limits (network issue, item 2): streams per connection, the
//! in-flight bound that sheds with UNAVAILABLE, token buckets per subject and
//! per tenant, and open change streams per subject. Each was found by
//! reading the landed code: one token could open unlimited streams and calls.

use std::time::Duration;

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{Bearer, EventClient, TENANT, TestApp, TestDb};
use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn watch_request() -> pb::WatchChangesRequest {
    pb::WatchChangesRequest { after_position: String::new(), profile_id: String::new() }
}

fn get(id: &str) -> pb::GetProfileRequest {
    pb::GetProfileRequest { id: id.into() }
}

/// The `ErrorInfo` reason and `RetryInfo` delay of a refusal.
fn refusal(status: &Status) -> (String, Duration) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|info| info.reason.clone()).unwrap_or_default();
    let retry = details.retry_info().and_then(|info| info.retry_delay).unwrap_or_default();
    (reason, retry)
}

#[tokio::test]
async fn one_connection_carries_a_bounded_number_of_concurrent_streams() {
    let flags = ["--max-concurrent-streams", "2", "--max-watch-streams", "0"];
    let app = TestApp::spawn_with(TestDb::postgres().await, &flags).await;
    let mut events = app.events_on_own_connection(TENANT, &[Role::Service]).await;
    let first = events.watch_changes(watch_request()).await.expect("first stream");
    let _second = events.watch_changes(watch_request()).await.expect("second stream");
    let mut third = Box::pin(events.watch_changes(watch_request()));
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut third).await.is_err(),
        "a third stream on the connection must wait for one of the two to end"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third stream opens once the first ended")
        .expect("third stream");
}

#[tokio::test]
async fn calls_beyond_the_in_flight_bound_are_shed_at_once_with_unavailable() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--max-in-flight", "2"]).await;
    // Two reads held up by a lock fill the bound.
    let db = app.db.connect().await;
    let lock = db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut client = app.agent();
            tokio::spawn(async move { client.get_profile(get(&uuid::Uuid::now_v7().to_string())).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut client = app.agent();
    // A probe admitted before both held reads arrived would wait on the lock
    // too: its own deadline ends it.
    let probe = || {
        let mut request = tonic::Request::new(get(&uuid::Uuid::now_v7().to_string()));
        request.set_timeout(Duration::from_secs(1));
        request
    };
    let mut shed = None;
    for _ in 0..30 {
        match client.get_profile(probe()).await {
            Err(status) if status.code() == Code::Unavailable => {
                shed = Some(status);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let status = shed.expect("a third call is shed while two are in flight");
    let (reason, retry) = refusal(&status);
    assert_eq!(reason, "OVERLOADED", "{status:?}");
    assert!(retry > Duration::ZERO, "a retry delay: {status:?}");
    let started = std::time::Instant::now();
    let again = client.get_profile(probe()).await.expect_err("still full");
    assert_eq!(again.code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(2), "shed at once, not queued");

    // Health checks are never shed: an overloaded instance is alive.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    assert!(answer.is_ok(), "health answered while full: {answer:?}");
    assert!(app.metric("c360_limits_refused_total{reason=\"overloaded\"}").await >= 2.0);

    lock.rollback().await.expect("unlock");
    for call in held {
        let answer = call.await.expect("task");
        assert_eq!(answer.expect_err("unknown id").code(), Code::NotFound, "the held reads finish normally");
    }
    let answer = client.get_profile(get(&uuid::Uuid::now_v7().to_string())).await;
    assert_eq!(answer.expect_err("unknown id").code(), Code::NotFound, "admitted again once there is room");
}

#[tokio::test]
async fn subjects_and_tenants_each_have_a_token_bucket() {
    // One token every 100 s: nothing refills while the test runs.
    let flags = [
        "--subject-rate-limit",
        "0.01",
        "--subject-rate-burst",
        "3",
        "--tenant-rate-limit",
        "0.01",
        "--tenant-rate-burst",
        "5",
    ];
    let app = TestApp::spawn_with(TestDb::postgres().await, &flags).await;
    let client_as = |subject: &str, tenant: &str| {
        let token = app.token_as(subject, tenant, &[Role::Agent]);
        c360_proto::v1::profile_service_client::ProfileServiceClient::with_interceptor(
            app.channel(),
            Bearer::new(&token),
        )
    };
    let missing = uuid::Uuid::now_v7().to_string();
    let mut alice = client_as("alice", TENANT);
    for _ in 0..3 {
        let answer = alice.get_profile(get(&missing)).await.expect_err("unknown id");
        assert_eq!(answer.code(), Code::NotFound, "within alice's burst");
    }
    let status = alice.get_profile(get(&missing)).await.expect_err("alice's bucket is empty");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, retry) = refusal(&status);
    assert_eq!(reason, "RATE_LIMITED", "{status:?}");
    assert!(retry > Duration::from_secs(10) && retry <= Duration::from_secs(100), "when a token is free: {retry:?}");
    assert_eq!(
        status.get_error_details().error_info().map(|i| i.metadata["bucket"].clone()).as_deref(),
        Some("subject")
    );

    // Bob, in the same tenant, has a bucket of his own, but the tenant's
    // (5) is shared: alice took 3 of it.
    let mut bob = client_as("bob", TENANT);
    for _ in 0..2 {
        assert_eq!(bob.get_profile(get(&missing)).await.expect_err("unknown").code(), Code::NotFound);
    }
    let status = bob.get_profile(get(&missing)).await.expect_err("the tenant's bucket is empty");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.get_error_details().error_info().map(|i| i.metadata["bucket"].clone()).as_deref(),
        Some("tenant")
    );

    // Another tenant is untouched.
    let mut other = client_as("alice", "other-tenant");
    assert_eq!(other.get_profile(get(&missing)).await.expect_err("unknown").code(), Code::NotFound);
    assert!(app.metric("c360_limits_refused_total{reason=\"subject_rate\"}").await >= 1.0);
    assert!(app.metric("c360_limits_refused_total{reason=\"tenant_rate\"}").await >= 1.0);
}

#[tokio::test]
async fn without_configured_rates_nobody_is_rate_limited() {
    let app = TestApp::spawn_on(TestDb::sqlite()).await;
    let mut client = app.agent();
    let missing = uuid::Uuid::now_v7().to_string();
    for _ in 0..200 {
        assert_eq!(client.get_profile(get(&missing)).await.expect_err("unknown").code(), Code::NotFound);
    }
}

#[tokio::test]
async fn a_subject_holds_a_bounded_number_of_open_change_streams() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--max-watch-streams", "2"]).await;
    let token = app.token_as("feed-reader", TENANT, &[Role::Service]);
    let mut events: EventClient = app.events_with_token(&token);
    let first = events.watch_changes(watch_request()).await.expect("first");
    let _second = events.watch_changes(watch_request()).await.expect("second");
    let status = events.watch_changes(watch_request()).await.expect_err("a third is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(refusal(&status).0, "TOO_MANY_STREAMS");

    // Another subject is not held to feed-reader's streams.
    let other = app.token_as("another-reader", TENANT, &[Role::Service]);
    app.events_with_token(&other).watch_changes(watch_request()).await.expect("another subject's stream");

    // Hanging up gives the slot back.
    drop(first);
    eventually!(events.watch_changes(watch_request()).await.is_ok());
}
