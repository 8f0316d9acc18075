//! `profiles.merged_into`: where a MERGED profile's id resolves. A merged id
//! answers with its target forever (docs/merges.md); chains are kept one hop
//! long by the merge that extends them.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000013_merged_into"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Profiles::Table)
                    .add_column(ColumnDef::new(Profiles::MergedInto).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_profiles_merged_into")
                    .table(Profiles::Table)
                    .col(Profiles::TenantId)
                    .col(Profiles::MergedInto)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_profiles_merged_into").table(Profiles::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Profiles::Table).drop_column(Profiles::MergedInto).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    TenantId,
    MergedInto,
}
