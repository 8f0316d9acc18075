//! Configuration: flags and `C360_*` environment variables, one doc line per
//! field (shown by `c360 <command> --help`), defaults that run on a laptop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Parser};
use secrecy::SecretString;

use crate::{
    auth::KeySource,
    cache::{CacheConfig, ProfileCache, keys::IdentifierHasher},
    domain::identifiers::NormalizationPolicy,
    store::{SqliteDurability, Store},
};

/// Where c360 keeps local state.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Directory for the embedded SQLite database and the generated token secret.
    #[arg(long, env = "C360_DATA_DIR", default_value = ".c360")]
    pub data_dir: PathBuf,
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL, postgres://… or sqlite://…; default: SQLite file c360.db in the data directory.
    #[arg(long, env = "C360_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Largest number of pooled PostgreSQL connections (SQLite always uses one).
    #[arg(long, env = "C360_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// When SQLite acknowledges a commit: full (on disk; survives a power cut) or normal (faster; a power cut can lose the last commits).
    #[arg(long, env = "C360_SQLITE_DURABILITY", value_enum, default_value = "full")]
    pub sqlite_durability: SqliteDurability,
}

impl DatabaseArgs {
    /// The URL to connect to; for the embedded default, creates the data
    /// directory (0700) and the database file (0600).
    pub fn url(&self, data_dir: &Path) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        crate::files::private_dir(data_dir)?;
        let file = data_dir.join("c360.db");
        crate::files::private_file(&file)?;
        Ok(format!("sqlite://{}?mode=rwc", file.display()))
    }

    /// Connects with at most `max_connections` (PostgreSQL); writes invalidate `cache`.
    pub async fn connect(&self, data_dir: &Path, max_connections: u32, cache: ProfileCache) -> anyhow::Result<Store> {
        let url = self.url(data_dir)?;
        Store::connect(&url, max_connections, self.sqlite_durability, cache)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
    }
}

/// Token verification.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// File holding the HS256 signing secret (at least 32 bytes; readable by this user only);
    /// or put the secret itself in C360_JWT_SECRET. Never a flag: `ps` shows flags to everyone.
    /// Default in the embedded mode: a secret generated into the data directory.
    #[arg(long, env = "C360_JWT_SECRET_FILE", conflicts_with_all = ["jwt_public_key_file", "jwks_file"])]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key verifying RS256 (RSA) or ES256 (EC P-256) tokens, instead of a secret.
    #[arg(long, env = "C360_JWT_PUBLIC_KEY_FILE", conflicts_with = "jwks_file")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (RFC 7517) with one or more keys; each token names its key by `kid`. Read again
    /// on SIGHUP and when the file changes, so keys rotate without a restart.
    #[arg(long, env = "C360_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "C360_JWT_ISSUER", default_value = "c360")]
    pub jwt_issuer: String,
    /// Required `aud` claim.
    #[arg(long, env = "C360_JWT_AUDIENCE", default_value = "c360")]
    pub jwt_audience: String,
    /// Longest token lifetime accepted (`exp` minus `iat`): a stolen token is useful for as long as it lives.
    #[arg(long, env = "C360_JWT_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub jwt_max_lifetime: Duration,
}

/// A secret from the environment variable `env` or from `file` (readable by
/// this user only), never from a flag: every user of the machine can read a
/// process's flags. Both set is an error.
pub fn secret_from(env: &str, file: Option<&Path>) -> anyhow::Result<Option<SecretString>> {
    let from_env = std::env::var(env).ok().filter(|value| !value.is_empty());
    match (from_env, file) {
        (Some(_), Some(path)) => {
            anyhow::bail!("{env} and the file {} are both set; choose one", path.display())
        }
        (Some(value), None) => Ok(Some(SecretString::from(value))),
        (None, Some(path)) => Ok(Some(SecretString::from(crate::files::read_secret(path, "secret file")?))),
        (None, None) => Ok(None),
    }
}

impl AuthArgs {
    /// Where the verification key comes from.
    pub fn key_source(&self, data_dir: &Path) -> anyhow::Result<KeySource> {
        let from_env = std::env::var("C360_JWT_SECRET").ok().filter(|value| !value.is_empty());
        let chosen = [self.jwt_secret_file.is_some(), self.jwt_public_key_file.is_some(), self.jwks_file.is_some()];
        anyhow::ensure!(
            from_env.is_none() || !chosen.contains(&true),
            "C360_JWT_SECRET is set as well as a key file; choose one key source"
        );
        Ok(match (from_env, &self.jwt_secret_file, &self.jwt_public_key_file, &self.jwks_file) {
            (Some(secret), ..) => KeySource::Secret(SecretString::from(secret)),
            (None, Some(path), ..) => KeySource::SecretFile(path.clone()),
            (None, None, Some(path), _) => KeySource::PublicKeyFile(path.clone()),
            (None, None, None, Some(path)) => KeySource::Jwks(path.clone()),
            (None, None, None, None) => KeySource::LocalSecret(data_dir.to_owned()),
        })
    }
}

/// TLS of the listeners, and the refusal of plaintext over a network.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM, leaf first) the gRPC and HTTP listeners serve TLS with; default: plaintext.
    #[arg(long, env = "C360_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "C360_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) of client certificates: gRPC callers must present a certificate it signed (mTLS),
    /// as well as their bearer token, which still carries tenant and roles.
    #[arg(long, env = "C360_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// With --tls-client-ca-file: also accept callers without a client certificate (one that is
    /// presented must still verify).
    #[arg(long, env = "C360_TLS_CLIENT_AUTH_OPTIONAL", requires = "tls_client_ca_file")]
    pub tls_client_auth_optional: bool,
    /// Outside the embedded mode, allow plaintext connections with other machines (listeners,
    /// PostgreSQL, Redis, Kafka): bearer tokens and customers' personal data then cross the network
    /// readable and alterable by anyone on the path.
    #[arg(long, env = "C360_ALLOW_CLEARTEXT_PERSONAL_DATA")]
    pub allow_cleartext_personal_data: bool,
}

impl TlsArgs {
    /// The listeners' TLS, if configured.
    pub fn server(&self) -> anyhow::Result<Option<crate::tls::ServerTls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        let files = crate::tls::ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca_file.clone(),
            client_auth_optional: self.tls_client_auth_optional,
        };
        crate::tls::ServerTls::load(&files).map(Some)
    }
}

/// TLS options of a c360 client command (`c360 bench`).
#[derive(Debug, Clone, Args)]
pub struct ClientTlsArgs {
    /// CA (PEM) that signs the server's certificate (an https:// target); default: the system's roots.
    #[arg(long, env = "C360_CLIENT_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mTLS).
    #[arg(long, env = "C360_CLIENT_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "C360_CLIENT_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Name expected in the server's certificate, when not the target's host.
    #[arg(long, env = "C360_CLIENT_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

impl ClientTlsArgs {
    /// The files, as the TLS layer takes them.
    pub fn files(&self) -> crate::tls::ClientTlsFiles {
        crate::tls::ClientTlsFiles {
            ca: self.tls_ca_file.clone(),
            identity: self.tls_cert_file.clone().zip(self.tls_key_file.clone()),
            server_name: self.tls_server_name.clone(),
        }
    }

    /// An endpoint for `target`, with TLS when it is https://.
    pub fn endpoint(&self, target: &str) -> anyhow::Result<tonic::transport::Endpoint> {
        let endpoint = tonic::transport::Endpoint::from_shared(target.to_owned())
            .map_err(|e| anyhow::anyhow!("invalid target {target}: {e}"))?;
        if target.starts_with("https://") {
            return Ok(endpoint.tls_config(self.files().config()?)?);
        }
        Ok(endpoint)
    }
}

/// Listening, limits and data rules of `c360 serve`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// gRPC listen address (port 0 picks a free port).
    #[arg(long, env = "C360_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for /healthz and /readyz (port 0 picks a free port).
    #[arg(long, env = "C360_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// A separate listener for /readyz and /metrics (with /healthz), for an address only the
    /// platform reaches; the HTTP listener then answers /healthz (and /graphql) only. Default: all on
    /// the HTTP listener.
    #[arg(long, env = "C360_INTERNAL_HTTP_ADDR")]
    pub internal_http_addr: Option<SocketAddr>,
    /// Do not serve gRPC server reflection (it lists every service and message to anyone who can
    /// connect, before authentication).
    #[arg(long, env = "C360_NO_REFLECTION")]
    pub no_reflection: bool,
    /// Do not apply database migrations at start (run `c360 migrate` instead).
    #[arg(long, env = "C360_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Longest time a unary RPC may take (less if the caller's grpc-timeout says so); then it
    /// answers DEADLINE_EXCEEDED. Streams are not bounded by it.
    #[arg(long, env = "C360_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Most unary RPCs in flight at once; beyond it calls are shed with UNAVAILABLE (and
    /// `RetryInfo`) instead of queueing, so admitted calls keep their latency. Size it as
    /// throughput × acceptable latency; 0 turns the bound off. Health checks and streams are not
    /// counted.
    #[arg(long, env = "C360_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Most concurrent streams (calls) on one HTTP/2 connection; a client opening more waits.
    #[arg(long, env = "C360_MAX_CONCURRENT_STREAMS", default_value_t = 200)]
    pub max_concurrent_streams: u32,
    /// Most open change streams (WatchChanges) per subject; 0: no bound.
    #[arg(long, env = "C360_MAX_WATCH_STREAMS", default_value_t = 8)]
    pub max_watch_streams: usize,
    /// Requests per second one subject (token subject within its tenant) may make on this
    /// instance (fractions allowed); beyond it RESOURCE_EXHAUSTED with `RetryInfo`. 0: no limit.
    #[arg(long, env = "C360_SUBJECT_RATE_LIMIT", default_value_t = 0.0)]
    pub subject_rate_limit: f64,
    /// Requests a quiet subject may make at once (default: one second's worth).
    #[arg(long, env = "C360_SUBJECT_RATE_BURST")]
    pub subject_rate_burst: Option<u32>,
    /// Requests per second one tenant (all its subjects together) may make on this instance
    /// (fractions allowed); 0: no limit.
    #[arg(long, env = "C360_TENANT_RATE_LIMIT", default_value_t = 0.0)]
    pub tenant_rate_limit: f64,
    /// Requests a quiet tenant may make at once (default: one second's worth).
    #[arg(long, env = "C360_TENANT_RATE_BURST")]
    pub tenant_rate_burst: Option<u32>,
    /// Largest accepted request message, in bytes.
    #[arg(long, env = "C360_MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// How long SIGTERM waits for in-flight requests before closing anyway.
    #[arg(long, env = "C360_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How identifiers are normalized.
    #[command(flatten)]
    pub normalization: NormalizationArgs,
}

/// How identifiers are normalized: the servers and the bulk loads (`c360
/// import`) of one deployment must agree, or one person gets two keys.
#[derive(Debug, Clone, Args)]
pub struct NormalizationArgs {
    /// Region (ISO 3166-1 alpha-2) assumed for phone numbers written without a country code.
    #[arg(long, env = "C360_DEFAULT_REGION", default_value = "US")]
    pub default_region: String,
    /// Treat `name+tag@domain` as a different identity from `name@domain`.
    #[arg(long, env = "C360_EMAIL_KEEP_PLUS_TAGS")]
    pub email_keep_plus_tags: bool,
}

impl NormalizationArgs {
    /// The identifier normalization rules configured.
    pub fn policy(&self) -> anyhow::Result<NormalizationPolicy> {
        let default_region = self
            .default_region
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown default region '{}'", self.default_region))?;
        Ok(NormalizationPolicy { default_region, strip_plus_tags: !self.email_keep_plus_tags })
    }
}

/// Redis: the shared cache and the invalidation channel between instances.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL for the shared L2 cache and cross-instance invalidation; default: in-process cache only.
    #[arg(long, env = "C360_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    #[arg(long, env = "C360_CACHE_PREFIX", default_value = "c360")]
    pub cache_prefix: String,
    /// Longest wait for one Redis call before the database answers instead.
    #[arg(long, env = "C360_REDIS_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
    /// File holding the key of the keyed hash that names emails, phones and external ids in Redis
    /// keys and invalidation messages (at least 32 bytes; the same on every instance); or put the
    /// key itself in C360_CACHE_KEY. Required with Redis.
    #[arg(long, env = "C360_CACHE_KEY_FILE")]
    pub cache_key_file: Option<PathBuf>,
    /// File holding the previous cache key while rotating (docs/caching.md), or
    /// C360_CACHE_KEY_PREVIOUS: writes invalidate under both.
    #[arg(long, env = "C360_CACHE_KEY_PREVIOUS_FILE")]
    pub cache_key_previous_file: Option<PathBuf>,
    /// CA (PEM) that signs a rediss:// server's certificate; default: the system's roots.
    #[arg(long, env = "C360_REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis that requires one.
    #[arg(long, env = "C360_REDIS_TLS_CERT_FILE", requires = "redis_tls_key_file")]
    pub redis_tls_cert_file: Option<PathBuf>,
    /// The Redis client certificate's private key (PEM).
    #[arg(long, env = "C360_REDIS_TLS_KEY_FILE", requires = "redis_tls_cert_file")]
    pub redis_tls_key_file: Option<PathBuf>,
}

/// Tombstones outlive any read that may have started before a write: at
/// least a minute, and three request timeouts.
fn fence_ttl(request_timeout: Duration) -> Duration {
    (request_timeout * 3).max(Duration::from_secs(60))
}

impl RedisArgs {
    /// The TLS files of a rediss:// connection, read now.
    pub fn tls(&self) -> anyhow::Result<crate::cache::RedisTls> {
        use crate::files::read;
        let ca = self.redis_tls_ca_file.as_deref().map(|ca| read(ca, "Redis CA")).transpose()?;
        let identity = match (&self.redis_tls_cert_file, &self.redis_tls_key_file) {
            (Some(cert), Some(key)) => Some((read(cert, "Redis client certificate")?, read(key, "Redis client key")?)),
            _ => None,
        };
        if (ca.is_some() || identity.is_some())
            && !self.redis_url.as_deref().is_some_and(|u| u.starts_with("rediss://"))
        {
            anyhow::bail!("Redis TLS files are set but the Redis URL is not rediss://");
        }
        Ok(crate::cache::RedisTls { ca, identity })
    }

    /// The identifier hasher: the configured key with Redis (required), a
    /// key of this process alone without.
    pub fn hasher(&self) -> anyhow::Result<IdentifierHasher> {
        use secrecy::ExposeSecret;
        let key = secret_from("C360_CACHE_KEY", self.cache_key_file.as_deref())?;
        let previous = secret_from("C360_CACHE_KEY_PREVIOUS", self.cache_key_previous_file.as_deref())?;
        match (&self.redis_url, &key) {
            (None, _) => Ok(IdentifierHasher::ephemeral()),
            (Some(_), None) => Err(anyhow::anyhow!(
                "C360_CACHE_KEY (or --cache-key-file) is required with Redis: Redis key names carry a keyed hash of \
                 customers' emails and phones, and every instance must hash with the same key \
                 (e.g. `openssl rand -base64 32`)"
            )),
            (Some(_), Some(key)) if key.expose_secret().len() < 32 => {
                Err(anyhow::anyhow!("C360_CACHE_KEY must be at least 32 bytes"))
            }
            (Some(_), Some(key)) => Ok(IdentifierHasher::new(
                key.expose_secret().as_bytes(),
                previous.as_ref().map(|k| k.expose_secret().as_bytes()),
            )),
        }
    }

    /// The cache of a command that writes but serves no reads (`c360 seed`):
    /// no in-process tier; with Redis, its writes reach the running
    /// instances' caches exactly as a server's do.
    pub fn writer_cache(&self) -> anyhow::Result<(ProfileCache, tokio_util::sync::CancellationToken)> {
        let config = CacheConfig {
            redis_url: self.redis_url.clone(),
            prefix: self.cache_prefix.clone(),
            l1_capacity_bytes: 0,
            ttl: Duration::from_secs(60),
            not_found_ttl: Duration::from_secs(10),
            fence_ttl: fence_ttl(Duration::from_secs(10)),
            redis_timeout: self.redis_timeout.max(Duration::from_millis(500)),
            hasher: self.hasher()?,
            redis_tls: self.tls()?,
            member: false,
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let cache = ProfileCache::new(config, crate::metrics::CacheMetrics::default(), stop.clone())?;
        Ok((cache, stop))
    }
}

/// The read-through cache.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Redis.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// In-process (L1) cache budget in MiB; 0 turns L1 off (every miss goes to Redis, then the database).
    #[arg(long, env = "C360_CACHE_L1_CAPACITY_MB", default_value_t = 256)]
    pub cache_l1_capacity_mb: u64,
    /// Lifetime of a cached profile (each entry ±10%).
    #[arg(long, env = "C360_CACHE_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub cache_ttl: Duration,
    /// Lifetime of a cached "not found".
    #[arg(long, env = "C360_CACHE_NOT_FOUND_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub cache_not_found_ttl: Duration,
}

impl CacheArgs {
    /// The cache settings; tombstones outlive any request (`request_timeout`).
    pub fn config(&self, request_timeout: Duration) -> anyhow::Result<CacheConfig> {
        Ok(CacheConfig {
            redis_url: self.redis.redis_url.clone(),
            prefix: self.redis.cache_prefix.clone(),
            l1_capacity_bytes: self.cache_l1_capacity_mb * 1024 * 1024,
            ttl: self.cache_ttl,
            not_found_ttl: self.cache_not_found_ttl,
            fence_ttl: fence_ttl(request_timeout),
            redis_timeout: self.redis.redis_timeout,
            hasher: self.redis.hasher()?,
            redis_tls: self.redis.tls()?,
            member: true,
        })
    }
}

/// Everything `c360 serve` needs.
#[derive(Debug, Clone, Parser)]
#[command(name = "c360 serve", args_override_self = true)]
pub struct Config {
    /// Where local state lives.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Token verification.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Listening, limits and data rules.
    #[command(flatten)]
    pub server: ServerArgs,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The read-through cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// The outbox: relay to the broker, retention.
    #[command(flatten)]
    pub outbox: OutboxArgs,
    /// The audit trail.
    #[command(flatten)]
    pub audit: AuditArgs,
    /// Background jobs.
    #[command(flatten)]
    pub jobs: JobArgs,
    /// The GraphQL facade on the HTTP listener.
    #[command(flatten)]
    pub graphql: GraphqlArgs,
}

impl Config {
    /// Whether this is the embedded mode (SQLite, one machine), where
    /// plaintext is never refused.
    pub fn embedded(&self) -> bool {
        self.database.database_url.as_deref().is_none_or(|url| url.starts_with("sqlite:"))
    }

    /// The connections that would carry customers' data in the clear to or
    /// from another machine.
    pub fn cleartext(&self) -> Vec<crate::tls::Cleartext> {
        use crate::tls::{kafka_cleartext, listener_cleartext, postgres_cleartext, redis_cleartext};
        let tls = self.tls.tls_cert_file.is_some();
        let kafka = &self.outbox.kafka;
        let kafka_tls = matches!(kafka.kafka_security_protocol, KafkaSecurity::Ssl | KafkaSecurity::SaslSsl);
        [
            listener_cleartext("the gRPC listener", self.server.grpc_addr, tls),
            listener_cleartext("the HTTP listener", self.server.http_addr, tls),
            self.server.internal_http_addr.and_then(|addr| listener_cleartext("the internal HTTP listener", addr, tls)),
            self.database.database_url.as_deref().and_then(postgres_cleartext),
            self.cache.redis.redis_url.as_deref().and_then(redis_cleartext),
            kafka.kafka_brokers.as_deref().and_then(|brokers| kafka_cleartext(brokers, kafka_tls)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Refuses plaintext with other machines outside the embedded mode
    /// (SQLite with neither Redis nor a broker), unless
    /// `--allow-cleartext-personal-data` accepts the risk (then each is
    /// logged as a warning).
    pub fn check_cleartext(&self) -> anyhow::Result<()> {
        let cleartext = self.cleartext();
        // SQLite alone keeps everything on one machine; once Redis or a
        // broker is configured, data crosses a network like any deployment's.
        let alone =
            self.embedded() && self.cache.redis.redis_url.is_none() && self.outbox.kafka.kafka_brokers.is_none();
        if alone || cleartext.is_empty() {
            return Ok(());
        }
        if self.tls.allow_cleartext_personal_data {
            for connection in &cleartext {
                tracing::warn!(
                    "{connection}: tokens and personal data cross the network readable by anyone on the path"
                );
            }
            return Ok(());
        }
        let list: Vec<String> = cleartext.iter().map(|c| format!("  - {c}")).collect();
        anyhow::bail!(
            "refusing to carry customers' personal data in the clear over a network:\n{}\n\
             Protect each connection, or accept the risk with --allow-cleartext-personal-data \
             (C360_ALLOW_CLEARTEXT_PERSONAL_DATA); docs/security.md",
            list.join("\n")
        )
    }
}

/// The GraphQL facade's guards and browser access (`c360 serve`, `c360 graphql`).
#[derive(Debug, Clone, Args)]
pub struct GraphqlArgs {
    /// Serve no GraphQL (`/graphql`) on the HTTP listener.
    #[arg(long, env = "C360_NO_GRAPHQL")]
    pub no_graphql: bool,
    /// Deepest selection nesting a GraphQL query may have.
    #[arg(long, env = "C360_GRAPHQL_MAX_DEPTH", default_value_t = 12)]
    pub graphql_max_depth: usize,
    /// Highest complexity of a GraphQL query: each field costs 1, a connection its page size times
    /// its nodes' cost.
    #[arg(long, env = "C360_GRAPHQL_MAX_COMPLEXITY", default_value_t = 5_000)]
    pub graphql_max_complexity: usize,
    /// Largest page (`first`) of a GraphQL connection.
    #[arg(long, env = "C360_GRAPHQL_MAX_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub graphql_max_page_size: i32,
    /// Longest GraphQL query text, in bytes.
    #[arg(long, env = "C360_GRAPHQL_MAX_QUERY_BYTES", default_value_t = 32 * 1024)]
    pub graphql_max_query_bytes: usize,
    /// Answer no introspection queries (GraphiQL's docs and completion then stop working).
    #[arg(long, env = "C360_GRAPHQL_NO_INTROSPECTION")]
    pub graphql_no_introspection: bool,
    /// A browser origin allowed to call /graphql from another site (repeatable, e.g.
    /// https://console.example.com; `*` for any). Default: same origin only.
    #[arg(long = "graphql-cors-origin", env = "C360_GRAPHQL_CORS_ORIGINS", value_delimiter = ',')]
    pub graphql_cors_origins: Vec<String>,
}

impl GraphqlArgs {
    /// The facade's options.
    pub fn options(&self) -> c360_graphql::Options {
        let origins = if self.graphql_cors_origins.iter().any(|o| o == "*") {
            c360_graphql::Origins::Any
        } else if self.graphql_cors_origins.is_empty() {
            c360_graphql::Origins::None
        } else {
            c360_graphql::Origins::List(self.graphql_cors_origins.clone())
        };
        c360_graphql::Options {
            limits: c360_graphql::Limits {
                max_depth: self.graphql_max_depth,
                max_complexity: self.graphql_max_complexity,
                max_page_size: self.graphql_max_page_size,
                max_query_bytes: self.graphql_max_query_bytes,
                introspection: !self.graphql_no_introspection,
            },
            origins,
        }
    }
}

/// The audit trail: coalescing of read audits, retention.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// How long read audits are coalesced in memory before they are written: the most a crash can
    /// lose (write audits commit with their write and are never lost).
    #[arg(long, env = "C360_AUDIT_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub audit_flush_interval: Duration,
    /// Profile ids that coalesced read audits may hold in memory before they are written early; a
    /// reader waits for room rather than drop one.
    #[arg(long, env = "C360_AUDIT_BUFFER", default_value_t = 100_000)]
    pub audit_buffer: usize,
    /// How long audit records are kept; `c360 audit verify` checks from the oldest kept onwards.
    #[arg(long, env = "C360_AUDIT_RETENTION", default_value = "400days", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,
}

/// Security protocol of the broker connection (librdkafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaSecurity {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS (credentials in the clear: loopback or a trusted network only).
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's `security.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// The Kafka connection of the outbox relay.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,…); set, the relay publishes every domain event there.
    #[arg(long, env = "C360_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Security protocol of the broker connection.
    #[arg(long, env = "C360_KAFKA_SECURITY_PROTOCOL", value_enum, default_value = "plaintext")]
    pub kafka_security_protocol: KafkaSecurity,
    /// CA certificate file (PEM) that signs the brokers' certificates; default: the system's.
    #[arg(long, env = "C360_KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that authenticate clients by TLS.
    #[arg(long, env = "C360_KAFKA_SSL_CERT_FILE", requires = "kafka_ssl_key_file")]
    pub kafka_ssl_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "C360_KAFKA_SSL_KEY_FILE", requires = "kafka_ssl_cert_file")]
    pub kafka_ssl_key_file: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "C360_KAFKA_SASL_MECHANISM", default_value = "SCRAM-SHA-512")]
    pub kafka_sasl_mechanism: String,
    /// SASL user name.
    #[arg(long, env = "C360_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// File holding the SASL password, or put the password itself in C360_KAFKA_SASL_PASSWORD.
    #[arg(long, env = "C360_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// Replication factor of the topics c360 creates when they are missing (-1: the broker's default).
    #[arg(long, env = "C360_KAFKA_REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
    pub kafka_replication_factor: i32,
    /// How long the broker may take to acknowledge a message before the relay sends it again.
    #[arg(long, env = "C360_KAFKA_MESSAGE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub kafka_message_timeout: Duration,
    /// Any other librdkafka producer setting, as key=value (repeatable).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub kafka_options: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The SASL password, from C360_KAFKA_SASL_PASSWORD or its file.
    pub fn sasl_password(&self) -> anyhow::Result<Option<SecretString>> {
        secret_from("C360_KAFKA_SASL_PASSWORD", self.kafka_sasl_password_file.as_deref())
    }
}

/// librdkafka settings `--kafka-option` may not set: each has its own
/// option, checked at start (where the brokers are, whether the connection
/// is encrypted), or is a secret, which never goes on a command line.
const RESERVED_KAFKA_KEYS: &[&str] = &["bootstrap.servers", "metadata.broker.list", "security.protocol"];

fn key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| format!("'{raw}' is not KEY=VALUE"))?;
    if RESERVED_KAFKA_KEYS.contains(&key.as_str()) {
        return Err(format!("{key} has its own option (--kafka-brokers, --kafka-security-protocol)"));
    }
    if key.contains("password") || key.contains("secret") {
        return Err(format!("{key} is a secret: it never goes on a command line (use the *_FILE options)"));
    }
    Ok((key, value))
}

/// Background jobs (docs/jobs.md): every instance takes queued jobs in turn.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// How often an instance looks for queued jobs (the instance a job is started on takes it at once).
    #[arg(long, env = "C360_JOB_POLL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub job_poll: Duration,
    /// How long an instance's hold on a running job lasts unless renewed; another instance takes the
    /// job over (and runs it again from the start) after that.
    #[arg(long, env = "C360_JOB_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub job_lease: Duration,
}

/// The outbox: relay and retention.
#[derive(Debug, Clone, Args)]
pub struct OutboxArgs {
    /// The broker.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// How long events stay in the outbox (for the change stream to resume from) once published,
    /// or once written when no broker is configured.
    #[arg(long, env = "C360_OUTBOX_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub outbox_retention: Duration,
    /// Most events the relay sends to the broker before it waits for their acknowledgements.
    #[arg(long, env = "C360_RELAY_BATCH", default_value_t = 10_000)]
    pub relay_batch: u64,
    /// Events a change-stream subscriber may fall behind before it is dropped (it resumes from its last position).
    #[arg(long, env = "C360_CHANGE_FEED_BUFFER", default_value_t = 4096)]
    pub change_feed_buffer: usize,
    /// How long a relay's hold on its lanes lasts unless renewed; another instance's relay takes
    /// them over after that.
    #[arg(long, env = "C360_RELAY_LEASE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub relay_lease: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Config {
        let mut all = vec!["c360-serve"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("arguments")
    }

    #[test]
    fn redis_needs_a_cache_key_of_32_bytes() {
        let without = serve(&["--redis-url", "redis://127.0.0.1:1"]);
        let error = without.cache.config(Duration::from_secs(1)).expect_err("refused").to_string();
        assert!(error.contains("C360_CACHE_KEY"), "{error}");
        let dir = tempfile::tempdir().expect("dir");
        let file = |name: &str, contents: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).expect("write");
            crate::files::private_file(&path).expect("private");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
            path.display().to_string()
        };
        let short = serve(&["--redis-url", "redis://127.0.0.1:1", "--cache-key-file", &file("short", "short\n")]);
        assert!(short.cache.config(Duration::from_secs(1)).is_err());
        let good = file("good", &format!("{}\n", "k".repeat(32)));
        let good = serve(&["--redis-url", "redis://127.0.0.1:1", "--cache-key-file", &good]);
        assert!(good.cache.config(Duration::from_secs(1)).is_ok(), "the trailing newline is not part of the key");
        assert!(serve(&[]).cache.config(Duration::from_secs(1)).is_ok(), "no Redis, no key needed");
    }

    /// Found by review: `--kafka-option` could undo the plaintext check or
    /// carry a password on the command line.
    #[test]
    fn kafka_options_cannot_override_checked_settings_or_carry_secrets() {
        for option in
            ["security.protocol=plaintext", "bootstrap.servers=kafka:9092", "sasl.password=x", "ssl.key.password=x"]
        {
            assert!(Config::try_parse_from(["c360-serve", "--kafka-option", option]).is_err(), "{option}");
        }
        assert!(Config::try_parse_from(["c360-serve", "--kafka-option", "linger.ms=5"]).is_ok());
    }

    /// Found by reading the landed code: secrets were flags, which every user
    /// of the machine can read in `ps`.
    #[test]
    fn secrets_are_not_accepted_as_flags() {
        let secret = "s".repeat(40);
        for flag in ["--jwt-secret", "--cache-key", "--cache-key-previous", "--kafka-sasl-password"] {
            let args = ["c360-serve", flag, secret.as_str()];
            assert!(Config::try_parse_from(args).is_err(), "{flag} must not exist");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_embedded_database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let url = serve(&[]).database.url(&data).expect("url");
        assert!(url.starts_with("sqlite://"), "{url}");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("c360.db")), 0o600);
    }
}
