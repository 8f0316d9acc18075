//! `tenant_settings`: one row per tenant whose settings an admin changed
//! (a tenant without a row has the defaults), as a JSON document with a
//! version for optimistic concurrency.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000008_tenant_settings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantSettings::Table)
                    .col(ColumnDef::new(TenantSettings::TenantId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(TenantSettings::Settings).text().not_null())
                    .col(ColumnDef::new(TenantSettings::Version).big_integer().not_null())
                    .col(ColumnDef::new(TenantSettings::UpdatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(TenantSettings::UpdatedBy).string_len(255).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TenantSettings::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum TenantSettings {
    Table,
    TenantId,
    Settings,
    Version,
    UpdatedAt,
    UpdatedBy,
}
