//! `events`: customer interactions, one row per event a source system sent.

use sea_orm::entity::prelude::*;

/// One interaction of one customer. The client-supplied `event_id` is unique
/// per tenant, so a re-sent event has no second effect.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The sender's id of the event: the idempotency key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    /// The profile the event landed on.
    pub profile_id: Uuid,
    /// PURCHASE, SUPPORT_CASE, PAGE_VIEW, …
    pub event_type: String,
    /// WEB, STORE, EMAIL, …; NULL when the source did not say.
    pub channel: Option<String>,
    /// The sending system, e.g. "shopify".
    pub source: String,
    /// When it happened, by the source's clock.
    pub occurred_at: DateTimeUtc,
    /// When c360 stored it.
    pub received_at: DateTimeUtc,
    /// Amount in the currency's minor units (cents; yen), where relevant.
    pub amount_minor: Option<i64>,
    /// ISO 4217 code of `amount_minor`.
    pub currency: Option<String>,
    /// Anything else the source sent.
    pub properties: Json,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
