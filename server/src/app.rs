//! Startup that tests can drive: [`App::build`] connects, migrates and binds
//! (port 0 allowed), exposes the bound addresses, and [`App::run_until`]
//! serves until a shutdown future completes, then drains.

use std::{future::Future, net::SocketAddr, sync::Arc};

use c360_proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        consent_service_server::ConsentServiceServer, event_service_server::EventServiceServer,
        identity_service_server::IdentityServiceServer, privacy_service_server::PrivacyServiceServer,
        profile_service_server::ProfileServiceServer, tenant_service_server::TenantServiceServer,
    },
};
use tokio::{
    net::TcpListener,
    signal::unix::{Signal, SignalKind},
    sync::watch,
};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::{Routes, interceptor::InterceptedService},
    transport::Server,
};

use crate::{
    auth::{JwtKeys, KeySource},
    cache::ProfileCache,
    config::Config,
    grpc::{
        auth::Authenticate,
        consents::ConsentApi,
        deadline::DeadlineLayer,
        events::EventApi,
        identity::IdentityApi,
        limits::{AdmissionLayer, Rate, RateLimits, WatchSlots},
        privacy::PrivacyApi,
        profiles::ProfileApi,
        tenants::TenantApi,
    },
    http,
    jobs::{Deduplicator, JobConfig, Runner},
    metrics::Metrics,
    outbox::{Relay, RelayConfig, Stamper, feed::ChangeFeed, kafka::KafkaSink},
    service::{Audit, AuditConfig, AuditJobs, Consents, Events, Jobs, Profiles, Tenants},
    store::{self, Store},
    tls::{ServerTls, TlsListener},
};

/// Accepted connections with Nagle's algorithm off: gRPC writes small frames,
/// and Nagle's wait for the peer's delayed ACK would add ~40 ms to each call.
/// (tonic sets this only on listeners it binds itself.)
fn no_delay(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    })
}

/// How long a deployment's claim on its Redis prefix lasts unless renewed:
/// after a deployment is gone, another may take the prefix this much later.
const PREFIX_CLAIM: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a starting server waits to serve from its caches (see
/// `cache::peers`): its first reads are then cached ones.
const CACHE_READY: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses to start when another deployment (another database) uses the
/// same Redis key prefix: each would serve the other's cached profiles and
/// drop its invalidations. Instances of one deployment share the prefix by
/// design. Redis down at start is not fatal (the cache is optional): the
/// claim is retried while serving.
async fn check_prefix(cache: &ProfileCache, deployment: &str) -> anyhow::Result<()> {
    match cache.claim_prefix(deployment, PREFIX_CLAIM).await {
        Ok(()) => Ok(()),
        Err(Some(other)) => anyhow::bail!(
            "the Redis key prefix '{prefix}' is used by another deployment (database {other}; this one is \
             {deployment}): two deployments sharing a prefix would serve each other's cached data. Give \
             each its own --cache-prefix (C360_CACHE_PREFIX). If that deployment is gone, delete the Redis \
             key '{prefix}:deployment' or wait up to an hour for its claim to lapse.",
            prefix = cache.prefix()
        ),
        Err(None) => {
            tracing::warn!("Redis did not answer: the cache prefix is not yet checked against other deployments");
            Ok(())
        }
    }
}

/// Renews this deployment's claim on its Redis prefix, and says so loudly if
/// another deployment took it meanwhile.
async fn renew_prefix(cache: ProfileCache, deployment: String, stop: CancellationToken) {
    // Start made the first claim (check_prefix): the first renewal is one period later.
    let period = PREFIX_CLAIM / 12;
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(Some(other)) = cache.claim_prefix(&deployment, PREFIX_CLAIM).await {
            tracing::error!(
                prefix = cache.prefix(),
                other,
                "another deployment uses this Redis key prefix: cached data is shared between deployments"
            );
        }
    }
}

/// How often a key file is checked for changes.
const KEY_FILE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the token keys' file again on SIGHUP and whenever it changed (a
/// rotated secret mounted by an orchestrator changes under a running
/// process). A file that no longer loads keeps the old keys, loudly.
async fn reload_keys(keys: Arc<JwtKeys>, mut hangups: Option<Signal>, stop: CancellationToken) {
    // Only a key file is watched; SIGHUP is handled either way.
    let file = keys.source().file().map(|f| f.display().to_string());
    let mut every = tokio::time::interval(KEY_FILE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A broken file is reported once per new problem, not every check.
    let mut reported = String::new();
    loop {
        let hangup = async {
            match &mut hangups {
                Some(signals) => signals.recv().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = every.tick(), if file.is_some() => "changed",
            _ = hangup => "SIGHUP",
            () = stop.cancelled() => return,
        };
        let Some(file) = &file else {
            tracing::info!("SIGHUP: the token key is not read from a file; nothing to reload");
            continue;
        };
        match keys.reload() {
            Ok(changed) => {
                reported.clear();
                if changed {
                    tracing::info!(%file, trigger = why, "token keys reloaded; remembered tokens forgotten");
                } else if why == "SIGHUP" {
                    tracing::info!(%file, "SIGHUP: token keys unchanged");
                }
            }
            Err(e) if e.to_string() != reported || why == "SIGHUP" => {
                reported = e.to_string();
                tracing::error!(%file, error = %e, "token keys not reloaded; the previous keys stay in use");
            }
            Err(_) => {}
        }
    }
}

/// Serves `router` on `listener` (TLS when configured) until `stop`.
fn serve_http(
    listener: TcpListener,
    tls: Option<&ServerTls>,
    router: axum::Router,
    stop: &CancellationToken,
) -> anyhow::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
    let stopped = stop.clone().cancelled_owned();
    Ok(match tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls.http.clone())?;
            futures::future::Either::Left(axum::serve(listener, router).with_graceful_shutdown(stopped).into_future())
        }
        None => {
            futures::future::Either::Right(axum::serve(listener, router).with_graceful_shutdown(stopped).into_future())
        }
    })
}

/// Forgets full token buckets now and then, so their memory follows the
/// callers active lately.
async fn forget_idle_buckets(limits: RateLimits, stop: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => limits.forget_idle(),
            () = stop.cancelled() => return,
        }
    }
}

/// Largest response message, in bytes (a full BatchGetProfiles page).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A built, bound, not yet serving c360 instance.
pub struct App {
    config: Config,
    store: Store,
    cache: ProfileCache,
    metrics: Metrics,
    /// Stops background work (the cache's invalidation subscriber).
    stop: CancellationToken,
    keys: Arc<JwtKeys>,
    profiles: Profiles,
    consents: Consents,
    events: Events,
    tenants: Tenants,
    /// The audit trail.
    audit: Audit,
    /// The audit trail's background work.
    audit_jobs: AuditJobs,
    feed: ChangeFeed,
    grpc: TcpListener,
    http: TcpListener,
    /// The internal HTTP listener (`/readyz`, `/metrics`), when configured.
    internal: Option<TcpListener>,
    /// The relay, when a broker is configured.
    relay: Option<Relay<KafkaSink>>,
    /// Announces the last outbox position stamped.
    stamped: (watch::Sender<i64>, watch::Receiver<i64>),
    /// The listeners' TLS, when configured.
    tls: Option<ServerTls>,
    /// SIGHUP, listened for from the start: its default action would end
    /// the process.
    hangups: Option<Signal>,
    /// This deployment's id (shared by every instance on its database).
    deployment: String,
}

impl App {
    /// Connects to the database, migrates it (unless told not to), loads the
    /// token key and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check_cleartext()?;
        // Refused before any connection or migration is made.
        let source = config.auth.key_source(&config.data.data_dir)?;
        if !config.embedded() && matches!(source, KeySource::LocalSecret(_)) {
            anyhow::bail!(
                "no token key configured: outside the embedded mode set C360_JWT_SECRET (or --jwt-secret-file), \
                 --jwt-public-key-file or --jwks-file; every instance must verify with the same keys"
            );
        }
        let hangups = tokio::signal::unix::signal(SignalKind::hangup())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; a key file is still watched"))
            .ok();
        let tls = config.tls.server()?;
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let cache_config = config.cache.config(config.server.request_timeout)?;
        let cache = ProfileCache::new(cache_config, metrics.cache.clone(), stop.clone())?;
        let store = config
            .database
            .connect(&config.data.data_dir, config.database.database_max_connections, cache.clone())
            .await?;
        if !config.server.no_migrate {
            store.migrate().await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        }
        let keys = Arc::new(
            JwtKeys::load(&source, &config.auth.jwt_issuer, &config.auth.jwt_audience)?
                .with_max_lifetime(config.auth.jwt_max_lifetime),
        );
        let loader = store.profile_loader(metrics.profile_queries.clone());
        let policy = config.server.normalization.policy()?;
        let audit_config = AuditConfig {
            flush_interval: config.audit.audit_flush_interval,
            buffer: config.audit.audit_buffer,
            retention: config.audit.audit_retention,
        };
        let deployment = store::deployment::get_or_create(store.db())
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the deployment's identity: {e}"))?;
        check_prefix(&cache, &deployment.id).await?;
        if !cache.ready(CACHE_READY).await {
            tracing::warn!(
                "the cache's peers are not confirmed yet (database or Redis slow): reads go to the database until \
                 they are"
            );
        }
        let (audit, audit_jobs) = Audit::new(store.clone(), audit_config, deployment.page_tokens.clone());
        let tenants = Tenants::new(store.clone());
        let profiles = Profiles::new(
            store.clone(),
            loader,
            cache.clone(),
            policy.clone(),
            tenants.clone(),
            audit.clone(),
            deployment.page_tokens.clone(),
        );
        let consents = Consents::new(store.clone(), policy, audit.clone(), deployment.page_tokens);
        let feed = ChangeFeed::new(config.outbox.change_feed_buffer);
        let events = Events::new(store.clone(), feed.clone(), stop.clone(), audit.clone());
        let grpc = TcpListener::bind(config.server.grpc_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (gRPC): {e}", config.server.grpc_addr))?;
        let http = TcpListener::bind(config.server.http_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (HTTP): {e}", config.server.http_addr))?;
        let internal = match config.server.internal_http_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (internal HTTP): {e}"))?,
            ),
            None => None,
        };
        let stamped = watch::channel(0);
        let relay = match &config.outbox.kafka.kafka_brokers {
            Some(_) => {
                let sink = KafkaSink::new(&config.outbox.kafka)?;
                let relay_config = RelayConfig {
                    batch: config.outbox.relay_batch.max(1),
                    lease: config.outbox.relay_lease.max(std::time::Duration::from_secs(1)),
                    ..RelayConfig::default()
                };
                Some(Relay::new(store.db().clone(), sink, relay_config, stamped.1.clone(), metrics.outbox.clone()))
            }
            None => None,
        };
        Ok(Self {
            config,
            store,
            cache,
            metrics,
            stop,
            keys,
            profiles,
            consents,
            events,
            tenants,
            audit,
            audit_jobs,
            feed,
            grpc,
            http,
            internal,
            relay,
            stamped,
            tls,
            hangups,
            deployment: deployment.id,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.server.grpc_addr)
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.server.http_addr)
    }

    /// The bound internal HTTP address, when configured.
    pub fn internal_http_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// The profile cache (for tests that watch it).
    pub fn cache(&self) -> ProfileCache {
        self.cache.clone()
    }

    /// The token keys in use (to mint local tokens).
    pub fn keys(&self) -> Arc<JwtKeys> {
        Arc::clone(&self.keys)
    }

    /// Serves gRPC and HTTP until `shutdown` completes, then stops accepting,
    /// lets in-flight requests finish (up to the configured grace) and closes
    /// the database pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            cache,
            metrics,
            stop,
            keys,
            profiles,
            consents,
            events,
            tenants,
            audit,
            audit_jobs,
            feed,
            grpc,
            http,
            internal,
            relay,
            stamped,
            tls,
            hangups,
            deployment,
        } = self;

        // Background jobs stop after the last request drained, so the events
        // of the last writes are stamped (and published) where possible.
        let jobs = CancellationToken::new();
        let stamper = Stamper::new(
            store.db().clone(),
            store.outbox_written(),
            stamped.0,
            config.outbox.outbox_retention,
            relay.is_some(),
        );
        let stamper_task = tokio::spawn(stamper.run(jobs.clone()));
        let feed_task = tokio::spawn(feed.run(store.db().clone(), stamped.1.clone(), jobs.clone()));
        let audit_task = tokio::spawn(audit_jobs.run(jobs.clone()));
        let relay_task = relay.map(|relay| {
            tracing::info!(relay = relay.id(), "publishing domain events to Kafka");
            tokio::spawn(relay.run(jobs.clone()))
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        // The one list of c360's own services, for both health transitions.
        macro_rules! each_service {
            ($health:ident.$method:ident) => {
                $health.$method::<ProfileServiceServer<ProfileApi>>().await;
                $health.$method::<ConsentServiceServer<ConsentApi>>().await;
                $health.$method::<EventServiceServer<EventApi>>().await;
                $health.$method::<TenantServiceServer<TenantApi>>().await;
                $health.$method::<PrivacyServiceServer<PrivacyApi>>().await;
                $health.$method::<IdentityServiceServer<IdentityApi>>().await;
            };
        }
        each_service!(health.set_serving);
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        // Every service with the same message limits (the generated servers
        // share no trait for them).
        macro_rules! limited {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(config.server.max_request_bytes)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES)
            };
        }
        let queued = Arc::new(tokio::sync::Notify::new());
        let jobs_service = Jobs::new(store.clone(), Arc::clone(&queued));
        let deduplicator = Deduplicator::new(
            store.clone(),
            profiles.clone(),
            config.server.normalization.policy()?,
            Default::default(),
        );
        // A lease under a second could not be renewed in time (and a zero
        // one would stop the renewals altogether).
        let job_config = JobConfig {
            poll: config.jobs.job_poll.max(std::time::Duration::from_millis(10)),
            lease: config.jobs.job_lease.max(std::time::Duration::from_secs(1)),
        };
        let runner_task = tokio::spawn(Runner::new(deduplicator, job_config, queued).run(jobs.clone()));
        let identity_service = limited!(IdentityServiceServer::new(IdentityApi::new(profiles.clone(), jobs_service)));
        let profile_service = limited!(ProfileServiceServer::new(ProfileApi::new(profiles)));
        let consent_service = limited!(ConsentServiceServer::new(ConsentApi::new(consents)));
        let slots = WatchSlots::new(config.server.max_watch_streams, metrics.limits.clone());
        let event_service = limited!(EventServiceServer::new(EventApi::new(events, slots)));
        let tenant_service = limited!(TenantServiceServer::new(TenantApi::new(tenants)));
        let privacy_service = limited!(PrivacyServiceServer::new(PrivacyApi::new(audit)));
        let rate_limits = RateLimits::new(
            Rate::new(config.server.subject_rate_limit, config.server.subject_rate_burst),
            Rate::new(config.server.tenant_rate_limit, config.server.tenant_rate_burst),
            metrics.limits.clone(),
        );
        if rate_limits.enabled() {
            tokio::spawn(forget_idle_buckets(rate_limits.clone(), jobs.clone()));
        }
        tokio::spawn(reload_keys(Arc::clone(&keys), hangups, jobs.clone()));
        tokio::spawn(renew_prefix(cache.clone(), deployment, jobs.clone()));
        let authenticate = Authenticate::new(keys, rate_limits);

        // Keepalive pings find connections that died without a goodbye, so
        // their streams (and the change-stream slots they hold) end.
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
        if let Some(tls) = &tls {
            builder = builder.tls_config(tls.grpc.clone())?;
        }
        // c360's own services, authenticated: served over the network, and
        // called in-process by the GraphQL facade.
        let services = Routes::new(InterceptedService::new(profile_service, authenticate.clone()))
            .add_service(InterceptedService::new(consent_service, authenticate.clone()))
            .add_service(InterceptedService::new(event_service, authenticate.clone()))
            .add_service(InterceptedService::new(tenant_service, authenticate.clone()))
            .add_service(InterceptedService::new(identity_service, authenticate.clone()))
            .add_service(InterceptedService::new(privacy_service, authenticate))
            .prepare();
        // The facade's calls pass the same admission and deadline layers as
        // a network caller's; only HTTP/2 and the socket are skipped.
        // One admission bound for both: the facade's calls share the permits.
        let admission = AdmissionLayer::new(config.server.max_in_flight, metrics.limits.clone());
        let in_process = tower::ServiceBuilder::new()
            .layer(admission.clone())
            .layer(DeadlineLayer::new(config.server.request_timeout))
            .service(services.clone());
        // The HTTP listener asks for no client certificate: where gRPC callers
        // must present one, GraphQL there would be a way around it.
        let mtls_required = config.tls.tls_client_ca_file.is_some() && !config.tls.tls_client_auth_optional;
        if mtls_required && !config.graphql.no_graphql {
            tracing::warn!(
                "GraphQL is not served: gRPC callers must present a client certificate, which the HTTP listener \
                 does not ask for; run `c360 graphql --upstream` with a client certificate instead"
            );
        }
        let graphql = (!config.graphql.no_graphql && !mtls_required)
            .then(|| c360_graphql::Facade::new(c360_graphql::Upstream::new(in_process), config.graphql.options()));
        let grpc_server = builder
            .max_concurrent_streams(config.server.max_concurrent_streams)
            .layer(admission)
            .layer(DeadlineLayer::new(config.server.request_timeout))
            .add_routes(services)
            .add_service(health_service)
            .add_optional_service((!config.server.no_reflection).then_some(reflection_v1))
            .add_optional_service((!config.server.no_reflection).then_some(reflection_v1alpha))
            .serve_with_incoming_shutdown(no_delay(grpc), stop.clone().cancelled_owned());
        let router = http::router(store.clone(), cache, metrics);
        // With an internal listener, the public one answers /healthz only
        // (and GraphQL).
        let (public, internal) = match internal {
            Some(listener) => (http::liveness_router(), Some((listener, router))),
            None => (router, None),
        };
        let public = match &graphql {
            Some(facade) => public.merge(facade.router()),
            None => public,
        };
        let public = serve_http(http, tls.as_ref(), public, &stop)?;
        let internal =
            internal.map(|(listener, router)| serve_http(listener, tls.as_ref(), router, &stop)).transpose()?;
        let mut http_task = tokio::spawn(async move {
            let (public, internal) = tokio::join!(public, async {
                match internal {
                    Some(task) => task.await,
                    None => Ok(()),
                }
            });
            public.and(internal)
        });
        let mut grpc_task = tokio::spawn(grpc_server);

        tokio::select! {
            () = shutdown => tracing::info!("shutting down: draining in-flight requests"),
            result = &mut grpc_task => anyhow::bail!("gRPC server stopped: {:?}", result),
            result = &mut http_task => anyhow::bail!("HTTP server stopped: {:?}", result),
        }
        each_service!(health.set_not_serving);
        stop.cancel();
        let drained = tokio::time::timeout(config.server.shutdown_grace, async {
            let (grpc, http) = tokio::join!(grpc_task, http_task);
            grpc??;
            http??;
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!(grace = ?config.server.shutdown_grace, "requests still running after the grace period; closing")
            }
        }
        jobs.cancel();
        // Buffered read audits are written before the pool closes.
        let _ = audit_task.await;
        let _ = stamper_task.await;
        let _ = feed_task.await;
        // A job stops at its next look at the token and goes back to the
        // queue; one deep in a long step is not waited for past the grace
        // period (its lease lapses and another instance takes it over).
        let mut runner_task = runner_task;
        if tokio::time::timeout(config.server.shutdown_grace, &mut runner_task).await.is_err() {
            // Aborted, its lease stops being renewed (a step already under
            // way on a blocking thread runs to its end, writing nothing).
            runner_task.abort();
            tracing::warn!("a job is still stopping; it is taken over when its lease lapses");
        }
        // A round in progress may wait for the broker; it is not waited for
        // long (what it sent is sent again by whichever relay comes next).
        if let Some(task) = relay_task {
            match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
                Ok(Ok(relay)) => relay.sink().flush(std::time::Duration::from_secs(5)),
                Ok(Err(_)) => {}
                Err(_) => {
                    tracing::warn!("relay still waiting for the broker at shutdown; its lanes lapse with the lease")
                }
            }
        }
        store.close().await?;
        Ok(())
    }
}
