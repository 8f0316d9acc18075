//! `consents`: which recorded decision is in force, per profile, purpose and contact point.

use sea_orm::entity::prelude::*;

/// The decision in force for one purpose of one profile (and one contact
/// point, or '' for the whole purpose). Maintained in the transaction that
/// records a decision; expiry is evaluated on read.
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
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
