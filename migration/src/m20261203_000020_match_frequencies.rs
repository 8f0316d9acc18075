//! How often each compared value occurs in a tenant, as the last
//! deduplication run counted it (`match_frequencies`, one row per tenant).
//! Pairs scored one at a time (ExplainMatch, ResolveIdentity) weigh a shared
//! value by these counts, as the run did, so they score a pair as it did.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000020_match_frequencies"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MatchFrequencies::Table)
                    .col(ColumnDef::new(MatchFrequencies::TenantId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(MatchFrequencies::ModelVersion).integer().not_null())
                    .col(ColumnDef::new(MatchFrequencies::Profiles).big_integer().not_null())
                    .col(ColumnDef::new(MatchFrequencies::CountedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(MatchFrequencies::Counts).binary().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MatchFrequencies::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum MatchFrequencies {
    Table,
    TenantId,
    ModelVersion,
    Profiles,
    CountedAt,
    Counts,
}
