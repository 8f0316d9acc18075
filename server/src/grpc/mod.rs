//! gRPC transport: thin handlers over the service layer.
//!
//! - [`auth`] — the interceptor that turns a bearer token into a `Caller`.
//! - [`convert`] — proto ↔ domain conversions.
//! - [`error`] — `DomainError` → `tonic::Status` with rich details.
//! - [`profiles`] — `c360.v1.ProfileService`.

pub mod auth;
pub mod convert;
pub mod error;
pub mod profiles;
