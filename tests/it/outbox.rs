//! The outbox: one envelope per committed change, in the change's
//! transaction; none for a rejected or empty write.

use c360_proto::v1 as pb;
use c360_tests::{TENANT, TestApp};
use prost_types::FieldMask;
use serde_json::json;

use crate::{create, outbox, outbox_subjects, person, set_segment};

#[tokio::test]
async fn create_and_update_write_one_envelope_each_with_changed_fields() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let mut org = person("", "", "");
    org.kind = pb::ProfileKind::Organization as i32;
    org.company_name = "Acme Corp".into();
    org.segment = "ENTERPRISE".into();
    let created = client.create_profile(create(org)).await.expect("create").into_inner();
    let request = pb::UpdateProfileRequest {
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
