//! The stewards' review queue (docs/identity-resolution.md):
//! ListMergeCandidates and DecideMergeCandidate, and a rejection that no
//! later deduplication overrides.

use c360_proto::v1 as pb;
use c360_server::{
    auth::Role,
    cache::ProfileCache,
    domain::{ProfileId, TenantId},
    store::{self, SqliteDurability, Store},
};
use c360_tests::{IdentityClient, TENANT, TestApp};
use clap::Parser;
use tonic::Code;

use crate::{create, person};

/// Puts `pairs` in the review queue as a deduplication would.
async fn propose(app: &TestApp, pairs: &[(&str, &str, f64)]) {
    let store = Store::connect(&app.db.url, 2, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let id = |raw: &str| ProfileId::parse(raw).expect("id");
    let pairs: Vec<(ProfileId, ProfileId, f64)> = pairs.iter().map(|(a, b, p)| (id(a), id(b), *p)).collect();
    let tenant = TenantId::parse(TENANT).expect("tenant");
    store::matching::propose(store.db(), &tenant, &pairs, 1, chrono::Utc::now()).await.expect("propose");
    store.close().await.expect("close");
}

async fn list(steward: &mut IdentityClient, profile: &str, size: i32, token: &str) -> pb::ListMergeCandidatesResponse {
    let request =
        pb::ListMergeCandidatesRequest { profile_id: profile.into(), page_size: size, page_token: token.into() };
    steward.list_merge_candidates(request).await.expect("list").into_inner()
}

fn pairs(page: &pb::ListMergeCandidatesResponse) -> Vec<(String, String)> {
    page.candidates.iter().map(|c| (c.left_id.clone(), c.right_id.clone())).collect()
}

fn decide(left: &str, right: &str, decision: pb::MergeDecision) -> pb::DecideMergeCandidateRequest {
    pb::DecideMergeCandidateRequest { left_id: left.into(), right_id: right.into(), decision: decision as i32 }
}

/// The pair as the queue names it: smaller id first.
fn pair(a: &str, b: &str) -> (String, String) {
    let (a, b) = (ProfileId::parse(a).expect("id"), ProfileId::parse(b).expect("id"));
    let (left, right) = if a < b { (a, b) } else { (b, a) };
    (left.to_string(), right.to_string())
}

async fn stewards_page_decide_and_their_rejections_hold(app: TestApp) {
    let mut client = app.agent();
    let mut ids = Vec::new();
    for given in ["Ola", "Olla", "Olah", "Ole", "Olle"] {
        ids.push(client.create_profile(create(person(given, "Queue", ""))).await.expect("create").into_inner().id);
    }
    let [p1, p2, p3, p4, p5] = &ids[..] else { unreachable!() };
    propose(&app, &[(p1, p2, 0.95), (p1, p3, 0.92), (p2, p4, 0.97), (p4, p5, 0.91)]).await;

    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let refused = agent.list_merge_candidates(pb::ListMergeCandidatesRequest::default()).await;
    assert_eq!(refused.expect_err("agents do not review").code(), Code::PermissionDenied);
    let mut steward = app.identity(TENANT, &[Role::Steward]);

    // Highest confidence first, page by page.
    let first = list(&mut steward, "", 2, "").await;
    assert_eq!(pairs(&first), [pair(p2, p4), pair(p1, p2)]);
    assert_eq!(first.candidates[0].confidence, 0.97);
    let candidate = &first.candidates[0];
    assert_eq!((candidate.status, candidate.model_version), (pb::MergeCandidateStatus::Pending as i32, 1));
    assert!(candidate.create_time.is_some() && candidate.decide_time.is_none() && candidate.decided_by.is_empty());
    let second = list(&mut steward, "", 2, &first.next_page_token).await;
    assert_eq!(pairs(&second), [pair(p1, p3), pair(p4, p5)]);
    assert!(second.next_page_token.is_empty(), "the last page: {second:?}");
    let tampered = pb::ListMergeCandidatesRequest {
        profile_id: p1.clone(),
        page_size: 2,
        page_token: first.next_page_token.clone(),
    };
    let tampered = steward.list_merge_candidates(tampered).await.expect_err("another query's token");
    assert_eq!(crate::violated_fields(&tampered), ["page_token"]);
    assert_eq!(pairs(&list(&mut steward, p1, 0, "").await), [pair(p1, p2), pair(p1, p3)], "one profile's pairs");

    // Bad decisions change nothing.
    for (request, field) in [
        (decide(p1, p3, pb::MergeDecision::Unspecified), "decision"),
        (decide(p1, p1, pb::MergeDecision::Reject), "right_id"),
        (decide("nope", p1, pb::MergeDecision::Reject), "left_id"),
    ] {
        let refused = steward.decide_merge_candidate(request).await.expect_err("bad request");
        assert_eq!(crate::violated_fields(&refused), [field], "{refused:?}");
    }
    let unknown = steward.decide_merge_candidate(decide(p3, p5, pb::MergeDecision::Reject)).await;
    assert_eq!(unknown.expect_err("not a candidate").code(), Code::NotFound);

    // A rejection, named either way round, is remembered.
    let rejected = steward.decide_merge_candidate(decide(p3, p1, pb::MergeDecision::Reject)).await.expect("reject");
    let rejected = rejected.into_inner();
    let candidate = rejected.candidate.expect("candidate");
    assert_eq!(candidate.status, pb::MergeCandidateStatus::Rejected as i32);
    assert_eq!((candidate.decided_by.as_str(), rejected.merge_id.as_str()), ("test-user", ""));
    assert!(candidate.decide_time.is_some() && rejected.profile.is_none());
    let again = steward.decide_merge_candidate(decide(p1, p3, pb::MergeDecision::Approve)).await;
    assert_eq!(again.expect_err("decided already").code(), Code::FailedPrecondition);
    assert_eq!(pairs(&list(&mut steward, p1, 0, "").await), [pair(p1, p2)]);
    // A later run proposing it again leaves it rejected.
    propose(&app, &[(p1, p3, 0.99)]).await;
    assert_eq!(pairs(&list(&mut steward, p1, 0, "").await), [pair(p1, p2)]);

    // An approval merges the pair into the older profile.
    let (older, newer) = pair(p2, p4);
    let approved = steward.decide_merge_candidate(decide(p4, p2, pb::MergeDecision::Approve)).await.expect("approve");
    let approved = approved.into_inner();
    assert_eq!(approved.candidate.expect("candidate").status, pb::MergeCandidateStatus::Approved as i32);
    assert!(!approved.merge_id.is_empty());
    assert_eq!(approved.profile.expect("profile").id, older);
    let read = client.get_profile(pb::GetProfileRequest { id: newer.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.redirected_from.as_str()), (older.as_str(), newer.as_str()));
    let history = pb::ListMergeHistoryRequest { profile_id: older.clone() };
    let history = steward.list_merge_history(history).await.expect("history").into_inner().merges;
    assert_eq!(history[0].reason, pb::MergeReason::Manual as i32);
    // The merged profile's other pairs leave the queue; a pair's profile
    // asked by its merged id answers for its target.
    let left: Vec<(String, String)> = pairs(&list(&mut steward, "", 0, "").await);
    assert!(left.iter().all(|(a, b)| *a != newer && *b != newer), "{left:?}");
    assert_eq!(pairs(&list(&mut steward, &newer, 0, "").await), pairs(&list(&mut steward, &older, 0, "").await));

    // A profile deleted since the pair was queued: no approval merges it.
    let gone = client.create_profile(create(person("Olli", "Queue", ""))).await.expect("create").into_inner();
    propose(&app, &[(&older, &gone.id, 0.94)]).await;
    let deleted = pb::DeleteProfileRequest { id: gone.id.clone(), etag: gone.etag.clone() };
    client.delete_profile(deleted).await.expect("delete");
    let refused = steward.decide_merge_candidate(decide(&older, &gone.id, pb::MergeDecision::Approve)).await;
    let refused = refused.expect_err("a deleted profile");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("INACTIVE"), "{refused:?}");
    let read = client.get_profile(pb::GetProfileRequest { id: gone.id.clone() }).await.expect("get").into_inner();
    assert_eq!((read.id.as_str(), read.status), (gone.id.as_str(), pb::ProfileStatus::Inactive as i32));
}
on_both!(stewards_page_decide_and_their_rejections_hold, stewards_page_decide_and_their_rejections_hold);

/// A pair a steward rejected is not merged by a later deduplication,
/// however strongly it scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pair_stays_apart_through_a_bulk_run() {
    let app = TestApp::spawn().await;
    let (csv, _) = crate::dedupe::people();
    let dir = tempfile::tempdir().expect("temp dir");
    crate::import::import(&app, TENANT, &crate::import::file(&dir, "people.csv", csv.as_bytes()), &[]).await;
    let attribute = ["--match-attribute", "national_id"];
    let scored = crate::dedupe::scored(&app, &attribute).await;
    let mut certain: Vec<(&(String, String), &f64)> = scored.iter().filter(|(_, p)| **p >= 0.999).collect();
    certain.sort_by(|a, b| a.0.cmp(b.0));
    assert!(certain.len() >= 2, "pairs the run merges: {certain:?}");
    let mut client = app.agent();
    let mut id_of = async |key: &str| {
        let lookup = pb::LookupProfileRequest {
            r#type: pb::IdentifierType::ExternalId as i32,
            value: key.into(),
            source: "legacy".into(),
        };
        client.lookup_profile(lookup).await.expect("lookup").into_inner().id
    };
    let ((a, b), _) = certain[0];
    let (a, b) = (id_of(a).await, id_of(b).await);
    let ((c, d), _) = certain[1];
    let (c, d) = (id_of(c).await, id_of(d).await);
    propose(&app, &[(&a, &b, 0.95)]).await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    steward.decide_merge_candidate(decide(&a, &b, pb::MergeDecision::Reject)).await.expect("reject");

    let data_dir = tempfile::tempdir().expect("temp dir");
    let args = ["c360", "dedupe", "--tenant", TENANT, "--database-url", &app.db.url, "--data-dir"];
    let args = [&args[..], &[data_dir.path().to_str().expect("utf-8")], &attribute[..]].concat();
    c360_server::cli::Cli::try_parse_from(args).expect("arguments").run().await.expect("dedupe");
    // Read from the database: a command without Redis leaves the running
    // server's cache as it was.
    let store = Store::connect(&app.db.url, 2, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let resolved = async |id: &str| {
        let id = ProfileId::parse(id).expect("id");
        let found = store::profiles::find(store.db(), &tenant, id, false).await.expect("find").expect("profile");
        found.merged_into.unwrap_or(id)
    };
    assert_ne!(resolved(&a).await, resolved(&b).await, "the rejected pair stays two profiles");
    assert_eq!(resolved(&c).await, resolved(&d).await, "the run merged the others");
    store.close().await.expect("close");
}

async fn pairs_of_equal_confidence_page_by_their_ids(app: TestApp) {
    let mut client = app.agent();
    let mut ids = Vec::new();
    for given in ["Tia", "Tea", "Tee", "Tie"] {
        ids.push(client.create_profile(create(person(given, "Tied", ""))).await.expect("create").into_inner().id);
    }
    propose(&app, &[(&ids[0], &ids[1], 0.93), (&ids[2], &ids[3], 0.93), (&ids[1], &ids[2], 0.93)]).await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = list(&mut steward, "", 1, &token).await;
        seen.extend(pairs(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected = vec![pair(&ids[0], &ids[1]), pair(&ids[2], &ids[3]), pair(&ids[1], &ids[2])];
    expected.sort();
    assert_eq!(seen, expected, "one a page, by ids, none twice or left out");
}
on_both!(pairs_of_equal_confidence_page_by_their_ids, pairs_of_equal_confidence_page_by_their_ids);
