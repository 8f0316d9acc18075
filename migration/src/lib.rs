//! c360's database migrations, for PostgreSQL and SQLite alike.
//!
//! One module per change, named by date and order; a migration is never edited
//! after it lands: a later change gets a new module.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_profiles;
mod m20261124_000002_create_identities;
mod m20261124_000003_create_outbox;
mod m20261124_000004_create_events;
mod m20261124_000005_consents;
mod m20261125_000006_outbox_relay;
mod m20261125_000007_outbox_lean_indexes;
mod m20261126_000008_tenant_settings;
mod m20261126_000009_audit;
mod m20261127_000010_deployment;
mod m20261202_000011_profile_requests;
mod m20261202_000012_cache_peers;
mod m20261202_000013_merged_into;
mod m20261202_000014_profile_merges;
mod m20261202_000015_import_rows;
mod m20261202_000016_unmerge;
mod m20261202_000017_matching;
mod m20261203_000018_jobs;
mod m20261203_000019_held_identifiers;
mod m20261203_000020_match_frequencies;
mod m20261204_000021_primary_contacts;

/// The ordered list of c360 migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_profiles::Migration),
            Box::new(m20261124_000002_create_identities::Migration),
            Box::new(m20261124_000003_create_outbox::Migration),
            Box::new(m20261124_000004_create_events::Migration),
            Box::new(m20261124_000005_consents::Migration),
            Box::new(m20261125_000006_outbox_relay::Migration),
            Box::new(m20261125_000007_outbox_lean_indexes::Migration),
            Box::new(m20261126_000008_tenant_settings::Migration),
            Box::new(m20261126_000009_audit::Migration),
            Box::new(m20261127_000010_deployment::Migration),
            Box::new(m20261202_000011_profile_requests::Migration),
            Box::new(m20261202_000012_cache_peers::Migration),
            Box::new(m20261202_000013_merged_into::Migration),
            Box::new(m20261202_000014_profile_merges::Migration),
            Box::new(m20261202_000015_import_rows::Migration),
            Box::new(m20261202_000016_unmerge::Migration),
            Box::new(m20261202_000017_matching::Migration),
            Box::new(m20261203_000018_jobs::Migration),
            Box::new(m20261203_000019_held_identifiers::Migration),
            Box::new(m20261203_000020_match_frequencies::Migration),
            Box::new(m20261204_000021_primary_contacts::Migration),
        ]
    }
}
