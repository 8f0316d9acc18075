//! Authentication and tenant isolation: no token, a bad one, or another
//! tenant's data never get through.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use c360_proto::v1 as pb;
use c360_server::auth::{Claims, Role};
use c360_tests::{AUDIENCE, ISSUER, TENANT, TestApp};
use jsonwebtoken::{EncodingKey, Header, encode};
use tonic::Code;

use crate::{count, create, person, set_segment};

fn claims(tenant: &str) -> Claims {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    Claims {
        sub: "mallory".into(),
        tenant: tenant.into(),
        roles: vec!["admin".into()],
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        exp: now + 600,
        iat: now,
    }
}

fn sign(claims: &Claims, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let secret = c360_tests::TEST_SECRET;
    let valid = sign(&claims(TENANT), secret);
    let (header, payload, _) = {
        let mut parts = valid.splitn(3, '.');
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), ())
    };
    let _ = header;
    let alg_none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
    let expired = sign(&Claims { exp: 1_000_000, iat: 999_000, ..claims(TENANT) }, secret);
    let wrong_issuer = sign(&Claims { iss: "someone-else".into(), ..claims(TENANT) }, secret);
    let wrong_audience = sign(&Claims { aud: "another-api".into(), ..claims(TENANT) }, secret);
    let bad_tenant = sign(&Claims { tenant: "no spaces".into(), ..claims(TENANT) }, secret);
    let other_secret = sign(&claims(TENANT), "a-different-secret-of-at-least-32-bytes");
    let base = claims(TENANT);
    let too_long = sign(&Claims { exp: base.iat + 3 * 24 * 3600, ..base }, secret);
    let tampered = {
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("globex")).expect("json"));
        let mut parts: Vec<&str> = valid.split('.').collect();
        parts[1] = &forged;
        parts.join(".")
    };

    let db = app.db.connect().await;
    let mut anonymous = app.anonymous();
    let status = anonymous.create_profile(create(person("Eve", "Anon", ""))).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let cases = [
        ("garbage", "not-a-jwt".to_owned()),
        ("alg none", alg_none),
        ("expired", expired),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("invalid tenant", bad_tenant),
        ("other secret", other_secret),
        ("tampered payload", tampered),
        ("lives three days", too_long),
    ];
    for (case, token) in cases {
        let mut client = app.client_with_token(&token);
        let status = client.create_profile(create(person("Eve", "Forger", ""))).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        // Why stays in the log: the reply does not help a forger.
        assert_eq!(status.message(), "invalid or expired token", "{case}");
        let status = client.list_profiles(pb::ListProfilesRequest::default()).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}");
    }
    assert_eq!(count(&db, "profiles").await, 0);

    let mut good = app.client_with_token(&valid);
    good.create_profile(create(person("Ada", "Lovelace", ""))).await.expect("the untampered token works");
}

#[tokio::test]
async fn another_tenants_profile_is_not_found_on_every_rpc() {
    use pb::search_profiles_request::Criterion;
    let app = TestApp::spawn().await;
    let mut mine = person("Ada", "Lovelace", "ada@example.com");
    mine.external_ids = vec![pb::ExternalId { source: "crm".into(), id: "A-1".into(), lineage: None }];
    let created = app.agent().create_profile(create(mine)).await.expect("create").into_inner();
    let mut intruder = app.client("globex", Role::Admin);
    let id = created.id.clone();

    let not_found = |status: tonic::Status| assert_eq!(status.code(), Code::NotFound, "{status:?}");
    not_found(intruder.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect_err("get"));
    not_found(intruder.update_profile(set_segment(&id, "X", "")).await.expect_err("update"));
    not_found(
        intruder
            .delete_profile(pb::DeleteProfileRequest { id: id.clone(), etag: String::new() })
            .await
            .expect_err("delete"),
    );
    for (id_type, value, source) in
        [(pb::IdentifierType::Email, "ada@example.com", ""), (pb::IdentifierType::ExternalId, "A-1", "crm")]
    {
        let lookup = pb::LookupProfileRequest { r#type: id_type as i32, value: value.into(), source: source.into() };
        not_found(intruder.lookup_profile(lookup).await.expect_err("lookup"));
    }
    let batch = intruder
        .batch_get_profiles(pb::BatchGetProfilesRequest { ids: vec![id.clone()] })
        .await
        .expect("batch")
        .into_inner();
    assert!(batch.profiles.is_empty());
    assert_eq!(batch.missing_ids, std::slice::from_ref(&id));
    let listed = intruder
        .list_profiles(pb::ListProfilesRequest { show_deleted: true, ..Default::default() })
        .await
        .expect("list");
    assert!(listed.into_inner().profiles.is_empty());
    for criterion in [Criterion::NamePrefix("ada".into()), Criterion::Email("ada@example.com".into())] {
        let found = intruder
            .search_profiles(pb::SearchProfilesRequest { criterion: Some(criterion), ..Default::default() })
            .await
            .expect("search");
        assert!(found.into_inner().profiles.is_empty());
    }

    // Consent: every RPC given the other tenant's id finds nothing.
    let mut consents = app.consents("globex", &[Role::Admin]);
    let set = pb::SetConsentRequest {
        profile_id: id.clone(),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
        status: pb::ConsentStatus::Granted as i32,
        ..Default::default()
    };
    not_found(consents.set_consent(set).await.expect_err("set consent"));
    not_found(consents.get_consents(pb::GetConsentsRequest { profile_id: id.clone() }).await.expect_err("get"));
    let history = pb::ListConsentHistoryRequest { profile_id: id.clone(), ..Default::default() };
    not_found(consents.list_consent_history(history).await.expect_err("history"));
    let by_id = pb::ConsentSubject { subject: Some(pb::consent_subject::Subject::ProfileId(id.clone())) };
    let by_email = pb::ConsentSubject { subject: Some(pb::consent_subject::Subject::Email("ada@example.com".into())) };
    let purpose = pb::ConsentPurpose::EmailMarketing as i32;
    for subject in [by_id.clone(), by_email.clone()] {
        let check = pb::CheckConsentRequest { subject: Some(subject), purpose };
        not_found(consents.check_consent(check).await.expect_err("check"));
    }
    let batch = pb::BatchCheckConsentRequest { purpose, subjects: vec![by_id, by_email] };
    let batch = consents.batch_check_consent(batch).await.expect("batch check").into_inner();
    assert!(batch.results.iter().all(|r| !r.allowed && r.profile_id.is_empty()), "{batch:?}");

    // The change stream, the audit trail and the settings are the intruder's own.
    let mine = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { personal_attribute_keys: vec!["ssn".into()], ..Default::default() }),
        ..Default::default()
    };
    app.tenants(TENANT, &[Role::Admin]).update_tenant_settings(mine).await.expect("owner's settings");
    let mut events = app.events("globex", &[Role::Admin]);
    let request = pb::WatchChangesRequest { after_position: "0".into(), profile_id: id.clone() };
    let mut stream = events.watch_changes(request).await.expect("subscribe").into_inner();
    let next = tokio::time::timeout(std::time::Duration::from_millis(500), stream.message()).await;
    assert!(next.is_err(), "no event of another tenant: {next:?}");
    let audit = app.privacy("globex", &[Role::Admin]).list_audit_events(pb::ListAuditEventsRequest::default()).await;
    assert!(audit.expect("audit").into_inner().events.is_empty());
    let settings =
        app.tenants("globex", &[Role::Admin]).get_tenant_settings(pb::GetTenantSettingsRequest {}).await.expect("get");
    assert_eq!(settings.into_inner().etag, "0");

    // And the owner's profile is untouched.
    let fetched = app.agent().get_profile(pb::GetProfileRequest { id }).await.expect("owner reads").into_inner();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn read_only_roles_cannot_write() {
    let app = TestApp::spawn().await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", ""))).await.expect("create").into_inner();
    for role in [Role::Analyst, Role::Marketer, Role::Steward] {
        let mut client = app.client(TENANT, role);
        let status = client.create_profile(create(person("Eve", "Reader", ""))).await.expect_err("create");
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
        let status = client
            .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
            .await
            .expect_err("delete");
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
        client.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("reads are allowed");
    }
    let mut no_roles = app.client_with_token(&app.token(TENANT, &[]));
    let status = no_roles.get_profile(pb::GetProfileRequest { id: created.id }).await.expect_err("no role");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn public_keys_verify_rs256_and_es256_and_refuse_algorithm_confusion() {
    use jsonwebtoken::Algorithm;
    let cases = [
        ("rsa-public.pem", "rsa-private.pem", Algorithm::RS256, "ec-private.pem", Algorithm::ES256),
        ("ec-public.pem", "ec-private.pem", Algorithm::ES256, "rsa-private.pem", Algorithm::RS256),
    ];
    for (public, private, algorithm, other_private, other_algorithm) in cases {
        let public_path = c360_tests::fixture(public);
        let flags = ["--jwt-public-key-file", public_path.to_str().expect("utf-8 path")];
        let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &flags).await;
        let key = |file: &str, algorithm: Algorithm| {
            let pem = std::fs::read(c360_tests::fixture(file)).expect("fixture");
            match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
                _ => EncodingKey::from_ec_pem(&pem),
            }
            .expect("private key")
        };
        let signed = encode(&Header::new(algorithm), &claims(TENANT), &key(private, algorithm)).expect("sign");
        let mut client = app.client_with_token(&signed);
        client
            .create_profile(create(person("Ada", "Lovelace", "")))
            .await
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e:?}"));

        // HS256 "signed" with the public key's text as the secret: the classic
        // algorithm-confusion forgery.
        let public_pem = std::fs::read(&public_path).expect("public key");
        let confused = encode(&Header::new(Algorithm::HS256), &claims(TENANT), &EncodingKey::from_secret(&public_pem))
            .expect("sign");
        let other =
            encode(&Header::new(other_algorithm), &claims(TENANT), &key(other_private, other_algorithm)).expect("sign");
        for (case, token) in [("HS256 with the public key", confused), ("another key and algorithm", other)] {
            let status =
                app.client_with_token(&token).list_profiles(pb::ListProfilesRequest::default()).await.expect_err(case);
            assert_eq!(status.code(), Code::Unauthenticated, "{algorithm:?}, {case}");
        }
    }
}

/// Every RPC of the service descriptors, with whether it streams.
fn every_rpc() -> Vec<(String, bool)> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(c360_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "c360.v1") {
        for service in &file.service {
            for method in &service.method {
                rpcs.push((format!("/c360.v1.{}/{}", service.name(), method.name()), method.server_streaming()));
            }
        }
    }
    rpcs
}

/// Calls `rpc` with an empty request and `token`; the status code it answers.
async fn call(channel: tonic::transport::Channel, rpc: &str, streaming: bool, token: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let path: tonic::codegen::http::uri::PathAndQuery = rpc.parse().expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = if streaming {
        grpc.server_streaming(request, path, codec).await.map(|_| ())
    } else {
        grpc.unary(request, path, codec).await.map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn every_rpc_answers_every_role_as_the_policy_table_says() {
    use c360_server::auth::policy;
    let app = TestApp::spawn().await;
    let rpcs = every_rpc();
    assert!(rpcs.len() >= 14, "{rpcs:?}");
    for (rpc, _) in &rpcs {
        assert!(policy::roles_for(rpc).is_some(), "{rpc} has no row in the policy table (auth/policy.rs)");
    }
    for (name, _) in policy::RPCS {
        assert!(rpcs.iter().any(|(rpc, _)| rpc == name), "{name} is in the policy table but is no RPC");
    }
    for (rpc, streaming) in &rpcs {
        let allowed = policy::roles_for(rpc).unwrap_or_default();
        for role in Role::ALL {
            let code = call(app.channel(), rpc, *streaming, &app.token(TENANT, &[role])).await;
            if allowed.contains(&role) {
                assert_ne!(code, Code::PermissionDenied, "{rpc} as {role:?}");
                assert_ne!(code, Code::Unauthenticated, "{rpc} as {role:?}");
            } else {
                assert_eq!(code, Code::PermissionDenied, "{rpc} as {role:?}");
            }
        }
        // No role at all, or only roles c360 does not know: denied everywhere.
        let code = call(app.channel(), rpc, *streaming, &app.token(TENANT, &[])).await;
        assert_eq!(code, Code::PermissionDenied, "{rpc} with no role");
    }
}

/// No oracles (access-policy issue, item 3): a caller may not find profiles
/// by a field it cannot see. Analysts see names, emails and phones masked;
/// marketers see names, and contact details only under a granted consent.
#[tokio::test]
async fn roles_cannot_search_or_look_up_by_fields_they_cannot_see() {
    use pb::search_profiles_request::Criterion;
    let app = TestApp::spawn().await;
    app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("create");
    let search = |criterion: Criterion| pb::SearchProfilesRequest { criterion: Some(criterion), ..Default::default() };
    let lookup = |kind: pb::IdentifierType, value: &str| pb::LookupProfileRequest {
        r#type: kind as i32,
        value: value.into(),
        source: String::new(),
    };
    for role in Role::ALL {
        let mut client = app.client(TENANT, role);
        let sees_names = role != Role::Analyst;
        let sees_contacts = !matches!(role, Role::Analyst | Role::Marketer);
        let by_name = client.search_profiles(search(Criterion::NamePrefix("ada".into()))).await;
        assert_eq!(by_name.is_ok(), sees_names, "{role:?} by name: {by_name:?}");
        for criterion in [Criterion::Email("ada@example.com".into()), Criterion::Phone("+14155552671".into())] {
            let found = client.search_profiles(search(criterion.clone())).await;
            match found {
                Ok(_) => assert!(sees_contacts, "{role:?} searched by {criterion:?}"),
                Err(status) => {
                    assert!(!sees_contacts, "{role:?}: {status:?}");
                    assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
                }
            }
        }
        let found = client.lookup_profile(lookup(pb::IdentifierType::Email, "ada@example.com")).await;
        match found {
            Ok(_) => assert!(sees_contacts, "{role:?} looked up by email"),
            Err(status) => {
                assert!(!sees_contacts, "{role:?}: {status:?}");
                assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
            }
        }
        let status = client.lookup_profile(lookup(pb::IdentifierType::Phone, "+14155552671")).await.expect_err("none");
        let expected = if sees_contacts { Code::NotFound } else { Code::PermissionDenied };
        assert_eq!(status.code(), expected, "{role:?} by phone");
        // External ids are masked for analysts and marketers too.
        let by_external =
            Criterion::ExternalId(pb::ExternalId { source: "crm".into(), id: "A-1".into(), lineage: None });
        let found = client.search_profiles(search(by_external)).await;
        let external = pb::LookupProfileRequest {
            r#type: pb::IdentifierType::ExternalId as i32,
            value: "A-1".into(),
            source: "crm".into(),
        };
        let looked_up = client.lookup_profile(external).await.expect_err("nobody holds it");
        if sees_contacts {
            found.unwrap_or_else(|e| panic!("{role:?} by external id: {e:?}"));
            assert_eq!(looked_up.code(), Code::NotFound, "{role:?}");
        } else {
            assert_eq!(found.expect_err("refused").code(), Code::PermissionDenied, "{role:?}");
            assert_eq!(looked_up.code(), Code::PermissionDenied, "{role:?}");
        }
    }
}

/// A JWKS document of `keys` (each a JSON object with its `kid`).
fn jwks(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

/// An HS256 key in JWK form.
fn oct_jwk(kid: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({ "kty": "oct", "kid": kid, "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret) })
}

/// An EC P-256 key pair: its public JWK and a key that signs ES256 tokens.
fn ec_key(kid: &str) -> (serde_json::Value, EncodingKey) {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = pair.public_key_raw();
    assert_eq!((raw.len(), raw[0]), (65, 4), "an uncompressed P-256 point");
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
    });
    (jwk, EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC key"))
}

fn signed(algorithm: jsonwebtoken::Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    let mut claims = claims(TENANT);
    claims.roles = vec!["agent".into()];
    encode(&header, &claims, key).expect("sign")
}

/// Whether a token gets through authentication (NOT_FOUND for an unknown id
/// means it did).
async fn accepted(app: &TestApp, token: &str) -> bool {
    let request = pb::GetProfileRequest { id: uuid::Uuid::now_v7().to_string() };
    match app.client_with_token(token).get_profile(request).await {
        Err(status) if status.code() == Code::NotFound => true,
        Err(status) if status.code() == Code::Unauthenticated => false,
        other => panic!("unexpected answer: {other:?}"),
    }
}

/// Found by reading the landed code: one key, fixed at start; rotating it
/// meant a restart, and tokens verified once were remembered regardless.
#[tokio::test]
async fn keys_come_from_a_jwks_file_by_kid_and_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("jwks.json");
    let secret = "jwks-shared-secret-of-at-least-32-bytes";
    let (ec, ec_signer) = ec_key("ec-1");
    std::fs::write(&file, jwks(&[oct_jwk("hs-1", secret), ec.clone()])).expect("write");
    // A set holding a shared secret must be private to its owner.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let flags = ["--jwks-file", file.to_str().expect("utf-8")];
    let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &flags).await;

    let hs_signer = EncodingKey::from_secret(secret.as_bytes());
    let hs = signed(jsonwebtoken::Algorithm::HS256, Some("hs-1"), &hs_signer);
    let es = signed(jsonwebtoken::Algorithm::ES256, Some("ec-1"), &ec_signer);
    assert!(accepted(&app, &hs).await, "HS256 key chosen by kid");
    assert!(accepted(&app, &es).await, "ES256 key chosen by kid");
    assert!(!accepted(&app, &signed(jsonwebtoken::Algorithm::HS256, Some("nope"), &hs_signer)).await, "unknown kid");
    assert!(!accepted(&app, &signed(jsonwebtoken::Algorithm::HS256, None, &hs_signer)).await, "no kid");
    // A key is bound to its algorithm: the HS256 secret cannot vouch for an
    // ES256 kid.
    assert!(!accepted(&app, &signed(jsonwebtoken::Algorithm::HS256, Some("ec-1"), &hs_signer)).await);

    // Rotate: hs-1 withdrawn, ec-2 added. The remembered hs-1 token stops too.
    let (ec2, ec2_signer) = ec_key("ec-2");
    std::fs::write(&file, jwks(&[ec.clone(), ec2])).expect("rewrite");
    let es2 = signed(jsonwebtoken::Algorithm::ES256, Some("ec-2"), &ec2_signer);
    eventually!(accepted(&app, &es2).await);
    assert!(!accepted(&app, &hs).await, "a withdrawn key's remembered token is forgotten");
    assert!(accepted(&app, &es).await, "a key still in the set keeps working");

    // A broken file keeps the keys in use.
    std::fs::write(&file, "{ not json").expect("break");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(accepted(&app, &es2).await, "the previous keys stay in use");
}

#[tokio::test]
async fn outside_the_embedded_mode_a_key_source_must_be_configured() {
    use clap::Parser;
    let db = c360_tests::TestDb::postgres().await;
    let data = tempfile::tempdir().expect("dir");
    let args = c360_tests::base_args(&db.url, data.path());
    let built = c360_server::App::build(c360_server::Config::try_parse_from(args).expect("config")).await;
    let error = built.err().expect("refused").to_string();
    assert!(error.contains("C360_JWT_SECRET") && error.contains("--jwks-file"), "{error}");
}
