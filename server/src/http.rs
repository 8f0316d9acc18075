//! The operational HTTP endpoints: `/healthz` (the process is up), `/readyz`
//! (it can serve: the database answers; the cache is reported, but a cache
//! outage does not make an instance unready — reads fall back to the
//! database) and `/metrics` (Prometheus text format). With an internal
//! listener configured, `/readyz` and `/metrics` are served there only.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::{Value, json};

use crate::{cache::ProfileCache, metrics::Metrics, store::Store};

#[derive(Clone)]
struct Ops {
    store: Store,
    cache: ProfileCache,
    metrics: Metrics,
}

/// The public listener's routes when an internal listener carries the rest:
/// liveness only.
pub fn liveness_router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

/// Routes of the operational HTTP server.
pub fn router(store: Store, cache: ProfileCache, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ops { store, cache, metrics })
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    let (entries, bytes) = ops.cache.l1_usage();
    ops.metrics.cache.l1_entries.set(entries as i64);
    ops.metrics.cache.l1_bytes.set(bytes as i64);
    ops.metrics.cache.loads_in_flight.set(ops.cache.loads_in_flight() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ops.metrics.render())
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ops): State<Ops>) -> (StatusCode, Json<Value>) {
    let cache = if ops.cache.channel_up() { "ok" } else { "degraded: reads go to the database" };
    match ops.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "database": "ok", "cache": cache }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database does not answer");
            let body = json!({ "status": "not ready", "database": "unavailable", "cache": cache });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}
