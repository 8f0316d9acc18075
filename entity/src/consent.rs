//! `consents`: the recorded decision in force, per profile, purpose and contact point.

use sea_orm::entity::prelude::*;

/// The decision in force for one purpose of one profile (and one contact
/// point, or '' for the whole purpose): a copy of its `consent_decisions`
/// row, so a check reads one row. Maintained in the transaction that records
/// a decision; expiry is evaluated on read.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "consents")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The person.
    #[sea_orm(primary_key, auto_increment = false)]
    pub profile_id: Uuid,
    /// The purpose.
    #[sea_orm(primary_key, auto_increment = false)]
    pub purpose: String,
    /// EMAIL, PHONE or '' (the whole purpose).
    #[sea_orm(primary_key, auto_increment = false)]
    pub contact_type: String,
    /// The normalized contact value or ''.
    #[sea_orm(primary_key, auto_increment = false)]
    pub contact_value: String,
    /// The decision in force (`consent_decisions.id`).
    pub decision_id: Uuid,
    /// GRANTED, DENIED, REVOKED or PENDING.
    pub status: String,
    /// CONSENT, CONTRACT, …
    pub legal_basis: String,
    /// The capturing system.
    pub source: String,
    /// WEB, EMAIL, STORE, …
    pub channel: Option<String>,
    /// When the person decided.
    pub captured_at: DateTimeUtc,
    /// When a grant lapses.
    pub expires_at: Option<DateTimeUtc>,
    /// Proof of the decision.
    pub evidence: Option<String>,
    /// The client's idempotency key.
    pub request_id: Option<String>,
    /// Subject of the caller that recorded it.
    pub recorded_by: String,
    /// When c360 recorded it.
    pub recorded_at: DateTimeUtc,
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
