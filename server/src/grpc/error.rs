//! The one mapping from domain errors to gRPC statuses with rich details
//! (`google.rpc.BadRequest`, `ErrorInfo`, `ResourceInfo`, `RetryInfo`).

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::DomainError;

/// `ErrorInfo.domain` of c360's errors.
pub const ERROR_DOMAIN: &str = "c360.v1";

impl From<DomainError> for Status {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::InvalidArgument(violations) => {
                let violations =
                    violations.into_iter().map(|v| FieldViolation::new(v.field, v.description)).collect::<Vec<_>>();
                Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
            }
            DomainError::NotFound { resource, id } => {
                let details = ErrorDetails::with_resource_info(resource, id, "", "not found");
                Status::with_error_details(Code::NotFound, message, details)
            }
            DomainError::IdentifierConflict { field, identifier, holder } => {
                let metadata = HashMap::from([
                    ("field".to_owned(), field),
                    ("identifier_type".to_owned(), identifier.id_type.as_str().to_owned()),
                    ("conflicting_profile_id".to_owned(), holder.to_string()),
                ]);
                let mut details = ErrorDetails::with_error_info("IDENTIFIER_IN_USE", ERROR_DOMAIN, metadata);
                details.set_resource_info("profile", holder.to_string(), "", "holds the identifier");
                Status::with_error_details(Code::AlreadyExists, message, details)
            }
            DomainError::StaleEtag { current, .. } => {
                let metadata = HashMap::from([("current_etag".to_owned(), current)]);
                let details = ErrorDetails::with_error_info("STALE_ETAG", ERROR_DOMAIN, metadata);
                Status::with_error_details(Code::Aborted, message, details)
            }
            DomainError::FailedPrecondition(_) => Status::failed_precondition(message),
            DomainError::AlreadyExists(_) => Status::already_exists(message),
            DomainError::Aborted(_) => Status::aborted(message),
            DomainError::Merged { .. } => Status::failed_precondition(message),
            DomainError::Unauthenticated(_) => Status::unauthenticated(message),
            DomainError::PermissionDenied(_) => Status::permission_denied(message),
            DomainError::OutOfRange(_) => Status::out_of_range(message),
            DomainError::ResourceExhausted(_) => Status::resource_exhausted(message),
            DomainError::QuotaExceeded { retry_after, .. } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info("READ_CAP_EXCEEDED", ERROR_DOMAIN, HashMap::new());
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            DomainError::ShuttingDown(_) => {
                let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
                Status::with_error_details(Code::Unavailable, message, details)
            }
            DomainError::Unavailable(_) => {
                let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
                Status::with_error_details(Code::Unavailable, "a backing store is unavailable; retry", details)
            }
            // The cause was logged where it happened; callers get no internals.
            DomainError::Internal(_) => Status::internal("internal error"),
        }
    }
}
