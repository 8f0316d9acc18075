//! `profile_requests`: the client request ids of CreateProfile and
//! UpdateProfile, so that a retry whose first answer was lost returns the
//! first outcome instead of writing again. One row per id and tenant, written
//! in the write's own transaction; `fingerprint` tells a retry from another
//! request reusing the id. Rows older than the audit retention are pruned.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000011_profile_requests"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProfileRequests::Table)
                    .col(ColumnDef::new(ProfileRequests::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(ProfileRequests::RequestId).string_len(128).not_null())
                    .col(ColumnDef::new(ProfileRequests::Operation).string_len(16).not_null())
                    .col(ColumnDef::new(ProfileRequests::ProfileId).uuid().not_null())
                    .col(ColumnDef::new(ProfileRequests::Fingerprint).string_len(64).not_null())
                    .col(ColumnDef::new(ProfileRequests::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(ProfileRequests::TenantId).col(ProfileRequests::RequestId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_profile_requests_created")
                    .table(ProfileRequests::Table)
                    .col(ProfileRequests::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProfileRequests::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ProfileRequests {
    Table,
    TenantId,
    RequestId,
    Operation,
    ProfileId,
    Fingerprint,
    CreatedAt,
}
