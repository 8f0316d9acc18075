//! `outbox_parked`: events the broker refused for good, and the later events
//! of the same customer that wait behind them.

use sea_orm::entity::prelude::*;

/// One outbox row taken out of the flow until an operator retries or skips it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_parked")]
pub struct Model {
    /// The outbox row (`outbox.seq`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// Its position.
    pub pos: i64,
    /// Its lane.
    pub lane: i16,
    /// Owning tenant.
    pub tenant_id: String,
    /// The customer whose later events wait behind it.
    pub aggregate_id: Uuid,
    /// e.g. `ConsentUpdatedEvent`.
    pub event_type: String,
    /// Why the broker refused it, or which parked row it waits for.
    pub reason: String,
    /// NULL for a refused row; for a row held back, the refused row's `seq`.
    pub waits_for: Option<i64>,
    /// An operator asked to publish it again.
    pub retry_requested: bool,
    /// When it was taken out of the flow.
    pub parked_at: DateTimeUtc,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
