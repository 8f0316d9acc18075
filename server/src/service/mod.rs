//! The service layer: each operation checks the caller's permission, runs the
//! domain rules and commits through the store. Transports (gRPC today,
//! GraphQL through gRPC later) call only this.

mod profiles;

pub use profiles::{Page, Profiles, SearchCriterion, UpdateRequest};
