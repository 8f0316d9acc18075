//! The identity index: a strong identifier belongs to one live profile of a
//! tenant; conflicts name the holder; deletes and updates move the index.

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{count, create, person, update};

/// The holder id an ALREADY_EXISTS names, and the field it blames.
fn conflict(status: &Status) -> (String, String) {
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "IDENTIFIER_IN_USE");
    (info.metadata["conflicting_profile_id"].clone(), info.metadata["field"].clone())
}

#[tokio::test]
async fn an_identifier_held_by_another_profile_is_already_exists_naming_the_holder() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let mut holder = person("Ada", "Lovelace", "ada@example.com");
    holder.phones = vec![pb::PhoneNumber { number: "+44 20 7946 0958".into(), ..Default::default() }];
    holder.external_ids = vec![pb::ExternalId { source: "shopify".into(), id: "C-1".into(), lineage: None }];
    let holder = client.create_profile(create(holder)).await.expect("create").into_inner();

    let mut by_email = person("Other", "Person", " ADA+promo@Example.com");
    by_email.emails[0].primary = false;
    let by_phone = pb::Profile {
        phones: vec![pb::PhoneNumber { number: "0044 (0)20 7946 0958".into(), ..Default::default() }],
        ..person("Other", "Person", "")
    };
    let by_external = pb::Profile {
        external_ids: vec![pb::ExternalId { source: "Shopify".into(), id: " C-1 ".into(), lineage: None }],
        ..person("Other", "Person", "")
    };
    let cases = [
        (by_email, "profile.emails[0].address"),
        (by_phone, "profile.phones[0].number"),
        (by_external, "profile.external_ids[0].id"),
    ];
    let db = app.db.connect().await;
    for (profile, field) in cases {
        let status = client.create_profile(create(profile)).await.expect_err(field);
        assert_eq!(conflict(&status), (holder.id.clone(), field.to_owned()));
    }
    assert_eq!(count(&db, "profiles").await, 1, "no conflicting profile was written");
    assert_eq!(count(&db, "identities").await, 3);
}

#[tokio::test]
async fn the_same_identifier_in_another_tenant_is_no_conflict() {
    let app = TestApp::spawn().await;
    app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("acme");
    let mut other = app.client("globex", c360_server::auth::Role::Agent);
    other.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("globex");
}

#[tokio::test]
async fn concurrent_creates_with_one_email_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = app.service();
        tasks.push(tokio::spawn(async move {
            let profile = person(
                &format!("Racer{i}"),
                "Same",
                &format!("Same{}@example.com", if i % 2 == 0 { "" } else { "+x" }),
            );
            client.create_profile(create(profile)).await.map(|r| r.into_inner().id)
        }));
    }
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(id) => winners.push(id),
            Err(status) => holders.push(conflict(&status).0),
        }
    }
    assert_eq!(winners.len(), 1, "one profile holds the email");
    assert!(holders.iter().all(|h| *h == winners[0]), "every loser is told who holds it");
    let db = app.db.connect().await;
    assert_eq!(count(&db, "profiles").await, 1);
    assert_eq!(count(&db, "outbox").await, 1);
}

#[tokio::test]
async fn deleting_a_profile_releases_its_identifiers() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let first =
        client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create").into_inner();
    client
        .delete_profile(pb::DeleteProfileRequest { id: first.id.clone(), etag: String::new() })
        .await
        .expect("delete");
    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "ada@example.com".into(),
        source: String::new(),
    };
    assert_eq!(client.lookup_profile(lookup.clone()).await.expect_err("released").code(), Code::NotFound);
    let second = client
        .create_profile(create(person("Ada", "King", "ada@example.com")))
        .await
        .expect("claim again")
        .into_inner();
    assert_eq!(client.lookup_profile(lookup).await.expect("lookup").into_inner().id, second.id);
}

#[tokio::test]
async fn updating_identifiers_moves_the_index() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let created =
        client.create_profile(create(person("Ada", "Lovelace", "old@example.com"))).await.expect("create").into_inner();
    let other =
        client.create_profile(create(person("Bob", "Byron", "bob@example.com"))).await.expect("create").into_inner();
    let update = |email: &str| update(&created.id, &["emails"], "", person("", "", email));
    let status = client.update_profile(update("bob@example.com")).await.expect_err("taken");
    assert_eq!(conflict(&status).0, other.id);
    client.update_profile(update("new@example.com")).await.expect("move email");

    let lookup = |email: &str| pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: email.into(),
        source: String::new(),
    };
    assert_eq!(client.lookup_profile(lookup("old@example.com")).await.expect_err("released").code(), Code::NotFound);
    assert_eq!(client.lookup_profile(lookup("new@example.com")).await.expect("claimed").into_inner().id, created.id);
    // The released address can now be claimed by someone else.
    client.create_profile(create(person("Carl", "Cole", "old@example.com"))).await.expect("reuse released email");
}

#[tokio::test]
async fn one_profile_cannot_list_the_same_identifier_twice() {
    let app = TestApp::spawn().await;
    let mut profile = person("Ada", "Lovelace", "ada@example.com");
    profile.emails.push(pb::EmailAddress { address: "ADA+work@example.com".into(), ..Default::default() });
    let status = app.agent().create_profile(create(profile)).await.expect_err("duplicate");
    assert_eq!(crate::violated_fields(&status), ["profile.emails[1].address"]);
}
