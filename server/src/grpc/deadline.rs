//! Deadlines: a unary RPC ends by the caller's `grpc-timeout` or the
//! server's default for it (`--request-timeout`), whichever comes first, and
//! then answers DEADLINE_EXCEEDED.
//!
//! tonic's own timeout (always on, outside every layer) answers CANCELLED,
//! which tells a client its call was abandoned rather than late. This layer
//! sits inside it and ends the call a little before the caller's deadline (a
//! tenth of it, at most 50 ms), so the answer reaches the caller before its
//! own timer gives up on the call.
//! Streams (the change stream, health watches, reflection) are not bounded
//! here: they live until the caller hangs up or its token expires.
//!
//! Dropping a handler at its deadline is safe for writes: a unit of work
//! commits and invalidates on a task of its own.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::http::{HeaderMap, Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// Most of the head start the answer gets over the caller's own timer.
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// RPCs that stream: no deadline of their own.
fn streams(path: &str) -> bool {
    path == "/c360.v1.EventService/WatchChanges"
        || path == "/grpc.health.v1.Health/Watch"
        || path.starts_with("/grpc.reflection.")
}

/// The caller's `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a unit).
fn caller_timeout(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("grpc-timeout")?.to_str().ok()?;
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Bounds every unary RPC by a deadline.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    /// Unary RPCs last at most `default` unless the caller asks for less.
    pub fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner, default: self.default }
    }
}

/// The service [`DeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if streams(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let budget = match caller_timeout(request.headers()) {
            Some(asked) => (asked - (asked / 10).min(MAX_MARGIN)).min(self.default),
            None => self.default,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(budget, call).await {
                Ok(answer) => answer,
                Err(_) => {
                    let message = format!("the deadline passed ({} ms)", budget.as_millis());
                    Ok(Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let parse = |raw: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", raw.parse().expect("header"));
            caller_timeout(&headers)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "12", "123456789S", "1x", "-1S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(streams("/c360.v1.EventService/WatchChanges"));
        assert!(!streams("/c360.v1.ProfileService/GetProfile"));
    }
}
