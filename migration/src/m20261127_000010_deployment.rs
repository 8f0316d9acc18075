//! `deployment`: one row naming this deployment (every instance sharing the
//! database): a random id, which tells deployments sharing one Redis key
//! prefix apart, and the key that authenticates page tokens, so a token one
//! instance issued is honoured by every other. The row is written by the
//! first instance that starts (INSERT … ON CONFLICT DO NOTHING), not here.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000010_deployment"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployment::Table)
                    .col(ColumnDef::new(Deployment::Singleton).small_integer().not_null().primary_key())
                    .col(ColumnDef::new(Deployment::Id).string_len(36).not_null())
                    .col(ColumnDef::new(Deployment::PageKey).string_len(64).not_null())
                    .col(ColumnDef::new(Deployment::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Deployment::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Deployment {
    Table,
    Singleton,
    Id,
    PageKey,
    CreatedAt,
}
