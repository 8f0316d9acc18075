//! The audit trail: `audit_events`, one row per write and per (coalesced)
//! read of personal data, hash-chained per tenant after commit; and
//! `audit_heads`, each tenant's chain head (its last position and hash, and
//! how far retention has pruned), which the chainer locks so one chains a
//! tenant at a time.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000009_audit"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(ColumnDef::new(AuditEvents::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(AuditEvents::Id).uuid().not_null())
                    // Position in the tenant's chain; NULL until chained.
                    .col(ColumnDef::new(AuditEvents::Seq).big_integer().null())
                    .col(ColumnDef::new(AuditEvents::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuditEvents::LastAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuditEvents::Subject).string_len(255).not_null())
                    .col(ColumnDef::new(AuditEvents::Roles).string_len(255).not_null())
                    .col(ColumnDef::new(AuditEvents::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditEvents::ResourceType).string_len(32).not_null())
                    // JSON array of ids.
                    .col(ColumnDef::new(AuditEvents::ResourceIds).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Count).big_integer().not_null())
                    .col(ColumnDef::new(AuditEvents::RequestId).string_len(128).not_null())
                    .col(ColumnDef::new(AuditEvents::Revealed).string_len(255).not_null())
                    .col(ColumnDef::new(AuditEvents::PrevHash).string_len(64).null())
                    .col(ColumnDef::new(AuditEvents::Hash).string_len(64).null())
                    .primary_key(
                        Index::create().name("pk_audit_events").col(AuditEvents::TenantId).col(AuditEvents::Id),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // The chain in order, for verify and paging.
        db.execute_unprepared("CREATE UNIQUE INDEX idx_audit_chain ON audit_events (tenant_id, seq)").await?;
        // What the chainer has yet to chain.
        db.execute_unprepared("CREATE INDEX idx_audit_unchained ON audit_events (tenant_id, id) WHERE seq IS NULL")
            .await?;
        // ListAuditEvents by subject and time.
        db.execute_unprepared("CREATE INDEX idx_audit_subject ON audit_events (tenant_id, subject, occurred_at)")
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditHeads::Table)
                    .col(ColumnDef::new(AuditHeads::TenantId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(AuditHeads::Seq).big_integer().not_null())
                    .col(ColumnDef::new(AuditHeads::Hash).string_len(64).not_null())
                    .col(ColumnDef::new(AuditHeads::PrunedThrough).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditHeads::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    TenantId,
    Id,
    Seq,
    OccurredAt,
    LastAt,
    Subject,
    Roles,
    Action,
    ResourceType,
    ResourceIds,
    Count,
    RequestId,
    Revealed,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    Table,
    TenantId,
    Seq,
    Hash,
    PrunedThrough,
}
