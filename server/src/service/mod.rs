//! The service layer: each operation checks the caller's permission, runs the
//! domain rules and commits through the store. Transports (gRPC today,
//! GraphQL through gRPC later) call only this.

mod consents;
mod events;
mod profiles;

pub use consents::{ConsentCheck, ConsentState, Consents, HistoryPage, SetOutcome, SubjectInput};
pub use events::{Events, Subscription, WatchRequest};
pub use profiles::{Page, Profiles, SearchCriterion, UpdateRequest};
