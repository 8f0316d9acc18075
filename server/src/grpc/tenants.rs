//! `c360.v1.TenantService`: the caller's tenant's settings.

use c360_proto::v1::{self as pb, tenant_service_server::TenantService};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    convert::timestamp,
    domain::settings::{TenantSettings, VersionedSettings},
    service::{SettingsUpdate, Tenants},
};

/// The gRPC face of [`Tenants`].
pub struct TenantApi {
    tenants: Tenants,
}

impl TenantApi {
    /// Serves `tenants`.
    pub fn new(tenants: Tenants) -> Self {
        Self { tenants }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn get_tenant_settings(&self, request: Request<pb::GetTenantSettingsRequest>) -> Reply<pb::TenantSettings> {
        let caller = caller(&request)?;
        Ok(Response::new(settings_to_pb(self.tenants.get(&caller).await?)))
    }

    async fn update_tenant_settings(
        &self,
        request: Request<pb::UpdateTenantSettingsRequest>,
    ) -> Reply<pb::TenantSettings> {
        let caller = caller(&request)?;
        let pb::UpdateTenantSettingsRequest { settings, update_mask, etag } = request.into_inner();
        let settings = settings.unwrap_or_default();
        let update = SettingsUpdate {
            settings: TenantSettings {
                personal_attribute_keys: settings.personal_attribute_keys.into_iter().collect(),
                financial_attribute_keys: settings.financial_attribute_keys.into_iter().collect(),
                profile_reads_per_hour: settings.profile_reads_per_hour,
                source_priority: settings.source_priority,
                max_merge_sources: settings.max_merge_sources,
                match_auto_threshold: settings.match_auto_threshold,
                match_review_threshold: settings.match_review_threshold,
                match_attribute_keys: settings.match_attribute_keys.into_iter().collect(),
                match_blocklist: settings.match_blocklist.into_iter().collect(),
            },
            mask: update_mask.map(|m| m.paths).unwrap_or_default(),
            etag,
        };
        Ok(Response::new(settings_to_pb(self.tenants.update(&caller, update).await?)))
    }
}

fn settings_to_pb(stored: VersionedSettings) -> pb::TenantSettings {
    let etag = stored.etag();
    pb::TenantSettings {
        personal_attribute_keys: stored.settings.personal_attribute_keys.into_iter().collect(),
        financial_attribute_keys: stored.settings.financial_attribute_keys.into_iter().collect(),
        profile_reads_per_hour: stored.settings.profile_reads_per_hour,
        etag,
        update_time: stored.updated_at.map(timestamp),
        updated_by: stored.updated_by.unwrap_or_default(),
        source_priority: stored.settings.source_priority,
        max_merge_sources: stored.settings.max_merge_sources,
        match_auto_threshold: stored.settings.match_auto_threshold,
        match_review_threshold: stored.settings.match_review_threshold,
        match_attribute_keys: stored.settings.match_attribute_keys.into_iter().collect(),
        match_blocklist: stored.settings.match_blocklist.into_iter().collect(),
    }
}
