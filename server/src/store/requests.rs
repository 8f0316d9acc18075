//! Client request ids of profile writes (`profile_requests`): what a retry
//! of CreateProfile or UpdateProfile finds instead of writing again.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

use super::{db_error, sql::Sql};
use crate::domain::{DomainError, ProfileId, TenantId};

/// A write recorded under a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `create` or `update`.
    pub operation: String,
    /// The profile it wrote.
    pub profile_id: ProfileId,
    /// What the request said, hashed.
    pub fingerprint: String,
}

/// The write recorded under `request_id`, if any.
pub async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    request_id: &str,
) -> Result<Option<Recorded>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT operation, profile_id, fingerprint FROM profile_requests WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND request_id = ")
        .bind(request_id);
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else {
        return Ok(None);
    };
    Ok(Some(Recorded {
        operation: row.try_get("", "operation").map_err(db_error)?,
        profile_id: ProfileId::from(row.try_get::<Uuid>("", "profile_id").map_err(db_error)?),
        fingerprint: row.try_get("", "fingerprint").map_err(db_error)?,
    }))
}

/// Records `request_id` for this write; `false` when it is recorded already
/// (on PostgreSQL a concurrent write holding it is waited for: `false` once
/// it commits, `true` if it rolls back).
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    request_id: &str,
    recorded: &Recorded,
) -> Result<bool, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "INSERT INTO profile_requests (tenant_id, request_id, operation, profile_id, fingerprint, created_at) VALUES (",
    )
    .bind(tenant.as_str())
    .push(", ")
    .bind(request_id)
    .push(", ")
    .bind(recorded.operation.as_str())
    .push(", ")
    .bind(recorded.profile_id.as_uuid())
    .push(", ")
    .bind(recorded.fingerprint.as_str())
    .push(", ")
    .bind(Utc::now())
    .push(") ON CONFLICT (tenant_id, request_id) DO NOTHING");
    let result = conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(result.rows_affected() == 1)
}

/// Forgets up to `limit` request ids recorded before `cutoff` (one short
/// statement, so SQLite's one connection is not held long); returns how many.
pub async fn prune(db: &DatabaseConnection, cutoff: DateTime<Utc>, limit: u64) -> Result<u64, DomainError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("DELETE FROM profile_requests WHERE (tenant_id, request_id) IN (SELECT tenant_id, request_id FROM profile_requests WHERE created_at < ")
        .bind(cutoff)
        .push(&format!(" LIMIT {limit})"));
    Ok(db.execute_raw(sql.statement()).await.map_err(db_error)?.rows_affected())
}
