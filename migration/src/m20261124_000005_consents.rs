//! Consent: `consent_decisions`, the append-only history of every decision
//! recorded, and `consents`, the decision in force per profile, purpose and
//! contact point (a copy of its history row, so a check reads one row); and
//! an index answering "is this profile live" without reading the profile.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000005_consents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsentDecisions::Table)
                    .col(ColumnDef::new(ConsentDecisions::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ConsentDecisions::Id).uuid().not_null())
                    .col(ColumnDef::new(ConsentDecisions::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(ConsentDecisions::Purpose).string_len(32).not_null())
                    // '' and '' for a decision covering the whole purpose: a
                    // key column cannot be NULL.
                    .col(ColumnDef::new(ConsentDecisions::ContactType).string_len(16).not_null())
                    .col(ColumnDef::new(ConsentDecisions::ContactValue).string_len(320).not_null())
                    .col(ColumnDef::new(ConsentDecisions::Status).string_len(16).not_null())
                    .col(ColumnDef::new(ConsentDecisions::LegalBasis).string_len(32).not_null())
                    .col(ColumnDef::new(ConsentDecisions::Source).string_len(100).not_null())
                    .col(ColumnDef::new(ConsentDecisions::Channel).string_len(40).null())
                    .col(ColumnDef::new(ConsentDecisions::CapturedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ConsentDecisions::ExpiresAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ConsentDecisions::Evidence).text().null())
                    .col(ColumnDef::new(ConsentDecisions::RequestId).string_len(128).null())
                    .col(ColumnDef::new(ConsentDecisions::RecordedBy).string_len(255).not_null())
                    .col(ColumnDef::new(ConsentDecisions::RecordedAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_consent_decisions")
                            .col(ConsentDecisions::TenantId)
                            .col(ConsentDecisions::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // A profile's history, newest first (ids are UUID v7: recording order).
        manager
            .create_index(
                Index::create()
                    .name("idx_consent_decisions_history")
                    .table(ConsentDecisions::Table)
                    .col(ConsentDecisions::TenantId)
                    .col(ConsentDecisions::ProfileId)
                    .col(ConsentDecisions::Id)
                    .to_owned(),
            )
            .await?;
        // A client request id records at most one decision: a retry finds it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_consent_decisions_request ON consent_decisions (tenant_id, request_id) \
                 WHERE request_id IS NOT NULL",
            )
            .await?;
        let mut consents = Table::create();
        consents
            .table(Consents::Table)
            .col(ColumnDef::new(Consents::TenantId).string_len(64).not_null())
            .col(ColumnDef::new(Consents::ProfileId).uuid().not_null())
            .col(ColumnDef::new(Consents::Purpose).string_len(32).not_null())
            .col(ColumnDef::new(Consents::ContactType).string_len(16).not_null())
            .col(ColumnDef::new(Consents::ContactValue).string_len(320).not_null())
            .col(ColumnDef::new(Consents::DecisionId).uuid().not_null())
            .col(ColumnDef::new(Consents::Status).string_len(16).not_null())
            .col(ColumnDef::new(Consents::LegalBasis).string_len(32).not_null())
            .col(ColumnDef::new(Consents::Source).string_len(100).not_null())
            .col(ColumnDef::new(Consents::Channel).string_len(40).null())
            .col(ColumnDef::new(Consents::CapturedAt).timestamp_with_time_zone().not_null())
            .col(ColumnDef::new(Consents::ExpiresAt).timestamp_with_time_zone().null())
            .col(ColumnDef::new(Consents::Evidence).text().null())
            .col(ColumnDef::new(Consents::RequestId).string_len(128).null())
            .col(ColumnDef::new(Consents::RecordedBy).string_len(255).not_null())
            .col(ColumnDef::new(Consents::RecordedAt).timestamp_with_time_zone().not_null())
            .primary_key(
                Index::create()
                    .name("pk_consents")
                    .col(Consents::TenantId)
                    .col(Consents::ProfileId)
                    .col(Consents::Purpose)
                    .col(Consents::ContactType)
                    .col(Consents::ContactValue),
            );
        manager.create_table(consents.to_owned()).await?;
        // BatchCheckConsent asks whether 1,000 profiles are live: answered
        // from this index alone, not from 1,000 wide profile rows.
        let live = match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                "CREATE INDEX idx_profiles_status ON profiles (tenant_id, id) INCLUDE (status)"
            }
            _ => "CREATE INDEX idx_profiles_status ON profiles (tenant_id, id, status)",
        };
        manager.get_connection().execute_unprepared(live).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX idx_profiles_status").await?;
        manager.drop_table(Table::drop().table(Consents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ConsentDecisions::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ConsentDecisions {
    Table,
    TenantId,
    Id,
    ProfileId,
    Purpose,
    ContactType,
    ContactValue,
    Status,
    LegalBasis,
    Source,
    Channel,
    CapturedAt,
    ExpiresAt,
    Evidence,
    RequestId,
    RecordedBy,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    TenantId,
    ProfileId,
    Purpose,
    ContactType,
    ContactValue,
    DecisionId,
    Status,
    LegalBasis,
    Source,
    Channel,
    CapturedAt,
    ExpiresAt,
    Evidence,
    RequestId,
    RecordedBy,
    RecordedAt,
}
