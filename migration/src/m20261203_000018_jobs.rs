//! Background jobs (docs/jobs.md): work that outlives a request, such as a
//! tenant's bulk deduplication. Any instance may run a job; the row is how
//! instances agree which one does (`owner` holds it while `lease_until` is
//! in the future and is renewed by the owner), and at most one job of a kind
//! is queued or running per tenant (a partial unique index says so).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000018_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(ColumnDef::new(Jobs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Jobs::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Jobs::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Jobs::State).string_len(16).not_null())
                    .col(ColumnDef::new(Jobs::Options).text().not_null())
                    .col(ColumnDef::new(Jobs::RequestedBy).string_len(256).not_null())
                    .col(ColumnDef::new(Jobs::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Jobs::StartedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Jobs::FinishedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Jobs::Owner).string_len(256).null())
                    .col(ColumnDef::new(Jobs::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Jobs::CancelRequested).boolean().not_null().default(false))
                    .col(ColumnDef::new(Jobs::Progress).text().not_null())
                    .col(ColumnDef::new(Jobs::Error).text().null())
                    .to_owned(),
            )
            .await?;
        // One queued or running job of a kind per tenant: two instances
        // asked at once cannot both start one. The same text on both
        // backends (SQLite and PostgreSQL both have partial indexes).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_jobs_one_active ON jobs (tenant_id, kind) \
                 WHERE state IN ('QUEUED', 'RUNNING')",
            )
            .await?;
        // A tenant's jobs, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_tenant")
                    .table(Jobs::Table)
                    .col(Jobs::TenantId)
                    .col(Jobs::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Jobs::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    TenantId,
    Kind,
    State,
    Options,
    RequestedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
    Owner,
    LeaseUntil,
    CancelRequested,
    Progress,
    Error,
}
