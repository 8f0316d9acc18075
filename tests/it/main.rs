//! c360's integration tests: one binary, one module per capability. Every test
//! runs the real app against its own PostgreSQL database (or SQLite file) and
//! speaks only the public gRPC API; assertions on stored rows read the
//! database directly.

/// Polls a condition (which may `.await`) every 50 ms for up to 30 s.
macro_rules! eventually {
    ($condition:expr) => {{
        let mut met = false;
        for _ in 0..600 {
            if $condition {
                met = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(met, "not within 30 s: {}", stringify!($condition));
    }};
}

/// Runs `$body(app)` as two tests: on PostgreSQL and on the embedded SQLite.
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$body(c360_tests::TestApp::spawn().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$body(c360_tests::TestApp::spawn_on(c360_tests::TestDb::sqlite()).await).await;
            }
        }
    };
}

mod access;
mod audit;
mod auth;
mod avro;
mod cache;
mod changes;
mod consents;
mod dedupe;
mod embedded;
mod endpoints;
mod export;
mod graphql;
mod identities;
mod import;
mod inputs;
mod jobs;
mod leaks;
mod limits;
mod merges;
mod outbox;
mod profiles;
mod relay;
mod resolve;
mod review;
mod seed;
mod serving;
mod tls;
mod validation;

use c360_proto::v1 as pb;
use c360_tests::ProfileClient;
use prost_types::FieldMask;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A person with a name and one email.
pub fn person(given: &str, family: &str, email: &str) -> pb::Profile {
    pb::Profile {
        kind: pb::ProfileKind::Person as i32,
        given_name: given.into(),
        family_name: family.into(),
        emails: if email.is_empty() {
            vec![]
        } else {
            vec![pb::EmailAddress { address: email.into(), label: "home".into(), primary: true, lineage: None }]
        },
        ..Default::default()
    }
}

/// An organization with a company name and a segment.
pub fn organization(name: &str, segment: &str) -> pb::Profile {
    pb::Profile {
        kind: pb::ProfileKind::Organization as i32,
        company_name: name.into(),
        segment: segment.into(),
        ..Default::default()
    }
}

/// CreateProfile with the default source.
pub fn create(profile: pb::Profile) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest { request_id: String::new(), profile: Some(profile), source: String::new() }
}

/// UpdateProfile of `id`: the `mask` fields take the values in `changes`.
pub fn update(id: &str, mask: &[&str], etag: &str, changes: pb::Profile) -> pb::UpdateProfileRequest {
    pb::UpdateProfileRequest {
        request_id: String::new(),
        profile: Some(pb::Profile { id: id.into(), ..changes }),
        update_mask: Some(FieldMask { paths: mask.iter().map(|p| p.to_string()).collect() }),
        etag: etag.into(),
        source: String::new(),
    }
}

/// UpdateProfile of `id` setting its segment.
pub fn set_segment(id: &str, segment: &str, etag: &str) -> pb::UpdateProfileRequest {
    update(id, &["segment"], etag, pb::Profile { segment: segment.into(), ..Default::default() })
}

/// An UpdateTenantSettings of the match thresholds alone.
pub fn thresholds(auto: f64, review: f64) -> pb::UpdateTenantSettingsRequest {
    pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings {
            match_auto_threshold: auto,
            match_review_threshold: review,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["match_auto_threshold".into(), "match_review_threshold".into()],
        }),
        etag: String::new(),
    }
}

/// The ids of a whole ListProfiles walk, `page_size` at a time.
pub async fn list_all(client: &mut ProfileClient, page_size: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListProfilesRequest { page_size, page_token, show_deleted: false };
        let page = client.list_profiles(request).await.expect("page").into_inner();
        assert!(page.profiles.len() <= page_size as usize);
        ids.extend(page.profiles.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// Asserts INVALID_ARGUMENT and returns the fields its BadRequest names.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad_request = details.bad_request().unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    bad_request.field_violations.iter().map(|v| v.field.clone()).collect()
}

/// A store of its own on the database at `url` (one connection).
pub async fn store(url: &str) -> c360_server::store::Store {
    c360_server::store::Store::connect(
        url,
        1,
        c360_server::store::SqliteDurability::Full,
        c360_server::cache::ProfileCache::none(),
    )
    .await
    .expect("connect")
}

/// Number of rows in `table`.
pub async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM {table}")))
        .await
        .expect("count")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

/// The event type and subject (topic) of every outbox row, in insertion order.
pub async fn outbox_subjects(db: &DatabaseConnection) -> Vec<(String, String)> {
    let sql = "SELECT event_type, subject FROM outbox ORDER BY seq".to_owned();
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("outbox rows");
    rows.iter()
        .map(|row| (row.try_get("", "event_type").expect("event_type"), row.try_get("", "subject").expect("subject")))
        .collect()
}

/// Every outbox envelope, in insertion order.
pub async fn outbox(db: &DatabaseConnection) -> Vec<serde_json::Value> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox ORDER BY seq".to_owned(),
        ))
        .await
        .expect("outbox rows");
    rows.iter()
        .map(|row| match db.get_database_backend() {
            DbBackend::Sqlite => {
                let text: String = row.try_get("", "payload").expect("payload");
                serde_json::from_str(&text).expect("json")
            }
            _ => row.try_get::<serde_json::Value>("", "payload").expect("payload"),
        })
        .collect()
}
