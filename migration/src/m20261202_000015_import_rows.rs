//! `import_rows`: what `c360 import` loaded from each source, by the row's
//! key: the profile it went to and a fingerprint of the row, so that a
//! re-import skips unchanged rows, updates changed ones, and names the rows
//! that disappeared from the file (docs/import.md).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000015_import_rows"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ImportRows::Table)
                    .col(ColumnDef::new(ImportRows::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ImportRows::Source).string_len(64).not_null())
                    .col(ColumnDef::new(ImportRows::RowKey).string_len(256).not_null())
                    .col(ColumnDef::new(ImportRows::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(ImportRows::Fingerprint).string_len(64).not_null())
                    .col(ColumnDef::new(ImportRows::ImportedAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_import_rows")
                            .col(ImportRows::TenantId)
                            .col(ImportRows::Source)
                            .col(ImportRows::RowKey),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ImportRows::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ImportRows {
    Table,
    TenantId,
    Source,
    RowKey,
    ProfileId,
    Fingerprint,
    ImportedAt,
}
