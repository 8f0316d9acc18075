//! `EventService.WatchChanges`: a tenant's events, history then live, in
//! commit order, resumable with no gap and no repeat.

use std::time::Duration;

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{EventClient, TENANT, TestApp, TestDb};
use tonic::{Code, Streaming};

use crate::{create, outbox, person, set_segment};

async fn watch(client: &mut EventClient, after: &str, profile: &str) -> Streaming<pb::ChangeEvent> {
    let request = pb::WatchChangesRequest { after_position: after.into(), profile_id: profile.into() };
    client.watch_changes(request).await.expect("subscribe").into_inner()
}

/// The next `n` events, failing after 20 s.
async fn next(stream: &mut Streaming<pb::ChangeEvent>, n: usize) -> Vec<pb::ChangeEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events within 20 s", events.len()));
        events.push(message.expect("stream").expect("stream ended early"));
    }
    events
}

/// The status a stream ends with, within `limit`.
async fn ending(stream: &mut Streaming<pb::ChangeEvent>, limit: Duration) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => panic!("the stream did not end within {limit:?}"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => return status,
        }
    }
}

on_both!(live_then_resumed, live_events_arrive_and_a_resume_continues_exactly_after_its_position);

async fn live_events_arrive_and_a_resume_continues_exactly_after_its_position(app: TestApp) {
    let mut writer = app.agent();
    let before = writer.create_profile(create(person("Not", "Seen", "before@example.com"))).await.expect("create");
    let before = before.into_inner();
    let mut events = app.events(TENANT, &[Role::Service]);
    let mut live = watch(&mut events, "", "").await;
    let ada = writer.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner();
    for segment in ["A", "B", "C"] {
        writer.update_profile(set_segment(&ada.id, segment, "")).await.expect("update");
    }
    let received = next(&mut live, 4).await;
    assert!(received.iter().all(|e| e.aggregate_id == ada.id), "only events after subscribing: {received:#?}");
    assert_eq!(received[0].event_type, "CustomerProfileCreatedEvent");
    assert_eq!(received[0].subject, "crm.customer360.profile.created");
    let envelopes = outbox(&app.db.connect().await).await;
    let stored = envelopes.iter().find(|e| e["eventId"] == received[1].event_id.as_str()).expect("stored");
    let payload = received[1].payload.as_ref().expect("payload");
    assert_eq!(
        c360_server::convert::struct_to_json(payload),
        *stored["payload"].as_object().expect("object"),
        "the payload is the envelope's"
    );
    assert_ne!(before.id, ada.id);
    drop(live);

    // Resume after the second event: history from there, then live.
    let mut resumed = watch(&mut events, &received[1].position, "").await;
    let history = next(&mut resumed, 2).await;
    assert_eq!(
        history.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        received[2..].iter().map(|e| &e.event_id).collect::<Vec<_>>()
    );
    writer.update_profile(set_segment(&ada.id, "D", "")).await.expect("update");
    let later = next(&mut resumed, 1).await;
    assert_eq!(later[0].payload.as_ref().map(|p| p.fields.contains_key("changedFields")), Some(true));
    assert!(
        later[0].position.parse::<i64>().expect("position") > history[1].position.parse::<i64>().expect("position")
    );
}

on_both!(one_profile_and_one_tenant, a_subscriber_sees_its_own_tenant_and_optionally_one_profile);

async fn a_subscriber_sees_its_own_tenant_and_optionally_one_profile(app: TestApp) {
    let mut one = app.events(TENANT, &[Role::Steward]);
    let mut theirs = app.events("other-tenant", &[Role::Admin]);
    let mut writer = app.agent();
    let a = writer.create_profile(create(person("A", "One", "a@example.com"))).await.expect("create").into_inner();
    let b = writer.create_profile(create(person("B", "Two", "b@example.com"))).await.expect("create").into_inner();
    let mut only_a = watch(&mut one, "", &a.id).await;
    let mut other_tenant = watch(&mut theirs, "", "").await;
    writer.update_profile(set_segment(&b.id, "X", "")).await.expect("update");
    writer.update_profile(set_segment(&a.id, "X", "")).await.expect("update");
    let got = next(&mut only_a, 1).await;
    assert_eq!(got[0].aggregate_id, a.id);
    let mut other_writer = app.client("other-tenant", Role::Agent);
    let c = other_writer.create_profile(create(person("C", "Three", "c@example.com"))).await.expect("create");
    let got = next(&mut other_tenant, 1).await;
    assert_eq!(got[0].aggregate_id, c.into_inner().id, "another tenant's events never reach this subscriber");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resuming_under_concurrent_writers_loses_and_repeats_nothing() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let created = app.agent().create_profile(create(person("C", "Oncurrent", &format!("c{i}@example.com")))).await;
        ids.push(created.expect("create").into_inner().id);
    }
    let mut events = app.events(TENANT, &[Role::Admin]);
    let mut first = watch(&mut events, "", "").await;
    let mut writers = Vec::new();
    for w in 0..6 {
        let mut client = app.agent();
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..40 {
                let id = &ids[(w + round) % ids.len()];
                client.update_profile(set_segment(id, &format!("S{w}-{round}"), "")).await.expect("update");
            }
        }));
    }
    // Read part of the stream, hang up mid-flow, and resume from the last
    // position received while the writers go on.
    let mut seen = next(&mut first, 60).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = watch(&mut events, &seen.last().expect("events").position, "").await;
    for writer in writers {
        writer.await.expect("writer");
    }
    seen.extend(next(&mut second, 240 - 60).await);
    let ids: Vec<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice");
    let positions: Vec<i64> = seen.iter().map(|e| e.position.parse().expect("position")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in position order");
    let stored: std::collections::HashSet<String> = outbox(&app.db.connect().await)
        .await
        .iter()
        .filter(|e| e["eventType"] == "CustomerProfileUpdatedEvent")
        .map(|e| e["eventId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(unique.into_iter().map(str::to_owned).collect::<std::collections::HashSet<_>>(), stored, "no gap");
}

#[tokio::test]
async fn a_position_past_the_retention_is_out_of_range() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--outbox-retention", "1s"]).await;
    let mut events = app.events(TENANT, &[Role::Agent]);
    let mut live = watch(&mut events, "", "").await;
    app.agent().create_profile(create(person("Old", "News", "old@example.com"))).await.expect("create");
    let first = next(&mut live, 1).await;
    drop(live);
    let db = app.db.connect().await;
    eventually!(outbox(&db).await.is_empty());
    app.agent().create_profile(create(person("New", "News", "new@example.com"))).await.expect("create");
    let request = pb::WatchChangesRequest { after_position: "0".into(), profile_id: String::new() };
    let status = events.watch_changes(request).await.expect_err("pruned");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("retention"), "{status:?}");
    let request = pb::WatchChangesRequest { after_position: "999999".into(), profile_id: String::new() };
    let status = events.watch_changes(request).await.expect_err("from the future");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let request = pb::WatchChangesRequest { after_position: "yesterday".into(), profile_id: String::new() };
    let status = events.watch_changes(request).await.expect_err("not a position");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!first[0].position.is_empty());
}

#[tokio::test]
async fn every_role_subscribes_and_sees_payloads_shaped_like_profiles() {
    let app = TestApp::spawn().await;
    let mut streams = Vec::new();
    for role in Role::ALL {
        let mut events = app.events(TENANT, &[role]);
        streams.push((role, watch(&mut events, "", "").await));
    }
    let ada = app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner();
    for (role, stream) in &mut streams {
        let created = next(stream, 1).await.remove(0);
        assert_eq!(created.aggregate_id, ada.id);
        let payload = c360_server::convert::struct_to_json(created.payload.as_ref().expect("payload"));
        if *role == Role::Analyst {
            assert_eq!(payload["name"], "A*** L***", "{role:?}");
            assert_eq!(created.masked_fields, ["name"], "{role:?}");
        } else {
            assert_eq!(payload["name"], "Ada Lovelace", "{role:?}");
            assert!(created.masked_fields.is_empty(), "{role:?}");
        }
        assert_eq!(payload["customerId"], ada.id.as_str(), "{role:?}: ids are not masked");
    }
    let mut nobody = app.events_with_token(&app.token(TENANT, &[]));
    let status = nobody.watch_changes(pb::WatchChangesRequest::default()).await.expect_err("no role");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_stream_ends_when_the_token_expires() {
    let app = TestApp::spawn().await;
    let token = app.token_for(TENANT, &[Role::Service], Duration::from_secs(2));
    let mut events = app.events_with_token(&token);
    let mut live = watch(&mut events, "", "").await;
    let status = ending(&mut live, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_and_others_flow_on() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--change-feed-buffer", "8"]).await;
    // Two connections: an unread stream would hold back its neighbours on
    // one connection by HTTP/2 flow control, whatever the server does.
    let mut stuck_client = app.events_on_own_connection(TENANT, &[Role::Admin]).await;
    let mut events = app.events(TENANT, &[Role::Admin]);
    let mut stuck = watch(&mut stuck_client, "", "").await;
    let mut reader = watch(&mut events, "", "").await;
    let mut writer = app.agent();
    let ada = writer.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner();
    // Enough to fill the stuck subscriber's transport (HTTP/2 windows and
    // send buffers) and its buffer.
    let total = 1500;
    let reading = tokio::spawn(async move { next(&mut reader, total + 1).await.len() });
    for round in 0..total {
        writer.update_profile(set_segment(&ada.id, &format!("S{round}"), "")).await.expect("update");
    }
    assert_eq!(reading.await.expect("reader"), total + 1, "the reading subscriber got everything");
    let status = ending(&mut stuck, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("resume"), "{status:?}");
}

async fn a_merged_id_watches_the_profile_it_answers_for(app: TestApp) {
    let mut watcher = app.events(TENANT, &[Role::Steward]);
    let mut writer = app.admin();
    let a = writer.create_profile(create(person("A", "One", "a@example.com"))).await.expect("create").into_inner();
    let b = writer.create_profile(create(person("B", "One", "b@example.com"))).await.expect("create").into_inner();
    let merge = pb::MergeProfilesRequest {
        target_id: b.id.clone(),
        source_ids: vec![a.id.clone()],
        reason: pb::MergeReason::Duplicate as i32,
        ..Default::default()
    };
    app.identity(TENANT, &[Role::Steward]).merge_profiles(merge).await.expect("merge");
    let mut through_old_id = watch(&mut watcher, "", &a.id).await;
    writer.update_profile(set_segment(&b.id, "X", "")).await.expect("update");
    let got = next(&mut through_old_id, 1).await;
    assert_eq!(got[0].aggregate_id, b.id, "the old id watches the profile it resolves to");
}
on_both!(merged_ids_watch_their_target, a_merged_id_watches_the_profile_it_answers_for);
