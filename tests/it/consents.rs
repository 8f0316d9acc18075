//! ConsentService against real PostgreSQL and the embedded SQLite: the rule
//! table, concurrency, idempotent retries, contact points, bad input, tenancy
//! and roles. Each test runs on both backends.

use c360_proto::v1::{self as pb, consent_subject::Subject, contact_point::Point};
use c360_server::auth::Role;
use c360_tests::{ConsentClient, TENANT, TestApp, TestDb};
use chrono::{DateTime, Duration, Utc};
use prost_types::Timestamp;
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::{count, create, outbox, outbox_subjects, person, violated_fields};

const EMAIL: pb::ConsentPurpose = pb::ConsentPurpose::EmailMarketing;

fn ts(time: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

fn decision(profile: &str, status: pb::ConsentStatus, captured: DateTime<Utc>) -> pb::SetConsentRequest {
    pb::SetConsentRequest {
        profile_id: profile.into(),
        purpose: EMAIL as i32,
        status: status as i32,
        source: "signup-form".into(),
        channel: "web".into(),
        capture_time: Some(ts(captured)),
        evidence: "ticked the newsletter box".into(),
        ..Default::default()
    }
}

fn by_profile(id: &str) -> Option<pb::ConsentSubject> {
    Some(pb::ConsentSubject { subject: Some(Subject::ProfileId(id.into())) })
}

fn by_email(address: &str) -> Option<pb::ConsentSubject> {
    Some(pb::ConsentSubject { subject: Some(Subject::Email(address.into())) })
}

async fn check(client: &mut ConsentClient, subject: Option<pb::ConsentSubject>) -> pb::ConsentCheck {
    let request = pb::CheckConsentRequest { subject, purpose: EMAIL as i32 };
    client.check_consent(request).await.expect("check").into_inner()
}

fn consents_of(app: &TestApp) -> ConsentClient {
    app.consents(TENANT, &[Role::Agent])
}

async fn new_person(app: &TestApp, email: &str) -> pb::Profile {
    app.agent().create_profile(create(person("Ada", "Lovelace", email))).await.expect("create").into_inner()
}

/// `ConsentUpdatedEvent` payloads of one profile, in outbox order.
async fn consent_events(app: &TestApp, profile: &str) -> Vec<serde_json::Value> {
    outbox(&app.db.connect().await)
        .await
        .into_iter()
        .filter(|e| e["eventType"] == "ConsentUpdatedEvent" && e["payload"]["customerId"] == profile)
        .map(|e| e["payload"].clone())
        .collect()
}

async fn states(client: &mut ConsentClient, profile: &str) -> Vec<pb::ConsentState> {
    let request = pb::GetConsentsRequest { profile_id: profile.into() };
    client.get_consents(request).await.expect("GetConsents").into_inner().consents
}

async fn history(client: &mut ConsentClient, profile: &str) -> Vec<pb::ConsentDecision> {
    let request = pb::ListConsentHistoryRequest { profile_id: profile.into(), page_size: 1000, ..Default::default() };
    client.list_consent_history(request).await.expect("history").into_inner().decisions
}

use pb::{ConsentReason as R, ConsentStatus as S};

async fn consent_rules_hold_row_by_row(app: TestApp) {
    let base = Utc::now() - Duration::hours(2);
    let at = |minutes: i64| base + Duration::minutes(minutes);
    // (decisions in the order recorded: status, captured minute, expiry minute;
    //  then the check's answer, and how many ConsentUpdatedEvents)
    type Row = (&'static str, Vec<(S, i64, Option<i64>)>, bool, R, usize);
    let table: Vec<Row> = vec![
        ("nothing on record", vec![], false, R::NoDecision, 0),
        ("a grant", vec![(S::Granted, 0, None)], true, R::Granted, 1),
        ("a later denial wins", vec![(S::Granted, 0, None), (S::Denied, 10, None)], false, R::Denied, 2),
        ("a later grant wins", vec![(S::Denied, 0, None), (S::Granted, 10, None)], true, R::Granted, 2),
        ("a late-arriving earlier denial", vec![(S::Granted, 10, None), (S::Denied, 0, None)], true, R::Granted, 1),
        ("a tie goes to the revocation", vec![(S::Granted, 5, None), (S::Revoked, 5, None)], false, R::Revoked, 2),
        ("a tie keeps the revocation", vec![(S::Revoked, 5, None), (S::Granted, 5, None)], false, R::Revoked, 1),
        ("pending is not a grant", vec![(S::Granted, 0, None), (S::Pending, 10, None)], false, R::Pending, 2),
        ("an expired grant", vec![(S::Granted, 0, Some(30))], false, R::Expired, 1),
        ("an unexpired grant", vec![(S::Granted, 0, Some(600))], true, R::Granted, 1),
        ("the same decision again", vec![(S::Granted, 0, None), (S::Granted, 10, None)], true, R::Granted, 1),
        ("a renewed expiry", vec![(S::Granted, 0, Some(30)), (S::Granted, 10, Some(600))], true, R::Granted, 2),
    ];
    let mut client = consents_of(&app);
    for (i, (name, decisions, allowed, reason, events)) in table.into_iter().enumerate() {
        let profile = new_person(&app, &format!("rule{i}@example.com")).await;
        let mut recorded = Vec::new();
        for (status, captured, expiry) in &decisions {
            let mut request = decision(&profile.id, *status, at(*captured));
            request.expire_time = expiry.map(|m| ts(at(m)));
            let reply = client.set_consent(request).await.unwrap_or_else(|e| panic!("{name}: {e:?}")).into_inner();
            recorded.push(reply.decision.expect("decision").id);
        }
        let answer = check(&mut client, by_profile(&profile.id)).await;
        assert_eq!((answer.allowed, answer.reason()), (allowed, reason), "{name}");
        assert_eq!(consent_events(&app, &profile.id).await.len(), events, "{name}: events");
        // History is never rewritten: every decision, newest recorded first.
        let ids: Vec<String> = history(&mut client, &profile.id).await.into_iter().map(|d| d.id).collect();
        recorded.reverse();
        assert_eq!(ids, recorded, "{name}: history");
        if let Some(deciding) = answer.decision {
            let states = states(&mut client, &profile.id).await;
            assert_eq!(states.len(), 1, "{name}");
            assert_eq!(states[0].decision.as_ref().map(|d| &d.id), Some(&deciding.id), "{name}: the same decision");
            assert_eq!((states[0].allowed, states[0].reason()), (allowed, reason), "{name}: GetConsents agrees");
        }
    }
}
on_both!(consent_rules, consent_rules_hold_row_by_row);

async fn two_decisions_at_once_keep_both_and_the_later_capture_wins(app: TestApp) {
    let now = Utc::now();
    for round in 0..8 {
        let profile = new_person(&app, &format!("race{round}@example.com")).await;
        let (mut a, mut b) = (consents_of(&app), consents_of(&app));
        let earlier = decision(&profile.id, S::Granted, now - Duration::seconds(2));
        let later = decision(&profile.id, S::Denied, now - Duration::seconds(1));
        let (first, second) = tokio::join!(a.set_consent(earlier), b.set_consent(later));
        first.expect("grant");
        second.expect("denial");
        assert_eq!(history(&mut a, &profile.id).await.len(), 2, "history has both");
        let answer = check(&mut a, by_profile(&profile.id)).await;
        assert_eq!(answer.reason(), R::Denied, "round {round}: the later capture is in force");
        let events = consent_events(&app, &profile.id).await;
        assert_eq!(events.last().map(|e| e["status"].clone()), Some("DENIED".into()), "round {round}: {events:?}");

        // Captured at the same instant: the withdrawal wins whichever commits first.
        let tied = new_person(&app, &format!("tie{round}@example.com")).await;
        let instant = now - Duration::seconds(5);
        let (grant, revoke) = (decision(&tied.id, S::Granted, instant), decision(&tied.id, S::Revoked, instant));
        let (first, second) = tokio::join!(a.set_consent(grant), b.set_consent(revoke));
        first.expect("grant");
        second.expect("revocation");
        assert_eq!(check(&mut a, by_profile(&tied.id)).await.reason(), R::Revoked, "round {round}: tie");
    }
}
on_both!(concurrent_decisions, two_decisions_at_once_keep_both_and_the_later_capture_wins);

async fn a_retried_request_id_records_once(app: TestApp) {
    let profile = new_person(&app, "retry@example.com").await;
    let mut client = consents_of(&app);
    let mut request = decision(&profile.id, S::Granted, Utc::now());
    request.request_id = "signup-42".into();
    let first = client.set_consent(request.clone()).await.expect("first").into_inner();
    let again = client.set_consent(request.clone()).await.expect("retry").into_inner();
    assert_eq!(first.decision, again.decision, "the retry answers with the first decision");
    let (mut c1, mut c2) = (consents_of(&app), consents_of(&app));
    let (x, y) = tokio::join!(c1.set_consent(request.clone()), c2.set_consent(request.clone()));
    assert_eq!(x.expect("concurrent retry").into_inner().decision, first.decision);
    assert_eq!(y.expect("concurrent retry").into_inner().decision, first.decision);
    assert_eq!(history(&mut client, &profile.id).await.len(), 1);
    assert_eq!(consent_events(&app, &profile.id).await.len(), 1);

    let mut other_time = request.clone();
    other_time.capture_time = Some(ts(Utc::now() - Duration::days(1)));
    let status = client.set_consent(other_time).await.expect_err("same id, another capture time");
    assert_eq!(violated_fields(&status), ["request_id"]);
    request.status = S::Denied as i32;
    let status = client.set_consent(request).await.expect_err("same id, another decision");
    assert_eq!(violated_fields(&status), ["request_id"]);
    assert_eq!(history(&mut client, &profile.id).await.len(), 1);

    // Two first attempts at once (a client that timed out and retried while
    // the first was still running): one decision, one event.
    let fresh = new_person(&app, "retry2@example.com").await;
    let mut request = decision(&fresh.id, S::Granted, Utc::now());
    request.request_id = "signup-43".into();
    let (x, y) = tokio::join!(c1.set_consent(request.clone()), c2.set_consent(request));
    let (x, y) = (x.expect("first").into_inner(), y.expect("its twin").into_inner());
    assert_eq!(x.decision, y.decision);
    assert_eq!(history(&mut client, &fresh.id).await.len(), 1);
    assert_eq!(consent_events(&app, &fresh.id).await.len(), 1);
}
on_both!(retries, a_retried_request_id_records_once);

async fn a_decision_for_one_address_decides_for_that_address(app: TestApp) {
    let mut ada = person("Ada", "Lovelace", "ada@home.example");
    ada.emails.push(pb::EmailAddress {
        address: "ada@work.example".into(),
        label: "work".into(),
        primary: false,
        lineage: None,
    });
    ada.phones.push(pb::PhoneNumber { number: "+14155552671".into(), ..Default::default() });
    let profile = app.agent().create_profile(create(ada)).await.expect("create").into_inner();
    let mut client = consents_of(&app);
    let now = Utc::now();
    client.set_consent(decision(&profile.id, S::Denied, now - Duration::minutes(10))).await.expect("whole purpose");
    let mut work_only = decision(&profile.id, S::Granted, now - Duration::minutes(5));
    work_only.contact_point = Some(pb::ContactPoint { point: Some(Point::Email("ADA+news@Work.example".into())) });
    let reply = client.set_consent(work_only).await.expect("one address").into_inner();
    let point = reply.decision.and_then(|d| d.contact_point).and_then(|c| c.point);
    assert_eq!(point, Some(Point::Email("ada@work.example".into())), "stored as the identity key");

    let work = check(&mut client, by_email("ada@work.example")).await;
    assert_eq!((work.allowed, work.reason(), work.profile_id.as_str()), (true, R::Granted, profile.id.as_str()));
    let home = check(&mut client, by_email("Ada@Home.example")).await;
    assert_eq!((home.allowed, home.reason()), (false, R::Denied), "the whole purpose's decision");
    let whole = check(&mut client, by_profile(&profile.id)).await;
    assert_eq!(whole.reason(), R::Denied, "by id, the whole purpose decides");
    let states = states(&mut client, &profile.id).await;
    assert_eq!(states.len(), 2);
    assert!(states[0].contact_point.is_none() && states[1].contact_point.is_some(), "whole purpose first");

    // Unsubscribing from everything later overrides the address's own grant.
    client.set_consent(decision(&profile.id, S::Revoked, now - Duration::minutes(1))).await.expect("withdraw all");
    let work = check(&mut client, by_email("ada@work.example")).await;
    assert_eq!((work.allowed, work.reason()), (false, R::Revoked), "a later withdrawal of the whole purpose");
    assert!(work.decision.is_some_and(|d| d.contact_point.is_none()), "the whole purpose's decision decided");

    let db = app.db.connect().await;
    let before = count(&db, "consent_decisions").await;
    let mut elsewhere = decision(&profile.id, S::Granted, now);
    elsewhere.contact_point = Some(pb::ContactPoint { point: Some(Point::Email("someone@else.example".into())) });
    let status = client.set_consent(elsewhere).await.expect_err("not the profile's address");
    assert_eq!(violated_fields(&status), ["contact_point.email"]);
    let mut phone = decision(&profile.id, S::Granted, now);
    phone.contact_point = Some(pb::ContactPoint { point: Some(Point::Phone("+14155552671".into())) });
    let status = client.set_consent(phone).await.expect_err("a phone for email marketing");
    assert_eq!(violated_fields(&status), ["contact_point.phone"]);
    assert_eq!(count(&db, "consent_decisions").await, before, "refused decisions write nothing");
    let mut sms = decision(&profile.id, S::Granted, now);
    sms.purpose = pb::ConsentPurpose::SmsMarketing as i32;
    sms.contact_point = Some(pb::ContactPoint { point: Some(Point::Phone("(415) 555-2671".into())) });
    client.set_consent(sms).await.expect("a phone for SMS");
    let sms_check = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject { subject: Some(Subject::Phone("415-555-2671".into())) }),
        purpose: pb::ConsentPurpose::SmsMarketing as i32,
    };
    let answer = client.check_consent(sms_check).await.expect("check by phone").into_inner();
    assert_eq!((answer.allowed, answer.reason()), (true, R::Granted));
}
on_both!(contact_points, a_decision_for_one_address_decides_for_that_address);

async fn bad_input_is_invalid_argument_and_writes_nothing(app: TestApp) {
    let profile = new_person(&app, "bad@example.com").await;
    let mut client = consents_of(&app);
    let now = Utc::now();
    let valid = || decision(&profile.id, S::Granted, now);
    let cases: Vec<(pb::SetConsentRequest, &str)> = vec![
        (pb::SetConsentRequest { purpose: 99, ..valid() }, "purpose"),
        (pb::SetConsentRequest { purpose: 0, ..valid() }, "purpose"),
        (pb::SetConsentRequest { status: 42, ..valid() }, "status"),
        (pb::SetConsentRequest { legal_basis: 77, ..valid() }, "legal_basis"),
        (pb::SetConsentRequest { expire_time: Some(ts(now - Duration::hours(1))), ..valid() }, "expire_time"),
        (pb::SetConsentRequest { evidence: "x".repeat(4097), ..valid() }, "evidence"),
        (pb::SetConsentRequest { capture_time: Some(ts(now + Duration::hours(1))), ..valid() }, "capture_time"),
        (pb::SetConsentRequest { profile_id: "not-a-uuid".into(), ..valid() }, "profile_id"),
        (pb::SetConsentRequest { channel: "in store!".into(), ..valid() }, "channel"),
        (pb::SetConsentRequest { request_id: "é".repeat(3), ..valid() }, "request_id"),
    ];
    for (request, field) in cases {
        let status = client.set_consent(request).await.expect_err(field);
        assert!(violated_fields(&status).contains(&field.to_owned()), "{field}: {status:?}");
    }
    let db = app.db.connect().await;
    assert_eq!(count(&db, "consent_decisions").await, 0);
    assert_eq!(count(&db, "consents").await, 0);
    assert!(consent_events(&app, &profile.id).await.is_empty());

    let missing = pb::CheckConsentRequest { subject: None, purpose: EMAIL as i32 };
    assert_eq!(violated_fields(&client.check_consent(missing).await.expect_err("no subject")), ["subject"]);
    let unknown = pb::CheckConsentRequest { subject: by_profile(&profile.id), purpose: 99 };
    assert_eq!(violated_fields(&client.check_consent(unknown).await.expect_err("purpose")), ["purpose"]);
}
on_both!(bad_input, bad_input_is_invalid_argument_and_writes_nothing);

async fn consent_follows_the_profile_lifecycle_and_its_tenant(app: TestApp) {
    let mut client = consents_of(&app);
    let gone = new_person(&app, "gone@example.com").await;
    client.set_consent(decision(&gone.id, S::Granted, Utc::now())).await.expect("grant while live");
    app.agent()
        .delete_profile(pb::DeleteProfileRequest { id: gone.id.clone(), etag: String::new() })
        .await
        .expect("delete");
    let status = client.set_consent(decision(&gone.id, S::Denied, Utc::now())).await.expect_err("inactive");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(history(&mut client, &gone.id).await.len(), 1, "the refused decision wrote nothing");
    let answer = check(&mut client, by_profile(&gone.id)).await;
    assert_eq!((answer.allowed, answer.reason()), (false, R::ProfileNotLive));
    let states = states(&mut client, &gone.id).await;
    let states: Vec<(bool, R)> = states.iter().map(|s| (s.allowed, s.reason())).collect();
    assert_eq!(states, [(false, R::ProfileNotLive)], "GetConsents agrees with CheckConsent");

    let erased = new_person(&app, "erased@example.com").await;
    let db = app.db.connect().await;
    // Erasure is a later issue's RPC; the row is marked by hand (the id as
    // stored differs by backend, the identity's text does not).
    let erase = format!(
        "UPDATE profiles SET status = 'ERASED' WHERE tenant_id = '{TENANT}' \
         AND id IN (SELECT profile_id FROM identities WHERE value = 'erased@example.com')"
    );
    db.execute_unprepared(&erase).await.expect("erase by hand");
    let status = client.set_consent(decision(&erased.id, S::Granted, Utc::now())).await.expect_err("erased");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    let ours = new_person(&app, "ours@example.com").await;
    client.set_consent(decision(&ours.id, S::Granted, Utc::now())).await.expect("grant");
    let mut stranger = app.consents("globex", &[Role::Admin]);
    let not_found = |status: tonic::Status| assert_eq!(status.code(), Code::NotFound, "{status:?}");
    not_found(stranger.set_consent(decision(&ours.id, S::Denied, Utc::now())).await.expect_err("set"));
    not_found(stranger.get_consents(pb::GetConsentsRequest { profile_id: ours.id.clone() }).await.expect_err("get"));
    let list = pb::ListConsentHistoryRequest { profile_id: ours.id.clone(), ..Default::default() };
    not_found(stranger.list_consent_history(list).await.expect_err("history"));
    let by_id = pb::CheckConsentRequest { subject: by_profile(&ours.id), purpose: EMAIL as i32 };
    not_found(stranger.check_consent(by_id).await.expect_err("check by id"));
    let by_address = pb::CheckConsentRequest { subject: by_email("ours@example.com"), purpose: EMAIL as i32 };
    not_found(stranger.check_consent(by_address).await.expect_err("check by address"));
    let batch = pb::BatchCheckConsentRequest {
        purpose: EMAIL as i32,
        subjects: vec![by_profile(&ours.id).expect("s"), by_email("ours@example.com").expect("s")],
    };
    let answers = stranger.batch_check_consent(batch).await.expect("batch").into_inner().results;
    let reasons: Vec<R> = answers.iter().map(|a| a.reason()).collect();
    assert_eq!(reasons, [R::ProfileNotFound, R::UnknownContact]);
    assert!(answers.iter().all(|a| !a.allowed && a.profile_id.is_empty() && a.decision.is_none()));
}
on_both!(lifecycle_and_tenancy, consent_follows_the_profile_lifecycle_and_its_tenant);

async fn batch_check_answers_every_subject_in_request_order(app: TestApp) {
    let mut client = consents_of(&app);
    let mut ids = Vec::new();
    for i in 0..6 {
        let profile = new_person(&app, &format!("batch{i}@example.com")).await;
        let status = if i % 2 == 0 { S::Granted } else { S::Denied };
        client.set_consent(decision(&profile.id, status, Utc::now())).await.expect("decide");
        ids.push(profile.id);
    }
    let undecided = new_person(&app, "undecided@example.com").await;
    let subject = |s: Subject| pb::ConsentSubject { subject: Some(s) };
    let subjects = vec![
        subject(Subject::ProfileId(ids[0].clone())),
        subject(Subject::Email("BATCH1@example.com".into())),
        subject(Subject::ProfileId(ids[0].clone())),
        subject(Subject::Email("nobody@example.com".into())),
        subject(Subject::ProfileId(uuid::Uuid::now_v7().to_string())),
        subject(Subject::ProfileId(undecided.id.clone())),
        subject(Subject::Email("batch4@example.com".into())),
    ];
    let request = pb::BatchCheckConsentRequest { purpose: EMAIL as i32, subjects: subjects.clone() };
    let results = client.batch_check_consent(request).await.expect("batch").into_inner().results;
    let answers: Vec<(bool, R)> = results.iter().map(|r| (r.allowed, r.reason())).collect();
    assert_eq!(
        answers,
        [
            (true, R::Granted),
            (false, R::Denied),
            (true, R::Granted),
            (false, R::UnknownContact),
            (false, R::ProfileNotFound),
            (false, R::NoDecision),
            (true, R::Granted),
        ]
    );
    let echoed: Vec<_> = results.iter().map(|r| r.subject.clone().expect("subject")).collect();
    assert_eq!(echoed, subjects, "each answer names its subject as asked");
    assert_eq!(results[1].profile_id, ids[1]);

    let mut bad = subjects.clone();
    bad[2] = subject(Subject::Email("not an address".into()));
    bad.push(pb::ConsentSubject { subject: None });
    let request = pb::BatchCheckConsentRequest { purpose: EMAIL as i32, subjects: bad };
    let status = client.batch_check_consent(request).await.expect_err("bad entries");
    assert_eq!(violated_fields(&status), ["subjects[2].email", "subjects[7]"]);
    let too_many = (0..1001).map(|_| subject(Subject::ProfileId(ids[0].clone()))).collect();
    let request = pb::BatchCheckConsentRequest { purpose: EMAIL as i32, subjects: too_many };
    assert_eq!(violated_fields(&client.batch_check_consent(request).await.expect_err("1001")), ["subjects"]);
}
on_both!(batch_check, batch_check_answers_every_subject_in_request_order);

async fn history_pages_newest_first_and_filters_by_purpose(app: TestApp) {
    let profile = new_person(&app, "pages@example.com").await;
    let mut client = consents_of(&app);
    let base = Utc::now() - Duration::hours(1);
    let mut written = Vec::new();
    for i in 0..7 {
        let mut request =
            decision(&profile.id, if i % 2 == 0 { S::Granted } else { S::Revoked }, base + Duration::minutes(i));
        if i >= 5 {
            request.purpose = pb::ConsentPurpose::Profiling as i32;
        }
        written.push(client.set_consent(request).await.expect("decide").into_inner().decision.expect("d").id);
    }
    written.reverse();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListConsentHistoryRequest {
            profile_id: profile.id.clone(),
            page_size: 3,
            page_token,
            ..Default::default()
        };
        let page = client.list_consent_history(request).await.expect("page").into_inner();
        assert!(page.decisions.len() <= 3);
        seen.extend(page.decisions.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, written);
    let only_email =
        pb::ListConsentHistoryRequest { profile_id: profile.id.clone(), purpose: EMAIL as i32, ..Default::default() };
    let page = client.list_consent_history(only_email.clone()).await.expect("filtered").into_inner();
    assert_eq!(page.decisions.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), written[2..]);

    let unknown = pb::ListConsentHistoryRequest { purpose: 99, ..only_email.clone() };
    assert_eq!(violated_fields(&client.list_consent_history(unknown).await.expect_err("purpose")), ["purpose"]);
    let first = pb::ListConsentHistoryRequest { page_size: 1, ..only_email.clone() };
    let token = client.list_consent_history(first).await.expect("page").into_inner().next_page_token;
    let elsewhere = pb::ListConsentHistoryRequest {
        purpose: pb::ConsentPurpose::Profiling as i32,
        page_token: token,
        ..only_email
    };
    let status = client.list_consent_history(elsewhere).await.expect_err("a token of another query");
    assert_eq!(violated_fields(&status), ["page_token"]);
}
on_both!(history_pages, history_pages_newest_first_and_filters_by_purpose);

#[tokio::test]
async fn roles_set_and_read_consents_as_the_table_says() {
    let app = TestApp::spawn_on(TestDb::sqlite()).await;
    let profile = new_person(&app, "roles@example.com").await;
    for role in Role::ALL {
        let mut client = app.consents(TENANT, &[role]);
        let set = client.set_consent(decision(&profile.id, S::Granted, Utc::now())).await;
        let may_set = matches!(role, Role::Admin | Role::Agent | Role::Service);
        match set {
            Ok(_) => assert!(may_set, "{role:?} set a consent"),
            Err(status) => {
                assert!(!may_set, "{role:?}: {status:?}");
                assert_eq!(status.code(), Code::PermissionDenied);
            }
        }
        client.get_consents(pb::GetConsentsRequest { profile_id: profile.id.clone() }).await.expect("every role reads");
        check(&mut client, by_profile(&profile.id)).await;
    }
    let mut nobody = app.consents(TENANT, &[]);
    let status =
        nobody.get_consents(pb::GetConsentsRequest { profile_id: profile.id.clone() }).await.expect_err("none");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_decision_is_visible_at_once_on_another_instance() {
    let app = TestApp::spawn_with_cache(&c360_tests::redis_url(), &[]).await;
    let sibling = app.sibling(&[]).await;
    let profile = new_person(&app, "twice@example.com").await;
    let (mut writer, mut reader) = (consents_of(&app), sibling.consents(TENANT, &[Role::Service]));
    let start = Utc::now() - Duration::minutes(30);
    for i in 0..20 {
        let status = if i % 2 == 0 { S::Granted } else { S::Denied };
        writer.set_consent(decision(&profile.id, status, start + Duration::seconds(i))).await.expect("write");
        let answer = check(&mut reader, by_email("twice@example.com")).await;
        assert_eq!(answer.allowed, status == S::Granted, "round {i}: the other instance sees the write");
    }
}

#[tokio::test]
async fn a_state_change_publishes_consent_updated_in_the_seed_envelope() {
    let app = TestApp::spawn().await;
    let profile = new_person(&app, "event@example.com").await;
    let mut client = consents_of(&app);
    let captured = Utc::now() - Duration::minutes(1);
    let first = client.set_consent(decision(&profile.id, S::Granted, captured)).await.expect("grant").into_inner();
    let mut revoke = decision(&profile.id, S::Revoked, captured + Duration::seconds(30));
    revoke.legal_basis = pb::LegalBasis::Consent as i32;
    client.set_consent(revoke).await.expect("revoke");

    let envelopes: Vec<_> =
        outbox(&app.db.connect().await).await.into_iter().filter(|e| e["eventType"] == "ConsentUpdatedEvent").collect();
    assert_eq!(envelopes.len(), 2);
    let grant = &envelopes[0];
    assert_eq!(grant["aggregateId"], profile.id.as_str());
    assert_eq!(grant["tenantId"], TENANT);
    let payload = &grant["payload"];
    assert_eq!(payload["customerId"], profile.id.as_str());
    assert_eq!(payload["consentType"], "EMAIL_MARKETING");
    assert_eq!(payload["status"], "GRANTED");
    assert_eq!(payload["previousStatus"], serde_json::Value::Null);
    assert_eq!(payload["legalBasis"], "CONSENT");
    assert_eq!(payload["source"], "signup-form");
    assert_eq!(payload["channel"], "WEB");
    assert_eq!(payload["decisionId"], first.decision.expect("d").id.as_str());
    assert_eq!(envelopes[1]["payload"]["previousStatus"], "GRANTED");
    assert_eq!(envelopes[1]["payload"]["status"], "REVOKED");

    let subjects = outbox_subjects(&app.db.connect().await).await;
    let consent_subjects: Vec<&str> =
        subjects.iter().filter(|(event, _)| event == "ConsentUpdatedEvent").map(|(_, s)| s.as_str()).collect();
    assert_eq!(consent_subjects, ["crm.customer360.consent.updated"; 2]);
}

/// Under load, concurrent decisions share units of work; each must still get
/// its own answer, a refused one must not fail its neighbours, and the state
/// in force must be exactly what one-at-a-time recording would leave.
async fn many_decisions_at_once_each_get_their_own_answer(app: TestApp) {
    let mut profiles = Vec::new();
    for i in 0..10 {
        profiles.push(new_person(&app, &format!("bulk{i}@example.com")).await.id);
    }
    let gone = new_person(&app, "bulk-gone@example.com").await.id;
    app.agent()
        .delete_profile(pb::DeleteProfileRequest { id: gone.clone(), etag: String::new() })
        .await
        .expect("delete");
    let base = Utc::now() - Duration::hours(1);
    let requests: Vec<(pb::SetConsentRequest, Option<Code>)> = (0..200)
        .map(|i| {
            let status = if i % 3 == 0 { S::Denied } else { S::Granted };
            let mut request = decision(&profiles[i % 10], status, base + Duration::seconds(i as i64));
            request.request_id = format!("bulk-{i}");
            match i % 25 {
                7 => {
                    request.profile_id = gone.clone();
                    (request, Some(Code::FailedPrecondition))
                }
                8 => {
                    request.contact_point =
                        Some(pb::ContactPoint { point: Some(Point::Email("x@nowhere.example".into())) });
                    (request, Some(Code::InvalidArgument))
                }
                _ => (request, None),
            }
        })
        .collect();
    let calls = requests.iter().map(|(request, _)| {
        let (mut client, request) = (consents_of(&app), request.clone());
        tokio::spawn(async move { client.set_consent(request).await })
    });
    let answers = futures::future::join_all(calls).await;
    for ((request, refusal), answer) in requests.iter().zip(answers) {
        match (answer.expect("task"), refusal) {
            (Ok(reply), None) => {
                let recorded = reply.into_inner().decision.expect("decision");
                assert_eq!(
                    (recorded.profile_id.as_str(), recorded.request_id.as_str()),
                    (request.profile_id.as_str(), request.request_id.as_str())
                );
            }
            (Err(status), Some(code)) => assert_eq!(status.code(), *code, "{}: {status:?}", request.request_id),
            (other, expected) => panic!("{}: expected {expected:?}, got {other:?}", request.request_id),
        }
    }
    let mut client = consents_of(&app);
    for (n, profile) in profiles.iter().enumerate() {
        let mine: Vec<&pb::SetConsentRequest> = requests
            .iter()
            .filter(|(r, refusal)| refusal.is_none() && r.profile_id == *profile)
            .map(|(r, _)| r)
            .collect();
        assert_eq!(history(&mut client, profile).await.len(), mine.len(), "profile {n}: every decision in history");
        let latest = mine.iter().max_by_key(|r| r.capture_time.as_ref().map(|t| t.seconds)).expect("some");
        let answer = check(&mut client, by_profile(profile)).await;
        assert_eq!(
            answer.decision.map(|d| d.request_id),
            Some(latest.request_id.clone()),
            "profile {n}: the latest capture"
        );
        let events = consent_events(&app, profile).await;
        let expected = if latest.status == S::Denied as i32 { "DENIED" } else { "GRANTED" };
        assert_eq!(events.last().map(|e| e["status"].clone()), Some(expected.into()), "profile {n}");
    }
    assert_eq!(history(&mut client, &gone).await.len(), 0);
}
on_both!(many_at_once, many_decisions_at_once_each_get_their_own_answer);
