//! The access policy's masking, as each role receives it: golden responses
//! per role for one rich person and one organization (files under
//! `tests/golden/access/`, so a reviewer reads exactly what each role gets;
//! `C360_UPDATE_GOLDEN=1` rewrites them), consent-gated contact details,
//! hidden fields that stay as they are on update, masked input refused, and
//! the same shaping on lists, searches, batch reads and consent records.

use std::{path::PathBuf, time::Duration};

use c360_proto::v1::{self as pb, contact_point::Point};
use c360_server::{auth::Role, convert::struct_to_json};
use c360_tests::{ProfileClient, TENANT, TestApp};
use chrono::Utc;
use prost_types::{FieldMask, Timestamp};
use serde_json::{Map, Value, json};
use tonic::Code;

use crate::{create, update, violated_fields};

/// A profile's attributes from a JSON object.
fn attrs(object: Value) -> Option<prost_types::Struct> {
    Some(c360_server::convert::json_to_struct(object.as_object().expect("a JSON object")))
}

/// Tenant settings of the fixture: one personal and one financial key.
async fn settings(app: &TestApp) {
    let request = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings {
            personal_attribute_keys: vec!["national_id".into()],
            financial_attribute_keys: vec!["lifetime_value".into()],
            ..Default::default()
        }),
        update_mask: None,
        etag: String::new(),
    };
    app.tenants(TENANT, &[Role::Admin]).update_tenant_settings(request).await.expect("settings");
}

fn rich_person() -> pb::Profile {
    pb::Profile {
        kind: pb::ProfileKind::Person as i32,
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        segment: "VIP".into(),
        emails: vec![
            pb::EmailAddress { address: "ada@example.com".into(), label: "home".into(), primary: true, lineage: None },
            pb::EmailAddress {
                address: "ada.work@engines.example".into(),
                label: "work".into(),
                primary: false,
                lineage: None,
            },
        ],
        phones: vec![
            pb::PhoneNumber { number: "+1 415 555 0123".into(), label: "mobile".into(), primary: true, lineage: None },
            pb::PhoneNumber {
                number: "+44 20 7946 0958".into(),
                label: "office".into(),
                primary: false,
                lineage: None,
            },
        ],
        addresses: vec![pb::PostalAddress {
            lines: vec!["12 St James's Square".into()],
            locality: "London".into(),
            region: "Greater London".into(),
            postal_code: "SW1Y 4JH".into(),
            country_code: "GB".into(),
            label: "home".into(),
            lineage: None,
        }],
        birth_date: "1985-12-10".into(),
        attributes: attrs(json!({"tier": "gold", "lifetime_value": 1234.5, "national_id": "QQ123456C"})),
        external_ids: vec![pb::ExternalId { source: "crm".into(), id: "CRM-0012345".into(), lineage: None }],
        ..Default::default()
    }
}

fn rich_organization(contact: &str) -> pb::Profile {
    pb::Profile {
        kind: pb::ProfileKind::Organization as i32,
        company_name: "Analytical Engines Ltd".into(),
        segment: "ENTERPRISE".into(),
        emails: vec![pb::EmailAddress {
            address: "info@engines.example".into(),
            label: String::new(),
            primary: true,
            lineage: None,
        }],
        phones: vec![pb::PhoneNumber {
            number: "+44 20 7946 0000".into(),
            label: String::new(),
            primary: true,
            lineage: None,
        }],
        addresses: vec![pb::PostalAddress {
            lines: vec!["1 Babbage Row".into()],
            locality: "Cambridge".into(),
            postal_code: "CB2 1TN".into(),
            country_code: "GB".into(),
            ..Default::default()
        }],
        primary_contact_id: contact.into(),
        attributes: attrs(json!({"employees": 40, "lifetime_value": 99000})),
        external_ids: vec![pb::ExternalId { source: "erp".into(), id: "ACC-77001".into(), lineage: None }],
        ..Default::default()
    }
}

fn grant(
    profile: &str,
    purpose: pb::ConsentPurpose,
    point: Option<Point>,
    expires: Option<Timestamp>,
) -> pb::SetConsentRequest {
    pb::SetConsentRequest {
        profile_id: profile.into(),
        purpose: purpose as i32,
        status: pb::ConsentStatus::Granted as i32,
        legal_basis: pb::LegalBasis::Consent as i32,
        source: "web".into(),
        evidence: "ticked the newsletter box as Ada Lovelace".into(),
        contact_point: point.map(|p| pb::ContactPoint { point: Some(p) }),
        expire_time: expires,
        ..Default::default()
    }
}

/// A profile response as a reviewer reads it: ids named, times elided.
fn render(profile: &pb::Profile, names: &[(&str, &str)]) -> Value {
    let name = |id: &str| {
        names.iter().find(|(known, _)| *known == id).map_or_else(|| id.to_owned(), |(_, n)| format!("<{n}>"))
    };
    let mut out = Map::new();
    out.insert("id".into(), json!(name(&profile.id)));
    out.insert("kind".into(), json!(pb::ProfileKind::try_from(profile.kind).map(|k| k.as_str_name()).unwrap_or("?")));
    out.insert(
        "status".into(),
        json!(pb::ProfileStatus::try_from(profile.status).map(|s| s.as_str_name()).unwrap_or("?")),
    );
    for (key, value) in [
        ("given_name", &profile.given_name),
        ("family_name", &profile.family_name),
        ("company_name", &profile.company_name),
        ("segment", &profile.segment),
        ("birth_date", &profile.birth_date),
    ] {
        out.insert(key.into(), json!(value));
    }
    out.insert(
        "emails".into(),
        json!(profile.emails.iter().map(|e| json!([e.address, e.label, e.primary])).collect::<Vec<_>>()),
    );
    out.insert(
        "phones".into(),
        json!(profile.phones.iter().map(|p| json!([p.number, p.label, p.primary])).collect::<Vec<_>>()),
    );
    out.insert(
        "addresses".into(),
        json!(
            profile
                .addresses
                .iter()
                .map(|a| json!({"lines": a.lines, "locality": a.locality, "region": a.region,
                "postal_code": a.postal_code, "country_code": a.country_code, "label": a.label}))
                .collect::<Vec<_>>()
        ),
    );
    out.insert(
        "primary_contact_id".into(),
        json!(if profile.primary_contact_id.is_empty() { String::new() } else { name(&profile.primary_contact_id) }),
    );
    out.insert("attributes".into(), Value::Object(profile.attributes.as_ref().map(struct_to_json).unwrap_or_default()));
    out.insert(
        "external_ids".into(),
        json!(profile.external_ids.iter().map(|x| json!([x.source, x.id])).collect::<Vec<_>>()),
    );
    let mut lineage: Vec<_> = profile.lineage.iter().map(|(field, l)| format!("{field}: {}", l.source)).collect();
    lineage.sort();
    out.insert("lineage".into(), json!(lineage));
    out.insert("completeness".into(), json!(profile.completeness));
    out.insert("etag".into(), json!(profile.etag));
    out.insert("masked_fields".into(), json!(profile.masked_fields));
    out.insert("hidden_fields".into(), json!(profile.hidden_fields));
    Value::Object(out)
}

/// Compares `actual` with the golden file `name`, or rewrites it when
/// `C360_UPDATE_GOLDEN` is set.
fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/access").join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(actual).expect("json") + "\n";
    if std::env::var_os("C360_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("golden dir");
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with C360_UPDATE_GOLDEN=1 to create it)", path.display()));
    assert_eq!(text, expected, "{name}: the response differs from {} (C360_UPDATE_GOLDEN=1 rewrites)", path.display());
}

/// The fixture: settings, Ada, her company, and Ada's marketing consent for
/// her home email and her mobile only.
async fn fixture(app: &TestApp) -> (String, String) {
    settings(app).await;
    // An admin writes the financial figures agents may not.
    let mut admin = app.admin();
    let ada = admin.create_profile(create(rich_person())).await.expect("create ada").into_inner();
    let org = admin.create_profile(create(rich_organization(&ada.id))).await.expect("create org").into_inner();
    let mut consents = app.consents(TENANT, &[Role::Agent]);
    let email = grant(&ada.id, pb::ConsentPurpose::EmailMarketing, Some(Point::Email("ada@example.com".into())), None);
    consents.set_consent(email).await.expect("email consent");
    let sms = grant(&ada.id, pb::ConsentPurpose::SmsMarketing, Some(Point::Phone("+14155550123".into())), None);
    consents.set_consent(sms).await.expect("sms consent");
    (ada.id, org.id)
}

fn role_name(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("+")
}

#[tokio::test]
async fn each_role_gets_exactly_its_golden_view_of_a_person_and_an_organization() {
    let app = TestApp::spawn().await;
    let (ada, org) = fixture(&app).await;
    let names = [(ada.as_str(), "ada"), (org.as_str(), "org")];
    let mut cases: Vec<Vec<Role>> = Role::ALL.iter().map(|r| vec![*r]).collect();
    cases.push(vec![Role::Analyst, Role::Marketer]);
    for roles in cases {
        let mut client = app.client_with_roles(TENANT, &roles);
        for (id, what) in [(&ada, "person"), (&org, "organization")] {
            let got = client.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("get").into_inner();
            golden(&format!("{}-{what}", role_name(&roles)), &render(&got, &names));
        }
    }
}

/// Every read path shapes alike: get, batch, list, search by external id.
#[tokio::test]
async fn batch_reads_lists_and_searches_are_shaped_like_get() {
    let app = TestApp::spawn().await;
    let (ada, org) = fixture(&app).await;
    for role in [Role::Analyst, Role::Marketer, Role::Agent] {
        let mut client = app.client(TENANT, role);
        let got = client.get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("get").into_inner();
        let batch = client
            .batch_get_profiles(pb::BatchGetProfilesRequest { ids: vec![org.clone(), ada.clone()] })
            .await
            .expect("batch")
            .into_inner();
        assert_eq!(batch.profiles[1], got, "{role:?}: batch");
        let list = client.list_profiles(pb::ListProfilesRequest::default()).await.expect("list").into_inner();
        assert_eq!(list.profiles.iter().find(|p| p.id == ada), Some(&got), "{role:?}: list");
        // Each role by a field it sees: agents by external id, marketers by
        // name; analysts search by nothing.
        let criterion = match role {
            Role::Agent => Some(pb::search_profiles_request::Criterion::ExternalId(pb::ExternalId {
                source: "crm".into(),
                id: "CRM-0012345".into(),
                lineage: None,
            })),
            Role::Marketer => Some(pb::search_profiles_request::Criterion::NamePrefix("Lovelace".into())),
            _ => None,
        };
        if let Some(criterion) = criterion {
            let search = pb::SearchProfilesRequest { criterion: Some(criterion), ..Default::default() };
            let found = client.search_profiles(search).await.expect("search").into_inner();
            assert_eq!(found.profiles, vec![got.clone()], "{role:?}: search");
        }
    }
}

#[tokio::test]
async fn a_marketer_sees_a_contact_only_while_its_grant_is_in_force() {
    let app = TestApp::spawn().await;
    let mut agent = app.agent();
    let ada = agent.create_profile(create(rich_person())).await.expect("create").into_inner();
    let mut marketer = app.client(TENANT, Role::Marketer);
    let emails = |p: pb::Profile| p.emails.into_iter().map(|e| e.address).collect::<Vec<_>>();
    let get = pb::GetProfileRequest { id: ada.id.clone() };
    let before = marketer.get_profile(get.clone()).await.expect("get").into_inner();
    assert_eq!(emails(before), ["a***@example.com", "a***@engines.example"]);

    // A grant for the whole purpose that lapses in two seconds: the view
    // changes with no write.
    let expires = Utc::now() + chrono::Duration::seconds(2);
    let expires = Timestamp { seconds: expires.timestamp(), nanos: expires.timestamp_subsec_nanos() as i32 };
    let whole = grant(&ada.id, pb::ConsentPurpose::EmailMarketing, None, Some(expires));
    app.consents(TENANT, &[Role::Agent]).set_consent(whole).await.expect("grant");
    let during = marketer.get_profile(get.clone()).await.expect("get").into_inner();
    assert!(during.masked_fields.iter().all(|f| f != "emails"), "{:?}", during.masked_fields);
    assert_eq!(emails(during), ["ada@example.com", "ada.work@engines.example"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = marketer.get_profile(get).await.expect("get").into_inner();
    assert_eq!(emails(after), ["a***@example.com", "a***@engines.example"], "the grant lapsed");
}

#[tokio::test]
async fn consent_records_are_masked_for_readers_of_masked_data() {
    let app = TestApp::spawn().await;
    let (ada, _) = fixture(&app).await;
    let request = pb::GetConsentsRequest { profile_id: ada.clone() };
    let analyst = app.consents(TENANT, &[Role::Analyst]).get_consents(request.clone()).await.expect("get");
    let steward = app.consents(TENANT, &[Role::Steward]).get_consents(request).await.expect("get");
    let points = |r: &pb::GetConsentsResponse| -> Vec<(Option<Point>, String, Vec<String>)> {
        r.consents
            .iter()
            .map(|c| {
                let d = c.decision.as_ref().expect("decision");
                (c.contact_point.clone().and_then(|p| p.point), d.evidence.clone(), d.hidden_fields.clone())
            })
            .collect()
    };
    let analyst = points(analyst.get_ref());
    assert_eq!(analyst[0], (Some(Point::Email("a***@example.com".into())), String::new(), vec!["evidence".to_owned()]));
    assert_eq!(analyst[1].0, Some(Point::Phone("+1 ***-***-0123".into())));
    let steward = points(steward.get_ref());
    assert_eq!(steward[0].0, Some(Point::Email("ada@example.com".into())));
    assert_eq!(steward[0].1, "ticked the newsletter box as Ada Lovelace");

    // A check by address answers whether, never whose.
    let check = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject {
            subject: Some(pb::consent_subject::Subject::Email("ada@example.com".into())),
        }),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
    };
    for (role, names_profile) in [(Role::Marketer, false), (Role::Analyst, false), (Role::Service, true)] {
        let answer = app.consents(TENANT, &[role]).check_consent(check.clone()).await.expect("check").into_inner();
        assert!(answer.allowed, "{role:?}");
        assert_eq!(!answer.profile_id.is_empty(), names_profile, "{role:?}: {answer:?}");
        assert_eq!(answer.decision.is_some(), names_profile, "{role:?}: {answer:?}");
    }

    let history = pb::ListConsentHistoryRequest { profile_id: ada, ..Default::default() };
    let history = app.consents(TENANT, &[Role::Marketer]).list_consent_history(history).await.expect("history");
    for decision in &history.get_ref().decisions {
        assert!(decision.evidence.is_empty(), "{decision:?}");
        assert_eq!(decision.masked_fields.len(), 1, "{decision:?}");
    }
}

async fn update_as(
    client: &mut ProfileClient,
    id: &str,
    mask: &[&str],
    etag: &str,
    changes: pb::Profile,
) -> Result<pb::Profile, tonic::Status> {
    client.update_profile(update(id, mask, etag, changes)).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_agent_cannot_write_what_it_cannot_see_and_leaves_it_as_it_is() {
    let app = TestApp::spawn().await;
    let (ada, _) = fixture(&app).await;
    let mut agent = app.agent();
    let seen = agent.get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("get").into_inner();
    assert_eq!(seen.hidden_fields, ["attributes.lifetime_value"]);
    assert!(!struct_to_json(seen.attributes.as_ref().expect("attributes")).contains_key("lifetime_value"));

    // Writing the whole profile back (mask `*`) keeps the hidden figure.
    let mut changed = seen.clone();
    changed.segment = "GOLD".into();
    let written = update_as(&mut agent, &ada, &["*"], &seen.etag, changed).await.expect("update *");
    assert_eq!(written.segment, "GOLD");
    let admin = app.admin().get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("get").into_inner();
    let attributes = struct_to_json(admin.attributes.as_ref().expect("attributes"));
    assert_eq!(attributes["lifetime_value"], 1234.5, "the hidden value stays");
    assert_eq!(attributes["tier"], "gold");

    // Naming it is refused, whatever the value.
    let sneaky = pb::Profile { attributes: attrs(json!({"lifetime_value": 0})), ..Default::default() };
    let status = update_as(&mut agent, &ada, &["attributes"], "", sneaky).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("attributes.lifetime_value"), "{status:?}");
}

#[tokio::test]
async fn masked_values_are_refused_as_input() {
    let app = TestApp::spawn().await;
    let (ada, _) = fixture(&app).await;
    let masked = app.analyst().get_profile(pb::GetProfileRequest { id: ada.clone() }).await.expect("get").into_inner();
    let mut agent = app.agent();
    // The analyst's view written back by a writer: every masked field refused.
    let status = update_as(&mut agent, &ada, &["given_name", "emails", "phones"], "", masked.clone())
        .await
        .expect_err("masked input");
    let fields = violated_fields(&status);
    for field in ["profile.given_name", "profile.emails", "profile.phones"] {
        assert!(fields.contains(&field.to_owned()), "{field} in {fields:?}");
    }
    assert!(!status.message().contains("A***"), "errors do not echo values: {status:?}");
    let status = agent
        .create_profile(create(pb::Profile {
            emails: vec![pb::EmailAddress { address: "j***@example.com".into(), ..Default::default() }],
            ..crate::person("Jo", "Doe", "")
        }))
        .await
        .expect_err("masked email");
    assert_eq!(violated_fields(&status), ["profile.emails"]);
}

#[tokio::test]
async fn tenant_settings_are_for_admins_with_an_etag() {
    let app = TestApp::spawn().await;
    for role in Role::ALL {
        let got = app.tenants(TENANT, &[role]).get_tenant_settings(pb::GetTenantSettingsRequest {}).await;
        assert_eq!(got.is_ok(), role == Role::Admin, "{role:?}: {got:?}");
    }
    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    let initial = admin.get_tenant_settings(pb::GetTenantSettingsRequest {}).await.expect("get").into_inner();
    assert_eq!(initial.etag, "0");
    assert!(initial.personal_attribute_keys.is_empty());
    let change = |keys: &[&str], etag: &str| pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings {
            personal_attribute_keys: keys.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask { paths: vec!["personal_attribute_keys".into()] }),
        etag: etag.into(),
    };
    let first = admin.update_tenant_settings(change(&["ssn"], "0")).await.expect("update").into_inner();
    assert_eq!((first.etag.as_str(), first.updated_by.as_str()), ("1", "test-user"));
    let stale = admin.update_tenant_settings(change(&["ssn", "dob"], "0")).await.expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let bad = pb::UpdateTenantSettingsRequest {
        update_mask: Some(FieldMask { paths: vec!["no_such_setting".into()] }),
        ..change(&[], "")
    };
    let status = admin.update_tenant_settings(bad).await.expect_err("unknown path");
    assert_eq!(violated_fields(&status), ["update_mask.paths[0]"]);

    // Every change is audited.
    let mut audited = Vec::new();
    let by_tenant = pb::ListAuditEventsRequest { resource_id: TENANT.into(), ..Default::default() };
    let mut privacy = app.privacy(TENANT, &[Role::Admin]);
    eventually!({
        audited = privacy.list_audit_events(by_tenant.clone()).await.expect("audit").into_inner().events;
        !audited.is_empty()
    });
    assert_eq!(audited[0].action, "tenant_settings.update");
    assert_eq!(audited[0].resource_type, "tenant_settings");

    // The new key is masked for analysts at once on this instance.
    let ssn = json!({"ssn": "123-45-6789"});
    let profile = pb::Profile { attributes: attrs(ssn), ..crate::person("Al", "Smith", "") };
    let created = app.agent().create_profile(create(profile)).await.expect("create").into_inner();
    let seen = app.analyst().get_profile(pb::GetProfileRequest { id: created.id }).await.expect("get").into_inner();
    assert_eq!(struct_to_json(seen.attributes.as_ref().expect("attributes"))["ssn"], "1***");
    assert!(seen.masked_fields.contains(&"attributes.ssn".to_owned()), "{:?}", seen.masked_fields);
}

async fn cap_reads(app: &TestApp, cap: u32) {
    let request = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { profile_reads_per_hour: cap, ..Default::default() }),
        update_mask: Some(FieldMask { paths: vec!["profile_reads_per_hour".into()] }),
        etag: String::new(),
    };
    app.tenants(TENANT, &[Role::Admin]).update_tenant_settings(request).await.expect("cap");
}

fn assert_capped(status: tonic::Status) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("a delay");
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(3600), "{delay:?}");
}

#[tokio::test]
async fn a_read_cap_refuses_the_read_that_goes_over_on_every_instance_sharing_redis() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let sibling = app.sibling(&[]).await;
    let mut agent = app.agent();
    let a = agent.create_profile(create(crate::person("Ann", "One", ""))).await.expect("create").into_inner().id;
    let b = agent.create_profile(create(crate::person("Ben", "Two", ""))).await.expect("create").into_inner().id;
    cap_reads(&app, 3).await;

    let token = app.token_as("reader-1", TENANT, &[Role::Steward]);
    let mut here = app.client_with_token(&token);
    let mut there = sibling.client_with_token(&token);
    here.get_profile(pb::GetProfileRequest { id: a.clone() }).await.expect("1");
    here.get_profile(pb::GetProfileRequest { id: b.clone() }).await.expect("2");
    there.get_profile(pb::GetProfileRequest { id: a.clone() }).await.expect("3, on the other instance");
    assert_capped(there.get_profile(pb::GetProfileRequest { id: b.clone() }).await.expect_err("4"));
    let page = here.list_profiles(pb::ListProfilesRequest::default()).await.expect_err("a page counts every profile");
    assert_capped(page);

    // Another subject has its own budget.
    let other = app.token_as("reader-2", TENANT, &[Role::Steward]);
    let batch = pb::BatchGetProfilesRequest { ids: vec![a.clone(), b.clone()] };
    let got = app.client_with_token(&other).batch_get_profiles(batch).await.expect("reader-2").into_inner();
    assert_eq!(got.profiles.len(), 2);
}

#[tokio::test]
async fn without_redis_each_instance_counts_reads_itself() {
    let app = TestApp::spawn_on(c360_tests::TestDb::sqlite()).await;
    let a = app.agent().create_profile(create(crate::person("Ann", "One", ""))).await.expect("create").into_inner().id;
    cap_reads(&app, 1).await;
    let mut reader = app.client_with_token(&app.token_as("reader-1", TENANT, &[Role::Analyst]));
    reader.get_profile(pb::GetProfileRequest { id: a.clone() }).await.expect("1");
    assert_capped(reader.get_profile(pb::GetProfileRequest { id: a }).await.expect_err("2"));
}

#[tokio::test]
async fn the_source_priority_is_a_tenant_setting_of_normalized_names() {
    let app = TestApp::spawn().await;
    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    let set = |sources: &[&str]| pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings {
            source_priority: sources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask { paths: vec!["source_priority".into()] }),
        etag: String::new(),
    };
    let stored = admin.update_tenant_settings(set(&[" Salesforce ", "pos", "shopify"])).await.expect("update");
    assert_eq!(stored.into_inner().source_priority, ["salesforce", "pos", "shopify"], "normalized, in order");
    let read = admin.get_tenant_settings(pb::GetTenantSettingsRequest {}).await.expect("get").into_inner();
    assert_eq!(read.source_priority, ["salesforce", "pos", "shopify"]);
    let twice = admin.update_tenant_settings(set(&["pos", "POS"])).await.expect_err("listed twice");
    assert_eq!(violated_fields(&twice), ["source_priority[1]"]);
    let bad = admin.update_tenant_settings(set(&["sales force"])).await.expect_err("not a source name");
    assert_eq!(violated_fields(&bad), ["source_priority[0]"]);
    let steward = app.tenants(TENANT, &[Role::Steward]).update_tenant_settings(set(&["pos"])).await;
    assert_eq!(steward.expect_err("admins only").code(), Code::PermissionDenied);
}
