//! Property-based: arbitrary Unicode, lengths and mixes thrown at
//! CreateProfile and UpdateProfile on PostgreSQL. Every answer is OK or
//! INVALID_ARGUMENT (or ALREADY_EXISTS when two generated profiles share an
//! identifier), never INTERNAL, and the server keeps serving.

use c360_proto::v1 as pb;
use c360_tests::TestApp;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use prost_types::{FieldMask, Struct, Value, value::Kind};
use tonic::Code;

/// Text a client may rightly send: letters and marks of any script, spaces
/// and punctuation, up to a field's limit (CJK and Devanagari names expand
/// several times when transliterated into search keys).
fn plausible(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => regex(&format!("[\\p{{L}}\\p{{M}} .'-]{{1,{}}}", max.min(60))),
        1 => regex(&format!("[\u{4e00}-\u{9fff}]{{{max}}}")),
        1 => regex(&format!("[\u{0900}-\u{097f}\u{0300}-\u{036f}]{{1,{max}}}")),
        1 => Just(String::new()).boxed(),
    ]
    .boxed()
}

fn regex(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid pattern").boxed()
}

/// Text no client should send: any Unicode (NUL and controls included) and
/// lengths past every limit.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 150..2000).prop_map(String::from_iter),
        Just("\u{0}".to_owned()),
        Just("  ".to_owned()),
    ]
    .boxed()
}

/// Mostly plausible, now and then hostile: a case usually passes validation
/// and reaches the database, which is where INTERNAL came from.
fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![39 => plausible(max), 1 => hostile()].boxed()
}

fn email() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-z0-9]{1,12}([._+-][a-z0-9]{1,5})?@[a-z0-9]{1,12}\\.(com|de|co\\.jp)",
        1 => "\\p{L}{1,10}@\\p{L}{1,10}\\.com",
        1 => hostile(),
    ]
    .boxed()
}

fn value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        text(200).prop_map(Kind::StringValue),
        any::<f64>().prop_map(Kind::NumberValue),
        any::<bool>().prop_map(Kind::BoolValue),
        Just(Kind::NullValue(0)),
    ];
    if depth == 0 {
        return leaf.prop_map(|kind| Value { kind: Some(kind) }).boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => vec((text(30), value(depth - 1)), 0..4)
            .prop_map(|fields| Kind::StructValue(Struct { fields: fields.into_iter().collect() })),
        1 => vec(value(depth - 1), 0..4)
            .prop_map(|values| Kind::ListValue(prost_types::ListValue { values })),
    ]
    .prop_map(|kind| Value { kind: Some(kind) })
    .boxed()
}

fn profile() -> impl Strategy<Value = pb::Profile> {
    let kind = prop_oneof![9 => Just(1), 1 => any::<i32>()];
    let names = (kind, text(200), text(200), text(300), text(100));
    let phone = prop_oneof![8 => "\\+1 ?\\(?415\\)? ?555-?2[0-9]{3}", 1 => "[0-9 ()+-]{1,25}", 1 => hostile()];
    let contacts = (vec((email(), text(50), any::<bool>()), 0..3), vec((phone, text(50)), 0..3));
    let country = prop_oneof![4 => "[A-Z]{2}", 1 => Just(String::new()), 1 => hostile()];
    let address = (vec(text(200), 0..3), text(200), text(200), text(20), country);
    let birth = prop_oneof![4 => Just(String::new()), 4 => "19[0-9]{2}-0[1-9]-[01][1-9]", 1 => hostile()];
    let attribute_key = prop_oneof![9 => "\\p{L}{1,20}", 1 => hostile()];
    let external = (prop_oneof![9 => "[a-z]{1,12}", 1 => hostile()], text(100));
    let rest = (vec(address, 0..2), birth, vec((attribute_key, value(2)), 0..4), vec(external, 0..3));
    (names, contacts, rest).prop_map(
        |((kind, given, family, company, segment), (emails, phones), (addresses, birth, attributes, external))| {
            pb::Profile {
                kind,
                given_name: given,
                family_name: family,
                company_name: company,
                segment,
                emails: emails
                    .into_iter()
                    .map(|(address, label, primary)| pb::EmailAddress { address, label, primary, lineage: None })
                    .collect(),
                phones: phones
                    .into_iter()
                    .map(|(number, label)| pb::PhoneNumber { number, label, primary: false, lineage: None })
                    .collect(),
                addresses: addresses
                    .into_iter()
                    .map(|(lines, locality, region, postal_code, country_code)| pb::PostalAddress {
                        lines,
                        locality,
                        region,
                        postal_code,
                        country_code,
                        label: String::new(),
                        lineage: None,
                    })
                    .collect(),
                birth_date: birth,
                attributes: Some(Struct { fields: attributes.into_iter().collect() }),
                external_ids: external
                    .into_iter()
                    .map(|(source, id)| pb::ExternalId { source, id, lineage: None })
                    .collect(),
                ..Default::default()
            }
        },
    )
}

/// What a client may be told about a request it got wrong.
fn acceptable(result: &Result<tonic::Response<pb::Profile>, tonic::Status>) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(status) if matches!(status.code(), Code::InvalidArgument | Code::AlreadyExists) => Ok(()),
        Err(status) => Err(TestCaseError::fail(format!("{:?}: {}", status.code(), status.message()))),
    }
}

#[test]
fn no_input_gets_internal() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = runtime.block_on(TestApp::spawn());
    let cases = std::env::var("C360_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
    // A fixed seed: the same inputs every run, so the share asserted below
    // cannot flake (a random seed once let only 13 of 300 updates through).
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let (created_ok, updated_ok) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let outcome = runner.run(&(profile(), profile()), |(first, second)| {
        runtime.block_on(async {
            let mut client = app.agent();
            let created = client
                .create_profile(pb::CreateProfileRequest {
                    profile: Some(first),
                    source: String::new(),
                    request_id: String::new(),
                })
                .await;
            acceptable(&created)?;
            let Ok(created) = created else { return Ok(()) };
            created_ok.set(created_ok.get() + 1);
            let created = created.into_inner();
            let update = pb::UpdateProfileRequest {
                profile: Some(pb::Profile { id: created.id, status: pb::ProfileStatus::Active as i32, ..second }),
                update_mask: Some(FieldMask { paths: vec!["*".into()] }),
                etag: String::new(),
                source: String::new(),
                request_id: String::new(),
            };
            let updated = client.update_profile(update).await;
            acceptable(&updated)?;
            updated_ok.set(updated_ok.get() + u32::from(updated.is_ok()));
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // Not vacuous: a good share of the generated writes were valid and stored.
    let (created, updated) = (created_ok.get(), updated_ok.get());
    println!("{cases} cases: {created} creates and {updated} updates accepted");
    assert!(created >= cases / 10 && updated >= cases / 50, "{created} creates, {updated} updates accepted");
    let alive = runtime.block_on(app.agent().list_profiles(pb::ListProfilesRequest::default()));
    alive.expect("the server keeps serving");
}
