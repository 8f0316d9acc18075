//! Queries on `identities`: claiming, releasing and resolving identifiers.

use c360_entity::identity::{ActiveModel, Column, Entity};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Iterable, QueryFilter,
    sea_query::OnConflict,
};

use super::{db_error, rows_per_statement};
use crate::domain::{
    DomainError, ProfileId, TenantId,
    identifiers::{IdentifierKey, IdentifierType},
};

/// Claims `keys` for `profile`. A key already held by another profile fails
/// the claim with IdentifierConflict naming the holder; the caller's
/// transaction must then be rolled back.
///
/// Insert-or-ignore, then read back: on PostgreSQL the insert waits for a
/// concurrent transaction claiming the same key to finish, and the read (a new
/// snapshot under READ COMMITTED) then sees the winner. No pre-check can race.
pub async fn claim(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
    keys: &[(IdentifierKey, String)],
) -> Result<(), DomainError> {
    if keys.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    // One insertion order for every transaction, so two claims of overlapping
    // keys wait on each other instead of deadlocking.
    let mut sorted: Vec<&IdentifierKey> = keys.iter().map(|(key, _)| key).collect();
    sorted.sort();
    let rows = sorted.into_iter().map(|key| row(tenant, key, profile, now));
    let on_conflict = OnConflict::columns([Column::TenantId, Column::IdType, Column::Namespace, Column::Value])
        .do_nothing()
        .to_owned();
    match Entity::insert_many(rows).on_conflict(on_conflict).exec_without_returning(conn).await {
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(e) => return Err(db_error(e)),
    }
    let keys_only: Vec<IdentifierKey> = keys.iter().map(|(key, _)| key.clone()).collect();
    for (key, holder) in holders(conn, tenant, &keys_only).await? {
        if holder != profile {
            let field = keys.iter().find(|(k, _)| *k == key).map(|(_, f)| f.clone()).unwrap_or_default();
            return Err(DomainError::IdentifierConflict { field, identifier: key, holder });
        }
    }
    Ok(())
}

/// Inserts identifiers known to be free (bulk loads): one statement, no
/// read-back. A key already held fails the call; the caller's transaction
/// must then be rolled back.
pub async fn insert_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    rows: &[(IdentifierKey, ProfileId)],
) -> Result<(), DomainError> {
    let now = Utc::now();
    for chunk in rows.chunks(rows_per_statement(Column::iter().count())) {
        let models = chunk.iter().map(|(key, profile)| row(tenant, key, *profile, now));
        Entity::insert_many(models).exec_without_returning(conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Releases `keys` held by `profile` (all of its keys when `keys` is `None`).
pub async fn release(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: ProfileId,
    keys: Option<&[IdentifierKey]>,
) -> Result<(), DomainError> {
    let mut delete = Entity::delete_many()
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(Column::ProfileId.eq(profile.as_uuid()));
    if let Some(keys) = keys {
        if keys.is_empty() {
            return Ok(());
        }
        delete = delete.filter(any_key(keys));
    }
    delete.exec(conn).await.map_err(db_error)?;
    Ok(())
}

/// The live profile holding `key`, if any.
pub async fn holder(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    key: &IdentifierKey,
) -> Result<Option<ProfileId>, DomainError> {
    Ok(holders(conn, tenant, std::slice::from_ref(key)).await?.into_iter().next().map(|(_, id)| id))
}

/// Holders of any of `keys`.
pub async fn holders(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    keys: &[IdentifierKey],
) -> Result<Vec<(IdentifierKey, ProfileId)>, DomainError> {
    let rows = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_str()))
        .filter(any_key(keys))
        .all(conn)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|row| {
            let id_type = IdentifierType::parse(&row.id_type)
                .ok_or_else(|| DomainError::Internal(format!("stored id_type '{}'", row.id_type)))?;
            let key = IdentifierKey { id_type, namespace: row.namespace, value: row.value };
            Ok((key, ProfileId::from(row.profile_id)))
        })
        .collect()
}

fn row(tenant: &TenantId, key: &IdentifierKey, profile: ProfileId, now: chrono::DateTime<Utc>) -> ActiveModel {
    ActiveModel {
        tenant_id: Set(tenant.as_str().to_owned()),
        id_type: Set(key.id_type.as_str().to_owned()),
        namespace: Set(key.namespace.clone()),
        value: Set(key.value.clone()),
        profile_id: Set(profile.as_uuid()),
        created_at: Set(now),
    }
}

fn any_key(keys: &[IdentifierKey]) -> Condition {
    keys.iter().fold(Condition::any(), |any, key| {
        any.add(
            Condition::all()
                .add(Column::IdType.eq(key.id_type.as_str()))
                .add(Column::Namespace.eq(key.namespace.as_str()))
                .add(Column::Value.eq(key.value.as_str())),
        )
    })
}
