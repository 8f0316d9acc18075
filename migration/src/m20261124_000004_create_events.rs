//! The `events` table: customer interactions (purchases, support cases, page
//! views, …) as the EventService and `c360 seed` write them.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000004_create_events"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(ColumnDef::new(Events::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Events::EventId).string_len(200).not_null())
                    .col(ColumnDef::new(Events::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(Events::EventType).string_len(40).not_null())
                    .col(ColumnDef::new(Events::Channel).string_len(40).null())
                    .col(ColumnDef::new(Events::Source).string_len(100).not_null())
                    .col(ColumnDef::new(Events::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Events::ReceivedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Events::AmountMinor).big_integer().null())
                    .col(ColumnDef::new(Events::Currency).string_len(3).null())
                    .col(ColumnDef::new(Events::Properties).json_binary().not_null())
                    // The client's event id is the idempotency key: a re-sent
                    // event cannot land twice.
                    .primary_key(Index::create().name("pk_events").col(Events::TenantId).col(Events::EventId))
                    .to_owned(),
            )
            .await?;
        // A customer's timeline, newest first, with the event id as the
        // tie-breaker of a stable cursor.
        let sql = match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                "CREATE INDEX idx_events_timeline ON events (tenant_id, profile_id, occurred_at DESC, event_id)"
            }
            _ => "CREATE INDEX idx_events_timeline ON events (tenant_id, profile_id, occurred_at, event_id)",
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    TenantId,
    EventId,
    ProfileId,
    EventType,
    Channel,
    Source,
    OccurredAt,
    ReceivedAt,
    AmountMinor,
    Currency,
    Properties,
}
