//! Merges and unmerges (docs/merges.md): stable ids on every read and
//! write, survivorship, exact unmerge, history, concurrency and refusals.
//! Some tests mark rows merged by hand, as MergeProfiles leaves them, to
//! reach states (chains, old stored merges) without building them first.

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{create, person, set_segment};

/// A profile id as an SQL literal of `db`'s backend.
fn uuid_literal(db: &DatabaseConnection, id: &str) -> String {
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("'{id}'::uuid"),
        _ => format!("x'{}'", id.replace('-', "")),
    }
}

/// Marks `source` merged into `target`, as MergeProfiles leaves it: MERGED,
/// `merged_into`, identifiers released.
async fn mark_merged(db: &DatabaseConnection, source: &str, target: &str) {
    let backend = db.get_database_backend();
    let uuid = |id: &str| uuid_literal(db, id);
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

/// A SetConsent of `status` for `purpose` on `profile`, captured now.
fn decide(profile: &str, purpose: pb::ConsentPurpose, status: pb::ConsentStatus) -> pb::SetConsentRequest {
    pb::SetConsentRequest {
        profile_id: profile.into(),
        purpose: purpose as i32,
        status: status as i32,
        source: "test".into(),
        ..Default::default()
    }
}

/// A MergeProfilesRequest of `sources` into `target` for a duplicate.
fn merge(target: &str, sources: &[&str]) -> pb::MergeProfilesRequest {
    pb::MergeProfilesRequest {
        target_id: target.into(),
        source_ids: sources.iter().map(|s| s.to_string()).collect(),
        reason: pb::MergeReason::Duplicate as i32,
        ..Default::default()
    }
}

fn with_source(mut request: pb::CreateProfileRequest, source: &str) -> pb::CreateProfileRequest {
    request.source = source.into();
    request
}

async fn three_profiles_merge_into_one_golden_record(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    let priority = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { source_priority: vec!["salesforce".into()], ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["source_priority".into()] }),
        etag: String::new(),
    };
    admin.update_tenant_settings(priority).await.expect("source priority");

    let mut client = app.agent();
    let mut target = person("Ann", "Lee", "ann@example.com");
    target.phones =
        vec![pb::PhoneNumber { number: "+14155550100".into(), label: String::new(), primary: true, lineage: None }];
    let target = client.create_profile(with_source(create(target), "pos")).await.expect("create").into_inner();
    let mut crm = person("Anne", "Lee", "anne.lee@work.example");
    crm.external_ids = vec![pb::ExternalId { source: "salesforce".into(), id: "003A".into(), lineage: None }];
    let crm = client.create_profile(with_source(create(crm), "salesforce")).await.expect("create").into_inner();
    let mut web = person("A.", "", "ann.web@example.com");
    web.segment = "VIP".into();
    let web = client.create_profile(with_source(create(web), "shopify")).await.expect("create").into_inner();

    // Consent: the web profile's later grant wins over the target's denial.
    let mut consents = app.consents(TENANT, &[Role::Agent]);
    let at = |minutes: i64| {
        let t = chrono::Utc::now() - chrono::Duration::minutes(minutes);
        prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
    };
    for (profile, status, minutes) in
        [(&target.id, pb::ConsentStatus::Denied, 30), (&web.id, pb::ConsentStatus::Granted, 5)]
    {
        let decision = pb::SetConsentRequest {
            profile_id: profile.clone(),
            purpose: pb::ConsentPurpose::EmailMarketing as i32,
            status: status as i32,
            source: "test".into(),
            capture_time: Some(at(minutes)),
            ..Default::default()
        };
        consents.set_consent(decision).await.expect("consent");
    }

    // Agents do not merge; stewards do. A preview writes nothing.
    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let refused = agent.merge_profiles(merge(&target.id, &[&crm.id, &web.id])).await.expect_err("agents cannot merge");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let preview = pb::PreviewMergeRequest {
        target_id: target.id.clone(),
        source_ids: vec![crm.id.clone(), web.id.clone()],
        ..Default::default()
    };
    let preview = steward.preview_merge(preview).await.expect("preview").into_inner();
    assert_eq!(preview.profile.as_ref().expect("profile").given_name, "Anne");
    let unchanged = client.get_profile(pb::GetProfileRequest { id: crm.id.clone() }).await.expect("get").into_inner();
    assert_eq!((unchanged.id.as_str(), unchanged.redirected_from.as_str()), (crm.id.as_str(), ""), "nothing written");

    // Bad requests change nothing.
    let own = steward.merge_profiles(merge(&target.id, &[&target.id])).await.expect_err("into itself");
    assert_eq!(own.code(), tonic::Code::InvalidArgument);
    let mut stale = merge(&target.id, &[&crm.id]);
    stale.etags = [(crm.id.clone(), "7".to_owned())].into();
    assert_eq!(steward.merge_profiles(stale).await.expect_err("stale").code(), tonic::Code::Aborted);
    let org = client.create_profile(create(crate::organization("Acme", "SMB"))).await.expect("org").into_inner();
    let kinds = steward.merge_profiles(merge(&target.id, &[&org.id])).await.expect_err("a person and an organization");
    assert_eq!(kinds.code(), tonic::Code::FailedPrecondition);
    // More sources than the tenant's cap: refused, naming the setting.
    let cap = |max: u32| pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { max_merge_sources: max, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["max_merge_sources".into()] }),
        etag: String::new(),
    };
    admin.update_tenant_settings(cap(1)).await.expect("cap of one");
    let capped = steward.merge_profiles(merge(&target.id, &[&crm.id, &web.id])).await.expect_err("over the cap");
    assert!(crate::violated_fields(&capped).contains(&"source_ids".to_owned()), "{capped:?}");
    assert!(capped.message().contains("max_merge_sources"), "{capped:?}");
    let too_high = admin.update_tenant_settings(cap(101)).await.expect_err("at most 100");
    assert_eq!(crate::violated_fields(&too_high), ["max_merge_sources"]);
    admin.update_tenant_settings(cap(0)).await.expect("back to the default");
    // The match thresholds are tenant settings too: probabilities, review below auto.
    let set = admin.update_tenant_settings(crate::thresholds(0.99, 0.8)).await.expect("thresholds").into_inner();
    assert_eq!((set.match_auto_threshold, set.match_review_threshold), (0.99, 0.8));
    let crossed = admin.update_tenant_settings(crate::thresholds(0.9, 0.95)).await.expect_err("review above auto");
    assert_eq!(crate::violated_fields(&crossed), ["match_review_threshold"]);
    let certain =
        admin.update_tenant_settings(crate::thresholds(1.0, 0.0)).await.expect_err("not a probability below 1");
    assert_eq!(crate::violated_fields(&certain), ["match_auto_threshold"]);
    admin.update_tenant_settings(crate::thresholds(0.0, 0.0)).await.expect("back to the defaults");

    let mut request = merge(&target.id, &[&crm.id, &web.id]);
    request.etags = [(target.id.clone(), target.etag.clone())].into();
    let merged = steward.merge_profiles(request).await.expect("merge").into_inner();
    assert!(!merged.merge_id.is_empty());
    let golden = merged.profile.expect("profile");
    assert_eq!(golden.id, target.id);
    assert_eq!(golden.given_name, "Anne", "salesforce is the most trusted source");
    assert_eq!(golden.segment, "VIP", "the only value");
    let mut emails: Vec<&str> = golden.emails.iter().map(|e| e.address.as_str()).collect();
    emails.sort_unstable();
    assert_eq!(emails, ["ann.web@example.com", "ann@example.com", "anne.lee@work.example"]);
    assert_eq!(golden.emails.iter().filter(|e| e.primary).count(), 1);
    assert_eq!(golden.external_ids.len(), 1);
    assert_eq!(golden.lineage["given_name"].source, "salesforce");
    let rule = |field: &str| merged.decisions.iter().find(|d| d.field == field).map(|d| d.rule.clone());
    assert_eq!(rule("given_name").as_deref(), Some("SOURCE_PRIORITY"));
    assert_eq!(rule("segment").as_deref(), Some("ONLY_VALUE"));

    // The sources' ids resolve to the target; their identifiers find it.
    let read = client.get_profile(pb::GetProfileRequest { id: web.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (target.id.as_str(), web.id.as_str()));
    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "anne.lee@work.example".into(),
        source: String::new(),
    };
    assert_eq!(client.lookup_profile(lookup).await.expect("lookup").into_inner().id, target.id);
    let again = steward.merge_profiles(merge(&target.id, &[&crm.id])).await.expect_err("already merged");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);

    // Consent in force for the target: the latest decision.
    let state = consents
        .get_consents(pb::GetConsentsRequest { profile_id: target.id.clone() })
        .await
        .expect("consents")
        .into_inner();
    let email = state.consents.iter().find(|c| c.purpose == pb::ConsentPurpose::EmailMarketing as i32).expect("email");
    assert_eq!(email.status, pb::ConsentStatus::Granted as i32, "{state:?}");

    // One CustomerMergedEvent per source; the history names it all.
    let envelopes = crate::outbox(&app.db.connect().await).await;
    let mut merged_sources: Vec<&str> = envelopes
        .iter()
        .filter(|e| e["eventType"] == "CustomerMergedEvent")
        .map(|e| {
            assert_eq!(e["payload"]["targetCustomerId"], target.id.as_str());
            assert_eq!(e["payload"]["mergeReason"], "DUPLICATE");
            e["payload"]["sourceCustomerId"].as_str().expect("source")
        })
        .collect();
    merged_sources.sort_unstable();
    let mut expected = [crm.id.as_str(), web.id.as_str()];
    expected.sort_unstable();
    assert_eq!(merged_sources, expected);
    for id in [&target.id, &crm.id] {
        let history = pb::ListMergeHistoryRequest { profile_id: id.clone() };
        let history = steward.list_merge_history(history).await.expect("history").into_inner();
        assert_eq!(history.merges.len(), 1);
        let merge = &history.merges[0];
        assert_eq!(
            (merge.merge_id.as_str(), merge.reason),
            (merged.merge_id.as_str(), pb::MergeReason::Duplicate as i32)
        );
        assert_eq!(merge.actor, "test-user");
        assert_eq!(merge.source_ids, [crm.id.clone(), web.id.clone()]);
    }

    // A chain through merges: the target merged on into another.
    let last = client.create_profile(create(person("Ann", "Final", ""))).await.expect("create").into_inner();
    steward.merge_profiles(merge(&last.id, &[&target.id])).await.expect("merge the target on");
    let read = client.get_profile(pb::GetProfileRequest { id: crm.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (last.id.as_str(), crm.id.as_str()));
    let listed = crate::list_all(&mut client, 100).await;
    assert!(!listed.contains(&target.id) && listed.contains(&last.id));
}
on_both!(three_profiles_merge, three_profiles_merge_into_one_golden_record);

#[tokio::test]
async fn a_merge_and_its_unmerge_reach_another_instances_cache_before_they_return() {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let app = TestApp::spawn_with_redis(&[]).await;
    let sibling = app.sibling(&[]).await;
    let mut client = app.agent();
    let target = client.create_profile(create(person("Ann", "Lee", "ann@example.com"))).await.expect("create");
    let source = client.create_profile(create(person("Anne", "Lee", "anne@example.com"))).await.expect("create");
    let (target, source) = (target.into_inner(), source.into_inner());
    let mut reader = sibling.agent();
    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "anne@example.com".into(),
        source: String::new(),
    };
    for _ in 0..2 {
        reader.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("cached by the sibling");
        reader.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("cached by the sibling");
        reader.lookup_profile(lookup.clone()).await.expect("holder cached by the sibling");
    }
    let merge = pb::MergeProfilesRequest {
        target_id: target.id.clone(),
        source_ids: vec![source.id.clone()],
        reason: pb::MergeReason::Manual as i32,
        ..Default::default()
    };
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let merged = steward.merge_profiles(merge).await.expect("merge").into_inner();
    let read = reader.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (target.id.as_str(), source.id.as_str()));
    assert_eq!(read.emails.len(), 2, "the target as merged, not as cached");
    assert_eq!(reader.lookup_profile(lookup.clone()).await.expect("lookup").into_inner().id, target.id);

    // The sibling caches the merged state again; the unmerge reaches it too.
    for _ in 0..2 {
        reader.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("cached by the sibling");
        reader.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("cached by the sibling");
        reader.lookup_profile(lookup.clone()).await.expect("holder cached by the sibling");
    }
    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, ..Default::default() };
    steward.unmerge_profile(unmerge).await.expect("unmerge");
    let read = reader.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (source.id.as_str(), ""), "its own again");
    let read = reader.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("get").into_inner();
    let emails: Vec<&str> = read.emails.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(emails, ["ann@example.com"], "the target without what the source brought");
    assert_eq!(reader.lookup_profile(lookup).await.expect("lookup").into_inner().id, source.id);
}

async fn consent_rpcs_given_a_merged_id_answer_for_the_target(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut client = app.agent();
    let target = client.create_profile(create(person("Ann", "Lee", "ann@example.com"))).await.expect("create");
    let source = client.create_profile(create(person("Anne", "Lee", "anne@example.com"))).await.expect("create");
    let (target, source) = (target.into_inner(), source.into_inner());
    let mut consents = app.consents(TENANT, &[Role::Agent]);
    let sms = decide(&source.id, pb::ConsentPurpose::SmsMarketing, pb::ConsentStatus::Granted);
    consents.set_consent(sms).await.expect("consent on the source");
    let merge = pb::MergeProfilesRequest {
        target_id: target.id.clone(),
        source_ids: vec![source.id.clone()],
        reason: pb::MergeReason::Duplicate as i32,
        ..Default::default()
    };
    app.identity(TENANT, &[Role::Steward]).merge_profiles(merge).await.expect("merge");

    // SetConsent on the old id records for the target.
    let email = decide(&source.id, pb::ConsentPurpose::EmailMarketing, pb::ConsentStatus::Denied);
    let set = consents.set_consent(email).await.expect("consent on the old id").into_inner();
    assert_eq!(set.decision.expect("decision").profile_id, target.id);
    // GetConsents on the old id answers for the target, moved decisions included.
    let got = consents.get_consents(pb::GetConsentsRequest { profile_id: source.id.clone() }).await.expect("get");
    let got = got.into_inner();
    assert_eq!(got.profile_id, target.id);
    let purposes: Vec<i32> = got.consents.iter().map(|c| c.purpose).collect();
    assert!(purposes.contains(&(pb::ConsentPurpose::SmsMarketing as i32)), "{got:?}");
    assert!(purposes.contains(&(pb::ConsentPurpose::EmailMarketing as i32)), "{got:?}");
    // History on the old id is the target's.
    let history = pb::ListConsentHistoryRequest { profile_id: source.id.clone(), ..Default::default() };
    let history = consents.list_consent_history(history).await.expect("history").into_inner();
    assert!(history.decisions.iter().all(|d| d.profile_id == target.id) && !history.decisions.is_empty());
    // ... the source's own decisions included, saying whose they were.
    let moved: Vec<_> = history.decisions.iter().filter(|d| d.recorded_for == source.id).collect();
    assert_eq!(moved.len(), 1, "{history:?}");
    assert_eq!(moved[0].purpose, pb::ConsentPurpose::SmsMarketing as i32);
    assert!(history.decisions.iter().filter(|d| d.recorded_for.is_empty()).count() == 1, "{history:?}");
    // Checks by the old id decide by the target's decisions.
    let subject = |id: &str| pb::ConsentSubject { subject: Some(pb::consent_subject::Subject::ProfileId(id.into())) };
    let check = pb::CheckConsentRequest {
        subject: Some(subject(&source.id)),
        purpose: pb::ConsentPurpose::SmsMarketing as i32,
    };
    let check = consents.check_consent(check).await.expect("check").into_inner();
    assert!(check.allowed, "{check:?}");
    assert_eq!(check.profile_id, target.id);
    let batch = pb::BatchCheckConsentRequest {
        purpose: pb::ConsentPurpose::SmsMarketing as i32,
        subjects: vec![subject(&source.id), subject(&target.id)],
    };
    let batch = consents.batch_check_consent(batch).await.expect("batch").into_inner();
    assert!(batch.results.iter().all(|r| r.allowed && r.profile_id == target.id), "{batch:?}");
    assert_eq!(batch.results[0].subject, Some(subject(&source.id)), "answered in request order, as asked");
}
on_both!(consent_rpcs_follow_merges, consent_rpcs_given_a_merged_id_answer_for_the_target);

async fn two_merges_of_one_profile_at_once_leave_one_merge(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut client = app.agent();
    let mut ids = Vec::new();
    for given in ["Ann", "Anne", "Annie"] {
        ids.push(client.create_profile(create(person(given, "Lee", ""))).await.expect("create").into_inner().id);
    }
    let merges = [(ids[0].clone(), ids[2].clone()), (ids[1].clone(), ids[2].clone())].map(|(target, source)| {
        let mut steward = app.identity(TENANT, &[Role::Steward]);
        tokio::spawn(async move {
            let request = pb::MergeProfilesRequest {
                target_id: target,
                source_ids: vec![source],
                reason: pb::MergeReason::Duplicate as i32,
                ..Default::default()
            };
            steward.merge_profiles(request).await
        })
    });
    let mut outcomes = Vec::new();
    for merge in merges {
        outcomes.push(merge.await.expect("task"));
    }
    let won: Vec<_> = outcomes.iter().filter(|o| o.is_ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(matches!(lost.code(), tonic::Code::FailedPrecondition | tonic::Code::Aborted), "{lost:?}");
    }
    // A create retried after its profile was merged answers with the target.
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut first = create(person("Dee", "Lee", ""));
    first.request_id = request_id.clone();
    let created = client.create_profile(first.clone()).await.expect("create").into_inner();
    let merge = pb::MergeProfilesRequest {
        target_id: ids[0].clone(),
        source_ids: vec![created.id.clone()],
        reason: pb::MergeReason::Manual as i32,
        ..Default::default()
    };
    app.identity(TENANT, &[Role::Steward]).merge_profiles(merge).await.expect("merge the created one");
    let retried = client.create_profile(first).await.expect("retry").into_inner();
    assert_eq!((retried.id.as_str(), retried.redirected_from.as_str()), (ids[0].as_str(), created.id.as_str()));
}
on_both!(concurrent_merges, two_merges_of_one_profile_at_once_leave_one_merge);

/// A profile's content as a caller compares it: what a write or an unmerge
/// must keep, without the bookkeeping every write moves on (and the
/// completeness, derived from the rest).
fn content(profile: &pb::Profile) -> pb::Profile {
    pb::Profile {
        completeness: 0.0,
        etag: String::new(),
        update_time: None,
        lineage: Default::default(),
        redirected_from: String::new(),
        ..profile.clone()
    }
}

fn text(value: &str) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(value.into())) }
}

async fn a_merge_written_through_then_undone_restores_each_profile_exactly(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut admin = app.admin();
    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let mut consents = app.consents(TENANT, &[Role::Admin]);
    let mut ann = person("Ann", "Lee", "ann@example.com");
    ann.phones =
        vec![pb::PhoneNumber { number: "+14155550100".into(), label: String::new(), primary: true, lineage: None }];
    ann.segment = "retail".into();
    ann.birth_date = "1980-01-01".into();
    ann.attributes = Some(prost_types::Struct { fields: [("tier".to_owned(), text("silver"))].into() });
    let target = admin.create_profile(with_source(create(ann), "crm")).await.expect("create").into_inner();
    let mut anne = person("Anne", "Lee-Smith", "anne@example.com");
    anne.addresses = vec![pb::PostalAddress {
        lines: vec!["1 Main St".into()],
        locality: "Springfield".into(),
        country_code: "US".into(),
        ..Default::default()
    }];
    anne.external_ids = vec![pb::ExternalId { source: "pos".into(), id: "77".into(), lineage: None }];
    anne.attributes = Some(prost_types::Struct {
        fields: [("tier".to_owned(), text("gold")), ("club".to_owned(), text("yes"))].into(),
    });
    let source = admin.create_profile(with_source(create(anne), "pos")).await.expect("create").into_inner();
    consents
        .set_consent(decide(&source.id, pb::ConsentPurpose::SmsMarketing, pb::ConsentStatus::Granted))
        .await
        .expect("consent on the source");
    let target_before = admin.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("get");
    let source_before = admin.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("get");
    let (target_before, source_before) = (target_before.into_inner(), source_before.into_inner());

    let merged = identity.merge_profiles(merge(&target.id, &[&source.id])).await.expect("merge").into_inner();
    let golden = merged.profile.expect("golden record");
    assert_eq!(golden.emails.len(), 2);

    // After the merge: a write through the source's old id, one through the
    // target's own id, and consent through the old id.
    let through_old = pb::Profile {
        phones: [golden.phones.clone(), vec![pb::PhoneNumber { number: "+14155550199".into(), ..Default::default() }]]
            .concat(),
        segment: "vip".into(),
        ..Default::default()
    };
    let written = admin
        .update_profile(crate::update(&source.id, &["phones", "segment"], &golden.etag, through_old))
        .await
        .expect("update through the old id")
        .into_inner();
    assert_eq!(written.redirected_from, source.id);
    let own = pb::Profile {
        emails: [
            written.emails.clone(),
            vec![pb::EmailAddress { address: "ann.work@example.com".into(), ..Default::default() }],
        ]
        .concat(),
        ..Default::default()
    };
    let own = admin.update_profile(crate::update(&target.id, &["emails"], &written.etag, own)).await;
    let own = own.expect("own update").into_inner();
    consents
        .set_consent(decide(&source.id, pb::ConsentPurpose::EmailMarketing, pb::ConsentStatus::Denied))
        .await
        .expect("consent through the old id");
    // A withdrawal for the source's email, sent to the target's own id.
    let withdrawal = pb::SetConsentRequest {
        contact_point: Some(pb::ContactPoint {
            point: Some(pb::contact_point::Point::Email("anne@example.com".into())),
        }),
        ..decide(&target.id, pb::ConsentPurpose::EmailMarketing, pb::ConsentStatus::Revoked)
    };
    consents.set_consent(withdrawal).await.expect("consent for the source's email");

    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id.clone(), reason: "not the same person".into() };
    let undone = identity.unmerge_profile(unmerge.clone()).await.expect("unmerge").into_inner();
    assert_eq!(undone.merge_id, merged.merge_id);

    // The source: as it was, plus what arrived through its old id.
    let source_after = admin.get_profile(pb::GetProfileRequest { id: source.id.clone() }).await.expect("get");
    let source_after = source_after.into_inner();
    assert_eq!(source_after.redirected_from, "", "its id is its own again");
    let mut expected = content(&source_before);
    // The number keeps the lineage of the write that brought it.
    let brought = written.phones.iter().find(|p| p.number == "+14155550199").and_then(|p| p.lineage.clone());
    assert_eq!(brought.as_ref().map(|l| l.source.as_str()), Some("api"));
    expected.phones = vec![pb::PhoneNumber { number: "+14155550199".into(), lineage: brought, ..Default::default() }];
    expected.segment = "vip".into();
    assert_eq!(content(&source_after), expected, "field by field");
    assert!(source_after.etag.parse::<i64>().expect("etag") > source_before.etag.parse::<i64>().expect("etag"));
    assert_eq!(content(&undone.sources[0]), expected);

    // The target: without what the source brought, with its own write.
    let target_after = admin.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("get");
    let mut expected = content(&target_before);
    let work = own.emails.iter().find(|e| e.address == "ann.work@example.com").and_then(|e| e.lineage.clone());
    assert!(work.is_some(), "an added address has its own lineage");
    expected.emails.push(pb::EmailAddress {
        address: "ann.work@example.com".into(),
        lineage: work,
        ..Default::default()
    });
    assert_eq!(content(&target_after.into_inner()), expected, "field by field");

    // Identifiers follow their profile.
    let lookup = |r#type: pb::IdentifierType, value: &str, source: &str| pb::LookupProfileRequest {
        r#type: r#type as i32,
        value: value.into(),
        source: source.into(),
    };
    for (request, holder) in [
        (lookup(pb::IdentifierType::Email, "anne@example.com", ""), &source.id),
        (lookup(pb::IdentifierType::Phone, "+14155550199", ""), &source.id),
        (lookup(pb::IdentifierType::ExternalId, "77", "pos"), &source.id),
        (lookup(pb::IdentifierType::Email, "ann.work@example.com", ""), &target.id),
        (lookup(pb::IdentifierType::Phone, "+14155550100", ""), &target.id),
    ] {
        let found = admin.lookup_profile(request.clone()).await.expect("lookup").into_inner();
        assert_eq!(&found.id, holder, "{request:?}");
    }

    // Consent: the source's own, what arrived through its old id and what
    // is about its email are its again; the target keeps none of them.
    let state = |profile: &str| pb::GetConsentsRequest { profile_id: profile.into() };
    let source_consents = consents.get_consents(state(&source.id)).await.expect("get").into_inner();
    let mut purposes: Vec<(i32, bool)> =
        source_consents.consents.iter().map(|c| (c.purpose, c.contact_point.is_some())).collect();
    purposes.sort();
    let (email, sms) = (pb::ConsentPurpose::EmailMarketing as i32, pb::ConsentPurpose::SmsMarketing as i32);
    assert_eq!(purposes, [(email, false), (email, true), (sms, false)], "{source_consents:?}");
    let target_consents = consents.get_consents(state(&target.id)).await.expect("get").into_inner();
    assert!(target_consents.consents.is_empty(), "{target_consents:?}");
    let history = |profile: &str| pb::ListConsentHistoryRequest { profile_id: profile.into(), ..Default::default() };
    let source_history = consents.list_consent_history(history(&source.id)).await.expect("history").into_inner();
    assert_eq!(source_history.decisions.len(), 3, "{source_history:?}");
    assert!(source_history.decisions.iter().all(|d| d.profile_id == source.id && d.recorded_for.is_empty()));
    let target_history = consents.list_consent_history(history(&target.id)).await.expect("history").into_inner();
    assert!(target_history.decisions.is_empty(), "{target_history:?}");

    let history = identity
        .list_merge_history(pb::ListMergeHistoryRequest { profile_id: target.id.clone() })
        .await
        .expect("history")
        .into_inner();
    assert!(history.merges[0].undo_time.is_some() && !history.merges[0].undone_by.is_empty());
    let envelopes = crate::outbox(&app.db.connect().await).await;
    let unmerged: Vec<_> = envelopes.iter().filter(|e| e["eventType"] == "CustomerUnmergedEvent").collect();
    assert_eq!(unmerged.len(), 1);
    assert_eq!(unmerged[0]["payload"]["sourceCustomerId"], source.id.as_str());
    assert_eq!(unmerged[0]["payload"]["unmergeReason"], "not the same person");

    let again = identity.unmerge_profile(unmerge).await.expect_err("undone already");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
}
on_both!(exact_unmerge, a_merge_written_through_then_undone_restores_each_profile_exactly);

async fn a_merge_absorbed_by_a_later_one_is_undone_after_it(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut admin = app.admin();
    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let new = |given: &'static str, email: &'static str| {
        let mut admin = admin.clone();
        async move { admin.create_profile(create(person(given, "Chain", email))).await.expect("create").into_inner() }
    };
    let (a, b, c) =
        (new("Ada", "a@example.com").await, new("Bea", "b@example.com").await, new("Cy", "c@example.com").await);
    let first = identity.merge_profiles(merge(&b.id, &[&a.id])).await.expect("A into B").into_inner();
    let second = identity.merge_profiles(merge(&c.id, &[&b.id])).await.expect("B into C").into_inner();

    let refused = identity
        .unmerge_profile(pb::UnmergeProfileRequest { merge_id: first.merge_id.clone(), ..Default::default() })
        .await
        .expect_err("B was merged away since");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains(&second.merge_id), "names the merge to undo first: {refused:?}");

    identity
        .unmerge_profile(pb::UnmergeProfileRequest { merge_id: second.merge_id.clone(), ..Default::default() })
        .await
        .expect("the later merge first");
    let via_a = admin.get_profile(pb::GetProfileRequest { id: a.id.clone() }).await.expect("get").into_inner();
    assert_eq!((via_a.id.as_str(), via_a.redirected_from.as_str()), (b.id.as_str(), a.id.as_str()), "A follows B back");
    let b_now = admin.get_profile(pb::GetProfileRequest { id: b.id.clone() }).await.expect("get").into_inner();
    assert_eq!(b_now.emails.iter().map(|e| e.address.as_str()).collect::<Vec<_>>(), ["b@example.com", "a@example.com"]);

    identity
        .unmerge_profile(pb::UnmergeProfileRequest { merge_id: first.merge_id.clone(), ..Default::default() })
        .await
        .expect("then the earlier one");
    let a_now = admin.get_profile(pb::GetProfileRequest { id: a.id.clone() }).await.expect("get").into_inner();
    assert_eq!((a_now.id.as_str(), a_now.redirected_from.as_str()), (a.id.as_str(), ""));
    let c_now = admin.get_profile(pb::GetProfileRequest { id: c.id.clone() }).await.expect("get").into_inner();
    assert_eq!(c_now.emails.len(), 1, "{c_now:?}");
    let agent = app.identity(TENANT, &[Role::Agent]);
    let denied = agent
        .clone()
        .unmerge_profile(pb::UnmergeProfileRequest { merge_id: first.merge_id.clone(), ..Default::default() })
        .await
        .expect_err("agents do not unmerge");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}
on_both!(unmerge_chains, a_merge_absorbed_by_a_later_one_is_undone_after_it);

async fn a_delete_through_the_old_id_stays_with_the_source_when_undone(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut admin = app.admin();
    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let target = admin.create_profile(create(person("Ann", "Lee", "ann@example.com"))).await.expect("create");
    let source = admin.create_profile(create(person("Anne", "Lee", "anne@example.com"))).await.expect("create");
    let (target, source) = (target.into_inner(), source.into_inner());
    let merged = identity.merge_profiles(merge(&target.id, &[&source.id])).await.expect("merge").into_inner();
    let deleted = pb::DeleteProfileRequest { id: source.id.clone(), etag: String::new() };
    let deleted = admin.delete_profile(deleted).await.expect("delete through the old id").into_inner();
    assert_eq!((deleted.id.as_str(), deleted.status), (target.id.as_str(), pb::ProfileStatus::Inactive as i32));

    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, reason: String::new() };
    identity.unmerge_profile(unmerge).await.expect("unmerge");
    let get = |id: &str| pb::GetProfileRequest { id: id.into() };
    let source_now = admin.get_profile(get(&source.id)).await.expect("get").into_inner();
    assert_eq!(source_now.status, pb::ProfileStatus::Inactive as i32, "the delete was addressed to the source");
    let target_now = admin.get_profile(get(&target.id)).await.expect("get").into_inner();
    assert_eq!(target_now.status, pb::ProfileStatus::Active as i32, "the target lives again");
    let lookup = |value: &str| pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: value.into(),
        source: String::new(),
    };
    let found = admin.lookup_profile(lookup("ann@example.com")).await.expect("its identifiers are indexed again");
    assert_eq!(found.into_inner().id, target.id);
    let gone = admin.lookup_profile(lookup("anne@example.com")).await.expect_err("a deleted profile holds none");
    assert_eq!(gone.code(), tonic::Code::NotFound);
}
on_both!(unmerge_after_delete, a_delete_through_the_old_id_stays_with_the_source_when_undone);

async fn a_primary_contact_merged_away_still_names_its_person(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut admin = app.admin();
    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let target = admin.create_profile(create(person("Ann", "Lee", "ann@example.com"))).await.expect("create");
    let source = admin.create_profile(create(person("Anne", "Lee", "anne@example.com"))).await.expect("create");
    let (target, source) = (target.into_inner(), source.into_inner());
    let org = |contact: &str| pb::Profile {
        kind: pb::ProfileKind::Organization as i32,
        company_name: "Lee Ltd".into(),
        primary_contact_id: contact.into(),
        ..Default::default()
    };
    let acme = admin.create_profile(create(org(&source.id))).await.expect("create").into_inner();
    let merged = identity.merge_profiles(merge(&target.id, &[&source.id])).await.expect("merge").into_inner();

    // The organization keeps the id, which answers with the person it was merged into.
    let get = |id: &str| pb::GetProfileRequest { id: id.into() };
    let acme_now = admin.get_profile(get(&acme.id)).await.expect("get").into_inner();
    assert_eq!(acme_now.primary_contact_id, source.id);
    let contact = admin.get_profile(get(&acme_now.primary_contact_id)).await.expect("get").into_inner();
    assert_eq!((contact.id.as_str(), contact.redirected_from.as_str()), (target.id.as_str(), source.id.as_str()));
    // A merged id is a valid primary contact, on create and on update.
    admin.create_profile(create(org(&source.id))).await.expect("created with a merged contact");
    let other = admin.create_profile(create(org(""))).await.expect("create").into_inner();
    let changed = crate::update(&other.id, &["primary_contact_id"], &other.etag, org(&source.id));
    admin.update_profile(changed).await.expect("updated to a merged contact");
    // Once undone, the id names its own person again.
    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, reason: String::new() };
    identity.unmerge_profile(unmerge).await.expect("unmerge");
    let contact = admin.get_profile(get(&acme_now.primary_contact_id)).await.expect("get").into_inner();
    assert_eq!((contact.id.as_str(), contact.redirected_from.as_str()), (source.id.as_str(), ""));
}
on_both!(primary_contact_merged, a_primary_contact_merged_away_still_names_its_person);

/// A record loaded without an email its holder keeps (a held identifier)
/// still says it after its profile is merged: the evidence counts for the
/// target, and an unmerge gives it back.
async fn held_identifiers_follow_their_profile_through_a_merge_and_back(app: TestApp) {
    use c360_server::{
        auth::Role,
        domain::{
            ProfileId, TenantId,
            identifiers::{IdentifierKey, IdentifierType},
        },
        store::identities,
    };
    use c360_tests::TENANT;
    let mut client = app.agent();
    let holder = client.create_profile(create(person("Ann", "Holder", "ann@example.com"))).await.expect("create");
    let entered = client.create_profile(create(person("Ann", "Hollder", ""))).await.expect("create").into_inner();
    let twin = client.create_profile(create(person("Ann", "Hollder", "ann.h@example.org"))).await.expect("create");
    let (twin, holder) = (twin.into_inner(), holder.into_inner());
    let id = |id: &str| ProfileId::parse(id).expect("id");
    let key =
        IdentifierKey { id_type: IdentifierType::Email, namespace: String::new(), value: "ann@example.com".into() };
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let store = crate::store(&app.db.url).await;
    let row = identities::Held { profile: id(&entered.id), key: key.clone(), holder: id(&holder.id) };
    identities::record_held(store.db(), &tenant, "legacy", &[row], chrono::Utc::now()).await.expect("record held");

    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let merged = identity.merge_profiles(merge(&twin.id, &[&entered.id])).await.expect("merge").into_inner();
    let held = identities::held(store.db(), &tenant, None).await.expect("held");
    assert_eq!(held.get(&id(&twin.id)), Some(&vec![key.clone()]), "the target says it now: {held:?}");
    assert!(!held.contains_key(&id(&entered.id)), "{held:?}");

    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, reason: String::new() };
    identity.unmerge_profile(unmerge).await.expect("unmerge");
    let held = identities::held(store.db(), &tenant, None).await.expect("held");
    assert_eq!(held.get(&id(&entered.id)), Some(&vec![key]), "back with its own profile: {held:?}");
    assert!(!held.contains_key(&id(&twin.id)), "{held:?}");
    store.close().await.expect("close");
}
on_both!(held_identifiers_follow_a_merge, held_identifiers_follow_their_profile_through_a_merge_and_back);

/// A profile's status and version, read straight from the database.
async fn stored_state(db: &DatabaseConnection, id: &str) -> (String, i64) {
    let sql = format!("SELECT status, version FROM profiles WHERE id = {}", uuid_literal(db, id));
    let row =
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("read").expect("row");
    (row.try_get("", "status").expect("status"), row.try_get("", "version").expect("version"))
}

async fn refusals_history_and_consent_ties_through_real_merges(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut client = app.agent();
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let mut consents = app.consents(TENANT, &[Role::Agent]);
    let mut profiles = Vec::new();
    for given in ["Tia", "Tea", "Thea", "Tiana", "Tiara", "Tina"] {
        profiles.push(client.create_profile(create(person(given, "Tie", ""))).await.expect("create").into_inner());
    }
    let [a, b, c, d, e, f] = &profiles[..] else { unreachable!() };

    // Two decisions captured at the same moment, one each way round: the
    // more restrictive stays in force for the target, whichever held it.
    let at = prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() - 600, nanos: 0 };
    for (profile, purpose, status) in [
        (a, pb::ConsentPurpose::EmailMarketing, pb::ConsentStatus::Granted),
        (b, pb::ConsentPurpose::EmailMarketing, pb::ConsentStatus::Denied),
        (a, pb::ConsentPurpose::SmsMarketing, pb::ConsentStatus::Denied),
        (b, pb::ConsentPurpose::SmsMarketing, pb::ConsentStatus::Granted),
    ] {
        let mut decision = decide(&profile.id, purpose, status);
        decision.capture_time = Some(at);
        consents.set_consent(decision).await.expect("consent");
    }
    let first = steward.merge_profiles(merge(&a.id, &[&b.id])).await.expect("merge").into_inner();
    let state = consents.get_consents(pb::GetConsentsRequest { profile_id: a.id.clone() }).await.expect("consents");
    let state = state.into_inner();
    for purpose in [pb::ConsentPurpose::EmailMarketing, pb::ConsentPurpose::SmsMarketing] {
        let held = state.consents.iter().find(|c| c.purpose == purpose as i32).expect("in force");
        assert_eq!(held.status, pb::ConsentStatus::Denied as i32, "{purpose:?}: {state:?}");
    }

    // A batch asking for the source and the target answers the target twice.
    let batch = pb::BatchGetProfilesRequest { ids: vec![b.id.clone(), a.id.clone()] };
    let batch = client.batch_get_profiles(batch).await.expect("batch").into_inner();
    let answered: Vec<(&str, &str)> =
        batch.profiles.iter().map(|p| (p.id.as_str(), p.redirected_from.as_str())).collect();
    assert_eq!(answered, [(a.id.as_str(), b.id.as_str()), (a.id.as_str(), "")]);

    // History: newest first, each with its time, actor and decisions.
    let second = steward.merge_profiles(merge(&a.id, &[&c.id])).await.expect("merge").into_inner();
    let history = pb::ListMergeHistoryRequest { profile_id: a.id.clone() };
    let history = steward.list_merge_history(history).await.expect("history").into_inner().merges;
    let ids: Vec<&str> = history.iter().map(|m| m.merge_id.as_str()).collect();
    assert_eq!(ids, [second.merge_id.as_str(), first.merge_id.as_str()]);
    let time = |m: &pb::Merge| m.merge_time.expect("merge time").seconds;
    assert!(time(&history[0]) >= time(&history[1]) && time(&history[1]) >= at.seconds, "{history:?}");
    for (record, answer) in history.iter().zip([&second, &first]) {
        assert_eq!(record.decisions, answer.decisions, "the decisions the merge answered with");
        let given = record.decisions.iter().find(|d| d.field == "given_name").expect("a given-name decision");
        assert!([&a.id, &b.id, &c.id].contains(&&given.profile_id), "{given:?}");
        assert!(record.undo_time.is_none() && record.undone_by.is_empty());
    }
    let absorbed = pb::ListMergeHistoryRequest { profile_id: b.id.clone() };
    let absorbed = steward.list_merge_history(absorbed).await.expect("history").into_inner().merges;
    assert_eq!(absorbed.iter().map(|m| m.merge_id.as_str()).collect::<Vec<_>>(), [first.merge_id.as_str()]);

    // Refusals, each with nothing changed.
    let db = app.db.connect().await;
    let into_merged = steward.merge_profiles(merge(&b.id, &[&d.id])).await.expect_err("target merged");
    assert_eq!(into_merged.code(), tonic::Code::FailedPrecondition);
    assert!(into_merged.message().contains(&a.id), "names where it resolves: {into_merged:?}");
    let deleted = pb::DeleteProfileRequest { id: d.id.clone(), etag: d.etag.clone() };
    client.delete_profile(deleted).await.expect("delete");
    let (before, inactive) = (stored_state(&db, &e.id).await, stored_state(&db, &d.id).await);
    assert_eq!(inactive.0, "INACTIVE");
    let into_inactive = steward.merge_profiles(merge(&d.id, &[&e.id])).await.expect_err("target INACTIVE");
    assert_eq!(into_inactive.code(), tonic::Code::FailedPrecondition, "{into_inactive:?}");
    assert_eq!((stored_state(&db, &e.id).await, stored_state(&db, &d.id).await), (before.clone(), inactive));
    let erase = format!("UPDATE profiles SET status = 'ERASED' WHERE id = {}", uuid_literal(&db, &f.id));
    db.execute_raw(Statement::from_string(db.get_database_backend(), erase)).await.expect("erase");
    let erased = stored_state(&db, &f.id).await;
    for request in [merge(&e.id, &[&f.id]), merge(&f.id, &[&e.id])] {
        let refused = steward.merge_profiles(request).await.expect_err("an ERASED profile");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        assert_eq!((stored_state(&db, &e.id).await, stored_state(&db, &f.id).await), (before.clone(), erased.clone()));
    }
    // An INACTIVE source merges.
    steward.merge_profiles(merge(&e.id, &[&d.id])).await.expect("an INACTIVE source");
    assert_eq!(stored_state(&db, &d.id).await.0, "MERGED");
}
on_both!(refusals_history_and_ties, refusals_history_and_consent_ties_through_real_merges);

async fn interactions_follow_their_profile_through_a_merge_and_back(app: TestApp) {
    use c360_server::{
        auth::Role,
        cache::ProfileCache,
        domain::{
            ProfileId, TenantId,
            interaction::{Interaction, InteractionType},
        },
        store::{self, SqliteDurability, Store},
    };
    use c360_tests::TENANT;
    let mut client = app.agent();
    let target = client.create_profile(create(person("Ida", "Track", ""))).await.expect("create").into_inner();
    let source = client.create_profile(create(person("Ada", "Track", ""))).await.expect("create").into_inner();
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let store = Store::connect(&app.db.url, 2, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let now = chrono::Utc::now();
    let event = |id: &str, profile: &str, minutes: i64| Interaction {
        tenant: tenant.clone(),
        event_id: id.into(),
        profile_id: ProfileId::parse(profile).expect("id"),
        kind: InteractionType::Purchase,
        channel: Some("WEB".into()),
        source: "shop".into(),
        occurred_at: now - chrono::Duration::minutes(minutes),
        received_at: now,
        amount: None,
        properties: Default::default(),
    };
    let events = [
        event("t1", &target.id, 30),
        event("s1", &source.id, 20),
        event("t2", &target.id, 10),
        event("s2", &source.id, 5),
    ];
    store::events::insert_many(store.db(), &events).await.expect("events");
    let of = async |id: &str| -> Vec<String> {
        let found = store::events::of_profile(store.db(), &tenant, ProfileId::parse(id).expect("id"), 100).await;
        found.expect("interactions").into_iter().map(|e| e.event_id).collect()
    };
    assert_eq!(of(&target.id).await, ["t2", "t1"]);

    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let merged = steward.merge_profiles(merge(&target.id, &[&source.id])).await.expect("merge").into_inner();
    assert_eq!(of(&target.id).await, ["s2", "t2", "s1", "t1"], "the target's, newest first, with the source's");

    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, ..Default::default() };
    steward.unmerge_profile(unmerge).await.expect("unmerge");
    assert_eq!(of(&target.id).await, ["t2", "t1"]);
    assert_eq!(of(&source.id).await, ["s2", "s1"], "back with their profile");
    store.close().await.expect("close");
}
on_both!(interactions_follow_a_merge, interactions_follow_their_profile_through_a_merge_and_back);

async fn an_address_two_merged_sources_brought_stays_until_both_are_undone(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut client = app.agent();
    let home = || pb::PostalAddress {
        lines: vec!["12 Harbour Street".into()],
        locality: "Leith".into(),
        postal_code: "EH6 6AA".into(),
        country_code: "GB".into(),
        ..Default::default()
    };
    let target = client.create_profile(create(person("Rhona", "Kerr", ""))).await.expect("create").into_inner();
    let mut ids = Vec::new();
    for given in ["Rona", "Rhonda"] {
        let mut source = person(given, "Kerr", "");
        source.addresses = vec![home()];
        ids.push(client.create_profile(create(source)).await.expect("create").into_inner().id);
    }
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let first = steward.merge_profiles(merge(&target.id, &[&ids[0]])).await.expect("merge").into_inner();
    let second = steward.merge_profiles(merge(&target.id, &[&ids[1]])).await.expect("merge").into_inner();
    let addresses = |profile: pb::Profile| profile.addresses.iter().map(|a| a.lines.join(" ")).collect::<Vec<_>>();
    let read = async |client: &mut c360_tests::ProfileClient, id: &str| {
        client.get_profile(pb::GetProfileRequest { id: id.into() }).await.expect("get").into_inner()
    };
    assert_eq!(addresses(read(&mut client, &target.id).await), ["12 Harbour Street"]);

    // The first source leaves with its address; the second still gives it.
    let undo = |merge_id: String| pb::UnmergeProfileRequest { merge_id, ..Default::default() };
    steward.unmerge_profile(undo(first.merge_id)).await.expect("unmerge the first");
    assert_eq!(addresses(read(&mut client, &target.id).await), ["12 Harbour Street"], "the second source's too");
    assert_eq!(addresses(read(&mut client, &ids[0]).await), ["12 Harbour Street"]);
    steward.unmerge_profile(undo(second.merge_id)).await.expect("unmerge the second");
    assert!(addresses(read(&mut client, &target.id).await).is_empty(), "the target never had it");
    assert_eq!(addresses(read(&mut client, &ids[1]).await), ["12 Harbour Street"]);
}
on_both!(shared_address_unmerge, an_address_two_merged_sources_brought_stays_until_both_are_undone);

/// Each contact point's lineage as `address or number: source`, in list order.
fn point_sources(profile: &pb::Profile) -> Vec<String> {
    let source = |l: &Option<pb::FieldLineage>| l.as_ref().map_or("none".to_owned(), |l| l.source.clone());
    (profile.emails.iter().map(|e| format!("{}: {}", e.address, source(&e.lineage))))
        .chain(profile.phones.iter().map(|p| format!("{}: {}", p.number, source(&p.lineage))))
        .chain(profile.addresses.iter().map(|a| format!("{}: {}", a.locality, source(&a.lineage))))
        .chain(profile.external_ids.iter().map(|x| format!("{}/{}: {}", x.source, x.id, source(&x.lineage))))
        .collect()
}

async fn contact_points_keep_their_own_lineage_through_writes_merges_and_unmerges(app: TestApp) {
    use c360_server::auth::Role;
    use c360_tests::TENANT;
    let mut client = app.agent();
    let mut ann = person("Ann", "Lee", "ann@example.com");
    ann.addresses = vec![pb::PostalAddress {
        lines: vec!["1 High St".into()],
        locality: "Leeds".into(),
        country_code: "GB".into(),
        ..Default::default()
    }];
    let ann = client.create_profile(with_source(create(ann), "crm")).await.expect("create").into_inner();
    let created = ann.emails[0].lineage.clone().expect("an email's own lineage");
    assert_eq!(point_sources(&ann), ["ann@example.com: crm", "Leeds: crm"]);

    // The shop adds an email and relabels the first: the first keeps the
    // write that brought it, the new one records the shop's.
    let changes = pb::Profile {
        emails: vec![
            pb::EmailAddress { address: "ann@example.com".into(), label: "home".into(), primary: true, lineage: None },
            pb::EmailAddress { address: "ann.lee@shop.example".into(), ..Default::default() },
        ],
        ..Default::default()
    };
    let request =
        pb::UpdateProfileRequest { source: "shop".into(), ..crate::update(&ann.id, &["emails"], &ann.etag, changes) };
    let ann = client.update_profile(request).await.expect("update").into_inner();
    assert_eq!(point_sources(&ann), ["ann@example.com: crm", "ann.lee@shop.example: shop", "Leeds: crm"]);
    assert_eq!(ann.emails[0].lineage.as_ref(), Some(&created), "time and source of the write that brought it");
    assert_eq!(ann.lineage["emails"].source, "shop", "the field's lineage is the last write's");
    assert!(
        ann.lineage.keys().all(|key| !key.contains('@') && !key.contains('/')),
        "contact points are never keys of the map: {:?}",
        ann.lineage.keys()
    );

    // A merge keeps each contact point's lineage from where it came.
    let mut pos = person("Ann", "Lee", "ann.pos@example.com");
    pos.phones = vec![pb::PhoneNumber { number: "+14155550100".into(), ..Default::default() }];
    pos.external_ids = vec![pb::ExternalId { source: "till".into(), id: "77".into(), lineage: None }];
    let pos = client.create_profile(with_source(create(pos), "pos")).await.expect("create").into_inner();
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let merged = steward.merge_profiles(merge(&ann.id, &[&pos.id])).await.expect("merge").into_inner();
    let golden = merged.profile.expect("profile");
    // The most recent list (the point of sale's) comes first.
    let expected = [
        "ann.pos@example.com: pos",
        "ann@example.com: crm",
        "ann.lee@shop.example: shop",
        "+14155550100: pos",
        "Leeds: crm",
        "till/77: pos",
    ];
    assert_eq!(point_sources(&golden), expected);
    let read = client.get_profile(pb::GetProfileRequest { id: ann.id.clone() }).await.expect("get").into_inner();
    assert_eq!(point_sources(&read), expected, "as stored, not only as answered");

    // A role that sees contact points masked still sees where each came from.
    let mut marketer = app.client(TENANT, Role::Marketer);
    let masked = marketer.get_profile(pb::GetProfileRequest { id: ann.id.clone() }).await.expect("get").into_inner();
    let sources: Vec<_> = masked.emails.iter().map(|e| e.lineage.as_ref().map(|l| l.source.as_str())).collect();
    assert_eq!(sources, [Some("pos"), Some("crm"), Some("shop")]);
    assert!(masked.lineage.keys().all(|key| !key.contains('@')), "{:?}", masked.lineage.keys());

    // The unmerge takes each back with its lineage.
    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merge_id, ..Default::default() };
    steward.unmerge_profile(unmerge).await.expect("unmerge");
    let ann = client.get_profile(pb::GetProfileRequest { id: ann.id.clone() }).await.expect("get").into_inner();
    assert_eq!(point_sources(&ann), ["ann@example.com: crm", "ann.lee@shop.example: shop", "Leeds: crm"]);
    let pos = client.get_profile(pb::GetProfileRequest { id: pos.id.clone() }).await.expect("get").into_inner();
    assert_eq!(point_sources(&pos), ["ann.pos@example.com: pos", "+14155550100: pos", "till/77: pos"]);
}
on_both!(contact_point_lineage, contact_points_keep_their_own_lineage_through_writes_merges_and_unmerges);
