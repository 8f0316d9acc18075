//! The `profiles` table.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_create_profiles"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Profiles::Table)
                    .col(ColumnDef::new(Profiles::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Profiles::Id).uuid().not_null())
                    .col(ColumnDef::new(Profiles::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Profiles::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Profiles::GivenName).string_len(200).null())
                    .col(ColumnDef::new(Profiles::FamilyName).string_len(200).null())
                    .col(ColumnDef::new(Profiles::CompanyName).string_len(300).null())
                    .col(ColumnDef::new(Profiles::Segment).string_len(100).null())
                    .col(ColumnDef::new(Profiles::BirthDate).date().null())
                    .col(ColumnDef::new(Profiles::PrimaryContactId).uuid().null())
                    .col(ColumnDef::new(Profiles::Emails).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::Phones).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::Addresses).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::ExternalIds).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::Attributes).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::Lineage).json_binary().not_null())
                    .col(ColumnDef::new(Profiles::Completeness).double().not_null())
                    .col(ColumnDef::new(Profiles::NameKey).string_len(450).not_null())
                    .col(ColumnDef::new(Profiles::NameKeyRev).string_len(450).not_null())
                    .col(ColumnDef::new(Profiles::CompanyKey).string_len(450).not_null())
                    .col(ColumnDef::new(Profiles::Version).big_integer().not_null())
                    .col(ColumnDef::new(Profiles::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Profiles::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Profiles::TenantId).col(Profiles::Id))
                    .to_owned(),
            )
            .await?;

        // Name-prefix search runs `LIKE 'prefix%'` on the folded keys. On
        // PostgreSQL a btree only serves LIKE under a non-C collation with
        // text_pattern_ops; SQLite's LIKE is answered from the table at the
        // embedded default's scale.
        let keys = [
            ("idx_profiles_name_key", "name_key"),
            ("idx_profiles_name_key_rev", "name_key_rev"),
            ("idx_profiles_company_key", "company_key"),
        ];
        for (index, column) in keys {
            let sql = match manager.get_database_backend() {
                DatabaseBackend::Postgres => {
                    format!("CREATE INDEX {index} ON profiles (tenant_id, {column} text_pattern_ops)")
                }
                _ => format!("CREATE INDEX {index} ON profiles (tenant_id, {column})"),
            };
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Profiles::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    TenantId,
    Id,
    Kind,
    Status,
    GivenName,
    FamilyName,
    CompanyName,
    Segment,
    BirthDate,
    PrimaryContactId,
    Emails,
    Phones,
    Addresses,
    ExternalIds,
    Attributes,
    Lineage,
    Completeness,
    NameKey,
    NameKeyRev,
    CompanyKey,
    Version,
    CreatedAt,
    UpdatedAt,
}
