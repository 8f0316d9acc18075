//! The `c360` command line: `serve`, `graphql`, `migrate`, `token`, `seed`, `export`, `import`, `bench`, `outbox`, `audit`.

pub mod audit;
mod bench;
pub mod dedupe;
pub mod export;
pub mod graphql;
pub mod import;
pub mod model;
pub mod outbox;
mod progress;
pub mod seed;

use std::{io::Write, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    app::App,
    auth::{JwtKeys, KeySource, Role},
    cache::ProfileCache,
    config::{AuthArgs, Config, DataDirArgs, DatabaseArgs},
    domain::TenantId,
};

/// c360: one current, trustworthy record of every customer, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "c360", version, about)]
pub struct Cli {
    /// Threads running requests (default: one per core). Latency-sensitive
    /// deployments sharing cores with a database or a load generator set
    /// fewer (docs/performance.md).
    #[arg(long, global = true, env = "C360_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC, GraphQL and the HTTP health endpoints (embedded SQLite unless a database URL is given).
    Serve(Box<Config>),
    /// Serve the GraphQL facade alone, calling a remote c360 over gRPC.
    Graphql(Box<graphql::GraphqlServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Mint a bearer token for local use, signed with the configured or generated secret.
    Token(TokenArgs),
    /// Fill a tenant with realistic demo data, near-duplicates included, straight into the database.
    Seed(seed::SeedArgs),
    /// Write a tenant's golden records, with their external ids, as CSV or JSON Lines.
    Export(export::ExportArgs),
    /// Load customer records from a legacy system's CSV export (docs/import.md).
    Import(Box<import::ImportArgs>),
    /// Find a tenant's duplicate people and merge them (docs/identity-resolution.md).
    Dedupe(Box<dedupe::DedupeArgs>),
    /// Load a running server over gRPC and report throughput and latency percentiles.
    Bench(Box<bench::BenchArgs>),
    /// Events the broker refused for good: list them, retry or skip one.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// The audit trail: verify a tenant's hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The matching model: show the one in force for a tenant.
    #[command(subcommand)]
    Model(model::ModelCommand),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// Tenant the token grants access to.
    #[arg(long)]
    tenant: String,
    /// Role to grant (repeatable): admin, steward, agent, marketer, analyst, service.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Subject (who the caller is).
    #[arg(long, default_value = "local-user")]
    subject: String,
    /// Lifetime, e.g. 30m, 12h, 7d.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Flags whose value may carry a secret, and the variable to use instead.
const SECRET_BEARING_FLAGS: [(&str, &str); 3] =
    [("--database-url", "C360_DATABASE_URL"), ("--redis-url", "C360_REDIS_URL"), ("--token", "C360_TOKEN")];

/// Refuses a secret on the command line, where `ps` shows it to every user of
/// the machine: a password inside `--database-url` or `--redis-url`, or a
/// `--token`. Each has an environment variable (and PostgreSQL a password
/// file) instead. The error names the flag, never the value.
pub fn refuse_secret_arguments<S: AsRef<str>>(args: &[S]) -> anyhow::Result<()> {
    let mut args = args.iter().map(AsRef::as_ref);
    while let Some(arg) = args.next() {
        for (flag, variable) in SECRET_BEARING_FLAGS {
            let value = match arg.strip_prefix(flag) {
                Some("") => args.next(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            let Some(value) = value else { continue };
            let secret = flag == "--token" || url_has_password(value);
            anyhow::ensure!(
                !secret,
                "{flag} carries a secret on the command line, which `ps` shows to every user of the machine: \
                 set {variable} instead{}",
                if flag == "--database-url" { " (or keep the password in ~/.pgpass or PGPASSFILE)" } else { "" }
            );
        }
    }
    Ok(())
}

/// Whether `url` holds a password: `scheme://user:password@host`, or a
/// `password=` query parameter as libpq's URLs allow.
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let in_userinfo = authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let in_query = rest.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| pair.split('=').next().is_some_and(|key| key.eq_ignore_ascii_case("password")))
    });
    in_userinfo || in_query
}

impl Cli {
    /// The async runtime the command runs on.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = self.worker_threads {
            builder.worker_threads(usize::from(threads));
        }
        builder.enable_all().build()
    }

    /// Runs the chosen command to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_to(&mut std::io::stdout()).await
    }

    /// Runs the chosen command; reports of `outbox`, `audit` and `model` go to `out`.
    pub async fn run_to(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        match self.command {
            Command::Outbox(command) => command.run(out).await,
            Command::Audit(command) => command.run(out).await,
            Command::Model(command) => command.run(out).await,
            Command::Serve(config) => serve(*config).await,
            Command::Graphql(args) => graphql::run(*args, shutdown_signal()?).await,
            Command::Migrate { data, database } => {
                let store = database.connect(&data.data_dir, 1, ProfileCache::none()).await?;
                store.migrate().await?;
                store.close().await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Seed(args) => seed::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Import(args) => import::run(*args).await,
            Command::Dedupe(args) => dedupe::run(*args).await,
            Command::Bench(args) => bench::run(*args).await,
            Command::Token(args) => {
                let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
                let roles = args
                    .roles
                    .iter()
                    .map(|r| Role::parse(r).ok_or_else(|| anyhow::anyhow!("unknown role '{r}'")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let source = args.auth.key_source(&args.data.data_dir)?;
                let keys = JwtKeys::load(&source, &args.auth.jwt_issuer, &args.auth.jwt_audience)?;
                anyhow::ensure!(
                    args.ttl <= args.auth.jwt_max_lifetime,
                    "--ttl {} is longer than the servers accept (--jwt-max-lifetime {})",
                    humantime::format_duration(args.ttl),
                    humantime::format_duration(args.auth.jwt_max_lifetime)
                );
                println!("{}", keys.mint(&args.subject, &tenant, &roles, args.ttl)?);
                Ok(())
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Listen first: a SIGTERM that arrives while starting, or right after the
    // banner, must drain and exit cleanly, not kill the process.
    let shutdown = shutdown_signal()?;
    let embedded = config.database.database_url.is_none();
    let data_dir = config.data.data_dir.clone();
    let key_source = config.auth.key_source(&data_dir)?;
    let tls = config.tls.tls_cert_file.is_some();
    // Not served where gRPC requires client certificates (see App::run_until).
    let graphql =
        !config.graphql.no_graphql && (config.tls.tls_client_ca_file.is_none() || config.tls.tls_client_auth_optional);
    let app = App::build(config).await?;
    let database = if embedded {
        format!("embedded SQLite in {}", data_dir.display())
    } else {
        "the configured database".to_owned()
    };
    let myself = invocation();
    let token = match key_source {
        KeySource::LocalSecret(dir) => {
            format!("{myself} token --data-dir {} --tenant demo --role admin", dir.display())
        }
        KeySource::Secret(_) => format!("{myself} token --tenant demo --role admin   (with the same C360_JWT_SECRET)"),
        KeySource::SecretFile(path) => {
            format!("{myself} token --jwt-secret-file {} --tenant demo --role admin", path.display())
        }
        KeySource::PublicKeyFile(_) | KeySource::Jwks(_) => {
            "from your identity provider (verified with the configured public keys)".to_owned()
        }
    };
    let grpcurl_tls = if tls { "-cacert <your CA file>" } else { "-plaintext" };
    let scheme = if tls { "https" } else { "http" };
    let graphiql = if graphql {
        format!(
            "GraphiQL:     {scheme}://{}/graphql (in a browser; the token goes in its Authorization header)\n",
            app.http_addr()
        )
    } else {
        String::new()
    };
    // Written, not println!: a closed stdout (a supervisor that stopped
    // reading) must not panic a running server.
    let banner = format!(
        "c360 is serving gRPC on {} and HTTP on {} ({database})\n\
         get a token:  {token}\n\
         call it:      grpcurl {grpcurl_tls} -H \"authorization: Bearer $TOKEN\" {} list\n\
         {graphiql}",
        app.grpc_addr(),
        app.http_addr(),
        app.grpc_addr()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    drop(stdout);
    app.run_until(shutdown).await
}

/// How a user runs this binary again, as it was started: `cargo run --`
/// under Cargo (which names the package in the environment of what it runs),
/// `c360` when that is this binary on the PATH, else its full path.
fn invocation() -> String {
    let exe = std::env::current_exe().ok().and_then(|exe| exe.canonicalize().ok());
    let under_cargo = std::env::var_os("CARGO").is_some()
        && std::env::var("CARGO_PKG_NAME").is_ok_and(|name| name == env!("CARGO_PKG_NAME"));
    if under_cargo {
        let release = exe.as_ref().is_some_and(|exe| exe.parent().is_some_and(|dir| dir.ends_with("release")));
        return if release { "cargo run --release --" } else { "cargo run --" }.to_owned();
    }
    let Some(exe) = exe else { return "c360".to_owned() };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("c360").canonicalize().is_ok_and(|found| found == exe))
    });
    if on_path { "c360".to_owned() } else { exe.display().to_string() }
}

/// Completes on SIGTERM or Ctrl-C; the handlers are in place when this returns.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_are_refused_without_echoing_them() {
        let refused = [
            vec!["c360", "serve", "--database-url", "postgres://c360:hunter2@db.internal/c360"],
            vec!["c360", "serve", "--database-url=postgres://db.internal/c360?user=c360&password=hunter2"],
            vec!["c360", "serve", "--redis-url", "rediss://:hunter2@cache.internal:6380"],
            vec!["c360", "bench", "--token", "hunter2"],
        ];
        for args in refused {
            let error = refuse_secret_arguments(&args).expect_err("refused").to_string();
            assert!(!error.contains("hunter2") && error.contains("C360_"), "{error}");
        }
        let allowed = [
            vec!["c360", "serve", "--database-url", "postgres://c360@db.internal/c360?sslmode=verify-full"],
            vec!["c360", "serve", "--redis-url=rediss://cache.internal:6380", "--data-dir", "x:y@z"],
            vec!["c360", "token", "--tenant", "demo", "--role", "agent"],
        ];
        for args in allowed {
            refuse_secret_arguments(&args).expect("no secret");
        }
    }
}
