//! `match_models` (each tenant's matching models, versioned; the highest
//! version is in force) and `match_candidates` (pairs scored between the
//! review and auto thresholds, for the stewards' review queue).

use c360_matching::model::Model;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{MAX_BIND_PARAMS, db_error, sql::Sql};
use crate::domain::{DomainError, ProfileId, TenantId};

/// The model in force for `tenant`, if one was ever stored.
pub async fn current_model(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<Option<Model>, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT model FROM match_models WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" ORDER BY version DESC LIMIT 1");
    let Some(row) = conn.query_one_raw(sql.statement()).await.map_err(db_error)? else { return Ok(None) };
    let text: String = row.try_get("", "model").map_err(db_error)?;
    serde_json::from_str(&text).map(Some).map_err(|e| DomainError::Internal(format!("stored matching model: {e}")))
}

/// Stores `model` as `tenant`'s model in force (its version must be new).
pub async fn save_model(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    model: &Model,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), DomainError> {
    let text = serde_json::to_string(model).map_err(|e| DomainError::Internal(format!("encoding a model: {e}")))?;
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO match_models (tenant_id, version, model, created_by, created_at) VALUES (")
        .bind(tenant.as_str())
        .push(", ")
        .bind(model.version as i32)
        .push(", ")
        .bind(text)
        .push(", ")
        .bind(actor)
        .push(", ")
        .bind(at)
        .push(")");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    Ok(())
}

/// Puts pairs in the review queue as PENDING (each pair once, smaller id
/// first); a pair already there keeps its status, and a pending one takes
/// the new probability and model version. A rejected pair never returns.
pub async fn propose(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    pairs: &[(ProfileId, ProfileId, f64)],
    model_version: u32,
    at: DateTime<Utc>,
) -> Result<(), DomainError> {
    for chunk in pairs.chunks(MAX_BIND_PARAMS / 8) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO match_candidates (tenant_id, left_id, right_id, probability, model_version, status, \
             created_at, updated_at) VALUES ",
        );
        for (i, &(a, b, probability)) in chunk.iter().enumerate() {
            let (left, right) = if a < b { (a, b) } else { (b, a) };
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(tenant.as_str())
                .push(", ")
                .bind(left.as_uuid())
                .push(", ")
                .bind(right.as_uuid())
                .push(", ")
                .bind(probability)
                .push(", ")
                .bind(model_version as i32)
                .push(", 'PENDING', ")
                .bind(at)
                .push(", ")
                .bind(at)
                .push(")");
        }
        sql.push(
            " ON CONFLICT (tenant_id, left_id, right_id) DO UPDATE SET probability = excluded.probability, \
             model_version = excluded.model_version, updated_at = excluded.updated_at \
             WHERE match_candidates.status = 'PENDING'",
        );
        conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    }
    Ok(())
}

/// How many pairs of `tenant` wait for review.
pub async fn pending(conn: &impl ConnectionTrait, tenant: &TenantId) -> Result<u64, DomainError> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT COUNT(*) AS n FROM match_candidates WHERE tenant_id = ")
        .bind(tenant.as_str())
        .push(" AND status = 'PENDING'");
    let row = conn.query_one_raw(sql.statement()).await.map_err(db_error)?;
    let n: i64 = row.map(|r| r.try_get("", "n")).transpose().map_err(db_error)?.unwrap_or(0);
    Ok(n as u64)
}
