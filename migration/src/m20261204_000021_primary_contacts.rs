//! An index from a person to the organizations naming it as their primary
//! contact (`BatchGetContactOrganizations`, the GraphQL facade's
//! `Customer.primaryContactOf`).

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000021_primary_contacts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_profiles_primary_contact")
                    .table(Profiles::Table)
                    .col(Profiles::TenantId)
                    .col(Profiles::PrimaryContactId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("idx_profiles_primary_contact").table(Profiles::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    TenantId,
    PrimaryContactId,
}
