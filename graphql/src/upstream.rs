//! The facade's only way to the data: c360's generated gRPC clients, over
//! whatever carries them — the services' own tower stack in the same process
//! (`c360 serve`) or a channel to a remote c360 (`c360 graphql --upstream`).
//! Every call carries the caller's bearer token, so the services decide
//! access and masking exactly as for a gRPC caller.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use c360_proto::v1::{
    consent_service_client::ConsentServiceClient, event_service_client::EventServiceClient,
    identity_service_client::IdentityServiceClient, profile_service_client::ProfileServiceClient,
};
use tonic::{body::Body, metadata::MetadataValue};
use tower::{Service, ServiceExt, util::BoxCloneSyncService};

/// What carries the facade's gRPC calls: any tower service taking gRPC
/// requests (a `tonic::transport::Channel`, or the server's routes).
pub type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// A call that did not reach the services (a connection refused, a reset).
///
/// A type of its own rather than a boxed `dyn Error`: the generated clients'
/// futures must be `Send` for every lifetime, which rustc cannot prove
/// through a trait object's erased lifetime.
#[derive(Debug)]
pub struct TransportError(tonic::codegen::StdError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Largest message the facade accepts from the services (a full page of 1,000 profiles).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The services, reached through one [`Transport`].
#[derive(Clone)]
pub struct Upstream {
    transport: Transport,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

impl Upstream {
    /// Calls the services through `service`.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + Sync + 'static,
        S::Error: Into<tonic::codegen::StdError>,
        S::Future: Send + 'static,
    {
        Self { transport: BoxCloneSyncService::new(service.map_err(|e| TransportError(e.into()))) }
    }

    /// A session of one GraphQL request (or one WebSocket connection) made
    /// with `token` (the caller's bearer token, without "Bearer ").
    pub fn session(&self, token: Option<String>) -> Session {
        Session { upstream: self.clone(), token: token.map(Arc::from), calls: Arc::default() }
    }
}

/// The caller's token and the calls made on its behalf.
#[derive(Clone)]
pub struct Session {
    upstream: Upstream,
    token: Option<Arc<str>>,
    calls: Arc<AtomicUsize>,
}

impl Session {
    /// Wraps `message` as a call on the caller's behalf, and counts it.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// How many calls this session made upstream so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether the caller sent a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `c360.v1.ProfileService`.
    pub fn profiles(&self) -> ProfileServiceClient<Transport> {
        ProfileServiceClient::new(self.upstream.transport.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// `c360.v1.ConsentService`.
    pub fn consents(&self) -> ConsentServiceClient<Transport> {
        ConsentServiceClient::new(self.upstream.transport.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// `c360.v1.IdentityService`.
    pub fn identity(&self) -> IdentityServiceClient<Transport> {
        IdentityServiceClient::new(self.upstream.transport.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// `c360.v1.EventService`.
    pub fn events(&self) -> EventServiceClient<Transport> {
        EventServiceClient::new(self.upstream.transport.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}
