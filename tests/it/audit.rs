//! The audit trail: every write audited with its request, reads of personal
//! data coalesced, the chain built within seconds and verified by
//! `c360 audit verify`, which names an edited, a deleted and a reordered
//! record; read audits survive a graceful shutdown.

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::{Code, Request};

use crate::{create, person, set_segment};

pub(crate) async fn events(app: &TestApp, filter: pb::ListAuditEventsRequest) -> Vec<pb::AuditEvent> {
    let mut privacy = app.privacy(TENANT, &[Role::Admin]);
    let mut all = Vec::new();
    let mut request = pb::ListAuditEventsRequest { page_size: 100, ..filter };
    loop {
        let page = privacy.list_audit_events(request.clone()).await.expect("list").into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

async fn verify(db: &TestDb) -> anyhow::Result<String> {
    use clap::Parser;
    let cli = c360_server::cli::Cli::try_parse_from([
        "c360",
        "audit",
        "verify",
        "--tenant",
        TENANT,
        "--database-url",
        &db.url,
    ])?;
    let mut out = Vec::new();
    cli.run_to(&mut out).await?;
    Ok(String::from_utf8(out)?)
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.expect(sql);
}

on_both!(writes, every_write_is_audited_with_its_request_and_chained_within_seconds);

async fn every_write_is_audited_with_its_request_and_chained_within_seconds(app: TestApp) {
    let mut agent = app.agent();
    let mut request = Request::new(create(person("Ada", "Lovelace", "ada@example.com")));
    request.metadata_mut().insert("x-request-id", "req-create-1".parse().expect("ascii"));
    let ada = agent.create_profile(request).await.expect("create").into_inner();
    agent.update_profile(set_segment(&ada.id, "VIP", "")).await.expect("update");
    let consent = pb::SetConsentRequest {
        profile_id: ada.id.clone(),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
        status: pb::ConsentStatus::Granted as i32,
        ..Default::default()
    };
    app.consents(TENANT, &[Role::Service]).set_consent(consent).await.expect("consent");
    agent.delete_profile(pb::DeleteProfileRequest { id: ada.id.clone(), etag: String::new() }).await.expect("delete");

    let by_ada = pb::ListAuditEventsRequest { resource_id: ada.id.clone(), ..Default::default() };
    let mut writes = Vec::new();
    eventually!({
        writes = events(&app, by_ada.clone()).await;
        writes.len() >= 4 && writes.iter().all(|e| e.sequence > 0 && !e.hash.is_empty())
    });
    let actions: Vec<&str> = writes.iter().map(|e| e.action.as_str()).collect();
    for action in ["profile.create", "profile.update", "consent.set", "profile.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let created = writes.iter().find(|e| e.action == "profile.create").expect("create audited");
    assert_eq!(created.subject, "test-user");
    assert_eq!(created.roles, ["agent"]);
    assert_eq!(created.request_id, "req-create-1");
    assert_eq!(created.resource_type, "profile");
    assert_eq!(created.resource_ids, vec![ada.id.clone()]);
    let consent = writes.iter().find(|e| e.action == "consent.set").expect("consent audited");
    assert_eq!(consent.roles, ["service"]);
    assert!(!consent.request_id.is_empty(), "a request without an id gets one");

    let report = verify(&app.db).await.expect("an intact chain verifies");
    assert!(report.contains("audit chain intact"), "{report}");
}

#[tokio::test]
async fn reads_of_personal_data_are_coalesced_and_masked_reads_are_not_audited() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--audit-flush-interval", "200ms"]).await;
    let mut agent = app.agent();
    let ada = agent.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let bob = agent.create_profile(create(person("Bob", "Babbage", "bob@example.com"))).await.expect("create");
    let (ada, bob) = (ada.into_inner().id, bob.into_inner().id);
    let mut steward = app.client(TENANT, Role::Steward);
    for id in [&ada, &ada, &bob, &ada] {
        steward.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("get");
    }
    let mut analyst = app.analyst();
    analyst.get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("masked get");
    analyst.list_profiles(pb::ListProfilesRequest::default()).await.expect("masked list");

    let mut reads = Vec::new();
    eventually!({
        reads = events(&app, pb::ListAuditEventsRequest::default())
            .await
            .into_iter()
            .filter(|e| !e.action.ends_with(".create"))
            .collect();
        reads.len() >= 2
    });
    let read: Vec<_> = reads.iter().filter(|e| e.action == "profile.read").collect();
    assert_eq!(read.len(), 1, "one coalesced record: {reads:#?}");
    assert_eq!(read[0].roles, ["steward"]);
    assert_eq!(read[0].count, 4);
    let mut ids = read[0].resource_ids.clone();
    ids.sort();
    let mut expected = vec![ada.clone(), bob.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    for class in ["NAME", "EMAIL"] {
        assert!(read[0].revealed.contains(&class.to_owned()), "{class} in {:?}", read[0].revealed);
    }
    // The analyst's masked read revealed nothing; its listing is audited anyway.
    let analyst_events: Vec<_> = reads.iter().filter(|e| e.roles == ["analyst"]).collect();
    assert_eq!(analyst_events.len(), 1, "{analyst_events:#?}");
    assert_eq!(analyst_events[0].action, "profile.list");
    assert!(analyst_events[0].revealed.is_empty());

    let by_subject = events(&app, pb::ListAuditEventsRequest { subject: "nobody".into(), ..Default::default() }).await;
    assert!(by_subject.is_empty());
    let at = |offset: i64| {
        let t = chrono::Utc::now() + chrono::Duration::seconds(offset);
        Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 })
    };
    let future = pb::ListAuditEventsRequest { start_time: at(60), ..Default::default() };
    assert!(events(&app, future).await.is_empty(), "nothing happened in the next minute");
    let recent = pb::ListAuditEventsRequest { start_time: at(-60), end_time: at(60), ..Default::default() };
    assert_eq!(events(&app, recent).await.len(), events(&app, pb::ListAuditEventsRequest::default()).await.len());
    let backwards = pb::ListAuditEventsRequest { start_time: at(60), end_time: at(-60), ..Default::default() };
    let status = app.privacy(TENANT, &[Role::Admin]).list_audit_events(backwards).await.expect_err("backwards");
    assert_eq!(crate::violated_fields(&status), ["end_time"]);
    for role in Role::ALL {
        let listed = app.privacy(TENANT, &[role]).list_audit_events(pb::ListAuditEventsRequest::default()).await;
        match role {
            Role::Admin => assert!(listed.is_ok()),
            _ => assert_eq!(listed.expect_err("admins only").code(), Code::PermissionDenied, "{role:?}"),
        }
    }
}

#[tokio::test]
async fn verify_names_an_edited_a_deleted_and_a_reordered_record() {
    let app = TestApp::spawn().await;
    let mut agent = app.agent();
    let ada = agent.create_profile(create(person("Ada", "Lovelace", ""))).await.expect("create").into_inner();
    for segment in ["A", "B", "C", "D", "E"] {
        agent.update_profile(set_segment(&ada.id, segment, "")).await.expect("update");
    }
    eventually!(
        events(&app, pb::ListAuditEventsRequest::default()).await.iter().filter(|e| e.sequence > 0).count() >= 6
    );
    let db = app.db.connect().await;
    assert!(verify(&app.db).await.expect("intact").contains("6 records"));

    // Edited: someone rewrites who did it.
    exec(&db, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 2").await;
    let broken = verify(&app.db).await.expect_err("edited");
    assert!(broken.to_string().contains("record 2"), "{broken}");
    assert!(broken.to_string().contains("altered"), "{broken}");
    exec(&db, "UPDATE audit_events SET subject = 'test-user' WHERE seq = 2").await;
    verify(&app.db).await.expect("restored");

    // Reordered: two records swap places.
    exec(&db, "UPDATE audit_events SET seq = -3 WHERE seq = 3").await;
    exec(&db, "UPDATE audit_events SET seq = 3 WHERE seq = 4").await;
    exec(&db, "UPDATE audit_events SET seq = 4 WHERE seq = -3").await;
    let broken = verify(&app.db).await.expect_err("reordered");
    assert!(broken.to_string().contains("record 3"), "{broken}");
    exec(&db, "UPDATE audit_events SET seq = -3 WHERE seq = 3").await;
    exec(&db, "UPDATE audit_events SET seq = 3 WHERE seq = 4").await;
    exec(&db, "UPDATE audit_events SET seq = 4 WHERE seq = -3").await;
    verify(&app.db).await.expect("restored");

    // Deleted: a record in the middle, then the last one.
    exec(&db, "DELETE FROM audit_events WHERE seq = 5").await;
    let broken = verify(&app.db).await.expect_err("deleted");
    assert!(broken.to_string().contains("record 6"), "{broken}");
    assert!(broken.to_string().contains("removed or reordered"), "{broken}");
}

#[tokio::test]
async fn the_last_record_deleted_is_detected_too() {
    let app = TestApp::spawn().await;
    let mut agent = app.agent();
    for name in ["A", "B", "C"] {
        agent.create_profile(create(person(name, "Smith", ""))).await.expect("create");
    }
    eventually!(
        events(&app, pb::ListAuditEventsRequest::default()).await.iter().filter(|e| e.sequence > 0).count() >= 3
    );
    exec(&app.db.connect().await, "DELETE FROM audit_events WHERE seq = 3").await;
    let broken = verify(&app.db).await.expect_err("truncated");
    assert!(broken.to_string().contains("head is at 3"), "{broken}");
}

#[tokio::test]
async fn buffered_read_audits_are_written_on_a_graceful_shutdown() {
    let mut app = TestApp::spawn_with(TestDb::postgres().await, &["--audit-flush-interval", "1h"]).await;
    let ada = app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let ada = ada.into_inner().id;
    app.client(TENANT, Role::Steward).get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("get");
    let db = app.db.take();
    app.stop().await.expect("graceful stop");
    let conn = db.connect().await;
    let sql = "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'profile.read' AND seq IS NOT NULL";
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql.to_owned())).await;
    let n: i64 = row.expect("count").expect("row").try_get("", "n").expect("n");
    assert_eq!(n, 1, "the buffered read was written and chained before the pool closed");
    assert!(verify(&db).await.expect("intact").contains("audit chain intact"));
}

#[tokio::test]
async fn the_seed_command_writes_as_the_system_principal_and_is_audited() {
    use clap::Parser;
    let app = TestApp::spawn().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "c360",
        "seed",
        "--tenant",
        TENANT,
        "--profiles",
        "30",
        "--events",
        "12",
        "--database-url",
        &app.db.url,
        "--data-dir",
        data_dir.path().to_str().expect("utf-8"),
    ];
    c360_server::cli::Cli::try_parse_from(args).expect("seed arguments").run().await.expect("seed");
    let by_seed = pb::ListAuditEventsRequest { subject: "system:seed".into(), ..Default::default() };
    let records = events(&app, by_seed).await;
    let created = records.iter().find(|e| e.action == "profile.create").expect("profiles audited");
    assert_eq!(created.roles, ["system"]);
    assert_eq!((created.count, created.resource_ids.len()), (30, 30));
    assert!(records.iter().any(|e| e.action == "interaction.create"), "{records:#?}");
    assert!(records.iter().all(|e| e.sequence > 0), "chained before the command returned: {records:#?}");
    assert!(verify(&app.db).await.expect("intact").contains("audit chain intact"));
}
