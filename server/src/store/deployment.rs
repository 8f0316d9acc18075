//! The `deployment` row: this deployment's id and page-token key, created by
//! the first instance that asks.

use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use sea_orm::ConnectionTrait;

use super::{db_error, sql::Sql};
use crate::domain::{DomainError, page::PageTokens};

/// What every instance of one deployment (one database) shares.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Random id of the deployment.
    pub id: String,
    /// Signs and checks page tokens.
    pub page_tokens: PageTokens,
}

/// The deployment's row, written with fresh random values if missing (the
/// first writer wins; everyone reads what it wrote).
pub async fn get_or_create(conn: &impl ConnectionTrait) -> Result<Deployment, DomainError> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO deployment (singleton, id, page_key, created_at) VALUES (1, ")
        .bind(uuid::Uuid::new_v4().to_string())
        .push(", ")
        .bind(STANDARD.encode(key))
        .push(", ")
        .bind(chrono::Utc::now())
        .push(") ON CONFLICT (singleton) DO NOTHING");
    conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT id, page_key FROM deployment WHERE singleton = 1");
    let row = conn
        .query_one_raw(sql.statement())
        .await
        .map_err(db_error)?
        .ok_or_else(|| DomainError::Internal("the deployment row is missing".to_owned()))?;
    let id: String = row.try_get("", "id").map_err(db_error)?;
    let encoded: String = row.try_get("", "page_key").map_err(db_error)?;
    let key = STANDARD.decode(encoded).map_err(|e| DomainError::Internal(format!("stored page key: {e}")))?;
    Ok(Deployment { id, page_tokens: PageTokens::new(&key) })
}
