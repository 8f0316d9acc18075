//! How upstream answers become GraphQL ones. Expected failures of a mutation
//! (bad input, a stale etag, a conflict) are typed [`UserError`]s in its
//! payload; anything else is a GraphQL error whose `extensions.code` is the
//! gRPC code's name (`NOT_FOUND`, `PERMISSION_DENIED`, …), with the field
//! violations the service named.

use async_graphql::{ErrorExtensions, SimpleObject};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// An expected failure of a mutation, for the user to fix.
#[derive(Debug, Clone, SimpleObject)]
pub struct UserError {
    /// Path of the input field at fault (e.g. `["input", "emails", "0", "address"]`); empty when the
    /// whole request is.
    pub field: Vec<String>,
    /// The gRPC code's name: `INVALID_ARGUMENT`, `ABORTED` (a stale etag), `ALREADY_EXISTS`,
    /// `FAILED_PRECONDITION` or `NOT_FOUND`.
    pub code: String,
    /// What is wrong, for humans.
    pub message: String,
}

/// The name GraphQL callers see for a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An upstream failure as a GraphQL error: the service's message, and in
/// `extensions` the code and any field violations.
pub fn upstream(status: &Status) -> async_graphql::Error {
    let violations = violations(status);
    async_graphql::Error::new(status.message().to_owned()).extend_with(|_, e| {
        e.set("code", code_name(status.code()));
        if !violations.is_empty() {
            let fields: Vec<async_graphql::Value> = violations
                .iter()
                .map(|(field, description)| {
                    let mut v = async_graphql::indexmap::IndexMap::new();
                    v.insert(async_graphql::Name::new("field"), async_graphql::Value::from(field.as_str()));
                    v.insert(async_graphql::Name::new("message"), async_graphql::Value::from(description.as_str()));
                    async_graphql::Value::Object(v)
                })
                .collect();
            e.set("fieldViolations", async_graphql::Value::List(fields));
        }
    })
}

/// A facade-side refusal (a bad global id, a page too large), before any
/// upstream call: `extensions.code` says which.
pub fn refused(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// The field violations a status carries: (field path, description).
fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default()
}

/// Whether a mutation reports `status` as user errors rather than failing.
fn expected(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument | Code::Aborted | Code::AlreadyExists | Code::FailedPrecondition | Code::NotFound
    )
}

/// A mutation's failure: user errors for an expected one (each field
/// violation its own, with its path in the mutation's `input` argument), a
/// GraphQL error otherwise. `rename` maps the request message's field that
/// an input field fills (`("profile", "customer")`).
pub fn user_errors(status: Status, rename: Option<(&str, &str)>) -> Result<Vec<UserError>, async_graphql::Error> {
    if !expected(status.code()) {
        return Err(upstream(&status));
    }
    let code = code_name(status.code()).to_owned();
    let violations = violations(&status);
    if violations.is_empty() {
        return Ok(vec![UserError { field: Vec::new(), code, message: status.message().to_owned() }]);
    }
    Ok(violations
        .into_iter()
        .map(|(field, message)| UserError { field: input_path(&field, rename), code: code.clone(), message })
        .collect())
}

/// `profile.emails[0].address` (the request message's path) as the GraphQL
/// input path `["input", "customer", "emails", "0", "address"]`.
fn input_path(field: &str, rename: Option<(&str, &str)>) -> Vec<String> {
    let mut path: Vec<String> = field
        .split(['.', '['])
        .map(|part| part.trim_end_matches(']'))
        .filter(|part| !part.is_empty())
        .map(snake_to_camel)
        .collect();
    if let Some((from, to)) = rename
        && path.first().is_some_and(|first| *first == snake_to_camel(from))
    {
        path[0] = to.to_owned();
    }
    path.insert(0, "input".to_owned());
    path
}

/// `postal_code` → `postalCode`, as GraphQL names fields.
pub fn snake_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_become_input_paths() {
        let rename = Some(("profile", "customer"));
        assert_eq!(input_path("profile.emails[0].address", rename), ["input", "customer", "emails", "0", "address"]);
        assert_eq!(input_path("capture_time", None), ["input", "captureTime"]);
        assert_eq!(input_path("source_ids[1]", rename), ["input", "sourceIds", "1"]);
    }
}
