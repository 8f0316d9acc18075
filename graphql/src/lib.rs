//! The GraphQL facade over c360's gRPC services.
//!
//! It reaches the data only through the generated gRPC clients
//! ([`upstream`]), forwarding the caller's bearer token, so access and
//! masking are decided in one place, the service layer: the facade adds and
//! removes nothing. `c360 serve` mounts it in the same process (calls go
//! straight to the services' tower stack); `c360 graphql --upstream URL` runs
//! it alone against a remote c360.

pub mod errors;
mod guards;
mod http;
pub mod loaders;
pub mod schema;
pub mod upstream;

use async_graphql::extensions::apollo_persisted_queries::{ApolloPersistedQueries, LruCacheStorage};

pub use self::{
    schema::Schema,
    upstream::{Session, Transport, Upstream},
};

/// The guards every query passes before any upstream call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deepest selection nesting.
    pub max_depth: usize,
    /// Highest complexity: each field costs 1, a connection its page size times its nodes.
    pub max_complexity: usize,
    /// Largest `first` of a connection.
    pub max_page_size: i32,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// Whether the schema answers introspection queries.
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 5_000,
            max_page_size: 100,
            max_query_bytes: 32 * 1024,
            introspection: true,
        }
    }
}

/// Browser origins allowed to call the facade (CORS).
#[derive(Debug, Clone, Default)]
pub enum Origins {
    /// Same-origin only (no CORS headers).
    #[default]
    None,
    /// Any origin (`*`; credentials are bearer tokens, never cookies).
    Any,
    /// These origins exactly (`https://app.example.com`).
    List(Vec<String>),
}

/// How the facade is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The query guards.
    pub limits: Limits,
    /// CORS origins.
    pub origins: Origins,
}

/// The facade: a schema over an upstream, and its HTTP routes.
#[derive(Clone)]
pub struct Facade {
    schema: Schema,
    upstream: Upstream,
    options: Options,
}

impl Facade {
    /// A facade calling `upstream`.
    pub fn new(upstream: Upstream, options: Options) -> Self {
        Self { schema: build_schema(&options.limits), upstream, options }
    }

    /// The schema in SDL (what `graphql/schema.graphql` holds).
    pub fn sdl(&self) -> String {
        self.schema.sdl()
    }

    /// The routes: `/graphql` (POST, GET, WebSocket, GraphiQL for browsers)
    /// and GraphiQL's assets.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }
}

/// The schema with its guards.
pub fn build_schema(limits: &Limits) -> Schema {
    let mut builder = Schema::build(schema::Query, schema::mutation::Mutation, schema::subscription::Subscription)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .extension(guards::PageSizes::new(limits.max_page_size))
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(1024)))
        .data(limits.clone());
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The SDL of the schema with default limits (guards do not change it).
pub fn sdl() -> String {
    build_schema(&Limits::default()).sdl()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema checked into the repository, reviewed with every change.
    const CHECKED_IN: &str = include_str!("../schema.graphql");

    #[test]
    fn the_checked_in_sdl_is_the_schema() {
        let current = sdl();
        if std::env::var_os("C360_UPDATE_SCHEMA").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"), &current).expect("write the SDL");
            return;
        }
        assert!(
            current == CHECKED_IN,
            "graphql/schema.graphql differs from the code's schema: review the change, then write it with \
             `C360_UPDATE_SCHEMA=1 cargo nextest run -p c360-graphql`"
        );
    }

    #[tokio::test]
    async fn every_type_field_argument_and_value_has_a_description() {
        let schema = build_schema(&Limits::default());
        let query = "{ __schema { types { name description \
                       fields { name description args { name description } } \
                       inputFields { name description } enumValues { name description } } } }";
        let response = schema.execute(query).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = response.data.into_json().expect("json");
        let mut missing = Vec::new();
        let described = |v: &serde_json::Value| v["description"].as_str().is_some_and(|d| !d.trim().is_empty());
        for ty in data["__schema"]["types"].as_array().expect("types") {
            let name = ty["name"].as_str().unwrap_or_default();
            // The spec's own scalars come undescribed.
            if name.starts_with("__") || ["ID", "String", "Int", "Float", "Boolean"].contains(&name) {
                continue;
            }
            if !described(ty) {
                missing.push(name.to_owned());
            }
            for member in ["fields", "inputFields", "enumValues"] {
                for field in ty[member].as_array().into_iter().flatten() {
                    let field_name = field["name"].as_str().unwrap_or_default();
                    if !described(field) {
                        missing.push(format!("{name}.{field_name}"));
                    }
                    for arg in field["args"].as_array().into_iter().flatten() {
                        if !described(arg) {
                            missing.push(format!("{name}.{field_name}({})", arg["name"].as_str().unwrap_or_default()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "without a description: {missing:#?}");
    }
}
