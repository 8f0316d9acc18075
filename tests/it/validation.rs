//! Bad input: every invalid field answers INVALID_ARGUMENT naming the field,
//! and nothing is written.

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use prost_types::{FieldMask, Struct, Value, value::Kind};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{count, create, person, violated_fields};

async fn row_counts(app: &TestApp) -> [i64; 3] {
    let db = app.db.connect().await;
    [count(&db, "profiles").await, count(&db, "identities").await, count(&db, "outbox").await]
}

#[tokio::test]
async fn each_bad_input_names_its_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let existing =
        client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create").into_inner();
    let before = row_counts(&app).await;

    let with = |change: fn(&mut pb::Profile)| {
        let mut p = person("Bob", "Byron", "bob@example.com");
        change(&mut p);
        p
    };
    let huge_attributes =
        Struct { fields: [("blob".to_owned(), Value { kind: Some(Kind::StringValue("x".repeat(70_000))) })].into() };
    let text = |s: &str| Value { kind: Some(Kind::StringValue(s.to_owned())) };
    let nul_key = Struct { fields: [("tier\u{0}".to_owned(), text("gold"))].into() };
    let nul_value = Struct { fields: [("tier".to_owned(), text("go\u{0}ld"))].into() };
    let creates: Vec<(&str, pb::Profile)> = vec![
        ("profile.given_name", with(|p| p.given_name = "   ".into())),
        ("profile.family_name", with(|p| p.family_name = "x".repeat(201))),
        ("profile.emails[0].address", with(|p| p.emails[0].address = "bob@".into())),
        (
            "profile.phones[0].number",
            with(|p| p.phones = vec![pb::PhoneNumber { number: "555-01".into(), ..Default::default() }]),
        ),
        ("profile.kind", with(|p| p.kind = 99)),
        ("profile.status", with(|p| p.status = 42)),
        ("profile.status", with(|p| p.status = pb::ProfileStatus::Merged as i32)),
        ("profile.birth_date", with(|p| p.birth_date = "14/07/1985".into())),
        (
            "profile.addresses[0].country_code",
            with(|p| {
                p.addresses = vec![pb::PostalAddress {
                    locality: "Lyon".into(),
                    country_code: "France".into(),
                    ..Default::default()
                }]
            }),
        ),
        (
            "profile.external_ids[0].id",
            with(|p| p.external_ids = vec![pb::ExternalId { source: "pos".into(), id: " ".into(), lineage: None }]),
        ),
        ("profile.attributes", pb::Profile { attributes: Some(huge_attributes), ..person("Bob", "Byron", "") }),
        // Found by probing: PostgreSQL's JSONB refuses U+0000 and answered INTERNAL.
        ("profile.attributes", pb::Profile { attributes: Some(nul_key), ..person("Bob", "Byron", "") }),
        ("profile.attributes", pb::Profile { attributes: Some(nul_value), ..person("Bob", "Byron", "") }),
        ("profile.given_name", with(|p| p.given_name = "Bo\u{0}b".into())),
        ("profile.company_name", with(|p| p.kind = pb::ProfileKind::Organization as i32)),
        ("profile", pb::Profile::default()),
    ];
    for (field, profile) in creates {
        let status = client.create_profile(create(profile)).await.expect_err(field);
        assert_eq!(violated_fields(&status), [field], "create: {field}");
    }
    let status = client
        .create_profile(pb::CreateProfileRequest {
            request_id: String::new(),
            profile: Some(person("Bob", "Byron", "")),
            source: "no spaces allowed".into(),
        })
        .await
        .expect_err("bad source");
    assert_eq!(violated_fields(&status), ["source"]);

    let update = |mask: &[&str], etag: &str, profile: pb::Profile| pb::UpdateProfileRequest {
        request_id: String::new(),
        profile: Some(pb::Profile {
            id: if profile.id.is_empty() { existing.id.clone() } else { profile.id.clone() },
            ..profile
        }),
        update_mask: Some(FieldMask { paths: mask.iter().map(|s| s.to_string()).collect() }),
        etag: etag.into(),
        source: String::new(),
    };
    let updates = [
        ("update_mask", update(&["nickname"], "", pb::Profile::default())),
        ("update_mask", update(&["etag"], "", pb::Profile::default())),
        ("etag", update(&["segment"], "W/abc", pb::Profile { segment: "X".into(), ..Default::default() })),
        (
            "profile.id",
            update(
                &["segment"],
                "",
                pb::Profile { id: "not-a-uuid".into(), segment: "X".into(), ..Default::default() },
            ),
        ),
        ("profile.kind", update(&["kind"], "", pb::Profile::default())),
        ("profile.emails[0].address", update(&["emails"], "", person("", "", "not-an-email"))),
    ];
    for (field, request) in updates {
        let status = client.update_profile(request).await.expect_err(field);
        assert_eq!(violated_fields(&status), [field], "update: {field}");
    }

    let checks: Vec<(&str, Result<(), Status>)> = vec![
        ("id", client.get_profile(pb::GetProfileRequest { id: "nope".into() }).await.map(drop)),
        (
            "ids",
            client
                .batch_get_profiles(pb::BatchGetProfilesRequest { ids: vec![existing.id.clone(); 1001] })
                .await
                .map(drop),
        ),
        (
            "ids[1]",
            client
                .batch_get_profiles(pb::BatchGetProfilesRequest { ids: vec![existing.id.clone(), "x".into()] })
                .await
                .map(drop),
        ),
        (
            "page_token",
            client
                .list_profiles(pb::ListProfilesRequest { page_token: "bogus".into(), ..Default::default() })
                .await
                .map(drop),
        ),
        (
            "page_size",
            client.list_profiles(pb::ListProfilesRequest { page_size: -5, ..Default::default() }).await.map(drop),
        ),
        ("criterion", client.search_profiles(pb::SearchProfilesRequest::default()).await.map(drop)),
        (
            "name_prefix",
            client
                .search_profiles(pb::SearchProfilesRequest {
                    criterion: Some(pb::search_profiles_request::Criterion::NamePrefix("%%".into())),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "email",
            client
                .search_profiles(pb::SearchProfilesRequest {
                    criterion: Some(pb::search_profiles_request::Criterion::Email("nope".into())),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "type",
            client
                .lookup_profile(pb::LookupProfileRequest { r#type: 77, value: "x".into(), source: String::new() })
                .await
                .map(drop),
        ),
        (
            "value",
            client
                .lookup_profile(pb::LookupProfileRequest {
                    r#type: pb::IdentifierType::Phone as i32,
                    value: "12".into(),
                    source: String::new(),
                })
                .await
                .map(drop),
        ),
        (
            "etag",
            client
                .delete_profile(pb::DeleteProfileRequest { id: existing.id.clone(), etag: "zzz".into() })
                .await
                .map(drop),
        ),
    ];
    for (field, result) in checks {
        let status = result.expect_err(field);
        assert_eq!(violated_fields(&status), [field], "{field}");
    }
    assert_eq!(row_counts(&app).await, before, "bad requests wrote nothing");

    // A page token is bound to the query it came from.
    client.create_profile(create(person("Page", "Two", ""))).await.expect("second profile");
    let first =
        client.list_profiles(pb::ListProfilesRequest { page_size: 1, ..Default::default() }).await.expect("list");
    let token = first.into_inner().next_page_token;
    assert!(!token.is_empty());
    let request = pb::ListProfilesRequest { page_size: 1, page_token: token, show_deleted: true };
    let status = app.admin().list_profiles(request).await.expect_err("token of another query");
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn all_bad_fields_of_one_request_are_reported_together() {
    let app = TestApp::spawn().await;
    let mut profile = person(" ", "x", "bad@");
    profile.birth_date = "yesterday".into();
    let status = app.agent().create_profile(create(profile)).await.expect_err("invalid");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["profile.birth_date", "profile.emails[0].address", "profile.given_name"]);
}

#[tokio::test]
async fn oversized_requests_are_refused_before_they_are_processed() {
    let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &["--max-request-bytes", "65536"]).await;
    let ids = vec![uuid::Uuid::now_v7().to_string(); 2000];
    let status = app.agent().batch_get_profiles(pb::BatchGetProfilesRequest { ids }).await.expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(row_counts(&app).await, [0, 0, 0]);
}

/// Found by reading the landed code: a call past its deadline answered
/// CANCELLED, as if the caller had given up.
#[tokio::test]
async fn calls_past_their_deadline_answer_deadline_exceeded() {
    let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &["--request-timeout", "1ns"]).await;
    let status = app.agent().create_profile(create(person("Ada", "Lovelace", ""))).await.expect_err("timed out");
    assert_eq!(status.code(), Code::DeadlineExceeded, "the server's default: {status:?}");

    // The caller's own grpc-timeout, shorter than the server's default: a
    // write held up by a lock ends by it, and the answer arrives before the
    // caller's own timer gives up (which tonic reports as CANCELLED).
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = TestApp::spawn().await;
    let db = app.db.connect().await;
    let lock = db.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE profiles IN EXCLUSIVE MODE").await.expect("lock");
    let mut request = tonic::Request::new(create(person("Ada", "Lovelace", "")));
    request.set_timeout(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    let status = app.agent().create_profile(request).await.expect_err("timed out");
    assert_eq!(status.code(), Code::DeadlineExceeded, "the caller's deadline: {status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "not the server's 10 s default");
    lock.rollback().await.expect("unlock");
    let mut request = tonic::Request::new(create(person("Ada", "Lovelace", "")));
    request.set_timeout(std::time::Duration::from_secs(5));
    app.agent().create_profile(request).await.expect("within a generous deadline");
    assert_eq!(row_counts(&app).await[0], 1, "the timed-out write left nothing behind");
}

/// Found by the relay's tests: a valid name that transliterates to more
/// than the search key's 450 characters answered INTERNAL.
#[tokio::test]
async fn a_long_name_in_any_script_is_stored_and_found_by_its_prefix() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let wide = "山".repeat(200);
    let created = client.create_profile(create(person(&wide, &wide, "wide@example.com"))).await.expect("create");
    let created = created.into_inner();
    assert_eq!(created.given_name, wide);
    for prefix in ["山山", wide.as_str()] {
        let request = pb::SearchProfilesRequest {
            criterion: Some(pb::search_profiles_request::Criterion::NamePrefix(prefix.into())),
            page_size: 10,
            page_token: String::new(),
        };
        let found = client.search_profiles(request).await.expect("search").into_inner();
        assert_eq!(found.profiles.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [created.id.as_str()], "{prefix}");
    }
}

/// Found by reading the landed code (access-policy issue, item 6): error
/// messages named the field and also echoed its value — emails, phone
/// numbers, birth dates, a looked-up address, an update-mask path of any
/// length. They name the field only now.
#[tokio::test]
async fn errors_name_the_field_and_never_echo_personal_values() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let mut bad = person("Ada", "Lovelace", "ada.secret@@example");
    bad.phones = vec![pb::PhoneNumber {
        number: "+1 555 secretphone".into(),
        label: String::new(),
        primary: true,
        lineage: None,
    }];
    bad.birth_date = "1815-13-45secret".into();
    bad.addresses = vec![pb::PostalAddress {
        lines: vec!["1 Street".into()],
        country_code: "secretland".into(),
        ..Default::default()
    }];
    let status = client.create_profile(create(bad)).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(!status.message().contains("secret"), "{}", status.message());
    for violation in status.get_error_details().bad_request().expect("bad request").field_violations.iter() {
        assert!(!violation.description.contains("secret"), "{violation:?}");
    }

    let lookup = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "nobody.secret@example.com".into(),
        source: String::new(),
    };
    let status = client.lookup_profile(lookup).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    assert!(!status.message().contains("secret"), "{}", status.message());
    assert!(!format!("{:?}", status.get_error_details()).contains("secret"));

    let mut consents = app.consents(c360_tests::TENANT, &[c360_server::auth::Role::Agent]);
    let check = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject {
            subject: Some(pb::consent_subject::Subject::Email("nobody.secret@example.com".into())),
        }),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
    };
    let status = consents.check_consent(check).await.expect_err("unknown address");
    assert_eq!(status.code(), Code::NotFound);
    assert!(!status.message().contains("secret"), "{}", status.message());

    let created = client.create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let long_path = "x".repeat(5_000);
    let request = crate::update(&created.into_inner().id, &[&long_path], "", pb::Profile::default());
    let status = client.update_profile(request).await.expect_err("unknown path");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 300, "the path is not echoed whole: {} bytes", status.message().len());
}

/// Bytes sent and received as they are, to put messages on the wire that no
/// generated client would send.
#[derive(Debug, Default, Clone)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Found by probing: a message that is not valid protobuf answered INTERNAL
/// with the decoder's text (tonic's default). It is the sender's fault:
/// INVALID_ARGUMENT, and the server goes on serving.
#[tokio::test]
async fn messages_that_do_not_decode_are_invalid_argument() {
    use prost::Message;
    let app = TestApp::spawn().await;
    let token = app.token(c360_tests::TENANT, &[c360_server::auth::Role::Agent]);
    let valid = pb::CreateProfileRequest {
        request_id: String::new(),
        profile: Some(person("Ada", "Lovelace", "ada@example.com")),
        source: "crm".into(),
    };
    let mut bad_utf8 = pb::CreateProfileRequest { source: "MARK".into(), ..valid.clone() }.encode_to_vec();
    let at = bad_utf8.windows(4).position(|w| w == b"MARK").expect("marker");
    bad_utf8[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    let mut truncated = valid.encode_to_vec();
    // Cut inside the last field (`source`, 5 bytes): its length promises more than follows.
    truncated.truncate(truncated.len() - 2);
    let mut nested = Value { kind: Some(Kind::StringValue("deep".into())) };
    for _ in 0..200 {
        let inner = Struct { fields: [("a".to_owned(), nested)].into() };
        nested = Value { kind: Some(Kind::StructValue(inner)) };
    }
    let mut deep = person("Ada", "Lovelace", "ada@example.com");
    deep.attributes = Some(Struct { fields: [("nested".to_owned(), nested)].into() });
    let deep = pb::CreateProfileRequest { request_id: String::new(), profile: Some(deep), source: String::new() }
        .encode_to_vec();

    for (what, body) in [("invalid UTF-8", bad_utf8), ("truncated", truncated), ("nested 200 deep", deep)] {
        let mut grpc = tonic::client::Grpc::new(app.channel());
        grpc.ready().await.expect("ready");
        let mut request = tonic::Request::new(body);
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/c360.v1.ProfileService/CreateProfile");
        let status = grpc.unary(request, path, RawCodec).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    let created = app.agent().create_profile(valid).await.expect("still serving");
    assert_eq!(created.into_inner().given_name, "Ada");
    assert_eq!(count(&app.db.connect().await, "profiles").await, 1, "only the valid request wrote");
}
