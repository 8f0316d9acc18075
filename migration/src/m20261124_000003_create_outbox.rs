//! The `outbox` table: domain events awaiting publication.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000003_create_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(ColumnDef::new(Outbox::Seq).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Outbox::EventId).uuid().not_null().unique_key())
                    .col(ColumnDef::new(Outbox::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Outbox::AggregateType).string_len(32).not_null())
                    .col(ColumnDef::new(Outbox::AggregateId).uuid().not_null())
                    .col(ColumnDef::new(Outbox::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(Outbox::Subject).string_len(128).not_null())
                    .col(ColumnDef::new(Outbox::Payload).json_binary().not_null())
                    .col(ColumnDef::new(Outbox::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Outbox::PublishedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        // The relay scans pending rows in order; published rows are pruned later.
        let pending = match manager.get_database_backend() {
            DatabaseBackend::Postgres | DatabaseBackend::Sqlite => {
                "CREATE INDEX idx_outbox_pending ON outbox (seq) WHERE published_at IS NULL"
            }
            _ => "CREATE INDEX idx_outbox_pending ON outbox (published_at, seq)",
        };
        manager.get_connection().execute_unprepared(pending).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_aggregate")
                    .table(Outbox::Table)
                    .col(Outbox::TenantId)
                    .col(Outbox::AggregateId)
                    .col(Outbox::Seq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    EventId,
    TenantId,
    AggregateType,
    AggregateId,
    EventType,
    Subject,
    Payload,
    CreatedAt,
    PublishedAt,
}
