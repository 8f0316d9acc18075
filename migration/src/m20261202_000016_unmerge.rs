//! What an exact unmerge needs besides the merge's snapshots: whether a merge
//! was undone (`profile_merges.undone_at`, `undone_by`), the merged id a
//! consent decision was addressed to (`consent_decisions.addressed_to`), and
//! each profile write addressed to a merged id, with the profile before and
//! after it (`profile_redirects`), so that an unmerge gives the source what
//! arrived for it since (docs/merges.md).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000016_unmerge"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(ProfileMerges::Table)
                    .add_column(ColumnDef::new(ProfileMerges::UndoneAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ProfileMerges::Table)
                    .add_column(ColumnDef::new(ProfileMerges::UndoneBy).string_len(256).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ConsentDecisions::Table)
                    .add_column(ColumnDef::new(ConsentDecisions::AddressedTo).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileRedirects::Table)
                    .col(ColumnDef::new(ProfileRedirects::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ProfileRedirects::Id).uuid().not_null())
                    .col(ColumnDef::new(ProfileRedirects::AddressedTo).uuid().not_null())
                    .col(ColumnDef::new(ProfileRedirects::TargetId).uuid().not_null())
                    .col(ColumnDef::new(ProfileRedirects::Before).text().not_null())
                    .col(ColumnDef::new(ProfileRedirects::After).text().not_null())
                    .col(ColumnDef::new(ProfileRedirects::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_profile_redirects")
                            .col(ProfileRedirects::TenantId)
                            .col(ProfileRedirects::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_profile_redirects_target")
                    .table(ProfileRedirects::Table)
                    .col(ProfileRedirects::TenantId)
                    .col(ProfileRedirects::TargetId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProfileRedirects::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter().table(ConsentDecisions::Table).drop_column(ConsentDecisions::AddressedTo).to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(ProfileMerges::Table).drop_column(ProfileMerges::UndoneBy).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(ProfileMerges::Table).drop_column(ProfileMerges::UndoneAt).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ProfileMerges {
    Table,
    UndoneAt,
    UndoneBy,
}

#[derive(DeriveIden)]
enum ConsentDecisions {
    Table,
    AddressedTo,
}

#[derive(DeriveIden)]
enum ProfileRedirects {
    Table,
    TenantId,
    Id,
    AddressedTo,
    TargetId,
    Before,
    After,
    CreatedAt,
}
