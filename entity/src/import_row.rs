//! `import_rows`: one row of a legacy file loaded by `c360 import`, by source and key.

use sea_orm::entity::prelude::*;

/// What the last import of a source loaded for one row key.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "import_rows")]
pub struct Model {
    /// Owning tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    /// The normalized source name given to `c360 import --source`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub source: String,
    /// The row's key (also the profile's external id of that source).
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_key: String,
    /// The profile the row was loaded into (it may since have been merged).
    pub profile_id: Uuid,
    /// A hash of the row's cells and the mapping that read them.
    pub fingerprint: String,
    /// When the row was last loaded.
    pub imported_at: DateTimeUtc,
}

/// No relations are declared: joins are written where the queries are.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
