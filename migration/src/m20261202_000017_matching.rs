//! What identity resolution keeps (docs/identity-resolution.md): each
//! tenant's matching models, versioned (`match_models`; the highest version
//! is in force), and the pairs a run scored between the review and auto
//! thresholds, for the stewards' review queue (`match_candidates`; a pair is
//! stored once, smaller id first, and a rejected pair is remembered).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000017_matching"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MatchModels::Table)
                    .col(ColumnDef::new(MatchModels::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(MatchModels::Version).integer().not_null())
                    .col(ColumnDef::new(MatchModels::Model).text().not_null())
                    .col(ColumnDef::new(MatchModels::CreatedBy).string_len(256).not_null())
                    .col(ColumnDef::new(MatchModels::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create().name("pk_match_models").col(MatchModels::TenantId).col(MatchModels::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MatchCandidates::Table)
                    .col(ColumnDef::new(MatchCandidates::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(MatchCandidates::LeftId).uuid().not_null())
                    .col(ColumnDef::new(MatchCandidates::RightId).uuid().not_null())
                    .col(ColumnDef::new(MatchCandidates::Probability).double().not_null())
                    .col(ColumnDef::new(MatchCandidates::ModelVersion).integer().not_null())
                    .col(ColumnDef::new(MatchCandidates::Status).string_len(16).not_null())
                    .col(ColumnDef::new(MatchCandidates::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(MatchCandidates::UpdatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(MatchCandidates::DecidedBy).string_len(256).null())
                    .primary_key(
                        Index::create()
                            .name("pk_match_candidates")
                            .col(MatchCandidates::TenantId)
                            .col(MatchCandidates::LeftId)
                            .col(MatchCandidates::RightId),
                    )
                    .to_owned(),
            )
            .await?;
        // The queue: pending pairs, highest confidence first.
        manager
            .create_index(
                Index::create()
                    .name("idx_match_candidates_queue")
                    .table(MatchCandidates::Table)
                    .col(MatchCandidates::TenantId)
                    .col(MatchCandidates::Status)
                    .col(MatchCandidates::Probability)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MatchCandidates::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(MatchModels::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum MatchModels {
    Table,
    TenantId,
    Version,
    Model,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MatchCandidates {
    Table,
    TenantId,
    LeftId,
    RightId,
    Probability,
    ModelVersion,
    Status,
    CreatedAt,
    UpdatedAt,
    DecidedBy,
}
