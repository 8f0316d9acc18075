//! The domain error: every failure a caller can see, independent of transport.

use super::{ProfileId, identifiers::IdentifierKey};

/// One invalid field of a request, named by its path in the request
/// (e.g. `profile.emails[1].address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong, for a human.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Everything that can go wrong in a domain operation. Each variant says which
/// gRPC status it becomes (see `grpc::error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// Bad input; nothing was written. INVALID_ARGUMENT with field violations.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist in the caller's tenant. NOT_FOUND.
    #[error("{resource} {id} not found")]
    NotFound {
        /// Kind of resource, e.g. "profile".
        resource: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A strong identifier is held by another live profile. ALREADY_EXISTS,
    /// with the holder's id in the details.
    #[error("{field}: identifier already belongs to profile {holder}")]
    IdentifierConflict {
        /// Request path of the identifier.
        field: String,
        /// The normalized identifier.
        identifier: IdentifierKey,
        /// The profile that holds it.
        holder: ProfileId,
    },
    /// The thing asked for exists already (a job of the kind is running).
    /// ALREADY_EXISTS.
    #[error("{0}")]
    AlreadyExists(String),
    /// The etag sent is not the current one. ABORTED: re-read and retry.
    #[error("etag {sent} is stale; the current etag is {current}")]
    StaleEtag {
        /// The etag the caller sent.
        sent: String,
        /// The current etag.
        current: String,
    },
    /// The profile was merged into another: ask that one. FAILED_PRECONDITION
    /// where it reaches a caller; the service follows it where it can.
    #[error("profile {id} was merged into profile {into}")]
    Merged {
        /// The merged profile.
        id: ProfileId,
        /// The profile it resolves to.
        into: ProfileId,
    },
    /// A concurrent change to the same records won (a deadlock or
    /// serialization failure rolled this one back): retry. ABORTED.
    #[error("{0}")]
    Aborted(String),
    /// The operation does not apply to the resource in its current state.
    /// FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No valid credentials. UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the needed role. PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(String),
    /// A position or range lies outside what is kept. OUT_OF_RANGE.
    #[error("{0}")]
    OutOfRange(String),
    /// The caller used more than its share (a stream it reads too slowly).
    /// RESOURCE_EXHAUSTED.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A quota ran out (a tenant's read cap); it renews after `retry_after`.
    /// RESOURCE_EXHAUSTED with `RetryInfo`.
    #[error("{message}")]
    QuotaExceeded {
        /// What ran out, for the caller.
        message: String,
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// This instance is shutting down; another one can serve. UNAVAILABLE.
    #[error("{0}")]
    ShuttingDown(String),
    /// A store could not be reached; worth retrying. UNAVAILABLE. The cause is
    /// logged, not returned.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected store answer. INTERNAL. The cause is logged, not
    /// returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// NOT_FOUND for a profile id.
    pub fn profile_not_found(id: impl ToString) -> Self {
        Self::NotFound { resource: "profile", id: id.to_string() }
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

/// Collects field violations so a request reports all its bad fields at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Keeps the value of `result`, or records its error against `field`.
    pub fn check<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Keeps the value of `result`, or records its field violations.
    pub fn absorb<T>(&mut self, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(DomainError::InvalidArgument(list)) => {
                self.0.extend(list);
                None
            }
            Err(other) => {
                self.add("", other.to_string());
                None
            }
        }
    }

    /// `Ok(value)` when nothing was recorded, else INVALID_ARGUMENT with all of them.
    pub fn into_result<T>(self, value: T) -> Result<T, DomainError> {
        if self.0.is_empty() { Ok(value) } else { Err(DomainError::InvalidArgument(self.0)) }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
