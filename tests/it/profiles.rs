//! ProfileService behaviour on PostgreSQL: round trips, batch reads, updates
//! under optimistic concurrency, soft delete, pagination and search.

use std::collections::HashSet;

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use prost_types::{Struct, Value, value::Kind};
use tonic::Code;

use crate::{create, list_all, person, set_segment, update};

fn full_person() -> pb::Profile {
    pb::Profile {
        kind: pb::ProfileKind::Person as i32,
        status: pb::ProfileStatus::Prospect as i32,
        given_name: "  José ".into(),
        family_name: "García".into(),
        segment: "VIP".into(),
        emails: vec![
            pb::EmailAddress {
                address: "Jose.Garcia@Example.com".into(),
                label: "work".into(),
                primary: true,
                lineage: None,
            },
            pb::EmailAddress {
                address: "pepe@example.org".into(),
                label: String::new(),
                primary: false,
                lineage: None,
            },
        ],
        phones: vec![pb::PhoneNumber {
            number: "(415) 555-2671".into(),
            label: "mobile".into(),
            primary: true,
            lineage: None,
        }],
        addresses: vec![pb::PostalAddress {
            lines: vec!["1 Market St".into(), "Suite 200".into()],
            locality: "San Francisco".into(),
            region: "CA".into(),
            postal_code: "94105".into(),
            country_code: "us".into(),
            label: "billing".into(),
            lineage: None,
        }],
        birth_date: "1985-07-14".into(),
        attributes: Some(Struct {
            fields: [
                ("tier".to_owned(), Value { kind: Some(Kind::StringValue("gold".into())) }),
                ("visits".to_owned(), Value { kind: Some(Kind::NumberValue(12.0)) }),
            ]
            .into(),
        }),
        external_ids: vec![pb::ExternalId { source: "Salesforce".into(), id: "0031x00000AbCdE".into(), lineage: None }],
        ..Default::default()
    }
}

#[tokio::test]
async fn every_field_round_trips_through_create_and_get() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let request =
        pb::CreateProfileRequest { request_id: String::new(), profile: Some(full_person()), source: "pos".into() };
    let created = client.create_profile(request).await.expect("create").into_inner();

    assert!(uuid::Uuid::parse_str(&created.id).is_ok_and(|id| id.get_version_num() == 7));
    assert_eq!(created.status, pb::ProfileStatus::Prospect as i32);
    assert_eq!(created.given_name, "José", "names are trimmed");
    assert_eq!(created.family_name, "García");
    assert_eq!(created.segment, "VIP");
    assert_eq!(created.emails[0].address, "jose.garcia@example.com");
    assert_eq!((created.emails[0].label.as_str(), created.emails[0].primary), ("work", true));
    assert_eq!(created.phones[0].number, "+14155552671");
    assert_eq!(created.addresses[0].country_code, "US");
    assert_eq!(created.addresses[0].lines, ["1 Market St", "Suite 200"]);
    assert_eq!(created.birth_date, "1985-07-14");
    assert_eq!(created.external_ids[0].source, "salesforce");
    assert_eq!(created.external_ids[0].id, "0031x00000AbCdE");
    let attributes = created.attributes.as_ref().expect("attributes");
    assert_eq!(attributes.fields["tier"].kind, Some(Kind::StringValue("gold".into())));
    assert_eq!(attributes.fields["visits"].kind, Some(Kind::NumberValue(12.0)));
    assert_eq!(created.etag, "1");
    assert!((created.completeness - 1.0).abs() < 1e-9, "every key field of a person is filled");
    assert!(created.create_time.is_some() && created.create_time == created.update_time);
    for field in [
        "given_name",
        "family_name",
        "segment",
        "emails",
        "phones",
        "addresses",
        "birth_date",
        "attributes",
        "external_ids",
        "kind",
        "status",
    ] {
        assert_eq!(created.lineage.get(field).map(|l| l.source.as_str()), Some("pos"), "lineage of {field}");
    }

    let fetched = client.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("get").into_inner();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn organizations_name_a_live_person_as_primary_contact() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let contact = client.create_profile(create(person("Ada", "Lovelace", ""))).await.expect("person").into_inner();
    let org = pb::Profile {
        kind: pb::ProfileKind::Organization as i32,
        company_name: "Acme Corp".into(),
        primary_contact_id: contact.id.clone(),
        ..Default::default()
    };
    let created = client.create_profile(create(org.clone())).await.expect("organization").into_inner();
    assert_eq!(created.primary_contact_id, contact.id);
    assert_eq!(created.kind, pb::ProfileKind::Organization as i32);

    let dangling = pb::Profile { primary_contact_id: uuid::Uuid::now_v7().to_string(), ..org };
    let status = client.create_profile(create(dangling)).await.expect_err("unknown contact");
    assert_eq!(crate::violated_fields(&status), ["profile.primary_contact_id"]);
}

#[tokio::test]
async fn batch_get_answers_in_request_order_and_names_missing_ids() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = client.create_profile(create(person(&format!("P{i}"), "Batch", ""))).await.expect("create");
        ids.push(p.into_inner().id);
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    let request = vec![ids[3].clone(), unknown.clone(), ids[0].clone(), ids[3].clone(), ids[4].clone()];
    let reply =
        client.batch_get_profiles(pb::BatchGetProfilesRequest { ids: request }).await.expect("batch").into_inner();
    let got: Vec<_> = reply.profiles.iter().map(|p| p.id.clone()).collect();
    assert_eq!(got, [ids[3].clone(), ids[0].clone(), ids[4].clone()]);
    assert_eq!(reply.missing_ids, [unknown]);

    let thousand: Vec<String> = (0..1000).map(|i| ids[i % 5].clone()).collect();
    let reply = client.batch_get_profiles(pb::BatchGetProfilesRequest { ids: thousand }).await.expect("1,000 ids");
    assert_eq!(reply.into_inner().profiles.len(), 5);
}

#[tokio::test]
async fn update_replaces_only_masked_fields_and_advances_the_etag() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created = client.create_profile(create(full_person())).await.expect("create").into_inner();

    let changes = pb::Profile {
        id: created.id.clone(),
        segment: "ENTERPRISE".into(),
        given_name: "ignored".into(),
        ..Default::default()
    };
    let request = pb::UpdateProfileRequest {
        source: "crm".into(),
        ..update(&created.id, &["segment", "birth_date"], &created.etag, changes)
    };
    let updated = client.update_profile(request).await.expect("update").into_inner();
    assert_eq!(updated.segment, "ENTERPRISE");
    assert_eq!(updated.birth_date, "", "a masked field absent from the message is cleared");
    assert_eq!(updated.given_name, "José", "fields outside the mask keep their value");
    assert_eq!(updated.etag, "2");
    assert_eq!(updated.lineage["segment"].source, "crm");
    assert_eq!(updated.lineage["given_name"].source, "api");
    assert!(updated.completeness < created.completeness);
    let fetched = client.get_profile(pb::GetProfileRequest { id: created.id }).await.expect("get").into_inner();
    assert_eq!(fetched, updated);
}

#[tokio::test]
async fn stale_etag_update_is_aborted_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created =
        client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create").into_inner();
    client.update_profile(set_segment(&created.id, "A", &created.etag)).await.expect("first update");
    let status = client.update_profile(set_segment(&created.id, "B", &created.etag)).await.expect_err("stale etag");
    assert_eq!(status.code(), Code::Aborted);
    let fetched = client.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("get").into_inner();
    assert_eq!((fetched.segment.as_str(), fetched.etag.as_str()), ("A", "2"));
}

#[tokio::test]
async fn concurrent_updates_with_one_etag_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", ""))).await.expect("create").into_inner();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = app.agent();
        let (id, etag) = (created.id.clone(), created.etag.clone());
        tasks.push(tokio::spawn(async move {
            let request = set_segment(&id, &format!("S{i}"), &etag);
            client.update_profile(request).await.map(|r| r.into_inner().segment).map_err(|s| s.code())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(segment) => winners.push(segment),
            Err(code) => assert_eq!(code, Code::Aborted),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update with the shared etag wins");
    let fetched = app.agent().get_profile(pb::GetProfileRequest { id: created.id }).await.expect("get").into_inner();
    assert_eq!(fetched.segment, winners[0]);
    assert_eq!(fetched.etag, "2");
    assert_eq!((fetched.given_name.as_str(), fetched.family_name.as_str()), ("Ada", "Lovelace"));
}

#[tokio::test]
async fn concurrent_updates_without_etag_lose_no_field() {
    let app = TestApp::spawn().await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", ""))).await.expect("create").into_inner();
    let writes: [(&str, pb::Profile); 4] = [
        ("given_name", pb::Profile { given_name: "Augusta".into(), ..Default::default() }),
        ("family_name", pb::Profile { family_name: "King".into(), ..Default::default() }),
        ("segment", pb::Profile { segment: "VIP".into(), ..Default::default() }),
        ("birth_date", pb::Profile { birth_date: "1985-12-10".into(), ..Default::default() }),
    ];
    let mut tasks = Vec::new();
    for (path, profile) in writes {
        let mut client = app.agent();
        let id = created.id.clone();
        tasks.push(tokio::spawn(async move {
            let request = update(&id, &[path], "", profile);
            client.update_profile(request).await.expect("update without etag");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let p = app.agent().get_profile(pb::GetProfileRequest { id: created.id }).await.expect("get").into_inner();
    assert_eq!(
        (p.given_name.as_str(), p.family_name.as_str(), p.segment.as_str(), p.birth_date.as_str(), p.etag.as_str()),
        ("Augusta", "King", "VIP", "1985-12-10", "5")
    );
}

#[tokio::test]
async fn delete_is_soft_idempotent_and_hides_the_profile_from_lists() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created =
        client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create").into_inner();
    let deleted = client
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: created.etag.clone() })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.status, pb::ProfileStatus::Inactive as i32);
    assert_eq!(deleted.etag, "2");
    let again = client
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
        .await
        .expect("delete again")
        .into_inner();
    assert_eq!(again, deleted);

    let fetched = client
        .get_profile(pb::GetProfileRequest { id: created.id.clone() })
        .await
        .expect("still readable")
        .into_inner();
    assert_eq!(fetched.status, pb::ProfileStatus::Inactive as i32);
    let live = client.list_profiles(pb::ListProfilesRequest::default()).await.expect("list").into_inner();
    assert!(live.profiles.is_empty());
    // Listing deleted profiles is for stewards and admins only.
    let status = client
        .list_profiles(pb::ListProfilesRequest { show_deleted: true, ..Default::default() })
        .await
        .expect_err("an agent may not page through deleted profiles");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let all = app
        .client(c360_tests::TENANT, c360_server::auth::Role::Steward)
        .list_profiles(pb::ListProfilesRequest { show_deleted: true, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.profiles.len(), 1);
    let status =
        client.update_profile(set_segment(&created.id, "X", "")).await.expect_err("a deleted profile is not updated");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn pagination_walks_every_row_exactly_once_under_concurrent_inserts() {
    let app = TestApp::spawn().await;
    let mut client = app.service();
    let mut before = HashSet::new();
    for i in 0..60 {
        let p = client.create_profile(create(person(&format!("Page{i}"), "Walker", ""))).await.expect("create");
        before.insert(p.into_inner().id);
    }
    let mut writer = app.service();
    let inserts = tokio::spawn(async move {
        for i in 0..40 {
            writer.create_profile(create(person(&format!("Late{i}"), "Walker", ""))).await.expect("concurrent create");
        }
    });

    let seen = list_all(&mut client, 7).await;
    inserts.await.expect("inserts");
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no row is listed twice");
    assert!(before.is_subset(&unique), "every row that existed before the walk is listed");
}

#[tokio::test]
async fn search_by_name_prefix_ignores_case_and_accents() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let jose = client.create_profile(create(person("José", "García", ""))).await.expect("create").into_inner();
    let zoe = client.create_profile(create(person("Zoë", "O'Brien", ""))).await.expect("create").into_inner();
    let org = pb::Profile {
        kind: pb::ProfileKind::Organization as i32,
        company_name: "Müller GmbH".into(),
        ..Default::default()
    };
    let muller = client.create_profile(create(org)).await.expect("create").into_inner();

    let cases = [
        ("jose", &jose.id),
        ("JOSÉ GAR", &jose.id),
        ("garcia", &jose.id),
        ("García J", &jose.id),
        ("zoe o'b", &zoe.id),
        ("obr", &zoe.id),
        ("muller", &muller.id),
        ("MÜLL", &muller.id),
    ];
    for (query, expected) in cases {
        let request = pb::SearchProfilesRequest {
            criterion: Some(pb::search_profiles_request::Criterion::NamePrefix(query.into())),
            ..Default::default()
        };
        let found = client.search_profiles(request).await.expect("search").into_inner();
        let ids: Vec<_> = found.profiles.iter().map(|p| &p.id).collect();
        assert_eq!(ids, [expected], "query {query:?}");
    }
}

#[tokio::test]
async fn search_pages_through_many_name_matches() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    for i in 0..12 {
        client.create_profile(create(person(&format!("Smith{i}"), "Jones", ""))).await.expect("create");
    }
    let mut token = String::new();
    let mut total = 0;
    loop {
        let request = pb::SearchProfilesRequest {
            criterion: Some(pb::search_profiles_request::Criterion::NamePrefix("smith".into())),
            page_size: 5,
            page_token: token,
        };
        let page = client.search_profiles(request).await.expect("search").into_inner();
        total += page.profiles.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(total, 12);
}

#[tokio::test]
async fn search_and_lookup_find_each_identifier_kind() {
    use pb::search_profiles_request::Criterion;
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created = client.create_profile(create(full_person())).await.expect("create").into_inner();
    let criteria = [
        Criterion::Email(" JOSE.GARCIA+news@example.COM ".into()),
        Criterion::Phone("+1 415-555-2671".into()),
        Criterion::ExternalId(pb::ExternalId {
            source: "SALESFORCE".into(),
            id: "0031x00000AbCdE".into(),
            lineage: None,
        }),
    ];
    for criterion in criteria {
        let request = pb::SearchProfilesRequest { criterion: Some(criterion.clone()), ..Default::default() };
        let found = client.search_profiles(request).await.expect("search").into_inner();
        assert_eq!(found.profiles.iter().map(|p| &p.id).collect::<Vec<_>>(), [&created.id], "{criterion:?}");
    }
    let lookups = [
        (pb::IdentifierType::Email, "jose.garcia@example.com", ""),
        (pb::IdentifierType::Phone, "4155552671", ""),
        (pb::IdentifierType::ExternalId, "0031x00000AbCdE", "salesforce"),
    ];
    for (id_type, value, source) in lookups {
        let request = pb::LookupProfileRequest { r#type: id_type as i32, value: value.into(), source: source.into() };
        let found = client.lookup_profile(request).await.expect("lookup").into_inner();
        assert_eq!(found.id, created.id, "{id_type:?}");
    }
    let missing = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "nobody@example.com".into(),
        source: String::new(),
    };
    assert_eq!(client.lookup_profile(missing).await.expect_err("unknown").code(), Code::NotFound);
    let wrong_case = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::ExternalId as i32,
        value: "0031X00000ABCDE".into(),
        source: "salesforce".into(),
    };
    assert_eq!(
        client.lookup_profile(wrong_case).await.expect_err("external ids are case-sensitive").code(),
        Code::NotFound
    );
}

/// Found by probing: a CreateProfile whose answer was lost and is sent again
/// created a second profile when it had no identifier (and failed with
/// ALREADY_EXISTS when it had one). With a request id, a retry returns the
/// first outcome and writes nothing; the same id on another request is
/// refused; an update retried after it applied is not applied twice (nor
/// refused for the etag it itself made stale).
async fn retries_with_a_request_id_write_once(app: TestApp) {
    use crate::{count, outbox};
    let mut client = app.agent();
    let db = app.db.connect().await;
    let anonymous = pb::Profile { given_name: "Walk-in".into(), ..person("", "", "") };
    let with_email = person("Ada", "Lovelace", "ada@example.com");
    let mut ids = Vec::new();
    for (request_id, profile) in [("create-anonymous-1", anonymous.clone()), ("create-ada-1", with_email.clone())] {
        let request = pb::CreateProfileRequest { request_id: request_id.into(), ..create(profile) };
        let first = client.create_profile(request.clone()).await.expect("create").into_inner();
        let again = client.create_profile(request).await.expect("a retry succeeds").into_inner();
        assert_eq!(again.id, first.id, "{request_id}: the first outcome");
        assert_eq!(again.etag, first.etag);
        ids.push(first.id);
    }
    assert_eq!(count(&db, "profiles").await, 2, "one profile per request id");
    assert_eq!(outbox(&db).await.len(), 2, "one event per request id");
    // Without a request id every call writes: that is what the id is for.
    client.create_profile(create(anonymous.clone())).await.expect("create");
    client.create_profile(create(anonymous.clone())).await.expect("create");
    assert_eq!(count(&db, "profiles").await, 4);

    let reused = pb::CreateProfileRequest { request_id: "create-ada-1".into(), ..create(anonymous.clone()) };
    let status = client.create_profile(reused).await.expect_err("another request under a used id");
    assert_eq!(crate::violated_fields(&status), ["request_id"]);
    let bad = pb::CreateProfileRequest { request_id: "has space".into(), ..create(anonymous) };
    assert_eq!(crate::violated_fields(&client.create_profile(bad).await.expect_err("bad id")), ["request_id"]);

    let ada = &ids[1];
    let request = pb::UpdateProfileRequest { request_id: "vip-1".into(), ..set_segment(ada, "VIP", "1") };
    let first = client.update_profile(request.clone()).await.expect("update").into_inner();
    assert_eq!(first.etag, "2");
    let again = client.update_profile(request).await.expect("a retry is not ABORTED by its own write").into_inner();
    assert_eq!((again.etag.as_str(), again.segment.as_str()), ("2", "VIP"), "applied once");
    assert_eq!(outbox(&db).await.len(), 5, "two creates, two creates without ids, one update");

    // Found in review: an update that changed nothing dropped its request id,
    // so its retry, after someone else's write, applied it over that write.
    let noop = pb::UpdateProfileRequest { request_id: "vip-again".into(), ..set_segment(ada, "VIP", "") };
    assert_eq!(client.update_profile(noop.clone()).await.expect("no-op").into_inner().etag, "2");
    client.update_profile(set_segment(ada, "SMB", "")).await.expect("someone else's write");
    let retried = client.update_profile(noop).await.expect("the retry").into_inner();
    assert_eq!((retried.segment.as_str(), retried.etag.as_str()), ("SMB", "3"), "the retry wrote nothing");

    // Concurrent retries of one request: one profile, the same answer to all.
    let request = pb::CreateProfileRequest {
        request_id: "create-concurrent".into(),
        ..create(pb::Profile { given_name: "Grace".into(), ..person("", "", "") })
    };
    let calls = (0..8).map(|_| {
        let (mut client, request) = (app.agent(), request.clone());
        async move { client.create_profile(request).await.expect("create").into_inner().id }
    });
    let answers: HashSet<String> = futures::future::join_all(calls).await.into_iter().collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(count(&db, "profiles").await, 5);
    assert_eq!(outbox(&db).await.len(), 7, "and one event for it");
}

on_both!(retried_writes, retries_with_a_request_id_write_once);
