//! The service layer: each operation checks the caller's permission, runs the
//! domain rules and commits through the store. Transports (gRPC today,
//! GraphQL through gRPC later) call only this.

mod audit;
mod caps;
mod consents;
mod events;
pub mod identity;
mod jobs;
mod profiles;
mod tenants;
mod views;

pub use audit::{Audit, AuditConfig, AuditJobs, AuditPage, audit_bulk, chain_all};
pub use caps::ReadCaps;
pub use consents::{ConsentCheck, ConsentState, Consents, HistoryPage, InForceOf, SetOutcome, SubjectInput};
pub use events::{ChangeView, EventViews, Events, Subscription, WatchRequest};
pub use jobs::Jobs;
pub use profiles::{
    CandidatePage, Decided, MAX_RESOLVE_RESULTS, MatchExplanation, MergeRequest, Merged, Page, Profiles, RequestKey,
    Resolution, Resolved, SearchCriterion, Unmerged, UpdateRequest,
};
pub use tenants::{SETTINGS_TTL, SettingsUpdate, Tenants};
pub use views::Viewer;
