//! `cache_instances` and `cache_holds`: what the instances sharing a Redis
//! cache agree on through the database, where Redis alone cannot promise it.
//!
//! An instance serves from its caches only while its row in `cache_instances`
//! is fresh and no row stands in `cache_holds`. A write that could not reach
//! every instance's cache through Redis leaves a hold (with the Redis writes
//! it still owes) and waits until every instance has seen it, so no instance
//! serves a copy older than the write afterwards. Times are the database's
//! own clock in milliseconds, so instances' clocks never meet.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000012_cache_peers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CacheInstances::Table)
                    .col(ColumnDef::new(CacheInstances::Id).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(CacheInstances::SeenMs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CacheHolds::Table)
                    .col(ColumnDef::new(CacheHolds::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(CacheHolds::CreatedMs).big_integer().not_null())
                    .col(ColumnDef::new(CacheHolds::Writes).text().not_null())
                    .col(ColumnDef::new(CacheHolds::Applied).boolean().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CacheHolds::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(CacheInstances::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum CacheInstances {
    Table,
    Id,
    SeenMs,
}

#[derive(DeriveIden)]
enum CacheHolds {
    Table,
    Id,
    CreatedMs,
    Writes,
    Applied,
}
