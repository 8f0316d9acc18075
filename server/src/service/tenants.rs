//! Tenant settings: read on every view (kept in-process for
//! [`SETTINGS_TTL`]), read and changed by admins with an etag.

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;
use tracing::instrument;

use super::Audit;
use crate::{
    auth::{Caller, Permission},
    domain::{
        DomainError, TenantId,
        identifiers::normalize_source,
        profile::{now, parse_etag},
        settings::{TenantSettings, VersionedSettings},
    },
    store::{self, Store},
};

/// How long an instance keeps a tenant's settings: a change made through
/// another instance applies here within this time (through this one, at once).
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// Settings paths an update mask may name.
const PATHS: [&str; 9] = [
    "personal_attribute_keys",
    "financial_attribute_keys",
    "profile_reads_per_hour",
    "source_priority",
    "max_merge_sources",
    "match_auto_threshold",
    "match_review_threshold",
    "match_attribute_keys",
    "match_blocklist",
];

/// Tenant settings over a store.
#[derive(Clone)]
pub struct Tenants {
    store: Store,
    cache: Cache<TenantId, Arc<VersionedSettings>>,
}

/// An UpdateTenantSettings call.
#[derive(Debug, Clone, Default)]
pub struct SettingsUpdate {
    /// New values.
    pub settings: TenantSettings,
    /// Paths to change; empty: every path.
    pub mask: Vec<String>,
    /// The etag last read, or empty.
    pub etag: String,
}

impl Tenants {
    /// Settings stored in `store`.
    pub fn new(store: Store) -> Self {
        Self { store, cache: Cache::builder().max_capacity(10_000).time_to_live(SETTINGS_TTL).build() }
    }

    /// The settings in force for `tenant`, for the service layer's own use.
    pub async fn of(&self, tenant: &TenantId) -> Result<Arc<VersionedSettings>, DomainError> {
        // Every read asks: the hit must stay a plain lookup. Concurrent
        // misses each load (one small row), rather than queue on one another.
        if let Some(settings) = self.cache.get(tenant) {
            return Ok(settings);
        }
        let settings = Arc::new(store::settings::get(self.store.db(), tenant).await?);
        self.cache.insert(tenant.clone(), Arc::clone(&settings));
        Ok(settings)
    }

    /// The caller's tenant's settings (admins).
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn get(&self, caller: &Caller) -> Result<VersionedSettings, DomainError> {
        caller.require(Permission::ManageTenant)?;
        store::settings::get(self.store.db(), caller.tenant()).await
    }

    /// Changes the caller's tenant's settings under optimistic concurrency (admins).
    #[instrument(skip_all, fields(tenant = %caller.tenant()))]
    pub async fn update(&self, caller: &Caller, mut update: SettingsUpdate) -> Result<VersionedSettings, DomainError> {
        caller.require(Permission::ManageTenant)?;
        // "0": the defaults, before the first change.
        let expected = if update.etag.trim_matches('"') == "0" { Some(0) } else { parse_etag(&update.etag)? };
        for (i, path) in update.mask.iter().enumerate() {
            if !PATHS.contains(&path.as_str()) {
                let shown: String = path.chars().take(64).collect();
                let why = format!("unknown path '{shown}'; known: {}", PATHS.join(", "));
                return Err(DomainError::invalid(format!("update_mask.paths[{i}]"), why));
            }
        }
        // Source names are taken as lineage takes them ("Salesforce" is
        // "salesforce"); what cannot be a source name is refused by validate.
        for source in &mut update.settings.source_priority {
            if let Ok(normal) = normalize_source(source) {
                *source = normal;
            }
        }
        update.settings.validate()?;
        let names = |path: &str| update.mask.is_empty() || update.mask.iter().any(|p| p == path);

        let work = self.store.begin().await?;
        let current = store::settings::get(work.conn(), caller.tenant()).await?;
        if let Some(expected) = expected
            && expected != current.version
        {
            return Err(DomainError::StaleEtag { sent: expected.to_string(), current: current.etag() });
        }
        let mut settings = current.settings.clone();
        if names(PATHS[0]) {
            settings.personal_attribute_keys = update.settings.personal_attribute_keys;
        }
        if names(PATHS[1]) {
            settings.financial_attribute_keys = update.settings.financial_attribute_keys;
        }
        if names(PATHS[2]) {
            settings.profile_reads_per_hour = update.settings.profile_reads_per_hour;
        }
        if names(PATHS[3]) {
            settings.source_priority = update.settings.source_priority;
        }
        if names(PATHS[4]) {
            settings.max_merge_sources = update.settings.max_merge_sources;
        }
        if names(PATHS[5]) {
            settings.match_auto_threshold = update.settings.match_auto_threshold;
        }
        if names(PATHS[6]) {
            settings.match_review_threshold = update.settings.match_review_threshold;
        }
        if names(PATHS[7]) {
            settings.match_attribute_keys = update.settings.match_attribute_keys;
        }
        if names(PATHS[8]) {
            settings.match_blocklist = update.settings.match_blocklist;
        }
        if settings == current.settings {
            return Ok(current);
        }
        let next = VersionedSettings {
            settings,
            version: current.version + 1,
            updated_at: Some(now()),
            updated_by: Some(caller.subject().to_owned()),
        };
        let mut work = work;
        work.audit(Audit::write(
            caller,
            "tenant_settings.update",
            "tenant_settings",
            vec![caller.tenant().to_string()],
        ));
        if !store::settings::put(work.conn(), caller.tenant(), &next).await? {
            // Another change committed between this read and write.
            drop(work);
            let latest = store::settings::get(self.store.db(), caller.tenant()).await?;
            return Err(DomainError::StaleEtag { sent: current.etag(), current: latest.etag() });
        }
        work.commit().await?;
        self.cache.invalidate(caller.tenant());
        Ok(next)
    }
}
