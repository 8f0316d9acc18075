//! Queries on `identities`: claiming, releasing and resolving identifiers.

use c360_entity::identity::{ActiveModel, Column, Entity};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Iterable, QueryFilter,
    sea_query::OnConflict,
};

use sea_orm::prelude::Uuid;

use super::{MAX_BIND_PARAMS, db_error, rows_per_statement, sql::Sql};
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

/// The holders of `values` among identifiers of one type and namespace, in
/// one indexed query per few thousand values (bulk loads).
pub async fn holders_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id_type: IdentifierType,
    namespace: &str,
    values: &[&str],
) -> Result<Vec<(String, ProfileId)>, DomainError> {
    let mut found = Vec::new();
    for chunk in values.chunks(MAX_BIND_PARAMS - 3) {
        let mut sql = Sql::new(conn.get_database_backend());
        if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // One primary-key probe per value, whatever the planner's
            // statistics say: a table filled by this very import has none
            // until it is analyzed, and `value = ANY(…)` (or a plain join)
            // then scans the whole namespace per batch. OFFSET 0 keeps the
            // lateral subquery from being flattened into such a join.
            sql.push("SELECT i.value, i.profile_id FROM unnest(")
                .bind_array(chunk.iter().map(|v| (*v).to_owned()))
                .push("::text[]) AS v(value) CROSS JOIN LATERAL (SELECT value, profile_id FROM identities WHERE tenant_id = ")
                .bind(tenant.as_str())
                .push(" AND id_type = ")
                .bind(id_type.as_str())
                .push(" AND namespace = ")
                .bind(namespace)
                .push(" AND value = v.value OFFSET 0) i");
        } else {
            sql.push("SELECT value, profile_id FROM identities WHERE tenant_id = ")
                .bind(tenant.as_str())
                .push(" AND id_type = ")
                .bind(id_type.as_str())
                .push(" AND namespace = ")
                .bind(namespace)
                .push(" AND ")
                .in_list("value", chunk.iter().map(|v| (*v).to_owned()));
        }
        for row in conn.query_all_raw(sql.statement()).await.map_err(db_error)? {
            let value: String = row.try_get("", "value").map_err(db_error)?;
            let profile: Uuid = row.try_get("", "profile_id").map_err(db_error)?;
            found.push((value, ProfileId::from(profile)));
        }
    }
    Ok(found)
}

/// An identifier a bulk claim could not take: another profile holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The identifier.
    pub key: IdentifierKey,
    /// The profile that asked for it.
    pub wanted_by: ProfileId,
    /// The profile holding it.
    pub holder: ProfileId,
}

/// Claims each identifier for its profile where it is free, and returns the
/// ones held already (by another profile, or by an earlier row of `rows`
/// itself: the first asking wins). Unlike [`claim`], a taken identifier does
/// not fail the transaction: bulk loads keep the row without it.
///
/// Rows are inserted in key order, as [`claim`] does, so that concurrent bulk
/// claims of overlapping keys wait for each other instead of deadlocking.
pub async fn claim_free(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    rows: &[(IdentifierKey, ProfileId)],
) -> Result<Vec<Refused>, DomainError> {
    let mut first: std::collections::BTreeMap<&IdentifierKey, ProfileId> = std::collections::BTreeMap::new();
    let mut refused = Vec::new();
    for (key, profile) in rows {
        match first.get(key) {
            Some(holder) if holder != profile => {
                refused.push(Refused { key: key.clone(), wanted_by: *profile, holder: *holder })
            }
            Some(_) => {}
            None => {
                first.insert(key, *profile);
            }
        }
    }
    let sorted: Vec<(&IdentifierKey, ProfileId)> = first.into_iter().collect();
    let now = Utc::now();
    let mut inserted = std::collections::HashSet::new();
    for chunk in sorted.chunks(rows_per_statement(Column::iter().count())) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push("INSERT INTO identities (tenant_id, id_type, namespace, value, profile_id, created_at) VALUES ");
        for (i, (key, profile)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(tenant.as_str())
                .push(", ")
                .bind(key.id_type.as_str())
                .push(", ")
                .bind(key.namespace.as_str())
                .push(", ")
                .bind(key.value.as_str())
                .push(", ")
                .bind(profile.as_uuid())
                .push(", ")
                .bind(now)
                .push(")");
        }
        sql.push(" ON CONFLICT DO NOTHING RETURNING id_type, namespace, value");
        for row in conn.query_all_raw(sql.statement()).await.map_err(db_error)? {
            let id_type: String = row.try_get("", "id_type").map_err(db_error)?;
            let namespace: String = row.try_get("", "namespace").map_err(db_error)?;
            let value: String = row.try_get("", "value").map_err(db_error)?;
            inserted.insert((id_type, namespace, value));
        }
    }
    let taken: Vec<(&IdentifierKey, ProfileId)> = sorted
        .into_iter()
        .filter(|(key, _)| {
            !inserted.contains(&(key.id_type.as_str().to_owned(), key.namespace.clone(), key.value.clone()))
        })
        .collect();
    // The holders of the keys not inserted, one indexed query per type and namespace.
    let mut groups: std::collections::BTreeMap<(IdentifierType, &str), Vec<&str>> = std::collections::BTreeMap::new();
    for (key, _) in &taken {
        groups.entry((key.id_type, key.namespace.as_str())).or_default().push(key.value.as_str());
    }
    let mut held: std::collections::HashMap<(IdentifierType, &str, String), ProfileId> =
        std::collections::HashMap::new();
    for ((id_type, namespace), values) in groups {
        for (value, holder) in holders_of(conn, tenant, id_type, namespace, &values).await? {
            held.insert((id_type, namespace, value), holder);
        }
    }
    for (key, wanted_by) in taken {
        match held.get(&(key.id_type, key.namespace.as_str(), key.value.clone())) {
            Some(holder) if *holder != wanted_by => {
                refused.push(Refused { key: key.clone(), wanted_by, holder: *holder })
            }
            Some(_) => {}
            // Released by a concurrent write between the insert and this
            // read: neither ours nor refused; the caller tries again.
            None => return Err(DomainError::Aborted(format!("{key} changed holder during the claim"))),
        }
    }
    Ok(refused)
}

/// An identifier a record carried that another profile held (so the record
/// was loaded without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The profile the record went to.
    pub profile: ProfileId,
    /// The identifier it carried.
    pub key: IdentifierKey,
    /// The profile that held it.
    pub holder: ProfileId,
}

/// Keeps `held` identifiers (each once per profile) as `source` loaded them.
pub async fn record_held(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    source: &str,
    held: &[Held],
    at: chrono::DateTime<Utc>,
) -> Result<(), DomainError> {
    for chunk in held.chunks(MAX_BIND_PARAMS / 8) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO held_identifiers (tenant_id, profile_id, id_type, namespace, value, holder_id, source, \
             recorded_at) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(tenant.as_str())
                .push(", ")
                .bind(row.profile.as_uuid())
                .push(", ")
                .bind(row.key.id_type.as_str())
                .push(", ")
                .bind(row.key.namespace.as_str())
                .push(", ")
                .bind(row.key.value.as_str())
                .push(", ")
                .bind(row.holder.as_uuid())
                .push(", ")
                .bind(source)
                .push(", ")
                .bind(at)
                .push(")");
        }
        sql.push(" ON CONFLICT DO NOTHING");
        conn.execute_raw(sql.statement()).await.map_err(db_error)?;
    }
    Ok(())
}

/// Every identifier `tenant`'s records carried that another profile held,
/// by the profile the record went to, or the one it is merged into: the
/// rows stay with the record's own profile (an unmerge gives them back by
/// doing nothing), and a merged profile's evidence counts for its target.
/// With `only`, those of these profiles alone.
pub async fn held(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    only: Option<&[ProfileId]>,
) -> Result<std::collections::HashMap<ProfileId, Vec<IdentifierKey>>, DomainError> {
    if only.is_some_and(<[ProfileId]>::is_empty) {
        return Ok(Default::default());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    // Merge chains are kept one hop long (merges::repoint).
    // In a fixed order: exports and matching inputs come out the same each run.
    match only {
        None => {
            sql.push(
                "SELECT COALESCE(p.merged_into, h.profile_id) AS profile_id, h.id_type, h.namespace, h.value \
                 FROM held_identifiers h JOIN profiles p ON p.tenant_id = h.tenant_id AND p.id = h.profile_id \
                 WHERE h.tenant_id = ",
            )
            .bind(tenant.as_str());
        }
        Some(only) => {
            // From the profiles and those merged into them (index probes),
            // then their rows (a primary-key probe each, on PostgreSQL
            // whatever its statistics of the table say: `OFFSET 0` keeps the
            // planner from flattening the probe into a join driven by
            // held_identifiers, which read the tenant's every row per write).
            let join = if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
                "CROSS JOIN LATERAL (SELECT h.id_type, h.namespace, h.value FROM held_identifiers h \
                 WHERE h.tenant_id = p.tenant_id AND h.profile_id = p.id OFFSET 0) h"
            } else {
                "JOIN held_identifiers h ON h.tenant_id = p.tenant_id AND h.profile_id = p.id"
            };
            sql.push(&format!(
                "SELECT COALESCE(p.merged_into, p.id) AS profile_id, h.id_type, h.namespace, h.value \
                 FROM profiles p {join} WHERE p.tenant_id = "
            ))
            .bind(tenant.as_str());
            let list = |sql: &mut Sql| {
                for (i, id) in only.iter().enumerate() {
                    sql.push(if i == 0 { "" } else { ", " }).bind(id.as_uuid());
                }
            };
            sql.push(" AND (p.id IN (");
            list(&mut sql);
            sql.push(") OR p.merged_into IN (");
            list(&mut sql);
            sql.push("))");
        }
    }
    sql.push(" ORDER BY 1, h.id_type, h.namespace, h.value");
    let rows = conn.query_all_raw(sql.statement()).await.map_err(db_error)?;
    let mut found: std::collections::HashMap<ProfileId, Vec<IdentifierKey>> = std::collections::HashMap::new();
    for row in rows {
        let id_type: String = row.try_get("", "id_type").map_err(db_error)?;
        let Some(id_type) = IdentifierType::parse(&id_type) else { continue };
        let profile: Uuid = row.try_get("", "profile_id").map_err(db_error)?;
        found.entry(ProfileId::from(profile)).or_default().push(IdentifierKey {
            id_type,
            namespace: row.try_get("", "namespace").map_err(db_error)?,
            value: row.try_get("", "value").map_err(db_error)?,
        });
    }
    Ok(found)
}
