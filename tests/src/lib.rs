//! Test harness for c360's integration tests.
//!
//! Each test gets its own PostgreSQL database, copied from a template that is
//! migrated once per migration set (several test processes coordinate through
//! an advisory lock), and dropped when the test ends; or its own SQLite file
//! for the embedded path. [`TestApp::spawn`] builds the real app on free ports
//! and hands out clients per role that go through the public gRPC API only.

pub mod tls;

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use c360_migration::{Migrator, MigratorTrait};
use c360_proto::v1::{
    consent_service_client::ConsentServiceClient, event_service_client::EventServiceClient,
    privacy_service_client::PrivacyServiceClient, profile_service_client::ProfileServiceClient,
    tenant_service_client::TenantServiceClient,
};
use c360_server::{
    App, Config,
    auth::{JwtKeys, KeySource, Role},
    domain::TenantId,
};
use clap::Parser;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// The HS256 secret every test app verifies with.
pub const TEST_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
/// The cache key (for keyed hashes of identifiers) of every test app with Redis.
pub const TEST_CACHE_KEY: &str = "test-cache-key-that-is-at-least-32-bytes";
/// Issuer and audience of test tokens (the defaults).
pub const ISSUER: &str = "c360";
/// Audience of test tokens.
pub const AUDIENCE: &str = "c360";
/// The tenant most tests run as.
pub const TENANT: &str = "acme";

/// A private file (mode 0600) holding `contents`, kept for the whole run:
/// secrets reach c360 by file or environment, never by flag.
pub fn secret_file(contents: &str) -> String {
    use std::io::Write;
    let mut file = tempfile::Builder::new().prefix("c360-secret-").tempfile().expect("temp file");
    file.write_all(contents.as_bytes()).expect("write secret");
    let (_, path) = file.keep().expect("keep secret file");
    path.display().to_string()
}

/// The file holding [`TEST_SECRET`].
pub fn test_secret_file() -> String {
    static FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FILE.get_or_init(|| secret_file(TEST_SECRET)).clone()
}

/// The file holding [`TEST_CACHE_KEY`].
pub fn test_cache_key_file() -> String {
    static FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FILE.get_or_init(|| secret_file(TEST_CACHE_KEY)).clone()
}

/// The shared Redis the cache tests use (each with its own key prefix);
/// `C360_TEST_REDIS_URL` overrides.
pub fn redis_url() -> String {
    std::env::var("C360_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// PostgreSQL server URL (any database); `C360_TEST_POSTGRES_URL` overrides.
pub fn postgres_url() -> String {
    std::env::var("C360_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TestDb {
    /// URL the app connects to.
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, migrated PostgreSQL database, dropped with this value.
    pub async fn postgres() -> Self {
        let template = ensure_template().await;
        let name = format!("c360_test_{}", uuid::Uuid::now_v7().simple());
        let admin = connect_admin().await;
        // CREATE DATABASE … TEMPLATE fails while another session is copying
        // the same template; that passes quickly, so retry.
        for attempt in 0.. {
            let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
            match admin.execute_unprepared(&sql).await {
                Ok(_) => break,
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        let _ = admin.close().await;
        Self { url: database_url(&name), postgres_name: Some(name), _dir: None }
    }

    /// A fresh SQLite file in a temporary directory (the embedded default).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c360.db").display());
        Self { url, postgres_name: None, _dir: Some(dir) }
    }

    /// A database this test reaches at `url` and does not own (a private
    /// server the test started itself).
    pub fn external(url: &str) -> Self {
        Self { url: url.to_owned(), postgres_name: None, _dir: None }
    }

    /// The same database, owned by the caller from now on (to look at it
    /// after the app that held it stopped).
    pub fn take(&mut self) -> TestDb {
        TestDb { url: self.url.clone(), postgres_name: self.postgres_name.take(), _dir: self._dir.take() }
    }

    /// A connection for asserting on stored rows.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async context: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let admin = connect_admin().await;
                let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                let _ = admin.close().await;
            });
        })
        .join();
    }
}

fn database_url(name: &str) -> String {
    let base = postgres_url();
    let root = base.rsplit_once('/').map_or(base.as_str(), |(root, _)| root);
    format!("{root}/{name}")
}

async fn connect_admin() -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(postgres_url());
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await.expect("PostgreSQL must run (see README.md)")
}

/// Creates the migrated template for the current migration set once.
async fn ensure_template() -> String {
    let mut hasher = DefaultHasher::new();
    for migration in Migrator::migrations() {
        migration.name().hash(&mut hasher);
    }
    // And their text: a migration changed before it landed must not be
    // served from a template built from its earlier version.
    let sources = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migration/src");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&sources).map(|dir| dir.flatten().map(|entry| entry.path()).collect()).unwrap_or_default();
    files.sort();
    for file in files {
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    let template = format!("c360_tpl_{:016x}", hasher.finish());
    let admin = connect_admin().await;
    admin.execute_unprepared("SELECT pg_advisory_lock(360360)").await.expect("advisory lock");
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 AS one FROM pg_database WHERE datname = '{template}'"),
        ))
        .await
        .expect("query pg_database")
        .is_some();
    if !exists {
        // Migrate under a temporary name and rename, so a half-built template
        // is never copied.
        let building = format!("{template}_building");
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{building}\"")).await.expect("drop");
        admin.execute_unprepared(&format!("CREATE DATABASE \"{building}\"")).await.expect("create template");
        let db = Database::connect(database_url(&building)).await.expect("connect template");
        Migrator::up(&db, None).await.expect("migrate template");
        db.close().await.expect("close template");
        admin
            .execute_unprepared(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""))
            .await
            .expect("rename template");
    }
    admin.execute_unprepared("SELECT pg_advisory_unlock(360360)").await.expect("unlock");
    let _ = admin.close().await;
    template
}

/// Adds `authorization: Bearer …` to every call (or nothing, for anonymous).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// Sends `token`.
    pub fn new(token: &str) -> Self {
        Self(Some(format!("Bearer {token}").parse().expect("ascii token")))
    }

    /// Sends no credentials.
    pub fn none() -> Self {
        Self(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A ProfileService client with fixed credentials.
pub type ProfileClient = ProfileServiceClient<InterceptedService<Channel, Bearer>>;
/// A ConsentService client with fixed credentials.
pub type ConsentClient = ConsentServiceClient<InterceptedService<Channel, Bearer>>;
/// An EventService client with fixed credentials.
pub type EventClient = EventServiceClient<InterceptedService<Channel, Bearer>>;
/// A PrivacyService client with fixed credentials.
pub type PrivacyClient = PrivacyServiceClient<InterceptedService<Channel, Bearer>>;
/// A TenantService client with fixed credentials.
pub type TenantClient = TenantServiceClient<InterceptedService<Channel, Bearer>>;

/// An IdentityService client with a bearer token.
pub type IdentityClient =
    c360_proto::v1::identity_service_client::IdentityServiceClient<InterceptedService<Channel, Bearer>>;

/// A running c360 on free ports, with its own database.
pub struct TestApp {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound internal HTTP address, when started with one.
    pub internal_http_addr: Option<SocketAddr>,
    /// Its database.
    pub db: TestDb,
    keys: std::sync::Arc<JwtKeys>,
    /// The app's cache (to watch its state).
    pub cache: c360_server::cache::ProfileCache,
    channel: Channel,
    /// The flags it was started with (a sibling instance reuses them).
    args: Vec<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// `c360 serve` flags every test app starts with: free ports, `db_url`, a
/// data directory of its own.
pub fn base_args(db_url: &str, data_dir: &std::path::Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "c360-serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--database-max-connections",
        "8",
        "--database-url",
        db_url,
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(data_dir.display().to_string());
    args
}

impl TestApp {
    /// The app on a fresh PostgreSQL database.
    pub async fn spawn() -> Self {
        Self::spawn_on(TestDb::postgres().await).await
    }

    /// The app on the given database.
    pub async fn spawn_on(db: TestDb) -> Self {
        Self::spawn_with(db, &[]).await
    }

    /// The app on a fresh PostgreSQL database with the shared Redis as L2,
    /// under a key prefix of its own, plus extra flags.
    pub async fn spawn_with_redis(flags: &[&str]) -> Self {
        Self::spawn_with_cache(&redis_url(), flags).await
    }

    /// The app on a fresh PostgreSQL database with the Redis at `url`.
    pub async fn spawn_with_cache(url: &str, flags: &[&str]) -> Self {
        let prefix = format!("c360test-{}", uuid::Uuid::now_v7().simple());
        let key_file = test_cache_key_file();
        let mut all = vec!["--redis-url", url, "--cache-prefix", &prefix, "--cache-key-file", &key_file];
        all.extend_from_slice(flags);
        Self::spawn_with(TestDb::postgres().await, &all).await
    }

    /// A second instance on the same database and Redis prefix (as behind a
    /// load balancer), with `flags` added; it does not own the database.
    pub async fn sibling(&self, flags: &[&str]) -> Sibling {
        let mut args = self.args.clone();
        args.extend(flags.iter().map(|s| s.to_string()));
        Sibling { app: Self::start(args).await }
    }

    /// The app on `db`, with extra `c360 serve` flags.
    pub async fn spawn_with(db: TestDb, flags: &[&str]) -> Self {
        Self::spawn_with_client(db, flags, None).await
    }

    /// The app on `db` serving TLS with `flags` (which name its certificate);
    /// the test's clients connect as `client` says.
    pub async fn spawn_tls(db: TestDb, flags: &[&str], client: tonic::transport::ClientTlsConfig) -> Self {
        Self::spawn_with_client(db, flags, Some(client)).await
    }

    async fn start(args: Vec<String>) -> Self {
        Self::start_with_client(args, None).await
    }

    async fn spawn_with_client(db: TestDb, flags: &[&str], client: Option<tonic::transport::ClientTlsConfig>) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir").keep();
        let mut args = base_args(&db.url, &data_dir);
        // A test that brings its own key gets no secret (the two conflict).
        if !flags.contains(&"--jwt-public-key-file") && !flags.contains(&"--jwks-file") {
            args.extend(["--jwt-secret-file".to_owned(), test_secret_file()]);
        }
        args.extend(flags.iter().map(|s| s.to_string()));
        let mut app = Self::start_with_client(args, client).await;
        app.db = db;
        app
    }

    async fn start_with_client(args: Vec<String>, client: Option<tonic::transport::ClientTlsConfig>) -> Self {
        let config = Config::try_parse_from(&args).expect("test config");
        let app = App::build(config).await.expect("app builds");
        let (grpc_addr, http_addr, keys, cache) = (app.grpc_addr(), app.http_addr(), app.keys(), app.cache());
        let internal_http_addr = app.internal_http_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let channel = match client {
            Some(tls) => {
                Channel::from_shared(format!("https://{grpc_addr}")).expect("uri").tls_config(tls).expect("client TLS")
            }
            None => Channel::from_shared(format!("http://{grpc_addr}")).expect("uri"),
        };
        let channel = channel.connect().await.expect("connect to app");
        let db = TestDb { url: String::new(), postgres_name: None, _dir: None };
        Self {
            grpc_addr,
            http_addr,
            internal_http_addr,
            db,
            keys,
            cache,
            channel,
            args,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The value of a counter or gauge on `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.http_addr, "/metrics").await;
        body.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// A token for `tenant` with `roles`, signed with the test secret.
    pub fn token(&self, tenant: &str, roles: &[Role]) -> String {
        let tenant = TenantId::parse(tenant).expect("tenant");
        self.keys.mint("test-user", &tenant, roles, Duration::from_secs(600)).expect("mint")
    }

    /// A client sending `token`.
    pub fn client_with_token(&self, token: &str) -> ProfileClient {
        ProfileServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token))
    }

    /// A client for `tenant` with one role.
    pub fn client(&self, tenant: &str, role: Role) -> ProfileClient {
        self.client_with_token(&self.token(tenant, &[role]))
    }

    /// An admin of the default tenant.
    pub fn admin(&self) -> ProfileClient {
        self.client(TENANT, Role::Admin)
    }

    /// A support agent of the default tenant.
    pub fn agent(&self) -> ProfileClient {
        self.client(TENANT, Role::Agent)
    }

    /// An analyst of the default tenant.
    pub fn analyst(&self) -> ProfileClient {
        self.client(TENANT, Role::Analyst)
    }

    /// A machine caller of the default tenant.
    pub fn service(&self) -> ProfileClient {
        self.client(TENANT, Role::Service)
    }

    /// A ConsentService client for `tenant` with `roles`.
    pub fn consents(&self, tenant: &str, roles: &[Role]) -> ConsentClient {
        let token = self.token(tenant, roles);
        ConsentServiceClient::with_interceptor(self.channel.clone(), Bearer::new(&token))
    }

    /// A PrivacyService client for `tenant` with `roles`.
    pub fn privacy(&self, tenant: &str, roles: &[Role]) -> PrivacyClient {
        PrivacyServiceClient::with_interceptor(self.channel.clone(), Bearer::new(&self.token(tenant, roles)))
    }

    /// A token for `tenant` with `roles`, for the subject `subject`.
    pub fn token_as(&self, subject: &str, tenant: &str, roles: &[Role]) -> String {
        let tenant = TenantId::parse(tenant).expect("tenant");
        self.keys.mint(subject, &tenant, roles, Duration::from_secs(600)).expect("mint")
    }

    /// A TenantService client for `tenant` with `roles`.
    pub fn tenants(&self, tenant: &str, roles: &[Role]) -> TenantClient {
        TenantServiceClient::with_interceptor(self.channel.clone(), Bearer::new(&self.token(tenant, roles)))
    }

    /// An IdentityService (merges) client for `tenant` with `roles`.
    pub fn identity(&self, tenant: &str, roles: &[Role]) -> IdentityClient {
        c360_proto::v1::identity_service_client::IdentityServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer::new(&self.token(tenant, roles)),
        )
    }

    /// A ProfileService client for `tenant` with several `roles`.
    pub fn client_with_roles(&self, tenant: &str, roles: &[Role]) -> ProfileClient {
        self.client_with_token(&self.token(tenant, roles))
    }

    /// An EventService client for `tenant` with `roles`.
    pub fn events(&self, tenant: &str, roles: &[Role]) -> EventClient {
        self.events_with_token(&self.token(tenant, roles))
    }

    /// An EventService client on a connection of its own, with HTTP/2's
    /// smallest flow-control windows (so a stream it does not read backs up
    /// on the server soon).
    pub async fn events_on_own_connection(&self, tenant: &str, roles: &[Role]) -> EventClient {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("uri")
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .expect("connect to app");
        EventServiceClient::with_interceptor(channel, Bearer::new(&self.token(tenant, roles)))
    }

    /// An EventService client sending `token`.
    pub fn events_with_token(&self, token: &str) -> EventClient {
        EventServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token))
    }

    /// A token for `tenant` with `roles` that expires after `ttl`.
    pub fn token_for(&self, tenant: &str, roles: &[Role], ttl: Duration) -> String {
        let tenant = TenantId::parse(tenant).expect("tenant");
        self.keys.mint("test-user", &tenant, roles, ttl).expect("mint")
    }

    /// The gRPC channel to the app (for other clients).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A client sending no credentials.
    pub fn anonymous(&self) -> ProfileClient {
        ProfileServiceClient::with_interceptor(self.channel.clone(), Bearer::none())
    }

    /// Stops the app and waits until it has drained.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A second instance sharing a [`TestApp`]'s database and cache.
pub struct Sibling {
    app: TestApp,
}

impl std::ops::Deref for Sibling {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// A minimal HTTP/1.1 GET over loopback, so the tests need no HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// One HTTP/1.1 exchange with `addr` (plain, `Connection: close`): the
/// status code, the headers (names lower-cased) and the body.
pub async fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    // Read to the end, or to Content-Length where given: some servers keep
    // the connection open despite `Connection: close`.
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk).await.expect("read");
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
        if let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|length| response.len() >= split + 4 + length) {
                break;
            }
        }
    }
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    (status, headers, body)
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}

/// A GraphQL request to `addr`'s `/graphql` with `token`: the JSON answer.
pub async fn graphql(
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    graphql_request(addr, token, serde_json::json!({ "query": query, "variables": variables })).await
}

/// POSTs `request` (a GraphQL request body) to `addr`'s `/graphql` with `token`.
pub async fn graphql_request(addr: SocketAddr, token: Option<&str>, request: serde_json::Value) -> serde_json::Value {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("Authorization", value.as_str()));
    }
    let body = serde_json::to_vec(&request).expect("json");
    let (status, _, answer) = http_exchange(addr, "POST", "/graphql", &headers, &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice(&answer).expect("a JSON answer")
}

/// `GET path` over plain HTTP, or what went wrong (for a listener that may
/// refuse it).
pub async fn http_get_result(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: no answer within 5 s".to_owned(),
    }
}

/// A free port on 127.0.0.1 (for a private server a test starts).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// Waits up to `within` until something listens on 127.0.0.1:`port`;
/// panics naming `what` otherwise.
pub(crate) async fn wait_for_port(port: u16, what: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not start on port {port}");
}

/// A private redis-server on a free port, for fault tests: it can be paused
/// (SIGSTOP: calls hang, data kept), resumed, killed and restarted.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        let port = free_port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (see README.md)");
        self.child = Some(child);
        wait_for_port(self.port, "private redis-server", Duration::from_secs(2)).await;
    }

    /// Kills it and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Freezes it: connections stay open, calls hang.
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// Unfreezes it.
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, signal: &str) {
        send_signal(self.child.as_ref().and_then(|c| c.id()), signal).await;
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to the process `pid` this test started.
async fn send_signal(pid: Option<u32>, signal: &str) {
    let pid = pid.expect("running").to_string();
    let status = tokio::process::Command::new("kill").args([signal, &pid]).status().await.expect("kill");
    assert!(status.success());
}

/// A private Kafka-protocol broker (tansu, in-memory storage) on a free port,
/// for the relay's tests: it can be paused (SIGSTOP) and resumed. It keeps
/// nothing across a restart, so outage tests pause it instead.
pub struct PrivateKafka {
    /// Its port.
    pub port: u16,
    child: tokio::process::Child,
}

/// The tansu binary: `C360_TANSU`, else `tansu` on PATH (`.ci/run` installs it).
fn tansu_binary() -> String {
    std::env::var("C360_TANSU").unwrap_or_else(|_| "tansu".to_owned())
}

impl PrivateKafka {
    /// Starts one and waits until it answers metadata requests.
    pub async fn start() -> Self {
        Self::start_advertising(None).await
    }

    /// Starts one that tells clients to reach it at `localhost:<advertised>`
    /// (a proxy in front of it) instead of its own port.
    pub async fn start_advertising(advertised: Option<u16>) -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| url.clone(), |port| format!("tcp://localhost:{port}"));
        let child = tokio::process::Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu must be installed: cargo install tansu --locked --features dynostore (see README.md)");
        wait_for_port(port, "tansu", Duration::from_secs(10)).await;
        Self { port, child }
    }

    /// Its bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes it: connections stay open, requests hang.
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// Unfreezes it.
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal).await;
    }
}

/// One message as a consumer received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The message key.
    pub key: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The JSON value.
    pub value: serde_json::Value,
}

/// Partition counts of `topics` on the broker (0 for a missing topic).
pub fn partitions(brokers: &str, topics: &[&str]) -> Vec<i32> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    topics
        .iter()
        .map(|topic| {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == *topic && t.error().is_none())
                .map_or(0, |t| i32::try_from(t.partitions().len()).unwrap_or(0))
        })
        .collect()
}

/// Reads `topics` from the beginning until `expected` messages arrived in
/// all, or nothing more came for `quiet` after at least `expected`; gives up
/// after `limit`.
pub async fn consume(
    brokers: &str,
    topics: &[&str],
    expected: usize,
    quiet: Duration,
    limit: Duration,
) -> Vec<Received> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use rdkafka::{
            Message,
            consumer::{BaseConsumer, Consumer},
            message::Headers,
        };
        // The relay creates the topics when it starts: wait for them.
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut counts = partitions(&brokers, &names);
        let waiting = std::time::Instant::now();
        while counts.contains(&0) && waiting.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(100));
            counts = partitions(&brokers, &names);
        }
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("test-{}", uuid::Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        for (topic, count) in topics.iter().zip(counts) {
            for partition in 0..count {
                assignment.add_partition_offset(topic, partition, rdkafka::Offset::Beginning).expect("assign");
            }
        }
        consumer.assign(&assignment).expect("assign");
        let started = std::time::Instant::now();
        let mut last = std::time::Instant::now();
        let mut received = Vec::new();
        while started.elapsed() < limit && (received.len() < expected || last.elapsed() < quiet) {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("consume");
            last = std::time::Instant::now();
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            received.push(Received {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                value: serde_json::from_slice(message.payload().unwrap_or_default()).expect("JSON value"),
            });
            if received.len() >= expected && quiet.is_zero() {
                break;
            }
        }
        received
    })
    .await
    .expect("consumer thread")
}

/// Keys verifying the test secret, for crafting tokens by hand.
pub fn test_keys() -> JwtKeys {
    JwtKeys::load(&KeySource::Secret(SecretString::from(TEST_SECRET)), ISSUER, AUDIENCE).expect("keys")
}

/// A file in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}
