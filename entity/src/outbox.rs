//! `outbox`: domain events committed with the change they describe, awaiting the relay.

use sea_orm::entity::prelude::*;

/// One domain event. Written in the same transaction as its change, so an
/// event exists if and only if the change committed.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Insertion order: a row with a lower `seq` may commit after a higher one.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// Position in commit order, stamped after commit; NULL until then. The
    /// relay and the change stream read by it.
    pub pos: Option<i64>,
    /// Relay lane (0–15), from the customer id: one relay at a time
    /// publishes a lane, which keeps each customer's events in order.
    pub lane: i16,
    /// The envelope's `eventId` (UUID v7), stable across redeliveries.
    pub event_id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Aggregate kind, e.g. "profile".
    pub aggregate_type: String,
    /// The aggregate (profile id); the broker's ordering key.
    pub aggregate_id: Uuid,
    /// e.g. `CustomerProfileCreatedEvent`.
    pub event_type: String,
    /// Topic / subject, e.g. `crm.customer360.profile.created`.
    pub subject: String,
    /// The whole envelope as published.
    pub payload: Json,
    /// When the change happened.
    pub created_at: DateTimeUtc,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
