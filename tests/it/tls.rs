//! TLS everywhere (network issue, item 1), against a throwaway CA made in
//! the test: gRPC and HTTP listeners, client certificates, a TLS-only
//! redis-server and a TLS-only PostgreSQL, and the refusal of plaintext over
//! a network outside the embedded mode. Found by reading the landed code:
//! c360 could speak plaintext only.

use c360_proto::v1 as pb;
use c360_server::{App, Config, auth::Role};
use c360_tests::{
    Bearer, TENANT, TestApp, TestDb, base_args,
    tls::{Issued, TestCa, TlsPostgres, TlsRedis, https_get},
};
use clap::Parser;
use tonic::{Code, transport::Channel};

use crate::{create, person};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `c360 serve` flags serving `server`'s certificate, with client
/// certificates from `client_ca` required when given.
fn tls_flags<'a>(server: &'a Issued, client_ca: Option<&'a TestCa>) -> Vec<&'a str> {
    let mut flags = vec!["--tls-cert-file", path(&server.cert), "--tls-key-file", path(&server.key)];
    if let Some(ca) = client_ca {
        flags.extend(["--tls-client-ca-file", path(&ca.cert)]);
    }
    flags
}

fn get(id: &str) -> pb::GetProfileRequest {
    pb::GetProfileRequest { id: id.into() }
}

#[tokio::test]
async fn grpc_and_http_serve_tls_and_refuse_plaintext() {
    let ca = TestCa::new("c360 test CA");
    let server = ca.issue("server", &["localhost", "127.0.0.1"]);
    let app = TestApp::spawn_tls(TestDb::postgres().await, &tls_flags(&server, None), ca.client(None)).await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await;
    let created = created.expect("a call over TLS").into_inner();
    assert_eq!(app.agent().get_profile(get(&created.id)).await.expect("read").into_inner().given_name, "Ada");

    // Plaintext gRPC gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", app.grpc_addr)).expect("uri").connect().await;
    if let Ok(plain) = plain {
        let token = app.token(TENANT, &[Role::Agent]);
        let mut client = pb::profile_service_client::ProfileServiceClient::with_interceptor(plain, Bearer::new(&token));
        assert!(client.get_profile(get(&created.id)).await.is_err(), "a plaintext call must fail");
    }
    // A client that does not trust the CA refuses the server.
    let stranger = TestCa::new("another CA");
    let untrusted = Channel::from_shared(format!("https://{}", app.grpc_addr))
        .expect("uri")
        .tls_config(stranger.client(None))
        .expect("tls")
        .connect()
        .await;
    assert!(untrusted.is_err(), "a certificate from an unknown CA must not verify");

    // The HTTP listener serves the same certificate.
    let health = https_get(app.http_addr, "/healthz", &ca).await.expect("HTTPS");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let plain = c360_tests::http_get_result(app.http_addr, "/healthz").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "plaintext HTTP must not be answered: {plain}");
}

#[tokio::test]
async fn client_certificates_are_required_as_well_as_tokens() {
    let ca = TestCa::new("c360 test CA");
    let clients = TestCa::new("c360 service callers");
    let server = ca.issue("server", &["localhost", "127.0.0.1"]);
    let caller = clients.issue("billing", &["billing.internal"]);
    let flags = tls_flags(&server, Some(&clients));
    let app = TestApp::spawn_tls(TestDb::postgres().await, &flags, ca.client(Some(&caller))).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let answer = app.agent().get_profile(get(&missing)).await;
    assert_eq!(answer.expect_err("unknown id").code(), Code::NotFound, "certificate and token: served");
    let status = app.anonymous().get_profile(get(&missing)).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "a certificate does not replace the token");

    let app = &app;
    let connect = |tls| async move {
        let channel = Channel::from_shared(format!("https://{}", app.grpc_addr)).expect("uri").tls_config(tls);
        let channel = channel.expect("tls").connect().await?;
        let token = app.token(TENANT, &[Role::Agent]);
        let mut client =
            pb::profile_service_client::ProfileServiceClient::with_interceptor(channel, Bearer::new(&token));
        client.get_profile(get(&uuid::Uuid::now_v7().to_string())).await.map(drop).map_err(anyhow::Error::from)
    };
    assert!(connect(ca.client(None)).await.is_err(), "no client certificate: refused");
    let impostor = TestCa::new("impostor");
    let forged = impostor.issue("billing", &["billing.internal"]);
    assert!(connect(ca.client(Some(&forged))).await.is_err(), "a certificate from another CA: refused");
}

#[tokio::test]
async fn client_certificates_can_be_optional() {
    let ca = TestCa::new("c360 test CA");
    let clients = TestCa::new("c360 service callers");
    let server = ca.issue("server", &["localhost", "127.0.0.1"]);
    let mut flags = tls_flags(&server, Some(&clients));
    flags.push("--tls-client-auth-optional");
    let app = TestApp::spawn_tls(TestDb::postgres().await, &flags, ca.client(None)).await;
    let answer = app.agent().get_profile(get(&uuid::Uuid::now_v7().to_string())).await;
    assert_eq!(answer.expect_err("unknown id").code(), Code::NotFound, "no certificate, token only: served");
}

#[tokio::test]
async fn the_cache_speaks_tls_to_redis() {
    let ca = TestCa::new("c360 test CA");
    let redis = TlsRedis::start(&ca, None).await;
    assert_the_cache_works_over_tls(&redis, &ca, None).await;
}

/// A Redis that requires client certificates: c360 presents the one it is
/// given, and the cache works through it.
#[tokio::test]
async fn the_cache_presents_a_client_certificate_to_redis() {
    let (ca, clients) = (TestCa::new("c360 test CA"), TestCa::new("c360 client CA"));
    let redis = TlsRedis::start(&ca, Some(&clients)).await;
    assert_the_cache_works_over_tls(&redis, &ca, Some(&clients.issue("c360-client", &["c360"]))).await;
}

/// Starts c360 with `redis` as its cache (trusting `ca`, presenting
/// `client`): a write and two reads go through, the invalidation channel is
/// subscribed, and no Redis call failed.
async fn assert_the_cache_works_over_tls(redis: &TlsRedis, ca: &TestCa, client: Option<&Issued>) {
    let prefix = format!("c360tls-{}", uuid::Uuid::now_v7().simple());
    let (url, key) = (redis.url(), c360_tests::test_cache_key_file());
    let mut flags = vec!["--redis-url", &url, "--redis-tls-ca-file", path(&ca.cert), "--cache-prefix", &prefix];
    flags.extend(["--cache-key-file", &key]);
    if let Some(client) = client {
        flags.extend(["--redis-tls-cert-file", path(&client.cert), "--redis-tls-key-file", path(&client.key)]);
    }
    let app = TestApp::spawn_with(TestDb::postgres().await, &flags).await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await;
    let created = created.expect("create").into_inner();
    for _ in 0..2 {
        app.agent().get_profile(get(&created.id)).await.expect("read");
    }
    eventually!(app.metric("c360_cache_invalidation_channel_up").await >= 1.0);
    assert_eq!(app.metric("c360_cache_redis_errors_total").await, 0.0, "no failed Redis call");
}

#[tokio::test]
async fn the_database_speaks_tls_to_postgresql() {
    let ca = TestCa::new("c360 test CA");
    let postgres = TlsPostgres::start(&ca);
    let verified = postgres.url(&format!("sslmode=verify-full&sslrootcert={}", path(&ca.cert)));
    let app = TestApp::spawn_with(TestDb::external(&verified), &[]).await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await;
    let created = created.expect("a write over TLS").into_inner();
    assert_eq!(app.agent().get_profile(get(&created.id)).await.expect("read").into_inner().given_name, "Ada");
    app.stop().await.expect("stop");

    // The server refuses plaintext; and a CA c360 does not trust fails the start.
    let data = tempfile::tempdir().expect("dir");
    let plain = postgres.url("sslmode=disable");
    let built = App::build(Config::try_parse_from(base_args(&plain, data.path())).expect("config")).await;
    assert!(built.is_err(), "the server accepts TLS only");
    let stranger = TestCa::new("another CA");
    let wrong = postgres.url(&format!("sslmode=verify-full&sslrootcert={}", path(&stranger.cert)));
    let built = App::build(Config::try_parse_from(base_args(&wrong, data.path())).expect("config")).await;
    assert!(built.is_err(), "a certificate from an unknown CA must not verify");
}

async fn build_error(args: Vec<String>) -> String {
    match App::build(Config::try_parse_from(args).expect("config")).await {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn plaintext_over_a_network_is_refused_outside_the_embedded_mode() {
    let db = TestDb::postgres().await;
    let data = tempfile::tempdir().expect("dir");
    let with = |extra: &[&str]| {
        let mut args = base_args(&db.url, data.path());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--jwt-secret-file".to_owned(), c360_tests::test_secret_file()]);
        args
    };
    let error = build_error(with(&["--grpc-addr", "0.0.0.0:0"])).await;
    assert!(error.contains("gRPC listener") && error.contains("--allow-cleartext-personal-data"), "{error}");
    // Remote stores are refused before any connection is tried.
    let remote_db = base_args("postgres://c360@db.example.invalid/c360", data.path());
    let error = build_error(remote_db).await;
    assert!(error.contains("PostgreSQL") && error.contains("sslmode"), "{error}");
    let key = c360_tests::test_cache_key_file();
    let error =
        build_error(with(&["--redis-url", "redis://cache.example.invalid:6379", "--cache-key-file", &key])).await;
    assert!(error.contains("Redis") && error.contains("rediss://"), "{error}");
    let error = build_error(with(&["--kafka-brokers", "kafka.example.invalid:9092"])).await;
    assert!(error.contains("Kafka"), "{error}");

    // Accepting the risk, by its name, starts it.
    let error = build_error(with(&["--grpc-addr", "0.0.0.0:0", "--allow-cleartext-personal-data"])).await;
    assert_eq!(error, "", "allowed explicitly");
    // The embedded mode is never refused.
    let embedded = tempfile::tempdir().expect("dir");
    let args: Vec<String> = ["c360-serve", "--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0", "--data-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([path(embedded.path()).to_owned()])
        .collect();
    assert_eq!(build_error(args).await, "", "the embedded mode listens where it is told");
    // Found in review: SQLite counted as embedded even beside a remote Redis
    // or broker, whose connections then went out in the clear unrefused.
    let sqlite = |extra: &[&str]| -> Vec<String> {
        ["c360-serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([path(embedded.path()).to_owned()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let error =
        build_error(sqlite(&["--redis-url", "redis://cache.example.invalid:6379", "--cache-key-file", &key])).await;
    assert!(error.contains("Redis") && error.contains("rediss://"), "SQLite beside a remote Redis: {error}");
    let error = build_error(sqlite(&["--kafka-brokers", "kafka.example.invalid:9092"])).await;
    assert!(error.contains("Kafka"), "SQLite beside a remote broker: {error}");
}
