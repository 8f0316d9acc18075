//! Identifiers a record carried that another profile already held
//! (`held_identifiers`): strong identifiers stay unique, so an import loads
//! such a row without them, and this table keeps what the row said and who
//! held it. Identity resolution reads it: a shared email is evidence that
//! the two are one customer (docs/identity-resolution.md).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000019_held_identifiers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HeldIdentifiers::Table)
                    .col(ColumnDef::new(HeldIdentifiers::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(HeldIdentifiers::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(HeldIdentifiers::IdType).string_len(16).not_null())
                    .col(ColumnDef::new(HeldIdentifiers::Namespace).string_len(64).not_null())
                    .col(ColumnDef::new(HeldIdentifiers::Value).string_len(320).not_null())
                    .col(ColumnDef::new(HeldIdentifiers::HolderId).uuid().not_null())
                    .col(ColumnDef::new(HeldIdentifiers::Source).string_len(64).not_null())
                    .col(ColumnDef::new(HeldIdentifiers::RecordedAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_held_identifiers")
                            .col(HeldIdentifiers::TenantId)
                            .col(HeldIdentifiers::ProfileId)
                            .col(HeldIdentifiers::IdType)
                            .col(HeldIdentifiers::Namespace)
                            .col(HeldIdentifiers::Value),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(HeldIdentifiers::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum HeldIdentifiers {
    Table,
    TenantId,
    ProfileId,
    IdType,
    Namespace,
    Value,
    HolderId,
    Source,
    RecordedAt,
}
