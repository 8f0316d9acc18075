//! Queries on `tenant_settings`: a tenant's settings document and its version.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{db_error, sql::Sql};
use crate::domain::{
    DomainError, TenantId,
    settings::{TenantSettings, VersionedSettings},
};

/// The tenant's settings; the defaults (version 0) when never changed.
pub async fn get(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<VersionedSettings, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT settings, version, updated_at, updated_by FROM tenant_settings WHERE tenant_id = ")
        .bind(tenant.as_str());
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else {
        return Ok(VersionedSettings::initial());
    };
    let text: String = row.try_get("", "settings").map_err(db_error)?;
    let settings: TenantSettings = serde_json::from_str(&text)
        .map_err(|e| DomainError::Internal(format!("stored settings of tenant {tenant}: {e}")))?;
    Ok(VersionedSettings {
        settings,
        version: row.try_get("", "version").map_err(db_error)?,
        updated_at: Some(row.try_get::<DateTime<Utc>>("", "updated_at").map_err(db_error)?),
        updated_by: Some(row.try_get("", "updated_by").map_err(db_error)?),
    })
}

/// Stores `next` if the stored version is still `next.version - 1`; `false`
/// when another change came first.
pub async fn put(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    next: &VersionedSettings,
) -> Result<bool, DomainError> {
    let text = serde_json::to_string(&next.settings).map_err(|e| DomainError::Internal(e.to_string()))?;
    let updated_at = next.updated_at.unwrap_or_else(Utc::now);
    let updated_by = next.updated_by.clone().unwrap_or_default();
    let mut sql = Sql::new(conn.get_database_backend());
    if next.version == 1 {
        sql.push("INSERT INTO tenant_settings (tenant_id, settings, version, updated_at, updated_by) VALUES (")
            .bind(tenant.as_str())
            .push(", ")
            .bind(text)
            .push(", 1, ")
            .bind(updated_at)
            .push(", ")
            .bind(updated_by)
            .push(") ON CONFLICT (tenant_id) DO NOTHING");
    } else {
        sql.push("UPDATE tenant_settings SET settings = ")
            .bind(text)
            .push(", version = ")
            .bind(next.version)
            .push(", updated_at = ")
            .bind(updated_at)
            .push(", updated_by = ")
            .bind(updated_by)
            .push(" WHERE tenant_id = ")
            .bind(tenant.as_str())
            .push(" AND version = ")
            .bind(next.version - 1);
    }
    let result = conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(result.rows_affected() == 1)
}
