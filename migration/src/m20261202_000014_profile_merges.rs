//! `profile_merges`: one row per merge — who merged which profiles into
//! which, why, when, how each field was decided, and every profile as it was
//! before (what an exact unmerge restores). `profile_merge_members` lists the
//! profiles of each merge, so a profile's history is one indexed lookup.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000014_profile_merges"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProfileMerges::Table)
                    .col(ColumnDef::new(ProfileMerges::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ProfileMerges::Id).uuid().not_null())
                    .col(ColumnDef::new(ProfileMerges::TargetId).uuid().not_null())
                    .col(ColumnDef::new(ProfileMerges::SourceIds).text().not_null())
                    .col(ColumnDef::new(ProfileMerges::Reason).string_len(16).not_null())
                    .col(ColumnDef::new(ProfileMerges::Actor).string_len(256).not_null())
                    .col(ColumnDef::new(ProfileMerges::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ProfileMerges::Decisions).text().not_null())
                    .col(ColumnDef::new(ProfileMerges::Before).text().not_null())
                    .primary_key(Index::create().col(ProfileMerges::TenantId).col(ProfileMerges::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileMergeMembers::Table)
                    .col(ColumnDef::new(ProfileMergeMembers::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ProfileMergeMembers::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(ProfileMergeMembers::MergeId).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .col(ProfileMergeMembers::TenantId)
                            .col(ProfileMergeMembers::ProfileId)
                            .col(ProfileMergeMembers::MergeId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProfileMergeMembers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ProfileMerges::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ProfileMerges {
    Table,
    TenantId,
    Id,
    TargetId,
    SourceIds,
    Reason,
    Actor,
    CreatedAt,
    Decisions,
    Before,
}

#[derive(DeriveIden)]
enum ProfileMergeMembers {
    Table,
    TenantId,
    ProfileId,
    MergeId,
}
