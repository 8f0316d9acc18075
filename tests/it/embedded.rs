//! The embedded default: the same API on a SQLite file, no other server.

use c360_proto::v1 as pb;
use c360_tests::{TestApp, TestDb, http_get};
use tonic::Code;

use crate::{count, create, list_all, outbox, person, update};

#[tokio::test]
async fn embedded_sqlite_serves_the_profile_api() {
    let app = TestApp::spawn_on(TestDb::sqlite()).await;
    let mut client = app.agent();
    let mut ada = person("Ada", "Lovelace", "Ada@Example.com");
    ada.phones = vec![pb::PhoneNumber { number: "(415) 555-2671".into(), ..Default::default() }];
    ada.birth_date = "1985-12-10".into();
    let created = client.create_profile(create(ada)).await.expect("create").into_inner();
    assert_eq!(created.phones[0].number, "+14155552671");
    let fetched = client.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("get").into_inner();
    assert_eq!(fetched, created);

    let status = client.create_profile(create(person("Eve", "Copy", "ada@example.com"))).await.expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists);

    let king = pb::Profile { family_name: "King".into(), ..Default::default() };
    let update = |etag: &str| update(&created.id, &["family_name"], etag, king.clone());
    let updated = client.update_profile(update(&created.etag)).await.expect("update").into_inner();
    assert_eq!((updated.family_name.as_str(), updated.etag.as_str()), ("King", "2"));
    assert_eq!(client.update_profile(update(&created.etag)).await.expect_err("stale").code(), Code::Aborted);

    for i in 0..9 {
        client.create_profile(create(person(&format!("Émile{i}"), "Zola", ""))).await.expect("create");
    }
    let search = pb::SearchProfilesRequest {
        criterion: Some(pb::search_profiles_request::Criterion::NamePrefix("emile".into())),
        page_size: 4,
        ..Default::default()
    };
    let page = client.search_profiles(search).await.expect("search").into_inner();
    assert_eq!(page.profiles.len(), 4);
    assert!(!page.next_page_token.is_empty());
    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Phone as i32,
        value: "+14155552671".into(),
        source: String::new(),
    };
    assert_eq!(client.lookup_profile(lookup).await.expect("lookup").into_inner().id, created.id);

    let seen = list_all(&mut client, 3).await.len();
    assert_eq!(seen, 10);
    client
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
        .await
        .expect("delete");

    let db = app.db.connect().await;
    assert_eq!(count(&db, "profiles").await, 10);
    let events = outbox(&db).await;
    assert_eq!(events.len(), 12, "10 creates, 1 update, 1 delete");
    assert_eq!(events[1]["payload"]["changedFields"], serde_json::json!(["familyName"]));
}

#[tokio::test]
async fn concurrent_writers_on_sqlite_all_commit() {
    let app = TestApp::spawn_on(TestDb::sqlite()).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut client = app.service();
        tasks.push(tokio::spawn(async move {
            client
                .create_profile(create(person(&format!("W{i}"), "Writer", &format!("w{i}@example.com"))))
                .await
                .expect("create");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(count(&app.db.connect().await, "profiles").await, 16);
}

#[tokio::test]
async fn readiness_reports_the_database() {
    let app = TestApp::spawn_on(TestDb::sqlite()).await;
    let body = http_get(app.http_addr, "/readyz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""database":"ok""#), "{body}");
    let body = http_get(app.http_addr, "/healthz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}

/// Found by reading the landed code: SQLite ran with `synchronous = NORMAL`,
/// which acknowledges commits a power cut can still lose, and set it on one
/// pooled connection only. A system of record acknowledges what is durable.
#[tokio::test]
async fn the_embedded_database_acknowledges_only_durable_commits() {
    use c360_server::{Config, cache::ProfileCache};
    use clap::Parser;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let db = TestDb::sqlite();
    let pragma = |name: &str| Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"));
    let config = Config::try_parse_from(["c360-serve", "--database-url", &db.url]).expect("defaults");
    let store = config.database.connect(std::path::Path::new("."), 1, ProfileCache::none()).await.expect("connect");
    let row = store.db().query_one_raw(pragma("synchronous")).await.expect("pragma").expect("a row");
    assert_eq!(row.try_get::<i32>("", "synchronous").expect("value"), 2, "synchronous = FULL by default");
    let row = store.db().query_one_raw(pragma("journal_mode")).await.expect("pragma").expect("a row");
    assert_eq!(row.try_get::<String>("", "journal_mode").expect("value"), "wal");
    store.close().await.expect("close");

    let args = ["c360-serve", "--database-url", &db.url, "--sqlite-durability", "normal"];
    let config = Config::try_parse_from(args).expect("opt-in");
    let store = config.database.connect(std::path::Path::new("."), 1, ProfileCache::none()).await.expect("connect");
    let row = store.db().query_one_raw(pragma("synchronous")).await.expect("pragma").expect("a row");
    assert_eq!(row.try_get::<i32>("", "synchronous").expect("value"), 1, "NORMAL only when asked for");
}
