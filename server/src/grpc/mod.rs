//! gRPC transport: thin handlers over the service layer.
//!
//! - [`auth`] — the interceptor that turns a bearer token into a `Caller`.
//! - [`deadline`] — deadlines: DEADLINE_EXCEEDED at the caller's `grpc-timeout` or the default.
//! - [`limits`] — load limits: in-flight bound, token buckets, open streams per subject.
//! - [`error`] — `DomainError` → `tonic::Status` with rich details.
//! - [`profiles`] — `c360.v1.ProfileService`.
//! - [`consents`] — `c360.v1.ConsentService`.
//! - [`events`] — `c360.v1.EventService`.
//! - [`tenants`] — `c360.v1.TenantService`.
//! - [`privacy`] — `c360.v1.PrivacyService`.
//! - [`identity`] — `c360.v1.IdentityService` (merges).

pub mod auth;
pub mod consents;
pub mod deadline;
pub mod error;
pub mod events;
pub mod identity;
pub mod limits;
pub mod privacy;
pub mod profiles;
pub mod tenants;
