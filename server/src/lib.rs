//! c360: a Customer 360 data service.
//!
//! Data flows one way: transport → service → domain rules → store.
//!
//! - [`domain`] — plain types and rules (no tonic, no SeaORM).
//! - [`auth`] — tokens, roles, the permission table: the only code deciding access.
//! - [`service`] — operations taking a `&Caller`, composing domain and store in transactions.
//! - [`cache`] — the read-through profile cache (in-process L1, Redis L2): all keys and invalidation.
//! - [`convert`] — proto ↔ domain conversions; [`metrics`] — Prometheus counters.
//! - [`store`] — SeaORM queries; [`grpc`]: thin tonic handlers; [`http`]: health endpoints.
//! - [`batch`] — opportunistic batching of concurrent store calls.
//! - [`import`] — legacy CSV files into profiles, through the same unit of work as every write.
//! - [`tls`] — TLS of the listeners and clients, and the refusal of plaintext over a network.
//! - [`files`] — private files and directories (the data directory, secrets, the embedded database).
//! - [`app`] — startup that tests can drive; [`config`]: flags and `C360_*` variables; [`cli`]: the binary's commands.

pub mod app;
pub mod auth;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dedupe;
pub mod domain;
pub mod files;
pub mod grpc;
pub mod http;
pub mod import;
pub mod jobs;
pub mod metrics;
pub mod outbox;
pub mod seed;
pub mod service;
pub mod store;
pub mod tls;

pub use app::App;
pub use config::Config;
