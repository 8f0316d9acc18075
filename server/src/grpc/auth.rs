//! Bearer-token authentication for every c360 RPC.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use super::limits::RateLimits;
use crate::auth::{Caller, JwtKeys};

/// Verifies `authorization: Bearer <JWT>`, takes a token from the caller's
/// rate-limit buckets and stores the [`Caller`] in the request's extensions;
/// a missing or bad token is UNAUTHENTICATED, an empty bucket
/// RESOURCE_EXHAUSTED.
#[derive(Clone)]
pub struct Authenticate {
    keys: Arc<JwtKeys>,
    limits: RateLimits,
}

impl Authenticate {
    /// An interceptor verifying with `keys` and limiting by `limits`.
    pub fn new(keys: Arc<JwtKeys>, limits: RateLimits) -> Self {
        Self { keys, limits }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let value = header.to_str().map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Status::unauthenticated("authorization must be 'Bearer <token>'"));
            }
        };
        // Why a token was refused helps an attacker more than a client: the
        // reason goes to the log, the reply says only that it was refused.
        let caller = self.keys.verify(token).map_err(|e| {
            tracing::info!(reason = %e, "token refused");
            Status::unauthenticated("invalid or expired token")
        })?;
        self.limits.check(&caller)?;
        let request_id = request_id(&request);
        request.extensions_mut().insert(caller.for_request(request_id));
        Ok(request)
    }
}

/// Longest request id kept from a caller's `x-request-id`.
const MAX_REQUEST_ID: usize = 128;

/// The caller's `x-request-id`, if it sent a usable one (printable ASCII,
/// cut to 128 characters): the audit trail names the request by it.
fn request_id(request: &Request<()>) -> Option<String> {
    let sent = request.metadata().get("x-request-id")?.to_str().ok()?;
    (!sent.is_empty() && sent.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| sent.chars().take(MAX_REQUEST_ID).collect())
}

/// The caller the interceptor authenticated. Fails closed: a service mounted
/// without the interceptor answers UNAUTHENTICATED rather than serving.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}
