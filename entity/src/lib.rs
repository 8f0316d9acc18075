//! SeaORM entities of c360: one module per table, typed columns, no logic.
//!
//! Every table is scoped by `tenant_id`. Enumerations are stored as their
//! upper-case names (TEXT), so the same schema runs on PostgreSQL and SQLite;
//! the domain layer parses them.

pub mod consent;
pub mod consent_decision;
pub mod event;
pub mod identity;
pub mod import_row;
pub mod outbox;
pub mod outbox_lane;
pub mod outbox_parked;
pub mod profile;
