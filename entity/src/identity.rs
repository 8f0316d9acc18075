//! `identities`: the index from a normalized identifier to the live profile holding it.

use sea_orm::entity::prelude::*;

/// One identifier of one live profile. The primary key makes a strong
/// identifier belong to at most one live profile per tenant; a deleted
/// profile's rows are removed, which releases its identifiers.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "identities")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// EMAIL, PHONE or EXTERNAL_ID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_type: String,
    /// The source system for EXTERNAL_ID; empty for the others.
    #[sea_orm(primary_key, auto_increment = false)]
    pub namespace: String,
    /// The normalized value (docs/normalization.md).
    #[sea_orm(primary_key, auto_increment = false)]
    pub value: String,
    /// The profile holding it.
    pub profile_id: Uuid,
    /// When it was claimed.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
