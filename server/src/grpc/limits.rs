//! Load limits: what everyone together, one tenant and one caller may ask of
//! one instance.
//!
//! - [`AdmissionLayer`]: a bound on unary RPCs in flight. A call beyond it is
//!   shed at once with UNAVAILABLE and `RetryInfo` instead of waiting in a
//!   queue, so the latency of admitted calls stays that of a busy server
//!   rather than growing with the backlog (a client retries elsewhere or
//!   later). Health checks are never shed: an overloaded instance is alive.
//! - [`RateLimits`]: token buckets per subject and per tenant, answering
//!   RESOURCE_EXHAUSTED with `RetryInfo` (how long until a token is free).
//!   Off unless configured. The buckets are this instance's own: N instances
//!   admit N times the rate.
//! - [`WatchSlots`]: open change streams per subject, which the in-flight
//!   bound does not count (a stream lives for hours).
//!
//! The bound on concurrent streams per HTTP/2 connection is set on the
//! server builder (`App`).

use std::{
    collections::HashMap,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::http::{Request, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::error::ERROR_DOMAIN;
use crate::{auth::Caller, metrics::LimitMetrics};

/// How soon a shed caller is told to try again.
const SHED_RETRY: Duration = Duration::from_millis(100);

/// Whether the in-flight bound leaves `path` alone: the change stream
/// (bounded by [`WatchSlots`]) and health checks. Other streams (health
/// watches, reflection) take no token and count against the bound.
fn exempt(path: &str) -> bool {
    path == "/c360.v1.EventService/WatchChanges" || path == "/grpc.health.v1.Health/Check"
}

/// The key of a caller's own bucket and stream count: its subject within
/// its tenant (subjects are unique per tenant only).
fn subject_key(caller: &Caller) -> String {
    format!("{}\u{0}{}", caller.tenant(), caller.subject())
}

/// UNAVAILABLE for a call shed by the in-flight bound.
fn overloaded(limit: usize) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(SHED_RETRY));
    details.set_error_info("OVERLOADED", ERROR_DOMAIN, HashMap::from([("limit".to_owned(), limit.to_string())]));
    Status::with_error_details(Code::Unavailable, "server overloaded: retry with backoff", details)
}

/// Sheds unary RPCs beyond `max_in_flight` (0: no bound).
#[derive(Clone)]
pub struct AdmissionLayer {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    metrics: LimitMetrics,
}

impl AdmissionLayer {
    /// At most `max_in_flight` unary RPCs at once; 0 admits every call.
    pub fn new(max_in_flight: usize, metrics: LimitMetrics) -> Self {
        let permits = (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight)));
        Self { permits, limit: max_in_flight, metrics }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, layer: self.clone() }
    }
}

/// The service [`AdmissionLayer`] makes.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, B> Service<Request<B>> for Admission<S>
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
        let Some(permits) = &self.layer.permits else {
            return Box::pin(self.inner.call(request));
        };
        if exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
            self.layer.metrics.shed_overloaded.inc();
            let answer = overloaded(self.layer.limit).into_http();
            return Box::pin(async move { Ok(answer) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = call.await;
            drop(permit);
            answer
        })
    }
}

/// A token bucket's size: a token every `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between two new tokens.
    pub period: Duration,
    /// Most tokens held (a burst after a quiet spell).
    pub burst: NonZeroU32,
}

impl Rate {
    /// `per_second` tokens a second (fractions allowed: 0.1 is one every ten
    /// seconds) with a burst of `burst` (default: one second's worth, at
    /// least 1); `None` when `per_second` is 0 (off).
    pub fn new(per_second: f64, burst: Option<u32>) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        // A rate so small its period overflows a Duration is "never": one
        // token a century is as good.
        let period = Duration::try_from_secs_f64(1.0 / per_second)
            .unwrap_or(Duration::from_secs(100 * 365 * 86_400))
            .max(Duration::from_nanos(1));
        let one_second = NonZeroU32::new(per_second.ceil().min(f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(one_second);
        Some(Self { period, burst })
    }

    fn limiter(self) -> DefaultKeyedRateLimiter<String> {
        let quota = Quota::with_period(self.period).unwrap_or(Quota::per_second(NonZeroU32::MAX));
        RateLimiter::keyed(quota.allow_burst(self.burst))
    }
}

/// Token buckets per subject (within its tenant) and per tenant.
#[derive(Clone, Default)]
pub struct RateLimits {
    subject: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    tenant: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    metrics: LimitMetrics,
}

impl RateLimits {
    /// Buckets of the given sizes; `None` leaves that kind off.
    pub fn new(subject: Option<Rate>, tenant: Option<Rate>, metrics: LimitMetrics) -> Self {
        Self {
            subject: subject.map(|rate| Arc::new(rate.limiter())),
            tenant: tenant.map(|rate| Arc::new(rate.limiter())),
            metrics,
        }
    }

    /// Takes a token from the caller's buckets, or says when to try again.
    /// A call refused by its tenant's bucket leaves the subject's token
    /// taken: both count what was asked, not what was served.
    pub fn check(&self, caller: &Caller) -> Result<(), Status> {
        if let Some(limiter) = &self.subject {
            let key = subject_key(caller);
            if let Err(not_until) = limiter.check_key(&key) {
                self.metrics.rate_limited_subject.inc();
                return Err(rate_limited("subject", not_until.wait_time_from(limiter.clock().now())));
            }
        }
        if let Some(limiter) = &self.tenant {
            let key = caller.tenant().to_string();
            if let Err(not_until) = limiter.check_key(&key) {
                self.metrics.rate_limited_tenant.inc();
                return Err(rate_limited("tenant", not_until.wait_time_from(limiter.clock().now())));
            }
        }
        Ok(())
    }

    /// Forgets buckets that have filled up again (callers gone quiet), so
    /// memory follows the active callers, not every caller ever seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.subject, &self.tenant].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Whether any bucket is configured.
    pub fn enabled(&self) -> bool {
        self.subject.is_some() || self.tenant.is_some()
    }
}

/// RESOURCE_EXHAUSTED naming the bucket that ran dry and when it has a token again.
fn rate_limited(bucket: &str, retry_after: Duration) -> Status {
    // A retry sooner than a millisecond would only be refused again.
    let retry_after = retry_after.max(Duration::from_millis(1));
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info("RATE_LIMITED", ERROR_DOMAIN, HashMap::from([("bucket".to_owned(), bucket.to_owned())]));
    let message = format!("rate limit of this {bucket} reached: retry in {} ms", retry_after.as_millis().max(1));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Open change streams per subject (within its tenant).
#[derive(Clone)]
pub struct WatchSlots {
    open: Arc<Mutex<HashMap<String, usize>>>,
    per_subject: usize,
    metrics: LimitMetrics,
}

/// One open stream's slot, given back when the stream ends.
pub struct WatchSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl WatchSlots {
    /// At most `per_subject` open streams per subject (0: no bound).
    pub fn new(per_subject: usize, metrics: LimitMetrics) -> Self {
        Self { open: Arc::default(), per_subject, metrics }
    }

    /// A slot for one more of the caller's streams, or RESOURCE_EXHAUSTED.
    pub fn take(&self, caller: &Caller) -> Result<Option<WatchSlot>, Status> {
        if self.per_subject == 0 {
            return Ok(None);
        }
        let key = subject_key(caller);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key.clone()).or_default();
        if *count >= self.per_subject {
            self.metrics.watch_streams_refused.inc();
            let mut details = ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
            details.set_error_info("TOO_MANY_STREAMS", ERROR_DOMAIN, HashMap::new());
            let message = format!("this subject already has {} open change streams; close one first", self.per_subject);
            return Err(Status::with_error_details(Code::ResourceExhausted, message, details));
        }
        *count += 1;
        Ok(Some(WatchSlot { open: Arc::clone(&self.open), key }))
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_default_their_burst_to_one_second() {
        assert_eq!(Rate::new(0.0, Some(5)), None);
        assert_eq!(Rate::new(-1.0, None), None);
        let rate = Rate::new(20.0, None).expect("on");
        assert_eq!((rate.period, rate.burst.get()), (Duration::from_millis(50), 20));
        assert_eq!(Rate::new(20.0, Some(50)).expect("on").burst.get(), 50);
        let slow = Rate::new(0.1, None).expect("on");
        assert_eq!((slow.period, slow.burst.get()), (Duration::from_secs(10), 1));
    }

    #[test]
    fn health_and_streams_are_never_shed() {
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(exempt("/c360.v1.EventService/WatchChanges"));
        assert!(!exempt("/c360.v1.ProfileService/GetProfile"));
        assert!(!exempt("/grpc.health.v1.Health/Watch"), "unauthenticated streams count");
        assert!(Rate::new(1e-300, None).is_some(), "a tiny rate does not panic");
    }
}
