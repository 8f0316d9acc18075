//! `consent_decisions`: every consent decision recorded, never rewritten.

use sea_orm::entity::prelude::*;

/// One decision of one person about one purpose (and optionally one contact point).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_decisions")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// UUID v7, assigned when recorded.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The person.
    pub profile_id: Uuid,
    /// EMAIL_MARKETING, SMS_MARKETING, …
    pub purpose: String,
    /// EMAIL or PHONE; empty when the decision covers the whole purpose.
    pub contact_type: String,
    /// The normalized address or number; empty with `contact_type`.
    pub contact_value: String,
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
    /// The client's idempotency key, unique per tenant.
    pub request_id: Option<String>,
    /// Subject of the caller that recorded it.
    pub recorded_by: String,
    /// When c360 recorded it.
    pub recorded_at: DateTimeUtc,
    /// The merged id the caller named, when recorded for the profile it resolved to.
    pub addressed_to: Option<Uuid>,
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
