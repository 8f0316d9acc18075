//! Outbox indexes for how the outbox is read now. Every event is written
//! twice (the insert, then its position stamp, which rewrites every index
//! entry), so each index costs two entries per event on the write path.
//!
//! - The unique index on `event_id` goes: ids are UUID v7, generated once
//!   per event in the process that writes it; consumers dedupe by them.
//! - `idx_outbox_aggregate` (tenant, customer, seq) becomes
//!   `idx_outbox_customer` (tenant, customer, pos): one customer's change
//!   stream reads its events by position.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000007_outbox_lean_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_outbox_aggregate").await?;
        db.execute_unprepared("CREATE INDEX idx_outbox_customer ON outbox (tenant_id, aggregate_id, pos)").await?;
        let unique = match manager.get_database_backend() {
            sea_orm_migration::sea_orm::DatabaseBackend::Postgres => {
                "ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key"
            }
            // SQLite names the index of an inline UNIQUE constraint itself and
            // cannot drop it: the table keeps it there (one writer, small cost).
            _ => return Ok(()),
        };
        db.execute_unprepared(unique).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_outbox_customer").await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE outbox ADD CONSTRAINT outbox_event_id_key UNIQUE (event_id)").await?;
        }
        db.execute_unprepared("CREATE INDEX idx_outbox_aggregate ON outbox (tenant_id, aggregate_id, seq)").await?;
        Ok(())
    }
}
