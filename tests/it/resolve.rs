//! Identity resolution one pair at a time (docs/identity-resolution.md):
//! ExplainMatch scores a pair as the last deduplication run did and says
//! what else decides it; ResolveIdentity ranks the profiles a partial
//! record may be, without writing, and is no oracle for what a caller
//! cannot search by.

use std::collections::HashMap;

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp};
use tonic::Code;

use crate::{
    create,
    dedupe::people,
    import::{file, import},
    person,
};

/// Runs a deduplication that merges and queues, exporting every pair it
/// scored; the probabilities by the pair's row keys (sorted).
async fn deduplicate(app: &TestApp) -> HashMap<(String, String), f64> {
    crate::dedupe::exported(app, &[]).await
}

/// The people of [`people`] imported and deduplicated once (the tenant has
/// a model and counts); the profile of row `p3`, as an agent reads it.
async fn deduplicated_people(app: &TestApp) -> pb::Profile {
    let (csv, _) = people();
    let dir = tempfile::tempdir().expect("temp dir");
    import(app, TENANT, &file(&dir, "people.csv", csv.as_bytes()), &[]).await;
    deduplicate(app).await;
    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::ExternalId as i32,
        value: "p3".into(),
        source: "legacy".into(),
    };
    app.agent().lookup_profile(lookup).await.expect("lookup").into_inner()
}

fn explain(a: &str, b: &str) -> pb::ExplainMatchRequest {
    pb::ExplainMatchRequest { profile_id: a.into(), other_profile_id: b.into() }
}

async fn explain_match_scores_a_pair_as_the_run_did_and_says_what_else_decides_it(app: TestApp) {
    let (csv, _) = people();
    let dir = tempfile::tempdir().expect("temp dir");
    import(&app, TENANT, &file(&dir, "people.csv", csv.as_bytes()), &[]).await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let mut client = app.agent();

    // Before any run there is no model to explain by.
    let ids = client.list_profiles(pb::ListProfilesRequest { page_size: 2, ..Default::default() }).await;
    let ids: Vec<String> = ids.expect("list").into_inner().profiles.into_iter().map(|p| p.id).collect();
    let none = steward.explain_match(explain(&ids[0], &ids[1])).await.expect_err("no model yet");
    assert_eq!(none.code(), Code::FailedPrecondition);
    assert!(none.message().contains("no matching model"), "{none:?}");

    let scored = deduplicate(&app).await;
    let id_of = async |key: &str| {
        let lookup = pb::LookupProfileRequest {
            r#type: pb::IdentifierType::ExternalId as i32,
            value: key.into(),
            source: "legacy".into(),
        };
        let mut client = app.agent();
        let found = client.lookup_profile(lookup).await.expect("lookup").into_inner();
        (found.id, found.redirected_from)
    };

    // Pairs the run left apart: the explanation scores them as it did.
    let mut explained = 0;
    for ((a, b), probability) in scored.iter().filter(|(_, p)| **p < 0.999).take(40) {
        let ((a, _), (b, _)) = (id_of(a).await, id_of(b).await);
        if a == b {
            continue; // merged since, each with others
        }
        let why = steward.explain_match(explain(&a, &b)).await.expect("explain").into_inner();
        // The export writes six decimals.
        assert!(
            (why.confidence - probability).abs() < 1e-6,
            "{a} {b}: {} against the run's {probability}",
            why.confidence
        );
        let total = why.prior_weight + why.fields.iter().map(|f| f.weight).sum::<f64>();
        assert!((total - why.total_weight).abs() < 1e-9, "the weights add up: {why:?}");
        let expected = if why.confidence >= 0.999 {
            pb::MatchDecision::Match
        } else if why.confidence >= 0.9 {
            pb::MatchDecision::Review
        } else {
            pb::MatchDecision::NonMatch
        };
        assert_eq!(why.decision, expected as i32);
        assert_eq!((why.auto_threshold, why.review_threshold), (0.999, 0.9));
        assert!(why.frequencies_count_time.is_some(), "the run's term frequencies were used");
        assert!(why.fields.iter().any(|f| f.field == "given_name" && !f.value.is_empty()), "{why:?}");
        assert_eq!(why.profile.as_ref().map(|p| p.id.as_str()), Some(a.as_str()));
        explained += 1;
    }
    assert!(explained >= 10, "pairs explained: {explained}");

    // A pair the run queued: it says so; once a steward rejects it, that decides.
    let queue = steward.list_merge_candidates(pb::ListMergeCandidatesRequest::default()).await.expect("queue");
    let candidate = queue.into_inner().candidates.into_iter().next().expect("a pair for review");
    let why = steward.explain_match(explain(&candidate.right_id, &candidate.left_id)).await.expect("explain");
    let why = why.into_inner();
    assert!(
        (why.confidence - candidate.confidence).abs() < 1e-9,
        "{} against {}",
        why.confidence,
        candidate.confidence
    );
    assert_eq!(why.candidate.as_ref().map(|c| c.status), Some(pb::MergeCandidateStatus::Pending as i32));
    assert!(why.notes.iter().any(|n| n.contains("review queue")), "{:?}", why.notes);
    let reject = pb::DecideMergeCandidateRequest {
        left_id: candidate.left_id.clone(),
        right_id: candidate.right_id.clone(),
        decision: pb::MergeDecision::Reject as i32,
    };
    steward.decide_merge_candidate(reject).await.expect("reject");
    let why = steward.explain_match(explain(&candidate.left_id, &candidate.right_id)).await.expect("explain");
    let why = why.into_inner();
    assert_eq!(why.candidate.as_ref().map(|c| c.status), Some(pb::MergeCandidateStatus::Rejected as i32));
    assert!(why.notes.iter().any(|n| n.contains("not one customer")), "{:?}", why.notes);

    // A merged id answers for its target: a merged pair is one profile.
    let target = client.create_profile(create(person("Mia", "Merged", "mia@example.com"))).await.expect("create");
    let source = client.create_profile(create(person("Mia", "Merged", ""))).await.expect("create");
    let (target, source) = (target.into_inner(), source.into_inner());
    let merge = pb::MergeProfilesRequest {
        target_id: target.id.clone(),
        source_ids: vec![source.id.clone()],
        reason: pb::MergeReason::Duplicate as i32,
        ..Default::default()
    };
    steward.merge_profiles(merge).await.expect("merge");
    let one = steward.explain_match(explain(&source.id, &target.id)).await.expect_err("one profile");
    assert_eq!(one.code(), Code::FailedPrecondition);
    assert!(one.message().contains("one profile already"), "{one:?}");

    // A placeholder never matches, and the explanation says why.
    let blank = client.create_profile(create(person("Ann", "Lee", "noemail@example.com"))).await.expect("create");
    let other = client.create_profile(create(person("Ann", "Lee", "ann.lee@example.org"))).await.expect("create");
    let (blank, other) = (blank.into_inner(), other.into_inner());
    let why = steward.explain_match(explain(&blank.id, &other.id)).await.expect("explain").into_inner();
    assert!(
        why.notes.iter().any(|n| n.contains("noemail@example.com") && n.contains("never matches")),
        "{:?}",
        why.notes
    );
    let email = why.fields.iter().find(|f| f.field == "email").expect("emails compared");
    assert_eq!((email.value.as_str(), email.level.as_str()), ("", ""), "a placeholder is compared as absent");

    // Agents do not explain merges; stewards, admins and the system do.
    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let denied = agent.explain_match(explain(&blank.id, &other.id)).await.expect_err("agents");
    assert_eq!(denied.code(), Code::PermissionDenied);
}
on_both!(explain_match, explain_match_scores_a_pair_as_the_run_did_and_says_what_else_decides_it);

async fn resolve_identity_ranks_who_a_record_may_be_and_is_no_oracle(app: TestApp) {
    let known = deduplicated_people(&app).await;
    let resolve = |record: pb::Profile| pb::ResolveIdentityRequest { record: Some(record), ..Default::default() };

    // The same person by name and email: first, and certain.
    let mut record = person(&known.given_name, &known.family_name, &known.emails[0].address);
    record.emails[0].address = record.emails[0].address.to_uppercase();
    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let before = crate::count(&app.db.connect().await, "profiles").await;
    let found = agent.resolve_identity(resolve(record.clone())).await.expect("resolve").into_inner();
    let best = &found.candidates[0];
    assert_eq!(best.profile.as_ref().map(|p| p.id.as_str()), Some(known.id.as_str()));
    assert!(best.confidence >= 0.999 && best.decision == pb::MatchDecision::Match as i32, "{best:?}");
    assert!(found.candidates.windows(2).all(|w| w[0].confidence >= w[1].confidence), "most likely first");
    assert!(found.model_version >= 1);
    assert_eq!(crate::count(&app.db.connect().await, "profiles").await, before, "nothing written");

    // By name alone, the namesake ranks below the same person with an email.
    let by_name = agent.resolve_identity(resolve(person(&known.given_name, &known.family_name, ""))).await;
    let by_name = by_name.expect("resolve").into_inner();
    assert_eq!(by_name.candidates[0].profile.as_ref().map(|p| p.id.as_str()), Some(known.id.as_str()));
    assert!(by_name.candidates[0].confidence < best.confidence, "{by_name:?}");
    let few = pb::ResolveIdentityRequest { page_size: 1, min_confidence: 0.5, ..resolve(record.clone()) };
    assert_eq!(agent.resolve_identity(few).await.expect("resolve").into_inner().candidates.len(), 1);
    let bad = pb::ResolveIdentityRequest { min_confidence: 1.5, ..resolve(record.clone()) };
    let bad = agent.resolve_identity(bad).await.expect_err("not a probability");
    assert_eq!(crate::violated_fields(&bad), ["min_confidence"]);
    let empty = agent.resolve_identity(pb::ResolveIdentityRequest::default()).await.expect_err("nothing to match");
    assert_eq!(empty.code(), Code::InvalidArgument);

    // A marketer finds by name but not by email: a record with an email is
    // refused, one by name answers with masked views.
    let mut marketer = app.identity(TENANT, &[Role::Marketer]);
    let refused = marketer.resolve_identity(resolve(record.clone())).await.expect_err("email");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut dated = person(&known.given_name, &known.family_name, "");
    dated.birth_date = known.birth_date.clone();
    let refused = marketer.resolve_identity(resolve(dated)).await.expect_err("a birth date it sees masked");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let named = marketer.resolve_identity(resolve(person(&known.given_name, &known.family_name, ""))).await;
    let named = named.expect("by name").into_inner();
    let shown = named.candidates[0].profile.as_ref().expect("profile");
    assert_eq!(shown.id, known.id);
    assert_ne!(shown.emails[0].address, known.emails[0].address, "masked: {:?}", shown.emails);
    // Analysts find no one by name.
    let mut analyst = app.identity(TENANT, &[Role::Analyst]);
    let refused = analyst.resolve_identity(resolve(person(&known.given_name, "", ""))).await.expect_err("names");
    assert_eq!(refused.code(), Code::PermissionDenied);
}
on_both!(resolve_identity, resolve_identity_ranks_who_a_record_may_be_and_is_no_oracle);

async fn a_write_is_matched_as_it_arrives_merging_or_queueing_as_a_run_would(app: TestApp) {
    let known = deduplicated_people(&app).await;
    let mut client = app.agent();

    // The same person come back with a new email, and a namesake.
    let mut again = person(&known.given_name, &known.family_name, "back.again@example.org");
    again.birth_date = known.birth_date.clone();
    again.addresses = known.addresses.iter().map(|a| pb::PostalAddress { lineage: None, ..a.clone() }).collect();
    let namesake = person(&known.given_name, &known.family_name, "someone.else@example.org");
    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let mut confidence = async |record: &pb::Profile| {
        let request = pb::ResolveIdentityRequest { record: Some(record.clone()), ..Default::default() };
        let found = agent.resolve_identity(request).await.expect("resolve").into_inner();
        let best = found.candidates.into_iter().next().expect("a candidate");
        assert_eq!(best.profile.as_ref().map(|p| p.id.as_str()), Some(known.id.as_str()));
        best.confidence
    };
    let (same, named) = (confidence(&again).await, confidence(&namesake).await);
    assert!(named < same, "a namesake is less likely: {named} against {same}");
    // Thresholds between the two: the same person merges, the namesake waits for a steward.
    let (auto, review) = ((same + named) / 2.0, named * 0.99);
    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    admin.update_tenant_settings(crate::thresholds(auto, review)).await.expect("thresholds");

    let created = client.create_profile(create(again)).await.expect("create").into_inner();
    assert_eq!(created.id, known.id, "merged into the profile it matched, which is older");
    assert!(!created.redirected_from.is_empty() && created.redirected_from != known.id, "{created:?}");
    assert!(created.emails.iter().any(|e| e.address == "back.again@example.org"), "the golden record has both");
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let history = pb::ListMergeHistoryRequest { profile_id: known.id.clone() };
    let merged = steward.list_merge_history(history);
    let merged = merged.await.expect("history").into_inner();
    assert_eq!(merged.merges[0].reason, pb::MergeReason::AutoMatch as i32);

    // Unmerged by a steward, the pair is not merged again by the next write:
    // it waits in the queue.
    let again_id = created.redirected_from.clone();
    let unmerge = pb::UnmergeProfileRequest { merge_id: merged.merges[0].merge_id.clone(), ..Default::default() };
    steward.unmerge_profile(unmerge).await.expect("unmerge");
    let back = client.get_profile(pb::GetProfileRequest { id: again_id.clone() }).await.expect("get").into_inner();
    let written = client.update_profile(crate::set_segment(&again_id, "VIP", &back.etag)).await.expect("update");
    let written = written.into_inner();
    assert_eq!((written.id.as_str(), written.redirected_from.as_str()), (again_id.as_str(), ""), "not merged again");
    let queued = pb::ListMergeCandidatesRequest { profile_id: again_id.clone(), ..Default::default() };
    let queued = steward.list_merge_candidates(queued).await.expect("queue").into_inner().candidates;
    assert!(queued.iter().any(|c| c.left_id == known.id || c.right_id == known.id), "{queued:?}");

    let created = client.create_profile(create(namesake.clone())).await.expect("create").into_inner();
    assert_eq!(created.redirected_from, "", "not merged");
    let queued = pb::ListMergeCandidatesRequest { profile_id: created.id.clone(), ..Default::default() };
    let queued = steward.list_merge_candidates(queued).await.expect("queue").into_inner().candidates;
    // With the profile it matched, and with the one unmerged from it.
    assert_eq!(queued.len(), 2, "{queued:?}");
    let pair = queued.iter().find(|c| c.left_id == known.id || c.right_id == known.id).expect("with the same name");
    assert!((pair.confidence - named).abs() < 1e-9, "{} against {named}", pair.confidence);

    // Rejected, the pairs stay apart however often either is written.
    for pair in &queued {
        let reject = pb::DecideMergeCandidateRequest {
            left_id: pair.left_id.clone(),
            right_id: pair.right_id.clone(),
            decision: pb::MergeDecision::Reject as i32,
        };
        steward.decide_merge_candidate(reject).await.expect("reject");
    }
    admin.update_tenant_settings(crate::thresholds(named * 0.99, named * 0.98)).await.expect("thresholds");
    let updated = client.update_profile(crate::set_segment(&created.id, "VIP", &created.etag)).await;
    let updated = updated.expect("update").into_inner();
    assert_eq!((updated.id.as_str(), updated.redirected_from.as_str()), (created.id.as_str(), ""), "not merged");
    let queued = pb::ListMergeCandidatesRequest { profile_id: created.id.clone(), ..Default::default() };
    assert!(steward.list_merge_candidates(queued).await.expect("queue").into_inner().candidates.is_empty());
}
on_both!(online_matching, a_write_is_matched_as_it_arrives_merging_or_queueing_as_a_run_would);
