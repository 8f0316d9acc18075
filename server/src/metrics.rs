//! Prometheus metrics, served as text on `/metrics`.
//!
//! Counters are taken out of their registered family once and cloned into the
//! code that counts (a prometheus-client `Counter` clone shares its atomic),
//! so counting on a hot path is one atomic add with no label lookup.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// The process's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Cache counters and gauges.
    pub cache: CacheMetrics,
    /// Queries the batching profile reader sent (`database_loads` per query is its batching).
    pub profile_queries: Counter,
    /// The outbox relay.
    pub outbox: OutboxMetrics,
    /// Calls refused by the load limits.
    pub limits: LimitMetrics,
}

/// Calls the load limits refused, by reason.
#[derive(Clone, Debug, Default)]
pub struct LimitMetrics {
    /// Unary RPCs shed because the in-flight bound was reached (UNAVAILABLE).
    pub shed_overloaded: Counter,
    /// Calls refused by a subject's token bucket (RESOURCE_EXHAUSTED).
    pub rate_limited_subject: Counter,
    /// Calls refused by a tenant's token bucket (RESOURCE_EXHAUSTED).
    pub rate_limited_tenant: Counter,
    /// Change streams refused because the subject had its most open.
    pub watch_streams_refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// What the outbox relay counts.
#[derive(Clone, Debug, Default)]
pub struct OutboxMetrics {
    /// Events the broker acknowledged.
    pub published: Counter,
    /// Rounds in which the broker did not acknowledge every event.
    pub publish_errors: Counter,
    /// Events the broker refused for good, waiting for an operator.
    pub parked: Gauge,
    /// Age of the oldest committed event the broker has not acknowledged.
    pub lag_seconds: Gauge<f64, AtomicU64>,
    /// Lanes this instance's relay holds.
    pub lanes_held: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: &'static str,
    result: &'static str,
}

/// What the cache counts.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    /// L1 (in-process) hits.
    pub l1_hits: Counter,
    /// L1 misses, including reads that bypassed L1.
    pub l1_misses: Counter,
    /// L2 (Redis) hits.
    pub l2_hits: Counter,
    /// L2 misses, including reads that skipped Redis.
    pub l2_misses: Counter,
    /// Redis calls that failed or timed out.
    pub redis_errors: Counter,
    /// Redis calls skipped because the circuit breaker was open.
    pub redis_skipped: Counter,
    /// Circuit breaker state: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
    /// Whether the cross-instance invalidation channel is subscribed (1) or not (0).
    pub invalidation_channel_up: Gauge,
    /// Invalidation messages received on the channel.
    pub invalidations_received: Counter,
    /// Reads answered by the database after missing every tier.
    pub database_loads: Counter,
    /// Holds standing: writes whose invalidation Redis could not confirm.
    pub pending_invalidations: Gauge,
    /// Whether this instance serves from its caches now (1) or reads the database (0).
    pub trusted: Gauge,
    /// Writes that left a hold (Redis failed, or an instance did not acknowledge in time).
    pub holds: Counter,
    /// L1 entries (set when scraped).
    pub l1_entries: Gauge,
    /// Approximate L1 bytes (set when scraped).
    pub l1_bytes: Gauge,
    /// Profiles with a database load in flight (set when scraped).
    pub loads_in_flight: Gauge,
}

impl Metrics {
    /// A registry with every c360 metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("c360");
        let requests = Family::<TierLabels, Counter>::default();
        let member = |tier, result| requests.get_or_create(&TierLabels { tier, result }).clone();
        let cache = CacheMetrics {
            l1_hits: member("l1", "hit"),
            l1_misses: member("l1", "miss"),
            l2_hits: member("l2", "hit"),
            l2_misses: member("l2", "miss"),
            ..CacheMetrics::default()
        };
        let sub = registry.sub_registry_with_prefix("cache");
        sub.register("requests", "Profile cache lookups by tier and result", requests.clone());
        sub.register("redis_errors", "Redis calls that failed or timed out", cache.redis_errors.clone());
        sub.register(
            "redis_skipped",
            "Redis calls skipped while the circuit breaker was open",
            cache.redis_skipped.clone(),
        );
        sub.register(
            "breaker_state",
            "Redis circuit breaker: 0 closed, 1 open, 2 half-open",
            cache.breaker_state.clone(),
        );
        sub.register(
            "invalidation_channel_up",
            "1 while the cross-instance invalidation channel is subscribed",
            cache.invalidation_channel_up.clone(),
        );
        sub.register("invalidations_received", "Invalidation messages received", cache.invalidations_received.clone());
        sub.register(
            "database_loads",
            "Reads answered by the database after missing the cache",
            cache.database_loads.clone(),
        );
        sub.register(
            "pending_invalidations",
            "Holds standing: writes whose invalidation Redis could not confirm; while any stands, every \
             instance reads the database",
            cache.pending_invalidations.clone(),
        );
        sub.register(
            "trusted",
            "1 while this instance serves from its caches; 0 while it reads the database (a hold, a gap, no \
             channel)",
            cache.trusted.clone(),
        );
        sub.register(
            "holds",
            "Writes that left a hold: Redis failed, or an instance did not acknowledge in time",
            cache.holds.clone(),
        );
        sub.register("l1_entries", "Entries in the in-process cache", cache.l1_entries.clone());
        sub.register("l1_bytes", "Approximate bytes held by the in-process cache", cache.l1_bytes.clone());
        sub.register(
            "loads_in_flight",
            "Profiles whose load is in flight (single flight); settles at 0 when reads stop",
            cache.loads_in_flight.clone(),
        );
        let profile_queries = Counter::default();
        registry.sub_registry_with_prefix("database").register(
            "profile_queries",
            "Queries reading profiles by id; concurrent reads share one",
            profile_queries.clone(),
        );
        let outbox = OutboxMetrics::default();
        let sub = registry.sub_registry_with_prefix("outbox");
        sub.register("published", "Events the broker acknowledged", outbox.published.clone());
        sub.register(
            "publish_errors",
            "Relay rounds in which the broker did not acknowledge every event (they are sent again)",
            outbox.publish_errors.clone(),
        );
        sub.register(
            "parked",
            "Events the broker refused for good, waiting for `c360 outbox retry|skip`",
            outbox.parked.clone(),
        );
        sub.register(
            "lag_seconds",
            "Age of the oldest committed event not yet acknowledged by the broker (0 without a broker)",
            outbox.lag_seconds.clone(),
        );
        sub.register("lanes_held", "Relay lanes this instance publishes", outbox.lanes_held.clone());
        let refused = Family::<ReasonLabels, Counter>::default();
        let member = |reason| refused.get_or_create(&ReasonLabels { reason }).clone();
        let limits = LimitMetrics {
            shed_overloaded: member("overloaded"),
            rate_limited_subject: member("subject_rate"),
            rate_limited_tenant: member("tenant_rate"),
            watch_streams_refused: member("watch_streams"),
        };
        registry.sub_registry_with_prefix("limits").register(
            "refused",
            "Calls refused by the load limits: overloaded (UNAVAILABLE), subject_rate and tenant_rate \
             (RESOURCE_EXHAUSTED), watch_streams (too many open change streams)",
            refused,
        );
        Self { registry: Arc::new(registry), cache, profile_queries, outbox, limits }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
