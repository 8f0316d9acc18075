//! Files and endpoints (network issue, item 5): authenticated page tokens,
//! an internal listener for readiness and metrics, and two deployments
//! sharing one Redis key prefix. Each was found by reading the landed code.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp, TestDb, http_get};
use tonic::Code;

use crate::{create, person};

fn by_name(prefix: &str, page_token: &str) -> pb::SearchProfilesRequest {
    pb::SearchProfilesRequest {
        criterion: Some(pb::search_profiles_request::Criterion::NamePrefix(prefix.into())),
        page_size: 1,
        page_token: page_token.into(),
    }
}

/// Found by reading the landed code: a page token was the base64 of the
/// query (a searched name in clear) and the last id, so anyone could read
/// one, or write one for any query.
#[tokio::test]
async fn page_tokens_reveal_nothing_and_cannot_be_forged_or_moved() {
    let app = TestApp::spawn().await;
    let mut agent = app.agent();
    for (given, email) in [("Adaline", "a1@example.com"), ("Adanna", "a2@example.com"), ("Adaeze", "a3@example.com")] {
        agent.create_profile(create(person(given, "Okafor", email))).await.expect("create");
    }
    let first = agent.search_profiles(by_name("ada", "")).await.expect("search").into_inner();
    assert_eq!(first.profiles.len(), 1);
    let token = first.next_page_token;
    let decoded = URL_SAFE_NO_PAD.decode(&token).unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded).to_lowercase();
    assert!(!text.contains("ada") && !text.contains("name"), "the token says nothing of the query: {text:?}");

    // Honoured for the same query, by every instance of the deployment.
    let second = agent.search_profiles(by_name("ada", &token)).await.expect("next page").into_inner();
    assert_ne!(second.profiles[0].id, first.profiles[0].id);
    let sibling = app.sibling(&[]).await;
    let token_as_agent = app.token(TENANT, &[Role::Agent]);
    let mut elsewhere = sibling.client_with_token(&token_as_agent);
    let again = elsewhere.search_profiles(by_name("ada", &token)).await.expect("another instance").into_inner();
    assert_eq!(again.profiles[0].id, second.profiles[0].id);

    // Refused with another query, in another tenant, altered or made up.
    let refused = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(crate::violated_fields(&status), ["page_token"]);
    };
    refused(agent.search_profiles(by_name("adal", &token)).await.expect_err("another query"));
    let list = pb::ListProfilesRequest { page_size: 1, page_token: token.clone(), show_deleted: false };
    refused(agent.list_profiles(list).await.expect_err("another call"));
    let mut other_tenant = app.client("globex", Role::Agent);
    refused(other_tenant.search_profiles(by_name("ada", &token)).await.expect_err("another tenant"));
    let mut altered = URL_SAFE_NO_PAD.decode(&token).expect("base64");
    altered[5] ^= 0x40;
    refused(agent.search_profiles(by_name("ada", &URL_SAFE_NO_PAD.encode(altered))).await.expect_err("altered"));
    let made_up = URL_SAFE_NO_PAD.encode(format!("list:false\n{}", uuid::Uuid::nil()));
    let list = pb::ListProfilesRequest { page_size: 1, page_token: made_up, show_deleted: false };
    refused(agent.list_profiles(list).await.expect_err("made up in the old format"));
}

#[tokio::test]
async fn readiness_and_metrics_can_move_to_an_internal_listener() {
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--internal-http-addr", "127.0.0.1:0"]).await;
    let internal = app.internal_http_addr.expect("an internal listener");
    assert!(http_get(app.http_addr, "/healthz").await.starts_with("HTTP/1.1 200"), "liveness stays public");
    for path in ["/readyz", "/metrics"] {
        let public = http_get(app.http_addr, path).await;
        assert!(public.starts_with("HTTP/1.1 404"), "{path} is not public: {public}");
        let private = http_get(internal, path).await;
        assert!(private.starts_with("HTTP/1.1 200"), "{path} on the internal listener: {private}");
    }
    assert!(http_get(internal, "/metrics").await.contains("c360_cache_requests_total"));
}

/// Found by reading the landed code: two deployments (two databases) given
/// the same Redis prefix would serve each other's cached profiles.
#[tokio::test]
async fn two_deployments_sharing_a_redis_prefix_are_refused_at_start() {
    let first = TestApp::spawn_with_redis(&[]).await;
    // Another instance of the same deployment shares the prefix by design.
    let sibling = first.sibling(&[]).await;
    drop(sibling);

    let prefix = first.cache.prefix().to_owned();
    let other_db = TestDb::postgres().await;
    let data = tempfile::tempdir().expect("dir");
    let mut args = c360_tests::base_args(&other_db.url, data.path());
    let key = c360_tests::test_cache_key_file();
    let secret = c360_tests::test_secret_file();
    let redis = c360_tests::redis_url();
    args.extend(
        ["--redis-url", &redis, "--cache-prefix", &prefix, "--cache-key-file", &key, "--jwt-secret-file", &secret]
            .map(str::to_owned),
    );
    use clap::Parser;
    let built = c360_server::App::build(c360_server::Config::try_parse_from(args).expect("config")).await;
    let error = built.err().expect("refused").to_string();
    assert!(error.contains(&prefix) && error.contains("another deployment"), "{error}");
}
