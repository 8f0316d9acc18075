//! Merges (issue 18). What exists so far: a merged id resolves to its
//! target on every read and write by id, through chains. MergeProfiles is
//! still to come, so these tests mark rows merged the way it will.

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{create, person, set_segment};

/// Marks `source` merged into `target`, as MergeProfiles will: MERGED,
/// `merged_into`, identifiers released.
async fn mark_merged(db: &DatabaseConnection, source: &str, target: &str) {
    let backend = db.get_database_backend();
    let uuid = |id: &str| match backend {
        sea_orm::DbBackend::Postgres => format!("'{id}'::uuid"),
        _ => format!("x'{}'", id.replace('-', "")),
    };
    for sql in [
        format!(
            "UPDATE profiles SET status = 'MERGED', merged_into = {}, version = version + 1 WHERE id = {}",
            uuid(target),
            uuid(source)
        ),
        format!("DELETE FROM identities WHERE profile_id = {}", uuid(source)),
    ] {
        db.execute_raw(Statement::from_string(backend, sql)).await.expect("mark merged");
    }
}

async fn merged_ids_resolve_to_their_target_on_every_read_and_write(app: TestApp) {
    let mut client = app.agent();
    let new = |given: &'static str, email: &'static str| {
        let mut client = client.clone();
        async move { client.create_profile(create(person(given, "Merged", email))).await.expect("create").into_inner() }
    };
    let (a, b) = (new("Ann", "ann@example.com").await, new("Anne", "anne@example.com").await);
    let (d, e, f) = (new("Dee", "").await, new("Dea", "").await, new("Deanna", "").await);
    let db = app.db.connect().await;
    mark_merged(&db, &a.id, &b.id).await;
    mark_merged(&db, &d.id, &e.id).await;
    mark_merged(&db, &e.id, &f.id).await;

    let read = client.get_profile(pb::GetProfileRequest { id: a.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (b.id.as_str(), a.id.as_str()));
    let own = client.get_profile(pb::GetProfileRequest { id: b.id.clone() }).await.expect("get").into_inner();
    assert_eq!((own.id.as_str(), own.redirected_from.as_str()), (b.id.as_str(), ""), "asked by its own id");

    let batch = pb::BatchGetProfilesRequest { ids: vec![a.id.clone(), b.id.clone()] };
    let batch = client.batch_get_profiles(batch).await.expect("batch").into_inner();
    let answered: Vec<(&str, &str)> =
        batch.profiles.iter().map(|p| (p.id.as_str(), p.redirected_from.as_str())).collect();
    assert_eq!(answered, [(b.id.as_str(), a.id.as_str()), (b.id.as_str(), "")]);
    assert!(batch.missing_ids.is_empty());

    // A write given the old id applies to the target, with the target's etag.
    // The merged profile's own etag (2: marking it merged moved it on) is not the target's (1).
    assert_eq!(b.etag, "1");
    let stale = client.update_profile(set_segment(&a.id, "VIP", "2")).await;
    let stale = stale.expect_err("the merged profile's own etag is not the target's");
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    let updated = client.update_profile(set_segment(&a.id, "VIP", &b.etag)).await.expect("update").into_inner();
    assert_eq!((updated.id.as_str(), updated.redirected_from.as_str()), (b.id.as_str(), a.id.as_str()));
    assert_eq!(updated.segment, "VIP");
    let read = client.get_profile(pb::GetProfileRequest { id: b.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.segment.as_str(), read.etag.as_str()), ("VIP", updated.etag.as_str()));

    // Chains resolve (D → E → F), on reads and writes.
    let read = client.get_profile(pb::GetProfileRequest { id: d.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (f.id.as_str(), d.id.as_str()));
    let deleted = pb::DeleteProfileRequest { id: d.id.clone(), etag: f.etag.clone() };
    let deleted = client.delete_profile(deleted).await.expect("delete").into_inner();
    assert_eq!((deleted.id.as_str(), deleted.status), (f.id.as_str(), pb::ProfileStatus::Inactive as i32));

    // Merged profiles are never listed; their ids resolve instead.
    let listed = crate::list_all(&mut client, 50).await;
    assert!(!listed.contains(&a.id) && !listed.contains(&d.id) && !listed.contains(&e.id), "{listed:?}");
    assert!(listed.contains(&b.id));
}
on_both!(merged_ids_resolve, merged_ids_resolve_to_their_target_on_every_read_and_write);
