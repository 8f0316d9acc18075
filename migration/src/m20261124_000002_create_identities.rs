//! The `identities` table: normalized identifier → live profile.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000002_create_identities"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Identities::Table)
                    .col(ColumnDef::new(Identities::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Identities::IdType).string_len(16).not_null())
                    .col(ColumnDef::new(Identities::Namespace).string_len(64).not_null())
                    .col(ColumnDef::new(Identities::Value).string_len(320).not_null())
                    .col(ColumnDef::new(Identities::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(Identities::CreatedAt).timestamp_with_time_zone().not_null())
                    // The key is the uniqueness rule: one live holder per identifier and tenant.
                    .primary_key(
                        Index::create()
                            .name("pk_identities")
                            .col(Identities::TenantId)
                            .col(Identities::IdType)
                            .col(Identities::Namespace)
                            .col(Identities::Value),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_identities_profile")
                    .table(Identities::Table)
                    .col(Identities::TenantId)
                    .col(Identities::ProfileId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Identities::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    TenantId,
    IdType,
    Namespace,
    Value,
    ProfileId,
    CreatedAt,
}
