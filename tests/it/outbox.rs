//! The outbox: one envelope per committed change, in the change's
//! transaction; none for a rejected or empty write.

use c360_proto::v1 as pb;
use c360_tests::{TENANT, TestApp};
use prost_types::FieldMask;
use serde_json::json;

use crate::{create, organization, outbox, outbox_subjects, person, set_segment};

#[tokio::test]
async fn create_and_update_write_one_envelope_each_with_changed_fields() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let org = organization("Acme Corp", "ENTERPRISE");
    let created = client.create_profile(create(org)).await.expect("create").into_inner();
    let request = pb::UpdateProfileRequest {
        request_id: String::new(),
        profile: Some(pb::Profile {
            id: created.id.clone(),
            segment: "SMB".into(),
            company_name: "Acme Inc".into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask { paths: vec!["segment".into(), "company_name".into(), "emails".into()] }),
        etag: created.etag.clone(),
        source: String::new(),
    };
    client.update_profile(request).await.expect("update");

    let db = app.db.connect().await;
    let events = outbox(&db).await;
    assert_eq!(events.len(), 2);
    let (first, second) = (&events[0], &events[1]);
    assert_eq!(first["eventType"], "CustomerProfileCreatedEvent");
    assert_eq!(first["aggregateId"], created.id.as_str());
    assert_eq!(first["tenantId"], TENANT);
    assert!(uuid::Uuid::parse_str(first["eventId"].as_str().unwrap_or_default()).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap_or_default()).is_ok());
    assert_eq!(
        first["payload"],
        json!({
            "customerId": created.id, "kind": "ORGANIZATION", "name": "Acme Corp", "status": "ACTIVE",
            "primaryContactId": null, "segment": "ENTERPRISE", "createdBy": "test-user",
        })
    );
    assert_eq!(second["eventType"], "CustomerProfileUpdatedEvent");
    assert_eq!(
        second["payload"]["changedFields"],
        json!(["companyName", "segment"]),
        "emails was masked but unchanged"
    );
    assert_eq!(second["payload"]["updatedBy"], "test-user");
    assert_ne!(first["eventId"], second["eventId"]);

    let subjects: Vec<String> = outbox_subjects(&db).await.into_iter().map(|(_, subject)| subject).collect();
    assert_eq!(subjects, ["crm.customer360.profile.created", "crm.customer360.profile.updated"]);
}

#[tokio::test]
async fn rejected_and_empty_writes_leave_no_event() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created =
        client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create").into_inner();
    client.update_profile(set_segment(&created.id, "A", "")).await.expect("change");
    client.update_profile(set_segment(&created.id, "A", "")).await.expect("same value again: no change");
    client.update_profile(set_segment(&created.id, "B", "1")).await.expect_err("stale etag");
    client.create_profile(create(person("Eve", "Copy", "ada@example.com"))).await.expect_err("identifier conflict");
    client.create_profile(create(person("  ", "", ""))).await.expect_err("invalid");
    client
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
        .await
        .expect("delete");
    client
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
        .await
        .expect("delete again: no change");

    let events = outbox(&app.db.connect().await).await;
    let kinds: Vec<(&str, serde_json::Value)> = events
        .iter()
        .map(|e| (e["eventType"].as_str().unwrap_or_default(), e["payload"]["changedFields"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("CustomerProfileCreatedEvent", serde_json::Value::Null),
            ("CustomerProfileUpdatedEvent", json!(["segment"])),
            ("CustomerProfileUpdatedEvent", json!(["status"])),
        ]
    );
    assert_eq!(events[2]["payload"]["status"], "INACTIVE");
}

/// (pos, seq, customer) of stamped rows after `after`, in position order.
async fn stamped_after(db: &sea_orm::DatabaseConnection, after: i64) -> Vec<(i64, i64, uuid::Uuid)> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = format!("SELECT pos, seq, aggregate_id FROM outbox WHERE pos > {after} ORDER BY pos");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("rows");
    rows.iter()
        .map(|row| {
            (
                row.try_get("", "pos").expect("pos"),
                row.try_get("", "seq").expect("seq"),
                row.try_get("", "aggregate_id").expect("aggregate_id"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_resuming_after_a_position_never_misses_a_commit_under_concurrent_writers() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let created = app.agent().create_profile(create(person("Pos", "Ition", &format!("p{i}@example.com")))).await;
        ids.push(created.expect("create").into_inner().id);
    }
    let db = app.db.connect().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut seen, mut last) = (Vec::new(), 0);
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let rows = stamped_after(&db, last).await;
                if let Some((pos, _, _)) = rows.last() {
                    last = *pos;
                }
                seen.extend(rows);
                if done {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut client = app.agent();
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..30 {
                if round % 3 == 0 {
                    let email = format!("w{w}r{round}@example.com");
                    client.create_profile(create(person("New", "One", &email))).await.expect("create");
                } else {
                    let id = &ids[(w + round) % ids.len()];
                    client.update_profile(set_segment(id, &format!("S{w}-{round}"), "")).await.expect("update");
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    // Every committed row gets stamped; then the reader takes its last look.
    for _ in 0..300 {
        if stamped_after(&db, 0).await.len() == outbox(&db).await.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let all = stamped_after(&db, 0).await;
    assert_eq!(all.len(), outbox(&db).await.len(), "every committed row is stamped");
    assert_eq!(seen, all, "the resuming reader saw every row exactly once, in position order");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let mut per_customer: std::collections::HashMap<uuid::Uuid, Vec<i64>> = Default::default();
    for (_, seq, customer) in &all {
        per_customer.entry(*customer).or_default().push(*seq);
    }
    for (customer, seqs) in per_customer {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "customer {customer}: positions follow its commits");
    }
}

#[tokio::test]
async fn the_database_computes_each_rows_lane_as_the_relay_does() {
    use sea_orm::{ConnectionTrait, Statement};
    for app in [TestApp::spawn().await, TestApp::spawn_on(c360_tests::TestDb::sqlite()).await] {
        for i in 0..40 {
            let email = format!("lane{i}@example.com");
            app.agent().create_profile(create(person("Lane", "Check", &email))).await.expect("create");
        }
        let db = app.db.connect().await;
        let sql = "SELECT aggregate_id, lane FROM outbox";
        let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("rows");
        assert_eq!(rows.len(), 40);
        let mut lanes = std::collections::HashSet::new();
        for row in rows {
            let id: uuid::Uuid = row.try_get("", "aggregate_id").expect("id");
            let lane: i16 = row.try_get("", "lane").expect("lane");
            let expected = c360_server::store::outbox::lane_of(c360_server::domain::ProfileId::from(id));
            assert_eq!(lane, expected, "{id}");
            lanes.insert(lane);
        }
        assert!(lanes.len() > 8, "ids spread over the lanes: {lanes:?}");
    }
}
