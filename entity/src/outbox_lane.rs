//! `outbox_lanes`: which relay publishes each lane, and how far.

use sea_orm::entity::prelude::*;

/// One of the relay's 16 lanes.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_lanes")]
pub struct Model {
    /// Lane number (0–15).
    #[sea_orm(primary_key, auto_increment = false)]
    pub lane: i16,
    /// The relay that holds the lease, if any.
    pub owner: Option<String>,
    /// When the lease lapses unless renewed.
    pub lease_until: Option<DateTimeUtc>,
    /// Every row of the lane at or below this position is acknowledged by
    /// the broker (or parked).
    pub published_pos: i64,
}

/// No relations are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
