//! The domain core: plain Rust types and rules, no transport or storage types.
//!
//! - [`ids`] — typed ids (`TenantId`, `ProfileId`).
//! - [`audit`] — audit records and their hash chain.
//! - [`consent`] — consent per purpose: decisions, the rules deriving the state in force.
//! - [`error`] — the one error enum every transport maps.
//! - [`identifiers`] — normalization of emails, phones and external ids.
//! - [`profile`] — the profile, its fields, validation, completeness, lineage.
//! - [`events`] — domain events and their envelope.
//! - [`job`] — background jobs, their state and progress.
//! - [`interaction`] — customer interactions (the API's events).
//! - [`merge`] — survivorship: the golden record of a merge and why.
//! - [`unmerge`] — what a merge's profiles become when it is undone.
//! - [`review`] — the stewards' review queue of match candidates.
//! - [`page`] — opaque page tokens.
//! - [`privacy`] — field classes and the masked forms of values.
//! - [`view`] — role-shaped views of records, as callers receive them.
//! - [`settings`] — per-tenant settings.

pub mod audit;
pub mod consent;
pub mod error;
pub mod events;
pub mod identifiers;
pub mod ids;
pub mod interaction;
pub mod job;
pub mod merge;
pub mod page;
pub mod privacy;
pub mod profile;
pub mod review;
pub mod settings;
pub mod unmerge;
pub mod view;

pub use error::{DomainError, FieldViolation};
pub use ids::{ProfileId, TenantId};
