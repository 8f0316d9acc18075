//! Queries on `import_rows`: what each source's imports loaded, by row key.

use std::collections::HashMap;

use c360_entity::import_row::{ActiveModel, Column, Entity};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, Iterable, QueryFilter,
    QuerySelect, prelude::Uuid, sea_query::OnConflict,
};

use super::{MAX_BIND_PARAMS, db_error, rows_per_statement, sql::Sql};
use crate::domain::{DomainError, ProfileId, TenantId};

/// What an earlier import loaded for one row key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The profile the row went to (it may since have been merged).
    pub profile_id: ProfileId,
    /// The row's fingerprint then.
    pub fingerprint: String,
}

/// The rows among `keys` that earlier imports of `source` loaded.
pub async fn loaded(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
    keys: &[&str],
) -> Result<HashMap<String, Loaded>, DomainError> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(MAX_BIND_PARAMS - 2) {
        let mut sql = Sql::new(conn.get_database_backend());
        if conn.get_database_backend() == DbBackend::Postgres {
            // A primary-key probe per key, statistics or not (see
            // `identities::holders_of`; OFFSET 0 keeps the probe a probe).
            sql.push("SELECT r.row_key, r.profile_id, r.fingerprint FROM unnest(")
                .bind_array(chunk.iter().map(|k| (*k).to_owned()))
                .push(
                    "::text[]) AS k(row_key) CROSS JOIN LATERAL (SELECT row_key, profile_id, fingerprint \
                     FROM import_rows WHERE tenant_id = ",
                )
                .bind(tenant.as_str())
                .push(" AND source = ")
                .bind(source)
                .push(" AND row_key = k.row_key OFFSET 0) r");
        } else {
            sql.push("SELECT row_key, profile_id, fingerprint FROM import_rows WHERE tenant_id = ")
                .bind(tenant.as_str())
                .push(" AND source = ")
                .bind(source)
                .push(" AND ")
                .in_list("row_key", chunk.iter().map(|k| (*k).to_owned()));
        }
        for row in conn.query_all_raw(sql.statement()).await.map_err(db_error)? {
            let key: String = row.try_get("", "row_key").map_err(db_error)?;
            let profile: Uuid = row.try_get("", "profile_id").map_err(db_error)?;
            let fingerprint: String = row.try_get("", "fingerprint").map_err(db_error)?;
            found.insert(key, Loaded { profile_id: ProfileId::from(profile), fingerprint });
        }
    }
    Ok(found)
}

/// Records (or replaces) what this import loaded for each row key.
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
    rows: &[(&str, ProfileId, &str)],
) -> Result<(), DomainError> {
    let now = Utc::now();
    for chunk in rows.chunks(rows_per_statement(Column::iter().count())) {
        let models = chunk.iter().map(|(key, profile, fingerprint)| ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            source: Set(source.to_owned()),
            row_key: Set((*key).to_owned()),
            profile_id: Set(profile.as_uuid()),
            fingerprint: Set((*fingerprint).to_owned()),
            imported_at: Set(now),
        });
        let on_conflict = OnConflict::columns([Column::TenantId, Column::Source, Column::RowKey])
            .update_columns([Column::ProfileId, Column::Fingerprint, Column::ImportedAt])
            .to_owned();
        Entity::insert_many(models).on_conflict(on_conflict).exec_without_returning(conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Every row key earlier imports of `source` loaded, with its profile.
pub async fn keys(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
) -> Result<Vec<(String, ProfileId)>, DomainError> {
    let rows = Entity::find()
        .select_only()
        .columns([Column::RowKey, Column::ProfileId])
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::Source.eq(source))
        .into_tuple::<(String, Uuid)>()
        .all(conn)
        .await
        .map_err(db_error)?;
    Ok(rows.into_iter().map(|(key, profile)| (key, ProfileId::from(profile))).collect())
}

/// Forgets row keys of `source` (their profiles were deactivated).
pub async fn forget(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
    keys: &[&str],
) -> Result<(), DomainError> {
    for chunk in keys.chunks(MAX_BIND_PARAMS - 2) {
        Entity::delete_many().filter(rows(tenant, source, chunk)).exec(conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Forgets the fingerprints of row keys of `source` (loaded only in part):
/// the next import loads them again.
pub async fn forget_fingerprints(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
    keys: &[&str],
) -> Result<(), DomainError> {
    for chunk in keys.chunks(MAX_BIND_PARAMS - 3) {
        Entity::update_many()
            .col_expr(Column::Fingerprint, sea_orm::sea_query::Expr::value(""))
            .filter(rows(tenant, source, chunk))
            .exec(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// The rows of `source` with one of `keys`.
fn rows(tenant: &TenantId, source: &str, keys: &[&str]) -> Condition {
    Condition::all()
        .add(Column::TenantId.eq(tenant.as_str()))
        .add(Column::Source.eq(source))
        .add(Column::RowKey.is_in(keys.iter().copied()))
}
